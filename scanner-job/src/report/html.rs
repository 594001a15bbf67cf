//! `--format html`: the scan of one image or directory as the self-contained HTML report the
//! kubectl plugin writes for a fleet (one renderer, `snapsentry_views`): the input is one
//! machine, a finding per (rule, fingerprint) with its locations, and no attack path (those
//! need a fleet).

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use snapsentry_crds::{Cloud, Severity, TargetKind};
use snapsentry_views::{Finding, Machine, Report as View, Target, html};

use super::table::located;
use super::{Report, default_machine_name};

impl Report {
    /// The report as the views' model.
    pub fn view(&self, now: Timestamp) -> View {
        let mut grouped: BTreeMap<(&str, &str), Vec<&super::ReportFinding>> = BTreeMap::new();
        for f in &self.findings {
            grouped
                .entry((&f.rule_id, &f.fingerprint))
                .or_default()
                .push(f);
        }
        let findings = grouped
            .into_values()
            .map(|all| {
                let f = all[0];
                let meta = &f.metadata;
                let mut facts = Vec::new();
                if let Some(e) = &meta.expires_at {
                    facts.push(("expires".to_owned(), e.clone()));
                }
                if let Some(a) = &meta.aws_account_id {
                    facts.push(("aws account".to_owned(), a.clone()));
                }
                if let Some(ssh) = &meta.ssh {
                    let mut s = ssh.algorithm.clone().unwrap_or_else(|| "?".to_owned());
                    if let Some(fp) = &ssh.fingerprint {
                        s.push_str(&format!(" {fp}"));
                    }
                    if ssh.encrypted {
                        s.push_str(" (passphrase)");
                    }
                    facts.push(("ssh key".to_owned(), s));
                }
                if let Ok(serde_json::Value::String(c)) = serde_json::to_value(f.confidence) {
                    facts.push(("confidence".to_owned(), c));
                }
                if let Some(m) = &f.file.modified {
                    facts.push(("modified".to_owned(), m.clone()));
                }
                let target = meta.target.as_ref().and_then(|t| {
                    let name = t.name.clone().or_else(|| t.host.clone())?;
                    let kind = TargetKind::from(t.kind);
                    (kind != TargetKind::None).then_some(Target { kind, name })
                });
                Finding {
                    name: format!("{}-{}", f.rule_id, short(&f.fingerprint)),
                    rule_id: f.rule_id.clone(),
                    secret_type: f.secret_type.clone(),
                    severity: Severity::from(f.severity),
                    state: "active".to_owned(),
                    verification: None,
                    target,
                    locations: all
                        .iter()
                        .map(|l| format!("{}:{}", located(&l.volume, &l.path), l.line))
                        .collect(),
                    location_count: all.len() as u32,
                    redacted: f.redacted.clone(),
                    fingerprint: f.fingerprint.clone(),
                    first_seen: None,
                    scan_id: None,
                    new: false,
                    risk_score: None,
                    facts,
                }
            })
            .collect();
        let mut facts = vec![("input".to_owned(), self.source.path.clone())];
        if let Some(format) = &self.source.format {
            facts.push(("format".to_owned(), format.clone()));
        }
        facts.push((
            "read".to_owned(),
            format!(
                "{} files, {} bytes in {} ms",
                self.stats.files, self.stats.bytes_scanned, self.stats.duration_ms
            ),
        ));
        let machine = Machine {
            name: default_machine_name(&self.source.path),
            cloud: Cloud::Image,
            facts,
            exposed: false,
            exposure_reasons: Vec::new(),
            coverage: Some(self.coverage.summary()),
            findings,
        };
        View {
            title: format!("snapsentry — {}", self.source.path),
            generated_at: now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            machines: vec![machine],
            paths: Vec::new(),
        }
    }

    /// `--format html`.
    pub fn html(&self, now: Timestamp) -> String {
        html::render(&self.view(now))
    }
}

/// The first 10 hex digits of a fingerprint (`hmac-sha256:<hex>`).
fn short(fingerprint: &str) -> String {
    fingerprint
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .chars()
        .take(10)
        .collect()
}
