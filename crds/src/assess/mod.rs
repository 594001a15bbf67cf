//! The assessment of one SecretFinding — its `status` and the seven operator labels
//! ([`crate::contract::OPERATOR_FINDING_LABELS`]) — from facts, in one home for both writers:
//!
//! - the operator's correlation ([`assess`]) after a scan, with the fleet's facts: the verdict of
//!   SSH keys against every machine's authorized keys, targets against the providers' inventory,
//!   the lifecycle (`Resolved`, retention);
//! - the scanner Job ([`scanned`]), in the one server-side apply that writes a finding, with
//!   what one machine knows: for a finding whose assessment needs no fleet facts the operator's
//!   correlation then computes exactly what the Job wrote, and writes nothing.
//!
//! [`risk`] is the risk model both use.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::contract::{self, Assessment};
use crate::label_value::{slugify, state_value};
use crate::{
    AssessedTarget, AuthorizedOn, Cloud, FindingState, ScannedMachine, SecretFindingSpec,
    SecretFindingStatus, Severity, TargetKind, TriageState, Verification, labels,
};

pub mod risk;

pub use risk::{Risk, RiskFacts, SecretClass, severity_of};

/// What the assessment reads of a finding's evidence (its spec): borrowed from the spec
/// ([`Evidence::of`], the scanner) or from the compact record the operator keeps of each finding.
#[derive(Clone, Copy, Debug)]
pub struct Evidence<'a> {
    /// `spec.policy`.
    pub policy: &'a str,
    /// `spec.machine`.
    pub machine: &'a str,
    /// `spec.cloud`.
    pub cloud: Cloud,
    /// `spec.ruleId`.
    pub rule_id: &'a str,
    /// `spec.secretType`.
    pub secret_type: &'a str,
    /// `spec.ruleSeverity`.
    pub rule_severity: Severity,
    /// `spec.scanId`: the last scan that saw the finding.
    pub scan_id: &'a str,
    /// `spec.firstSeen`.
    pub first_seen: Timestamp,
    /// `spec.metadata.expiresAt`.
    pub expires_at: Option<Timestamp>,
    /// An SSH private key (`spec.metadata.ssh`).
    pub ssh: bool,
    /// The SSH private key is encrypted.
    pub encrypted: bool,
    /// `spec.triage.state`.
    pub triage: Option<TriageState>,
    /// `spec.metadata.target`: the resource the secret names.
    pub target: Option<(TargetKind, &'a str)>,
}

impl<'a> Evidence<'a> {
    /// The evidence of `spec`.
    pub fn of(spec: &'a SecretFindingSpec) -> Self {
        let ssh = spec.metadata.ssh.as_ref();
        Evidence {
            policy: &spec.policy,
            machine: &spec.machine,
            cloud: spec.cloud,
            rule_id: &spec.rule_id,
            secret_type: &spec.secret_type,
            rule_severity: spec.rule_severity,
            scan_id: &spec.scan_id,
            first_seen: spec.first_seen.0,
            expires_at: spec.metadata.expires_at.as_ref().map(|t| t.0),
            ssh: ssh.is_some(),
            encrypted: ssh.is_some_and(|s| s.encrypted),
            triage: spec.triage.as_ref().map(|t| t.state),
            target: spec
                .metadata
                .target
                .as_ref()
                .map(|t| (t.kind, t.name.as_str())),
        }
    }
}

/// What verification concluded for one finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// `status.verification`.
    pub verification: Verification,
    /// `status.target`.
    pub target: Option<AssessedTarget>,
    /// `status.authorizedOn`.
    pub authorized_on: Vec<AuthorizedOn>,
    /// `status.sameKeyOn`.
    pub same_key_on: Vec<String>,
}

impl Verdict {
    /// The verdict of an SSH private key from the other machines that authorize its public key
    /// and the other machines holding the same key: `Verified` when one authorizes it, its
    /// target then the first of them; else `Unverified`, no target.
    pub fn ssh(authorized_on: Vec<AuthorizedOn>, same_key_on: Vec<String>) -> Self {
        let target = authorized_on.first().map(|a| AssessedTarget {
            kind: TargetKind::Vm,
            name: a.machine.clone(),
            exists: Some(true),
        });
        Verdict {
            verification: if authorized_on.is_empty() {
                Verification::Unverified
            } else {
                Verification::Verified
            },
            target,
            authorized_on,
            same_key_on,
        }
    }

