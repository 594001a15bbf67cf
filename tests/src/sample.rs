//! A sample SecretFinding as the scanner writes it (labels included), for tests of the API that
//! need one object and no scan.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use snapsentry_crds::{
    Cloud, FindingLocation, FindingMetadata, SecretFinding, SecretFindingSpec, Severity, labels,
};

/// An SSH private key found on machine `web-01` of policy `lab`, named `name`.
pub fn finding(name: &str) -> SecretFinding {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let spec = SecretFindingSpec {
        policy: "lab".into(),
        machine: "web-01".into(),
        cloud: Cloud::Image,
        rule_id: "ssh-private-key-openssh".into(),
        secret_type: "SSH private key".into(),
        rule_severity: Severity::High,
        fingerprint: "hmac-sha256:00ff".into(),
        redacted: "----…(411)".into(),
        locations: vec![FindingLocation {
            volume: "disk0/p1".into(),
            path: "/home/deploy/.ssh/id_ed25519".into(),
            archive: None,
            line: Some(1),
            size: Some(411),
            mode: Some("0600".into()),
            uid: Some(1000),
            modified: Some(now.clone()),
            accessed: None,
        }],
        location_count: 1,
        metadata: FindingMetadata::default(),
        scan_id: "s1".into(),
        first_seen: now.clone(),
        last_seen: now,
        triage: None,
    };
    let mut sf = SecretFinding::new(name, spec);
    let l = sf.metadata.labels.get_or_insert_default();
    for (k, v) in [
        (labels::POLICY, "lab"),
        (labels::MACHINE, "web-01"),
        (labels::CLOUD, "image"),
        (labels::SECRET_TYPE, "ssh-private-key"),
        (labels::SEVERITY, "critical"),
        (labels::STATE, "active"),
        (labels::VERIFIED, "true"),
        (labels::EXPOSED, "true"),
        (labels::TARGET_KIND, "vm"),
    ] {
        l.insert(k.into(), v.into());
    }
    sf
}
