//! The deployment on a real single-node cluster (`snapsentry_tests::cluster`: kube-apiserver,
//! controller-manager, scheduler, containerd with runc, kubelet, kube-proxy): the container images
//! imported into containerd, the chart installed with `helm install`, the operator Deployment
//! becoming Ready, and a ScanPolicy of the images provider scanned by real scanner Job pods that
//! read an ext4 disk from the claim the chart's Jobs mount. It proves what the process-based Job
//! runner of the other tests cannot: the pods run under the chart's security settings (read back
//! from the pod and from the OCI spec containerd gave runc), the service accounts and RBAC work
//! with tokens the kubelet mounts, pods reach the API server through the `kubernetes` Service, the
//! Job controller fails a Job whose pod failed (the operator's Jobs allow no retry,
//! `backoffLimit: 0`) and the TTL controller deletes finished Jobs. At the end no planted value is
//! in any object, Event or container log.
//!
//! Ignored by default: it needs root and what `make test-cluster` builds first (the cluster's
//! binaries, `scripts/toolchain.sh --cluster`, and the images from the debug binaries,
//! `scripts/images.sh --debug`). `make test-cluster` runs it; so does `.ci/run`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use snapsentry_crds::{MachinePhase, ScanPolicy, ScannedMachine, SecretFinding};
use snapsentry_tests::cluster::Cluster;
use snapsentry_tests::controlplane::{ControlPlane, cache_dir, create_namespace};
use snapsentry_tests::process::ok;
use snapsentry_tests::repo;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const NS: &str = "snapsentry";
const CLAIM: &str = "vm-images";
/// The Job TTL the chart is installed with: short, so the test sees the TTL controller act, yet
/// long enough that neither Job (nor its pod, whose container runc's spec is read from) is gone
/// between the first Job's end and the test reading them after the scan's finish.
const JOB_TTL_SECONDS: u64 = 30;
/// Where the private key is planted on web-01's disk.
const KEY_PATH: &str = "/home/alice/.ssh/id_ed25519";

/// An OCI archive of `scripts/images.sh --debug`.
fn archive(name: &str) -> Result<PathBuf> {
    let path = cache_dir()
        .join("images")
        .join(format!("{name}-{VERSION}-debug.oci.tar"));
    ensure!(
        path.is_file(),
        "{} is missing: run `make test-cluster` (scripts/images.sh --debug builds it)",
        path.display()
    );
    Ok(path)
}

/// The disk directory (readable by the scanner's user 65532 through the hostPath volume) with
/// `web-01.raw`, an ext4 filesystem holding a fresh OpenSSH private key; returns the key file's
/// text.
fn planted_disk(dir: &Path) -> Result<String> {
    let tree = tempfile::tempdir()?;
    let key = tree.path().join(&KEY_PATH[1..]);
    std::fs::create_dir_all(key.parent().context("key directory")?)?;
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "alice@web-01", "-f"])
        .arg(&key)
        .output()
        .context("ssh-keygen")?;
    ok(out, "ssh-keygen")?;
    std::fs::remove_file(key.with_extension("pub"))?;
    let text = std::fs::read_to_string(&key)?;
    snapsentry_tests::image::ext4(tree.path(), &dir.join("web-01.raw"), 16)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    std::fs::set_permissions(
        dir.join("web-01.raw"),
        std::fs::Permissions::from_mode(0o644),
    )?;
    Ok(text)
}

/// kubectl as cluster admin, failing on a non-zero exit.
fn kubectl(cp: &ControlPlane, args: &[&str]) -> Result<String> {
    Ok(ok(
        cp.kubectl(args)?,
        &format!("kubectl {}", args.join(" ")),
    )?)
}

