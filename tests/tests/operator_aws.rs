//! AWS end to end: a ScanPolicy with the `aws` provider, the operator, a real kube-apiserver, the
//! local Job runner playing kubelet + Job controller, the real scanner (`snapsentry-scan job`)
//! reading snapshots through the EBS direct APIs, and moto (with the wrapper of `tests/moto/`)
//! playing EC2, EBS, RDS, S3 and STS.
//!
//! The fleet is the demo's (`examples/demo/`): web-01 (exposed: public IP, SSH open to the
//! internet) holds a private key authorized on db-01 and a connection string to the RDS instance;
//! win-01 holds Windows secrets; build-01 carries the exclusion tag. Every planted secret is fresh.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use aws_sdk_ec2::types::Filter;
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams, PostParams};
use snapsentry_crds::{AttackPath, MachinePhase, Recommendation, ScanPolicy, SecretFinding};
use snapsentry_tests::moto::{Moto, REGION};
use snapsentry_tests::results::{label, machines_by_name};
use snapsentry_tests::world::{self, Cloud, Setup};
use snapsentry_tests::{logs, repo};

/// The RDS endpoint the fleet's connection strings name (planted into moto).
const RDS_ADDRESS: &str = "orders.c1snapsentry.us-east-1.rds.amazonaws.com";

/// The AWS side of a world: moto holding the demo fleet.
struct Aws {
    moto: Moto,
    fleet: serde_json::Value,
    /// Every secret value planted on the fleet's disks.
    planted: Vec<String>,
    _images: tempfile::TempDir,
}

impl Cloud for Aws {
    fn diagnostics(&self) -> String {
        format!("moto: {}", self.moto.log_tail())
    }
}

type World = world::World<Aws>;

