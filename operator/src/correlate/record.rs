//! A SecretFinding as correlation reads it, in a few hundred bytes: the facts correlation uses,
//! the strings many findings repeat (machine, rule, secret type, scan) shared, and digests of the
//! finding's operator-owned part (its [`OPERATOR_FINDING_LABELS`] and its whole status) in place
//! of that part, to tell whether the desired one differs.
//!
//! The controller turns each finding into a [`FindingRecord`] as its list page arrives
//! ([`Records::record`]), so a policy's findings cost their records, never their objects.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use jiff::Timestamp;
use snapsentry_crds::assess::Evidence;
use snapsentry_crds::contract::OPERATOR_FINDING_LABELS;
use snapsentry_crds::{
    Cloud, FindingState, SecretFinding, SecretFindingStatus, Severity, TargetKind, TriageState,
};

use super::FindingUpdate;

/// A string many records share (interned by [`Records`]).
pub type Shared = Arc<str>;

/// What correlation reads of one SecretFinding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FindingRecord {
    pub name: Box<str>,
    /// `spec.machine`.
    pub machine: Shared,
    pub cloud: Cloud,
    pub rule_id: Shared,
    pub secret_type: Shared,
    pub rule_severity: Severity,
    /// `spec.scanId`: the last scan that saw the finding.
    pub scan_id: Shared,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// `spec.metadata.expiresAt`.
    pub expires_at: Option<Timestamp>,
    /// `spec.triage.state`.
    pub triage: Option<TriageState>,
    /// `spec.metadata.ssh`, for SSH private keys.
    pub ssh: Option<Box<SshRecord>>,
    /// `spec.metadata.target`: the resource the secret names.
    pub target: Option<Box<(TargetKind, Box<str>)>>,
    /// The path of the first location (AttackPaths name it).
    pub path: Option<Box<str>>,
    /// `status.state` and `status.resolvedAt` as they are.
    pub state: Option<FindingState>,
    pub resolved_at: Option<Timestamp>,
    /// The finding's operator-owned part as it is.
    pub current: OperatorDigest,
}

/// What a record keeps of an SSH private key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshRecord {
    /// The key's identity across machines (see [`super::ssh_key_identity`]): its public key
    /// fingerprint when known, else the keyed fingerprint of the private key.
    pub identity: Box<str>,
    /// Whether `identity` is the public key fingerprint (only that can be authorized).
    pub public_known: bool,
    pub encrypted: bool,
}

impl SshRecord {
    /// The public key fingerprint, when the scanner could derive it.
    pub fn public_key_fingerprint(&self) -> Option<&str> {
        self.public_known.then_some(&*self.identity)
    }
}

/// Digests of a finding's operator-owned part: its [`OPERATOR_FINDING_LABELS`] (each present or
/// absent) and its whole status. Equal digests mean equal parts (64-bit SipHash of each; a
/// collision would only skip one write until the part changes again).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OperatorDigest {
    pub labels: u64,
    pub status: u64,
}

impl OperatorDigest {
    /// The digest of `labels` (only the operator's count) and `status` (`None`: no status).
    pub fn of(
        labels: Option<&BTreeMap<String, String>>,
        status: Option<&SecretFindingStatus>,
    ) -> Self {
        let mut l = DefaultHasher::new();
        for key in OPERATOR_FINDING_LABELS {
            key.hash(&mut l);
            labels
                .and_then(|m| m.get(key))
                .map(String::as_str)
                .hash(&mut l);
        }
        let mut s = HashWriter(DefaultHasher::new());
        // Serializing a typed value into a hasher cannot fail: no I/O, no map with non-string
        // keys.
        let _ = serde_json::to_writer(&mut s, &status);
        Self {
            labels: l.finish(),
            status: s.0.finish(),
        }
    }
}

/// Feeds what is written into a hasher (so a status is digested without being kept as text).
struct HashWriter(DefaultHasher);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Which parts of a finding a desired update changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Changes {
    /// One of the operator's labels differs (or is missing, or is there and not desired).
    pub labels: bool,
    /// The status differs.
    pub status: bool,
}

