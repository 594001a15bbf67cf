//! A fake Google Compute Engine control plane for GCP tests: `tests/gcp/fake_gce.py` (Python
//! standard library only) on a free loopback port. Compute Engine has no emulator, so this fake
//! answers the Compute v1 calls snapsentry's GCP provider makes (instances, disks, snapshots,
//! firewalls, project metadata, zonal and global operations with the PENDING → RUNNING → DONE
//! dance), the Cloud SQL Admin and GCS bucket listings, and both token endpoints (the
//! service-account JWT grant and the GKE metadata server), in the documented shapes;
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

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use tracing::debug;

pub use crate::fake_arm::Response;
use crate::fake_arm::python;
use crate::process::{Server, tied_to_this_process};

/// The path of the GKE metadata server's token for the pod's service account.
pub const METADATA_TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";

/// Lines of the server's log quoted in an error.
const LOG_TAIL_LINES: usize = 40;

/// Readiness polling interval.
const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// How long the server may take to listen.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the fake could not be started or a request to it failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file system, process or socket operation failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// The server exited while starting.
    #[error("fake GCE exited during startup ({status}); last lines of its log:\n{tail}")]
    Exited {
        /// How it exited.
        status: ExitStatus,
        /// The end of its log.
        tail: String,
    },
    /// The server did not become ready in time.
    #[error("fake GCE not ready after {STARTUP_TIMEOUT:?}; last lines of its log:\n{tail}")]
    NotReady {
        /// The end of its log.
        tail: String,
    },
    /// A request got an unexpected answer.
    #[error("fake GCE {request}: HTTP {status}: {body}")]
    Status {
        /// Method and path.
        request: String,
        /// The HTTP status.
        status: u16,
        /// The response body.
        body: String,
    },
}

