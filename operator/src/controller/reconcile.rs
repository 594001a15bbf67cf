//! One reconcile of a ScanPolicy: read the policy → the steps of its scan → write status.
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
//! - snapshots a scan created (and existing ones it was granted read access to) are recorded in
//!   the machine's `snapsentry.io/snapshots` annotation before its Job exists (the scanner
//!   rewrites `status.progress`), and released from there — grants ended, created ones deleted,
//!   the Job's grant Secret deleted — as soon as the machine's Job ends; a Job's block volumes
//!   (PersistentVolume and claim each, recorded in `snapsentry.io/block-volumes` before they
//!   exist) are deleted first, and the snapshots wait until the volumes are gone;
//! - when every machine is done, whatever is still recorded is released and the policy's findings
//!   are correlated;
//!   correlation is idempotent, so finishing twice writes the same objects.
//!
//! The steps live one per module: [`super::inventory`] (inventory → ScannedMachines),
//! [`super::jobs`] (machines and their Jobs), `snapshots` (snapshot bookkeeping), `finish`
//! (correlation and what it writes); `scope` holds the policy's APIs and providers.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use snapsentry_crds::{ScanPolicy, ScanPolicyStatus};

use super::Context;
use super::children::scan_complete;
use super::scan::machine_counts;
use super::scope::{Scope, namespace_of};
use super::status::{newly_not_ready, plan, set_condition};
use super::{finish, inventory, jobs, scanner_cluster, snapshots, start};
use crate::error::Result;
use crate::schedule::{Trigger, scan_id as new_scan_id};

/// How often a running scan is looked at even when no Job changes.
pub const SCAN_POLL: Duration = Duration::from_secs(5);
/// Retry after a provider failure.
const PROVIDER_RETRY: Duration = Duration::from_secs(60);

