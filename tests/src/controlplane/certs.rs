//! The control plane's credentials: a fresh CA, kube-apiserver's serving certificate, a
//! cluster-admin client certificate, the service-account signing key, and the admin kubeconfig
//! that uses them.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};

use super::Error;

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
}

impl Certificates {
    pub(super) fn generate() -> Result<Self, Error> {
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
        let mut serving_params = CertificateParams::new(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
            "kubernetes.default.svc".to_owned(),
        ])?;
        serving_params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        serving_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        serving_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_cert = serving_params.signed_by(&serving_key, &ca)?;

        let admin_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut admin_params = CertificateParams::new(Vec::new())?;
        admin_params
            .distinguished_name
            .push(DnType::CommonName, "snapsentry-test-admin");
        admin_params
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        admin_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        admin_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_cert = admin_params.signed_by(&admin_key, &ca)?;

        let service_account_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;

        Ok(Certificates {
            ca_cert: ca_cert.pem(),
            serving_cert: serving_cert.pem(),
            serving_key: serving_key.serialize_pem(),
            admin_cert: admin_cert.pem(),
            admin_key: admin_key.serialize_pem(),
            service_account_key: service_account_key.serialize_pem(),
            service_account_public_key: service_account_key.public_key_pem(),
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
        })
    }
}

pub(super) fn write_kubeconfig(
    path: &Path,
    server_url: &str,
    files: &CredentialFiles,
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
        ca = files.ca_cert.display().to_string(),
        cert = files.admin_cert.display().to_string(),
        key = files.admin_key.display().to_string(),
    );
    fs::write(path, text).map_err(Error::io(format!("writing {}", path.display())))
}
