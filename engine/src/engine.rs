//! The scanning pass: keyword prefilter, windowed confirmation, path rules, findings.

use std::collections::HashSet;

use crate::TargetKind;
use crate::encoding::{self, TextKind};
use crate::prefilter::Prefilter;
use crate::rules::{self, Rule, RuleError, SecretEncoding};
use crate::ssh::{self, AuthorizedKey, SshKeyInfo};
use crate::validate::Placeholder;
use crate::{
    Confidence, Finding, FindingMetadata, Severity, Target, codec, paths, redact, validate,
};

/// How the engine is built.
#[derive(Clone, Debug, Default)]
pub struct EngineConfig {
    /// Extra rule files, as `(name for messages, YAML text)`.
    pub extra_rules: Vec<(String, String)>,
    /// Rule ids to turn off (unknown ids are an error).
    pub disabled: Vec<String>,
    /// Key of the fingerprint HMAC.
    pub fingerprint_key: Vec<u8>,
}

impl EngineConfig {
    /// Built-in rules only, with this fingerprint key.
    pub fn with_key(fingerprint_key: Vec<u8>) -> Self {
        EngineConfig {
            fingerprint_key,
            ..EngineConfig::default()
        }
    }
}

/// An SSH private key found in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrivateKeyFound {
    /// 1-based line where the key starts.
    pub line: usize,
    /// Algorithm, encryption and public-key fingerprint.
    pub info: SshKeyInfo,
}

/// Everything one file yielded.
#[derive(Clone, Debug, Default)]
pub struct FileScan {
    /// Secrets found, deduplicated per (rule, fingerprint, line).
    pub findings: Vec<Finding>,
    /// SSH private keys found (also reported as findings of the rule that found them).
    pub private_keys: Vec<PrivateKeyFound>,
    /// Entries of an `authorized_keys` file (public keys: facts, not secrets).
    pub authorized_keys: Vec<AuthorizedKey>,
    /// What the bytes were taken to be (`None` for an empty file).
    pub encoding: Option<TextKind>,
}

/// Most bytes of one file a path rule's regex runs over.
const PATH_RULE_MAX_BYTES: usize = 8 << 20;
/// A window is widened to line boundaries, by at most this much on each side.
const LINE_SLACK: usize = 256;
/// Findings per file beyond which matches are dropped (a generated file full of keys).
const MAX_FINDINGS_PER_FILE: usize = 1000;

/// Compiled rules plus the one automaton over all their keywords. Cheap to share across threads.
pub struct Engine {
    rules: Vec<Rule>,
    /// Over every distinct keyword (lowercased), ASCII case-insensitive.
    keywords: Option<Prefilter>,
    /// Keyword pattern id → rules that own it.
    keyword_rules: Vec<Vec<usize>>,
    /// Rules without keywords.
    path_rules: Vec<usize>,
    key: Vec<u8>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Load and compile the embedded rules plus `config.extra_rules`, minus `config.disabled`.
    pub fn new(config: EngineConfig) -> Result<Self, RuleError> {
        let rules = rules::load_rules(&config.extra_rules, &config.disabled)?;
        Ok(Self::from_rules(rules, config.fingerprint_key))
    }

