//! The finding model both front ends share: engine findings ([`Located`]) grouped per (rule,
//! fingerprint) with sorted, capped locations and merged metadata (`group_findings`), at most
//! so many per machine (`cap_findings`), and the SecretFinding each group becomes
//! (`finding_object`). A Job applies those objects; `--format yaml` prints them. Names and
//! labels come from [`snapsentry_crds::contract`].
//!
//! Everything here is built from the engine's redacted findings (a prefix of at most four
//! characters, the length, a keyed HMAC): no secret value reaches an object.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
use snapsentry_crds::assess;
use snapsentry_crds::contract::finding_name;
use snapsentry_crds::from_engine::confidence_value;
use snapsentry_crds::label_value::slugify;
use snapsentry_crds::{
    ArchiveLocation, Cloud, FindingLocation, FindingMetadata, ScanAssignment, SecretFinding,
    SecretFindingSpec, SecretTarget, Severity, SshKeyFacts, TargetKind, limits,
};
use snapsentry_engine::Finding;

use crate::scan::FileInfo;

/// One engine finding with where it was found.
#[derive(Debug)]
pub struct Located {
    /// What the engine found (redacted).
    pub finding: Finding,
    /// Volume id (`disk<N>/<volume>` in a Job; empty for a directory).
    pub volume: String,
    /// Path inside the volume's filesystem (`<archive>!<entry>` inside an archive).
    pub path: String,
    /// The archive and the path inside it, for a file inside an archive.
    pub archive: Option<ArchiveLocation>,
    /// Facts of the file (of the archive, for a file inside one).
    pub file: FileInfo,
}

/// Whose findings these are: the SecretFindings' policy, machine and scan, and where they go.
#[derive(Clone, Debug)]
pub struct FindingScope {
    /// `spec.policy`: the ScanPolicy's name.
    pub policy: String,
    /// The namespace of the objects; `None` leaves it out (`kubectl apply -n NS` decides).
    pub namespace: Option<String>,
    /// `spec.machine`: the ScannedMachine's name.
    pub machine: String,
    /// `spec.cloud`.
    pub cloud: Cloud,
    /// `spec.scanId`.
    pub scan_id: String,
}

impl FindingScope {
    /// The scope of a Job's findings.
    pub fn of_assignment(a: &ScanAssignment) -> Self {
        FindingScope {
            policy: a.policy.clone(),
            namespace: Some(a.namespace.clone()),
            machine: a.machine.clone(),
            cloud: a.cloud,
            scan_id: a.scan_id.clone(),
        }
    }

    /// The SecretFinding name of `g` ([`finding_name`]).
    pub(crate) fn name(&self, g: &Group) -> String {
        finding_name(&self.machine, &g.rule_id, &g.fingerprint)
    }
}

/// All locations of one (rule, fingerprint).
#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) rule_id: String,
    secret_type: String,
    severity: Severity,
    pub(crate) fingerprint: String,
    redacted: String,
    metadata: FindingMetadata,
    /// The first [`limits::MAX_LOCATIONS`], by volume, path and line.
    locations: Vec<FindingLocation>,
    /// All locations, also those not listed.
    pub(crate) location_count: u32,
}

/// Group findings per (rule, fingerprint), most severe first, locations sorted and capped.
pub(crate) fn group_findings(findings: Vec<Located>, exclude_types: &[String]) -> Vec<Group> {
    let excluded: BTreeSet<String> = exclude_types.iter().map(|t| slugify(t)).collect();
    let mut groups: BTreeMap<(String, String), (Group, BTreeSet<LocKey>)> = BTreeMap::new();
    for l in findings {
        let f = &l.finding;
        if excluded.contains(&slugify(&f.secret_type)) {
            continue;
        }
        let entry = groups
            .entry((f.rule_id.clone(), f.fingerprint.clone()))
            .or_insert_with(|| {
                (
                    Group {
                        rule_id: f.rule_id.clone(),
                        secret_type: f.secret_type.clone(),
                        severity: f.severity.into(),
                        fingerprint: f.fingerprint.clone(),
                        redacted: f.redacted.clone(),
                        metadata: FindingMetadata::default(),
                        locations: Vec::new(),
                        location_count: 0,
                    },
                    BTreeSet::new(),
                )
            });
        // One secret in a vendor file and in a file someone wrote is the latter's: the group
        // takes the most severe occurrence's severity and package facts.
        let severity: Severity = f.severity.into();
        if severity > entry.0.severity {
            entry.0.severity = severity;
            entry.0.metadata.package = None;
        }
        if severity == entry.0.severity && entry.0.metadata.package.is_none() {
            entry.0.metadata.package = f.metadata.package.as_ref().map(Into::into);
        }
        merge_metadata(&mut entry.0.metadata, f);
        entry.1.insert(LocKey {
            volume: l.volume,
            path: l.path,
            archive: l.archive,
            line: u32::try_from(f.line).ok(),
            file: l.file,
        });
    }
    let mut out: Vec<Group> = groups
        .into_values()
        .map(|(mut g, locs)| {
            g.location_count = u32::try_from(locs.len()).unwrap_or(u32::MAX);
            g.locations = locs
                .into_iter()
                .take(limits::MAX_LOCATIONS)
                .map(LocKey::into_location)
                .collect();
            g
        })
        .collect();
    out.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.rule_id.cmp(&b.rule_id))
            .then_with(|| a.fingerprint.cmp(&b.fingerprint))
    });
    out
}

