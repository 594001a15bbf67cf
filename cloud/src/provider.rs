//! The control plane's interface to a cloud: where machines come from and how their disks become
//! readable.
//!
//! Every provider (AWS, Azure, GCP, disk images) implements [`Provider`]. Control-plane work —
//! listing instances and the resources secrets may open, creating and deleting snapshots — goes
//! through it; reading the snapshots' blocks is the scanner's job (the data plane), told how by
//! the [`AssignedDisk`]s that [`Provider::reader_config`] returns.
//!
//! The methods return boxed futures so providers can sit behind `dyn Provider` in one list.

use std::collections::BTreeMap;
use std::future::Future;

use futures::future::{BoxFuture, FutureExt};
use jiff::Timestamp;
use snapsentry_crds::{
    AssignedDisk, Cloud, CloudAuthorizedKey, Exposure, MachineDisk, SnapshotStrategy,
};

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

impl ProviderContext {
    /// The policy tag (AWS `snapsentry.io/policy`, Azure `snapsentry.io-policy`) value:
    /// `<namespace>.<policy>`, so that policies of the same name in two namespaces never sweep
    /// each other's snapshots.
    pub fn policy_tag(&self) -> String {
        format!("{}.{}", self.namespace, self.policy)
    }
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
    /// SSH public keys the cloud itself authorizes on the machine, outside its disk (GCE
    /// project and instance metadata `ssh-keys`, an Azure VM's `osProfile` keys), each with its
    /// user and source; empty where the cloud has none (AWS, disk images).
    pub authorized_keys: Vec<CloudAuthorizedKey>,
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

/// What the scanner needs, besides its own identity, to read a machine's snapshots: for Azure, one
/// read-only SAS URL per snapshot. Each entry is a file the operator writes into the Job's own
/// Secret, mounted at [`snapsentry_crds::contract::GRANTS_DIR`]; the [`AssignedDisk`]s of
/// [`Provider::reader_config`] name those files. The contents are credentials: `Debug` shows the
/// file names only, and they never reach a CR, event, log, metric or error.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ReadGrant {
    /// File name (a Secret key) to contents.
    pub files: BTreeMap<String, String>,
}

impl std::fmt::Debug for ReadGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadGrant")
            .field("files", &self.files.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A block volume a scanner Job attaches: a cloud disk (for GCP, made from a snapshot) that the
/// cluster's CSI driver attaches to the Job's node, read by the scanner as a raw block device.
/// The operator creates a PersistentVolume (`volumeMode: Block`, read-only, this driver and
/// handle) and a PersistentVolumeClaim bound to it before the Job, gives the Job a
/// `volumeDevices` entry at `device_path`, and deletes both when the Job ends, before
/// [`Provider::release_snapshots`] deletes the disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockVolume {
    /// CSI driver (`pd.csi.storage.gke.io`).
    pub driver: String,
    /// The driver's handle of the disk (`projects/P/zones/Z/disks/NAME`).
    pub volume_handle: String,
    /// The disk's size in bytes (the PersistentVolume's capacity).
    pub capacity_bytes: u64,
    /// Where the disk can attach: a node label and its values (`topology.gke.io/zone`,
    /// `[europe-west1-b]`), the PersistentVolume's node affinity.
    pub node_affinity: Option<(String, Vec<String>)>,
    /// The device inside the Job's container; the [`AssignedDisk`] of
    /// [`Provider::reader_config`] (a `blockVolume` source) names the same path.
    pub device_path: String,
}

/// [`Provider::prepare_snapshots`] of the clouds that snapshot, as the policy's
/// `snapshotStrategy` (`create` when unset) says: `create` snapshots every disk for the scan,
/// `newest_existing` chooses existing snapshots. Only the chosen future runs.
pub(crate) async fn by_strategy(
    strategy: Option<SnapshotStrategy>,
    create: impl Future<Output = Result<Vec<SnapshotRef>>>,
    newest_existing: impl Future<Output = Result<Vec<SnapshotRef>>>,
) -> Result<Vec<SnapshotRef>> {
    match strategy.unwrap_or(SnapshotStrategy::Create) {
        SnapshotStrategy::Create => create.await,
        SnapshotStrategy::NewestExisting => newest_existing.await,
    }
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

    /// Grant the scanner read access to `snapshots` (just before its Job is created), for about
    /// `duration` (the operator passes the Job's active deadline plus a margin, and ends the grant
    /// through [`Provider::release_snapshots`] as soon as the Job ends). May be called again for
    /// the same snapshots when an operator restarted before the Job existed. Providers whose
    /// scanner reads with its own identity grant nothing (the default).
    fn grant_read<'a>(
        &'a self,
        ctx: &'a ProviderContext,
        machine: &'a InventoryMachine,
        snapshots: &'a [SnapshotRef],
        duration: std::time::Duration,
    ) -> BoxFuture<'a, Result<ReadGrant>> {
        let _ = (ctx, machine, snapshots, duration);
        async { Ok(ReadGrant::default()) }.boxed()
    }

    /// A scan is done with `snapshots` (the operator calls it as soon as the machine's Job ends,
    /// and again for anything left when the scan finishes or the policy goes): end every read
    /// grant [`Provider::grant_read`] made on them, and delete those the scan created
    /// (`created`); others are left alone. Only `snapshot_id`, `region` and `created` are known
    /// after an operator restart (`disk_id` is empty). Idempotent: a snapshot or grant already
    /// gone is not an error.
    fn release_snapshots<'a>(
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

    /// The block volumes the Job of `machine` attaches to read `snapshots` (GCP); none by default.
    fn block_volumes(
        &self,
        machine: &InventoryMachine,
        snapshots: &[SnapshotRef],
    ) -> Vec<BlockVolume> {
        let _ = (machine, snapshots);
        Vec::new()
    }

    /// How the scanner reads each disk of `machine` from `snapshots`.
    fn reader_config(
        &self,
        machine: &InventoryMachine,
        snapshots: &[SnapshotRef],
    ) -> Vec<AssignedDisk>;
}
