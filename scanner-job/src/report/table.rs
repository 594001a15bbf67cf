//! `--format table`, for people (not a contract): the findings most severe first, the SSH keys
//! under their own headers, a legend of the volume ids locations start with, the counts
//! (including what triage left out) and the coverage line. `--quiet` prints only the findings.

use std::io::Write;

use snapsentry_disk::VolumeInfo;

use super::Report;
use crate::columns::write_columns;
use crate::coverage::skip_reason;

impl Report {
    /// The whole table.
    pub(super) fn table(&self, out: &mut Vec<u8>) -> std::io::Result<()> {
        self.write_findings(out)?;
        self.write_ssh(out)?;
        if !self.volumes.is_empty() {
            writeln!(out, "\nVOLUMES (a location is VOLUME:PATH:LINE)")?;
            let mut rows = vec![
                ["VOLUME", "IS", "FILESYSTEM", "SIZE", "SCANNED"]
                    .map(String::from)
                    .to_vec(),
            ];
            rows.extend(self.volumes.iter().map(volume_row));
            write_columns(out, &rows)?;
        }
        let s = &self.stats;
        writeln!(
            out,
            "\n{} finding(s) in {} file(s), {} bytes, {} ms; skipped: {} in test directories, {} too large, {} unreadable; {} read error(s)",
            self.findings.len(),
            s.files,
            s.bytes_scanned,
            s.duration_ms,
            s.skipped.test_directory,
            s.skipped.too_large,
            s.skipped.unreadable,
            s.errors
        )?;
        if s.archive_entries > 0 || s.skipped.archives.any() {
            write!(
                out,
                "archives: {} file(s) inside scanned",
                s.archive_entries
            )?;
            if s.skipped.archives.any() {
                write!(out, "; not read: {}", s.skipped.archives.describe())?;
            }
            writeln!(out)?;
        }
        if self.suppressed.any() {
            writeln!(out, "not reported: {}", self.suppressed.describe())?;
        }
        writeln!(out, "{}", self.coverage.summary())
    }

    /// `--quiet --format table`: the findings' rows under their header; nothing when there are
    /// none.
    pub fn findings_table(&self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.write_findings(&mut out)?;
        Ok(out)
    }

    /// Findings by severity (most severe first), then location; nothing when there are none.
    fn write_findings(&self, out: &mut Vec<u8>) -> std::io::Result<()> {
        if self.findings.is_empty() {
            return Ok(());
        }
        let mut findings: Vec<_> = self.findings.iter().collect();
        // `Report::new` sorted them by location; a stable sort keeps that order within a severity.
        findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
        let mut rows = vec![
            ["SEVERITY", "RULE", "LOCATION", "REDACTED", "TYPE"]
                .map(String::from)
                .to_vec(),
        ];
        rows.extend(findings.iter().map(|f| {
            vec![
                f.severity.as_str().to_uppercase(),
                f.rule_id.clone(),
                format!("{}:{}", located(&f.volume, &f.path), f.line),
                f.redacted.clone(),
                f.secret_type.clone(),
            ]
        }));
        write_columns(out, &rows)
    }

    /// The SSH keys found: private keys, then the entries of `authorized_keys` files.
    fn write_ssh(&self, out: &mut Vec<u8>) -> std::io::Result<()> {
        let ssh = &self.ssh;
        if !ssh.private_keys.is_empty() {
            writeln!(out, "\nSSH PRIVATE KEYS")?;
            let mut rows = vec![
                [
                    "LOCATION",
                    "ALGORITHM",
                    "PUBLIC KEY FINGERPRINT",
                    "PASSPHRASE",
                ]
                .map(String::from)
                .to_vec(),
            ];
            rows.extend(ssh.private_keys.iter().map(|k| {
                vec![
                    format!("{}:{}", located(&k.volume, &k.path), k.line),
                    k.algorithm.clone().unwrap_or_else(|| "?".into()),
                    k.fingerprint
                        .clone()
                        .unwrap_or_else(|| "(needs the passphrase)".into()),
                    if k.encrypted { "yes" } else { "no" }.into(),
                ]
            }));
            write_columns(out, &rows)?;
        }
        if !ssh.authorized_keys.is_empty() {
            writeln!(out, "\nSSH AUTHORIZED KEYS (who may log in with which key)")?;
            let mut rows = vec![
                ["USER", "LOCATION", "ALGORITHM", "PUBLIC KEY FINGERPRINT"]
                    .map(String::from)
                    .to_vec(),
            ];
            rows.extend(ssh.authorized_keys.iter().map(|k| {
                vec![
                    k.user.clone().unwrap_or_else(|| "?".into()),
                    format!("{}:{}", located(&k.volume, &k.path), k.line),
                    k.algorithm.clone(),
                    k.fingerprint.clone(),
                ]
            }));
            write_columns(out, &rows)?;
        }
        Ok(())
    }
}

/// A row of the volume legend: id, what the id means, filesystem and label, size, scanned.
fn volume_row(v: &VolumeInfo) -> Vec<String> {
    let is = match (&v.lvm, v.partition) {
        (Some(lvm), Some(n)) => format!(
            "logical volume {} of LVM volume group {} (first extent on partition {n})",
            lvm.lv, lvm.vg
        ),
        (Some(lvm), None) => format!("logical volume {} of LVM volume group {}", lvm.lv, lvm.vg),
        (None, Some(n)) => format!("partition {n} of the disk ({})", v.scheme),
        (None, None) => "the whole disk (no partition table)".to_owned(),
    };
    let filesystem = match (&v.filesystem, &v.label) {
        (Some(fs), Some(label)) => format!("{fs} {label:?}"),
        (Some(fs), None) => fs.clone(),
        (None, _) => "-".to_owned(),
    };
    let scanned = if v.scanned {
        "yes".to_owned()
    } else {
        format!("no ({})", skip_reason(v).as_str())
    };
    vec![
        v.id.clone(),
        is,
        filesystem,
        human_size(v.size_bytes),
        scanned,
    ]
}

