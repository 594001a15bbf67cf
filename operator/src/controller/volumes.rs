//! The block volumes of a scanner Job: for each [`BlockVolume`] its provider made (for GCP, a
//! Compute Engine disk made from a snapshot), a static PersistentVolume bound through the disk's
//! CSI driver and a PersistentVolumeClaim bound to it, which the Job attaches as a raw device
//! (`volumeDevices`) — no mount, no privilege.
//!
//! Both are named after the Job (`<job>-disk-<index>`) and labelled like it; the
//! PersistentVolume is cluster-scoped, the claim lives in the Job's namespace. The operator
//! records their names on the machine ([`annotations::VOLUMES`]), creates them just before the
//! Job, makes the Job the claim's owner (a cluster-scoped PersistentVolume cannot have a
//! namespaced owner), and deletes them as soon as the Job ends: the claim, then the volume; the
//! disk behind them is released (deleted through the provider) only once the PersistentVolume is
//! gone — its `kubernetes.io/pv-protection` finalizer and the CSI attacher's hold it while a pod
//! uses it or the disk is still attached.
//!
//! Access is read-only at every level: `ReadOnlyMany` (the Compute Engine persistent disk CSI
//! driver attaches a `ReadOnlyMany` volume to the node in read-only mode, so the disk needs no
//! writer and nothing can write to it), `csi.readOnly`, the pod's claim `readOnly`. The volume's
//! reclaim policy is `Retain`: the operator deletes the disk itself, after the volume.
//!
//! [`annotations::VOLUMES`]: snapsentry_crds::contract::annotations::VOLUMES

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, PersistentVolumeSpec, Volume, VolumeDevice,
    VolumeNodeAffinity, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, PostParams};
use kube::{Resource, ResourceExt};
use snapsentry_cloud::BlockVolume;
use snapsentry_crds::ScanPolicy;
use snapsentry_crds::contract::job_name;

use super::grants;
use super::scope::delete_if_present;
use crate::error::{Error, Result};
use crate::job::{JobRequest, JobSettings, job_labels};

/// The access mode of the volumes and their claims: attached read-only, on any node.
pub const ACCESS_MODE: &str = "ReadOnlyMany";

/// Name of the PersistentVolume (and its claim) of block volume `index` of Job `job`: at most
/// 63 + 6 + a few characters, well within the 253 of a name.
pub fn volume_name(job: &str, index: usize) -> String {
    format!("{job}-disk-{index}")
}

/// One block volume of a Job: its PersistentVolume, the claim bound to it, and where the
/// container sees the device.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockClaim {
    /// The cluster-scoped PersistentVolume.
    pub volume: PersistentVolume,
    /// The claim in the Job's namespace, of the same name.
    pub claim: PersistentVolumeClaim,
    /// The device inside the Job's container.
    pub device_path: String,
}

impl BlockClaim {
    /// The name of the volume and of its claim.
    pub fn name(&self) -> String {
        self.volume.name_any()
    }
}

