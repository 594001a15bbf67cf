//! What a scan's finish writes when the real scanner Jobs (`snapsentry-scan job`) already wrote
//! each finding's provisional assessment (its status and operator labels, `crds::assess`): the
//! operator in-process against a real kube-apiserver, the local Job runner, two ext4 images
//! (web-01 holds alice's SSH key and AWS keys, db-01 authorizes the key for bob).
//!
//! Counted as the operator's client sends them: the first scan writes only the finding whose
//! assessment needs fleet facts (the key, verified by db-01's `authorized_keys`); a rescan where
//! nothing changed writes none; once db-01 no longer authorizes the key, the operator's write
//! removes what the assessment dropped — `status.target`, `status.authorizedOn` and the
//! `snapsentry.io/target` label — although the scanner's server-side apply had set them too.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use kube::ResourceExt;
use snapsentry_crds::contract::OPERATOR_FINDING_LABELS;
use snapsentry_crds::{FindingState, ScanPolicy, SecretFinding, Verification, labels};
use snapsentry_tests::planted::{self, DB_AUTHORIZED_KEYS};
use snapsentry_tests::world::{self, World, images};

type Lab = World<images::Images>;

async fn wait(w: &Lab, previous: Option<&str>) -> Result<ScanPolicy> {
    Ok(
        w.wait_scan_finished("lab", previous, Duration::from_secs(90))
            .await?,
    )
}

fn scan_id(p: &ScanPolicy) -> Option<String> {
    p.status.as_ref().and_then(|s| s.scan_id.clone())
}

/// The operator's writes to findings since the last `clear`, by name; none to a status
/// subresource.
fn writes(w: &Lab) -> Result<BTreeMap<String, usize>> {
    let (writes, to_status) = w.operator_requests.finding_writes(&w.ns);
    ensure!(
        to_status == 0,
        "{to_status} requests to a status subresource"
    );
    Ok(writes)
}

/// Every finding carries a status and the operator's labels (`snapsentry.io/target` when its
/// status names a target), `snapsentry.io/new` as `new` says.
fn assessed(findings: &[SecretFinding], new: bool) -> Result<()> {
    for f in findings {
        let name = f.name_any();
        let status = f
            .status
            .as_ref()
            .with_context(|| format!("{name}: no status"))?;
        ensure!(
            status.state == Some(FindingState::Active) && status.severity.is_some(),
            "{name}: {status:?}"
        );
        for key in OPERATOR_FINDING_LABELS {
            let want = key != labels::TARGET || status.target.is_some();
            ensure!(
                f.labels().contains_key(key) == want,
                "{name}: {key} in {:?}",
                f.labels()
            );
        }
        ensure!(
            f.labels().get(labels::NEW) == Some(&new.to_string()),
            "{name}: {:?}",
            f.labels()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_finish_writes_only_what_the_fleet_changes() -> Result<()> {
    world::scanner()?;
    let mut w = World::start(images::setup("finish-writes")?).await?;
    let trees = tempfile::tempdir()?;
    planted::web_and_db(trees.path(), w.cloud.dir.path())?;
    w.start_operator()?;
    w.create_policy(&images::policy(&w.ns, "lab", &["web-01", "db-01"], 2)?)
        .await?;

    // First scan: every finding is new; only the key needs the fleet (db-01 authorizes it).
    let first = wait(&w, None).await?;
    let findings = w.findings().await?;
    ensure!(
        findings.len() >= 2,
        "the key and the AWS keys: {findings:?}"
    );
    let key = findings
        .iter()
        .find(|f| f.spec.metadata.ssh.is_some())
        .context("the key's finding")?;
    let key_name = key.name_any();
    let only_the_key = BTreeMap::from([(key_name.clone(), 1)]);
    let first_writes = writes(&w)?;
    ensure!(
        first_writes == only_the_key,
        "the first scan's finish writes the key's finding alone: {first_writes:?}"
    );
    assessed(&findings, true)?;
    let status = key.status.as_ref().context("the key's status")?;
    ensure!(
        status.verification == Some(Verification::Verified)
            && status
                .authorized_on
                .iter()
                .any(|a| a.machine == "lab-db-01"),
        "{status:?}"
    );
    ensure!(
        key.labels().get(labels::TARGET).map(String::as_str) == Some("lab-db-01"),
        "{:?}",
        key.labels()
    );

    // Nothing changed: nothing to write; the scanner marked every finding seen before.
    w.operator_requests.clear();
    w.scan_now("lab", "again").await?;
    let second = wait(&w, scan_id(&first).as_deref()).await?;
    let second_writes = writes(&w)?;
    ensure!(
        second_writes.is_empty(),
        "a rescan where nothing changed writes nothing: {second_writes:?}"
    );
    let after = w.findings().await?;
    ensure!(after.len() == findings.len(), "{after:?}");
    assessed(&after, false)?;

    // db-01 no longer authorizes the key: the key's finding alone is written, and ends without
    // the target and the machines the scanner's apply carried forward.
    std::fs::remove_file(trees.path().join("db-01").join(DB_AUTHORIZED_KEYS))?;
    planted::lab_image(trees.path(), w.cloud.dir.path(), "db-01")?;
    w.operator_requests.clear();
    w.scan_now("lab", "deauthorized").await?;
    wait(&w, scan_id(&second).as_deref()).await?;
    let third_writes = writes(&w)?;
    ensure!(
        third_writes == only_the_key,
        "only the key's finding changes: {third_writes:?}"
    );
    let key = w.api::<SecretFinding>().get(&key_name).await?;
    let status = key.status.as_ref().context("the key's status")?;
    ensure!(
        status.verification == Some(Verification::Unverified)
            && status.target.is_none()
            && status.authorized_on.is_empty(),
        "{status:?}"
    );
    let l = key.labels();
    ensure!(
        !l.contains_key(labels::TARGET)
            && l.get(labels::VERIFIED).map(String::as_str) == Some("unverified")
            && l.get(labels::TARGET_KIND).map(String::as_str) == Some("none"),
        "{l:?}"
    );
    assessed(&w.findings().await?, false)?;
    w.stop_operator().await?;
    Ok(())
}
