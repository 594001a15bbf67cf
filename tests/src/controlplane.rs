//! A real Kubernetes control plane for tests: etcd and kube-apiserver, started on free loopback ports
//! in a temporary directory, with their own certificate authority and an admin kubeconfig.
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

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{LazyLock, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use tracing::{debug, warn};

/// `tests/controlplane/versions.env`, the one place the control plane's versions are pinned; the
/// toolchain script sources the same file.
const VERSIONS_ENV: &str = include_str!("../controlplane/versions.env");

/// Readiness polling interval: kube-apiserver needs a few seconds, so finer polling buys nothing.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Lines of a component's log quoted in a startup error.
const LOG_TAIL_LINES: usize = 40;

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

/// The versions pinned in `tests/controlplane/versions.env`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versions {
    /// Kubernetes release, e.g. `v1.37.2`.
    pub kubernetes: String,
    /// etcd server release.
    pub etcd: String,
    /// helm release.
    pub helm: String,
}

impl Versions {
    /// Parses `KEY=value` lines; blank lines and `#` comments are ignored.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut kubernetes = None;
        let mut etcd = None;
        let mut helm = None;
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| Error::Versions(format!("not a KEY=value line: {line:?}")))?;
            let slot = match key {
                "KUBERNETES_VERSION" => &mut kubernetes,
                "ETCD_VERSION" => &mut etcd,
                "HELM_VERSION" => &mut helm,
                _ => continue,
            };
            *slot = Some(value.to_owned());
        }
        let required = |value: Option<String>, key: &str| {
            value.ok_or_else(|| Error::Versions(format!("{key} is not set")))
        };
        Ok(Versions {
            kubernetes: required(kubernetes, "KUBERNETES_VERSION")?,
            etcd: required(etcd, "ETCD_VERSION")?,
            helm: required(helm, "HELM_VERSION")?,
        })
    }

    /// The pinned versions. The file is compiled in, so a malformed one fails every caller the same
    /// way, and the `versions_env_parses` unit test catches it first.
    pub fn pinned() -> &'static Versions {
        static PINNED: LazyLock<Versions> = LazyLock::new(|| {
            Versions::parse(VERSIONS_ENV).expect("tests/controlplane/versions.env is malformed")
        });
        &PINNED
    }

    /// Major and minor of the Kubernetes version, as `kube-apiserver` reports them in `/version`.
    pub fn kubernetes_major_minor(&self) -> (&str, &str) {
        let version = self.kubernetes.trim_start_matches('v');
        let mut parts = version.split('.');
        (parts.next().unwrap_or(""), parts.next().unwrap_or(""))
    }
}

/// The snapsentry cache: `$SNAPSENTRY_CACHE`, else `${XDG_CACHE_HOME:-$HOME/.cache}/snapsentry`, as in
/// `scripts/toolchain.sh`.
pub fn cache_dir() -> PathBuf {
    let non_empty = |key: &str| std::env::var_os(key).filter(|value| !value.is_empty());
    if let Some(dir) = non_empty("SNAPSENTRY_CACHE") {
        return PathBuf::from(dir);
    }
    let base = non_empty("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(non_empty("HOME").unwrap_or_else(|| "/root".into())).join(".cache")
        });
    base.join("snapsentry")
}

/// Where `scripts/toolchain.sh` puts kube-apiserver, kubectl, etcd and helm.
pub fn toolchain_dir() -> PathBuf {
    cache_dir().join(format!("k8s-{}", Versions::pinned().kubernetes))
}

/// How to start a control plane; [`Options::default`] reads `KUBEBUILDER_ASSETS`.
#[derive(Debug, Clone)]
pub struct Options {
    /// Directory holding `kube-apiserver`, `etcd` and `kubectl`.
    pub assets: PathBuf,
    /// How long etcd and kube-apiserver may take to become ready.
    pub startup_timeout: Duration,
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
        let files = Certificates::generate()?.write(dir.path())?;
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
        let mut etcd = Server::spawn("etcd", etcd_command, dir.path()).await?;
        etcd.wait_for_port(etcd_client_port, deadline, options.startup_timeout)
            .await?;

