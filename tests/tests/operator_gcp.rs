//! GCP end to end: a ScanPolicy with the `gcp` provider (`examples/gcp/scanpolicy.yaml` pointed
//! at the fake Compute Engine), the operator, a real kube-apiserver, the local Job runner playing
//! kubelet, the Job controller and `pd.csi.storage.gke.io` (each block volume's handle mapped to
//! its disk's raw image), the storage protection controllers ([`VolumeProtection`]), and the real
//! scanner (`snapsentry-scan job`) reading each disk made from a snapshot as a raw block device.
//!
//! The fleet ([`snapsentry_tests::world::gcp`]): web-01 exposed (external IP, SSH open to
//! 0.0.0.0/0) with a private key authorized on db-01. After the scan nothing is left in the fake
//! (no snapsentry snapshot or disk) nor in the cluster (no PersistentVolume or claim), and neither
//! the service account's key nor a planted value shows anywhere.
//!
//! [`VolumeProtection`]: snapsentry_tests::volume_protection::VolumeProtection

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use snapsentry_crds::{MachinePhase, ScanPolicy, ScannedMachine};
use snapsentry_tests::repo;
use snapsentry_tests::world::gcp::{
    self, CREDENTIALS_SECRET, Gcp, PROJECT, SCANNER_ZONE, WEB_EXTERNAL_IP,
};
use snapsentry_tests::world::{self, Setup};

type World = world::World<Gcp>;

/// `examples/gcp/scanpolicy.yaml` as a user would adapt it: this namespace and project, the
/// fake as the API root; a scan asked for now.
async fn apply_policy(w: &World, name: &str) -> Result<()> {
    let example = std::fs::read_to_string(repo().join("examples/gcp/scanpolicy.yaml"))?;
    let mut policy: ScanPolicy = serde_yaml::from_str(&example)?;
    policy.metadata.name = Some(name.into());
    policy.metadata.namespace = Some(w.ns.clone());
    let g = policy.spec.providers[0]
        .gcp
        .as_mut()
        .context("the example's provider is gcp")?;
    ensure!(g.credentials_secret.as_deref() == Some(CREDENTIALS_SECRET));
    g.projects = vec![PROJECT.into()];
    g.zones = vec![SCANNER_ZONE.into()];
    g.scanner_zones = vec![SCANNER_ZONE.into()];
    g.endpoint_url = Some(w.cloud.gce.endpoint());
    policy.spec.scanner = None;
    w.create_policy(&policy).await?;
    w.scan_now(name, "first").await?;
    Ok(())
}

fn label<'a>(o: &'a impl ResourceExt, key: &str) -> Option<&'a str> {
    o.labels().get(key).map(String::as_str)
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

/// The scenario: two instances scanned through block volumes, the verified SSH path,
/// the recommendation, and nothing left behind or leaked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gcp_fleet_scanned_through_block_volumes() -> Result<()> {
    world::scanner()?;
    // Building the images and starting the fake blocks: off the runtime's threads.
    let setup: Setup<Gcp> = tokio::task::spawn_blocking(|| gcp::setup("gcp-e2e")).await??;
    let mut w = World::start(setup).await?;
    w.start_operator()?;
    apply_policy(&w, "gcp-production").await?;
    let p = w
        .wait_scan_finished("gcp-production", None, Duration::from_secs(240))
        .await?;
    let counts = p
        .status
        .as_ref()
        .and_then(|s| s.machines.as_ref())
        .context("machine counts")?;
    ensure!(
        (counts.total, counts.scanned, counts.failed) == (2, 2, 0),
        "{:?}; Job logs: {}",
        p.status,
        w.job_logs()
    );

    let machines: std::collections::BTreeMap<String, ScannedMachine> = w
        .machines()
        .await?
        .into_values()
        .map(|m| (m.spec.display_name.clone().unwrap_or_default(), m))
        .collect();
    let names: Vec<&str> = machines.keys().map(String::as_str).collect();
    ensure!(names == ["db-01", "web-01"], "{names:?}");
    let web = &machines["web-01"];
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
    ensure!(!machines["db-01"].spec.exposure.internet_facing);
    for (name, m) in &machines {
        let status = m.status.as_ref().context("machine status")?;
        ensure!(
            status.phase == Some(MachinePhase::Scanned),
            "{name}: {status:?}"
        );
        let last = status.last_scan.as_ref().context("lastScan")?;
        ensure!(last.succeeded && last.files > 0, "{name}: {last:?}");
    }

    // Findings on both; the verified SSH key from web-01 onto db-01.
    let findings = w.findings().await?;
    for m in ["web-01", "db-01"] {
        let name = machines[m].name_any();
        ensure!(
            findings
                .iter()
                .any(|f| label(f, "snapsentry.io/machine") == Some(name.as_str())),
            "no finding on {m}"
        );
    }
    let key = findings
        .iter()
        .find(|f| label(*f, "snapsentry.io/target-kind") == Some("vm"))
        .context("a finding targeting a VM")?;
    ensure!(label(key, "snapsentry.io/machine") == Some(web.name_any().as_str()));
    ensure!(label(key, "snapsentry.io/verified") == Some("verified"));
    ensure!(label(key, "snapsentry.io/exposed") == Some("true"));
    let authorized = &key.status.as_ref().context("finding status")?.authorized_on;
    ensure!(
        authorized
            .iter()
            .any(|a| a.machine == machines["db-01"].name_any()),
        "{authorized:?}"
    );

    let titles = w.attack_path_titles().await?;
    let expected = "Exposed Vulnerable GCP VM instance has an insecure SSH private key that is \
                    used to authenticate to a GCP VM instance";
    ensure!(titles.contains(expected), "{expected:?} not in {titles:#?}");
    let affected = w
        .recommended_machines("VM instances should have secrets findings resolved")
        .await?
        .context("the GCP recommendation")?;
    let all: BTreeSet<String> = machines.values().map(ResourceExt::name_any).collect();
    ensure!(affected == all, "{affected:?}");

    assert_nothing_left(&w).await?;
    let state = w.cloud.gce.state()?;
    ensure!(state["selfSignedCalls"].as_u64() >= Some(1), "{state}");
    assert_nothing_leaked(&w)?;
    w.stop_operator().await?;
    Ok(())
}
