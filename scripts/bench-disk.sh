#!/usr/bin/env bash
# Disk-reading benchmark: `snapsentry-scan ls --sha256` on ext4, XFS and qcow2 images against
# `find MNT -type f -print0 | xargs -0 -P<threads> sha256sum` on the same filesystem
# loop-mounted read-only (and the same pipeline with `openssl dgst -sha256 -r`, whose SHA-NI
# code hashes as fast as snapsentry's, so that ratio compares reading alone).
#
# Usage (as root: needs loop mounts, mkfs.xfs and dropping the page cache):
#   scripts/bench-disk.sh            # SIZE_GB=5 by default
#   SIZE_GB=1 scripts/bench-disk.sh  # quick run
#   scripts/bench-disk.sh clean      # delete the cached trees and images
#
# Environment:
#   SIZE_GB           target size of the file tree in GB (10^9 bytes; default 5, decimals allowed)
#   SNAPSENTRY_CACHE  cache root (default ~/.cache/snapsentry); everything lives in
#                     $SNAPSENTRY_CACHE/bench-disk/:
#                       tree-<N>g/        the source tree (copies of /usr + pseudo-random blobs)
#                       ext4-<N>g.img     ext4 image made with `mke2fs -d`
#                       xfs-<N>g.img      XFS image (sparse file, filled through a loop mount)
#                       ext4-<N>g.qcow2   qemu-img conversion of the ext4 image
#                       run-<N>g/         outputs of the last run (hash lists, JSON, timings)
#                     about 4x SIZE_GB of disk per size. Built once, reused by later runs;
#                     `scripts/bench-disk.sh clean` (or rm -rf that directory) removes it all.
#   SNAPSENTRY_BIN    snapsentry-scan binary to measure (default: build it with
#                     `cargo build --release -p snapsentry-scanner` and use
#                     ${CARGO_TARGET_DIR:-target}/release/snapsentry-scan)
#   WARM=0            skip the warm-cache runs
#   BUILD_ONLY=1      build the tree and the images, measure nothing
#   MANY_FILES=N      also measure peak RSS on an ext4 image holding N empty files (1000 per
#                     directory; cached as many-<N>.img, ~2 GB for a million): the memory of
#                     `ls` grows with the number of files, not with their bytes, so this is the
#                     case for the 512 MiB limit (e.g. MANY_FILES=1000000; off by default)
#
# Both sides use the same parallelism: `ls --sha256` hashes with
# available_parallelism() clamped to 1..8 threads (scanner-job/src/ls/hash.rs), so the baseline runs
# `xargs -P` with `nproc` clamped the same way. Cold runs drop the page cache first
# (`sync; echo 3 > /proc/sys/vm/drop_caches`), so both sides read from disk.
#
# Prints a Markdown table (wall times, ratio snapsentry/baseline, peak RSS) and exits 1 if a
# peak RSS reaches 512 MiB or if the (path, sha256) set of snapsentry differs from the mounted
# baseline's.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
SIZE_GB=${SIZE_GB:-5}
CACHE=${SNAPSENTRY_CACHE:-$HOME/.cache/snapsentry}/bench-disk
RSS_LIMIT_MIB=512
WARM=${WARM:-1}

if [[ ${1:-} == clean ]]; then
    if grep -qs " $CACHE/" /proc/mounts; then
        echo "bench-disk: something is still mounted under $CACHE; unmount it first" >&2
        exit 1
    fi
    rm -rf -- "$CACHE"
    echo "removed $CACHE"
    exit 0
fi

[[ $(id -u) == 0 ]] || { echo "bench-disk: run as root (loop mounts, drop_caches)" >&2; exit 2; }
for tool in mke2fs mkfs.xfs qemu-img openssl python3 /usr/bin/time sha256sum losetup; do
    command -v "$tool" >/dev/null || { echo "bench-disk: $tool not found" >&2; exit 2; }
done

