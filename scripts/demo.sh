#!/usr/bin/env bash
# The local demo (`make demo`): the whole of snapsentry on one machine, no cloud account, no cluster.
#
#   1. installs what it needs (Debian tools, moto, a Kubernetes API server built from the official Go
#      modules; cached after the first run) and builds snapsentry;
#   2. starts a local control plane (etcd + kube-apiserver), moto (AWS: EC2, EBS direct, RDS, S3, STS)
#      and a local Job runner that plays the kubelet;
#   3. builds three disk images with freshly generated secrets (examples/demo/fleet-images.sh) and
#      turns them into an EC2 fleet in moto: web-01 (open to the internet), db-01, win-01 (Windows),
#      plus an RDS database;
#   4. runs the operator, applies examples/aws/scanpolicy.yaml with kubectl, waits for the scan and
#      prints what a user sees: kubectl get scanpolicies,scannedmachines,secretfindings,attackpaths,
#      recommendations;
#   5. checks that no snapsentry snapshot is left in "AWS", and stops and removes everything.
#
# Needs root for one step (the Windows image's NTFS filesystem is filled through an ntfs-3g mount).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="${SNAPSENTRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/snapsentry}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
ns=snapsentry
step() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }

if [[ $(id -u) != 0 ]]; then
	echo "demo: run as root (the Windows image is filled through an ntfs-3g mount)" >&2
	exit 2
fi

step "Installing tools (Debian packages, moto, kube-apiserver + etcd + kubectl; skipped when cached)"
note "the first run builds kube-apiserver from source and takes about 10 minutes"
"$repo/scripts/toolchain.sh"

step "Building snapsentry (operator, scanner, local environment)"
cargo build -q --manifest-path "$repo/Cargo.toml" -p snapsentry-operator -p snapsentry-scanner \
	-p snapsentry-tests --bins --example local-aws
bin="$CARGO_TARGET_DIR/debug"
export PATH="$bin:$PATH"

