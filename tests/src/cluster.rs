//! A real single-node Kubernetes cluster for the one test that proves the deployment
//! (`tests/tests/cluster.rs`): the control plane of [`crate::controlplane`] (etcd, kube-apiserver)
//! started for a node to join, plus kube-controller-manager, kube-scheduler, containerd with
//! Debian's runc and CNI plugins, the kubelet and kube-proxy — all from the versions pinned in
//! `tests/controlplane/versions.env`, built by `scripts/toolchain.sh --cluster` (opt-in: `make test`
//! never builds them) into the toolchain cache. Every process is tied to the test process; state
//! lives in one temporary directory; dropping the [`Cluster`] kills the containers too, unmounts,
//! removes the pods' cgroups, kube-proxy's rules and the pod bridge (also for clusters of test
//! processes that were killed, at the next start). It needs root.
//!
//! What these machines force, and what was chosen:
//! - **cgroup v1.** The machines mount cgroup v1 controllers beside a cgroup2 hierarchy holding
//!   only `hugetlb` (hybrid). Since Kubernetes 1.35 the kubelet refuses cgroup v1 unless its
//!   configuration sets `failCgroupV1: false`, which 1.37 still honours: it is set
//!   ([`config::kubelet`]). PID 1 is not systemd, so the kubelet and runc use the `cgroupfs`
//!   driver (`SystemdCgroup = false`).
//! - **runc, not crun**: crun refuses the hybrid layout; Debian's runc runs the containers.
//! - **No CAP_SYS_RESOURCE**: nothing may raise a resource limit or lower its OOM score.
//!   containerd's CRI plugin drops the `RLIMIT_NOFILE` its base OCI spec carries, so containers ask
//!   for none; `restrict_oom_score_adj` keeps the kubelet's OOM scores (-998 for a pod sandbox) at
//!   or above containerd's own, which runc otherwise fails to set (see [`config::containerd`]).
//! - **No registry.** The pod sandbox ("pause") image is built from `tests/controlplane/pause` and
//!   assembled with buildah by the toolchain script; it and snapsentry's images are imported into
//!   containerd from OCI archives ([`Cluster::import_image`]); pods use them with
//!   `imagePullPolicy: Never`.
//! - **Pods reach the API server through the real `kubernetes` Service**: kube-proxy in iptables
//!   mode DNATs its ClusterIP (10.0.0.1:443) to kube-apiserver, which listens on every address and
//!   advertises the node's primary IPv4 address (the pod bridge's gateway routes to it). The
//!   alternative — pointing `KUBERNETES_SERVICE_HOST` at the gateway through the chart's `extraEnv`
//!   — would not reach the scanner Jobs the operator creates, and would test less.
//! - **Identities**: the kubelet authenticates with a client certificate from the test CA
//!   (`system:node:<name>`, admitted by the Node authorizer); controller-manager, scheduler and
//!   kube-proxy use the admin kubeconfig; the API server reaches the kubelet (`kubectl logs`) with
//!   the admin certificate, which the kubelet's x509 authentication trusts.
//! - **Eviction and image garbage collection** are set so a full shared disk neither evicts the
//!   test's pods nor deletes the imported images.

mod config;
mod teardown;

use std::fs;
use std::io;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use tracing::{debug, info};

use crate::controlplane::{
    self, ControlPlane, NodeAccess, Options, Server, Versions, free_ports, toolchain_dir,
};
use crate::process::{Failed, ok, orphaned_temp_dirs, tied_to_this_process};
use config::Layout;

/// The node's name.
pub const NODE: &str = "snapsentry-node";

/// Prefix of the cluster directories; the test process's id follows, so a directory of a dead
/// process is recognised and its leftovers removed.
const DIR_PREFIX: &str = "snapsentry-cluster-";

