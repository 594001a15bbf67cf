#!/usr/bin/env bash
# `make images`: snapsentry's two container images built on this machine, with no base image to pull —
# the same images as the Containerfile's `operator` and `scan` targets (`scratch` plus the file tree
# scripts/image-rootfs.sh writes: the binary, the shared libraries it links, the CA bundle, user
# 65532; the same OCI labels, user, PATH and entrypoint), assembled by buildah from the release
# binaries cargo builds here.
#
# Tags snapsentry-operator:<version> and snapsentry-scan:<version> in the local containers storage
# (podman sees them as localhost/…) and writes each as an OCI archive,
# $SNAPSENTRY_CACHE/images/<name>-<version>.oci.tar, which `podman load`, `ctr images import` or
# `kind load image-archive` read. <version> is the workspace version in Cargo.toml, the chart's
# appVersion. Prints the archives' paths on stdout.
#
# `--debug`: the same images from the debug binaries (`cargo build`, what `make test` already
# built), tagged <version>-debug (archives <name>-<version>-debug.oci.tar) so they never pass for
# a release. `make test-cluster` uses them: a release build of both binaries would add many minutes
# to CI for a test about the deployment, not about speed.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="${SNAPSENTRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/snapsentry}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
say() { printf '==> %s\n' "$*" >&2; }
die() {
	echo "images.sh: $*" >&2
	exit 1
}

say "Installing buildah, podman and runc (skipped when present)"
"$repo/scripts/toolchain.sh" --images

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"$/\1/p' "$repo/Cargo.toml")
[[ -n $version ]] || die "no version in [workspace.package] of $repo/Cargo.toml"

profile=release tag=$version cargo_profile=(--release)
case ${1:-} in
	"") ;;
	--debug) profile=debug tag=$version-debug cargo_profile=() ;;
	*) die "unknown argument $1 (usage: images.sh [--debug])" ;;
esac

say "Building snapsentry-operator and snapsentry-scan $version ($profile)"
# One package at a time: each binary gets its own features (the scanner none of the operator's
# control-plane clients), and each build reuses what `cargo build [--release] -p <package>` left.
for package in snapsentry-operator snapsentry-scanner; do
	cargo build "${cargo_profile[@]}" --locked -p "$package" --manifest-path "$repo/Cargo.toml"
done
bin="$CARGO_TARGET_DIR/$profile"

work=$(mktemp -d -t snapsentry-images.XXXXXX)
container=""
cleanup() {
	[[ -z $container ]] || buildah rm "$container" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

archives="$cache/images"
mkdir -p "$archives"

# image NAME DESCRIPTION: the image of the binary NAME, as the Containerfile's target builds it.
image() {
	local name=$1 description=$2
	local binary="$bin/$name"
	local printed
	printed=$("$binary" --version)
	[[ $printed == "$name $version" ]] || die "$name --version prints '$printed', not '$name $version'"
	"$repo/scripts/image-rootfs.sh" "$work/$name" "$binary"

	container=$(buildah from scratch)
	buildah copy --quiet "$container" "$work/$name/" / >/dev/null
	buildah config \
		--label "org.opencontainers.image.version=$version" \
		--label "org.opencontainers.image.source=https://github.com/snapsentry/snapsentry" \
		--label "org.opencontainers.image.url=https://snapsentry.io" \
		--label "org.opencontainers.image.licenses=Apache-2.0" \
		--label "org.opencontainers.image.vendor=snapsentry" \
		--label "org.opencontainers.image.title=$name" \
		--label "org.opencontainers.image.description=$description" \
		--env PATH=/usr/local/bin \
		--user 65532:65532 \
		--entrypoint "[\"/usr/local/bin/$name\"]" \
		"$container"
	buildah commit --quiet --rm --identity-label=false "$container" "localhost/$name:$tag" >/dev/null
	container=""
	local archive="$archives/$name-$tag.oci.tar"
	rm -f "$archive.partial"
	buildah push --quiet "localhost/$name:$tag" "oci-archive:$archive.partial:localhost/$name:$tag"
	mv -f "$archive.partial" "$archive"
	say "$name:$tag ($(du -h "$archive" | cut -f1)) -> $archive"
	echo "$archive"
}

image snapsentry-operator \
	"snapsentry's Kubernetes operator: schedules agentless secret scans of cloud VM disks"
image snapsentry-scan \
	"snapsentry's scanner: finds plaintext secrets on VM disk images without mounting them"
