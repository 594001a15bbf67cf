# Shared by the disk-read benchmarks (bench-ebs.sh, bench-azure.sh); sourced, not run.
#
# bench_image WORK SIZE_MB: builds $WORK/disk.img, a SIZE_MB MiB ext4 filesystem about 2/3 full of
# readable files copied from /usr (whole directories, sorted, so every run copies the same) plus
# one planted AWS key, made by `mke2fs -d`; sets IMAGE to its path.
# used_blocks IMAGE BYTES: prints how many BYTES-sized blocks of the image hold any block ext4
# marks used (from dumpe2fs's free-block lists): metadata and file data, what a reader of every
# file would touch at most.

bench_image() {
    local WORK=$1 SIZE_MB=$2
    mkdir -p "$WORK/tree"
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
}

used_blocks() {
    dumpe2fs "$1" 2>/dev/null | python3 -c '
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
per = max(1, int(sys.argv[1]) // bs)
print(sum(1 for i in range(0, count, per) if 0 in free[i:i + per]))
' "$2"
}
