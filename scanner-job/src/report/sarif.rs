//! `--format sarif`: SARIF 2.1.0 for code-scanning tools (GitHub code scanning reads
//! `security-severity`).

use std::collections::BTreeMap;

use snapsentry_engine::{Rule, Severity};

use super::Report;

impl Report {
    /// SARIF 2.1.0: one run, the rules that produced results, one result per finding.
    pub(super) fn sarif(&self, rules: &[Rule]) -> serde_json::Value {
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
                let mut result = json!({
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
                });
                if let Some(a) = &f.archive {
                    result["properties"]["archive"] = json!(a);
                }
                result
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
                "invocations": [self.sarif_invocation()],
                "properties": {"coverage": self.coverage, "suppressed": self.suppressed},
            }],
        })
    }
}

impl Report {
    /// The run's one invocation: whether anything could be scanned, and a warning notification
    /// per volume not scanned plus the verdict (`coverage` is also in the run's properties).
    fn sarif_invocation(&self) -> serde_json::Value {
        let notifications: Vec<_> = self
            .coverage
            .warnings()
            .into_iter()
            .map(|text| {
                let text = text.strip_prefix("warning: ").unwrap_or(&text).to_string();
                serde_json::json!({"level": "warning", "message": {"text": text}})
            })
            .collect();
        serde_json::json!({
            "executionSuccessful": self.coverage.status != crate::coverage::Status::None,
            "toolExecutionNotifications": notifications,
        })
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
