//! GCP end to end: a ScanPolicy with the `gcp` provider (`examples/gcp/scanpolicy.yaml` pointed
//! at the fake Compute Engine), the operator, a real kube-apiserver, the local Job runner playing
//! kubelet, the Job controller and `pd.csi.storage.gke.io` (each block volume's handle mapped to
//! its disk's raw image), the storage protection controllers ([`VolumeProtection`]), and the real
//! scanner (`snapsentry-scan job`) reading each disk made from a snapshot as a raw block device.
//!
//! The fleet ([`snapsentry_tests::world::gcp`]): web-01 (Debian) exposed (external IP, SSH open
//! to 0.0.0.0/0) with a private key that db-01's disk authorizes and that app-01 authorizes only
//! through the project metadata `ssh-keys` (db-01 blocks project keys), and win-01 (Windows).
//! After a scan nothing is left in the fake (no snapsentry snapshot or disk) nor in the cluster
//! (no PersistentVolume or claim), and neither the service account's key nor a planted value
//! shows anywhere. The faults: a disk-creation quota error for one machine, the operator
//! restarted between a disk's creation and its Job, a scanner killed mid-scan; and a policy
//! whose cluster cannot attach GCP disks.
//!
//! [`VolumeProtection`]: snapsentry_tests::volume_protection::VolumeProtection

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use snapsentry_cloud::gcp::metadata::PROJECT_SSH_KEYS;
use snapsentry_crds::{AttackPath, MachinePhase, ScanPolicy};
use snapsentry_tests::repo;
use snapsentry_tests::results::{label, machine_counts, machines_by_name};
use snapsentry_tests::world::gcp::{
    self, CREDENTIALS_SECRET, Gcp, METADATA_USER, PROJECT, SCANNER_ZONE, WEB_EXTERNAL_IP,
};
use snapsentry_tests::world::{self, Setup, condition};

type World = world::World<Gcp>;

/// A world with the GCP fleet, Jobs running `command` (default: the real scanner), and the
/// cluster's `pd.csi.storage.gke.io` CSIDriver.
async fn gcp_world(ns: &str, command: Option<Vec<String>>) -> Result<World> {
    world::scanner()?;
    let ns = ns.to_owned();
    // Building the images and starting the fake blocks: off the runtime's threads.
    let setup: Setup<Gcp> =
        tokio::task::spawn_blocking(move || gcp::setup(&ns).map(|s| s.command(command))).await??;
    let w = World::start(setup).await?;
    gcp::install_csi_driver(&w.client).await?;
    Ok(w)
}

/// `examples/gcp/scanpolicy.yaml` as a user would adapt it: this namespace and project, the
/// fake as the API root, only the instances `ids` (all when empty), at most
/// `concurrency` machines at once; a scan asked for now.
async fn apply_policy(
    w: &World,
    name: &str,
    ids: &[&str],
    concurrency: Option<u32>,
    scanner_zone: bool,
) -> Result<()> {
    let example = std::fs::read_to_string(repo().join("examples/gcp/scanpolicy.yaml"))?;
    let mut policy: ScanPolicy = serde_yaml::from_str(&example)?;
    policy.metadata.name = Some(name.into());
    policy.metadata.namespace = Some(w.ns.clone());
    policy.spec.concurrency = concurrency;
    let g = policy.spec.providers[0]
        .gcp
        .as_mut()
        .context("the example's provider is gcp")?;
    ensure!(g.credentials_secret.as_deref() == Some(CREDENTIALS_SECRET));
    g.projects = vec![PROJECT.into()];
    g.zones = vec![SCANNER_ZONE.into()];
    g.scanner_zones = if scanner_zone {
        vec![SCANNER_ZONE.into()]
    } else {
        Vec::new()
    };
    g.selector.ids = ids.iter().map(|i| (*i).to_owned()).collect();
    g.endpoint_url = Some(w.cloud.gce.endpoint());
    policy.spec.scanner = None;
    w.create_policy(&policy).await?;
    w.scan_now(name, "first").await?;
    Ok(())
}