/// How long the node may take to become Ready once the kubelet runs.
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// How long containerd and kube-proxy may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the cluster could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The control plane (or one of the cluster's servers) failed.
    #[error(transparent)]
    ControlPlane(#[from] controlplane::Error),
    /// A binary of `scripts/toolchain.sh --cluster` is missing.
    #[error(
        "{} is missing: run `scripts/toolchain.sh --cluster` (what `make test-cluster` runs)",
        .0.display()
    )]
    Missing(PathBuf),
    /// The cluster needs root (cgroups, mounts, network namespaces, iptables).
    #[error("the cluster test needs root (cgroups, mounts, network namespaces, iptables)")]
    NotRoot,
    /// A file system or process operation failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// A command the harness ran failed.
    #[error(transparent)]
    Command(#[from] Failed),
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The node did not become Ready in time.
    #[error("node {NODE} not Ready after {timeout:?} ({last}); kubelet log tail:\n{tail}")]
    NodeNotReady {
        /// How long it was given.
        timeout: Duration,
        /// Its last Ready condition, or why none was read.
        last: String,
        /// The end of the kubelet's log.
        tail: String,
    },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// The binaries of the node components, from the toolchain cache.
#[derive(Debug, Clone)]
struct Binaries {
    kubelet: PathBuf,
    controller_manager: PathBuf,
    scheduler: PathBuf,
    kube_proxy: PathBuf,
    containerd: PathBuf,
    ctr: PathBuf,
    pause_image: PathBuf,
}

impl Binaries {
    fn locate() -> Result<Self, Error> {
        let dir = toolchain_dir();
        let binaries = Binaries {
            kubelet: dir.join("kubelet"),
            controller_manager: dir.join("kube-controller-manager"),
            scheduler: dir.join("kube-scheduler"),
            kube_proxy: dir.join("kube-proxy"),
            containerd: dir.join("containerd"),
            ctr: dir.join("ctr"),
            pause_image: dir.join("pause.oci.tar"),
        };
        let shim = dir.join("containerd-shim-runc-v2");
        for path in [
            &binaries.kubelet,
            &binaries.controller_manager,
            &binaries.scheduler,
            &binaries.kube_proxy,
            &binaries.containerd,
            &binaries.ctr,
            &binaries.pause_image,
            &shim,
            &PathBuf::from("/usr/bin/runc"),
            &PathBuf::from("/usr/lib/cni/bridge"),
        ] {
            if !path.is_file() {
                return Err(Error::Missing(path.clone()));
            }
        }
        Ok(binaries)
    }
}

/// A running single-node cluster. Dropping it stops every component and removes what they left.
#[derive(Debug)]
pub struct Cluster {
    /// Started in this order, stopped in the reverse; containerd first.
    servers: Vec<Server>,
    layout: Layout,
    binaries: Binaries,
    control_plane: ControlPlane,
    /// Declared last: removed after the control plane and the teardown.
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts the control plane, containerd (with the pause image imported), the controller
    /// manager, the scheduler, the kubelet and kube-proxy, and waits until the node is Ready.
    pub async fn start() -> Result<Self, Error> {
        if !Path::new("/proc/self/ns").exists() || !is_root() {
            return Err(Error::NotRoot);
        }
        let binaries = Binaries::locate()?;
        remove_stale(&binaries);
        let address = primary_address()?;
        info!(%address, "starting a single-node cluster");
        let control_plane = ControlPlane::start_with(Options {
            node: Some(NodeAccess {
                name: NODE.into(),
                address,
            }),
            startup_timeout: Duration::from_secs(120),
            ..Options::default()
        })
        .await?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
            .tempdir()
            .map_err(io_error("creating the cluster directory"))?;
        let layout = Layout {
            dir: dir.path().to_owned(),
        };
        let mut cluster = Cluster {
            servers: Vec::new(),
            layout,
            binaries,
            control_plane,
            dir,
        };
        cluster.start_containerd().await?;
        cluster.import_image(&cluster.binaries.pause_image.clone())?;
        cluster.start_controllers()?;
        cluster.start_kubelet(address)?;
        cluster.start_kube_proxy().await?;
        cluster.wait_node_ready().await?;
        Ok(cluster)
    }

    /// The cluster's control plane: clients, kubectl and helm as cluster admin.
    pub fn control_plane(&self) -> &ControlPlane {
        &self.control_plane
    }

    /// The directory of the containers' logs (`<namespace>_<pod>_<uid>/<container>/<n>.log`).
    pub fn pod_logs(&self) -> PathBuf {
        self.layout.pod_logs()
    }

    /// Imports the images of an OCI (or docker) archive into containerd's `k8s.io` namespace, where
    /// the kubelet finds them; returns what `ctr` printed.
    pub fn import_image(&self, archive: &Path) -> Result<String, Error> {
        let out = self
            .ctr()
            .args(["images", "import"])
            .arg(archive)
            .output()
            .map_err(io_error("running ctr"))?;
        Ok(ok(
            out,
            &format!("ctr images import {}", archive.display()),
        )?)
    }

    /// The OCI runtime spec containerd gave the container `id` (a Pod's `containerID` without
    /// its `containerd://` prefix), as JSON: what runc was told to run.
    pub fn container_spec(&self, id: &str) -> Result<serde_json::Value, Error> {
        let out = self
            .ctr()
            .args(["containers", "info", id])
            .output()
            .map_err(io_error("running ctr"))?;
        let info: serde_json::Value = serde_json::from_str(&ok(out, "ctr containers info")?)
            .map_err(|e| io_error("parsing ctr containers info")(io::Error::other(e)))?;
        Ok(info["Spec"].clone())
    }

    /// `ctr` against this cluster's containerd, in the kubelet's `k8s.io` namespace.
    fn ctr(&self) -> Command {
        let mut command = Command::new(&self.binaries.ctr);
        command
            .arg("--address")
            .arg(self.layout.containerd_socket())
            .args(["--namespace", "k8s.io"]);
        command
    }

    fn spawn(&mut self, name: &'static str, command: Command) -> Result<(), Error> {
        let server = Server::spawn(name, command, self.dir.path())?;
        self.servers.push(server);
        Ok(())
    }

    async fn start_containerd(&mut self) -> Result<(), Error> {
        let layout = &self.layout;
        let cni = layout.cni_conf_dir();
        fs::create_dir_all(&cni).map_err(io_error("creating the CNI directory"))?;
        write(
            &cni.join("10-snapsentry.conflist"),
            &config::cni_network(layout),
        )?;
        write(
            &layout.containerd_config(),
            &config::containerd(layout, &Versions::pinned().pause_image),
        )?;
        let mut command = tied_to_this_process(&self.binaries.containerd);
        command.arg("--config").arg(layout.containerd_config());
        // containerd finds its shim on PATH.
        command.env("PATH", crate::search_path(&[&toolchain_dir()]));
        self.spawn("containerd", command)?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.check_running()?;
            let answered = self
                .ctr()
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success());
            if answered {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let server = self.servers.last().expect("containerd was just started");
                return Err(server
                    .not_ready(START_TIMEOUT, "ctr version does not answer".into())
                    .into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn start_controllers(&mut self) -> Result<(), Error> {
        let kubeconfig = self.control_plane.kubeconfig().to_owned();
        let ca = self.control_plane.ca_cert().to_owned();
        let mut command = tied_to_this_process(&self.binaries.controller_manager);
        command
            .arg(flag("kubeconfig", &kubeconfig))
            .arg(flag("root-ca-file", &ca))
            .arg("--leader-elect=false")
            .arg("--secure-port=0")
            .arg("--controllers=*")
            .arg("--v=1");
        self.spawn("kube-controller-manager", command)?;
        let mut command = tied_to_this_process(&self.binaries.scheduler);
        command
            .arg(flag("kubeconfig", &kubeconfig))
            .arg("--leader-elect=false")
            .arg("--secure-port=0")
            .arg("--v=1");
        self.spawn("kube-scheduler", command)
    }

    fn start_kubelet(&mut self, address: Ipv4Addr) -> Result<(), Error> {
        let [port, healthz_port] = free_ports()?;
        let layout = &self.layout;
        write(
            &layout.kubelet_config(),
            &config::kubelet(
                layout,
                address,
                port,
                healthz_port,
                self.control_plane.ca_cert(),
            ),
        )?;
        let node_kubeconfig = self
            .control_plane
            .node_kubeconfig()
            .expect("the control plane was started for a node")
            .to_owned();
        let mut command = tied_to_this_process(&self.binaries.kubelet);
        command
            .arg(flag("config", &layout.kubelet_config()))
            .arg(flag("kubeconfig", &node_kubeconfig))
            .arg(flag("root-dir", &layout.kubelet_root()))
            .arg(flag("cert-dir", &layout.dir.join("kubelet-pki")))
            .arg(format!("--hostname-override={NODE}"))
            .arg(format!("--node-ip={address}"))
            .arg("--v=2");
        self.spawn("kubelet", command)
    }

    async fn start_kube_proxy(&mut self) -> Result<(), Error> {
        let [healthz_port, metrics_port] = free_ports()?;
        let config_path = self.layout.kube_proxy_config();
        write(
            &config_path,
            &config::kube_proxy(
                self.control_plane.kubeconfig(),
                NODE,
                healthz_port,
                metrics_port,
            ),
        )?;
        let mut command = tied_to_this_process(&self.binaries.kube_proxy);
        command.arg(flag("config", &config_path)).arg("--v=1");
        self.spawn("kube-proxy", command)
    }

    /// Fails when a component has exited.
    fn check_running(&mut self) -> Result<(), Error> {
        for server in &mut self.servers {
            server.check_running()?;
        }
        Ok(())
    }

    async fn wait_node_ready(&mut self) -> Result<(), Error> {
        let client = self.control_plane.client().await?;
        let nodes: Api<Node> = Api::all(client);
        let deadline = Instant::now() + NODE_READY_TIMEOUT;
        loop {
            self.check_running()?;
            let last = match nodes.get_opt(NODE).await {
                Ok(Some(node)) => {
                    let ready = node
                        .status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .into_iter()
                        .find(|c| c.type_ == "Ready");
                    match ready {
                        Some(c) if c.status == "True" => {
                            info!("node {NODE} is Ready");
                            return Ok(());
                        }
                        Some(c) => format!(
                            "Ready={} {}: {}",
                            c.status,
                            c.reason.unwrap_or_default(),
                            c.message.unwrap_or_default()
                        ),
                        None => "no Ready condition yet".into(),
                    }
                }
                Ok(None) => "not registered yet".into(),
                Err(error) => error.to_string(),
            };
            if Instant::now() >= deadline {
                let tail = crate::process::log_tail(&self.dir.path().join("kubelet.log"), 40);
                return Err(Error::NodeNotReady {
                    timeout: NODE_READY_TIMEOUT,
                    last,
                    tail,
                });
            }
            debug!(%last, "waiting for the node");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The kubelet first (it would restart containers), containerd last.
        while self.servers.len() > 1 {
            drop(self.servers.pop());
        }
        teardown::kill_containers(self.dir.path());
        self.servers.clear();
        teardown::remove_node_state(self.dir.path(), &self.binaries.kube_proxy);
        if let Some(keep) = std::env::var_os(KEEP_LOGS).filter(|d| !d.is_empty()) {
            keep_logs(
                &[self.dir.path(), self.control_plane.dir()],
                Path::new(&keep),
            );
        }
    }
}

/// Set to a directory, the components' logs (and the containers') are copied there when the
/// cluster is dropped, before its directory is removed.
pub const KEEP_LOGS: &str = "SNAPSENTRY_CLUSTER_LOGS";

fn keep_logs(dirs: &[&Path], to: &Path) {
    let copy = |from: &Path, name: &str| {
        let _ = fs::create_dir_all(to);
        if let Err(error) = fs::copy(from, to.join(name)) {
            debug!(from = %from.display(), %error, "keeping a log");
        }
    };
    for dir in dirs {
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".log") {
                copy(&entry.path(), &name);
            }
        }
    }
    let mut stack = vec![dirs[0].join("pod-logs")];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(relative) = path.strip_prefix(dirs[0]) {
                copy(&path, &relative.display().to_string().replace('/', "_"));
            }
        }
    }
}

