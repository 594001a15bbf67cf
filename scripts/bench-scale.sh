#!/usr/bin/env bash
# The operator at scale (issues #5, #16): MACHINES image machines (default 1000; up to 16,000, in
# images providers of 1000) with FINDINGS secrets each (default 20) scanned end to end by the real snapsentry-operator binary and the real
# `snapsentry-scan job`, against a local etcd + kube-apiserver, with the harness's Job runner as
# kubelet + Job controller. Prints the time to finish a first scan and a second, steady-state
# scan (machines/s, findings/s), the operator's peak and final RSS, CPU time per process, the
# count, total bytes and largest object of every kind, etcd's database size and how long
# `kubectl get sf` takes at that size. See tests/examples/scale.rs. Each run's figures are also
# written as one JSON line to the run's result.json; with SCALE_RECORD=FILE that line is appended
# to FILE (docs/bench/scale.jsonl holds the recorded runs; scripts/plot-scale.py draws them).
#
# Usage:
#   scripts/bench-scale.sh [MACHINES [FINDINGS]]
# Environment:
#   SCALE_CONCURRENCY       the policy's concurrency (default 20)
#   SCALE_TIMEOUT_SECONDS   give up on a scan after this long (default 7200; 10,000 machines take ≈ 92 min)
#   SCALE_JOB_TTL_SECONDS   delete finished Jobs after this long, as a cluster's TTL controller
#                           does (default 60; 0 keeps them, and the harness's Job runner, which
#                           polls the list of Jobs, then costs more CPU than the operator)
#   SCALE_SCANS             2 (default): a first scan and a steady-state one; 1: the first only
#   SCALE_RECORD            append the run's result line to this file (e.g. docs/bench/scale.jsonl)
#   CARGO_TARGET_DIR        where cargo builds (default ./target)
#
# Builds snapsentry-operator, snapsentry-scan and the example (release profile, only those
# targets), then runs it. Logs (operator.log, one log per Job), the image and its tree are kept in
#   ${SNAPSENTRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/snapsentry}/bench-scale/run-<UTC time>/
# Needs scripts/toolchain.sh's control plane (etcd, kube-apiserver, kubectl) and mke2fs.
# Exit status: the example's (0 when both scans finished and every finding is there).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="${SNAPSENTRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/snapsentry}"
target="${CARGO_TARGET_DIR:-$repo/target}"
machines=${1:-1000}
findings=${2:-20}

case $machines$findings in
*[!0-9]*)
	sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
	;;
esac
command -v mke2fs >/dev/null || {
	echo "bench-scale: mke2fs not found (e2fsprogs); run scripts/toolchain.sh" >&2
	exit 2
}

cd "$repo"
export CARGO_TARGET_DIR="$target"
cargo build -q --release -p snapsentry-operator --bin snapsentry-operator
cargo build -q --release -p snapsentry-scanner --bin snapsentry-scan
cargo build -q --release -p snapsentry-tests --example scale

run="$cache/bench-scale/run-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$run"
echo "bench-scale: $(nproc) CPUs, $(free -g | awk '/^Mem:/ {print $2}') GiB, load $(cut -d' ' -f1-3 /proc/loadavg); output in $run" >&2
status=0
"$target/release/examples/scale" "$machines" "$findings" "$run" || status=$?
if [ -n "${SCALE_RECORD:-}" ] && [ -s "$run/result.json" ]; then
	cat "$run/result.json" >>"$SCALE_RECORD"
	echo "bench-scale: result appended to $SCALE_RECORD" >&2
fi
exit "$status"
