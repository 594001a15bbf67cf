//! The contract between the operator, the scanner and the people who query them — in one file,
//! so both binaries call the same functions and a newcomer learns it from one place.
//!
//! - [`labels`]: the `snapsentry.io/*` label keys; [`scanner_finding_labels`] and
//!   [`Assessment::labels`] build nine of the eleven query labels of a SecretFinding
//!   ([`crate::assess`] all eleven), and
//!   [`SCANNER_FINDING_LABELS`] / [`OPERATOR_FINDING_LABELS`] say which are facts of the evidence
//!   and which the assessment, and who writes them when.
//! - [`annotations`] and [`FINALIZER`]: the operator's bookkeeping on objects.
//! - [`OPERATOR`] and [`SCANNER`]: field managers (and the `managed-by` value).
//! - [`GRANTS_DIR`]: where a scanner Job reads the credentials its provider granted it.
//! - [`finding_name`], [`machine_name`], [`job_name`]: object names, stable across scans.
//!
//! Label *values* (slugs, states) come from [`crate::label_value`].

use std::collections::BTreeMap;

use crate::label_value::{short_hash, slugify, verification_value};
use crate::{Cloud, Severity, TargetKind, Verification};

/// Field manager of everything the operator writes, and the value of
/// [`labels::MANAGED_BY`] on every object and cloud resource it creates.
pub const OPERATOR: &str = "snapsentry-operator";
/// Field manager of what the scanner writes (SecretFinding spec, labels and provisional status,
/// its part of a ScannedMachine's status).
pub const SCANNER: &str = "snapsentry-scanner";

/// Where a scanner Job's container finds the files of its read grant (for Azure, one SAS URL per
/// snapshot): the Job's own Secret (named and labelled like the Job, mounted read-only with mode
/// 0400), created by the operator just before the Job, owned by the Job once it exists, and
/// deleted when the Job ends.
pub const GRANTS_DIR: &str = "/var/run/snapsentry/grants";

/// Finalizer on ScanPolicies: the operator deletes the snapshots and Jobs of a scan in progress
/// before the policy goes.
pub const FINALIZER: &str = "snapsentry.io/cleanup";

/// Label keys. The SecretFinding labels make `kubectl get sf -l …` the query language.
pub mod labels {
    /// Name of the ScanPolicy (slugified).
    pub const POLICY: &str = "snapsentry.io/policy";
    /// Name of the ScannedMachine (slugified).
    pub const MACHINE: &str = "snapsentry.io/machine";
    /// `aws`, `azure`, `gcp` or `image`.
    pub const CLOUD: &str = "snapsentry.io/cloud";
    /// The secret type, slugified (`aws-access-key`).
    pub const SECRET_TYPE: &str = "snapsentry.io/secret-type";
    /// `critical`, `high`, `medium`, `low` or `info`.
    pub const SEVERITY: &str = "snapsentry.io/severity";
    /// `active`, `resolved`, `accepted` or `falsePositive`.
    pub const STATE: &str = "snapsentry.io/state";
    /// `verified`, `unverified` or `not-applicable`.
    pub const VERIFIED: &str = "snapsentry.io/verified";
    /// `true` when the machine is reachable from the internet.
    pub const EXPOSED: &str = "snapsentry.io/exposed";
    /// What the secret opens: `vm`, `storage-account`, `sql-database`, `rds`, `s3-bucket`, `gcs-bucket`, `none`.
    pub const TARGET_KIND: &str = "snapsentry.io/target-kind";
    /// The name of what the secret opens (the ScannedMachine for a VM, else the resource name
    /// from the secret), slugified; absent when it opens nothing known.
    pub const TARGET: &str = "snapsentry.io/target";
    /// `true` on an active finding that the latest scan of its machine saw for the first time,
    /// else `false` (`kubectl get sf -l snapsentry.io/new=true`: what the last scan added).
    pub const NEW: &str = "snapsentry.io/new";
    /// On every cloud resource and Kubernetes object the operator creates; value
    /// [`super::OPERATOR`].
    pub const MANAGED_BY: &str = "snapsentry.io/managed-by";
    /// The scan that created a Job or snapshot.
    pub const SCAN_ID: &str = "snapsentry.io/scan-id";
    /// Namespace of the ScanPolicy a scanner Job works for (Jobs run in the operator's namespace,
    /// so an owner reference cannot link them to a policy elsewhere).
    pub const POLICY_NAMESPACE: &str = "snapsentry.io/policy-namespace";
}

