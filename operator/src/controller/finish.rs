//! Finishing a scan once every machine is done: release what is left of its snapshots, correlate the policy's
//! findings, write finding statuses and labels, AttackPaths, Recommendations and per-machine
//! counts, and the policy's status. Correlation is idempotent, so finishing twice writes the
//! same objects.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use jiff::Timestamp;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use snapsentry_crds::contract::{self, OPERATOR_FINDING_LABELS};
use snapsentry_crds::{
    AttackPath, MachinePhase, Recommendation, ScanPolicyStatus, ScannedMachine, SecretFinding,
};

use super::children::{Existing, FindingWrite, changed_finding, diff_owned};
use super::inventory::target_inventory;
use super::scan::machine_counts;
use super::scope::{Scope, delete_if_present, server_side_apply};
use super::snapshots;
use super::status::set_condition;
use crate::correlate::{self, CorrelationInput, Correlator, Desired, FindingRecord, Records};
use crate::error::Result;

/// Every machine is done: release snapshots left recorded, correlate, write the policy's
/// children and status. Returns `false`, having done nothing else, while a block volume's
/// PersistentVolume is not gone yet (the scan finishes at a later reconcile).
pub(super) async fn finish_scan(
    scope: &Scope<'_>,
    scan_id: &str,
    status: &mut ScanPolicyStatus,
    now: Timestamp,
) -> Result<bool> {
    let policy = scope.policy;
    let mut machines = scope.machines().await?;
    // Each machine's were released when its Job ended; this is the backstop.
    if !snapshots::release_recorded(scope, &mut machines, Some(scan_id)).await? {
        return Ok(false);
    }

    let targets = target_inventory(scope).await;
    // Page by page, each finding kept only as correlation reads it (a few hundred bytes).
    let mut records = Records::new();
    let findings: Vec<FindingRecord> = scope
        .list_as(
            &scope.api::<SecretFinding>(),
            &scope.policy_selector(),
            |f| records.record(f),
        )
        .await?;
    drop(records);
    // An invalid retention (reported in `Ready`; no scan starts with one, but one may have
    // started before the spec changed) deletes nothing rather than falling back to a default.
    let retention = correlate::parse_retention(policy.spec.resolved_retention.as_deref())
        .unwrap_or(jiff::SignedDuration::MAX);
    let input = CorrelationInput {
        policy: &scope.name,
        namespace: &scope.namespace,
        owner: policy.controller_owner_ref(&()),
        machines: &machines,
        findings: &findings,
        targets: &targets,
        now,
        retention,
    };
    let correlator = Correlator::new(&input);
    let correlation = correlator.correlation();
    write_findings(
        scope,
        findings.len(),
        correlator.updates(),
        &correlation.to_delete,
    )
    .await?;
    drop(correlator);
    drop(findings);
    let paths = sync_owned::<AttackPath>(scope, &correlation.attack_paths, |a, b| {
        a.spec == b.spec && a.metadata.labels == b.metadata.labels
    })
    .await?;
    sync_owned::<Recommendation>(scope, &correlation.recommendations, |a, b| {
        a.spec == b.spec && a.metadata.labels == b.metadata.labels
    })
    .await?;
    let mut recount = Vec::new();
    for m in &machines {
        let name = m.name_any();
        let counts = correlation.machine_findings.get(&name);
        if m.status.as_ref().and_then(|s| s.findings.as_ref()) != counts {
            recount.push((name, serde_json::json!({ "findings": counts })));
        }
    }
    let mut writes = Bounded::new(scope);
    for (name, status) in recount {
        let write = async move { scope.merge_status::<ScannedMachine>(&name, &status).await };
        writes.push(write.boxed()).await?;
    }
    writes.finish().await?;
    scope
        .ctx
        .metrics
        .set_findings(&scope.name, &correlation.open_by_severity_and_type());

    let counts = machine_counts(&machines);
    let generation = policy.metadata.generation;
    status.machines = Some(counts.clone());
    status.findings = Some(correlation.open.clone());
    status.attack_paths = Some(paths as u32);
    scope
        .ctx
        .metrics
        .set_machines_incomplete(&scope.policy_key(), counts.incomplete);
    let summary = format!(
        "scan {scan_id}: {} of {} machines scanned, {} incomplete, {} failed; {} open findings, {} attack paths",
        counts.scanned,
        counts.total,
        counts.incomplete,
        counts.failed,
        correlation.open.total,
        paths
    );
    set_condition(
        &mut status.conditions,
        "Scanning",
        "False",
        "ScanFinished",
        &summary,
        generation,
        now,
    );
    set_degraded(&mut status.conditions, &machines, scan_id, generation, now);
    tracing::info!(policy = %scope.name, %scan_id, scanned = counts.scanned, incomplete = counts.incomplete, failed = counts.failed, "scan finished");
    let type_ = if counts.failed > 0 || counts.incomplete > 0 {
        EventType::Warning
    } else {
        EventType::Normal
    };
    scope.event(type_, "ScanFinished", "Scan", summary).await;
    Ok(true)
}