/// Tears down what clusters of test processes that are gone left behind (a killed process drops
/// nothing), then removes their directories.
fn remove_stale(binaries: &Binaries) {
    for dir in orphaned_temp_dirs(DIR_PREFIX) {
        info!(dir = %dir.display(), "tearing down a stale cluster");
        teardown::kill_containers(&dir);
        teardown::remove_node_state(&dir, &binaries.kube_proxy);
        let _ = fs::remove_dir_all(dir);
    }
}

/// The address of the interface the default route leaves through: what the node advertises and
/// pods reach (connecting a UDP socket sends nothing; it only picks the route).
fn primary_address() -> Result<Ipv4Addr, Error> {
    let socket =
        UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(io_error("binding a UDP socket"))?;
    socket
        .connect((Ipv4Addr::new(203, 0, 113, 1), 9))
        .map_err(io_error(
            "finding the default route (the node needs one address pods reach)",
        ))?;
    match socket
        .local_addr()
        .map_err(io_error("reading the route's source address"))?
    {
        std::net::SocketAddr::V4(a) if !a.ip().is_loopback() => Ok(*a.ip()),
        other => Err(io_error("finding the node's address")(io::Error::other(
            format!("the default route leaves from {other}, not a non-loopback IPv4 address"),
        ))),
    }
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    fs::write(path, text).map_err(io_error(format!("writing {}", path.display())))
}

/// `--name=path`.
fn flag(name: &str, path: &Path) -> String {
    format!("--{name}={}", path.display())
}