/// The PersistentVolumes and claims of the Job `req` describes, one per block volume of its
/// provider; none for a provider without block volumes.
pub fn block_claims(
    policy: &ScanPolicy,
    req: &JobRequest<'_>,
    settings: &JobSettings,
    volumes: &[BlockVolume],
) -> Result<Vec<BlockClaim>> {
    if volumes.is_empty() {
        return Ok(Vec::new());
    }
    let policy_name = policy.metadata.name.as_deref().ok_or(Error::MissingField {
        kind: "ScanPolicy",
        field: "metadata.name",
    })?;
    let job = job_name(policy_name, req.machine, req.scan_id);
    let labels = job_labels(policy, req.machine, req.scan_id)?;
    let storage =
        |bytes: u64| BTreeMap::from([("storage".to_owned(), Quantity(bytes.to_string()))]);
    let modes = || Some(vec![ACCESS_MODE.to_owned()]);
    Ok(volumes
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let name = volume_name(&job, index);
            let meta = |namespace: Option<String>| ObjectMeta {
                name: Some(name.clone()),
                namespace,
                labels: Some(labels.clone()),
                ..Default::default()
            };
            let node_affinity = v
                .node_affinity
                .as_ref()
                .map(|(key, values)| VolumeNodeAffinity {
                    required: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: key.clone(),
                                operator: "In".into(),
                                values: Some(values.clone()),
                            }]),
                            match_fields: None,
                        }],
                    }),
                });
            let volume = PersistentVolume {
                metadata: meta(None),
                spec: Some(PersistentVolumeSpec {
                    access_modes: modes(),
                    capacity: Some(storage(v.capacity_bytes)),
                    volume_mode: Some("Block".into()),
                    persistent_volume_reclaim_policy: Some("Retain".into()),
                    storage_class_name: Some(String::new()),
                    csi: Some(CSIPersistentVolumeSource {
                        driver: v.driver.clone(),
                        volume_handle: v.volume_handle.clone(),
                        read_only: Some(true),
                        ..Default::default()
                    }),
                    // Pre-bound: no other claim can take it, and this claim takes no other.
                    claim_ref: Some(ObjectReference {
                        api_version: Some("v1".into()),
                        kind: Some("PersistentVolumeClaim".into()),
                        namespace: Some(settings.namespace.clone()),
                        name: Some(name.clone()),
                        ..Default::default()
                    }),
                    node_affinity,
                    ..Default::default()
                }),
                status: None,
            };
            let claim = PersistentVolumeClaim {
                metadata: meta(Some(settings.namespace.clone())),
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: modes(),
                    volume_mode: Some("Block".into()),
                    storage_class_name: Some(String::new()),
                    volume_name: Some(name.clone()),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(storage(v.capacity_bytes)),
                        limits: None,
                    }),
                    ..Default::default()
                }),
                status: None,
            };
            BlockClaim {
                volume,
                claim,
                device_path: v.device_path.clone(),
            }
        })
        .collect())
}

/// Give `job`'s pod a read-only claim volume per block claim and its (first) container a
/// `volumeDevices` entry at the claim's device path.
pub fn attach(job: &mut Job, claims: &[BlockClaim]) {
    if claims.is_empty() {
        return;
    }
    let Some(pod) = job.spec.as_mut().and_then(|s| s.template.spec.as_mut()) else {
        return;
    };
    let volumes = pod.volumes.get_or_insert_with(Vec::new);
    for (index, c) in claims.iter().enumerate() {
        volumes.push(Volume {
            name: format!("disk-{index}"),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: c.name(),
                read_only: Some(true),
            }),
            ..Default::default()
        });
    }
    if let Some(container) = pod.containers.first_mut() {
        let devices = container.volume_devices.get_or_insert_with(Vec::new);
        for (index, c) in claims.iter().enumerate() {
            devices.push(VolumeDevice {
                name: format!("disk-{index}"),
                device_path: c.device_path.clone(),
            });
        }
    }
}

/// Create each PersistentVolume, then its claim; one a previous attempt made (same name, same
/// contents) is fine.
pub async fn create(
    volumes: &Api<PersistentVolume>,
    claims: &Api<PersistentVolumeClaim>,
    block: &[BlockClaim],
) -> Result<()> {
    for c in block {
        create_if_absent(volumes, &c.volume).await?;
        create_if_absent(claims, &c.claim).await?;
    }
    Ok(())
}

async fn create_if_absent<K>(api: &Api<K>, obj: &K) -> Result<()>
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Make `job` the owner of its claims `names`, so the garbage collector deletes them with the
/// Job.
pub async fn adopt(claims: &Api<PersistentVolumeClaim>, names: &[String], job: &Job) -> Result<()> {
    for name in names {
        grants::adopt(claims, name, job).await?;
    }
    Ok(())
}

/// Delete the claims `names`, then the PersistentVolumes of the same names; returns the
/// volumes not gone yet (still bound to a claim a pod uses, or still attached), which the caller
/// waits for before deleting the disks behind them. Anything already gone is fine.
pub async fn delete(
    volumes: &Api<PersistentVolume>,
    claims: &Api<PersistentVolumeClaim>,
    names: &[String],
) -> Result<Vec<String>> {
    for name in names {
        delete_if_present(claims, name).await?;
    }
    for name in names {
        delete_if_present(volumes, name).await?;
    }
    let mut left = Vec::new();
    for name in names {
        if volumes.get_opt(name).await?.is_some() {
            left.push(name.clone());
        }
    }
    Ok(left)
}

