//! The HTTP side of blob reads: one hyper client (rustls + ring, the system's roots; plain http
//! for emulators), requests retried with exponential backoff and jitter, and the page list's XML.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::blob::{AzureBlobError, BlobOptions};
use super::sas::SasUrl;

/// The Blob service version asked for (one that has `Get Page Ranges` pagination).
const API_VERSION: &str = "2021-08-06";

pub(super) type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The HTTPS client (http allowed for emulators on loopback).
pub(super) fn client() -> Result<HttpClient, AzureBlobError> {
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let ring = || std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = match builder.with_provider_and_native_roots(ring()) {
        Ok(b) => b,
        Err(e) => {
            // No system roots (a minimal image): http still works, https fails verification.
            tracing::warn!(error = %e, "no TLS root certificates; https blob reads will fail");
            let config = rustls::ClientConfig::builder_with_provider(ring())
                .with_safe_default_protocol_versions()
                .map_err(|e| AzureBlobError::Runtime(format!("TLS: {e}")))?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
        }
    };
    let https = builder.https_or_http().enable_http1().build();
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// Counters the requests update.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) requests: AtomicU64,
    pub(super) retries: AtomicU64,
    pub(super) bytes: AtomicU64,
}

/// A finished response: status, headers, body.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) headers: http::HeaderMap,
    pub(super) body: Bytes,
}

fn retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504)
}

/// A random number from the standard library's per-process hasher seeds (jitter needs no more).
fn jitter(bound: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(bound);
    h.finish() % bound.max(1)
}

/// The backoff before retry `retry` (1-based): `base * 2^(retry-1)` capped, half of it jittered.
pub(super) fn backoff(options: &BlobOptions, retry: u32) -> Duration {
    let base = options.base_delay.as_millis() as u64;
    let exp = base.saturating_mul(1u64 << (retry - 1).min(20));
    let capped = exp.min(options.max_delay.as_millis() as u64).max(1);
    Duration::from_millis(capped / 2 + jitter(capped / 2 + 1))
}

/// What every request of one blob needs: the client, the URL, the tuning, the counters.
pub(super) struct Conn {
    pub(super) client: HttpClient,
    pub(super) url: SasUrl,
    pub(super) options: BlobOptions,
    pub(super) counters: Counters,
}

impl Conn {
    /// Send `method` to the blob (with `extra` query parameters and `range`, if any), retrying
    /// throttling, 5xx answers and connection failures. Any other answer is returned as is.
    pub(super) async fn send(
        &self,
        operation: &'static str,
        method: Method,
        extra: &str,
        range: Option<Range<u64>>,
    ) -> Result<Answer, AzureBlobError> {
        let Conn {
            client,
            url,
            options,
            counters,
        } = self;
        let uri = url
            .uri(extra)
            .map_err(|e| AzureBlobError::Url(e.to_string()))?;
        let attempts = options.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = Request::builder()
                .method(method.clone())
                .uri(uri.clone())
                .header("x-ms-version", API_VERSION);
            if let Some(r) = &range {
                req = req.header("x-ms-range", format!("bytes={}-{}", r.start, r.end - 1));
            }
            let req = req
                .body(Empty::new())
                .map_err(|e| AzureBlobError::Runtime(url.scrub(&e.to_string())))?;
            counters.requests.fetch_add(1, Ordering::Relaxed);
            let outcome = tokio::time::timeout(options.request_timeout, async {
                let response = client.request(req).await.map_err(|e| {
                    // The error chain of a failed connection; scrubbed though it should not hold
                    // the URL's query.
                    let mut text = e.to_string();
                    let mut source = std::error::Error::source(&e);
                    while let Some(s) = source {
                        text.push_str(": ");
                        text.push_str(&s.to_string());
                        source = s.source();
                    }
                    url.scrub(&text)
                })?;
                let (parts, body) = response.into_parts();
                let body = body
                    .collect()
                    .await
                    .map_err(|e| url.scrub(&format!("reading the body: {e}")))?
                    .to_bytes();
                Ok::<_, String>(Answer {
                    status: parts.status,
                    headers: parts.headers,
                    body,
                })
            })
            .await
            .unwrap_or_else(|_| Err(format!("no answer in {:?}", options.request_timeout)));
            let failure = match outcome {
                Ok(answer) if !retryable(answer.status) => return Ok(answer),
                Ok(answer) => {
                    format!(
                        "HTTP {}{}",
                        answer.status.as_u16(),
                        error_code(&answer.headers)
                    )
                }
                Err(message) => message,
            };
            if attempt >= attempts {
                return Err(AzureBlobError::Http {
                    operation,
                    blob: url.to_string(),
                    attempts: attempt,
                    message: failure,
                });
            }
            counters.retries.fetch_add(1, Ordering::Relaxed);
            let delay = backoff(options, attempt);
            tracing::debug!(blob = %url, operation, attempt, ?delay, reason = %failure, "retrying a blob request");
            tokio::time::sleep(delay).await;
        }
    }
}

/// ` (x-ms-error-code)` when the answer carries one: the service's reason, never the URL.
pub(super) fn error_code(headers: &http::HeaderMap) -> String {
    headers
        .get("x-ms-error-code")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.chars().all(|c| c.is_ascii_alphanumeric()))
        .map(|v| format!(" ({v})"))
        .unwrap_or_default()
}

/// One page of `Get Page Ranges`: the written ranges (end exclusive) and the next marker.
pub(super) fn parse_page_list(xml: &str) -> Result<(Vec<Range<u64>>, Option<String>), String> {
    let mut ranges = Vec::new();
    let mut rest = xml;
    while let Some(at) = rest.find("<PageRange>") {
        let after = &rest[at + "<PageRange>".len()..];
        let end = after.find("</PageRange>").ok_or("unterminated PageRange")?;
        let item = &after[..end];
        let start: u64 = element(item, "Start")
            .and_then(|s| s.trim().parse().ok())
            .ok_or("PageRange without a numeric Start")?;
        let last: u64 = element(item, "End")
            .and_then(|s| s.trim().parse().ok())
            .ok_or("PageRange without a numeric End")?;
        if last < start {
            return Err(format!(
                "PageRange ends ({last}) before it starts ({start})"
            ));
        }
        ranges.push(start..last + 1);
        rest = &after[end..];
    }
    let marker = element(xml, "NextMarker")
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_owned);
    Ok((ranges, marker))
}

fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    Some(&xml[start..start + len])
}

/// Percent-encode a marker for a query string.
pub(super) fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_lists_parse_with_their_marker() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?><PageList><PageRange><Start>0</Start><End>511</End></PageRange><PageRange><Start>4096</Start><End>8191</End></PageRange><NextMarker>2!abc=</NextMarker></PageList>"#;
        let (ranges, marker) = parse_page_list(xml).unwrap();
        assert_eq!(ranges, vec![0..512, 4096..8192]);
        assert_eq!(marker.as_deref(), Some("2!abc="));
        let (ranges, marker) = parse_page_list("<PageList><NextMarker /></PageList>").unwrap();
        assert!(ranges.is_empty() && marker.is_none());
        assert!(parse_page_list("<PageRange><Start>9</Start><End>1</End></PageRange>").is_err());
        assert_eq!(encode("2!abc=/x"), "2%21abc%3D%2Fx");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let o = BlobOptions {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            ..BlobOptions::default()
        };
        for retry in 1..30 {
            let d = backoff(&o, retry).as_millis() as u64;
            let full = (100u64 << (retry - 1).min(20)).min(1000);
            assert!(d >= full / 2 && d <= full, "retry {retry}: {d} ms");
        }
    }
}
