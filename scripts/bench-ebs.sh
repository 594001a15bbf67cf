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
mkdir -p "$WORK/tree"

echo "== build bench_ebs (release)" >&2
cargo build -q --release -p snapsentry-scanner --example bench_ebs
BENCH=$CARGO_TARGET_DIR/release/examples/bench_ebs

echo "== tree: $((SIZE_MB * 2 / 3)) MiB of /usr" >&2
# Whole directories of /usr until about 2/3 of the filesystem is used; readable regular files only.
python3 - "$WORK/tree" $((SIZE_MB * 2 / 3 * 1024 * 1024)) <<'EOF'
import os, shutil, sys
dest, budget = sys.argv[1], int(sys.argv[2])
used = 0
for root, dirs, files in os.walk("/usr"):
    dirs.sort()
    for name in sorted(files):
        src = os.path.join(root, name)
        try:
            if os.path.islink(src) or not os.path.isfile(src):
                continue
            size = os.path.getsize(src)
            if used + size > budget:
                continue
            dst = os.path.join(dest, os.path.relpath(src, "/"))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copyfile(src, dst)
            used += size
        except OSError:
            pass
    if used >= budget * 0.98:
        break
print(f"copied {used / 2**20:.0f} MiB", file=sys.stderr)
EOF
# A planted secret, so the scan has something to find.
mkdir -p "$WORK/tree/root/.aws"
printf '[default]\naws_access_key_id = AKIAWB5WKH7DNSIPZZ7F\naws_secret_access_key = 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\n' \
    >"$WORK/tree/root/.aws/credentials"

echo "== image: ${SIZE_MB} MiB ext4" >&2
IMAGE=$WORK/disk.img
mke2fs -q -F -t ext4 -E nodiscard -d "$WORK/tree" "$IMAGE" "${SIZE_MB}M" >&2
rm -rf -- "$WORK/tree"

# 512 KiB blocks holding any used ext4 block, from the free-block lists of dumpe2fs.
NEEDED=$(dumpe2fs "$IMAGE" 2>/dev/null | python3 -c '
import re, sys
text = sys.stdin.read()
bs = int(re.search(r"^Block size:\s+(\d+)", text, re.M).group(1))
count = int(re.search(r"^Block count:\s+(\d+)", text, re.M).group(1))
free = bytearray(count)
for line in re.findall(r"^\s+Free blocks: (.*)$", text, re.M):
    for part in filter(None, (p.strip() for p in line.split(","))):
        a, _, b = part.partition("-")
        a = int(a); b = int(b or a)
        free[a:b + 1] = b"\x01" * (b - a + 1)
per = 512 * 1024 // bs
print(sum(1 for i in range(0, count, per) if 0 in free[i:i + per]))
')

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