/// Moto with the demo fleet, and a namespace whose Jobs run `command` (`None`: the real
/// scanner found on `PATH`). No operator yet.
async fn aws_world(ns: &str, command: Option<Vec<String>>) -> Result<World> {
    world::scanner()?;
    let moto = Moto::start()?;
    moto.plant_rds_address("orders", RDS_ADDRESS)?;
    let images = tempfile::tempdir()?;
    let out = std::process::Command::new(repo().join("examples/demo/fleet-images.sh"))
        .arg(images.path())
        .arg(RDS_ADDRESS)
        .output()
        .context("examples/demo/fleet-images.sh")?;
    ensure!(
        out.status.success(),
        "fleet-images.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let planted: Vec<String> = std::fs::read_to_string(images.path().join("planted.txt"))?
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    ensure!(planted.len() >= 6, "planted: {}", planted.len());
    let image = |m: &str| images.path().join(format!("{m}.raw")).display().to_string();
    let production = serde_json::json!({ "environment": "production" });
    let fleet = moto.create_fleet(&serde_json::json!({
        "machines": [
            { "name": "web-01", "platform": "linux", "images": [image("web-01")],
              "tags": production, "exposed": true },
            { "name": "db-01", "platform": "linux", "images": [image("db-01")],
              "tags": production, "exposed": false },
            { "name": "win-01", "platform": "windows", "images": [image("win-01")],
              "tags": production, "exposed": false },
            { "name": "build-01", "platform": "linux", "images": [],
              "tags": { "environment": "production", "snapsentry.io/skip": "true" },
              "exposed": false },
        ],
        "rds": [{ "id": "orders", "engine": "postgres", "address": RDS_ADDRESS }],
        "buckets": ["acme-backups"],
    }))?;
    // The scanner's AWS credentials come from its environment, as from IRSA in a cluster; the
    // operator's from the Secret the policy names.
    let scanner_env = moto
        .env()
        .into_iter()
        .filter(|(k, _)| k != "AWS_ENDPOINT_URL");
    let setup = Setup::new(
        ns,
        Aws {
            moto,
            fleet,
            planted,
            _images: images,
        },
    )
    .secret(
        "aws-moto",
        &[("accessKeyId", "testing"), ("secretAccessKey", "testing")],
    )
    .command(command)
    .envs(scanner_env)
    .env("SNAPSENTRY_LOG", "info");
    Ok(World::start(setup).await?)
}

impl Aws {
    fn ec2(&self) -> aws_sdk_ec2::Client {
        let conf = aws_sdk_ec2::Config::builder()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .region(aws_sdk_ec2::config::Region::new(REGION))
            .endpoint_url(self.moto.endpoint())
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .http_client(
                aws_smithy_http_client::Builder::new()
                    .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                        aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                    ))
                    .build_https(),
            )
            .build();
        aws_sdk_ec2::Client::from_conf(conf)
    }

    /// Snapshots in moto carrying snapsentry's tag.
    async fn snapsentry_snapshots(&self) -> Result<Vec<String>> {
        let out = self
            .ec2()
            .describe_snapshots()
            .owner_ids("self")
            .filters(
                Filter::builder()
                    .name("tag-key")
                    .values("snapsentry.io/managed-by")
                    .build(),
            )
            .send()
            .await?;
        Ok(out
            .snapshots()
            .iter()
            .filter_map(|s| s.snapshot_id().map(str::to_owned))
            .collect())
    }

    async fn volume_ids(&self) -> Result<BTreeSet<String>> {
        let out = self.ec2().describe_volumes().send().await?;
        Ok(out
            .volumes()
            .iter()
            .filter_map(|v| v.volume_id().map(str::to_owned))
            .collect())
    }

    fn instance_id(&self, name: &str) -> String {
        self.fleet["machines"][name]["instanceId"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// `examples/aws/scanpolicy.yaml` as a user would adapt it: this namespace, moto as the
/// endpoint, the credentials Secret, no cross-account role; `concurrency` when given.
async fn apply_policy(w: &World, name: &str, concurrency: Option<u32>) -> Result<()> {
    let example = std::fs::read_to_string(repo().join("examples/aws/scanpolicy.yaml"))?;
    let mut policy: ScanPolicy = serde_yaml::from_str(&example)?;
    policy.metadata.name = Some(name.into());
    policy.metadata.namespace = Some(w.ns.clone());
    let aws = policy.spec.providers[0]
        .aws
        .as_mut()
        .context("the example's provider is aws")?;
    aws.endpoint_url = Some(w.cloud.moto.endpoint());
    aws.credentials_secret = Some("aws-moto".into());
    aws.assume_role_arn = None;
    aws.external_id = None;
    policy.spec.scanner = None;
    if concurrency.is_some() {
        policy.spec.concurrency = concurrency;
    }
    // The example scans nightly; the annotation asks for a scan now, as a user would.
    policy
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert("snapsentry.io/scan-now".into(), "first".into());
    w.api::<ScanPolicy>()
        .create(&PostParams::default(), &policy)
        .await?;
    Ok(())
}

/// Wait until the policy's scan has finished (up to `secs` seconds).
async fn wait_scan_finished(w: &World, name: &str, secs: u64) -> Result<ScanPolicy> {
    Ok(w.wait_scan_finished(name, None, Duration::from_secs(secs))
        .await?)
}

/// Every object, Event and log line the scan produced must be free of the planted values.
fn assert_nothing_leaked(w: &World) -> Result<()> {
    let haystack: String = w
        .everything_visible()?
        .iter()
        .map(|(_, text)| String::from_utf8_lossy(text))
        .collect();
    ensure!(
        haystack.len() > 10_000,
        "too little collected to be a check"
    );
    for secret in &w.cloud.planted {
        let probe: String = secret.chars().take(12).collect();
        ensure!(
            !haystack.contains(&probe),
            "a planted secret (prefix {}…) leaked",
            &probe[..4]
        );
    }
    Ok(())
}

/// Wait until moto holds at least one snapsentry snapshot.
async fn wait_for_a_snapshot(w: &World) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while w.cloud.snapsentry_snapshots().await?.is_empty() {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no snapshots taken; operator log: {}",
            logs::tail(40)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(())
}

/// The end-to-end scenario with throttling and server errors injected into block reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aws_fleet_scanned_through_ebs_direct_reads() -> Result<()> {
    let mut w = aws_world("aws-e2e", None).await?;
    let volumes_before = w.cloud.volume_ids().await?;
    w.cloud.moto.set_faults(&serde_json::json!({
        "getSnapshotBlock": { "throttleEvery": 7, "serverErrorEvery": 11 }
    }))?;
    w.start_operator()?;
    apply_policy(&w, "aws-production", None).await?;
    let p = wait_scan_finished(&w, "aws-production", 240).await?;
    let status = p.status.clone().context("status")?;
    let counts = status.machines.clone().context("machine counts")?;
    ensure!(
        (counts.total, counts.scanned, counts.failed) == (3, 3, 0),
        "{counts:?}; Job logs: {:?}",
        w.runner
            .started()
            .iter()
            .map(|j| w.runner.log(j))
            .collect::<Vec<_>>()
    );

    // Inventory: the excluded machine is not there; exposure and platform as AWS reports them.
    let machines = machines_by_name(&w).await?;
    let names: Vec<&str> = machines.keys().map(String::as_str).collect();
    assert_eq!(names, ["db-01", "web-01", "win-01"]);
    let web = &machines["web-01"];
    assert_eq!(web.spec.instance_id, w.cloud.instance_id("web-01"));
    assert!(web.spec.exposure.internet_facing);
    let reasons = web.spec.exposure.reasons.join("; ");
    assert!(
        reasons.contains("public IP") && reasons.contains("0.0.0.0/0"),
        "{reasons}"
    );
    assert!(!machines["db-01"].spec.exposure.internet_facing);
    assert_eq!(machines["win-01"].spec.platform.as_deref(), Some("windows"));
    for m in machines.values() {
        let st = m.status.as_ref().context("machine status")?;
        assert_eq!(st.phase, Some(MachinePhase::Scanned), "{}", m.name_any());
        let last = st.last_scan.as_ref().context("lastScan")?;
        assert!(last.succeeded && last.files > 0, "{last:?}");
        assert!(last.volumes.iter().any(|v| v.scanned), "{last:?}");
    }
    let reads: Vec<_> = machines
        .values()
        .filter_map(|m| {
            m.status
                .as_ref()?
                .last_scan
                .as_ref()?
                .snapshot_reads
                .clone()
        })
        .collect();
    assert_eq!(reads.len(), 3, "every machine was read from its snapshot");
    for r in &reads {
        assert!(
            r.blocks_fetched > 0 && r.blocks_fetched <= r.blocks_listed,
            "{r:?}"
        );
    }
    let retries: u64 = reads.iter().map(|r| r.retries).sum();
    let counters = w.cloud.moto.fault_counters()?;
    let faulted = counters["getSnapshotBlock"]["throttled"]
        .as_u64()
        .unwrap_or(0)
        + counters["getSnapshotBlock"]["serverErrors"]
            .as_u64()
            .unwrap_or(0);
    ensure!(faulted > 0, "no fault was injected: {counters}");
    assert_eq!(
        retries, faulted,
        "every injected fault was retried and counted"
    );

    // The verified SSH path from the exposed web server to the database server.
    let findings = w
        .api::<SecretFinding>()
        .list(&ListParams::default())
        .await?
        .items;
    let key = findings
        .iter()
        .find(|f| label(*f, "snapsentry.io/target-kind") == Some("vm"))
        .context("a finding targeting a VM")?;
    assert_eq!(
        label(key, "snapsentry.io/machine"),
        Some(machines["web-01"].name_any().as_str())
    );
    assert_eq!(label(key, "snapsentry.io/verified"), Some("verified"));
    assert_eq!(label(key, "snapsentry.io/exposed"), Some("true"));
    let on = &key.status.as_ref().context("finding status")?.authorized_on;
    assert!(
        on.iter()
            .any(|a| a.machine == machines["db-01"].name_any() && a.user == "admin"),
        "{on:?}"
    );
    // The RDS connection strings name a database that exists.
    let rds: Vec<&SecretFinding> = findings
        .iter()
        .filter(|f| label(*f, "snapsentry.io/target-kind") == Some("rds"))
        .collect();
    ensure!(!rds.is_empty(), "no finding targets RDS");
    for f in &rds {
        let target = f
            .status
            .as_ref()
            .and_then(|s| s.target.as_ref())
            .context("target assessment")?;
        assert_eq!(target.exists, Some(true), "{}", f.name_any());
    }

    // Attack paths, titled as Defender titles them for AWS.
    let paths = w
        .api::<AttackPath>()
        .list(&ListParams::default())
        .await?
        .items;
    let titles: BTreeSet<&str> = paths.iter().map(|p| p.spec.title.as_str()).collect();
    for expected in [
        "Exposed Vulnerable EC2 instance has an insecure SSH private key that is used to authenticate to an EC2 instance",
        "Exposed Vulnerable EC2 instance has insecure secrets that are used to authenticate to an AWS RDS server",
    ] {
        assert!(titles.contains(expected), "{titles:#?}");
    }
    let recs = w
        .api::<Recommendation>()
        .list(&ListParams::default())
        .await?
        .items;
    let ec2 = recs
        .iter()
        .find(|r| r.spec.title == "EC2 instances should have secrets findings resolved")
        .context("the AWS recommendation")?;
    let affected: BTreeSet<&str> = ec2
        .spec
        .affected_resources
        .iter()
        .map(|a| a.machine.as_str())
        .collect();
    let expected: BTreeSet<&str> = machines
        .values()
        .map(|m| m.metadata.name.as_deref().unwrap_or(""))
        .collect();
    assert_eq!(affected, expected);

    // Nothing left behind in the cloud: no snapshot, no volume the operator made.
    let left = w.cloud.snapsentry_snapshots().await?;
    assert!(left.is_empty(), "snapshots left behind: {left:?}");
    assert_eq!(w.cloud.volume_ids().await?, volumes_before);

    let out = w.cp.kubectl(["get", "sf", "-n", &w.ns])?;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains(&w.cloud.instance_id("web-01")) && table.contains("SSH private key"),
        "{table}"
    );
    assert_nothing_leaked(&w)?;
    w.stop_operator().await?;
    Ok(())
}