/// Nothing that must stay hidden — a planted secret, a line of the service account's key — in
/// any object, Event, log line or Job output.
fn assert_nothing_leaked(w: &World) -> Result<()> {
    let never_shown = w.cloud.never_shown();
    let key_lines = never_shown
        .iter()
        .filter(|(what, _)| what.contains("key"))
        .count();
    ensure!(
        key_lines >= 10,
        "only {key_lines} lines of the key to look for"
    );
    match w.first_leak(&never_shown)? {
        Some(leak) => anyhow::bail!(leak),
        None => Ok(()),
    }
}

/// The snapsentry disks in the fake now.
fn scanner_disks(w: &World) -> Result<Vec<String>> {
    Ok(w.cloud.gce.leftovers()?.0)
}

/// Waits (up to 60 s) until no snapsentry snapshot or disk is left in the fake and no
/// PersistentVolume or claim in the cluster (the volumes go once their Jobs are done).
async fn assert_nothing_left(w: &World) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (disks, snapshots) = w.cloud.gce.leftovers()?;
        let claims: Vec<String> = w
            .api::<PersistentVolumeClaim>()
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .map(ResourceExt::name_any)
            .collect();
        let volumes: Vec<String> = Api::<PersistentVolume>::all(w.client.clone())
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|v| {
                v.spec
                    .as_ref()
                    .and_then(|s| s.claim_ref.as_ref())
                    .is_some_and(|c| c.namespace.as_deref() == Some(w.ns.as_str()))
            })
            .map(|v| v.name_any())
            .collect();
        if disks.is_empty() && snapshots.is_empty() && claims.is_empty() && volumes.is_empty() {
            return Ok(());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "left behind: disks {disks:?}, snapshots {snapshots:?}, claims {claims:?}, \
             volumes {volumes:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The scenario: four instances scanned through block volumes, the verified SSH paths
/// (one through the disk's `authorized_keys`, one through project metadata alone), the
/// AttackPath, the recommendation, and nothing left behind or leaked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gcp_fleet_scanned_through_block_volumes() -> Result<()> {
    let mut w = gcp_world("gcp-e2e", None).await?;
    w.start_operator()?;
    apply_policy(&w, "gcp-production", &[], None, true).await?;
    let p = w
        .wait_scan_finished("gcp-production", None, Duration::from_secs(300))
        .await?;
    ensure!(
        machine_counts(&p) == Some((4, 4, 0)),
        "{:?}; Job logs: {}",
        p.status,
        w.job_logs()
    );

    let machines = machines_by_name(&w).await?;
    let names: Vec<&str> = machines.keys().map(String::as_str).collect();
    ensure!(
        names == ["app-01", "db-01", "web-01", "win-01"],
        "{names:?}"
    );
    let (web, db, app, win) = (
        &machines["web-01"],
        &machines["db-01"],
        &machines["app-01"],
        &machines["win-01"],
    );
    ensure!(web.spec.exposure.internet_facing, "{:?}", web.spec.exposure);
    // The way in (the external IP) and the rule that lets SSH in from anywhere.
    let reasons = web.spec.exposure.reasons.join("; ");
    ensure!(
        reasons.contains(WEB_EXTERNAL_IP)
            && reasons.contains("allow-ssh")
            && reasons.contains("0.0.0.0/0")
            && reasons.contains("22"),
        "{reasons}"
    );
    for m in [db, app, win] {
        ensure!(!m.spec.exposure.internet_facing, "{:?}", m.spec);
    }
    ensure!(win.spec.platform.as_deref() == Some("windows"));
    ensure!(web.spec.platform.as_deref() == Some("linux"));
    for (name, m) in &machines {
        let status = m.status.as_ref().context("machine status")?;
        ensure!(
            status.phase == Some(MachinePhase::Scanned),
            "{name}: {status:?}"
        );
        let last = status.last_scan.as_ref().context("lastScan")?;
        ensure!(last.succeeded && last.files > 0, "{name}: {last:?}");
    }
    // The project's key: on app-01 (only there, from metadata) and web-01; not on db-01, which
    // blocks project keys, nor on the Windows instance.
    let app_keys = &app.spec.cloud_authorized_keys;
    ensure!(
        app_keys.len() == 1
            && app_keys[0].user == METADATA_USER
            && app_keys[0].source == PROJECT_SSH_KEYS,
        "{app_keys:?}"
    );
    ensure!(
        web.spec.cloud_authorized_keys == *app_keys,
        "{:?}",
        web.spec
    );
    ensure!(db.spec.cloud_authorized_keys.is_empty(), "{:?}", db.spec);
    ensure!(win.spec.cloud_authorized_keys.is_empty(), "{:?}", win.spec);
    let app_status = app.status.as_ref().context("app-01 status")?;
    ensure!(
        app_status.authorized_keys.is_empty(),
        "app-01's disk authorizes nothing: {:?}",
        app_status.authorized_keys
    );

    // Findings on web-01, db-01 and win-01; the verified SSH key from web-01 onto db-01 (its
    // disk) and app-01 (project metadata).
    let findings = w.findings().await?;
    let with_findings: BTreeSet<String> = findings
        .iter()
        .filter_map(|f| label(f, "snapsentry.io/machine").map(str::to_owned))
        .collect();
    for m in [web, db, win] {
        ensure!(
            with_findings.contains(&m.name_any()),
            "no finding on {:?}",
            m.spec.display_name
        );
    }
    let key = findings
        .iter()
        .find(|f| label(*f, "snapsentry.io/target-kind") == Some("vm"))
        .context("a finding targeting a VM")?;
    ensure!(label(key, "snapsentry.io/machine") == Some(web.name_any().as_str()));
    ensure!(label(key, "snapsentry.io/verified") == Some("verified"));
    ensure!(label(key, "snapsentry.io/exposed") == Some("true"));
    let fingerprint = key
        .spec
        .metadata
        .ssh
        .as_ref()
        .and_then(|s| s.public_key_fingerprint.as_deref())
        .context("the key's public fingerprint")?;
    ensure!(app_keys[0].fingerprint == fingerprint);
    let authorized: BTreeMap<String, (String, Option<String>)> = key
        .status
        .as_ref()
        .context("finding status")?
        .authorized_on
        .iter()
        .map(|a| (a.machine.clone(), (a.user.clone(), a.source.clone())))
        .collect();
    ensure!(
        authorized.get(&app.name_any())
            == Some(&(METADATA_USER.to_owned(), Some(PROJECT_SSH_KEYS.to_owned())))
            && authorized.get(&db.name_any())
                == Some(&(
                    "admin".to_owned(),
                    Some("/home/admin/.ssh/authorized_keys".to_owned())
                ))
            && authorized.len() == 2,
        "{authorized:?}"
    );

    let titles = w.attack_path_titles().await?;
    let expected = "Exposed Vulnerable GCP VM instance has an insecure SSH private key that is \
                    used to authenticate to a GCP VM instance";
    ensure!(titles.contains(expected), "{expected:?} not in {titles:#?}");
    let paths = w.api::<AttackPath>().list(&ListParams::default()).await?;
    let to_app = paths
        .items
        .iter()
        .find(|a| a.spec.target.name == app.name_any())
        .context("an AttackPath to app-01")?;
    ensure!(
        to_app.spec.title == expected
            && to_app.spec.entry.machine == web.name_any()
            && to_app.spec.target.user.as_deref() == Some(METADATA_USER)
            && to_app.spec.target.source.as_deref() == Some(PROJECT_SSH_KEYS),
        "{:?}",
        to_app.spec
    );
    let affected = w
        .recommended_machines("VM instances should have secrets findings resolved")
        .await?
        .context("the GCP recommendation")?;
    ensure!(affected == with_findings, "{affected:?}");

    assert_nothing_left(&w).await?;
    let state = w.cloud.gce.state()?;
    ensure!(state["selfSignedCalls"].as_u64() >= Some(1), "{state}");
    assert_nothing_leaked(&w)?;
    w.stop_operator().await?;
    Ok(())
}

