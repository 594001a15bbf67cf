//! The storage-object-in-use protection controllers of kube-controller-manager, which the test
//! control plane does not run, for the claims of one namespace and the PersistentVolumes bound to
//! them.
//!
//! kube-apiserver's `StorageObjectInUseProtection` admission plugin gives every claim the
//! `kubernetes.io/pvc-protection` finalizer and every PersistentVolume the
//! `kubernetes.io/pv-protection` one; without the controllers a deleted claim or volume would
//! stay forever. This stand-in removes them as the controllers would: a deleted claim's once no
//! unfinished Job of the namespace uses it (the local Job runner's Jobs stand for their pods), a
//! deleted volume's once the claim it is bound to is gone. So an operator waiting for its block
//! volumes to go sees them go when, and only when, a cluster would let them.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use tokio::task::JoinHandle;

/// The claims' finalizer.
pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
/// The PersistentVolumes' finalizer.
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

const POLL: Duration = Duration::from_millis(200);

/// The running controllers; dropping it stops them.
#[derive(Debug)]
pub struct VolumeProtection {
    task: JoinHandle<()>,
}

impl VolumeProtection {
    /// Start protecting the claims of `namespace` and the volumes bound to them.
    pub fn start(client: kube::Client, namespace: &str) -> Self {
        let namespace = namespace.to_owned();
        let task = tokio::spawn(async move {
            loop {
                if let Err(e) = pass(&client, &namespace).await {
                    tracing::debug!(error = %e, "volume protection: one pass failed");
                }
                tokio::time::sleep(POLL).await;
            }
        });
        Self { task }
    }
}

impl Drop for VolumeProtection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One look at the namespace: release what nothing uses any more.
async fn pass(client: &kube::Client, namespace: &str) -> Result<(), kube::Error> {
    // Claims first, then Jobs: a claim seen deleted was deleted before the Jobs are listed, so
    // a Job using it then is seen.
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let present: Vec<PersistentVolumeClaim> = claims.list(&ListParams::default()).await?.items;
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let in_use: BTreeSet<String> = jobs
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|j| j.metadata.deletion_timestamp.is_none() && !finished(j))
        .flat_map(|j| {
            j.spec
                .iter()
                .filter_map(|s| s.template.spec.as_ref())
                .flat_map(|p| p.volumes.iter().flatten())
                .filter_map(|v| Some(v.persistent_volume_claim.as_ref()?.claim_name.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    for c in &present {
        if c.metadata.deletion_timestamp.is_some() && !in_use.contains(&c.name_any()) {
            drop_finalizer(&claims, c, PVC_PROTECTION).await?;
        }
    }
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    for v in volumes.list(&ListParams::default()).await?.items {
        let Some(claim) = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
            continue;
        };
        let ours = claim.namespace.as_deref() == Some(namespace);
        if !ours || v.metadata.deletion_timestamp.is_none() {
            continue;
        }
        // Asked now, not from the claim list above: a claim created after that list (and its
        // volume deleted since) still binds the volume.
        let bound = match claim.name.as_deref() {
            Some(name) => claims.get_opt(name).await?.is_some(),
            None => false,
        };
        if !bound {
            drop_finalizer(&volumes, &v, PV_PROTECTION).await?;
        }
    }
    Ok(())
}

/// A Job with a `Complete` or `Failed` condition (its pod no longer runs).
fn finished(job: &Job) -> bool {
    job.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

/// Remove `finalizer` from `obj` (if it has it), as of the version read.
async fn drop_finalizer<K>(api: &Api<K>, obj: &K, finalizer: &str) -> Result<(), kube::Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let finalizers = obj.finalizers();
    if !finalizers.iter().any(|f| f == finalizer) {
        return Ok(());
    }
    let rest: Vec<&String> = finalizers.iter().filter(|f| *f != finalizer).collect();
    let patch = serde_json::json!({ "metadata": {
        "finalizers": rest,
        "resourceVersion": obj.resource_version(),
    }});
    match api
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        // Gone, or changed since: the next pass looks again.
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}
