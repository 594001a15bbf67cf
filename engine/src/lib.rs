//! Find secrets in bytes.
//!
//! `snapsentry-engine` holds the detection rules (YAML data under `engine/rules/`), a one-pass
//! keyword prefilter over all rules, per-rule confirmation in a bounded window, validators
//! (checksums, placeholders), metadata extraction (expiry, target resource, SSH key facts) and
//! redaction. It does no I/O: callers hand it bytes and a path, and get findings that never carry
//! the secret value itself.
//!
//! ```
//! use snapsentry_engine::{Engine, EngineConfig};
//!
//! let engine = Engine::new(EngineConfig::with_key(b"per-installation key".to_vec()))?;
//! let file = b"[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n";
//! let scan = engine.scan("/home/ubuntu/.aws/credentials", file);
//! assert!(scan.findings.is_empty()); // documentation example keys are never findings
//! # Ok::<(), snapsentry_engine::RuleError>(())
//! ```
//!
//! How a file is scanned (see [`Engine::scan`]): the encoding is detected (UTF-16 is transcoded
//! to UTF-8, binary files only get keyword rules); one prefilter pass finds every keyword of
//! every rule; each rule's regex then runs only in merged windows around its keyword hits; rules
//! without keywords ("path rules") run over files whose path they name. Matches go through the
//! placeholder check and the rule's validators, are deduplicated per (rule, fingerprint, line),
//! and are reported as [`Finding`]s: a redacted prefix, the length and an HMAC — never the value.

#![warn(missing_docs)]

use serde::{Deserialize, Serialize};

pub mod codec;
pub mod encoding;
mod engine;
pub mod packages;
pub mod paths;
pub mod placeholder;
pub mod prefilter;
pub mod redact;
pub mod rules;
pub mod ssh;
pub mod time;
pub mod validate;

pub use engine::{Engine, EngineConfig, FileScan, PrivateKeyFound};
pub use rules::{Confidence, Rule, RuleError, RuleSpec, SecretEncoding, Severity, slugify};
pub use ssh::{AuthorizedKey, SshKeyInfo};

/// Kind of resource a secret opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    /// Another virtual machine (an SSH private key).
    Vm,
    /// An Azure storage account.
    StorageAccount,
    /// An Azure SQL (or other SQL) database server.
    SqlDatabase,
    /// An Amazon RDS instance, named by its endpoint host.
    Rds,
    /// An Amazon S3 bucket (a presigned URL names it).
    S3Bucket,
    /// A Google Cloud Storage bucket (a signed URL or a `gs://` reference names it).
    GcsBucket,
    /// An Azure Cosmos DB account.
    Cosmos,
    /// A container registry.
    Registry,
    /// A host named by the secret that is none of the above.
    Host,
    /// No particular resource.
    None,
}

/// The resource a secret opens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// What kind of resource it is.
    pub kind: TargetKind,
    /// Resource name (storage account, server, instance identifier), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Host name or endpoint, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// What the engine learnt about a secret without contacting anything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FindingMetadata {
    /// RFC 3339 expiry (JWT `exp`, SAS `se`, presigned URL date + expires).
    pub expires_at: Option<String>,
    /// AWS account id decoded from an access key id.
    pub aws_account_id: Option<String>,
    /// The resource the secret opens, when the rule or a validator names it.
    pub target: Option<Target>,
    /// SSH private key facts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshKeyInfo>,
    /// A real password that is guessable: a word, a common password or a test value, in a field
    /// that is certainly a credential (rules with `credentialField`). Omitted when false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub weak_password: bool,
    /// The OS package that installed the file, and whether the file is still as shipped (set by
    /// the caller from the disk's package database, [`packages`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<packages::PackageFile>,
}

/// One secret found in one file. Never holds the secret itself.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// Id of the rule that matched (`aws-access-key`).
    pub rule_id: String,
    /// The rule's title.
    pub title: String,
    /// Kind of secret in words (`AWS access key`); its slug is the `secret-type` label.
    pub secret_type: String,
    /// The rule's severity.
    pub severity: Severity,
    /// The rule's confidence, one step lower for files under OS package trees.
    pub confidence: Confidence,
    /// 1-based line of the start of the match (in the UTF-8 text for transcoded files).
    pub line: usize,
    /// `hmac-sha256:<hex>` of the secret under the installation key.
    pub fingerprint: String,
    /// At most 4 leading characters and the length: `wJal…(40)`.
    pub redacted: String,
    /// What was learnt about the secret without contacting anything.
    pub metadata: FindingMetadata,
}

/// Fuzzing entry point: scans arbitrary bytes under a few paths that enable path rules and
/// `authorized_keys` parsing, and runs the standalone decoders. Must never panic.
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    use std::sync::OnceLock;
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    let engine = ENGINE.get_or_init(|| {
        Engine::new(EngineConfig::with_key(b"fuzz".to_vec())).expect("embedded rules load")
    });
    const PATHS: &[&str] = &[
        "/home/u/notes.txt",
        "/home/u/.ssh/authorized_keys",
        "/home/u/.aws/credentials",
        "/srv/app/.env",
        "/root/.bash_history",
        "/etc/shadow",
        "/var/www/wp-config.php",
        "/Users/u/AppData/Roaming/Microsoft/Windows/PowerShell/PSReadLine/ConsoleHost_history.txt",
        "/etc/app/app.ini",
        "/var/www/app/config.php",
        "/var/backups/db.sql",
        "/etc/redis/redis.conf",
    ];
    let path = PATHS[data.first().map_or(0, |b| usize::from(*b) % PATHS.len())];
    let _ = engine.scan(path, data);
    let _ = ssh::private_key_info(data);
    let _ = codec::base64_decode(data);
    let _ = std::str::from_utf8(data).map(time::parse_timestamp);
    let _ = validate::is_placeholder(data);
}
