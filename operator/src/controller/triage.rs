//! Triage that takes effect at once: a watch of SecretFindings that rewrites a finding's
//! `snapsentry.io/state` label as soon as people set or change its `spec.triage`, so
//! `kubectl get sf -l snapsentry.io/state=falsePositive` answers at once, not after the next
//! scan. Counts, attack paths and recommendations follow at the next scan's correlation.
//!
//! The watch keeps no store (a finding is looked at as its event passes, never cached: memory
//! does not grow with the findings) and writes only when the label is wrong. It writes the
//! operator's labels as server-side apply with the operator's field manager — all of them, at
//! their current values, so applying one label never drops the operator's ownership of the
//! others.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use snapsentry_crds::contract::{self, OPERATOR_FINDING_LABELS};
use snapsentry_crds::label_value::state_value;
use snapsentry_crds::{FindingState, SecretFinding, labels};
use tokio::sync::watch;

use super::Context;
use crate::error::Result;

/// The operator's labels a finding should carry when its state label is not what its status and
/// triage say; `None` when it is right (or the finding is not one of a policy's).
pub fn relabel(finding: &SecretFinding) -> Option<BTreeMap<String, String>> {
    let current = finding.metadata.labels.as_ref()?;
    current.get(labels::POLICY)?;
    let state = finding
        .status
        .as_ref()
        .and_then(|s| s.state)
        .unwrap_or(FindingState::Active);
    let want = state_value(state, finding.spec.triage.as_ref().map(|t| t.state));
    if current.get(labels::STATE).map(String::as_str) == Some(want) {
        return None;
    }
    let mut out: BTreeMap<String, String> = OPERATOR_FINDING_LABELS
        .iter()
        .filter_map(|k| Some(((*k).to_owned(), current.get(*k)?.clone())))
        .collect();
    out.insert(labels::STATE.to_owned(), want.to_owned());
    Some(out)
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

/// Writes the state label `f` should carry, if it does not.
async fn apply_triage(api: &Api<SecretFinding>, f: &SecretFinding) -> Result<()> {
    let Some(wanted) = relabel(f) else {
        return Ok(());
    };
    let (Some(name), Some(ns)) = (&f.metadata.name, &f.metadata.namespace) else {
        return Ok(());
    };
    let api: Api<SecretFinding> = Api::namespaced(api.clone().into_client(), ns);
    let meta = serde_json::json!({
        "apiVersion": SecretFinding::api_version(&()),
        "kind": SecretFinding::kind(&()),
        "metadata": { "name": name, "labels": wanted },
    });
    api.patch(
        name,
        &PatchParams::apply(contract::OPERATOR).force(),
        &Patch::Apply(&meta),
    )
    .await?;
    tracing::info!(finding = %name, namespace = %ns, state = %wanted[labels::STATE], "triage applied");
    Ok(())
}

/// Watch the findings of the watched namespaces (all when none are configured) until
/// `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: watch::Receiver<bool>) {
    let apis: Vec<Api<SecretFinding>> = if ctx.config.watch_namespaces.is_empty() {
        vec![Api::all(ctx.client.clone())]
    } else {
        ctx.config
            .watch_namespaces
            .iter()
            .map(|ns| Api::namespaced(ctx.client.clone(), ns))
            .collect()
    };
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
    fn a_triaged_finding_gets_its_state_with_the_other_operator_labels_kept() {
        let l = relabel(&finding("active", Some(TriageState::FalsePositive), false)).unwrap();
        assert_eq!(l[labels::STATE], "falsePositive");
        assert_eq!(l[labels::SEVERITY], "high");
        // The operator's labels the finding carries (state, severity, verified, exposed,
        // target-kind), no more.
        assert_eq!(l.len(), 5);
        assert!(
            !l.contains_key(labels::MACHINE),
            "the scanner's labels are not the operator's"
        );
        // Back to open.
        let l = relabel(&finding("accepted", Some(TriageState::Open), false)).unwrap();
        assert_eq!(l[labels::STATE], "active");
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
