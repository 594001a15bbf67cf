//! snapsentry's Kubernetes API: group `snapsentry.io`, version `v1alpha1`, all namespaced, all in
//! the `snapsentry` category (`kubectl get snapsentry`).
//!
//! | kind | short | written by | holds |
//! |---|---|---|---|
//! | [`ScanPolicy`] | `sp` | the user (GitOps) | what to scan, when, how |
//! | [`SecretFinding`] | `sf` | scanner (spec, provisional status), operator (status), user (`spec.triage`) | one secret on one machine, never its value |
//! | [`ScannedMachine`] | `sm` | operator + scanner | inventory and last scan of one machine |
//! | [`AttackPath`] | `ap` | operator | entry machine → secret → target |
//! | [`Recommendation`] | `rec` | operator | per-cloud "resolve secrets findings" with affected resources |
//!
//! [`assess`] is a finding's assessment (its status and operator labels), computed the same way by
//! the scanner Job that writes the finding and by the operator's correlation after the scan.
//! [`contract`] holds what the operator, the scanner and users agree on — label keys and who
//! owns them, annotations, field managers, object names; the labels make `kubectl get sf -l …`
//! the query language. Every list in a status is bounded (see [`limits`]): storing findings as
//! objects must not grow etcd without bound.
//!
//! ```
//! use kube::CustomResourceExt;
//! let crd = snapsentry_crds::secret_finding_crd();
//! assert_eq!(crd.spec.names.short_names.unwrap(), ["sf"]);
//! assert!(crd.spec.versions[0].subresources.is_none());
//! ```

#![warn(missing_docs)]
// kube's `printcolumn(...)` arguments repeat `type_ = "string"` on purpose; clippy reads them
// as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

pub mod assess;
mod assignment;
mod attack_path;
mod common;
pub mod contract;
mod coverage;
#[cfg(feature = "engine")]
pub mod from_engine;
pub mod label_value;
mod recommendation;
mod scan_policy;
mod scanned_machine;
mod secret_finding;

pub use assignment::*;
pub use attack_path::*;
pub use common::*;
pub use contract::labels;
pub use coverage::*;
pub use recommendation::*;
pub use scan_policy::*;
pub use scanned_machine::*;
pub use secret_finding::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// API group of every snapsentry kind.
pub const GROUP: &str = "snapsentry.io";
/// API version of every snapsentry kind.
pub const VERSION: &str = "v1alpha1";

/// All CRDs, in the order `crdgen` prints them, with schemas the API server takes without a
/// warning ([`tidy_schema`]). SecretFinding has no status subresource ([`secret_finding_crd`]).
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![
        ScanPolicy::crd(),
        secret_finding_crd(),
        ScannedMachine::crd(),
        AttackPath::crd(),
        Recommendation::crd(),
    ];
    for version in crds.iter_mut().flat_map(|c| c.spec.versions.iter_mut()) {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            let mut value = serde_json::to_value(&*schema).expect("schemas serialize");
            tidy_schema(&mut value);
            *schema = serde_json::from_value(value).expect("a tidied schema is still a schema");
        }
    }
    crds
}

/// The SecretFinding CRD without the status subresource kube's derive adds: a finding's labels
/// and status are written in one request — the scanner Job's apply that writes the finding with
/// its provisional assessment, the operator's write after a scan where the fleet changes it (a
/// status subresource would ignore the labels, and a create its status) — so a scan costs at
/// most one request per new or changed finding. Who may change `status` is then up to
/// admission: the chart's ValidatingAdmissionPolicy lets only the operator's and the scanner
/// Jobs' service accounts (see `docs/contracts.md`).
pub fn secret_finding_crd() -> CustomResourceDefinition {
    let mut crd = SecretFinding::crd();
    for version in &mut crd.spec.versions {
        version.subresources = None;
    }
    crd
}

/// Formats the API server knows (`k8s.io/kube-openapi`'s format registry, as far as schemars
/// emits them); any other makes `kubectl apply` of the CRD warn `unrecognized format`.
const KNOWN_FORMATS: [&str; 6] = ["date-time", "date", "int32", "int64", "float", "double"];

/// Rewrites what schemars generates into what the API server takes without complaint, at every
/// level of a schema:
/// - an optional enum's `null` value goes (the field is `nullable`; with `null` among the values,
///   the API server's error for a wrong value lists `null` as valid);
/// - formats the API server does not know (`uint32`, `uint64`: schemars' unsigned integers, which
///   keep their `minimum: 0`) go.
pub fn tidy_schema(schema: &mut serde_json::Value) {
    match schema {
        serde_json::Value::Object(object) => {
            if let Some(serde_json::Value::Array(values)) = object.get_mut("enum") {
                values.retain(|v| !v.is_null());
            }
            if object
                .get("format")
                .and_then(|f| f.as_str())
                .is_some_and(|f| !KNOWN_FORMATS.contains(&f))
            {
                object.remove("format");
            }
            object.values_mut().for_each(tidy_schema);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(tidy_schema),
        _ => {}
    }
}

/// The CRDs as one multi-document YAML stream — what `crdgen` prints and what is committed as
/// `crds/snapsentry.io_crds.yaml` and `charts/snapsentry/crds/crds.yaml`.
pub fn crds_yaml() -> String {
    let mut out = String::from(
        "# Generated by `cargo run -p snapsentry-crds --bin crdgen`; do not edit. CI fails on drift.\n",
    );
    for crd in all_crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd).expect("CRDs serialize"));
    }
    out
}

/// Bounds on object sizes: storing findings as objects must not grow etcd without bound.
pub mod limits {
    /// Locations kept per SecretFinding; `locationCount` keeps the total.
    pub const MAX_LOCATIONS: usize = 20;
    /// Authorized keys kept per ScannedMachine.
    pub const MAX_AUTHORIZED_KEYS: usize = 200;
    /// Errors kept per scan in ScannedMachine status.
    pub const MAX_SCAN_ERRORS: usize = 20;
    /// Volumes kept per scan in ScannedMachine status.
    pub const MAX_VOLUMES: usize = 32;
    /// Affected resources listed per Recommendation; `affectedCount` keeps the total.
    pub const MAX_AFFECTED: usize = 100;
    /// SecretFindings written per machine per scan; beyond it the scan reports truncation.
    pub const MAX_FINDINGS_PER_MACHINE: usize = 500;
}
