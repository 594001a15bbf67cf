//! The scanner Job for one machine of one scan.
//!
//! The Job runs `snapsentry-scan job` with the whole assignment in one JSON environment variable,
//! `SNAPSENTRY_ASSIGNMENT` (a [`ScanAssignment`], defined in `snapsentry-crds` so the scanner
//! parses exactly what the operator writes), and the fingerprint key in
//! `SNAPSENTRY_FINGERPRINT_KEY` from the installation's Secret. The pod runs with no privilege:
//! non-root, read-only root filesystem, no capabilities, `RuntimeDefault` seccomp, an `emptyDir`
//! for `/tmp`. Its service account token is mounted only because the scanner writes its
//! SecretFindings and its ScannedMachine status itself. A Job whose provider granted read access
//! (Azure: a SAS URL per snapshot) also mounts its own grant Secret ([`crate::grant`]) read-only
//! at [`contract::GRANTS_DIR`].

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    ResourceRequirements, SeccompProfile, SecretKeySelector, SecretVolumeSource, SecurityContext,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use snapsentry_crds::{
    ASSIGNMENT_ENV, AssignedDisk, AssignmentRules, Cloud, FINGERPRINT_KEY_ENV, ScanAssignment,
    ScanPolicy, labels, limits,
};

use crate::error::{Error, Result};
pub use pod::ScannerPodDefaults;

mod pod;
use snapsentry_cloud::images::IMAGES_MOUNT;
use snapsentry_crds::contract::{self, job_name};
use snapsentry_crds::label_value::slugify;

/// Default scan timeout (`spec.scanner.timeoutSeconds`).
pub const DEFAULT_TIMEOUT_SECONDS: i64 = 3600;
/// User and group the scanner runs as (the distroless `nonroot` user).
pub const SCANNER_UID: i64 = 65532;

/// Installation-wide settings for scanner Jobs (from the operator's environment).
#[derive(Clone, Debug, PartialEq)]
pub struct JobSettings {
    /// Namespace the Jobs run in (the operator's, where the scanner service account lives).
    pub namespace: String,
    pub image: String,
    pub service_account: String,
    /// Secret holding the fingerprint key, and its key.
    pub fingerprint_secret: String,
    pub fingerprint_secret_key: String,
    pub ttl_seconds_after_finished: i32,
    /// Resources when the policy sets none.
    pub default_resources: Option<ResourceRequirements>,
    /// `activeDeadlineSeconds` when the policy sets no `scanner.timeoutSeconds`.
    pub default_timeout_seconds: i64,
    /// Secret (in the Jobs' namespace) with `accessKeyId`, `secretAccessKey` and optional
    /// `sessionToken` for scanners reading EBS snapshots; without it they use their service
    /// account's identity (IRSA) or the node's.
    pub aws_credentials_secret: Option<String>,
    /// Pull secrets and placement of every Job's pod (`SNAPSENTRY_SCANNER_POD`).
    pub pod_defaults: ScannerPodDefaults,
    /// SecretFindings a Job writes per machine at most (1 to
    /// [`limits::MAX_FINDINGS_PER_MACHINE`]); the rest are counted, not written.
    pub max_findings: u32,
}

/// Environment variables the AWS SDK reads, filled from the keys of a credentials Secret.
const AWS_SECRET_KEYS: [(&str, &str, bool); 3] = [
    ("AWS_ACCESS_KEY_ID", "accessKeyId", false),
    ("AWS_SECRET_ACCESS_KEY", "secretAccessKey", false),
    ("AWS_SESSION_TOKEN", "sessionToken", true),
];

/// One machine to scan, as the controller knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRequest<'a> {
    /// ScannedMachine name.
    pub machine: &'a str,
    pub instance_id: &'a str,
    pub cloud: Cloud,
    pub scan_id: &'a str,
    pub disks: Vec<AssignedDisk>,
    /// PersistentVolumeClaim (in the Job's namespace) holding disk images, mounted read-only.
    pub images_claim: Option<&'a str>,
    /// The Job's grant Secret (in the Job's namespace), mounted read-only at
    /// [`contract::GRANTS_DIR`]; `None` when the provider granted nothing.
    pub grant_secret: Option<&'a str>,
}

