//! Correlation as a whole, starting with the seed scenario.

use std::collections::{BTreeMap, BTreeSet};

use jiff::SignedDuration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use snapsentry_crds::{
    Cloud, FindingState, SecretFinding, SecretTarget, Severity, TargetKind, Triage, TriageState,
    Verification, labels as keys, limits,
};

use super::testing::*;
use super::*;

const KEY: &str = "SHA256:seedkey";

pub(super) fn input<'a>(
    machines: &'a [snapsentry_crds::ScannedMachine],
    findings: &'a [SecretFinding],
    targets: &'a TargetInventory,
    now: Timestamp,
) -> TestInput<'a> {
    TestInput {
        policy: "prod",
        namespace: "security",
        owner: None,
        machines,
        findings,
        targets,
        now,
        retention: SignedDuration::from_hours(720),
    }
}

fn update<'a>(c: &'a Collected, name: &str) -> &'a FindingUpdate {
    c.findings
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no update for {name}"))
}

/// Three machines; a key on A is authorized on B; A is exposed. Then A is scanned again without
/// the key.
#[test]
fn seed_scenario() {
    let targets = TargetInventory::default();
    let machines = vec![
        with_last_scan(machine("a", true), "scan-1", true, ts(10)),
        with_last_scan(
            with_authorized(machine("b", false), "deploy", KEY),
            "scan-1",
            true,
            ts(10),
        ),
        with_last_scan(machine("c", false), "scan-1", true, ts(10)),
    ];
    let findings = vec![ssh_finding("a", KEY, "scan-1")];
    let name = findings[0].metadata.name.clone().unwrap();

    let c = correlate(&input(&machines, &findings, &targets, ts(20)));
    let u = update(&c, &name);
    assert_eq!(u.status.state, Some(FindingState::Active));
    assert_eq!(u.status.verification, Some(Verification::Verified));
    assert_eq!(
        u.status.authorized_on,
        [snapsentry_crds::AuthorizedOn {
            machine: "b".into(),
            user: "deploy".into(),
            source: Some("/home/deploy/.ssh/authorized_keys".into()),
        }]
    );
    assert_eq!(
        u.status.target,
        Some(snapsentry_crds::AssessedTarget {
            kind: TargetKind::Vm,
            name: "b".into(),
            exists: Some(true)
        })
    );
    assert!(u.status.exposed);
    assert_eq!(u.status.severity, Some(Severity::Critical));
    assert_eq!(u.status.risk_score, Some(100));
    assert_eq!(u.labels[keys::TARGET_KIND], "vm");
    assert_eq!(u.labels[keys::VERIFIED], "verified");
    assert_eq!(u.labels[keys::EXPOSED], "true");
    assert_eq!(u.labels[keys::STATE], "active");
    assert_eq!(u.labels[keys::SECRET_TYPE], "ssh-private-key");

    assert_eq!(c.attack_paths.len(), 1);
    let ap = &c.attack_paths[0];
    assert_eq!(
        ap.spec.title,
        "Exposed Vulnerable EC2 instance has an insecure SSH private key that is used to authenticate to an EC2 instance"
    );
    assert_eq!(ap.spec.entry.machine, "a");
    assert!(ap.spec.entry.exposed);
    assert_eq!(
        (ap.spec.target.kind, ap.spec.target.name.as_str()),
        (TargetKind::Vm, "b")
    );
    assert_eq!(ap.spec.target.user.as_deref(), Some("deploy"));
    assert_eq!(ap.spec.secret.finding, name);
    assert_eq!(ap.spec.risk, Severity::Critical);
    assert!(ap.metadata.name.as_ref().unwrap().starts_with("ap-"));

    assert_eq!(c.recommendations.len(), 1);
    let rec = &c.recommendations[0];
    assert_eq!(rec.spec.cloud, Cloud::Aws);
    assert_eq!(
        rec.spec.title,
        "EC2 instances should have secrets findings resolved"
    );
    assert_eq!(rec.spec.security_control, "Remediate vulnerabilities");
    assert_eq!(rec.spec.affected_count, 1);
    assert_eq!(rec.spec.affected_resources[0].machine, "a");
    assert_eq!(rec.spec.affected_resources[0].instance_id, "i-a");
    assert_eq!(rec.spec.affected_resources[0].critical, 1);
    assert_eq!(rec.spec.remediation.len(), 1);
    assert_eq!(rec.spec.remediation[0].secret_type, "SSH private key");
    assert_eq!(c.open.total, 1);
    assert_eq!(
        c.open_by_severity_and_type(),
        BTreeMap::from([((Severity::Critical, "ssh-private-key".to_owned()), 1)])
    );
    assert_eq!(c.machine_findings["a"].critical, 1);
    assert_eq!(c.machine_findings["b"].total, 0);

    // Correlating again gives the same objects: names are stable.
    assert_eq!(correlate(&input(&machines, &findings, &targets, ts(20))), c);

    // Rescan of A (scan-2) that no longer sees the key.
    let mut machines2 = machines.clone();
    machines2[0] = with_last_scan(machine("a", true), "scan-2", true, ts(100));
    let c2 = correlate(&input(&machines2, &findings, &targets, ts(110)));
    let u2 = update(&c2, &name);
    assert_eq!(u2.status.state, Some(FindingState::Resolved));
    assert_eq!(u2.status.resolved_at, Some(Time(ts(100))));
    assert_eq!(u2.labels[keys::STATE], "resolved");
    assert!(
        c2.attack_paths.is_empty(),
        "the path is gone from the desired set"
    );
    assert!(c2.recommendations.is_empty());
    assert_eq!(c2.open.total, 0);
    assert!(c2.to_delete.is_empty());

    // After the retention, the resolved finding is to be deleted.
    let mut findings3 = findings.clone();
    findings3[0].status = Some(u2.status.clone());
    let c3 = correlate(&input(
        &machines2,
        &findings3,
        &targets,
        ts(100) + SignedDuration::from_hours(721),
    ));
    assert_eq!(c3.to_delete, [name]);
    assert!(c3.findings.is_empty());
}