/// The policy's `Degraded` condition after scan `scan_id`: `True` (`MachinesFailed`, naming the
/// first ten) when a machine failed, else `False`.
pub(super) fn set_degraded(
    conditions: &mut Vec<Condition>,
    machines: &[ScannedMachine],
    scan_id: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let counts = machine_counts(machines);
    if counts.failed > 0 {
        // Each failed machine with why (its Scanned condition), so the policy alone says what
        // went wrong (a quota, an expired grant, a killed scanner).
        let failed: Vec<String> = machines
            .iter()
            .filter(|m| m.status.as_ref().and_then(|s| s.phase) == Some(MachinePhase::Failed))
            .take(10)
            .map(|m| match failure_reason(m) {
                Some(why) => format!("{} ({why})", m.name_any()),
                None => m.name_any(),
            })
            .collect();
        set_condition(
            conditions,
            "Degraded",
            "True",
            "MachinesFailed",
            &format!(
                "{} of {} machines failed in scan {scan_id}: {}",
                counts.failed,
                counts.total,
                failed.join("; ")
            ),
            generation,
            now,
        );
    } else {
        set_condition(
            conditions,
            "Degraded",
            "False",
            "AllMachinesScanned",
            &if counts.incomplete > 0 {
                format!(
                    "every machine was scanned in scan {scan_id}, {} of them not fully (see the coverage Recommendation)",
                    counts.incomplete
                )
            } else {
                format!("every machine was scanned in scan {scan_id}")
            },
            generation,
            now,
        );
    }
}

/// Why a failed machine failed: its `Scanned` condition's message, at most 300 characters.
fn failure_reason(m: &ScannedMachine) -> Option<String> {
    let c = m
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Scanned" && c.status == "False")?;
    let mut why: String = c.message.chars().take(300).collect();
    if why.len() < c.message.len() {
        why.push('…');
    }
    Some(why)
}

/// Requests in flight at once, at most `limit` (the operator's `SNAPSENTRY_WRITE_CONCURRENCY`):
/// [`Bounded::push`] waits for one to end when `limit` run; the first error is returned (the scan
/// finishes at a later reconcile, writing what is still different).
struct Bounded<'a> {
    limit: usize,
    running: FuturesUnordered<BoxFuture<'a, Result<()>>>,
}

impl<'a> Bounded<'a> {
    fn new(scope: &Scope<'_>) -> Self {
        Self {
            limit: scope.ctx.config.write_concurrency.max(1),
            running: FuturesUnordered::new(),
        }
    }

    /// Start `request` once fewer than `limit` run.
    async fn push(&mut self, request: BoxFuture<'a, Result<()>>) -> Result<()> {
        while self.running.len() >= self.limit {
            if let Some(done) = self.running.next().await {
                done?;
            }
        }
        self.running.push(request);
        Ok(())
    }

    /// Wait for every request started.
    async fn finish(mut self) -> Result<()> {
        while let Some(done) = self.running.next().await {
            done?;
        }
        Ok(())
    }
}

/// The JSON patch (RFC 6902) that makes a finding's assessment `update`'s: the whole `status`
/// replaced, each of [`OPERATOR_FINDING_LABELS`] set, or removed when the update has none
/// (added first, so the removal cannot fail on a label already gone).
///
/// Not a server-side apply: the scanner Job's apply also sets these fields
/// (`snapsentry_crds::assess::scanned`), and with server-side apply a field the operator leaves
/// out would stay as long as the scanner's last apply holds it — a key no longer authorized
/// elsewhere would keep its `status.target` and `snapsentry.io/target`. An update removes it for
/// every manager.
fn finding_patch(update: &correlate::FindingUpdate) -> serde_json::Value {
    let mut ops =
        vec![serde_json::json!({ "op": "add", "path": "/status", "value": update.status })];
    for key in OPERATOR_FINDING_LABELS {
        let path = format!(
            "/metadata/labels/{}",
            key.replace('~', "~0").replace('/', "~1")
        );
        match update.labels.get(key) {
            Some(value) => {
                ops.push(serde_json::json!({ "op": "add", "path": path, "value": value }))
            }
            None => {
                ops.push(serde_json::json!({ "op": "add", "path": path, "value": "" }));
                ops.push(serde_json::json!({ "op": "remove", "path": path }));
            }
        }
    }
    serde_json::Value::Array(ops)
}

