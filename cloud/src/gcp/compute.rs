//! Compute Engine through Google's client (`google-cloud-compute-v1`, only the resources the
//! provider calls: instances, disks, snapshots, firewalls, projects), with this crate's retries and
//! operation waiting around it.
//!
//! - Retries: the clients are built with the crate's `NeverRetry`; [`Compute::call`] retries a
//!   call answered 408, 429 or 5xx, or failed before an answer, as the other providers do
//!   ([`Retry`]: attempts, doubling waits, a `Retry-After` honoured). Inserts are retried too:
//!   names are deterministic, so a repeated insert answers 409, which the callers take as done.
//! - Operations: a mutating call answers an `Operation`; [`Compute::mutate`] makes the call and
//!   polls its operation through `disks.getOperation` (zone operations) or
//!   `snapshots.getOperation` (global operations) at [`SnapshotWait`]'s pace, bounded by its
//!   timeout, instead of the crate's poller, whose backoff and error policies are its own. An
//!   operation DONE with `error` is an [`Error::Gcp`] with its first error's code
//!   (`QUOTA_EXCEEDED`, …). [`Compute::create_zonal`] makes a resource of a deterministic name
//!   unless it exists already (a 409 is taken as done).
//! - Errors: an answer's HTTP status and Google's reason (`notFound`, `alreadyExists`, …) as an
//!   [`Error::Gcp`]; a call refused with 401 is an [`Error::GcpCredentials`] naming the credential.

use std::future::Future;
use std::time::Duration;

use google_cloud_auth::credentials::Credentials;
use google_cloud_auth::errors::CredentialsError;
use google_cloud_compute_v1::client::{Disks, Firewalls, Instances, Projects, Snapshots};
use google_cloud_compute_v1::model::{
    DiskList, FirewallList, InstanceAggregatedList, Operation, SnapshotList, operation,
};
use google_cloud_gax::error::Error as ApiError;
use google_cloud_gax::error::rpc::{Status, StatusDetails};
use google_cloud_gax::retry_policy::NeverRetry;

use crate::azure::Retry;
use crate::azure::arm::retryable;
use crate::error::{Error, Result};
use crate::wait::SnapshotWait;

