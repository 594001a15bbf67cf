//! Triage that takes effect at once: a watch of SecretFindings that rewrites a finding's
//! `snapsentry.io/state` label as soon as people set or change its `spec.triage`, so
//! `kubectl get sf -l snapsentry.io/state=falsePositive` answers at once, not after the next
//! scan. Counts, attack paths and recommendations follow at the next scan's correlation.
//!
//! The watch keeps no store (a finding is looked at as its event passes, never cached: memory
//! does not grow with the findings) and writes only when the label is wrong: a merge patch of
//! the state label alone (see [`apply_triage`]).

use std::sync::Arc;

use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use snapsentry_crds::contract;
use snapsentry_crds::label_value::state_value;
use snapsentry_crds::{FindingState, SecretFinding, labels};
use tokio::sync::watch;

use super::Context;
use crate::error::Result;

/// The state label a finding should carry when it does not carry it already (what its status
/// and triage say); `None` when it is right (or the finding is not one of a policy's).
pub fn relabel(finding: &SecretFinding) -> Option<&'static str> {
    let current = finding.metadata.labels.as_ref()?;
    current.get(labels::POLICY)?;
    let state = finding
        .status
        .as_ref()
        .and_then(|s| s.state)
        .unwrap_or(FindingState::Active);
    let want = state_value(state, finding.spec.triage.as_ref().map(|t| t.state));
    (current.get(labels::STATE).map(String::as_str) != Some(want)).then_some(want)
}

/// Watch the findings of `api` until `shutdown`, relabelling triaged ones.
async fn watch_findings(api: Api<SecretFinding>, mut shutdown: watch::Receiver<bool>) {
    let config = watcher::Config::default().labels(labels::POLICY);
    let mut events = std::pin::pin!(watcher(api.clone(), config));
    loop {
        let event = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            event = events.next() => event,
        };
        match event {
            Some(Ok(watcher::Event::Apply(f) | watcher::Event::InitApply(f))) => {
                if let Err(e) = apply_triage(&api, &f).await {
                    tracing::warn!(finding = ?f.metadata.name, error = %e, "triage label not written");
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => tracing::debug!(error = %e, "finding watch"),
            None => return,
        }
    }
}

/// Writes the state label `f` should carry, if it does not: a merge patch of that one label.
/// (Not a server-side apply with the operator's field manager: on a SecretFinding, which has no
/// status subresource, an apply of labels alone would drop the operator's ownership of the
/// status the scan's apply wrote, and with it the status.) The scan's next apply takes the label
/// back into the operator's ownership.
async fn apply_triage(api: &Api<SecretFinding>, f: &SecretFinding) -> Result<()> {
    let Some(state) = relabel(f) else {
        return Ok(());
    };
    let (Some(name), Some(ns)) = (&f.metadata.name, &f.metadata.namespace) else {
        return Ok(());
    };
    let api: Api<SecretFinding> = Api::namespaced(api.clone().into_client(), ns);
    let patch = serde_json::json!({ "metadata": { "labels": { labels::STATE: state } } });
    let params = PatchParams {
        field_manager: Some(contract::OPERATOR.to_owned()),
        ..PatchParams::default()
    };
    api.patch(name, &params, &Patch::Merge(&patch)).await?;
    tracing::info!(finding = %name, namespace = %ns, %state, "triage applied");
    Ok(())
}

/// Watch the findings of the watched namespaces (all when none are configured) until
/// `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: watch::Receiver<bool>) {
    let apis: Vec<Api<SecretFinding>> = ctx.watched_apis();
    futures::future::join_all(
        apis.into_iter()
            .map(|api| watch_findings(api, shutdown.clone())),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use snapsentry_crds::{SecretFindingStatus, Triage, TriageState};

    use super::*;

    fn finding(state: &str, triage: Option<TriageState>, resolved: bool) -> SecretFinding {
        let mut f: SecretFinding = serde_json::from_value(serde_json::json!({
            "apiVersion": "snapsentry.io/v1alpha1", "kind": "SecretFinding",
            "metadata": {"name": "f", "namespace": "ns", "labels": {
                "snapsentry.io/policy": "lab", "snapsentry.io/state": state,
                "snapsentry.io/severity": "high", "snapsentry.io/verified": "verified",
                "snapsentry.io/exposed": "true", "snapsentry.io/target-kind": "vm",
                "snapsentry.io/machine": "web-01"}},
            "spec": {"policy": "lab", "machine": "web-01", "cloud": "image", "ruleId": "r",
                "secretType": "t", "ruleSeverity": "high", "fingerprint": "f", "redacted": "x",
                "locations": [], "locationCount": 0, "metadata": {}, "scanId": "s",
                "firstSeen": "2026-12-07T00:00:00Z", "lastSeen": "2026-12-07T00:00:00Z"},
        }))
        .unwrap();
        f.spec.triage = triage.map(|state| Triage {
            state,
            note: None,
            by: None,
        });
        if resolved {
            f.status = Some(SecretFindingStatus {
                state: Some(FindingState::Resolved),
                ..Default::default()
            });
        }
        f
    }

    #[test]
    fn a_triaged_finding_gets_its_state() {
        let f = finding("active", Some(TriageState::FalsePositive), false);
        assert_eq!(relabel(&f), Some("falsePositive"));
        // Back to open.
        let f = finding("accepted", Some(TriageState::Open), false);
        assert_eq!(relabel(&f), Some("active"));
    }

    #[test]
    fn nothing_to_write_when_the_label_is_right() {
        assert_eq!(relabel(&finding("active", None, false)), None);
        assert_eq!(
            relabel(&finding("accepted", Some(TriageState::Accepted), false)),
            None
        );
        // A resolved finding stays resolved whatever its triage.
        assert_eq!(
            relabel(&finding("resolved", Some(TriageState::Accepted), true)),
            None
        );
        let mut f = finding("active", Some(TriageState::Accepted), false);
        f.metadata.labels.as_mut().unwrap().remove(labels::POLICY);
        assert_eq!(relabel(&f), None, "not a policy's finding");
    }
}
