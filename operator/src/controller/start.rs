//! Starting machines of a running scan under the policy's concurrency: each snapshotted, granted
//! read access, given its block volumes (a PersistentVolume and claim each) and grant Secret, and
//! its scanner Job — or failed before having one, with what was prepared released.

use jiff::Timestamp;
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

/// Start the next machines under the policy's concurrency limit.
pub(super) async fn start_next(
    scope: &Scope<'_>,
    view: &mut [ScannedMachine],
    scan_id: &str,
    now: Timestamp,
) -> Result<()> {
    let next: Vec<String> = next_to_start(scope.policy, view)
        .iter()
        .map(|m| m.name_any())
        .collect();
    for name in next {
        if let Some(m) = view.iter_mut().find(|m| m.name_any() == name) {
            start_machine(scope, m, scan_id, now).await?;
        }
    }
    Ok(())
}

/// Snapshot a machine, grant the scanner read access, create its block volumes (PersistentVolume
/// and claim each, if the provider has any), record it as `Scanning` in this scan, and create its
/// grant Secret (if the provider granted anything) and its Job if absent.
async fn start_machine(
    scope: &Scope<'_>,
    m: &mut ScannedMachine,
    scan_id: &str,
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
/// `GrantFailed` or `VolumeFailed`): record it in its status, with a Warning event (`action`).
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
