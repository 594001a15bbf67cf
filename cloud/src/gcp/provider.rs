//! [`GcpProvider`]: one `spec.providers[].gcp` entry as a [`Provider`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::{BoxFuture, FutureExt};
use jiff::Timestamp;
use snapsentry_crds::{AssignedDisk, Cloud, DiskSource, GcpProvider as GcpSpec};
use tokio::sync::OnceCell;

use super::clients::{Clients, key_file_from_env, metadata_host_from_env};
use super::names::volume_handle;
use crate::azure::Retry;
use crate::error::Result;
use crate::provider::by_strategy;
use crate::wait::SnapshotWait;
use crate::{BlockVolume, Inventory, InventoryMachine, Provider, ProviderContext, SnapshotRef};

/// The CSI driver that attaches Compute Engine disks (present on every GKE cluster).
pub const CSI_DRIVER: &str = "pd.csi.storage.gke.io";
/// The node label of a GKE node's zone (the PersistentVolume's node affinity).
pub const ZONE_TOPOLOGY_KEY: &str = "topology.gke.io/zone";

/// The device path of a machine's disk `index` in the scanner Job's container.
pub fn device_path(index: usize) -> String {
    format!("/dev/snapsentry/disk-{index}")
}

/// Compute Engine instances of one `gcp` provider entry.
pub struct GcpProvider {
    pub(super) spec: GcpSpec,
    pub(super) wait: SnapshotWait,
    pub(super) retry: Retry,
    pub(super) metadata_host: String,
    /// The service account key file used when the policy names no Secret.
    pub(super) key_file: Option<PathBuf>,
    pub(super) client: OnceCell<Arc<Clients>>,
}

impl std::fmt::Debug for GcpProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcpProvider")
            .field("spec", &self.spec)
            .field("wait", &self.wait)
            .field("retry", &self.retry)
            .field("metadata_host", &self.metadata_host)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

impl GcpProvider {
    /// The provider of `spec`; the metadata server is `GCE_METADATA_HOST`'s when set, the key
    /// file used without a `credentialsSecret` `GOOGLE_APPLICATION_CREDENTIALS`'s.
    pub fn new(spec: GcpSpec) -> Self {
        Self {
            spec,
            wait: SnapshotWait::default(),
            retry: Retry::default(),
            metadata_host: metadata_host_from_env(),
            key_file: key_file_from_env(),
            client: OnceCell::new(),
        }
    }

    /// Change how long snapshots and operations are waited for.
    pub fn with_snapshot_wait(mut self, wait: SnapshotWait) -> Self {
        self.wait = wait;
        self
    }

    /// Change how often a throttled or failing request is tried.
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// Use the metadata server at `host` (`127.0.0.1:PORT`, tests) instead of the environment's.
    pub fn with_metadata_host(mut self, host: &str) -> Self {
        self.metadata_host = host.to_owned();
        self
    }

    /// Use the service account key file `path` (`None`: none) instead of the environment's.
    pub fn with_key_file(mut self, path: Option<&Path>) -> Self {
        self.key_file = path.map(Path::to_path_buf);
        self
    }

    /// Each scanned disk of `machine` with its index and the scanner's disk's handle.
    fn scanned<'a>(
        &self,
        machine: &'a InventoryMachine,
        snapshots: &[SnapshotRef],
    ) -> Vec<(usize, &'a snapsentry_crds::MachineDisk, String)> {
        machine
            .disks
            .iter()
            .enumerate()
            .filter_map(|(index, d)| {
                let s = snapshots.iter().find(|s| s.disk_id == d.id)?;
                Some((index, d, volume_handle(s)?))
            })
            .collect()
    }
}

impl Provider for GcpProvider {
    fn cloud(&self) -> Cloud {
        Cloud::Gcp
    }

    fn inventory<'a>(&'a self, ctx: &'a ProviderContext) -> BoxFuture<'a, Result<Inventory>> {
        self.inventory_impl(ctx).boxed()
    }

    fn prepare_snapshots<'a>(
        &'a self,
        ctx: &'a ProviderContext,
        machine: &'a InventoryMachine,
        scan_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<SnapshotRef>>> {
        by_strategy(
            self.spec.snapshot_strategy,
            self.create_snapshots(ctx, machine, scan_id),
            self.newest_existing(ctx, machine, scan_id),
        )
        .boxed()
    }

