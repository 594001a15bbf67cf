//! `ScannedMachine`: inventory and last scan of one machine.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Cloud, Exposure, SeverityCounts};

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
    pub policy: String,
    pub cloud: Cloud,
    /// Cloud instance id (`i-0abc…`), Azure resource id, GCP instance id, or the image machine's name.
    pub instance_id: String,
    /// Display name (the `Name` tag, the VM name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// `linux` or `windows` where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Instance state at inventory time (`running`, `stopped`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default)]
    pub exposure: Exposure,
    /// Disks, in attachment order.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub disks: Vec<MachineDisk>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
}

/// Scan lifecycle of a machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MachinePhase {
    Pending,
    Snapshotting,
    Scanning,
    Scanned,
    Failed,
}

/// What the scanner and operator learned about a machine.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScannedMachineStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<MachinePhase>,
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
}

/// Progress of a running scan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScanProgress {
    pub scan_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    pub files_scanned: u64,
    pub bytes_scanned: u64,
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
    pub scan_id: String,
    pub succeeded: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    pub duration_ms: u64,
    pub files: u64,
    pub bytes_scanned: u64,
    /// Volumes found, at most 32.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub volumes: Vec<VolumeResult>,
    /// First errors met (never secret values), at most 20.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub errors: Vec<String>,
    /// Findings the scan reported.
    pub findings: u32,
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
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<String>,
    pub scanned: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A public key a machine authorizes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizedKey {
    pub user: String,
    /// `SHA256:…`
    pub fingerprint: String,
    pub path: String,
}
