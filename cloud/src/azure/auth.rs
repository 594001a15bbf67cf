//! Microsoft Entra ID tokens for Azure Resource Manager: [`AzureCredential`], an
//! `azure_core::auth::TokenCredential` (for the generated Compute client and the ARM REST client)
//! built from the provider's configuration.
//!
//! Credentials, first match wins (the order of the CRD's `AzureProvider` doc):
//! - `credentialsSecret`: key `clientSecret` (client-credentials flow with the secret) or
//!   `clientCertificate` (a PEM certificate and its unencrypted key; the flow with an RS256 JWT
//!   client assertion), of the app registration `clientId` in `tenantId`;
//! - workload identity: the client assertion is the contents of the federated token file (read
//!   again for every token, as the kubelet rotates it);
//! - managed identity: the instance metadata service (IMDS), user-assigned when `clientId` is set.
//!
//! Tokens are cached until [`REFRESH_BEFORE`] their expiry. Errors name keys, files and Entra's
//! error codes, never a secret, an assertion or a token; `Debug` shows none of them either.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use azure_core::auth::{AccessToken, Secret, TokenCredential};
use azure_core::{HttpClient, Method, Request, Url};
use tokio::sync::Mutex;

use super::arm::{Retry, execute};
use super::assertion::CertificateKey;
use crate::error::{Error, Result};

/// Keys of a `credentialsSecret`.
pub const CLIENT_SECRET_KEY: &str = "clientSecret";
pub const CLIENT_CERTIFICATE_KEY: &str = "clientCertificate";

/// Default Microsoft Entra authority.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// Default instance metadata token endpoint of managed identities.
pub const DEFAULT_IMDS_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";

/// A cached token is replaced this long before it expires.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// What the operator's environment says about Azure credentials. [`AzureEnvironment::from_env`]
/// reads the variables the AKS workload identity webhook sets, the Azure SDKs' usual client
/// secret and certificate variables (the chart's `cloud.azure.credentialsSecret`), plus
/// snapsentry's own override of the IMDS endpoint; tests build one directly.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AzureEnvironment {
    /// `AZURE_FEDERATED_TOKEN_FILE`: the projected service-account token of workload identity.
    pub federated_token_file: Option<PathBuf>,
    /// `AZURE_CLIENT_ID`.
    pub client_id: Option<String>,
    /// `AZURE_TENANT_ID`.
    pub tenant_id: Option<String>,
    /// `AZURE_AUTHORITY_HOST`.
    pub authority_host: Option<String>,
    /// `AZURE_CLIENT_SECRET`: the app registration's client secret (never printed).
    pub client_secret: Option<String>,
    /// `AZURE_CLIENT_CERTIFICATE_PATH`: a PEM file with the app registration's certificate and
    /// private key.
    pub client_certificate_path: Option<PathBuf>,
    /// `SNAPSENTRY_AZURE_IMDS_ENDPOINT`: the managed-identity token endpoint (default
    /// [`DEFAULT_IMDS_ENDPOINT`]; tests point it at a fake).
    pub imds_endpoint: Option<String>,
}

impl AzureEnvironment {
    /// The process environment's values (empty ones count as unset).
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Self {
            federated_token_file: var("AZURE_FEDERATED_TOKEN_FILE").map(PathBuf::from),
            client_id: var("AZURE_CLIENT_ID"),
            tenant_id: var("AZURE_TENANT_ID"),
            authority_host: var("AZURE_AUTHORITY_HOST"),
            client_secret: var("AZURE_CLIENT_SECRET"),
            client_certificate_path: var("AZURE_CLIENT_CERTIFICATE_PATH").map(PathBuf::from),
            imds_endpoint: var("SNAPSENTRY_AZURE_IMDS_ENDPOINT"),
        }
    }
}

impl std::fmt::Debug for AzureEnvironment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureEnvironment")
            .field("federated_token_file", &self.federated_token_file)
            .field("client_id", &self.client_id)
            .field("tenant_id", &self.tenant_id)
            .field("authority_host", &self.authority_host)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("client_certificate_path", &self.client_certificate_path)
            .field("imds_endpoint", &self.imds_endpoint)
            .finish()
    }
}

/// How the credential proves itself to Entra ID.
enum Kind {
    ClientSecret(String),
    ClientCertificate(Box<CertificateKey>),
    /// The federated token file.
    WorkloadIdentity(PathBuf),
    /// The IMDS endpoint.
    ManagedIdentity(String),
}

/// A token source for Azure Resource Manager.
pub struct AzureCredential {
    kind: Kind,
    /// `{authority}/{tenant}/oauth2/v2.0/token` (unused for managed identity).
    token_url: String,
    client_id: Option<String>,
    /// What errors call this credential: `Secret <name>`, `workload identity`, `managed identity`.
    label: String,
    http: Arc<dyn HttpClient>,
    retry: Retry,
    cache: Mutex<HashMap<String, AccessToken>>,
}

impl std::fmt::Debug for AzureCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureCredential")
            .field("kind", &self.kind_name())
            .field("label", &self.label)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

