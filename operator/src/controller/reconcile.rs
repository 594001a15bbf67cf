//! One reconcile of a ScanPolicy: read desired state → apply children → write status.
//!
//! All state lives in the API, so an operator restarted at any point picks up where it stopped:
//!
//! - `status.scanId` plus a `Scanning=True` condition mark a scan in progress; the scan id is
//!   written (the commit point) before any Job exists, so a restart never starts a second scan
//!   with other Job names;
//! - a machine's phase in the scan comes from its Job (deterministic name, labelled with policy,
//!   machine and scan id, created if absent): running → `Scanning`, complete → `Scanned`, failed
//!   → `Failed`; once the Job is gone (its TTL), from the scanner's `status.lastScan` of this
//!   scan; a machine without either is still `Pending`;
//! - snapshots a scan created are recorded in the machine's `snapsentry.io/snapshots` annotation
//!   before its Job exists (the scanner rewrites `status.progress`), and deleted from there;
//! - when every machine is done, snapshots are deleted and the policy's findings are correlated;
//!   correlation is idempotent, so finishing twice writes the same objects.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use snapsentry_crds::{
    AttackPath, MachinePhase, Recommendation, ScanPolicy, ScanPolicyStatus, ScanProgress,
    ScannedMachine, SecretFinding, labels,
};

use super::children::{JobOutcome, changed_findings, diff_owned, job_outcome, scan_complete};
use super::scan::{desired_machine, machine_counts, next_to_start};
use super::status::{plan, set_condition};
use super::{Context, FIELD_MANAGER};
use crate::correlate::{self, CorrelationInput, TargetInventory, slugify};
use crate::error::{Error, Result};
use crate::job::{JobRequest, scanner_job};
use crate::metrics::ScanResult;
use crate::schedule::{Trigger, scan_id as new_scan_id};
use snapsentry_cloud::{
    self as provider, InventoryMachine, Provider, ProviderContext, SnapshotRef,
};

/// Annotation on a ScannedMachine: index of the `spec.providers[]` entry it came from.
pub const PROVIDER_ANNOTATION: &str = "snapsentry.io/provider-index";
/// Annotation on a ScannedMachine: comma-separated ids of the snapshots the running scan created
/// for it, until they are deleted.
pub const SNAPSHOTS_ANNOTATION: &str = "snapsentry.io/snapshots";
/// Finalizer on ScanPolicies: deletes the snapshots and Jobs of a scan in progress.
pub const FINALIZER: &str = "snapsentry.io/cleanup";
/// How often a running scan is looked at even when no Job changes.
pub const SCAN_POLL: Duration = Duration::from_secs(5);
/// Retry after a provider failure.
const PROVIDER_RETRY: Duration = Duration::from_secs(60);
/// Labels on SecretFindings that the operator owns (the scanner owns the others).
const OPERATOR_FINDING_LABELS: [&str; 5] = [
    labels::STATE,
    labels::VERIFIED,
    labels::EXPOSED,
    labels::SEVERITY,
    labels::TARGET_KIND,
];

/// A policy's name, namespace and APIs.
struct Scope<'a> {
    policy: &'a ScanPolicy,
    name: String,
    namespace: String,
    ctx: &'a Context,
}

