//! A real Kubernetes control plane for tests: etcd and kube-apiserver, started on free loopback ports
//! in a temporary directory, with their own certificate authority and an admin kubeconfig. For the
//! single-node cluster ([`crate::cluster`]) the same pair is started ready for a node to join
//! ([`Options::node`]).
//!
//! The binaries come from `KUBEBUILDER_ASSETS` when it is set, otherwise from the toolchain cache that
//! `scripts/toolchain.sh` fills (`$SNAPSENTRY_CACHE/k8s-<version>/`). A missing binary is an error
//! that names the script: a test that needs a control plane fails, it never skips.
//!
//! ```no_run
//! # async fn example() -> Result<(), snapsentry_tests::controlplane::Error> {
//! use snapsentry_tests::ControlPlane;
//!
//! let control_plane = ControlPlane::start().await?;
//! let client = control_plane.client().await?;
//! let output = control_plane.kubectl(["get", "namespaces", "-o", "json"])?;
//! # drop((client, output));
//! # Ok(())
//! # }
//! ```

mod certs;
mod server;
mod toolchain;

use std::ffi::OsStr;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use tracing::{debug, warn};

pub use toolchain::{Versions, cache_dir, toolchain_dir};

use crate::process::tied_to_this_process;
use certs::{Certificates, write_kubeconfig};
use server::remove_stale_dirs;
pub(crate) use server::{Server, free_ports};

/// The `kubernetes` Service's ClusterIP: the first address of `--service-cluster-ip-range`.
pub const SERVICE_IP: &str = "10.0.0.1";

/// Readiness polling interval: kube-apiserver needs a few seconds, so finer polling buys nothing.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Start attempts when a port picked as free was taken by someone else before the server bound it.
const START_ATTEMPTS: usize = 3;

/// Prefix of the per-control-plane temporary directories; the process id follows, so directories
/// left behind by dead test processes can be recognised and removed.
const DIR_PREFIX: &str = "snapsentry-cp-";

/// Why a control plane could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `tests/controlplane/versions.env` lacks a key or has a malformed line.
    #[error("tests/controlplane/versions.env: {0}")]
    Versions(String),
    /// The directory the binaries were looked up in lacks some of them.
    #[error(
        "control plane binaries missing in {}: {}; run scripts/toolchain.sh to build them, or set \
         KUBEBUILDER_ASSETS to a directory holding kube-apiserver, etcd and kubectl",
        dir.display(), missing.join(", ")
    )]
    MissingBinaries {
        /// Where the binaries were looked for.
        dir: PathBuf,
        /// File names that were not there.
        missing: Vec<&'static str>,
    },
    /// A file system or process operation failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// Generating the CA, serving, client or service-account keys failed.
    #[error("generating control plane certificates")]
    Certificates(#[from] rcgen::Error),
    /// The admin kubeconfig could not be turned into a client configuration.
    #[error("loading kubeconfig {}", path.display())]
    Kubeconfig {
        /// The kubeconfig file.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: KubeconfigError,
    },
    /// A `kube::Client` could not be built from the configuration.
    #[error("building a Kubernetes client")]
    Client(#[source] kube::Error),
    /// etcd or kube-apiserver exited while the control plane was starting.
    #[error("{name} exited during startup ({status}); last lines of {}:\n{tail}", log.display())]
    Exited {
        /// Which component.
        name: &'static str,
        /// How it exited.
        status: ExitStatus,
        /// Its log file (in the removed temporary directory).
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// The component did not become ready in time.
    #[error(
        "{name} not ready after {timeout:?} (last probe: {last_probe}); last lines of {}:\n{tail}",
        log.display()
    )]
    NotReady {
        /// Which component.
        name: &'static str,
        /// How long it was given.
        timeout: Duration,
        /// The outcome of the last readiness probe.
        last_probe: String,
        /// Its log file (in the removed temporary directory).
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// helm is not in the toolchain cache.
    #[error("helm missing at {}; run scripts/toolchain.sh to build it", .0.display())]
    MissingHelm(PathBuf),
    /// A kubectl call the harness made failed.
    #[error("kubectl {args} failed: {stderr}")]
    Kubectl {
        /// The arguments, space-separated.
        args: String,
        /// What kubectl said.
        stderr: String,
    },
}

impl Error {
    fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }

    /// A server lost the race for a port that was free when it was picked.
    fn is_port_clash(&self) -> bool {
        matches!(self, Error::Exited { tail, .. } if tail.contains("address already in use"))
    }
}

