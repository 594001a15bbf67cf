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
use snapsentry_tests::repo;

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

    // A finding as the scanner and operator write it: spec by server-side apply, then the
    // operator's status (and labels) in one apply of the object (no status subresource).
    let sf = snapsentry_tests::sample::finding("web-01-ssh-1");
    let api: Api<SecretFinding> = Api::namespaced(client.clone(), "snapsentry");
    let pp = PatchParams::apply("snapsentry-scanner").force();
    api.patch("web-01-ssh-1", &pp, &Patch::Apply(&sf))
        .await
        .context("apply finding")?;
    let status = serde_json::json!({
        "apiVersion": "snapsentry.io/v1alpha1", "kind": "SecretFinding",
        "metadata": { "name": "web-01-ssh-1" },
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
    api.patch(
        "web-01-ssh-1",
        &PatchParams::apply("snapsentry-operator").force(),
        &Patch::Apply(&status),
    )
    .await
    .context("apply finding status")?;
    let written = api.get("web-01-ssh-1").await?;
    ensure!(
        written.status.as_ref().and_then(|s| s.risk_score) == Some(95),
        "the status was written with the object: {:?}",
        written.status
    );

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
async fn admission_rejects_what_it_can_and_says_why() -> Result<()> {
    let cp = ControlPlane::start().await?;
    let client = cp.client().await?;
    // A fresh control plane: the API server warns about a CRD's schema when it is created.
    let crds = repo().join("crds/snapsentry.io_crds.yaml");
    let out = ok_output(cp.kubectl([
        "apply",
        "--server-side",
        "-f",
        crds.to_str().context("path")?,
    ])?)?;
    ensure!(
        !out.contains("unrecognized format") && !out.to_lowercase().contains("warning"),
        "the CRDs install with warnings: {out}"
    );
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

    // Schedule, zone and retention: what CEL can check, with a message naming the field.
    let policy = |name: &str, extra: &str| {
        format!(
            "apiVersion: snapsentry.io/v1alpha1\nkind: ScanPolicy\nmetadata: {{name: {name}, \
             namespace: snapsentry}}\nspec:\n  providers: [{{images: {{machines: [{{name: m, disks: [m.img]}}]}}}}]\n{extra}\n"
        )
    };
    for (field, says) in [
        ("  schedule: '0 3 * *'", "schedule must be 5 fields"),
        ("  schedule: 'every day'", "schedule must be 5 fields"),
        (
            "  timeZone: 'Paris time'",
            "timeZone must be an IANA time zone",
        ),
        (
            "  resolvedRetention: '30 days'",
            "resolvedRetention must be a duration",
        ),
        (
            "  resolvedRetention: '30d'",
            "resolvedRetention must be a duration",
        ),
    ] {
        let out = cp.kubectl_with_file(&["apply", "-f", "-"], policy("bad", field).as_bytes())?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success() && err.contains(says),
            "{field:?} was not refused as it should: {err}"
        );
    }
    let good = "  schedule: '@daily'\n  timeZone: Europe/Paris\n  resolvedRetention: 36h30m";
    ok(
        cp.kubectl_with_file(
            &["apply", "--dry-run=server", "-f", "-"],
            policy("good", good).as_bytes(),
        )?,
        "a valid schedule, zone and retention",
    )?;
    let good = "  schedule: ' 0 3 * * 1-5 '\n  resolvedRetention: '0'";
    ok(
        cp.kubectl_with_file(
            &["apply", "--dry-run=server", "-f", "-"],
            policy("good", good).as_bytes(),
        )?,
        "a valid schedule and a zero retention",
    )?;

    // An enum error lists the valid values, and `null` is not one of them (it means unset).
    let strategy = |value: &str| {
        format!(
            "apiVersion: snapsentry.io/v1alpha1\nkind: ScanPolicy\nmetadata: {{name: s, \
             namespace: snapsentry}}\nspec:\n  providers:\n    - aws: {{regions: [eu-west-1], \
             snapshotStrategy: {value}}}\n"
        )
    };
    let out = cp.kubectl_with_file(&["apply", "-f", "-"], strategy("sometimes").as_bytes())?;
    let err = String::from_utf8_lossy(&out.stderr);
    let supported = err
        .lines()
        .find(|l| l.contains("snapshotStrategy") && l.contains("supported values"))
        .unwrap_or_default();
    ensure!(
        !out.status.success()
            && supported.ends_with("supported values: \"create\", \"newestExisting\""),
        "unexpected enum error: {err}"
    );
    ok(
        cp.kubectl_with_file(
            &["apply", "--dry-run=server", "-f", "-"],
            strategy("null").as_bytes(),
        )?,
        "an explicit null enum",
    )?;
    Ok(())
}

/// stdout and stderr of a successful command.
fn ok_output(out: std::process::Output) -> Result<String> {
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}
