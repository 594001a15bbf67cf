//! The scan report and its renderings: `table` for people, `json` (the stable contract in
//! DESIGN.md "CLI"), `jsonl` (one finding per line), `sarif` (SARIF 2.1.0 for code-scanning
//! tools) and `yaml` (the findings list; the CRD work turns it into SecretFinding manifests).
//!
//! Every value here was already redacted by the engine: findings hold a prefix of at most four
//! characters, the length and a keyed fingerprint, never the secret.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;
use snapsentry_disk::{Metadata, VolumeInfo};
use snapsentry_engine::{Finding, FindingMetadata, Rule, Severity, time};

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Jsonl,
    Sarif,
    Yaml,
}

/// What was scanned.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// `image` or `dir`.
    pub kind: &'static str,
    pub path: String,
    /// Image container format (`raw`, `qcow2`, …), images only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
}

/// Files not scanned, by reason.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    /// In a test, example or fixture directory (see `--include-tests`).
    pub test_directory: u64,
    /// Larger than `--max-file-size`.
    pub too_large: u64,
    /// Content unreadable by design (compressed/encrypted NTFS files, …) or unlistable directories.
    pub unreadable: u64,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub files: u64,
    pub bytes_scanned: u64,
    pub duration_ms: u64,
    /// Files that could not be read.
    pub errors: u64,
    pub skipped: Skipped,
}

/// File facts reported with a finding.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileInfo {
    pub size: u64,
    /// Permission bits in octal (`0600`), where the filesystem keeps them.
    pub mode: Option<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub modified: Option<String>,
    pub accessed: Option<String>,
}

impl FileInfo {
    pub fn from_disk(m: &Metadata) -> Self {
        FileInfo {
            size: m.size,
            mode: m.mode.map(|m| format!("{:04o}", m & 0o7777)),
            uid: m.uid,
            gid: m.gid,
            modified: m.modified.map(|t| time::rfc3339(t.secs)),
            accessed: m.accessed.map(|t| time::rfc3339(t.secs)),
        }
    }

    pub fn from_std(m: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        FileInfo {
            size: m.len(),
            mode: Some(format!("{:04o}", m.mode() & 0o7777)),
            uid: Some(m.uid()),
            gid: Some(m.gid()),
            modified: Some(time::rfc3339(m.mtime())),
            accessed: Some(time::rfc3339(m.atime())),
        }
    }
}

/// One finding with where it was found.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportFinding {
    pub rule_id: String,
    pub title: String,
    pub secret_type: String,
    pub severity: Severity,
    pub confidence: snapsentry_engine::Confidence,
    /// Volume id for images; `null` for `dir`.
    pub volume: Option<String>,
    pub path: String,
    pub line: usize,
    pub fingerprint: String,
    pub redacted: String,
    pub file: FileInfo,
    pub metadata: FindingMetadata,
}

