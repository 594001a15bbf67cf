//! Snapshot bookkeeping: the snapshots a scan created are recorded in the machine's
//! [`annotations::SNAPSHOTS`] before its Job exists, counted in `snapsentry_active_snapshots`,
//! and deleted from there when the scan finishes or the policy goes; leftovers nobody recorded
//! are swept by their tags.

use jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use snapsentry_crds::ScannedMachine;
use snapsentry_crds::contract::annotations;

use super::scope::Scope;
use crate::error::Result;
use snapsentry_cloud::{Provider, SnapshotRef};

/// Record (`Some`, comma-separated ids) or forget (`None`) the snapshots of machine `name`.
async fn annotate(scope: &Scope<'_>, name: &str, value: Option<String>) -> Result<()> {
    let patch = serde_json::json!({ "metadata": { "annotations": {
        annotations::SNAPSHOTS: value,
    }}});
    scope.merge::<ScannedMachine>(name, &patch).await
}

/// Record the snapshots a scan `created` for machine `m` (on the machine and in `m`), before its
/// Job exists: a restart in between finds them to delete.
pub(super) async fn record(
    scope: &Scope<'_>,
    m: &mut ScannedMachine,
    created: &[String],
) -> Result<()> {
    if created.is_empty() {
        return Ok(());
    }
    let value = created.join(",");
    annotate(scope, &m.name_any(), Some(value.clone())).await?;
    m.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(annotations::SNAPSHOTS.to_owned(), value);
    Ok(())
}

/// Snapshots the running scan created for `m` (its [`annotations::SNAPSHOTS`]).
pub fn recorded(m: &ScannedMachine) -> Vec<SnapshotRef> {
    m.annotations()
        .get(annotations::SNAPSHOTS)
        .into_iter()
        .flat_map(|v| v.split(','))
        .filter(|id| !id.is_empty())
        .map(|id| SnapshotRef {
            disk_id: String::new(),
            snapshot_id: id.to_owned(),
            region: m.spec.region.clone(),
            created: true,
        })
        .collect()
}

/// Show the snapshots recorded on the policy's machines in `snapsentry_active_snapshots`.
pub(super) fn report_active(scope: &Scope<'_>, machines: &[ScannedMachine]) {
    let active: usize = machines.iter().map(|m| recorded(m).len()).sum();
    scope
        .ctx
        .metrics
        .set_policy_snapshots(&scope.policy_key(), active as i64);
}

/// Delete the snapshots recorded on the machines, then forget them (annotation and metric).
pub(super) async fn delete_recorded(scope: &Scope<'_>, machines: &[ScannedMachine]) -> Result<()> {
    let pctx = scope.provider_ctx();
    for m in machines {
        let snapshots = recorded(m);
        if snapshots.is_empty() {
            continue;
        }
        let (_, provider) = scope.provider_of(m)?;
        provider.release_snapshots(&pctx, &snapshots).await?;
        annotate(scope, &m.name_any(), None).await?;
    }
    scope
        .ctx
        .metrics
        .set_policy_snapshots(&scope.policy_key(), 0);
    Ok(())
}

/// Delete the policy's snapshots older than `ttl` that earlier scans left behind (an operator
/// that died between creating and recording them, a deletion that failed). A failure is logged
/// and retried at the next scan.
pub(super) async fn sweep(
    scope: &Scope<'_>,
    provider: &dyn Provider,
    now: Timestamp,
    ttl: SignedDuration,
) {
    let older_than = now.checked_sub(ttl).unwrap_or(Timestamp::MIN);
    match provider.sweep(&scope.provider_ctx(), older_than).await {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!(policy = %scope.name, namespace = %scope.namespace, swept = n, %older_than, "leftover snapshots deleted")
        }
        Err(e) => {
            tracing::warn!(policy = %scope.name, namespace = %scope.namespace, error = %e, "snapshot sweep failed")
        }
    }
}

/// The policy is being deleted: delete everything its scans ever created, recorded or not. A
/// failure is returned (the finalizer stays and the deletion is retried): snapshots are copies
/// of disks full of secrets.
pub(super) async fn sweep_all(scope: &Scope<'_>) -> Result<()> {
    let pctx = scope.provider_ctx();
    // A provider this build cannot run never created anything.
    for (_, provider) in scope.providers.available() {
        let swept = provider.sweep(&pctx, Timestamp::now()).await?;
        if swept > 0 {
            tracing::info!(policy = %scope.name, namespace = %scope.namespace, swept, "snapshots of the deleted policy deleted");
        }
    }
    Ok(())
}
