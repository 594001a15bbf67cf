//! Builders for correlation tests.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use snapsentry_crds::{
    AuthorizedKey, Cloud, CloudAuthorizedKey, Exposure, FindingLocation, FindingMetadata,
    ScanPolicySpec, ScanSummary, ScannedMachine, ScannedMachineSpec, ScannedMachineStatus,
    SecretFinding, SecretFindingSpec, Severity, SshKeyFacts,
};

use super::{
    Correlation, CorrelationInput, Correlator, FindingRecord, FindingUpdate, Records,
    TargetInventory,
};

/// A ScanPolicy spec with nothing set (no providers, no schedule); tests set what they need.
pub fn policy_spec() -> ScanPolicySpec {
    ScanPolicySpec {
        providers: vec![],
        schedule: None,
        time_zone: None,
        suspend: false,
        concurrency: None,
        rules: None,
        exclusions: None,
        verification: None,
        scanner: None,
        resolved_retention: None,
    }
}

pub fn ts(secs: i64) -> Timestamp {
    Timestamp::from_second(1_790_000_000 + secs).unwrap()
}

pub fn machine_in(cloud: Cloud, name: &str, exposed: bool) -> ScannedMachine {
    ScannedMachine {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: ScannedMachineSpec {
            policy: "prod".into(),
            cloud,
            instance_id: format!("i-{name}"),
            display_name: None,
            region: None,
            platform: Some("linux".into()),
            state: Some("running".into()),
            exposure: Exposure {
                internet_facing: exposed,
                reasons: if exposed {
                    vec!["public IPv4 203.0.113.7".into()]
                } else {
                    vec![]
                },
            },
            disks: vec![],
            cloud_authorized_keys: vec![],
        },
        status: None,
    }
}

pub fn machine(name: &str, exposed: bool) -> ScannedMachine {
    machine_in(Cloud::Aws, name, exposed)
}

pub fn with_authorized(mut m: ScannedMachine, user: &str, fingerprint: &str) -> ScannedMachine {
    m.status
        .get_or_insert_with(Default::default)
        .authorized_keys
        .push(AuthorizedKey {
            user: user.into(),
            fingerprint: fingerprint.into(),
            path: format!("/home/{user}/.ssh/authorized_keys"),
        });
    m
}

/// `m` with `fingerprint` authorized for `user` by the cloud (`source`), not on its disk.
pub fn with_cloud_authorized(
    mut m: ScannedMachine,
    user: &str,
    fingerprint: &str,
    source: &str,
) -> ScannedMachine {
    m.spec.cloud_authorized_keys.push(CloudAuthorizedKey {
        user: user.into(),
        fingerprint: fingerprint.into(),
        source: source.into(),
    });
    m
}

pub fn with_last_scan(
    mut m: ScannedMachine,
    scan_id: &str,
    succeeded: bool,
    finished: Timestamp,
) -> ScannedMachine {
    let status = m.status.get_or_insert_with(ScannedMachineStatus::default);
    status.last_scan = Some(ScanSummary {
        scan_id: scan_id.into(),
        succeeded,
        finished_at: Some(Time(finished)),
        ..Default::default()
    });
    m
}

pub fn machine_scanned(
    name: &str,
    scan_id: &str,
    succeeded: bool,
    finished: Timestamp,
) -> ScannedMachine {
    with_last_scan(machine(name, false), scan_id, succeeded, finished)
}

pub fn finding_of_type(machine: &str, secret_type: &str, scan_id: &str) -> SecretFinding {
    let rule_id = super::slugify(secret_type);
    let mut f = SecretFinding::new(
        &format!("{machine}-{rule_id}"),
        SecretFindingSpec {
            policy: "prod".into(),
            machine: machine.into(),
            cloud: Cloud::Aws,
            rule_id,
            secret_type: secret_type.into(),
            rule_severity: Severity::High,
            fingerprint: format!("hmac-sha256:{machine}{secret_type}"),
            redacted: "abcd…(40)".into(),
            locations: vec![FindingLocation {
                volume: "disk0/p1".into(),
                path: "/home/ubuntu/.secret".into(),
                archive: None,
                line: Some(1),
                size: None,
                mode: None,
                uid: None,
                modified: None,
                accessed: None,
            }],
            location_count: 1,
            metadata: FindingMetadata::default(),
            scan_id: scan_id.into(),
            first_seen: Time(ts(0)),
            last_seen: Time(ts(0)),
            triage: None,
        },
    );
    f.metadata.namespace = Some("security".into());
    f
}

/// An SSH private key finding on `machine` whose public key has `public_fp`.
pub fn ssh_finding(machine: &str, public_fp: &str, scan_id: &str) -> SecretFinding {
    let mut f = finding_of_type(machine, "SSH private key", scan_id);
    f.metadata.name = Some(format!(
        "{machine}-ssh-{}",
        public_fp.trim_start_matches("SHA256:").to_lowercase()
    ));
    f.spec.fingerprint = format!("hmac-sha256:{public_fp}");
    f.spec.locations[0].path = "/home/ubuntu/.ssh/id_ed25519".into();
    f.spec.metadata.ssh = Some(SshKeyFacts {
        algorithm: "ssh-ed25519".into(),
        public_key_fingerprint: Some(public_fp.into()),
        encrypted: false,
    });
    f
}

/// A finding last seen at `last_seen` by `scan_id`.
pub fn finding(machine: &str, key: &str, scan_id: &str, last_seen: Timestamp) -> SecretFinding {
    let mut f = ssh_finding(machine, key, scan_id);
    f.spec.last_seen = Time(last_seen);
    f
}

/// The record correlation reads of `f`.
pub fn record(f: &SecretFinding) -> FindingRecord {
    Records::new()
        .record(f.clone())
        .expect("test findings have names")
}

/// A [`CorrelationInput`] with whole findings, made into records by [`correlate`].
#[derive(Clone, Debug)]
pub struct TestInput<'a> {
    pub policy: &'a str,
    pub namespace: &'a str,
    pub owner: Option<OwnerReference>,
    pub machines: &'a [ScannedMachine],
    pub findings: &'a [SecretFinding],
    pub targets: &'a TargetInventory,
    pub now: Timestamp,
    pub retention: SignedDuration,
}

/// Everything correlation wants written: the [`Correlation`] and every finding's update (from
/// [`Correlator::updates`], by name).
#[derive(Clone, Debug, PartialEq)]
pub struct Collected {
    pub correlation: Correlation,
    pub findings: Vec<FindingUpdate>,
}

impl std::ops::Deref for Collected {
    type Target = Correlation;

    fn deref(&self) -> &Correlation {
        &self.correlation
    }
}

/// Correlate `input` as the controller does (records made one finding at a time, both passes)
/// and collect every update.
pub fn correlate(input: &TestInput<'_>) -> Collected {
    let mut records = Records::new();
    let findings: Vec<FindingRecord> = input
        .findings
        .iter()
        .filter_map(|f| records.record(f.clone()))
        .collect();
    let input = CorrelationInput {
        policy: input.policy,
        namespace: input.namespace,
        owner: input.owner.clone(),
        machines: input.machines,
        findings: &findings,
        targets: input.targets,
        now: input.now,
        retention: input.retention,
    };
    let correlator = Correlator::new(&input);
    let mut updates: Vec<FindingUpdate> = correlator.updates().map(|d| d.update).collect();
    updates.sort_by(|a, b| a.name.cmp(&b.name));
    Collected {
        correlation: correlator.correlation(),
        findings: updates,
    }
}
