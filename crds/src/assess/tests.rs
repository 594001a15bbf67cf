use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::{Cloud, FindingMetadata, SecretTarget, Severity, SshKeyFacts, Triage};

fn ts(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).unwrap()
}

fn spec(rule: &str, secret_type: &str, severity: Severity) -> SecretFindingSpec {
    SecretFindingSpec {
        policy: "prod".into(),
        machine: "prod-web-01".into(),
        cloud: Cloud::Aws,
        rule_id: rule.into(),
        secret_type: secret_type.into(),
        rule_severity: severity,
        fingerprint: "hmac-sha256:00".into(),
        redacted: "AKIA…(20)".into(),
        locations: Vec::new(),
        location_count: 1,
        metadata: FindingMetadata::default(),
        scan_id: "scan-2".into(),
        first_seen: Time(ts(110)),
        last_seen: Time(ts(110)),
        triage: None,
    }
}

fn ssh_spec() -> SecretFindingSpec {
    let mut s = spec("ssh-private-key-openssh", "SSH private key", Severity::High);
    s.metadata.ssh = Some(SshKeyFacts {
        algorithm: "ssh-ed25519".into(),
        public_key_fingerprint: Some("SHA256:k1".into()),
        encrypted: false,
    });
    s
}

fn started() -> Time {
    Time(ts(100))
}

#[test]
fn a_new_finding_is_assessed_like_correlation_without_fleet_facts() {
    let s = spec("aws-access-key", "AWS access key", Severity::High);
    let a = scanned(&s, None, true, ts(120), &started());
    let by_correlation = assess(Facts {
        evidence: Evidence::of(&s),
        state: FindingState::Active,
        resolved_at: None,
        verdict: Verdict::target(Evidence::of(&s).target, |_| false, |_, _| None),
        exposed: true,
        now: ts(120),
        new: true,
    });
    assert_eq!(a, by_correlation);
    let status = &a.status;
    assert_eq!(status.state, Some(FindingState::Active));
    assert_eq!(status.verification, Some(Verification::NotApplicable));
    // high 65 + credential 5 + exposed 10
    assert_eq!(status.risk_score, Some(80));
    assert_eq!(status.severity, Some(Severity::High));
    assert!(status.exposed && !status.expired);
    assert_eq!(a.labels[labels::NEW], "true");
    assert_eq!(a.labels[labels::STATE], "active");
    assert_eq!(a.labels[labels::VERIFIED], "not-applicable");
    assert_eq!(a.labels[labels::TARGET_KIND], "none");
    assert!(!a.labels.contains_key(labels::TARGET));
    assert!(a.open);
    // Every operator label is there (TARGET when there is a target, below).
    for key in contract::OPERATOR_FINDING_LABELS
        .iter()
        .filter(|k| **k != labels::TARGET)
    {
        assert!(a.labels.contains_key(*key), "{key}");
    }
}

#[test]
fn a_named_target_is_labelled_and_an_ssh_key_starts_unverified() {
    let mut s = spec("postgres-url", "Database connection string", Severity::High);
    s.metadata.target = Some(SecretTarget {
        kind: TargetKind::Rds,
        name: "Billing.x.eu-west-1.rds.amazonaws.com".into(),
    });
    let a = scanned(&s, None, false, ts(120), &started());
    assert_eq!(
        a.labels[labels::TARGET],
        "billing.x.eu-west-1.rds.amazonaws.com"
    );
    assert_eq!(a.labels[labels::TARGET_KIND], "rds");
    assert_eq!(a.status.target.as_ref().unwrap().exists, None);

    let k = ssh_spec();
    let a = scanned(&k, None, false, ts(120), &started());
    assert_eq!(a.status.verification, Some(Verification::Unverified));
    assert_eq!(a.status.target, None);
    assert!(a.status.authorized_on.is_empty() && a.status.same_key_on.is_empty());
    assert_eq!(a.labels[labels::VERIFIED], "unverified");
}

