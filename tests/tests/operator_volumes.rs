//! A scanner Job's block volumes against a real kube-apiserver, at the level their pieces live:
//!
//! - the operator's functions ([`snapsentry_operator::controller::volumes`]) acting with exactly
//!   the chart's RBAC (the operator's service account, impersonated): the PersistentVolume and
//!   its claim — shapes the API server validates — created before the Job (twice: idempotent),
//!   the claim owned by the Job once it exists, the Job's `volumeDevices` accepted; deleted claim
//!   first, the volume reported as not gone while a finalizer holds it (this control plane runs
//!   no controller-manager: the test plays the protection controllers by removing the
//!   finalizers), and a policy's deleted by its labels — and nothing beyond that for the
//!   operator;
//! - the Job runner playing the CSI driver: a Job whose claim is bound to a
//!   `pd.csi.storage.gke.io` volume reads the disk's file at the device path it was given; a Job
//!   whose claim is missing, or whose handle resolves to no disk, fails saying so; once the Jobs
//!   ended, the volumes go (the protection controllers played by [`VolumeProtection`]).
//!
//! No provider of this build has block volumes yet; the whole path through a running operator is
//! the GCP end-to-end test's.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result, ensure};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use snapsentry_cloud::BlockVolume;
use snapsentry_crds::{AssignedDisk, Cloud, DiskSource, ScanPolicy};

use super::operator_grants::{failure, finished, policy, settings};
use snapsentry_operator::controller::volumes::{self, BlockClaim};
use snapsentry_operator::job::{JobRequest, scanner_job};
use snapsentry_tests::chart_rbac;
use snapsentry_tests::controlplane::ControlPlane;
use snapsentry_tests::jobrunner::{GCE_PD_DRIVER, JobRunner, JobRunnerOptions};
use snapsentry_tests::volume_protection::VolumeProtection;
use snapsentry_tests::world::prepare_namespace;

/// The namespace the chart's RBAC is installed in (shared with `operator_grants.rs`).
const NS: &str = "snapsentry";
const DEVICE: &str = "/dev/snapsentry/disk-0";
const SCAN: &str = "20261206-230000";

fn handle(disk: &str) -> String {
    format!("projects/p-1/zones/europe-west1-b/disks/{disk}")
}

fn request<'a>(machine: &'a str, volume: &str) -> JobRequest<'a> {
    JobRequest {
        machine,
        instance_id: "1234567890",
        cloud: Cloud::Gcp,
        scan_id: SCAN,
        disks: vec![AssignedDisk {
            id: "os".into(),
            source: DiskSource::BlockVolume {
                volume: volume.to_owned(),
                device_path: DEVICE.into(),
            },
        }],
        images_claim: None,
        grant_secret: None,
    }
}

/// The block claims and the Job attaching them, as `start_machine` builds them.
fn claims_and_job(
    p: &ScanPolicy,
    ns: &str,
    machine: &str,
    disk: &str,
) -> Result<(Vec<BlockClaim>, Job)> {
    let req = request(machine, &handle(disk));
    let block = BlockVolume {
        driver: GCE_PD_DRIVER.into(),
        volume_handle: handle(disk),
        capacity_bytes: 1 << 30,
        node_affinity: Some(("topology.gke.io/zone".into(), vec!["europe-west1-b".into()])),
        device_path: DEVICE.into(),
    };
    let claims = volumes::block_claims(p, &req, &settings(ns), &[block])?;
    let mut job = scanner_job(p, &req, &settings(ns))?;
    volumes::attach(&mut job, &claims);
    Ok((claims, job))
}

fn names(claims: &[BlockClaim]) -> Vec<String> {
    claims.iter().map(BlockClaim::name).collect()
}

