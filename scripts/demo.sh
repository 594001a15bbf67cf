#!/usr/bin/env bash
# The local demo (`make demo`): the whole of snapsentry on one machine, no cloud account, no cluster.
#
#   1. installs what it needs (Debian tools, moto, Azurite, a Kubernetes API server built from the
#      official Go modules; cached after the first run) and builds snapsentry;
#   2. builds four disk images with freshly generated secrets (examples/demo/fleet-images.sh);
#   3. starts a local control plane (etcd + kube-apiserver), moto (AWS: EC2, EBS direct, RDS, S3,
#      STS), Azurite + the fake ARM of tests/azure (Azure: VMs, managed disks, snapshots, SAS, network),
#      the fake Compute Engine of tests/gcp (GCP: instances, project metadata, snapshots, disks) and
#      a local Job runner that plays the kubelet and the persistent-disk CSI driver; web-01 becomes
#      an Azure VM open to the internet (examples/demo/azure-fleet.json), db-01 and win-01
#      (Windows) an EC2 fleet in moto with an RDS database (examples/demo/fleet.json), api-01 a
#      Compute Engine instance whose project metadata authorizes web-01's SSH key
#      (examples/demo/gcp-fleet.json);
#   4. runs the operator, applies examples/demo/scanpolicy.yaml (one policy, three clouds) with
#      kubectl, waits for the scan and prints what a user sees: kubectl get scanpolicies,
#      scannedmachines,secretfindings,attackpaths,recommendations — with the SSH paths from the
#      Azure VM to the EC2 and the GCE instances that authorize its key;
#   5. checks that no snapsentry snapshot, disk or SAS grant is left in any cloud, and stops and
#      removes everything.
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

step "Installing tools (Debian packages, moto, Azurite, kube-apiserver + etcd + kubectl; skipped when cached)"
note "the first run builds kube-apiserver from source and takes about 10 minutes"
"$repo/scripts/toolchain.sh"

step "Building snapsentry (operator, scanner, local environment)"
cargo build -q --manifest-path "$repo/Cargo.toml" -p snapsentry-operator -p snapsentry-scanner \
	-p snapsentry-tests --bins --example local-cloud
bin="$CARGO_TARGET_DIR/debug"
export PATH="$bin:$PATH"

