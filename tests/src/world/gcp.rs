//! The `gcp` provider's side of a world: the fake Compute Engine (`tests/gcp/fake_gce.py`)
//! holding a small fleet whose disks are the demo's raw images, the service-account key Secret
//! the policies name, and the Job runner playing `pd.csi.storage.gke.io` (each block volume's
//! handle mapped to its disk's image by [`FakeGce::image_of`]).
//!
//! The fleet is two of the demo's machines (`examples/demo/fleet-images.sh`) as Compute Engine
//! instances in [`SCANNER_ZONE`]: web-01 exposed (an external IP, reached by the `allow-ssh`
//! rule open to 0.0.0.0/0 on tcp:22 through its network tag) holding the private key authorized
//! on db-01, and db-01 private. The key is made fresh per world, so are the planted values.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

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
pub const MACHINES: [&str; 2] = ["web-01", "db-01"];

/// Why the GCP fixture could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The fake Compute Engine failed, or the service-account key could not be made.
    #[error(transparent)]
    Gce(#[from] fake_gce::Error),
    /// A file operation failed.
    #[error(transparent)]
    World(#[from] super::Error),
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
    let key = TestCertificate::generate(dir.path())?;
    let private_key = std::fs::read_to_string(&key.key_file)
        .map_err(super::Error::io("reading the service account's key"))?;
    let gce = Arc::new(FakeGce::start()?);
    gce.load_fleet(&fleet_spec(&raw, &key.modulus))?;
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

/// The fake's fleet spec (format on [`FakeGce::load_fleet`]): the machines' disks are the raw
/// images in `raw`, the service account's key has `modulus`.
fn fleet_spec(raw: &Path, modulus: &str) -> Value {
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
            "instances": [{
                "name": "web-01", "zone": SCANNER_ZONE, "labels": {"env": "prod", "role": "web"},
                "tags": ["ssh-open"], "externalIp": WEB_EXTERNAL_IP, "internalIp": "10.132.0.4",
                "disks": disk("web-01"),
            }, {
                "name": "db-01", "zone": SCANNER_ZONE,
                "labels": {"env": "prod", "role": "database"}, "internalIp": "10.132.0.5",
                "disks": disk("db-01"),
            }],
            "firewalls": [{
                "name": "allow-ssh", "sourceRanges": ["0.0.0.0/0"], "targetTags": ["ssh-open"],
                "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}],
            }],
        }},
    })
}
