//! Types shared by several kinds.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which cloud (or none) a machine lives in.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Cloud {
    Aws,
    Azure,
    Gcp,
    /// Machines declared as disk image files (the `images` provider).
    Image,
}

impl Cloud {
    /// The label value (`snapsentry.io/cloud`).
    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Aws => "aws",
            Cloud::Azure => "azure",
            Cloud::Gcp => "gcp",
            Cloud::Image => "image",
        }
    }
}

/// Severity of a finding, an attack path or a recommendation.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// The label value (`snapsentry.io/severity`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// What kind of resource a secret opens (the `snapsentry.io/target-kind` label).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    /// Another virtual machine (SSH private key whose public key it authorizes).
    Vm,
    StorageAccount,
    SqlDatabase,
    Rds,
    /// An Amazon S3 bucket (a presigned URL names it; the AWS inventory lists buckets).
    S3Bucket,
    Cosmos,
    Registry,
    /// A host named by the secret that is none of the above.
    Host,
    None,
}

impl TargetKind {
    /// The label value (`snapsentry.io/target-kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Vm => "vm",
            TargetKind::StorageAccount => "storage-account",
            TargetKind::SqlDatabase => "sql-database",
            TargetKind::Rds => "rds",
            TargetKind::S3Bucket => "s3-bucket",
            TargetKind::Cosmos => "cosmos",
            TargetKind::Registry => "registry",
            TargetKind::Host => "host",
            TargetKind::None => "none",
        }
    }
}

/// Counts of findings by severity.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeverityCounts {
    pub total: u32,
    pub critical: u32,
    pub high: u32,
    pub medium: u32,
    pub low: u32,
    pub info: u32,
}

impl SeverityCounts {
    /// Count one more finding of `severity`.
    pub fn add(&mut self, severity: Severity) {
        self.total += 1;
        match severity {
            Severity::Critical => self.critical += 1,
            Severity::High => self.high += 1,
            Severity::Medium => self.medium += 1,
            Severity::Low => self.low += 1,
            Severity::Info => self.info += 1,
        }
    }
}

/// Internet exposure of a machine and why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Exposure {
    /// Reachable from the internet.
    pub internet_facing: bool,
    /// Why, in words: "public IPv4 203.0.113.7", "security group sg-1 allows 0.0.0.0/0 on 22/tcp".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}
