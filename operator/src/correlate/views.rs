//! The two labels the views query (`kubectl snapsentry diff`, `-l snapsentry.io/new=true`,
//! `-l snapsentry.io/target=…`): what a finding opens, and whether the latest scan of its
//! machine is the first to see it. Pure, like the rest of correlation, so finishing twice writes
//! the same values.

use std::collections::BTreeMap;

use snapsentry_crds::label_value::slugify;
use snapsentry_crds::{FindingState, ScannedMachine, SecretFindingStatus, labels};

use super::FindingRecord;

/// Add [`labels::TARGET`] (when the assessment names a target) and [`labels::NEW`] to `out`.
pub fn add_view_labels(
    out: &mut BTreeMap<String, String>,
    f: &FindingRecord,
    status: &SecretFindingStatus,
    machine: Option<&ScannedMachine>,
) {
    if let Some(t) = &status.target {
        out.insert(labels::TARGET.to_owned(), slugify(&t.name));
    }
    out.insert(
        labels::NEW.to_owned(),
        is_new(f, status.state, machine).to_string(),
    );
}

/// An active finding that the latest scan of its machine saw (`spec.scanId` is that scan's id)
/// for the first time (`firstSeen` is not before that scan started).
pub fn is_new(
    f: &FindingRecord,
    state: Option<FindingState>,
    machine: Option<&ScannedMachine>,
) -> bool {
    if state == Some(FindingState::Resolved) {
        return false;
    }
    let Some(last) = machine.and_then(|m| m.status.as_ref()?.last_scan.as_ref()) else {
        return false;
    };
    let Some(started) = last.started_at.as_ref().or(last.finished_at.as_ref()) else {
        return false;
    };
    last.scan_id == *f.scan_id && f.first_seen >= started.0
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use snapsentry_crds::{AssessedTarget, TargetKind};

    use super::*;
    use crate::correlate::testing::*;

    fn scanned(scan_id: &str, started: i64) -> ScannedMachine {
        let mut m = machine_scanned("a", scan_id, true, ts(started + 60));
        let last = m.status.as_mut().unwrap().last_scan.as_mut().unwrap();
        last.started_at = Some(Time(ts(started)));
        m
    }

    #[test]
    fn new_only_when_first_seen_by_the_latest_scan() {
        let mut f = finding("a", "k1", "scan-2", ts(110));
        f.spec.first_seen = Time(ts(110));
        let m = scanned("scan-2", 100);
        let active = Some(FindingState::Active);
        assert!(is_new(&record(&f), active, Some(&m)));
        // First seen by an earlier scan, seen again now.
        f.spec.first_seen = Time(ts(10));
        assert!(!is_new(&record(&f), active, Some(&m)));
        // Last seen by an earlier scan: not in the latest one at all.
        f.spec.first_seen = Time(ts(110));
        assert!(!is_new(&record(&f), active, Some(&scanned("scan-3", 200))));
        assert!(!is_new(&record(&f), Some(FindingState::Resolved), Some(&m)));
        assert!(!is_new(&record(&f), active, None));
    }

    #[test]
    fn labels_name_the_target_and_the_marker() {
        let f = finding("a", "k1", "scan-2", ts(110));
        let status = SecretFindingStatus {
            state: Some(FindingState::Active),
            target: Some(AssessedTarget {
                kind: TargetKind::Rds,
                name: "Billing.x.eu-west-1.rds.amazonaws.com".into(),
                exists: Some(true),
            }),
            ..Default::default()
        };
        let mut out = BTreeMap::new();
        add_view_labels(&mut out, &record(&f), &status, None);
        assert_eq!(out[labels::TARGET], "billing.x.eu-west-1.rds.amazonaws.com");
        assert_eq!(out[labels::NEW], "false");
        let mut out = BTreeMap::new();
        add_view_labels(&mut out, &record(&f), &SecretFindingStatus::default(), None);
        assert!(!out.contains_key(labels::TARGET));
    }
}
