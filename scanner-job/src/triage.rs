//! Triage: which of a scan's findings the CLI reports. Three filters, applied in this order, each
//! counting what it leaves out ([`Suppressed`], printed in every format's summary, so nothing
//! disappears silently):
//!
//! 1. the ignore file ([`ignore`]): decisions people made, each with a reason and an optional
//!    expiry;
//! 2. the baseline ([`baseline`]): findings of an earlier `--format json` report, so only what is
//!    new is reported;
//! 3. `--severity`: only the severities asked for.
//!
//! The contract is docs/cli.md ("Triage").

use serde::Serialize;
use snapsentry_engine::Severity;

use crate::report::ReportFinding;

pub mod baseline;
pub mod ignore;

pub use baseline::Baseline;
pub use ignore::IgnoreFile;

/// Findings left out of a report, by the filter that left them out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Suppressed {
    /// Matched by an unexpired entry of the ignore file.
    pub ignored: u64,
    /// Their fingerprint is in the baseline.
    pub baseline: u64,
    /// Of a severity `--severity` did not ask for.
    pub severity: u64,
}

impl Suppressed {
    /// Whether any finding was left out.
    pub fn any(&self) -> bool {
        self.ignored + self.baseline + self.severity > 0
    }

    /// `2 ignored, 1 in the baseline, 4 outside --severity` (the non-zero counts).
    pub fn describe(&self) -> String {
        let parts: Vec<String> = [
            (self.ignored, "ignored"),
            (self.baseline, "in the baseline"),
            (self.severity, "outside --severity"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        parts.join(", ")
    }
}

/// The filters of one run.
#[derive(Debug, Default)]
pub struct Triage {
    /// The ignore file, if any.
    pub ignore: Option<IgnoreFile>,
    /// The baseline, if any.
    pub baseline: Option<Baseline>,
    /// Severities reported; empty: all.
    pub severities: Vec<Severity>,
}

impl Triage {
    /// The findings to report, and what was left out.
    pub fn apply(&self, findings: Vec<ReportFinding>) -> (Vec<ReportFinding>, Suppressed) {
        let mut suppressed = Suppressed::default();
        let kept = findings
            .into_iter()
            .filter(|f| {
                if self.ignore.as_ref().is_some_and(|i| i.ignores(f)) {
                    suppressed.ignored += 1;
                } else if self
                    .baseline
                    .as_ref()
                    .is_some_and(|b| b.contains(&f.fingerprint))
                {
                    suppressed.baseline += 1;
                } else if !self.severities.is_empty() && !self.severities.contains(&f.severity) {
                    suppressed.severity += 1;
                } else {
                    return true;
                }
                false
            })
            .collect();
        (kept, suppressed)
    }
}

/// A severity by name (`info`, `low`, `medium`, `high`, `critical`; any case): the values of
/// `--severity` and `--exit-on`.
pub fn parse_severity(s: &str) -> Result<Severity, String> {
    Ok(match s.trim().to_ascii_lowercase().as_str() {
        "info" => Severity::Info,
        "low" => Severity::Low,
        "medium" => Severity::Medium,
        "high" => Severity::High,
        "critical" => Severity::Critical,
        _ => {
            return Err(format!(
                "{s:?}: not a severity (info, low, medium, high, critical)"
            ));
        }
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::scan::FileInfo;

    /// A report finding of `rule` at `path`, fingerprint `fp`.
    pub(crate) fn finding(rule: &str, severity: Severity, fp: &str, path: &str) -> ReportFinding {
        ReportFinding {
            rule_id: rule.into(),
            title: rule.into(),
            secret_type: rule.into(),
            severity,
            confidence: snapsentry_engine::Confidence::High,
            volume: Some("p1".into()),
            path: path.into(),
            archive: None,
            line: 1,
            fingerprint: fp.into(),
            redacted: "abcd…(20)".into(),
            file: FileInfo::default(),
            metadata: Default::default(),
        }
    }

    #[test]
    fn each_finding_left_out_is_counted_once_by_the_first_filter() {
        let today = jiff::civil::date(2026, 12, 7);
        let ignore = IgnoreFile::parse(
            "ignore",
            "- rule: generic-password\n  reason: test data\n",
            today,
        )
        .unwrap();
        let baseline = Baseline::parse(
            r#"{"findings": [{"fingerprint": "hmac-sha256:01"}, {"fingerprint": "hmac-sha256:02"}]}"#,
        )
        .unwrap();
        let triage = Triage {
            ignore: Some(ignore),
            baseline: Some(baseline),
            severities: vec![Severity::High, Severity::Critical],
        };
        let (kept, suppressed) = triage.apply(vec![
            // Ignored, though also in the baseline.
            finding("generic-password", Severity::High, "hmac-sha256:01", "/a"),
            finding("aws-access-key", Severity::High, "hmac-sha256:02", "/b"),
            finding("github-token", Severity::Medium, "hmac-sha256:03", "/c"),
            finding("aws-access-key", Severity::Critical, "hmac-sha256:04", "/d"),
        ]);
        assert_eq!(
            suppressed,
            Suppressed {
                ignored: 1,
                baseline: 1,
                severity: 1
            }
        );
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].path, "/d");
        assert_eq!(
            suppressed.describe(),
            "1 ignored, 1 in the baseline, 1 outside --severity"
        );
        let (kept, none) = Triage::default().apply(kept);
        assert_eq!((kept.len(), none.any()), (1, false));
    }

    #[test]
    fn severities_parse_in_any_case() {
        assert_eq!(parse_severity("HIGH"), Ok(Severity::High));
        assert_eq!(parse_severity(" critical"), Ok(Severity::Critical));
        assert!(
            parse_severity("severe")
                .unwrap_err()
                .contains("not a severity")
        );
    }
}