work=$(mktemp -d -t snapsentry-demo.XXXXXX)
env_pid="" operator_pid=""
cleanup() {
	step "Cleaning up: stopping the operator, the API server, moto and the Job runner; removing $work"
	[[ -n $operator_pid ]] && kill "$operator_pid" 2>/dev/null && wait "$operator_pid" 2>/dev/null
	[[ -n $env_pid ]] && exec 3>&- && wait "$env_pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

step "Starting a local control plane, moto and the Job runner"
mkfifo "$work/hold"
"$bin/examples/local-aws" "$work/env.d" "$ns" <"$work/hold" >"$work/env.log" 2>&1 &
env_pid=$!
exec 3>"$work/hold" # local-aws runs until this descriptor closes
for _ in $(seq 1 600); do
	grep -q '^ready' "$work/env.log" 2>/dev/null && break
	kill -0 "$env_pid" 2>/dev/null || { cat "$work/env.log" >&2; exit 1; }
	sleep 0.2
done
grep -q '^ready' "$work/env.log" || { echo "demo: the local environment did not start" >&2; exit 1; }
# shellcheck disable=SC1091
source "$work/env.d/env"
kubectl() { command kubectl --kubeconfig "$KUBECONFIG" "$@"; }
note "API server ready, CRDs installed; moto at $MOTO_ENDPOINT"

step "Building the fleet's disk images with freshly generated secrets"
rds=orders.c1demo.us-east-1.rds.amazonaws.com
"$repo/examples/demo/fleet-images.sh" "$work/images" "$rds"

step "Creating the EC2 fleet in moto: snapshots through the EBS direct write API, volumes, instances"
python="$cache/venv/bin/python"
sed -e "s|@IMAGES@|$work/images|g" -e "s|@RDS@|$rds|g" "$repo/examples/demo/fleet.json" >"$work/fleet.json"
"$python" "$repo/tests/moto/fleet.py" fleet --endpoint "$MOTO_ENDPOINT" --region us-east-1 \
	--spec "$work/fleet.json" >"$work/fleet.out.json"
"$python" - "$work/fleet.out.json" <<'PY'
import json, sys
fleet = json.load(open(sys.argv[1]))
for name, m in fleet["machines"].items():
    ip = m.get("publicIp") or "no public IP"
    print(f"    {name:8} {m['instanceId']}  {m['platform']:7}  {ip}  volumes: {len(m['volumes'])}", file=sys.stderr)
for db, r in fleet["rds"].items():
    print(f"    rds {db}: {r['address']}", file=sys.stderr)
PY

step "Running the operator (logs: $work/operator.log)"
SNAPSENTRY_NAMESPACE=$ns SNAPSENTRY_SCANNER_IMAGE=snapsentry-scan:demo SNAPSENTRY_LEADER_ELECTION=false \
	SNAPSENTRY_LISTEN=127.0.0.1:0 SNAPSENTRY_LOG_FORMAT=text SNAPSENTRY_LOG=info \
	"$bin/snapsentry-operator" >"$work/operator.log" 2>&1 &
operator_pid=$!

step "kubectl apply -f examples/aws/scanpolicy.yaml"
kubectl apply -f "$repo/examples/aws/scanpolicy.yaml"
note "the policy scans nightly (schedule \"0 2 * * *\"); the snapsentry.io/scan-now annotation asks for a scan now:"
note "kubectl annotate scanpolicy aws-production snapsentry.io/scan-now=\$(date +%s)"
kubectl annotate scanpolicy aws-production -n $ns "snapsentry.io/scan-now=$(date +%s)" >/dev/null

step "Waiting for the scan: inventory → snapshots → one scanner Job per instance → correlation"
for i in $(seq 1 600); do
	scanning=$(kubectl get sp aws-production -n $ns \
		-o jsonpath='{.status.conditions[?(@.type=="Scanning")].status}' 2>/dev/null || true)
	scan_id=$(kubectl get sp aws-production -n $ns -o jsonpath='{.status.scanId}' 2>/dev/null || true)
	[[ -n $scan_id && $scanning == False ]] && break
	kill -0 "$operator_pid" 2>/dev/null || { tail -n 30 "$work/operator.log" >&2; exit 1; }
	((i % 25 == 0)) && note "$(kubectl get sp aws-production -n $ns \
		-o jsonpath='{.status.conditions[?(@.type=="Scanning")].message}' 2>/dev/null || true)"
	sleep 0.4
done
if [[ $scanning != False ]]; then
	echo "demo: the scan did not finish; operator log:" >&2
	tail -n 40 "$work/operator.log" >&2
	exit 1
fi

step "kubectl get scanpolicies,scannedmachines,secretfindings,attackpaths,recommendations -n $ns"
kubectl get scanpolicies,scannedmachines,secretfindings,attackpaths,recommendations -n $ns

step "Queries are label selectors: secrets that open another VM (kubectl get sf -l snapsentry.io/target-kind=vm)"
kubectl get sf -n $ns -l snapsentry.io/target-kind=vm

step "Attack paths"
kubectl get ap -n $ns -o custom-columns='TITLE:.spec.title,ENTRY:.spec.entry.machine,TARGET:.spec.target.name'

step "Nothing left behind in AWS"
left=$("$python" - "$MOTO_ENDPOINT" <<'PY'
import boto3, sys
ec2 = boto3.client("ec2", endpoint_url=sys.argv[1], region_name="us-east-1")
snaps = ec2.describe_snapshots(OwnerIds=["self"],
    Filters=[{"Name": "tag-key", "Values": ["snapsentry.io/managed-by"]}])["Snapshots"]
print(len(snaps))
PY
)
note "snapshots tagged snapsentry.io/managed-by in moto: $left"
if [[ $left != 0 ]]; then
	echo "demo: snapshots were left behind" >&2
	exit 1
fi
findings=$(kubectl get sf -n $ns -o name | wc -l)
if ((findings == 0)); then
	echo "demo: no findings; operator log:" >&2
	tail -n 40 "$work/operator.log" >&2
	exit 1
fi
step "Done: $findings findings. Try it on your own images: make demo-image, or snapsentry-scan image DISK"
