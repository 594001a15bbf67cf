//! Correlation: pure functions from what a scan left behind (the ScannedMachines and
//! SecretFindings of one policy, plus inventory facts) to what the operator should write — every
//! finding's status and labels, the findings to delete, the AttackPaths and Recommendations.
//!
//! Findings come in as [`FindingRecord`]s (a few hundred bytes each) and each finding's desired
//! status and labels go out one at a time ([`Correlator::updates`]), so correlating a policy
//! holds its records and small aggregates, never every finding's desired state.
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
mod record;
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
    AttackPath, FindingState, Recommendation, RecommendationSpec, ScannedMachine,
    SecretFindingStatus, Severity, SeverityCounts, labels as label_keys,
};

pub use coverage::title as coverage_title;
pub use lifecycle::{
    DEFAULT_RETENTION, finding_state, parse_go_duration, parse_retention, past_retention,
};
pub use paths::title as attack_path_title;
pub use recommend::{SECURITY_CONTROL, remediation_steps, title as recommendation_title};
pub use record::{Changes, FindingRecord, OperatorDigest, Records, Shared, SshRecord};
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
    /// The policy's findings, as [`Records`] made them while their list pages arrived.
    pub findings: &'a [FindingRecord],
    /// Resources the providers listed (databases, storage accounts).
    pub targets: &'a TargetInventory,
    pub now: Timestamp,
    /// How long resolved findings are kept.
    pub retention: SignedDuration,
}

/// The desired status and labels of one SecretFinding: the four of the scanner
/// ([`contract::SCANNER_FINDING_LABELS`], as the scanner writes them) and those of
/// [`contract::OPERATOR_FINDING_LABELS`] that apply (no [`label_keys::TARGET`] without a
/// target).
#[derive(Clone, Debug, PartialEq)]
pub struct FindingUpdate {
    pub name: String,
    pub status: SecretFindingStatus,
    pub labels: BTreeMap<String, String>,
}

/// One finding's desired state, beside the finding as it is.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired<'a> {
    pub record: &'a FindingRecord,
    pub update: FindingUpdate,
}

/// What correlation wants written besides each finding's status and labels (those come one at
/// a time from [`Correlator::updates`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Correlation {
    /// Resolved findings past the retention, by name.
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
    /// Findings labelled `active` by (assessed severity, secret-type label).
    open_by_type: BTreeMap<(Severity, String), u64>,
}

impl Correlation {
    /// Findings labelled `active` by (assessed severity, secret-type label), for the
    /// `snapsentry_findings` gauge.
    pub fn open_by_severity_and_type(&self) -> BTreeMap<(Severity, String), u64> {
        self.open_by_type.clone()
    }
}

/// One finding after assessment, while correlation runs.
struct Assessed<'a> {
    finding: &'a FindingRecord,
    status: SecretFindingStatus,
    /// All eleven labels (the target one when there is a target).
    labels: BTreeMap<String, String>,
    open: bool,
}

impl Assessed<'_> {
    fn severity(&self) -> Severity {
        self.status.severity.unwrap_or(self.finding.rule_severity)
    }

    /// The [`label_keys::STATE`] value.
    fn state_label(&self) -> &'static str {
        state_value(
            self.status.state.unwrap_or(FindingState::Active),
            self.finding.triage,
        )
    }
}

/// Correlation of one policy, in two passes over its findings: [`Correlator::correlation`]
/// for what is written once per policy, [`Correlator::updates`] for each finding's desired
/// status and labels, one at a time. See the module documentation.
pub struct Correlator<'a> {
    input: &'a CorrelationInput<'a>,
    machines: BTreeMap<&'a str, &'a ScannedMachine>,
    index: AuthorizedIndex<'a>,
    /// SSH key identity → machines where an active finding holds the key.
    holders: BTreeMap<&'a str, BTreeSet<&'a str>>,
}

