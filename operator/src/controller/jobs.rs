//! Machines and their scanner Jobs in a running scan: each machine's phase from its Job (or,
//! once the Job is gone, from what the scanner recorded) synchronised into its status, and a
//! finished machine's block volumes, snapshots and grant released at once; starting the next
//! machines is [`super::start`]'s.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::ResourceExt;
use kube::runtime::events::EventType;
use snapsentry_crds::{
    MachineCoverage, MachinePhase, ScanProgress, ScannedMachine, ScannedMachineStatus, labels,
};

use super::children::{JobOutcome, job_outcome};
use super::grants;
use super::scope::{Scope, delete_if_present};
use super::snapshots;
use super::status::set_condition;
use super::volumes;
use crate::correlate::slugify;
use crate::error::{Error, Result};
use crate::metrics::ScanResult;

/// A machine's phase in scan `scan_id`, from its Job (`job`) and what it recorded: a scan that
/// succeeded but did not read every volume holding data is `Incomplete`.
pub fn phase_in_scan(
    machine: &ScannedMachine,
    job: Option<&Job>,
    scan_id: &str,
) -> (MachinePhase, Option<JobOutcome>) {
    let status = machine.status.as_ref();
    let recorded = status
        .and_then(|s| s.last_scan.as_ref())
        .filter(|l| l.scan_id == scan_id);
    let incomplete = recorded.is_some_and(|l| !MachineCoverage::of(l).is_complete());
    if let Some(job) = job {
        return match job_outcome(job) {
            None => (MachinePhase::Scanning, None),
            Some(JobOutcome::Succeeded) if incomplete => {
                (MachinePhase::Incomplete, Some(JobOutcome::Succeeded))
            }
            Some(JobOutcome::Succeeded) => (MachinePhase::Scanned, Some(JobOutcome::Succeeded)),
            Some(o @ JobOutcome::Failed(_)) => (MachinePhase::Failed, Some(o)),
        };
    }
    // The Job finished and its TTL removed it; the scanner recorded this scan.
    if let Some(last) = recorded {
        let phase = if !last.succeeded {
            MachinePhase::Failed
        } else if incomplete {
            MachinePhase::Incomplete
        } else {
            MachinePhase::Scanned
        };
        return (phase, None);
    }
    let in_scan = status
        .and_then(|s| s.progress.as_ref())
        .is_some_and(|p| p.scan_id == scan_id);
    match status.and_then(|s| s.phase) {
        // Failed before a Job existed (snapshots).
        Some(MachinePhase::Failed) if in_scan => (MachinePhase::Failed, None),
        // Not started, or snapshotted but the Job was never created: start it (again).
        _ => (MachinePhase::Pending, None),
    }
}

/// What the operator reads of a listed scanner Job: its name, labels and status — not its pod
/// template nor managed fields, most of its size (a scan's Jobs are listed at every reconcile
/// while it runs).
fn as_read(job: Job) -> Job {
    Job {
        metadata: ObjectMeta {
            name: job.metadata.name,
            labels: job.metadata.labels,
            ..Default::default()
        },
        spec: None,
        status: job.status,
    }
}

/// Each of the policy's machines with its phase in scan `scan_id` (from the scan's Jobs),
/// synchronised into its status.
pub(super) async fn sync_machines(
    scope: &Scope<'_>,
    scan_id: &str,
    now: Timestamp,
) -> Result<Vec<ScannedMachine>> {
    let jobs_api = scope.jobs();
    let jobs: BTreeMap<String, Job> = scope
        .list_as(&jobs_api, &scope.job_selector(Some(scan_id)), |j| {
            Some(as_read(j))
        })
        .await?
        .into_iter()
        .filter_map(|j| Some((j.labels().get(labels::MACHINE)?.clone(), j)))
        .collect();
    let machines = scope.machines().await?;

    // Each machine's phase in this scan, synchronised into its status.
    let mut view = Vec::with_capacity(machines.len());
    for m in machines {
        let job = jobs.get(&slugify(&m.name_any()));
        let (phase, outcome) = phase_in_scan(&m, job, scan_id);
        let job_name = job.map(|j| j.name_any());
        let mut m = sync_machine(scope, m, phase, outcome, job_name, scan_id, now).await?;
        if matches!(
            phase,
            MachinePhase::Scanned | MachinePhase::Incomplete | MachinePhase::Failed
        ) {
            // Its Job ended (or it failed before having one): nothing reads its snapshots now.
            snapshots::release_finished(scope, &mut m, scan_id).await;
        }
        view.push(m);
    }
    Ok(view)
}

