//! Azure end to end: a ScanPolicy with the `azure` provider (`examples/azure/scanpolicy.yaml`
//! pointed at the fake ARM), the operator, a real kube-apiserver, the local Job runner playing
//! kubelet + Job controller, the real scanner (`snapsentry-scan job`) reading each snapshot's page
//! blob from Azurite through the SAS URL the operator granted and handed over in the Job's own
//! Secret, and the fake ARM (`tests/azure/`) playing Compute, Network, Storage and SQL.
//!
//! The fleet is the demo's, as Azure VMs ([`snapsentry_tests::world::azure`]): web-01 exposed
//! (public IP, SSH open to `Internet`) with a private key authorized on db-01 and connection
//! strings to a storage account and an SQL server, db-01 (LVM) with another storage connection
//! string, win-01 with Windows secrets. The faults: throttled and busy blob reads, a SAS that
//! expires mid-scan, a killed scanner, an operator restarted between snapshot and Job. After each,
//! nothing is left in the cloud (no snapshot, no active SAS grant) nor in the namespace (no grant
//! Secret).

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{ListParams, PostParams};
use snapsentry_crds::{MachinePhase, ScanPolicy, ScannedMachine};
use snapsentry_tests::fake_arm::TENANT;
use snapsentry_tests::results::{label, machine_counts, machines_by_name};
use snapsentry_tests::world::azure::{
    self, Azure, BACKUP_STORAGE, CLIENT_ID, CREDENTIALS_SECRET, Options, SQL_SERVER, SUBSCRIPTIONS,
    WEB_PUBLIC_IP, WEB_STORAGE,
};
use snapsentry_tests::world::{self, Setup};
use snapsentry_tests::{logs, repo};

type World = world::World<Azure>;

/// The Azure fixture with `options`, and a namespace around it. No operator yet.
async fn azure_world(ns: &str, options: Options) -> Result<World> {
    world::scanner()?;
    let ns = ns.to_owned();
    // Building the images and starting the servers blocks: off the runtime's threads.
    let setup: Setup<Azure> =
        tokio::task::spawn_blocking(move || azure::setup(&ns, &options)).await??;
    Ok(World::start(setup).await?)
}

