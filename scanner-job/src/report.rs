//! The CLI's scan report and its renderings: `table` for people, `json` (the stable contract in
//! `docs/cli.md`), `jsonl` (one finding per line), `sarif` (SARIF 2.1.0 for code-scanning tools,
//! in the `sarif` submodule) and `yaml` (a multi-document stream of SecretFinding manifests for
//! `kubectl apply`, [`manifests`], built by the finding model that builds the Job's objects) and
//! `html` (the plugin's self-contained report for one input, in the `html` submodule).
//! It renders what the pipeline found; it scans nothing and writes to no API.
//!
//! Every value here was already redacted by the engine: findings hold a prefix of at most four
//! characters, the length and a keyed fingerprint, never the secret.

use std::io::Write;

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;
use snapsentry_disk::VolumeInfo;
use snapsentry_engine::{Finding, FindingMetadata, Rule, Severity};

use crate::coverage::Coverage;
use crate::scan::{FileInfo, Skipped};

mod html;
pub mod manifests;
mod sarif;

pub use manifests::{DEFAULT_MANIFEST_POLICY, ManifestArgs, default_machine_name};

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Jsonl,
    Sarif,
    Yaml,
    /// One self-contained HTML page (the kubectl plugin's report, for one input).
    Html,
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
    /// How much of the input was read (volumes scanned and skipped, files, bytes).
    pub coverage: Coverage,
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
        let coverage = Coverage::new(
            (source.kind == "image").then_some(volumes.as_slice()),
            stats.files,
            stats.bytes_scanned,
        );
        Report {
            coverage,
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

    /// Render in `format`. `rules` describes the rules for SARIF's `tool.driver.rules`;
    /// `manifest` names the machine and policy of `yaml`'s SecretFindings.
    pub fn render(
        &self,
        format: Format,
        rules: &[Rule],
        manifest: &ManifestArgs,
    ) -> anyhow::Result<Vec<u8>> {
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
            Format::Yaml => out = self.manifests(manifest, Timestamp::now())?.into_bytes(),
            Format::Sarif => {
                serde_json::to_writer_pretty(&mut out, &self.sarif(rules))?;
                out.push(b'\n');
            }
            Format::Table => self.table(&mut out)?,
            Format::Html => out = self.html(Timestamp::now()).into_bytes(),
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
        )?;
        writeln!(out, "{}", self.coverage.summary())
    }
}

/// `volume:path` for images, `path` for directories.
fn located(volume: &Option<String>, path: &str) -> String {
    match volume {
        Some(v) => format!("{v}:{path}"),
        None => path.to_string(),
    }
}
