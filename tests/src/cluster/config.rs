//! The configuration files of the cluster's node components: containerd's, the CNI network's, the
//! kubelet's and kube-proxy's, each written for one cluster directory. The choices these machines
//! force are explained where they are made.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The bridge the CNI `bridge` plugin creates for the pods; named so no other runtime's (podman's
/// `cni-podman0`) is touched.
pub(super) const BRIDGE: &str = "snapsentry0";

/// The pods' addresses (host-local IPAM). Apart from podman's 10.88.0.0/16 and from the Service
/// range of the control plane (10.0.0.0/24).
pub(super) const POD_SUBNET: &str = "10.213.0.0/24";

/// Where the node components keep their state and find their sockets, all under the cluster's
/// directory (nothing under /var/lib or /run/containerd, so it is all removed with the directory).
#[derive(Debug, Clone)]
pub(super) struct Layout {
    pub(super) dir: PathBuf,
}

impl Layout {
    pub(super) fn containerd_socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }
    pub(super) fn containerd_config(&self) -> PathBuf {
        self.dir.join("containerd.toml")
    }
    pub(super) fn cni_conf_dir(&self) -> PathBuf {
        self.dir.join("cni")
    }
    pub(super) fn kubelet_root(&self) -> PathBuf {
        self.dir.join("kubelet")
    }
    pub(super) fn kubelet_config(&self) -> PathBuf {
        self.dir.join("kubelet.yaml")
    }
    pub(super) fn kube_proxy_config(&self) -> PathBuf {
        self.dir.join("kube-proxy.yaml")
    }
    /// The containers' logs (the kubelet's `podLogsDir`), read by `kubectl logs` and by the tests.
    pub(super) fn pod_logs(&self) -> PathBuf {
        self.dir.join("pod-logs")
    }
}

/// containerd 2.4 (config version 4) with its root, state, socket and runc state under the cluster
/// directory; Debian's runc with cgroupfs (PID 1 is not systemd here, so no systemd cgroups); the
/// CNI plugins from Debian's `containernetworking-plugins`; the locally built pause image as the
/// sandbox image; network namespaces under the state directory.
///
/// These machines withhold CAP_SYS_RESOURCE, so no container may raise a resource limit nor lower
/// its OOM score. containerd's CRI plugin drops the default `RLIMIT_NOFILE` of its base OCI spec
/// for every container (podman, which raises `nofile`, needed `--ulimit` flags); and
/// `restrict_oom_score_adj` keeps the OOM scores the kubelet asks for (-998 for a pod sandbox) at or
/// above containerd's own, else runc fails every sandbox with "failed to update
/// /proc/self/oom_score_adj: Permission denied" ("can't get final child's PID from pipe: EOF").
pub(super) fn containerd(layout: &Layout, pause_image: &str) -> String {
    let dir = &layout.dir;
    let q = |p: &Path| toml_string(&p.display().to_string());
    format!(
        r#"version = 4
root = {root}
state = {state}

[debug]
  level = "debug"

[plugins."io.containerd.server.v1.grpc"]
  address = {socket}

[plugins."io.containerd.server.v1.ttrpc"]
  address = {ttrpc}

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = {pause}

[plugins."io.containerd.cri.v1.runtime"]
  netns_mounts_under_state_dir = true
  # Without CAP_SYS_RESOURCE no process may lower its OOM score below its parent's; the kubelet
  # asks for -998 for every pod sandbox. This keeps every container's at or above containerd's.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = {cni}
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "/usr/bin/runc"
        Root = {runc_root}
        SystemdCgroup = false

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"#,
        root = q(&dir.join("containerd-root")),
        state = q(&dir.join("containerd-state")),
        socket = q(&layout.containerd_socket()),
        ttrpc = q(&dir.join("containerd.sock.ttrpc")),
        pause = toml_string(pause_image),
        cni = q(&layout.cni_conf_dir()),
        runc_root = q(&dir.join("runc")),
    )
}

/// The pod network: a bridge with the node as gateway and host-local addresses (their leases in
/// the cluster directory). No masquerading: pods only talk to the node.
pub(super) fn cni_network(layout: &Layout) -> String {
    let ipam_dir = json_string(&layout.dir.join("cni-ipam").display().to_string());
    format!(
        r#"{{
  "cniVersion": "1.0.0",
  "name": "snapsentry",
  "plugins": [
    {{
      "type": "bridge",
      "bridge": "{BRIDGE}",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {{
        "type": "host-local",
        "ranges": [[{{"subnet": "{POD_SUBNET}"}}]],
        "routes": [{{"dst": "0.0.0.0/0"}}],
        "dataDir": {ipam_dir}
      }}
    }}
  ]
}}
"#
    )
}

/// The kubelet's configuration file.
pub(super) fn kubelet(
    layout: &Layout,
    address: Ipv4Addr,
    port: u16,
    healthz_port: u16,
    ca_cert: &Path,
) -> String {
    let q = |p: &Path| json_string(&p.display().to_string());
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# These machines mount cgroup v1 controllers beside a cgroup2 hierarchy (hybrid). Since 1.35 the
# kubelet refuses cgroup v1 unless told otherwise; 1.37 still honours this setting.
failCgroupV1: false
# PID 1 is not systemd: the kubelet and runc manage cgroups through cgroupfs.
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://{socket}
address: {address}
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz_port}
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: {ca}
# Only the API server (its client certificate is from the test CA) talks to this kubelet.
authorization:
  mode: AlwaysAllow
failSwapOn: false
podLogsDir: {logs}
# The machine's disk is shared and often above the default eviction thresholds; a test pod must not
# be evicted, nor the locally imported images (which no registry can give back) collected.
evictionHard:
  memory.available: 1Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
  imagefs.inodesFree: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
volumePluginDir: {plugins}
serializeImagePulls: false
"#,
        socket = layout.containerd_socket().display(),
        ca = q(ca_cert),
        logs = q(&layout.pod_logs()),
        plugins = q(&layout.dir.join("volume-plugins")),
    )
}

/// kube-proxy in iptables mode, touching no host setting it does not need: no conntrack sysctls,
/// no `route_localnet` (which only localhost NodePorts need).
pub(super) fn kube_proxy(
    kubeconfig: &Path,
    node: &str,
    healthz_port: u16,
    metrics_port: u16,
) -> String {
    format!(
        r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: {kubeconfig}
hostnameOverride: {node}
clusterCIDR: {POD_SUBNET}
healthzBindAddress: 127.0.0.1:{healthz_port}
metricsBindAddress: 127.0.0.1:{metrics_port}
iptables:
  localhostNodePorts: false
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
"#,
        kubeconfig = json_string(&kubeconfig.display().to_string()),
    )
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    json_string(s)
}

/// A JSON string (also a valid YAML double-quoted scalar and TOML basic string for the paths and
/// names written here).
fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}
