//! The `images` provider: machines declared in the policy as disk image files (control plane
//! only: the scanner reads an image as a local file, through `snapsentry-disk`).
//!
//! There is no cloud: the inventory is the policy's `images.machines` with their declared
//! exposure, the "snapshots" are the image files themselves (nothing is created, so nothing is
//! deleted or swept), and the scanner reads each image at its path — under [`IMAGES_MOUNT`] when
//! the images sit on a PersistentVolumeClaim, which the Job then mounts read-only.

use futures::future::{BoxFuture, FutureExt};
use jiff::Timestamp;
use snapsentry_crds::{AssignedDisk, Cloud, DiskSource, ImagesProvider, MachineDisk};

use crate::error::Result;
use crate::{Inventory, InventoryMachine, Provider, ProviderContext, SnapshotRef};

/// Where the images claim is mounted in scanner Jobs.
pub const IMAGES_MOUNT: &str = "/images";

/// Machines declared as disk image files.
#[derive(Clone, Debug)]
pub struct ImagesSource {
    spec: ImagesProvider,
}

impl ImagesSource {
    pub fn new(spec: ImagesProvider) -> Self {
        Self { spec }
    }

    /// The PersistentVolumeClaim holding the images, if any.
    pub fn claim(&self) -> Option<&str> {
        self.spec.persistent_volume_claim.as_deref()
    }

    /// Path of a declared image inside the scanner's container.
    pub fn image_path(&self, declared: &str) -> String {
        match self.claim() {
            Some(_) => format!("{IMAGES_MOUNT}/{}", declared.trim_start_matches('/')),
            None => declared.to_owned(),
        }
    }

    fn machines(&self) -> Vec<InventoryMachine> {
        self.spec
            .machines
            .iter()
            .map(|m| InventoryMachine {
                id: m.name.clone(),
                name: m.name.clone(),
                region: None,
                platform: m.platform.clone(),
                state: None,
                exposure: m.exposure.clone().unwrap_or_default(),
                authorized_keys: Vec::new(),
                disks: m
                    .disks
                    .iter()
                    .map(|d| MachineDisk {
                        id: d.clone(),
                        device: None,
                        size_bytes: None,
                        unsupported: None,
                    })
                    .collect(),
            })
            .collect()
    }
}

impl Provider for ImagesSource {
    fn cloud(&self) -> Cloud {
        Cloud::Image
    }

    fn inventory<'a>(&'a self, _ctx: &'a ProviderContext) -> BoxFuture<'a, Result<Inventory>> {
        let inventory = Inventory {
            machines: self.machines(),
            targets: Default::default(),
        };
        futures::future::ready(Ok(inventory)).boxed()
    }

    fn prepare_snapshots<'a>(
        &'a self,
        _ctx: &'a ProviderContext,
        machine: &'a InventoryMachine,
        _scan_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<SnapshotRef>>> {
        // The image is its own snapshot: nothing to create, nothing to delete later.
        let snapshots = machine
            .disks
            .iter()
            .map(|d| SnapshotRef {
                disk_id: d.id.clone(),
                snapshot_id: d.id.clone(),
                region: None,
                created: false,
            })
            .collect();
        futures::future::ready(Ok(snapshots)).boxed()
    }

    fn release_snapshots<'a>(
        &'a self,
        _ctx: &'a ProviderContext,
        _snapshots: &'a [SnapshotRef],
    ) -> BoxFuture<'a, Result<()>> {
        futures::future::ready(Ok(())).boxed()
    }

    fn sweep<'a>(
        &'a self,
        _ctx: &'a ProviderContext,
        _older_than: Timestamp,
    ) -> BoxFuture<'a, Result<u32>> {
        futures::future::ready(Ok(0)).boxed()
    }

    fn reader_config(
        &self,
        machine: &InventoryMachine,
        _snapshots: &[SnapshotRef],
    ) -> Vec<AssignedDisk> {
        machine
            .disks
            .iter()
            .map(|d| AssignedDisk {
                id: d.id.clone(),
                source: DiskSource::Image {
                    path: self.image_path(&d.id),
                },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use snapsentry_crds::{Exposure, ImageMachine};

    use super::*;

    fn source(claim: Option<&str>) -> ImagesSource {
        ImagesSource::new(ImagesProvider {
            persistent_volume_claim: claim.map(str::to_owned),
            machines: vec![
                ImageMachine {
                    name: "web-01".into(),
                    disks: vec!["web-01.qcow2".into()],
                    exposure: Some(Exposure {
                        internet_facing: true,
                        reasons: vec!["port 22 open".into()],
                    }),
                    platform: Some("linux".into()),
                },
                ImageMachine {
                    name: "db-01".into(),
                    disks: vec!["db-01.raw".into(), "/db-01-data.vhd".into()],
                    exposure: None,
                    platform: None,
                },
            ],
        })
    }

    fn ctx() -> ProviderContext {
        ProviderContext {
            policy: "lab".into(),
            namespace: "snapsentry".into(),
            client: None,
        }
    }

    fn block_on<T>(f: BoxFuture<'_, T>) -> T {
        futures::executor::block_on(f)
    }

    #[test]
    fn inventory_is_the_declared_machines() {
        let s = source(Some("vm-images"));
        let inv = block_on(s.inventory(&ctx())).unwrap();
        assert_eq!(s.cloud(), Cloud::Image);
        assert_eq!(inv.machines.len(), 2);
        let web = &inv.machines[0];
        assert_eq!((web.id.as_str(), web.name.as_str()), ("web-01", "web-01"));
        assert!(web.exposure.internet_facing);
        assert_eq!(web.exposure.reasons, ["port 22 open"]);
        assert_eq!(web.platform.as_deref(), Some("linux"));
        let db = &inv.machines[1];
        assert!(
            !db.exposure.internet_facing,
            "no declared exposure means not exposed"
        );
        assert_eq!(
            db.disks.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            ["db-01.raw", "/db-01-data.vhd"]
        );
        assert_eq!(inv.targets, TargetInventoryDefault::default());
    }

    type TargetInventoryDefault = crate::TargetInventory;

    #[test]
    fn no_snapshots_are_created_or_deleted() {
        let s = source(None);
        let inv = block_on(s.inventory(&ctx())).unwrap();
        let snaps =
            block_on(s.prepare_snapshots(&ctx(), &inv.machines[1], "20261122-140000")).unwrap();
        assert_eq!(snaps.len(), 2);
        assert!(snaps.iter().all(|s| !s.created));
        block_on(s.release_snapshots(&ctx(), &snaps)).unwrap();
        assert_eq!(block_on(s.sweep(&ctx(), Timestamp::now())).unwrap(), 0);
    }

    #[test]
    fn disks_are_the_image_paths() {
        let with_claim = source(Some("vm-images"));
        let inv = block_on(with_claim.inventory(&ctx())).unwrap();
        let disks = with_claim.reader_config(&inv.machines[1], &[]);
        assert_eq!(
            disks,
            [
                AssignedDisk {
                    id: "db-01.raw".into(),
                    source: DiskSource::Image {
                        path: "/images/db-01.raw".into()
                    }
                },
                AssignedDisk {
                    id: "/db-01-data.vhd".into(),
                    source: DiskSource::Image {
                        path: "/images/db-01-data.vhd".into()
                    }
                },
            ]
        );
        let without = source(None);
        let disks = without.reader_config(&inv.machines[0], &[]);
        assert_eq!(
            disks[0].source,
            DiskSource::Image {
                path: "web-01.qcow2".into()
            }
        );
    }
}