/// Items asked for per page.
pub const PAGE_SIZE: u32 = 500;
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// A failure of `operation` on this side (no answer, an unreadable one, a timeout): an
/// [`Error::Gcp`] without HTTP status or Google reason.
pub(super) fn failure(operation: &str, message: impl Into<String>) -> Error {
    Error::Gcp {
        operation: operation.to_owned(),
        status: None,
        code: None,
        message: message.into(),
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

/// Whether a failed create says the name is taken (409: an earlier attempt made it).
fn already_exists(e: &Error) -> bool {
    status_of(e).0 == Some(409)
}

/// What [`Compute::create_zonal`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Made {
    /// The resource was there already (made by an earlier attempt of the same scan).
    Found,
    /// It was created now (or by an attempt racing this one: the insert answered 409).
    Created,
}

/// The credentials' own error behind a failed call (a token that could not be had), if that is
/// why it failed.
fn credentials_error(e: &ApiError) -> Option<&CredentialsError> {
    std::error::Error::source(e)?.downcast_ref::<CredentialsError>()
}

/// Google's first reason of an error (`notFound`), else its status name (`NOT_FOUND`).
fn reason(status: &Status) -> String {
    status
        .details
        .iter()
        .find_map(|d| match d {
            StatusDetails::ErrorInfo(info) if !info.reason.is_empty() => Some(info.reason.clone()),
            _ => None,
        })
        .unwrap_or_else(|| status.code.name().to_owned())
}

/// A failed client call for `operation` with the credential `label`: refused credentials (no
/// token, or HTTP 401) as an [`Error::GcpCredentials`]; else an [`Error::Gcp`] with the HTTP
/// status, [`reason`] and message.
fn api_error(operation: &str, label: &str, e: &ApiError) -> Error {
    let status = e.http_status_code();
    let credentials = |reason: String| Error::GcpCredentials {
        secret: label.to_owned(),
        reason,
    };
    if let Some(c) = credentials_error(e) {
        return credentials(format!("no token for {operation}: {c}"));
    }
    match e.status() {
        Some(s) if status == Some(401) => {
            credentials(format!("refused by {operation}: HTTP 401 {}", reason(s)))
        }
        Some(s) => Error::Gcp {
            operation: operation.to_owned(),
            status,
            code: Some(reason(s)),
            message: if s.message.is_empty() {
                "no error message".into()
            } else {
                s.message.clone()
            },
        },
        None => Error::Gcp {
            operation: operation.to_owned(),
            status,
            code: None,
            message: e.to_string(),
        },
    }
}

/// Whether `e` is worth another try: a throttled or failing answer, a token the credentials
/// may have next time, or no answer at all (not a request this side could not build or read).
fn transient(e: &ApiError) -> bool {
    match (e.http_status_code(), credentials_error(e)) {
        (Some(status), _) => retryable(status),
        (None, Some(c)) => c.is_transient(),
        (None, None) => e.status().is_none() && !e.is_serialization() && !e.is_deserialization(),
    }
}

/// The `Retry-After` of a throttled answer, at most [`MAX_RETRY_AFTER`].
fn retry_after(e: &ApiError) -> Option<Duration> {
    let value = e.http_headers()?.get("retry-after")?.to_str().ok()?;
    let secs: f64 = value.trim().parse().ok()?;
    (secs >= 0.0).then(|| Duration::from_secs_f64(secs).min(MAX_RETRY_AFTER))
}

/// A page of a Compute Engine list.
pub trait Page {
    /// Its `nextPageToken`.
    fn next_token(&self) -> Option<&String>;
}

macro_rules! page {
    ($($list:ty),*) => {$(
        impl Page for $list {
            fn next_token(&self) -> Option<&String> {
                self.next_page_token.as_ref()
            }
        }
    )*};
}
page!(DiskList, FirewallList, InstanceAggregatedList, SnapshotList);

/// The Compute Engine clients of one provider.
#[derive(Clone, Debug)]
pub struct Compute {
    pub instances: Instances,
    pub disks: Disks,
    pub snapshots: Snapshots,
    pub firewalls: Firewalls,
    pub projects: Projects,
    /// Names the credential in errors (`Secret gcp-key`, `metadata server`).
    label: String,
    retry: Retry,
}

/// A client of `$client` with `credentials`, at `endpoint` when set, never retrying by itself.
macro_rules! build {
    ($client:ty, $credentials:expr, $endpoint:expr) => {{
        let mut builder = <$client>::builder()
            .with_credentials($credentials.clone())
            .with_retry_policy(NeverRetry);
        if let Some(endpoint) = $endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        builder
            .build()
            .await
            .map_err(|e| failure(concat!(stringify!($client), ".client"), e.to_string()))?
    }};
}

impl Compute {
    /// The clients with `credentials` (named `label` in errors); `endpoint` (an emulator, a
    /// private endpoint) replaces `https://compute.googleapis.com`.
    pub async fn new(
        credentials: &Credentials,
        label: &str,
        endpoint: Option<&str>,
        retry: Retry,
    ) -> Result<Self> {
        Ok(Self {
            instances: build!(Instances, credentials, endpoint),
            disks: build!(Disks, credentials, endpoint),
            snapshots: build!(Snapshots, credentials, endpoint),
            firewalls: build!(Firewalls, credentials, endpoint),
            projects: build!(Projects, credentials, endpoint),
            label: label.to_owned(),
            retry,
        })
    }

    /// `send` (a call of one of the clients), retried as [`Retry`] says while it fails
    /// transiently; the last failure as an error for `operation`.
    pub async fn call<T, F, Fut>(&self, operation: &str, mut send: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, ApiError>>,
    {
        let mut wait = self.retry.first;
        let mut attempt = 1;
        loop {
            let e = match send().await {
                Ok(answer) => return Ok(answer),
                Err(e) => e,
            };
            if !transient(&e) || attempt >= self.retry.attempts {
                return Err(api_error(operation, &self.label, &e));
            }
            let pause = retry_after(&e).unwrap_or(wait);
            tracing::debug!(call = %operation, status = ?e.http_status_code(), ?pause, "cloud call retried");
            tokio::time::sleep(pause).await;
            wait = (wait * 2).min(self.retry.max);
            attempt += 1;
        }
    }

    /// Every page of a list: `send` asks for the page at a token (`""` first); each page
    /// retried as [`Self::call`] does.
    pub async fn pages<P: Page, F, Fut>(&self, operation: &str, send: F) -> Result<Vec<P>>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = std::result::Result<P, ApiError>>,
    {
        let mut pages = Vec::new();
        let mut token = String::new();
        loop {
            let page = self.call(operation, || send(token.clone())).await?;
            let following = page.next_token().filter(|t| !t.is_empty()).cloned();
            pages.push(page);
            match following {
                Some(t) => token = t,
                None => return Ok(pages),
            }
        }
    }

    /// `send` (a mutating call: an insert, a delete) as [`Self::call`] makes it, then its
    /// operation waited for until DONE (see [`Self::wait`]): a zonal operation of
    /// `project`/`zone`, or with no `zone` a global one of `project`; errors name `operation`.
    pub async fn mutate<F, Fut>(
        &self,
        operation: &str,
        project: &str,
        zone: Option<&str>,
        wait: &SnapshotWait,
        send: F,
    ) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<Operation, ApiError>>,
    {
        let op = self.call(operation, send).await?;
        match zone {
            Some(zone) => self.wait_zonal(op, project, zone, wait, operation).await,
            None => self.wait_global(op, project, wait, operation).await,
        }
    }

    /// A resource of a deterministic name, created unless it exists: `existing` looks it up (a
    /// 404: absent), else `send` creates it in `zone` as [`Self::mutate`] does; a create
    /// answered 409 (an earlier attempt of the same scan made it meanwhile) counts as done.
    pub async fn create_zonal<T, F, Fut>(
        &self,
        existing: impl Future<Output = Result<T>>,
        operation: &str,
        project: &str,
        zone: &str,
        wait: &SnapshotWait,
        send: F,
    ) -> Result<Made>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<Operation, ApiError>>,
    {
        match existing.await {
            Ok(_) => return Ok(Made::Found),
            Err(e) if !is_not_found(&e) => return Err(e),
            Err(_) => {}
        }
        match self
            .mutate(operation, project, Some(zone), wait, send)
            .await
        {
            Err(e) if !already_exists(&e) => Err(e),
            _ => Ok(Made::Created),
        }
    }

    /// Waits until the zonal operation `op` of `project`/`zone` is DONE (see [`Self::wait`]).
    async fn wait_zonal(
        &self,
        op: Operation,
        project: &str,
        zone: &str,
        wait: &SnapshotWait,
        operation: &str,
    ) -> Result<()> {
        self.wait(op, wait, operation, |name| async move {
            self.call("zoneOperations.get", || {
                self.disks
                    .get_operation()
                    .set_project(project)
                    .set_zone(zone)
                    .set_operation(name.clone())
                    .send()
            })
            .await
        })
        .await
    }

    /// Waits until the global operation `op` of `project` is DONE (see [`Self::wait`]).
    async fn wait_global(
        &self,
        op: Operation,
        project: &str,
        wait: &SnapshotWait,
        operation: &str,
    ) -> Result<()> {
        self.wait(op, wait, operation, |name| async move {
            self.call("globalOperations.get", || {
                self.snapshots
                    .get_operation()
                    .set_project(project)
                    .set_operation(name.clone())
                    .send()
            })
            .await
        })
        .await
    }

    /// Polls `op` by name through `poll` as `wait` says until it is DONE, at most
    /// `wait.timeout`; an operation ending with `error` is an [`Error::Gcp`] for `operation`.
    async fn wait<P, Fut>(
        &self,
        mut op: Operation,
        wait: &SnapshotWait,
        operation: &str,
        poll: P,
    ) -> Result<()>
    where
        P: Fn(String) -> Fut,
        Fut: Future<Output = Result<Operation>>,
    {
        let started = tokio::time::Instant::now();
        let mut pause = wait.first_poll;
        loop {
            if op.status == Some(operation::Status::Done) {
                return operation_outcome(&op, operation);
            }
            let name = op
                .name
                .clone()
                .ok_or_else(|| failure(operation, "the operation has no name"))?;
            if started.elapsed() + pause > wait.timeout {
                return Err(failure(
                    operation,
                    format!("operation not done after {:?}", wait.timeout),
                ));
            }
            tokio::time::sleep(pause).await;
            pause = wait.next_poll(pause);
            op = poll(name).await?;
        }
    }
}

/// A DONE operation's outcome: its first error, if any, as an [`Error::Gcp`].
fn operation_outcome(op: &Operation, operation: &str) -> Result<()> {
    let Some(first) = op.error.as_ref().and_then(|e| e.errors.first()) else {
        return Ok(());
    };
    Err(Error::Gcp {
        operation: operation.to_owned(),
        status: op
            .http_error_status_code
            .and_then(|s| u16::try_from(s).ok()),
        code: first.code.clone(),
        message: first
            .message
            .clone()
            .unwrap_or_else(|| "operation failed".into()),
    })
}

#[cfg(test)]
mod tests {
    use google_cloud_compute_v1::model::operation::error::Errors;

    use super::*;

    #[test]
    fn failed_operations_keep_code_and_message() {
        let done = Operation::new().set_status(operation::Status::Done);
        assert!(operation_outcome(&done, "disks.insert").is_ok());
        let failed = done.set_http_error_status_code(403).set_error(
            operation::Error::new().set_errors([Errors::new()
                .set_code("QUOTA_EXCEEDED")
                .set_message("Quota 'SSD_TOTAL_GB' exceeded.")]),
        );
        let e = operation_outcome(&failed, "disks.insert").unwrap_err();
        assert_eq!(status_of(&e), (Some(403), Some("QUOTA_EXCEEDED")));
        assert_eq!(
            e.to_string(),
            "GCP disks.insert: HTTP 403 QUOTA_EXCEEDED: Quota 'SSD_TOTAL_GB' exceeded."
        );
    }
}
