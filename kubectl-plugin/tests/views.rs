//! The plugin's views of a small fleet built from objects as the API server returns them: two
//! machines, an SSH key on the exposed one that the other authorizes (an attack path), a finding
//! the latest scan added, one it resolved and one it re-assessed.

use kubectl_snapsentry::fleet::Fleet;
use kubectl_snapsentry::{convert, diff, text};
use snapsentry_crds::{AttackPath, ScannedMachine, SecretFinding};

fn machine(name: &str, cloud: &str, exposed: bool) -> ScannedMachine {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "snapsentry.io/v1alpha1", "kind": "ScannedMachine",
        "metadata": { "name": name, "namespace": "lab" },
        "spec": {
            "policy": "lab", "cloud": cloud, "instanceId": format!("i-{name}"),
            "region": "eu-west-1",
            "exposure": { "internetFacing": exposed, "reasons": if exposed { vec!["public IPv4 203.0.113.7"] } else { vec![] } },
            "disks": [{ "id": "vol-1" }],
        },
        "status": {
            "phase": "Scanned",
            "lastScan": {
                "scanId": "s2", "succeeded": true,
                "startedAt": "2026-12-02T03:00:00Z", "finishedAt": "2026-12-02T03:05:00Z",
                "durationMs": 300000, "files": 120, "bytesScanned": 4096, "findings": 2, "volumes": [],
            },
            "coverage": { "scanId": "s2", "volumesFound": 1, "volumesScanned": 1, "summary": "complete" },
        },
    }))
    .unwrap()
}

#[allow(clippy::too_many_arguments)]
fn finding(
    name: &str,
    machine: &str,
    secret_type: &str,
    severity: &str,
    state: &str,
    new: bool,
    first_seen: &str,
    assessed: &str,
) -> SecretFinding {
    let resolved = state == "resolved";
    serde_json::from_value(serde_json::json!({
        "apiVersion": "snapsentry.io/v1alpha1", "kind": "SecretFinding",
        "metadata": {
            "name": name, "namespace": "lab",
            "labels": { "snapsentry.io/state": state, "snapsentry.io/new": new.to_string() },
            "managedFields": [
                { "manager": "snapsentry-scanner", "operation": "Apply", "apiVersion": "snapsentry.io/v1alpha1", "time": first_seen, "fieldsType": "FieldsV1", "fieldsV1": {} },
                { "manager": "snapsentry-operator", "operation": "Apply", "apiVersion": "snapsentry.io/v1alpha1", "time": assessed, "fieldsType": "FieldsV1", "fieldsV1": {}, "subresource": "status" },
            ],
        },
        "spec": {
            "policy": "lab", "machine": machine, "cloud": "aws",
            "ruleId": secret_type.to_ascii_lowercase().replace(' ', "-"), "secretType": secret_type,
            "ruleSeverity": severity, "fingerprint": format!("hmac-sha256:{name}"),
            "redacted": "AKIA…(20)",
            "locations": [{ "volume": "disk0/p1", "path": format!("/srv/{name}"), "line": 3 }],
            "locationCount": 1,
            "metadata": { "confidence": "high" },
            "scanId": if resolved { "s1" } else { "s2" },
            "firstSeen": first_seen, "lastSeen": if resolved { "2026-12-01T03:01:00Z" } else { "2026-12-02T03:01:00Z" },
        },
        "status": {
            "state": if resolved { "Resolved" } else { "Active" },
            "resolvedAt": if resolved { Some("2026-12-02T03:05:00Z") } else { None },
            "severity": severity, "riskScore": 70, "verification": "Unverified", "exposed": false,
        },
    }))
    .unwrap()
}