/// Write `phase` (and, for a finished Job, the `Scanned` condition) into the machine's status
/// when it differs; returns the machine as it now is.
async fn sync_machine(
    scope: &Scope<'_>,
    mut m: ScannedMachine,
    phase: MachinePhase,
    outcome: Option<JobOutcome>,
    job_name: Option<String>,
    scan_id: &str,
    now: Timestamp,
) -> Result<ScannedMachine> {
    let mut st = m.status.clone().unwrap_or_default();
    let before = st.clone();
    st.phase = Some(phase);
    let generation = scope.policy.metadata.generation;
    let coverage = st
        .last_scan
        .as_ref()
        .filter(|l| l.scan_id == scan_id)
        .map(MachineCoverage::of);
    if coverage.is_some() {
        st.coverage = coverage.clone();
    }
    match &outcome {
        _ if phase == MachinePhase::Incomplete => set_condition(
            &mut st.conditions,
            "Scanned",
            "False",
            "Incomplete",
            &incomplete_message(scan_id, coverage.as_ref()),
            generation,
            now,
        ),
        Some(JobOutcome::Succeeded) => set_condition(
            &mut st.conditions,
            "Scanned",
            "True",
            "Succeeded",
            &format!("scan {scan_id} succeeded"),
            generation,
            now,
        ),
        Some(JobOutcome::Failed(reason)) => set_condition(
            &mut st.conditions,
            "Scanned",
            "False",
            reason,
            &format!(
                "scanner Job {} of scan {scan_id} failed: {reason}; findings of earlier scans are kept",
                job_name.as_deref().unwrap_or("?")
            ),
            generation,
            now,
        ),
        None => {}
    }
    // A running Job whose machine does not show this scan (a restart between creating the Job
    // and recording it): record it. Once the Job ends, progress is the scanner's to clear.
    let record_progress = job_name.is_some()
        && outcome.is_none()
        && st.progress.as_ref().is_none_or(|p| p.scan_id != scan_id);
    if record_progress {
        st.progress = Some(ScanProgress {
            scan_id: scan_id.to_owned(),
            started_at: Some(Time(now)),
            job: job_name.clone(),
            ..Default::default()
        });
    }
    if st == before {
        return Ok(m);
    }
    let scanned_condition = |s: &ScannedMachineStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == "Scanned")
            .map(|c| c.message.clone())
    };
    let ended = outcome.is_some() || phase == MachinePhase::Incomplete;
    if ended && scanned_condition(&st) != scanned_condition(&before) {
        // First time this scan's end is recorded: count it once.
        let last = st.last_scan.as_ref().filter(|l| l.scan_id == scan_id);
        let result = match (phase, &outcome) {
            (MachinePhase::Incomplete, _) => ScanResult::incomplete,
            (_, Some(JobOutcome::Succeeded)) => ScanResult::succeeded,
            _ => ScanResult::failed,
        };
        scope.ctx.metrics.scan_finished(
            result,
            last.map_or(0.0, |l| l.duration_ms as f64 / 1000.0),
            last.map_or(0, |l| l.bytes_scanned),
        );
        if phase == MachinePhase::Incomplete {
            let message = incomplete_message(scan_id, coverage.as_ref());
            tracing::warn!(policy = %scope.name, machine = %m.name_any(), %message, "machine not fully scanned");
            scope
                .event(
                    EventType::Warning,
                    "MachineScanIncomplete",
                    "Scan",
                    format!("machine {}: {message}", m.name_any()),
                )
                .await;
        }
    }
    if phase == MachinePhase::Failed && before.phase != Some(MachinePhase::Failed) {
        let reason = match &outcome {
            Some(JobOutcome::Failed(r)) => r.clone(),
            _ => "Failed".to_owned(),
        };
        tracing::warn!(policy = %scope.name, machine = %m.name_any(), %reason, "machine scan failed");
        scope
            .event(
                EventType::Warning,
                "MachineScanFailed",
                "Scan",
                format!(
                    "machine {} failed in scan {scan_id}: {reason}",
                    m.name_any()
                ),
            )
            .await;
    }
    patch_machine_status(scope, &m.name_any(), &st, record_progress).await?;
    m.status = Some(st);
    Ok(m)
}

