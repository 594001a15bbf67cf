//! The clients of an [`AzureProvider`]: its credential (from the policy's `credentialsSecret`,
//! workload identity or managed identity, in that order), the generated Compute client and the
//! ARM REST client, built on first use and shared by every call on the same provider value.

use std::sync::Arc;

use azure_core::{HttpClient, TransportOptions, Url};
use k8s_openapi::api::core::v1::Secret;

use super::AzureProvider;
use super::arm::Arm;
use super::auth::{
    AzureCredential, CLIENT_CERTIFICATE_KEY, CLIENT_SECRET_KEY, DEFAULT_AUTHORITY,
    DEFAULT_IMDS_ENDPOINT,
};
use crate::ProviderContext;
use crate::credentials::{policy_secret, secret_text};
use crate::error::{Error, Result};

/// Default Azure Resource Manager endpoint (the public cloud).
pub const DEFAULT_ARM_ENDPOINT: &str = "https://management.azure.com";

/// Clients of one provider.
pub(super) struct Clients {
    pub(super) compute: azure_mgmt_compute::package_2024_07_01::Client,
    pub(super) arm: Arm,
}

pub(super) fn provider_error(message: impl Into<String>) -> Error {
    Error::Provider {
        provider: "azure",
        message: message.into(),
    }
}

/// The credential of a `credentialsSecret`: `clientSecret`, else `clientCertificate`. Errors name
/// the Secret and the key, never a value.
pub fn secret_credential(
    secret: &Secret,
    authority: &str,
    tenant: &str,
    client_id: &str,
    http: Arc<dyn HttpClient>,
) -> Result<AzureCredential> {
    let label = format!(
        "Secret {}",
        secret.metadata.name.as_deref().unwrap_or_default()
    );
    let refused = |reason| Error::AzureCredentials {
        secret: label.clone(),
        reason,
    };
    if let Some(value) = secret_text(secret, CLIENT_SECRET_KEY, refused)? {
        return Ok(AzureCredential::client_secret(
            authority, tenant, client_id, value, &label, http,
        ));
    }
    if let Some(pem) = secret_text(secret, CLIENT_CERTIFICATE_KEY, refused)? {
        return AzureCredential::client_certificate(
            authority, tenant, client_id, &pem, &label, http,
        );
    }
    Err(Error::AzureCredentials {
        secret: label,
        reason: format!("neither key {CLIENT_SECRET_KEY} nor key {CLIENT_CERTIFICATE_KEY} is set"),
    })
}

impl AzureProvider {
    /// The ARM endpoint without a trailing slash.
    pub(super) fn arm_endpoint(&self) -> String {
        self.spec
            .arm_endpoint
            .as_deref()
            .unwrap_or(DEFAULT_ARM_ENDPOINT)
            .trim_end_matches('/')
            .to_owned()
    }

    pub(super) async fn clients(&self, ctx: &ProviderContext) -> Result<Arc<Clients>> {
        self.clients
            .get_or_try_init(|| async { self.build_clients(ctx).await.map(Arc::new) })
            .await
            .cloned()
    }

    /// The tenant and client id of an app registration: the spec's, else the environment's.
    fn app(&self, what: &str) -> Result<(String, String)> {
        let tenant = self
            .spec
            .tenant_id
            .clone()
            .or_else(|| self.env.tenant_id.clone());
        let client = self
            .spec
            .client_id
            .clone()
            .or_else(|| self.env.client_id.clone());
        match (tenant, client) {
            (Some(t), Some(c)) => Ok((t, c)),
            _ => Err(Error::AzureCredentials {
                secret: what.to_owned(),
                reason: "tenantId and clientId are required (in the provider or as \
                         AZURE_TENANT_ID and AZURE_CLIENT_ID)"
                    .into(),
            }),
        }
    }

