//! The REST client of a [`GcpProvider`], built on first use: credentials from the policy's
//! `credentialsSecret` (key `serviceAccountKey`) or else the metadata server.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use super::auth::{DEFAULT_METADATA_HOST, GcpCredential, SERVICE_ACCOUNT_KEY};
use super::provider::GcpProvider;
use super::rest::Gcp;
use crate::ProviderContext;
use crate::azure::Retry;
use crate::error::{Error, Result};

/// The metadata server's host: `GCE_METADATA_HOST` (as Google's client libraries read it), else
/// [`DEFAULT_METADATA_HOST`].
pub fn metadata_host_from_env() -> String {
    std::env::var("GCE_METADATA_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| DEFAULT_METADATA_HOST.to_owned())
}

/// The credential of a `credentialsSecret` (key [`SERVICE_ACCOUNT_KEY`]). Errors name the
/// Secret and the key, never a value.
pub fn secret_credential(
    secret: &Secret,
    token_uri: Option<&str>,
    http: Arc<dyn azure_core::HttpClient>,
    retry: Retry,
) -> Result<GcpCredential> {
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
    GcpCredential::service_account(json, token_uri, &label, http, retry)
}

impl GcpProvider {
    pub(super) async fn client(&self, ctx: &ProviderContext) -> Result<Arc<Gcp>> {
        self.client
            .get_or_try_init(|| async { self.build_client(ctx).await.map(Arc::new) })
            .await
            .cloned()
    }

    async fn credential(
        &self,
        ctx: &ProviderContext,
        http: Arc<dyn azure_core::HttpClient>,
    ) -> Result<GcpCredential> {
        let Some(name) = &self.spec.credentials_secret else {
            return Ok(GcpCredential::metadata_server(
                &self.metadata_host,
                http,
                self.retry,
            ));
        };
        let label = format!("Secret {name}");
        let client = ctx.client.clone().ok_or_else(|| Error::GcpCredentials {
            secret: label.clone(),
            reason: "no Kubernetes client to read it with".into(),
        })?;
        let api: Api<Secret> = Api::namespaced(client, &ctx.namespace);
        let secret = api
            .get_opt(name)
            .await?
            .ok_or_else(|| Error::GcpCredentials {
                secret: label,
                reason: format!("not found in namespace {}", ctx.namespace),
            })?;
        secret_credential(&secret, self.spec.token_uri.as_deref(), http, self.retry)
    }

    async fn build_client(&self, ctx: &ProviderContext) -> Result<Gcp> {
        if self.spec.projects.is_empty() {
            return Err(Error::Provider {
                provider: "gcp",
                message: "spec.providers[].gcp.projects is empty".into(),
            });
        }
        let http = azure_core::new_http_client();
        let credential = Arc::new(self.credential(ctx, http.clone()).await?);
        let gcp = Gcp::new(
            http,
            credential,
            self.spec.endpoint_url.as_deref(),
            self.retry,
        );
        // A first token now: a refused credential fails here, as a GcpCredentials error.
        gcp.check_credential().await?;
        tracing::debug!(policy = %ctx.policy, credential = gcp.credential_kind(), "GCP client");
        Ok(gcp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_without_the_key_are_named() {
        let http = azure_core::new_http_client();
        let e = secret_credential(
            &crate::testing::secret("gcp-creds", &[("other", "s3cr3t")]),
            None,
            http.clone(),
            Retry::default(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "GCP credentials Secret gcp-creds: key serviceAccountKey is not set"
        );
        let e = secret_credential(
            &crate::testing::secret("gcp-creds", &[("serviceAccountKey", "{s3cr3t")]),
            None,
            http,
            Retry::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains("s3cr3t"), "{e}");
    }
}