/// Reconcile a live (not deleted) policy.
pub async fn apply(cached: &ScanPolicy, ctx: &Context) -> Result<Action> {
    // The policy as the API server has it now: the controller's cache may not have seen the
    // status this operator just wrote (a Job event can arrive first), and deciding from it
    // could start the same scan twice.
    let api: Api<ScanPolicy> = Api::namespaced(ctx.client.clone(), &namespace_of(cached)?);
    let Some(fresh) = api.get_opt(&cached.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let policy = &fresh;
    let scope = Scope::new(policy, ctx)?;
    let now = Timestamp::now();
    // Read desired state.
    let plan = plan(policy, now);
    if let Some(c) = newly_not_ready(policy.status.as_ref(), &plan.status) {
        scope
            .event(EventType::Warning, &c.reason, "Validate", c.message.clone())
            .await;
    }
    let mut status = plan.status.clone();
    let mut requeue = plan.requeue;
    let mut current = running_scan(policy);
    let unready = match (&current, &plan.start) {
        (None, Some(_)) => scanner_cluster::check(&ctx.client, &policy.spec).await?,
        _ => None,
    };
    if let Some(missing) = &unready {
        // Not a scan that fails machine by machine later: the policy says what the cluster lacks
        // (and an Event the first time it says it).
        let told = policy.status.iter().flat_map(|s| &s.conditions).any(|c| {
            c.type_ == "Degraded" && c.reason == scanner_cluster::REASON && c.message == *missing
        });
        set_condition(
            &mut status.conditions,
            "Degraded",
            "True",
            scanner_cluster::REASON,
            missing,
            policy.metadata.generation,
            now,
        );
        if !told {
            scope
                .event(
                    EventType::Warning,
                    scanner_cluster::REASON,
                    "Scan",
                    missing.clone(),
                )
                .await;
        }
        requeue = requeue.min(PROVIDER_RETRY);
    } else if current.is_none()
        && let Some(trigger) = &plan.start
    {
        match start_scan(&scope, trigger, &mut status, now).await {
            Ok(id) => {
                // The commit point: the scan id is in the API before any Job is created.
                write_status(&scope, &status).await?;
                current = Some(id);
            }
            Err(e) if e.is_provider() => {
                scope.forget_providers();
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
    scope.merge_status::<ScanPolicy>(&scope.name, status).await
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
    let machines = inventory::take_inventory(scope, now).await?;

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
        &format!("scan {scan_id}: 0 of {machines} machines done"),
        policy.metadata.generation,
        now,
    );
    tracing::info!(policy = %scope.name, namespace = %scope.namespace, %scan_id, ?trigger, machines, "scan started");
    scope
        .event(
            EventType::Normal,
            "ScanStarted",
            "Scan",
            format!(
                "scan {scan_id} started ({}): {machines} machines",
                trigger_text(trigger),
            ),
        )
        .await;
    Ok(scan_id)
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

/// Track Jobs, start the next machines, finish the scan when all are done. Returns whether the
/// scan finished.
async fn advance_scan(
    scope: &Scope<'_>,
    scan_id: &str,
    status: &mut ScanPolicyStatus,
    now: Timestamp,
) -> Result<bool> {
    let mut view = jobs::sync_machines(scope, scan_id, now).await?;
    // Since when the scan has waited for a quota: the `JobsRefused` condition's transition.
    let waiting_since = condition(&status.conditions, "Degraded")
        .filter(|c| c.status == "True" && c.reason == "JobsRefused")
        .map(|c| c.last_transition_time.0);
    let refused = start::start_next(scope, &mut view, scan_id, waiting_since, now).await?;
    snapshots::report_active(scope, &view);
    let counts = machine_counts(&view);
    status.machines = Some(counts.clone());
    if scan_complete(&view) && finish::finish_scan(scope, scan_id, status, now).await? {
        return Ok(true);
    }
    let generation = scope.policy.metadata.generation;
    if let Some(message) = refused {
        // A quota refuses the scanner Jobs: visible on the policy while the scan waits, the
        // condition's transition time saying since when (a `Degraded` of failed machines
        // before is not waiting).
        if waiting_since.is_none() {
            status.conditions.retain(|c| c.type_ != "Degraded");
        }
        set_condition(
            &mut status.conditions,
            "Degraded",
            "True",
            "JobsRefused",
            &message,
            generation,
            now,
        );
    } else if counts.failed > 0 {
        // Failed machines show while the others go on, not only once the scan is over.
        finish::set_degraded(&mut status.conditions, &view, scan_id, generation, now);
    } else if condition(&status.conditions, "Degraded").is_some_and(|c| c.reason == "JobsRefused") {
        set_condition(
            &mut status.conditions,
            "Degraded",
            "False",
            "JobsAdmitted",
            &format!("scan {scan_id}: scanner Jobs are admitted again"),
            generation,
            now,
        );
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
        generation,
        now,
    );
    Ok(false)
}

/// The policy is being deleted: delete the policy's Jobs, their grant Secrets and their block
/// volumes (Jobs in another namespace than the policy carry no owner reference, so nothing else
/// would), then release the snapshots of a scan in progress and sweep the rest. The Jobs go
/// first: a block volume's PersistentVolume goes only once no pod uses it, and the disk behind
/// it only after that — until then the deletion fails ([`crate::Error::VolumesPending`]) and is
/// tried again. ScannedMachines, AttackPaths and Recommendations go with the policy through
/// their owner references.
pub async fn cleanup(policy: &ScanPolicy, ctx: &Context) -> Result<Action> {
    let scope = Scope::new(policy, ctx)?;
    jobs::delete_all(&scope).await?;
    let mut machines = scope.machines().await?;
    if !snapshots::release_recorded(&scope, &mut machines, None).await? {
        return Err(crate::Error::VolumesPending(
            "block volumes of the policy's scanner Jobs".to_owned(),
        ));
    }
    // Everything the policy's scans ever created, recorded or not.
    snapshots::sweep_all(&scope).await?;
    scope.forget_providers();
    tracing::info!(policy = %scope.name, namespace = %scope.namespace, "policy deleted: snapshots and Jobs cleaned up");
    Ok(Action::await_change())
}

/// Conditions by type, for tests and tools.
pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