impl<'a> Scope<'a> {
    fn new(policy: &'a ScanPolicy, ctx: &'a Context) -> Result<Self> {
        let namespace = policy.namespace().ok_or(Error::MissingField {
            kind: "ScanPolicy",
            field: "metadata.namespace",
        })?;
        Ok(Self {
            policy,
            name: policy.name_any(),
            namespace,
            ctx,
        })
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.ctx.client.clone(), &self.namespace)
    }

    fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.ctx.client.clone(), &self.ctx.config.namespace)
    }

    fn policy_selector(&self) -> String {
        format!("{}={}", labels::POLICY, slugify(&self.name))
    }

    fn job_selector(&self, scan_id: Option<&str>) -> String {
        let mut s = format!(
            "{},{}={}",
            self.policy_selector(),
            labels::POLICY_NAMESPACE,
            slugify(&self.namespace)
        );
        if let Some(id) = scan_id {
            s.push_str(&format!(",{}={}", labels::SCAN_ID, slugify(id)));
        }
        s
    }

    /// `namespace/name`, the policy's key in per-policy metrics.
    fn policy_key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn provider_ctx(&self) -> ProviderContext {
        ProviderContext {
            policy: self.name.clone(),
            namespace: self.namespace.clone(),
            client: Some(self.ctx.client.clone()),
        }
    }

    async fn list<K>(&self, api: &Api<K>, selector: &str) -> Result<Vec<K>>
    where
        K: Clone + DeserializeOwned + std::fmt::Debug,
    {
        Ok(api
            .list(&ListParams::default().labels(selector))
            .await?
            .items)
    }

    async fn machines(&self) -> Result<Vec<ScannedMachine>> {
        let mut m = self
            .list(&self.api::<ScannedMachine>(), &self.policy_selector())
            .await?;
        m.sort_by_key(|m| m.name_any());
        Ok(m)
    }

    async fn event(&self, type_: EventType, reason: &str, action: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        let reference = self.policy.object_ref(&());
        if let Err(e) = self.ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(policy = %self.name, error = %e, "cannot publish event");
        }
    }
}

