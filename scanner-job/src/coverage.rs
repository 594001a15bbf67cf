//! Coverage: how much of the input the CLI actually read — volumes found, scanned and skipped
//! (with the reason), files and bytes read — and the verdict it implies (`complete`, `partial`,
//! `none`). A scan that read nothing must never look clean: the verdict picks the exit code
//! ([`Coverage::exit_code`]) and the warnings on standard error ([`Coverage::warnings`]). The
//! contract is docs/cli.md ("Coverage", "Exit codes").

use serde::Serialize;
use snapsentry_crds::SkipReason;
use snapsentry_disk::VolumeInfo;

/// Exit code when nothing could be scanned (no volume opened).
pub const EXIT_NOTHING_SCANNED: u8 = 3;
/// Exit code when some volumes could not be scanned (and nothing was found, or `--exit-code`
/// is 0).
pub const EXIT_PARTIAL: u8 = 4;

/// Why a volume was not scanned: the one classification, used by the CLI's coverage and by the
/// Job for each `VolumeResult.skipReason` (the reasons are the API's [`SkipReason`]).
pub fn skip_reason(info: &VolumeInfo) -> SkipReason {
    classify(info.filesystem.as_deref(), info.error.as_deref())
}

/// [`skip_reason`] from a volume's filesystem and error text (a disk that could not be opened
/// has neither filesystem nor volume: its error alone decides).
pub fn classify(filesystem: Option<&str>, error: Option<&str>) -> SkipReason {
    let error = error.unwrap_or("");
    match filesystem {
        Some("luks" | "bitlocker") => SkipReason::Encrypted,
        Some("swap") => SkipReason::Swap,
        Some("lvm2") if error.contains("listed separately") => SkipReason::Container,
        _ if error.contains("unsupported") || error.contains("not supported") => {
            SkipReason::Unsupported
        }
        None if error == "no known filesystem" => SkipReason::NoFilesystem,
        _ => SkipReason::Unreadable,
    }
}

/// A volume that was not scanned.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SkippedVolume {
    /// The volume's id (`p2`, `disk`, `p3/rootvg/rootlv`).
    pub id: String,
    /// Why, as a category.
    pub reason: SkipReason,
    /// Why, in one line (the volume's `error`).
    pub detail: String,
}

/// The verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    /// Every volume that holds data was scanned (a `dir` scan is always complete).
    Complete,
    /// At least one volume was scanned and at least one holding data was not.
    Partial,
    /// No volume could be scanned: the scan says nothing about the input.
    None,
}

/// How much of the input was read (`coverage` in `--format json`).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Coverage {
    /// `complete`, `partial` or `none`.
    pub status: Status,
    /// Volumes found on the image (0 for `dir`).
    pub volumes_found: u64,
    /// Volumes whose filesystem was walked.
    pub volumes_scanned: u64,
    /// The others, with the reason.
    pub volumes_skipped: Vec<SkippedVolume>,
    /// Files read.
    pub files: u64,
    /// Bytes read.
    pub bytes: u64,
}

impl Coverage {
    /// The coverage of an image scan over `volumes`, or of a directory (`volumes` is `None`).
    pub fn new(volumes: Option<&[VolumeInfo]>, files: u64, bytes: u64) -> Self {
        let Some(volumes) = volumes else {
            return Coverage {
                status: Status::Complete,
                volumes_found: 0,
                volumes_scanned: 0,
                volumes_skipped: Vec::new(),
                files,
                bytes,
            };
        };
        let scanned = volumes.iter().filter(|v| v.scanned).count() as u64;
        let skipped: Vec<SkippedVolume> = volumes
            .iter()
            .filter(|v| !v.scanned)
            .map(|v| SkippedVolume {
                id: v.id.clone(),
                reason: skip_reason(v),
                detail: v.error.clone().unwrap_or_else(|| "not scanned".into()),
            })
            .collect();
        let status = if scanned == 0 {
            Status::None
        } else if skipped.iter().any(|s| s.reason.loses_coverage()) {
            Status::Partial
        } else {
            Status::Complete
        };
        Coverage {
            status,
            volumes_found: volumes.len() as u64,
            volumes_scanned: scanned,
            volumes_skipped: skipped,
            files,
            bytes,
        }
    }