/// Annotations the operator reads or writes.
pub mod annotations {
    /// On a ScanPolicy: a new value starts a scan now (`kubectl annotate sp NAME
    /// snapsentry.io/scan-now=$(date +%s) --overwrite`).
    pub const SCAN_NOW: &str = "snapsentry.io/scan-now";
    /// On a ScannedMachine: index of the `spec.providers[]` entry it came from.
    pub const PROVIDER_INDEX: &str = "snapsentry.io/provider-index";
    /// On a ScannedMachine: the snapshots the running scan must release for it, comma-separated,
    /// until they are released (as soon as its Job ends): a bare id is a snapshot the scan
    /// created (grants ended, then deleted), `existing:<id>` an existing snapshot it was granted
    /// read access to (grants ended, kept). Older operators wrote bare ids only.
    pub const SNAPSHOTS: &str = "snapsentry.io/snapshots";
    /// On a ScannedMachine: the PersistentVolumes (comma-separated names; each one's
    /// PersistentVolumeClaim has the same name, in the operator's namespace) the running scan
    /// created for its Job's block volumes, recorded before they exist and kept until both are
    /// gone — only then are the disks behind them released with the snapshots.
    pub const VOLUMES: &str = "snapsentry.io/block-volumes";
}

/// SecretFinding labels the scanner owns: facts of the evidence, fixed for the finding's life.
pub const SCANNER_FINDING_LABELS: [&str; 4] = [
    labels::POLICY,
    labels::MACHINE,
    labels::CLOUD,
    labels::SECRET_TYPE,
];

/// SecretFinding labels of the assessment, with the `status`: what [`crate::assess`] computes.
///
/// Who writes them, when:
/// - the scanner Job, in the server-side apply (field manager [`SCANNER`]) that writes the
///   finding, writes all seven and the whole `status` ([`crate::assess::scanned`]): the verdict
///   the finding already carries, or before any the provisional one, with exposure, expiry, risk
///   and [`labels::NEW`] as they are now. For a finding whose assessment needs no fleet facts this
///   is final: the operator's correlation computes the same and writes nothing;
/// - the operator, after correlating the policy's findings, writes every finding whose labels or
///   status differ from its assessment (SSH keys verified across machines, targets checked
///   against the inventory, `Resolved`, the fleet having changed). It replaces the `status`
///   wholesale and sets or removes each of these labels with a JSON patch (an update, not a
///   server-side apply), so a field it drops — [`labels::TARGET`], `status.target`,
///   `status.authorizedOn`, `status.resolvedAt` — goes even though the scanner's apply also set
///   it: with server-side apply a field stays while any manager's last apply holds it;
/// - the operator's triage watch rewrites [`labels::STATE`] alone when people triage.
pub const OPERATOR_FINDING_LABELS: [&str; 7] = [
    labels::STATE,
    labels::VERIFIED,
    labels::EXPOSED,
    labels::SEVERITY,
    labels::TARGET_KIND,
    labels::TARGET,
    labels::NEW,
];

/// The assessment part of a finding's labels (five of the seven; [`crate::assess`] adds
/// [`labels::TARGET`] and [`labels::NEW`]), as label values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assessment {
    /// [`labels::SEVERITY`].
    pub severity: String,
    /// [`labels::STATE`] (see [`crate::label_value::state_value`]).
    pub state: String,
    /// [`labels::VERIFIED`].
    pub verified: String,
    /// [`labels::EXPOSED`].
    pub exposed: bool,
    /// [`labels::TARGET_KIND`].
    pub target_kind: String,
}

impl Assessment {
    /// The operator's assessment of a finding.
    pub fn new(
        severity: Severity,
        state: &str,
        verification: Verification,
        exposed: bool,
        target_kind: TargetKind,
    ) -> Self {
        Self {
            severity: severity.as_str().to_owned(),
            state: state.to_owned(),
            verified: verification_value(verification).to_owned(),
            exposed,
            target_kind: target_kind.as_str().to_owned(),
        }
    }