        let server_url = format!("https://127.0.0.1:{apiserver_port}");
        let mut apiserver_command = tied_to_this_process(&binaries.apiserver);
        apiserver_command
            .arg(format!("--etcd-servers={etcd_client_url}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            // The endpoint reconciler publishes the advertise address as the `kubernetes` Service's
            // endpoint and rejects loopback; no Pod here would ever dial it anyway.
            .arg("--endpoint-reconciler-type=none")
            .arg(format!("--secure-port={apiserver_port}"))
            .arg(flag("cert-dir", dir.path()))
            .arg(flag("tls-cert-file", &files.serving_cert))
            .arg(flag("tls-private-key-file", &files.serving_key))
            .arg(flag("client-ca-file", &files.ca_cert))
            .arg("--authorization-mode=RBAC")
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
            // No controller-manager runs, so nothing would create the service account tokens
            // this plugin insists on; without it Pods and Jobs can be created as they are.
            .arg("--disable-admission-plugins=ServiceAccount")
            .arg("--allow-privileged=true")
            .arg("--profiling=false");
        let apiserver = Server::spawn("kube-apiserver", apiserver_command, dir.path()).await?;

        let kubeconfig = dir.path().join("kubeconfig");
        write_kubeconfig(&kubeconfig, &server_url, &files)?;
        let mut control_plane = ControlPlane {
            apiserver,
            etcd,
            dir,
            kubeconfig,
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
        let kubeconfig_error = |source| Error::Kubeconfig {
            path: self.kubeconfig.clone(),
            source,
        };
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).map_err(kubeconfig_error)?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(kubeconfig_error)?;
        kube::Client::try_from(config).map_err(Error::Client)
    }

    /// The admin kubeconfig file.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
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

/// One server process, its output captured in a log file.
#[derive(Debug)]
struct Server {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Server {
    async fn spawn(name: &'static str, mut command: Command, dir: &Path) -> Result<Self, Error> {
        let log = dir.join(format!("{name}.log"));
        let stdout =
            File::create(&log).map_err(Error::io(format!("creating {}", log.display())))?;
        let stderr = stdout
            .try_clone()
            .map_err(Error::io("duplicating a log file handle"))?;
        command
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let child = spawn_on_long_lived_thread(command)
            .await
            .map_err(Error::io(format!(
                "starting {name} through setpriv (util-linux)"
            )))?;
        debug!(name, pid = child.id(), "started");
        Ok(Server { name, child, log })
    }

    /// Fails when the process has exited; a server of the control plane never exits on its own.
    fn check_running(&mut self) -> Result<(), Error> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Error::Exited {
                name: self.name,
                status,
                log: self.log.clone(),
                tail: self.log_tail(),
            }),
            Err(source) => Err(Error::Io {
                context: format!("waiting for {}", self.name),
                source,
            }),
        }
    }

    async fn wait_for_port(
        &mut self,
        port: u16,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(), Error> {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        loop {
            self.check_running()?;
            match tokio::net::TcpStream::connect(address).await {
                Ok(_) => return Ok(()),
                Err(error) if Instant::now() >= deadline => {
                    let probe = format!("connecting to {address}: {error}");
                    return Err(self.not_ready(timeout, probe));
                }
                Err(_) => tokio::time::sleep(POLL_INTERVAL).await,
            }
        }
    }

    fn not_ready(&self, timeout: Duration, last_probe: String) -> Error {
        Error::NotReady {
            name: self.name,
            timeout,
            last_probe,
            log: self.log.clone(),
            tail: self.log_tail(),
        }
    }

    fn log_tail(&self) -> String {
        let Ok(text) = fs::read_to_string(&self.log) else {
            return String::from("(log unreadable)");
        };
        let lines: Vec<&str> = text.lines().collect();
        let mut tail = String::new();
        for line in &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..] {
            let _ = writeln!(tail, "  {line}");
        }
        tail
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGKILL: neither server has state worth a graceful shutdown, and a stuck one must not
        // hold up the test.
        if let Err(error) = self.child.kill() {
            debug!(name = self.name, %error, "kill");
        }
        let _ = self.child.wait();
    }
}

/// A command that runs `program` so that it dies with this process, however the process ends
/// (panic, SIGKILL, a test harness timeout); spawn it with [`spawn_on_long_lived_thread`].
///
/// The program runs under `setpriv --pdeathsig KILL` (util-linux, on every Debian): the kernel sends
/// it SIGKILL when its parent goes away. That needs no `unsafe` `pre_exec` hook (the workspace denies
/// unsafe code), no extra crate and no watchdog process.
fn tied_to_this_process(program: &Path) -> Command {
    let mut command = Command::new("setpriv");
    command.args(["--pdeathsig", "KILL", "--"]).arg(program);
    command
}