fn fleet() -> Fleet {
    let mut key = finding(
        "web-key",
        "lab-web",
        "SSH private key",
        "critical",
        "active",
        false,
        "2026-12-01T03:01:00Z",
        "2026-12-01T03:06:00Z",
    );
    let status = key.status.as_mut().unwrap();
    status.verification = Some(snapsentry_crds::Verification::Verified);
    status.target = Some(snapsentry_crds::AssessedTarget {
        kind: snapsentry_crds::TargetKind::Vm,
        name: "lab-db".into(),
        exists: Some(true),
    });
    let path: AttackPath = serde_json::from_value(serde_json::json!({
        "apiVersion": "snapsentry.io/v1alpha1", "kind": "AttackPath",
        "metadata": { "name": "ap-1", "namespace": "lab" },
        "spec": {
            "policy": "lab", "cloud": "aws",
            "title": "Exposed EC2 instance has an SSH private key that is used to authenticate to an EC2 instance",
            "risk": "critical",
            "entry": { "machine": "lab-web", "exposed": true, "exposureReasons": ["public IPv4 203.0.113.7"] },
            "secret": { "finding": "web-key", "secretType": "SSH private key", "path": "/home/alice/.ssh/id_ed25519" },
            "target": { "kind": "vm", "name": "lab-db", "user": "bob" },
        },
    }))
    .unwrap();
    Fleet {
        machines: vec![
            machine("lab-web", "aws", true),
            machine("lab-db", "aws", false),
        ],
        findings: vec![
            key,
            finding(
                "web-aws",
                "lab-web",
                "AWS access key",
                "high",
                "active",
                true,
                "2026-12-02T03:01:00Z",
                "2026-12-02T03:06:00Z",
            ),
            finding(
                "db-aws",
                "lab-db",
                "AWS access key",
                "medium",
                "active",
                false,
                "2026-12-01T03:01:00Z",
                "2026-12-02T03:06:00Z",
            ),
            finding(
                "db-slack",
                "lab-db",
                "Slack token",
                "low",
                "resolved",
                false,
                "2026-12-01T03:01:00Z",
                "2026-12-02T03:06:00Z",
            ),
        ],
        paths: vec![path],
    }
}

fn report() -> snapsentry_views::Report {
    convert::report(
        &fleet(),
        "snapsentry — namespace lab",
        jiff::Timestamp::UNIX_EPOCH,
    )
}

#[test]
fn summary_counts_most_common_first() {
    let out = text::summary(&report());
    assert!(
        out.contains("3 open finding(s) on 2 of 2 machine(s) (1 exposed to the internet)"),
        "{out}"
    );
    let types = &out[out.find("MOST COMMON SECRETS").unwrap()..out.find("BY MACHINE").unwrap()];
    let lines: Vec<&str> = types.lines().skip(2).collect();
    assert!(lines[0].starts_with("AWS access key   2"), "{types}");
    assert!(lines[1].starts_with("SSH private key  1"), "{types}");
    assert!(
        !types.contains("Slack"),
        "a resolved finding is not counted: {types}"
    );
    let machines = &out[out.find("BY MACHINE").unwrap()..];
    assert!(
        machines.lines().nth(2).unwrap().starts_with("lab-web"),
        "{machines}"
    );
}

#[test]
fn machine_lists_findings_with_metadata() {
    let r = report();
    let m = r.machines.iter().find(|m| m.name == "lab-web").unwrap();
    let out = text::machine(m);
    assert!(
        out.starts_with("lab-web  (aws, exposed to the internet)\n"),
        "{out}"
    );
    assert!(out.contains("instance   i-lab-web"), "{out}");
    assert!(
        out.contains("last scan  s2 at 2026-12-02T03:05:00Z"),
        "{out}"
    );
    assert!(out.contains("2 finding(s), 2 open"), "{out}");
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("CRITICAL") || l.starts_with("HIGH"))
        .collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(
        rows[0].contains("vm lab-db") && rows[0].contains("verified"),
        "{out}"
    );
    assert!(rows[1].trim_end().ends_with("yes"), "the new marker: {out}");
    assert!(out.contains("  confidence     high"), "{out}");
}

#[test]
fn paths_read_as_chains() {
    let out = text::paths(&report());
    assert!(
        out.starts_with("1. [CRITICAL] Exposed EC2 instance"),
        "{out}"
    );
    assert!(
        out.contains("   internet → lab-web → SSH private key (/home/alice/.ssh/id_ed25519) → vm lab-db (as bob)\n"),
        "{out}"
    );
}

