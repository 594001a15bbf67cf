//! `Recommendation`: per cloud, "… should have secrets findings resolved".

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Cloud, Severity};

/// What to fix, per cloud, as Defender for Cloud words it: "Machines should have secrets findings
/// resolved" (Azure), "EC2 instances should have secrets findings resolved" (AWS), "VM instances
/// should have secrets findings resolved" (GCP), under the security control "Remediate
/// vulnerabilities", with the affected machines and steps per secret type.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "snapsentry.io",
    version = "v1alpha1",
    kind = "Recommendation",
    namespaced,
    shortname = "rec",
    category = "snapsentry",
    derive = "PartialEq",
    doc = "Recommendation lists the machines of one cloud that should have their secrets findings resolved, and how.",
    printcolumn(name = "Cloud", type_ = "string", json_path = ".spec.cloud"),
    printcolumn(name = "Severity", type_ = "string", json_path = ".spec.severity"),
    printcolumn(
        name = "Affected",
        type_ = "integer",
        json_path = ".spec.affectedCount"
    ),
    printcolumn(name = "Title", type_ = "string", json_path = ".spec.title"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RecommendationSpec {
    /// The cloud whose machines it lists.
    pub cloud: Cloud,
    /// "EC2 instances / Machines / VM instances should have secrets findings resolved".
    pub title: String,
    /// Always "Remediate vulnerabilities".
    pub security_control: String,
    /// Highest severity among the open findings it covers.
    pub severity: Severity,
    /// What the recommendation is about, in words.
    pub description: String,
    /// Number of affected machines, including those beyond the listed 100.
    pub affected_count: u32,
    /// Machines with open findings, at most 100.
    #[schemars(length(max = 100))]
    pub affected_resources: Vec<AffectedResource>,
    /// Steps per secret type present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remediation: Vec<RemediationSteps>,
}

/// A machine with unresolved findings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AffectedResource {
    /// ScannedMachine name.
    pub machine: String,
    /// Cloud instance id (or the image machine's name).
    pub instance_id: String,
    /// Open findings on the machine.
    pub findings: u32,
    /// Open findings of severity `critical`.
    pub critical: u32,
    /// Open findings of severity `high`.
    pub high: u32,
}

/// How to fix one secret type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemediationSteps {
    /// Kind of secret in words ("AWS access key").
    pub secret_type: String,
    /// What to do, in order.
    pub steps: Vec<String>,
}