/// Delete every claim, then every PersistentVolume, `selector` selects (a policy's: its Jobs'
/// labels); returns the volumes not gone yet.
pub async fn delete_selected(
    volumes: &Api<PersistentVolume>,
    claims: &Api<PersistentVolumeClaim>,
    selector: &str,
) -> Result<Vec<String>> {
    for name in selected(claims, selector).await? {
        delete_if_present(claims, &name).await?;
    }
    for name in selected(volumes, selector).await? {
        delete_if_present(volumes, &name).await?;
    }
    selected(volumes, selector).await
}

/// The names of the objects `selector` selects.
async fn selected<K>(api: &Api<K>, selector: &str) -> Result<Vec<String>>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let list = api.list(&ListParams::default().labels(selector)).await?;
    Ok(list.items.iter().map(|o| o.name_any()).collect())
}

#[cfg(test)]
mod tests {
    use snapsentry_crds::{AssignedDisk, Cloud, DiskSource};

    use super::*;
    use crate::controller::grants::tests::policy;
    use crate::job::scanner_job;
    use crate::job::tests::settings;

    const HANDLE: &str = "projects/p/zones/europe-west1-b/disks/snapsentry-vm-1-os";

    fn request() -> JobRequest<'static> {
        JobRequest {
            machine: "fleet-vm-1",
            instance_id: "1234567890",
            cloud: Cloud::Gcp,
            scan_id: "20261206-220000",
            disks: vec![AssignedDisk {
                id: "os".into(),
                source: DiskSource::BlockVolume {
                    volume: HANDLE.into(),
                    device_path: "/dev/snapsentry/disk-0".into(),
                },
            }],
            images_claim: None,
            grant_secret: None,
        }
    }

    fn block(zone: Option<&str>) -> BlockVolume {
        BlockVolume {
            driver: "pd.csi.storage.gke.io".into(),
            volume_handle: HANDLE.into(),
            capacity_bytes: 10 << 30,
            node_affinity: zone.map(|z| ("topology.gke.io/zone".to_owned(), vec![z.to_owned()])),
            device_path: "/dev/snapsentry/disk-0".into(),
        }
    }

    #[test]
    fn no_block_volumes_no_claims() {
        let claims = block_claims(&policy(), &request(), &settings(), &[]).unwrap();
        assert!(claims.is_empty());
        let mut job = scanner_job(&policy(), &request(), &settings()).unwrap();
        let before = job.clone();
        attach(&mut job, &claims);
        assert_eq!(job, before);
        let pod = job.spec.unwrap().template.spec.unwrap();
        assert!(pod.containers[0].volume_devices.is_none());
    }

    #[test]
    fn the_volume_is_a_read_only_block_device_of_the_disk_pre_bound_to_its_claim() {
        let claims = block_claims(
            &policy(),
            &request(),
            &settings(),
            &[block(Some("europe-west1-b"))],
        )
        .unwrap();
        let [c] = claims.as_slice() else {
            panic!("one claim: {claims:?}")
        };
        let job = scanner_job(&policy(), &request(), &settings()).unwrap();
        let job_name = job.name_any();
        assert_eq!(c.name(), format!("{job_name}-disk-0"));
        assert!(c.name().len() <= 253);
        let pv = &c.volume;
        assert_eq!(pv.metadata.namespace, None);
        assert_eq!(pv.metadata.labels, job.metadata.labels);
        let spec = pv.spec.as_ref().unwrap();
        assert_eq!(spec.volume_mode.as_deref(), Some("Block"));
        assert_eq!(spec.access_modes, Some(vec!["ReadOnlyMany".to_owned()]));
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Retain")
        );
        assert_eq!(spec.storage_class_name.as_deref(), Some(""));
        assert_eq!(spec.capacity.as_ref().unwrap()["storage"].0, "10737418240");
        let csi = spec.csi.as_ref().unwrap();
        assert_eq!(
            (
                csi.driver.as_str(),
                csi.volume_handle.as_str(),
                csi.read_only
            ),
            ("pd.csi.storage.gke.io", HANDLE, Some(true))
        );
        let claim_ref = spec.claim_ref.as_ref().unwrap();
        assert_eq!(claim_ref.kind.as_deref(), Some("PersistentVolumeClaim"));
        assert_eq!(claim_ref.namespace.as_deref(), Some("snapsentry"));
        assert_eq!(claim_ref.name.as_deref(), Some(c.name().as_str()));
        let term = &spec
            .node_affinity
            .as_ref()
            .unwrap()
            .required
            .as_ref()
            .unwrap()
            .node_selector_terms[0];
        let req = &term.match_expressions.as_ref().unwrap()[0];
        assert_eq!(
            (req.key.as_str(), req.operator.as_str(), req.values.clone()),
            (
                "topology.gke.io/zone",
                "In",
                Some(vec!["europe-west1-b".to_owned()])
            )
        );

        let pvc = &c.claim;
        assert_eq!(pvc.metadata.name, Some(c.name()));
        assert_eq!(pvc.metadata.namespace.as_deref(), Some("snapsentry"));
        assert_eq!(pvc.metadata.labels, job.metadata.labels);
        assert!(
            pvc.metadata.owner_references.is_none(),
            "owned once the Job exists"
        );
        let spec = pvc.spec.as_ref().unwrap();
        assert_eq!(spec.volume_mode.as_deref(), Some("Block"));
        assert_eq!(spec.access_modes, Some(vec!["ReadOnlyMany".to_owned()]));
        assert_eq!(spec.storage_class_name.as_deref(), Some(""));
        assert_eq!(spec.volume_name, Some(c.name()));
        let requests = spec.resources.as_ref().unwrap().requests.as_ref().unwrap();
        assert_eq!(requests["storage"].0, "10737418240");

        // Without a zone, no node affinity.
        let claims = block_claims(&policy(), &request(), &settings(), &[block(None)]).unwrap();
        assert!(
            claims[0]
                .volume
                .spec
                .as_ref()
                .unwrap()
                .node_affinity
                .is_none()
        );
    }

    #[test]
    fn the_job_attaches_each_claim_read_only_as_a_device() {
        let mut second = block(Some("europe-west1-b"));
        second.device_path = "/dev/snapsentry/disk-1".into();
        let claims = block_claims(
            &policy(),
            &request(),
            &settings(),
            &[block(Some("europe-west1-b")), second],
        )
        .unwrap();
        assert_ne!(claims[0].name(), claims[1].name());
        let mut job = scanner_job(&policy(), &request(), &settings()).unwrap();
        attach(&mut job, &claims);
        let pod = job.spec.unwrap().template.spec.unwrap();
        let volumes: Vec<_> = pod
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| Some((v.name.as_str(), v.persistent_volume_claim.as_ref()?)))
            .collect();
        assert_eq!(volumes.len(), 2);
        for ((name, source), c) in volumes.iter().zip(&claims) {
            assert!(name.starts_with("disk-"));
            assert_eq!(source.claim_name, c.name());
            assert_eq!(source.read_only, Some(true));
        }
        let container = &pod.containers[0];
        let devices = container.volume_devices.as_ref().unwrap();
        assert_eq!(
            devices
                .iter()
                .map(|d| (d.name.as_str(), d.device_path.as_str()))
                .collect::<Vec<_>>(),
            [
                ("disk-0", "/dev/snapsentry/disk-0"),
                ("disk-1", "/dev/snapsentry/disk-1")
            ]
        );
        // A device, never a mount.
        let mounts = container.volume_mounts.as_ref().unwrap();
        assert!(mounts.iter().all(|m| !m.name.starts_with("disk-")));
        // The assignment names the same device path.
        let env = container.env.as_ref().unwrap();
        let assignment = env
            .iter()
            .find(|e| e.name == "SNAPSENTRY_ASSIGNMENT")
            .unwrap();
        assert!(
            assignment
                .value
                .as_ref()
                .unwrap()
                .contains("\"devicePath\":\"/dev/snapsentry/disk-0\"")
        );
    }
}