TAG="${SIZE_GB}g"
TREE=$CACHE/tree-$TAG
EXT4=$CACHE/ext4-$TAG.img
XFS=$CACHE/xfs-$TAG.img
QCOW=$CACHE/ext4-$TAG.qcow2
RUN=$CACHE/run-$TAG
mkdir -p "$CACHE" "$RUN"

MOUNTS=()
cleanup() {
    local m
    for m in "${MOUNTS[@]}"; do
        mountpoint -q "$m" && umount "$m" || true
        rmdir "$m" 2>/dev/null || true
    done
}
trap cleanup EXIT

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
now() { date +%s.%N; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# Same thread count as ls.rs: available_parallelism().clamp(1, 8).
THREADS=$(nproc)
((THREADS < 1)) && THREADS=1
((THREADS > 8)) && THREADS=8

# --- 1. the tree -----------------------------------------------------------------------------
TARGET_BYTES=$(awk -v g="$SIZE_GB" 'BEGIN { printf "%.0f", g * 1e9 }')  # %d overflows in mawk
if [[ ! -e $TREE.done ]]; then
    log "building tree $TREE (~$SIZE_GB GB): 3 slices of /usr + pseudo-random blobs"
    rm -rf -- "$TREE"
    mkdir -p "$TREE"
    # 70% of the target from /usr: three copies, each a different rotating slice of /usr's files
    # (sorted by path, so each copy keeps whole directories: many small files, some big ones).
    python3 - "$TREE" "$TARGET_BYTES" <<'EOF'
import os, sys
tree, target = sys.argv[1], int(sys.argv[2])
entries = []
for root, dirs, files in os.walk("/usr"):
    dirs.sort()
    for name in sorted(files):
        p = os.path.join(root, name)
        if any(c in p for c in "\n\t\\"):
            continue
        try:
            st = os.lstat(p)
        except OSError:
            continue
        if os.path.islink(p):
            entries.append((p, 0))
        elif os.path.isfile(p) and os.access(p, os.R_OK):
            entries.append((p, st.st_size))
copies = 3
budget = int(target * 0.7) // copies
n = len(entries)
for c in range(copies):
    start = c * n // copies
    total, picked, i = 0, [], 0
    while total < budget and i < n:
        p, size = entries[(start + i) % n]
        i += 1
        if total + size > budget * 1.02:
            continue
        picked.append(p.lstrip("/"))
        total += size
    with open(os.path.join(tree, f"../.list-{c}"), "w") as f:
        f.write("\0".join(picked) + "\0")
    print(f"copy{c}: {len(picked)} entries, {total / 1e9:.2f} GB", file=sys.stderr)
EOF
    for c in 0 1 2; do
        mkdir -p "$TREE/copy$c"
        tar -C / --null -T "$CACHE/.list-$c" -cf - | tar -C "$TREE/copy$c" -xpf -
        rm -f "$CACHE/.list-$c"
    done
    used=$(du -sb "$TREE" | cut -f1)
    mkdir -p "$TREE/data"
    i=0
    while ((used < TARGET_BYTES)); do
        chunk=$((TARGET_BYTES - used))
        ((chunk > 512 * 1024 * 1024)) && chunk=$((512 * 1024 * 1024))
        head -c "$chunk" /dev/urandom >"$TREE/data/blob-$i.bin"
        used=$((used + chunk))
        i=$((i + 1))
    done
    sync
    touch "$TREE.done"
fi
TREE_BYTES=$(du -sb "$TREE" | cut -f1)
# Images: tree + 20% + 512 MiB for metadata, journal and slack.
IMG_MIB=$(((TREE_BYTES * 12 / 10) / 1048576 + 512))

# --- images ----------------------------------------------------------------------------------
if [[ ! -e $EXT4.done ]]; then
    log "making $EXT4 (${IMG_MIB} MiB, mke2fs -t ext4 -d)"
    rm -f "$EXT4"
    mke2fs -q -F -t ext4 -i 8192 -d "$TREE" "$EXT4" "${IMG_MIB}M"
    sync
    touch "$EXT4.done"
fi
if [[ ! -e $XFS.done ]]; then
    log "making $XFS (${IMG_MIB} MiB, mkfs.xfs + loop mount + cp -a)"
    rm -f "$XFS"
    truncate -s "${IMG_MIB}M" "$XFS"
    mkfs.xfs -q -f "$XFS"
    m=$(mktemp -d "$CACHE/mnt.XXXXXX")
    MOUNTS+=("$m")
    mount -o loop "$XFS" "$m"
    cp -a "$TREE/." "$m/"
    umount "$m"
    sync
    touch "$XFS.done"
fi
if [[ ! -e $QCOW.done ]]; then
    log "making $QCOW (qemu-img convert -O qcow2)"
    rm -f "$QCOW"
    qemu-img convert -O qcow2 "$EXT4" "$QCOW"
    sync
    touch "$QCOW.done"
fi

if [[ ${BUILD_ONLY:-0} == 1 ]]; then
    log "images ready in $CACHE"
    exit 0
fi

# --- snapsentry binary -----------------------------------------------------------------------
if [[ -z ${SNAPSENTRY_BIN:-} ]]; then
    log "building snapsentry-scan (release)"
    (cd "$REPO" && cargo build --release -q -p snapsentry-scanner)
    SNAPSENTRY_BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/snapsentry-scan
fi
[[ -x $SNAPSENTRY_BIN ]] || { echo "bench-disk: $SNAPSENTRY_BIN not executable" >&2; exit 2; }

# --- 2. measurements -------------------------------------------------------------------------
# Results, one line per run: image cache files gb base_s base_cpu ss_s ss_cpu rss_mib diffs
RESULTS=$RUN/results.tsv
: >"$RESULTS"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# Baselines on the loop-mounted image, two hashers over the same `find | xargs -P` pipeline:
#   sha256sum  the command of the issue (coreutils 9.1: portable C SHA-256, no SHA-NI);
#   openssl    `openssl dgst -sha256 -r` (OpenSSL uses the SHA-NI instructions, like the sha2
#              crate in snapsentry), i.e. the same hashing cost on both sides: the like-for-like
#              reading comparison.
declare -A BASE_S BASE_CPU BASE_MNT

# baseline IMAGE FSTYPE LABEL: mount read-only, time each hasher cold (then warm). The cold
# sha256sum output is kept in $RUN/base-LABEL.sha for the correctness check.
baseline() {
    local img=$1 fstype=$2 label=$3 m opts=ro,loop t0 t1 hasher phase out key
    [[ $fstype == xfs ]] && opts=ro,loop,norecovery
    [[ $fstype == ext4 ]] && opts=ro,loop,noload
    m=$(mktemp -d "$CACHE/mnt.XXXXXX")
    MOUNTS+=("$m")
    mount -t "$fstype" -o "$opts" "$img" "$m"
    BASE_MNT[$label]=$m
    for hasher in sha256sum openssl; do
        for phase in cold warm; do
            [[ $phase == warm && $WARM != 1 ]] && continue
            out=/dev/null
            [[ $hasher == sha256sum && $phase == cold ]] && out=$RUN/base-$label.sha
            [[ $phase == cold ]] && drop_caches
            log "$label baseline $hasher $phase"
            local cmd=(sha256sum)
            [[ $hasher == openssl ]] && cmd=(openssl dgst -sha256 -r)
            t0=$(now)
            /usr/bin/time -f '%U %S' -o "$RUN/base-$label.cpu" sh -c \
                'm=$1 p=$2; shift 2; find "$m" -type f -print0 | xargs -0 -P"$p" "$@"' \
                sh "$m" "$THREADS" "${cmd[@]}" >"$out"
            t1=$(now)
            key=$label/$hasher/$phase
            BASE_S[$key]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
            BASE_CPU[$key]=$(awk '{ printf "%.2f", $1 + $2 }' "$RUN/base-$label.cpu")
        done
    done
    umount "$m"
    rmdir "$m"
}

# snap IMAGE LABEL PHASE: time `snapsentry-scan ls --sha256 --format json`; sets SS_S SS_CPU SS_RSS.
snap() {
    local img=$1 label=$2 phase=$3 out t0 t1
    out=$RUN/ss-$label.json
    [[ $phase == warm ]] && out=/dev/null
    [[ $phase == cold ]] && drop_caches
    log "$label snapsentry $phase"
    t0=$(now)
    /usr/bin/time -v -o "$RUN/ss-$label-$phase.time" \
        "$SNAPSENTRY_BIN" ls --sha256 --format json "$img" >"$out" 2>"$RUN/ss-$label-$phase.err"
    t1=$(now)
    SS_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    SS_CPU=$(awk -F': ' '/User time|System time/ { s += $2 } END { printf "%.2f", s }' \
        "$RUN/ss-$label-$phase.time")
    SS_RSS=$(awk -F': ' '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }' \
        "$RUN/ss-$label-$phase.time")
    if [[ -s $RUN/ss-$label-$phase.err ]]; then
        log "$label: snapsentry wrote $(wc -l <"$RUN/ss-$label-$phase.err") lines on stderr (see $RUN/ss-$label-$phase.err)"
    fi
}

# compare BASE_LABEL SS_LABEL: sets FILES GB DIFFS (count of differing (path, sha256) pairs).
compare() {
    read -r FILES GB DIFFS < <(python3 - "$RUN/base-$1.sha" "$RUN/ss-$2.json" "${BASE_MNT[$1]}" \
        "$RUN/diff-$2.txt" <<'EOF'
import json, sys
base_path, ss_path, mnt, diff_path = sys.argv[1:]
base = set()
with open(base_path, encoding="utf-8", errors="surrogateescape") as f:
    for line in f:
        line = line.rstrip("\n")
        if line.startswith("\\"):  # sha256sum escapes \ and newline in names
            line = line[1:].replace("\\n", "\n").replace("\\\\", "\\")
        digest, path = line[:64], line[66:]
        assert path.startswith(mnt + "/"), path
        base.add((path[len(mnt):], digest))
with open(ss_path, encoding="utf-8", errors="surrogateescape") as f:
    doc = json.load(f)
ss, total = set(), 0
for row in doc["files"]:
    if row["kind"] == "file":
        ss.add((row["path"], row["sha256"]))
        total += row["size"]
only_base = sorted(base - ss)
only_ss = sorted(ss - base, key=lambda x: (x[0], x[1] or ""))
with open(diff_path, "w", encoding="utf-8", errors="surrogateescape") as f:
    for p, d in only_base:
        f.write(f"- {d}  {p}\n")
    for p, d in only_ss:
        f.write(f"+ {d}  {p}\n")
print(len(base), f"{total / 1e9:.2f}", len(only_base) + len(only_ss))
EOF
    )
    if ((DIFFS > 0)); then
        log "$2: $DIFFS (path, sha256) differences with the mounted baseline, see $RUN/diff-$2.txt"
    fi
}

record() { # image base_label phase
    local b=$2 p=$3
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$p" "$FILES" "$GB" \
        "${BASE_S[$b/sha256sum/$p]}" "${BASE_CPU[$b/sha256sum/$p]}" \
        "${BASE_S[$b/openssl/$p]}" "${BASE_CPU[$b/openssl/$p]}" \
        "$SS_S" "$SS_CPU" "$SS_RSS" "$DIFFS" >>"$RESULTS"
}

for spec in "ext4:$EXT4" "xfs:$XFS"; do
    fstype=${spec%%:*}
    img=${spec#*:}
    baseline "$img" "$fstype" "$fstype"
    snap "$img" "$fstype" cold
    compare "$fstype" "$fstype"
    record "$fstype raw" "$fstype" cold
    if [[ $WARM == 1 ]]; then
        snap "$img" "$fstype" warm
        record "$fstype raw" "$fstype" warm
    fi
done

# qcow2: the same ext4 filesystem inside a qcow2 container; the baseline is the raw ext4 mount.
snap "$QCOW" qcow2 cold
compare ext4 qcow2
record "ext4 qcow2" ext4 cold
if [[ $WARM == 1 ]]; then
    snap "$QCOW" qcow2 warm
    record "ext4 qcow2" ext4 warm
fi

# Many small files: peak RSS only (no baseline; all hashes are the empty file's).
MANY_FILES=${MANY_FILES:-0}
if ((MANY_FILES > 0)); then
    MANY=$CACHE/many-$MANY_FILES.img
    if [[ ! -e $MANY.done ]]; then
        log "making $MANY ($MANY_FILES empty files, mke2fs -d)"
        rm -rf -- "$MANY.tree" "$MANY"
        python3 - "$MANY.tree" "$MANY_FILES" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d, f = divmod(i, 1000)
    p = f"{root}/srv/app/node_modules/package-{d:04d}/lib"
    if f == 0:
        os.makedirs(p, exist_ok=True)
    open(f"{p}/module-{d:04d}-{f:04d}.js", "w").close()
EOF
        mke2fs -q -F -t ext4 -N $((MANY_FILES + MANY_FILES / 10 + 1000)) -d "$MANY.tree" "$MANY" \
            $((MANY_FILES / 1000 + 1024))M
        rm -rf -- "$MANY.tree"
        sync
        touch "$MANY.done"
    fi
    snap "$MANY" many cold
    FILES=$(grep -c '"kind": "file"' "$RUN/ss-many.json" || true)
    printf '%s\t%s\t%s\t%s\t-\t-\t-\t-\t%s\t%s\t%s\t-\n' "ext4 $MANY_FILES empty files" cold \
        "$FILES" 0.00 "$SS_S" "$SS_CPU" "$SS_RSS" >>"$RESULTS"
fi

# --- report ----------------------------------------------------------------------------------
ratio() { [[ $2 == - ]] && { echo -; return; }; awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo
echo "SIZE_GB=$SIZE_GB, $(nproc) CPUs, $THREADS hashing threads on both sides, $(date -u +%FT%TZ)"
echo "snapsentry: $SNAPSENTRY_BIN"
echo "load average before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "wall seconds (CPU seconds user+sys); ratio = snapsentry / baseline, < 1 means snapsentry is faster"
echo
echo "| image | cache | files | GB | find+sha256sum s | find+openssl s | snapsentry s | ratio vs sha256sum | ratio vs openssl | snapsentry peak RSS MiB | diffs |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
fail=0
while IFS=$'\t' read -r image cache files gb bs bcpu bo bocpu ss scpu rss diffs; do
    bcell=$bs ocell=$bo
    [[ $bs != - ]] && bcell="$bs ($bcpu)" && ocell="$bo ($bocpu)"
    echo "| $image | $cache | $files | $gb | $bcell | $ocell | $ss ($scpu) |" \
        "$(ratio "$ss" "$bs") | $(ratio "$ss" "$bo") | $rss | $diffs |"
    if ((rss >= RSS_LIMIT_MIB)); then fail=1; fi
    if [[ $diffs != - ]] && ((diffs > 0)); then fail=1; fi
done <"$RESULTS"
echo
if ((fail)); then
    echo "FAIL: peak RSS >= $RSS_LIMIT_MIB MiB or (path, sha256) differences (details in $RUN)"
    exit 1
fi
echo "OK: peak RSS < $RSS_LIMIT_MIB MiB and snapsentry's (path, sha256) set equals the mounted baseline's"