    /// The five assessment labels of [`OPERATOR_FINDING_LABELS`] (the views' two are the
    /// operator's alone).
    pub fn labels(&self) -> [(String, String); 5] {
        [
            (labels::SEVERITY.to_owned(), self.severity.clone()),
            (labels::STATE.to_owned(), self.state.clone()),
            (labels::VERIFIED.to_owned(), self.verified.clone()),
            (labels::EXPOSED.to_owned(), self.exposed.to_string()),
            (labels::TARGET_KIND.to_owned(), self.target_kind.clone()),
        ]
    }
}

/// The [`SCANNER_FINDING_LABELS`] of a finding of `policy` on `machine` (a cloud's) of a
/// secret type.
pub fn scanner_finding_labels(
    policy: &str,
    machine: &str,
    cloud: Cloud,
    secret_type: &str,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::POLICY.to_owned(), slugify(policy)),
        (labels::MACHINE.to_owned(), slugify(machine)),
        (labels::CLOUD.to_owned(), cloud.as_str().to_owned()),
        (labels::SECRET_TYPE.to_owned(), slugify(secret_type)),
    ])
}

/// Longest object name Kubernetes accepts (a DNS subdomain).
const MAX_NAME: usize = 253;
/// Longest DNS label (names that end up in other labels, such as Job names in pod labels).
const MAX_DNS_LABEL: usize = 63;

/// SecretFinding name: `<machine>-<rule id>-<first 10 hex digits of the fingerprint HMAC>`,
/// a DNS subdomain of at most 253 characters, the same on every scan of the same secret.
pub fn finding_name(machine: &str, rule_id: &str, fingerprint: &str) -> String {
    let hex: String = fingerprint
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .take(10)
        .collect();
    let hex = if hex.len() == 10 {
        hex
    } else {
        short_hash(&[fingerprint])[..10].to_owned()
    };
    let mut rule = dns_part(rule_id, 48);
    if rule.is_empty() {
        rule = "rule".into();
    }
    let mut machine = dns_part(machine, MAX_NAME - rule.len() - hex.len() - 2);
    if machine.is_empty() {
        machine = "machine".into();
    }
    format!("{machine}-{rule}-{hex}")
}

/// ScannedMachine name for a machine of a policy, a DNS label of 63 characters at most (a hash
/// keeping cut names unique):
/// - image machines: `<policy>-<declared name>`;
/// - AWS (and GCP) instances: `<policy>-<instance id>` (display names are neither unique nor
///   stable);
/// - Azure VMs: `<policy>-<VM name>-<8 hex of a hash of the policy and the VM's resource id>` — a
///   VM's name is unique only in its resource group, and its resource id
///   (`/subscriptions/…/virtualMachines/NAME`) is too long to read.
pub fn machine_name(policy: &str, cloud: Cloud, instance_id: &str, name: &str) -> String {
    let dns = |s: &str| slugify(s).replace(['.', '_'], "-");
    let full = match cloud {
        Cloud::Image => format!("{}-{}", dns(policy), dns(name)),
        Cloud::Azure => {
            let id_hash = &short_hash(&[policy, &instance_id.to_ascii_lowercase()])[..8];
            let head = format!("{}-{}", dns(policy), dns(name));
            let head: String = head
                .chars()
                .take(MAX_DNS_LABEL - id_hash.len() - 1)
                .collect();
            return format!("{}-{id_hash}", head.trim_end_matches('-'));
        }
        Cloud::Aws | Cloud::Gcp => format!("{}-{}", dns(policy), dns(instance_id)),
    };
    if full.len() <= MAX_DNS_LABEL {
        return full;
    }
    let key = if cloud == Cloud::Image {
        name
    } else {
        instance_id
    };
    let hash = short_hash(&[policy, cloud.as_str(), key]);
    let head: String = full.chars().take(MAX_DNS_LABEL - hash.len() - 1).collect();
    format!("{}-{hash}", head.trim_end_matches('-'))
}

