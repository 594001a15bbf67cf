//! The requests a client sends, recorded as they leave it: how a test proves how many requests
//! the operator makes (one per changed finding), not only what they leave behind.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::Method;
use tower::util::MapRequestLayer;

/// One request: its method and its path (query string left out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `PATCH`, ...
    pub method: Method,
    /// `/apis/snapsentry.io/v1alpha1/namespaces/ns/secretfindings/name`.
    pub path: String,
}

/// The requests of the clients built with [`RequestLog::layer`], in the order they were sent;
/// clones share the record.
#[derive(Clone, Debug, Default)]
pub struct RequestLog(Arc<Mutex<Vec<Request>>>);

impl RequestLog {
    /// A layer (for [`kube::client::ClientBuilder::with_layer`]) that records each request.
    pub fn layer<B>(
        &self,
    ) -> MapRequestLayer<impl Fn(http::Request<B>) -> http::Request<B> + Clone + use<B>> {
        let log = self.clone();
        MapRequestLayer::new(move |request: http::Request<B>| {
            log.lock().push(Request {
                method: request.method().clone(),
                path: request.uri().path().to_owned(),
            });
            request
        })
    }

    /// Everything recorded so far.
    pub fn all(&self) -> Vec<Request> {
        self.lock().clone()
    }

    /// The requests that wrote SecretFindings of namespace `ns` (anything but a read), counted by
    /// finding name, and how many went to a finding's `status` (a subresource SecretFinding does
    /// not have).
    pub fn finding_writes(&self, ns: &str) -> (BTreeMap<String, usize>, usize) {
        let prefix = format!("/apis/snapsentry.io/v1alpha1/namespaces/{ns}/secretfindings/");
        let mut writes = BTreeMap::new();
        let mut to_status = 0;
        for r in self.all() {
            let Some(rest) = r.path.strip_prefix(&prefix) else {
                continue;
            };
            if rest.ends_with("/status") {
                to_status += 1;
            } else if r.method != Method::GET {
                *writes.entry(rest.to_owned()).or_insert(0) += 1;
            }
        }
        (writes, to_status)
    }

    /// Forget what was recorded.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Request>> {
        // A panic while holding the lock leaves a valid Vec.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
