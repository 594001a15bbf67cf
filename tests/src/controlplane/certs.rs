//! The control plane's credentials: a fresh CA, kube-apiserver's serving certificate, a
//! cluster-admin client certificate, the service-account signing key, and the admin kubeconfig
//! that uses them; for a control plane that a node joins, also the kubelet's client certificate.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};

use super::{Error, NodeAccess, SERVICE_IP};

/// Paths of the generated credentials.
#[derive(Debug)]
pub(super) struct CredentialFiles {
    pub(super) ca_cert: PathBuf,
    pub(super) serving_cert: PathBuf,
    pub(super) serving_key: PathBuf,
    pub(super) admin_cert: PathBuf,
    pub(super) admin_key: PathBuf,
    pub(super) service_account_key: PathBuf,
    pub(super) service_account_public_key: PathBuf,
    /// The kubelet's client certificate and key, when a node joins.
    pub(super) node: Option<(PathBuf, PathBuf)>,
}

/// A fresh CA, kube-apiserver's serving certificate, a cluster-admin client certificate and the
/// service-account signing key, all ECDSA P-256 (fast to generate, accepted by Go and rustls).
pub(super) struct Certificates {
    ca_cert: String,
    serving_cert: String,
    serving_key: String,
    admin_cert: String,
    admin_key: String,
    service_account_key: String,
    service_account_public_key: String,
    /// The kubelet's client certificate and key (PEM), when a node joins.
    node: Option<(String, String)>,
}

impl Certificates {
    /// Credentials for a control plane; with `node`, kube-apiserver's certificate also names the
    /// node's address and the `kubernetes` Service's ClusterIP (what pods dial), and a client
    /// certificate for the node's kubelet (`system:node:<name>` in `system:nodes`, which the Node
    /// authorizer recognises) is made too.
    pub(super) fn generate(node: Option<&NodeAccess>) -> Result<Self, Error> {
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut ca_params = CertificateParams::new(Vec::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "snapsentry test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca = Issuer::new(ca_params, ca_key);

        let serving_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut names = vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
            "kubernetes.default.svc".to_owned(),
        ];
        if let Some(node) = node {
            names.extend([node.address.to_string(), SERVICE_IP.to_owned()]);
        }
        let mut serving_params = CertificateParams::new(names)?;
        serving_params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        serving_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        serving_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_cert = serving_params.signed_by(&serving_key, &ca)?;

        let (admin_cert, admin_key) =
            client_certificate(&ca, "snapsentry-test-admin", "system:masters")?;
        let node = node
            .map(|node| {
                client_certificate(&ca, &format!("system:node:{}", node.name), "system:nodes")
            })
            .transpose()?;

        let service_account_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;

        Ok(Certificates {
            ca_cert: ca_cert.pem(),
            serving_cert: serving_cert.pem(),
            serving_key: serving_key.serialize_pem(),
            admin_cert,
            admin_key,
            service_account_key: service_account_key.serialize_pem(),
            service_account_public_key: service_account_key.public_key_pem(),
            node,
        })
    }

    pub(super) fn write(&self, dir: &Path) -> Result<CredentialFiles, Error> {
        let write = |name: &str, contents: &str| -> Result<PathBuf, Error> {
            let path = dir.join(name);
            fs::write(&path, contents).map_err(Error::io(format!("writing {}", path.display())))?;
            Ok(path)
        };
        Ok(CredentialFiles {
            ca_cert: write("ca.crt", &self.ca_cert)?,
            serving_cert: write("apiserver.crt", &self.serving_cert)?,
            serving_key: write("apiserver.key", &self.serving_key)?,
            admin_cert: write("admin.crt", &self.admin_cert)?,
            admin_key: write("admin.key", &self.admin_key)?,
            service_account_key: write("service-account.key", &self.service_account_key)?,
            service_account_public_key: write(
                "service-account.pub",
                &self.service_account_public_key,
            )?,
            node: match &self.node {
                Some((cert, key)) => Some((write("node.crt", cert)?, write("node.key", key)?)),
                None => None,
            },
        })
    }
}

/// A client certificate (PEM) and its key for the user `name` in the group `group`, signed by `ca`.
fn client_certificate(
    ca: &Issuer<'_, KeyPair>,
    name: &str,
    group: &str,
) -> Result<(String, String), Error> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(Vec::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, group);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, ca)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A kubeconfig at `path` for the user whose client certificate and key are `cert` and `key`.
pub(super) fn write_kubeconfig(
    path: &Path,
    server_url: &str,
    ca: &Path,
    (cert, key): (&Path, &Path),
) -> Result<(), Error> {
    // Debug formatting quotes and escapes the paths, which YAML reads as double-quoted strings.
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: snapsentry-test
  cluster:
    server: {server_url}
    certificate-authority: {ca:?}
users:
- name: admin
  user:
    client-certificate: {cert:?}
    client-key: {key:?}
contexts:
- name: snapsentry-test
  context:
    cluster: snapsentry-test
    user: admin
    namespace: default
current-context: snapsentry-test
",
        ca = ca.display().to_string(),
        cert = cert.display().to_string(),
        key = key.display().to_string(),
    );
    fs::write(path, text).map_err(Error::io(format!("writing {}", path.display())))
}