    /// The verdict of a secret that names a resource (`spec.metadata.target`), checked against
    /// an inventory: `covers(kind)` says whether it can tell anything about that kind,
    /// `exists(kind, name)` whether the resource exists (`None`: unknown).
    ///
    /// Existence of the resource does not prove the secret works, so the verdict is `Unverified`
    /// whenever the inventory covers the target's kind, and `NotApplicable` when there is nothing
    /// to check against (no target, or a kind no provider lists).
    pub fn target(
        target: Option<(TargetKind, &str)>,
        covers: impl Fn(TargetKind) -> bool,
        exists: impl Fn(TargetKind, &str) -> Option<bool>,
    ) -> Self {
        let target = target.filter(|(kind, _)| *kind != TargetKind::None);
        let verification = match target {
            Some((kind, _)) if covers(kind) => Verification::Unverified,
            _ => Verification::NotApplicable,
        };
        Verdict {
            verification,
            target: target.map(|(kind, name)| AssessedTarget {
                kind,
                name: name.to_owned(),
                exists: exists(kind, name),
            }),
            authorized_on: Vec::new(),
            same_key_on: Vec::new(),
        }
    }

    /// What correlation concludes without any fleet fact: an SSH key authorized nowhere else
    /// and held by no other machine ([`Verdict::ssh`] of nothing), any other secret checked
    /// against an empty inventory ([`Verdict::target`] covering nothing).
    ///
    /// Where the fleet says more — another machine authorizes the key or holds it too, or the
    /// policy's providers list the target's kind — the operator's correlation concludes
    /// otherwise and its write after the scan corrects the finding.
    pub fn provisional(evidence: &Evidence<'_>) -> Self {
        if evidence.ssh {
            Verdict::ssh(Vec::new(), Vec::new())
        } else {
            Verdict::target(evidence.target, |_| false, |_, _| None)
        }
    }

    /// The verdict an assessed status records; `None` before any assessment.
    pub fn of_status(status: &SecretFindingStatus) -> Option<Self> {
        Some(Verdict {
            verification: status.verification?,
            target: status.target.clone(),
            authorized_on: status.authorized_on.clone(),
            same_key_on: status.same_key_on.clone(),
        })
    }
}

/// What a finding is assessed from.
#[derive(Clone, Debug)]
pub struct Facts<'a> {
    /// The finding's evidence (its `triage` included).
    pub evidence: Evidence<'a>,
    /// Its lifecycle state.
    pub state: FindingState,
    /// Since when it is `Resolved`.
    pub resolved_at: Option<Time>,
    /// What verification concluded.
    pub verdict: Verdict,
    /// The source machine is reachable from the internet.
    pub exposed: bool,
    /// Now (`expired` is `spec.metadata.expiresAt` ≤ now).
    pub now: Timestamp,
    /// [`labels::NEW`] (see [`is_new`]).
    pub new: bool,
}

/// A finding's assessment: its status and all eleven `snapsentry.io/*` labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Assessed {
    /// The whole `status`.
    pub status: SecretFindingStatus,
    /// The scanner's four labels and the operator's seven ([`labels::TARGET`] only when the
    /// verdict names a target).
    pub labels: BTreeMap<String, String>,
    /// Active and not triaged away: it counts, and makes attack paths and recommendations.
    pub open: bool,
}