#[test]
fn not_exposed_entry_gets_the_vulnerable_title() {
    let machines = vec![
        machine("a", false),
        with_authorized(machine("b", false), "root", KEY),
    ];
    let findings = vec![ssh_finding("a", KEY, "s1")];
    let c = correlate(&input(
        &machines,
        &findings,
        &TargetInventory::default(),
        ts(0),
    ));
    assert_eq!(
        c.attack_paths[0].spec.title,
        "Vulnerable EC2 instance has an insecure SSH private key that is used to authenticate to an EC2 instance"
    );
    assert_eq!(c.findings[0].labels[keys::EXPOSED], "false");
}

#[test]
fn one_path_per_authorizing_machine_and_same_key_on() {
    let machines = vec![
        machine("a", true),
        with_authorized(
            with_authorized(machine("b", false), "deploy", KEY),
            "root",
            KEY,
        ),
        with_authorized(machine("c", false), "deploy", KEY),
        machine("d", false),
    ];
    let findings = vec![ssh_finding("a", KEY, "s1"), ssh_finding("d", KEY, "s1")];
    let c = correlate(&input(
        &machines,
        &findings,
        &TargetInventory::default(),
        ts(0),
    ));
    let from_a: Vec<_> = c
        .attack_paths
        .iter()
        .filter(|p| p.spec.entry.machine == "a")
        .collect();
    let targets: BTreeSet<_> = from_a.iter().map(|p| p.spec.target.name.as_str()).collect();
    assert_eq!(targets, BTreeSet::from(["b", "c"]));
    let ua = update(&c, findings[0].metadata.name.as_deref().unwrap());
    assert_eq!(ua.status.same_key_on, ["d"]);
    assert_eq!(ua.status.authorized_on.len(), 3);
    // Names are distinct and stable.
    let names: BTreeSet<_> = c
        .attack_paths
        .iter()
        .map(|p| p.metadata.name.clone())
        .collect();
    assert_eq!(names.len(), c.attack_paths.len());
}

