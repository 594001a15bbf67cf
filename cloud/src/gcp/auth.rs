//! Access tokens for Google Cloud APIs: a service account's JSON key (an RS256-signed JWT
//! exchanged at the key's token endpoint, the OAuth 2.0 JWT-bearer grant) or the metadata server
//! (GKE workload identity, or the node's service account).
//!
//! Tokens are cached until shortly before they expire. Neither the key nor a token is ever
//! formatted: `Debug` shows the kind of credential and the service account's email only, and
//! errors name the key's fields and the token endpoint's error code, never a value.

use std::sync::Arc;

use azure_core::{HttpClient, Method, Request, Url};
use ring::signature::RsaKeyPair;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::azure::Retry;
use crate::azure::arm::send_with_retries;
use crate::azure::assertion::{pem_blocks, sign_jwt};
use crate::error::{Error, Result};

/// The Secret key holding a service account's JSON key.
pub const SERVICE_ACCOUNT_KEY: &str = "serviceAccountKey";
/// The scope every token is asked for.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The metadata server's host when `GCE_METADATA_HOST` is not set.
pub const DEFAULT_METADATA_HOST: &str = "metadata.google.internal";
/// The metadata server's token path for the pod's (or node's) service account.
const METADATA_TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
/// How long a signed grant is valid (Google accepts at most an hour).
const ASSERTION_LIFETIME_SECS: i64 = 3600;
/// A cached token is replaced this long before it expires.
const REFRESH_MARGIN_SECS: i64 = 300;

/// A bearer token; `Debug` hides it.
#[derive(Clone)]
pub struct AccessToken(String);

impl AccessToken {
    /// The token, for an `Authorization: Bearer` header only.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

enum Kind {
    ServiceAccount {
        email: String,
        key: Box<RsaKeyPair>,
        token_uri: String,
    },
    Metadata {
        host: String,
    },
}

/// Where tokens come from, with a cache.
pub struct GcpCredential {
    kind: Kind,
    /// Names the credential in errors (`Secret gcp-key`, `metadata server`).
    label: String,
    http: Arc<dyn HttpClient>,
    retry: Retry,
    cached: Mutex<Option<(AccessToken, i64)>>,
}

impl std::fmt::Debug for GcpCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("GcpCredential");
        d.field("kind", &self.kind_name())
            .field("label", &self.label);
        if let Kind::ServiceAccount { email, .. } = &self.kind {
            d.field("email", email);
        }
        d.finish_non_exhaustive()
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl GcpCredential {
    /// The credential of a service account's JSON key (`type: service_account`, `client_email`,
    /// `private_key` as PKCS#8 PEM, `token_uri`); `token_uri` overrides the key's. `label` names
    /// the key's origin in errors.
    pub fn service_account(
        json: &str,
        token_uri: Option<&str>,
        label: &str,
        http: Arc<dyn HttpClient>,
        retry: Retry,
    ) -> Result<Self> {
        let bad = |reason: String| Error::GcpCredentials {
            secret: label.to_owned(),
            reason: format!("key {SERVICE_ACCOUNT_KEY}: {reason}"),
        };
        let key: Value =
            serde_json::from_str(json).map_err(|_| bad("is not a JSON object".into()))?;
        let field = |name: &str| {
            key[name]
                .as_str()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| bad(format!("field {name} is missing")))
        };
        if let Some(kind) = key["type"].as_str().filter(|t| *t != "service_account") {
            return Err(bad(format!("type is {kind}, not service_account")));
        }
        let email = field("client_email")?.to_owned();
        let pem = field("private_key")?;
        let der = pem_blocks(pem, "PRIVATE KEY")
            .map_err(|e| bad(format!("private_key: {e}")))?
            .into_iter()
            .next()
            .ok_or_else(|| bad("private_key has no PRIVATE KEY block".into()))?;
        let rsa = RsaKeyPair::from_pkcs8(&der)
            .map_err(|e| bad(format!("private_key is not a usable RSA key ({e})")))?;
        let token_uri = match token_uri {
            Some(uri) => uri.to_owned(),
            None => field("token_uri")?.to_owned(),
        };
        Ok(Self {
            kind: Kind::ServiceAccount {
                email,
                key: Box::new(rsa),
                token_uri,
            },
            label: label.to_owned(),
            http,
            retry,
            cached: Mutex::new(None),
        })
    }

    /// The metadata server at `host` (`metadata.google.internal`, or `GCE_METADATA_HOST`).
    pub fn metadata_server(host: &str, http: Arc<dyn HttpClient>, retry: Retry) -> Self {
        Self {
            kind: Kind::Metadata {
                host: host.trim_end_matches('/').to_owned(),
            },
            label: "metadata server".into(),
            http,
            retry,
            cached: Mutex::new(None),
        }
    }