    /// The exit code: nothing scanned (3) > findings with `--exit-code N` (N ≠ 0) > partial (4) >
    /// 0. (An unusable input, 2, never gets this far.)
    pub fn exit_code(&self, findings: usize, exit_code: u8) -> u8 {
        match self.status {
            Status::None => EXIT_NOTHING_SCANNED,
            _ if findings > 0 && exit_code != 0 => exit_code,
            Status::Partial => EXIT_PARTIAL,
            Status::Complete => 0,
        }
    }

    /// The lines for standard error: one per volume not scanned, then the verdict when the scan
    /// is not complete.
    pub fn warnings(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .volumes_skipped
            .iter()
            .map(|s| {
                format!(
                    "warning: volume {} not scanned ({}): {}",
                    s.id,
                    s.reason.as_str(),
                    s.detail
                )
            })
            .collect();
        match self.status {
            Status::None => lines.push(format!(
                "warning: nothing scanned: none of {} volume(s) could be read; this is not a clean result",
                self.volumes_found
            )),
            Status::Partial => lines.push(format!(
                "warning: partial scan: {} of {} volume(s) scanned",
                self.volumes_scanned, self.volumes_found
            )),
            Status::Complete => {}
        }
        lines
    }

    /// One line for people (`table`, and standard error for `jsonl`/`yaml`).
    pub fn summary(&self) -> String {
        let mut line = format!(
            "coverage: {}; {} file(s), {} bytes read",
            self.status.as_str(),
            self.files,
            self.bytes
        );
        if self.volumes_found > 0 || self.status != Status::Complete {
            line.push_str(&format!(
                "; {} of {} volume(s) scanned",
                self.volumes_scanned, self.volumes_found
            ));
        }
        for s in &self.volumes_skipped {
            line.push_str(&format!("; {} skipped ({})", s.id, s.reason.as_str()));
        }
        line
    }
}

impl Status {
    /// The name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Complete => "complete",
            Status::Partial => "partial",
            Status::None => "none",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(id: &str, fs: Option<&str>, scanned: bool, error: Option<&str>) -> VolumeInfo {
        VolumeInfo {
            id: id.into(),
            partition: None,
            scheme: "gpt",
            lvm: None,
            filesystem: fs.map(Into::into),
            label: None,
            offset: 0,
            size_bytes: 1,
            scanned,
            error: error.map(Into::into),
        }
    }

    #[test]
    fn precedence() {
        let none = Coverage::new(
            Some(&[volume("disk", None, false, Some("no known filesystem"))]),
            0,
            0,
        );
        assert_eq!(none.status, Status::None);
        assert_eq!(none.exit_code(0, 1), 3);
        let partial = Coverage::new(
            Some(&[
                volume("p1", Some("luks"), false, Some("encrypted")),
                volume("p2", Some("ext4"), true, None),
                volume("p3", Some("swap"), false, Some("swap space, not scanned")),
            ]),
            1,
            1,
        );
        assert_eq!(partial.status, Status::Partial);
        assert_eq!(partial.volumes_skipped[0].reason, SkipReason::Encrypted);
        assert_eq!(partial.exit_code(0, 1), 4);
        assert_eq!(partial.exit_code(2, 1), 1);
        assert_eq!(partial.exit_code(2, 0), 4);
        let swap_only_beside = Coverage::new(
            Some(&[
                volume("p1", Some("ext4"), true, None),
                volume("p2", Some("swap"), false, Some("swap space, not scanned")),
            ]),
            1,
            1,
        );
        assert_eq!(swap_only_beside.status, Status::Complete);
        assert_eq!(Coverage::new(None, 0, 0).exit_code(0, 1), 0);
    }

    #[test]
    fn a_disk_that_could_not_be_opened_is_classified_by_its_error() {
        assert_eq!(
            classify(None, Some("GCP snapshots are not supported in this build")),
            SkipReason::Unsupported
        );
        assert_eq!(
            classify(
                None,
                Some("read failed at offset 0: No such file or directory")
            ),
            SkipReason::Unreadable
        );
        assert_eq!(
            classify(None, Some("no known filesystem")),
            SkipReason::NoFilesystem
        );
        assert_eq!(
            classify(
                Some("bitlocker"),
                Some("encrypted volume (bitlocker), not scanned")
            ),
            SkipReason::Encrypted
        );
    }
}