/// Keep at most `max_findings` groups (0: [`limits::MAX_FINDINGS_PER_MACHINE`], never more than
/// it), the most severe; how many were left out (0 when none).
pub(crate) fn cap_findings(groups: &mut Vec<Group>, max_findings: u32) -> usize {
    let max = match max_findings as usize {
        0 => limits::MAX_FINDINGS_PER_MACHINE,
        n => n.min(limits::MAX_FINDINGS_PER_MACHINE),
    };
    let over = groups.len().saturating_sub(max);
    groups.truncate(max);
    over
}

/// The scan error recording that `over` findings were left out by the cap, `written` kept.
pub(crate) fn over_cap_error(written: usize, over: usize) -> String {
    format!(
        "findings truncated: {written} of {} written (most severe first)",
        written + over
    )
}

/// A location while grouping (ordered by volume, path, line).
#[derive(Debug)]
struct LocKey {
    volume: String,
    path: String,
    archive: Option<ArchiveLocation>,
    line: Option<u32>,
    file: FileInfo,
}

impl PartialEq for LocKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl Eq for LocKey {}
impl PartialOrd for LocKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for LocKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&self.volume, &self.path, self.line).cmp(&(&other.volume, &other.path, other.line))
    }
}

impl LocKey {
    fn into_location(self) -> FindingLocation {
        let time = |s: &Option<String>| s.as_deref().and_then(|s| s.parse().ok()).map(Time);
        FindingLocation {
            volume: self.volume,
            path: self.path,
            archive: self.archive,
            line: self.line,
            size: Some(self.file.size),
            mode: self.file.mode.clone(),
            uid: self.file.uid,
            modified: time(&self.file.modified),
            accessed: time(&self.file.accessed),
        }
    }
}

/// Fill what `metadata` lacks from one more occurrence of the secret.
fn merge_metadata(m: &mut FindingMetadata, f: &Finding) {
    let src = &f.metadata;
    if m.expires_at.is_none() {
        m.expires_at = src
            .expires_at
            .as_deref()
            .and_then(|s| s.parse().ok())
            .map(Time);
    }
    if m.aws_account_id.is_none() {
        m.aws_account_id = src.aws_account_id.clone();
    }
    if m.target.is_none()
        && let Some(t) = &src.target
    {
        let kind = TargetKind::from(t.kind);
        // An RDS database is listed (and reached) by its endpoint host; the identifier alone
        // (`db1` of `db1.abc.<region>.rds.amazonaws.com`) is not unique across accounts.
        let name = match kind {
            TargetKind::Rds => t.host.clone().or_else(|| t.name.clone()),
            _ => t.name.clone().or_else(|| t.host.clone()),
        };
        if let Some(name) = name {
            m.target = Some(SecretTarget { kind, name });
        }
    }
    if m.ssh.is_none()
        && let Some(s) = &src.ssh
    {
        m.ssh = Some(SshKeyFacts {
            algorithm: s.algorithm.clone().unwrap_or_else(|| "unknown".into()),
            public_key_fingerprint: s.fingerprint.clone(),
            encrypted: s.encrypted,
        });
    }
    m.weak_password |= src.weak_password;
    let confidence = Some(confidence_value(f.confidence).to_owned());
    let rank = |c: &Option<String>| match c.as_deref() {
        Some("high") => 3,
        Some("medium") => 2,
        Some("low") => 1,
        _ => 0,
    };
    if rank(&confidence) > rank(&m.confidence) {
        m.confidence = confidence;
    }
}

