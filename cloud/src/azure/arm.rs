//! One small typed client for the Azure Resource Manager calls that are not Compute's (Network,
//! Storage, SQL, flexible servers, Cosmos DB, Key Vault listings) and for polling long-running
//! operations: GET with a bearer token and an `api-version`, `{"value": [...], "nextLink"}`
//! paging, retries with backoff on 429 and 5xx (honouring `Retry-After`) and on connection
//! errors, and ARM's error body `{"error": {"code", "message"}}` as an [`Error::Azure`].
//!
//! It reuses azure_core's HTTP client (reqwest on rustls + ring), the one the generated Compute
//! client sends with, so there is no second HTTP or TLS stack.

use std::sync::Arc;
use std::time::Duration;

use azure_core::headers::HeaderName;
use azure_core::{HttpClient, Method, Request, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::auth::AzureCredential;
use crate::error::{Error, Result};
use crate::wait::SnapshotWait;

/// Most `Retry-After` honoured; a longer one is cut to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Retries of one request: `attempts` in all, waits doubling from `first` up to `max` unless the
/// answer names its own `Retry-After`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    pub attempts: u32,
    pub first: Duration,
    pub max: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 6,
            first: Duration::from_millis(500),
            max: Duration::from_secs(8),
        }
    }
}

/// An answer read to its end.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub headers: azure_core::headers::Headers,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &'static str) -> Option<&str> {
        self.headers
            .get_optional_str(&HeaderName::from_static(name))
    }

    fn retry_after(&self) -> Option<Duration> {
        let secs: f64 = self.header("retry-after")?.trim().parse().ok()?;
        (secs >= 0.0).then(|| Duration::from_secs_f64(secs).min(MAX_RETRY_AFTER))
    }
}

