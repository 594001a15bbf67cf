//! The scanner Job (`snapsentry-scan job`) against a real kube-apiserver: an ext4 image made with
//! `mke2fs -d` from a tree holding an SSH key pair (the public half authorized for another user)
//! and an AWS key pair in two files is scanned; the test checks the SecretFindings (grouped
//! locations, the nine labels, stable names, `firstSeen` kept, people's triage kept across a
//! rescan), the ScannedMachine status (last scan, volumes, authorized keys with the fingerprint
//! `ssh-keygen -lf` prints) and that no secret value reaches the API objects or the logs.
//!
//! The Job's code runs in-process ([`snapsentry_scanner::job::run`], what `snapsentry-scan job`
//! calls), with a trace-level log subscriber capturing everything it logs.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use snapsentry_crds::contract::OPERATOR_FINDING_LABELS;
use snapsentry_crds::{
    AssignedDisk, AssignmentRules, Cloud, DiskSource, Exposure, MachineCoverage, MachinePhase,
    ScanAssignment, ScannedMachine, ScannedMachineSpec, SecretFinding, SkipReason, TriageState,
    labels,
};
use snapsentry_operator::controller::children::changed_finding;
use snapsentry_operator::correlate::{
    CorrelationInput, Correlator, DEFAULT_RETENTION, Desired, FindingRecord, Records,
    TargetInventory,
};
use snapsentry_scanner::job::{self, Options};
use snapsentry_tests::chart_rbac;
use snapsentry_tests::controlplane::{ControlPlane, create_namespace};
use snapsentry_tests::planted::{AWS_KEY_ID, AWS_SECRET, alice_key_pair};
use snapsentry_tests::process::ok;

#[path = "scanner_job/cap.rs"]
mod cap;
#[path = "scanner_job/incomplete.rs"]
mod incomplete;

const KEY: &[u8] = b"scanner-job-test-fingerprint-key-0123456789";

/// Everything logged by this process, at trace level (the scanner's "stderr").
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("first subscriber");
        buf
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The chart's RBAC installed in namespace `snapsentry`, and a client acting as the scanner's
/// service account, so the Job is proven to work with exactly the chart's permissions.
async fn scanner_client(cp: &ControlPlane, admin: &kube::Client) -> Result<kube::Client> {
    chart_rbac::install(cp, admin, "snapsentry").await?;
    Ok(chart_rbac::client_as(cp, "snapsentry", chart_rbac::SCANNER).await?)
}

async fn machine(client: &kube::Client, ns: &str, name: &str, exposed: bool) -> Result<()> {
    let mut sm = ScannedMachine::new(
        name,
        ScannedMachineSpec {
            policy: "lab-images".into(),
            cloud: Cloud::Image,
            instance_id: "web-01".into(),
            display_name: None,
            region: None,
            platform: Some("linux".into()),
            state: None,
            exposure: Exposure {
                internet_facing: exposed,
                reasons: vec!["public IPv4 203.0.113.7".into()],
            },
            disks: vec![],
            cloud_authorized_keys: vec![],
        },
    );
    sm.metadata.namespace = Some(ns.into());
    Api::<ScannedMachine>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &sm)
        .await?;
    Ok(())
}

fn assignment(ns: &str, machine: &str, scan_id: &str, disks: Vec<AssignedDisk>) -> ScanAssignment {
    ScanAssignment {
        version: ScanAssignment::VERSION,
        policy: "lab-images".into(),
        namespace: ns.into(),
        machine: machine.into(),
        instance_id: "web-01".into(),
        scan_id: scan_id.into(),
        cloud: Cloud::Image,
        disks,
        rules: AssignmentRules::default(),
        max_findings: 500,
    }
}

/// What the Job wrote — every finding's status and labels — is what the operator's correlation
/// makes of the namespace's findings and machines as they are (image machines have no
/// inventory), so the operator's finish would write none of them; every operator label is there
/// (`snapsentry.io/target` only for a finding with a target).
async fn correlation_agrees(client: &kube::Client, ns: &str) -> Result<()> {
    let findings = Api::<SecretFinding>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items;
    let machines = Api::<ScannedMachine>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items;
    let targets = TargetInventory::default();
    let mut records = Records::new();
    let kept: Vec<FindingRecord> = findings
        .iter()
        .filter_map(|f| records.record(f.clone()))
        .collect();
    let input = CorrelationInput {
        policy: "lab-images",
        namespace: ns,
        owner: None,
        machines: &machines,
        findings: &kept,
        targets: &targets,
        now: k8s_openapi::jiff::Timestamp::now(),
        retention: DEFAULT_RETENTION,
    };
    let updates: Vec<Desired<'_>> = Correlator::new(&input).updates().collect();
    ensure!(updates.len() == findings.len());
    for f in &findings {
        let name = f.metadata.name.as_deref().unwrap_or_default();
        let update = &updates
            .iter()
            .find(|d| d.update.name == name)
            .with_context(|| format!("{name} correlated"))?
            .update;
        ensure!(
            f.status.as_ref() == Some(&update.status),
            "{name}: the Job wrote {:?}, correlation makes {:?}",
            f.status,
            update.status
        );
        ensure!(
            f.metadata.labels.as_ref() == Some(&update.labels),
            "{name}: the Job wrote {:?}, correlation makes {:?}",
            f.metadata.labels,
            update.labels
        );
        for key in OPERATOR_FINDING_LABELS {
            let want = key != labels::TARGET || update.status.target.is_some();
            ensure!(update.labels.contains_key(key) == want, "{name}: {key}");
        }
    }
    ensure!(
        updates.into_iter().all(|d| changed_finding(d).is_none()),
        "the operator's finish would write findings"
    );
    Ok(())
}

