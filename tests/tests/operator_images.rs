//! The operator's scan orchestration against a real kube-apiserver, with the local Job runner
//! playing kubelet + Job controller: a ScanPolicy of `images` machines → one ScannedMachine and
//! one scanner Job per machine under the policy's concurrency → correlation → policy status,
//! conditions and Events; a failing Job; an operator restarted mid-scan; the finalizer.
//!
//! The scanner is a stand-in: a shell script run as each Job's command that reads the Job's
//! `SNAPSENTRY_ASSIGNMENT`, checks the image path the runner mapped from the images claim, and
//! writes what `snapsentry-scan job` writes — a SecretFinding (server-side apply, field manager
//! `snapsentry-scanner`) and the ScannedMachine's `status.lastScan` — with kubectl. It keeps
//! these tests about the orchestration (for a machine marked `<machine>.incomplete` it records a
//! LUKS and a swap partition not scanned, as the real scanner does); the real scanner's Job mode has its own tests
//! (`scanner_job.rs`), and the whole path with the real scanner is `operator_real_scanner.rs`.

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use snapsentry_crds::{
    MachinePhase, Recommendation, ScanPolicy, ScannedMachine, SecretFinding, SkipReason, labels,
};
use snapsentry_tests::world::images::{self, Images};
use snapsentry_tests::world::{self, condition};

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
volumes='{"id":"disk0/p1","filesystem":"ext4","scanned":true}'
if [ -e "$STANDIN_FAIL_DIR/$m.incomplete" ]; then
  volumes="$volumes"',{"id":"disk0/p2","filesystem":"luks","scanned":false,"error":"encrypted volume (luks), not scanned","skipReason":"encrypted"},{"id":"disk0/p3","filesystem":"swap","scanned":false,"error":"swap space, not scanned","skipReason":"swap"}'
fi
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
    snapsentry.io/state: active
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
  -p "{\"status\":{\"lastScan\":{\"scanId\":\"$s\",\"succeeded\":true,\"startedAt\":\"$now\",\"finishedAt\":\"$now\",\"durationMs\":500,\"files\":10,\"bytesScanned\":4096,\"findings\":1,\"volumes\":[$volumes]}}}"
"#;

type World = world::World<Images>;

/// A world with an operator running (no leader election).
async fn images_world(ns: &str, sleep: &str) -> Result<World> {
    let mut world = without_operator(ns, sleep).await?;
    world.start_operator()?;
    Ok(world)
}

/// A world whose Jobs run the stand-in (sleeping `sleep` seconds) on three machines' images, no
/// operator yet.
async fn without_operator(ns: &str, sleep: &str) -> Result<World> {
    let setup = images::setup(ns)?;
    let dir = setup.cloud().dir.path().to_owned();
    for m in ["web-01", "web-02", "db-01"] {
        std::fs::write(dir.join(format!("{m}.raw")), b"not really a disk")?;
    }
    std::fs::create_dir(dir.join(FAIL))?;
    let tmp = dir.join(FAIL).display().to_string();
    let stand_in = vec!["sh".into(), "-c".into(), STAND_IN.into()];
    let setup = setup
        .command(Some(stand_in))
        .env("STANDIN_SLEEP", sleep)
        .env("STANDIN_FAIL_DIR", tmp.clone())
        .env("STANDIN_TMP", tmp);
    Ok(World::start(setup).await?)
}

/// The stand-in's directory of machines to fail (and of its temporary files), in the images
/// directory.
const FAIL: &str = "fail";

/// The stand-in fails on the machine `machine` from now on (`true`) or no longer (`false`).
fn fail_on(w: &World, machine: &str, fail: bool) -> Result<()> {
    let marker = w.cloud.dir.path().join(FAIL).join(machine);
    if fail {
        std::fs::write(marker, b"")?;
    } else {
        std::fs::remove_file(marker)?;
    }
    Ok(())
}

/// A policy of image machines.
async fn create_policy(w: &World, name: &str, machines: &[&str], concurrency: u32) -> Result<()> {
    Ok(
        w.create_policy(&images::policy(&w.ns, name, machines, concurrency)?)
            .await?,
    )
}

