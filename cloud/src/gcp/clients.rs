//! The clients of a [`GcpProvider`], built on first use, and their credentials (google-cloud-auth):
//!
//! - the policy's `credentialsSecret` with a service account's JSON key (key
//!   [`SERVICE_ACCOUNT_KEY`]): google-cloud-auth signs a short-lived JWT with the key and sends it
//!   as the bearer token (Google's self-signed JWT, no token exchange);
//! - else the service account key file `GOOGLE_APPLICATION_CREDENTIALS` names (the chart's
//!   `cloud.gcp.credentialsSecret` mounts one for every policy), used the same way;
//! - else the metadata server (`metadata.google.internal`, or `GCE_METADATA_HOST`): GKE workload
//!   identity, or the node's service account.
//!
//! Signing and TLS use rustls on ring, installed as the process's default crypto provider (the
//! one kube uses; google-cloud-auth signs with the default provider's keys). A first token is
//! asked for when the clients are built, so a refused credential fails there, as an
//! [`Error::GcpCredentials`] naming the Secret, the key file or the metadata server, never a
//! value.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use google_cloud_auth::credentials::{Credentials, mds, service_account};
use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;

use super::compute::Compute;
use super::provider::GcpProvider;
use super::rest::Rest;
use crate::ProviderContext;
use crate::credentials::policy_secret;
use crate::error::{Error, Result};

/// The key of a `credentialsSecret` holding a service account's JSON key.
pub const SERVICE_ACCOUNT_KEY: &str = "serviceAccountKey";
/// The variable naming a service account key file (as Google's client libraries read it).
pub const KEY_FILE_VAR: &str = "GOOGLE_APPLICATION_CREDENTIALS";
/// The metadata server's host when `GCE_METADATA_HOST` is not set.
pub const DEFAULT_METADATA_HOST: &str = "metadata.google.internal";
/// The fields google-cloud-auth needs of a service account key.
const KEY_FIELDS: [&str; 4] = [
    "client_email",
    "private_key",
    "private_key_id",
    "project_id",
];

/// The metadata server's host: `GCE_METADATA_HOST` (as Google's client libraries read it), else
/// [`DEFAULT_METADATA_HOST`].
pub fn metadata_host_from_env() -> String {
    std::env::var("GCE_METADATA_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| DEFAULT_METADATA_HOST.to_owned())
}

/// The key file [`KEY_FILE_VAR`] names, if set and not empty.
pub fn key_file_from_env() -> Option<PathBuf> {
    std::env::var_os(KEY_FILE_VAR)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// The credentials of the metadata server at `host` (`metadata.google.internal`,
/// `127.0.0.1:PORT`).
pub fn metadata_credentials(host: &str) -> Result<Credentials> {
    let host = host.trim_end_matches('/');
    let root = if host.contains("://") {
        host.to_owned()
    } else {
        format!("http://{host}")
    };
    mds::Builder::default()
        .with_endpoint(root)
        .build()
        .map_err(|e| Error::GcpCredentials {
            secret: "metadata server".into(),
            reason: format!("unusable: {e}"),
        })
}

/// The credentials of a service account's JSON key (`type: service_account`, `client_email`,
/// `private_key` as PKCS#8 PEM, `private_key_id`, `project_id`). `label` names the key's origin
/// and `what` the key in it (`key serviceAccountKey`) in errors, which name fields, never their
/// values.
pub fn key_credentials(json: &str, label: &str, what: &str) -> Result<Credentials> {
    let bad = |reason: String| Error::GcpCredentials {
        secret: label.to_owned(),
        reason: format!("{what}: {reason}"),
    };
    let key: Value = serde_json::from_str(json)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| bad("is not a JSON object".into()))?;
    if let Some(kind) = key["type"].as_str().filter(|t| *t != "service_account") {
        return Err(bad(format!("type is {kind}, not service_account")));
    }
    if let Some(missing) = KEY_FIELDS
        .iter()
        .find(|f| key[**f].as_str().is_none_or(str::is_empty))
    {
        return Err(bad(format!("field {missing} is missing")));
    }
    if !key["private_key"]
        .as_str()
        .is_some_and(|k| k.contains("-----BEGIN PRIVATE KEY-----"))
    {
        return Err(bad("private_key has no PRIVATE KEY block".into()));
    }
    service_account::Builder::new(key)
        .build()
        .map_err(|_| bad("is not a service account key".into()))
}

/// The credentials of a `credentialsSecret` (key [`SERVICE_ACCOUNT_KEY`]). Errors name the
/// Secret and the key, never a value.
pub fn secret_credentials(secret: &Secret) -> Result<Credentials> {
    let label = format!(
        "Secret {}",
        secret.metadata.name.as_deref().unwrap_or_default()
    );
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(SERVICE_ACCOUNT_KEY))
        .ok_or_else(|| Error::GcpCredentials {
            secret: label.clone(),
            reason: format!("key {SERVICE_ACCOUNT_KEY} is not set"),
        })?;
    let json = std::str::from_utf8(&bytes.0).map_err(|_| Error::GcpCredentials {
        secret: label.clone(),
        reason: format!("key {SERVICE_ACCOUNT_KEY} is not UTF-8"),
    })?;
    key_credentials(json, &label, &format!("key {SERVICE_ACCOUNT_KEY}"))
}

