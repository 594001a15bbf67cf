#!/usr/bin/env bash
# Builds (once) a stock Debian root with debootstrap and prints its path: the input of the
# stock-OS noise test (scanner-job/tests/stock_os.rs) and of scripts/bench-noise.sh.
#
#   scripts/lib/stock-root.sh [SUITE PACKAGE...]
#
# Without arguments: the small server `make test` scans (scripts/toolchain.sh builds it):
# bookworm minbase + openssh-server, ssl-cert, python3, ca-certificates, sudo.
#
# The root is cached under $SNAPSENTRY_CACHE/stock-os/<suite>-<hash of the sorted package set>/root,
# so a second call with the same suite and packages prints the path at once. Building needs root
# (debootstrap chroots to run the packages' maintainer scripts: that is what generates the SSH host
# keys and the ssl-cert snakeoil key) and the Debian mirror ($DEBIAN_MIRROR, default
# http://deb.debian.org/debian). Several callers may race: one builds under a lock, the others wait.
set -euo pipefail

die() {
	echo "stock-root.sh: $*" >&2
	exit 1
}

if [[ $# -eq 0 ]]; then
	set -- bookworm openssh-server ssl-cert python3 ca-certificates sudo
fi
suite=$1
shift
cache="${SNAPSENTRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/snapsentry}"
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
packages=$(printf '%s\n' "$@" | sort -u | paste -sd, -)
key=$(printf '%s %s' "$suite" "$packages" | sha256sum | cut -c1-12)
dir="$cache/stock-os/$suite-$key"
root="$dir/root"

mkdir -p "$dir"
exec 8>"$dir/.lock"
flock 8 || die "cannot lock $dir/.lock"
if [[ -f $dir/done ]]; then
	echo "$root"
	exit 0
fi
command -v debootstrap >/dev/null || die "debootstrap is not installed (scripts/toolchain.sh installs it)"
[[ $(id -u) == 0 ]] || die "debootstrap needs root"
rm -rf "$root" "$dir/build"
include=()
[[ -n $packages ]] && include=(--include="$packages")
echo "stock-root: debootstrap $suite minbase + ${packages:-nothing} into $dir (once; cached)" >&2
if ! DEBIAN_FRONTEND=noninteractive debootstrap --variant=minbase "${include[@]}" \
	"$suite" "$dir/build" "$mirror" >"$dir/debootstrap.log" 2>&1; then
	tail -n 30 "$dir/debootstrap.log" >&2
	die "debootstrap failed (log: $dir/debootstrap.log)"
fi
# What a scan should not need: downloaded .debs and apt lists (they are not installed content).
rm -rf "$dir/build/var/cache/apt/archives/"*.deb "$dir/build/var/lib/apt/lists/"*_Packages
mv "$dir/build" "$root"
printf '%s\n%s\n' "$suite" "$packages" >"$dir/done"
echo "$root"
