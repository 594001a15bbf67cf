//! The ignore file (`.snapsentryignore` in the working directory, or `--ignore-file`): findings
//! people reviewed and decided to accept, as a YAML list of entries. An entry names a
//! `fingerprint`, a `rule` id and/or a `path` glob (all it names must match), always gives a
//! `reason`, and may `expires` on a date: from the day after, the entry ignores nothing and the
//! CLI warns, so accepted risks come back for review instead of staying hidden.
//!
//! ```yaml
//! - fingerprint: hmac-sha256:9f86d081884c7d65…
//!   reason: revoked on 2026-11-02, the file is an archive
//! - rule: generic-password
//!   path: /opt/legacy/**
//!   reason: legacy app, migration tracked in OPS-123
//!   expires: 2027-03-31
//! ```
//!
//! Unknown keys, an entry that names nothing to match, an empty reason or a date that does not
//! parse are errors: a typo never turns into an entry that silently matches everything or
//! nothing.

use std::path::Path;

use anyhow::Context;
use jiff::civil::Date;
use serde::Deserialize;

use crate::glob::Glob;
use crate::report::ReportFinding;

/// The file `snapsentry-scan` reads from the working directory when `--ignore-file` is not given.
pub const DEFAULT_IGNORE_FILE: &str = ".snapsentryignore";

/// An entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntrySpec {
    fingerprint: Option<String>,
    rule: Option<String>,
    path: Option<String>,
    reason: Option<String>,
    expires: Option<String>,
}

/// One entry that still ignores.
struct Entry {
    /// 1-based position in the file.
    number: usize,
    fingerprint: Option<String>,
    rule: Option<String>,
    path: Option<Glob>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("number", &self.number)
            .field("fingerprint", &self.fingerprint)
            .field("rule", &self.rule)
            .field("path", &self.path.is_some())
            .finish()
    }
}

impl Entry {
    fn matches(&self, f: &ReportFinding) -> bool {
        self.fingerprint
            .as_ref()
            .is_none_or(|p| *p == f.fingerprint)
            && self.rule.as_ref().is_none_or(|r| *r == f.rule_id)
            && self.path.as_ref().is_none_or(|g| g.matches(&f.path))
    }
}

/// A loaded ignore file: its unexpired entries and a warning per expired one.
#[derive(Debug)]
pub struct IgnoreFile {
    /// The file, as named in warnings.
    source: String,
    entries: Vec<Entry>,
    warnings: Vec<String>,
}

impl IgnoreFile {
    /// Read the ignore file at `path`; entries whose `expires` is before `today` are expired.
    pub fn load(path: &Path, today: Date) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("ignore file {}", path.display()))?;
        Ok(Self::parse(&path.display().to_string(), &text, today)?)
    }

    /// Parse an ignore file; `source` names it in errors and warnings.
    pub fn parse(source: &str, text: &str, today: Date) -> Result<Self, IgnoreError> {
        let invalid = |entry: usize, message: String| IgnoreError::Invalid {
            file: source.to_owned(),
            entry,
            message,
        };
        let specs: Option<Vec<EntrySpec>> =
            serde_yaml::from_str(text).map_err(|e| IgnoreError::Yaml {
                file: source.to_owned(),
                message: e.to_string(),
            })?;
        let mut file = IgnoreFile {
            source: source.to_owned(),
            entries: Vec::new(),
            warnings: Vec::new(),
        };
        for (i, spec) in specs.unwrap_or_default().into_iter().enumerate() {
            let n = i + 1;
            let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
            let (fingerprint, rule, path) = (
                nonempty(spec.fingerprint),
                nonempty(spec.rule),
                nonempty(spec.path),
            );
            if fingerprint.is_none() && rule.is_none() && path.is_none() {
                return Err(invalid(n, "names no fingerprint, rule or path".into()));
            }
            if let Some(fp) = &fingerprint
                && !fp.starts_with("hmac-sha256:")
            {
                return Err(invalid(
                    n,
                    format!(
                        "fingerprint {fp:?} is not a finding's fingerprint (hmac-sha256:…, as in the JSON report)"
                    ),
                ));
            }
            if nonempty(spec.reason).is_none() {
                return Err(invalid(n, "has no reason".into()));
            }
            let what = describe(&fingerprint, &rule, &path);
            if let Some(expires) = spec.expires {
                let date: Date = expires.trim().parse().map_err(|e| {
                    invalid(
                        n,
                        format!("expires {expires:?} is not a date (YYYY-MM-DD): {e}"),
                    )
                })?;
                if date < today {
                    file.warnings.push(format!(
                        "warning: {source}: entry {n} ({what}) expired after {date}; it no longer ignores anything"
                    ));
                    continue;
                }
            }
            file.entries.push(Entry {
                number: n,
                fingerprint,
                rule,
                path: path.as_deref().map(Glob::new),
            });
        }
        Ok(file)
    }

    /// Whether an unexpired entry matches `f`.
    pub fn ignores(&self, f: &ReportFinding) -> bool {
        self.entries.iter().any(|e| e.matches(f))
    }

    /// One `warning: …` line per expired entry.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// One `warning: …` line per unexpired entry whose `rule` is not a rule `is_rule` knows (a
    /// misspelt, disabled or removed rule: the entry can match nothing).
    pub fn unknown_rules(&self, is_rule: impl Fn(&str) -> bool) -> Vec<String> {
        self.entries
            .iter()
            .filter_map(|e| {
                let rule = e.rule.as_deref()?;
                (!is_rule(rule)).then(|| {
                    format!(
                        "warning: {}: entry {} names rule {rule}, which is not loaded; it matches nothing",
                        self.source, e.number
                    )
                })
            })
            .collect()
    }
}

