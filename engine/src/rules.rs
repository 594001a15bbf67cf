//! Rules as data: the YAML format, loading, validation and compilation.
//!
//! A rule file holds `rules:`, a list of [`RuleSpec`]. Every field is checked when the file is
//! loaded, and an error names the file and the rule id, so a typo in a rule never turns into a
//! silently dead rule.

use std::collections::HashSet;

use regex::bytes::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use crate::TargetKind;
use crate::validate::Validator;

/// Rule files compiled into the binary.
mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_rules.rs"));
}

/// The rule files shipped with the engine, as `(file name, YAML text)`.
pub fn embedded_rule_files() -> &'static [(&'static str, &'static str)] {
    embedded::EMBEDDED
}

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; grants no access by itself.
    Info,
    /// Least impact of a usable secret.
    Low,
    /// Moderate impact.
    Medium,
    /// High impact.
    High,
    /// Highest impact; act first.
    Critical,
}

impl Severity {
    /// The lowercase name (`high`), as in rules, JSON output and the `severity` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// How sure the engine is that a finding is a real secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// Often not a secret (generic patterns).
    Low,
    /// Usually a secret.
    Medium,
    /// Almost surely a secret (a distinctive format, a checksum).
    High,
}

impl Confidence {
    /// One step down (used for files under OS package trees).
    pub fn lower(self) -> Self {
        match self {
            Confidence::High => Confidence::Medium,
            _ => Confidence::Low,
        }
    }
}

/// `target:` of a rule: which capture group names the resource.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// What kind of resource the rule's secrets open.
    pub kind: TargetKind,
    /// Named capture group holding the target's name or host; optional (a validator may derive it).
    #[serde(default)]
    pub group: Option<String>,
}

/// One example: bare text (scanned as `/home/user/notes.txt`), or text with the path it is
/// scanned under (needed by rules with `paths`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Example {
    /// Text scanned as [`DEFAULT_EXAMPLE_PATH`].
    Text(String),
    /// Text scanned as a file at `path`.
    WithPath {
        /// Path the text is scanned under.
        path: String,
        /// The file's content.
        text: String,
    },
}

/// Path examples are scanned under when they do not name one.
pub const DEFAULT_EXAMPLE_PATH: &str = "/home/user/notes.txt";

impl Example {
    /// Path the example is scanned under.
    pub fn path(&self) -> &str {
        match self {
            Example::Text(_) => DEFAULT_EXAMPLE_PATH,
            Example::WithPath { path, .. } => path,
        }
    }

    /// The example's content.
    pub fn text(&self) -> &str {
        match self {
            Example::Text(t) | Example::WithPath { text: t, .. } => t,
        }
    }
}

/// `examples:` of a rule.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Examples {
    /// Each must give at least one finding of this rule.
    #[serde(default)]
    pub positive: Vec<Example>,
    /// Each must give no finding of this rule.
    #[serde(default)]
    pub negative: Vec<Example>,
}

/// A rule as written in YAML (see `engine/rules/README.md`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuleSpec {
    /// Unique id, lowercase with dashes (`aws-access-key`); `--disable` takes it.
    pub id: String,
    /// What the rule finds, as a title.
    pub title: String,
    /// Kind of secret in words (`AWS access key`).
    pub secret_type: String,
    /// How bad a finding of this rule is.
    pub severity: Severity,
    /// Prefilter literals (ASCII case-insensitive). Empty: a path rule.
    pub keywords: Vec<String>,
    /// The pattern; the secret is the group named `secret…`, else group 1, else the match.
    pub regex: String,
    /// Optional: regexes over the file path; the rule runs only on files they match.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Optional: regexes over the file path; the rule never runs on files they match (a file
    /// another rule owns, such as `/etc/shadow`).
    #[serde(default)]
    pub exclude_paths: Vec<String>,
    /// Optional: validator names applied to each match, in order (see [`Validator`]).
    #[serde(default)]
    pub validators: Vec<String>,
    /// Optional: the resource the secret opens.
    #[serde(default)]
    pub target: Option<TargetSpec>,
    /// Optional: how sure a match is a secret (default high).
    #[serde(default)]
    pub confidence: Option<Confidence>,
    /// Examples checked when the rule is tested.
    #[serde(default)]
    pub examples: Examples,
    /// Optional: bytes searched on each side of a keyword hit (default 512). Multi-line secrets
    /// such as PEM blocks need more.
    #[serde(default)]
    pub window: Option<usize>,
    /// Optional: run the built-in placeholder check on the secret (default true).
    #[serde(default)]
    pub check_placeholder: Option<bool>,
    /// Optional: the secret is, by its position, certainly a credential (the password column of
    /// a `.pgpass` line, `wp-config.php`'s `DB_PASSWORD`): a word or test value the placeholder
    /// check would drop is reported as a weak password instead (`weakPassword`, confidence low),
    /// and a guessable value is flagged `weakPassword` too. Templates and references still drop.
    #[serde(default)]
    pub credential_field: bool,
    /// Optional: how the captured secret is encoded (`base64`); the checks, fingerprint and
    /// redaction see the decoded value, and a secret that does not decode is no finding.
    #[serde(default)]
    pub decode: Option<SecretEncoding>,
    /// Optional: this rule finds SSH private keys; findings get key metadata (algorithm,
    /// encryption, public key fingerprint) and feed `ssh.privateKeys`.
    #[serde(default)]
    pub ssh_private_key: bool,
    /// Optional: a fallback rule (the generic, key-name rules) yields to any other rule that
    /// finds the same secret on the same line, whatever their severities: the specific rule
    /// names the secret better.
    #[serde(default)]
    pub fallback: bool,
}

