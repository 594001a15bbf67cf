//! A local stand-in for a Kubernetes cluster, an AWS account, an Azure subscription and a GCP
//! project, for `make demo`: etcd + kube-apiserver (built by `scripts/toolchain.sh`), moto with
//! the wrapper of `tests/moto/` (AWS), Azurite (Azure's blob data plane) with the fake ARM of
//! `tests/azure/` (Azure's control plane), the fake Compute Engine of `tests/gcp/` (GCP), and the
//! local Job runner playing kubelet + Job controller for one namespace, running each scanner Job's
//! own command (`snapsentry-scan job`, found on `PATH`) as a local process, and playing the
//! Compute Engine persistent-disk CSI driver (a GCP disk's volume handle is the fake's image file).
//!
//! It installs snapsentry's CRDs, creates the namespace and the fingerprint-key Secret, loads the
//! Azure fleet given as `AZURE_FLEET` into the fake ARM (a fleet spec as documented on
//! `FakeArm::load_fleet`, whose disks name image files as `"image": PATH`: each is uploaded to
//! Azurite as a page blob first), loads the GCP fleet given as `GCP_FLEET` into the fake Compute
//! Engine (a fleet spec as documented on `FakeGce::load_fleet`; its `serviceAccount` names only
//! the `email`: a fresh key is made for it, the Secret [`GCP_SECRET`] holds it as
//! `serviceAccountKey`) and creates the cluster's `pd.csi.storage.gke.io` CSIDriver, writes
//! `kubeconfig` and `env` (shell `export` lines: `KUBECONFIG`, `MOTO_ENDPOINT`, the moto
//! credentials, `ARM_ENDPOINT`, `GCE_ENDPOINT`) into the directory given as its first argument,
//! prints `ready`, and runs until its standard input closes or it is interrupted; then everything
//! it started stops.
//!
//! ```text
//! cargo run -p snapsentry-tests --example local-cloud -- DIR [NAMESPACE [AZURE_FLEET [GCP_FLEET]]]
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};

use snapsentry_tests::azure_fleet;
use snapsentry_tests::azurite::Azurite;
use snapsentry_tests::controlplane::{ControlPlane, Options};
use snapsentry_tests::fake_arm::{FakeArm, TestCertificate};
use snapsentry_tests::fake_gce::FakeGce;
use snapsentry_tests::jobrunner::{BlockDeviceResolver, JobRunner, JobRunnerOptions};
use snapsentry_tests::moto::Moto;
use snapsentry_tests::volume_protection::VolumeProtection;
use snapsentry_tests::{search_path, world};

/// The Secret holding the GCP fleet's service account key (key `serviceAccountKey`).
const GCP_SECRET: &str = "gcp-demo-credentials";

/// Loads the GCP fleet spec at `path` into `gce` with a fresh service account key (made in
/// `dir`) for its `serviceAccount.email`; returns the key as a service account JSON key.
fn load_gcp_fleet(gce: &FakeGce, path: &Path, dir: &Path) -> anyhow::Result<String> {
    let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(path)?)?;
    let email = spec["serviceAccount"]["email"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("{}: no serviceAccount.email", path.display()))?
        .to_owned();
    let project = spec["projects"]
        .as_object()
        .and_then(|p| p.keys().next().cloned())
        .ok_or_else(|| anyhow::anyhow!("{}: no project", path.display()))?;
    let key_dir = dir.join("gcp-key");
    std::fs::create_dir_all(&key_dir)?;
    let key = TestCertificate::generate(&key_dir)?;
    spec["serviceAccount"]["modulus"] = key.modulus.clone().into();
    gce.load_fleet(&spec)?;
    Ok(serde_json::json!({
        "type": "service_account",
        "project_id": project,
        "private_key_id": "demo",
        "private_key": std::fs::read_to_string(&key.key_file)?,
        "client_email": email,
        "token_uri": "https://oauth2.googleapis.com/token",
    })
    .to_string())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or_else(|| {
        anyhow::anyhow!("usage: local-cloud DIR [NAMESPACE [AZURE_FLEET [GCP_FLEET]]]")
    })?);
    let ns = args.next().unwrap_or_else(|| "snapsentry".to_owned());
    let azure_fleet = args.next().map(PathBuf::from);
    let gcp_fleet = args.next().map(PathBuf::from);
    std::fs::create_dir_all(&dir)?;

    let cp = ControlPlane::start().await?;
    let moto = Moto::start()?;
    let azurite = Azurite::start()?;
    let arm = FakeArm::start()?;
    if let Some(path) = &azure_fleet {
        let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(path)?)?;
        // The SAS URLs the fake hands out last the demo's whole run.
        azure_fleet::upload_disks(&azurite, &mut spec, Duration::from_secs(24 * 3600))?;
        arm.load_fleet(&spec)?;
    }
    let gce = Arc::new(FakeGce::start()?);
    let gcp_key = match &gcp_fleet {
        Some(path) => Some(load_gcp_fleet(&gce, path, &dir)?),
        None => None,
    };
    let client = cp.client().await?;
    world::prepare_namespace(&cp, &client, &ns).await?;
    if let Some(key) = gcp_key {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(GCP_SECRET.into()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                "serviceAccountKey".to_owned(),
                ByteString(key.into_bytes()),
            )])),
            ..Default::default()
        };
        Api::<Secret>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &secret)
            .await?;
        world::gcp::install_csi_driver(&client).await?;
    }

    let kubeconfig = dir.join("kubeconfig");
    std::fs::copy(cp.kubeconfig(), &kubeconfig)?;
    let mut env = moto.env();
    env.push(("KUBECONFIG".into(), kubeconfig.display().to_string()));
    env.push(("PATH".into(), search_path(&[&Options::default().assets])));
    let mut exports = String::new();
    for (k, v) in env.iter().filter(|(k, _)| k != "PATH") {
        exports.push_str(&format!("export {k}='{v}'\n"));
    }
    exports.push_str(&format!("export MOTO_ENDPOINT='{}'\n", moto.endpoint()));
    exports.push_str(&format!("export ARM_ENDPOINT='{}'\n", arm.endpoint()));
    exports.push_str(&format!("export GCE_ENDPOINT='{}'\n", gce.endpoint()));
    // kubectl, built with the control plane.
    exports.push_str(&format!(
        "export PATH='{}':\"$PATH\"\n",
        Options::default().assets.display()
    ));
    std::fs::write(dir.join("env"), exports)?;

    let jobs_dir = dir.join("jobs");
    std::fs::create_dir_all(&jobs_dir)?;
    let resolver = gce.clone();
    let block_devices: BlockDeviceResolver =
        Arc::new(move |handle: &str| resolver.image_of(handle).ok().flatten());
    // kube-controller-manager's volume protection: the GCP disks' claims and volumes go once
    // their Job is done.
    let _protection = VolumeProtection::start(client.clone(), &ns);
    let _runner = JobRunner::start(
        client,
        JobRunnerOptions {
            namespace: ns,
            claims: BTreeMap::new(),
            command: None,
            env,
            log_dir: Some(jobs_dir),
            block_devices: Some(block_devices),
        },
    )?;
    println!("ready");
    std::io::stdout().flush()?;

    // Run until standard input closes (the demo script holds it open) or Ctrl-C.
    let stdin_closed = tokio::task::spawn_blocking(|| {
        for line in std::io::stdin().lock().lines() {
            if line.is_err() {
                break;
            }
        }
    });
    tokio::select! {
        _ = stdin_closed => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
