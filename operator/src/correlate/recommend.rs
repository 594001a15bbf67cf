//! Recommendations: one per cloud, "… should have secrets findings resolved", with remediation
//! steps per secret type.

use std::collections::BTreeMap;

use snapsentry_crds::{
    AffectedResource, Cloud, Recommendation, RecommendationSpec, RemediationSteps, ScannedMachine,
    Severity, SeverityCounts, limits,
};

use super::SecretClass;
use super::{Assessed, CorrelationInput, recommendation};

/// The "secrets" Recommendations, gathered one open finding at a time.
#[derive(Default)]
pub(super) struct Accumulator<'a> {
    /// cloud → machine → counts.
    by_cloud: BTreeMap<Cloud, BTreeMap<&'a str, SeverityCounts>>,
    /// cloud → secret type → rule id (first seen, for the steps).
    types: BTreeMap<Cloud, BTreeMap<&'a str, &'a str>>,
    worst: BTreeMap<Cloud, Severity>,
}

impl<'a> Accumulator<'a> {
    /// Count an open finding.
    pub(super) fn add(&mut self, a: &Assessed<'a>) {
        let f = a.finding;
        let severity = a.severity();
        self.by_cloud
            .entry(f.cloud)
            .or_default()
            .entry(&f.machine)
            .or_default()
            .add(severity);
        self.types
            .entry(f.cloud)
            .or_default()
            .entry(&f.secret_type)
            .or_insert(&f.rule_id);
        let w = self.worst.entry(f.cloud).or_insert(severity);
        *w = (*w).max(severity);
    }

    /// One Recommendation per cloud with open findings.
    pub(super) fn finish(
        mut self,
        input: &CorrelationInput<'_>,
        machines: &BTreeMap<&str, &ScannedMachine>,
    ) -> Vec<Recommendation> {
        let mut out = Vec::new();
        for (cloud, per_machine) in self.by_cloud {
            let mut affected: Vec<AffectedResource> = per_machine
                .iter()
                .map(|(m, c)| AffectedResource {
                    machine: (*m).to_owned(),
                    instance_id: machines
                        .get(m)
                        .map_or_else(|| (*m).to_owned(), |sm| sm.spec.instance_id.clone()),
                    findings: c.total,
                    critical: c.critical,
                    high: c.high,
                    ..Default::default()
                })
                .collect();
            // Worst machines first, so the listed 100 are the ones to fix first.
            affected.sort_by(|a, b| {
                (b.critical, b.high, b.findings)
                    .cmp(&(a.critical, a.high, a.findings))
                    .then(a.machine.cmp(&b.machine))
            });
            let affected_count = affected.len() as u32;
            affected.truncate(limits::MAX_AFFECTED);
            let total: u32 = per_machine.values().map(|c| c.total).sum();
            let remediation = self
                .types
                .remove(&cloud)
                .unwrap_or_default()
                .into_iter()
                .map(|(secret_type, rule_id)| RemediationSteps {
                    secret_type: secret_type.to_owned(),
                    steps: remediation_steps(rule_id, secret_type),
                })
                .collect();
            let spec = RecommendationSpec {
                cloud,
                title: title(cloud).to_owned(),
                security_control: SECURITY_CONTROL.to_owned(),
                severity: self.worst.get(&cloud).copied().unwrap_or(Severity::Info),
                description: format!(
                    "{total} plaintext secret(s) were found on {affected_count} {} selected by policy {}. \
                     Anyone who reads these disks (or their snapshots and backups) can use the secrets \
                     to move to the resources they open. Rotate each secret at its issuer, then remove \
                     it from the disk.",
                    machines_noun(cloud),
                    input.policy
                ),
                affected_count,
                affected_resources: affected,
                remediation,
            };
            out.push(recommendation(input, "secrets", spec));
        }
        out
    }
}

/// Security control every recommendation sits under.
pub const SECURITY_CONTROL: &str = "Remediate vulnerabilities";

/// The recommendation title for a cloud, as Defender for Cloud words it (image machines get
/// their own).
pub fn title(cloud: Cloud) -> &'static str {
    match cloud {
        Cloud::Azure => "Machines should have secrets findings resolved",
        Cloud::Aws => "EC2 instances should have secrets findings resolved",
        Cloud::Gcp => "VM instances should have secrets findings resolved",
        Cloud::Image => "Machines (disk images) should have secrets findings resolved",
    }
}

