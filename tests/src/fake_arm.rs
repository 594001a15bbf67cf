//! A fake Azure Resource Manager for Azure tests: `tests/azure/fake_arm.py` (Python standard library
//! only) on a free loopback port. Azure has no emulator for its control plane, so this fake answers
//! the ARM calls snapsentry's Azure provider makes (VM, disk and snapshot calls with the
//! long-running-operation dance, SAS grants pointing at Azurite, network and data-service listings)
//! in the documented shapes; `tests/tests/fake_arm.rs` checks it against Microsoft's published
//! examples. Its header lists every endpoint and the control API.
//!
//! The interpreter is the venv's of `scripts/toolchain.sh` when there is one, else `python3` on
//! `PATH`.
//!
//! ```no_run
//! # fn example() -> Result<(), snapsentry_tests::fake_arm::Error> {
//! use snapsentry_tests::fake_arm::FakeArm;
//!
//! let arm = FakeArm::start()?;
//! arm.load_fleet(&serde_json::json!({"subscriptions": {"sub-1": {"resourceGroups": {}}}}))?;
//! let token = arm.token()?;
//! let vms = arm.request("GET", "/subscriptions/sub-1/providers/Microsoft.Compute/virtualMachines?api-version=2024-07-01", Some(&token), None)?;
//! let state = arm.state()?;
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

use crate::controlplane::cache_dir;
use crate::process::{Server, tied_to_this_process};

/// The tenant the tests ask tokens of (the fake accepts any unless the fleet names one).
pub const TENANT: &str = "00000000-0000-0000-0000-00000000feed";

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
    #[error("fake ARM exited during startup ({status}); last lines of its log:\n{tail}")]
    Exited {
        /// How it exited.
        status: ExitStatus,
        /// The end of its log.
        tail: String,
    },
    /// The server did not become ready in time.
    #[error("fake ARM not ready after {STARTUP_TIMEOUT:?}; last lines of its log:\n{tail}")]
    NotReady {
        /// The end of its log.
        tail: String,
    },
    /// A request got an unexpected answer.
    #[error("fake ARM {request}: HTTP {status}: {body}")]
    Status {
        /// Method and path.
        request: String,
        /// The HTTP status.
        status: u16,
        /// The response body.
        body: String,
    },
    /// A body was not the JSON expected.
    #[error("{context}: invalid JSON")]
    Json {
        /// What was parsed.
        context: String,
        /// The underlying failure.
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

/// One HTTP answer of the fake.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

impl Response {
    /// The value of header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value, Error> {
        serde_json::from_str(&self.body).map_err(|source| Error::Json {
            context: format!("HTTP {} body", self.status),
            source,
        })
    }
}

/// A running fake ARM server; dropping it kills the server and removes its directory.
#[derive(Debug)]
pub struct FakeArm {
    server: Server,
    port: u16,
}

