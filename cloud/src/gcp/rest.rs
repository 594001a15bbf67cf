//! One small typed client for the Google Cloud REST calls the provider makes (Compute Engine v1,
//! the Cloud SQL Admin and Cloud Storage listings): a bearer token from a [`GcpCredential`],
//! `items`/`nextPageToken` paging, Compute's aggregated lists, waiting for long-running
//! operations, retries on 429 and 5xx, and Google's error body as an [`Error::Gcp`].
//!
//! Why not `google-cloud-compute-v1`: its current release needs Rust 1.91 (this workspace
//! supports 1.89) and brings a second HTTP and TLS stack (reqwest through gaxi) next to
//! azure_core's, which this client reuses (reqwest on rustls + ring); the calls are few and their
//! shapes small.

use std::sync::Arc;

use azure_core::{HttpClient, Method, Request, Url};
use serde_json::Value;

use super::auth::GcpCredential;
use crate::azure::Retry;
use crate::azure::arm::send_with_retries;
use crate::error::{Error, Result};
use crate::wait::SnapshotWait;

/// The public Compute Engine API root.
pub const DEFAULT_COMPUTE_ROOT: &str = "https://compute.googleapis.com";
/// The public Cloud SQL Admin API root.
pub const DEFAULT_SQL_ROOT: &str = "https://sqladmin.googleapis.com";
/// The public Cloud Storage JSON API root.
pub const DEFAULT_STORAGE_ROOT: &str = "https://storage.googleapis.com";
/// Items asked for per page.
const PAGE_SIZE: u32 = 500;

/// Google's error body (`{"error": {"code", "message", "errors": [{"reason"}]}}`) as an
/// [`Error::Gcp`] for `operation`.
pub(super) fn gcp_error(operation: &str, status: u16, body: &[u8]) -> Error {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let e = &v["error"];
    Error::Gcp {
        operation: operation.to_owned(),
        status: Some(status),
        code: e["errors"][0]["reason"]
            .as_str()
            .or(e["status"].as_str())
            .map(str::to_owned),
        message: e["message"]
            .as_str()
            .unwrap_or("no error message")
            .to_owned(),
    }
}

/// The HTTP status and Google reason of a failed call, where it had them.
pub(super) fn status_of(e: &Error) -> (Option<u16>, Option<&str>) {
    match e {
        Error::Gcp { status, code, .. } => (*status, code.as_deref()),
        _ => (None, None),
    }
}

/// Whether a failed call found nothing (404).
pub(super) fn is_not_found(e: &Error) -> bool {
    status_of(e).0 == Some(404)
}

/// Google Cloud REST APIs under one root (Compute's, or an emulator's serving all three).
pub struct Gcp {
    http: Arc<dyn HttpClient>,
    credential: Arc<GcpCredential>,
    compute_root: String,
    sql_root: String,
    storage_root: String,
    retry: Retry,
}

impl std::fmt::Debug for Gcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gcp")
            .field("compute_root", &self.compute_root)
            .field("credential", &self.credential)
            .finish_non_exhaustive()
    }
}

impl Gcp {
    /// A client with `credential`; `endpoint` (an emulator) replaces every API root.
    pub fn new(
        http: Arc<dyn HttpClient>,
        credential: Arc<GcpCredential>,
        endpoint: Option<&str>,
        retry: Retry,
    ) -> Self {
        let root = |default: &str| endpoint.unwrap_or(default).trim_end_matches('/').to_owned();
        Self {
            http,
            credential,
            compute_root: root(DEFAULT_COMPUTE_ROOT),
            sql_root: root(DEFAULT_SQL_ROOT),
            storage_root: root(DEFAULT_STORAGE_ROOT),
            retry,
        }
    }