/// The server-side apply body of one SecretFinding, named [`FindingScope::name`]: spec (never
/// `triage`), all eleven query labels and the whole status — the assessment of
/// [`assess::scanned`], the same code the operator's correlation runs, so a finding that needs no
/// fleet facts is final as written. An `existing` finding keeps its `firstSeen`, its triage (for
/// the state label) and the verdict the operator gave it. `started` is when this scan started
/// (the `lastScan.startedAt` the Job writes at the end).
pub(crate) fn finding_object(
    scope: &FindingScope,
    g: &Group,
    existing: Option<&SecretFinding>,
    exposed: bool,
    now: &Time,
    started: &Time,
) -> Result<serde_json::Value, serde_json::Error> {
    let spec = SecretFindingSpec {
        policy: scope.policy.clone(),
        machine: scope.machine.clone(),
        cloud: scope.cloud,
        rule_id: g.rule_id.clone(),
        secret_type: g.secret_type.clone(),
        rule_severity: g.severity,
        fingerprint: g.fingerprint.clone(),
        redacted: g.redacted.clone(),
        locations: g.locations.clone(),
        location_count: g.location_count,
        metadata: g.metadata.clone(),
        scan_id: scope.scan_id.clone(),
        first_seen: existing.map_or_else(|| now.clone(), |f| f.spec.first_seen.clone()),
        last_seen: now.clone(),
        // Read for the state label only: the scanner never writes `spec.triage`.
        triage: existing.and_then(|f| f.spec.triage.clone()),
    };
    let assessed = assess::scanned(
        &spec,
        existing.and_then(|f| f.status.as_ref()),
        exposed,
        now.0,
        started,
    );
    let labels = assessed.labels;
    let mut spec = serde_json::to_value(&spec)?;
    if let Some(obj) = spec.as_object_mut() {
        obj.remove("triage");
    }
    let name = scope.name(g);
    let metadata = match &scope.namespace {
        Some(namespace) => {
            serde_json::json!({ "name": name, "namespace": namespace, "labels": labels })
        }
        None => serde_json::json!({ "name": name, "labels": labels }),
    };
    Ok(serde_json::json!({
        "apiVersion": SecretFinding::api_version(&()),
        "kind": SecretFinding::kind(&()),
        "metadata": metadata,
        "spec": spec,
        "status": assessed.status,
    }))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;
    use snapsentry_crds::{AssessedTarget, FindingState, Triage, TriageState, Verification};

    use super::*;

    fn located(rule: &str, severity: &str, fp: &str, path: &str, line: usize) -> Located {
        let finding = Finding {
            rule_id: rule.into(),
            title: rule.into(),
            secret_type: format!("{rule} type"),
            severity: serde_json::from_value(serde_json::json!(severity)).unwrap(),
            confidence: snapsentry_engine::Confidence::High,
            line,
            fingerprint: fp.into(),
            redacted: "abcd…(40)".into(),
            metadata: Default::default(),
        };
        Located {
            finding,
            volume: "disk0/p1".into(),
            path: path.into(),
            archive: None,
            file: FileInfo {
                size: 10,
                modified: Some("2026-11-01T00:00:00Z".into()),
                ..FileInfo::default()
            },
        }
    }

    #[test]
    fn findings_group_per_rule_and_fingerprint_with_capped_locations() {
        let mut input = Vec::new();
        for i in 0..25 {
            input.push(located(
                "aws",
                "high",
                "hmac-sha256:aa",
                &format!("/f{i:02}"),
                1,
            ));
        }
        // The same location twice counts once.
        input.push(located("aws", "high", "hmac-sha256:aa", "/f00", 1));
        input.push(located("aws", "high", "hmac-sha256:bb", "/g", 2));
        input.push(located("ssh", "critical", "hmac-sha256:aa", "/k", 1));
        input.push(located("noise", "low", "hmac-sha256:cc", "/n", 1));
        let groups = group_findings(input, &["Noise type".to_owned()]);
        let keys: Vec<(&str, &str)> = groups
            .iter()
            .map(|g| (g.rule_id.as_str(), g.fingerprint.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("ssh", "hmac-sha256:aa"),
                ("aws", "hmac-sha256:aa"),
                ("aws", "hmac-sha256:bb")
            ]
        );
        let aws = &groups[1];
        assert_eq!(aws.location_count, 25);
        assert_eq!(aws.locations.len(), limits::MAX_LOCATIONS);
        assert_eq!(aws.locations[0].path, "/f00");
        assert_eq!(aws.locations[19].path, "/f19");
        assert_eq!(aws.locations[0].size, Some(10));
        assert!(aws.locations[0].modified.is_some());
        assert_eq!(aws.metadata.confidence.as_deref(), Some("high"));

        let mut capped = groups;
        assert_eq!(cap_findings(&mut capped, 500), 0);
        assert_eq!(capped.len(), 3);
        assert_eq!(cap_findings(&mut capped, 1), 2);
        assert_eq!(
            over_cap_error(capped.len(), 2),
            "findings truncated: 1 of 3 written (most severe first)"
        );
        assert_eq!(capped.len(), 1);
        assert_eq!(capped[0].rule_id, "ssh");
    }

    #[test]
    fn a_secret_also_outside_vendor_files_takes_the_louder_occurrence() {
        use snapsentry_engine::packages::{PackageFile, PackageFileState};
        let mut vendor = located("k", "high", "hmac-sha256:aa", "/usr/lib/libx.so", 1);
        PackageFile {
            name: "libx1".into(),
            version: Some("1.0-1".into()),
            state: PackageFileState::Unchanged,
        }
        .apply(std::slice::from_mut(&mut vendor.finding));
        let groups = group_findings(vec![vendor], &[]);
        assert_eq!(groups[0].severity, Severity::Info);
        let p = groups[0].metadata.package.as_ref().unwrap();
        assert_eq!(
            (p.name.as_str(), p.version.as_deref(), p.state),
            (
                "libx1",
                Some("1.0-1"),
                snapsentry_crds::PackageFileState::Unchanged
            )
        );

        let mut vendor = located("k", "high", "hmac-sha256:aa", "/usr/lib/libx.so", 1);
        PackageFile {
            name: "libx1".into(),
            version: None,
            state: PackageFileState::Unchanged,
        }
        .apply(std::slice::from_mut(&mut vendor.finding));
        let copied = located("k", "high", "hmac-sha256:aa", "/srv/app/key.pem", 1);
        let groups = group_findings(vec![vendor, copied], &[]);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].severity, Severity::High);
        assert_eq!(groups[0].metadata.package, None);
        assert_eq!(groups[0].location_count, 2);
    }

    #[test]
    fn labels_keep_the_operators_assessment_and_people_s_triage() {
        let a = FindingScope {
            policy: "Lab".into(),
            namespace: Some("ns".into()),
            machine: "lab-web".into(),
            cloud: Cloud::Aws,
            scan_id: "s2".into(),
        };
        let g = Group {
            rule_id: "aws-access-key".into(),
            secret_type: "AWS access key".into(),
            severity: Severity::High,
            fingerprint: "hmac-sha256:abcdef0123456789".into(),
            redacted: "AKIA…(20)".into(),
            metadata: FindingMetadata::default(),
            locations: vec![],
            location_count: 0,
        };
        let now = Time(Timestamp::now());
        let started = Time(now.0 - std::time::Duration::from_secs(60));
        let fresh = finding_object(&a, &g, None, true, &now, &started).unwrap();
        let l = &fresh["metadata"]["labels"];
        assert_eq!(l["snapsentry.io/policy"], "lab");
        assert_eq!(l["snapsentry.io/secret-type"], "aws-access-key");
        assert_eq!(l["snapsentry.io/state"], "active");
        assert_eq!(l["snapsentry.io/verified"], "not-applicable");
        assert_eq!(l["snapsentry.io/exposed"], "true");
        assert_eq!(l["snapsentry.io/target-kind"], "none");
        assert_eq!(l["snapsentry.io/severity"], "high");
        assert_eq!(l["snapsentry.io/new"], "true");
        assert!(l.get("snapsentry.io/target").is_none());
        assert!(fresh["spec"].get("triage").is_none());
        let written: SecretFinding =
            serde_json::from_value(fresh.clone()).expect("the apply body is a SecretFinding");
        let status = written.status.clone().expect("a status");
        assert_eq!(status.state, Some(FindingState::Active));
        assert_eq!(status.risk_score, Some(80));
        assert!(status.exposed);

        // Triaged by people, verified by the operator: both stay.
        let mut old = written;
        let first = Time("2026-01-01T00:00:00Z".parse().unwrap());
        old.spec.first_seen = first.clone();
        old.spec.triage = Some(Triage {
            state: TriageState::FalsePositive,
            note: None,
            by: None,
        });
        let assessed = old.status.as_mut().unwrap();
        assessed.verification = Some(Verification::Verified);
        assessed.target = Some(AssessedTarget {
            kind: TargetKind::Vm,
            name: "lab-db".into(),
            exists: Some(true),
        });
        let again = finding_object(&a, &g, Some(&old), false, &now, &started).unwrap();
        let l = &again["metadata"]["labels"];
        assert_eq!(l["snapsentry.io/state"], "falsePositive");
        assert_eq!(l["snapsentry.io/verified"], "verified");
        assert_eq!(l["snapsentry.io/target"], "lab-db");
        assert_eq!(l["snapsentry.io/target-kind"], "vm");
        assert_eq!(l["snapsentry.io/severity"], "high");
        assert_eq!(l["snapsentry.io/exposed"], "false");
        assert_eq!(l["snapsentry.io/new"], "false");
        assert_eq!(again["status"]["riskScore"], 0);
        assert!(again["spec"].get("triage").is_none());
        assert_eq!(
            again["spec"]["firstSeen"],
            serde_json::to_value(&first).unwrap()
        );
    }
}