#[test]
fn triaged_findings_stay_out_of_risk_paths_and_recommendations() {
    let machines = vec![
        machine("a", true),
        with_authorized(machine("b", false), "root", KEY),
    ];
    for (state, label) in [
        (TriageState::Accepted, "accepted"),
        (TriageState::FalsePositive, "falsePositive"),
    ] {
        let mut findings = vec![ssh_finding("a", KEY, "s1")];
        findings[0].spec.triage = Some(Triage {
            state,
            note: None,
            by: Some("alice".into()),
        });
        let c = correlate(&input(
            &machines,
            &findings,
            &TargetInventory::default(),
            ts(0),
        ));
        assert!(c.attack_paths.is_empty());
        assert!(c.recommendations.is_empty());
        assert_eq!(c.open.total, 0);
        let u = &c.findings[0];
        assert_eq!(u.status.risk_score, Some(0));
        assert_eq!(
            u.status.verification,
            Some(Verification::Verified),
            "facts are still reported"
        );
        assert_eq!(u.labels[keys::STATE], label);
    }
    // `open` triage is the same as none.
    let mut findings = vec![ssh_finding("a", KEY, "s1")];
    findings[0].spec.triage = Some(Triage {
        state: TriageState::Open,
        note: None,
        by: None,
    });
    let c = correlate(&input(
        &machines,
        &findings,
        &TargetInventory::default(),
        ts(0),
    ));
    assert_eq!(c.attack_paths.len(), 1);
}

#[test]
fn target_paths_need_an_existing_target() {
    let mut targets = TargetInventory::default();
    targets.insert(TargetKind::Rds, "db.x.us-east-1.rds.amazonaws.com");
    targets.complete_for.insert(TargetKind::Rds);
    let machines = vec![machine("a", true)];
    let mut present = finding_of_type("a", "PostgreSQL connection string", "s1");
    present.spec.metadata.target = Some(SecretTarget {
        kind: TargetKind::Rds,
        name: "db.x.us-east-1.rds.amazonaws.com".into(),
    });
    let mut gone = finding_of_type("a", "MySQL connection string", "s1");
    gone.spec.metadata.target = Some(SecretTarget {
        kind: TargetKind::Rds,
        name: "old.x.us-east-1.rds.amazonaws.com".into(),
    });
    let mut plain = finding_of_type("a", "GitHub token", "s1");
    plain.spec.rule_severity = Severity::Medium;
    let findings = vec![present.clone(), gone.clone(), plain.clone()];
    let c = correlate(&input(&machines, &findings, &targets, ts(0)));

    assert_eq!(c.attack_paths.len(), 1);
    let ap = &c.attack_paths[0];
    assert_eq!(
        ap.spec.title,
        "Exposed Vulnerable EC2 instance has insecure secrets that are used to authenticate to an AWS RDS server"
    );
    assert_eq!(ap.spec.target.kind, TargetKind::Rds);
    let up = update(&c, present.metadata.name.as_deref().unwrap());
    assert_eq!(up.status.target.as_ref().unwrap().exists, Some(true));
    assert_eq!(up.labels[keys::TARGET_KIND], "rds");
    let ug = update(&c, gone.metadata.name.as_deref().unwrap());
    assert_eq!(ug.status.target.as_ref().unwrap().exists, Some(false));
    assert!(ug.status.risk_score < up.status.risk_score);
    let un = update(&c, plain.metadata.name.as_deref().unwrap());
    assert_eq!(un.status.verification, Some(Verification::NotApplicable));
    assert_eq!(un.labels[keys::TARGET_KIND], "none");

    // Remediation lists each secret type once, sorted.
    let types: Vec<_> = c.recommendations[0]
        .spec
        .remediation
        .iter()
        .map(|r| r.secret_type.as_str())
        .collect();
    assert_eq!(
        types,
        [
            "GitHub token",
            "MySQL connection string",
            "PostgreSQL connection string"
        ]
    );
}

#[test]
fn expired_secrets_score_lower() {
    let machines = vec![machine("a", false)];
    let live = finding_of_type("a", "Azure SAS token", "s1");
    let mut expired = finding_of_type("a", "Azure SAS token", "s1");
    expired.metadata.name = Some("expired".into());
    expired.spec.metadata.expires_at = Some(Time(ts(-1)));
    let findings = vec![live.clone(), expired];
    let c = correlate(&input(
        &machines,
        &findings,
        &TargetInventory::default(),
        ts(0),
    ));
    let e = update(&c, "expired");
    let l = update(&c, live.metadata.name.as_deref().unwrap());
    assert!(e.status.expired && !l.status.expired);
    assert!(e.status.risk_score < l.status.risk_score);
}