/// The `Scanned` condition's message (and the Warning event's) for an `Incomplete` machine:
/// how much was read and which volumes were not, with the reason.
pub fn incomplete_message(scan_id: &str, coverage: Option<&MachineCoverage>) -> String {
    let Some(c) = coverage else {
        return format!("scan {scan_id} did not read every volume");
    };
    let skipped: Vec<String> = c
        .skipped
        .iter()
        .take(5)
        .map(|s| format!("{} ({})", s.id, s.reason.as_str()))
        .collect();
    let more = c.skipped.len().saturating_sub(skipped.len());
    let mut message = format!(
        "scan {scan_id} read {} of {} volumes; not scanned: {}",
        c.volumes_scanned,
        c.volumes_found,
        skipped.join(", ")
    );
    if more > 0 {
        message.push_str(&format!(" and {more} more"));
    }
    message.push_str("; findings on the volumes read were written");
    message
}

/// Merge-patch the operator's fields of a machine's status: phase, conditions, coverage and,
/// when `with_progress`, progress (which the scanner updates while it runs).
pub(super) async fn patch_machine_status(
    scope: &Scope<'_>,
    name: &str,
    st: &ScannedMachineStatus,
    with_progress: bool,
) -> Result<()> {
    let mut status = serde_json::json!({
        "phase": st.phase,
        "conditions": st.conditions,
    });
    if let Some(coverage) = &st.coverage {
        status["coverage"] = serde_json::to_value(coverage)?;
    }
    if with_progress {
        status["progress"] = serde_json::to_value(&st.progress)?;
    }
    scope.merge_status::<ScannedMachine>(name, &status).await
}