/// Compute Engine refuses db-01's disk (`QUOTA_EXCEEDED`, as a failed insert operation): db-01
/// fails with Google's reason, the policy is Degraded saying so and a Warning Event is recorded,
/// the other machines are scanned, nothing is left; once the quota allows it, the next scan
/// recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_quota_error_degrades_the_policy_and_the_next_scan_recovers() -> Result<()> {
    let mut w = gcp_world("gcp-quota", None).await?;
    w.cloud
        .gce
        .set_faults(&serde_json::json!({"disks.insert": {"quotaSourceDisks": ["db-01-boot"]}}))?;
    w.start_operator()?;
    apply_policy(&w, "gcp-quota", &["web-01", "db-01", "app-01"], None, true).await?;
    let p = w
        .wait_scan_finished("gcp-quota", None, Duration::from_secs(240))
        .await?;
    ensure!(
        machine_counts(&p) == Some((3, 2, 1)),
        "{:?}; {}",
        p.status,
        w.job_logs()
    );
    let quota_errors = w.cloud.gce.fault_counters()?["disks.insert"]["quotaErrors"].as_u64();
    ensure!(quota_errors >= Some(1), "{quota_errors:?}");
    let machines = machines_by_name(&w).await?;
    let db = &machines["db-01"];
    let db_status = db.status.as_ref().context("db-01 status")?;
    ensure!(
        db_status.phase == Some(MachinePhase::Failed),
        "{db_status:?}"
    );
    let scanned = db_status
        .conditions
        .iter()
        .find(|c| c.type_ == "Scanned")
        .context("db-01's Scanned condition")?;
    ensure!(
        scanned.status == "False" && scanned.message.contains("QUOTA_EXCEEDED"),
        "{scanned:?}"
    );
    for m in ["web-01", "app-01"] {
        let phase = machines[m].status.as_ref().and_then(|s| s.phase);
        ensure!(phase == Some(MachinePhase::Scanned), "{m}: {phase:?}");
    }
    let degraded = condition(&p, "Degraded").context("Degraded")?;
    ensure!(
        degraded.status == "True"
            && degraded.reason == "MachinesFailed"
            && degraded.message.contains(&db.name_any())
            && degraded.message.contains("QUOTA_EXCEEDED"),
        "{degraded:?}"
    );
    let reasons = w.event_reasons().await?;
    ensure!(
        reasons.iter().any(|r| r == "MachineScanFailed"),
        "{reasons:?}"
    );
    assert_nothing_left(&w).await?;

    // The quota is raised: the next scan reads db-01 too.
    w.cloud.gce.set_faults(&serde_json::json!({}))?;
    let first = p.status.as_ref().and_then(|s| s.scan_id.clone());
    w.scan_now("gcp-quota", "second").await?;
    let p = w
        .wait_scan_finished("gcp-quota", first.as_deref(), Duration::from_secs(240))
        .await?;
    ensure!(machine_counts(&p) == Some((3, 3, 0)), "{:?}", p.status);
    let degraded = condition(&p, "Degraded").context("Degraded")?;
    ensure!(degraded.status == "False", "{degraded:?}");
    assert_nothing_left(&w).await?;
    w.stop_operator().await?;
    Ok(())
}