#[test]
fn one_recommendation_per_cloud_with_bounded_affected_list() {
    let mut machines = Vec::new();
    let mut findings = Vec::new();
    for i in 0..150 {
        let name = format!("vm-{i:03}");
        machines.push(machine_in(Cloud::Azure, &name, false));
        let mut f = finding_of_type(&name, "Azure storage account key", "s1");
        f.spec.cloud = Cloud::Azure;
        if i == 149 {
            f.spec.rule_severity = Severity::Critical;
        }
        findings.push(f);
    }
    machines.push(machine_in(Cloud::Gcp, "g", false));
    let mut g = finding_of_type("g", "GCP service account key", "s1");
    g.spec.cloud = Cloud::Gcp;
    findings.push(g);
    let c = correlate(&input(
        &machines,
        &findings,
        &TargetInventory::default(),
        ts(0),
    ));

    let clouds: Vec<_> = c.recommendations.iter().map(|r| r.spec.cloud).collect();
    assert_eq!(clouds, [Cloud::Azure, Cloud::Gcp]);
    let az = &c.recommendations[0];
    assert_eq!(
        az.spec.title,
        "Machines should have secrets findings resolved"
    );
    assert_eq!(az.spec.affected_count, 150);
    assert_eq!(az.spec.affected_resources.len(), limits::MAX_AFFECTED);
    assert_eq!(
        az.spec.affected_resources[0].machine, "vm-149",
        "worst first"
    );
    assert_eq!(az.metadata.name.as_deref(), Some("prod-secrets-azure"));
    assert_eq!(
        c.recommendations[1].spec.title,
        "VM instances should have secrets findings resolved"
    );
}

#[test]
fn every_label_is_valid() {
    let machines = vec![machine("a", true)];
    let mut f = finding_of_type(
        "a",
        "A very long secret type name that goes on and on, far beyond sixty-three characters!",
        "s1",
    );
    f.spec.machine = "m".repeat(200);
    let findings = vec![f];
    let c = correlate(&input(
        &machines,
        &findings,
        &TargetInventory::default(),
        ts(0),
    ));
    let labels = &c.findings[0].labels;
    // The nine of `finding_labels` and `snapsentry.io/new` (no target here).
    assert_eq!(labels.len(), 10);
    for (k, v) in labels {
        assert!(is_valid_label_value(v), "{k}={v:?}");
    }
}

#[test]
fn image_machines_get_neutral_titles_and_their_own_recommendation() {
    let machines = vec![
        machine_in(Cloud::Image, "web-01", true),
        with_authorized(machine_in(Cloud::Image, "db-01", false), "admin", KEY),
    ];
    let mut f = ssh_finding("web-01", KEY, "s1");
    f.spec.cloud = Cloud::Image;
    let findings = vec![f];
    let c = correlate(&input(
        &machines,
        &findings,
        &TargetInventory::default(),
        ts(0),
    ));
    assert_eq!(
        c.attack_paths[0].spec.title,
        "Exposed machine has an insecure SSH private key that is used to authenticate to another machine"
    );
    assert_eq!(c.attack_paths[0].spec.cloud, Cloud::Image);
    assert_eq!(
        c.recommendations[0].spec.title,
        "Machines (disk images) should have secrets findings resolved"
    );
    assert_eq!(c.findings[0].labels[keys::CLOUD], "image");
}

/// A key on an exposed Azure VM that an EC2 instance authorizes: one verified path that crosses
/// clouds, titled by where it lands, its target carrying the target's cloud.
#[test]
fn ssh_paths_cross_clouds() {
    let machines = vec![
        machine_in(Cloud::Azure, "az-web", true),
        with_authorized(machine_in(Cloud::Aws, "ec2-db", false), "admin", KEY),
    ];
    let mut f = ssh_finding("az-web", KEY, "s1");
    f.spec.cloud = Cloud::Azure;
    let findings = vec![f];
    let c = correlate(&input(
        &machines,
        &findings,
        &TargetInventory::default(),
        ts(0),
    ));
    assert_eq!(c.attack_paths.len(), 1);
    let path = &c.attack_paths[0].spec;
    assert_eq!(
        path.title,
        "Exposed Vulnerable VM has an insecure SSH private key that is used to authenticate to an EC2 instance"
    );
    assert_eq!(path.cloud, Cloud::Azure);
    assert_eq!(path.target.name, "ec2-db");
    assert_eq!(path.target.cloud, Some(Cloud::Aws));
}

