//! Correlation: pure functions from what a scan left behind (the ScannedMachines and
//! SecretFindings of one policy, plus inventory facts) to what the operator should write — every
//! finding's status and labels, the findings to delete, the AttackPaths and Recommendations.
//!
//! Nothing here talks to the API server or a cloud, and the output depends only on the input
//! (names are hashes of what they describe, lists are sorted), so running it twice gives the
//! same objects and the controller can apply them idempotently and delete whatever it owns that
//! is no longer in the desired set.
//!
//! Findings that are resolved, or triaged `accepted` / `falsePositive`, stay out of counts, attack
//! paths and recommendations; a triaged finding's `riskScore` is 0.

mod coverage;
mod lifecycle;
mod paths;
mod recommend;
mod verify;

#[cfg(test)]
mod scanned_tests;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use snapsentry_crds::assess::{self, Facts, LatestScan, is_new};
use snapsentry_crds::{
    AffectedResource, AttackPath, AttackPathSpec, Cloud, FindingState, PathEntry, PathSecret,
    PathTarget, Recommendation, RecommendationSpec, RemediationSteps, ScannedMachine,
    SecretFinding, SecretFindingStatus, Severity, SeverityCounts, TargetKind, Verification,
    labels as label_keys, limits,
};

pub use coverage::title as coverage_title;
pub use lifecycle::{
    DEFAULT_RETENTION, finding_state, parse_go_duration, parse_retention, past_retention,
};
pub use paths::title as attack_path_title;
pub use recommend::{SECURITY_CONTROL, remediation_steps, title as recommendation_title};
pub use snapsentry_cloud::{TargetInventory, normalize_target_name};
pub use snapsentry_crds::assess::risk::{Risk, RiskFacts, SecretClass, assess};
pub use verify::{AuthorizedIndex, Verdict, ssh_key_identity, verify_ssh, verify_target};

/// Most entries in `authorizedOn` and `sameKeyOn`.
pub const MAX_RELATED: usize = 20;
use snapsentry_crds::contract;
pub use snapsentry_crds::label_value::{
    bounded, is_valid_label_value, short_hash, slugify, state_value,
};

/// What correlation reads.
#[derive(Clone, Debug)]
pub struct CorrelationInput<'a> {
    /// ScanPolicy name.
    pub policy: &'a str,
    /// Namespace of the policy and of everything correlation writes.
    pub namespace: &'a str,
    /// Owner reference to the ScanPolicy, put on AttackPaths and Recommendations.
    pub owner: Option<OwnerReference>,
    pub machines: &'a [ScannedMachine],
    pub findings: &'a [SecretFinding],
    /// Resources the providers listed (databases, storage accounts).
    pub targets: &'a TargetInventory,
    pub now: Timestamp,
    /// How long resolved findings are kept.
    pub retention: SignedDuration,
}

/// A finding as correlation reads it: name, labels, spec and status, without what it never
/// reads (managed fields, annotations, owner references, locations after the first). The
/// controller keeps a policy's findings in this form as their list pages arrive, so holding
/// them all costs about a kilobyte per finding, not the objects' size.
pub fn compact(f: SecretFinding) -> SecretFinding {
    let mut spec = f.spec;
    spec.locations.truncate(1);
    spec.locations.shrink_to_fit();
    SecretFinding {
        metadata: ObjectMeta {
            name: f.metadata.name,
            labels: f.metadata.labels,
            ..Default::default()
        },
        spec,
        status: f.status,
    }
}

/// The desired status and labels of one SecretFinding.
#[derive(Clone, Debug, PartialEq)]
pub struct FindingUpdate {
    pub name: String,
    pub status: SecretFindingStatus,
    pub labels: BTreeMap<String, String>,
}