/// The operator dies after making the scanner's disk (and its volume) and before the Job exists
/// (an unreachable admission webhook fails every Job creation, so every attempt stops there), and a new operator finishes the scan:
/// one disk however often it retried, reused, and everything released at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gcp_operator_restarted_before_its_job_makes_no_second_disk() -> Result<()> {
    let mut w = gcp_world("gcp-restart", None).await?;
    w.forbid_jobs().await?;
    w.start_operator()?;
    apply_policy(&w, "gcp-restart", &["web-01", "db-01"], None, true).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while scanner_disks(&w)?.is_empty() {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no disk was made: {}",
            w.cloud.gce.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The failed Job creation makes the operator retry from the top (every 5 s): each retry must find
    // the disk and reuse it.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let (disks, snapshots) = w.cloud.gce.leftovers()?;
    ensure!(
        disks.len() == 1 && snapshots.len() == 1,
        "one snapshot and one disk of the first machine, however often it retried: disks \
         {disks:?}, snapshots {snapshots:?}"
    );
    ensure!(
        w.jobs().await?.is_empty(),
        "a Job despite the failing webhook"
    );

    w.stop_operator().await?;
    w.allow_jobs().await?;
    w.start_operator()?;
    let p = w
        .wait_scan_finished("gcp-restart", None, Duration::from_secs(240))
        .await?;
    ensure!(
        machine_counts(&p) == Some((2, 2, 0)),
        "{:?}; {}",
        p.status,
        w.job_logs()
    );
    let state = w.cloud.gce.state()?;
    ensure!(state["operations"]["failed"].as_u64() == Some(0), "{state}");
    assert_nothing_left(&w).await?;
    w.stop_operator().await?;
    Ok(())
}

