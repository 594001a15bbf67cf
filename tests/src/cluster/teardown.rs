//! Removing what a cluster leaves on the machine once its processes are gone: the containers'
//! processes (children of containerd's shims, outside the test's process tree), the shims, the
//! mounts under the cluster's directory (overlay root filesystems, pod volumes, network
//! namespaces), the pods' cgroups, kube-proxy's and the kubelet's iptables rules and the pod
//! bridge.
//!
//! Every step is best effort and logged, never fatal: teardown runs from `Drop`, also after a
//! failed test, and for clusters of test processes that were killed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::config::BRIDGE;

/// The cgroup the kubelet puts every pod under (`cgroupsPerQOS` with the cgroupfs driver), in each
/// cgroup v1 controller's hierarchy.
const KUBEPODS: &str = "kubepods";

/// How long killed processes get to disappear from their cgroups.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// Kills every process in the pods' cgroups, then every process whose command line names `dir`
/// (containerd's shims, which are started with its socket's path): with the kubelet and containerd
/// already stopped nothing restarts them.
pub(super) fn kill_containers(dir: &Path) {
    let deadline = Instant::now() + KILL_WAIT;
    loop {
        let pids = pod_processes();
        if pids.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            warn!(?pids, "processes left in the pods' cgroups");
            break;
        }
        kill(&pids);
        std::thread::sleep(Duration::from_millis(100));
    }
    let shims = processes_naming(dir);
    if !shims.is_empty() {
        debug!(?shims, "killing containerd shims");
        kill(&shims);
    }
}

/// Unmounts everything mounted under `dir` (deepest first; lazily, so a busy mount cannot block the
/// test), then removes the pods' cgroups, kube-proxy's rules (`kube-proxy --cleanup`) and the pod
/// bridge.
pub(super) fn remove_node_state(dir: &Path, kube_proxy: &Path) {
    for _ in 0..5 {
        let mut mounts = mounts_under(dir);
        if mounts.is_empty() {
            break;
        }
        mounts.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
        for mount in mounts {
            run(Command::new("umount").arg("--lazy").arg(&mount));
        }
    }
    remove_pod_cgroups();
    if kube_proxy.is_file() {
        run(Command::new(kube_proxy).arg("--cleanup"));
    }
    remove_kubelet_chains();
    if Path::new("/sys/class/net").join(BRIDGE).exists() {
        run(Command::new("ip").args(["link", "delete", BRIDGE]));
    }
}

/// The chains the kubelet adds (and never removes): `KUBE-FIREWALL`, which drops packets to
/// 127.0.0.0/8 from other addresses, its `KUBE-KUBELET-CANARY` chains and `KUBE-IPTABLES-HINT`.
fn remove_kubelet_chains() {
    for tool in ["iptables", "ip6tables"] {
        for chain in ["INPUT", "OUTPUT"] {
            run(Command::new(tool).args(["-t", "filter", "-D", chain, "-j", "KUBE-FIREWALL"]));
        }
        run(Command::new(tool).args(["-t", "filter", "-F", "KUBE-FIREWALL"]));
        run(Command::new(tool).args(["-t", "filter", "-X", "KUBE-FIREWALL"]));
        for table in ["mangle", "nat", "filter"] {
            run(Command::new(tool).args(["-t", table, "-X", "KUBE-KUBELET-CANARY"]));
        }
        run(Command::new(tool).args(["-t", "mangle", "-X", "KUBE-IPTABLES-HINT"]));
    }
}

/// The pids in every cgroup under `kubepods`, in every controller.
fn pod_processes() -> Vec<String> {
    let mut pids = Vec::new();
    for dir in pod_cgroups() {
        if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
            pids.extend(text.split_whitespace().map(str::to_owned));
        }
    }
    pids.sort();
    pids.dedup();
    pids
}

/// Every cgroup directory under `kubepods` in every mounted hierarchy, parents before children.
fn pod_cgroups() -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") else {
        return found;
    };
    for hierarchy in hierarchies.flatten() {
        let root = hierarchy.path().join(KUBEPODS);
        if root.is_dir() {
            walk(&root, &mut found);
        }
    }
    found
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
    found.push(dir.to_owned());
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&entry.path(), found);
            }
        }
    }
}

/// Removes the empty pod cgroups, children first.
fn remove_pod_cgroups() {
    for dir in pod_cgroups().into_iter().rev() {
        if let Err(error) = fs::remove_dir(&dir) {
            debug!(dir = %dir.display(), %error, "removing a pod cgroup");
        }
    }
}

/// Pids of the processes whose command line mentions `dir`.
fn processes_naming(dir: &Path) -> Vec<String> {
    let needle = dir.as_os_str().as_encoded_bytes();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.parse::<u32>().ok()?;
            let cmdline = fs::read(e.path().join("cmdline")).ok()?;
            cmdline
                .windows(needle.len())
                .any(|w| w == needle)
                .then_some(name)
        })
        .collect()
}

/// Mount points under `dir`, from this process's mount table.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(table) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|path| path.starts_with(dir))
        .collect()
}

/// A mountinfo path: spaces, tabs, newlines and backslashes are octal escapes (`\040`).
fn unescape_mount_path(field: &str) -> PathBuf {
    let mut out = Vec::with_capacity(field.len());
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(code) = field
                .get(i + 1..i + 4)
                .and_then(|o| u8::from_str_radix(o, 8).ok())
        {
            out.push(code);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    PathBuf::from(String::from_utf8_lossy(&out).into_owned())
}

fn kill(pids: &[String]) {
    run(Command::new("kill").arg("-KILL").arg("--").args(pids));
}

fn run(command: &mut Command) {
    match command.output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => debug!(
            ?command,
            stderr = %String::from_utf8_lossy(&out.stderr),
            "teardown step failed"
        ),
        Err(error) => warn!(?command, %error, "teardown step could not run"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(
            unescape_mount_path(r"/tmp/a\040b/c\134d"),
            PathBuf::from("/tmp/a b/c\\d")
        );
        assert_eq!(unescape_mount_path("/plain"), PathBuf::from("/plain"));
    }
}
