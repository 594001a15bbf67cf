//! The scan report and its renderings: `table` for people, `json` (the stable contract in
//! DESIGN.md "CLI"), `jsonl` (one finding per line), `sarif` (SARIF 2.1.0 for code-scanning
//! tools) and `yaml` (a multi-document stream of SecretFinding manifests for `kubectl apply`,
//! built by the same code as the Job's objects).
//!
//! Every value here was already redacted by the engine: findings hold a prefix of at most four
//! characters, the length and a keyed fingerprint, never the secret.

use std::collections::BTreeMap;
use std::io::Write;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;
use snapsentry_crds::label_value::slugify;
use snapsentry_crds::{Cloud, ScanAssignment};
use snapsentry_disk::{Metadata, VolumeInfo};
use snapsentry_engine::{Finding, FindingMetadata, Rule, Severity, time};

use crate::job::{self, Located};

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Jsonl,
    Sarif,
    Yaml,
}

/// `spec.policy` of the manifests `--format yaml` prints when `--policy` is not given.
pub const DEFAULT_MANIFEST_POLICY: &str = "snapsentry-scan";

/// Whose findings the SecretFinding manifests of `--format yaml` are.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct ManifestArgs {
    /// With `--format yaml`: the machine (ScannedMachine name) the findings belong to; default:
    /// the image's or directory's name without its extension, as a DNS name.
    #[arg(long, value_name = "NAME", value_parser = parse_object_name)]
    pub machine: Option<String>,
    /// With `--format yaml`: the ScanPolicy the findings are filed under (`spec.policy` and the
    /// `snapsentry.io/policy` label).
    #[arg(long, value_name = "NAME", default_value = DEFAULT_MANIFEST_POLICY, value_parser = parse_object_name)]
    pub policy: String,
}

impl Default for ManifestArgs {
    fn default() -> Self {
        ManifestArgs {
            machine: None,
            policy: DEFAULT_MANIFEST_POLICY.to_owned(),
        }
    }
}

/// A Kubernetes object name (DNS subdomain: at most 253 of `[a-z0-9.-]`, alphanumeric at both
/// ends).
fn parse_object_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a Kubernetes object name (lowercase letters, digits, '-' and '.')"
        ))
    }
}

/// The default machine name for a scanned path: its file name without extension, made a DNS
/// name (`/images/Web_01.qcow2` → `web-01`).
pub fn default_machine_name(path: &str) -> String {
    let stem = std::path::Path::new(path.trim_end_matches('/'))
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    slugify(&stem.replace('_', "-"))
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
        }
        Ok(out)
    }

    /// The findings as a multi-document YAML stream of SecretFinding manifests, one per (rule,
    /// fingerprint) with at most [`snapsentry_crds::limits::MAX_LOCATIONS`] locations, named and
    /// labelled exactly as a scanner Job names and labels them (the Job's own builder makes
    /// them). No namespace: `kubectl apply -n NS` decides. `spec.scanId` is `now` as a scan id.
    pub fn manifests(&self, manifest: &ManifestArgs, now: Timestamp) -> anyhow::Result<String> {
        let machine = manifest
            .machine
            .clone()
            .unwrap_or_else(|| default_machine_name(&self.source.path));
        let assignment = ScanAssignment {
            version: ScanAssignment::VERSION,
            policy: manifest.policy.clone(),
            namespace: String::new(),
            machine: machine.clone(),
            instance_id: machine.clone(),
            scan_id: now.strftime("%Y%m%d-%H%M%S").to_string(),
            cloud: Cloud::Image,
            disks: Vec::new(),
            rules: Default::default(),
            max_findings: 0,
        };
        let located: Vec<Located> = self
            .findings
            .iter()
            .map(|f| Located {
                finding: Finding {
                    rule_id: f.rule_id.clone(),
                    title: f.title.clone(),
                    secret_type: f.secret_type.clone(),
                    severity: f.severity,
                    confidence: f.confidence,
                    line: f.line,
                    fingerprint: f.fingerprint.clone(),
                    redacted: f.redacted.clone(),
                    metadata: f.metadata.clone(),
                },
                // A directory has no volumes.
                volume: f.volume.clone().unwrap_or_default(),
                path: f.path.clone(),
                file: f.file.clone(),
            })
            .collect();
        let mut groups = job::group_findings(located, &[]);
        if let Some(e) = job::cap_findings(&mut groups, 0) {
            tracing::warn!(machine = %machine, "{e}");
        }
        let now = Time(now);
        let mut out = String::new();
        for g in &groups {
            let name =
                snapsentry_crds::contract::finding_name(&machine, &g.rule_id, &g.fingerprint);
            // Not exposed: a local scan knows nothing of the machine's network.
            let mut object = job::finding_object(&assignment, g, &name, None, false, &now)?;
            if let Some(meta) = object
                .get_mut("metadata")
                .and_then(serde_json::Value::as_object_mut)
            {
                meta.remove("namespace");
            }
            out.push_str("---\n");
            out.push_str(&serde_yaml::to_string(&object)?);
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
    fn default_machine_names_are_dns_names() {
        assert_eq!(default_machine_name("/images/Web_01.qcow2"), "web-01");
        assert_eq!(default_machine_name("vm.raw"), "vm");
        assert_eq!(default_machine_name("/srv/trees/app server/"), "app-server");
        assert_eq!(default_machine_name("/"), "unknown");
        assert!(parse_object_name("web-01.lab").is_ok());
        for bad in ["Web-01", "web_01", "-web", "web-", ""] {
            assert!(parse_object_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn uris_are_encoded() {
        assert_eq!(uri_path("/home/a b/c#d"), "home/a%20b/c%23d");
    }
}