/// Whether an answer with `status` is worth another try.
pub(crate) fn retryable(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// Sends `req` through `http`, again on 429, 5xx and connection errors (waiting as `retry` and
/// `Retry-After` say), and reads the last answer to its end. `what` names the call in errors.
pub(super) async fn execute(
    http: &dyn HttpClient,
    req: &Request,
    retry: &Retry,
    what: &str,
) -> Result<Answer> {
    send_with_retries(http, req, retry, what)
        .await
        .map_err(|message| Error::Azure {
            operation: what.to_owned(),
            status: None,
            code: None,
            message,
        })
}

/// [`execute`] for any cloud over azure_core's HTTP client (GCP's REST calls use it too): the
/// last answer, or why there was none (no secret in it: connection errors name the failure).
pub(crate) async fn send_with_retries(
    http: &dyn HttpClient,
    req: &Request,
    retry: &Retry,
    what: &str,
) -> std::result::Result<Answer, String> {
    let mut wait = retry.first;
    let mut attempt = 1;
    loop {
        let outcome = match http.execute_request(req).await {
            Ok(response) => {
                let (status, headers, body) = response.deconstruct();
                body.collect().await.map(|bytes| Answer {
                    status: u16::from(status),
                    headers,
                    body: bytes.to_vec(),
                })
            }
            Err(e) => Err(e),
        };
        let (pause, last) = match outcome {
            Ok(a) if !retryable(a.status) => return Ok(a),
            Ok(a) => (a.retry_after().unwrap_or(wait), Ok(a)),
            Err(e) => (wait, Err(e)),
        };
        if attempt >= retry.attempts {
            return last.map_err(|e| format!("request failed after {attempt} attempts: {e}"));
        }
        match &last {
            Ok(a) => {
                tracing::debug!(call = %what, status = a.status, ?pause, "cloud call retried")
            }
            Err(e) => tracing::debug!(call = %what, error = %e, ?pause, "cloud call retried"),
        }
        tokio::time::sleep(pause).await;
        wait = (wait * 2).min(retry.max);
        attempt += 1;
    }
}

/// ARM's error body as an [`Error::Azure`] for `operation`.
pub(super) fn arm_error(operation: &str, status: u16, body: &[u8]) -> Error {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let e = &v["error"];
    Error::Azure {
        operation: operation.to_owned(),
        status: Some(status),
        code: e["code"].as_str().map(str::to_owned),
        message: e["message"]
            .as_str()
            .unwrap_or("no error message")
            .to_owned(),
    }
}

/// A failure of the generated Compute client as an [`Error::Azure`]: the status, ARM's code and
/// message when there was an answer, else the kind of failure.
pub(super) fn compute_error(operation: &str, e: &azure_core::Error) -> Error {
    match e.as_http_error() {
        Some(h) => Error::Azure {
            operation: operation.to_owned(),
            status: Some(u16::from(h.status())),
            code: h.error_code().map(str::to_owned),
            message: h.error_message().unwrap_or("no error message").to_owned(),
        },
        None => Error::Azure {
            operation: operation.to_owned(),
            status: match e.kind() {
                azure_core::error::ErrorKind::HttpResponse { status, .. } => {
                    Some(u16::from(*status))
                }
                _ => None,
            },
            code: None,
            // Credential failures carry this crate's own (secret-free) text.
            message: e.to_string(),
        },
    }
}

/// The HTTP status of a failed ARM call, where it had one.
pub(super) fn status_of(e: &Error) -> Option<u16> {
    match e {
        Error::Azure { status, .. } => *status,
        _ => None,
    }
}

/// Azure Resource Manager at one endpoint, with one credential.
#[derive(Clone)]
pub struct Arm {
    http: Arc<dyn HttpClient>,
    endpoint: Url,
    credential: Arc<AzureCredential>,
    scope: String,
    retry: Retry,
}

impl std::fmt::Debug for Arm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arm")
            .field("endpoint", &self.endpoint.as_str())
            .field("scope", &self.scope)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Arm {
    /// A client of `endpoint` whose tokens are asked for `scope`.
    pub fn new(
        http: Arc<dyn HttpClient>,
        endpoint: Url,
        credential: Arc<AzureCredential>,
        scope: String,
        retry: Retry,
    ) -> Self {
        Self {
            http,
            endpoint,
            credential,
            scope,
            retry,
        }
    }

    /// `target` (a path with or without query, or a full URL from ARM: a `nextLink`, an
    /// operation URL) as a URL with an `api-version` (added when missing).
    fn url(&self, target: &str, api_version: &str) -> Result<Url> {
        let mut url = self.endpoint.join(target).map_err(|_| Error::Azure {
            operation: "build URL".into(),
            status: None,
            code: None,
            message: format!("{target} is not a path or URL"),
        })?;
        if !url.query_pairs().any(|(k, _)| k == "api-version") {
            url.query_pairs_mut()
                .append_pair("api-version", api_version);
        }
        Ok(url)
    }

    /// One authenticated request; a non-2xx answer is an error.
    pub(super) async fn send(
        &self,
        method: Method,
        target: &str,
        api_version: &str,
        body: Option<&Value>,
        operation: &str,
    ) -> Result<Answer> {
        let token = self.credential.token(&self.scope).await?;
        let mut req = Request::new(self.url(target, api_version)?, method);
        req.insert_header("authorization", format!("Bearer {}", token.token.secret()));
        if let Some(body) = body {
            req.insert_header("content-type", "application/json");
            req.set_body(body.to_string());
        }
        let answer = execute(self.http.as_ref(), &req, &self.retry, operation).await?;
        if !(200..300).contains(&answer.status) {
            return Err(arm_error(operation, answer.status, &answer.body));
        }
        Ok(answer)
    }

    /// GET `target` as `T`.
    pub async fn get<T: DeserializeOwned>(
        &self,
        target: &str,
        api_version: &str,
        operation: &str,
    ) -> Result<T> {
        let answer = self
            .send(Method::Get, target, api_version, None, operation)
            .await?;
        parse(operation, &answer.body)
    }

    /// Every item of the list at `target`, following `nextLink`.
    pub async fn list<T: DeserializeOwned>(
        &self,
        target: &str,
        api_version: &str,
        operation: &str,
    ) -> Result<Vec<T>> {
        #[derive(serde::Deserialize)]
        struct Page<T> {
            #[serde(default = "Vec::new")]
            value: Vec<T>,
            #[serde(rename = "nextLink", default)]
            next_link: Option<String>,
        }
        let mut items = Vec::new();
        let mut next = Some(target.to_owned());
        while let Some(url) = next {
            let page: Page<T> = self.get(&url, api_version, operation).await?;
            items.extend(page.value);
            next = page.next_link.filter(|l| !l.is_empty());
        }
        Ok(items)
    }

    /// Waits for the long-running operation ARM started with `accepted` (the first answer):
    /// polls `Azure-AsyncOperation` until `Succeeded`, `Failed` or `Canceled` (or, without it,
    /// `Location` until it stops answering 202), honouring `Retry-After`, at most `wait.timeout`.
    /// Returns the final status body (`properties.output` holds an operation's result).
    pub(super) async fn wait_operation(
        &self,
        headers: &azure_core::headers::Headers,
        wait: &SnapshotWait,
        operation: &str,
    ) -> Result<Value> {
        let header = |name: &'static str| {
            headers
                .get_optional_str(&HeaderName::from_static(name))
                .map(str::to_owned)
        };
        let (url, by_status) = match (header("azure-asyncoperation"), header("location")) {
            (Some(u), _) => (u, true),
            (None, Some(u)) => (u, false),
            (None, None) => return Ok(Value::Null),
        };
        let started = tokio::time::Instant::now();
        let mut poll = header("retry-after")
            .and_then(|s| s.trim().parse().ok())
            .map_or(wait.first_poll, Duration::from_secs)
            .min(wait.max_poll);
        loop {
            tokio::time::sleep(poll).await;
            let answer = self
                .send(Method::Get, &url, "2024-03-02", None, operation)
                .await?;
            let body: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
            let done = if by_status {
                match body["status"].as_str().unwrap_or("InProgress") {
                    "Succeeded" => return Ok(body),
                    s @ ("Failed" | "Canceled") => {
                        let e = &body["error"];
                        return Err(Error::Azure {
                            operation: operation.to_owned(),
                            status: None,
                            code: e["code"].as_str().map(str::to_owned),
                            message: format!(
                                "operation {s}: {}",
                                e["message"].as_str().unwrap_or("no error message")
                            ),
                        });
                    }
                    _ => false,
                }
            } else {
                answer.status != 202
            };
            if done {
                return Ok(
                    serde_json::json!({"status": "Succeeded", "properties": {"output": body}}),
                );
            }
            if started.elapsed() + poll > wait.timeout {
                return Err(Error::Azure {
                    operation: operation.to_owned(),
                    status: None,
                    code: None,
                    message: format!("not done after {:?}", wait.timeout),
                });
            }
            poll = answer
                .retry_after()
                .filter(|d| !d.is_zero())
                .unwrap_or_else(|| wait.next_poll(poll.max(wait.first_poll)))
                .min(wait.max_poll);
        }
    }
}

/// `body` as `T`; a mismatch names the operation and serde's reason (which quotes no values of
/// the body beyond a field name).
pub(super) fn parse<T: DeserializeOwned>(operation: &str, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| Error::Azure {
        operation: operation.to_owned(),
        status: None,
        code: None,
        message: format!("unexpected answer: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm_errors_keep_code_and_message() {
        let body = br#"{"error": {"code": "AuthorizationFailed", "message": "no access"}}"#;
        let e = arm_error("list storageAccounts", 403, body);
        assert_eq!(
            e.to_string(),
            "Azure list storageAccounts: HTTP 403 AuthorizationFailed: no access"
        );
        assert_eq!(status_of(&e), Some(403));
        let e = arm_error("x", 502, b"<html>");
        assert_eq!(e.to_string(), "Azure x: HTTP 502: no error message");
        assert!(retryable(429) && retryable(503) && !retryable(404) && !retryable(409));
    }
}