/// Reconcile a live (not deleted) policy.
pub async fn apply(cached: &ScanPolicy, ctx: &Context) -> Result<Action> {
    // The policy as the API server has it now: the controller's cache may not have seen the
    // status this operator just wrote (a Job event can arrive first), and deciding from it
    // could start the same scan twice.
    let api: Api<ScanPolicy> = Scope::new(cached, ctx)?.api();
    let Some(fresh) = api.get_opt(&cached.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let policy = &fresh;
    let scope = Scope::new(policy, ctx)?;
    let now = Timestamp::now();
    // Read desired state.
    let plan = plan(policy, now);
    let mut status = plan.status.clone();
    let mut requeue = plan.requeue;
    let mut current = running_scan(policy);
    if current.is_none()
        && let Some(trigger) = &plan.start
    {
        match start_scan(&scope, trigger, &mut status, now).await {
            Ok(id) => {
                // The commit point: the scan id is in the API before any Job is created.
                write_status(&scope, &status).await?;
                current = Some(id);
            }
            Err(e) if e.is_provider() => {
                set_condition(
                    &mut status.conditions,
                    "Degraded",
                    "True",
                    "ProviderFailed",
                    &e.to_string(),
                    policy.metadata.generation,
                    now,
                );
                scope
                    .event(
                        EventType::Warning,
                        "ProviderFailed",
                        "Inventory",
                        e.to_string(),
                    )
                    .await;
                requeue = requeue.min(PROVIDER_RETRY);
            }
            Err(e) => return Err(e),
        }
    }
    // Apply children.
    if let Some(id) = current {
        let finished = advance_scan(&scope, &id, &mut status, now).await?;
        if !finished {
            requeue = SCAN_POLL;
        }
    }
    // Write status.
    if policy.status.as_ref() != Some(&status) {
        write_status(&scope, &status).await?;
    }
    Ok(Action::requeue(requeue))
}

/// The id of the scan in progress, if any.
pub fn running_scan(policy: &ScanPolicy) -> Option<String> {
    let status = policy.status.as_ref()?;
    let scanning = status
        .conditions
        .iter()
        .any(|c| c.type_ == "Scanning" && c.status == "True");
    scanning.then(|| status.scan_id.clone()).flatten()
}

async fn write_status(scope: &Scope<'_>, status: &ScanPolicyStatus) -> Result<()> {
    let patch = serde_json::json!({ "status": status });
    scope
        .api::<ScanPolicy>()
        .patch_status(
            &scope.name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}

/// Inventory → one ScannedMachine per machine (stale ones deleted) → the scan's status.
async fn start_scan(
    scope: &Scope<'_>,
    trigger: &Trigger,
    status: &mut ScanPolicyStatus,
    now: Timestamp,
) -> Result<String> {
    let policy = scope.policy;
    let scan_id = unique_scan_id(new_scan_id(now), status.scan_id.as_deref());
    let pctx = scope.provider_ctx();
    let mut desired = Vec::new();
    for (index, spec) in policy.spec.providers.iter().enumerate() {
        let provider = provider::from_spec(spec)?;
        let inventory = provider.inventory(&pctx).await?;
        sweep(scope, provider.as_ref(), now, scope.ctx.config.snapshot_ttl).await;
        for machine in &inventory.machines {
            let mut m = desired_machine(policy, provider.cloud(), machine)?;
            m.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(PROVIDER_ANNOTATION.to_owned(), index.to_string());
            desired.push(m);
        }
    }
    let api = scope.api::<ScannedMachine>();
    let wanted: BTreeSet<String> = desired.iter().map(|m| m.name_any()).collect();
    for m in &desired {
        server_side_apply(&api, m).await?;
    }
    for stale in scope.machines().await? {
        if !wanted.contains(&stale.name_any()) {
            delete_if_present(&api, &stale.name_any()).await?;
        }
    }

    status.scan_id = Some(scan_id.clone());
    status.last_scan_time = Some(Time(now));
    status.observed_generation = policy.metadata.generation;
    if let Trigger::ScanNow(value) = trigger {
        status.last_scan_now = Some(value.clone());
    }
    set_condition(
        &mut status.conditions,
        "Scanning",
        "True",
        "ScanStarted",
        &format!("scan {scan_id}: 0 of {} machines done", desired.len()),
        policy.metadata.generation,
        now,
    );
    tracing::info!(policy = %scope.name, namespace = %scope.namespace, %scan_id, ?trigger, machines = desired.len(), "scan started");
    scope
        .event(
            EventType::Normal,
            "ScanStarted",
            "Scan",
            format!(
                "scan {scan_id} started ({}): {} machines",
                trigger_text(trigger),
                desired.len()
            ),
        )
        .await;
    Ok(scan_id)
}

/// Delete the policy's snapshots older than `ttl` that earlier scans left behind (an operator
/// that died between creating and recording them, a deletion that failed). A failure is logged
/// and retried at the next scan.
async fn sweep(scope: &Scope<'_>, provider: &dyn Provider, now: Timestamp, ttl: SignedDuration) {
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

/// Scan ids are per second; a scan started within the second of the previous one gets a suffix
/// (its Jobs must not share the previous scan's names).
pub fn unique_scan_id(base: String, previous: Option<&str>) -> String {
    let Some(prev) = previous else { return base };
    if prev == base {
        return format!("{base}-2");
    }
    match prev
        .strip_prefix(&base)
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|n| n.parse::<u32>().ok())
    {
        Some(n) => format!("{base}-{}", n + 1),
        None => base,
    }
}

fn trigger_text(trigger: &Trigger) -> &'static str {
    match trigger {
        Trigger::ScanNow(_) => "snapsentry.io/scan-now",
        Trigger::Schedule => "schedule",
        Trigger::SpecChanged => "policy created or changed",
    }
}

/// A machine's phase in scan `scan_id`, from its Job (`job`) and what it recorded.
pub fn phase_in_scan(
    machine: &ScannedMachine,
    job: Option<&Job>,
    scan_id: &str,
) -> (MachinePhase, Option<JobOutcome>) {
    let status = machine.status.as_ref();
    if let Some(job) = job {
        return match job_outcome(job) {
            None => (MachinePhase::Scanning, None),
            Some(JobOutcome::Succeeded) => (MachinePhase::Scanned, Some(JobOutcome::Succeeded)),
            Some(o @ JobOutcome::Failed(_)) => (MachinePhase::Failed, Some(o)),
        };
    }
    // The Job finished and its TTL removed it; the scanner recorded this scan.
    if let Some(last) = status
        .and_then(|s| s.last_scan.as_ref())
        .filter(|l| l.scan_id == scan_id)
    {
        let phase = if last.succeeded {
            MachinePhase::Scanned
        } else {
            MachinePhase::Failed
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

/// Track Jobs, start the next machines, finish the scan when all are done. Returns whether the
/// scan finished.
async fn advance_scan(
    scope: &Scope<'_>,
    scan_id: &str,
    status: &mut ScanPolicyStatus,
    now: Timestamp,
) -> Result<bool> {
    let jobs_api = scope.jobs();
    let jobs: BTreeMap<String, Job> = scope
        .list(&jobs_api, &scope.job_selector(Some(scan_id)))
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
        let m = sync_machine(scope, m, phase, outcome, job_name, scan_id, now).await?;
        view.push(m);
    }

    // Start the next machines under the concurrency limit.
    let next: Vec<String> = next_to_start(scope.policy, &view)
        .iter()
        .map(|m| m.name_any())
        .collect();
    for name in next {
        if let Some(m) = view.iter_mut().find(|m| m.name_any() == name) {
            start_machine(scope, m, scan_id, now).await?;
        }
    }

    let active: usize = view.iter().map(|m| recorded_snapshots(m).len()).sum();
    scope
        .ctx
        .http
        .metrics
        .set_policy_snapshots(&scope.policy_key(), active as i64);
    let counts = machine_counts(&view);
    status.machines = Some(counts.clone());
    if scan_complete(&view) {
        finish_scan(scope, scan_id, status, now).await?;
        return Ok(true);
    }
    set_condition(
        &mut status.conditions,
        "Scanning",
        "True",
        "ScanInProgress",
        &format!(
            "scan {scan_id}: {} of {} machines done, {} scanning",
            counts.scanned + counts.failed,
            counts.total,
            counts.scanning
        ),
        scope.policy.metadata.generation,
        now,
    );
    Ok(false)
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
    match &outcome {
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
    let scanned_condition = |s: &snapsentry_crds::ScannedMachineStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == "Scanned")
            .map(|c| c.message.clone())
    };
    if outcome.is_some() && scanned_condition(&st) != scanned_condition(&before) {
        // First time this scan's end is recorded: count it once.
        let last = st.last_scan.as_ref().filter(|l| l.scan_id == scan_id);
        let result = match outcome {
            Some(JobOutcome::Succeeded) => ScanResult::succeeded,
            _ => ScanResult::failed,
        };
        scope.ctx.http.metrics.scan_finished(
            result,
            last.map_or(0.0, |l| l.duration_ms as f64 / 1000.0),
            last.map_or(0, |l| l.bytes_scanned),
        );
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

/// Merge-patch the operator's fields of a machine's status: phase, conditions and, when
/// `with_progress`, progress (which the scanner updates while it runs).
async fn patch_machine_status(
    scope: &Scope<'_>,
    name: &str,
    st: &snapsentry_crds::ScannedMachineStatus,
    with_progress: bool,
) -> Result<()> {
    let mut status = serde_json::json!({
        "phase": st.phase,
        "conditions": st.conditions,
    });
    if with_progress {
        status["progress"] = serde_json::to_value(&st.progress)?;
    }
    let patch = serde_json::json!({ "status": status });
    scope
        .api::<ScannedMachine>()
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}

/// The provider a machine came from.
fn provider_of(scope: &Scope<'_>, m: &ScannedMachine) -> Result<(usize, Box<dyn Provider>)> {
    let index: usize = m
        .annotations()
        .get(PROVIDER_ANNOTATION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let spec = scope
        .policy
        .spec
        .providers
        .get(index)
        .ok_or(Error::MissingField {
            kind: "ScanPolicy",
            field: "spec.providers",
        })?;
    Ok((index, provider::from_spec(spec)?))
}

/// The inventory entry a ScannedMachine was made from.
fn inventory_machine(m: &ScannedMachine) -> InventoryMachine {
    InventoryMachine {
        id: m.spec.instance_id.clone(),
        name: m
            .spec
            .display_name
            .clone()
            .unwrap_or_else(|| m.spec.instance_id.clone()),
        region: m.spec.region.clone(),
        platform: m.spec.platform.clone(),
        state: m.spec.state.clone(),
        exposure: m.spec.exposure.clone(),
        disks: m.spec.disks.clone(),
    }
}

/// Snapshot a machine, record it as `Scanning` in this scan, and create its Job if absent.
async fn start_machine(
    scope: &Scope<'_>,
    m: &mut ScannedMachine,
    scan_id: &str,
    now: Timestamp,
) -> Result<()> {
    let name = m.name_any();
    let (index, provider) = provider_of(scope, m)?;
    let inv = inventory_machine(m);
    let pctx = scope.provider_ctx();
    let mut st = m.status.clone().unwrap_or_default();
    let snapshots = match provider.prepare_snapshots(&pctx, &inv, scan_id).await {
        Ok(s) => s,
        Err(e) => {
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
                "SnapshotFailed",
                &e.to_string(),
                scope.policy.metadata.generation,
                now,
            );
            patch_machine_status(scope, &name, &st, true).await?;
            scope
                .event(
                    EventType::Warning,
                    "MachineScanFailed",
                    "Snapshot",
                    format!("machine {name} failed in scan {scan_id}: {e}"),
                )
                .await;
            m.status = Some(st);
            return Ok(());
        }
    };
    let images_claim = scope.policy.spec.providers[index]
        .images
        .as_ref()
        .and_then(|i| i.persistent_volume_claim.as_deref());
    let request = JobRequest {
        machine: &name,
        instance_id: &m.spec.instance_id,
        cloud: m.spec.cloud,
        scan_id,
        disks: provider.reader_config(&inv, &snapshots),
        images_claim,
    };
    let job = scanner_job(scope.policy, &request, &scope.ctx.config.job_settings())?;
    let job_name = job.name_any();
    // Recorded before the Job exists: a restart in between finds the snapshots to delete.
    let created: Vec<String> = snapshots
        .iter()
        .filter(|s| s.created)
        .map(|s| s.snapshot_id.clone())
        .collect();
    if !created.is_empty() {
        annotate_snapshots(scope, &name, Some(created.join(","))).await?;
        m.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(SNAPSHOTS_ANNOTATION.to_owned(), created.join(","));
    }
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
    match scope.jobs().create(&PostParams::default(), &job).await {
        Ok(_) => {
            tracing::info!(policy = %scope.name, machine = %name, job = %job_name, "scanner Job created")
        }
        Err(kube::Error::Api(s)) if s.is_already_exists() => {}
        Err(e) => return Err(e.into()),
    }
    m.status = Some(st);
    Ok(())
}

async fn annotate_snapshots(scope: &Scope<'_>, name: &str, value: Option<String>) -> Result<()> {
    let patch = serde_json::json!({ "metadata": { "annotations": {
        SNAPSHOTS_ANNOTATION: value,
    }}});
    scope
        .api::<ScannedMachine>()
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}

/// Snapshots the running scan created for `m` (its [`SNAPSHOTS_ANNOTATION`]).
fn recorded_snapshots(m: &ScannedMachine) -> Vec<SnapshotRef> {
    m.annotations()
        .get(SNAPSHOTS_ANNOTATION)
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

/// Delete the snapshots recorded on the machines, then forget them.
async fn delete_snapshots(scope: &Scope<'_>, machines: &[ScannedMachine]) -> Result<()> {
    let pctx = scope.provider_ctx();
    for m in machines {
        let snapshots = recorded_snapshots(m);
        if snapshots.is_empty() {
            continue;
        }
        let (_, provider) = provider_of(scope, m)?;
        provider.delete_snapshots(&pctx, &snapshots).await?;
        annotate_snapshots(scope, &m.name_any(), None).await?;
    }
    Ok(())
}

/// Every machine is done: delete snapshots, correlate, write the policy's children and status.
async fn finish_scan(
    scope: &Scope<'_>,
    scan_id: &str,
    status: &mut ScanPolicyStatus,
    now: Timestamp,
) -> Result<()> {
    let policy = scope.policy;
    let machines = scope.machines().await?;
    delete_snapshots(scope, &machines).await?;
    scope
        .ctx
        .http
        .metrics
        .set_policy_snapshots(&scope.policy_key(), 0);

    let targets = target_inventory(scope).await;
    let findings: Vec<SecretFinding> = scope
        .list(&scope.api::<SecretFinding>(), &scope.policy_selector())
        .await?;
    let retention = correlate::parse_retention(policy.spec.resolved_retention.as_deref())
        .unwrap_or(correlate::DEFAULT_RETENTION);
    let correlation = correlate::correlate(&CorrelationInput {
        policy: &scope.name,
        namespace: &scope.namespace,
        owner: policy.controller_owner_ref(&()),
        machines: &machines,
        findings: &findings,
        targets: &targets,
        now,
        retention,
    });

    write_findings(scope, &findings, &correlation).await?;
    let paths = sync_owned::<AttackPath>(scope, &correlation.attack_paths, |a, b| {
        a.spec == b.spec && a.metadata.labels == b.metadata.labels
    })
    .await?;
    sync_owned::<Recommendation>(scope, &correlation.recommendations, |a, b| {
        a.spec == b.spec && a.metadata.labels == b.metadata.labels
    })
    .await?;
    for m in &machines {
        let counts = correlation.machine_findings.get(&m.name_any());
        if m.status.as_ref().and_then(|s| s.findings.as_ref()) != counts {
            let patch = serde_json::json!({ "status": { "findings": counts } });
            scope
                .api::<ScannedMachine>()
                .patch_status(
                    &m.name_any(),
                    &PatchParams::apply(FIELD_MANAGER),
                    &Patch::Merge(&patch),
                )
                .await?;
        }
    }
    scope
        .ctx
        .http
        .metrics
        .set_findings(&scope.name, &correlation.open_by_severity_and_type());

    let counts = machine_counts(&machines);
    let generation = policy.metadata.generation;
    status.machines = Some(counts.clone());
    status.findings = Some(correlation.open.clone());
    status.attack_paths = Some(paths as u32);
    let summary = format!(
        "scan {scan_id}: {} of {} machines scanned, {} failed; {} open findings, {} attack paths",
        counts.scanned, counts.total, counts.failed, correlation.open.total, paths
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
    if counts.failed > 0 {
        let failed: Vec<String> = machines
            .iter()
            .filter(|m| m.status.as_ref().and_then(|s| s.phase) == Some(MachinePhase::Failed))
            .map(|m| m.name_any())
            .take(10)
            .collect();
        set_condition(
            &mut status.conditions,
            "Degraded",
            "True",
            "MachinesFailed",
            &format!(
                "{} of {} machines failed in scan {scan_id}: {}",
                counts.failed,
                counts.total,
                failed.join(", ")
            ),
            generation,
            now,
        );
    } else {
        set_condition(
            &mut status.conditions,
            "Degraded",
            "False",
            "AllMachinesScanned",
            &format!("every machine was scanned in scan {scan_id}"),
            generation,
            now,
        );
    }
    tracing::info!(policy = %scope.name, %scan_id, scanned = counts.scanned, failed = counts.failed, "scan finished");
    let type_ = if counts.failed > 0 {
        EventType::Warning
    } else {
        EventType::Normal
    };
    scope.event(type_, "ScanFinished", "Scan", summary).await;
    Ok(())
}

/// Targets the providers list (databases, storage accounts), for verification. A provider
/// failing here leaves its targets unknown rather than failing the scan.
async fn target_inventory(scope: &Scope<'_>) -> TargetInventory {
    let pctx = scope.provider_ctx();
    let mut targets = TargetInventory::default();
    for spec in &scope.policy.spec.providers {
        let inventory = match provider::from_spec(spec) {
            Ok(p) => p.inventory(&pctx).await,
            Err(e) => Err(e),
        };
        match inventory {
            Ok(i) => targets.extend(i.targets),
            Err(e) => {
                tracing::warn!(policy = %scope.name, error = %e, "target inventory failed")
            }
        }
    }
    targets
}

/// Patch finding statuses and the operator's labels; delete findings past retention.
async fn write_findings(
    scope: &Scope<'_>,
    findings: &[SecretFinding],
    correlation: &correlate::Correlation,
) -> Result<()> {
    let api = scope.api::<SecretFinding>();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for update in changed_findings(findings, &correlation.findings) {
        let labels: BTreeMap<&str, &String> = OPERATOR_FINDING_LABELS
            .iter()
            .filter_map(|k| Some((*k, update.labels.get(*k)?)))
            .collect();
        let meta = serde_json::json!({
            "apiVersion": SecretFinding::api_version(&()),
            "kind": SecretFinding::kind(&()),
            "metadata": { "name": update.name, "labels": labels },
        });
        api.patch(&update.name, &params, &Patch::Apply(&meta))
            .await?;
        let status = serde_json::json!({
            "apiVersion": SecretFinding::api_version(&()),
            "kind": SecretFinding::kind(&()),
            "metadata": { "name": update.name },
            "status": update.status,
        });
        api.patch_status(&update.name, &params, &Patch::Apply(&status))
            .await?;
    }
    for name in &correlation.to_delete {
        delete_if_present(&api, name).await?;
    }
    Ok(())
}

/// Apply the desired objects of a kind and delete the policy's others; returns how many are
/// desired.
async fn sync_owned<K>(
    scope: &Scope<'_>,
    desired: &[K],
    same: impl Fn(&K, &K) -> bool,
) -> Result<usize>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let api = scope.api::<K>();
    let current = scope.list(&api, &scope.policy_selector()).await?;
    let plan = diff_owned(&current, desired, same);
    for name in &plan.apply {
        if let Some(obj) = desired.iter().find(|d| &d.name_any() == name) {
            server_side_apply(&api, obj).await?;
        }
    }
    for name in &plan.delete {
        delete_if_present(&api, name).await?;
    }
    Ok(desired.len())
}

async fn server_side_apply<K>(api: &Api<K>, obj: &K) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    api.patch(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await?;
    Ok(())
}

async fn delete_if_present<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The policy is being deleted: delete the snapshots of a scan in progress and the policy's
/// Jobs (Jobs in another namespace than the policy carry no owner reference, so nothing else
/// would). ScannedMachines, AttackPaths and Recommendations go with the policy through their
/// owner references.
pub async fn cleanup(policy: &ScanPolicy, ctx: &Context) -> Result<Action> {
    let scope = Scope::new(policy, ctx)?;
    let machines = scope.machines().await?;
    delete_snapshots(&scope, &machines).await?;
    // Everything the policy's scans ever created, recorded or not. A failure keeps the
    // finalizer (and retries): snapshots are copies of disks full of secrets.
    let pctx = scope.provider_ctx();
    for spec in &policy.spec.providers {
        // A provider this build cannot run never created anything.
        let Ok(p) = provider::from_spec(spec) else {
            continue;
        };
        let swept = p.sweep(&pctx, Timestamp::now()).await?;
        if swept > 0 {
            tracing::info!(policy = %scope.name, namespace = %scope.namespace, swept, "snapshots of the deleted policy deleted");
        }
    }
    scope
        .ctx
        .http
        .metrics
        .set_policy_snapshots(&scope.policy_key(), 0);
    let jobs = scope.jobs();
    for job in scope.list(&jobs, &scope.job_selector(None)).await? {
        delete_if_present(&jobs, &job.name_any()).await?;
    }
    tracing::info!(policy = %scope.name, namespace = %scope.namespace, "policy deleted: snapshots and Jobs cleaned up");
    Ok(Action::await_change())
}

/// Conditions by type, for tests and tools.
pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
    use snapsentry_crds::{ScanSummary, ScannedMachineStatus};

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
    fn scan_ids_do_not_repeat() {
        let base = || "20261122-140000".to_owned();
        assert_eq!(unique_scan_id(base(), None), "20261122-140000");
        assert_eq!(
            unique_scan_id(base(), Some("20261122-135959")),
            "20261122-140000"
        );
        assert_eq!(
            unique_scan_id(base(), Some("20261122-140000")),
            "20261122-140000-2"
        );
        assert_eq!(
            unique_scan_id(base(), Some("20261122-140000-2")),
            "20261122-140000-3"
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
}