    /// Build from already loaded rules.
    pub fn from_rules(rules: Vec<Rule>, fingerprint_key: Vec<u8>) -> Self {
        let mut patterns: Vec<String> = Vec::new();
        let mut keyword_rules: Vec<Vec<usize>> = Vec::new();
        let mut path_rules = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            if rule.is_path_rule() {
                path_rules.push(i);
            }
            for k in &rule.spec.keywords {
                let k = k.to_ascii_lowercase();
                match patterns.iter().position(|p| *p == k) {
                    Some(pid) => {
                        if !keyword_rules[pid].contains(&i) {
                            keyword_rules[pid].push(i);
                        }
                    }
                    None => {
                        patterns.push(k);
                        keyword_rules.push(vec![i]);
                    }
                }
            }
        }
        let keywords = (!patterns.is_empty()).then(|| Prefilter::new(&patterns));
        Engine {
            rules,
            keywords,
            keyword_rules,
            path_rules,
            key: fingerprint_key,
        }
    }

    /// The loaded rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Scan one file. `path` is absolute and `/`-separated; it selects path rules, lowers
    /// confidence in OS package trees, marks SSH host keys `info` and install-generated service
    /// keys `low` at most. Test-directory exclusion is
    /// the caller's decision ([`paths::is_test_path`]).
    pub fn scan(&self, path: &str, data: &[u8]) -> FileScan {
        self.scan_with(path, data, true)
    }

    /// `cross_rule_dedupe` off keeps every rule's own findings (used by the example checks,
    /// which test rules one by one).
    fn scan_with(&self, path: &str, data: &[u8], cross_rule_dedupe: bool) -> FileScan {
        let mut out = FileScan::default();
        if data.is_empty() {
            return out;
        }
        let kind = encoding::detect(data);
        out.encoding = Some(kind);
        let text = encoding::to_utf8(data, kind);
        let text: &[u8] = &text;

        if paths::is_authorized_keys(path) {
            out.authorized_keys = ssh::parse_authorized_keys(text);
        }

        let mut windows: Vec<Vec<(usize, usize)>> = vec![Vec::new(); self.rules.len()];
        let mut applies: Vec<Option<bool>> = vec![None; self.rules.len()];
        if let Some(prefilter) = &self.keywords {
            prefilter.for_each_match(text, |pattern, start, end| {
                for &r in &self.keyword_rules[pattern] {
                    let rule = &self.rules[r];
                    let ok = *applies[r].get_or_insert_with(|| rule.applies_to(path));
                    if ok {
                        windows[r].push((
                            start.saturating_sub(rule.window),
                            (end + rule.window).min(text.len()),
                        ));
                    }
                }
            });
        }

        let mut ctx = FileContext {
            path,
            text,
            newlines: None,
            seen: HashSet::new(),
        };
        for (r, mut spans) in windows.into_iter().enumerate() {
            if spans.is_empty() {
                continue;
            }
            spans.sort_unstable();
            let mut merged: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
            for (s, e) in spans {
                let (s, e) = widen_to_lines(text, s, e);
                match merged.last_mut() {
                    Some(last) if s <= last.1 => last.1 = last.1.max(e),
                    _ => merged.push((s, e)),
                }
            }
            for (s, e) in merged {
                self.confirm(r, s, e, &mut ctx, &mut out);
            }
        }
        if kind != TextKind::Binary {
            for &r in &self.path_rules {
                if self.rules[r].applies_to(path) {
                    let end = text.len().min(PATH_RULE_MAX_BYTES);
                    self.confirm(r, 0, end, &mut ctx, &mut out);
                }
            }
        }
        if cross_rule_dedupe {
            let fallback: std::collections::HashSet<&str> = self
                .rules
                .iter()
                .filter(|r| r.spec.fallback)
                .map(|r| r.spec.id.as_str())
                .collect();
            dedupe_across_rules(&mut out.findings, |id| fallback.contains(id));
        }
        out.findings.sort_by_key(|f| f.line);
        out.private_keys.sort_by_key(|k| k.line);
        out.private_keys.dedup();
        out
    }

    /// Run rule `r`'s regex over `text[start..end]` and turn confirmed matches into findings.
    fn confirm(
        &self,
        r: usize,
        start: usize,
        end: usize,
        ctx: &mut FileContext<'_>,
        out: &mut FileScan,
    ) {
        let rule = &self.rules[r];
        let hay = &ctx.text[start..end];
        // Most windows hold no match: the DFA alone says so, without building capture slots.
        if !rule.regex.is_match(hay) {
            return;
        }
        for caps in rule.regex.captures_iter(hay) {
            if out.findings.len() >= MAX_FINDINGS_PER_FILE {
                return;
            }
            let Some(whole) = caps.get(0) else { continue };
            let Some(secret) = rule.secret_groups.iter().find_map(|&g| caps.get(g)) else {
                continue;
            };
            let decoded: Vec<u8>;
            let secret_bytes = match rule.spec.decode {
                None => secret.as_bytes(),
                Some(SecretEncoding::Base64) => match codec::base64_decode(secret.as_bytes()) {
                    Some(d) => {
                        decoded = d;
                        &decoded
                    }
                    None => continue,
                },
            };
            if secret_bytes.is_empty() {
                continue;
            }
            let mut weak_password = false;
            if rule.check_placeholder && !rule.spec.ssh_private_key {
                match validate::placeholder_kind(secret_bytes) {
                    Some(Placeholder::Template) => continue,
                    Some(Placeholder::Weak) if !rule.spec.credential_field => continue,
                    Some(Placeholder::Weak) => weak_password = true,
                    // A value that passes but is guessable (`sunshine`, `Summer2024!`) is a weak
                    // password wherever it was found.
                    None => weak_password = validate::is_weak_password(secret_bytes),
                }
            }
            let mut meta = FindingMetadata {
                weak_password,
                ..FindingMetadata::default()
            };
            if let Some(g) = rule.target_group.and_then(|g| caps.get(g)) {
                meta.target = Some(target_from(rule, g.as_bytes()));
            } else if let Some(t) = &rule.spec.target
                && t.kind != TargetKind::None
            {
                meta.target = Some(Target {
                    kind: t.kind,
                    name: None,
                    host: None,
                });
            }
            if !rule
                .validators
                .iter()
                .all(|v| v.check(secret_bytes, whole.as_bytes(), &mut meta))
            {
                continue;
            }
            // Fingerprint input: the value itself; for key blocks, the base64 body without
            // whitespace, so CRLF and LF copies of one key correlate.
            let normalized: Vec<u8>;
            let mut fp_input = secret_bytes;
            if rule.spec.ssh_private_key {
                let info = ssh::private_key_info(whole.as_bytes());
                normalized = secret_bytes
                    .iter()
                    .copied()
                    .filter(|c| !c.is_ascii_whitespace())
                    .collect();
                fp_input = &normalized;
                meta.ssh = Some(info);
            }
            let fingerprint = redact::fingerprint(&self.key, fp_input);
            let line = ctx.line_of(start + secret.start());
            if !ctx.seen.insert((r, fingerprint.clone(), line)) {
                continue;
            }
            let mut severity = rule.spec.severity;
            let mut confidence = rule.confidence;
            if rule.spec.ssh_private_key {
                if paths::is_ssh_host_key(ctx.path) {
                    severity = Severity::Info;
                }
                if let Some(info) = &meta.ssh {
                    out.private_keys.push(crate::PrivateKeyFound {
                        line,
                        info: info.clone(),
                    });
                }
            }
            if paths::is_install_generated_key(ctx.path) {
                severity = severity.min(Severity::Low);
            }
            if weak_password {
                // Certainly a credential, but a weak value is also what defaults and leftover
                // templates hold: less sure it is the live secret.
                confidence = Confidence::Low;
            }
            if paths::is_package_tree(ctx.path) {
                confidence = confidence.lower();
            }
            out.findings.push(Finding {
                rule_id: rule.spec.id.clone(),
                title: rule.spec.title.clone(),
                secret_type: rule.spec.secret_type.clone(),
                severity,
                confidence,
                line,
                fingerprint,
                redacted: redact::redact(secret_bytes),
                metadata: meta,
            });
        }
    }

    /// Run every rule's examples; returns one message per failure (empty: all pass). Messages
    /// name the rule and example index, not the example text.
    pub fn check_examples(&self) -> Vec<String> {
        let mut failures = Vec::new();
        for rule in &self.rules {
            let id = rule.id();
            let count = |ex: &rules::Example| {
                self.scan_with(ex.path(), ex.text().as_bytes(), false)
                    .findings
                    .iter()
                    .filter(|f| f.rule_id == id)
                    .count()
            };
            for (i, ex) in rule.spec.examples.positive.iter().enumerate() {
                if count(ex) == 0 {
                    failures.push(format!(
                        "{}: rule {id}: positive example #{} ({}) produced no finding",
                        rule.file,
                        i + 1,
                        ex.path()
                    ));
                }
            }
            for (i, ex) in rule.spec.examples.negative.iter().enumerate() {
                let n = count(ex);
                if n > 0 {
                    failures.push(format!(
                        "{}: rule {id}: negative example #{} ({}) produced {n} finding(s)",
                        rule.file,
                        i + 1,
                        ex.path()
                    ));
                }
            }
        }
        failures
    }
}