#[test]
fn an_existing_finding_keeps_the_fleet_verdict_and_is_active_again() {
    let k = ssh_spec();
    let verified = Verdict::ssh(
        vec![AuthorizedOn {
            machine: "prod-db-01".into(),
            user: "bob".into(),
            source: None,
        }],
        vec!["prod-app-01".into()],
    );
    // As correlation left it after an earlier scan, since resolved.
    let mut before = assess(Facts {
        evidence: Evidence::of(&k),
        state: FindingState::Resolved,
        resolved_at: Some(Time(ts(50))),
        verdict: verified.clone(),
        exposed: false,
        now: ts(60),
        new: false,
    })
    .status;
    assert_eq!(before.state, Some(FindingState::Resolved));
    let mut seen = k.clone();
    seen.first_seen = Time(ts(10));
    let a = scanned(&seen, Some(&before), false, ts(120), &started());
    assert_eq!(a.status.state, Some(FindingState::Active));
    assert_eq!(a.status.resolved_at, None);
    assert_eq!(Verdict::of_status(&a.status), Some(verified.clone()));
    assert_eq!(a.labels[labels::TARGET], "prod-db-01");
    assert_eq!(a.labels[labels::NEW], "false");
    assert_eq!(a.labels[labels::STATE], "active");

    // Triaged: the state label says so and the score is 0; exposure and risk follow the facts.
    seen.triage = Some(Triage {
        state: TriageState::Accepted,
        note: None,
        by: None,
    });
    before.exposed = true;
    let a = scanned(&seen, Some(&before), false, ts(120), &started());
    assert_eq!(a.labels[labels::STATE], "accepted");
    assert_eq!(a.status.risk_score, Some(0));
    assert_eq!(a.status.severity, Some(Severity::High));
    assert!(!a.status.exposed && !a.open);
}

#[test]
fn expiry_is_judged_now() {
    let mut s = spec("github-pat", "GitHub token", Severity::High);
    s.metadata.expires_at = Some(Time(ts(115)));
    assert!(!scanned(&s, None, false, ts(110), &started()).status.expired);
    let a = scanned(&s, None, false, ts(120), &started());
    assert!(a.status.expired);
    assert_eq!(a.status.risk_score, Some(25));
}

#[test]
fn new_only_when_first_seen_by_the_latest_scan() {
    let mut s = spec("aws-access-key", "AWS access key", Severity::High);
    let start = started();
    let latest = |id| {
        Some(LatestScan {
            scan_id: id,
            started: &start,
        })
    };
    let active = FindingState::Active;
    assert!(is_new(&Evidence::of(&s), active, latest("scan-2")));
    // Started after the finding was first seen: a retry of the Job, or a later scan.
    s.first_seen = Time(ts(10));
    assert!(!is_new(&Evidence::of(&s), active, latest("scan-2")));
    s.first_seen = Time(ts(110));
    assert!(!is_new(&Evidence::of(&s), active, latest("scan-3")));
    assert!(!is_new(
        &Evidence::of(&s),
        FindingState::Resolved,
        latest("scan-2")
    ));
    assert!(!is_new(&Evidence::of(&s), active, None));
    assert!(LatestScan::of(None).is_none());
}

#[test]
fn verdicts_against_an_inventory() {
    let mut s = spec("postgres-url", "Database connection string", Severity::High);
    assert_eq!(
        Verdict::target(Evidence::of(&s).target, |_| true, |_, _| Some(true)),
        Verdict {
            verification: Verification::NotApplicable,
            target: None,
            authorized_on: Vec::new(),
            same_key_on: Vec::new(),
        }
    );
    s.metadata.target = Some(SecretTarget {
        kind: TargetKind::Rds,
        name: "db".into(),
    });
    let v = Verdict::target(
        Evidence::of(&s).target,
        |k| k == TargetKind::Rds,
        |_, _| Some(false),
    );
    assert_eq!(v.verification, Verification::Unverified);
    assert_eq!(v.target.unwrap().exists, Some(false));
    assert_eq!(Verdict::of_status(&SecretFindingStatus::default()), None);
}
