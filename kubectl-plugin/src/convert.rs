//! From the cluster's objects to the views' [`Report`]: one [`Machine`] per ScannedMachine (and
//! one for findings whose machine is gone), its findings with what the operator assessed, and the
//! AttackPaths.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use snapsentry_crds::{
    AttackPath, FindingState, ScannedMachine, SecretFinding, TargetKind, Verification, labels,
};
use snapsentry_views::{Finding, Machine, PathView, Report, Target};

use crate::fleet::Fleet;

/// RFC 3339 to the second.
pub fn time(t: &Time) -> String {
    t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The report of a fleet, titled `title`, made `now`.
pub fn report(fleet: &Fleet, title: &str, now: Timestamp) -> Report {
    let mut by_machine: BTreeMap<&str, Vec<&SecretFinding>> = BTreeMap::new();
    for f in &fleet.findings {
        by_machine.entry(&f.spec.machine).or_default().push(f);
    }
    let mut machines: Vec<Machine> = fleet
        .machines
        .iter()
        .map(|m| {
            let findings = by_machine.remove(m.name_any().as_str()).unwrap_or_default();
            machine(m, &findings)
        })
        .collect();
    // Findings whose ScannedMachine is gone (or not readable) still show, under their machine's name.
    for (name, findings) in by_machine {
        machines.push(Machine {
            name: name.to_owned(),
            cloud: findings[0].spec.cloud,
            facts: vec![("machine".to_owned(), "no ScannedMachine".to_owned())],
            exposed: findings
                .iter()
                .any(|f| f.status.as_ref().is_some_and(|s| s.exposed)),
            exposure_reasons: Vec::new(),
            coverage: None,
            findings: findings.iter().map(|f| finding(f)).collect(),
        });
    }
    machines.sort_by(|a, b| a.name.cmp(&b.name));
    let mut paths: Vec<PathView> = fleet.paths.iter().map(path).collect();
    paths.sort_by(|a, b| (b.risk, &a.entry, &a.target).cmp(&(a.risk, &b.entry, &b.target)));
    Report {
        title: title.to_owned(),
        generated_at: now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        machines,
        paths,
    }
}

/// One ScannedMachine and its findings.
pub fn machine(m: &ScannedMachine, findings: &[&SecretFinding]) -> Machine {
    let spec = &m.spec;
    let status = m.status.as_ref();
    let mut facts = vec![("instance".to_owned(), spec.instance_id.clone())];
    for (k, v) in [
        ("name", &spec.display_name),
        ("region", &spec.region),
        ("platform", &spec.platform),
        ("state", &spec.state),
    ] {
        if let Some(v) = v {
            facts.push((k.to_owned(), v.clone()));
        }
    }
    facts.push(("policy".to_owned(), spec.policy.clone()));
    if let Some(phase) = status.and_then(|s| s.phase) {
        facts.push(("phase".to_owned(), format!("{phase:?}")));
    }
    if let Some(last) = status.and_then(|s| s.last_scan.as_ref()) {
        let mut scan = last.scan_id.clone();
        if let Some(at) = &last.finished_at {
            scan.push_str(&format!(" at {}", time(at)));
        }
        facts.push(("last scan".to_owned(), scan));
        facts.push((
            "read".to_owned(),
            format!("{} files, {} bytes", last.files, last.bytes_scanned),
        ));
    }
    facts.push(("disks".to_owned(), spec.disks.len().to_string()));
    let coverage = status
        .and_then(|s| s.coverage.as_ref())
        .map(|c| c.summary.clone());
    let mut findings: Vec<Finding> = findings.iter().map(|f| finding(f)).collect();
    findings.sort_by(|a, b| a.name.cmp(&b.name));
    Machine {
        name: m.name_any(),
        cloud: spec.cloud,
        facts,
        exposed: spec.exposure.internet_facing,
        exposure_reasons: spec.exposure.reasons.clone(),
        coverage,
        findings,
    }
}

/// The `snapsentry.io/verified` value of a verification.
fn verification(v: Verification) -> &'static str {
    snapsentry_crds::label_value::verification_value(v)
}