impl FakeArm {
    /// Starts the fake on a free loopback port (it binds port 0 and writes the port it got to a
    /// file, so there is no race for it) and waits until it answers.
    pub fn start() -> Result<Self, Error> {
        let started = Instant::now();
        let server = Server::spawn("snapsentry-fake-arm-", "fake_arm.log", |dir| {
            let mut command = tied_to_this_process(python());
            command
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("azure/fake_arm.py"))
                .arg("--port-file")
                .arg(dir.join("port"))
                .env("PYTHONUNBUFFERED", "1")
                // No __pycache__ beside arm_fleet.py in the source tree.
                .env("PYTHONDONTWRITEBYTECODE", "1");
            command
        })
        .map_err(Error::io(
            "starting the fake ARM through setpriv (util-linux)",
        ))?;
        let port_file = server.dir.path().join("port");
        let mut arm = FakeArm { server, port: 0 };
        arm.wait_ready(&port_file, started + STARTUP_TIMEOUT)?;
        debug!(endpoint = %arm.endpoint(), elapsed = ?started.elapsed(), "fake ARM ready");
        Ok(arm)
    }

    fn wait_ready(&mut self, port_file: &Path, deadline: Instant) -> Result<(), Error> {
        loop {
            if let Some(status) = self
                .server
                .child
                .try_wait()
                .map_err(Error::io("waiting for the fake ARM"))?
            {
                let tail = self.log_tail();
                return Err(Error::Exited { status, tail });
            }
            if self.port == 0 {
                self.port = fs::read_to_string(port_file)
                    .ok()
                    .and_then(|text| text.trim().parse().ok())
                    .unwrap_or(0);
            }
            if self.port != 0 && self.state().is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let tail = self.log_tail();
                return Err(Error::NotReady { tail });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// `http://127.0.0.1:PORT`: both the ARM endpoint and the authority host (token endpoint
    /// `{endpoint}/{tenant}/oauth2/v2.0/token`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Replaces the fake's state with the fleet `spec`: `{"pageSize": n, "tenant", "clientId",
    /// "clientSecret" (each optional; when given, the token endpoint checks them), "federatedToken"
    /// (the workload identity assertion accepted), "certificate": {"modulus": HEX, "exponent": n}
    /// (the public key client-certificate assertions must verify with, e.g.
    /// [`TestCertificate::modulus`]), "managedIdentityClientId" (the only `client_id` IMDS
    /// accepts), "subscriptions":
    /// {SUB: {"resourceGroups": {RG: {"location", "vms": [{"name", "osType": "Linux"|"Windows",
    /// "powerState": "running"|"deallocated"|..., "location", "tags", "size", "osDisk": {"name",
    /// "sizeGB", "sas": AZURITE_SAS_URL} or {"name", "vhd": URI}, "dataDisks": [{"name", "sizeGB",
    /// "sas"}], "nics": [{"name", "privateIp", "publicIp": {"name", "ip"}, "nsg", "vnet", "subnet",
    /// "subnetNsg"}]}], "nsgs": [{"name", "rules": [{"name", "port", "source", "access",
    /// "priority", "direction", "protocol"}]}], "loadBalancers": [{"name", "publicIp",
    /// "inboundNatRules": [{"name", "frontendPort", "backendPort", "nic"}]}], "storageAccounts" |
    /// "sqlServers" | "postgresFlexibleServers" | "mysqlFlexibleServers" | "cosmosAccounts" |
    /// "keyVaults": [{"name", "location", "tags", "properties": {...}}]}}}}}`. A snapshot of a
    /// disk (or of a snapshot) shares its source's SAS URL.
    pub fn load_fleet(&self, spec: &serde_json::Value) -> Result<(), Error> {
        self.control("POST", "/_snapsentry/fleet", Some(spec))
            .map(drop)
    }

    /// `{"snapshots": [ID...], "activeGrants": n, "grants": [ID...], "grantsEver": n,
    /// "tokensIssued": n}`.
    pub fn state(&self) -> Result<serde_json::Value, Error> {
        self.control("GET", "/_snapsentry/state", None)
    }

    /// Replaces the fault plan and zeroes the counters, e.g. `{"snapshots.put": {"throttleEvery":
    /// 2, "serverErrorEvery": 3, "serverErrorStatus": 503}}` (operation names in the fake's header).
    pub fn set_faults(&self, plan: &serde_json::Value) -> Result<(), Error> {
        self.control("POST", "/_snapsentry/faults", Some(plan))
            .map(drop)
    }

    /// Calls per operation since the last [`Self::set_faults`]: `{"snapshots.put": {"calls": n,
    /// "throttled": n, "serverErrors": n}, ...}`.
    pub fn fault_counters(&self) -> Result<serde_json::Value, Error> {
        self.control("GET", "/_snapsentry/faults", None)
    }

    /// A bearer token from the client-credentials flow, as a client would get it.
    pub fn token(&self) -> Result<String, Error> {
        let path = format!("/{TENANT}/oauth2/v2.0/token");
        let form = "grant_type=client_credentials&client_id=snapsentry&client_secret=fake\
                    &scope=https%3A%2F%2Fmanagement.azure.com%2F.default";
        let response = self.send("POST", &path, None, Some(form))?;
        let body = expect_ok(response, &path)?;
        body["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::Status {
                request: format!("POST {path}"),
                status: 200,
                body: "no access_token".into(),
            })
    }

    /// A token request with this form body (any flow) at the fake's token endpoint for
    /// [`TENANT`]; the answer as it comes.
    pub fn request_token(&self, form: &str) -> Result<Response, Error> {
        self.send(
            "POST",
            &format!("/{TENANT}/oauth2/v2.0/token"),
            None,
            Some(form),
        )
    }

    /// `GET /metadata/identity/oauth2/token?{query}` as a managed identity asks IMDS, with the
    /// `Metadata: true` header when `metadata`.
    pub fn imds_token(&self, query: &str, metadata: bool) -> Result<Response, Error> {
        let path = format!("/metadata/identity/oauth2/token?{query}");
        let mut headers = Vec::new();
        if metadata {
            headers.push(("Metadata", "true"));
        }
        let r = crate::http::request(self.port, "GET", &path, &headers, b"", REQUEST_TIMEOUT)
            .map_err(Error::io(format!("fake ARM GET {path}")))?;
        Ok(Response {
            status: r.status,
            body: r.text(),
            headers: r.headers,
        })
    }

    /// One request to the fake; `target` is a path with query or a full URL on this server (a
    /// `nextLink`, an `Azure-AsyncOperation` URL), `token` goes into `Authorization: Bearer`.
    pub fn request(
        &self,
        method: &str,
        target: &str,
        token: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> Result<Response, Error> {
        let path = target.strip_prefix(&self.endpoint()).unwrap_or(target);
        let body = body.map(ToString::to_string);
        self.send(method, path, token, body.as_deref())
    }

    fn control(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, Error> {
        expect_ok(self.request(method, path, None, body)?, path)
    }

    /// A minimal HTTP/1.1 exchange (the tests crate has no HTTP client dependency): one request
    /// per connection, read to EOF.
    fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Result<Response, Error> {
        let body = body.unwrap_or_default();
        let content_type = if body.starts_with('{') {
            "application/json"
        } else {
            "application/x-www-form-urlencoded"
        };
        let auth = token.map(|token| format!("Bearer {token}"));
        let mut headers = vec![("Content-Type", content_type)];
        if let Some(auth) = &auth {
            headers.push(("Authorization", auth));
        }
        let exchange = || -> io::Result<Response> {
            let r = crate::http::request(
                self.port,
                method,
                path,
                &headers,
                body.as_bytes(),
                REQUEST_TIMEOUT,
            )?;
            Ok(Response {
                status: r.status,
                body: r.text(),
                headers: r.headers,
            })
        };
        exchange().map_err(Error::io(format!("fake ARM {method} {path}")))
    }

    /// The server's log so far (requests, tracebacks), for a failing test to print.
    pub fn log_tail(&self) -> String {
        self.server.log_tail(LOG_TAIL_LINES)
    }

    /// The temporary directory of this server (its log is `fake_arm.log` there).
    pub fn dir(&self) -> &Path {
        self.server.dir.path()
    }
}

/// A self-signed RSA certificate made with `openssl` for client-certificate credentials: the
/// PEM a `clientCertificate` Secret key holds, and the public modulus the fake verifies with.
#[derive(Debug)]
pub struct TestCertificate {
    /// The certificate and its unencrypted PKCS#8 private key, PEM.
    pub pem: String,
    /// The RSA modulus, uppercase hex (the fleet's `certificate.modulus`).
    pub modulus: String,
    /// The private key file (for [`TestCertificate::sign`]).
    pub key_file: PathBuf,
}

impl TestCertificate {
    /// A new certificate and key in `dir` (the test's temporary directory).
    pub fn generate(dir: &Path) -> Result<Self, Error> {
        let key_file = dir.join("client.key");
        let cert_file = dir.join("client.crt");
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=snapsentry-test",
            "-keyout",
            &key_file.display().to_string(),
            "-out",
            &cert_file.display().to_string(),
        ])?;
        let modulus = String::from_utf8_lossy(&openssl(&[
            "rsa",
            "-noout",
            "-modulus",
            "-in",
            &key_file.display().to_string(),
        ])?)
        .trim()
        .trim_start_matches("Modulus=")
        .to_owned();
        let read =
            |p: &Path| fs::read_to_string(p).map_err(Error::io(format!("reading {}", p.display())));
        let pem = format!("{}{}", read(&cert_file)?, read(&key_file)?);
        Ok(Self {
            pem,
            modulus,
            key_file,
        })
    }

    /// The RS256 (PKCS#1 v1.5, SHA-256) signature of `input` with the key.
    pub fn sign(&self, input: &[u8]) -> Result<Vec<u8>, Error> {
        let data = self.key_file.with_extension("input");
        fs::write(&data, input).map_err(Error::io("writing the signing input"))?;
        openssl(&[
            "dgst",
            "-sha256",
            "-sign",
            &self.key_file.display().to_string(),
            &data.display().to_string(),
        ])
    }
}

/// Runs `openssl` (the Debian package) with `args`; its standard output.
fn openssl(args: &[&str]) -> Result<Vec<u8>, Error> {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .map_err(Error::io("running openssl"))?;
    if !out.status.success() {
        return Err(Error::Status {
            request: format!("openssl {}", args.first().unwrap_or(&"")),
            status: 0,
            body: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(out.stdout)
}

/// The venv's interpreter when `scripts/toolchain.sh` made one, else `python3` from `PATH`.
pub(crate) fn python() -> PathBuf {
    let venv = cache_dir().join("venv/bin/python");
    if venv.is_file() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// The JSON body of a 200 answer to `what`, or an error quoting the answer.
fn expect_ok(response: Response, what: &str) -> Result<serde_json::Value, Error> {
    if response.status != 200 {
        return Err(Error::Status {
            request: what.to_owned(),
            status: response.status,
            body: response.body,
        });
    }
    response.json()
}
