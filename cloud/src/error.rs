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
    /// An Azure Resource Manager call failed: the operation, the HTTP status and ARM error code
    /// where there was an answer, ARM's message (never a token, a secret or a SAS URL).
    #[error("Azure {operation}: {}{message}", code_text(*status, code.as_deref()))]
    Azure {
        operation: String,
        status: Option<u16>,
        code: Option<String>,
        message: String,
    },
    /// The credentials of an Azure provider are missing, incomplete or refused by Microsoft Entra
    /// ID (`secret` names the `credentialsSecret`, or the kind of credential; the reason names
    /// keys and Entra's error code, never values).
    #[error("Azure credentials {secret}: {reason}")]
    AzureCredentials { secret: String, reason: String },
    /// A Google Cloud API call (Compute Engine, Cloud SQL Admin, Cloud Storage) failed: the
    /// operation, the HTTP status and Google's error reason (`notFound`, `QUOTA_EXCEEDED`, …)
    /// where there was one, Google's message (never a key or a token).
    #[error("GCP {operation}: {}{message}", code_text(*status, code.as_deref()))]
    Gcp {
        operation: String,
        status: Option<u16>,
        code: Option<String>,
        message: String,
    },
    /// The credentials of a GCP provider are missing, malformed or refused (`secret` names the
    /// `credentialsSecret` or the metadata server; the reason names keys and the token endpoint's
    /// error code, never a value).
    #[error("GCP credentials {secret}: {reason}")]
    GcpCredentials { secret: String, reason: String },
    /// The Kubernetes API refused or failed a request (reading a credentials Secret).
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// `HTTP 409 Conflict: ` and the like, before an Azure error's message.
fn code_text(status: Option<u16>, code: Option<&str>) -> String {
    match (status, code) {
        (Some(s), Some(c)) => format!("HTTP {s} {c}: "),
        (Some(s), None) => format!("HTTP {s}: "),
        (None, Some(c)) => format!("{c}: "),
        (None, None) => String::new(),
    }
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
