//! Snapshot bookkeeping: the snapshots a machine's scan must release — those it created and
//! existing ones it was granted read access to or attaches as block volumes — are recorded in
//! the machine's [`annotations::SNAPSHOTS`] before its Job (and, for created ones, any grant)
//! exists, counted (the created ones) in `snapsentry_active_snapshots`, and released from there
//! as soon as the machine's Job ends (with the Job's grant Secret), or at the latest when the
//! scan finishes or the policy goes; leftovers nobody recorded are swept by their tags. The
//! PersistentVolumes of its block volumes ([`super::volumes`], recorded in
//! [`annotations::VOLUMES`]) go first: their claims, then the volumes, and the snapshots (and the
//! disks made from them) only once every volume is gone — never a disk under an attached
//! volume; until then the release waits for the next reconcile.

use jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::runtime::events::EventType;
use snapsentry_crds::ScannedMachine;
use snapsentry_crds::contract::{annotations, job_name};

use super::scope::Scope;
use super::{grants, volumes};
use crate::error::Result;
use snapsentry_cloud::{Provider, SnapshotRef};

/// Prefix of an entry of [`annotations::SNAPSHOTS`] naming an existing snapshot the scan only
/// read (granted, never deleted); a bare id is one the scan created.
const EXISTING: &str = "existing:";

