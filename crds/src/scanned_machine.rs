//! `ScannedMachine`: inventory and last scan of one machine.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Cloud, Exposure, SeverityCounts};
use crate::coverage::{MachineCoverage, SkipReason};

/// One machine a policy selected: what it is (spec, written by the operator from the inventory)
/// and what its last scan found (status, written by the scanner and the operator).
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "snapsentry.io",
    version = "v1alpha1",
    kind = "ScannedMachine",
    namespaced,
    shortname = "sm",
    category = "snapsentry",
    status = "ScannedMachineStatus",
    derive = "PartialEq",
    doc = "ScannedMachine is one virtual machine in a ScanPolicy's inventory and the result of its last scan.",
    printcolumn(name = "Cloud", type_ = "string", json_path = ".spec.cloud"),
    printcolumn(
        name = "Instance",
        type_ = "string",
        json_path = ".spec.instanceId",
        priority = "1"
    ),
    printcolumn(
        name = "Exposed",
        type_ = "boolean",
        json_path = ".spec.exposure.internetFacing"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Coverage",
        type_ = "string",
        json_path = ".status.coverage.summary"
    ),
    printcolumn(
        name = "Findings",
        type_ = "integer",
        json_path = ".status.findings.total"
    ),
    printcolumn(
        name = "Critical",
        type_ = "integer",
        json_path = ".status.findings.critical"
    ),
    printcolumn(
        name = "Last Scan",
        type_ = "date",
        json_path = ".status.lastScan.finishedAt"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ScannedMachineSpec {
    /// The ScanPolicy that selected the machine.
    pub policy: String,
    /// Cloud the machine lives in.
    pub cloud: Cloud,
    /// Cloud instance id (`i-0abc…`), Azure resource id, GCP instance id, or the image machine's name.
    pub instance_id: String,
    /// Display name (the `Name` tag, the VM name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Region or zone of the machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// `linux` or `windows` where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Instance state at inventory time (`running`, `stopped`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Whether the machine is reachable from the internet, and why.
    #[serde(default)]
    pub exposure: Exposure,
    /// Disks, in attachment order.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub disks: Vec<MachineDisk>,
    /// Public keys the cloud itself authorizes on the machine, outside its disk (GCE project
    /// and instance metadata `ssh-keys`, an Azure VM's `osProfile` SSH keys), at most 200. They
    /// count like the disk's `authorized_keys` (`status.authorizedKeys`) when SSH keys are
    /// verified.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 200))]
    pub cloud_authorized_keys: Vec<CloudAuthorizedKey>,
}

/// One disk of a machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MachineDisk {
    /// Volume id, disk resource id, or image path.
    pub id: String,
    /// Device name as the VM sees it (`/dev/xvda`), where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Disk size in bytes, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// Why the disk cannot be scanned (an Azure VM's unmanaged VHD disk: only managed disks can
    /// be snapshotted); absent for disks that are scanned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsupported: Option<String>,
}

/// A public key the cloud authorizes on a machine (read through the cloud's API, not from the
/// disk).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudAuthorizedKey {
    /// The user the key logs in as.
    pub user: String,
    /// `SHA256:…`
    pub fingerprint: String,
    /// Where the cloud keeps the key (`project metadata ssh-keys`, `instance metadata ssh-keys`,
    /// `osProfile ssh publicKeys`).
    pub source: String,
}

/// Scan lifecycle of a machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(transform = crate::common::plain_enum)]
pub enum MachinePhase {
    /// Selected; no scan has started yet.
    Pending,
    /// Snapshots of its disks are being made.
    Snapshotting,
    /// Its scanner Job is running.
    Scanning,
    /// The last scan finished, read every volume holding data, and its results were written.
    Scanned,
    /// The last scan finished and its results were written, but part of the machine was not
    /// read: a volume was skipped for a reason that loses coverage (encrypted, unsupported,
    /// unreadable, no filesystem) or a disk could not be opened (see `status.coverage`).
    Incomplete,
    /// The last scan failed (see the `Scanned` condition).
    Failed,
}

/// What the scanner and operator learned about a machine.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScannedMachineStatus {
    /// Where the machine is in its scan lifecycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<MachinePhase>,
    /// `Scanned`: True when the last scan succeeded, else False with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The scan now running, with progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<ScanProgress>,
    /// The last finished scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scan: Option<ScanSummary>,
    /// Public keys this machine authorizes (`authorized_keys`), at most 200.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 200))]
    pub authorized_keys: Vec<AuthorizedKey>,
    /// Open findings on this machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub findings: Option<SeverityCounts>,
    /// How much of the machine the last finished scan read (written by the operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<MachineCoverage>,
}

/// Progress of a running scan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScanProgress {
    /// Id of the running scan.
    pub scan_id: String,
    /// When the scan started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// Files scanned so far.
    pub files_scanned: u64,
    /// Bytes scanned so far.
    pub bytes_scanned: u64,
    /// Ids of the snapshots the operator created for this scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots: Option<Vec<String>>,
    /// Name of the scanner Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
}

/// Result of one finished scan of a machine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScanSummary {
    /// Id of the scan.
    pub scan_id: String,
    /// At least one volume was scanned and the results were written.
    pub succeeded: bool,
    /// When the scan started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the scan finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// How long the scan took, in milliseconds.
    pub duration_ms: u64,
    /// Files scanned.
    pub files: u64,
    /// Bytes of file content scanned.
    pub bytes_scanned: u64,
    /// Volumes found, at most 32.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub volumes: Vec<VolumeResult>,
    /// First errors met (never secret values), at most 20.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub errors: Vec<String>,
    /// Findings the scan reported (SecretFindings written).
    pub findings: u32,
    /// Findings beyond the per-machine cap (the operator's `SNAPSENTRY_MAX_FINDINGS_PER_MACHINE`,
    /// default and most 500), not written as SecretFindings: the most severe were kept, these
    /// are counted, never silently dropped.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub findings_over_cap: u32,
    /// Cloud snapshot reads (EBS direct), when a disk was read from a snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_reads: Option<SnapshotReadStats>,
}

/// What reading cloud snapshots over the network took, summed over the disks of a scan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotReadStats {
    /// Written blocks the snapshots list.
    #[serde(default)]
    pub blocks_listed: u64,
    /// Blocks fetched (unwritten and unread blocks are never fetched).
    #[serde(default)]
    pub blocks_fetched: u64,
    /// Bytes fetched.
    #[serde(default)]
    pub bytes_fetched: u64,
    /// Requests retried after throttling, server errors, network errors or a checksum mismatch.
    #[serde(default)]
    pub retries: u64,
}

/// One volume's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeResult {
    /// Volume id (`disk0/p2`, `disk0/p3/vg/lv`).
    pub id: String,
    /// Filesystem found (`ext4`, `xfs`, `ntfs`, `lvm2`, `luks`, …), where recognized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<String>,
    /// The volume's files were scanned.
    pub scanned: bool,
    /// Why the volume was not scanned, or what went wrong while scanning it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why the volume was not scanned, as a category; absent when it was scanned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<SkipReason>,
}

/// A public key a machine authorizes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizedKey {
    /// The user whose `authorized_keys` holds the key.
    pub user: String,
    /// `SHA256:…`
    pub fingerprint: String,
    /// Path of the `authorized_keys` file.
    pub path: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}