/// Mode of the grant files in the Job's container: readable by their owner only.
pub const GRANT_FILE_MODE: i32 = 0o400;

/// `activeDeadlineSeconds` of the policy's scanner Jobs.
pub fn active_deadline_seconds(policy: &ScanPolicy, settings: &JobSettings) -> i64 {
    policy
        .spec
        .scanner
        .as_ref()
        .and_then(|s| s.timeout_seconds)
        .unwrap_or(settings.default_timeout_seconds)
}

/// Labels of a scanner Job, its pod and its grant Secret.
pub fn job_labels(
    policy: &ScanPolicy,
    machine: &str,
    scan_id: &str,
) -> Result<BTreeMap<String, String>> {
    Ok(BTreeMap::from([
        (labels::POLICY.to_owned(), slugify(name_of(policy)?)),
        (
            labels::POLICY_NAMESPACE.to_owned(),
            slugify(namespace_of(policy)?),
        ),
        (labels::MACHINE.to_owned(), slugify(machine)),
        (labels::SCAN_ID.to_owned(), slugify(scan_id)),
        (labels::MANAGED_BY.to_owned(), contract::OPERATOR.to_owned()),
        (
            "app.kubernetes.io/name".to_owned(),
            "snapsentry-scanner".to_owned(),
        ),
    ]))
}

/// The assignment for one machine from the policy's rules and exclusions.
pub fn assignment(
    policy: &ScanPolicy,
    req: &JobRequest<'_>,
    settings: &JobSettings,
) -> Result<ScanAssignment> {
    let rules = policy.spec.rules.clone().unwrap_or_default();
    let exclusions = policy.spec.exclusions.clone().unwrap_or_default();
    Ok(ScanAssignment {
        version: ScanAssignment::VERSION,
        policy: name_of(policy)?.to_owned(),
        namespace: namespace_of(policy)?.to_owned(),
        machine: req.machine.to_owned(),
        instance_id: req.instance_id.to_owned(),
        scan_id: req.scan_id.to_owned(),
        cloud: req.cloud,
        disks: req.disks.clone(),
        rules: AssignmentRules {
            extra_rules_config_map: rules.extra_rules_config_map,
            disable: rules.disable,
            include_tests: rules.include_tests,
            max_file_size_bytes: rules.max_file_size_bytes,
            archive_depth: rules.archive_depth,
            exclude_paths: exclusions.paths,
            exclude_secret_types: exclusions.secret_types,
        },
        max_findings: settings
            .max_findings
            .clamp(1, limits::MAX_FINDINGS_PER_MACHINE as u32),
    })
}

fn name_of(policy: &ScanPolicy) -> Result<&str> {
    policy.metadata.name.as_deref().ok_or(Error::MissingField {
        kind: "ScanPolicy",
        field: "metadata.name",
    })
}

fn namespace_of(policy: &ScanPolicy) -> Result<&str> {
    policy
        .metadata
        .namespace
        .as_deref()
        .ok_or(Error::MissingField {
            kind: "ScanPolicy",
            field: "metadata.namespace",
        })
}