/// Delete all of the policy's Jobs, of every scan, their grant Secrets, and their block volumes'
/// claims and PersistentVolumes (Jobs in another namespace than the policy carry no owner
/// reference, so nothing else would; a grant Secret or claim whose Job was never created has no
/// owner at all, and a PersistentVolume never has one). A PersistentVolume not gone yet is an
/// error ([`Error::VolumesPending`]): the policy's deletion is tried again, and its disks are not
/// deleted before.
pub(super) async fn delete_all(scope: &Scope<'_>) -> Result<()> {
    let jobs = scope.jobs();
    let selector = scope.job_selector(None);
    for job in scope
        .list_as(&jobs, &selector, |j| Some(as_read(j)))
        .await?
    {
        delete_if_present(&jobs, &job.name_any()).await?;
    }
    grants::delete_selected(&scope.secrets(), &selector).await?;
    let left =
        volumes::delete_selected(&scope.persistent_volumes(), &scope.claims(), &selector).await?;
    if !left.is_empty() {
        return Err(Error::VolumesPending(left.join(", ")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
    use snapsentry_crds::ScanSummary;

    use super::*;
    use crate::correlate::testing::machine;

    fn job(type_: Option<&str>) -> Job {
        Job {
            status: Some(JobStatus {
                conditions: type_.map(|t| {
                    vec![JobCondition {
                        type_: t.into(),
                        status: "True".into(),
                        reason: Some("DeadlineExceeded".into()),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn with(phase: MachinePhase, progress: Option<&str>, last: Option<&str>) -> ScannedMachine {
        let mut m = machine("a", false);
        m.status = Some(ScannedMachineStatus {
            phase: Some(phase),
            progress: progress.map(|id| ScanProgress {
                scan_id: id.into(),
                ..Default::default()
            }),
            last_scan: last.map(|id| ScanSummary {
                scan_id: id.into(),
                succeeded: true,
                ..Default::default()
            }),
            ..Default::default()
        });
        m
    }

    #[test]
    fn phase_comes_from_the_job() {
        let m = with(MachinePhase::Scanned, Some("old"), Some("old"));
        assert_eq!(phase_in_scan(&m, None, "new").0, MachinePhase::Pending);
        assert_eq!(
            phase_in_scan(&m, Some(&job(None)), "new").0,
            MachinePhase::Scanning
        );
        assert_eq!(
            phase_in_scan(&m, Some(&job(Some("Complete"))), "new"),
            (MachinePhase::Scanned, Some(JobOutcome::Succeeded))
        );
        assert_eq!(
            phase_in_scan(&m, Some(&job(Some("Failed"))), "new"),
            (
                MachinePhase::Failed,
                Some(JobOutcome::Failed("DeadlineExceeded".into()))
            )
        );
    }

    #[test]
    fn without_a_job_the_recorded_state_decides() {
        // Job gone after its TTL, the scanner recorded this scan (and cleared progress).
        let m = with(MachinePhase::Scanned, None, Some("s"));
        assert_eq!(phase_in_scan(&m, None, "s").0, MachinePhase::Scanned);
        let mut failed = with(MachinePhase::Failed, None, Some("s"));
        failed
            .status
            .as_mut()
            .unwrap()
            .last_scan
            .as_mut()
            .unwrap()
            .succeeded = false;
        assert_eq!(phase_in_scan(&failed, None, "s").0, MachinePhase::Failed);
        // A failure of an earlier scan does not count in this one.
        let m = with(MachinePhase::Failed, Some("old"), Some("old"));
        assert_eq!(phase_in_scan(&m, None, "s").0, MachinePhase::Pending);
        // Recorded as scanning but no Job and no result: start again.
        let m = with(MachinePhase::Scanning, Some("s"), Some("old"));
        assert_eq!(phase_in_scan(&m, None, "s").0, MachinePhase::Pending);
        let m = with(MachinePhase::Failed, Some("s"), None);
        assert_eq!(phase_in_scan(&m, None, "s").0, MachinePhase::Failed);
    }

    #[test]
    fn a_scan_that_skipped_a_volume_is_incomplete() {
        use snapsentry_crds::{SkipReason, VolumeResult};
        let volumes = |reason: Option<SkipReason>| {
            vec![
                VolumeResult {
                    id: "disk0/p1".into(),
                    filesystem: Some("ext4".into()),
                    scanned: true,
                    error: None,
                    skip_reason: None,
                },
                VolumeResult {
                    id: "disk0/p2".into(),
                    filesystem: Some("luks".into()),
                    scanned: false,
                    error: Some("encrypted (LUKS)".into()),
                    skip_reason: reason,
                },
            ]
        };
        let mut m = with(MachinePhase::Scanning, Some("s"), Some("s"));
        let last = m.status.as_mut().unwrap().last_scan.as_mut().unwrap();
        last.volumes = volumes(Some(SkipReason::Encrypted));
        assert_eq!(
            phase_in_scan(&m, Some(&job(Some("Complete"))), "s"),
            (MachinePhase::Incomplete, Some(JobOutcome::Succeeded))
        );
        assert_eq!(phase_in_scan(&m, None, "s").0, MachinePhase::Incomplete);
        // A failed Job stays Failed; another scan's result does not count.
        assert_eq!(
            phase_in_scan(&m, Some(&job(Some("Failed"))), "s").0,
            MachinePhase::Failed
        );
        assert_eq!(
            phase_in_scan(&m, Some(&job(Some("Complete"))), "t").0,
            MachinePhase::Scanned
        );
        // Swap loses no coverage.
        let last = m.status.as_mut().unwrap().last_scan.as_mut().unwrap();
        last.volumes = volumes(Some(SkipReason::Swap));
        assert_eq!(phase_in_scan(&m, None, "s").0, MachinePhase::Scanned);

        let coverage = MachineCoverage::of(&ScanSummary {
            scan_id: "s".into(),
            succeeded: true,
            volumes: volumes(Some(SkipReason::Encrypted)),
            ..Default::default()
        });
        assert_eq!(coverage.summary, "1/2 volumes");
        assert_eq!(
            incomplete_message("s", Some(&coverage)),
            "scan s read 1 of 2 volumes; not scanned: disk0/p2 (encrypted); findings on the volumes read were written"
        );
    }
}