/// The planted machine: its image, its private key's lines and `ssh-keygen -lf`'s fingerprint.
struct Planted {
    _dir: tempfile::TempDir,
    image: PathBuf,
    private_key: String,
    ssh_fingerprint: String,
}

fn plant() -> Result<Planted> {
    let dir = tempfile::tempdir()?;
    let tree = dir.path().join("tree");
    for d in [
        "home/alice/.ssh",
        "home/alice/.aws",
        "home/bob/.ssh",
        "opt/app",
    ] {
        std::fs::create_dir_all(tree.join(d))?;
    }
    let key = tree.join("home/alice/.ssh/id_ed25519");
    let authorized_keys = tree.join("home/bob/.ssh/authorized_keys");
    let private_key = alice_key_pair(&key, &authorized_keys)?;
    // The public half stays beside the private key too, as `ssh-keygen` left it.
    std::fs::copy(&authorized_keys, key.with_extension("pub"))?;
    std::fs::write(
        tree.join("home/alice/.aws/credentials"),
        format!(
            "[default]\naws_access_key_id = {AWS_KEY_ID}\naws_secret_access_key = {AWS_SECRET}\n"
        ),
    )?;
    std::fs::write(
        tree.join("opt/app/.env"),
        format!("AWS_ACCESS_KEY_ID={AWS_KEY_ID}\nAWS_SECRET_ACCESS_KEY={AWS_SECRET}\n"),
    )?;
    let listed = ok(
        Command::new("ssh-keygen")
            .arg("-lf")
            .arg(key.with_extension("pub"))
            .output()?,
        "ssh-keygen -lf",
    )?;
    let ssh_fingerprint = listed
        .split_whitespace()
        .nth(1)
        .context("ssh-keygen -lf output")?
        .to_owned();
    let image = dir.path().join("web-01.img");
    snapsentry_tests::image::ext4(&tree, &image, 32)?;
    Ok(Planted {
        private_key,
        _dir: dir,
        image,
        ssh_fingerprint,
    })
}

/// Pieces of the planted secrets long enough to be a leak: the AWS key pair and every base64
/// line of the private key.
fn secret_pieces(p: &Planted) -> Vec<String> {
    let mut out = vec![AWS_SECRET.to_owned(), AWS_KEY_ID.to_owned()];
    for line in p.private_key.lines() {
        if !line.starts_with("-----") && line.len() >= 16 {
            out.push(line.to_owned());
        }
    }
    assert!(out.len() >= 5, "the private key has base64 lines");
    out
}