/// A scanner killed mid-scan: its machines fail saying so, and each one's claim, volume, disk
/// and snapshot are released once its Job failed. One machine at a time: at most one disk being
/// read, and one more whose release waits for its PersistentVolume to go (the volume is detached
/// first), never more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gcp_scanner_leaves_no_disk_nor_volume() -> Result<()> {
    let mut w = gcp_world("gcp-killed", Some(world::killed_scanner())).await?;
    w.start_operator()?;
    apply_policy(&w, "gcp-killed", &["web-01", "db-01"], Some(1), true).await?;
    let mut most_disks = 0;
    let p = {
        let finished = w.wait_scan_finished("gcp-killed", None, Duration::from_secs(240));
        tokio::pin!(finished);
        loop {
            tokio::select! {
                p = &mut finished => break p?,
                () = tokio::time::sleep(Duration::from_millis(150)) => {
                    most_disks = most_disks.max(scanner_disks(&w)?.len());
                }
            }
        }
    };
    ensure!(machine_counts(&p) == Some((2, 0, 2)), "{:?}", p.status);
    ensure!((1..=2).contains(&most_disks), "{most_disks} disks at once");
    for (name, m) in machines_by_name(&w).await? {
        let status = m.status.as_ref().context("machine status")?;
        let scanned = status.conditions.iter().find(|c| c.type_ == "Scanned");
        ensure!(
            status.phase == Some(MachinePhase::Failed)
                && scanned.is_some_and(|c| c.status == "False" && !c.message.is_empty()),
            "{name}: {status:?}"
        );
    }
    assert_nothing_left(&w).await?;
    w.stop_operator().await?;
    Ok(())
}

/// A `gcp` provider without scanner zones: no scan starts, the policy says what is missing
/// (reason `ScannerNotInGcp`) with a Warning Event; once the zone is set, the scan runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_whose_disks_cannot_reach_the_scanner_says_so() -> Result<()> {
    let mut w = gcp_world("gcp-nowhere", None).await?;
    w.start_operator()?;
    apply_policy(&w, "gcp-nowhere", &["app-01"], None, false).await?;
    let p = w
        .wait_policy(
            "gcp-nowhere",
            "the policy to say the scanner cannot be reached",
            Duration::from_secs(60),
            |p| condition(p, "Degraded").is_some_and(|c| c.reason == "ScannerNotInGcp"),
        )
        .await?;
    let degraded = condition(&p, "Degraded").context("Degraded")?;
    ensure!(
        degraded.status == "True" && degraded.message.contains("no scannerZones"),
        "{degraded:?}"
    );
    ensure!(
        p.status.as_ref().and_then(|s| s.scan_id.as_ref()).is_none(),
        "a scan started: {:?}",
        p.status
    );
    ensure!(w.machines().await?.is_empty());
    ensure!(w.cloud.gce.leftovers()? == (vec![], vec![]));
    let reasons = w.event_reasons().await?;
    ensure!(
        reasons.iter().any(|r| r == "ScannerNotInGcp"),
        "{reasons:?}"
    );

    let patch = serde_json::json!({"spec": {"providers": [{"gcp": {
        "projects": [PROJECT], "zones": [SCANNER_ZONE], "scannerZones": [SCANNER_ZONE],
        "selector": {"ids": ["app-01"]}, "credentialsSecret": CREDENTIALS_SECRET,
        "endpointUrl": w.cloud.gce.endpoint(),
    }}]}});
    w.api::<ScanPolicy>()
        .patch(
            "gcp-nowhere",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    let p = w
        .wait_scan_finished("gcp-nowhere", None, Duration::from_secs(180))
        .await?;
    ensure!(machine_counts(&p) == Some((1, 1, 0)), "{:?}", p.status);
    let degraded = condition(&p, "Degraded").context("Degraded")?;
    ensure!(degraded.status == "False", "{degraded:?}");
    assert_nothing_left(&w).await?;
    w.stop_operator().await?;
    Ok(())
}