/// Wait (up to 90 s) until a scan of the policy other than `previous` has finished.
async fn wait_scan_finished(w: &World, name: &str, previous: Option<&str>) -> Result<ScanPolicy> {
    Ok(
        w.wait_scan_finished(name, previous, Duration::from_secs(90))
            .await?,
    )
}

fn phase(m: &ScannedMachine) -> Option<MachinePhase> {
    m.status.as_ref()?.phase
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_machines_two_at_a_time_then_ready() -> Result<()> {
    let mut w = images_world("op-three", "1").await?;
    create_policy(&w, "lab", &["web-01", "web-02", "db-01"], 2).await?;
    let p = wait_scan_finished(&w, "lab", None).await?;

    let status = p.status.clone().unwrap();
    let m = status.machines.clone().unwrap();
    assert_eq!(
        (m.total, m.scanned, m.failed, m.pending, m.scanning),
        (3, 3, 0, 0, 0)
    );
    assert_eq!(status.findings.as_ref().map(|f| f.total), Some(3));
    assert_eq!(
        condition(&p, "Ready").map(|c| c.status.as_str()),
        Some("True")
    );
    assert_eq!(
        condition(&p, "Degraded").map(|c| c.status.as_str()),
        Some("False")
    );
    assert_eq!(
        condition(&p, "Scanning").map(|c| c.observed_generation),
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
        // Images are read with the scanner's own access: no grant, so no grant volume.
        let pod = j.spec.as_ref().and_then(|s| s.template.spec.as_ref());
        let volumes = pod.and_then(|p| p.volumes.as_ref()).context("volumes")?;
        assert!(volumes.iter().all(|v| v.secret.is_none()), "{volumes:?}");
    }
    // …and no grant Secret (only the world's fingerprint key).
    let secrets = w.api::<Secret>().list(&ListParams::default()).await?.items;
    let names: Vec<String> = secrets.iter().map(|s| s.name_any()).collect();
    assert_eq!(names, ["snapsentry-fingerprint"]);
    let machines = w.machines().await?;
    assert_eq!(machines.len(), 3);
    for (name, m) in &machines {
        assert_eq!(phase(m), Some(MachinePhase::Scanned), "{name}");
        assert!(
            !m.annotations().contains_key("snapsentry.io/snapshots"),
            "an image is its own snapshot: nothing to release ({name})"
        );
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

    // Triage takes effect at once, not at the next scan: the state label follows spec.triage.
    let name = findings[0].name_any();
    let triage =
        serde_json::json!({"spec": {"triage": {"state": "falsePositive", "note": "a test key"}}});
    w.api::<SecretFinding>()
        .patch(&name, &PatchParams::default(), &Patch::Merge(&triage))
        .await?;
    let by_state = |state: &'static str| {
        let api = w.api::<SecretFinding>();
        async move {
            let selector = format!("snapsentry.io/state={state}");
            let listed = api.list(&ListParams::default().labels(&selector)).await?;
            anyhow::Ok(
                listed
                    .items
                    .into_iter()
                    .map(|f| f.name_any())
                    .collect::<Vec<_>>(),
            )
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while by_state("falsePositive").await? != [name.clone()] {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the triage label did not follow"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(by_state("active").await?.len(), 2);
    w.stop_operator().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_degrades_the_policy_and_the_next_scan_recovers() -> Result<()> {
    let mut w = images_world("op-fail", "0.2").await?;
    create_policy(&w, "lab", &["web-01", "db-01"], 2).await?;
    let first = wait_scan_finished(&w, "lab", None).await?;
    let first_id = first.status.as_ref().unwrap().scan_id.clone();
    assert_eq!(
        condition(&first, "Degraded").map(|c| c.status.as_str()),
        Some("False")
    );

    // Second scan: db-01's Job fails. Its machine is Failed, the policy Degraded, and the
    // finding of the first scan stays (a failed scan resolves nothing). web-01's scan succeeds
    // but does not read its LUKS partition: Incomplete, never Scanned.
    fail_on(&w, "lab-db-01", true)?;
    std::fs::write(
        w.cloud.dir.path().join(FAIL).join("lab-web-01.incomplete"),
        b"",
    )?;
    w.scan_now("lab", "2").await?;
    let second = wait_scan_finished(&w, "lab", first_id.as_deref()).await?;
    let second_id = second.status.as_ref().unwrap().scan_id.clone();
    assert_eq!(
        second.status.as_ref().unwrap().last_scan_now.as_deref(),
        Some("2")
    );
    let degraded = condition(&second, "Degraded").context("Degraded")?;
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
    assert_eq!((m.scanned, m.incomplete, m.failed), (0, 1, 1));
    let machines = w.machines().await?;
    assert_incomplete(&w, &machines["lab-web-01"]).await?;
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

    // Third scan: the failure is gone, so is Degraded, and so is the coverage view.
    fail_on(&w, "lab-db-01", false)?;
    fail_on(&w, "lab-web-01.incomplete", false)?;
    w.scan_now("lab", "3").await?;
    let third = wait_scan_finished(&w, "lab", second_id.as_deref()).await?;
    assert_eq!(
        condition(&third, "Degraded").map(|c| c.status.as_str()),
        Some("False")
    );
    let m = third.status.as_ref().unwrap().machines.clone().unwrap();
    assert_eq!((m.scanned, m.incomplete, m.failed), (2, 0, 0));
    let machines = w.machines().await?;
    assert_eq!(phase(&machines["lab-db-01"]), Some(MachinePhase::Scanned));
    let web = &machines["lab-web-01"];
    assert_eq!(phase(web), Some(MachinePhase::Scanned));
    let coverage = web.status.as_ref().and_then(|s| s.coverage.as_ref());
    assert_eq!(coverage.map(|c| c.summary.as_str()), Some("complete"));
    let recs = w
        .api::<Recommendation>()
        .list(&ListParams::default())
        .await?;
    ensure!(
        recs.items
            .iter()
            .all(|r| r.name_any() != "lab-coverage-image"),
        "the coverage view is gone once every machine is fully scanned"
    );
    let metrics = w.http.metrics.encode();
    ensure!(
        !metrics.contains("snapsentry_machines_incomplete{"),
        "{metrics}"
    );
    ensure!(w.jobs().await?.len() == 6, "two Jobs per scan");
    w.stop_operator().await?;
    Ok(())
}

/// `web` (in namespace `op-fail`) was scanned without its LUKS partition: phase `Incomplete`,
/// `status.coverage` with the reason, the `Scanned` condition saying why, a Warning event, the
/// `COVERAGE` printer column, the coverage Recommendation listing it (and the failed `db-01`),
/// and the metrics.
async fn assert_incomplete(w: &World, web: &ScannedMachine) -> Result<()> {
    assert_eq!(phase(web), Some(MachinePhase::Incomplete));
    let st = web.status.as_ref().context("status")?;
    let coverage = st.coverage.as_ref().context("coverage")?;
    assert_eq!(
        (coverage.volumes_found, coverage.volumes_scanned),
        (3, 1),
        "{coverage:?}"
    );
    assert_eq!(coverage.summary, "1/3 volumes");
    let skipped: Vec<_> = coverage
        .skipped
        .iter()
        .map(|s| (s.id.as_str(), s.reason, s.error.as_deref()))
        .collect();
    assert_eq!(
        skipped,
        [(
            "disk0/p2",
            SkipReason::Encrypted,
            Some("encrypted volume (luks), not scanned")
        )],
        "swap loses no coverage"
    );
    let scanned = st.conditions.iter().find(|c| c.type_ == "Scanned");
    let scanned = scanned.context("Scanned condition")?;
    assert_eq!(
        (scanned.status.as_str(), scanned.reason.as_str()),
        ("False", "Incomplete")
    );
    assert!(
        scanned.message.contains("disk0/p2 (encrypted)"),
        "{}",
        scanned.message
    );
    let events = w.event_reasons().await?;
    assert_eq!(
        events
            .iter()
            .filter(|r| *r == "MachineScanIncomplete")
            .count(),
        1,
        "one Warning per scan: {events:?}"
    );
    let table = String::from_utf8_lossy(&w.kubectl_ok(&["get", "sm", "-n", &w.ns])?).into_owned();
    let header = table.lines().next().unwrap_or_default();
    assert!(header.contains("COVERAGE"), "{table}");
    let row = table.lines().find(|l| l.starts_with("lab-web-01"));
    assert!(
        row.is_some_and(|r| r.contains("Incomplete") && r.contains("1/3 volumes")),
        "{table}"
    );

    let rec = w.api::<Recommendation>().get("lab-coverage-image").await?;
    assert_eq!(
        rec.spec.title,
        "Machines (disk images) should be fully scanned for secrets"
    );
    assert_eq!(rec.spec.affected_count, 2);
    let listed: Vec<_> = rec
        .spec
        .affected_resources
        .iter()
        .map(|a| (a.machine.as_str(), a.phase))
        .collect();
    assert_eq!(
        listed,
        [
            ("lab-db-01", Some(MachinePhase::Failed)),
            ("lab-web-01", Some(MachinePhase::Incomplete))
        ]
    );
    assert_eq!(
        rec.spec.affected_resources[1].not_scanned[0].reason,
        SkipReason::Encrypted
    );
    let steps: Vec<_> = rec
        .spec
        .remediation
        .iter()
        .map(|r| r.secret_type.as_str())
        .collect();
    assert_eq!(steps, ["encrypted", "failed"]);

    let metrics = w.http.metrics.encode();
    for line in [
        r#"snapsentry_scans_total{result="incomplete"} 1"#,
        r#"snapsentry_machines_incomplete{policy="op-fail/lab"} 1"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_restarted_mid_scan_creates_no_duplicate_jobs() -> Result<()> {
    let mut w = images_world("op-restart", "4").await?;
    create_policy(&w, "lab", &["web-01", "web-02", "db-01"], 1).await?;
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
    w.start_operator_as("operator-1", false)?;
    let p = wait_scan_finished(&w, "lab", None).await?;
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
    let mut w = images_world("op-delete", "30").await?;
    create_policy(&w, "lab", &["web-01", "db-01"], 2).await?;
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
    let _ = &w.cloud.dir;
    w.stop_operator().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lease_holder_reconciles() -> Result<()> {
    let mut w = without_operator("op-leader", "0.2").await?;
    w.start_operator_as("replica-a", true)?;
    let first = w.operator.take().unwrap();
    w.start_operator_as("replica-b", true)?;
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
    create_policy(&w, "lab", &["web-01"], 1).await?;
    wait_scan_finished(&w, "lab", None).await?;
    assert_eq!(w.runner.started().len(), 1);

    // The leader stops and releases the Lease; the other replica takes over and reconciles.
    let (leader, other) = if holder == "replica-a" {
        (first, w.operator.take().unwrap())
    } else {
        (w.operator.take().unwrap(), first)
    };
    leader.stop().await?;
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
    wait_scan_finished(&w, "lab", previous.as_deref()).await?;
    w.operator = Some(other);
    w.stop_operator().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_past_its_timeout_fails_with_deadline_exceeded() -> Result<()> {
    // The CRD allows no timeout under 60 s; the operator's default (from the chart) has no such
    // floor, so the test sets that.
    let mut w = without_operator("op-deadline", "20").await?;
    w.operator_env
        .insert("SNAPSENTRY_SCANNER_TIMEOUT_SECONDS".into(), "1".into());
    w.start_operator()?;
    create_policy(&w, "lab", &["web-01"], 1).await?;
    let p = wait_scan_finished(&w, "lab", None).await?;
    let degraded = condition(&p, "Degraded").context("Degraded")?;
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

/// A ValidatingAdmissionPolicy (with its binding, limited to namespace `ns`) that denies the
/// scanner Job of machine `machine`.
async fn deny_jobs_of(w: &World, machine: &str) -> Result<()> {
    let name = format!("{}-deny-{machine}", w.ns);
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(serde_json::json!({
        "metadata": { "name": name },
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": { "resourceRules": [{
                "apiGroups": ["batch"], "apiVersions": ["v1"],
                "operations": ["CREATE"], "resources": ["jobs"]
            }]},
            "validations": [{
                "expression": format!(
                    "!has(object.metadata.labels) || !('{key}' in object.metadata.labels) || object.metadata.labels['{key}'] != '{machine}'",
                    key = labels::MACHINE
                ),
                "message": format!("scanner Jobs of {machine} are not admitted here"),
            }]
        }
    }))?;
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(serde_json::json!({
        "metadata": { "name": name },
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": { "namespaceSelector": {
                "matchLabels": { "kubernetes.io/metadata.name": w.ns }
            }}
        }
    }))?;
    let pp = PostParams::default();
    Api::<ValidatingAdmissionPolicy>::all(w.client.clone())
        .create(&pp, &policy)
        .await?;
    Api::<ValidatingAdmissionPolicyBinding>::all(w.client.clone())
        .create(&pp, &binding)
        .await?;
    Ok(())
}

/// Removes what [`deny_jobs_of`] made.
async fn admit_jobs_of(w: &World, machine: &str) -> Result<()> {
    let name = format!("{}-deny-{machine}", w.ns);
    let dp = DeleteParams::default();
    Api::<ValidatingAdmissionPolicyBinding>::all(w.client.clone())
        .delete(&name, &dp)
        .await?;
    Api::<ValidatingAdmissionPolicy>::all(w.client.clone())
        .delete(&name, &dp)
        .await?;
    Ok(())
}

/// Fair progress. A quota of one Job and a scan of three machines, three at a time: db-01
/// (first in line) gets the Job; web-01 and web-02 are refused while it runs and wait, visibly
/// (`JobsRefused` events), then fail with the quota's reason (`QuotaExceeded`, a
/// `MachineScanFailed` event, the policy `Degraded`) once none of the scan's Jobs runs, and the
/// scan finishes. Without the quota all three are scanned. Then an admission policy that denies
/// one machine's Job: that machine fails with the API server's reason while the other machines
/// of the scan are scanned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_job_fails_its_machine_and_the_others_go_on() -> Result<()> {
    let mut w = images_world("op-refused", "1").await?;
    w.limit_jobs(1).await?;
    create_policy(&w, "lab", &["db-01", "web-01", "web-02"], 3).await?;
    let quota = wait_scan_finished(&w, "lab", None).await?;
    let m = quota.status.as_ref().unwrap().machines.clone().unwrap();
    ensure!((m.scanned, m.failed) == (1, 2), "{m:?}");
    let degraded = condition(&quota, "Degraded").context("Degraded")?;
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "MachinesFailed")
    );
    ensure!(
        degraded.message.contains("lab-web-01") && degraded.message.contains("exceeded quota"),
        "{}",
        degraded.message
    );
    let jobs = w.jobs().await?;
    ensure!(
        jobs.len() == 1,
        "one Job under a quota of one: {}",
        jobs.len()
    );
    let db_done = jobs[0]
        .status
        .as_ref()
        .and_then(|s| s.completion_time.clone())
        .context("db-01's Job completed")?;
    let machines = w.machines().await?;
    assert_eq!(phase(&machines["lab-db-01"]), Some(MachinePhase::Scanned));
    for web in ["lab-web-01", "lab-web-02"] {
        assert_eq!(phase(&machines[web]), Some(MachinePhase::Failed), "{web}");
        let scanned = condition_of(&machines[web], "Scanned").context("Scanned")?;
        assert_eq!(
            (scanned.status.as_str(), scanned.reason.as_str()),
            ("False", "QuotaExceeded"),
            "{web}"
        );
        ensure!(
            scanned.message.contains("exceeded quota: job-quota"),
            "the API server's reason: {}",
            scanned.message
        );
        // They waited while db-01's Job ran, and failed only once nothing could free the quota.
        ensure!(
            scanned.last_transition_time.0 >= db_done.0,
            "{web} failed at {} before db-01's Job ended at {}",
            scanned.last_transition_time.0,
            db_done.0
        );
    }
    let reasons = w.event_reasons().await?;
    for reason in ["JobRefused", "MachineScanFailed"] {
        ensure!(reasons.iter().any(|r| r == reason), "a {reason} event");
    }

    w.unlimit_jobs().await?;
    let quota_id = quota.status.as_ref().unwrap().scan_id.clone();
    w.scan_now("lab", "1").await?;
    let first = wait_scan_finished(&w, "lab", quota_id.as_deref()).await?;
    let m = first.status.as_ref().unwrap().machines.clone().unwrap();
    ensure!((m.scanned, m.failed) == (3, 0), "{m:?}");
    assert_eq!(
        condition(&first, "Degraded").map(|c| c.status.as_str()),
        Some("False")
    );

    // The admission policy takes effect once the API server has loaded it.
    deny_jobs_of(&w, "lab-db-01").await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let first_id = first.status.as_ref().unwrap().scan_id.clone();
    w.scan_now("lab", "2").await?;
    let second = wait_scan_finished(&w, "lab", first_id.as_deref()).await;
    admit_jobs_of(&w, "lab-db-01").await?;
    let second = second?;
    let m = second.status.as_ref().unwrap().machines.clone().unwrap();
    ensure!((m.scanned, m.failed) == (2, 1), "db-01 failed alone: {m:?}");
    let degraded = condition(&second, "Degraded").context("Degraded")?;
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "MachinesFailed")
    );
    ensure!(
        degraded.message.contains("lab-db-01"),
        "{}",
        degraded.message
    );
    let machines = w.machines().await?;
    let db = &machines["lab-db-01"];
    assert_eq!(phase(db), Some(MachinePhase::Failed));
    let scanned = condition_of(db, "Scanned").context("Scanned")?;
    assert_eq!(
        (scanned.status.as_str(), scanned.reason.as_str()),
        ("False", "JobRefused")
    );
    ensure!(
        scanned
            .message
            .contains("scanner Jobs of lab-db-01 are not admitted here"),
        "the API server's reason: {}",
        scanned.message
    );
    for web in ["lab-web-01", "lab-web-02"] {
        assert_eq!(phase(&machines[web]), Some(MachinePhase::Scanned), "{web}");
    }
    ensure!(
        w.event_reasons()
            .await?
            .iter()
            .any(|r| r == "MachineScanFailed"),
        "a MachineScanFailed event"
    );
    let second_id = second.status.as_ref().unwrap().scan_id.clone().unwrap();
    let db_jobs = w
        .jobs()
        .await?
        .into_iter()
        .filter(|j| {
            j.labels().get(labels::MACHINE).map(String::as_str) == Some("lab-db-01")
                && j.labels().get(labels::SCAN_ID) == Some(&second_id)
        })
        .count();
    ensure!(db_jobs == 0, "no Job of db-01 in the second scan");
    w.stop_operator().await?;
    Ok(())
}

