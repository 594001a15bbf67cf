# snapsentry — a newcomer needs two targets: `make demo` and `make test`.
#
# Build output and tool caches live outside the clone (~/.cache/snapsentry, Go's and Cargo's own
# caches), so a fresh clone, CI and later sessions reuse them.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
export SNAPSENTRY_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/snapsentry
export CARGO_TARGET_DIR ?= $(SNAPSENTRY_CACHE)/target

.PHONY: demo demo-image test test-cluster toolchain lint check crds build images images-test

## demo: the whole product locally: control plane + moto (AWS) + Azurite and a fake ARM (Azure) + a fake Compute Engine (GCP) + operator scanning a 4-machine, three-cloud fleet.
demo:
	scripts/demo.sh

## demo-image: the scanner alone: build a sample VM disk image with planted secrets and scan it.
demo-image:
	scripts/demo-image.sh

## test: install the test toolchain (idempotent), then format check, clippy, and every test.
test: toolchain lint
	cargo test --workspace --no-fail-fast

## test-cluster: the deployment on a real single-node cluster (needs root): builds the cluster (kubelet, containerd, kube-proxy, …) and the images from the debug binaries, then the test that helm-installs the chart and scans with real pods.
test-cluster:
	scripts/toolchain.sh --cluster
	scripts/images.sh --debug >/dev/null
	cargo test -p snapsentry-tests --test e2e -- --ignored cluster::

## toolchain: Debian tools, moto, and a Kubernetes control plane built from Go modules.
toolchain:
	scripts/toolchain.sh

## lint: cargo fmt --check and clippy with warnings as errors.
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

## crds: regenerate the committed CRD YAML (a test fails when it drifts).
crds:
	cargo run -q -p snapsentry-crds --bin crdgen > crds/snapsentry.io_crds.yaml
	mkdir -p charts/snapsentry/crds
	cp crds/snapsentry.io_crds.yaml charts/snapsentry/crds/crds.yaml

## build: release binaries (snapsentry-scan, snapsentry-operator, kubectl-snapsentry).
build:
	cargo build --release -p snapsentry-scanner -p snapsentry-operator -p kubectl-snapsentry

## images: the operator's and the scanner's container images (snapsentry-{operator,scan}:<version>), built here with buildah, no base image pulled; also written as OCI archives under $(SNAPSENTRY_CACHE)/images.
images:
	scripts/images.sh >/dev/null

## images-test: build the images, then run them under podman with the chart's security settings.
images-test: images
	cargo test -p snapsentry-tests --test e2e container_images -- --include-ignored