/// The label of the key file `path` in errors: the variable and the path, never the content.
pub fn key_file_label(path: &Path) -> String {
    format!("{KEY_FILE_VAR} file {}", path.display())
}

/// The credentials of the service account key file `path` (named by [`KEY_FILE_VAR`]). Errors
/// name the variable and the file, never its content.
pub async fn key_file_credentials(path: &Path) -> Result<Credentials> {
    let label = key_file_label(path);
    let json = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| Error::GcpCredentials {
            secret: label.clone(),
            reason: format!("unreadable: {}", e.kind()),
        })?;
    key_credentials(&json, &label, "the key")
}

/// A first token of `credentials` (named `label`; `key`: the service account key they sign
/// with, `key serviceAccountKey` or `the key`, whose signing failure means the key is unusable).
async fn check(credentials: &Credentials, label: &str, key: Option<&str>) -> Result<()> {
    match (credentials.headers(http::Extensions::new()).await, key) {
        (Ok(_), _) => Ok(()),
        (Err(_), Some(what)) => Err(Error::GcpCredentials {
            secret: label.to_owned(),
            reason: format!("{what}: private_key is not a usable RSA key (PKCS#8)"),
        }),
        (Err(e), None) => Err(Error::GcpCredentials {
            secret: label.to_owned(),
            reason: format!("token request refused: {e}"),
        }),
    }
}

/// The clients of one provider: Compute Engine's, and the Cloud SQL and GCS listings'.
#[derive(Debug)]
pub(super) struct Clients {
    pub compute: Compute,
    pub rest: Rest,
}

impl GcpProvider {
    pub(super) async fn client(&self, ctx: &ProviderContext) -> Result<Arc<Clients>> {
        self.client
            .get_or_try_init(|| async { self.build_client(ctx).await.map(Arc::new) })
            .await
            .cloned()
    }

    /// The credentials, their label and what their key is (see [`check`]): the policy's Secret,
    /// else the key file [`KEY_FILE_VAR`] named, else the metadata server.
    async fn credentials(
        &self,
        ctx: &ProviderContext,
    ) -> Result<(Credentials, String, Option<String>)> {
        let Some(name) = &self.spec.credentials_secret else {
            if let Some(path) = &self.key_file {
                let credentials = key_file_credentials(path).await?;
                return Ok((credentials, key_file_label(path), Some("the key".into())));
            }
            let credentials = metadata_credentials(&self.metadata_host)?;
            return Ok((credentials, "metadata server".into(), None));
        };
        let label = format!("Secret {name}");
        let secret = policy_secret(ctx, name, |reason| Error::GcpCredentials {
            secret: label.clone(),
            reason,
        })
        .await?;
        let key = format!("key {SERVICE_ACCOUNT_KEY}");
        Ok((secret_credentials(&secret)?, label, Some(key)))
    }