impl<'a> Correlator<'a> {
    /// Index the machines, and the SSH keys active findings hold (lifecycle first: resolved
    /// findings hold no key).
    pub fn new(input: &'a CorrelationInput<'a>) -> Self {
        let machines: BTreeMap<&str, &ScannedMachine> = input
            .machines
            .iter()
            .filter_map(|m| Some((m.metadata.name.as_deref()?, m)))
            .collect();
        let mut holders: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for f in input.findings {
            let machine = machines.get(&*f.machine).copied();
            if finding_state(f, machine, input.now).0 == FindingState::Active
                && let Some(id) = ssh_key_identity(f)
            {
                holders.entry(id).or_default().insert(&f.machine);
            }
        }
        Self {
            input,
            index: AuthorizedIndex::new(input.machines),
            machines,
            holders,
        }
    }

    /// Everything but the findings' own status and labels: deletions, counts, AttackPaths and
    /// Recommendations.
    pub fn correlation(&self) -> Correlation {
        let input = self.input;
        let mut out = Correlation::default();
        for m in self.machines.keys() {
            out.machine_findings
                .insert((*m).to_owned(), SeverityCounts::default());
        }
        let mut recommendations = recommend::Accumulator::default();
        let mut types: BTreeMap<&str, String> = BTreeMap::new();
        for f in input.findings {
            let Some(a) = self.assess(f) else {
                out.to_delete.push(f.name.to_string());
                continue;
            };
            let severity = a.severity();
            if a.state_label() == "active" {
                let secret_type = types
                    .entry(&f.secret_type)
                    .or_insert_with(|| slugify(&f.secret_type))
                    .clone();
                *out.open_by_type.entry((severity, secret_type)).or_insert(0) += 1;
            }
            if !a.open {
                continue;
            }
            out.open.add(severity);
            out.machine_findings
                .entry(f.machine.to_string())
                .or_default()
                .add(severity);
            out.attack_paths
                .extend(paths::attack_paths(input, &self.machines, &a));
            recommendations.add(&a);
        }
        out.to_delete.sort();
        out.attack_paths
            .sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        out.attack_paths
            .dedup_by(|a, b| a.metadata.name == b.metadata.name);
        out.recommendations = recommendations.finish(input, &self.machines);
        out.recommendations
            .extend(coverage::recommendations(input, &self.machines));
        out
    }

    /// Each finding that stays, with its desired status and labels, in the input's order;
    /// computed as the iterator is read, so no more than one is held.
    pub fn updates(&self) -> impl Iterator<Item = Desired<'a>> + '_ {
        self.input.findings.iter().filter_map(|f| {
            let a = self.assess(f)?;
            Some(Desired {
                record: f,
                update: self.update(a),
            })
        })
    }

    /// Assess one finding; `None` when it is resolved past the retention (to delete).
    fn assess(&self, f: &'a FindingRecord) -> Option<Assessed<'a>> {
        let input = self.input;
        let machine = self.machines.get(&*f.machine).copied();
        let (state, resolved_at) = finding_state(f, machine, input.now);
        if let Some(at) = &resolved_at
            && past_retention(at, input.now, input.retention)
        {
            return None;
        }
        let verdict = if f.ssh.is_some() {
            verify_ssh(f, &self.index, &self.holders)
        } else {
            verify_target(f, input.targets)
        };
        let evidence = f.evidence(input.policy);
        // The scanner Job computes the same with what it knows (`assess::scanned`): for a
        // finding that needs no fleet facts the two agree and the finish writes nothing.
        let a = assess::assess(Facts {
            evidence,
            state,
            resolved_at,
            verdict,
            exposed: machine.is_some_and(|m| m.spec.exposure.internet_facing),
            now: input.now,
            new: is_new(&evidence, state, LatestScan::of(machine)),
        });
        Some(Assessed {
            finding: f,
            open: a.open,
            status: a.status,
            labels: a.labels,
        })
    }

    /// The desired status and labels of an assessed finding.
    fn update(&self, a: Assessed<'_>) -> FindingUpdate {
        FindingUpdate {
            name: a.finding.name.to_string(),
            labels: a.labels,
            status: a.status,
        }
    }
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
