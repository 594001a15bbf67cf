//! The API against a real kube-apiserver: the generated CRDs install and become Established, CEL
//! rules reject bad policies at admission, printer columns and label selectors answer the first
//! questions (`kubectl get sf -l snapsentry.io/target-kind=vm`), and the Helm chart and every
//! example pass a server-side dry run.

use std::io::Write;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use snapsentry_crds::{
    AssessedTarget, Cloud, FindingLocation, FindingMetadata, FindingState, SecretFinding,
    SecretFindingSpec, SecretFindingStatus, Severity, TargetKind, Verification, labels,
};
use snapsentry_tests::controlplane::{ControlPlane, create_namespace};
use snapsentry_tests::process::ok;
use snapsentry_tests::repo;

/// kubectl reading its manifest from `stdin` (written to a temp file: the harness's kubectl has no
/// stdin).
fn kubectl_stdin(cp: &ControlPlane, args: &[&str], stdin: &[u8]) -> Result<std::process::Output> {
    let mut file = tempfile::NamedTempFile::new()?;
    file.write_all(stdin)?;
    let path = file.path().to_str().context("temp path")?.to_string();
    let args: Vec<&str> = args
        .iter()
        .map(|a| if *a == "-" { path.as_str() } else { a })
        .collect();
    Ok(cp.kubectl(args)?)
}

#[tokio::test]
async fn crds_install_and_answer_kubectl_queries() -> Result<()> {
    let cp = ControlPlane::start().await?;
    let client = cp.client().await?;
    cp.install_crds()?;
    create_namespace(&client, "snapsentry").await?;

    // Short names and the category work.
    for short in ["sp", "sf", "sm", "ap", "rec"] {
        ok(cp.kubectl(["get", short, "-n", "snapsentry"])?, short)?;
    }
    ok(
        cp.kubectl(["get", "snapsentry", "-n", "snapsentry"])?,
        "category",
    )?;

    // A finding as the scanner and operator write it: spec by server-side apply, status after.
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
    let mut sf = SecretFinding::new("web-01-ssh-1", spec);
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
    let api: Api<SecretFinding> = Api::namespaced(client.clone(), "snapsentry");
    let pp = PatchParams::apply("snapsentry-scanner").force();
    api.patch("web-01-ssh-1", &pp, &Patch::Apply(&sf))
        .await
        .context("apply finding")?;
    let status = serde_json::json!({
        "apiVersion": "snapsentry.io/v1alpha1", "kind": "SecretFinding",
        "status": SecretFindingStatus {
            state: Some(FindingState::Active),
            severity: Some(Severity::Critical),
            risk_score: Some(95),
            verification: Some(Verification::Verified),
            target: Some(AssessedTarget { kind: TargetKind::Vm, name: "db-01".into(), exists: Some(true) }),
            exposed: true,
            ..Default::default()
        }
    });
    api.patch_status(
        "web-01-ssh-1",
        &PatchParams::apply("snapsentry-operator").force(),
        &Patch::Apply(&status),
    )
    .await
    .context("apply finding status")?;

    // The predefined query and its printer columns.
    let table = ok(
        cp.kubectl([
            "get",
            "sf",
            "-n",
            "snapsentry",
            "-l",
            "snapsentry.io/target-kind=vm",
        ])?,
        "get sf",
    )?;
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    ensure!(
        header
            == [
                "NAME", "MACHINE", "TYPE", "PATH", "SEVERITY", "VERIFIED", "TARGET", "STATE", "AGE"
            ],
        "columns: {header:?}"
    );
    let row = lines.next().context("one finding listed")?;
    for want in [
        "web-01-ssh-1",
        "web-01",
        "/home/deploy/.ssh/id_ed25519",
        "critical",
        "Verified",
        "db-01",
        "Active",
    ] {
        ensure!(row.contains(want), "row {row:?} lacks {want:?}");
    }
    let none = ok(
        cp.kubectl([
            "get",
            "sf",
            "-n",
            "snapsentry",
            "-l",
            "snapsentry.io/target-kind in (sql-database,rds)",
            "-o",
            "name",
        ])?,
        "get sf in",
    )?;
    ensure!(none.trim().is_empty(), "unexpected: {none}");
    Ok(())
}

#[tokio::test]
async fn cel_rejects_a_provider_entry_naming_two_clouds() -> Result<()> {
    let cp = ControlPlane::start().await?;
    let client = cp.client().await?;
    cp.install_crds()?;
    create_namespace(&client, "snapsentry").await?;
    let bad = br#"
apiVersion: snapsentry.io/v1alpha1
kind: ScanPolicy
metadata: {name: bad, namespace: snapsentry}
spec:
  providers:
    - aws: {regions: [eu-west-1]}
      gcp: {projects: [p]}
"#;
    let out = kubectl_stdin(&cp, &["apply", "-f", "-"], bad)?;
    ensure!(
        !out.status.success(),
        "a policy naming two clouds in one entry was accepted"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        err.contains("set exactly one of aws, azure, gcp, images"),
        "unexpected error: {err}"
    );
    let empty = b"apiVersion: snapsentry.io/v1alpha1\nkind: ScanPolicy\nmetadata: {name: e, namespace: snapsentry}\nspec: {providers: []}\n";
    let out = kubectl_stdin(&cp, &["apply", "-f", "-"], empty)?;
    ensure!(
        !out.status.success(),
        "a policy without providers was accepted"
    );
    Ok(())
}

#[tokio::test]
async fn chart_and_examples_pass_server_side_dry_run() -> Result<()> {
    let cp = ControlPlane::start().await?;
    let client = cp.client().await?;
    cp.install_crds()?;
    create_namespace(&client, "snapsentry").await?;
    let helm = cp.helm()?;
    let chart = repo().join("charts/snapsentry");

    let lint = Command::new(helm)
        .args(["lint", "--strict"])
        .arg(&chart)
        .output()?;
    ok(lint, "helm lint")?;
    let rendered = Command::new(helm)
        .args([
            "template",
            "snapsentry",
            "--namespace",
            "snapsentry",
            "--skip-crds",
        ])
        .arg(&chart)
        .output()?;
    let rendered = ok(rendered, "helm template")?;
    let out = kubectl_stdin(
        &cp,
        &["apply", "--dry-run=server", "-f", "-"],
        rendered.as_bytes(),
    )?;
    ok(out, "server-side dry run of the chart")?;

    for example in ["images", "aws", "azure", "gcp"] {
        let file = repo().join(format!("examples/{example}/scanpolicy.yaml"));
        ok(
            cp.kubectl(["apply", "--dry-run=server", "-f", file.to_str().unwrap()])?,
            example,
        )?;
    }
    let overlay = repo().join("examples/gitops/overlays/production");
    let built = ok(
        cp.kubectl(["kustomize", overlay.to_str().unwrap()])?,
        "kustomize",
    )?;
    let out = kubectl_stdin(
        &cp,
        &["apply", "--dry-run=server", "-f", "-"],
        built.as_bytes(),
    )?;
    ok(out, "server-side dry run of the GitOps overlay")?;
    Ok(())
}
