//! The chart's RBAC (`charts/snapsentry/templates/rbac.yaml`, release `snapsentry`) installed in a
//! namespace of a test control plane, and clients acting as its service accounts, so a test proves
//! a component works with exactly the chart's permissions.

use std::io::Write;
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
    let rendered = ok(
        Command::new(cp.helm()?)
            .args([
                "template",
                "snapsentry",
                "--namespace",
                namespace,
                "--show-only",
                "templates/rbac.yaml",
            ])
            .arg(crate::repo().join("charts/snapsentry"))
            .output()?,
        "helm template",
    )?;
    // Through a file: the harness's kubectl has no stdin.
    let mut file = tempfile::NamedTempFile::new()?;
    file.write_all(rendered.as_bytes())?;
    ok(
        cp.kubectl([
            std::ffi::OsStr::new("apply"),
            "-f".as_ref(),
            file.path().as_os_str(),
        ])?,
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
