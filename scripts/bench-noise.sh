#!/usr/bin/env bash
# Noise on a stock OS (issue 13, cause 6): a debootstrap bookworm root with the issue's server
# package set (apache2, php, python3, nodejs, ruby, openjdk, postgresql, mariadb, docker.io,
# awscli; nothing planted), scanned as a directory twice:
#
#   before  with the root's dpkg database hidden (/var/lib/dpkg renamed for the run): every
#           finding at its rule's severity, as a scanner that does not read it reports
#   after   as shipped: findings in files a package installed and nobody changed are `info`
#
# and prints the findings by severity for both, then every finding still at medium or above.
# The goal is zero at medium or above with the SSH host keys and the snakeoil key still listed.
#
# Usage (as root: debootstrap chroots):
#   scripts/bench-noise.sh [--snapsentry PATH]     (default: a release build of this checkout)
#
# The root (~1.5 GB) is built once by scripts/lib/stock-root.sh and cached under
# ${SNAPSENTRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/snapsentry}/stock-os/. Each run's two
# reports are kept next to it (report-before.json, report-after.json).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
snapsentry=""
packages=(apache2 php python3 nodejs ruby openjdk-17-jre-headless postgresql mariadb-server
	docker.io awscli openssh-server ssl-cert
	# debootstrap resolves no virtual packages: what provides those awscli needs.
	python3-cffi-backend)

die() {
	echo "bench-noise.sh: $*" >&2
	exit 2
}

while [[ $# -gt 0 ]]; do
	case $1 in
	--snapsentry)
		snapsentry=$2
		shift 2
		;;
	*) die "unknown argument $1" ;;
	esac
done

root=$("$repo/scripts/lib/stock-root.sh" bookworm "${packages[@]}") || die "no stock root"
dir=$(dirname "$root")
if [[ -z $snapsentry ]]; then
	(cd "$repo" && cargo build -q --release -p snapsentry-scanner) || die "cargo build failed"
	snapsentry="${CARGO_TARGET_DIR:-$repo/target}/release/snapsentry-scan"
fi
[[ -x $snapsentry ]] || die "$snapsentry is not executable"

scan() {
	# Exit 0 (no --exit-code): a failed scan is an error, findings are not.
	"$snapsentry" dir "$root" --format json --no-progress >"$1" || die "scan failed"
}

# Hide the dpkg database for the "before" run, under the root's lock, restoring it whatever
# happens.
exec 8>"$dir/.lock"
flock 8 || die "cannot lock $dir/.lock"
restore() {
	if [[ -d $root/var/lib/dpkg.bench-off ]]; then
		mv "$root/var/lib/dpkg.bench-off" "$root/var/lib/dpkg"
	fi
}
trap restore EXIT
mv "$root/var/lib/dpkg" "$root/var/lib/dpkg.bench-off"
scan "$dir/report-before.json"
restore
scan "$dir/report-after.json"

python3 - "$dir/report-before.json" "$dir/report-after.json" <<'PY'
import json, sys
order = ["critical", "high", "medium", "low", "info"]
reports = [json.load(open(p)) for p in sys.argv[1:]]
print(f"stock Debian bookworm, {reports[1]['stats']['files']} files, "
      f"{reports[1]['stats']['bytesScanned'] / 2**20:.0f} MiB")
print("| run | " + " | ".join(order) + " | total | medium or above |")
print("|---|" + "---|" * (len(order) + 2))
for name, r in zip(["before (no dpkg database)", "after"], reports):
    counts = {s: 0 for s in order}
    for f in r["findings"]:
        counts[f["severity"]] += 1
    loud = sum(counts[s] for s in order[:3])
    print(f"| {name} | " + " | ".join(str(counts[s]) for s in order)
          + f" | {len(r['findings'])} | {loud} |")
after = reports[1]["findings"]
print("\nstill at medium or above:")
for f in after:
    if f["severity"] in order[:3]:
        pkg = (f["metadata"].get("package") or {})
        print(f"  {f['severity']:8} {f['ruleId']:28} {f['path']}:{f['line']} {pkg.get('name', '')} {pkg.get('state', '')}")
print("\ninstall-generated keys:")
for f in after:
    if f["path"].startswith("/etc/ssh/ssh_host_") or "snakeoil" in f["path"]:
        print(f"  {f['severity']:8} {f['ruleId']:28} {f['path']}")
PY