impl ReportFinding {
    pub fn new(f: Finding, volume: Option<String>, path: String, file: FileInfo) -> Self {
        ReportFinding {
            rule_id: f.rule_id,
            title: f.title,
            secret_type: f.secret_type,
            severity: f.severity,
            confidence: f.confidence,
            volume,
            path,
            line: f.line,
            fingerprint: f.fingerprint,
            redacted: f.redacted,
            file,
            metadata: f.metadata,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrivateKeyRow {
    pub volume: Option<String>,
    pub path: String,
    pub line: usize,
    pub fingerprint: Option<String>,
    pub algorithm: Option<String>,
    pub encrypted: bool,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizedKeyRow {
    pub volume: Option<String>,
    pub path: String,
    /// From `/home/<user>/` or `/root/`.
    pub user: Option<String>,
    pub line: usize,
    pub algorithm: String,
    pub fingerprint: String,
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ssh {
    pub private_keys: Vec<PrivateKeyRow>,
    pub authorized_keys: Vec<AuthorizedKeyRow>,
}

/// The whole report (`--format json`).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub source: Source,
    pub volumes: Vec<VolumeInfo>,
    pub stats: Stats,
    pub findings: Vec<ReportFinding>,
    pub ssh: Ssh,
}

impl Report {
    pub fn new(
        source: Source,
        volumes: Vec<VolumeInfo>,
        stats: Stats,
        mut findings: Vec<ReportFinding>,
        mut private_keys: Vec<PrivateKeyRow>,
        mut authorized_keys: Vec<AuthorizedKeyRow>,
    ) -> Self {
        findings.sort_by(|a, b| {
            (&a.volume, &a.path, a.line, &a.rule_id).cmp(&(&b.volume, &b.path, b.line, &b.rule_id))
        });
        private_keys
            .sort_by(|a, b| (&a.volume, &a.path, a.line).cmp(&(&b.volume, &b.path, b.line)));
        authorized_keys
            .sort_by(|a, b| (&a.volume, &a.path, a.line).cmp(&(&b.volume, &b.path, b.line)));
        Report {
            source,
            volumes,
            stats,
            findings,
            ssh: Ssh {
                private_keys,
                authorized_keys,
            },
        }
    }

    /// Render in `format`. `rules` describes the rules for SARIF's `tool.driver.rules`.
    pub fn render(&self, format: Format, rules: &[Rule]) -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::new();
        match format {
            Format::Json => {
                serde_json::to_writer_pretty(&mut out, self)?;
                out.push(b'\n');
            }
            Format::Jsonl => {
                for f in &self.findings {
                    serde_json::to_writer(&mut out, f)?;
                    out.push(b'\n');
                }
            }
            Format::Yaml => out = serde_yaml::to_string(&self.findings)?.into_bytes(),
            Format::Sarif => {
                serde_json::to_writer_pretty(&mut out, &self.sarif(rules))?;
                out.push(b'\n');
            }
            Format::Table => self.table(&mut out)?,
        }
        Ok(out)
    }

    fn table(&self, out: &mut Vec<u8>) -> std::io::Result<()> {
        let rows: Vec<[String; 5]> = self
            .findings
            .iter()
            .map(|f| {
                let location = format!("{}:{}", located(&f.volume, &f.path), f.line);
                [
                    f.severity.as_str().to_uppercase(),
                    f.rule_id.clone(),
                    location,
                    f.redacted.clone(),
                    f.secret_type.clone(),
                ]
            })
            .collect();
        let header = ["SEVERITY", "RULE", "LOCATION", "REDACTED", "TYPE"].map(String::from);
        let mut widths = header.clone().map(|h| h.chars().count());
        for r in &rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        for r in std::iter::once(&header).chain(&rows) {
            let mut line = String::new();
            for (i, (c, w)) in r.iter().zip(widths).enumerate() {
                if i + 1 == r.len() {
                    line.push_str(c);
                } else {
                    line.push_str(c);
                    line.push_str(&" ".repeat(w - c.chars().count() + 2));
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        if !self.ssh.private_keys.is_empty() || !self.ssh.authorized_keys.is_empty() {
            writeln!(out)?;
            for k in &self.ssh.private_keys {
                writeln!(
                    out,
                    "private key     {}  {}  {}{}",
                    located(&k.volume, &k.path),
                    k.algorithm.as_deref().unwrap_or("?"),
                    k.fingerprint.as_deref().unwrap_or("(no fingerprint)"),
                    if k.encrypted { "  (passphrase)" } else { "" }
                )?;
            }
            for k in &self.ssh.authorized_keys {
                writeln!(
                    out,
                    "authorized key  {}  {}  {}  user={}",
                    located(&k.volume, &k.path),
                    k.algorithm,
                    k.fingerprint,
                    k.user.as_deref().unwrap_or("?")
                )?;
            }
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
        )
    }

    /// SARIF 2.1.0: one run, the rules that produced results, one result per finding.
    fn sarif(&self, rules: &[Rule]) -> serde_json::Value {
        use serde_json::json;
        let used: BTreeMap<&str, usize> = {
            let mut ids: Vec<&str> = self.findings.iter().map(|f| f.rule_id.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            ids.into_iter().enumerate().map(|(i, id)| (id, i)).collect()
        };
        let sarif_rules: Vec<_> = used
            .keys()
            .map(|id| {
                let rule = rules.iter().find(|r| r.id() == *id);
                let (title, severity, secret_type) = rule.map_or((*id, Severity::Medium, *id), |r| {
                    (r.spec.title.as_str(), r.spec.severity, r.spec.secret_type.as_str())
                });
                json!({
                    "id": id,
                    "name": snapsentry_engine::slugify(title),
                    "shortDescription": {"text": title},
                    "fullDescription": {"text": format!("{title}: a plaintext {secret_type} on the machine's disk.")},
                    "defaultConfiguration": {"level": sarif_level(severity)},
                    "help": {"text": "Remove the secret from the disk, rotate it at its issuer, and use a managed identity or a secret store instead."},
                    "properties": {
                        "tags": ["security", "secret"],
                        "security-severity": security_severity(severity),
                    },
                })
            })
            .collect();
        let results: Vec<_> = self
            .findings
            .iter()
            .map(|f| {
                let mut artifact = json!({"uri": uri_path(&f.path)});
                if let Some(v) = &f.volume {
                    artifact["uriBaseId"] = json!(v);
                }
                json!({
                    "ruleId": f.rule_id,
                    "ruleIndex": used[f.rule_id.as_str()],
                    "level": sarif_level(f.severity),
                    "message": {"text": format!("{} found ({})", f.secret_type, f.redacted)},
                    "locations": [{
                        "physicalLocation": {
                            "artifactLocation": artifact,
                            "region": {"startLine": f.line.max(1)},
                        }
                    }],
                    "partialFingerprints": {"secretFingerprint/v1": f.fingerprint},
                    "properties": {
                        "severity": f.severity.as_str(),
                        "confidence": f.confidence,
                        "redacted": f.redacted,
                        "metadata": f.metadata,
                    },
                })
            })
            .collect();
        json!({
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [{
                "tool": {"driver": {
                    "name": "snapsentry",
                    "version": env!("CARGO_PKG_VERSION"),
                    "informationUri": "https://github.com/snapsentry/snapsentry",
                    "rules": sarif_rules,
                }},
                "results": results,
                "columnKind": "unicodeCodePoints",
            }],
        })
    }
}

/// `volume:path` for images, `path` for directories.
fn located(volume: &Option<String>, path: &str) -> String {
    match volume {
        Some(v) => format!("{v}:{path}"),
        None => path.to_string(),
    }
}

fn sarif_level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

/// GitHub code scanning reads `security-severity` (0.0–10.0, as a string).
fn security_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
        Severity::Info => "1.0",
    }
}

/// A relative URI reference for a `/`-path: leading `/` dropped, reserved bytes percent-encoded.
fn uri_path(path: &str) -> String {
    let mut out = String::new();
    for b in path.trim_start_matches('/').bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_encoded() {
        assert_eq!(uri_path("/home/a b/c#d"), "home/a%20b/c%23d");
    }
}