/// The scanner Job for one machine.
///
/// The Job is owned by the ScanPolicy when both are in the same namespace. Kubernetes forbids
/// owner references across namespaces (the garbage collector would treat the owner as gone and
/// delete the Job at once), so a Job for a policy elsewhere carries the
/// `snapsentry.io/policy-namespace` label instead and the controller deletes it with the policy.
pub fn scanner_job(
    policy: &ScanPolicy,
    req: &JobRequest<'_>,
    settings: &JobSettings,
) -> Result<Job> {
    let policy_name = name_of(policy)?;
    let policy_ns = namespace_of(policy)?;
    let assignment = assignment(policy, req, settings)?;
    let scanner = policy.spec.scanner.clone().unwrap_or_default();

    let labels = job_labels(policy, req.machine, req.scan_id)?;
    let owner_references = (policy_ns == settings.namespace)
        .then(|| {
            policy.controller_owner_ref(&()).map(|o| {
                vec![OwnerReference {
                    block_owner_deletion: Some(true),
                    ..o
                }]
            })
        })
        .flatten();

    let mut volumes = vec![Volume {
        name: "tmp".into(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(Quantity("1Gi".into())),
            ..Default::default()
        }),
        ..Default::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: "tmp".into(),
        mount_path: "/tmp".into(),
        ..Default::default()
    }];
    if let Some(claim) = req.images_claim {
        volumes.push(Volume {
            name: "images".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.to_owned(),
                read_only: Some(true),
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: "images".into(),
            mount_path: IMAGES_MOUNT.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    if let Some(secret) = req.grant_secret {
        volumes.push(Volume {
            name: "grants".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.to_owned()),
                default_mode: Some(GRANT_FILE_MODE),
                optional: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: "grants".into(),
            mount_path: contract::GRANTS_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }

    let env = vec![
        EnvVar {
            name: ASSIGNMENT_ENV.into(),
            value: Some(serde_json::to_string(&assignment)?),
            ..Default::default()
        },
        EnvVar {
            name: FINGERPRINT_KEY_ENV.into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: settings.fingerprint_secret.clone(),
                    key: settings.fingerprint_secret_key.clone(),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        EnvVar {
            name: "SNAPSENTRY_LOG_FORMAT".into(),
            value: Some("json".into()),
            ..Default::default()
        },
        EnvVar {
            name: "TMPDIR".into(),
            value: Some("/tmp".into()),
            ..Default::default()
        },
    ];
    let mut env = env;
    if let (Cloud::Aws, Some(secret)) = (req.cloud, &settings.aws_credentials_secret) {
        env.extend(AWS_SECRET_KEYS.iter().map(|(var, key, optional)| EnvVar {
            name: (*var).into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.clone(),
                    key: (*key).into(),
                    optional: Some(*optional),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }));
    }

    let container = Container {
        name: "scanner".into(),
        image: Some(
            scanner
                .image
                .clone()
                .unwrap_or_else(|| settings.image.clone()),
        ),
        command: Some(vec![
            "snapsentry-scan".into(),
            "job".into(),
            "--no-progress".into(),
        ]),
        env: Some(env),
        resources: scanner
            .resources
            .clone()
            .or_else(|| settings.default_resources.clone()),
        volume_mounts: Some(mounts),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };

    let mut pod = PodSpec {
        restart_policy: Some("Never".into()),
        service_account_name: Some(settings.service_account.clone()),
        // The scanner writes SecretFindings and its ScannedMachine's status with this token.
        automount_service_account_token: Some(true),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(SCANNER_UID),
            run_as_group: Some(SCANNER_UID),
            fs_group: Some(SCANNER_UID),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        containers: vec![container],
        volumes: Some(volumes),
        ..Default::default()
    };
    settings.pod_defaults.apply_to_pod(&mut pod, &scanner);
    let mut pod_meta = ObjectMeta {
        labels: Some(labels.clone()),
        ..Default::default()
    };
    settings.pod_defaults.apply_to_meta(&mut pod_meta);

    Ok(Job {
        metadata: ObjectMeta {
            name: Some(job_name(policy_name, req.machine, req.scan_id)),
            namespace: Some(settings.namespace.clone()),
            labels: Some(labels.clone()),
            owner_references,
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(active_deadline_seconds(policy, settings)),
            ttl_seconds_after_finished: Some(settings.ttl_seconds_after_finished),
            template: PodTemplateSpec {
                metadata: Some(pod_meta),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        status: None,
    })
}

#[cfg(test)]
pub(crate) mod tests;
