//! Starting machines of a running scan under the policy's concurrency: each snapshotted, granted
//! read access, given its block volumes (a PersistentVolume and claim each) and grant Secret, and
//! its scanner Job — or failed before having one, with what was prepared released.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::PostParams;
use kube::runtime::events::EventType;
use snapsentry_cloud::SnapshotRef;
use snapsentry_crds::{MachinePhase, ScanProgress, ScannedMachine};

use super::grants;
use super::inventory::inventory_machine;
use super::jobs::patch_machine_status;
use super::scan::next_to_start;
use super::scope::Scope;
use super::snapshots;
use super::status::set_condition;
use super::volumes::{self, BlockClaim};
use crate::error::{Error, Result};
use crate::job::{JobRequest, scanner_job};

/// How the API server's refusal to create a scanner Job is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobRefusal {
    /// A ResourceQuota of the namespace is used up: every Job there is refused alike until Jobs
    /// end or the quota grows, so starting other machines would only take more snapshots. While
    /// other Jobs of the scan run (they free quota as they end) the scan waits (the policy
    /// `Degraded` `JobsRefused`, a Warning event) and tries again; see [`quota_verdict`].
    Quota,
    /// Refused for this Job (an admission webhook or ValidatingAdmissionPolicy, an invalid
    /// object, RBAC, a missing namespace): the machine fails with the reason, the others go on.
    Machine,
}

/// How a failed Job creation (`status`, the API server's answer) is handled: `None` for what is
/// retried as it is (throttling, server errors, an unreachable webhook) and for `AlreadyExists`.
pub fn job_refusal(status: &kube::core::Status) -> Option<JobRefusal> {
    match status.code {
        403 if status.message.contains("exceeded quota") => Some(JobRefusal::Quota),
        400 | 403 | 404 | 422 => Some(JobRefusal::Machine),
        _ => None,
    }
}

/// What becomes of a machine whose scanner Job a ResourceQuota refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaVerdict {
    /// Other Jobs of the scan run and free quota as they end: try again later.
    Wait,
    /// Waiting cannot help, or did not: the machine fails (`QuotaExceeded`).
    Fail,
}

/// A quota refusal's verdict, given how many other machines of the scan have a Job running
/// (`running`), since when the scan has been waiting for quota (`waiting_since`, `None` when it
/// was not) and how long it may (`wait`, `SNAPSENTRY_QUOTA_WAIT`).
pub fn quota_verdict(
    running: usize,
    waiting_since: Option<Timestamp>,
    now: Timestamp,
    wait: SignedDuration,
) -> QuotaVerdict {
    if running == 0 {
        return QuotaVerdict::Fail;
    }
    match waiting_since {
        Some(since) if now.duration_since(since) >= wait => QuotaVerdict::Fail,
        _ => QuotaVerdict::Wait,
    }
}

