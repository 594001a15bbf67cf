//! Label values for SecretFindings (`snapsentry.io/*`), always valid Kubernetes label values.

use std::collections::BTreeMap;

use snapsentry_crds::{Cloud, SecretFindingSpec, Severity, TargetKind, Verification, labels};

// The value helpers are shared with the scanner, which writes the same labels first.
pub use snapsentry_crds::label_value::{
    bounded, is_valid_label_value, slugify, state_value, verification_value,
};

/// What the labels of one finding are made of.
#[derive(Clone, Debug)]
pub struct FindingLabelFacts<'a> {
    pub spec: &'a SecretFindingSpec,
    pub severity: Severity,
    pub state: &'static str,
    pub verification: Verification,
    pub exposed: bool,
    pub target_kind: TargetKind,
}

/// All nine `snapsentry.io/*` labels of a SecretFinding.
pub fn finding_labels(f: &FindingLabelFacts<'_>) -> BTreeMap<String, String> {
    let cloud: Cloud = f.spec.cloud;
    BTreeMap::from([
        (labels::POLICY.to_owned(), slugify(&f.spec.policy)),
        (labels::MACHINE.to_owned(), slugify(&f.spec.machine)),
        (labels::CLOUD.to_owned(), cloud.as_str().to_owned()),
        (labels::SECRET_TYPE.to_owned(), slugify(&f.spec.secret_type)),
        (labels::SEVERITY.to_owned(), f.severity.as_str().to_owned()),
        (labels::STATE.to_owned(), f.state.to_owned()),
        (
            labels::VERIFIED.to_owned(),
            verification_value(f.verification).to_owned(),
        ),
        (labels::EXPOSED.to_owned(), f.exposed.to_string()),
        (
            labels::TARGET_KIND.to_owned(),
            f.target_kind.as_str().to_owned(),
        ),
    ])
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
        let b = slugify(&(long.clone() + "c"));
        assert!(a.len() <= 63, "{a}");
        assert!(is_valid_label_value(&a), "{a}");
        assert_ne!(a, b);
        assert_eq!(slugify(&"x".repeat(63)), "x".repeat(63));
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
}