/// Spawns `command` from a thread that lives as long as the process. The "parent" whose death
/// triggers `--pdeathsig` is the spawning *thread*, and test threads end while a shared control
/// plane lives on.
async fn spawn_on_long_lived_thread(command: Command) -> io::Result<Child> {
    type Request = (Command, tokio::sync::oneshot::Sender<io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("controlplane-spawner".into())
            .spawn(move || {
                for (mut command, reply) in receiver {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("spawning the control plane spawner thread");
        Mutex::new(sender)
    });
    let gone = || io::Error::other("the control plane spawner thread is gone");
    let (reply, answer) = tokio::sync::oneshot::channel();
    spawner
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .send((command, reply))
        .map_err(|_| gone())?;
    answer.await.map_err(|_| gone())?
}

/// Three distinct free loopback ports. A port is free when picked, not when used; a server that
/// loses the race fails fast with "address already in use" and the start is retried. Ports handed
/// out earlier in this process are never handed out again, so control planes of one test process
/// do not race each other.
fn free_ports<const N: usize>() -> Result<[u16; N], Error> {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    // Holding every listener until all are picked keeps the kernel from returning one port twice.
    let mut listeners = Vec::with_capacity(N);
    let mut ports = [0; N];
    let mut picked = 0;
    while picked < N {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(Error::io("binding a loopback port"))?;
        let port = listener
            .local_addr()
            .map_err(Error::io("reading a bound port"))?
            .port();
        listeners.push(listener);
        if handed_out.insert(port) {
            ports[picked] = port;
            picked += 1;
        }
    }
    Ok(ports)
}

/// Removes the directories of control planes whose test process is gone (a shared control plane is
/// never dropped, and a killed process drops nothing).
fn remove_stale_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            debug!(dir = %entry.path().display(), "removing stale control plane directory");
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Paths of the generated credentials.
#[derive(Debug)]
struct CredentialFiles {
    ca_cert: PathBuf,
    serving_cert: PathBuf,
    serving_key: PathBuf,
    admin_cert: PathBuf,
    admin_key: PathBuf,
    service_account_key: PathBuf,
    service_account_public_key: PathBuf,
}

/// A fresh CA, kube-apiserver's serving certificate, a cluster-admin client certificate and the
/// service-account signing key, all ECDSA P-256 (fast to generate, accepted by Go and rustls).
struct Certificates {
    ca_cert: String,
    serving_cert: String,
    serving_key: String,
    admin_cert: String,
    admin_key: String,
    service_account_key: String,
    service_account_public_key: String,
}

impl Certificates {
    fn generate() -> Result<Self, Error> {
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut ca_params = CertificateParams::new(Vec::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "snapsentry test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca = Issuer::new(ca_params, ca_key);

        let serving_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut serving_params = CertificateParams::new(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
            "kubernetes.default.svc".to_owned(),
        ])?;
        serving_params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        serving_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        serving_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_cert = serving_params.signed_by(&serving_key, &ca)?;

        let admin_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut admin_params = CertificateParams::new(Vec::new())?;
        admin_params
            .distinguished_name
            .push(DnType::CommonName, "snapsentry-test-admin");
        admin_params
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        admin_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        admin_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_cert = admin_params.signed_by(&admin_key, &ca)?;

        let service_account_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;

        Ok(Certificates {
            ca_cert: ca_cert.pem(),
            serving_cert: serving_cert.pem(),
            serving_key: serving_key.serialize_pem(),
            admin_cert: admin_cert.pem(),
            admin_key: admin_key.serialize_pem(),
            service_account_key: service_account_key.serialize_pem(),
            service_account_public_key: service_account_key.public_key_pem(),
        })
    }

    fn write(&self, dir: &Path) -> Result<CredentialFiles, Error> {
        let write = |name: &str, contents: &str| -> Result<PathBuf, Error> {
            let path = dir.join(name);
            fs::write(&path, contents).map_err(Error::io(format!("writing {}", path.display())))?;
            Ok(path)
        };
        Ok(CredentialFiles {
            ca_cert: write("ca.crt", &self.ca_cert)?,
            serving_cert: write("apiserver.crt", &self.serving_cert)?,
            serving_key: write("apiserver.key", &self.serving_key)?,
            admin_cert: write("admin.crt", &self.admin_cert)?,
            admin_key: write("admin.key", &self.admin_key)?,
            service_account_key: write("service-account.key", &self.service_account_key)?,
            service_account_public_key: write(
                "service-account.pub",
                &self.service_account_public_key,
            )?,
        })
    }
}

fn write_kubeconfig(path: &Path, server_url: &str, files: &CredentialFiles) -> Result<(), Error> {
    // Debug formatting quotes and escapes the paths, which YAML reads as double-quoted strings.
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: snapsentry-test
  cluster:
    server: {server_url}
    certificate-authority: {ca:?}
users:
- name: admin
  user:
    client-certificate: {cert:?}
    client-key: {key:?}
contexts:
- name: snapsentry-test
  context:
    cluster: snapsentry-test
    user: admin
    namespace: default
current-context: snapsentry-test
",
        ca = files.ca_cert.display().to_string(),
        cert = files.admin_cert.display().to_string(),
        key = files.admin_key.display().to_string(),
    );
    fs::write(path, text).map_err(Error::io(format!("writing {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_env_parses() {
        let versions = Versions::pinned();
        assert!(versions.kubernetes.starts_with('v'), "{versions:?}");
        let (major, minor) = versions.kubernetes_major_minor();
        assert!(
            major.parse::<u32>().is_ok() && minor.parse::<u32>().is_ok(),
            "{versions:?}"
        );
    }

    #[test]
    fn versions_parse_reports_missing_keys() {
        let error = Versions::parse("KUBERNETES_VERSION=v1.2.3\n").unwrap_err();
        assert!(error.to_string().contains("ETCD_VERSION"), "{error}");
    }
}
