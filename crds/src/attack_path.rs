//! `AttackPath`: entry machine → secret → target.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Cloud, Severity, TargetKind};

/// A way in: a machine (exposed to the internet or not) holds a secret that opens another
/// resource. Titled as Defender for Cloud titles the same path, e.g. "Exposed Vulnerable EC2
/// instance has an insecure SSH private key that is used to authenticate to an EC2 instance".
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "snapsentry.io",
    version = "v1alpha1",
    kind = "AttackPath",
    namespaced,
    shortname = "ap",
    category = "snapsentry",
    derive = "PartialEq",
    doc = "AttackPath is an entry machine holding a secret that opens another resource.",
    printcolumn(name = "Entry", type_ = "string", json_path = ".spec.entry.machine"),
    printcolumn(name = "Exposed", type_ = "boolean", json_path = ".spec.entry.exposed"),
    printcolumn(
        name = "Secret",
        type_ = "string",
        json_path = ".spec.secret.secretType"
    ),
    printcolumn(
        name = "Target Kind",
        type_ = "string",
        json_path = ".spec.target.kind"
    ),
    printcolumn(name = "Target", type_ = "string", json_path = ".spec.target.name"),
    printcolumn(name = "Risk", type_ = "string", json_path = ".spec.risk"),
    printcolumn(
        name = "Title",
        type_ = "string",
        json_path = ".spec.title",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AttackPathSpec {
    /// The ScanPolicy whose scan found the path.
    pub policy: String,
    /// Cloud of the entry machine.
    pub cloud: Cloud,
    /// The path in words, as Defender for Cloud titles the same path.
    pub title: String,
    /// How bad the path is.
    pub risk: Severity,
    /// The machine the path starts on.
    pub entry: PathEntry,
    /// The secret that leads on.
    pub secret: PathSecret,
    /// The resource the secret opens.
    pub target: PathTarget,
}

/// Where the path starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PathEntry {
    /// ScannedMachine name.
    pub machine: String,
    /// The entry machine is reachable from the internet.
    pub exposed: bool,
    /// Why it is reachable (public IP, open security group rule).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exposure_reasons: Vec<String>,
}

/// The secret the path goes through.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PathSecret {
    /// SecretFinding name.
    pub finding: String,
    /// Kind of secret in words ("SSH private key").
    pub secret_type: String,
    /// Path of the secret's first location on the entry machine.
    pub path: String,
}

/// Where the path leads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PathTarget {
    /// What kind of resource the secret opens.
    pub kind: TargetKind,
    /// ScannedMachine name for a VM, else the resource name.
    pub name: String,
    /// For SSH: the user whose `authorized_keys` holds the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// For SSH: where the target authorizes the key: the `authorized_keys` file's path, or the
    /// cloud's key source (`project metadata ssh-keys`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// For a VM: its cloud; another than the path's `cloud` when the path crosses clouds (a key
    /// on an Azure VM that an EC2 instance authorizes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<Cloud>,
}