impl FindingRecord {
    /// What `update` (the desired state of this finding) changes, `None` when nothing.
    pub fn changes(&self, update: &FindingUpdate) -> Option<Changes> {
        let desired = OperatorDigest::of(Some(&update.labels), Some(&update.status));
        let changes = Changes {
            labels: desired.labels != self.current.labels,
            status: desired.status != self.current.status,
        };
        (changes.labels || changes.status).then_some(changes)
    }

    /// What the assessment reads of this finding, a finding of policy `policy`.
    pub fn evidence<'a>(&'a self, policy: &'a str) -> Evidence<'a> {
        Evidence {
            policy,
            machine: &self.machine,
            cloud: self.cloud,
            rule_id: &self.rule_id,
            secret_type: &self.secret_type,
            rule_severity: self.rule_severity,
            scan_id: &self.scan_id,
            first_seen: self.first_seen,
            expires_at: self.expires_at,
            ssh: self.ssh.is_some(),
            encrypted: self.ssh.as_ref().is_some_and(|s| s.encrypted),
            triage: self.triage,
            target: self.target.as_deref().map(|(kind, name)| (*kind, &**name)),
        }
    }

    /// Bytes this record holds on the heap besides the strings it shares with others.
    pub fn own_heap_bytes(&self) -> usize {
        self.name.len()
            + self
                .ssh
                .as_ref()
                .map_or(0, |s| size_of::<SshRecord>() + s.identity.len())
            + self
                .target
                .as_ref()
                .map_or(0, |t| size_of::<(TargetKind, Box<str>)>() + t.1.len())
            + self.path.as_ref().map_or(0, |p| p.len())
    }
}

/// Makes [`FindingRecord`]s, sharing the strings that repeat across findings.
#[derive(Debug, Default)]
pub struct Records {
    strings: HashSet<Shared>,
}

impl Records {
    pub fn new() -> Self {
        Self::default()
    }

    fn share(&mut self, s: String) -> Shared {
        if let Some(shared) = self.strings.get(s.as_str()) {
            return shared.clone();
        }
        let shared: Shared = Arc::from(s);
        self.strings.insert(shared.clone());
        shared
    }

    /// The record of `f`; the rest of `f` is dropped. A finding without a name has no record.
    pub fn record(&mut self, f: SecretFinding) -> Option<FindingRecord> {
        let current = OperatorDigest::of(f.metadata.labels.as_ref(), f.status.as_ref());
        let name = f.metadata.name?.into_boxed_str();
        let spec = f.spec;
        let meta = spec.metadata;
        let ssh = meta.ssh.map(|s| {
            let public_known = s.public_key_fingerprint.is_some();
            let identity = s
                .public_key_fingerprint
                .unwrap_or_else(|| spec.fingerprint.clone());
            Box::new(SshRecord {
                identity: identity.into_boxed_str(),
                public_known,
                encrypted: s.encrypted,
            })
        });
        let (state, resolved_at) = f
            .status
            .map_or((None, None), |s| (s.state, s.resolved_at.map(|t| t.0)));
        Some(FindingRecord {
            name,
            machine: self.share(spec.machine),
            cloud: spec.cloud,
            rule_id: self.share(spec.rule_id),
            secret_type: self.share(spec.secret_type),
            rule_severity: spec.rule_severity,
            scan_id: self.share(spec.scan_id),
            first_seen: spec.first_seen.0,
            last_seen: spec.last_seen.0,
            expires_at: meta.expires_at.map(|t| t.0),
            triage: spec.triage.map(|t| t.state),
            ssh,
            target: meta
                .target
                .map(|t| Box::new((t.kind, t.name.into_boxed_str()))),
            path: spec
                .locations
                .into_iter()
                .next()
                .map(|l| l.path.into_boxed_str()),
            state,
            resolved_at,
            current,
        })
    }