/// One secret on one line is one finding, even when several rules match it (a pair rule and a
/// single-value rule, a connection string and a bare key): keep the most informative one — a
/// specific rule's over a fallback rule's (`is_fallback`), then the most severe, most confident,
/// with the most facts.
fn dedupe_across_rules(findings: &mut Vec<Finding>, is_fallback: impl Fn(&str) -> bool) {
    let score = |f: &Finding| {
        let m = &f.metadata;
        let facts = usize::from(m.expires_at.is_some())
            + usize::from(m.aws_account_id.is_some())
            + usize::from(m.target.is_some())
            + usize::from(m.ssh.is_some());
        (!is_fallback(&f.rule_id), f.severity, f.confidence, facts)
    };
    let mut best: std::collections::HashMap<(String, usize), usize> =
        std::collections::HashMap::new();
    let mut keep = vec![true; findings.len()];
    for i in 0..findings.len() {
        let key = (findings[i].fingerprint.clone(), findings[i].line);
        match best.get(&key) {
            Some(&j) if score(&findings[j]) >= score(&findings[i]) => keep[i] = false,
            Some(&j) => {
                keep[j] = false;
                best.insert(key, i);
            }
            None => {
                best.insert(key, i);
            }
        }
    }
    let mut k = keep.into_iter();
    findings.retain(|_| k.next().unwrap_or(true));
}

