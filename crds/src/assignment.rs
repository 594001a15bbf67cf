//! `ScanAssignment`: what one scanner Job is asked to do.
//!
//! The operator serializes it as JSON into the Job's `SNAPSENTRY_ASSIGNMENT` environment variable;
//! `snapsentry-scan job` parses it back. It lives here, not in the operator, because the scanner
//! depends on this crate and not on the operator. It never carries a secret: cloud credentials
//! come from the scanner's service account (workload identity), an Azure snapshot's read SAS URL
//! from a file the Job mounts from a Secret (`sasFile` of [`DiskSource::AzureSnapshot`]), and the
//! fingerprint key from the `SNAPSENTRY_FINGERPRINT_KEY` variable, which the Job fills from a
//! Secret.
//!
//! ```
//! use snapsentry_crds::{AssignedDisk, Cloud, DiskSource, ScanAssignment};
//! let a = ScanAssignment {
//!     version: ScanAssignment::VERSION,
//!     policy: "lab".into(),
//!     namespace: "snapsentry".into(),
//!     machine: "lab-web-01".into(),
//!     instance_id: "web-01".into(),
//!     scan_id: "20261122-140000".into(),
//!     cloud: Cloud::Image,
//!     disks: vec![AssignedDisk {
//!         id: "web-01.qcow2".into(),
//!         source: DiskSource::Image { path: "/images/web-01.qcow2".into() },
//!     }],
//!     rules: Default::default(),
//!     max_findings: 500,
//! };
//! let json = serde_json::to_string(&a).unwrap();
//! assert!(json.contains(r#""source":{"kind":"image","path":"/images/web-01.qcow2"}"#));
//! assert_eq!(serde_json::from_str::<ScanAssignment>(&json).unwrap(), a);
//! ```

use serde::{Deserialize, Serialize};

use crate::common::Cloud;

/// Environment variable holding the JSON [`ScanAssignment`].
pub const ASSIGNMENT_ENV: &str = "SNAPSENTRY_ASSIGNMENT";
/// Environment variable holding the fingerprint HMAC key (filled from a Secret).
pub const FINGERPRINT_KEY_ENV: &str = "SNAPSENTRY_FINGERPRINT_KEY";

/// One machine to scan, as the operator hands it to a scanner Job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanAssignment {
    /// Format version ([`ScanAssignment::VERSION`]); a scanner refuses versions it does not know.
    pub version: u32,
    /// ScanPolicy name.
    pub policy: String,
    /// Namespace of the ScanPolicy, where SecretFindings and the ScannedMachine are written.
    pub namespace: String,
    /// ScannedMachine name.
    pub machine: String,
    /// Cloud instance id or image machine name (for reports).
    pub instance_id: String,
    /// Id of this scan; written to every SecretFinding's `spec.scanId` and to
    /// `ScannedMachine.status.lastScan.scanId`.
    pub scan_id: String,
    /// Cloud the machine lives in.
    pub cloud: Cloud,
    /// Disks in attachment order.
    pub disks: Vec<AssignedDisk>,
    /// Detection settings from the policy.
    #[serde(default)]
    pub rules: AssignmentRules,
    /// SecretFindings to write at most; beyond it the scan reports truncation.
    pub max_findings: u32,
}

impl ScanAssignment {
    /// The format version this crate writes and reads.
    pub const VERSION: u32 = 1;
}

/// One disk and where to read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignedDisk {
    /// The machine's disk id (volume id, disk resource id, image path as declared).
    pub id: String,
    /// Where to read the disk.
    pub source: DiskSource,
}

/// Where a disk's blocks come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum DiskSource {
    /// A disk image file or block device readable inside the Job's container.
    Image {
        /// Path of the image file or block device.
        path: String,
    },
    /// An EBS snapshot, read through the EBS direct APIs.
    EbsSnapshot {
        /// Snapshot id (`snap-…`).
        snapshot_id: String,
        /// Region of the snapshot.
        region: String,
        /// EBS endpoint override (VPC endpoint, emulator).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint_url: Option<String>,
        /// Role the scanner assumes before reading (cross-account scanning); credentials to
        /// assume it come from the scanner's environment or service account.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        assume_role_arn: Option<String>,
        /// External id for assuming `assume_role_arn`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        external_id: Option<String>,
    },
    /// An Azure managed-disk snapshot, read as a page blob through a read-only SAS URL that the
    /// operator grants and hands to the Job in a file (a Secret mounted in its container): the
    /// SAS never appears in the assignment, and the scanner needs no Azure rights.
    AzureSnapshot {
        /// Resource id of the snapshot (for reports).
        snapshot_id: String,
        /// Path, inside the Job's container, of the file holding the snapshot's read SAS URL
        /// (surrounding whitespace ignored).
        sas_file: String,
    },
    /// A cloud disk attached to the Job's pod as a raw block volume: a PersistentVolume of
    /// `volumeMode: Block` bound through the cloud's CSI driver (for GCP, a Compute Engine disk
    /// made from the snapshot), read at `devicePath` — no mount, no privilege.
    BlockVolume {
        /// The CSI volume handle of the disk (`projects/P/zones/Z/disks/NAME`), for reports.
        volume: String,
        /// The device inside the Job's container (a `volumeDevices` entry).
        device_path: String,
    },
    /// A Compute Engine snapshot (reserved: GCP disks reach the scanner as a `blockVolume`).
    GcpSnapshot {
        /// Project of the snapshot.
        project: String,
        /// Snapshot name.
        snapshot: String,
    },
}

/// Detection settings from the policy's `rules` and `exclusions`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignmentRules {
    /// ConfigMap (in the policy's namespace) whose `rules.yaml` holds extra rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_rules_config_map: Option<String>,
    /// Rule ids to disable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disable: Vec<String>,
    /// Also report secrets in test, example and fixture directories.
    #[serde(default)]
    pub include_tests: bool,
    /// Files larger than this are not read (scanner default when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_file_size_bytes: Option<u64>,
    /// Levels of archives opened (0: none; scanner default when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_depth: Option<u32>,
    /// Path globs not to report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_paths: Vec<String>,
    /// Secret types (label values) not to report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_secret_types: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block volume names the device the Job reads and the volume handle it reports.
    #[test]
    fn block_volumes_carry_the_device_path() {
        let source = DiskSource::BlockVolume {
            volume: "projects/p/zones/europe-west1-b/disks/snap-disk".into(),
            device_path: "/dev/snapsentry/disk-0".into(),
        };
        let json = serde_json::to_value(&source).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "kind": "blockVolume",
                "volume": "projects/p/zones/europe-west1-b/disks/snap-disk",
                "devicePath": "/dev/snapsentry/disk-0",
            })
        );
        assert_eq!(serde_json::from_value::<DiskSource>(json).unwrap(), source);
    }

    /// An Azure disk names the file holding its SAS URL, never the URL itself.
    #[test]
    fn azure_snapshots_carry_the_sas_file_path() {
        let source = DiskSource::AzureSnapshot {
            snapshot_id:
                "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/snapshots/d".into(),
            sas_file: "/var/run/snapsentry/sas/disk0".into(),
        };
        let json = serde_json::to_value(&source).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "kind": "azureSnapshot",
                "snapshotId": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/snapshots/d",
                "sasFile": "/var/run/snapsentry/sas/disk0",
            })
        );
        assert_eq!(serde_json::from_value::<DiskSource>(json).unwrap(), source);
    }
}