/// How a rule's captured secret is encoded (`decode:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretEncoding {
    /// Standard or URL-safe base64.
    Base64,
}

/// Why rules could not be loaded. Messages name the file and rule, never matched text.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// The file is not YAML of the rule format.
    #[error("{file}: not a valid rule file: {message}")]
    Parse {
        /// The rule file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// A rule breaks the format (bad regex, unknown validator, failing example, …).
    #[error("{file}: rule {id:?}: {message}")]
    Invalid {
        /// The rule file.
        file: String,
        /// The rule's id.
        id: String,
        /// What is wrong.
        message: String,
    },
    /// `--disable` names a rule that does not exist.
    #[error("--disable {0}: no such rule")]
    UnknownDisabled(String),
}

/// Largest regex program a rule may compile to; a rule over it is a load error.
const REGEX_SIZE_LIMIT: usize = 4 << 20;
/// Default bytes searched on each side of a keyword hit.
pub const DEFAULT_WINDOW: usize = 512;
/// Largest window a rule may ask for.
const MAX_WINDOW: usize = 64 * 1024;

/// A loaded, compiled rule.
#[derive(Debug)]
pub struct Rule {
    /// The rule as written.
    pub spec: RuleSpec,
    /// File the rule came from.
    pub file: String,
    /// `spec.regex`, compiled.
    pub regex: Regex,
    /// `spec.paths`, compiled.
    pub paths: Vec<Regex>,
    /// `spec.exclude_paths`, compiled.
    pub exclude_paths: Vec<Regex>,
    /// `spec.validators`, parsed.
    pub validators: Vec<Validator>,
    /// Capture groups that may hold the secret, first participating one wins: every group named
    /// `secret…` (a regex with alternatives names them `secret`, `secret2`, …), else group 1, else
    /// the whole match.
    pub secret_groups: Vec<usize>,
    /// Index of the capture group holding the target name, if any.
    pub target_group: Option<usize>,
    /// Bytes searched on each side of a keyword hit.
    pub window: usize,
    /// Confidence of its findings.
    pub confidence: Confidence,
    /// Whether matches go through the placeholder check.
    pub check_placeholder: bool,
}

impl Rule {
    /// The rule's id.
    pub fn id(&self) -> &str {
        &self.spec.id
    }

    /// True when the rule may run on a file at `path`.
    pub fn applies_to(&self, path: &str) -> bool {
        (self.paths.is_empty() || self.paths.iter().any(|p| p.is_match(path.as_bytes())))
            && !self
                .exclude_paths
                .iter()
                .any(|p| p.is_match(path.as_bytes()))
    }

    /// Path rule: no keywords, regex runs over the whole file.
    pub fn is_path_rule(&self) -> bool {
        self.spec.keywords.is_empty()
    }
}

fn compile_regex(pattern: &str) -> Result<Regex, regex::Error> {
    // ASCII-only classes and word boundaries first: they keep the lazy DFA on every byte. A rule
    // that needs Unicode classes (`\p{..}`) falls back to a Unicode-aware build.
    RegexBuilder::new(pattern)
        .unicode(false)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .or_else(|_| {
            RegexBuilder::new(pattern)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
        })
}

fn is_kebab(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('-')
        && !id.ends_with('-')
        && !id.contains("--")
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Parse and compile every rule of one YAML file.
pub fn load_rule_file(file: &str, yaml: &str) -> Result<Vec<Rule>, RuleError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RuleFile {
        rules: Vec<RuleSpec>,
    }
    let parsed: RuleFile = serde_yaml::from_str(yaml).map_err(|e| RuleError::Parse {
        file: file.to_string(),
        message: e.to_string(),
    })?;
    parsed
        .rules
        .into_iter()
        .map(|spec| compile_rule(file, spec))
        .collect()
}

