//! The control plane's error type.

/// What a provider call (inventory, snapshots, sweep) can fail with. `Display` texts go into the
/// operator's logs, events and status conditions, so they never contain a secret value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A cloud provider failed (inventory, snapshots, sweep) or is not configured usably.
    #[error("provider {provider}: {message}")]
    Provider {
        provider: &'static str,
        message: String,
    },
    /// An AWS API call failed; `message` is the SDK's error with its code (never credentials).
    #[error("AWS {operation} in {region}: {message}")]
    Aws {
        operation: String,
        region: String,
        code: Option<String>,
        message: String,
    },
    /// The `credentialsSecret` of an AWS provider is missing or incomplete (the reason names
    /// keys, never values).
    #[error("AWS credentials Secret {secret}: {reason}")]
    AwsCredentials { secret: String, reason: String },
    /// The Kubernetes API refused or failed a request (reading a credentials Secret).
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

impl Error {
    /// A failure of a cloud provider (its API, its credentials, its configuration): reported on
    /// the policy and retried later, rather than failing the reconcile. A Kubernetes API failure
    /// is not one.
    pub fn is_provider(&self) -> bool {
        !matches!(self, Error::Kube(_))
    }
}

/// `Result` with the control plane's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
