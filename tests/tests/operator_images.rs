//! The operator's scan orchestration against a real kube-apiserver, with the local Job runner
//! playing kubelet + Job controller: a ScanPolicy of `images` machines → one ScannedMachine and
//! one scanner Job per machine under the policy's concurrency → correlation → policy status,
//! conditions and Events; a failing Job; an operator restarted mid-scan; the finalizer.
//!
//! The scanner is a stand-in: a shell script run as each Job's command that reads the Job's
//! `SNAPSENTRY_ASSIGNMENT`, checks the image path the runner mapped from the images claim, and
//! writes what `snapsentry-scan job` writes — a SecretFinding (server-side apply, field manager
//! `snapsentry-scanner`) and the ScannedMachine's `status.lastScan` — with kubectl. It keeps
//! these tests about the orchestration; the real scanner's Job mode has its own tests
//! (`scanner_job.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Namespace, Secret};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use snapsentry_crds::{MachinePhase, ScanPolicy, ScannedMachine, SecretFinding};
use snapsentry_operator::controller::config::Config;
use snapsentry_operator::controller::http::HttpState;
use snapsentry_tests::controlplane::{ControlPlane, Options};
use snapsentry_tests::jobrunner::{JobRunner, JobRunnerOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The stand-in scanner (see the module documentation).
const STAND_IN: &str = r#"
set -eu
a="$SNAPSENTRY_ASSIGNMENT"
field() { printf '%s' "$a" | sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }
m=$(field machine); s=$(field scanId); ns=$(field namespace); p=$(field policy); disk=$(field path)
test -n "$SNAPSENTRY_FINGERPRINT_KEY"
test -f "$disk" || { echo "image $disk not found"; exit 2; }
sleep "${STANDIN_SLEEP:-0.5}"
if [ -e "$STANDIN_FAIL_DIR/$m" ]; then echo "failing on purpose"; exit 3; fi
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
f="$STANDIN_TMP/$m-$s.yaml"
cat > "$f" <<EOF
apiVersion: snapsentry.io/v1alpha1
kind: SecretFinding
metadata:
  name: $m-aws-key
  namespace: $ns
  labels:
    snapsentry.io/policy: $p
    snapsentry.io/machine: $m
    snapsentry.io/cloud: image
    snapsentry.io/secret-type: aws-access-key
spec:
  policy: $p
  machine: $m
  cloud: image
  ruleId: aws-access-key
  secretType: AWS access key
  ruleSeverity: high
  fingerprint: "hmac-sha256:$m"
  redacted: "AKIA…(20)"
  locations: [{volume: p1, path: /home/ubuntu/.aws/credentials, line: 3}]
  locationCount: 1
  scanId: "$s"
  firstSeen: "$now"
  lastSeen: "$now"
EOF
kubectl apply --server-side --field-manager=snapsentry-scanner -f "$f"
kubectl patch scannedmachine "$m" -n "$ns" --subresource=status --type=merge \
  --field-manager=snapsentry-scanner \
  -p "{\"status\":{\"lastScan\":{\"scanId\":\"$s\",\"succeeded\":true,\"startedAt\":\"$now\",\"finishedAt\":\"$now\",\"durationMs\":500,\"files\":10,\"bytesScanned\":4096,\"findings\":1}}}"
"#;

/// Where cargo put this workspace's binaries (`snapsentry-scan`): the test executable lives in
/// `<target>/<profile>/deps`.
fn bin_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let deps = exe.parent().context("test executable directory")?;
    Ok(deps
        .parent()
        .context("target profile directory")?
        .to_owned())
}

fn install_crds(cp: &ControlPlane) -> Result<()> {
    static DONE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    let result = DONE.get_or_init(|| cp.install_crds().map_err(|e| e.to_string()));
    result.clone().map_err(anyhow::Error::msg)
}