/// `rule generic-password, path /opt/**` — what an entry names, for warnings.
fn describe(fingerprint: &Option<String>, rule: &Option<String>, path: &Option<String>) -> String {
    let mut parts = Vec::new();
    if let Some(fp) = fingerprint {
        parts.push(format!("fingerprint {fp}"));
    }
    if let Some(r) = rule {
        parts.push(format!("rule {r}"));
    }
    if let Some(p) = path {
        parts.push(format!("path {p}"));
    }
    parts.join(", ")
}

/// Why an ignore file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum IgnoreError {
    /// Not a YAML list of entries (an unknown key is named in `message`).
    #[error("ignore file {file}: {message}")]
    Yaml {
        /// The file.
        file: String,
        /// serde's message.
        message: String,
    },
    /// An entry that cannot be used.
    #[error("ignore file {file}: entry {entry} {message}")]
    Invalid {
        /// The file.
        file: String,
        /// 1-based entry number.
        entry: usize,
        /// What is wrong.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use snapsentry_engine::Severity;

    use super::*;
    use crate::triage::tests::finding;

    const TODAY: Date = jiff::civil::date(2026, 12, 7);

    #[test]
    fn entries_match_on_everything_they_name_until_they_expire() {
        let file = IgnoreFile::parse(
            "x",
            "
- fingerprint: hmac-sha256:aa
  reason: revoked
- rule: generic-password
  path: /opt/legacy/**
  reason: legacy
  expires: 2026-12-07
- path: /srv/**
  reason: was fine until last year
  expires: 2025-12-31
",
            TODAY,
        )
        .unwrap();
        let ignores = |rule: &str, fp: &str, path: &str| {
            file.ignores(&finding(rule, Severity::High, fp, path))
        };
        assert!(ignores("aws-access-key", "hmac-sha256:aa", "/anywhere"));
        assert!(!ignores("aws-access-key", "hmac-sha256:ab", "/anywhere"));
        // Both rule and path must match; the entry still holds on its expiry day.
        assert!(ignores(
            "generic-password",
            "hmac-sha256:bb",
            "/opt/legacy/a/b.conf"
        ));
        assert!(!ignores(
            "generic-password",
            "hmac-sha256:bb",
            "/opt/other.conf"
        ));
        assert!(!ignores(
            "github-token",
            "hmac-sha256:bb",
            "/opt/legacy/a.conf"
        ));
        // Expired: warns, ignores nothing.
        assert!(!ignores("github-token", "hmac-sha256:cc", "/srv/app/.env"));
        assert_eq!(
            file.warnings(),
            [
                "warning: x: entry 3 (path /srv/**) expired after 2025-12-31; it no longer ignores anything"
            ]
        );
        let tomorrow = IgnoreFile::parse(
            "x",
            "- rule: r\n  reason: y\n  expires: 2026-12-06\n",
            TODAY,
        )
        .unwrap();
        assert_eq!(tomorrow.warnings().len(), 1);
        // A rule that is not loaded is worth a warning: the entry can never match.
        assert_eq!(
            file.unknown_rules(|id| id == "aws-access-key"),
            [
                "warning: x: entry 2 names rule generic-password, which is not loaded; it matches nothing"
            ]
        );
        assert!(file.unknown_rules(|_| true).is_empty());
    }

    #[test]
    fn mistakes_are_errors_that_say_where() {
        let err = |text: &str| {
            IgnoreFile::parse("ig.yaml", text, TODAY)
                .unwrap_err()
                .to_string()
        };
        let e = err("- rule: r\n  reason: x\n  reson: y\n");
        assert!(e.starts_with("ignore file ig.yaml: "), "{e}");
        assert!(e.contains("unknown field `reson`"), "{e}");
        assert_eq!(
            err("- rule: r\n"),
            "ignore file ig.yaml: entry 1 has no reason"
        );
        assert_eq!(
            err("- rule: r\n  reason: x\n- reason: everything\n"),
            "ignore file ig.yaml: entry 2 names no fingerprint, rule or path"
        );
        assert!(err("- rule: r\n  reason: x\n  expires: next year\n").contains("entry 1 expires"));
        assert!(
            err("- fingerprint: SHA256:abc\n  reason: x\n").contains("not a finding's fingerprint")
        );
        assert!(err("rule: r\n").contains("ignore file ig.yaml"));
        // An empty file ignores nothing.
        let empty = IgnoreFile::parse("e", "", TODAY).unwrap();
        assert!(!empty.ignores(&finding("r", Severity::Low, "hmac-sha256:aa", "/a")));
    }
}