/// `examples/azure/scanpolicy.yaml` as a user would adapt it: this namespace, the fake ARM as
/// the ARM endpoint and authority, a client secret (the credentials Secret, its tenant and
/// client) instead of workload identity, `concurrency` when given; a scan asked for now.
async fn apply_policy(w: &World, name: &str, concurrency: Option<u32>) -> Result<()> {
    let example = std::fs::read_to_string(repo().join("examples/azure/scanpolicy.yaml"))?;
    let mut policy: ScanPolicy = serde_yaml::from_str(&example)?;
    policy.metadata.name = Some(name.into());
    policy.metadata.namespace = Some(w.ns.clone());
    let az = policy.spec.providers[0]
        .azure
        .as_mut()
        .context("the example's provider is azure")?;
    ensure!(az.subscriptions == SUBSCRIPTIONS, "{:?}", az.subscriptions);
    az.credentials_secret = Some(CREDENTIALS_SECRET.into());
    az.tenant_id = Some(TENANT.into());
    az.client_id = Some(CLIENT_ID.into());
    az.arm_endpoint = Some(w.cloud.arm.endpoint());
    az.authority_host = Some(w.cloud.arm.endpoint());
    policy.spec.scanner = None;
    if concurrency.is_some() {
        policy.spec.concurrency = concurrency;
    }
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

fn phase(m: &ScannedMachine) -> Option<MachinePhase> {
    m.status.as_ref().and_then(|s| s.phase)
}

/// Nothing that must stay hidden — a planted secret, a SAS URL's query or signature, the ARM
/// token, the client secret — in any object, Event, log line or Job output.
fn assert_nothing_leaked(w: &World) -> Result<()> {
    match w.first_leak(&w.cloud.never_shown())? {
        Some(leak) => anyhow::bail!(leak),
        None => Ok(()),
    }
}

/// No snapshot left in the fake, no SAS grant active, and no Secret in the namespace but the
/// ones the test made (the per-Job grant Secrets are gone).
async fn assert_nothing_left(w: &World) -> Result<()> {
    let state = w.cloud.state()?;
    ensure!(
        state["snapshots"].as_array().is_some_and(Vec::is_empty),
        "snapshots left behind: {state}"
    );
    ensure!(
        state["activeGrants"] == 0,
        "SAS grants still active: {state}"
    );
    let secrets: BTreeSet<String> = w
        .api::<Secret>()
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    let expected: BTreeSet<String> = ["snapsentry-fingerprint", CREDENTIALS_SECRET]
        .map(str::to_owned)
        .into();
    ensure!(secrets == expected, "Secrets left behind: {secrets:?}");
    Ok(())
}

/// Wait until the fake holds at least one snapshot.
async fn wait_for_a_snapshot(w: &World) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while w.cloud.snapshots()?.is_empty() {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no snapshot taken; operator log: {}\n{}",
            logs::tail(40),
            w.cloud.arm.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(())
}

/// The scenario: three VMs scanned through SAS reads, the verified SSH path, the four
/// Azure attack paths, the recommendation, and nothing left behind or leaked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_azure_fleet_scanned_through_sas_reads() -> Result<()> {
    let mut w = azure_world("azure-e2e", Options::default()).await?;
    w.start_operator()?;
    apply_policy(&w, "azure-production", None).await?;
    let p = w
        .wait_scan_finished("azure-production", None, Duration::from_secs(240))
        .await?;
    ensure!(
        machine_counts(&p) == Some((3, 3, 0)),
        "{:?}; Job logs: {}",
        p.status,
        w.job_logs()
    );

    // Inventory: build-01 (env: dev) is not selected; exposure as the network makes it.
    let machines = machines_by_name(&w).await?;
    let names: Vec<&str> = machines.keys().map(String::as_str).collect();
    assert_eq!(names, ["db-01", "web-01", "win-01"]);
    let web = &machines["web-01"];
    assert!(
        web.spec.instance_id.ends_with("/virtualMachines/web-01"),
        "{}",
        web.spec.instance_id
    );
    assert!(web.spec.exposure.internet_facing, "{:?}", web.spec.exposure);
    let reasons = web.spec.exposure.reasons.join("; ");
    // The way in (the public IP) and the NSG rule that lets SSH in from the internet.
    assert!(
        reasons.contains(&format!("public IP {WEB_PUBLIC_IP}"))
            && reasons.contains("ssh-from-internet")
            && reasons.contains("Internet")
            && reasons.contains("22"),
        "{reasons}"
    );
    assert!(!machines["db-01"].spec.exposure.internet_facing);
    assert!(!machines["win-01"].spec.exposure.internet_facing);
    assert_eq!(machines["win-01"].spec.platform.as_deref(), Some("windows"));
    // win-01 runs in the second subscription.
    let win_id = &machines["win-01"].spec.instance_id;
    assert!(
        win_id.starts_with(&format!("/subscriptions/{}/", SUBSCRIPTIONS[1])),
        "{win_id}"
    );
    for (name, m) in &machines {
        assert_eq!(phase(m), Some(MachinePhase::Scanned), "{name}");
        let last = m
            .status
            .as_ref()
            .and_then(|s| s.last_scan.as_ref())
            .context("lastScan")?;
        assert!(last.succeeded && last.files > 0, "{name}: {last:?}");
        assert!(last.volumes.iter().any(|v| v.scanned), "{name}: {last:?}");
        let reads = last.snapshot_reads.as_ref().context("snapshot reads")?;
        assert!(
            reads.blocks_listed > 0 && reads.bytes_fetched > 0,
            "{name}: {reads:?}"
        );
    }
    // db-01's root is XFS inside LVM.
    let db = machines["db-01"]
        .status
        .as_ref()
        .and_then(|s| s.last_scan.as_ref());
    let db_volumes = db.map(|l| l.volumes.clone()).unwrap_or_default();
    assert!(
        db_volumes
            .iter()
            .any(|v| v.scanned && v.filesystem.as_deref() == Some("xfs") && v.id.contains("rhel")),
        "{db_volumes:?}"
    );

    // Findings on every VM; the verified SSH key from web-01 onto db-01.
    let findings = w.findings().await?;
    let on = |m: &str| {
        let name = machines[m].name_any();
        findings
            .iter()
            .filter(|f| label(*f, "snapsentry.io/machine") == Some(name.as_str()))
            .count()
    };
    for m in ["web-01", "db-01", "win-01"] {
        assert!(on(m) > 0, "no finding on {m}");
    }
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
    let authorized = &key.status.as_ref().context("finding status")?.authorized_on;
    assert!(
        authorized
            .iter()
            .any(|a| a.machine == machines["db-01"].name_any() && a.user == "admin"),
        "{authorized:?}"
    );
    // The storage and SQL connection strings name resources that exist.
    for (kind, target) in [
        ("storage-account", WEB_STORAGE),
        ("storage-account", BACKUP_STORAGE),
        ("sql-database", SQL_SERVER),
    ] {
        let f = findings
            .iter()
            .filter(|f| label(*f, "snapsentry.io/target-kind") == Some(kind))
            .find(|f| {
                f.status
                    .as_ref()
                    .and_then(|s| s.target.as_ref())
                    .is_some_and(|t| t.name.starts_with(target))
            })
            .with_context(|| format!("a {kind} finding naming {target}"))?;
        let assessed = f.status.as_ref().and_then(|s| s.target.as_ref());
        assert_eq!(
            assessed.and_then(|t| t.exists),
            Some(true),
            "{}",
            f.name_any()
        );
    }

    // Attack paths with Defender's titles, and its recommendation.
    let titles = w.attack_path_titles().await?;
    for expected in [
        "Exposed Vulnerable VM has an insecure SSH private key that is used to authenticate to a VM",
        "Exposed Vulnerable VM has insecure secrets that are used to authenticate to a storage account",
        "Vulnerable VM has insecure secrets that are used to authenticate to a storage account",
        "Exposed Vulnerable VM has insecure secrets that are used to authenticate to an SQL server",
    ] {
        assert!(titles.contains(expected), "{expected:?} not in {titles:#?}");
    }
    let affected = w
        .recommended_machines("Machines should have secrets findings resolved")
        .await?
        .context("the Azure recommendation")?;
    let expected: BTreeSet<String> = machines.values().map(ResourceExt::name_any).collect();
    assert_eq!(affected, expected);

    // Every snapshot was granted, then released; nothing is left, nothing leaked.
    assert_nothing_left(&w).await?;
    let state = w.cloud.state()?;
    ensure!(state["grantsEver"].as_u64() >= Some(3), "{state}");
    assert_nothing_leaked(&w)?;
    w.stop_operator().await?;
    Ok(())
}