/// One SecretFinding.
pub fn finding(f: &SecretFinding) -> Finding {
    let spec = &f.spec;
    let status = f.status.as_ref();
    let label = |k: &str| f.labels().get(k).cloned();
    let state = label(labels::STATE).unwrap_or_else(|| {
        match status.and_then(|s| s.state) {
            Some(FindingState::Resolved) => "resolved",
            _ => "active",
        }
        .to_owned()
    });
    let target = status
        .and_then(|s| s.target.as_ref())
        .map(|t| Target {
            kind: t.kind,
            name: t.name.clone(),
        })
        .or_else(|| {
            spec.metadata.target.as_ref().map(|t| Target {
                kind: t.kind,
                name: t.name.clone(),
            })
        })
        .filter(|t| t.kind != TargetKind::None);
    let mut facts = Vec::new();
    let meta = &spec.metadata;
    if let Some(e) = &meta.expires_at {
        facts.push(("expires".to_owned(), time(e)));
    }
    if let Some(a) = &meta.aws_account_id {
        facts.push(("aws account".to_owned(), a.clone()));
    }
    if let Some(ssh) = &meta.ssh {
        let mut s = ssh.algorithm.clone();
        if let Some(fp) = &ssh.public_key_fingerprint {
            s.push(' ');
            s.push_str(fp);
        }
        if ssh.encrypted {
            s.push_str(" (passphrase)");
        }
        facts.push(("ssh key".to_owned(), s));
    }
    if let Some(c) = &meta.confidence {
        facts.push(("confidence".to_owned(), c.clone()));
    }
    if meta.weak_password {
        facts.push(("weak password".to_owned(), "yes".to_owned()));
    }
    if let Some(s) = status {
        if !s.authorized_on.is_empty() {
            let on: Vec<String> = s
                .authorized_on
                .iter()
                .map(|a| format!("{} ({})", a.machine, a.user))
                .collect();
            facts.push(("authorized on".to_owned(), on.join(", ")));
        }
        if !s.same_key_on.is_empty() {
            facts.push(("same key on".to_owned(), s.same_key_on.join(", ")));
        }
        if s.expired {
            facts.push(("expired".to_owned(), "yes".to_owned()));
        }
        if let Some(at) = &s.resolved_at {
            facts.push(("resolved".to_owned(), time(at)));
        }
    }
    if let Some(t) = &spec.triage
        && let Some(note) = &t.note
    {
        facts.push(("triage".to_owned(), note.clone()));
    }
    facts.push(("last seen".to_owned(), time(&spec.last_seen)));
    Finding {
        name: f.name_any(),
        rule_id: spec.rule_id.clone(),
        secret_type: spec.secret_type.clone(),
        severity: status
            .and_then(|s| s.severity)
            .unwrap_or(spec.rule_severity),
        state,
        verification: status
            .and_then(|s| s.verification)
            .map(|v| verification(v).to_owned()),
        target,
        locations: spec
            .locations
            .iter()
            .map(|l| match l.line {
                Some(line) => format!("{}:{}:{line}", l.volume, l.path),
                None => format!("{}:{}", l.volume, l.path),
            })
            .collect(),
        location_count: spec.location_count,
        redacted: spec.redacted.clone(),
        fingerprint: spec.fingerprint.clone(),
        first_seen: Some(time(&spec.first_seen)),
        scan_id: Some(spec.scan_id.clone()),
        new: label(labels::NEW).as_deref() == Some("true"),
        risk_score: status.and_then(|s| s.risk_score),
        facts,
    }
}

/// One AttackPath.
pub fn path(a: &AttackPath) -> PathView {
    let s = &a.spec;
    PathView {
        title: s.title.clone(),
        risk: s.risk,
        entry: s.entry.machine.clone(),
        exposed: s.entry.exposed,
        exposure_reasons: s.entry.exposure_reasons.clone(),
        finding: s.secret.finding.clone(),
        secret_type: s.secret.secret_type.clone(),
        secret_path: s.secret.path.clone(),
        target: Target {
            kind: s.target.kind,
            name: s.target.name.clone(),
        },
        user: s.target.user.clone(),
    }
}
