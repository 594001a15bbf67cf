//! The baseline (`--baseline FILE`): a report the CLI wrote earlier with `--format json`. A
//! finding whose fingerprint is among the baseline's findings is not new and is left out, so a
//! run reports only secrets that appeared since. Fingerprints are keyed (see [`crate::key`]):
//! the baseline must have been made with the same fingerprint key.

use std::collections::HashSet;
use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

/// The part of a `--format json` report the baseline reads.
#[derive(Deserialize)]
struct Report {
    findings: Vec<Finding>,
}

#[derive(Deserialize)]
struct Finding {
    fingerprint: String,
}

/// The fingerprints of an earlier report's findings.
#[derive(Debug, Default)]
pub struct Baseline {
    fingerprints: HashSet<String>,
}

impl Baseline {
    /// Read the `--format json` report at `path`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("baseline {}", path.display()))?;
        Self::parse(&text).with_context(|| {
            format!(
                "baseline {}: not a report of `snapsentry-scan --format json`",
                path.display()
            )
        })
    }

    /// Parse a `--format json` report.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        let report: Report = serde_json::from_str(text)?;
        Ok(Baseline {
            fingerprints: report.findings.into_iter().map(|f| f.fingerprint).collect(),
        })
    }

    /// Whether a finding with `fingerprint` was in the baseline.
    pub fn contains(&self, fingerprint: &str) -> bool {
        self.fingerprints.contains(fingerprint)
    }

    /// How many distinct fingerprints the baseline holds.
    pub fn len(&self) -> usize {
        self.fingerprints.len()
    }

    /// Whether the baseline holds no finding.
    pub fn is_empty(&self) -> bool {
        self.fingerprints.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_json_report_is_a_baseline() {
        let b = Baseline::parse(
            r#"{"source": {"kind": "dir"}, "findings": [
                {"ruleId": "a", "fingerprint": "hmac-sha256:01"},
                {"ruleId": "b", "fingerprint": "hmac-sha256:01"},
                {"ruleId": "c", "fingerprint": "hmac-sha256:02"}]}"#,
        )
        .unwrap();
        assert_eq!(b.len(), 2);
        assert!(b.contains("hmac-sha256:02"));
        assert!(!b.contains("hmac-sha256:03"));
        // A jsonl line, SARIF, or findings without fingerprints are not baselines.
        assert!(Baseline::parse(r#"{"ruleId": "a", "fingerprint": "hmac-sha256:01"}"#).is_err());
        assert!(Baseline::parse(r#"{"version": "2.1.0", "runs": []}"#).is_err());
        assert!(Baseline::parse(r#"{"findings": [{"ruleId": "a"}]}"#).is_err());
        assert!(Baseline::parse(r#"{"findings": []}"#).unwrap().is_empty());
    }
}