fn assert_no_leak(what: &str, text: &str, pieces: &[String]) -> Result<()> {
    for piece in pieces {
        // Any 12 consecutive characters of a secret count as a leak (redaction keeps at most 4).
        let chars: Vec<char> = piece.chars().collect();
        for window in chars.windows(12) {
            let w: String = window.iter().collect();
            ensure!(!text.contains(&w), "{what} contains secret material {w:?}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn job_writes_grouped_findings_and_machine_status_and_keeps_triage() -> Result<()> {
    let logs = logs();
    let planted = plant()?;
    let cp = ControlPlane::shared().await?;
    let client = cp.client().await?;
    cp.install_crds()?;
    let ns = "scan-job";
    create_namespace(&client, ns).await?;
    machine(&client, ns, "lab-images-web-01", true).await?;

    let disks = vec![AssignedDisk {
        id: "web-01.img".into(),
        source: DiskSource::Image {
            path: planted.image.display().to_string(),
        },
    }];
    let options = Options {
        threads: Some(2),
        progress_interval: Duration::from_millis(20),
        ..Options::default()
    };
    // The Job runs as the scanner's service account with the chart's RBAC: it lists findings
    // (its machine's, once per Job) but may not delete them.
    let scanner = scanner_client(cp, &client).await?;
    let as_scanner: Api<ScannedMachine> = Api::namespaced(scanner.clone(), ns);
    for attempt in 0.. {
        // RBAC reaches the authorizer's cache shortly after it is written.
        match as_scanner.get("lab-images-web-01").await {
            Ok(_) => break,
            Err(e) if attempt < 50 => {
                tracing::debug!(error = %e, "waiting for RBAC");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => bail!("the scanner cannot read its machine: {e}"),
        }
    }
    let denied = Api::<SecretFinding>::namespaced(scanner.clone(), ns)
        .delete_collection(&Default::default(), &ListParams::default())
        .await;
    ensure!(
        matches!(&denied, Err(kube::Error::Api(s)) if s.code == 403),
        "the scanner may not delete findings: {denied:?}"
    );

    let first = assignment(ns, "lab-images-web-01", "20261122-140000", disks.clone());
    let out1 = job::run(scanner.clone(), &first, KEY.to_vec(), &options).await?;
    ensure!(out1.summary.succeeded, "{:?}", out1.summary);
    ensure!(out1.findings.len() == 2, "findings: {:?}", out1.findings);

    let sf_api: Api<SecretFinding> = Api::namespaced(client.clone(), ns);
    let listed = sf_api.list(&ListParams::default()).await?.items;
    ensure!(listed.len() == 2, "{} SecretFindings", listed.len());
    let aws = listed
        .iter()
        .find(|f| f.spec.rule_id == "aws-access-key")
        .context("an AWS finding")?;
    let ssh = listed
        .iter()
        .find(|f| f.spec.metadata.ssh.is_some())
        .context("an SSH key finding")?;
    let aws_name = aws.metadata.name.clone().unwrap();
    ensure!(
        aws_name
            .strip_prefix("lab-images-web-01-aws-access-key-")
            .is_some_and(|h| h.len() == 10 && h.bytes().all(|b| b.is_ascii_hexdigit())),
        "{aws_name}"
    );
    // The same AWS key in two files: one finding, two locations.
    ensure!(aws.spec.location_count == 2, "{:?}", aws.spec.locations);
    let paths: Vec<(&str, &str)> = aws
        .spec
        .locations
        .iter()
        .map(|l| (l.volume.as_str(), l.path.as_str()))
        .collect();
    ensure!(
        paths
            == [
                ("disk0/disk", "/home/alice/.aws/credentials"),
                ("disk0/disk", "/opt/app/.env")
            ],
        "{paths:?}"
    );
    // At most four leading characters and the length.
    let (prefix, len) = aws.spec.redacted.split_once('…').context("redacted form")?;
    ensure!(
        prefix.chars().count() <= 4 && len == "(40)",
        "{}",
        aws.spec.redacted
    );
    ensure!(aws.spec.fingerprint.starts_with("hmac-sha256:"));
    ensure!(aws.spec.scan_id == "20261122-140000" && aws.spec.triage.is_none());
    ensure!(aws.spec.locations[0].mode.is_some() && aws.spec.locations[0].size.is_some());
    ensure!(aws.spec.locations[0].line == Some(3));
    let ssh_facts = ssh.spec.metadata.ssh.as_ref().unwrap();
    ensure!(
        ssh_facts.public_key_fingerprint.as_deref() == Some(planted.ssh_fingerprint.as_str()),
        "{ssh_facts:?} vs {}",
        planted.ssh_fingerprint
    );
    ensure!(ssh_facts.algorithm == "ssh-ed25519" && !ssh_facts.encrypted);

    // The query labels (all of them, and the status, are checked against correlation below).
    let l = aws.metadata.labels.clone().unwrap_or_default();
    for (k, v) in [
        (labels::POLICY, "lab-images"),
        (labels::MACHINE, "lab-images-web-01"),
        (labels::CLOUD, "image"),
        (labels::SECRET_TYPE, "aws-access-key"),
        (labels::STATE, "active"),
        (labels::VERIFIED, "not-applicable"),
        (labels::EXPOSED, "true"),
        (labels::TARGET_KIND, "none"),
        (labels::NEW, "true"),
    ] {
        ensure!(
            l.get(k).map(String::as_str) == Some(v),
            "label {k}: {:?}, want {v}",
            l.get(k)
        );
    }
    let table = ok(cp.kubectl(["get", "sf", "-n", ns])?, "kubectl get sf")?;
    for want in [
        aws_name.as_str(),
        ssh.metadata.name.as_deref().unwrap(),
        "/home/alice/.aws/credentials",
        "/home/alice/.ssh/id_ed25519",
    ] {
        ensure!(
            table.contains(want),
            "kubectl get sf lacks {want}:\n{table}"
        );
    }
    let selected = ok(
        cp.kubectl([
            "get",
            "sf",
            "-n",
            ns,
            "-o",
            "name",
            "-l",
            "snapsentry.io/secret-type=aws-access-key,snapsentry.io/state=active",
        ])?,
        "kubectl get sf -l",
    )?;
    ensure!(selected.trim() == format!("secretfinding.snapsentry.io/{aws_name}"));

    // The ScannedMachine's status.
    let sm_api: Api<ScannedMachine> = Api::namespaced(client.clone(), ns);
    let sm = sm_api.get("lab-images-web-01").await?;
    let status = sm.status.clone().context("status")?;
    ensure!(status.phase == Some(MachinePhase::Scanned), "{status:?}");
    ensure!(status.progress.is_none(), "progress cleared: {status:?}");
    let last = status.last_scan.as_ref().context("lastScan")?;
    ensure!(last.scan_id == "20261122-140000" && last.succeeded && last.findings == 2);
    ensure!(last.files >= 5 && last.bytes_scanned > 0, "{last:?}");
    ensure!(last.started_at.is_some() && last.finished_at.is_some());
    ensure!(
        last.volumes.len() == 1
            && last.volumes[0].id == "disk0/disk"
            && last.volumes[0].scanned
            && last.volumes[0].filesystem.as_deref() == Some("ext4"),
        "{:?}",
        last.volumes
    );
    ensure!(last.errors.is_empty(), "{:?}", last.errors);
    ensure!(
        status.authorized_keys.len() == 1
            && status.authorized_keys[0].user == "bob"
            && status.authorized_keys[0].path == "/home/bob/.ssh/authorized_keys"
            && status.authorized_keys[0].fingerprint == planted.ssh_fingerprint,
        "{:?} vs {}",
        status.authorized_keys,
        planted.ssh_fingerprint
    );

    correlation_agrees(&client, ns).await?;

    // A person triages the AWS finding with their own field manager.
    let triage = serde_json::json!({
        "apiVersion": "snapsentry.io/v1alpha1", "kind": "SecretFinding",
        "metadata": { "name": aws_name },
        "spec": { "triage": { "state": "falsePositive", "note": "rotated", "by": "alice" } },
    });
    sf_api
        .patch(
            &aws_name,
            &PatchParams::apply("security-team"),
            &Patch::Apply(&triage),
        )
        .await
        .context("triage")?;

    // A rescan: same names, no duplicates, firstSeen kept, lastSeen and scanId updated, triage
    // kept. Times are stored to the second: a scan starting in the second the findings were
    // first seen would see them as new.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = assignment(ns, "lab-images-web-01", "20261123-030000", disks);
    let out2 = job::run(scanner, &second, KEY.to_vec(), &options).await?;
    ensure!(
        out2.findings == out1.findings,
        "{:?} vs {:?}",
        out2.findings,
        out1.findings
    );
    let relisted = sf_api.list(&ListParams::default()).await?.items;
    ensure!(relisted.len() == 2, "{} SecretFindings", relisted.len());
    let aws2 = sf_api.get(&aws_name).await?;
    ensure!(aws2.spec.first_seen == aws.spec.first_seen);
    ensure!(aws2.spec.last_seen.0 >= aws.spec.last_seen.0);
    ensure!(aws2.spec.scan_id == "20261123-030000");
    let triage = aws2.spec.triage.as_ref().context("triage survives")?;
    ensure!(triage.state == TriageState::FalsePositive && triage.by.as_deref() == Some("alice"));
    let managers: Vec<String> = aws2
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    ensure!(
        managers.contains(&"snapsentry-scanner".to_owned())
            && managers.contains(&"security-team".to_owned()),
        "{managers:?}"
    );
    let sm = sm_api.get("lab-images-web-01").await?;
    let last = sm.status.and_then(|s| s.last_scan).context("lastScan")?;
    ensure!(last.scan_id == "20261123-030000");
    // The rescan kept people's triage in the state label, and no finding is new.
    let l = aws2.metadata.labels.clone().unwrap_or_default();
    ensure!(
        l.get(labels::STATE).map(String::as_str) == Some("falsePositive")
            && l.get(labels::NEW).map(String::as_str) == Some("false"),
        "{l:?}"
    );
    correlation_agrees(&client, ns).await?;

    // No secret value anywhere: objects (as YAML) and everything logged at trace level.
    let pieces = secret_pieces(&planted);
    let yaml = ok(
        cp.kubectl(["get", "sf,sm", "-n", ns, "-o", "yaml"])?,
        "kubectl get -o yaml",
    )?;
    ensure!(yaml.contains(&aws_name) && yaml.contains("lastScan"));
    assert_no_leak("kubectl get sf,sm -o yaml", &yaml, &pieces)?;
    let logged = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    ensure!(
        logged.contains("scan finished"),
        "the scanner logged: {logged}"
    );
    assert_no_leak("the scanner's log", &logged, &pieces)?;
    Ok(())
}
