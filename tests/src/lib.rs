//! The end-to-end test harness: a real etcd + kube-apiserver on loopback, cloud emulators, and disk
//! image builders, started by the tests themselves. AWS is a patched moto server ([`moto`]); Azure
//! blob storage is Azurite ([`azurite`]); Compute Engine is a fake of its REST API ([`fake_gce`]).
//! An end-to-end test of the operator builds a [`world::World`] (a namespace, the Job runner, the
//! operator in-process, its logs captured by [`logs`]) from its provider's setup. No
//! controller-manager runs: the [`jobrunner`] plays kubelet, the Job controller and the
//! `pd.csi.storage.gke.io` CSI driver, and [`volume_protection`] the claims' and
//! PersistentVolumes' protection controllers. The one exception is [`cluster`]: a real single-node
//! cluster (controller-manager, scheduler, containerd, kubelet, kube-proxy) for the test that
//! proves the deployment with the chart and the container images.
//!
//! Nothing here is mocked. The control plane is built from the official Kubernetes Go modules at the
//! versions pinned in `tests/controlplane/versions.env`; `scripts/toolchain.sh` builds it (and the
//! other tools the tests need) into `~/.cache/snapsentry`. A test whose tools are missing fails with a
//! message naming that script; it never skips.
//!
//! ```no_run
//! # async fn example() -> Result<(), snapsentry_tests::controlplane::Error> {
//! let control_plane = snapsentry_tests::ControlPlane::shared().await?;
//! let client = control_plane.client().await?;
//! # drop(client);
//! # Ok(())
//! # }
//! ```

pub mod azure_fleet;
pub mod azurite;
pub mod browser;
pub mod chart_rbac;
pub mod cluster;
pub mod controlplane;
pub mod fake_arm;
pub mod fake_gce;
pub mod http;
pub mod image;
pub mod jobrunner;
pub mod logs;
pub mod moto;
pub mod planted;
pub mod process;
pub mod python_fake;
pub mod random;
pub mod requests;
pub mod results;
pub mod sample;
pub mod volume_protection;
pub mod world;

pub use controlplane::ControlPlane;
pub use moto::Moto;

use std::path::{Path, PathBuf};

/// The cargo profile directory (`<target>/debug`) holding this workspace's binaries
/// (`snapsentry-scan`, `snapsentry-operator`): tests run from `<profile>/deps`, examples from
/// `<profile>/examples`.
pub fn bin_dir() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.parent()
        .and_then(Path::parent)
        .map(PathBuf::from)
        .ok_or_else(|| std::io::Error::other("no profile directory above the executable"))
}

/// The repository root (the workspace directory above `tests/`), where `charts/`, `examples/` and
/// `crds/` are.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace root")
        .to_owned()
}

/// A `PATH` value: `dirs` first, in order, then this process's `PATH`.
pub fn search_path(dirs: &[&Path]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .chain([std::env::var("PATH").unwrap_or_default()])
        .collect::<Vec<_>>()
        .join(":")
}