    /// `service account key` or `metadata server`.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            Kind::ServiceAccount { .. } => "service account key",
            Kind::Metadata { .. } => "metadata server",
        }
    }

    fn error(&self, reason: impl Into<String>) -> Error {
        Error::GcpCredentials {
            secret: self.label.clone(),
            reason: reason.into(),
        }
    }

    /// A token for [`CLOUD_PLATFORM_SCOPE`], from the cache while it is fresh.
    pub async fn token(&self) -> Result<AccessToken> {
        let mut cached = self.cached.lock().await;
        if let Some((token, expires)) = cached.as_ref()
            && *expires > unix_now() + REFRESH_MARGIN_SECS
        {
            return Ok(token.clone());
        }
        let (token, lifetime) = self.fetch().await?;
        *cached = Some((token.clone(), unix_now() + lifetime));
        Ok(token)
    }

    async fn fetch(&self) -> Result<(AccessToken, i64)> {
        let req = match &self.kind {
            Kind::ServiceAccount {
                email,
                key,
                token_uri,
            } => {
                let assertion = self.assertion(email, key, token_uri)?;
                let url = Url::parse(token_uri)
                    .map_err(|_| self.error(format!("token URI {token_uri} is not a URL")))?;
                let mut req = Request::new(url, Method::Post);
                req.insert_header("content-type", "application/x-www-form-urlencoded");
                let form = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
                    .append_pair("assertion", &assertion)
                    .finish();
                req.set_body(form);
                req
            }
            Kind::Metadata { host } => {
                let root = if host.contains("://") {
                    host.clone()
                } else {
                    format!("http://{host}")
                };
                let url = Url::parse(&format!("{root}{METADATA_TOKEN_PATH}"))
                    .map_err(|_| self.error(format!("metadata host {host} is not usable")))?;
                let mut req = Request::new(url, Method::Get);
                req.insert_header("metadata-flavor", "Google");
                req
            }
        };
        let answer = send_with_retries(self.http.as_ref(), &req, &self.retry, "token")
            .await
            .map_err(|e| self.error(e))?;
        let body: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        if !(200..300).contains(&answer.status) {
            let code = body["error"].as_str().unwrap_or("no error code");
            return Err(self.error(format!(
                "token request refused: HTTP {} {code}",
                answer.status
            )));
        }
        let token = body["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| self.error("the token answer has no access_token"))?;
        let lifetime = body["expires_in"].as_i64().unwrap_or(300);
        Ok((AccessToken(token.to_owned()), lifetime))
    }

    /// The signed JWT-bearer grant of a service account.
    fn assertion(&self, email: &str, key: &RsaKeyPair, audience: &str) -> Result<String> {
        let now = unix_now();
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        let claims = serde_json::json!({
            "iss": email,
            "scope": CLOUD_PLATFORM_SCOPE,
            "aud": audience,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        sign_jwt(key, &header, &claims).map_err(|_| self.error("signing the token request failed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_json(private_key: &str) -> String {
        serde_json::json!({
            "type": "service_account",
            "client_email": "scanner@p.iam.gserviceaccount.com",
            "private_key": private_key,
            "token_uri": "https://oauth2.googleapis.com/token",
        })
        .to_string()
    }

    #[test]
    fn malformed_keys_are_named_never_shown() {
        let http = azure_core::new_http_client();
        let err = |json: &str| {
            GcpCredential::service_account(json, None, "Secret gcp", http.clone(), Retry::default())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("s3cr3t-not-json"),
            "GCP credentials Secret gcp: key serviceAccountKey: is not a JSON object"
        );
        let e = err(&key_json(
            "-----BEGIN PRIVATE KEY-----\nczNjcjN0\n-----END PRIVATE KEY-----",
        ));
        assert!(e.starts_with("GCP credentials Secret gcp: key serviceAccountKey: private_key is not a usable RSA key"), "{e}");
        assert!(!e.contains("czNjcjN0"));
        let e = err(r#"{"type": "authorized_user", "client_email": "x"}"#);
        assert!(
            e.ends_with("type is authorized_user, not service_account"),
            "{e}"
        );
        let e = err(r#"{"type": "service_account"}"#);
        assert!(e.ends_with("field client_email is missing"), "{e}");
    }

    #[test]
    fn tokens_never_show() {
        let t = AccessToken("ya29.s3cr3t".into());
        assert_eq!(format!("{t:?}"), "AccessToken(<redacted>)");
        let c = GcpCredential::metadata_server(
            "127.0.0.1:1",
            azure_core::new_http_client(),
            Retry::default(),
        );
        assert_eq!(c.kind_name(), "metadata server");
        assert!(!format!("{c:?}").contains("127.0.0.1:1"));
    }
}