impl Error {
    fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

/// A running fake Compute Engine; dropping it kills the server and removes its directory.
#[derive(Debug)]
pub struct FakeGce {
    server: Server,
    port: u16,
}

impl FakeGce {
    /// Starts the fake on a free loopback port (it binds port 0 and writes the port it got to a
    /// file, so there is no race for it) and waits until it answers.
    pub fn start() -> Result<Self, Error> {
        let started = Instant::now();
        let server = Server::spawn("snapsentry-fake-gce-", "fake_gce.log", |dir| {
            let mut command = tied_to_this_process(python());
            command
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("gcp/fake_gce.py"))
                .arg("--port-file")
                .arg(dir.join("port"))
                .env("PYTHONUNBUFFERED", "1")
                // No __pycache__ beside gce_fleet.py (or fake_arm.py) in the source tree.
                .env("PYTHONDONTWRITEBYTECODE", "1");
            command
        })
        .map_err(Error::io(
            "starting the fake GCE through setpriv (util-linux)",
        ))?;
        let port_file = server.dir.path().join("port");
        let mut gce = FakeGce { server, port: 0 };
        let deadline = started + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = gce
                .server
                .child
                .try_wait()
                .map_err(Error::io("waiting for the fake GCE"))?
            {
                let tail = gce.log_tail();
                return Err(Error::Exited { status, tail });
            }
            if gce.port == 0 {
                gce.port = fs::read_to_string(&port_file)
                    .ok()
                    .and_then(|text| text.trim().parse().ok())
                    .unwrap_or(0);
            }
            if gce.port != 0 && gce.state().is_ok() {
                debug!(endpoint = %gce.endpoint(), elapsed = ?started.elapsed(), "fake GCE ready");
                return Ok(gce);
            }
            if Instant::now() >= deadline {
                let tail = gce.log_tail();
                return Err(Error::NotReady { tail });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// `http://127.0.0.1:PORT`: the root of every API it fakes (`/compute/v1`,
    /// `/sql/v1beta4`, `/storage/v1`), of the token URL (`{endpoint}/token`, a service-account
    /// key's `token_uri`) and of the metadata server ([`METADATA_TOKEN_PATH`]).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Replaces the fake's state with the fleet `spec`:
    /// `{"pageSize": n (default page size of lists without maxResults, 500),
    /// "serviceAccount": {"email", "modulus": HEX, "exponent": n (65537)} (the key the JWT grant
    /// verifies with, e.g. a [`crate::fake_arm::TestCertificate`]'s modulus; without it only the
    /// metadata server issues tokens), "projects": {PROJECT: {"zones": [ZONE...] (listed in the
    /// aggregated list even when empty), "commonMetadata": {KEY: VALUE} (e.g. "ssh-keys"),
    /// "instances": [{"name", "zone" ("us-central1-a"), "status" ("RUNNING"|"TERMINATED"|...),
    /// "os" ("WINDOWS" gives the boot disk Windows licenses and guest OS features, anything else
    /// Debian's), "machineType", "labels": {..}, "tags": [NETWORK TAG...], "serviceAccounts":
    /// [EMAIL...], "network" ("default"), "internalIp", "externalIp" (an ONE_TO_ONE_NAT access
    /// config's natIP), "externalIpv6" (a DIRECT_IPV6 ipv6AccessConfig), "metadata": {KEY: VALUE},
    /// "disks": [{"name", "image": RAW DISK IMAGE FILE, "sizeGb" (10), "boot" (the first disk),
    /// "deviceName", "labels"}]}], "firewalls": [{"name", "network", "direction" ("INGRESS"),
    /// "priority" (1000), "sourceRanges", "destinationRanges", "sourceTags", "targetTags",
    /// "targetServiceAccounts", "allowed": [{"IPProtocol", "ports"}] (tcp/22), "deny": bool
    /// (the rules become `denied`), "disabled"}], "sqlInstances": [{"name", "region",
    /// "databaseVersion", "ipAddresses": [{"type" ("PRIMARY"|"PRIVATE"), "ipAddress"}]}],
    /// "buckets": [{"name", "location"}]}}}`. A snapshot keeps its disk's image file, a disk made
    /// from a snapshot keeps the snapshot's.
    pub fn load_fleet(&self, spec: &serde_json::Value) -> Result<(), Error> {
        self.control("POST", "/_snapsentry/fleet", Some(spec))
            .map(drop)
    }

    /// `{"disks": [{"volumeHandle", "selfLink", "project", "zone", "name", "status", "labels",
    /// "image", "sourceSnapshot"}], "snapshots": [{"name", "project", "status", "labels",
    /// "sourceDisk", "image"}], "operations": {"started", "done", "failed"}, "tokensIssued": n}`.
    pub fn state(&self) -> Result<serde_json::Value, Error> {
        self.control("GET", "/_snapsentry/state", None)
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
    /// 2, "serverErrorEvery": 3, "serverErrorStatus": 503, "quotaEvery": 1}}` (operation names in
    /// the fake's header).
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
        let body = expect_ok(self.metadata_token(true)?, METADATA_TOKEN_PATH)?;
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
        let headers: &[(&str, &str)] = if flavor {
            &[("Metadata-Flavor", "Google")]
        } else {
            &[]
        };
        self.exchange("GET", METADATA_TOKEN_PATH, headers, "")
    }

    /// `POST /token` with this form body (the JWT-bearer grant); the answer as it comes.
    pub fn request_token(&self, form: &str) -> Result<Response, Error> {
        let headers = [("Content-Type", "application/x-www-form-urlencoded")];
        self.exchange("POST", "/token", &headers, form)
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
        let path = target.strip_prefix(&self.endpoint()).unwrap_or(target);
        let body = body.map(ToString::to_string).unwrap_or_default();
        let auth = token.map(|token| format!("Bearer {token}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(auth) = &auth {
            headers.push(("Authorization", auth));
        }
        self.exchange(method, path, &headers, &body)
    }

    fn control(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, Error> {
        expect_ok(self.request(method, path, None, body)?, path)
    }

    /// A minimal HTTP/1.1 exchange (the tests crate has no HTTP client dependency).
    fn exchange(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<Response, Error> {
        let r = crate::http::request(
            self.port,
            method,
            path,
            headers,
            body.as_bytes(),
            REQUEST_TIMEOUT,
        )
        .map_err(Error::io(format!("fake GCE {method} {path}")))?;
        Ok(Response {
            status: r.status,
            body: r.text(),
            headers: r.headers,
        })
    }

    /// The server's log so far (requests, tracebacks), for a failing test to print.
    pub fn log_tail(&self) -> String {
        self.server.log_tail(LOG_TAIL_LINES)
    }

    /// The temporary directory of this server (its log is `fake_gce.log` there).
    pub fn dir(&self) -> &Path {
        self.server.dir.path()
    }
}

/// The JSON body of a 200 answer to `what`, or an error quoting the answer.
fn expect_ok(response: Response, what: &str) -> Result<serde_json::Value, Error> {
    let status = response.status;
    if status == 200
        && let Ok(body) = serde_json::from_str(&response.body)
    {
        return Ok(body);
    }
    Err(Error::Status {
        request: what.to_owned(),
        status,
        body: response.body,
    })
}