/// Polls `check` every second until it returns `Some`, failing after `timeout` with `what` and the
/// last state `check` described.
async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Result<T, String>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().await? {
            Ok(value) => return Ok(value),
            Err(last) => last,
        };
        if Instant::now() >= deadline {
            bail!("{what}: not after {timeout:?}; last: {last}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The claim of the images provider: a hostPath PersistentVolume on the node's disk directory,
/// bound by the controller-manager's PersistentVolume controller to the claim the policy names.
fn claim_manifest(disks: &Path) -> String {
    format!(
        r#"apiVersion: v1
kind: PersistentVolume
metadata:
  name: snapsentry-cluster-test-images
spec:
  capacity: {{ storage: 1Gi }}
  accessModes: [ReadOnlyMany]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  hostPath: {{ path: {path}, type: Directory }}
  claimRef: {{ namespace: {NS}, name: {CLAIM} }}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {CLAIM}
  namespace: {NS}
spec:
  accessModes: [ReadOnlyMany]
  storageClassName: ""
  volumeName: snapsentry-cluster-test-images
  resources: {{ requests: {{ storage: 1Gi }} }}
"#,
        path = serde_json::Value::String(disks.display().to_string()),
    )
}

/// The policy: web-01 (the planted key) and gone-01, whose disk file does not exist, so its
/// scanner pod fails.
const POLICY: &str = r#"apiVersion: snapsentry.io/v1alpha1
kind: ScanPolicy
metadata:
  name: lab
  namespace: snapsentry
spec:
  concurrency: 2
  providers:
    - images:
        persistentVolumeClaim: vm-images
        machines:
          - name: web-01
            disks: [web-01.raw]
            platform: linux
          - name: gone-01
            disks: [gone-01.raw]
            platform: linux
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, scripts/toolchain.sh --cluster and scripts/images.sh --debug: run `make test-cluster`"]
async fn the_chart_runs_real_scanner_pods_on_a_kubelet() -> Result<()> {
    let operator_archive = archive("snapsentry-operator")?;
    let scanner_archive = archive("snapsentry-scan")?;
    let cluster = Cluster::start().await?;
    let cp = cluster.control_plane();
    let client = cp.client().await?;
    for archive in [&operator_archive, &scanner_archive] {
        cluster.import_image(archive)?;
    }

    // The disk and its claim.
    let disks = tempfile::Builder::new()
        .prefix("snapsentry-disks-")
        .tempdir()?;
    let private_key = planted_disk(disks.path())?;
    create_namespace(&client, NS).await?;
    ok(
        cp.kubectl_with_file(
            &["apply", "-f", "-"],
            claim_manifest(disks.path()).as_bytes(),
        )?,
        "kubectl apply the claim",
    )?;

    // The chart, as the README installs it, with the images imported above.
    let tag = format!("{VERSION}-debug");
    let out = Command::new(cp.helm()?)
        .arg("--kubeconfig")
        .arg(cp.kubeconfig())
        .args(["install", "snapsentry"])
        .arg(repo().join("charts/snapsentry"))
        .args(["--namespace", NS, "--wait", "--timeout", "180s"])
        .args([
            "--set",
            "operator.image.repository=localhost/snapsentry-operator",
            "--set",
            &format!("operator.image.tag={tag}"),
            "--set",
            "operator.image.pullPolicy=Never",
            "--set",
            "scanner.image.repository=localhost/snapsentry-scan",
            "--set",
            &format!("scanner.image.tag={tag}"),
            "--set",
            &format!("scanner.ttlSecondsAfterFinished={JOB_TTL_SECONDS}"),
            "--set",
            "operator.logLevel=debug",
        ])
        .output()?;
    if !out.status.success() {
        let pods = cp.kubectl(["get", "pods", "-A", "-o", "wide"])?;
        let events = cp.kubectl(["get", "events", "-A"])?;
        bail!(
            "helm install failed: {}\npods:\n{}\nevents:\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&pods.stdout),
            String::from_utf8_lossy(&events.stdout)
        );
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let operator = deployments.get("snapsentry-operator").await?;
    let ready = operator.status.and_then(|s| s.ready_replicas);
    ensure!(
        ready == Some(1),
        "operator Deployment ready replicas: {ready:?}"
    );

    // The policy, then the scan: one Job per machine.
    ok(
        cp.kubectl_with_file(&["apply", "-f", "-"], POLICY.as_bytes())?,
        "kubectl apply the policy",
    )?;
    let policies: Api<ScanPolicy> = Api::namespaced(client.clone(), NS);
    let finished = wait_for("the scan to finish", Duration::from_secs(240), || async {
        let p = policies.get("lab").await?;
        let finished = p.status.as_ref().is_some_and(|s| {
            s.scan_id.is_some()
                && s.conditions
                    .iter()
                    .any(|c| c.type_ == "Scanning" && c.status == "False")
        });
        Ok(if finished {
            Ok(p)
        } else {
            Err(format!("{:?}", p.status))
        })
    })
    .await;
    let policy = finished.map_err(|e| e.context(cluster_state(cp)))?;
    let status = policy.status.clone().context("policy status")?;
    let counts = status.machines.clone().context("machine counts")?;
    ensure!(
        (counts.total, counts.scanned, counts.failed) == (2, 1, 1),
        "machines: {counts:?}"
    );

    // web-01: scanned completely, the key found.
    let machines: Api<ScannedMachine> = Api::namespaced(client.clone(), NS);
    let web = machines.get("lab-web-01").await?;
    let web_status = web.status.clone().context("web-01 status")?;
    ensure!(
        web_status.phase == Some(MachinePhase::Scanned),
        "web-01: {web_status:?}"
    );
    let last = web_status.last_scan.clone().context("web-01 lastScan")?;
    ensure!(
        last.succeeded && !last.volumes.is_empty() && last.volumes.iter().all(|v| v.scanned),
        "web-01 scan incomplete: {last:?}"
    );
    let findings: Api<SecretFinding> = Api::namespaced(client.clone(), NS);
    let findings = findings.list(&ListParams::default()).await?.items;
    let key_finding = findings
        .iter()
        .find(|f| {
            f.spec.machine == "lab-web-01" && f.spec.locations.iter().any(|l| l.path == KEY_PATH)
        })
        .with_context(|| {
            let seen: Vec<_> = findings
                .iter()
                .map(|f| (&f.spec.machine, &f.spec.rule_id, &f.spec.locations[0].path))
                .collect();
            format!("no finding for the planted key; findings: {seen:?}")
        })?;
    ensure!(
        key_finding.spec.rule_id.contains("private-key")
            || key_finding.spec.rule_id.contains("ssh"),
        "the key's rule: {}",
        key_finding.spec.rule_id
    );

    // gone-01: its pod failed, the Job controller failed the Job (no retries), the machine
    // records it.
    let gone = machines.get("lab-gone-01").await?;
    let gone_status = gone.status.clone().context("gone-01 status")?;
    ensure!(
        gone_status.phase == Some(MachinePhase::Failed),
        "gone-01: {gone_status:?}"
    );
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let all_jobs = jobs.list(&ListParams::default()).await?.items;
    ensure!(all_jobs.len() == 2, "{} Jobs", all_jobs.len());
    let mut scanner_pods = Vec::new();
    for job in &all_jobs {
        let name = job.metadata.name.clone().context("Job name")?;
        let job_status = job.status.clone().unwrap_or_default();
        let conditions = job_status.conditions.clone().unwrap_or_default();
        let selector = format!("job-name={name}");
        let job_pods = pods
            .list(&ListParams::default().labels(&selector))
            .await?
            .items;
        if name.contains("gone-01") {
            ensure!(
                conditions.iter().any(|c| c.type_ == "Failed"
                    && c.status == "True"
                    && c.reason.as_deref() == Some("BackoffLimitExceeded")),
                "gone-01's Job: {job_status:?}"
            );
            ensure!(
                job_status.failed == Some(1) && job_pods.len() == 1,
                "gone-01's Job ran {} pods: {job_status:?}",
                job_pods.len()
            );
        } else {
            ensure!(
                job_status.succeeded == Some(1),
                "web-01's Job: {job_status:?}"
            );
        }
        scanner_pods.extend(job_pods);
    }

    // Every scanner pod ran under the chart's security settings: as the API server has them, and as
    // containerd told runc.
    for pod in &scanner_pods {
        check_security(&cluster, pod)?;
    }

    // The scanners' logs, read now: the kubelet removes a pod's logs with the pod.
    let scanner_logs = container_logs(&cluster.pod_logs())?;
    ensure!(
        scanner_logs
            .iter()
            .filter(|(path, _)| path.contains("/scanner/"))
            .count()
            >= 2,
        "not every scanner's log among {:?}",
        scanner_logs.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );

    // The TTL controller deletes the finished Jobs (and the garbage collector their pods).
    wait_for(
        "the finished Jobs to be deleted by their TTL",
        Duration::from_secs(JOB_TTL_SECONDS + 60),
        || async {
            let left = jobs.list(&ListParams::default()).await?.items.len();
            let pods_left = pods
                .list(&ListParams::default().labels("job-name"))
                .await?
                .items
                .len();
            Ok(if left == 0 && pods_left == 0 {
                Ok(())
            } else {
                Err(format!("{left} Jobs, {pods_left} pods"))
            })
        },
    )
    .await?;

    // No planted value anywhere: snapsentry's objects, every Event, every container's log.
    let forbidden: Vec<&str> = private_key
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .skip(1)
        .collect();
    ensure!(!forbidden.is_empty(), "the key has no body lines");
    let objects = kubectl(
        cp,
        &[
            "get",
            "scanpolicies,scannedmachines,secretfindings,attackpaths,recommendations,events,configmaps",
            "-A",
            "-o",
            "json",
        ],
    )?;
    no_leak(
        "snapsentry's objects, Events and ConfigMaps",
        &objects,
        &forbidden,
    )?;
    let mut logs = container_logs(&cluster.pod_logs())?;
    logs.extend(scanner_logs);
    ensure!(
        logs.iter()
            .any(|(path, _)| path.contains("snapsentry-operator")),
        "no operator log among {:?}",
        logs.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    for (path, text) in &logs {
        no_leak(path, text, &forbidden)?;
    }
    Ok(())
}

/// What the cluster shows of the scan when it did not finish: the Jobs, pods and Events of the
/// namespace, the node's conditions (disk or memory pressure) and the operator's last log lines.
fn cluster_state(cp: &ControlPlane) -> String {
    let show = |args: &[&str]| match cp.kubectl(args) {
        Ok(out) => format!(
            "$ kubectl {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => format!("$ kubectl {}: {e:#}\n", args.join(" ")),
    };
    [
        show(&["get", "jobs,pods", "-n", NS, "-o", "wide"]),
        show(&["get", "events", "-n", NS, "--sort-by=.lastTimestamp"]),
        show(&["describe", "nodes"]),
        show(&[
            "logs",
            "-n",
            NS,
            "deployment/snapsentry-operator",
            "--tail=60",
        ]),
    ]
    .concat()
}

/// The pod's security settings as the chart and the operator set them, then the container's OCI
/// spec: user 65532, a read-only root, no capability, no privilege escalation, a seccomp filter.
fn check_security(cluster: &Cluster, pod: &Pod) -> Result<()> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let spec = pod.spec.clone().context("pod spec")?;
    let pod_sc = spec.security_context.clone().unwrap_or_default();
    ensure!(
        pod_sc.run_as_non_root == Some(true)
            && pod_sc.run_as_user == Some(65532)
            && pod_sc
                .seccomp_profile
                .as_ref()
                .is_some_and(|p| p.type_ == "RuntimeDefault"),
        "{name}: pod securityContext {pod_sc:?}"
    );
    let container = &spec.containers[0];
    let sc = container.security_context.clone().unwrap_or_default();
    ensure!(
        sc.read_only_root_filesystem == Some(true)
            && sc.allow_privilege_escalation == Some(false)
            && sc
                .capabilities
                .as_ref()
                .and_then(|c| c.drop.clone())
                .is_some_and(|d| d == ["ALL"]),
        "{name}: container securityContext {sc:?}"
    );
    let status = pod.status.clone().context("pod status")?;
    let id = status
        .container_statuses
        .iter()
        .flatten()
        .find_map(|c| c.container_id.clone())
        .context("no container id")?;
    let id = id.strip_prefix("containerd://").unwrap_or(&id);
    let oci = cluster.container_spec(id)?;
    let process = &oci["process"];
    ensure!(
        process["user"]["uid"] == 65532 && process["user"]["gid"] == 65532,
        "{name}: runc ran user {}",
        process["user"]
    );
    ensure!(oci["root"]["readonly"] == true, "{name}: writable root");
    ensure!(
        process["noNewPrivileges"] == true,
        "{name}: privilege escalation allowed"
    );
    for set in ["bounding", "effective", "permitted"] {
        let caps = process["capabilities"][set]
            .as_array()
            .cloned()
            .unwrap_or_default();
        ensure!(caps.is_empty(), "{name}: {set} capabilities {caps:?}");
    }
    ensure!(
        oci["linux"]["seccomp"]["defaultAction"].is_string(),
        "{name}: no seccomp filter"
    );
    Ok(())
}

/// Every container log file under the kubelet's pod log directory: (path, text).
fn container_logs(dir: &Path) -> Result<Vec<(String, String)>> {
    let mut logs = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else {
                let text = String::from_utf8_lossy(&std::fs::read(&path)?).into_owned();
                logs.push((path.display().to_string(), text));
            }
        }
    }
    Ok(logs)
}

/// Fails when `text` holds a line of the private key (naming where, never the value).
fn no_leak(what: &str, text: &str, forbidden: &[&str]) -> Result<()> {
    ensure!(
        !forbidden.iter().any(|line| text.contains(line)),
        "{what} contains a line of the planted private key"
    );
    Ok(())
}
