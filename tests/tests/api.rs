//! The API against a real kube-apiserver: the generated CRDs install and become Established, CEL
//! rules reject bad policies at admission, printer columns and label selectors answer the first
//! questions (`kubectl get sf -l snapsentry.io/target-kind=vm`). The chart's tests are in
//! `chart.rs`.

use anyhow::{Context, Result, ensure};
use kube::api::{Api, Patch, PatchParams};
use snapsentry_crds::{
    AssessedTarget, FindingState, SecretFinding, SecretFindingStatus, Severity, TargetKind,
    Verification,
};
use snapsentry_tests::controlplane::{ControlPlane, create_namespace};
use snapsentry_tests::process::ok;

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
    let sf = snapsentry_tests::sample::finding("web-01-ssh-1");
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
    let out = cp.kubectl_with_file(&["apply", "-f", "-"], bad)?;
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
    let out = cp.kubectl_with_file(&["apply", "-f", "-"], empty)?;
    ensure!(
        !out.status.success(),
        "a policy without providers was accepted"
    );
    Ok(())
}