/// One test's world: a namespace with the fingerprint Secret and images, the Job runner, and an
/// operator that can be stopped and started again.
struct World {
    cp: &'static ControlPlane,
    client: kube::Client,
    ns: String,
    images: tempfile::TempDir,
    fail_dir: tempfile::TempDir,
    runner: JobRunner,
    /// The metrics of the operator started last.
    http: Arc<HttpState>,
    /// `SNAPSENTRY_SCANNER_TIMEOUT_SECONDS` of operators started from now on.
    scanner_timeout: Option<i64>,
    operator: Option<(
        watch::Sender<bool>,
        JoinHandle<snapsentry_operator::Result<()>>,
    )>,
}

impl World {
    /// A world with an operator running (no leader election).
    async fn new(ns: &str, sleep: &str) -> Result<Self> {
        let mut world = Self::without_operator(ns, sleep).await?;
        world.start_operator("operator-0", false)?;
        Ok(world)
    }

    async fn without_operator(ns: &str, sleep: &str) -> Result<Self> {
        let stand_in = vec!["sh".into(), "-c".into(), STAND_IN.into()];
        Self::with_command(ns, sleep, Some(stand_in)).await
    }

    /// A world whose Jobs run `command` (`None`: the Job's own command, found on `PATH`).
    async fn with_command(ns: &str, sleep: &str, command: Option<Vec<String>>) -> Result<Self> {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new("snapsentry_operator=info")
                }),
            )
            .with_test_writer()
            .try_init();
        let cp = ControlPlane::shared().await?;
        let client = cp.client().await?;
        install_crds(cp)?;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let mut n = Namespace::default();
        n.metadata.name = Some(ns.into());
        namespaces.create(&PostParams::default(), &n).await?;
        let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
        let mut key = Secret::default();
        key.metadata.name = Some("snapsentry-fingerprint".into());
        key.data = Some(BTreeMap::from([(
            "key".to_owned(),
            ByteString(b"0123456789abcdef0123456789abcdef".to_vec()),
        )]));
        secrets.create(&PostParams::default(), &key).await?;

        let images = tempfile::tempdir()?;
        for m in ["web-01", "web-02", "db-01"] {
            std::fs::write(images.path().join(format!("{m}.raw")), b"not really a disk")?;
        }
        let fail_dir = tempfile::tempdir()?;
        let kubectl_dir = Options::default().assets;
        let path = format!(
            "{}:{}:{}",
            kubectl_dir.display(),
            bin_dir()?.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let runner = JobRunner::start(
            client.clone(),
            JobRunnerOptions {
                namespace: ns.into(),
                claims: BTreeMap::from([("vm-images".to_owned(), images.path().to_owned())]),
                command,
                env: vec![
                    ("PATH".into(), path),
                    ("KUBECONFIG".into(), cp.kubeconfig().display().to_string()),
                    ("STANDIN_SLEEP".into(), sleep.into()),
                    (
                        "STANDIN_FAIL_DIR".into(),
                        fail_dir.path().display().to_string(),
                    ),
                    ("STANDIN_TMP".into(), fail_dir.path().display().to_string()),
                ],
                log_dir: None,
            },
        )?;
        Ok(Self {
            cp,
            client,
            ns: ns.into(),
            images,
            fail_dir,
            runner,
            http: Arc::new(HttpState::default()),
            scanner_timeout: None,
            operator: None,
        })
    }

    fn config(&self, pod: &str, leader_election: bool) -> Result<Config> {
        let mut vars = BTreeMap::from([
            ("SNAPSENTRY_NAMESPACE", self.ns.clone()),
            ("SNAPSENTRY_SCANNER_IMAGE", "snapsentry-scan:test".into()),
            ("SNAPSENTRY_WATCH_NAMESPACES", self.ns.clone()),
            ("SNAPSENTRY_POD_NAME", pod.into()),
            ("SNAPSENTRY_LEADER_ELECTION", leader_election.to_string()),
        ]);
        if let Some(t) = self.scanner_timeout {
            vars.insert("SNAPSENTRY_SCANNER_TIMEOUT_SECONDS", t.to_string());
        }
        Ok(Config::from_lookup(|k| vars.get(k).cloned())?)
    }

    fn start_operator(&mut self, pod: &str, leader_election: bool) -> Result<()> {
        let config = self.config(pod, leader_election)?;
        let (stop, shutdown) = watch::channel(false);
        self.http = Arc::new(HttpState::default());
        let task = tokio::spawn(snapsentry_operator::run(
            config,
            self.client.clone(),
            self.http.clone(),
            shutdown,
        ));
        self.operator = Some((stop, task));
        Ok(())
    }

    async fn stop_operator(&mut self) -> Result<()> {
        if let Some((stop, task)) = self.operator.take() {
            let _ = stop.send(true);
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .context("operator did not stop")???;
        }
        Ok(())
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    async fn create_policy(&self, name: &str, machines: &[&str], concurrency: u32) -> Result<()> {
        self.create_policy_with(name, machines, concurrency, serde_json::json!({}))
            .await
    }

    /// A policy of image machines with `scanner` as its `spec.scanner`.
    async fn create_policy_with(
        &self,
        name: &str,
        machines: &[&str],
        concurrency: u32,
        scanner: serde_json::Value,
    ) -> Result<()> {
        let machines: Vec<serde_json::Value> = machines
            .iter()
            .map(|m| {
                serde_json::json!({
                    "name": m, "disks": [format!("{m}.raw")],
                    "exposure": { "internetFacing": m.starts_with("web"), "reasons": [] },
                })
            })
            .collect();
        let policy: ScanPolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "snapsentry.io/v1alpha1",
            "kind": "ScanPolicy",
            "metadata": { "name": name, "namespace": self.ns },
            "spec": {
                "providers": [{ "images": {
                    "persistentVolumeClaim": "vm-images",
                    "machines": machines,
                }}],
                "concurrency": concurrency,
                "scanner": scanner,
            },
        }))?;
        self.api::<ScanPolicy>()
            .create(&PostParams::default(), &policy)
            .await?;
        Ok(())
    }

    async fn scan_now(&self, policy: &str, value: &str) -> Result<()> {
        let patch = serde_json::json!({ "metadata": { "annotations": {
            "snapsentry.io/scan-now": value,
        }}});
        self.api::<ScanPolicy>()
            .patch(policy, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    /// Wait until `done` holds for the policy (up to 90 s).
    async fn wait_policy(
        &self,
        name: &str,
        what: &str,
        done: impl Fn(&ScanPolicy) -> bool,
    ) -> Result<ScanPolicy> {
        let api = self.api::<ScanPolicy>();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            let p = api.get(name).await?;
            if done(&p) {
                return Ok(p);
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "timed out waiting for {what}; policy status: {}\nJobs started: {:?}\nJob logs: {}",
                    serde_json::to_string_pretty(&p.status)?,
                    self.runner.started(),
                    self.runner
                        .started()
                        .iter()
                        .map(|j| format!("\n--- {j}\n{}", self.runner.log(j)))
                        .collect::<String>()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn wait_scan_finished(&self, name: &str, previous: Option<&str>) -> Result<ScanPolicy> {
        self.wait_policy(name, "the scan to finish", |p| {
            let Some(s) = &p.status else { return false };
            let finished = cond(p, "Scanning").is_some_and(|c| c.status == "False");
            finished && s.scan_id.is_some() && s.scan_id.as_deref() != previous
        })
        .await
    }

    async fn jobs(&self) -> Result<Vec<Job>> {
        Ok(self.api::<Job>().list(&ListParams::default()).await?.items)
    }

    async fn machines(&self) -> Result<BTreeMap<String, ScannedMachine>> {
        Ok(self
            .api::<ScannedMachine>()
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .map(|m| (m.name_any(), m))
            .collect())
    }

    async fn event_reasons(&self) -> Result<Vec<String>> {
        // The Recorder writes events.k8s.io/v1 Events; they read back through core/v1 too.
        let events: Api<CoreEvent> = self.api();
        Ok(events
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter_map(|e| e.reason)
            .collect())
    }
}

fn cond<'a>(
    p: &'a ScanPolicy,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    p.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

fn phase(m: &ScannedMachine) -> Option<MachinePhase> {
    m.status.as_ref()?.phase
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_machines_two_at_a_time_then_ready() -> Result<()> {
    let mut w = World::new("op-three", "1").await?;
    w.create_policy("lab", &["web-01", "web-02", "db-01"], 2)
        .await?;
    let p = w.wait_scan_finished("lab", None).await?;

    let status = p.status.clone().unwrap();
    let m = status.machines.clone().unwrap();
    assert_eq!(
        (m.total, m.scanned, m.failed, m.pending, m.scanning),
        (3, 3, 0, 0, 0)
    );
    assert_eq!(status.findings.as_ref().map(|f| f.total), Some(3));
    assert_eq!(cond(&p, "Ready").map(|c| c.status.as_str()), Some("True"));
    assert_eq!(
        cond(&p, "Degraded").map(|c| c.status.as_str()),
        Some("False")
    );
    assert_eq!(
        cond(&p, "Scanning").map(|c| c.observed_generation),
        Some(p.metadata.generation)
    );
    assert!(status.last_scan_time.is_some());
    assert!(p.finalizers().iter().any(|f| f == "snapsentry.io/cleanup"));

    // Three Jobs, at most two at once, every one owned by the policy.
    let jobs = w.jobs().await?;
    assert_eq!(jobs.len(), 3, "{:?}", w.runner.started());
    assert_eq!(w.runner.started().len(), 3);
    assert_eq!(w.runner.max_concurrent(), 2);
    let uid = p.uid().unwrap();
    for j in &jobs {
        assert!(j.owner_references().iter().any(|o| o.uid == uid));
    }
    let machines = w.machines().await?;
    assert_eq!(machines.len(), 3);
    for (name, m) in &machines {
        assert_eq!(phase(m), Some(MachinePhase::Scanned), "{name}");
        assert!(m.owner_references().iter().any(|o| o.uid == uid), "{name}");
        assert_eq!(
            m.status
                .as_ref()
                .unwrap()
                .findings
                .as_ref()
                .map(|f| f.total),
            Some(1)
        );
    }

    // The operator assessed every finding: status and its labels.
    let findings = w
        .api::<SecretFinding>()
        .list(&ListParams::default())
        .await?
        .items;
    assert_eq!(findings.len(), 3);
    for f in &findings {
        let s = f.status.as_ref().context("finding status")?;
        assert_eq!(s.state, Some(snapsentry_crds::FindingState::Active));
        assert_eq!(
            f.labels().get("snapsentry.io/state").map(String::as_str),
            Some("active")
        );
        assert!(f.labels().contains_key("snapsentry.io/severity"));
        assert_eq!(
            f.labels().get("snapsentry.io/exposed").map(String::as_str),
            Some(if f.spec.machine.contains("web") {
                "true"
            } else {
                "false"
            })
        );
    }
    let by_exposure = w
        .api::<SecretFinding>()
        .list(&ListParams::default().labels("snapsentry.io/exposed=true"))
        .await?;
    assert_eq!(by_exposure.items.len(), 2);

    let metrics = w.http.metrics.encode();
    assert!(
        metrics.contains(r#"snapsentry_scans_total{result="succeeded"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"snapsentry_findings{policy="lab""#),
        "{metrics}"
    );

    let reasons = w.event_reasons().await?;
    for r in ["ScanStarted", "ScanFinished"] {
        assert!(reasons.iter().any(|x| x == r), "{r} in {reasons:?}");
    }
    w.stop_operator().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_degrades_the_policy_and_the_next_scan_recovers() -> Result<()> {
    let mut w = World::new("op-fail", "0.2").await?;
    w.create_policy("lab", &["web-01", "db-01"], 2).await?;
    let first = w.wait_scan_finished("lab", None).await?;
    let first_id = first.status.as_ref().unwrap().scan_id.clone();
    assert_eq!(
        cond(&first, "Degraded").map(|c| c.status.as_str()),
        Some("False")
    );

    // Second scan: db-01's Job fails. Its machine is Failed, the policy Degraded, and the
    // finding of the first scan stays (a failed scan resolves nothing).
    std::fs::write(w.fail_dir.path().join("lab-db-01"), b"")?;
    w.scan_now("lab", "2").await?;
    let second = w.wait_scan_finished("lab", first_id.as_deref()).await?;
    let second_id = second.status.as_ref().unwrap().scan_id.clone();
    assert_eq!(
        second.status.as_ref().unwrap().last_scan_now.as_deref(),
        Some("2")
    );
    let degraded = cond(&second, "Degraded").context("Degraded")?;
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "MachinesFailed")
    );
    assert!(
        degraded.message.contains("lab-db-01"),
        "{}",
        degraded.message
    );
    let m = second.status.as_ref().unwrap().machines.clone().unwrap();
    assert_eq!((m.scanned, m.failed), (1, 1));
    let machines = w.machines().await?;
    let db = &machines["lab-db-01"];
    assert_eq!(phase(db), Some(MachinePhase::Failed));
    let scanned = db
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Scanned");
    assert_eq!(
        scanned.map(|c| (c.status.as_str(), c.reason.as_str())),
        Some(("False", "BackoffLimitExceeded"))
    );
    let findings = w
        .api::<SecretFinding>()
        .list(&ListParams::default())
        .await?
        .items;
    let db_finding = findings
        .iter()
        .find(|f| f.spec.machine == "lab-db-01")
        .context("db finding kept")?;
    assert_eq!(
        db_finding.status.as_ref().and_then(|s| s.state),
        Some(snapsentry_crds::FindingState::Active)
    );
    assert!(
        w.event_reasons()
            .await?
            .iter()
            .any(|r| r == "MachineScanFailed")
    );

    // Third scan: the failure is gone, so is Degraded.
    std::fs::remove_file(w.fail_dir.path().join("lab-db-01"))?;
    w.scan_now("lab", "3").await?;
    let third = w.wait_scan_finished("lab", second_id.as_deref()).await?;
    assert_eq!(
        cond(&third, "Degraded").map(|c| c.status.as_str()),
        Some("False")
    );
    let m = third.status.as_ref().unwrap().machines.clone().unwrap();
    assert_eq!((m.scanned, m.failed), (2, 0));
    assert_eq!(
        phase(&w.machines().await?["lab-db-01"]),
        Some(MachinePhase::Scanned)
    );
    ensure!(w.jobs().await?.len() == 6, "two Jobs per scan");
    w.stop_operator().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_restarted_mid_scan_creates_no_duplicate_jobs() -> Result<()> {
    let mut w = World::new("op-restart", "4").await?;
    w.create_policy("lab", &["web-01", "web-02", "db-01"], 1)
        .await?;
    // Stop the operator while the first Job runs, start another.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while w.runner.started().is_empty() {
        ensure!(tokio::time::Instant::now() < deadline, "no Job started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    w.stop_operator().await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    // The first Job finished while no operator ran.
    assert_eq!(w.runner.started().len(), 1);
    w.start_operator("operator-1", false)?;
    let p = w.wait_scan_finished("lab", None).await?;
    let m = p.status.as_ref().unwrap().machines.clone().unwrap();
    assert_eq!((m.total, m.scanned), (3, 3));
    let jobs = w.jobs().await?;
    assert_eq!(jobs.len(), 3);
    let mut started = w.runner.started();
    started.sort();
    started.dedup();
    assert_eq!(started.len(), 3, "each Job ran once");
    assert_eq!(w.runner.max_concurrent(), 1);
    w.stop_operator().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_policy_runs_its_finalizer() -> Result<()> {
    let mut w = World::new("op-delete", "30").await?;
    w.create_policy("lab", &["web-01", "db-01"], 2).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while w.runner.started().len() < 2 {
        ensure!(tokio::time::Instant::now() < deadline, "Jobs did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let p = w.api::<ScanPolicy>().get("lab").await?;
    let uid = p.uid().unwrap();
    // No garbage collector runs here (no kube-controller-manager): children are linked to the
    // policy by owner references, which is what the collector would follow.
    for (name, m) in w.machines().await? {
        assert!(
            m.owner_references()
                .iter()
                .any(|o| o.uid == uid && o.controller == Some(true)),
            "{name}"
        );
    }
    for j in w.jobs().await? {
        assert!(
            j.owner_references().iter().any(|o| o.uid == uid),
            "{}",
            j.name_any()
        );
    }
    let out =
        w.cp.kubectl(["delete", "scanpolicy", "lab", "-n", &w.ns, "--wait=false"])?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The finalizer deletes the running scan's Jobs, then lets the policy go.
    let api = w.api::<ScanPolicy>();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if api.get_opt("lab").await?.is_none() {
            break;
        }
        ensure!(tokio::time::Instant::now() < deadline, "policy not deleted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        // Jobs are deleted in the background; without a garbage collector they may linger
        // only with a deletionTimestamp (foreground/background finalizers).
        let live: Vec<Job> = w
            .jobs()
            .await?
            .into_iter()
            .filter(|j| j.metadata.deletion_timestamp.is_none())
            .collect();
        if live.is_empty() {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "Jobs not deleted: {:?}",
            live.iter().map(|j| j.name_any()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The runner killed the deleted Jobs' processes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while w.runner.finished().len() < 2 {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "processes not killed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = &w.images;
    w.stop_operator().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lease_holder_reconciles() -> Result<()> {
    let mut w = World::without_operator("op-leader", "0.2").await?;
    w.start_operator("replica-a", true)?;
    let first = w.operator.take().unwrap();
    w.start_operator("replica-b", true)?;
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = w.api();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let holder = loop {
        if let Some(l) = leases.get_opt("snapsentry-operator").await?
            && let Some(h) = l.spec.and_then(|s| s.holder_identity)
        {
            break h;
        }
        ensure!(tokio::time::Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(holder == "replica-a" || holder == "replica-b");
    w.create_policy("lab", &["web-01"], 1).await?;
    w.wait_scan_finished("lab", None).await?;
    assert_eq!(w.runner.started().len(), 1);

    // The leader stops and releases the Lease; the other replica takes over and reconciles.
    let (leader, other) = if holder == "replica-a" {
        (first, w.operator.take().unwrap())
    } else {
        (w.operator.take().unwrap(), first)
    };
    let _ = leader.0.send(true);
    leader.1.await??;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let h = leases
            .get("snapsentry-operator")
            .await?
            .spec
            .and_then(|s| s.holder_identity);
        if h.is_some() && h.as_deref() != Some(holder.as_str()) {
            break;
        }
        ensure!(tokio::time::Instant::now() < deadline, "no takeover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let previous = w
        .api::<ScanPolicy>()
        .get("lab")
        .await?
        .status
        .and_then(|s| s.scan_id);
    w.scan_now("lab", "again").await?;
    w.wait_scan_finished("lab", previous.as_deref()).await?;
    w.operator = Some(other);
    w.stop_operator().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_past_its_timeout_fails_with_deadline_exceeded() -> Result<()> {
    // The CRD allows no timeout under 60 s; the operator's default (from the chart) has no such
    // floor, so the test sets that.
    let mut w = World::without_operator("op-deadline", "20").await?;
    w.scanner_timeout = Some(1);
    w.start_operator("operator-0", false)?;
    w.create_policy("lab", &["web-01"], 1).await?;
    let p = w.wait_scan_finished("lab", None).await?;
    let degraded = cond(&p, "Degraded").context("Degraded")?;
    assert_eq!(degraded.status, "True");
    let machines = w.machines().await?;
    let m = &machines["lab-web-01"];
    assert_eq!(phase(m), Some(MachinePhase::Failed));
    let scanned = m
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Scanned")
        .context("Scanned condition")?;
    assert_eq!(
        (scanned.status.as_str(), scanned.reason.as_str()),
        ("False", "DeadlineExceeded")
    );
    let job = &w.jobs().await?[0];
    let conditions: Vec<(&str, &str)> = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .map(|c| (c.type_.as_str(), c.reason.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(
        conditions,
        [
            ("FailureTarget", "DeadlineExceeded"),
            ("Failed", "DeadlineExceeded")
        ]
    );
    assert_eq!(job.status.as_ref().and_then(|s| s.failed), Some(1));
    w.stop_operator().await?;
    Ok(())
}

/// A file tree made into an ext4 image with `mke2fs -d`.
fn ext4_image(tree: &Path, image: &Path) -> Result<()> {
    let out = std::process::Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-d"])
        .arg(tree)
        .arg(image)
        .arg("32M")
        .output()
        .context("mke2fs")?;
    ensure!(
        out.status.success(),
        "mke2fs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The whole path with the real scanner: `snapsentry-scan job` (built by `cargo test
/// --workspace`, which builds the scanner crate's binary for its own tests) reads two ext4
/// images; the private key on the exposed web-01 is authorized on db-01, so correlation verifies
/// it and writes a VM → VM attack path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_scanner_finds_a_verified_ssh_path() -> Result<()> {
    let scanner = bin_dir()?.join("snapsentry-scan");
    ensure!(
        scanner.is_file(),
        "{} is missing: run `cargo build -p snapsentry-scanner` (or `cargo test --workspace`)",
        scanner.display()
    );
    let mut w = World::with_command("op-real", "0", None).await?;
    let trees = tempfile::tempdir()?;
    let web = trees.path().join("web-01");
    let db = trees.path().join("db-01");
    for d in [
        web.join("home/alice/.ssh"),
        web.join("home/alice/.aws"),
        db.join("home/bob/.ssh"),
    ] {
        std::fs::create_dir_all(d)?;
    }
    let key = web.join("home/alice/.ssh/id_ed25519");
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "alice@web-01", "-f"])
        .arg(&key)
        .output()
        .context("ssh-keygen")?;
    ensure!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::copy(
        key.with_extension("pub"),
        db.join("home/bob/.ssh/authorized_keys"),
    )?;
    std::fs::write(
        web.join("home/alice/.aws/credentials"),
        "[default]\naws_access_key_id = AKIAQYLPMN5HFIQR7XYA\naws_secret_access_key = wJalrXUtnFEMIK7MDENGbPxRfiCYzEXAMPLEKEYq\n",
    )?;
    ext4_image(&web, &w.images.path().join("web-01.raw"))?;
    ext4_image(&db, &w.images.path().join("db-01.raw"))?;
    w.start_operator("operator-0", false)?;
    w.create_policy("lab", &["web-01", "db-01"], 2).await?;
    let p = w.wait_scan_finished("lab", None).await?;
    let status = p.status.clone().unwrap();
    let m = status.machines.clone().unwrap();
    assert_eq!((m.scanned, m.failed), (2, 0), "{:?}", w.runner.finished());
    assert_eq!(
        cond(&p, "Degraded").map(|c| c.status.as_str()),
        Some("False")
    );

    let machines = w.machines().await?;
    let db_status = machines["lab-db-01"].status.clone().unwrap();
    assert_eq!(db_status.authorized_keys.len(), 1);
    assert!(db_status.last_scan.as_ref().is_some_and(|l| l.succeeded));

    let to_vm = w
        .api::<SecretFinding>()
        .list(&ListParams::default().labels("snapsentry.io/target-kind=vm"))
        .await?
        .items;
    assert_eq!(to_vm.len(), 1, "one private key opens another VM");
    let key_finding = &to_vm[0];
    assert_eq!(key_finding.spec.machine, "lab-web-01");
    assert_eq!(
        key_finding
            .labels()
            .get("snapsentry.io/verified")
            .map(String::as_str),
        Some("verified")
    );
    let on = &key_finding.status.as_ref().unwrap().authorized_on;
    assert!(
        on.iter()
            .any(|a| a.machine == "lab-db-01" && a.user == "bob"),
        "{on:?}"
    );

    let paths = w
        .api::<snapsentry_crds::AttackPath>()
        .list(&ListParams::default())
        .await?
        .items;
    assert_eq!(paths.len(), 1);
    assert_eq!(status.attack_paths, Some(1));
    let path = &paths[0].spec;
    assert_eq!(
        (
            path.entry.machine.as_str(),
            path.target.name.as_str(),
            path.entry.exposed
        ),
        ("lab-web-01", "lab-db-01", true)
    );
    assert!(
        paths[0]
            .owner_references()
            .iter()
            .any(|o| Some(&o.uid) == p.metadata.uid.as_ref()),
        "attack paths are owned by the policy"
    );
    let recs = w
        .api::<snapsentry_crds::Recommendation>()
        .list(&ListParams::default())
        .await?
        .items;
    assert_eq!(recs.len(), 1);
    w.stop_operator().await?;
    Ok(())
}
