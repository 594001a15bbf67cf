#!/usr/bin/env bash
# image-rootfs.sh DIR BINARY: the whole file tree of one of snapsentry's images, written under DIR —
# BINARY in /usr/local/bin, the shared libraries it links (as `ldd` resolves them, the dynamic loader
# at the path the binary names) and nothing else of the system but the CA bundle (the cloud SDKs
# verify HTTPS against the system's roots), /etc/passwd and /etc/group naming the non-root user 65532
# (`nonroot`, as distroless images spell it) and an empty /tmp.
#
# The one home of the images' contents: the Containerfile's build stage and `make images`
# (scripts/images.sh) both run it, so both images hold the same files.
set -euo pipefail

die() {
	echo "image-rootfs.sh: $*" >&2
	exit 1
}

root=${1:?usage: image-rootfs.sh DIR BINARY}
binary=${2:?usage: image-rootfs.sh DIR BINARY}
[[ -x $binary ]] || die "$binary is not an executable"
bundle=/etc/ssl/certs/ca-certificates.crt
[[ -s $bundle ]] || die "no CA bundle at $bundle (on Debian: apt-get install ca-certificates)"

install -d -m 0755 "$root/usr/local/bin" "$root/etc/ssl/certs"
# Symbols stay (a panic's backtrace names functions); the release profile's line tables go: the
# binary shrinks from over 100 MiB to about 25.
strip --strip-debug -o "$root/usr/local/bin/$(basename "$binary")" "$binary"
chmod 0755 "$root/usr/local/bin/$(basename "$binary")"

# `ldd` lines: `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)`, the loader as
# `/lib64/ld-linux-x86-64.so.2 (0x…)`, the kernel's `linux-vdso.so.1 (0x…)` (no file: skipped).
libraries=$(ldd "$binary" 2>&1) || {
	# A static binary carries everything itself.
	[[ $libraries == *"not a dynamic executable"* || $libraries == *"statically linked"* ]] \
		|| die "ldd $binary: $libraries"
	libraries=""
}
while read -r first arrow second _; do
	local_path=""
	if [[ $arrow == "=>" ]]; then
		local_path=$second
	elif [[ $first == /* ]]; then
		local_path=$first
	fi
	[[ -n $local_path ]] || continue
	[[ $local_path != "not" ]] || die "ldd $binary: $first is not found"
	install -d -m 0755 "$root$(dirname "$local_path")"
	# The file itself, not a symlink to it: the image has nothing else for a link to point at.
	install -m 0755 "$(readlink -f "$local_path")" "$root$local_path"
done <<<"$libraries"

install -m 0644 "$bundle" "$root/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/:/sbin/nologin\n' \
	>"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
chmod 0644 "$root/etc/passwd" "$root/etc/group"
install -d -m 1777 "$root/tmp"
