//! Small REST calls for what Compute Engine's client does not cover: the Cloud SQL Admin
//! instance list and the Cloud Storage bucket list (no official crate for either is as light as
//! two GETs). Requests go over azure_core's HTTP client (reqwest on rustls + ring, with this
//! crate's retries on 408, 429 and 5xx) with the `Authorization` header google-cloud-auth's
//! credentials give; lists follow `nextPageToken`; Google's error body is an [`Error::Gcp`].

use std::sync::Arc;

use azure_core::{HttpClient, Method, Request, Url};
use google_cloud_auth::credentials::{CacheableResource, Credentials};
use serde_json::Value;

use super::compute::failure;
use crate::azure::Retry;
use crate::azure::arm::send_with_retries;
use crate::error::{Error, Result};

/// The public Cloud SQL Admin API root.
pub const DEFAULT_SQL_ROOT: &str = "https://sqladmin.googleapis.com";
/// The public Cloud Storage JSON API root.
pub const DEFAULT_STORAGE_ROOT: &str = "https://storage.googleapis.com";
/// Items asked for per page.
const PAGE_SIZE: u32 = 500;

/// Google's error body (`{"error": {"code", "message", "errors": [{"reason"}]}}`) as an
/// [`Error::Gcp`] for `operation`.
fn gcp_error(operation: &str, status: u16, body: &[u8]) -> Error {
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

/// The Cloud SQL Admin and Cloud Storage JSON APIs, under their public roots or one emulator's.
pub struct Rest {
    http: Arc<dyn HttpClient>,
    credentials: Credentials,
    /// Names the credential in errors.
    label: String,
    sql_root: String,
    storage_root: String,
    retry: Retry,
}

impl std::fmt::Debug for Rest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rest")
            .field("sql_root", &self.sql_root)
            .field("storage_root", &self.storage_root)
            .field("credential", &self.label)
            .finish_non_exhaustive()
    }
}

impl Rest {
    /// A client with `credentials` (named `label` in errors); `endpoint` (an emulator) replaces
    /// both API roots.
    pub fn new(
        http: Arc<dyn HttpClient>,
        credentials: Credentials,
        label: &str,
        endpoint: Option<&str>,
        retry: Retry,
    ) -> Self {
        let root = |default: &str| endpoint.unwrap_or(default).trim_end_matches('/').to_owned();
        Self {
            http,
            credentials,
            label: label.to_owned(),
            sql_root: root(DEFAULT_SQL_ROOT),
            storage_root: root(DEFAULT_STORAGE_ROOT),
            retry,
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

    /// One authenticated GET of `url`; a non-2xx answer is an error. Returns the JSON body.
    async fn get(&self, url: Url, operation: &str) -> Result<Value> {
        let headers = match self.credentials.headers(http::Extensions::new()).await {
            Ok(CacheableResource::New { data, .. }) => data,
            Ok(CacheableResource::NotModified) => http::HeaderMap::new(),
            Err(e) => {
                return Err(Error::GcpCredentials {
                    secret: self.label.clone(),
                    reason: format!("no token for {operation}: {e}"),
                });
            }
        };
        let mut req = Request::new(url, Method::Get);
        for (name, value) in &headers {
            if let Ok(value) = value.to_str() {
                req.insert_header(name.as_str().to_owned(), value.to_owned());
            }
        }
        let answer = send_with_retries(self.http.as_ref(), &req, &self.retry, operation)
            .await
            .map_err(|message| failure(operation, message))?;
        if !(200..300).contains(&answer.status) {
            return Err(gcp_error(operation, answer.status, &answer.body));
        }
        serde_json::from_slice(&answer.body).map_err(|e| Error::Gcp {
            operation: operation.to_owned(),
            status: Some(answer.status),
            code: None,
            message: format!("unexpected answer: {e}"),
        })
    }

    /// Every `items` entry of the list at `url` (with `query` pairs such as `project`),
    /// following `nextPageToken`.
    pub async fn list(
        &self,
        url: &str,
        query: &[(&str, &str)],
        operation: &str,
    ) -> Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut u =
                Url::parse(url).map_err(|_| failure(operation, format!("{url} is not a URL")))?;
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
            let mut page = self.get(u, operation).await?;
            if let Value::Array(page_items) = page["items"].take() {
                items.extend(page_items);
            }
            token = page["nextPageToken"]
                .as_str()
                .filter(|t| !t.is_empty())
                .map(str::to_owned);
            if token.is_none() {
                return Ok(items);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_errors_keep_reason_and_message() {
        let body = br#"{"error": {"code": 403, "message": "Cloud SQL Admin API has not been used",
            "errors": [{"reason": "accessNotConfigured", "domain": "usageLimits", "message": "m"}],
            "status": "PERMISSION_DENIED"}}"#;
        let e = gcp_error("sqlInstances.list", 403, body);
        assert_eq!(
            e.to_string(),
            "GCP sqlInstances.list: HTTP 403 accessNotConfigured: Cloud SQL Admin API has not been used"
        );
        let e = gcp_error("x", 502, b"<html>");
        assert_eq!(e.to_string(), "GCP x: HTTP 502: no error message");
    }

    #[test]
    fn urls_under_one_root_or_the_public_ones() {
        let http = azure_core::new_http_client();
        let anonymous = google_cloud_auth::credentials::anonymous::Builder::new().build();
        let r = Rest::new(
            http.clone(),
            anonymous.clone(),
            "test",
            None,
            Retry::default(),
        );
        assert_eq!(
            r.sql_url("projects/p/instances"),
            "https://sqladmin.googleapis.com/sql/v1beta4/projects/p/instances"
        );
        assert_eq!(
            r.storage_url("b"),
            "https://storage.googleapis.com/storage/v1/b"
        );
        let r = Rest::new(
            http,
            anonymous,
            "test",
            Some("http://127.0.0.1:9/"),
            Retry::default(),
        );
        assert_eq!(r.storage_url("b"), "http://127.0.0.1:9/storage/v1/b");
        assert_eq!(r.sql_url("x"), "http://127.0.0.1:9/sql/v1beta4/x");
    }
}