/// Play the protection controllers: drop the finalizers of `name`.
async fn release_finalizers<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = serde_json::json!({ "metadata": { "finalizers": null } });
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Delete the claim and the volume `name` for good (as admin, finalizers dropped).
async fn remove(
    pvs: &Api<PersistentVolume>,
    pvcs: &Api<PersistentVolumeClaim>,
    name: &str,
) -> Result<()> {
    pvcs.delete(name, &DeleteParams::default()).await?;
    release_finalizers(pvcs, name).await?;
    pvs.delete(name, &DeleteParams::default()).await?;
    release_finalizers(pvs, name).await
}

fn forbidden<T>(result: &kube::Result<T>) -> bool {
    matches!(result, Err(kube::Error::Api(s)) if s.code == 403)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_volumes_with_the_charts_rbac() -> Result<()> {
    let cp = ControlPlane::shared().await?;
    let admin = cp.client().await?;
    chart_rbac::install(cp, &admin, NS).await?;
    let operator = chart_rbac::client_as(cp, NS, chart_rbac::OPERATOR).await?;
    let pvs: Api<PersistentVolume> = Api::all(operator.clone());
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(operator.clone(), NS);
    let admin_pvs: Api<PersistentVolume> = Api::all(admin.clone());
    let admin_pvcs: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), NS);
    let p = policy("volumes-rbac")?;

    // The volume and its claim first (twice: a restarted operator), then the Job, which the API
    // server accepts with its volumeDevices, then the Job owns the claim.
    let (claims, job) = claims_and_job(&p, NS, "volumes-rbac-vm-1", "vm-1-os-copy")?;
    let claim_names = names(&claims);
    volumes::create(&pvs, &pvcs, &claims).await?;
    volumes::create(&pvs, &pvcs, &claims).await?;
    let job = Api::<Job>::namespaced(operator.clone(), NS)
        .create(&PostParams::default(), &job)
        .await?;
    volumes::adopt(&pvcs, &claim_names, &job).await?;

    let name = &claim_names[0];
    assert_eq!(name, &format!("{}-disk-0", job.name_any()));
    let pv = admin_pvs.get(name).await?;
    assert_eq!(pv.labels(), job.labels());
    let spec = pv.spec.clone().context("spec")?;
    assert_eq!(spec.volume_mode.as_deref(), Some("Block"));
    assert_eq!(spec.access_modes, Some(vec!["ReadOnlyMany".to_owned()]));
    assert_eq!(
        spec.persistent_volume_reclaim_policy.as_deref(),
        Some("Retain")
    );
    let csi = spec.csi.context("csi")?;
    assert_eq!(
        (csi.driver.as_str(), csi.volume_handle, csi.read_only),
        (GCE_PD_DRIVER, handle("vm-1-os-copy"), Some(true))
    );
    let claim_ref = spec.claim_ref.context("claimRef")?;
    assert_eq!(
        (claim_ref.namespace.as_deref(), claim_ref.name.as_ref()),
        (Some(NS), Some(name))
    );
    ensure!(spec.node_affinity.is_some(), "node affinity kept");
    let pvc = admin_pvcs.get(name).await?;
    assert_eq!(
        pvc.spec.as_ref().and_then(|s| s.volume_name.as_ref()),
        Some(name)
    );
    let owner = pvc.owner_references().first().context("an owner")?.clone();
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), Some(owner.uid)),
        ("Job", job.name_any().as_str(), job.uid())
    );
    let pod = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .context("pod")?;
    let device = pod.containers[0]
        .volume_devices
        .as_ref()
        .and_then(|d| d.first())
        .context("a volumeDevices entry")?;
    assert_eq!(device.device_path, DEVICE);

    // Nothing beyond what it needs: no changing a volume, no claims elsewhere.
    let patch = serde_json::json!({ "metadata": { "labels": { "x": "y" } } });
    ensure!(
        forbidden(
            &pvs.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
        ),
        "the operator can patch PersistentVolumes"
    );
    let elsewhere: Api<PersistentVolumeClaim> = Api::namespaced(operator.clone(), "default");
    ensure!(
        forbidden(&elsewhere.list(&ListParams::default()).await),
        "the operator can list claims outside its namespace"
    );
    ensure!(
        forbidden(
            &elsewhere
                .create(&PostParams::default(), &claims[0].claim)
                .await
        ),
        "the operator can create claims outside its namespace"
    );

    // Deleted: the claim, then the volume; a finalizer holding the volume keeps it reported.
    let left = volumes::delete(&pvs, &pvcs, &claim_names).await?;
    assert_eq!(
        left, claim_names,
        "the protection finalizers hold the volume"
    );
    let pvc = admin_pvcs.get(name).await?;
    ensure!(pvc.metadata.deletion_timestamp.is_some(), "claim deleted");
    let pv = admin_pvs.get(name).await?;
    ensure!(pv.metadata.deletion_timestamp.is_some(), "volume deleted");
    release_finalizers(&admin_pvcs, name).await?;
    assert_eq!(
        volumes::delete(&pvs, &pvcs, &claim_names).await?,
        claim_names
    );
    release_finalizers(&admin_pvs, name).await?;
    assert!(volumes::delete(&pvs, &pvcs, &claim_names).await?.is_empty());
    ensure!(admin_pvcs.get_opt(name).await?.is_none(), "claim gone");

    // A policy's, by its labels; another policy's are kept.
    let (first, _) = claims_and_job(&p, NS, "volumes-rbac-vm-2", "vm-2-os-copy")?;
    let (other, _) = claims_and_job(
        &policy("volumes-other")?,
        NS,
        "volumes-other-vm-1",
        "other-os-copy",
    )?;
    volumes::create(&pvs, &pvcs, &first).await?;
    volumes::create(&pvs, &pvcs, &other).await?;
    let selector = "snapsentry.io/policy=volumes-rbac,snapsentry.io/policy-namespace=team-a";
    let left = volumes::delete_selected(&pvs, &pvcs, selector).await?;
    assert_eq!(left, names(&first));
    for n in names(&first) {
        release_finalizers(&admin_pvcs, &n).await?;
        release_finalizers(&admin_pvs, &n).await?;
    }
    assert!(
        volumes::delete_selected(&pvs, &pvcs, selector)
            .await?
            .is_empty()
    );
    for n in names(&other) {
        ensure!(admin_pvs.get_opt(&n).await?.is_some(), "{n} kept");
        ensure!(admin_pvcs.get_opt(&n).await?.is_some(), "{n} kept");
        remove(&admin_pvs, &admin_pvcs, &n).await?;
    }
    Api::<Job>::namespaced(admin, NS)
        .delete(&job.name_any(), &DeleteParams::background())
        .await?;
    Ok(())
}

