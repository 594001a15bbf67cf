//! The chart's RBAC (`charts/snapsentry/templates/rbac.yaml`, release `snapsentry`) installed in a
//! namespace of a test control plane, and clients acting as its service accounts, so a test proves
//! a component works with exactly the chart's permissions.

use std::process::Command;

use crate::controlplane::{ControlPlane, create_namespace};
use crate::process::ok;

/// What can go wrong installing the RBAC or building a client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error(transparent)]
    ControlPlane(#[from] crate::controlplane::Error),
    #[error(transparent)]
    Process(#[from] crate::process::Failed),
    #[error("rendering the chart's RBAC: {0}")]
    Io(#[from] std::io::Error),
}

/// The operator's service account in a release named `snapsentry`.
pub const OPERATOR: &str = "snapsentry-operator";
/// The scanner's service account in a release named `snapsentry`.
pub const SCANNER: &str = "snapsentry-scanner";

/// `helm template snapsentry charts/snapsentry --namespace <namespace> <args…>`: the chart as a
/// release named `snapsentry` renders it (`args`: `--set k=v`, `--show-only t`, …).
pub fn render(cp: &ControlPlane, namespace: &str, args: &[&str]) -> Result<String, Error> {
    Ok(ok(
        Command::new(cp.helm()?)
            .args(["template", "snapsentry", "--namespace", namespace])
            .args(args)
            .arg(crate::repo().join("charts/snapsentry"))
            .output()?,
        "helm template",
    )?)
}

/// Renders the chart's RBAC for a release `snapsentry` in `namespace` (created if absent) and
/// applies it (idempotent: tests sharing the namespace may all call it).
pub async fn install(
    cp: &ControlPlane,
    admin: &kube::Client,
    namespace: &str,
) -> Result<(), Error> {
    match create_namespace(admin, namespace).await {
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        other => other?,
    }
    let rendered = render(cp, namespace, &["--show-only", "templates/rbac.yaml"])?;
    ok(
        cp.kubectl_with_file(&["apply", "-f", "-"], rendered.as_bytes())?,
        "kubectl apply",
    )?;
    Ok(())
}

/// A client of `cp` acting as service account `service_account` of `namespace`.
pub async fn client_as(
    cp: &ControlPlane,
    namespace: &str,
    service_account: &str,
) -> Result<kube::Client, Error> {
    let kubeconfig = kube::config::Kubeconfig::read_from(cp.kubeconfig())?;
    let mut config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    config.auth_info.impersonate = Some(format!(
        "system:serviceaccount:{namespace}:{service_account}"
    ));
    Ok(kube::Client::try_from(config)?)
}

/// Plays kube-controller-manager's ClusterRole aggregation controller, which this control plane
/// does not run: every ClusterRole with an `aggregationRule` gets the rules of the ClusterRoles
/// its selectors match (`matchLabels`, as every aggregated role in Kubernetes and this chart
/// uses), repeated until nothing changes, so chains (`view` → `edit` → `admin`) fill as they do
/// in a cluster. Call it after applying the ClusterRoles a test needs aggregated.
pub async fn aggregate_cluster_roles(admin: &kube::Client) -> Result<(), Error> {
    use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
    use kube::api::{Api, ListParams, Patch, PatchParams};

    let api: Api<ClusterRole> = Api::all(admin.clone());
    // A chain is at most as long as the number of aggregated roles.
    for _ in 0..8 {
        let roles = api.list(&ListParams::default()).await?.items;
        let mut changed = false;
        for role in roles.iter().filter(|r| r.aggregation_rule.is_some()) {
            let selectors = role
                .aggregation_rule
                .as_ref()
                .and_then(|a| a.cluster_role_selectors.clone())
                .unwrap_or_default();
            let matches = |other: &ClusterRole| {
                let labels = other.metadata.labels.clone().unwrap_or_default();
                selectors.iter().any(|s| {
                    s.match_labels
                        .iter()
                        .flatten()
                        .all(|(k, v)| labels.get(k) == Some(v))
                        && s.match_expressions.is_none()
                })
            };
            let mut rules: Vec<PolicyRule> = Vec::new();
            for other in roles
                .iter()
                .filter(|o| o.metadata.name != role.metadata.name && matches(o))
            {
                for rule in other.rules.iter().flatten() {
                    if !rules.contains(rule) {
                        rules.push(rule.clone());
                    }
                }
            }
            if role.rules.clone().unwrap_or_default() != rules {
                let name = role.metadata.name.clone().unwrap_or_default();
                let patch = serde_json::json!({"rules": rules});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                changed = true;
            }
        }
        if !changed {
            return Ok(());
        }
    }
    Ok(())
}