/// A scanner killed mid-scan: the machines fail, and the snapshots are deleted all the same — each
/// machine's as soon as its Job fails, so with one machine at a time there is never more than one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_scanner_leaves_no_snapshot() -> Result<()> {
    let mut w = aws_world("aws-killed", Some(world::killed_scanner())).await?;
    w.start_operator()?;
    apply_policy(&w, "aws-killed", Some(1)).await?;
    let most = AtomicUsize::new(0);
    let watch = async {
        loop {
            if let Ok(s) = w.cloud.snapsentry_snapshots().await {
                most.fetch_max(s.len(), Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    };
    let p = tokio::select! {
        p = wait_scan_finished(&w, "aws-killed", 180) => p?,
        _ = watch => unreachable!("the watch never ends"),
    };
    let counts = p.status.and_then(|s| s.machines).context("counts")?;
    assert_eq!((counts.total, counts.failed), (3, 3), "{counts:?}");
    let most = most.load(Ordering::Relaxed);
    assert!(
        most <= 1,
        "{most} snapshots at once: released only at the scan's end"
    );
    let left = w.cloud.snapsentry_snapshots().await?;
    assert!(left.is_empty(), "snapshots left behind: {left:?}");
    w.stop_operator().await?;
    Ok(())
}

/// The operator dies after taking the snapshots and before its Jobs exist (here: an unreachable
/// admission webhook fails every Job creation, so every attempt stops right there), and a new operator finishes the scan: the snapshots
/// are taken once, reused, and deleted at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_restarted_before_its_jobs_takes_no_second_snapshot() -> Result<()> {
    let mut w = aws_world("aws-restart", None).await?;
    w.forbid_jobs().await?;
    w.start_operator()?;
    apply_policy(&w, "aws-restart", None).await?;

    // Wait for the first machine's snapshot; its Job creation fails, so the operator retries (every
    // 5 s) from the top: each retry must find and reuse the snapshot, never take another.
    wait_for_a_snapshot(&w).await?;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let taken = w.cloud.snapsentry_snapshots().await?;
    assert_eq!(
        taken.len(),
        1,
        "one snapshot of the first machine's volume, however often it retried: {taken:?}"
    );
    let reused = String::from_utf8_lossy(&logs::captured())
        .matches("reusing this scan's snapshots")
        .count();
    assert!(reused >= 1, "the retries went through the snapshot lookup");
    assert!(
        w.api::<Job>()
            .list(&ListParams::default())
            .await?
            .items
            .is_empty()
    );

    w.stop_operator().await?;
    w.allow_jobs().await?;
    w.start_operator()?;
    let p = wait_scan_finished(&w, "aws-restart", 240).await?;
    let counts = p.status.and_then(|s| s.machines).context("counts")?;
    assert_eq!((counts.scanned, counts.failed), (3, 0), "{counts:?}");
    let left = w.cloud.snapsentry_snapshots().await?;
    assert!(left.is_empty(), "snapshots left behind: {left:?}");
    w.stop_operator().await?;
    Ok(())
}

/// A policy deleted in the middle of a scan: its finalizer deletes the snapshots the scan took
/// before the policy goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_policy_mid_scan_deletes_its_snapshots() -> Result<()> {
    let mut w = aws_world("aws-delete", None).await?;
    w.forbid_jobs().await?;
    w.start_operator()?;
    apply_policy(&w, "aws-delete", None).await?;
    wait_for_a_snapshot(&w).await?;
    w.api::<ScanPolicy>()
        .delete("aws-delete", &DeleteParams::default())
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while w.api::<ScanPolicy>().get_opt("aws-delete").await?.is_some() {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the policy was not deleted; operator log: {}",
            logs::tail(40)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let left = w.cloud.snapsentry_snapshots().await?;
    assert!(left.is_empty(), "snapshots left behind: {left:?}");
    w.stop_operator().await?;
    Ok(())
}
