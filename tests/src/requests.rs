//! The requests a client sends, recorded as they leave it: how a test proves how many requests
//! the operator makes (one per changed finding), not only what they leave behind.

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

    /// Forget what was recorded.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Request>> {
        // A panic while holding the lock leaves a valid Vec.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