/// How to start a control plane; [`Options::default`] reads `KUBEBUILDER_ASSETS`.
#[derive(Debug, Clone)]
pub struct Options {
    /// Directory holding `kube-apiserver`, `etcd` and `kubectl`.
    pub assets: PathBuf,
    /// How long etcd and kube-apiserver may take to become ready.
    pub startup_timeout: Duration,
    /// A node will join: see [`NodeAccess`]. `None` (the default) for the API-server-only control
    /// plane of the other tests.
    pub node: Option<NodeAccess>,
}

/// What changes when a node joins the control plane. kube-apiserver listens on every address, not
/// only loopback, and publishes `address` and its port as the endpoint of the `kubernetes` Service
/// (whose ClusterIP, [`SERVICE_IP`], its certificate names, with `address`): that is what pods
/// dial. The ServiceAccount admission plugin is on (a controller-manager now creates the service
/// accounts and the kubelet mounts their tokens), and the Node authorizer with the NodeRestriction
/// admission plugin admit the kubelet by its client certificate (`system:node:<name>`, see
/// [`ControlPlane::node_kubeconfig`]).
#[derive(Debug, Clone)]
pub struct NodeAccess {
    /// The node's name.
    pub name: String,
    /// The node's address, which pods can reach.
    pub address: Ipv4Addr,
}

impl Default for Options {
    fn default() -> Self {
        let assets = std::env::var_os("KUBEBUILDER_ASSETS")
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(toolchain_dir);
        Options {
            assets,
            startup_timeout: Duration::from_secs(60),
            node: None,
        }
    }
}

/// The binaries of one control plane.
#[derive(Debug, Clone)]
struct Binaries {
    apiserver: PathBuf,
    etcd: PathBuf,
    kubectl: PathBuf,
    /// Not part of `KUBEBUILDER_ASSETS`; always from the toolchain cache.
    helm: PathBuf,
}

impl Binaries {
    fn locate(assets: &Path) -> Result<Self, Error> {
        let binaries = Binaries {
            apiserver: assets.join("kube-apiserver"),
            etcd: assets.join("etcd"),
            kubectl: assets.join("kubectl"),
            helm: toolchain_dir().join("helm"),
        };
        let missing: Vec<&'static str> = [
            ("kube-apiserver", &binaries.apiserver),
            ("etcd", &binaries.etcd),
            ("kubectl", &binaries.kubectl),
        ]
        .into_iter()
        .filter(|(_, path)| !path.is_file())
        .map(|(name, _)| name)
        .collect();
        if missing.is_empty() {
            Ok(binaries)
        } else {
            Err(Error::MissingBinaries {
                dir: assets.to_owned(),
                missing,
            })
        }
    }
}

/// A running etcd + kube-apiserver pair; dropping it kills both and removes their directory.
#[derive(Debug)]
pub struct ControlPlane {
    // Field order is drop order: the API server goes before its storage, and both before the
    // directory holding their data and logs.
    apiserver: Server,
    etcd: Server,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    /// The kubelet's kubeconfig, when a node joins.
    node_kubeconfig: Option<PathBuf>,
    ca_cert: PathBuf,
    server_url: String,
    binaries: Binaries,
    /// Set once [`Self::install_crds`] has succeeded on this control plane.
    crds_installed: OnceLock<()>,
}

impl ControlPlane {
    /// Starts a control plane with [`Options::default`].
    pub async fn start() -> Result<Self, Error> {
        Self::start_with(Options::default()).await
    }