fn credentials_error(label: &str, reason: impl Into<String>) -> Error {
    Error::AzureCredentials {
        secret: label.to_owned(),
        reason: reason.into(),
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `expires_in` as Entra (a number) or IMDS (a string) sends it.
fn seconds(value: &serde_json::Value) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
}

impl AzureCredential {
    fn new(kind: Kind, label: String, http: Arc<dyn HttpClient>) -> Self {
        Self {
            kind,
            token_url: String::new(),
            client_id: None,
            label,
            http,
            retry: Retry::default(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn entra(mut self, authority: &str, tenant: &str, client_id: &str) -> Self {
        self.token_url = format!(
            "{}/{}/oauth2/v2.0/token",
            authority.trim_end_matches('/'),
            tenant
        );
        self.client_id = Some(client_id.to_owned());
        self
    }

    /// Client-credentials flow with a client secret.
    pub fn client_secret(
        authority: &str,
        tenant: &str,
        client_id: &str,
        secret: String,
        label: &str,
        http: Arc<dyn HttpClient>,
    ) -> Self {
        Self::new(Kind::ClientSecret(secret), label.to_owned(), http)
            .entra(authority, tenant, client_id)
    }

    /// Client-credentials flow with a certificate (`pem`: the certificate and its unencrypted
    /// private key).
    pub fn client_certificate(
        authority: &str,
        tenant: &str,
        client_id: &str,
        pem: &str,
        label: &str,
        http: Arc<dyn HttpClient>,
    ) -> Result<Self> {
        let key = CertificateKey::from_pem(pem).map_err(|reason| {
            credentials_error(label, format!("key {CLIENT_CERTIFICATE_KEY}: {reason}"))
        })?;
        Ok(Self::new(
            Kind::ClientCertificate(Box::new(key)),
            label.to_owned(),
            http,
        )
        .entra(authority, tenant, client_id))
    }

    /// Workload identity: the federated token in `token_file` is the client assertion.
    pub fn workload_identity(
        authority: &str,
        tenant: &str,
        client_id: &str,
        token_file: PathBuf,
        http: Arc<dyn HttpClient>,
    ) -> Self {
        Self::new(
            Kind::WorkloadIdentity(token_file),
            "workload identity".into(),
            http,
        )
        .entra(authority, tenant, client_id)
    }

    /// Managed identity through the IMDS token endpoint `endpoint`; `client_id` picks a
    /// user-assigned identity.
    pub fn managed_identity(
        endpoint: &str,
        client_id: Option<&str>,
        http: Arc<dyn HttpClient>,
    ) -> Self {
        let mut c = Self::new(
            Kind::ManagedIdentity(endpoint.to_owned()),
            "managed identity".into(),
            http,
        );
        c.client_id = client_id.map(str::to_owned);
        c
    }

    /// Which kind of credential this is: `client secret`, `client certificate`, `workload
    /// identity`, `managed identity`.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            Kind::ClientSecret(_) => "client secret",
            Kind::ClientCertificate(_) => "client certificate",
            Kind::WorkloadIdentity(_) => "workload identity",
            Kind::ManagedIdentity(_) => "managed identity",
        }
    }

    /// The token request for `scope`.
    async fn request(&self, scope: &str) -> Result<Request> {
        let form = |pairs: &[(&str, &str)]| {
            let mut s = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in pairs {
                s.append_pair(k, v);
            }
            s.finish()
        };
        let client_id = self.client_id.as_deref().unwrap_or_default();
        let body = match &self.kind {
            Kind::ManagedIdentity(endpoint) => {
                let mut url = Url::parse(endpoint).map_err(|_| {
                    credentials_error(&self.label, "the IMDS endpoint is not a URL")
                })?;
                {
                    let mut q = url.query_pairs_mut();
                    q.append_pair("api-version", "2018-02-01");
                    q.append_pair("resource", scope.trim_end_matches("/.default"));
                    if let Some(id) = &self.client_id {
                        q.append_pair("client_id", id);
                    }
                }
                let mut req = Request::new(url, Method::Get);
                req.insert_header("metadata", "true");
                return Ok(req);
            }
            Kind::ClientSecret(secret) => form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret),
                ("scope", scope),
            ]),
            Kind::ClientCertificate(key) => {
                let assertion = key
                    .assertion(client_id, &self.token_url, unix_now())
                    .map_err(|r| credentials_error(&self.label, r))?;
                form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id),
                    ("client_assertion_type", ASSERTION_TYPE),
                    ("client_assertion", &assertion),
                    ("scope", scope),
                ])
            }
            Kind::WorkloadIdentity(file) => {
                let assertion = tokio::fs::read_to_string(file).await.map_err(|e| {
                    credentials_error(
                        &self.label,
                        format!(
                            "reading the federated token file {}: {}",
                            file.display(),
                            e.kind()
                        ),
                    )
                })?;
                form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id),
                    ("client_assertion_type", ASSERTION_TYPE),
                    ("client_assertion", assertion.trim()),
                    ("scope", scope),
                ])
            }
        };
        let url = Url::parse(&self.token_url)
            .map_err(|_| credentials_error(&self.label, "the authority host is not a URL"))?;
        let mut req = Request::new(url, Method::Post);
        req.insert_header("content-type", "application/x-www-form-urlencoded");
        req.set_body(body);
        Ok(req)
    }

    /// A fresh token for `scope` from Entra ID or IMDS.
    async fn fetch(&self, scope: &str) -> Result<AccessToken> {
        let req = self.request(scope).await?;
        let what = format!("{} token request", self.kind_name());
        let answer = execute(self.http.as_ref(), &req, &self.retry, &what).await;
        let answer = answer.map_err(|e| credentials_error(&self.label, e.to_string()))?;
        let body: serde_json::Value =
            serde_json::from_slice(&answer.body).unwrap_or(serde_json::Value::Null);
        if !(200..300).contains(&answer.status) {
            // Entra: {"error": "invalid_client", "error_description": "AADSTS7000215: ..."};
            // IMDS: {"error": "invalid_request", "error_description": "..."}. Neither echoes the
            // request's secret or assertion.
            let code = body["error"].as_str().unwrap_or("no error code");
            let description = body["error_description"]
                .as_str()
                .and_then(|d| d.lines().next())
                .unwrap_or_default();
            return Err(credentials_error(
                &self.label,
                format!(
                    "{what} refused: HTTP {} {code}{}{description}",
                    answer.status,
                    if description.is_empty() { "" } else { ": " }
                ),
            ));
        }
        let token = body["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| credentials_error(&self.label, format!("{what}: no access_token")))?;
        let lifetime = seconds(&body["expires_in"]).unwrap_or(300);
        let expires = time::OffsetDateTime::from_unix_timestamp(unix_now() + lifetime)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        Ok(AccessToken::new(Secret::new(token.to_owned()), expires))
    }

    /// A token for `scope`, from the cache while it is fresh.
    pub async fn token(&self, scope: &str) -> Result<AccessToken> {
        let mut cache = self.cache.lock().await;
        let fresh_until =
            time::OffsetDateTime::from_unix_timestamp(unix_now() + REFRESH_BEFORE.as_secs() as i64)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        if let Some(t) = cache.get(scope)
            && t.expires_on > fresh_until
        {
            return Ok(t.clone());
        }
        let t = self.fetch(scope).await?;
        cache.insert(scope.to_owned(), t.clone());
        Ok(t)
    }
}

