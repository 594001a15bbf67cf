//! `--format yaml`: the findings as SecretFinding manifests for `kubectl apply`, built by the
//! finding model ([`crate::finding`]) exactly as a scanner Job builds the objects it applies.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use snapsentry_crds::Cloud;
use snapsentry_crds::label_value::slugify;
use snapsentry_engine::Finding;

use super::Report;
use crate::finding::{
    FindingScope, Located, cap_findings, finding_object, group_findings, over_cap_error,
};

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
pub(crate) fn parse_object_name(s: &str) -> Result<String, String> {
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

impl Report {
    /// The findings as a multi-document YAML stream of SecretFinding manifests, one per (rule,
    /// fingerprint) with at most [`snapsentry_crds::limits::MAX_LOCATIONS`] locations, named and
    /// labelled exactly as a scanner Job names and labels them (both build them with
    /// [`crate::finding`]). No namespace: `kubectl apply -n NS` decides. `spec.scanId` is `now` as a scan id.
    pub fn manifests(&self, manifest: &ManifestArgs, now: Timestamp) -> anyhow::Result<String> {
        let machine = manifest
            .machine
            .clone()
            .unwrap_or_else(|| default_machine_name(&self.source.path));
        // No namespace: `kubectl apply -n NS` decides.
        let scope = FindingScope {
            policy: manifest.policy.clone(),
            namespace: None,
            machine: machine.clone(),
            cloud: Cloud::Image,
            scan_id: now.strftime("%Y%m%d-%H%M%S").to_string(),
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
                archive: f.archive.clone(),
                file: f.file.clone(),
            })
            .collect();
        let mut groups = group_findings(located, &[]);
        let over = cap_findings(&mut groups, 0);
        if over > 0 {
            tracing::warn!(machine = %machine, "{}", over_cap_error(groups.len(), over));
        }
        let now = Time(now);
        let mut out = String::new();
        for g in &groups {
            // Not exposed: a local scan knows nothing of the machine's network.
            let mut object = finding_object(&scope, g, None, false, &now, &now)?;
            // People apply these with kubectl: a finding's status is for the operator and its
            // scanner Jobs to write (the chart's admission policy refuses anyone else's).
            if let Some(o) = object.as_object_mut() {
                o.remove("status");
            }
            out.push_str("---\n");
            out.push_str(&serde_yaml::to_string(&object)?);
        }
        Ok(out)
    }
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
}