/// Plural noun for the machines of a cloud, for descriptions.
pub fn machines_noun(cloud: Cloud) -> &'static str {
    match cloud {
        Cloud::Azure => "virtual machines",
        Cloud::Aws => "EC2 instances",
        Cloud::Gcp => "VM instances",
        Cloud::Image => "disk images",
    }
}

/// Steps to remediate one secret type. The first matching entry of the table wins; the last one
/// applies to everything.
pub fn remediation_steps(rule_id: &str, secret_type: &str) -> Vec<String> {
    let s = format!("{rule_id} {secret_type}").to_ascii_lowercase();
    let has = |keys: &[&str]| keys.iter().any(|k| s.contains(k));
    let steps: &[&str] = if has(&["ssh"]) && has(&["private key", "private-key"]) {
        &[
            "Remove the public key from every authorized_keys file that lists it (see status.authorizedOn).",
            "Generate a new key pair where it is needed, protected by a passphrase or held in an agent or hardware token.",
            "Delete the private key file from the machine and from the images it was built from.",
            "Prefer short-lived SSH certificates or the cloud's session manager (SSM Session Manager, Azure Bastion, IAP) over long-lived keys.",
        ]
    } else if has(&["aws"]) {
        &[
            "Deactivate and delete the access key in IAM, after creating a replacement if one is needed.",
            "Review CloudTrail for activity by the key since it was created.",
            "Remove the credentials file or variable from the machine.",
            "Use an instance profile (IAM role) instead of static keys on EC2.",
        ]
    } else if has(&["azure", "storage account", "sas"]) {
        &[
            "Rotate the storage account key or revoke the SAS (rotate the key that signed it).",
            "Remove the secret from the machine.",
            "Use a managed identity with Azure RBAC instead of account keys; keep any remaining secret in Key Vault.",
        ]
    } else if has(&["gcp", "google", "service account", "service-account"]) {
        &[
            "Delete the service account key in IAM and create a replacement only if needed.",
            "Remove the key file from the machine.",
            "Attach the service account to the VM (metadata server credentials) or use workload identity federation instead of key files.",
        ]
    } else if has(&[
        "connection string",
        "connection-string",
        "database",
        "postgres",
        "mysql",
        "sql",
        "pgpass",
        "mongodb",
        "redis",
    ]) {
        &[
            "Change the database user's password at the database server.",
            "Remove the connection string from the file; read it at run time from a secret manager (AWS Secrets Manager, Azure Key Vault, Secret Manager).",
            "Prefer IAM / Microsoft Entra authentication to the database over passwords.",
        ]
    } else if SecretClass::of(rule_id, secret_type) == SecretClass::Token {
        &[
            "Revoke the token or password at its issuer and issue a new one only if needed.",
            "Remove it from the file and read it at run time from a secret manager.",
        ]
    } else {
        &[
            "Rotate the secret at its issuer.",
            "Remove the file or the secret from it.",
            "Keep secrets in a secret manager or use a managed identity instead of files on disk.",
        ]
    };
    steps.iter().map(|s| (*s).to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles() {
        assert_eq!(
            title(Cloud::Azure),
            "Machines should have secrets findings resolved"
        );
        assert_eq!(
            title(Cloud::Aws),
            "EC2 instances should have secrets findings resolved"
        );
        assert_eq!(
            title(Cloud::Gcp),
            "VM instances should have secrets findings resolved"
        );
        assert_eq!(
            title(Cloud::Image),
            "Machines (disk images) should have secrets findings resolved"
        );
    }

    #[test]
    fn steps_per_secret_type() {
        assert!(
            remediation_steps("ssh-private-key", "SSH private key")[0].contains("authorized_keys")
        );
        assert!(remediation_steps("aws-access-key", "AWS access key")[0].contains("IAM"));
        assert!(
            remediation_steps("azure-storage-key", "Azure storage account key")[0]
                .contains("storage account key")
        );
        assert!(
            remediation_steps("gcp-sa", "GCP service account key")[0]
                .contains("service account key")
        );
        assert!(remediation_steps("pg", "PostgreSQL connection string")[0].contains("database"));
        assert!(remediation_steps("github-pat", "GitHub token")[0].contains("Revoke"));
        assert!(remediation_steps("x", "Certificate")[0].contains("Rotate"));
    }
}