/// A target from a captured host or name: `acct.blob.core.windows.net` → name `acct`.
fn target_from(rule: &Rule, captured: &[u8]) -> Target {
    let kind = rule
        .spec
        .target
        .as_ref()
        .map_or(TargetKind::None, |t| t.kind);
    let text = String::from_utf8_lossy(captured);
    let text = text
        .trim_start_matches("tcp:")
        .trim_matches(|c| c == '"' || c == '\'');
    let host = text
        .split([',', ':', '/'])
        .next()
        .unwrap_or(text)
        .to_string();
    let name = host.split('.').next().unwrap_or(&host).to_string();
    Target {
        kind,
        host: host.contains('.').then(|| host.clone()),
        name: Some(name),
    }
}

/// Widen `[s, e)` to the enclosing line boundaries, by at most [`LINE_SLACK`] bytes each side.
fn widen_to_lines(text: &[u8], s: usize, e: usize) -> (usize, usize) {
    // memchr, not a byte loop: this runs for every window, and is most of what the engine
    // costs beyond the prefilter on text with many keyword hits.
    let lo = s.saturating_sub(LINE_SLACK);
    let s = memchr::memrchr(b'\n', &text[lo..s]).map_or(lo, |i| lo + i + 1);
    let hi = (e + LINE_SLACK).min(text.len());
    let e = memchr::memchr(b'\n', &text[e..hi]).map_or(hi, |i| e + i);
    (s, e)
}

/// Per-file state of one scan.
struct FileContext<'a> {
    path: &'a str,
    text: &'a [u8],
    /// Offsets of `\n`, built on the first finding.
    newlines: Option<Vec<usize>>,
    /// Dedupe key: (rule index, fingerprint, line).
    seen: HashSet<(usize, String, usize)>,
}

impl FileContext<'_> {
    fn line_of(&mut self, offset: usize) -> usize {
        let text = self.text;
        let nl = self.newlines.get_or_insert_with(|| {
            text.iter()
                .enumerate()
                .filter(|(_, c)| **c == b'\n')
                .map(|(i, _)| i)
                .collect()
        });
        nl.partition_point(|&p| p < offset) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine_with(yaml: &str) -> Engine {
        let rules = rules::load_rule_file("t.yaml", yaml).unwrap();
        Engine::from_rules(rules, b"k".to_vec())
    }

    const RULE: &str = r#"
rules:
  - id: demo-token
    title: Demo token
    secretType: Demo token
    severity: high
    keywords: [demo_]
    regex: '\b(demo_[A-Za-z0-9]{20})\b'
"#;

    #[test]
    fn finds_with_line_numbers_and_dedupes() {
        let e = engine_with(RULE);
        let text = "a\nb demo_Zq8wM2rX9vLkT4nB7cD1\nDEMO_ nothing\nx demo_Zq8wM2rX9vLkT4nB7cD1 demo_Zq8wM2rX9vLkT4nB7cD1\n";
        let s = e.scan("/x", text.as_bytes());
        let lines: Vec<_> = s.findings.iter().map(|f| f.line).collect();
        assert_eq!(lines, [2, 4]);
        assert_eq!(s.findings[0].redacted, "demo…(25)");
        assert!(s.findings[0].fingerprint.starts_with("hmac-sha256:"));
    }

    #[test]
    fn utf16_files_are_scanned() {
        let e = engine_with(RULE);
        let text = "line1\r\ntoken demo_Zq8wM2rX9vLkT4nB7cD1\r\n";
        let mut le = vec![0xFF, 0xFE];
        let mut be = Vec::new();
        for u in text.encode_utf16() {
            le.extend_from_slice(&u.to_le_bytes());
            be.extend_from_slice(&u.to_be_bytes());
        }
        for data in [le, be] {
            let s = e.scan("/x", &data);
            assert_eq!(s.findings.len(), 1);
            assert_eq!(s.findings[0].line, 2);
        }
    }

    #[test]
    fn keyword_hits_far_apart_each_confirm() {
        let e = engine_with(RULE);
        let mut text = String::from("demo_Zq8wM2rX9vLkT4nB7cD1\n");
        text.push_str(&"filler line without anything\n".repeat(10_000));
        text.push_str("demo_Ab8wM2rX9vLkT4nB7cD2\n");
        let s = e.scan("/x", text.as_bytes());
        assert_eq!(s.findings.len(), 2);
        assert_eq!(s.findings[1].line, 10_002);
    }
}