/// Every few ranged GETs of the blobs answered 503 or 429: the reads are retried, counted, and
/// the scan completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_and_busy_blob_reads_are_retried_and_counted() -> Result<()> {
    let options = Options {
        machines: vec!["web-01", "db-01"],
        faults_every: Some(3),
        ..Options::default()
    };
    let mut w = azure_world("azure-faults", options).await?;
    w.start_operator()?;
    apply_policy(&w, "azure-faults", None).await?;
    let p = w
        .wait_scan_finished("azure-faults", None, Duration::from_secs(180))
        .await?;
    ensure!(
        machine_counts(&p) == Some((2, 2, 0)),
        "{:?}; {}",
        p.status,
        w.job_logs()
    );
    let retries: u64 = machines_by_name(&w)
        .await?
        .values()
        .filter_map(|m| {
            m.status
                .as_ref()?
                .last_scan
                .as_ref()?
                .snapshot_reads
                .clone()
        })
        .map(|r| r.retries)
        .sum();
    let injected = w.cloud.proxy.as_ref().context("the fault proxy")?.faults();
    ensure!(injected > 0, "no fault was injected");
    ensure!(
        retries > 0 && retries <= injected,
        "retries counted {retries}, faults injected {injected}"
    );
    assert_nothing_left(&w).await?;
    assert_nothing_leaked(&w)?;
    w.stop_operator().await?;
    Ok(())
}

/// A SAS that expires in the middle of the scan (the blob opened, its reads held until the SAS
/// has expired, then refused by the blob service): that machine fails with a reason that says so
/// without showing the SAS; its snapshot is deleted and its grant ended all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sas_expiring_mid_scan_fails_its_machine_clearly_and_leaves_nothing() -> Result<()> {
    let options = Options {
        machines: vec!["web-01", "win-01"],
        expires_mid_scan: Some("win-01"),
        ..Options::default()
    };
    let mut w = azure_world("azure-expired", options).await?;
    w.start_operator()?;
    apply_policy(&w, "azure-expired", None).await?;
    let p = w
        .wait_scan_finished("azure-expired", None, Duration::from_secs(180))
        .await?;
    ensure!(
        machine_counts(&p) == Some((2, 1, 1)),
        "{:?}; {}",
        p.status,
        w.job_logs()
    );
    let machines = machines_by_name(&w).await?;
    assert_eq!(phase(&machines["web-01"]), Some(MachinePhase::Scanned));
    let win = &machines["win-01"];
    assert_eq!(phase(win), Some(MachinePhase::Failed));
    let status = win.status.as_ref().context("win-01's status")?;
    let errors = status
        .last_scan
        .as_ref()
        .map(|l| l.errors.join("; "))
        .unwrap_or_default();
    ensure!(
        errors.contains("403") && errors.contains("SAS"),
        "the reason says the SAS was refused: {errors:?}; {}",
        w.job_logs()
    );
    let held = w
        .cloud
        .holding_proxy
        .as_ref()
        .context("the holding proxy")?;
    ensure!(
        held.ranged_gets() > 0,
        "win-01's blob was not opened within the SAS's {:?}: the scan never got to its reads",
        azure::MID_SCAN_SAS_LIFETIME
    );
    let url = &w.cloud.sas_urls["win-01"];
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let shown = format!("{errors}\n{:?}", status.conditions);
    ensure!(
        !shown.contains(query) && !shown.contains("sig="),
        "the SAS is shown: {shown}"
    );
    assert_nothing_left(&w).await?;
    assert_nothing_leaked(&w)?;
    w.stop_operator().await?;
    Ok(())
}

