//! Types shared by several kinds.

use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Schema transform for the API's string enums (`#[schemars(transform = plain_enum)]`): one
/// `enum` of the values, as for variants without doc comments. Documented variants would make
/// schemars emit a `oneOf` of `const`s, which kube's structural rewrite flattens in a way that
/// drops `null` from an optional field's values and the field's own description.
pub(crate) fn plain_enum(schema: &mut Schema) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    let Some(Value::Array(variants)) = object.remove("oneOf") else {
        return;
    };
    let mut values = Vec::new();
    for variant in variants {
        if let Some(value) = variant.get("const") {
            values.push(value.clone());
        } else if let Some(Value::Array(more)) = variant.get("enum") {
            values.extend(more.iter().cloned());
        }
    }
    object.insert("type".into(), "string".into());
    object.insert("enum".into(), Value::Array(values));
}

/// Which cloud (or none) a machine lives in.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
#[schemars(transform = plain_enum)]
pub enum Cloud {
    /// Amazon Web Services (EC2).
    Aws,
    /// Microsoft Azure.
    Azure,
    /// Google Cloud (Compute Engine).
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
#[schemars(transform = plain_enum)]
pub enum Severity {
    /// Worth knowing; grants no access by itself.
    Info,
    /// Least impact of a usable secret.
    Low,
    /// Moderate impact.
    Medium,
    /// High impact.
    High,
    /// Highest impact; act first.
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
#[schemars(transform = plain_enum)]
pub enum TargetKind {
    /// Another virtual machine (SSH private key whose public key it authorizes).
    Vm,
    /// An Azure storage account.
    StorageAccount,
    /// An Azure SQL (or other SQL) database server.
    SqlDatabase,
    /// An Amazon RDS instance, named by its endpoint host.
    Rds,
    /// An Amazon S3 bucket (a presigned URL names it; the AWS inventory lists buckets).
    S3Bucket,
    /// A Google Cloud Storage bucket (a signed URL or a `gs://` reference names it; the GCP
    /// inventory lists buckets).
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

impl TargetKind {
    /// The label value (`snapsentry.io/target-kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Vm => "vm",
            TargetKind::StorageAccount => "storage-account",
            TargetKind::SqlDatabase => "sql-database",
            TargetKind::Rds => "rds",
            TargetKind::S3Bucket => "s3-bucket",
            TargetKind::GcsBucket => "gcs-bucket",
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
    /// All findings.
    pub total: u32,
    /// Findings of severity `critical`.
    pub critical: u32,
    /// Findings of severity `high`.
    pub high: u32,
    /// Findings of severity `medium`.
    pub medium: u32,
    /// Findings of severity `low`.
    pub low: u32,
    /// Findings of severity `info`.
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