/// What correlation wants written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Correlation {
    /// Every finding that stays, by name.
    pub findings: Vec<FindingUpdate>,
    /// Resolved findings past the retention.
    pub to_delete: Vec<String>,
    /// The complete desired set of AttackPaths of the policy, by name.
    pub attack_paths: Vec<AttackPath>,
    /// The complete desired set of Recommendations of the policy: findings by cloud, and the
    /// coverage view by cloud while a machine is `Incomplete` or `Failed`.
    pub recommendations: Vec<Recommendation>,
    /// Open findings per ScannedMachine (every machine of the input, zero counts included).
    pub machine_findings: BTreeMap<String, SeverityCounts>,
    /// Open findings of the policy.
    pub open: SeverityCounts,
}

impl Correlation {
    /// Open findings by (assessed severity, secret-type label), for the `snapsentry_findings`
    /// gauge.
    pub fn open_by_severity_and_type(&self) -> BTreeMap<(Severity, String), u64> {
        let mut out = BTreeMap::new();
        for f in self
            .findings
            .iter()
            .filter(|f| f.labels.get(label_keys::STATE).map(String::as_str) == Some("active"))
        {
            let severity = f.status.severity.unwrap_or(Severity::Info);
            let secret_type = f
                .labels
                .get(label_keys::SECRET_TYPE)
                .cloned()
                .unwrap_or_default();
            *out.entry((severity, secret_type)).or_insert(0) += 1;
        }
        out
    }
}

/// One finding after assessment, while correlation runs.
struct Assessed<'a> {
    finding: &'a SecretFinding,
    name: String,
    status: SecretFindingStatus,
    labels: BTreeMap<String, String>,
    open: bool,
}

/// Correlate one policy. See the module documentation.
pub fn correlate(input: &CorrelationInput<'_>) -> Correlation {
    let machines: BTreeMap<&str, &ScannedMachine> = input
        .machines
        .iter()
        .filter_map(|m| Some((m.metadata.name.as_deref()?, m)))
        .collect();
    let index = AuthorizedIndex::new(input.machines);

    // Lifecycle first: resolved findings neither hold keys nor count.
    let mut out = Correlation::default();
    let mut kept: Vec<(&SecretFinding, String, FindingState, Option<_>)> = Vec::new();
    for f in input.findings {
        let Some(name) = f.metadata.name.clone() else {
            continue;
        };
        let machine = machines.get(f.spec.machine.as_str()).copied();
        let (state, resolved_at) = finding_state(&f.spec, f.status.as_ref(), machine, input.now);
        if let Some(at) = &resolved_at
            && past_retention(at, input.now, input.retention)
        {
            out.to_delete.push(name);
            continue;
        }
        kept.push((f, name, state, resolved_at));
    }
    let mut holders: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (f, _, state, _) in &kept {
        if *state == FindingState::Active
            && let Some(id) = ssh_key_identity(&f.spec)
        {
            holders
                .entry(id.to_owned())
                .or_default()
                .insert(f.spec.machine.clone());
        }
    }

    let mut assessed = Vec::with_capacity(kept.len());
    for (f, name, state, resolved_at) in kept {
        let machine = machines.get(f.spec.machine.as_str()).copied();
        let verdict = if f.spec.metadata.ssh.is_some() {
            verify_ssh(&f.spec, &index, &holders)
        } else {
            verify_target(&f.spec, input.targets)
        };
        // The scanner Job computes the same with what it knows (`assess::scanned`): for a
        // finding that needs no fleet facts the two agree and the finish writes nothing.
        let a = assess::assess(Facts {
            spec: &f.spec,
            state,
            resolved_at,
            verdict,
            exposed: machine.is_some_and(|m| m.spec.exposure.internet_facing),
            now: input.now,
            new: is_new(&f.spec, state, LatestScan::of(machine)),
        });
        assessed.push(Assessed {
            finding: f,
            name,
            open: a.open,
            status: a.status,
            labels: a.labels,
        });
    }

    for m in machines.keys() {
        out.machine_findings
            .insert((*m).to_owned(), SeverityCounts::default());
    }
    for a in &assessed {
        let severity = a.status.severity.unwrap_or(a.finding.spec.rule_severity);
        if a.open {
            out.open.add(severity);
            out.machine_findings
                .entry(a.finding.spec.machine.clone())
                .or_default()
                .add(severity);
        }
        out.findings.push(FindingUpdate {
            name: a.name.clone(),
            labels: a.labels.clone(),
            status: a.status.clone(),
        });
    }
    out.findings.sort_by(|a, b| a.name.cmp(&b.name));
    out.to_delete.sort();

    out.attack_paths = attack_paths(input, &machines, &assessed);
    out.recommendations = recommendations(input, &machines, &assessed);
    out.recommendations
        .extend(coverage::recommendations(input, &machines));
    out
}