/// `757 MiB`, `1.5 GiB`, `512 B`.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value >= 10.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `volume:path` for images, `path` for directories.
pub(super) fn located(volume: &Option<String>, path: &str) -> String {
    match volume {
        Some(v) => format!("{v}:{path}"),
        None => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use snapsentry_disk::volume::LvmInfo;
    use snapsentry_engine::Severity;

    use super::*;
    use crate::report::{AuthorizedKeyRow, PrivateKeyRow, Source, Stats};
    use crate::triage::Suppressed;
    use crate::triage::tests::finding;

    fn volume(id: &str, partition: Option<u32>, lvm: Option<(&str, &str)>) -> VolumeInfo {
        VolumeInfo {
            id: id.into(),
            partition,
            scheme: "gpt",
            lvm: lvm.map(|(vg, lv)| LvmInfo {
                vg: vg.into(),
                lv: lv.into(),
            }),
            filesystem: Some("ext4".into()),
            label: None,
            offset: 0,
            size_bytes: 793_755_136,
            scanned: true,
            error: None,
        }
    }

    #[test]
    fn findings_by_severity_keys_under_headers_and_a_volume_legend() {
        let mut luks = volume("p3", Some(3), None);
        luks.filesystem = Some("luks".into());
        luks.scanned = false;
        luks.error = Some("encrypted volume (luks), not scanned".into());
        let mut report = Report::new(
            Source {
                kind: "image",
                path: "vm.raw".into(),
                format: Some("raw".into()),
                size_bytes: Some(1 << 30),
            },
            vec![
                volume("p1", Some(1), None),
                volume("p2/vg0/root", Some(2), Some(("vg0", "root"))),
                luks,
            ],
            Stats {
                files: 3,
                bytes_scanned: 30,
                duration_ms: 1,
                errors: 0,
                archive_entries: 0,
                skipped: Default::default(),
            },
            vec![
                finding("low-rule", Severity::Low, "hmac-sha256:01", "/a"),
                finding("crit-rule", Severity::Critical, "hmac-sha256:02", "/z"),
                finding("high-rule", Severity::High, "hmac-sha256:03", "/b"),
            ],
            vec![PrivateKeyRow {
                volume: Some("p1".into()),
                path: "/root/.ssh/id_ed25519".into(),
                line: 1,
                fingerprint: None,
                algorithm: Some("ssh-ed25519".into()),
                encrypted: true,
            }],
            vec![AuthorizedKeyRow {
                volume: Some("p1".into()),
                path: "/home/admin/.ssh/authorized_keys".into(),
                user: Some("admin".into()),
                line: 2,
                algorithm: "ssh-ed25519".into(),
                fingerprint: "SHA256:abc".into(),
            }],
        );
        report.suppressed = Suppressed {
            ignored: 2,
            baseline: 0,
            severity: 1,
        };
        let mut out = Vec::new();
        report.table(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            &lines[..4],
            [
                "SEVERITY  RULE       LOCATION  REDACTED   TYPE",
                "CRITICAL  crit-rule  p1:/z:1   abcd…(20)  crit-rule",
                "HIGH      high-rule  p1:/b:1   abcd…(20)  high-rule",
                "LOW       low-rule   p1:/a:1   abcd…(20)  low-rule",
            ]
        );
        let block = |header: &str, n: usize| -> Vec<&str> {
            let at = lines.iter().position(|l| *l == header).unwrap_or_else(|| {
                panic!("no {header:?} in\n{text}");
            });
            lines[at + 1..at + 1 + n].to_vec()
        };
        assert_eq!(
            block("SSH PRIVATE KEYS", 2),
            [
                "LOCATION                    ALGORITHM    PUBLIC KEY FINGERPRINT  PASSPHRASE",
                "p1:/root/.ssh/id_ed25519:1  ssh-ed25519  (needs the passphrase)  yes",
            ]
        );
        assert_eq!(
            block("SSH AUTHORIZED KEYS (who may log in with which key)", 2),
            [
                "USER   LOCATION                               ALGORITHM    PUBLIC KEY FINGERPRINT",
                "admin  p1:/home/admin/.ssh/authorized_keys:2  ssh-ed25519  SHA256:abc",
            ]
        );
        assert_eq!(
            block("VOLUMES (a location is VOLUME:PATH:LINE)", 4),
            [
                "VOLUME       IS                                                                         FILESYSTEM  SIZE     SCANNED",
                "p1           partition 1 of the disk (gpt)                                              ext4        757 MiB  yes",
                "p2/vg0/root  logical volume root of LVM volume group vg0 (first extent on partition 2)  ext4        757 MiB  yes",
                "p3           partition 3 of the disk (gpt)                                              luks        757 MiB  no (encrypted)",
            ]
        );
        assert!(
            text.contains("\nnot reported: 2 ignored, 1 outside --severity\n"),
            "{text}"
        );
        assert!(
            lines.last().unwrap().starts_with("coverage: partial"),
            "{text}"
        );

        // Quiet: the findings alone; nothing at all without findings.
        let quiet = String::from_utf8(report.findings_table().unwrap()).unwrap();
        assert_eq!(quiet, lines[..4].join("\n") + "\n");
        report.findings.clear();
        assert!(report.findings_table().unwrap().is_empty());
    }

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(793_755_136), "757 MiB");
        assert_eq!(human_size(2 << 40), "2.0 TiB");
    }
}
