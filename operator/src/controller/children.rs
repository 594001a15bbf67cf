//! "Apply children" planning, as pure functions: which owned objects to write or delete so the
//! cluster matches what correlation wants, which findings need writing, and how a scanner
//! Job ended.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use snapsentry_crds::{MachinePhase, ScannedMachine};

use crate::correlate::{Changes, Desired, FindingUpdate};

/// Owned objects to write and to delete.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChildPlan {
    /// Names of desired objects that are missing or differ (`same` said no).
    pub apply: Vec<String>,
    /// Names of existing objects that are no longer desired.
    pub delete: Vec<String>,
}

/// An object the policy owns as listed: its name and whether it is as desired — all that is
/// kept of it, so comparing a policy's AttackPaths never holds them twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Existing {
    pub name: String,
    /// A desired object of that name is there and `same` said yes.
    pub same: bool,
}

impl Existing {
    /// What is kept of `current`, compared with the desired object of its name.
    pub fn of<K: ResourceExt>(
        current: &K,
        desired: &BTreeMap<String, &K>,
        same: impl Fn(&K, &K) -> bool,
    ) -> Self {
        let name = current.name_any();
        let same = desired.get(&name).is_some_and(|d| same(current, d));
        Self { name, same }
    }
}

/// Compare the objects a policy owns (`current`, listed by label) with the desired set.
pub fn diff_owned<K: ResourceExt>(current: &[Existing], desired: &[K]) -> ChildPlan {
    let wanted: BTreeSet<String> = desired.iter().map(|d| d.name_any()).collect();
    let as_desired: BTreeSet<&str> = current
        .iter()
        .filter(|c| c.same)
        .map(|c| c.name.as_str())
        .collect();
    let apply = desired
        .iter()
        .map(|d| d.name_any())
        .filter(|n| !as_desired.contains(n.as_str()))
        .collect();
    let delete = current
        .iter()
        .filter(|c| !wanted.contains(&c.name))
        .map(|c| c.name.clone())
        .collect();
    ChildPlan { apply, delete }
}

/// A finding to write: its desired status and labels, and what differs from the finding as it
/// is.
#[derive(Clone, Debug, PartialEq)]
pub struct FindingWrite {
    pub update: FindingUpdate,
    pub changes: Changes,
}

/// The write `desired` needs, `None` when its status and the operator's labels
/// ([`snapsentry_crds::contract::OPERATOR_FINDING_LABELS`]: each one there or not, as desired)
/// are already as desired. Other labels are left alone.
pub fn changed_finding(desired: Desired<'_>) -> Option<FindingWrite> {
    let changes = desired.record.changes(&desired.update)?;
    Some(FindingWrite {
        update: desired.update,
        changes,
    })
}

/// How a scanner Job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    Succeeded,
    /// Failed, with the Job's reason (`BackoffLimitExceeded`, `DeadlineExceeded`, …).
    Failed(String),
}

/// The outcome of a finished Job, `None` while it runs.
pub fn job_outcome(job: &Job) -> Option<JobOutcome> {
    let status = job.status.as_ref()?;
    for c in status.conditions.iter().flatten() {
        if c.status != "True" {
            continue;
        }
        match c.type_.as_str() {
            "Complete" => return Some(JobOutcome::Succeeded),
            "Failed" => {
                return Some(JobOutcome::Failed(
                    c.reason.clone().unwrap_or_else(|| "Failed".into()),
                ));
            }
            _ => {}
        }
    }
    None
}

