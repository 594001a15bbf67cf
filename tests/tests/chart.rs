//! The Helm chart against a real kube-apiserver: `helm lint --strict`, the values schema refusing
//! typos and wrong types, every template (all options on) and every example passing a server-side
//! dry run, the values the operator reads reaching the scanner Job it builds, GitOps rendering
//! with an existing fingerprint Secret, the documented CRD upgrade step, and the built-in `view`
//! and `edit` roles reading and triaging findings through the chart's aggregated ClusterRoles,
//! with only the operator and its scanner Jobs writing a finding's status (the chart's
//! ValidatingAdmissionPolicy).

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde::Deserialize;
use snapsentry_crds::{AssignedDisk, Cloud, DiskSource, ScanPolicy, SecretFinding};
use snapsentry_operator::controller::config::Config;
use snapsentry_operator::job::{JobRequest, scanner_job};
use snapsentry_tests::chart_rbac::{aggregate_cluster_roles, client_as, render};
use snapsentry_tests::controlplane::{ControlPlane, create_namespace};
use snapsentry_tests::process::ok;
use snapsentry_tests::repo;

/// Every document of a rendered chart.
fn documents(rendered: &str) -> Result<Vec<serde_yaml::Value>> {
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(rendered) {
        let value = serde_yaml::Value::deserialize(doc)?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

fn kinds(docs: &[serde_yaml::Value]) -> Vec<String> {
    docs.iter()
        .filter_map(|d| d["kind"].as_str().map(str::to_owned))
        .collect()
}

/// The operator Deployment of a rendered chart.
pub(crate) fn deployment(rendered: &str) -> Result<Deployment> {
    let doc = documents(rendered)?
        .into_iter()
        .find(|d| d["kind"].as_str() == Some("Deployment"))
        .context("no Deployment rendered")?;
    Ok(serde_yaml::from_value(doc)?)
}

/// The operator container's literal environment (values, not references).
fn literal_env(deployment: &Deployment) -> Result<BTreeMap<String, String>> {
    let pod = deployment
        .spec
        .template
        .spec
        .as_ref()
        .context("no pod spec")?;
    Ok(pod.containers[0]
        .env
        .iter()
        .flatten()
        .filter_map(|e| e.value.clone().map(|v| (e.name.clone(), v)))
        .collect())
}

/// The scanner Job the operator configured by `deployment`'s environment builds for a disk of the
/// images provider, `/images/web-01.qcow2` on the claim `vm-images`.
pub(crate) fn images_scanner_job(deployment: &Deployment) -> Result<Job> {
    let mut env = literal_env(deployment)?;
    // Set from the pod's own metadata by the kubelet.
    env.insert("SNAPSENTRY_NAMESPACE".into(), "snapsentry".into());
    let config = Config::from_lookup(|k| env.get(k).cloned())?;

    let policy: ScanPolicy = serde_json::from_value(serde_json::json!({
        "apiVersion": "snapsentry.io/v1alpha1", "kind": "ScanPolicy",
        "metadata": {"name": "lab", "namespace": "snapsentry"},
        "spec": {"providers": [{"images": {"persistentVolumeClaim": "vm-images", "machines": []}}]},
    }))?;
    let request = JobRequest {
        machine: "lab-web-01",
        instance_id: "web-01",
        cloud: Cloud::Image,
        scan_id: "20261207-010000",
        disks: vec![AssignedDisk {
            id: "web-01.qcow2".into(),
            source: DiskSource::Image {
                path: "/images/web-01.qcow2".into(),
            },
        }],
        images_claim: Some("vm-images"),
        grant_secret: None,
    };
    Ok(scanner_job(&policy, &request, &config.job_settings())?)
}

#[tokio::test]
async fn chart_and_examples_pass_server_side_dry_run() -> Result<()> {
    let cp = ControlPlane::shared().await?;
    let client = cp.client().await?;
    cp.install_crds()?;
    match create_namespace(&client, "snapsentry").await {
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        other => other?,
    }
    let chart = repo().join("charts/snapsentry");
    let lint = std::process::Command::new(cp.helm()?)
        .args(["lint", "--strict"])
        .arg(&chart)
        .output()?;
    ok(lint, "helm lint")?;

    // The defaults, and every option on at once.
    let everything = [
        "--set",
        "operator.replicas=2,networkPolicy.enabled=true,networkPolicy.apiServerCIDRs[0]=10.0.0.1/32",
        "--set",
        "cloud.azure.credentialsSecret=azure-app,cloud.azure.tenantId=t,cloud.azure.clientId=c",
        "--set",
        "cloud.gcp.credentialsSecret=gcp-key,imagePullSecrets[0].name=regcred",
        "--set",
        "operator.priorityClassName=system-cluster-critical,operator.podAnnotations.a=b",
        "--set",
        "operator.extraEnv[0].name=HTTPS_PROXY,operator.extraEnv[0].value=http://proxy:3128",
        "--set",
        "operator.extraVolumes[0].name=ca,operator.extraVolumes[0].configMap.name=ca",
        "--set",
        "operator.extraVolumeMounts[0].name=ca,operator.extraVolumeMounts[0].mountPath=/etc/ca",
    ];
    for args in [&["--skip-crds"][..], &everything[..]] {
        let mut all = args.to_vec();
        all.push("--skip-crds");
        let rendered = render(cp, "snapsentry", &all)?;
        let out = cp.kubectl_with_file(
            &["apply", "--dry-run=server", "-f", "-"],
            rendered.as_bytes(),
        )?;
        ok(out, "server-side dry run of the chart")?;
        let kinds = kinds(&documents(&rendered)?);
        let optional = ["PodDisruptionBudget", "NetworkPolicy"];
        if args.len() > 1 {
            ensure!(
                optional.iter().all(|k| kinds.iter().any(|x| x == k)),
                "{kinds:?}"
            );
        } else {
            ensure!(
                optional.iter().all(|k| !kinds.iter().any(|x| x == k)),
                "{kinds:?}"
            );
        }
    }

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
    let out = cp.kubectl_with_file(&["apply", "--dry-run=server", "-f", "-"], built.as_bytes())?;
    ok(out, "server-side dry run of the GitOps overlay")?;

    // The documented CRD upgrade step (Helm never upgrades crds/): server-side apply over the
    // installed CRDs.
    let crds = chart.join("crds/crds.yaml");
    ok(
        cp.kubectl([
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            crds.to_str().unwrap(),
        ])?,
        "CRD upgrade",
    )?;
    Ok(())
}

#[tokio::test]
async fn the_values_schema_refuses_typos_and_wrong_types() -> Result<()> {
    let cp = ControlPlane::shared().await?;
    for (set, says) in [
        ("operator.replicaz=2", "replicaz"),
        ("operator.replicas=two", "want integer"),
        ("scanner.tolerations=none", "want array"),
        ("operator.logFormat=xml", "logFormat"),
        ("fingerprintKey.existingSecrets=x", "existingSecrets"),
    ] {
        let out = std::process::Command::new(cp.helm()?)
            .args(["template", "snapsentry", "--set", set])
            .arg(repo().join("charts/snapsentry"))
            .output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(!out.status.success(), "helm accepted --set {set}");
        ensure!(
            err.contains("schema") && err.contains(says),
            "--set {set}: {err}"
        );
    }
    Ok(())
}

/// What the chart's `scanner.*` (`image.pullPolicy` included) and `imagePullSecrets` values become: the operator's environment,
/// read by its own configuration code, and the Job it builds from it.
#[tokio::test]
async fn the_scanner_job_gets_the_charts_pod_settings() -> Result<()> {
    let cp = ControlPlane::shared().await?;
    let rendered = render(
        cp,
        "snapsentry",
        &[
            "--set",
            "imagePullSecrets[0].name=regcred,scanner.priorityClassName=batch-low",
            "--set",
            "scanner.image.pullPolicy=Never",
            "--set",
            "scanner.nodeSelector.pool=scanners,scanner.tolerations[0].key=scan",
            "--set",
            "scanner.tolerations[0].operator=Exists,scanner.podLabels.team=sec",
            "--set",
            "scanner.podAnnotations.note=x,scanner.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight=1",
            "--set",
            "scanner.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].preference.matchExpressions[0].key=k",
            "--set",
            "scanner.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].preference.matchExpressions[0].operator=Exists",
            "--show-only",
            "templates/deployment.yaml",
        ],
    )?;
    let job = images_scanner_job(&deployment(&rendered)?)?;
    let template = job.spec.context("job spec")?.template;
    let pod = template.spec.context("pod spec")?;
    ensure!(
        pod.image_pull_secrets
            .as_deref()
            .map(|s| s[0].name.as_str())
            == Some("regcred"),
        "{pod:?}"
    );
    ensure!(pod.priority_class_name.as_deref() == Some("batch-low"));
    ensure!(
        pod.containers
            .iter()
            .all(|c| c.image_pull_policy.as_deref() == Some("Never")),
        "{:?}",
        pod.containers
    );
    ensure!(pod.node_selector.as_ref().map(|n| n["pool"].as_str()) == Some("scanners"));
    ensure!(pod.tolerations.as_ref().map(Vec::len) == Some(1));
    ensure!(pod.affinity.is_some());
    let meta = template.metadata.context("pod metadata")?;
    let labels = meta.labels.context("pod labels")?;
    ensure!(labels["team"] == "sec" && labels["snapsentry.io/policy"] == "lab");
    ensure!(meta.annotations.context("annotations")?["note"] == "x");
    Ok(())
}

/// Argo CD and `helm template` render without a cluster: with `fingerprintKey.existingSecret`
/// the chart renders no key of its own and points the operator at the user's Secret; without it
/// every render makes a new key (which is why the values say to use one).
#[tokio::test]
async fn gitops_rendering_uses_an_existing_fingerprint_secret() -> Result<()> {
    let cp = ControlPlane::shared().await?;
    let with = render(
        cp,
        "snapsentry",
        &["--set", "fingerprintKey.existingSecret=fp-key"],
    )?;
    ensure!(
        !kinds(&documents(&with)?).iter().any(|k| k == "Secret"),
        "a Secret was rendered beside an existing one"
    );
    let env = literal_env(&deployment(&with)?)?;
    ensure!(
        env.get("SNAPSENTRY_FINGERPRINT_SECRET").map(String::as_str) == Some("fp-key"),
        "{env:?}"
    );
    let key = |rendered: &str| -> Result<String> {
        let secret = documents(rendered)?
            .into_iter()
            .find(|d| d["kind"].as_str() == Some("Secret"))
            .context("no Secret")?;
        Ok(serde_yaml::to_string(&secret["data"])?)
    };
    let (a, b) = (
        key(&render(cp, "snapsentry", &[])?)?,
        key(&render(cp, "snapsentry", &[])?)?,
    );
    ensure!(a != b, "two renders without a cluster made the same key");
    Ok(())
}

/// A user bound to the built-in `view` role reads findings and cannot triage; one bound to `edit`
/// triages but cannot change a finding's status, which the operator's service account writes.
#[tokio::test]
async fn view_reads_findings_and_edit_triages() -> Result<()> {
    let cp = ControlPlane::shared().await?;
    let admin = cp.client().await?;
    cp.install_crds()?;
    let ns = "chart-roles";
    match create_namespace(&admin, ns).await {
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        other => other?,
    }
    let rendered = render(cp, ns, &["--show-only", "templates/rbac-aggregated.yaml"])?;
    ok(
        cp.kubectl_with_file(&["apply", "-f", "-"], rendered.as_bytes())?,
        "apply the aggregated roles",
    )?;
    aggregate_cluster_roles(&admin).await?;

    let sf = snapsentry_tests::sample::finding("roles-web-01");
    Api::<SecretFinding>::namespaced(admin.clone(), ns)
        .patch(
            "roles-web-01",
            &PatchParams::apply("snapsentry-scanner").force(),
            &Patch::Apply(&sf),
        )
        .await
        .context("apply the finding")?;
    // The operator's and the scanner's service accounts, allowed to patch findings here through
    // `edit` (the chart's own bindings belong to the tests' `snapsentry` namespace).
    let operator_account = snapsentry_tests::chart_rbac::OPERATOR;
    let scanner_account = snapsentry_tests::chart_rbac::SCANNER;
    for (account, role) in [
        ("reader", "view"),
        ("triager", "edit"),
        (operator_account, "edit"),
        (scanner_account, "edit"),
    ] {
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(account.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let binding = RoleBinding {
            metadata: ObjectMeta {
                name: Some(account.into()),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "ClusterRole".into(),
                name: role.into(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: account.into(),
                namespace: Some(ns.into()),
                ..Default::default()
            }]),
        };
        for result in [
            Api::<ServiceAccount>::namespaced(admin.clone(), ns)
                .create(&PostParams::default(), &sa)
                .await
                .map(|_| ()),
            Api::<RoleBinding>::namespaced(admin.clone(), ns)
                .create(&PostParams::default(), &binding)
                .await
                .map(|_| ()),
        ] {
            match result {
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                other => other?,
            }
        }
    }
    let triage =
        serde_json::json!({"spec": {"triage": {"state": "falsePositive", "note": "test key"}}});
    let reader: Api<SecretFinding> = Api::namespaced(client_as(cp, ns, "reader").await?, ns);
    ensure!(reader.list(&Default::default()).await?.items.len() == 1);
    match reader
        .patch(
            "roles-web-01",
            &PatchParams::default(),
            &Patch::Merge(&triage),
        )
        .await
    {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => bail!("view could triage: {other:?}"),
    }
    let triager: Api<SecretFinding> = Api::namespaced(client_as(cp, ns, "triager").await?, ns);
    let patched = triager
        .patch(
            "roles-web-01",
            &PatchParams::default(),
            &Patch::Merge(&triage),
        )
        .await
        .context("edit triages")?;
    ensure!(
        patched.spec.triage.map(|t| t.note) == Some(Some("test key".into())),
        "triage not kept"
    );
    only_snapsentry_writes_status(cp, &admin, ns, &triager).await
}

/// With the chart's ValidatingAdmissionPolicy (bound to namespace `ns` through
/// `operator.watchNamespaces`), the operator's and the scanner's service accounts (of a release
/// `snapsentry` in `ns`) write a finding's status and `editor` (bound to `edit`) cannot change it,
/// nor can anyone else create a finding with one.
async fn only_snapsentry_writes_status(
    cp: &ControlPlane,
    admin: &kube::Client,
    ns: &str,
    editor: &Api<SecretFinding>,
) -> Result<()> {
    let watch = format!("operator.watchNamespaces={{{ns}}}");
    let args = [
        "--set",
        &watch,
        "--show-only",
        "templates/finding-status-policy.yaml",
    ];
    let rendered = render(cp, ns, &args)?;
    ok(
        cp.kubectl_with_file(&["apply", "-f", "-"], rendered.as_bytes())?,
        "apply the finding status policy",
    )?;
    let operator: Api<SecretFinding> = Api::namespaced(
        client_as(cp, ns, snapsentry_tests::chart_rbac::OPERATOR).await?,
        ns,
    );
    let status = |risk: u32| {
        serde_json::json!({
            "apiVersion": "snapsentry.io/v1alpha1", "kind": "SecretFinding",
            "metadata": { "name": "roles-web-01" },
            "status": { "riskScore": risk },
        })
    };
    let apply = PatchParams::apply("snapsentry-operator").force();
    // The API server enforces a policy once it has loaded it: until the editor is refused.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let refused = loop {
        operator
            .patch("roles-web-01", &apply, &Patch::Apply(&status(40)))
            .await
            .context("the operator writes the status")?;
        let forged = serde_json::json!({ "status": { "riskScore": 0 } });
        match editor
            .patch(
                "roles-web-01",
                &PatchParams::default(),
                &Patch::Merge(&forged),
            )
            .await
        {
            Err(kube::Error::Api(s)) => break s,
            Ok(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            other => bail!("edit changed a finding's status: {other:?}"),
        }
    };
    ensure!(
        refused.code == 403
            && refused
                .message
                .contains("written by the snapsentry operator and its scanner Jobs only"),
        "{refused:?}"
    );
    let kept = editor.get("roles-web-01").await?;
    ensure!(
        kept.status.and_then(|s| s.risk_score) == Some(40),
        "the operator's status stays"
    );
    // Triage still goes through, and so does the operator's next write.
    let triage = serde_json::json!({"spec": {"triage": {"state": "accepted"}}});
    editor
        .patch(
            "roles-web-01",
            &PatchParams::default(),
            &Patch::Merge(&triage),
        )
        .await
        .context("edit triages under the policy")?;
    operator
        .patch("roles-web-01", &apply, &Patch::Apply(&status(41)))
        .await
        .context("the operator writes the status again")?;
    // The scanner Jobs' service account writes the provisional assessment with the finding, in
    // one apply.
    let scanner: Api<SecretFinding> = Api::namespaced(
        client_as(cp, ns, snapsentry_tests::chart_rbac::SCANNER).await?,
        ns,
    );
    let mut with_status = snapsentry_tests::sample::finding("roles-web-01");
    with_status.status = Some(Default::default());
    with_status.status.as_mut().unwrap().risk_score = Some(42);
    let written = scanner
        .patch(
            "roles-web-01",
            &PatchParams::apply("snapsentry-scanner").force(),
            &Patch::Apply(&with_status),
        )
        .await
        .context("the scanner writes the status")?;
    ensure!(
        written.status.and_then(|s| s.risk_score) == Some(42),
        "the scanner's status is kept"
    );
    // A finding created with a status by anyone else is refused too.
    let mut sf = snapsentry_tests::sample::finding("roles-web-02");
    sf.status = Some(Default::default());
    sf.status.as_mut().unwrap().risk_score = Some(99);
    let created = Api::<SecretFinding>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &sf)
        .await;
    ensure!(
        matches!(&created, Err(kube::Error::Api(s)) if s.code == 403),
        "a finding created with a status: {created:?}"
    );
    Ok(())
}

/// The values table of `charts/snapsentry/README.md`, from the schema's descriptions and types and
/// `values.yaml`'s defaults: one row per leaf (or free-form object) of the schema.
fn values_table() -> Result<String> {
    let chart = repo().join("charts/snapsentry");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(chart.join("values.schema.json"))?)?;
    let values: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart.join("values.yaml"))?)?;
    let mut rows = vec![
        "| key | type | default | description |".to_owned(),
        "|---|---|---|---|".to_owned(),
    ];
    fn walk(
        path: &str,
        schema: &serde_json::Value,
        value: &serde_json::Value,
        rows: &mut Vec<String>,
    ) {
        if let Some(props) = schema["properties"].as_object() {
            for (key, sub) in props {
                let path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                walk(&path, sub, &value[key.as_str()], rows);
            }
            return;
        }
        if value.is_null() {
            return; // in the schema for Helm's sake (`global`), not a value of this chart
        }
        let kind = match &schema["enum"] {
            serde_json::Value::Array(options) => options
                .iter()
                .filter_map(|o| o.as_str())
                .collect::<Vec<_>>()
                .join(" \\| "),
            _ => schema["type"].as_str().unwrap_or("any").to_owned(),
        };
        let default = serde_json::to_string(value).unwrap_or_default();
        let description = schema["description"].as_str().unwrap_or_default();
        rows.push(format!(
            "| `{path}` | {kind} | `{default}` | {} |",
            description.replace('|', "\\|")
        ));
    }
    walk("", &schema, &values, &mut rows);
    Ok(rows.join("\n") + "\n")
}

/// Every value is in the chart README's table, as the schema and `values.yaml` say it.
/// `SNAPSENTRY_BLESS=1` rewrites the table.
#[test]
fn the_chart_readme_lists_every_value() -> Result<()> {
    const BEGIN: &str = "<!-- values:begin (generated by tests/tests/chart.rs) -->\n";
    const END: &str = "<!-- values:end -->";
    let path = repo().join("charts/snapsentry/README.md");
    let readme = std::fs::read_to_string(&path)?;
    let (start, end) = match (readme.find(BEGIN), readme.find(END)) {
        (Some(s), Some(e)) if s < e => (s + BEGIN.len(), e),
        _ => bail!("{} lacks the values markers", path.display()),
    };
    let table = values_table()?;
    if readme[start..end] == table {
        return Ok(());
    }
    if std::env::var_os("SNAPSENTRY_BLESS").is_some() {
        std::fs::write(
            &path,
            format!("{}{table}{}", &readme[..start], &readme[end..]),
        )?;
        return Ok(());
    }
    bail!(
        "charts/snapsentry/README.md's values table is stale: run \
         SNAPSENTRY_BLESS=1 cargo test -p snapsentry-tests --test e2e chart_readme"
    )
}