/// A scanner killed mid-scan: its machines fail, and their snapshots are deleted and grants
/// ended all the same — each machine's as soon as its Job fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_azure_scanner_leaves_no_snapshot_nor_grant() -> Result<()> {
    let options = Options {
        machines: vec!["web-01", "db-01"],
        command: Some(world::killed_scanner()),
        ..Options::default()
    };
    let mut w = azure_world("azure-killed", options).await?;
    w.start_operator()?;
    apply_policy(&w, "azure-killed", Some(1)).await?;
    // One machine at a time, each released as soon as its Job fails: never two snapshots or two
    // grants at once.
    let (mut most_snapshots, mut most_grants) = (0, 0);
    let p = {
        let finished = w.wait_scan_finished("azure-killed", None, Duration::from_secs(180));
        tokio::pin!(finished);
        loop {
            tokio::select! {
                p = &mut finished => break p?,
                () = tokio::time::sleep(Duration::from_millis(150)) => {
                    let state = w.cloud.state()?;
                    let snapshots = state["snapshots"].as_array().map_or(0, Vec::len);
                    most_snapshots = most_snapshots.max(snapshots);
                    most_grants = most_grants.max(state["activeGrants"].as_u64().unwrap_or(0));
                }
            }
        }
    };
    ensure!(machine_counts(&p) == Some((2, 0, 2)), "{:?}", p.status);
    ensure!(
        most_snapshots == 1 && most_grants == 1,
        "at most {most_snapshots} snapshots and {most_grants} grants at once"
    );
    ensure!(w.cloud.state()?["grantsEver"].as_u64() >= Some(2));
    assert_nothing_left(&w).await?;
    w.stop_operator().await?;
    Ok(())
}

/// The operator dies after taking a snapshot and before its Job exists (an unreachable admission
/// webhook fails every Job creation, so every attempt stops there), and a new operator finishes the scan: each disk is
/// snapshotted once, the snapshot reused, and everything released at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_azure_operator_restarted_before_its_jobs_takes_no_second_snapshot() -> Result<()> {
    let options = Options {
        machines: vec!["web-01", "db-01"],
        ..Options::default()
    };
    let mut w = azure_world("azure-restart", options).await?;
    w.forbid_jobs().await?;
    w.start_operator()?;
    apply_policy(&w, "azure-restart", None).await?;
    wait_for_a_snapshot(&w).await?;
    // The failed Job creation makes the operator retry from the top (every 5 s): each retry must find
    // the snapshot and reuse it.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let taken = w.cloud.snapshots()?;
    ensure!(
        taken.len() == 1 && w.cloud.snapshot_puts()? == 1,
        "one snapshot of the first machine's disk, however often it retried: {taken:?}, {} PUTs",
        w.cloud.snapshot_puts()?
    );
    ensure!(
        w.jobs().await?.is_empty(),
        "a Job despite the failing webhook"
    );

    w.stop_operator().await?;
    w.allow_jobs().await?;
    w.start_operator()?;
    let p = w
        .wait_scan_finished("azure-restart", None, Duration::from_secs(180))
        .await?;
    ensure!(
        machine_counts(&p) == Some((2, 2, 0)),
        "{:?}; {}",
        p.status,
        w.job_logs()
    );
    let puts = w.cloud.snapshot_puts()?;
    ensure!(puts == 2, "one snapshot PUT per disk, {puts} in all");
    assert_nothing_left(&w).await?;
    w.stop_operator().await?;
    Ok(())
}
