#!/usr/bin/env bash
# Azure SAS-read benchmark: a sparse ext4 image with real content (a copy of part of /usr, made
# with `mke2fs -d`), converted to a fixed VHD by `qemu-img` (what a managed disk snapshot is),
# uploaded to Azurite as a page blob holding only its non-zero 4 MiB chunks, then scanned through
# its read SAS URL (cloud/src/azure/blob.rs, the scanner Job's pipeline) by the release-mode
# example `bench_azure` of the tests crate, and as a local file for comparison.
#
# Usage:
#   scripts/bench-azure.sh                 # SIZE_MB=3072 (a 3 GiB filesystem, about 2/3 full)
#   SIZE_MB=256 scripts/bench-azure.sh     # quick run
#   FAULT_EVERY=50 scripts/bench-azure.sh  # every 50th ranged GET answered 503 or 429
#
# Environment:
#   SIZE_MB           filesystem size in MiB (default 3072); the content copied is ~2/3 of it
#   FAULT_EVERY       inject a fault every N ranged GETs (default: none)
#   SNAPSENTRY_CACHE  cache root (default ~/.cache/snapsentry): Azurite (from scripts/toolchain.sh)
#                     and the work directory bench-azure/ (removed at the start of a run)
#   CARGO_TARGET_DIR  default ~/.cache/snapsentry/target-bench
#
# Prints: the MB/s of the SAS scan (MB fetched / wall time, Azurite in the loop), bytes fetched
# against bytes written in the blob and against the bytes the filesystem uses (4 KiB blocks holding
# any block ext4 marks used, from dumpe2fs), the local-file scan time, and whether both scans found
# the same. Azurite is one Node.js process: the MB/s measures this reader against Azurite, not
# against Azure Storage.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
SIZE_MB=${SIZE_MB:-3072}
CACHE=${SNAPSENTRY_CACHE:-$HOME/.cache/snapsentry}
WORK=$CACHE/bench-azure
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/snapsentry/target-bench}

for tool in mke2fs dumpe2fs qemu-img python3 cargo; do
    command -v "$tool" >/dev/null || { echo "bench-azure: $tool is missing" >&2; exit 2; }
done
[[ -x $CACHE/azurite/node_modules/.bin/azurite-blob ]] ||
    { echo "bench-azure: Azurite missing; run scripts/toolchain.sh" >&2; exit 2; }

rm -rf -- "$WORK"
mkdir -p "$WORK"
# shellcheck source=scripts/lib/bench-image.sh
source "$REPO/scripts/lib/bench-image.sh"

echo "== build bench_azure (release)" >&2
cargo build -q --release -p snapsentry-tests --example bench_azure
BENCH=$CARGO_TARGET_DIR/release/examples/bench_azure

bench_image "$WORK" "$SIZE_MB"
USED=$(( $(used_blocks "$IMAGE" 4096) * 4096 ))
echo "== fixed VHD" >&2
qemu-img convert -q -f raw -O vpc -o subformat=fixed,force_size=on "$IMAGE" "$WORK/disk.vhd"
rm -f -- "$IMAGE"

echo "== upload and scan" >&2
ARGS=(--image "$WORK/disk.vhd")
[[ -n ${FAULT_EVERY:-} ]] && ARGS+=(--fault-every "$FAULT_EVERY")
RESULT=$("$BENCH" "${ARGS[@]}")
echo "$RESULT" >"$WORK/result.json"

python3 - "$RESULT" "$USED" "$SIZE_MB" <<'PY'
import json, sys
r, used, size_mb = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
b, s, i = r["blob"], r["sas"], r["image"]
mb = lambda n: f"{n / 1e6:.0f} MB"
print(f"image: {size_mb} MiB ext4 in a fixed VHD; blob: {mb(b['bytesWritten'])} written "
      f"(uploaded in {b['uploadSeconds']:.1f} s), filesystem uses {mb(used)}")
print(f"SAS scan: {s['seconds']:.1f} s, {mb(s['bytesFetched'])} fetched, "
      f"{s['fetchedMBps']:.1f} MB/s, {s['requests']} requests, {s['retries']} retries"
      + (f" ({s['faultsInjected']} faults injected)" if s["faultsInjected"] is not None else "")
      + f", {s['findings']} findings")
print(f"bytes fetched / written in the blob: {s['bytesFetched'] / b['bytesWritten']:.2f}; "
      f"/ used by the filesystem: {s['bytesFetched'] / used:.2f}")
print(f"local scan: {i['seconds']:.1f} s, {i['findings']} findings, same findings: {i['sameFindings']}")
if s["errors"]:
    print("errors:", s["errors"])
sys.exit(0 if i["sameFindings"] and not s["errors"] else 1)
PY
