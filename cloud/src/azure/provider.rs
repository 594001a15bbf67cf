//! [`AzureProvider`]: one `spec.providers[].azure` entry as a [`Provider`].

use std::sync::Arc;

use futures::future::{BoxFuture, FutureExt};
use jiff::Timestamp;
use snapsentry_crds::contract::GRANTS_DIR;
use snapsentry_crds::{AssignedDisk, AzureProvider as AzureSpec, Cloud, DiskSource};
use tokio::sync::OnceCell;

use super::arm::Retry;
use super::auth::AzureEnvironment;
use super::clients::Clients;
use super::snapshots::grant_file;
use crate::error::Result;
use crate::provider::by_strategy;
use crate::wait::SnapshotWait;
use crate::{Inventory, InventoryMachine, Provider, ProviderContext, ReadGrant, SnapshotRef};

/// Azure VMs of one `azure` provider entry.
pub struct AzureProvider {
    pub(super) spec: AzureSpec,
    pub(super) wait: SnapshotWait,
    pub(super) retry: Retry,
    pub(super) env: AzureEnvironment,
    pub(super) clients: OnceCell<Arc<Clients>>,
}

impl std::fmt::Debug for AzureProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureProvider")
            .field("spec", &self.spec)
            .field("wait", &self.wait)
            .field("retry", &self.retry)
            .field("env", &self.env)
            .finish_non_exhaustive()
    }
}

impl AzureProvider {
    /// The provider of `spec`, with the process environment's workload identity and IMDS
    /// settings ([`AzureEnvironment::from_env`]).
    pub fn new(spec: AzureSpec) -> Self {
        Self {
            spec,
            wait: SnapshotWait::default(),
            retry: Retry::default(),
            env: AzureEnvironment::from_env(),
            clients: OnceCell::new(),
        }
    }

    /// Change how long snapshots and long-running operations are waited for.
    pub fn with_snapshot_wait(mut self, wait: SnapshotWait) -> Self {
        self.wait = wait;
        self
    }

    /// Change how often a throttled or failing ARM or token request is tried.
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// Use `env` instead of the process environment (tests).
    pub fn with_environment(mut self, env: AzureEnvironment) -> Self {
        self.env = env;
        self
    }
}

impl Provider for AzureProvider {
    fn cloud(&self) -> Cloud {
        Cloud::Azure
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

    fn grant_read<'a>(
        &'a self,
        ctx: &'a ProviderContext,
        machine: &'a InventoryMachine,
        snapshots: &'a [SnapshotRef],
        duration: std::time::Duration,
    ) -> BoxFuture<'a, Result<ReadGrant>> {
        self.grant_impl(ctx, machine, snapshots, duration).boxed()
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
            .enumerate()
            .filter_map(|(index, d)| {
                if let Some(why) = &d.unsupported {
                    tracing::info!(vm = %machine.id, disk = %d.id, reason = %why, "disk not scanned");
                    return None;
                }
                let Some(s) = snapshots.iter().find(|s| s.disk_id == d.id) else {
                    tracing::warn!(vm = %machine.id, disk = %d.id, "no snapshot for disk; not scanned");
                    return None;
                };
                Some(AssignedDisk {
                    id: d.id.clone(),
                    source: DiskSource::AzureSnapshot {
                        snapshot_id: s.snapshot_id.clone(),
                        // The file grant_read wrote the snapshot's SAS into.
                        sas_file: format!("{GRANTS_DIR}/{}", grant_file(index)),
                    },
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use snapsentry_crds::{Exposure, InstanceSelector, MachineDisk};

    use super::*;

    pub(in crate::azure) fn spec() -> AzureSpec {
        AzureSpec {
            subscriptions: vec!["s".into()],
            resource_groups: vec![],
            tenant_id: None,
            client_id: None,
            credentials_secret: None,
            arm_endpoint: None,
            authority_host: None,
            selector: InstanceSelector::default(),
            snapshot_strategy: None,
        }
    }

    #[test]
    fn reader_config_names_each_disks_grant_file() {
        let p = AzureProvider::new(spec());
        let disk = |id: &str, unsupported: Option<&str>| MachineDisk {
            id: id.into(),
            device: None,
            size_bytes: None,
            unsupported: unsupported.map(str::to_owned),
        };
        let machine = InventoryMachine {
            id: "/vm".into(),
            name: "vm".into(),
            region: Some("eastus".into()),
            platform: Some("linux".into()),
            state: Some("running".into()),
            exposure: Exposure::default(),
            authorized_keys: Vec::new(),
            disks: vec![
                disk("/os", None),
                disk("https://a/vhd", Some("unmanaged")),
                disk("/data", None),
            ],
        };
        let snaps = [("/data", "/snap-d"), ("/os", "/snap-os")].map(|(d, s)| SnapshotRef {
            disk_id: d.into(),
            snapshot_id: s.into(),
            region: None,
            created: true,
        });
        let disks = p.reader_config(&machine, &snaps);
        assert_eq!(disks.len(), 2);
        assert_eq!(disks[0].id, "/os");
        assert_eq!(
            disks[0].source,
            DiskSource::AzureSnapshot {
                snapshot_id: "/snap-os".into(),
                sas_file: format!("{GRANTS_DIR}/disk-0"),
            }
        );
        assert_eq!(
            disks[1].source,
            DiskSource::AzureSnapshot {
                snapshot_id: "/snap-d".into(),
                sas_file: format!("{GRANTS_DIR}/disk-2"),
            }
        );
        assert_eq!(p.cloud(), Cloud::Azure);
    }
}
