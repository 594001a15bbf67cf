#!/usr/bin/env bash
# The scanner alone (`make demo-image`): build a small VM disk the way a cloud image looks (GPT, an ext4 root
# partition named cloudimg-rootfs, qcow2 container) with secrets planted where real servers keep
# them, then scan it with snapsentry-scan — no mount, no privileges. Every secret is generated
# fresh by this script; none is real.
#
# `make demo` (scripts/demo.sh) is the whole product: control plane, moto, operator, a fleet.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="${SNAPSENTRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/snapsentry}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
say() { printf '\n==> %s\n' "$*" >&2; }

say "Installing the tools the demo uses (skipped when present)"
"$repo/scripts/toolchain.sh" --apt-only

say "Building snapsentry-scan"
cargo build --release -q -p snapsentry-scanner --manifest-path "$repo/Cargo.toml"
scan="$CARGO_TARGET_DIR/release/snapsentry-scan"

work=$(mktemp -d -t snapsentry-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
root="$work/root"

say "Planting secrets in a server's file tree ($root)"
rand() { tr -dc "$1" </dev/urandom | head -c "$2" || true; }
mkdir -p "$root"/{etc/ssh,root/.aws,home/deploy/.ssh,var/www/app,tmp}
ssh-keygen -q -t ed25519 -N '' -C deploy@web-01 -f "$root/home/deploy/.ssh/id_ed25519"
cp "$root/home/deploy/.ssh/id_ed25519.pub" "$root/home/deploy/.ssh/authorized_keys"
printf '[default]\naws_access_key_id = AKIA%s\naws_secret_access_key = %s\n' \
	"$(rand 'A-Z2-7' 16)" "$(rand 'A-Za-z0-9/+' 40)" >"$root/root/.aws/credentials"
printf 'db.internal:5432:app:app:%s\n' "$(rand 'A-Za-z0-9' 20)" >"$root/root/.pgpass"
printf 'ls\nmysql -u root -p%s -h db.internal\nexit\n' "$(rand 'A-Za-z0-9' 16)" >"$root/root/.bash_history"
printf 'DB_PASSWORD=%s\nAPI_KEY=${API_KEY}\n' "$(rand 'A-Za-z0-9' 24)" >"$root/var/www/app/.env"
printf 'web-01\n' >"$root/etc/hostname"
chmod 600 "$root/root/.aws/credentials" "$root/root/.pgpass" "$root/home/deploy/.ssh/id_ed25519"

say "Building a 96 MiB GPT disk with an ext4 root partition, as qcow2"
raw="$work/web-01.raw"
truncate -s 96M "$raw"
# -o: a fresh GPT. nodiscard: mke2fs would otherwise punch holes over the file, GPT included.
sgdisk -o -n 1:2048:0 -t 1:8300 -c 1:cloudimg-rootfs "$raw" >/dev/null
start=$((2048 * 512))
size_kib=$((($(stat -c %s "$raw") - start - 34 * 512) / 1024))
mke2fs -q -F -t ext4 -L cloudimg-rootfs -E offset=$start,nodiscard -d "$root" "$raw" "${size_kib}k"
qemu-img convert -O qcow2 "$raw" "$work/web-01.qcow2"

say "Scanning web-01.qcow2 (no mount, no privileges)"
# --exit-code 1: exit 1 when anything is found, so a demo that finds nothing fails loudly (3 and 4
# would mean that nothing, or only part, of the disk could be read).
status=0
"$scan" image --no-progress --exit-code 1 "$work/web-01.qcow2" || status=$?
if ((status != 1)); then
	echo "demo: expected findings in the planted image, scanner exited $status" >&2
	exit 1
fi
say "Same scan as JSON (the stable contract other tools parse): $scan image --format json web-01.qcow2"
"$scan" image --no-progress --format json "$work/web-01.qcow2" | head -c 1500
echo
say "Done. The image and tree were in $work and have been removed."
