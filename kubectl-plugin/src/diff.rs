//! `diff`: what the latest scan of each machine changed, from what the objects record — no state
//! kept by the plugin:
//!
//! - **new**: findings labelled `snapsentry.io/new=true` (first seen by that scan);
//! - **resolved**: findings the scan resolved (`status.resolvedAt` not before the scan started);
//! - **changed**: findings seen before whose assessment (severity, verification, target,
//!   exposure, expiry) the operator changed after that scan — the time of the operator's status
//!   entry in `metadata.managedFields`, which the API server moves only when a value changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use snapsentry_crds::{FindingState, ScannedMachine, SecretFinding, contract, labels};
use snapsentry_views::Finding;

use crate::convert::{finding, time};
use crate::fleet::Fleet;

/// What one machine's latest scan changed.
#[derive(Clone, Debug, PartialEq)]
pub struct MachineDiff {
    /// ScannedMachine name.
    pub machine: String,
    /// Id of its latest finished scan.
    pub scan_id: String,
    /// When that scan started (RFC 3339).
    pub since: String,
    /// First seen by that scan.
    pub new: Vec<Finding>,
    /// Resolved by that scan.
    pub resolved: Vec<Finding>,
    /// Seen before, assessed differently since that scan.
    pub changed: Vec<Finding>,
}

/// When the operator last changed a finding's status.
fn assessed_at(f: &SecretFinding) -> Option<&Time> {
    f.managed_fields()
        .iter()
        .filter(|m| {
            m.manager.as_deref() == Some(contract::OPERATOR)
                && m.subresource.as_deref() == Some("status")
        })
        .filter_map(|m| m.time.as_ref())
        .max_by_key(|t| t.0)
}

/// The diff of every machine with a finished scan, by machine name.
pub fn diff(fleet: &Fleet) -> Vec<MachineDiff> {
    let mut out = Vec::new();
    let mut machines: Vec<&ScannedMachine> = fleet.machines.iter().collect();
    machines.sort_by_key(|m| m.name_any());
    for m in machines {
        let Some(last) = m.status.as_ref().and_then(|s| s.last_scan.as_ref()) else {
            continue;
        };
        let Some(start) = last.started_at.as_ref().or(last.finished_at.as_ref()) else {
            continue;
        };
        let name = m.name_any();
        let mut d = MachineDiff {
            machine: name.clone(),
            scan_id: last.scan_id.clone(),
            since: time(start),
            new: Vec::new(),
            resolved: Vec::new(),
            changed: Vec::new(),
        };
        let mut findings: Vec<&SecretFinding> = fleet
            .findings
            .iter()
            .filter(|f| f.spec.machine == name)
            .collect();
        findings.sort_by_key(|f| f.name_any());
        for f in findings {
            let status = f.status.as_ref();
            let resolved_now = status.is_some_and(|s| {
                s.state == Some(FindingState::Resolved)
                    && s.resolved_at.as_ref().is_some_and(|at| at.0 >= start.0)
            });
            if resolved_now {
                d.resolved.push(finding(f));
            } else if f.labels().get(labels::NEW).map(String::as_str) == Some("true") {
                d.new.push(finding(f));
            } else if status.and_then(|s| s.state) != Some(FindingState::Resolved)
                && assessed_at(f).is_some_and(|t| t.0 >= start.0)
            {
                d.changed.push(finding(f));
            }
        }
        out.push(d);
    }
    out
}
