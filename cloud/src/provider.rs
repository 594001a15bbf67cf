//! The control plane's interface to a cloud: where machines come from and how their disks become
//! readable.
//!
//! Every provider (AWS, Azure, GCP, disk images) implements [`Provider`]. Control-plane work —
//! listing instances and the resources secrets may open, creating and deleting snapshots — goes
//! through it; reading the snapshots' blocks is the scanner's job (the data plane), told how by
//! the [`AssignedDisk`]s that [`Provider::reader_config`] returns.
//!
//! The methods return boxed futures so providers can sit behind `dyn Provider` in one list.

use futures::future::BoxFuture;
use jiff::Timestamp;
use snapsentry_crds::{AssignedDisk, Cloud, Exposure, MachineDisk};

use crate::error::Result;
use crate::targets::TargetInventory;

/// What a provider call may need besides the provider's own configuration.
#[derive(Clone)]
pub struct ProviderContext {
    /// ScanPolicy name (tags on created snapshots).
    pub policy: String,
    /// Namespace of the policy (credential Secrets are read there).
    pub namespace: String,
    /// Client to read credential Secrets with; `None` where no provider of the policy needs one.
    pub client: Option<kube::Client>,
}

impl std::fmt::Debug for ProviderContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderContext")
            .field("policy", &self.policy)
            .field("namespace", &self.namespace)
            .field("client", &self.client.is_some())
            .finish()
    }
}

/// One machine in a provider's inventory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventoryMachine {
    /// Cloud instance id (`i-0abc…`, an Azure resource id, a GCE id) or image machine name.
    pub id: String,
    /// Display name (a DNS label for image machines).
    pub name: String,
    pub region: Option<String>,
    /// `linux` or `windows` where known.
    pub platform: Option<String>,
    /// `running`, `stopped`, …
    pub state: Option<String>,
    pub exposure: Exposure,
    /// Disks in attachment order.
    pub disks: Vec<MachineDisk>,
}

/// Everything a provider lists for a policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inventory {
    pub machines: Vec<InventoryMachine>,
    /// Resources secrets may open (databases, storage accounts).
    pub targets: TargetInventory,
}

/// A snapshot taken (or chosen) for one disk of a scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRef {
    /// The machine's disk it copies.
    pub disk_id: String,
    pub snapshot_id: String,
    pub region: Option<String>,
    /// Created for this scan (and so to be deleted after it), as opposed to an existing one
    /// chosen by the `newestExisting` strategy.
    pub created: bool,
}

/// A source of machines.
pub trait Provider: Send + Sync {
    /// Which cloud the machines are in.
    fn cloud(&self) -> Cloud;

    /// List the machines the policy selects and the target resources the provider can see.
    fn inventory<'a>(&'a self, ctx: &'a ProviderContext) -> BoxFuture<'a, Result<Inventory>>;

    /// Make every disk of `machine` readable for scan `scan_id`: snapshot it (tagged
    /// `snapsentry.io/*`) or choose an existing snapshot. Waits until the snapshots are usable.
    fn prepare_snapshots<'a>(
        &'a self,
        ctx: &'a ProviderContext,
        machine: &'a InventoryMachine,
        scan_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<SnapshotRef>>>;

    /// Delete the snapshots this scan created (those with `created`); others are left alone.
    fn delete_snapshots<'a>(
        &'a self,
        ctx: &'a ProviderContext,
        snapshots: &'a [SnapshotRef],
    ) -> BoxFuture<'a, Result<()>>;

    /// Delete leftover snapshots tagged by snapsentry for this policy and created before
    /// `older_than`; returns how many were deleted.
    fn sweep<'a>(
        &'a self,
        ctx: &'a ProviderContext,
        older_than: Timestamp,
    ) -> BoxFuture<'a, Result<u32>>;

    /// How the scanner reads each disk of `machine` from `snapshots`.
    fn reader_config(
        &self,
        machine: &InventoryMachine,
        snapshots: &[SnapshotRef],
    ) -> Vec<AssignedDisk>;
}
