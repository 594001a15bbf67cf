//! The operator's one error type.

/// Everything that can go wrong in the operator. `Display` texts go into logs, events and
/// status conditions, so they never contain a secret value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `spec.schedule` is not a 5-field cron expression.
    #[error("invalid schedule {expr:?}: {reason}")]
    InvalidSchedule { expr: String, reason: String },
    /// `spec.timeZone` is not an IANA time zone.
    #[error("unknown time zone {zone:?}: {reason}")]
    InvalidTimeZone { zone: String, reason: String },
    /// A Go-style duration (`720h`, `30m`) that does not parse.
    #[error("invalid duration {value:?}: {reason}")]
    InvalidDuration { value: String, reason: String },
    /// The operator's environment configuration is incomplete or wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// A cloud provider failed (inventory, snapshots, sweep; its API, credentials, configuration).
    #[error(transparent)]
    Cloud(snapsentry_cloud::Error),
    /// An object lacks something the operator needs (name, namespace, uid).
    #[error("{kind} object is missing {field}")]
    MissingField {
        kind: &'static str,
        field: &'static str,
    },
    /// The Kubernetes API refused or failed a request.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The API server refused to create a machine's scanner Job (an admission webhook or policy,
    /// an invalid object, RBAC); the API server's message.
    #[error("the API server refused the scanner Job: {0}")]
    JobRefused(String),
    /// A ResourceQuota refused a machine's scanner Job and waiting could not help (none of the
    /// scan's Jobs runs, or the scan waited `SNAPSENTRY_QUOTA_WAIT`); the API server's message.
    #[error("a ResourceQuota refused the scanner Job: {0}")]
    QuotaExceeded(String),
    /// Adding or removing the ScanPolicy finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// Another replica took the leader Lease, or it could not be renewed in time.
    #[error("lost the leader lease {0}")]
    LeaseLost(String),
    /// The PersistentVolumes of scanner Jobs' block volumes are deleted but not gone yet (still
    /// bound to a claim a pod uses, or their disks still attached): the disks behind them are
    /// deleted once they are, at a later attempt.
    #[error("waiting for PersistentVolumes to be deleted: {0}")]
    VolumesPending(String),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// A failure of a cloud provider (its API, its credentials, its configuration): reported on
    /// the policy and retried later, rather than failing the reconcile.
    pub fn is_provider(&self) -> bool {
        matches!(self, Error::Cloud(e) if e.is_provider())
    }
}

impl From<snapsentry_cloud::Error> for Error {
    /// A provider's Kubernetes API failure stays a Kubernetes API failure of the operator.
    fn from(e: snapsentry_cloud::Error) -> Self {
        match e {
            snapsentry_cloud::Error::Kube(e) => Error::Kube(e),
            e => Error::Cloud(e),
        }
    }
}

/// `Result` with the operator's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
