//! Leader election with a `coordination.k8s.io/v1` Lease, so that only one replica reconciles.
//!
//! kube 5 has no built-in elector, so this is the usual small loop: a replica takes the Lease
//! when it is absent, expired, or already its own, renews it every [`LeaseSettings::renew`], and
//! writes with the Lease's `resourceVersion` so two replicas racing for it cannot both win. A
//! leader that cannot renew before the Lease expires stops its controllers (another replica may
//! hold it by then) and returns [`Error::LeaseLost`]; the pod restarts and queues up again.

use std::future::Future;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;

use crate::error::{Error, Result};

/// Name of the operator's Lease.
pub const LEASE_NAME: &str = "snapsentry-operator";

/// Who competes for which Lease, and how fast.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    /// `holderIdentity`: the pod name.
    pub identity: String,
    /// `leaseDurationSeconds`.
    pub duration: Duration,
    /// How often the leader renews and the others retry.
    pub renew: Duration,
}

impl LeaseSettings {
    /// The operator's Lease in `namespace`, held by `identity` for 15 s, renewed every 5 s.
    pub fn new(namespace: &str, identity: &str) -> Self {
        Self {
            name: LEASE_NAME.to_owned(),
            namespace: namespace.to_owned(),
            identity: identity.to_owned(),
            duration: Duration::from_secs(15),
            renew: Duration::from_secs(5),
        }
    }
}

/// Whether a Lease held by someone else may be taken at `now`.
pub fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    if spec.holder_identity.as_deref().is_none_or(str::is_empty) {
        return true;
    }
    let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return true;
    };
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    now.as_second() > renewed.0.as_second() + duration
}

/// Take or renew the Lease once; `true` when this replica holds it afterwards.
pub async fn try_acquire(api: &Api<Lease>, s: &LeaseSettings) -> Result<bool> {
    let now = Timestamp::now();
    let held = |acquired: Option<MicroTime>, transitions: i32| LeaseSpec {
        holder_identity: Some(s.identity.clone()),
        lease_duration_seconds: Some(s.duration.as_secs() as i32),
        acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..Default::default()
    };
    let current = match api.get_opt(&s.name).await? {
        Some(lease) => lease,
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(s.name.clone()),
                    namespace: Some(s.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(held(None, 0)),
            };
            return match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.is_already_exists() => Ok(false),
                Err(e) => Err(e.into()),
            };
        }
    };
    let spec = current.spec.clone().unwrap_or_default();
    let mine = spec.holder_identity.as_deref() == Some(s.identity.as_str());
    if !mine && !expired(&spec, now) {
        return Ok(false);
    }
    let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
    let acquired = if mine {
        spec.acquire_time.clone()
    } else {
        None
    };
    let lease = Lease {
        metadata: current.metadata.clone(),
        spec: Some(held(acquired, transitions)),
    };
    // `replace` carries the resourceVersion read above: a concurrent writer makes it conflict.
    match api.replace(&s.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Give the Lease up (on a clean shutdown) so another replica takes over at once.
async fn release(api: &Api<Lease>, s: &LeaseSettings) {
    let Ok(Some(mut lease)) = api.get_opt(&s.name).await else {
        return;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(s.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    if let Err(e) = api.replace(&s.name, &PostParams::default(), &lease).await {
        tracing::debug!(error = %e, "cannot release the leader lease");
    }
}

/// Wait to become leader, then run `work` (given a stop signal) while the Lease is held.
pub async fn lead<F, Fut>(
    client: Client,
    settings: LeaseSettings,
    mut shutdown: watch::Receiver<bool>,
    work: F,
) -> Result<()>
where
    F: FnOnce(watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
    loop {
        match try_acquire(&api, &settings).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "leader election"),
        }
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
            _ = tokio::time::sleep(settings.renew) => {}
        }
    }
    tracing::info!(lease = %settings.name, identity = %settings.identity, "became leader");
    let (stop, stopped) = watch::channel(false);
    let mut task = tokio::spawn(work(stopped));
    let mut last_renewal = tokio::time::Instant::now();
    let mut finished = false;
    let result = loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break Ok(()),
            _ = &mut task => {
                finished = true;
                break Ok(());
            }
            _ = tokio::time::sleep(settings.renew) => {}
        }
        match try_acquire(&api, &settings).await {
            Ok(true) => last_renewal = tokio::time::Instant::now(),
            Ok(false) => break Err(Error::LeaseLost(settings.name.clone())),
            Err(e) if last_renewal.elapsed() >= settings.duration => {
                tracing::warn!(error = %e, "cannot renew the leader lease");
                break Err(Error::LeaseLost(settings.name.clone()));
            }
            Err(e) => tracing::warn!(error = %e, "renewing the leader lease"),
        }
    };
    let _ = stop.send(true);
    if !finished {
        let _ = task.await;
    }
    if result.is_ok() {
        release(&api, &settings).await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn expiry() {
        let spec = LeaseSpec {
            holder_identity: Some("a".into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(t("2026-11-22T14:00:00Z"))),
            ..Default::default()
        };
        assert!(!expired(&spec, t("2026-11-22T14:00:15Z")));
        assert!(expired(&spec, t("2026-11-22T14:00:16Z")));
        let released = LeaseSpec {
            holder_identity: None,
            ..spec
        };
        assert!(expired(&released, t("2026-11-22T14:00:01Z")));
    }
}
