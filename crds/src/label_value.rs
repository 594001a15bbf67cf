//! Label *values* (`snapsentry.io/*`): pure helpers shared by the operator and the scanner, so
//! both write exactly the same values for the same input.

use sha2::{Digest, Sha256};

use crate::{FindingState, TriageState, Verification};

/// Longest label value Kubernetes accepts.
pub const MAX_LABEL_VALUE: usize = 63;

/// First 16 hex digits of SHA-256 over the parts, each followed by a NUL (so `("ab","c")` and
/// `("a","bc")` differ).
pub fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `s` as a label value: lowercase, every run of characters outside `[a-z0-9._-]` becomes one
/// `-`, starting and ending with an alphanumeric, at most 63 characters. "AWS access key" →
/// `aws-access-key`. A value that must be cut keeps a hash of the whole so distinct long inputs
/// stay distinct. Empty input gives `unknown`.
pub fn slugify(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if trimmed.is_empty() {
        return "unknown".to_owned();
    }
    bounded(trimmed, MAX_LABEL_VALUE, s)
}

/// `value` cut to `max` characters with a hash of `whole` at the end when it is longer.
/// `value` must be ASCII.
pub fn bounded(value: &str, max: usize, whole: &str) -> String {
    if value.len() <= max {
        return value.to_owned();
    }
    let hash = short_hash(&[whole]);
    let keep = max - hash.len() - 1;
    let head = value[..keep].trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    format!("{head}-{hash}")
}

/// Whether `v` is a valid label value.
pub fn is_valid_label_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= MAX_LABEL_VALUE
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && v.as_bytes()[0].is_ascii_alphanumeric()
            && v.as_bytes()[v.len() - 1].is_ascii_alphanumeric())
}

/// The `snapsentry.io/state` value: `active`, `resolved`, or — for an active finding people
/// triaged away — `accepted` / `falsePositive`, so `-l snapsentry.io/state=active` lists exactly
/// the open findings.
pub fn state_value(state: FindingState, triage: Option<TriageState>) -> &'static str {
    match (state, triage) {
        (FindingState::Resolved, _) => "resolved",
        (FindingState::Active, Some(TriageState::Accepted)) => "accepted",
        (FindingState::Active, Some(TriageState::FalsePositive)) => "falsePositive",
        (FindingState::Active, _) => "active",
    }
}

/// The `snapsentry.io/verified` value.
pub fn verification_value(v: Verification) -> &'static str {
    match v {
        Verification::Verified => "verified",
        Verification::Unverified => "unverified",
        Verification::NotApplicable => "not-applicable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugify_secret_types() {
        assert_eq!(slugify("AWS access key"), "aws-access-key");
        assert_eq!(
            slugify("SSH private key (OpenSSH)"),
            "ssh-private-key-openssh"
        );
        assert_eq!(
            slugify("  --Azure Storage   connection string!! "),
            "azure-storage-connection-string"
        );
        assert_eq!(slugify("PostgreSQL .pgpass"), "postgresql-.pgpass");
        assert_eq!(slugify("é"), "unknown");
        assert_eq!(slugify(""), "unknown");
    }

    #[test]
    fn long_values_are_cut_with_a_hash_and_stay_valid() {
        let long = "a".repeat(62) + "-" + &"b".repeat(40);
        let a = slugify(&long);
        assert!(a.len() <= 63 && is_valid_label_value(&a), "{a}");
        assert_ne!(a, slugify(&(long.clone() + "c")));
        assert_eq!(slugify(&"x".repeat(63)), "x".repeat(63));
        assert_eq!(short_hash(&["ab", "c"]).len(), 16);
        assert_ne!(short_hash(&["ab", "c"]), short_hash(&["a", "bc"]));
    }

    #[test]
    fn every_slug_is_a_valid_label_value() {
        for s in [
            "AWS access key",
            "-x-",
            "a.b_c",
            "Ünïcödé key",
            "GCP service-account JSON",
            "x",
        ] {
            let v = slugify(s);
            assert!(is_valid_label_value(&v), "{s:?} -> {v:?}");
        }
        assert!(!is_valid_label_value("-a"));
        assert!(!is_valid_label_value("a b"));
        assert!(!is_valid_label_value(&"a".repeat(64)));
    }

    #[test]
    fn state_and_verification_values() {
        assert_eq!(state_value(FindingState::Active, None), "active");
        assert_eq!(
            state_value(FindingState::Active, Some(TriageState::FalsePositive)),
            "falsePositive"
        );
        assert_eq!(verification_value(Verification::Unverified), "unverified");
    }
}