/// Start the next machines under the policy's concurrency limit. A machine whose Job the API
/// server refuses fails alone; so does one a quota refuses when [`quota_verdict`] says waiting
/// cannot help. Otherwise a quota refusal stops the round and is returned (the scan waits;
/// `waiting_since` is when it began to).
pub(super) async fn start_next(
    scope: &Scope<'_>,
    view: &mut [ScannedMachine],
    scan_id: &str,
    waiting_since: Option<Timestamp>,
    now: Timestamp,
) -> Result<Option<String>> {
    let next: Vec<String> = next_to_start(scope.policy, view)
        .iter()
        .map(|m| m.name_any())
        .collect();
    let wait = scope.ctx.config.quota_wait;
    for name in next {
        let running = view
            .iter()
            .filter(|m| m.name_any() != name && is_running(m))
            .count();
        let verdict = quota_verdict(running, waiting_since, now, wait);
        if let Some(m) = view.iter_mut().find(|m| m.name_any() == name) {
            match start_machine(scope, m, scan_id, verdict, now).await {
                Ok(()) => {}
                Err(Error::Kube(kube::Error::Api(s)))
                    if job_refusal(&s) == Some(JobRefusal::Quota) =>
                {
                    let message = format!(
                        "the scanner Job of machine {name} was refused, the scan waits: {}",
                        s.message
                    );
                    tracing::warn!(policy = %scope.name, machine = %name, %scan_id, running, error = %s.message, "scanner Job refused by a quota while other Jobs run; retrying");
                    scope
                        .event(
                            EventType::Warning,
                            "JobRefused",
                            "CreateJob",
                            message.clone(),
                        )
                        .await;
                    return Ok(Some(message));
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(None)
}

/// Whether a machine's scanner Job runs (or is being prepared) in the current view.
fn is_running(m: &ScannedMachine) -> bool {
    matches!(
        m.status.as_ref().and_then(|s| s.phase),
        Some(MachinePhase::Snapshotting | MachinePhase::Scanning)
    )
}

/// Snapshot a machine, grant the scanner read access, create its block volumes (PersistentVolume
/// and claim each, if the provider has any), record it as `Scanning` in this scan, and create its
/// grant Secret (if the provider granted anything) and its Job if absent. A quota refusal of
/// the Job fails the machine when `quota` says so and is returned otherwise.
async fn start_machine(
    scope: &Scope<'_>,
    m: &mut ScannedMachine,
    scan_id: &str,
    quota: QuotaVerdict,
    now: Timestamp,
) -> Result<()> {
    let name = m.name_any();
    let (index, provider) = scope.provider_of(m)?;
    let inv = inventory_machine(m);
    let pctx = scope.provider_ctx();
    let settings = scope.ctx.config.job_settings();
    let snapshots = match provider.prepare_snapshots(&pctx, &inv, scan_id).await {
        Ok(s) => s,
        Err(e) => {
            let e = Error::from(e);
            return fail_before_job(scope, m, scan_id, "SnapshotFailed", "Snapshot", &e, now).await;
        }
    };
    // The created ones are recorded before any grant or Job exists: a restart in between finds
    // them to release.
    let created: Vec<SnapshotRef> = snapshots.iter().filter(|s| s.created).cloned().collect();
    snapshots::record(scope, m, &created).await?;
    let duration = grants::grant_duration(scope.policy, &settings);
    let grant = match provider.grant_read(&pctx, &inv, &snapshots, duration).await {
        Ok(g) if g.files.is_empty() => g,
        Ok(g) => {
            // Granted: existing snapshots now need releasing too (their grants ended), recorded
            // before the Secret and the Job exist.
            snapshots::record(scope, m, &snapshots).await?;
            g
        }
        Err(e) => {
            let e = Error::from(e);
            fail_before_job(scope, m, scan_id, "GrantFailed", "Grant", &e, now).await?;
            // Nothing will read them: release everything prepared now (a grant may have been
            // made on some before the failure), recorded first so a failed release is retried.
            snapshots::record(scope, m, &snapshots).await?;
            snapshots::release_finished(scope, m, scan_id).await;
            return Ok(());
        }
    };
    let images_claim = scope.policy.spec.providers[index]
        .images
        .as_ref()
        .and_then(|i| i.persistent_volume_claim.as_deref());
    let instance_id = m.spec.instance_id.clone();
    let mut request = JobRequest {
        machine: &name,
        instance_id: &instance_id,
        cloud: m.spec.cloud,
        scan_id,
        disks: provider.reader_config(&inv, &snapshots),
        images_claim,
        grant_secret: None,
    };
    let block = provider.block_volumes(&inv, &snapshots);
    let claims = volumes::block_claims(scope.policy, &request, &settings, &block)?;
    let claim_names: Vec<String> = claims.iter().map(BlockClaim::name).collect();
    if !claims.is_empty() {
        // The disks are made from every snapshot, existing ones too: all are released after the
        // Job, and so are the volumes, recorded before they exist.
        snapshots::record(scope, m, &snapshots).await?;
        snapshots::record_volumes(scope, m, &claim_names).await?;
        if let Err(e) = volumes::create(&scope.persistent_volumes(), &scope.claims(), &claims).await
        {
            fail_before_job(scope, m, scan_id, "VolumeFailed", "Volume", &e, now).await?;
            // Nothing will read them: delete what was made, then release the snapshots (now,
            // or once the volumes are gone).
            snapshots::release_finished(scope, m, scan_id).await;
            return Ok(());
        }
    }
    let secret = grants::grant_secret(scope.policy, &request, &settings, &grant)?;
    let secret_name = secret.as_ref().map(|s| s.name());
    request.grant_secret = secret_name.as_deref();
    let mut job = scanner_job(scope.policy, &request, &settings)?;
    volumes::attach(&mut job, &claims);
    let job_name = job.name_any();
    let secrets = scope.secrets();
    if let Some(secret) = &secret {
        // First the Secret, then the Job that mounts it.
        grants::apply(&secrets, secret).await?;
    }
    let created: Vec<String> = created.into_iter().map(|s| s.snapshot_id).collect();
    let mut st = m.status.clone().unwrap_or_default();
    st.phase = Some(MachinePhase::Scanning);
    st.progress = Some(ScanProgress {
        scan_id: scan_id.to_owned(),
        started_at: Some(Time(now)),
        files_scanned: 0,
        bytes_scanned: 0,
        snapshots: (!created.is_empty()).then_some(created),
        job: Some(job_name.clone()),
    });
    patch_machine_status(scope, &name, &st, true).await?;
    let jobs = scope.jobs();
    let job = match jobs.create(&PostParams::default(), &job).await {
        Ok(job) => {
            tracing::info!(policy = %scope.name, machine = %name, job = %job_name, grant = secret.is_some(), "scanner Job created");
            job
        }
        Err(kube::Error::Api(s)) if s.is_already_exists() => jobs.get(&job_name).await?,
        Err(kube::Error::Api(s)) if job_refusal(&s) == Some(JobRefusal::Machine) => {
            let e = Error::JobRefused(s.message);
            tracing::warn!(policy = %scope.name, machine = %name, job = %job_name, error = %e, "scanner Job refused; the machine fails");
            fail_before_job(scope, m, scan_id, "JobRefused", "CreateJob", &e, now).await?;
            // Nothing will read them: release the grant, the volumes and the snapshots.
            snapshots::release_finished(scope, m, scan_id).await;
            return Ok(());
        }
        Err(kube::Error::Api(s))
            if quota == QuotaVerdict::Fail && job_refusal(&s) == Some(JobRefusal::Quota) =>
        {
            let e = Error::QuotaExceeded(s.message);
            tracing::warn!(policy = %scope.name, machine = %name, job = %job_name, error = %e, "scanner Job refused by a quota and waiting cannot help; the machine fails");
            fail_before_job(scope, m, scan_id, "QuotaExceeded", "CreateJob", &e, now).await?;
            snapshots::release_finished(scope, m, scan_id).await;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(secret) = &secret_name {
        // The garbage collector now deletes the Secret with the Job, should the operator not.
        grants::adopt(&secrets, secret, &job).await?;
    }
    // Likewise the block volumes' claims (their PersistentVolumes, cluster-scoped, cannot be
    // owned by a Job; the operator deletes them).
    volumes::adopt(&scope.claims(), &claim_names, &job).await?;
    m.status = Some(st);
    Ok(())
}

/// Machine `m` failed in scan `scan_id` before its Job existed (`reason` `SnapshotFailed`,
/// `GrantFailed`, `VolumeFailed`, `JobRefused` or `QuotaExceeded`): record it in its status, with a Warning event (`action`).
async fn fail_before_job(
    scope: &Scope<'_>,
    m: &mut ScannedMachine,
    scan_id: &str,
    reason: &str,
    action: &str,
    error: &Error,
    now: Timestamp,
) -> Result<()> {
    if error.is_provider() {
        // Rebuild its clients (and read its credentials again) next time.
        scope.forget_providers();
    }
    let name = m.name_any();
    let mut st = m.status.clone().unwrap_or_default();
    st.phase = Some(MachinePhase::Failed);
    st.progress = Some(ScanProgress {
        scan_id: scan_id.to_owned(),
        started_at: Some(Time(now)),
        ..Default::default()
    });
    set_condition(
        &mut st.conditions,
        "Scanned",
        "False",
        reason,
        &error.to_string(),
        scope.policy.metadata.generation,
        now,
    );
    patch_machine_status(scope, &name, &st, true).await?;
    scope
        .event(
            EventType::Warning,
            "MachineScanFailed",
            action,
            format!("machine {name} failed in scan {scan_id}: {error}"),
        )
        .await;
    m.status = Some(st);
    Ok(())
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    #[test]
    fn job_refusals() {
        let refusal =
            |code, reason, message| job_refusal(&Status::failure(message, reason).with_code(code));
        let quota = "jobs.batch \"scan-a\" is forbidden: exceeded quota: no-jobs, requested: count/jobs.batch=1, used: count/jobs.batch=0, limited: count/jobs.batch=0";
        assert_eq!(refusal(403, "Forbidden", quota), Some(JobRefusal::Quota));
        let denied = "jobs.batch \"scan-a\" is forbidden: ValidatingAdmissionPolicy 'p' with binding 'b' denied request: no";
        assert_eq!(refusal(422, "Invalid", denied), Some(JobRefusal::Machine));
        let webhook = "admission webhook \"jobs.example.com\" denied the request: no";
        assert_eq!(
            refusal(403, "Forbidden", webhook),
            Some(JobRefusal::Machine)
        );
        assert_eq!(refusal(400, "BadRequest", "bad"), Some(JobRefusal::Machine));
        assert_eq!(
            refusal(404, "NotFound", "namespaces \"x\" not found"),
            Some(JobRefusal::Machine)
        );
        // Retried as they are: throttling, server errors, an unreachable webhook; AlreadyExists
        // is the Job of an earlier attempt.
        assert_eq!(refusal(429, "TooManyRequests", "slow down"), None);
        let unreachable = "Internal error occurred: failed calling webhook \"jobs.example.com\"";
        assert_eq!(refusal(500, "InternalError", unreachable), None);
        assert_eq!(refusal(503, "ServiceUnavailable", ""), None);
        assert_eq!(refusal(409, "AlreadyExists", "exists"), None);
    }

    #[test]
    fn a_quota_refusal_waits_only_while_it_can_help() {
        let now: Timestamp = "2026-12-07T04:00:00Z".parse().unwrap();
        let wait = SignedDuration::from_mins(30);
        let ago = |mins| Some(now - SignedDuration::from_mins(mins));
        // No other Job runs: nothing will free the quota.
        assert_eq!(quota_verdict(0, None, now, wait), QuotaVerdict::Fail);
        assert_eq!(quota_verdict(0, ago(1), now, wait), QuotaVerdict::Fail);
        // Others run: wait, up to the bound.
        assert_eq!(quota_verdict(3, None, now, wait), QuotaVerdict::Wait);
        assert_eq!(quota_verdict(3, ago(29), now, wait), QuotaVerdict::Wait);
        assert_eq!(quota_verdict(3, ago(30), now, wait), QuotaVerdict::Fail);
        assert_eq!(quota_verdict(1, ago(90), now, wait), QuotaVerdict::Fail);
    }
}
