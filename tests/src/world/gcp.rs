//! The `gcp` provider's side of a world: the fake Compute Engine (`tests/gcp/fake_gce.py`)
//! holding a small fleet whose disks are the demo's raw images, the service-account key Secret
//! the policies name, and the Job runner playing `pd.csi.storage.gke.io` (each block volume's
//! handle mapped to its disk's image by [`FakeGce::image_of`]).
//!
//! The fleet is the demo's machines (`examples/demo/fleet-images.sh`) and one more, as Compute
//! Engine instances in [`SCANNER_ZONE`]: web-01 (Debian) exposed (an external IP, reached by the
//! `allow-ssh` rule open to 0.0.0.0/0 on tcp:22 through its network tag) holding the private key
//! that db-01's disk authorizes, db-01 private and blocking the project's SSH keys
//! (`block-project-ssh-keys`), app-01 private whose disk authorizes nothing: the project metadata
//! `ssh-keys` authorizes web-01's key on it (for user [`METADATA_USER`]), and win-01, a Windows
//! Server instance. The key is made fresh per world, so are the planted values.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use k8s_openapi::api::storage::v1::CSIDriver;
use serde_json::{Value, json};

use super::{Cloud, Setup};
use crate::fake_arm::TestCertificate;
use crate::fake_gce::{self, FakeGce};
use crate::repo;

/// The project of the fleet.
pub const PROJECT: &str = "snapsentry-gcp-e2e";
/// The zone the instances and the scanner's nodes run in.
pub const SCANNER_ZONE: &str = "europe-west1-b";
/// The service account whose key the credentials Secret holds.
pub const EMAIL: &str = "scanner@snapsentry-gcp-e2e.iam.gserviceaccount.com";
/// The Secret holding `serviceAccountKey` (the name the example policy uses).
pub const CREDENTIALS_SECRET: &str = "gcp-scanner-credentials";
/// web-01's external IP.
pub const WEB_EXTERNAL_IP: &str = "34.76.10.7";
/// Every machine of the fleet, in order.
pub const MACHINES: [&str; 4] = ["web-01", "db-01", "app-01", "win-01"];
/// The user the project metadata `ssh-keys` authorizes web-01's key for.
pub const METADATA_USER: &str = "deploy";