/// Write the operator's labels and status of each finding where either differs from the finding
/// as it is (`updates` is read one at a time: only the writes in flight are held), then delete
/// findings past retention.
async fn write_findings<'a>(
    scope: &Scope<'_>,
    total: usize,
    updates: impl Iterator<Item = Desired<'a>>,
    to_delete: &[String],
) -> Result<()> {
    let api = &scope.api::<SecretFinding>();
    tracing::info!(policy = %scope.name, findings = total, "writing findings");
    let mut requests = Bounded::new(scope);
    let (mut changed, mut labels, mut status) = (0usize, 0usize, 0usize);
    for w in updates.filter_map(changed_finding) {
        changed += 1;
        labels += usize::from(w.changes.labels);
        status += usize::from(w.changes.status);
        let (name, patch, params) = finding_request(&w)?;
        let write = async move {
            api.patch(&name, &params, &patch).await?;
            Ok(())
        };
        requests.push(write.boxed()).await?;
    }
    for name in to_delete {
        requests.push(delete_if_present(api, name).boxed()).await?;
    }
    requests.finish().await?;
    tracing::info!(policy = %scope.name, findings = total, changed, labels, status, deleted = to_delete.len(), "findings written");
    Ok(())
}

/// The request that makes a finding as `w` wants it: the JSON patch of [`finding_patch`], by
/// the operator's field manager.
fn finding_request(w: &FindingWrite) -> Result<(String, Patch<()>, PatchParams)> {
    Ok((
        w.update.name.clone(),
        Patch::Json(serde_json::from_value(finding_patch(&w.update))?),
        PatchParams {
            field_manager: Some(contract::OPERATOR.into()),
            ..PatchParams::default()
        },
    ))
}

/// Apply the desired objects of a kind that are missing or differ, and delete the policy's
/// others; returns how many are desired.
async fn sync_owned<K>(
    scope: &Scope<'_>,
    desired: &[K],
    same: impl Fn(&K, &K) -> bool,
) -> Result<usize>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug
        + Sync,
{
    let api = &scope.api::<K>();
    let by_name: BTreeMap<String, &K> = desired.iter().map(|d| (d.name_any(), d)).collect();
    // Page by page, each existing object kept only as its name and whether it is as desired.
    let current = scope
        .list_as(api, &scope.policy_selector(), |c| {
            Some(Existing::of(&c, &by_name, &same))
        })
        .await?;
    let plan = diff_owned(&current, desired);
    let mut apply = Vec::with_capacity(plan.apply.len());
    for name in &plan.apply {
        apply.extend(by_name.get(name).copied());
    }
    let mut requests = Bounded::new(scope);
    for obj in apply {
        requests.push(server_side_apply(api, obj).boxed()).await?;
    }
    for name in &plan.delete {
        requests.push(delete_if_present(api, name).boxed()).await?;
    }
    requests.finish().await?;
    Ok(desired.len())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use snapsentry_crds::{SecretFindingStatus, labels};

    use super::*;

    #[test]
    fn a_finding_patch_replaces_the_status_and_sets_or_removes_each_assessment_label() {
        let mut wanted: BTreeMap<String, String> = OPERATOR_FINDING_LABELS
            .iter()
            .map(|k| ((*k).to_owned(), "x".to_owned()))
            .collect();
        wanted.remove(labels::TARGET);
        wanted.insert(labels::POLICY.to_owned(), "not-written".to_owned());
        let update = correlate::FindingUpdate {
            name: "f".into(),
            status: SecretFindingStatus {
                risk_score: Some(7),
                ..Default::default()
            },
            labels: wanted,
        };
        let ops = finding_patch(&update);
        let ops = ops.as_array().unwrap();
        assert_eq!(ops[0]["op"], "add");
        assert_eq!(ops[0]["path"], "/status");
        assert_eq!(ops[0]["value"]["riskScore"], 7);
        let paths = |op: &str| -> Vec<String> {
            ops.iter()
                .filter(|o| o["op"] == op)
                .filter_map(|o| o["path"].as_str().map(str::to_owned))
                .collect()
        };
        let target = "/metadata/labels/snapsentry.io~1target";
        assert_eq!(paths("remove"), [target]);
        let added = paths("add");
        // The status, the seven labels (the target one only to remove it), nothing else.
        assert_eq!(added.len(), 1 + OPERATOR_FINDING_LABELS.len());
        assert!(added.contains(&"/metadata/labels/snapsentry.io~1new".to_owned()));
        assert!(!added.iter().any(|p| p.ends_with("~1policy")));
        // The removal comes right after the add that makes it safe.
        let at = |p: &str, op: &str| ops.iter().position(|o| o["path"] == p && o["op"] == op);
        assert_eq!(at(target, "remove"), at(target, "add").map(|i| i + 1));
        // A JSON patch as kube sends it.
        let _: Patch<()> =
            Patch::Json(serde_json::from_value(serde_json::Value::Array(ops.clone())).unwrap());
    }
}