/// Scanner Job name for (policy, machine, scan id): `scan-<policy>-<machine>-<hash>`, each part
/// cut so the whole stays a 63-character DNS label (Job names end up in pod labels), the hash of
/// all three keeping it unique.
pub fn job_name(policy: &str, machine: &str, scan_id: &str) -> String {
    let hash = &short_hash(&[policy, machine, scan_id])[..10];
    let part = |s: &str, n: usize| {
        let s = slugify(s).replace(['.', '_'], "-");
        s.chars()
            .take(n)
            .collect::<String>()
            .trim_end_matches('-')
            .to_owned()
    };
    format!("scan-{}-{}-{hash}", part(policy, 20), part(machine, 26))
}

/// `[a-z0-9-]` form of `s` (runs of anything else become one `-`), at most `max` characters.
fn dns_part(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.truncate(max);
    while out.ends_with('-') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_finding_label_has_one_owner() {
        let mut all: Vec<&str> = SCANNER_FINDING_LABELS
            .iter()
            .chain(&OPERATOR_FINDING_LABELS)
            .copied()
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 11);
    }

    #[test]
    fn finding_names_are_stable_bounded_dns_names() {
        let fp = "hmac-sha256:0123456789abcdef0123";
        let a = finding_name("lab-images-web-01", "aws-access-key", fp);
        assert_eq!(a, "lab-images-web-01-aws-access-key-0123456789");
        assert_eq!(a, finding_name("lab-images-web-01", "aws-access-key", fp));
        assert_ne!(
            a,
            finding_name("lab-images-web-01", "aws-access-key", "hmac-sha256:ff")
        );
        let long = finding_name(&"m.A_".repeat(100), &"R_".repeat(60), "x");
        for n in [&a, &long] {
            assert!(n.len() <= 253, "{n}");
            assert!(
                n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{n}"
            );
            assert!(
                !n.starts_with('-') && !n.ends_with('-') && !n.contains("--"),
                "{n}"
            );
        }
    }

    #[test]
    fn job_names_are_deterministic_bounded_dns_labels() {
        let a = job_name("lab-images", "lab-images-web-01", "20261122-140000");
        assert_eq!(
            a,
            job_name("lab-images", "lab-images-web-01", "20261122-140000")
        );
        assert_ne!(
            a,
            job_name("lab-images", "lab-images-web-01", "20261123-030000")
        );
        assert!(a.starts_with("scan-lab-images-lab-images-web-01-"), "{a}");
        let long = job_name(&"p".repeat(253), &"m.a_c".repeat(50), "20261122-140000");
        for n in [&a, &long] {
            assert!(n.len() <= 63, "{n}");
            assert!(
                n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{n}"
            );
            assert!(!n.ends_with('-') && !n.contains("--"), "{n}");
        }
    }

    #[test]
    fn machine_names() {
        assert_eq!(
            machine_name("lab-images", Cloud::Image, "web-01", "web-01"),
            "lab-images-web-01"
        );
        assert_eq!(
            machine_name("prod", Cloud::Aws, "i-0abc123", "Web Server"),
            "prod-i-0abc123"
        );
        let long = machine_name(&"p".repeat(60), Cloud::Aws, "i-0abc123", "x");
        let long2 = machine_name(&"p".repeat(60), Cloud::Aws, "i-0abc124", "x");
        assert!(long.len() <= 63 && long2.len() <= 63);
        assert_ne!(long, long2);
        // Azure: the VM's name, kept apart from its namesakes in other resource groups by a hash
        // of its resource id (case-insensitive, as ARM ids are).
        let id = |rg: &str| {
            format!(
                "/subscriptions/s/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/web-01"
            )
        };
        let a = machine_name("prod", Cloud::Azure, &id("rg-a"), "web-01");
        let b = machine_name("prod", Cloud::Azure, &id("rg-b"), "web-01");
        assert!(
            a.starts_with("prod-web-01-") && a.len() == "prod-web-01-".len() + 8,
            "{a}"
        );
        assert_ne!(a, b);
        assert_eq!(
            a,
            machine_name("prod", Cloud::Azure, &id("rg-a").to_uppercase(), "web-01")
        );
        let long_a = machine_name(&"p".repeat(60), Cloud::Azure, &id("rg-a"), "web-01");
        let long_b = machine_name(&"p".repeat(60), Cloud::Azure, &id("rg-b"), "web-01");
        assert!(long_a.len() <= 63 && long_b.len() <= 63);
        assert_ne!(long_a, long_b);
    }
}