/// Whether every machine of the scan has finished (scanned, incomplete or failed).
pub fn scan_complete(machines: &[ScannedMachine]) -> bool {
    machines.iter().all(|m| {
        matches!(
            m.status.as_ref().and_then(|s| s.phase),
            Some(MachinePhase::Scanned | MachinePhase::Incomplete | MachinePhase::Failed)
        )
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
    use snapsentry_crds::{
        AttackPath, AttackPathSpec, Cloud, PathEntry, PathSecret, PathTarget, ScannedMachineStatus,
        SecretFindingStatus, Severity, TargetKind,
    };

    use snapsentry_crds::SecretFinding;

    use super::*;
    use crate::correlate::testing::{machine, record, ssh_finding};

    fn path(name: &str, title: &str) -> AttackPath {
        AttackPath::new(
            name,
            AttackPathSpec {
                policy: "prod".into(),
                cloud: Cloud::Aws,
                title: title.into(),
                risk: Severity::High,
                entry: PathEntry {
                    machine: "a".into(),
                    exposed: true,
                    exposure_reasons: vec![],
                },
                secret: PathSecret {
                    finding: "f".into(),
                    secret_type: "SSH private key".into(),
                    path: "/k".into(),
                },
                target: PathTarget {
                    kind: TargetKind::Vm,
                    name: "b".into(),
                    user: None,
                    source: None,
                    cloud: None,
                },
            },
        )
    }

    #[test]
    fn owned_objects_diff() {
        let current = [path("ap-1", "t"), path("ap-2", "t"), path("ap-3", "old")];
        let desired = [path("ap-1", "t"), path("ap-3", "new"), path("ap-4", "t")];
        let diff = |current: &[AttackPath], desired: &[AttackPath]| {
            let by_name: BTreeMap<String, &AttackPath> =
                desired.iter().map(|d| (d.name_any(), d)).collect();
            let existing: Vec<Existing> = current
                .iter()
                .map(|c| Existing::of(c, &by_name, |a, b| a.spec == b.spec))
                .collect();
            diff_owned(&existing, desired)
        };
        let plan = diff(&current, &desired);
        assert_eq!(plan.apply, ["ap-3", "ap-4"]);
        assert_eq!(plan.delete, ["ap-2"]);
        assert_eq!(diff(&current, &current), ChildPlan::default());
    }

    #[test]
    fn only_changed_findings_are_written() {
        let mut f = ssh_finding("a", "SHA256:k", "s1");
        let status = SecretFindingStatus {
            severity: Some(Severity::High),
            ..Default::default()
        };
        let labels = BTreeMap::from([
            ("snapsentry.io/severity".to_owned(), "high".to_owned()),
            ("snapsentry.io/target".to_owned(), "db".to_owned()),
        ]);
        let update = FindingUpdate {
            name: f.metadata.name.clone().unwrap(),
            status: status.clone(),
            labels: labels.clone(),
        };
        let write = |f: &SecretFinding| {
            let record = record(f);
            changed_finding(Desired {
                record: &record,
                update: update.clone(),
            })
        };
        let w = write(&f).expect("a new finding is written");
        assert_eq!(w.update, update);
        assert_eq!(
            w.changes,
            Changes {
                labels: true,
                status: true
            }
        );
        f.status = Some(status);
        f.metadata.labels = Some(labels.clone());
        assert_eq!(write(&f), None, "as desired");
        let mut stale = labels;
        stale.insert("snapsentry.io/new".into(), "true".into());
        f.metadata.labels = Some(stale);
        let w = write(&f).expect("an operator label not desired is a change");
        assert!(w.changes.labels && !w.changes.status);
    }

    #[test]
    fn job_outcomes() {
        let job = |type_: &str, status: &str, reason: Option<&str>| Job {
            status: Some(JobStatus {
                conditions: Some(vec![JobCondition {
                    type_: type_.into(),
                    status: status.into(),
                    reason: reason.map(str::to_owned),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(job_outcome(&Job::default()), None);
        assert_eq!(
            job_outcome(&job("Complete", "True", None)),
            Some(JobOutcome::Succeeded)
        );
        assert_eq!(
            job_outcome(&job("Failed", "True", Some("DeadlineExceeded"))),
            Some(JobOutcome::Failed("DeadlineExceeded".into()))
        );
        assert_eq!(job_outcome(&job("Failed", "False", None)), None);
    }

    #[test]
    fn completion() {
        let with = |p| {
            let mut m = machine("a", false);
            m.status = Some(ScannedMachineStatus {
                phase: p,
                ..Default::default()
            });
            m
        };
        assert!(scan_complete(&[
            with(Some(MachinePhase::Scanned)),
            with(Some(MachinePhase::Incomplete)),
            with(Some(MachinePhase::Failed))
        ]));
        assert!(!scan_complete(&[
            with(Some(MachinePhase::Scanned)),
            with(Some(MachinePhase::Scanning))
        ]));
        assert!(!scan_complete(&[with(None)]));
        assert!(scan_complete(&[]));
    }
}
