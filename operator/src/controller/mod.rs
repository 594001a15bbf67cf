//! Runtime wiring: configuration from the environment, the HTTP endpoints, leader election, and
//! the ScanPolicy reconciler ([`reconcile`]: read desired state → apply children → write
//! status), which also watches the scanner Jobs of each policy.
//!
//! The reconciler's steps, one per module: [`inventory`] (inventory ↔ ScannedMachines),
//! [`scanner_cluster`] (whether the cluster can attach a `gcp` provider's disks), [`jobs`]
//! (machines and their scanner Jobs), `start` (starting machines), [`grants`] (a Job's grant Secret), [`volumes`] (a Job's block volumes), `snapshots`
//! (snapshot bookkeeping and release), `finish`
//! (correlation and its objects); `scope` is a policy's APIs and helpers, [`providers`] its
//! providers, cached across reconciles in the [`Context`].

pub mod children;
pub mod config;
mod finish;
pub mod grants;
pub mod http;
pub mod inventory;
pub mod jobs;
pub mod leader;
pub mod providers;
pub mod reconcile;
pub mod scan;
pub mod scanner_cluster;
pub mod scope;
mod snapshots;
mod start;
pub mod status;
pub mod triage;
pub mod volumes;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::finalizer::{Error as FinalizerError, Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use snapsentry_crds::ScanPolicy;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use http::HttpState;
use providers::ProviderCache;
use scope::namespace_of;

/// How long running reconciles may take to finish after a shutdown request.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// What reconcilers share.
pub struct Context {
    pub client: Client,
    pub config: config::Config,
    pub http: Arc<HttpState>,
    /// The operator's metrics (the ones `/metrics` serves, shared with [`HttpState`]): every
    /// reconcile step and `error_policy` record into these.
    pub metrics: Arc<Metrics>,
    /// Kubernetes Events on scan start, machine failure and scan finish.
    pub recorder: Recorder,
    /// Each policy's providers, across reconciles.
    pub providers: ProviderCache,
}

impl Context {
    pub fn new(client: Client, config: config::Config, http: Arc<HttpState>) -> Self {
        let reporter = Reporter {
            controller: snapsentry_crds::contract::OPERATOR.to_owned(),
            instance: Some(config.pod_name.clone()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            config,
            metrics: http.metrics.clone(),
            http,
            providers: ProviderCache::default(),
        }
    }

    /// One API per watched namespace, or one over all namespaces when none are configured.
    pub fn watched_apis<K>(&self) -> Vec<Api<K>>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        if self.config.watch_namespaces.is_empty() {
            vec![Api::all(self.client.clone())]
        } else {
            self.config
                .watch_namespaces
                .iter()
                .map(|ns| Api::namespaced(self.client.clone(), ns))
                .collect()
        }
    }
}

async fn reconcile(policy: Arc<ScanPolicy>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = namespace_of(&policy)?;
    let api: Api<ScanPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(
        &api,
        snapsentry_crds::contract::FINALIZER,
        policy,
        |event| async {
            match event {
                FinalizerEvent::Apply(p) => reconcile::apply(&p, &ctx).await,
                FinalizerEvent::Cleanup(p) => reconcile::cleanup(&p, &ctx).await,
            }
        },
    )
    .await
    .map_err(|e| match e {
        FinalizerError::ApplyFailed(e) | FinalizerError::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    })
}

/// A failed reconcile: logged, counted in `snapsentry_reconcile_errors_total`, retried; after a
/// provider failure the policy's providers are built again.
fn error_policy(policy: Arc<ScanPolicy>, error: &Error, ctx: Arc<Context>) -> Action {
    let name = policy.name_any();
    let namespace = policy.namespace().unwrap_or_default();
    tracing::warn!(policy = %name, %error, "reconcile failed");
    ctx.metrics.reconcile_failed(&format!("{namespace}/{name}"));
    if error.is_provider() {
        ctx.providers.forget(&namespace, &name);
    }
    Action::requeue(std::time::Duration::from_secs(5))
}

/// The policy a scanner Job works for, from its labels.
fn policy_of_job(job: Job) -> Option<ObjectRef<ScanPolicy>> {
    let labels = job.metadata.labels.as_ref()?;
    let name = labels.get(snapsentry_crds::labels::POLICY)?;
    let namespace = labels.get(snapsentry_crds::labels::POLICY_NAMESPACE)?;
    Some(ObjectRef::new(name).within(namespace))
}

/// Run the ScanPolicy controllers (one per watched namespace, or one for all) and the triage
/// watch ([`triage`]) until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: watch::Receiver<bool>) {
    let apis: Vec<Api<ScanPolicy>> = ctx.watched_apis();
    let controllers = apis.into_iter().map(|api| {
        let mut stop = shutdown.clone();
        let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ctx.config.namespace);
        let managed = format!(
            "{}={}",
            snapsentry_crds::labels::MANAGED_BY,
            snapsentry_crds::contract::OPERATOR
        );
        Controller::new(api, watcher::Config::default())
            .watches(
                jobs,
                watcher::Config::default().labels(&managed),
                policy_of_job,
            )
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
    let triage = triage::run(ctx.clone(), shutdown.clone());
    ctx.http.ready.store(true, Ordering::Relaxed);
    // Graceful shutdown lets running reconciles finish. kube-runtime holds a Controller that has
    // not seen its first list yet until its store is ready, which never happens once the
    // watches stop, so a shutdown that early would hang: give up waiting after a grace period.
    let all = std::pin::pin!(futures::future::join(
        futures::future::join_all(controllers),
        triage
    ));
    let mut stop = shutdown.clone();
    let grace = async move {
        let _ = stop.wait_for(|s| *s).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        _ = all => {}
        _ = grace => tracing::warn!("controllers did not stop within {SHUTDOWN_GRACE:?}; stopping anyway"),
    }
    ctx.http.ready.store(false, Ordering::Relaxed);
}