/// A key on an exposed GCE instance that another instance authorizes only through project
/// metadata: verified, and the path names the user and the metadata as where it is authorized.
#[test]
fn ssh_paths_through_keys_the_cloud_authorizes() {
    let machines = vec![
        machine_in(Cloud::Gcp, "gce-web", true),
        with_cloud_authorized(
            machine_in(Cloud::Gcp, "gce-app", false),
            "deploy",
            KEY,
            "project metadata ssh-keys",
        ),
    ];
    let mut f = ssh_finding("gce-web", KEY, "s1");
    f.spec.cloud = Cloud::Gcp;
    let findings = vec![f];
    let c = correlate(&input(
        &machines,
        &findings,
        &TargetInventory::default(),
        ts(0),
    ));
    let name = findings[0].metadata.name.clone().unwrap();
    let u = update(&c, &name);
    assert_eq!(u.status.verification, Some(Verification::Verified));
    assert_eq!(c.attack_paths.len(), 1);
    let target = &c.attack_paths[0].spec.target;
    assert_eq!(
        (
            target.name.as_str(),
            target.user.as_deref(),
            target.source.as_deref()
        ),
        ("gce-app", Some("deploy"), Some("project metadata ssh-keys"))
    );
}

#[test]
fn owner_and_namespace_are_set_on_what_correlation_creates() {
    let machines = vec![
        machine("a", true),
        with_authorized(machine("b", false), "root", KEY),
    ];
    let findings = vec![ssh_finding("a", KEY, "s1")];
    let targets = TargetInventory::default();
    let mut i = input(&machines, &findings, &targets, ts(0));
    i.owner = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "snapsentry.io/v1alpha1".into(),
            kind: "ScanPolicy".into(),
            name: "prod".into(),
            uid: "uid-1".into(),
            controller: Some(true),
            block_owner_deletion: None,
        },
    );
    let c = correlate(&i);
    for meta in c
        .attack_paths
        .iter()
        .map(|p| &p.metadata)
        .chain(c.recommendations.iter().map(|r| &r.metadata))
    {
        assert_eq!(meta.namespace.as_deref(), Some("security"));
        assert_eq!(meta.owner_references.as_ref().unwrap()[0].uid, "uid-1");
        assert_eq!(
            meta.labels.as_ref().unwrap()[keys::MANAGED_BY],
            contract::OPERATOR
        );
        assert!(
            meta.labels
                .as_ref()
                .unwrap()
                .values()
                .all(|v| is_valid_label_value(v))
        );
    }
}

/// The gauge, the counts and the update stream agree: every update labelled `active` is counted
/// once under its severity and secret type, triaged and resolved ones are not, and one finding
/// past the retention is neither updated nor counted but deleted.
#[test]
fn aggregates_match_the_updates() {
    let machines = vec![
        with_last_scan(machine("a", true), "s2", true, ts(100)),
        with_last_scan(
            with_authorized(machine("b", false), "root", KEY),
            "s2",
            true,
            ts(100),
        ),
    ];
    let mut triaged = finding_of_type("b", "GitHub token", "s2");
    triaged.spec.triage = Some(Triage {
        state: TriageState::Accepted,
        note: None,
        by: None,
    });
    // Seen by s1 only: resolved by s2.
    let resolved = finding_of_type("a", "Password in .env file", "s1");
    let mut expired = finding_of_type("b", "Certificate", "s1");
    expired.status = Some(snapsentry_crds::SecretFindingStatus {
        state: Some(FindingState::Resolved),
        resolved_at: Some(Time(ts(-3_000_000))),
        ..Default::default()
    });
    let findings = vec![
        ssh_finding("a", KEY, "s2"),
        finding_of_type("a", "AWS access key", "s2"),
        finding_of_type("b", "AWS access key", "s2"),
        triaged,
        resolved,
        expired.clone(),
    ];
    let c = correlate(&input(
        &machines,
        &findings,
        &TargetInventory::default(),
        ts(200),
    ));
    assert_eq!(c.to_delete, [expired.metadata.name.clone().unwrap()]);
    assert_eq!(c.findings.len(), 5);
    let mut from_updates: BTreeMap<(Severity, String), u64> = BTreeMap::new();
    for u in c
        .findings
        .iter()
        .filter(|u| u.labels[keys::STATE] == "active")
    {
        *from_updates
            .entry((
                u.status.severity.unwrap(),
                u.labels[keys::SECRET_TYPE].clone(),
            ))
            .or_default() += 1;
    }
    assert_eq!(from_updates.values().sum::<u64>(), 3);
    assert_eq!(c.open_by_severity_and_type(), from_updates);
    assert_eq!(c.open.total, 3);
    assert_eq!(
        c.machine_findings["a"].total + c.machine_findings["b"].total,
        3
    );
}