work=$(mktemp -d -t snapsentry-demo.XXXXXX)
env_pid="" operator_pid=""
cleanup() {
	step "Cleaning up: stopping the operator, the API server, moto, Azurite, the fake ARM, the fake Compute Engine and the Job runner; removing $work"
	[[ -n $operator_pid ]] && kill "$operator_pid" 2>/dev/null && wait "$operator_pid" 2>/dev/null
	[[ -n $env_pid ]] && exec 3>&- && wait "$env_pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

step "Building the fleet's disk images with freshly generated secrets"
rds=orders.c1demo.us-east-1.rds.amazonaws.com
"$repo/examples/demo/fleet-images.sh" "$work/images" "$rds"
# An Azure managed disk is a fixed VHD.
qemu-img convert -q -f raw -O vpc -o subformat=fixed,force_size=on \
	"$work/images/web-01.raw" "$work/images/web-01.vhd"

# The Azure app registration of the demo: fresh ids and client secret.
tenant=$(cat /proc/sys/kernel/random/uuid)
client_id=$(cat /proc/sys/kernel/random/uuid)
client_secret=$(tr -dc 'A-Za-z0-9' </dev/urandom | head -c 40 || true)
fill() {
	sed -e "s|@IMAGES@|$work/images|g" -e "s|@RDS@|$rds|g" -e "s|@TENANT@|$tenant|g" \
		-e "s|@CLIENT_ID@|$client_id|g" -e "s|@CLIENT_SECRET@|$client_secret|g" \
		-e "s|@ARM_ENDPOINT@|${ARM_ENDPOINT:-}|g" -e "s|@GCE_ENDPOINT@|${GCE_ENDPOINT:-}|g" \
		-e "s|@DEPLOY_KEY@|$deploy_key|g" "$1"
}
deploy_key=$(tr -d '\n' <"$work/images/web-01-deploy.pub")
fill "$repo/examples/demo/azure-fleet.json" >"$work/azure-fleet.json"
fill "$repo/examples/demo/gcp-fleet.json" >"$work/gcp-fleet.json"

step "Starting a local control plane, moto, Azurite + the fake ARM, the fake Compute Engine, and the Job runner"
note "web-01 becomes an Azure VM: its disk a page blob in Azurite, the VM, NIC, public IP and NSG in the fake ARM"
note "api-01 becomes a GCE instance; the project's metadata ssh-keys authorize web-01's key for user deploy"
mkfifo "$work/hold"
"$bin/examples/local-cloud" "$work/env.d" "$ns" "$work/azure-fleet.json" "$work/gcp-fleet.json" \
	<"$work/hold" >"$work/env.log" 2>&1 &
env_pid=$!
exec 3>"$work/hold" # local-cloud runs until this descriptor closes
for _ in $(seq 1 600); do
	grep -q '^ready' "$work/env.log" 2>/dev/null && break
	kill -0 "$env_pid" 2>/dev/null || { cat "$work/env.log" >&2; exit 1; }
	sleep 0.2
done
grep -q '^ready' "$work/env.log" || { echo "demo: the local environment did not start" >&2; exit 1; }
# shellcheck disable=SC1091
source "$work/env.d/env"
kubectl() { command kubectl --kubeconfig "$KUBECONFIG" "$@"; }
note "API server ready, CRDs installed; moto at $MOTO_ENDPOINT; the fake ARM at $ARM_ENDPOINT; the fake Compute Engine at $GCE_ENDPOINT"

step "Creating the EC2 fleet in moto: snapshots through the EBS direct write API, volumes, instances"
python="$cache/venv/bin/python"
fill "$repo/examples/demo/fleet.json" >"$work/fleet.json"
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

step "kubectl apply -f examples/demo/scanpolicy.yaml (one policy: AWS, Azure and GCP)"
kubectl create secret generic azure-demo-credentials -n $ns \
	--from-literal=clientSecret="$client_secret" >/dev/null
fill "$repo/examples/demo/scanpolicy.yaml" | kubectl apply -f -
note "the policy scans nightly (schedule \"0 2 * * *\"); the snapsentry.io/scan-now annotation asks for a scan now:"
note "kubectl annotate scanpolicy production snapsentry.io/scan-now=\$(date +%s)"
kubectl annotate scanpolicy production -n $ns "snapsentry.io/scan-now=$(date +%s)" >/dev/null

step "Waiting for the scan: inventory → snapshots → one scanner Job per instance → correlation"
for i in $(seq 1 600); do
	scanning=$(kubectl get sp production -n $ns \
		-o jsonpath='{.status.conditions[?(@.type=="Scanning")].status}' 2>/dev/null || true)
	scan_id=$(kubectl get sp production -n $ns -o jsonpath='{.status.scanId}' 2>/dev/null || true)
	[[ -n $scan_id && $scanning == False ]] && break
	kill -0 "$operator_pid" 2>/dev/null || { tail -n 30 "$work/operator.log" >&2; exit 1; }
	((i % 25 == 0)) && note "$(kubectl get sp production -n $ns \
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

step "Attack paths: the SSH key on the Azure VM opens the EC2 and the GCE instances that authorize it"
kubectl get ap -n $ns -o custom-columns='TITLE:.spec.title,ENTRY:.spec.entry.machine,FROM:.spec.cloud,TARGET:.spec.target.name,TO:.spec.target.cloud'
paths=$(kubectl get ap -n $ns -o jsonpath='{range .items[*]}{.spec.cloud}>{.spec.target.cloud}{"\n"}{end}')
for crossing in azure'>'aws azure'>'gcp; do
	if ! grep -qx "$crossing" <<<"$paths"; then
		echo "demo: no attack path $crossing; operator log:" >&2
		tail -n 40 "$work/operator.log" >&2
		exit 1
	fi
done

step "Nothing left behind in AWS, Azure or GCP"
left=$("$python" - "$MOTO_ENDPOINT" <<'PY'
import boto3, sys
ec2 = boto3.client("ec2", endpoint_url=sys.argv[1], region_name="us-east-1")
snaps = ec2.describe_snapshots(OwnerIds=["self"],
    Filters=[{"Name": "tag-key", "Values": ["snapsentry.io/managed-by"]}])["Snapshots"]
print(len(snaps))
PY
)
note "snapshots tagged snapsentry.io/managed-by in moto: $left"
azure_left=$(python3 - "$ARM_ENDPOINT" <<'PY'
import json, sys, urllib.request
state = json.load(urllib.request.urlopen(sys.argv[1] + "/_snapsentry/state"))
print(len(state["snapshots"]) + state["activeGrants"])
PY
)
note "snapshots and active SAS grants in the fake ARM: $azure_left"
gcp_left=$(python3 - "$GCE_ENDPOINT" <<'PY'
import json, sys, urllib.request
state = json.load(urllib.request.urlopen(sys.argv[1] + "/_snapsentry/state"))
print(sum(1 for kind in ("disks", "snapshots") for r in state[kind]
          if (r.get("labels") or {}).get("snapsentry-io-managed-by") == "snapsentry"))
PY
)
pv_left=$(kubectl get pv,pvc -A -o name 2>/dev/null | wc -l)
note "snapsentry disks and snapshots in the fake Compute Engine: $gcp_left; PersistentVolumes and claims: $pv_left"
if [[ $left != 0 || $azure_left != 0 || $gcp_left != 0 || $pv_left != 0 ]]; then
	echo "demo: snapshots, disks, volumes or grants were left behind" >&2
	exit 1
fi
findings=$(kubectl get sf -n $ns -o name | wc -l)
if ((findings == 0)); then
	echo "demo: no findings; operator log:" >&2
	tail -n 40 "$work/operator.log" >&2
	exit 1
fi
step "Done: $findings findings. Try it on your own images: make demo-image, or snapsentry-scan image DISK"