fn object_meta(
    input: &CorrelationInput<'_>,
    name: String,
    labels: BTreeMap<String, String>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(input.namespace.to_owned()),
        labels: Some(labels),
        owner_references: input.owner.clone().map(|o| vec![o]),
        ..Default::default()
    }
}

fn attack_paths(
    input: &CorrelationInput<'_>,
    machines: &BTreeMap<&str, &ScannedMachine>,
    assessed: &[Assessed<'_>],
) -> Vec<AttackPath> {
    let mut out = Vec::new();
    for a in assessed.iter().filter(|a| a.open) {
        let spec = &a.finding.spec;
        let machine = machines.get(spec.machine.as_str()).copied();
        let exposure = machine.map(|m| m.spec.exposure.clone()).unwrap_or_default();
        // (kind, target name, user, where the target authorizes the key)
        let mut targets: Vec<(TargetKind, String, Option<String>, Option<String>)> = Vec::new();
        if a.status.verification == Some(Verification::Verified) && spec.metadata.ssh.is_some() {
            let mut seen = BTreeSet::new();
            for on in &a.status.authorized_on {
                if seen.insert(on.machine.clone()) {
                    targets.push((
                        TargetKind::Vm,
                        on.machine.clone(),
                        Some(on.user.clone()),
                        on.source.clone(),
                    ));
                }
            }
        } else if let Some(t) = &a.status.target
            && paths::is_path_target(t.kind)
            && t.exists == Some(true)
        {
            targets.push((t.kind, t.name.clone(), None, None));
        }
        for (kind, target, user, source) in targets {
            let target_cloud = (kind == TargetKind::Vm)
                .then(|| machines.get(target.as_str()).map(|m| m.spec.cloud))
                .flatten();
            let name = format!(
                "ap-{}",
                short_hash(&[input.policy, &spec.machine, &a.name, kind.as_str(), &target])
            );
            let labels = BTreeMap::from([
                (label_keys::POLICY.to_owned(), slugify(input.policy)),
                (label_keys::MACHINE.to_owned(), slugify(&spec.machine)),
                (label_keys::CLOUD.to_owned(), spec.cloud.as_str().to_owned()),
                (label_keys::TARGET_KIND.to_owned(), kind.as_str().to_owned()),
                (
                    label_keys::EXPOSED.to_owned(),
                    exposure.internet_facing.to_string(),
                ),
                (
                    label_keys::MANAGED_BY.to_owned(),
                    contract::OPERATOR.to_owned(),
                ),
            ]);
            let spec = AttackPathSpec {
                policy: input.policy.to_owned(),
                cloud: spec.cloud,
                title: attack_path_title(spec.cloud, exposure.internet_facing, kind, target_cloud),
                risk: a.status.severity.unwrap_or(spec.rule_severity),
                entry: PathEntry {
                    machine: spec.machine.clone(),
                    exposed: exposure.internet_facing,
                    exposure_reasons: exposure.reasons.clone(),
                },
                secret: PathSecret {
                    finding: a.name.clone(),
                    secret_type: spec.secret_type.clone(),
                    path: spec
                        .locations
                        .first()
                        .map(|l| l.path.clone())
                        .unwrap_or_default(),
                },
                target: PathTarget {
                    kind,
                    name: target,
                    user,
                    source,
                    cloud: target_cloud,
                },
            };
            out.push(AttackPath {
                metadata: object_meta(input, name, labels),
                spec,
            });
        }
    }
    out.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    out.dedup_by(|a, b| a.metadata.name == b.metadata.name);
    out
}

fn recommendations(
    input: &CorrelationInput<'_>,
    machines: &BTreeMap<&str, &ScannedMachine>,
    assessed: &[Assessed<'_>],
) -> Vec<Recommendation> {
    // cloud → machine → counts; cloud → secret type → rule id (first seen, for the steps).
    let mut by_cloud: BTreeMap<Cloud, BTreeMap<&str, SeverityCounts>> = BTreeMap::new();
    let mut types: BTreeMap<Cloud, BTreeMap<&str, &str>> = BTreeMap::new();
    let mut worst: BTreeMap<Cloud, Severity> = BTreeMap::new();
    for a in assessed.iter().filter(|a| a.open) {
        let spec = &a.finding.spec;
        let severity = a.status.severity.unwrap_or(spec.rule_severity);
        by_cloud
            .entry(spec.cloud)
            .or_default()
            .entry(&spec.machine)
            .or_default()
            .add(severity);
        types
            .entry(spec.cloud)
            .or_default()
            .entry(&spec.secret_type)
            .or_insert(&spec.rule_id);
        let w = worst.entry(spec.cloud).or_insert(severity);
        *w = (*w).max(severity);
    }
    let mut out = Vec::new();
    for (cloud, per_machine) in by_cloud {
        let mut affected: Vec<AffectedResource> = per_machine
            .iter()
            .map(|(m, c)| AffectedResource {
                machine: (*m).to_owned(),
                instance_id: machines
                    .get(m)
                    .map_or_else(|| (*m).to_owned(), |sm| sm.spec.instance_id.clone()),
                findings: c.total,
                critical: c.critical,
                high: c.high,
                ..Default::default()
            })
            .collect();
        // Worst machines first, so the listed 100 are the ones to fix first.
        affected.sort_by(|a, b| {
            (b.critical, b.high, b.findings)
                .cmp(&(a.critical, a.high, a.findings))
                .then(a.machine.cmp(&b.machine))
        });
        let affected_count = affected.len() as u32;
        affected.truncate(limits::MAX_AFFECTED);
        let total: u32 = per_machine.values().map(|c| c.total).sum();
        let remediation = types
            .remove(&cloud)
            .unwrap_or_default()
            .into_iter()
            .map(|(secret_type, rule_id)| RemediationSteps {
                secret_type: secret_type.to_owned(),
                steps: remediation_steps(rule_id, secret_type),
            })
            .collect();
        let spec = RecommendationSpec {
            cloud,
            title: recommendation_title(cloud).to_owned(),
            security_control: SECURITY_CONTROL.to_owned(),
            severity: worst.get(&cloud).copied().unwrap_or(Severity::Info),
            description: format!(
                "{total} plaintext secret(s) were found on {affected_count} {} selected by policy {}. \
                 Anyone who reads these disks (or their snapshots and backups) can use the secrets \
                 to move to the resources they open. Rotate each secret at its issuer, then remove \
                 it from the disk.",
                recommend::machines_noun(cloud),
                input.policy
            ),
            affected_count,
            affected_resources: affected,
            remediation,
        };
        out.push(recommendation(input, "secrets", spec));
    }
    out
}

/// The Recommendation `<policy>-<kind>-<cloud>` of `spec` (kind `secrets` or `coverage`), with
/// the policy's labels and owner.
fn recommendation(
    input: &CorrelationInput<'_>,
    kind: &str,
    spec: RecommendationSpec,
) -> Recommendation {
    let cloud = spec.cloud.as_str();
    // The name before kinds existed: `<policy>/<cloud>` for the secrets one.
    let whole = match kind {
        "secrets" => format!("{}/{cloud}", input.policy),
        _ => format!("{}/{kind}/{cloud}", input.policy),
    };
    let name = bounded(&format!("{}-{kind}-{cloud}", input.policy), 253, &whole);
    let labels = BTreeMap::from([
        (label_keys::POLICY.to_owned(), slugify(input.policy)),
        (label_keys::CLOUD.to_owned(), cloud.to_owned()),
        (
            label_keys::MANAGED_BY.to_owned(),
            contract::OPERATOR.to_owned(),
        ),
    ]);
    Recommendation {
        metadata: object_meta(input, name, labels),
        spec,
    }
}