/// The annotation's value for `snapshots` (comma-separated; see [`EXISTING`]).
fn encode(snapshots: &[SnapshotRef]) -> String {
    snapshots
        .iter()
        .map(|s| {
            if s.created {
                s.snapshot_id.clone()
            } else {
                format!("{EXISTING}{}", s.snapshot_id)
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The snapshots an annotation value records (bare ids, the only entries of the older format,
/// are snapshots the scan created).
fn decode(value: &str, region: Option<&String>) -> Vec<SnapshotRef> {
    value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .filter_map(|entry| {
            let (id, created) = match entry.strip_prefix(EXISTING) {
                Some(id) => (id, false),
                None => (entry, true),
            };
            (!id.is_empty()).then(|| SnapshotRef {
                disk_id: String::new(),
                snapshot_id: id.to_owned(),
                region: region.cloned(),
                created,
            })
        })
        .collect()
}

/// Record (`Some`) or forget (`None`) annotation `key` of machine `m`, on the machine and in `m`.
async fn annotate(
    scope: &Scope<'_>,
    m: &mut ScannedMachine,
    key: &str,
    value: Option<String>,
) -> Result<()> {
    let patch = serde_json::json!({ "metadata": { "annotations": { key: value } } });
    scope.merge::<ScannedMachine>(&m.name_any(), &patch).await?;
    let local = m.metadata.annotations.get_or_insert_with(Default::default);
    match value {
        Some(v) => local.insert(key.to_owned(), v),
        None => local.remove(key),
    };
    Ok(())
}

/// Record snapshots of machine `m` the scan must release — those it created, before any grant
/// exists, and those it was granted read access to, before the grant Secret and the Job exist —
/// so a restart in between finds them. Adds to what is already recorded (an earlier attempt of
/// the same machine may have chosen others).
pub(super) async fn record(
    scope: &Scope<'_>,
    m: &mut ScannedMachine,
    snapshots: &[SnapshotRef],
) -> Result<()> {
    let mut all = recorded(m);
    for s in snapshots {
        match all.iter_mut().find(|r| r.snapshot_id == s.snapshot_id) {
            Some(r) => r.created |= s.created,
            None => all.push(s.clone()),
        }
    }
    if all.is_empty() || all == recorded(m) {
        return Ok(());
    }
    annotate(scope, m, annotations::SNAPSHOTS, Some(encode(&all))).await
}

/// Record the PersistentVolumes (and claims, of the same names) of machine `m`'s block volumes
/// before they exist, so a restart finds them to delete. Adds to what is already recorded.
pub(super) async fn record_volumes(
    scope: &Scope<'_>,
    m: &mut ScannedMachine,
    names: &[String],
) -> Result<()> {
    let mut all = recorded_volumes(m);
    for n in names {
        if !all.contains(n) {
            all.push(n.clone());
        }
    }
    if all.is_empty() || all == recorded_volumes(m) {
        return Ok(());
    }
    annotate(scope, m, annotations::VOLUMES, Some(all.join(","))).await
}

/// The PersistentVolumes recorded on `m` (its [`annotations::VOLUMES`]).
pub fn recorded_volumes(m: &ScannedMachine) -> Vec<String> {
    m.annotations()
        .get(annotations::VOLUMES)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Snapshots recorded on `m` (its [`annotations::SNAPSHOTS`]) for the running scan to release.
pub fn recorded(m: &ScannedMachine) -> Vec<SnapshotRef> {
    m.annotations()
        .get(annotations::SNAPSHOTS)
        .map(|v| decode(v, m.spec.region.as_ref()))
        .unwrap_or_default()
}

/// Show the snapshots the running scan created and has not deleted yet in
/// `snapsentry_active_snapshots`.
pub(super) fn report_active(scope: &Scope<'_>, machines: &[ScannedMachine]) {
    let active: usize = machines
        .iter()
        .map(|m| recorded(m).iter().filter(|s| s.created).count())
        .sum();
    scope
        .ctx
        .metrics
        .set_policy_snapshots(&scope.policy_key(), active as i64);
}

/// Release what is recorded on `m`: delete its block volumes' claims and PersistentVolumes
/// and, once the volumes are gone, end the grants and delete the created snapshots, delete the
/// grant Secret of its Job in scan `scan_id` (when known), then forget them. Returns `false` when
/// a PersistentVolume is not gone yet (the snapshots are then kept, and recorded, for the next
/// reconcile).
async fn release_machine(
    scope: &Scope<'_>,
    m: &mut ScannedMachine,
    scan_id: Option<&str>,
) -> Result<bool> {
    let names = recorded_volumes(m);
    if !names.is_empty() {
        let left = volumes::delete(&scope.persistent_volumes(), &scope.claims(), &names).await?;
        if !left.is_empty() {
            tracing::info!(policy = %scope.name, machine = %m.name_any(), volumes = ?left, "waiting for PersistentVolumes to go before releasing the disks behind them");
            return Ok(false);
        }
        annotate(scope, m, annotations::VOLUMES, None).await?;
    }
    if !m.annotations().contains_key(annotations::SNAPSHOTS) {
        return Ok(true);
    }
    let snapshots = recorded(m);
    if !snapshots.is_empty() {
        let (_, provider) = scope.provider_of(m)?;
        provider
            .release_snapshots(&scope.provider_ctx(), &snapshots)
            .await?;
    }
    if let Some(id) = scan_id {
        let secret = job_name(&scope.name, &m.name_any(), id);
        grants::delete(&scope.secrets(), &secret).await?;
    }
    annotate(scope, m, annotations::SNAPSHOTS, None).await?;
    Ok(true)
}

/// Machine `m`'s Job of scan `scan_id` ended (or it finished without one): release its block
/// volumes, snapshots and grant Secret now. A failure, or a PersistentVolume not gone yet, keeps
/// the record, so the next reconcile tries again; a failure is reported (log, Warning event);
/// neither holds up other machines.
pub(super) async fn release_finished(scope: &Scope<'_>, m: &mut ScannedMachine, scan_id: &str) {
    if let Err(e) = release_machine(scope, m, Some(scan_id)).await {
        if e.is_provider() {
            scope.forget_providers();
        }
        let name = m.name_any();
        tracing::warn!(policy = %scope.name, machine = %name, %scan_id, error = %e, "releasing snapshots failed; retrying at the next reconcile");
        scope
            .event(
                EventType::Warning,
                "ReleaseFailed",
                "Release",
                format!("releasing the snapshots of machine {name} (scan {scan_id}) failed, will retry: {e}"),
            )
            .await;
    }
}

/// Release everything still recorded on the machines (the backstop of a finishing scan, whose
/// id is `scan_id`, and of a policy's deletion), then report no active snapshots. A failure is
/// returned: snapshots are copies of disks full of secrets. Returns `false` when a block
/// volume's PersistentVolume is not gone yet: what it holds stays recorded, for the caller to
/// try again.
pub(super) async fn release_recorded(
    scope: &Scope<'_>,
    machines: &mut [ScannedMachine],
    scan_id: Option<&str>,
) -> Result<bool> {
    let mut released = true;
    for m in machines.iter_mut() {
        released &= release_machine(scope, m, scan_id).await?;
    }
    if released {
        scope
            .ctx
            .metrics
            .set_policy_snapshots(&scope.policy_key(), 0);
    }
    Ok(released)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: &str, created: bool) -> SnapshotRef {
        SnapshotRef {
            disk_id: String::new(),
            snapshot_id: id.into(),
            region: Some("westeurope".into()),
            created,
        }
    }

    #[test]
    fn the_annotation_says_which_snapshots_were_created() {
        let id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/snapshots/a";
        let both = vec![snap(id, true), snap("snap-2", false)];
        let value = encode(&both);
        assert_eq!(value, format!("{id},existing:snap-2"));
        let region = "westeurope".to_owned();
        assert_eq!(decode(&value, Some(&region)), both);
    }

    #[test]
    fn the_older_format_lists_created_snapshots() {
        let region = "westeurope".to_owned();
        assert_eq!(
            decode("snap-1,,snap-2", Some(&region)),
            vec![snap("snap-1", true), snap("snap-2", true)]
        );
        assert!(decode("", None).is_empty());
        assert!(decode("existing:", None).is_empty());
    }
}