    fn release_snapshots<'a>(
        &'a self,
        ctx: &'a ProviderContext,
        snapshots: &'a [SnapshotRef],
    ) -> BoxFuture<'a, Result<()>> {
        self.release_impl(ctx, snapshots).boxed()
    }

    fn sweep<'a>(
        &'a self,
        ctx: &'a ProviderContext,
        older_than: Timestamp,
    ) -> BoxFuture<'a, Result<u32>> {
        self.sweep_impl(ctx, older_than).boxed()
    }

    fn block_volumes(
        &self,
        machine: &InventoryMachine,
        snapshots: &[SnapshotRef],
    ) -> Vec<BlockVolume> {
        self.scanned(machine, snapshots)
            .into_iter()
            .map(|(index, disk, handle)| {
                let zone = snapshots
                    .iter()
                    .find(|s| s.disk_id == disk.id)
                    .and_then(|s| s.region.clone());
                BlockVolume {
                    driver: CSI_DRIVER.into(),
                    volume_handle: handle,
                    capacity_bytes: disk.size_bytes.unwrap_or(0),
                    node_affinity: zone.map(|z| (ZONE_TOPOLOGY_KEY.to_owned(), vec![z])),
                    device_path: device_path(index),
                }
            })
            .collect()
    }

    fn reader_config(
        &self,
        machine: &InventoryMachine,
        snapshots: &[SnapshotRef],
    ) -> Vec<AssignedDisk> {
        self.scanned(machine, snapshots)
            .into_iter()
            .map(|(index, disk, handle)| AssignedDisk {
                id: disk.id.clone(),
                source: DiskSource::BlockVolume {
                    volume: handle,
                    device_path: device_path(index),
                },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use snapsentry_crds::{Exposure, InstanceSelector, MachineDisk};

    use super::*;

    pub(in crate::gcp) fn spec() -> GcpSpec {
        GcpSpec {
            projects: vec!["p".into()],
            zones: vec![],
            credentials_secret: None,
            scanner_zones: vec!["europe-west1-b".into()],
            endpoint_url: None,
            selector: InstanceSelector::default(),
            snapshot_strategy: None,
        }
    }

    #[test]
    fn block_volumes_and_reader_config_name_the_same_disks() {
        let p = GcpProvider::new(spec());
        let disk = |id: &str| MachineDisk {
            id: id.into(),
            device: None,
            size_bytes: Some(10 << 30),
            unsupported: None,
        };
        let machine = InventoryMachine {
            id: "123".into(),
            name: "vm".into(),
            region: Some("us-central1-a".into()),
            platform: Some("linux".into()),
            state: Some("running".into()),
            exposure: Exposure::default(),
            authorized_keys: Vec::new(),
            disks: vec![
                disk("projects/p/zones/us-central1-a/disks/boot"),
                disk("projects/p/zones/us-central1-a/disks/lost"),
                disk("projects/p/zones/us-central1-a/disks/data"),
            ],
        };
        let snaps = ["data", "boot"].map(|d| SnapshotRef {
            disk_id: format!("projects/p/zones/us-central1-a/disks/{d}"),
            snapshot_id: format!("projects/p/global/snapshots/s-{d}"),
            region: Some("europe-west1-b".into()),
            created: true,
        });
        let volumes = p.block_volumes(&machine, &snaps);
        let disks = p.reader_config(&machine, &snaps);
        assert_eq!(volumes.len(), 2);
        assert_eq!(disks.len(), 2);
        for (v, d) in volumes.iter().zip(&disks) {
            assert_eq!(
                d.source,
                DiskSource::BlockVolume {
                    volume: v.volume_handle.clone(),
                    device_path: v.device_path.clone(),
                }
            );
            assert_eq!(v.driver, CSI_DRIVER);
            assert_eq!(v.capacity_bytes, 10 << 30);
            assert_eq!(
                v.node_affinity,
                Some((ZONE_TOPOLOGY_KEY.into(), vec!["europe-west1-b".into()]))
            );
            assert!(
                v.volume_handle
                    .starts_with("projects/p/zones/europe-west1-b/disks/snapsentry-d-")
            );
        }
        assert_eq!(disks[0].id, "projects/p/zones/us-central1-a/disks/boot");
        assert_eq!(volumes[0].device_path, "/dev/snapsentry/disk-0");
        assert_eq!(volumes[1].device_path, "/dev/snapsentry/disk-2");
        assert_eq!(p.cloud(), Cloud::Gcp);
    }

    #[test]
    fn disks_need_a_scanner_zone() {
        let p = GcpProvider::new(GcpSpec {
            scanner_zones: vec![],
            ..spec()
        });
        assert!(
            p.scanner_zone()
                .unwrap_err()
                .to_string()
                .contains("scannerZones is not set")
        );
    }
}