#[async_trait::async_trait]
impl TokenCredential for AzureCredential {
    async fn get_token(&self, scopes: &[&str]) -> azure_core::Result<AccessToken> {
        let scope = scopes.first().copied().unwrap_or_default();
        self.token(scope).await.map_err(|e| {
            azure_core::Error::message(azure_core::error::ErrorKind::Credential, e.to_string())
        })
    }

    async fn clear_cache(&self) -> azure_core::Result<()> {
        self.cache.lock().await.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_in_as_number_or_string() {
        assert_eq!(seconds(&serde_json::json!(3599)), Some(3599));
        assert_eq!(seconds(&serde_json::json!("86399")), Some(86399));
        assert_eq!(seconds(&serde_json::json!(null)), None);
    }

    #[tokio::test]
    async fn requests_carry_the_flow_and_debug_hides_secrets() {
        let http = azure_core::new_http_client();
        let c = AzureCredential::client_secret(
            "https://login.example/",
            "tenant-1",
            "app-1",
            "s3cr3t-value".into(),
            "Secret azure-creds",
            http.clone(),
        );
        assert!(!format!("{c:?}").contains("s3cr3t"), "{c:?}");
        assert_eq!(
            c.token_url,
            "https://login.example/tenant-1/oauth2/v2.0/token"
        );
        let req = c
            .request("https://management.azure.com/.default")
            .await
            .unwrap();
        assert_eq!(req.method(), &Method::Post);
        let mi = AzureCredential::managed_identity(DEFAULT_IMDS_ENDPOINT, Some("mi-1"), http);
        let req = mi
            .request("https://management.azure.com/.default")
            .await
            .unwrap();
        let url = req.url().to_string();
        assert!(url.starts_with(DEFAULT_IMDS_ENDPOINT), "{url}");
        assert!(url.contains("api-version=2018-02-01"), "{url}");
        assert!(
            url.contains("resource=https%3A%2F%2Fmanagement.azure.com&"),
            "{url}"
        );
        assert!(url.ends_with("client_id=mi-1"), "{url}");
    }

    #[tokio::test]
    async fn a_missing_federated_token_file_is_named() {
        let c = AzureCredential::workload_identity(
            DEFAULT_AUTHORITY,
            "t",
            "c",
            PathBuf::from("/nonexistent/azure-token"),
            azure_core::new_http_client(),
        );
        let e = c.request("s").await.unwrap_err().to_string();
        assert_eq!(
            e,
            "Azure credentials workload identity: reading the federated token file \
             /nonexistent/azure-token: entity not found"
        );
    }
}
