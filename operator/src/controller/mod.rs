//! Runtime wiring: configuration from the environment, the HTTP endpoints, and the ScanPolicy
//! reconciler.
//!
//! The reconciler is split as "read desired state → apply children → write status". What runs
//! today: it validates the schedule and writes the `Ready` condition and `nextScanTime`, and
//! requeues itself for the next scheduled scan. Starting a scan (inventory → ScannedMachines →
//! snapshots → Jobs → correlation) is built from [`crate::provider`], [`crate::job`] and
//! [`crate::correlate`] and is wired next, with its end-to-end test against the real API server.

pub mod children;
pub mod config;
pub mod http;
pub mod scan;
pub mod status;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::StreamExt;
use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use snapsentry_crds::ScanPolicy;
use tokio::sync::watch;

use crate::error::{Error, Result};
use http::HttpState;

/// Field manager of everything the operator writes.
pub const FIELD_MANAGER: &str = "snapsentry-operator";

/// What reconcilers share.
pub struct Context {
    pub client: Client,
    pub config: config::Config,
    pub http: Arc<HttpState>,
}

async fn reconcile(policy: Arc<ScanPolicy>, ctx: Arc<Context>) -> Result<Action> {
    let name = policy.name_any();
    let namespace = policy.namespace().ok_or(Error::MissingField {
        kind: "ScanPolicy",
        field: "metadata.namespace",
    })?;
    // Read desired state.
    let plan = status::plan(&policy, Timestamp::now());
    if let Some(trigger) = &plan.start {
        tracing::info!(policy = %name, %namespace, ?trigger, "scan due (scan start is not wired yet)");
    }
    // Write status.
    if policy.status.as_ref() != Some(&plan.status) {
        let api: Api<ScanPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
        let patch = serde_json::json!({ "status": plan.status });
        api.patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Merge(&patch),
        )
        .await?;
        tracing::debug!(policy = %name, %namespace, "status updated");
    }
    Ok(Action::requeue(plan.requeue))
}

fn error_policy(policy: Arc<ScanPolicy>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(policy = %policy.name_any(), %error, "reconcile failed");
    Action::requeue(std::time::Duration::from_secs(30))
}

/// Run the ScanPolicy controllers (one per watched namespace, or one for all) until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: watch::Receiver<bool>) {
    let apis: Vec<Api<ScanPolicy>> = if ctx.config.watch_namespaces.is_empty() {
        vec![Api::all(ctx.client.clone())]
    } else {
        ctx.config
            .watch_namespaces
            .iter()
            .map(|ns| Api::namespaced(ctx.client.clone(), ns))
            .collect()
    };
    let controllers = apis.into_iter().map(|api| {
        let mut stop = shutdown.clone();
        Controller::new(api, watcher::Config::default())
            .graceful_shutdown_on(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .run(reconcile, error_policy, ctx.clone())
            .for_each(|result| async move {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "controller event");
                }
            })
    });
    ctx.http.ready.store(true, Ordering::Relaxed);
    futures::future::join_all(controllers).await;
    ctx.http.ready.store(false, Ordering::Relaxed);
}