#[test]
fn diff_new_resolved_changed() {
    let d = diff::diff(&fleet());
    let names = |l: &[snapsentry_views::Finding]| -> Vec<String> {
        l.iter().map(|f| f.name.clone()).collect()
    };
    let web = d.iter().find(|d| d.machine == "lab-web").unwrap();
    assert_eq!(names(&web.new), ["web-aws"]);
    assert!(web.resolved.is_empty() && web.changed.is_empty(), "{web:?}");
    let db = d.iter().find(|d| d.machine == "lab-db").unwrap();
    assert_eq!(names(&db.resolved), ["db-slack"]);
    assert_eq!(names(&db.changed), ["db-aws"]);
    let out = text::diff(&d);
    assert!(
        out.contains("  + HIGH     AWS access key  disk0/p1:/srv/web-aws:3  web-aws"),
        "{out}"
    );
    assert!(out.contains("  - LOW      Slack token"), "{out}");
    assert!(out.contains("  ~ MEDIUM   AWS access key"), "{out}");
    assert!(out.ends_with("\n1 new, 1 resolved, 1 changed\n"), "{out}");
}

#[test]
fn graph_and_report_from_the_objects() {
    let r = report();
    let g = snapsentry_views::Graph::of(&r);
    let dot = g.dot();
    assert!(dot.contains("\"internet\" -> \"m:lab-web\""), "{dot}");
    assert!(
        dot.contains("\"s:lab-web/web-key\" -> \"t:vm:lab-db\" [label=\"as bob\"]"),
        "{dot}"
    );
    let html = snapsentry_views::html::render(&r);
    assert!(html.contains("id=\"machine-lab-db\""));
}

/// The fleet as `kubectl get sm,sf,ap -o yaml` prints it: one `List`.
fn exported(fleet: &Fleet) -> String {
    let mut items: Vec<serde_json::Value> = Vec::new();
    items.extend(
        fleet
            .machines
            .iter()
            .map(|o| serde_json::to_value(o).unwrap()),
    );
    items.extend(
        fleet
            .findings
            .iter()
            .map(|o| serde_json::to_value(o).unwrap()),
    );
    items.extend(fleet.paths.iter().map(|o| serde_json::to_value(o).unwrap()));
    serde_yaml::to_string(
        &serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": items }),
    )
    .unwrap()
}

#[test]
fn objects_from_an_export() {
    use kubectl_snapsentry::fleet::Scope;
    let text = exported(&fleet());
    let all = Scope {
        namespace: None,
        policy: None,
    };
    let parsed = Fleet::parse(&text, &all).unwrap();
    assert_eq!(
        (
            parsed.machines.len(),
            parsed.findings.len(),
            parsed.paths.len()
        ),
        (2, 4, 1)
    );
    let other = Scope {
        namespace: Some("other".into()),
        policy: None,
    };
    assert!(Fleet::parse(&text, &other).unwrap().findings.is_empty());
    let policy = Scope {
        namespace: None,
        policy: Some("nope".into()),
    };
    assert!(Fleet::parse(&text, &policy).unwrap().machines.is_empty());
    // A multi-document stream of single objects works too.
    let stream: String = fleet()
        .findings
        .iter()
        .map(|f| format!("---\n{}", serde_yaml::to_string(f).unwrap()))
        .collect();
    assert_eq!(Fleet::parse(&stream, &all).unwrap().findings.len(), 4);
    assert!(Fleet::parse("kind: SecretFinding\nspec: 3\n", &all).is_err());
}

#[test]
fn the_binary_renders_every_view_from_an_export() {
    let dir = std::env::temp_dir().join(format!("views-plugin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let objects = dir.join("objects.yaml");
    std::fs::write(&objects, exported(&fleet())).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-snapsentry"))
            .arg("--objects")
            .arg(&objects)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(run(&["summary"]).contains("MOST COMMON SECRETS"));
    assert!(run(&["machine", "lab-db"]).starts_with("lab-db  (aws)"));
    assert!(run(&["paths"]).contains("→ vm lab-db (as bob)"));
    assert!(run(&["diff"]).ends_with("1 new, 1 resolved, 1 changed\n"));
    assert!(run(&["graph", "--format", "dot"]).starts_with("digraph attack_graph {"));
    assert!(run(&["graph"]).starts_with("<svg "));
    let html = dir.join("report.html");
    run(&["report", "-o", html.to_str().unwrap()]);
    assert!(
        std::fs::read_to_string(&html)
            .unwrap()
            .starts_with("<!DOCTYPE html>")
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-snapsentry"))
        .arg("--objects")
        .arg(&objects)
        .args(["machine", "nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no ScannedMachine \"nope\""));
    std::fs::remove_dir_all(dir).unwrap();
}
