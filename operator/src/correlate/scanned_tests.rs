//! What a scanner Job writes (`snapsentry_crds::assess::scanned`) against what correlation then
//! computes: equal for a finding that needs no fleet facts, so the finish writes nothing; the
//! fleet's facts (a key authorized elsewhere, an inventory covering the target) make the
//! difference; and a rescan where nothing changed converges.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use snapsentry_crds::assess;
use snapsentry_crds::{
    Cloud, ScannedMachine, SecretFinding, SecretTarget, TargetKind, Verification, labels,
};

use super::testing::*;
use super::*;
use crate::controller::children::changed_finding;

const KEY: &str = "SHA256:k1";

/// `f` as the Job of scan `scan_id`, started at `started`, writes it at `now` over `existing`.
fn as_written(
    mut f: SecretFinding,
    existing: Option<&SecretFinding>,
    exposed: bool,
    scan_id: &str,
    started: Timestamp,
    now: Timestamp,
) -> SecretFinding {
    f.spec.scan_id = scan_id.into();
    f.spec.first_seen = existing.map_or(Time(now), |e| e.spec.first_seen.clone());
    f.spec.last_seen = Time(now);
    let a = assess::scanned(
        &f.spec,
        existing.and_then(|e| e.status.as_ref()),
        exposed,
        now,
        &Time(started),
    );
    f.status = Some(a.status);
    f.metadata.labels = Some(a.labels);
    f
}

/// The machines after scan `scan_id` (started at `started`): `a` exposed, `b` authorizing
/// [`KEY`].
fn machines(scan_id: &str, started: Timestamp) -> Vec<ScannedMachine> {
    let mut out = vec![
        machine_in(Cloud::Aws, "a", true),
        with_authorized(machine("b", false), "deploy", KEY),
    ];
    for m in &mut out {
        let status = m.status.get_or_insert_with(Default::default);
        status.last_scan = Some(snapsentry_crds::ScanSummary {
            scan_id: scan_id.into(),
            succeeded: true,
            started_at: Some(Time(started)),
            finished_at: Some(Time(started + SignedDuration::from_secs(30))),
            ..Default::default()
        });
    }
    out
}

/// Correlation of policy `prod` at `now`.
fn correlated(
    machines: &[ScannedMachine],
    findings: &[SecretFinding],
    targets: &TargetInventory,
    now: Timestamp,
) -> Collected {
    correlate(&super::tests::input(machines, findings, targets, now))
}

/// The findings the finish writes after correlation `c`, by name, sorted.
fn written(findings: &[SecretFinding], c: &Collected) -> Vec<String> {
    let mut out: Vec<String> = findings
        .iter()
        .filter_map(|f| {
            let update = c
                .findings
                .iter()
                .find(|u| Some(&u.name) == f.metadata.name.as_ref())?
                .clone();
            let record = record(f);
            changed_finding(Desired {
                record: &record,
                update,
            })
        })
        .map(|w| w.update.name)
        .collect();
    out.sort_unstable();
    out
}

fn with_target(mut f: SecretFinding, kind: TargetKind, name: &str) -> SecretFinding {
    f.spec.metadata.target = Some(SecretTarget {
        kind,
        name: name.into(),
    });
    f
}

#[test]
fn the_finish_writes_only_what_the_fleet_changes_and_a_rescan_converges() {
    let (s1, t1) = ("scan-1", ts(100));
    let aws = finding_of_type("a", "AWS access key", s1);
    let db = with_target(
        finding_of_type("a", "Database connection string", s1),
        TargetKind::Rds,
        "db.x.eu-west-1.rds.amazonaws.com",
    );
    let account = with_target(
        finding_of_type("a", "Storage account key", s1),
        TargetKind::StorageAccount,
        "acct",
    );
    let key = ssh_finding("a", KEY, s1);
    let mut findings: Vec<SecretFinding> = [&aws, &db, &account, &key]
        .into_iter()
        .map(|f| as_written(f.clone(), None, true, s1, t1, ts(110)))
        .collect();
    // The inventory lists storage accounts, not databases.
    let mut inventory = TargetInventory::default();
    inventory.insert(TargetKind::StorageAccount, "acct");
    let fleet = machines(s1, t1);
    let c = correlated(&fleet, &findings, &inventory, ts(140));
    let changed = written(&findings, &c);
    let mut fleet_facts = [
        account.metadata.name.clone().unwrap(),
        key.metadata.name.clone().unwrap(),
    ];
    fleet_facts.sort_unstable();
    assert_eq!(changed, fleet_facts);
    let key_update = c
        .findings
        .iter()
        .find(|u| Some(&u.name) == key.metadata.name.as_ref())
        .unwrap();
    assert_eq!(key_update.status.verification, Some(Verification::Verified));
    assert!(c.findings.iter().all(|u| u.labels[labels::NEW] == "true"));

    // The operator writes its assessment; the next scan sees the same secrets.
    for f in &mut findings {
        let u = c
            .findings
            .iter()
            .find(|u| Some(&u.name) == f.metadata.name.as_ref())
            .unwrap();
        f.status = Some(u.status.clone());
        f.metadata.labels = Some(u.labels.clone());
    }
    let (s2, t2) = ("scan-2", ts(1000));
    let rescanned: Vec<SecretFinding> = findings
        .iter()
        .map(|f| as_written(f.clone(), Some(f), true, s2, t2, ts(1010)))
        .collect();
    let fleet = machines(s2, t2);
    let c = correlated(&fleet, &rescanned, &inventory, ts(1040));
    assert_eq!(written(&rescanned, &c), Vec::<String>::new());
    assert!(c.findings.iter().all(|u| u.labels[labels::NEW] == "false"));
}