    /// The credential's kind (`service account key`, `metadata server`).
    pub fn credential_kind(&self) -> &'static str {
        self.credential.kind_name()
    }

    /// A first token: a refused credential fails here as a [`Error::GcpCredentials`].
    pub async fn check_credential(&self) -> Result<()> {
        self.credential.token().await.map(drop)
    }

    /// `/compute/v1/{path}` (a path without the prefix) or a full URL (a `selfLink`).
    pub fn compute_url(&self, path: &str) -> String {
        if path.contains("://") {
            path.to_owned()
        } else {
            format!(
                "{}/compute/v1/{}",
                self.compute_root,
                path.trim_start_matches('/')
            )
        }
    }

    /// `/sql/v1beta4/{path}` of Cloud SQL Admin.
    pub fn sql_url(&self, path: &str) -> String {
        format!("{}/sql/v1beta4/{path}", self.sql_root)
    }

    /// `/storage/v1/{path}` of Cloud Storage.
    pub fn storage_url(&self, path: &str) -> String {
        format!("{}/storage/v1/{path}", self.storage_root)
    }

    /// One authenticated request to `url`; a non-2xx answer is an error. Returns the JSON body
    /// (`null` when empty).
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        operation: &str,
    ) -> Result<Value> {
        let parsed = Url::parse(url).map_err(|_| Error::Gcp {
            operation: operation.to_owned(),
            status: None,
            code: None,
            message: format!("{url} is not a URL"),
        })?;
        let token = self.credential.token().await?;
        let mut req = Request::new(parsed, method);
        req.insert_header("authorization", format!("Bearer {}", token.secret()));
        if let Some(body) = body {
            req.insert_header("content-type", "application/json");
            req.set_body(body.to_string());
        }
        let answer = send_with_retries(self.http.as_ref(), &req, &self.retry, operation)
            .await
            .map_err(|message| Error::Gcp {
                operation: operation.to_owned(),
                status: None,
                code: None,
                message,
            })?;
        if !(200..300).contains(&answer.status) {
            return Err(gcp_error(operation, answer.status, &answer.body));
        }
        if answer.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&answer.body).map_err(|e| Error::Gcp {
            operation: operation.to_owned(),
            status: Some(answer.status),
            code: None,
            message: format!("unexpected answer: {e}"),
        })
    }

    /// GET `url`.
    pub async fn get(&self, url: &str, operation: &str) -> Result<Value> {
        self.send(Method::Get, url, None, operation).await
    }

    /// Every page of the list at `url` (with `query` pairs such as `filter`), following
    /// `nextPageToken`; each page's body in order.
    pub async fn pages(
        &self,
        url: &str,
        query: &[(&str, &str)],
        operation: &str,
    ) -> Result<Vec<Value>> {
        let mut pages = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut u = Url::parse(url).map_err(|_| Error::Gcp {
                operation: operation.to_owned(),
                status: None,
                code: None,
                message: format!("{url} is not a URL"),
            })?;
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in query {
                    q.append_pair(k, v);
                }
                q.append_pair("maxResults", &PAGE_SIZE.to_string());
                if let Some(t) = &token {
                    q.append_pair("pageToken", t);
                }
            }
            let page = self.get(u.as_str(), operation).await?;
            token = page["nextPageToken"]
                .as_str()
                .filter(|t| !t.is_empty())
                .map(str::to_owned);
            pages.push(page);
            if token.is_none() {
                return Ok(pages);
            }
        }
    }

    /// Every `items` entry of the list at `url`.
    pub async fn list(
        &self,
        url: &str,
        query: &[(&str, &str)],
        operation: &str,
    ) -> Result<Vec<Value>> {
        Ok(self
            .pages(url, query, operation)
            .await?
            .into_iter()
            .flat_map(|mut p| match p["items"].take() {
                Value::Array(items) => items,
                _ => Vec::new(),
            })
            .collect())
    }

    /// Every `field` entry of an aggregated list (`items` keyed by scope, `zones/Z`), with its
    /// scope.
    pub async fn aggregated(
        &self,
        url: &str,
        field: &str,
        operation: &str,
    ) -> Result<Vec<(String, Value)>> {
        let mut out = Vec::new();
        for mut page in self.pages(url, &[], operation).await? {
            if let Value::Object(scopes) = page["items"].take() {
                for (scope, mut entry) in scopes {
                    if let Value::Array(items) = entry[field].take() {
                        out.extend(items.into_iter().map(|i| (scope.clone(), i)));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Waits until the operation `op` (the answer of a mutating call) is DONE, polling its
    /// `selfLink` as `wait` says, at most `wait.timeout`; an operation ending with `error` is an
    /// [`Error::Gcp`] with its first error's code (`QUOTA_EXCEEDED`, …) and message.
    pub async fn wait_operation(
        &self,
        mut op: Value,
        wait: &SnapshotWait,
        operation: &str,
    ) -> Result<()> {
        let started = tokio::time::Instant::now();
        let mut poll = wait.first_poll;
        loop {
            if op["status"] == "DONE" {
                let errors = &op["error"]["errors"];
                return match errors.as_array().and_then(|e| e.first()) {
                    None => Ok(()),
                    Some(first) => Err(Error::Gcp {
                        operation: operation.to_owned(),
                        status: op["httpErrorStatusCode"].as_u64().map(|s| s as u16),
                        code: first["code"].as_str().map(str::to_owned),
                        message: first["message"]
                            .as_str()
                            .unwrap_or("operation failed")
                            .to_owned(),
                    }),
                };
            }
            let link = op["selfLink"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| Error::Gcp {
                    operation: operation.to_owned(),
                    status: None,
                    code: None,
                    message: "the operation has no selfLink".into(),
                })?;
            if started.elapsed() + poll > wait.timeout {
                return Err(Error::Gcp {
                    operation: operation.to_owned(),
                    status: None,
                    code: None,
                    message: format!("operation not done after {:?}", wait.timeout),
                });
            }
            tokio::time::sleep(poll).await;
            poll = wait.next_poll(poll);
            op = self.get(&link, operation).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_errors_keep_reason_and_message() {
        let body = br#"{"error": {"code": 404, "message": "The resource 'x' was not found",
            "errors": [{"reason": "notFound", "domain": "global", "message": "m"}],
            "status": "NOT_FOUND"}}"#;
        let e = gcp_error("disks.get", 404, body);
        assert_eq!(
            e.to_string(),
            "GCP disks.get: HTTP 404 notFound: The resource 'x' was not found"
        );
        assert!(is_not_found(&e));
        let e = gcp_error("x", 502, b"<html>");
        assert_eq!(e.to_string(), "GCP x: HTTP 502: no error message");
        assert!(!is_not_found(&e));
    }

    #[test]
    fn urls_under_one_root_or_the_public_ones() {
        let http = azure_core::new_http_client();
        let cred = Arc::new(GcpCredential::metadata_server(
            "127.0.0.1:1",
            http.clone(),
            Retry::default(),
        ));
        let g = Gcp::new(http.clone(), cred.clone(), None, Retry::default());
        assert_eq!(
            g.compute_url("projects/p/global/snapshots/s"),
            "https://compute.googleapis.com/compute/v1/projects/p/global/snapshots/s"
        );
        assert_eq!(
            g.sql_url("projects/p/instances"),
            "https://sqladmin.googleapis.com/sql/v1beta4/projects/p/instances"
        );
        let g = Gcp::new(http, cred, Some("http://127.0.0.1:9/"), Retry::default());
        assert_eq!(g.storage_url("b"), "http://127.0.0.1:9/storage/v1/b");
        assert_eq!(g.compute_url("https://x/op"), "https://x/op");
    }
}