/// Create `job`, which the runner must fail with a message containing `expected`.
async fn fails_with(runner: &JobRunner, jobs: &Api<Job>, job: &Job, expected: &str) -> Result<()> {
    let name = job.name_any();
    jobs.create(&PostParams::default(), job).await?;
    ensure!(finished(runner, &name).await?.is_err(), "the Job failed");
    let message = failure(jobs, &name).await?;
    ensure!(message.contains(expected), "{message}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_runner_plays_the_csi_driver() -> Result<()> {
    let ns = "runner-volumes";
    let cp = ControlPlane::shared().await?;
    let client = cp.client().await?;
    prepare_namespace(cp, &client, ns).await?;
    let dir = tempfile::tempdir()?;
    let image = dir.path().join("vm-1-os-copy.img");
    std::fs::write(&image, b"DISK-BYTES-OF-VM-1")?;
    let disks: BTreeMap<String, PathBuf> =
        BTreeMap::from([(handle("vm-1-os-copy"), image.clone())]);
    // Prints the device it was given (its argument, and the assignment's devicePath), and
    // the device's contents.
    let script =
        r#"printf 'arg %s\n' "$1" && cat "$1" && printf '\n%s\n' "$SNAPSENTRY_ASSIGNMENT""#;
    let runner = JobRunner::start(
        client.clone(),
        JobRunnerOptions {
            namespace: ns.into(),
            command: Some(
                ["sh", "-c", script, "sh", DEVICE]
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
            ),
            block_devices: Some(Arc::new(move |h: &str| disks.get(h).cloned())),
            ..Default::default()
        },
    )?;
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let p = policy("runner-volumes")?;

    let (claims, job) = claims_and_job(&p, ns, "runner-volumes-vm-1", "vm-1-os-copy")?;
    volumes::create(&pvs, &pvcs, &claims).await?;
    let name = job.name_any();
    jobs.create(&PostParams::default(), &job).await?;
    assert_eq!(
        finished(&runner, &name).await?,
        Ok(()),
        "{}",
        runner.log(&name)
    );
    let log = runner.log(&name);
    let local = image.display().to_string();
    assert!(log.contains(&format!("arg {local}")), "{log}");
    assert!(log.contains("DISK-BYTES-OF-VM-1"), "{log}");
    assert!(
        log.contains(&format!("\"devicePath\":\"{local}\"")),
        "{log}"
    );
    assert!(!log.contains(DEVICE), "{log}");

    // A handle the resolver does not know: the Job fails, naming it.
    let (unknown, job) = claims_and_job(&p, ns, "runner-volumes-vm-2", "no-such-disk")?;
    volumes::create(&pvs, &pvcs, &unknown).await?;
    let expected = format!("no disk for volume handle {}", handle("no-such-disk"));
    fails_with(&runner, &jobs, &job, &expected).await?;

    // A claim that does not exist: the Job fails, naming it.
    let (missing, job) = claims_and_job(&p, ns, "runner-volumes-vm-3", "vm-1-os-copy")?;
    let expected = format!("PersistentVolumeClaim {ns}/{} not found", missing[0].name());
    fails_with(&runner, &jobs, &job, &expected).await?;

    // The Jobs ended: the operator's release finds the volumes gone once the protection
    // controllers let them go.
    let _protection = VolumeProtection::start(client.clone(), ns);
    let all: Vec<String> = names(&claims).into_iter().chain(names(&unknown)).collect();
    delete_until_gone(&pvs, &pvcs, &all).await?;
    for n in &all {
        ensure!(pvcs.get_opt(n).await?.is_none(), "claim {n} gone");
    }
    Ok(())
}

/// Delete `names` (claims, then volumes) until the volumes are gone, up to 15 s.
async fn delete_until_gone(
    pvs: &Api<PersistentVolume>,
    pvcs: &Api<PersistentVolumeClaim>,
    names: &[String],
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let left = volumes::delete(pvs, pvcs, names).await?;
        if left.is_empty() {
            return Ok(());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "volumes not gone: {left:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_stays_while_a_running_job_uses_its_claim() -> Result<()> {
    let ns = "protect-volumes";
    let cp = ControlPlane::shared().await?;
    let client = cp.client().await?;
    prepare_namespace(cp, &client, ns).await?;
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let _protection = VolumeProtection::start(client.clone(), ns);
    // No runner here: the Job never ends by itself.
    let (claims, job) = claims_and_job(&policy("protect")?, ns, "protect-vm-1", "vm-1-os-copy")?;
    let all = names(&claims);
    volumes::create(&pvs, &pvcs, &claims).await?;
    jobs.create(&PostParams::default(), &job).await?;
    assert_eq!(volumes::delete(&pvs, &pvcs, &all).await?, all);
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(
        volumes::delete(&pvs, &pvcs, &all).await?,
        all,
        "held by the Job"
    );
    ensure!(
        pvcs.get_opt(&all[0]).await?.is_some(),
        "the claim is held too"
    );
    jobs.delete(&job.name_any(), &DeleteParams::background())
        .await?;
    delete_until_gone(&pvs, &pvcs, &all).await
}
