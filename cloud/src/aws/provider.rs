//! [`AwsProvider`]: one `spec.providers[].aws` entry as a [`Provider`].

use std::sync::Arc;

use futures::future::{BoxFuture, FutureExt};
use jiff::Timestamp;
use snapsentry_crds::{AssignedDisk, AwsProvider as AwsSpec, Cloud, DiskSource};
use tokio::sync::OnceCell;

use super::clients::Clients;
use super::snapshots::SnapshotWait;
use crate::error::Result;
use crate::provider::by_strategy;
use crate::{Inventory, InventoryMachine, Provider, ProviderContext, SnapshotRef};

/// EC2 instances of one `aws` provider entry.
pub struct AwsProvider {
    pub(super) spec: AwsSpec,
    pub(super) wait: SnapshotWait,
    pub(super) clients: OnceCell<Arc<Clients>>,
}

impl std::fmt::Debug for AwsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsProvider")
            .field("spec", &self.spec)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl AwsProvider {
    pub fn new(spec: AwsSpec) -> Self {
        Self {
            spec,
            wait: SnapshotWait::default(),
            clients: OnceCell::new(),
        }
    }

    /// Change how long snapshot creation is waited for.
    pub fn with_snapshot_wait(mut self, wait: SnapshotWait) -> Self {
        self.wait = wait;
        self
    }
}

impl Provider for AwsProvider {
    fn cloud(&self) -> Cloud {
        Cloud::Aws
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
            self.newest_existing(ctx, machine),
        )
        .boxed()
    }

    fn release_snapshots<'a>(
        &'a self,
        ctx: &'a ProviderContext,
        snapshots: &'a [SnapshotRef],
    ) -> BoxFuture<'a, Result<()>> {
        self.delete_impl(ctx, snapshots).boxed()
    }

    fn sweep<'a>(
        &'a self,
        ctx: &'a ProviderContext,
        older_than: Timestamp,
    ) -> BoxFuture<'a, Result<u32>> {
        // Also for `newestExisting`: the policy may have created snapshots before its strategy
        // changed.
        self.sweep_impl(ctx, older_than).boxed()
    }

    fn reader_config(
        &self,
        machine: &InventoryMachine,
        snapshots: &[SnapshotRef],
    ) -> Vec<AssignedDisk> {
        machine
            .disks
            .iter()
            .filter_map(|d| {
                let Some(s) = snapshots.iter().find(|s| s.disk_id == d.id) else {
                    tracing::warn!(instance = %machine.id, volume = %d.id, "no snapshot for volume; not scanned");
                    return None;
                };
                Some(AssignedDisk {
                    id: d.id.clone(),
                    source: DiskSource::EbsSnapshot {
                        snapshot_id: s.snapshot_id.clone(),
                        region: s
                            .region
                            .clone()
                            .or_else(|| machine.region.clone())
                            .unwrap_or_default(),
                        endpoint_url: self.spec.endpoint_url.clone(),
                        assume_role_arn: self.spec.assume_role_arn.clone(),
                        external_id: self.spec.external_id.clone(),
                    },
                })
            })
            .collect()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use snapsentry_crds::{Exposure, InstanceSelector, MachineDisk};

    use super::*;

    pub(in crate::aws) fn spec() -> AwsSpec {
        AwsSpec {
            regions: vec!["eu-west-1".into()],
            credentials_secret: None,
            assume_role_arn: Some("arn:aws:iam::111122223333:role/scan".into()),
            external_id: Some("ext-1".into()),
            endpoint_url: Some("http://127.0.0.1:5000".into()),
            selector: InstanceSelector::default(),
            snapshot_strategy: None,
        }
    }

    #[test]
    fn reader_config_follows_the_disk_order() {
        let p = AwsProvider::new(spec());
        let machine = InventoryMachine {
            id: "i-1".into(),
            name: "web".into(),
            region: Some("eu-west-1".into()),
            platform: Some("linux".into()),
            state: Some("running".into()),
            exposure: Exposure::default(),
            authorized_keys: Vec::new(),
            disks: ["vol-root", "vol-data"]
                .iter()
                .map(|v| MachineDisk {
                    id: (*v).into(),
                    device: None,
                    size_bytes: None,
                    unsupported: None,
                })
                .collect(),
        };
        let snaps = [("vol-data", "snap-2"), ("vol-root", "snap-1")].map(|(d, s)| SnapshotRef {
            disk_id: d.into(),
            snapshot_id: s.into(),
            region: Some("eu-west-1".into()),
            created: true,
        });
        let disks = p.reader_config(&machine, &snaps);
        assert_eq!(disks.len(), 2);
        assert_eq!(disks[0].id, "vol-root");
        assert_eq!(
            disks[0].source,
            DiskSource::EbsSnapshot {
                snapshot_id: "snap-1".into(),
                region: "eu-west-1".into(),
                endpoint_url: Some("http://127.0.0.1:5000".into()),
                assume_role_arn: Some("arn:aws:iam::111122223333:role/scan".into()),
                external_id: Some("ext-1".into()),
            }
        );
        assert_eq!(disks[1].id, "vol-data");
        // A volume without a snapshot is left out, not read from nowhere.
        assert_eq!(p.reader_config(&machine, &snaps[..1]).len(), 1);
    }
}