    async fn credential(
        &self,
        ctx: &ProviderContext,
        http: Arc<dyn HttpClient>,
    ) -> Result<AzureCredential> {
        let authority = self
            .spec
            .authority_host
            .clone()
            .or_else(|| self.env.authority_host.clone())
            .unwrap_or_else(|| DEFAULT_AUTHORITY.to_owned());
        if let Some(name) = &self.spec.credentials_secret {
            let label = format!("Secret {name}");
            let secret = policy_secret(ctx, name, |reason| Error::AzureCredentials {
                secret: label.clone(),
                reason,
            })
            .await?;
            let (tenant, client_id) = self.app(&label)?;
            return secret_credential(&secret, &authority, &tenant, &client_id, http);
        }
        if let Some(value) = &self.env.client_secret {
            let (tenant, client_id) = self.app("AZURE_CLIENT_SECRET")?;
            return Ok(AzureCredential::client_secret(
                &authority,
                &tenant,
                &client_id,
                value.clone(),
                "AZURE_CLIENT_SECRET",
                http,
            ));
        }
        if let Some(path) = &self.env.client_certificate_path {
            let label = "AZURE_CLIENT_CERTIFICATE_PATH";
            let (tenant, client_id) = self.app(label)?;
            let pem =
                tokio::fs::read_to_string(path)
                    .await
                    .map_err(|e| Error::AzureCredentials {
                        secret: label.into(),
                        reason: format!("reading {}: {e}", path.display()),
                    })?;
            return AzureCredential::client_certificate(
                &authority, &tenant, &client_id, &pem, label, http,
            );
        }
        if let Some(file) = &self.env.federated_token_file {
            let (tenant, client_id) = self.app("workload identity")?;
            return Ok(AzureCredential::workload_identity(
                &authority,
                &tenant,
                &client_id,
                file.clone(),
                http,
            ));
        }
        let endpoint = self
            .env
            .imds_endpoint
            .as_deref()
            .unwrap_or(DEFAULT_IMDS_ENDPOINT);
        Ok(AzureCredential::managed_identity(
            endpoint,
            self.spec.client_id.as_deref(),
            http,
        ))
    }

    async fn build_clients(&self, ctx: &ProviderContext) -> Result<Clients> {
        if self.spec.subscriptions.is_empty() {
            return Err(provider_error(
                "spec.providers[].azure.subscriptions is empty",
            ));
        }
        let endpoint = self.arm_endpoint();
        let url = Url::parse(&format!("{endpoint}/"))
            .map_err(|_| provider_error(format!("armEndpoint {endpoint} is not a URL")))?;
        let scope = format!("{endpoint}/.default");
        let http = azure_core::new_http_client();
        let credential = Arc::new(self.credential(ctx, http.clone()).await?);
        // A first token now: a refused credential fails here, as an AzureCredentials error,
        // rather than inside the first Compute call; later calls take it from the cache.
        credential.token(&scope).await?;
        tracing::debug!(policy = %ctx.policy, credential = credential.kind_name(), %endpoint, "Azure clients");
        let compute = azure_mgmt_compute::package_2024_07_01::Client::builder(credential.clone())
            .endpoint(url.clone())
            .scopes(&[scope.as_str()])
            .transport(TransportOptions::new(http.clone()))
            .build()
            .map_err(|e| provider_error(format!("building the Compute client: {e}")))?;
        let arm = Arm::new(http, url, credential, scope, self.retry);
        Ok(Clients { compute, arm })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        crate::testing::secret("azure-creds", pairs)
    }

    #[test]
    fn credentials_from_a_secret_name_keys_never_values() {
        let http = azure_core::new_http_client();
        let c = secret_credential(
            &secret(&[("clientSecret", "s3cr3t-value\n")]),
            DEFAULT_AUTHORITY,
            "t",
            "c",
            http.clone(),
        )
        .unwrap();
        assert_eq!(c.kind_name(), "client secret");
        let e = secret_credential(
            &secret(&[("other", "x")]),
            DEFAULT_AUTHORITY,
            "t",
            "c",
            http.clone(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "Azure credentials Secret azure-creds: neither key clientSecret nor key \
             clientCertificate is set"
        );
        let e = secret_credential(
            &secret(&[("clientCertificate", "not-a-pem-s3cr3t")]),
            DEFAULT_AUTHORITY,
            "t",
            "c",
            http,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "Azure credentials Secret azure-creds: key clientCertificate: no CERTIFICATE block"
        );
    }
}
