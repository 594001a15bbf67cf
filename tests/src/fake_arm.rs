//! A fake Azure Resource Manager for Azure tests: `tests/azure/fake_arm.py` (Python standard library
//! only) on a free loopback port. Azure has no emulator for its control plane, so this fake answers
//! the ARM calls snapsentry's Azure provider makes (VM, disk and snapshot calls with the
//! long-running-operation dance, SAS grants pointing at Azurite, network and data-service listings)
//! in the documented shapes; `tests/tests/fake_arm.rs` checks it against Microsoft's published
//! examples. Its header lists every endpoint and the control API.
//!
//! It runs as a [`crate::python_fake::PythonFake`].
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
use std::path::{Path, PathBuf};

use crate::python_fake::PythonFake;
pub use crate::python_fake::{Error, Response};

/// The tenant the tests ask tokens of (the fake accepts any unless the fleet names one).
pub const TENANT: &str = "00000000-0000-0000-0000-00000000feed";

/// A running fake ARM server; dropping it kills the server and removes its directory.
#[derive(Debug)]
pub struct FakeArm {
    fake: PythonFake,
}

impl FakeArm {
    /// Starts the fake on a free loopback port (it binds port 0 and writes the port it got to a
    /// file, so there is no race for it) and waits until it answers.
    pub fn start() -> Result<Self, Error> {
        let fake = PythonFake::start(
            "fake ARM",
            "azure/fake_arm.py",
            "snapsentry-fake-arm-",
            "fake_arm.log",
        )?;
        Ok(FakeArm { fake })
    }

    /// `http://127.0.0.1:PORT`: both the ARM endpoint and the authority host (token endpoint
    /// `{endpoint}/{tenant}/oauth2/v2.0/token`).
    pub fn endpoint(&self) -> String {
        self.fake.endpoint()
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
        let response = self.send("POST", &path, None, form)?;
        let body = self.fake.expect_ok(response, &path)?;
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
        self.send("POST", &format!("/{TENANT}/oauth2/v2.0/token"), None, form)
    }

    /// `GET /metadata/identity/oauth2/token?{query}` as a managed identity asks IMDS, with the
    /// `Metadata: true` header when `metadata`.
    pub fn imds_token(&self, query: &str, metadata: bool) -> Result<Response, Error> {
        let path = format!("/metadata/identity/oauth2/token?{query}");
        let headers: &[(&str, &str)] = if metadata {
            &[("Metadata", "true")]
        } else {
            &[]
        };
        self.fake.exchange("GET", &path, headers, "")
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
        let body = body.map(ToString::to_string).unwrap_or_default();
        self.send(method, target, token, &body)
    }

    fn control(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, Error> {
        self.fake.control(method, path, body)
    }

    /// One exchange: a JSON or form `body`, `token` as the bearer.
    fn send(
        &self,
        method: &str,
        target: &str,
        token: Option<&str>,
        body: &str,
    ) -> Result<Response, Error> {
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
        self.fake.exchange(method, target, &headers, body)
    }

    /// The server's log so far (requests, tracebacks), for a failing test to print.
    pub fn log_tail(&self) -> String {
        self.fake.log_tail()
    }

    /// The temporary directory of this server (its log is `fake_arm.log` there).
    pub fn dir(&self) -> &Path {
        self.fake.dir()
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
