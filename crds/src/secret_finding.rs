//! `SecretFinding`: one secret on one machine — never its value.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Cloud, Severity, TargetKind};

/// One secret (rule + fingerprint) found on one machine, with up to 20 locations. Written by the
/// scanner (evidence in `spec`), assessed by the operator (`status`), triaged by people
/// (`spec.triage`). Carries `redacted` (at most 4 leading characters and the length) and an
/// HMAC fingerprint, never the secret.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "snapsentry.io",
    version = "v1alpha1",
    kind = "SecretFinding",
    namespaced,
    shortname = "sf",
    category = "snapsentry",
    status = "SecretFindingStatus",
    derive = "PartialEq",
    doc = "SecretFinding is one plaintext secret found on one machine's disk (never the secret value).",
    printcolumn(name = "Machine", type_ = "string", json_path = ".spec.machine"),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.secretType"),
    printcolumn(name = "Path", type_ = "string", json_path = ".spec.locations[0].path"),
    printcolumn(name = "Severity", type_ = "string", json_path = ".status.severity"),
    printcolumn(
        name = "Verified",
        type_ = "string",
        json_path = ".status.verification"
    ),
    printcolumn(name = "Target", type_ = "string", json_path = ".status.target.name"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(
        name = "Risk",
        type_ = "integer",
        json_path = ".status.riskScore",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct SecretFindingSpec {
    /// The ScanPolicy that found it.
    pub policy: String,
    /// The ScannedMachine it was found on.
    pub machine: String,
    /// Cloud of the machine.
    pub cloud: Cloud,
    /// Id of the detection rule that found it (`aws-access-key`).
    pub rule_id: String,
    /// Human label of the secret type ("AWS access key").
    pub secret_type: String,
    /// Severity the rule assigns; the operator's assessed severity is in status.
    pub rule_severity: Severity,
    /// `hmac-sha256:<hex>` under the installation's fingerprint key.
    pub fingerprint: String,
    /// At most 4 leading characters and the length, e.g. `AKIA…(20)`.
    pub redacted: String,
    /// Where it was found (at most 20).
    #[schemars(length(max = 20))]
    pub locations: Vec<FindingLocation>,
    /// Number of locations found, including those beyond the first 20.
    pub location_count: u32,
    /// What is known about the secret without contacting anything.
    #[serde(default)]
    pub metadata: FindingMetadata,
    /// Scan that last saw it.
    pub scan_id: String,
    /// When a scan first saw it.
    pub first_seen: Time,
    /// When a scan last saw it.
    pub last_seen: Time,
    /// Set by people: `accepted` or `falsePositive` keeps the finding out of risk, attack paths
    /// and recommendations. Owned by its own field manager; the scanner never writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triage: Option<Triage>,
}

/// One place a secret was found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FindingLocation {
    /// Volume id inside the machine's disks (`disk0/p2`, `disk1/p3/rootvg/rootlv`).
    pub volume: String,
    /// Absolute path inside the volume's filesystem; for a file inside an archive, the archive's
    /// path, `!`, and the path inside it (`/srv/backup.tar.gz!etc/app/.env`).
    pub path: String,
    /// Set when the secret is in a file inside an archive: the archive and the path inside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveLocation>,
    /// 1-based line of the secret in the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// File size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Permission bits in octal (`0600`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Numeric owner of the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Last modification time of the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<Time>,
    /// Last access time: a secret read yesterday is more likely live than one untouched for years.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accessed: Option<Time>,
}

/// Where, inside an archive on the disk, a secret was found. The location's `path` is
/// `<path>!<entry>`; size, mode, owner and times are the archive file's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveLocation {
    /// The archive file: absolute path inside the volume's filesystem (`/srv/backup.tar.gz`).
    pub path: String,
    /// The file inside it, relative and `/`-separated; `!` separates the levels of nested
    /// archives (`lib/app.jar!application.properties`).
    pub entry: String,
}