fn condition_of<'a>(
    m: &'a ScannedMachine,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    m.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// The operator's requests that wrote SecretFindings, by finding, and those sent to a finding's
/// `status`.
fn finding_writes(w: &World) -> (std::collections::BTreeMap<String, usize>, usize) {
    w.operator_requests.finding_writes(&w.ns)
}

/// One request per new or changed finding, counted as the operator's client sends them: the
/// stand-in scanner writes no assessment, so a first scan's findings each get one write carrying
/// the operator's labels and status together; the next scan writes each at most once; nothing
/// goes to a status subresource. (With the real scanner, which writes the provisional assessment
/// itself, the finish writes only what needs fleet facts: `finish_writes.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_per_new_or_changed_finding() -> Result<()> {
    let mut w = images_world("op-requests", "0.2").await?;
    create_policy(&w, "lab", &["web-01", "web-02", "db-01"], 3).await?;
    let first = wait_scan_finished(&w, "lab", None).await?;
    let findings = w
        .api::<SecretFinding>()
        .list(&ListParams::default())
        .await?
        .items;
    ensure!(findings.len() == 3, "{} findings", findings.len());
    let (writes, to_status) = finding_writes(&w);
    ensure!(
        to_status == 0,
        "{to_status} requests to a status subresource"
    );
    for f in &findings {
        let name = f.name_any();
        ensure!(
            writes.get(&name) == Some(&1),
            "{name}: {:?} writes in the first scan",
            writes.get(&name)
        );
        // The one request wrote both parts.
        let status = f.status.as_ref().context("status")?;
        ensure!(
            status.severity.is_some() && status.state.is_some(),
            "{status:?}"
        );
        ensure!(f.labels().contains_key(labels::NEW), "{:?}", f.labels());
    }
    ensure!(writes.len() == 3, "writes to other findings: {writes:?}");

    w.operator_requests.clear();
    w.scan_now("lab", "2").await?;
    let first_id = first.status.as_ref().unwrap().scan_id.clone();
    wait_scan_finished(&w, "lab", first_id.as_deref()).await?;
    let (writes, to_status) = finding_writes(&w);
    ensure!(
        to_status == 0,
        "{to_status} requests to a status subresource"
    );
    ensure!(
        writes.values().all(|n| *n <= 1),
        "at most one write per finding in the second scan: {writes:?}"
    );
    w.stop_operator().await?;
    Ok(())
}