/// Assess a finding from `facts`: risk from [`risk::assess`], a triaged-away finding
/// (`accepted`, `falsePositive`) keeps its rule's severity with score 0.
pub fn assess(facts: Facts<'_>) -> Assessed {
    let Facts {
        evidence: e,
        state,
        resolved_at,
        verdict,
        exposed,
        now,
        new,
    } = facts;
    let expired = e.expires_at.is_some_and(|t| t <= now);
    let triage = e.triage;
    let triaged_away = matches!(
        triage,
        Some(TriageState::Accepted | TriageState::FalsePositive)
    );
    let risk = risk::assess(&RiskFacts {
        rule_severity: e.rule_severity,
        class: SecretClass::of(e.rule_id, e.secret_type),
        verification: verdict.verification,
        target_exists: verdict.target.as_ref().and_then(|t| t.exists),
        expired,
        encrypted: e.encrypted,
        exposed,
    });
    let (severity, score) = if triaged_away {
        (e.rule_severity, 0)
    } else {
        (risk.severity, risk.score)
    };
    let mut labels = contract::scanner_finding_labels(e.policy, e.machine, e.cloud, e.secret_type);
    labels.extend(
        Assessment::new(
            severity,
            state_value(state, triage),
            verdict.verification,
            exposed,
            verdict.target.as_ref().map_or(TargetKind::None, |t| t.kind),
        )
        .labels(),
    );
    if let Some(t) = &verdict.target {
        labels.insert(labels::TARGET.to_owned(), slugify(&t.name));
    }
    labels.insert(labels::NEW.to_owned(), new.to_string());
    let status = SecretFindingStatus {
        state: Some(state),
        resolved_at,
        severity: Some(severity),
        risk_score: Some(score),
        verification: Some(verdict.verification),
        target: verdict.target,
        authorized_on: verdict.authorized_on,
        same_key_on: verdict.same_key_on,
        exposed,
        expired,
    };
    Assessed {
        status,
        labels,
        open: state == FindingState::Active && !triaged_away,
    }
}

/// The scan a [`is_new`] compares with: its id and when it started.
#[derive(Clone, Copy, Debug)]
pub struct LatestScan<'a> {
    /// `lastScan.scanId`.
    pub scan_id: &'a str,
    /// `lastScan.startedAt` (or `finishedAt` when it has no start).
    pub started: &'a Time,
}

impl<'a> LatestScan<'a> {
    /// The latest scan of `machine` (`status.lastScan`), if it has one with a time.
    pub fn of(machine: Option<&'a ScannedMachine>) -> Option<Self> {
        let last = machine?.status.as_ref()?.last_scan.as_ref()?;
        Some(LatestScan {
            scan_id: &last.scan_id,
            started: last.started_at.as_ref().or(last.finished_at.as_ref())?,
        })
    }
}

/// [`labels::NEW`]: an active finding that the latest scan of its machine saw (`spec.scanId` is
/// that scan's id) for the first time (`firstSeen` is not before that scan started).
pub fn is_new(
    evidence: &Evidence<'_>,
    state: FindingState,
    latest: Option<LatestScan<'_>>,
) -> bool {
    state == FindingState::Active
        && latest
            .is_some_and(|l| l.scan_id == evidence.scan_id && evidence.first_seen >= l.started.0)
}

/// What the scanner Job writes for a finding it has just seen (`spec`, with the `triage` the
/// finding already carries, and `firstSeen`/`scanId` as it writes them) on a machine that is
/// `exposed` now, in a scan that started at `started` (the `lastScan.startedAt` the Job writes
/// when it ends, so [`is_new`] gives the same answer now and at the operator's correlation):
///
/// - the state is `Active` again (the scan sees it), `resolvedAt` gone; the state label says
///   `accepted` / `falsePositive` when people triaged it;
/// - the verdict is the one the operator recorded (`existing` status, so a rescan neither undoes
///   nor repeats the fleet's assessment), or for a finding never assessed
///   [`Verdict::provisional`];
/// - exposure, expiry, risk and [`labels::NEW`] are computed from the facts as they are now.
///
/// For a finding whose assessment needs no fleet facts this is exactly what correlation computes
/// after the scan; where the fleet says more, or has changed, the operator corrects it.
pub fn scanned(
    spec: &SecretFindingSpec,
    existing: Option<&SecretFindingStatus>,
    exposed: bool,
    now: Timestamp,
    started: &Time,
) -> Assessed {
    let evidence = Evidence::of(spec);
    let verdict = existing
        .and_then(Verdict::of_status)
        .unwrap_or_else(|| Verdict::provisional(&evidence));
    let latest = LatestScan {
        scan_id: &spec.scan_id,
        started,
    };
    assess(Facts {
        evidence,
        state: FindingState::Active,
        resolved_at: None,
        verdict,
        exposed,
        now,
        new: is_new(&evidence, FindingState::Active, Some(latest)),
    })
}

#[cfg(test)]
mod tests;