    /// Heap bytes of the shared strings (each counted once).
    pub fn shared_heap_bytes(&self) -> usize {
        self.strings
            .iter()
            .map(|s| s.len() + 2 * size_of::<usize>())
            .sum::<usize>()
            + self.strings.capacity() * size_of::<Shared>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::testing::*;
    use snapsentry_crds::labels;

    #[test]
    fn a_record_is_small() {
        // The record itself, its own heap (name, key identity, path) and its share of the
        // shared strings stay far below the budget of 0.8 KiB a finding.
        assert!(
            size_of::<FindingRecord>() <= 224,
            "{}",
            size_of::<FindingRecord>()
        );
        let mut records = Records::new();
        let all: Vec<FindingRecord> = (0..1000)
            .filter_map(|i| {
                let mut f = ssh_finding(&format!("m{}", i % 50), &format!("SHA256:{i}"), "s1");
                f.metadata.managed_fields = Some(vec![Default::default(); 3]);
                records.record(f)
            })
            .collect();
        let per_record = size_of::<FindingRecord>()
            + all.iter().map(FindingRecord::own_heap_bytes).sum::<usize>() / all.len()
            + records.shared_heap_bytes() / all.len();
        assert!(per_record < 400, "{per_record} bytes a record");
        assert!(Arc::ptr_eq(&all[0].scan_id, &all[999].scan_id));
        assert!(Arc::ptr_eq(&all[0].machine, &all[50].machine));
    }

    #[test]
    fn a_record_keeps_what_correlation_reads() {
        let mut f = ssh_finding("a", "SHA256:k", "s1");
        f.status = Some(SecretFindingStatus {
            state: Some(FindingState::Resolved),
            resolved_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(ts(5))),
            ..Default::default()
        });
        let r = Records::new().record(f.clone()).unwrap();
        assert_eq!(&*r.name, f.metadata.name.as_deref().unwrap());
        assert_eq!(&*r.machine, "a");
        assert_eq!(&*r.scan_id, "s1");
        assert_eq!(r.path.as_deref(), Some("/home/ubuntu/.ssh/id_ed25519"));
        let ssh = r.ssh.as_deref().unwrap();
        assert_eq!(ssh.public_key_fingerprint(), Some("SHA256:k"));
        assert_eq!(r.state, Some(FindingState::Resolved));
        assert_eq!(r.resolved_at, Some(ts(5)));
        // Without the public key, the identity is the private key's fingerprint.
        f.spec.metadata.ssh.as_mut().unwrap().public_key_fingerprint = None;
        let r = Records::new().record(f.clone()).unwrap();
        let ssh = r.ssh.as_deref().unwrap();
        assert_eq!(ssh.public_key_fingerprint(), None);
        assert_eq!(&*ssh.identity, f.spec.fingerprint);
    }

    #[test]
    fn changes_cover_every_operator_label_and_the_status() {
        let mut f = ssh_finding("a", "SHA256:k", "s1");
        let status = SecretFindingStatus {
            severity: Some(Severity::High),
            ..Default::default()
        };
        let desired: BTreeMap<String, String> = OPERATOR_FINDING_LABELS
            .iter()
            .filter(|k| **k != labels::TARGET)
            .map(|k| ((*k).to_owned(), "x".to_owned()))
            .collect();
        let update = FindingUpdate {
            name: f.metadata.name.clone().unwrap(),
            status: status.clone(),
            labels: desired.clone(),
        };
        let changes =
            |f: &SecretFinding| Records::new().record(f.clone()).unwrap().changes(&update);
        let both = Changes {
            labels: true,
            status: true,
        };
        assert_eq!(changes(&f), Some(both), "a new finding: both");
        f.status = Some(status);
        assert_eq!(
            changes(&f),
            Some(Changes {
                labels: true,
                status: false
            }),
            "labels still differ, the status is written already"
        );
        let mut with_more = desired.clone();
        with_more.insert("team".into(), "x".into());
        with_more.insert(labels::POLICY.into(), "prod".into());
        f.metadata.labels = Some(with_more.clone());
        assert_eq!(changes(&f), None, "other labels are left alone");
        // An operator label there and not desired is a change, and one desired and missing.
        with_more.insert(labels::TARGET.into(), "db".into());
        f.metadata.labels = Some(with_more.clone());
        assert!(changes(&f).is_some_and(|c| c.labels && !c.status));
        with_more.remove(labels::TARGET);
        with_more.remove(labels::NEW);
        f.metadata.labels = Some(with_more);
        assert!(changes(&f).is_some_and(|c| c.labels && !c.status));
        f.metadata.labels = Some(desired);
        f.status = None;
        assert_eq!(
            changes(&f),
            Some(Changes {
                labels: false,
                status: true
            }),
            "only the status"
        );
    }
}