fn compile_rule(file: &str, spec: RuleSpec) -> Result<Rule, RuleError> {
    let invalid = |message: String| RuleError::Invalid {
        file: file.to_string(),
        id: spec.id.clone(),
        message,
    };
    if !is_kebab(&spec.id) {
        return Err(invalid("id must be kebab-case ([a-z0-9-])".into()));
    }
    if spec.title.trim().is_empty() || spec.secret_type.trim().is_empty() {
        return Err(invalid("title and secretType must not be empty".into()));
    }
    for k in &spec.keywords {
        if k.len() < 3 {
            return Err(invalid(format!(
                "keyword {k:?} is shorter than 3 bytes: it would trigger everywhere"
            )));
        }
        if !k.is_ascii() {
            return Err(invalid(format!("keyword {k:?} is not ASCII")));
        }
    }
    if spec.keywords.is_empty() && spec.paths.is_empty() {
        return Err(invalid(
            "a rule with no keywords must restrict itself with `paths`".into(),
        ));
    }
    let regex = compile_regex(&spec.regex).map_err(|e| invalid(format!("regex: {e}")))?;
    let mut secret_groups: Vec<usize> = regex
        .capture_names()
        .enumerate()
        .filter(|(_, n)| n.is_some_and(|n| n.starts_with("secret")))
        .map(|(i, _)| i)
        .collect();
    if secret_groups.is_empty() {
        secret_groups.push(usize::from(regex.captures_len() > 1));
    }
    let target_group = match &spec.target {
        Some(TargetSpec {
            group: Some(group), ..
        }) => Some(
            regex
                .capture_names()
                .position(|n| n == Some(group.as_str()))
                .ok_or_else(|| invalid(format!("target group {group:?} is not in the regex")))?,
        ),
        _ => None,
    };
    let paths = spec
        .paths
        .iter()
        .map(|p| compile_regex(p).map_err(|e| invalid(format!("paths: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let exclude_paths = spec
        .exclude_paths
        .iter()
        .map(|p| compile_regex(p).map_err(|e| invalid(format!("excludePaths: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let validators = spec
        .validators
        .iter()
        .map(|v| Validator::parse(v).map_err(&invalid))
        .collect::<Result<Vec<_>, _>>()?;
    let window = spec.window.unwrap_or(DEFAULT_WINDOW);
    if window == 0 || window > MAX_WINDOW {
        return Err(invalid(format!("window must be 1..={MAX_WINDOW}")));
    }
    Ok(Rule {
        file: file.to_string(),
        regex,
        paths,
        exclude_paths,
        validators,
        secret_groups,
        target_group,
        window,
        confidence: spec.confidence.unwrap_or(Confidence::High),
        check_placeholder: spec.check_placeholder.unwrap_or(true),
        spec,
    })
}

/// Load the embedded rules plus `extra` files (`(name, yaml)`), then drop `disabled` ids.
/// Duplicate ids are an error (an extra rule cannot silently shadow a built-in one).
pub fn load_rules(extra: &[(String, String)], disabled: &[String]) -> Result<Vec<Rule>, RuleError> {
    let mut rules = Vec::new();
    for (name, yaml) in embedded_rule_files() {
        rules.extend(load_rule_file(name, yaml)?);
    }
    for (name, yaml) in extra {
        rules.extend(load_rule_file(name, yaml)?);
    }
    let mut seen = HashSet::new();
    for r in &rules {
        if !seen.insert(r.spec.id.clone()) {
            return Err(RuleError::Invalid {
                file: r.file.clone(),
                id: r.spec.id.clone(),
                message: "duplicate rule id".into(),
            });
        }
    }
    for d in disabled {
        if !seen.contains(d) {
            return Err(RuleError::UnknownDisabled(d.clone()));
        }
    }
    rules.retain(|r| !disabled.contains(&r.spec.id));
    Ok(rules)
}

/// Lowercase, `-`-separated form of a secret type, for label values (`AWS access key` →
/// `aws-access-key`).
pub fn slugify(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_file_and_rule() {
        let yaml = "rules:\n  - id: bad-rule\n    title: t\n    secretType: s\n    severity: high\n    keywords: [abc]\n    regex: '('\n";
        let e = load_rule_file("x.yaml", yaml).unwrap_err().to_string();
        assert!(e.starts_with("x.yaml: rule \"bad-rule\": regex"), "{e}");
        let yaml = "rules:\n  - id: r\n    title: t\n    secretType: s\n    severity: high\n    keywords: [abc]\n    regex: 'abc'\n    validators: [nope]\n";
        let e = load_rule_file("y.yaml", yaml).unwrap_err().to_string();
        assert!(
            e.contains("y.yaml: rule \"r\"") && e.contains("nope"),
            "{e}"
        );
        let yaml = "rules:\n  - id: r\n    title: t\n    secretType: s\n    severity: urgent\n    keywords: [abc]\n    regex: 'abc'\n";
        let e = load_rule_file("z.yaml", yaml).unwrap_err().to_string();
        assert!(e.starts_with("z.yaml: not a valid rule file"), "{e}");
    }

    #[test]
    fn slugs() {
        assert_eq!(slugify("AWS access key"), "aws-access-key");
        assert_eq!(
            slugify("Azure SQL connection string!"),
            "azure-sql-connection-string"
        );
    }
}