/// Why the GCP fixture could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The fake Compute Engine failed, or the service-account key could not be made.
    #[error(transparent)]
    Gce(#[from] fake_gce::Error),
    /// A file operation failed.
    #[error(transparent)]
    World(#[from] super::Error),
    /// app-01's image could not be made.
    #[error(transparent)]
    Image(#[from] crate::image::Error),
    /// `examples/demo/fleet-images.sh` failed; what it said.
    #[error("examples/demo/fleet-images.sh: {0}")]
    FleetImages(String),
}

/// The GCP side of a world (see the module documentation).
pub struct Gcp {
    /// The control plane, shared with the Job runner's block device resolver.
    pub gce: Arc<FakeGce>,
    /// The raw images of the fleet's disks, and the key files.
    pub dir: tempfile::TempDir,
    /// Every planted secret value, for the never-leak checks.
    pub planted: Vec<String>,
    /// The service account's private key (PEM).
    pub private_key: String,
}

impl Cloud for Gcp {
    fn diagnostics(&self) -> String {
        format!("fake GCE: {}", self.gce.log_tail())
    }
}

impl Gcp {
    /// What must never be shown, each with what it is: the first 12 characters of each planted
    /// secret, and every line of the private key's body.
    pub fn never_shown(&self) -> Vec<(String, String)> {
        let mut values: Vec<(String, String)> = self
            .planted
            .iter()
            .map(|p| ("a planted secret".to_owned(), p.chars().take(12).collect()))
            .collect();
        values.extend(
            self.private_key
                .lines()
                .filter(|l| !l.starts_with("-----") && l.len() >= 16)
                .map(|l| ("the service account's private key".to_owned(), l.to_owned())),
        );
        values
    }
}

/// The world's setup: the demo's images, the fake with the fleet and the service account, the
/// credentials Secret, the Job runner resolving block volumes through the fake; Jobs run the
/// real scanner (found on `PATH`) at log level info.
pub fn setup(ns: &str) -> Result<Setup<Gcp>, Error> {
    let dir = tempfile::Builder::new()
        .prefix("snapsentry-gcp-fleet-")
        .tempdir()
        .map_err(super::Error::io("creating a temporary directory"))?;
    let raw = dir.path().join("raw");
    let out = Command::new(repo().join("examples/demo/fleet-images.sh"))
        .arg(&raw)
        .arg("orders.c1snapsentry.us-east-1.rds.amazonaws.com")
        .output()
        .map_err(super::Error::io("running examples/demo/fleet-images.sh"))?;
    if !out.status.success() {
        return Err(Error::FleetImages(
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    let planted = std::fs::read_to_string(raw.join("planted.txt"))
        .map_err(super::Error::io("reading planted.txt"))?
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let deploy_key = std::fs::read_to_string(raw.join("web-01-deploy.pub"))
        .map_err(super::Error::io("reading web-01's public key"))?;
    app_image(dir.path(), &raw.join("app-01.raw"))?;
    let key = TestCertificate::generate(dir.path())?;
    let private_key = std::fs::read_to_string(&key.key_file)
        .map_err(super::Error::io("reading the service account's key"))?;
    let gce = Arc::new(FakeGce::start()?);
    gce.load_fleet(&fleet_spec(&raw, &key.modulus, deploy_key.trim()))?;
    let key_json = json!({
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "e2e",
        "private_key": private_key,
        "client_email": EMAIL,
        "token_uri": "https://oauth2.googleapis.com/token",
    })
    .to_string();
    let resolver = gce.clone();
    let gcp = Gcp {
        gce,
        dir,
        planted,
        private_key,
    };
    Ok(Setup::new(ns, gcp)
        .secret(CREDENTIALS_SECRET, &[("serviceAccountKey", &key_json)])
        .block_devices(Arc::new(move |handle: &str| {
            resolver.image_of(handle).ok().flatten()
        }))
        .env("SNAPSENTRY_LOG", "info"))
}

/// Creates the `pd.csi.storage.gke.io` CSIDriver object a GKE cluster has (the Job runner plays
/// the driver itself), unless the control plane has it already: the operator checks for it
/// before scanning a `gcp` provider.
pub async fn install_csi_driver(client: &kube::Client) -> Result<(), kube::Error> {
    let api: kube::Api<CSIDriver> = kube::Api::all(client.clone());
    let driver: CSIDriver = serde_json::from_value(json!({
        "metadata": {"name": crate::jobrunner::GCE_PD_DRIVER},
        "spec": {"attachRequired": true, "podInfoOnMount": false,
                 "volumeLifecycleModes": ["Persistent"]},
    }))
    .map_err(kube::Error::SerdeError)?;
    match api.create(&kube::api::PostParams::default(), &driver).await {
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        other => other.map(drop),
    }
}

/// app-01's disk: an ext4 filesystem whose only `authorized_keys` holds no key of the fleet.
fn app_image(dir: &Path, image: &Path) -> Result<(), Error> {
    let tree = dir.join("app-01-tree");
    let io = || super::Error::io("writing app-01's files");
    std::fs::create_dir_all(tree.join("etc")).map_err(io())?;
    std::fs::create_dir_all(tree.join("home/app/.ssh")).map_err(io())?;
    std::fs::write(tree.join("etc/hostname"), "app-01\n").map_err(io())?;
    std::fs::write(
        tree.join("home/app/.ssh/authorized_keys"),
        "# managed by GCE metadata\n",
    )
    .map_err(io())?;
    crate::image::ext4(&tree, image, 16)?;
    Ok(())
}

/// The fake's fleet spec (format on [`FakeGce::load_fleet`]): the machines' disks are the raw
/// images in `raw`, the service account's key has `modulus`, the project metadata authorizes
/// `deploy_key` (an `authorized_keys` line) for [`METADATA_USER`].
fn fleet_spec(raw: &Path, modulus: &str, deploy_key: &str) -> Value {
    let disk = |machine: &str| {
        json!([{
            "name": format!("{machine}-boot"),
            "image": raw.join(format!("{machine}.raw")).display().to_string(),
        }])
    };
    json!({
        "serviceAccount": {"email": EMAIL, "modulus": modulus},
        "metadataServer": {"projectId": PROJECT, "zone": SCANNER_ZONE, "email": EMAIL},
        "projects": { PROJECT: {
            "zones": [SCANNER_ZONE],
            "commonMetadata": {"ssh-keys": format!("{METADATA_USER}:{deploy_key}")},
            "instances": [{
                "name": "web-01", "zone": SCANNER_ZONE, "labels": {"env": "prod", "role": "web"},
                "tags": ["ssh-open"], "externalIp": WEB_EXTERNAL_IP, "internalIp": "10.132.0.4",
                "disks": disk("web-01"),
            }, {
                "name": "db-01", "zone": SCANNER_ZONE,
                "labels": {"env": "prod", "role": "database"}, "internalIp": "10.132.0.5",
                "metadata": {"block-project-ssh-keys": "true"},
                "disks": disk("db-01"),
            }, {
                "name": "app-01", "zone": SCANNER_ZONE,
                "labels": {"env": "prod", "role": "app"}, "internalIp": "10.132.0.6",
                "disks": disk("app-01"),
            }, {
                "name": "win-01", "zone": SCANNER_ZONE, "os": "WINDOWS",
                "labels": {"env": "prod", "role": "iis"}, "internalIp": "10.132.0.7",
                "disks": disk("win-01"),
            }],
            "firewalls": [{
                "name": "allow-ssh", "sourceRanges": ["0.0.0.0/0"], "targetTags": ["ssh-open"],
                "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}],
            }],
        }},
    })
}