/// Facts computed from the secret without any network call.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FindingMetadata {
    /// When the secret stops working (JWT `exp`, SAS `se`, presigned URL expiry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// AWS account encoded in an access key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_account_id: Option<String>,
    /// The resource the secret opens, as the secret names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<SecretTarget>,
    /// SSH private key facts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshKeyFacts>,
    /// Rule confidence (`high`, `medium`, `low`); OS package trees lower it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<String>,
    /// A real but guessable password (a word, a common password, a test value) in a field that
    /// is certainly a credential; such findings have confidence `low`. Omitted when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub weak_password: bool,
    /// The OS package that installed the file, from the disk's own package database: findings
    /// in a file still as the package shipped it are vendor content, at `info`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<PackageFacts>,
}

/// The OS package a finding's file belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PackageFacts {
    /// Package name (`libgnutls30`).
    pub name: String,
    /// Installed version, as the package manager records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The file's content against the package's checksum.
    pub state: PackageFileState,
}

/// A package file's content against the package's checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::common::plain_enum)]
pub enum PackageFileState {
    /// As the package shipped it: vendor content, the finding is `info`.
    Unchanged,
    /// Changed after installation: the finding keeps its rule's severity.
    Modified,
    /// The package records no checksum for it: the finding keeps its rule's severity.
    Unverified,
    /// dpkg's copy of the package's control data (maintainer script, debconf template) not
    /// written since the package was unpacked, or debconf's cached copy of a template the
    /// package holds: vendor content, the finding is `info`.
    Control,
}

/// A resource a secret opens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretTarget {
    /// What kind of resource the secret opens.
    pub kind: TargetKind,
    /// Account, server or host name as written in the secret (`mystorage`, `db.x.rds.amazonaws.com`).
    pub name: String,
}

/// Facts about an SSH private key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SshKeyFacts {
    /// `ssh-ed25519`, `ssh-rsa`, `ecdsa-sha2-nistp256`, `ssh-dss`.
    pub algorithm: String,
    /// `SHA256:…` of the public key, derived from the private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_fingerprint: Option<String>,
    /// Protected by a passphrase.
    pub encrypted: bool,
}

/// A person's call on a finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Triage {
    /// `open`, `accepted` or `falsePositive`.
    pub state: TriageState,
    /// Why, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Who decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// Triage states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::common::plain_enum)]
pub enum TriageState {
    /// Still to be handled (same as no triage).
    Open,
    /// Known and accepted risk.
    Accepted,
    /// Not a secret.
    FalsePositive,
}

/// The operator's assessment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretFindingStatus {
    /// `Active` while scans still see it, `Resolved` once a later successful scan of its machine
    /// did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<FindingState>,
    /// When the finding became `Resolved`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Time>,
    /// Assessed severity (rule severity raised or lowered by verification, exposure and expiry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// 0–100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_score: Option<u32>,
    /// `Verified`: proven usable (an SSH key authorized on another machine). `Unverified`: could
    /// not be proven. `NotApplicable`: nothing to verify against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// Where the secret leads, as far as the operator can tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<AssessedTarget>,
    /// Machines that authorize this SSH key (`machine` + `user`), at most 20.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorized_on: Vec<AuthorizedOn>,
    /// Other machines holding the same private key, at most 20.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub same_key_on: Vec<String>,
    /// The source machine is reachable from the internet.
    #[serde(default)]
    pub exposed: bool,
    /// The secret has expired (its metadata says so).
    #[serde(default)]
    pub expired: bool,
}

/// Lifecycle of a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(transform = crate::common::plain_enum)]
pub enum FindingState {
    /// A scan still sees it.
    Active,
    /// A later successful scan of its machine no longer saw it.
    Resolved,
}

/// Verification result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(transform = crate::common::plain_enum)]
pub enum Verification {
    /// Proven usable (an SSH key authorized on another machine).
    Verified,
    /// Could not be proven usable.
    Unverified,
    /// Nothing to verify against.
    NotApplicable,
}

/// A target as assessed by the operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssessedTarget {
    /// What kind of resource the secret opens.
    pub kind: TargetKind,
    /// ScannedMachine name for a VM target, else the resource name from the secret.
    pub name: String,
    /// Whether the target is in the inventory (`true`), known not to exist (`false`), or unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
}

/// A machine that authorizes an SSH key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizedOn {
    /// ScannedMachine name.
    pub machine: String,
    /// The user whose `authorized_keys` holds the key.
    pub user: String,
    /// Where the machine authorizes it: the `authorized_keys` file's path, or the cloud's key
    /// source (`project metadata ssh-keys`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}