    /// Starts a control plane and waits until kube-apiserver's `/readyz` answers.
    pub async fn start_with(options: Options) -> Result<Self, Error> {
        let binaries = Binaries::locate(&options.assets)?;
        remove_stale_dirs();
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            match Self::start_once(&binaries, &options).await {
                Err(error) if error.is_port_clash() && attempt < START_ATTEMPTS => {
                    warn!(%error, attempt, "control plane lost a port race, retrying");
                    attempt += 1;
                }
                Ok(control_plane) => {
                    debug!(
                        server = %control_plane.server_url,
                        elapsed = ?started.elapsed(),
                        "control plane ready"
                    );
                    return Ok(control_plane);
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// A control plane shared by every test of this process that asks for it: started on the first
    /// call, never stopped. Its servers die with the process (see `tied_to_this_process`) and its
    /// directory is removed by the next process that starts a control plane.
    pub async fn shared() -> Result<&'static ControlPlane, Error> {
        static SHARED: tokio::sync::OnceCell<ControlPlane> = tokio::sync::OnceCell::const_new();
        SHARED.get_or_try_init(ControlPlane::start).await
    }

    async fn start_once(binaries: &Binaries, options: &Options) -> Result<Self, Error> {
        let deadline = Instant::now() + options.startup_timeout;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
            .tempdir()
            .map_err(Error::io("creating the control plane directory"))?;
        let files = Certificates::generate(options.node.as_ref())?.write(dir.path())?;
        let [etcd_client_port, etcd_peer_port, apiserver_port] = free_ports()?;

        let etcd_client_url = format!("http://127.0.0.1:{etcd_client_port}");
        let etcd_peer_url = format!("http://127.0.0.1:{etcd_peer_port}");
        let mut etcd_command = tied_to_this_process(&binaries.etcd);
        etcd_command
            .arg("--name=default")
            .arg(flag("data-dir", dir.path().join("etcd")))
            .arg(format!("--listen-client-urls={etcd_client_url}"))
            .arg(format!("--advertise-client-urls={etcd_client_url}"))
            .arg(format!("--listen-peer-urls={etcd_peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={etcd_peer_url}"))
            .arg(format!("--initial-cluster=default={etcd_peer_url}"))
            // The data dies with the test; fsync would only slow every write.
            .arg("--unsafe-no-fsync")
            .arg("--log-level=warn");
        let mut etcd = Server::spawn("etcd", etcd_command, dir.path())?;
        etcd.wait_for_port(etcd_client_port, deadline, options.startup_timeout)
            .await?;

        let server_url = format!("https://127.0.0.1:{apiserver_port}");
        let mut apiserver_command = tied_to_this_process(&binaries.apiserver);
        apiserver_command.arg(format!("--etcd-servers={etcd_client_url}"));
        match &options.node {
            None => {
                apiserver_command
                    .arg("--bind-address=127.0.0.1")
                    .arg("--advertise-address=127.0.0.1")
                    // The endpoint reconciler publishes the advertise address as the `kubernetes`
                    // Service's endpoint and rejects loopback; no Pod here would ever dial it anyway.
                    .arg("--endpoint-reconciler-type=none")
                    .arg("--authorization-mode=RBAC")
                    // No controller-manager runs, so nothing would create the service account
                    // tokens this plugin insists on; without it Pods and Jobs can be created as
                    // they are.
                    .arg("--disable-admission-plugins=ServiceAccount");
            }
            Some(node) => {
                apiserver_command
                    .arg("--bind-address=0.0.0.0")
                    .arg(format!("--advertise-address={}", node.address))
                    .arg("--authorization-mode=Node,RBAC")
                    .arg("--enable-admission-plugins=NodeRestriction")
                    // `kubectl logs` goes through the kubelet, which trusts the test CA.
                    .arg(flag("kubelet-client-certificate", &files.admin_cert))
                    .arg(flag("kubelet-client-key", &files.admin_key));
            }
        }
        apiserver_command
            .arg(format!("--secure-port={apiserver_port}"))
            .arg(flag("cert-dir", dir.path()))
            .arg(flag("tls-cert-file", &files.serving_cert))
            .arg(flag("tls-private-key-file", &files.serving_key))
            .arg(flag("client-ca-file", &files.ca_cert))
            .arg(format!("--service-account-issuer={server_url}"))
            .arg(flag(
                "service-account-key-file",
                &files.service_account_public_key,
            ))
            .arg(flag(
                "service-account-signing-key-file",
                &files.service_account_key,
            ))
            .arg("--service-cluster-ip-range=10.0.0.0/24")
            .arg("--allow-privileged=true")
            .arg("--profiling=false");
        let apiserver = Server::spawn("kube-apiserver", apiserver_command, dir.path())?;

        let kubeconfig = dir.path().join("kubeconfig");
        let admin = (files.admin_cert.as_path(), files.admin_key.as_path());
        write_kubeconfig(&kubeconfig, &server_url, &files.ca_cert, admin)?;
        let node_kubeconfig = match &files.node {
            Some((cert, key)) => {
                let path = dir.path().join("node.kubeconfig");
                write_kubeconfig(&path, &server_url, &files.ca_cert, (cert, key))?;
                Some(path)
            }
            None => None,
        };
        let mut control_plane = ControlPlane {
            apiserver,
            etcd,
            dir,
            kubeconfig,
            node_kubeconfig,
            ca_cert: files.ca_cert,
            server_url,
            binaries: binaries.clone(),
            crds_installed: OnceLock::new(),
        };
        let client = control_plane.client().await?;
        control_plane
            .wait_until_ready(&client, deadline, options.startup_timeout)
            .await?;
        Ok(control_plane)
    }

    async fn wait_until_ready(
        &mut self,
        client: &kube::Client,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(), Error> {
        loop {
            self.etcd.check_running()?;
            self.apiserver.check_running()?;
            let request = http::Request::get("/readyz")
                .body(Vec::new())
                .expect("a GET request with a static path is valid");
            // A request can hang on a half-started server; the overall deadline must still hold.
            let last_probe =
                match tokio::time::timeout(Duration::from_secs(2), client.request_text(request))
                    .await
                {
                    Ok(Ok(_)) => return Ok(()),
                    Ok(Err(error)) => error.to_string(),
                    Err(_) => "/readyz did not answer within 2s".to_owned(),
                };
            if Instant::now() >= deadline {
                return Err(self.apiserver.not_ready(timeout, last_probe));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// A client authenticated as cluster admin (`system:masters`).
    ///
    /// Every call builds a new client: a `kube::Client` drives its connections from a task on the
    /// tokio runtime that built it, and each `#[tokio::test]` has its own runtime, so a client kept
    /// in a shared control plane would stop working when the test that built it ends.
    pub async fn client(&self) -> Result<kube::Client, Error> {
        kube::Client::try_from(self.config().await?).map_err(Error::Client)
    }

    /// Like [`ControlPlane::client`], recording each request the client sends in `log`.
    pub async fn client_logging(
        &self,
        log: &crate::requests::RequestLog,
    ) -> Result<kube::Client, Error> {
        let builder =
            kube::client::ClientBuilder::try_from(self.config().await?).map_err(Error::Client)?;
        Ok(builder.with_layer(&log.layer()).build())
    }

    async fn config(&self) -> Result<kube::Config, Error> {
        let kubeconfig_error = |source| Error::Kubeconfig {
            path: self.kubeconfig.clone(),
            source,
        };
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).map_err(kubeconfig_error)?;
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(kubeconfig_error)
    }

    /// The admin kubeconfig file.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The kubelet's kubeconfig (its client certificate), when started with [`Options::node`].
    pub fn node_kubeconfig(&self) -> Option<&Path> {
        self.node_kubeconfig.as_deref()
    }

    /// The certificate of the control plane's CA, which signed every certificate it uses.
    pub fn ca_cert(&self) -> &Path {
        &self.ca_cert
    }

    /// The directory of the control plane's data, certificates and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// kube-apiserver's URL, `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// Runs kubectl against this control plane as cluster admin and returns its output, whatever its
    /// exit status. Blocks the calling thread until kubectl exits.
    pub fn kubectl<I, S>(&self, args: I) -> Result<Output, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Command::new(&self.binaries.kubectl)
            .arg(flag("kubeconfig", &self.kubeconfig))
            // Discovery is cached per server; keep it with the server rather than in ~/.kube.
            .arg(flag("cache-dir", self.dir.path().join("kubectl-cache")))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(Error::io(format!(
                "running {}",
                self.binaries.kubectl.display()
            )))
    }

    /// Runs kubectl like [`Self::kubectl`], with `content` in place of the argument `-` (through
    /// a temporary file: the harness's kubectl gets no stdin).
    pub fn kubectl_with_file(&self, args: &[&str], content: &[u8]) -> Result<Output, Error> {
        let mut file = tempfile::NamedTempFile::new().map_err(Error::io("creating a temp file"))?;
        std::io::Write::write_all(&mut file, content).map_err(Error::io("writing a temp file"))?;
        let path = file.path().as_os_str();
        self.kubectl(
            args.iter()
                .map(|a| if *a == "-" { path } else { OsStr::new(a) }),
        )
    }

    /// Installs snapsentry's CRDs (the committed `crds/snapsentry.io_crds.yaml`) with server-side
    /// apply and waits until they are Established. Idempotent; after the first success on this
    /// control plane it returns at once, so every test can call it.
    pub fn install_crds(&self) -> Result<(), Error> {
        if self.crds_installed.get().is_some() {
            return Ok(());
        }
        let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/snapsentry.io_crds.yaml");
        let crds = crds.display().to_string();
        let apply = ["apply", "--server-side", "-f", crds.as_str()];
        let wait = [
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd",
            "--all",
        ];
        for args in [&apply[..], &wait[..]] {
            let out = self.kubectl(args)?;
            if !out.status.success() {
                return Err(Error::Kubectl {
                    args: args.join(" "),
                    stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                });
            }
        }
        let _ = self.crds_installed.set(());
        Ok(())
    }

    /// The helm binary built by `scripts/toolchain.sh`; use it with `--kubeconfig` [`Self::kubeconfig`].
    pub fn helm(&self) -> Result<&Path, Error> {
        let helm = &self.binaries.helm;
        if helm.is_file() {
            Ok(helm)
        } else {
            Err(Error::MissingHelm(helm.clone()))
        }
    }
}

/// Creates the namespace `name`.
pub async fn create_namespace(client: &kube::Client, name: &str) -> Result<(), kube::Error> {
    let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client.clone());
    let mut ns = k8s_openapi::api::core::v1::Namespace::default();
    ns.metadata.name = Some(name.into());
    api.create(&Default::default(), &ns).await.map(drop)
}

/// `--name=path`.
fn flag(name: &str, path: impl AsRef<Path>) -> String {
    format!("--{name}={}", path.as_ref().display())
}
