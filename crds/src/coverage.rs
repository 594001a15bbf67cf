//! Coverage: why a volume was not scanned ([`SkipReason`], written by the scanner into each
//! `VolumeResult`) and how much of a machine its last scan read ([`MachineCoverage`], written
//! by the operator into `ScannedMachine.status.coverage`). A machine that was not fully read is
//! never `Scanned`: it is `Incomplete`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::scanned_machine::ScanSummary;

/// Why a volume was not scanned. The scanner classifies each volume it could not read (the
/// CLI's `coverage.volumesSkipped[].reason` uses the same values).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::common::plain_enum)]
pub enum SkipReason {
    /// LUKS or BitLocker: the content cannot be read without the key.
    Encrypted,
    /// A kind of volume or disk source recognised but not read by this build.
    Unsupported,
    /// Recognised, but damaged or not readable (I/O error, broken partition entry or
    /// filesystem, a disk that could not be opened).
    Unreadable,
    /// No known filesystem: empty, zeroed, damaged beyond recognition or an unknown format.
    NoFilesystem,
    /// Swap space: not a filesystem, skipped by design (does not lose coverage).
    Swap,
    /// An LVM physical volume whose logical volumes are listed (and scanned) separately (does
    /// not lose coverage).
    Container,
}

impl SkipReason {
    /// Whether skipping a volume for this reason leaves part of the input unread.
    pub fn loses_coverage(self) -> bool {
        !matches!(self, SkipReason::Swap | SkipReason::Container)
    }

    /// The serialized name (`encrypted`, `noFilesystem`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Encrypted => "encrypted",
            SkipReason::Unsupported => "unsupported",
            SkipReason::Unreadable => "unreadable",
            SkipReason::NoFilesystem => "noFilesystem",
            SkipReason::Swap => "swap",
            SkipReason::Container => "container",
        }
    }
}

/// How much of a machine its last scan read (`status.coverage`, written by the operator from
/// `status.lastScan.volumes`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MachineCoverage {
    /// Id of the scan it describes.
    pub scan_id: String,
    /// Volumes found on the machine's disks (a disk that could not be opened counts as one).
    pub volumes_found: u32,
    /// Volumes whose files were scanned.
    pub volumes_scanned: u32,
    /// The volumes not scanned for a reason that loses coverage, at most 32.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub skipped: Vec<SkippedVolume>,
    /// `complete`, or `<scanned>/<found> volumes` (the `Coverage` printer column).
    pub summary: String,
}

/// A volume the scan could not read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkippedVolume {
    /// Volume id (`disk0/p2`, or `disk1` for a disk that could not be opened).
    pub id: String,
    /// Why, as a category.
    pub reason: SkipReason,
    /// The scanner's error text (never a secret value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl MachineCoverage {
    /// The coverage of a finished scan. A volume not scanned without a recorded reason (a
    /// scanner older than the field) counts as `unreadable`.
    pub fn of(scan: &ScanSummary) -> Self {
        let found = scan.volumes.len() as u32;
        let scanned = scan.volumes.iter().filter(|v| v.scanned).count() as u32;
        let skipped: Vec<SkippedVolume> = scan
            .volumes
            .iter()
            .filter(|v| !v.scanned)
            .map(|v| SkippedVolume {
                id: v.id.clone(),
                reason: v.skip_reason.unwrap_or(SkipReason::Unreadable),
                error: v.error.clone(),
            })
            .filter(|s| s.reason.loses_coverage())
            .collect();
        let summary = if skipped.is_empty() {
            "complete".to_owned()
        } else {
            format!("{scanned}/{found} volumes")
        };
        MachineCoverage {
            scan_id: scan.scan_id.clone(),
            volumes_found: found,
            volumes_scanned: scanned,
            skipped,
            summary,
        }
    }

    /// No volume was skipped for a reason that loses coverage. (Whether anything was read at
    /// all is `lastScan.succeeded`: a scan that read nothing is `Failed`.)
    pub fn is_complete(&self) -> bool {
        self.skipped.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VolumeResult;

    fn volume(id: &str, scanned: bool, reason: Option<SkipReason>) -> VolumeResult {
        VolumeResult {
            id: id.into(),
            filesystem: None,
            scanned,
            error: (!scanned).then(|| "why".to_owned()),
            skip_reason: reason,
        }
    }

    fn scan(volumes: Vec<VolumeResult>) -> ScanSummary {
        ScanSummary {
            scan_id: "s".into(),
            succeeded: true,
            volumes,
            ..Default::default()
        }
    }

    #[test]
    fn summary_and_skipped() {
        let full = MachineCoverage::of(&scan(vec![
            volume("disk0/p1", true, None),
            volume("disk0/p2", false, Some(SkipReason::Swap)),
        ]));
        assert!(full.is_complete());
        assert_eq!(full.summary, "complete");
        assert_eq!((full.volumes_found, full.volumes_scanned), (2, 1));

        let partial = MachineCoverage::of(&scan(vec![
            volume("disk0/p1", true, None),
            volume("disk0/p2", false, Some(SkipReason::Encrypted)),
            volume("disk1", false, None),
        ]));
        assert!(!partial.is_complete());
        assert_eq!(partial.summary, "1/3 volumes");
        let reasons: Vec<_> = partial
            .skipped
            .iter()
            .map(|s| (s.id.as_str(), s.reason))
            .collect();
        assert_eq!(
            reasons,
            [
                ("disk0/p2", SkipReason::Encrypted),
                ("disk1", SkipReason::Unreadable)
            ]
        );
        assert_eq!(partial.skipped[0].error.as_deref(), Some("why"));

        let unreadable = MachineCoverage::of(&scan(vec![volume("disk0", false, None)]));
        assert!(!unreadable.is_complete());
        assert_eq!(unreadable.summary, "0/1 volumes");
    }

    #[test]
    fn reasons_serialize_in_camel_case() {
        for r in [
            SkipReason::Encrypted,
            SkipReason::Unsupported,
            SkipReason::Unreadable,
            SkipReason::NoFilesystem,
            SkipReason::Swap,
            SkipReason::Container,
        ] {
            assert_eq!(
                serde_json::to_value(r).unwrap(),
                serde_json::Value::from(r.as_str())
            );
        }
    }
}
