//! A fake Google Compute Engine control plane for GCP tests: `tests/gcp/fake_gce.py` (Python
//! standard library only) on a free loopback port. Compute Engine has no emulator, so this fake
//! answers the Compute v1 calls snapsentry's GCP provider makes (instances, disks, snapshots,
//! firewalls, project metadata, zonal and global operations with the PENDING → RUNNING → DONE
//! dance), the Cloud SQL Admin and GCS bucket listings, and the GKE metadata server's token, in
//! the documented shapes, and verifies a service account's self-signed JWTs;
//! `tests/tests/fake_gce.rs` checks it against `tests/gcp/documented_shapes.json`. Its header
//! lists every endpoint and the control API.
//!
//! Every disk of the fake is backed by a raw disk image file named in the fleet; a disk made from a
//! snapshot copies its source's file, and [`FakeGce::image_of`] maps a CSI volume handle
//! (`projects/P/zones/Z/disks/NAME`) to it — what a harness playing `pd.csi.storage.gke.io` needs.
//!
//! ```no_run
//! # fn example() -> Result<(), snapsentry_tests::fake_gce::Error> {
//! use snapsentry_tests::fake_gce::FakeGce;
//!
//! let gce = FakeGce::start()?;
//! gce.load_fleet(&serde_json::json!({"projects": {"p-1": {"instances": []}}}))?;
//! let token = gce.token()?;
//! let vms = gce.request("GET", "/compute/v1/projects/p-1/aggregated/instances", Some(&token), None)?;
//! let state = gce.state()?;
//! # drop((vms, state));
//! # Ok(())
//! # }
//! ```

use std::path::{Path, PathBuf};

use crate::python_fake::PythonFake;
pub use crate::python_fake::{Error, Response};

/// The path of the GKE metadata server's token for the pod's service account.
pub const METADATA_TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";

/// A running fake Compute Engine; dropping it kills the server and removes its directory.
#[derive(Debug)]
pub struct FakeGce {
    fake: PythonFake,
}

impl FakeGce {
    /// Starts the fake on a free loopback port and waits until it answers.
    pub fn start() -> Result<Self, Error> {
        let fake = PythonFake::start(
            "fake GCE",
            "gcp/fake_gce.py",
            "snapsentry-fake-gce-",
            "fake_gce.log",
        )?;
        Ok(FakeGce { fake })
    }

    /// `http://127.0.0.1:PORT`: the root of every API it fakes (`/compute/v1`,
    /// `/sql/v1beta4`, `/storage/v1`) and of the metadata server ([`METADATA_TOKEN_PATH`]).
    pub fn endpoint(&self) -> String {
        self.fake.endpoint()
    }

    /// Replaces the fake's state with the fleet `spec`: `{"pageSize": n (default page size of lists
    /// without maxResults, 500), "serviceAccount": {"email", "modulus": HEX, "exponent": n (65537)}
    /// (the key a self-signed JWT verifies with, e.g. a [`crate::fake_arm::TestCertificate`]'s modulus;
    /// without it only the metadata server's tokens are accepted), "metadataServer": {"projectId", "zone",
    /// "email"} (what the metadata server says of the node the scanner runs on; each optional),
    /// "projects": {PROJECT: {"zones": [ZONE...] (listed in the aggregated list even when empty),
    /// "commonMetadata": {KEY: VALUE} (e.g. "ssh-keys"), "instances": [{"name", "zone"
    /// ("us-central1-a"), "status" ("RUNNING"|"TERMINATED"|...), "os" ("WINDOWS" gives the boot
    /// disk Windows licenses and guest OS features, anything else Debian's), "machineType",
    /// "labels": {..}, "tags": [NETWORK TAG...], "serviceAccounts": [EMAIL...], "network"
    /// ("default"), "internalIp", "externalIp" (an ONE_TO_ONE_NAT access config's natIP),
    /// "externalIpv6" (a DIRECT_IPV6 ipv6AccessConfig), "metadata": {KEY: VALUE}, "disks":
    /// [{"name", "image": RAW DISK IMAGE FILE, "sizeGb" (10), "boot" (the first disk),
    /// "deviceName", "labels"}]}], "firewalls": [{"name", "network", "direction" ("INGRESS"),
    /// "priority" (1000), "sourceRanges", "destinationRanges", "sourceTags", "targetTags",
    /// "targetServiceAccounts", "allowed": [{"IPProtocol", "ports"}] (tcp/22), "deny": bool (the
    /// rules become `denied`), "disabled"}], "sqlInstances": [{"name", "region", "databaseVersion",
    /// "ipAddresses": [{"type" ("PRIMARY"|"PRIVATE"), "ipAddress"}]}], "buckets": [{"name",
    /// "location"}]}}}`. A snapshot keeps its disk's image file, a disk made from a snapshot keeps
    /// the snapshot's.
    pub fn load_fleet(&self, spec: &serde_json::Value) -> Result<(), Error> {
        self.control("POST", "/_snapsentry/fleet", Some(spec))
            .map(drop)
    }

