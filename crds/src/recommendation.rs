//! `Recommendation`: per cloud, "… should have secrets findings resolved", and the coverage view
//! "… should be fully scanned for secrets".

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Cloud, Severity};
use crate::coverage::SkippedVolume;
use crate::scanned_machine::MachinePhase;

/// What to fix, per cloud, as Defender for Cloud words it: "Machines should have secrets findings
/// resolved" (Azure), "EC2 instances should have secrets findings resolved" (AWS), "VM instances
/// should have secrets findings resolved" (GCP), under the security control "Remediate
/// vulnerabilities", with the affected machines and steps per secret type. The coverage view is
/// a Recommendation too (`<policy>-coverage-<cloud>`, "… should be fully scanned for secrets"):
/// the machines whose last scan was `Incomplete` or `Failed`, with the volumes not read and the
/// steps per reason.
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
    /// Highest severity among the open findings it covers (`medium` for the coverage view).
    pub severity: Severity,
    /// What the recommendation is about, in words.
    pub description: String,
    /// Number of affected machines, including those beyond the listed 100.
    pub affected_count: u32,
    /// Machines with open findings (machines not fully scanned, for the coverage view), at most
    /// 100.
    #[schemars(length(max = 100))]
    pub affected_resources: Vec<AffectedResource>,
    /// Steps per secret type present (per reason a volume was not scanned, for the coverage
    /// view).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remediation: Vec<RemediationSteps>,
}

/// A machine with unresolved findings (or, in the coverage view, not fully scanned).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
    /// Coverage view: the machine's phase (`Incomplete` or `Failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<MachinePhase>,
    /// Coverage view: why the scan failed (the `Scanned` condition's message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Coverage view: the volumes not read, with the reason, at most 32.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub not_scanned: Vec<SkippedVolume>,
}

/// How to fix one secret type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemediationSteps {
    /// Kind of secret in words ("AWS access key"), or in the coverage view the reason volumes
    /// were not scanned (`encrypted`, `unsupported`, `unreadable`, `noFilesystem`, `failed`).
    pub secret_type: String,
    /// What to do, in order.
    pub steps: Vec<String>,
}