    async fn build_client(&self, ctx: &ProviderContext) -> Result<Clients> {
        if self.spec.projects.is_empty() {
            return Err(Error::Provider {
                provider: "gcp",
                message: "spec.providers[].gcp.projects is empty".into(),
            });
        }
        // google-cloud-auth signs with the default provider; ours is ring (an error only says
        // that a provider is installed already).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (credentials, label, key) = self.credentials(ctx).await?;
        check(&credentials, &label, key.as_deref()).await?;
        let endpoint = self.spec.endpoint_url.as_deref();
        let compute = Compute::new(&credentials, &label, endpoint, self.retry).await?;
        let rest = Rest::new(
            azure_core::new_http_client(),
            credentials,
            &label,
            endpoint,
            self.retry,
        );
        tracing::debug!(policy = %ctx.policy, credential = %label, "GCP clients");
        Ok(Clients { compute, rest })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_json(private_key: &str) -> String {
        serde_json::json!({
            "type": "service_account",
            "project_id": "p",
            "private_key_id": "k1",
            "client_email": "scanner@p.iam.gserviceaccount.com",
            "private_key": private_key,
        })
        .to_string()
    }

    #[test]
    fn malformed_keys_are_named_never_shown() {
        let err = |json: &str| {
            key_credentials(json, "Secret gcp", "key serviceAccountKey")
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("s3cr3t-not-json"),
            "GCP credentials Secret gcp: key serviceAccountKey: is not a JSON object"
        );
        let e = err(&key_json("czNjcjN0"));
        assert!(e.ends_with("private_key has no PRIVATE KEY block"), "{e}");
        assert!(!e.contains("czNjcjN0"));
        let e = err(r#"{"type": "authorized_user", "client_email": "x"}"#);
        assert!(
            e.ends_with("type is authorized_user, not service_account"),
            "{e}"
        );
        let e = err(r#"{"type": "service_account"}"#);
        assert!(e.ends_with("field client_email is missing"), "{e}");
    }

    #[tokio::test]
    async fn unusable_keys_fail_the_first_token() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let c = key_credentials(
            &key_json("-----BEGIN PRIVATE KEY-----\nczNjcjN0\n-----END PRIVATE KEY-----\n"),
            "Secret gcp",
            "key serviceAccountKey",
        )
        .unwrap();
        let e = check(&c, "Secret gcp", Some("key serviceAccountKey"))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("private_key is not a usable RSA key (PKCS#8)"),
            "{e}"
        );
        assert!(!e.contains("czNjcjN0"));
    }

    #[tokio::test]
    async fn key_files_are_named_never_shown() {
        let dir = std::env::temp_dir().join(format!("snapsentry-gcp-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("absent.json");
        let e = key_file_credentials(&missing)
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "GCP credentials GOOGLE_APPLICATION_CREDENTIALS file {}: unreadable: entity not found",
                missing.display()
            )
        );
        let file = dir.join("key.json");
        std::fs::write(&file, "{s3cr3t").unwrap();
        let e = key_file_credentials(&file).await.unwrap_err().to_string();
        assert!(
            e.ends_with(&format!(
                "file {}: the key: is not a JSON object",
                file.display()
            )),
            "{e}"
        );
        assert!(!e.contains("s3cr3t"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn secrets_without_the_key_are_named() {
        let e = secret_credentials(&crate::testing::secret("gcp-creds", &[("other", "s3cr3t")]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "GCP credentials Secret gcp-creds: key serviceAccountKey is not set"
        );
        let e = secret_credentials(&crate::testing::secret(
            "gcp-creds",
            &[("serviceAccountKey", "{s3cr3t")],
        ))
        .unwrap_err()
        .to_string();
        assert!(!e.contains("s3cr3t"), "{e}");
    }
}
