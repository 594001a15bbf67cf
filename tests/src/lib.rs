//! The end-to-end test harness: a real etcd + kube-apiserver on loopback, cloud emulators, and disk
//! image builders, started by the tests themselves. AWS is a patched moto server ([`moto`]).
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

pub mod controlplane;
pub mod jobrunner;
pub mod moto;

pub use controlplane::ControlPlane;
pub use moto::Moto;
