//! Risk: an assessed severity and a 0–100 score for one finding.

use crate::{Severity, Verification};

/// The facts risk is computed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RiskFacts {
    /// The severity the rule gives the secret type.
    pub rule_severity: Severity,
    /// Broad class of the secret type.
    pub class: SecretClass,
    /// What verification concluded.
    pub verification: Verification,
    /// Whether the secret's target exists (`None`: no target or unknown).
    pub target_exists: Option<bool>,
    /// The secret has expired.
    pub expired: bool,
    /// An SSH private key protected by a passphrase.
    pub encrypted: bool,
    /// The source machine is reachable from the internet.
    pub exposed: bool,
}

/// Broad class of a secret type, for the score.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretClass {
    /// Opens infrastructure directly: SSH private keys, cloud access keys, service-account keys,
    /// connection strings with credentials.
    Credential,
    /// Tokens and passwords for one service.
    Token,
    /// Anything else the rules report.
    Other,
}

impl SecretClass {
    /// Class of a secret type from its rule id and human label.
    pub fn of(rule_id: &str, secret_type: &str) -> Self {
        let s = format!("{rule_id} {secret_type}").to_ascii_lowercase();
        const CREDENTIAL: &[&str] = &[
            "private key",
            "private-key",
            "access key",
            "access-key",
            "service account",
            "service-account",
            "connection string",
            "connection-string",
            "storage account key",
            "pgpass",
        ];
        const TOKEN: &[&str] = &["token", "password", "secret", "api key", "api-key", "sas"];
        if CREDENTIAL.iter().any(|k| s.contains(k)) {
            SecretClass::Credential
        } else if TOKEN.iter().any(|k| s.contains(k)) {
            SecretClass::Token
        } else {
            SecretClass::Other
        }
    }
}

/// The assessed severity and score.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Risk {
    /// The assessed severity (the band of `score`).
    pub severity: Severity,
    /// 0–100.
    pub score: u32,
}

/// Score a finding.
///
/// ```text
/// score = clamp(0, 100,
///       base(rule severity)        info 10, low 25, medium 45, high 65, critical 80
///     + class                      credential +5, token 0, other -5
///     + verification               verified +15, else 0
///     + target                     exists +10, known not to exist -20, unknown 0
///     + exposure                   internet-facing source machine +10
///     - encrypted SSH key          -15
///     - expired secret             -40)
/// severity = critical ≥ 85 > high ≥ 65 > medium ≥ 40 > low ≥ 20 > info
/// ```
///
/// Every term moves the score one way only, so the score is monotone in each fact: more proof,
/// more exposure or a higher rule severity never lowers it; expiry, encryption or a dead target
/// never raise it. A verified SSH key (high) on an exposed machine scores 100 (critical); the
/// same key on an internal machine 95; an unverified internal AWS key (high) 70 (high); once
/// expired 30 (low).
pub fn assess(f: &RiskFacts) -> Risk {
    let base: i32 = match f.rule_severity {
        Severity::Info => 10,
        Severity::Low => 25,
        Severity::Medium => 45,
        Severity::High => 65,
        Severity::Critical => 80,
    };
    let class = match f.class {
        SecretClass::Credential => 5,
        SecretClass::Token => 0,
        SecretClass::Other => -5,
    };
    let verification = if f.verification == Verification::Verified {
        15
    } else {
        0
    };
    let target = match f.target_exists {
        Some(true) => 10,
        Some(false) => -20,
        None => 0,
    };
    let exposure = if f.exposed { 10 } else { 0 };
    let encrypted = if f.encrypted { -15 } else { 0 };
    let expired = if f.expired { -40 } else { 0 };
    let score = (base + class + verification + target + exposure + encrypted + expired)
        .clamp(0, 100) as u32;
    Risk {
        severity: severity_of(score),
        score,
    }
}

/// Severity band of a score.
pub fn severity_of(score: u32) -> Severity {
    match score {
        85.. => Severity::Critical,
        65..=84 => Severity::High,
        40..=64 => Severity::Medium,
        20..=39 => Severity::Low,
        _ => Severity::Info,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> RiskFacts {
        RiskFacts {
            rule_severity: Severity::High,
            class: SecretClass::Credential,
            verification: Verification::Unverified,
            target_exists: None,
            expired: false,
            encrypted: false,
            exposed: false,
        }
    }

    #[test]
    fn documented_examples() {
        let ssh = RiskFacts {
            verification: Verification::Verified,
            target_exists: Some(true),
            ..facts()
        };
        assert_eq!(
            assess(&RiskFacts {
                exposed: true,
                ..ssh
            }),
            Risk {
                severity: Severity::Critical,
                score: 100
            }
        );
        assert_eq!(assess(&ssh).score, 95);
        assert_eq!(
            assess(&facts()),
            Risk {
                severity: Severity::High,
                score: 70
            }
        );
        assert_eq!(
            assess(&RiskFacts {
                expired: true,
                ..facts()
            }),
            Risk {
                severity: Severity::Low,
                score: 30
            }
        );
    }

    #[test]
    fn each_fact_moves_the_score_one_way() {
        let f = facts();
        let s = |f: RiskFacts| assess(&f).score;
        assert!(s(RiskFacts { exposed: true, ..f }) > s(f));
        assert!(
            s(RiskFacts {
                verification: Verification::Verified,
                ..f
            }) > s(f)
        );
        assert!(
            s(RiskFacts {
                target_exists: Some(true),
                ..f
            }) > s(f)
        );
        assert!(
            s(RiskFacts {
                target_exists: Some(false),
                ..f
            }) < s(f)
        );
        assert!(s(RiskFacts { expired: true, ..f }) < s(f));
        assert!(
            s(RiskFacts {
                encrypted: true,
                ..f
            }) < s(f)
        );
        assert!(
            s(RiskFacts {
                rule_severity: Severity::Critical,
                ..f
            }) > s(f)
        );
        assert!(
            s(RiskFacts {
                class: SecretClass::Other,
                ..f
            }) < s(f)
        );
        // Severity follows the score.
        let sev = |f: RiskFacts| assess(&f).severity;
        assert!(
            sev(RiskFacts {
                exposed: true,
                verification: Verification::Verified,
                ..f
            }) >= sev(f)
        );
    }

    #[test]
    fn score_is_clamped() {
        let low = RiskFacts {
            rule_severity: Severity::Info,
            class: SecretClass::Other,
            target_exists: Some(false),
            expired: true,
            encrypted: true,
            ..facts()
        };
        assert_eq!(
            assess(&low),
            Risk {
                severity: Severity::Info,
                score: 0
            }
        );
    }

    #[test]
    fn classes() {
        assert_eq!(
            SecretClass::of("ssh-private-key", "SSH private key"),
            SecretClass::Credential
        );
        assert_eq!(
            SecretClass::of("aws-access-key", "AWS access key"),
            SecretClass::Credential
        );
        assert_eq!(
            SecretClass::of("github-pat", "GitHub token"),
            SecretClass::Token
        );
        assert_eq!(SecretClass::of("x", "Certificate"), SecretClass::Other);
    }
}
