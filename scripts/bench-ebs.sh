#!/usr/bin/env bash
# EBS direct-read benchmark: a sparse ext4 image with real content (a copy of part of /usr, made
# with `mke2fs -d`) is uploaded as a snapshot to the patched moto server of the tests
# (tests/moto/snapsentry_moto.py, started here on a free loopback port), then scanned through EBS
# direct reads (cloud/src/aws/ebs.rs, the scanner Job's pipeline) by the release-mode example
# `bench_ebs`, and as a local file for comparison.
#
# Usage:
#   scripts/bench-ebs.sh              # SIZE_MB=3072 (a 3 GiB filesystem, about 2/3 full)
#   SIZE_MB=256 scripts/bench-ebs.sh  # quick run
#
# Environment:
#   SIZE_MB           filesystem size in MiB (default 3072); the content copied is ~2/3 of it
#   SNAPSENTRY_CACHE  cache root (default ~/.cache/snapsentry): the moto venv, and the work
#                     directory bench-ebs/ (tree, image, moto log; removed at the start of a run)
#   CARGO_TARGET_DIR  default ~/.cache/snapsentry/target-bench
#
# Prints: the time and MB/s of the EBS scan (MB fetched / wall time, moto in the loop), the
# local-file scan time, and "blocks fetched / blocks listed / blocks the filesystem needed",
# the last being the 512 KiB blocks that hold any block ext4 marks used (from dumpe2fs's free
# block lists): metadata and file data, what a reader of every file would touch at most.
# moto is one Python process: the MB/s measures this reader against moto, not against AWS.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
SIZE_MB=${SIZE_MB:-3072}
CACHE=${SNAPSENTRY_CACHE:-$HOME/.cache/snapsentry}
WORK=$CACHE/bench-ebs
PY=$CACHE/venv/bin/python
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/snapsentry/target-bench}

for tool in mke2fs dumpe2fs python3 cargo; do
    command -v "$tool" >/dev/null || { echo "bench-ebs: $tool is missing" >&2; exit 2; }
done
[[ -x $PY ]] || { echo "bench-ebs: $PY missing; run scripts/toolchain.sh" >&2; exit 2; }

rm -rf -- "$WORK"
mkdir -p "$WORK"
# shellcheck source=scripts/lib/bench-image.sh
source "$REPO/scripts/lib/bench-image.sh"

echo "== build bench_ebs (release)" >&2
cargo build -q --release -p snapsentry-scanner --example bench_ebs
BENCH=$CARGO_TARGET_DIR/release/examples/bench_ebs

bench_image "$WORK" "$SIZE_MB"
# 512 KiB blocks (the EBS block size) holding any used ext4 block.
NEEDED=$(used_blocks "$IMAGE" $((512 * 1024)))

echo "== moto" >&2
PORT_FILE=$WORK/moto.port
setpriv --pdeathsig KILL -- "$PY" "$REPO/tests/moto/snapsentry_moto.py" --port-file "$PORT_FILE" \
    >"$WORK/moto.log" 2>&1 &
MOTO=$!
trap 'kill $MOTO 2>/dev/null || true' EXIT
for _ in $(seq 200); do [[ -s $PORT_FILE ]] && break; sleep 0.1; done
[[ -s $PORT_FILE ]] || { echo "bench-ebs: moto did not start; see $WORK/moto.log" >&2; exit 1; }
ENDPOINT=http://127.0.0.1:$(cat "$PORT_FILE")
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 \
    AWS_EC2_METADATA_DISABLED=true AWS_ENDPOINT_URL=$ENDPOINT

echo "== upload" >&2
t0=$(date +%s.%N)
SNAPSHOT=$("$PY" "$REPO/tests/moto/fleet.py" upload-snapshot --image "$IMAGE" \
    --endpoint "$ENDPOINT" --region us-east-1)
t1=$(date +%s.%N)
echo "uploaded $SNAPSHOT in $(python3 -c "print(f'{$t1 - $t0:.1f}')") s" >&2

echo "== scan" >&2
RESULT=$("$BENCH" --snapshot "$SNAPSHOT" --region us-east-1 --endpoint "$ENDPOINT" --image "$IMAGE")
echo "$RESULT" >"$WORK/result.json"

python3 - "$RESULT" "$NEEDED" "$SIZE_MB" <<'EOF'
import json, sys
r, needed, size_mb = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
e, i = r["ebs"], r["image"]
total = size_mb * 2**20 // e["blockSize"]
print(f"image: {size_mb} MiB ext4, {total} blocks of 512 KiB")
print(f"EBS scan: {e['seconds']:.1f} s, {e['bytesFetched'] / 1e6:.0f} MB fetched, "
      f"{e['fetchedMBps']:.1f} MB/s, {e['retries']} retries, {e['findings']} findings")
print(f"local scan: {i['seconds']:.1f} s, {i['findings']} findings, same findings: {i['sameFindings']}")
print(f"blocks fetched / blocks listed / blocks the filesystem needed: "
      f"{e['blocksFetched']} / {e['blocksListed']} / {needed}")
if e["errors"]:
    print("errors:", e["errors"])
sys.exit(0 if i["sameFindings"] and not e["errors"] else 1)
EOF
