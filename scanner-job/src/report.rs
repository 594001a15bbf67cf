//! The CLI's scan report and its renderings: `table` for people (the `table` submodule), `json` (the stable contract in
//! `docs/cli.md`), `jsonl` (one finding per line), `sarif` (SARIF 2.1.0 for code-scanning tools,
//! in the `sarif` submodule) and `yaml` (a multi-document stream of SecretFinding manifests for
//! `kubectl apply`, [`manifests`], built by the finding model that builds the Job's objects) and
//! `html` (the plugin's self-contained report for one input, in the `html` submodule).
//! It renders what the pipeline found; it scans nothing and writes to no API.
//!
//! Every value here was already redacted by the engine: findings hold a prefix of at most four
//! characters, the length and a keyed fingerprint, never the secret.

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;
use snapsentry_crds::ArchiveLocation;
use snapsentry_disk::VolumeInfo;
use snapsentry_engine::{Finding, FindingMetadata, Rule, Severity};

use crate::coverage::Coverage;
use crate::scan::{FileInfo, Skipped};
use crate::triage::Suppressed;

mod html;
pub mod manifests;
mod sarif;
mod table;

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
    /// Files inside archives scanned (not counted in `files`).
    pub archive_entries: u64,
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
    /// `<archive>!<entry>` for a file inside an archive.
    pub path: String,
    /// The archive and the path inside it, for a file inside an archive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveLocation>,
    pub line: usize,
    pub fingerprint: String,
    pub redacted: String,
    /// Facts of the file (of the archive, for a file inside one).
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
            archive: None,
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
    /// Findings left out of `findings` by triage (ignore file, baseline, `--severity`).
    pub suppressed: Suppressed,
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
            suppressed: Suppressed::default(),
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
}