    /// `{"disks": [{"volumeHandle", "selfLink", "project", "zone", "name", "status", "labels",
    /// "image", "sourceSnapshot"}], "snapshots": [{"name", "project", "status", "labels",
    /// "sourceDisk", "image"}], "operations": {"started", "done", "failed"}, "tokensIssued": n (by the
    /// metadata server), "selfSignedCalls": n (calls a self-signed JWT authorized)}`.
    pub fn state(&self) -> Result<serde_json::Value, Error> {
        self.control("GET", "/_snapsentry/state", None)
    }

    /// The snapsentry-made disks and snapshots the fake holds (labelled
    /// `snapsentry-io-managed-by: snapsentry`): (disk names, snapshot names).
    pub fn leftovers(&self) -> Result<(Vec<String>, Vec<String>), Error> {
        let state = self.state()?;
        let made = |kind: &str| -> Vec<String> {
            state[kind]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["labels"]["snapsentry-io-managed-by"] == "snapsentry")
                .filter_map(|r| r["name"].as_str().map(str::to_owned))
                .collect()
        };
        Ok((made("disks"), made("snapshots")))
    }

    /// The disk image file behind the disk with this CSI volume handle
    /// (`projects/P/zones/Z/disks/NAME`), if the fake has that disk.
    pub fn image_of(&self, volume_handle: &str) -> Result<Option<PathBuf>, Error> {
        let state = self.state()?;
        Ok(state["disks"].as_array().and_then(|disks| {
            disks
                .iter()
                .find(|disk| disk["volumeHandle"] == volume_handle)
                .and_then(|disk| disk["image"].as_str())
                .map(PathBuf::from)
        }))
    }

    /// Replaces the fault plan and zeroes the counters, e.g. `{"disks.insert": {"throttleEvery":
    /// 2, "serverErrorEvery": 3, "serverErrorStatus": 503, "quotaEvery": 1, "quotaSourceDisks":
    /// ["db-01-boot"]}}` (operation names in the fake's header; `quotaSourceDisks`: every disk
    /// made from a snapshot of those disks fails with `QUOTA_EXCEEDED`).
    pub fn set_faults(&self, plan: &serde_json::Value) -> Result<(), Error> {
        self.control("POST", "/_snapsentry/faults", Some(plan))
            .map(drop)
    }

    /// Calls per operation since the last [`Self::set_faults`]: `{"disks.insert": {"calls": n,
    /// "throttled": n, "serverErrors": n, "quotaErrors": n}, ...}`.
    pub fn fault_counters(&self) -> Result<serde_json::Value, Error> {
        self.control("GET", "/_snapsentry/faults", None)
    }

    /// A bearer token from the metadata server, as a pod with workload identity gets it.
    pub fn token(&self) -> Result<String, Error> {
        let body = self
            .fake
            .expect_ok(self.metadata_token(true)?, METADATA_TOKEN_PATH)?;
        body["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::Status {
                request: format!("GET {METADATA_TOKEN_PATH}"),
                status: 200,
                body: "no access_token".into(),
            })
    }

    /// `GET` [`METADATA_TOKEN_PATH`], with `Metadata-Flavor: Google` when `flavor`; the answer as
    /// it comes.
    pub fn metadata_token(&self, flavor: bool) -> Result<Response, Error> {
        self.metadata(METADATA_TOKEN_PATH, flavor)
    }

    /// `GET path` of the metadata server (e.g. `/computeMetadata/v1/instance/zone`), with
    /// `Metadata-Flavor: Google` when `flavor`; the answer as it comes.
    pub fn metadata(&self, path: &str, flavor: bool) -> Result<Response, Error> {
        let headers: &[(&str, &str)] = if flavor {
            &[("Metadata-Flavor", "Google")]
        } else {
            &[]
        };
        self.fake.exchange("GET", path, headers, "")
    }

    /// One request to the fake; `target` is a path with query or a full URL on this server (a
    /// `selfLink`), `token` goes into `Authorization: Bearer`, `body` is sent as JSON.
    pub fn request(
        &self,
        method: &str,
        target: &str,
        token: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> Result<Response, Error> {
        let body = body.map(ToString::to_string).unwrap_or_default();
        let auth = token.map(|token| format!("Bearer {token}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(auth) = &auth {
            headers.push(("Authorization", auth));
        }
        self.fake.exchange(method, target, &headers, &body)
    }

    fn control(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, Error> {
        self.fake.control(method, path, body)
    }

    /// The server's log so far (requests, tracebacks), for a failing test to print.
    pub fn log_tail(&self) -> String {
        self.fake.log_tail()
    }

    /// The temporary directory of this server (its log is `fake_gce.log` there).
    pub fn dir(&self) -> &Path {
        self.fake.dir()
    }
}
