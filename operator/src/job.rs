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

    let pod = PodSpec {
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
        node_selector: (!scanner.node_selector.is_empty()).then(|| scanner.node_selector.clone()),
        tolerations: (!scanner.tolerations.is_empty()).then(|| scanner.tolerations.clone()),
        ..Default::default()
    };

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
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        status: None,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use k8s_openapi::api::core::v1::Toleration;
    use snapsentry_crds::{
        DiskSource, ExclusionsSpec, ImagesProvider, ProviderSpec, RulesSpec, ScanPolicySpec,
        ScannerSpec,
    };

    use super::*;
    use crate::correlate::is_valid_label_value;

    fn policy(ns: &str) -> ScanPolicy {
        let mut p = ScanPolicy::new(
            "lab-images",
            ScanPolicySpec {
                providers: vec![ProviderSpec {
                    aws: None,
                    azure: None,
                    gcp: None,
                    images: Some(ImagesProvider {
                        persistent_volume_claim: Some("vm-images".into()),
                        machines: vec![],
                    }),
                }],
                schedule: None,
                time_zone: None,
                suspend: false,
                concurrency: None,
                rules: Some(RulesSpec {
                    extra_rules_config_map: None,
                    disable: vec!["generic-password".into()],
                    include_tests: true,
                    max_file_size_bytes: Some(1 << 20),
                }),
                exclusions: Some(ExclusionsSpec {
                    paths: vec!["/var/lib/docker/**".into()],
                    secret_types: vec![],
                }),
                verification: None,
                scanner: Some(ScannerSpec {
                    image: None,
                    resources: None,
                    node_selector: BTreeMap::from([("pool".into(), "scanners".into())]),
                    tolerations: vec![Toleration {
                        key: Some("scanners".into()),
                        operator: Some("Exists".into()),
                        ..Default::default()
                    }],
                    timeout_seconds: Some(900),
                }),
                resolved_retention: None,
            },
        );
        p.metadata.namespace = Some(ns.into());
        p.metadata.uid = Some("0d5c-uid".into());
        p
    }

    pub(crate) fn settings() -> JobSettings {
        JobSettings {
            namespace: "snapsentry".into(),
            image: "ghcr.io/snapsentry/snapsentry-scan:0.1.0".into(),
            service_account: "snapsentry-scanner".into(),
            fingerprint_secret: "snapsentry-fingerprint".into(),
            fingerprint_secret_key: "key".into(),
            ttl_seconds_after_finished: 3600,
            default_resources: None,
            default_timeout_seconds: DEFAULT_TIMEOUT_SECONDS,
            aws_credentials_secret: None,
            max_findings: 500,
        }
    }

    fn request() -> JobRequest<'static> {
        JobRequest {
            machine: "lab-images-web-01",
            instance_id: "web-01",
            cloud: Cloud::Image,
            scan_id: "20261122-140000",
            disks: vec![AssignedDisk {
                id: "web-01.qcow2".into(),
                source: DiskSource::Image {
                    path: "/images/web-01.qcow2".into(),
                },
            }],
            images_claim: Some("vm-images"),
            grant_secret: None,
        }
    }

    fn volume<'j>(job: &'j Job, name: &str) -> Option<(&'j Volume, &'j VolumeMount)> {
        let pod = job.spec.as_ref()?.template.spec.as_ref()?;
        let volume = pod.volumes.iter().flatten().find(|v| v.name == name)?;
        let mount = pod.containers[0]
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == name)?;
        Some((volume, mount))
    }

    #[test]
    fn only_a_job_with_a_grant_mounts_its_secret() {
        let job = scanner_job(&policy("snapsentry"), &request(), &settings()).unwrap();
        assert!(volume(&job, "grants").is_none());
        let req = JobRequest {
            grant_secret: Some("grant-secret"),
            ..request()
        };
        let job = scanner_job(&policy("snapsentry"), &req, &settings()).unwrap();
        let (v, m) = volume(&job, "grants").expect("grant volume");
        let secret = v.secret.as_ref().expect("a secret volume");
        assert_eq!(secret.secret_name.as_deref(), Some("grant-secret"));
        assert_eq!(secret.default_mode, Some(0o400));
        assert_eq!(secret.optional, Some(false));
        assert_eq!(
            (m.mount_path.as_str(), m.read_only),
            ("/var/run/snapsentry/grants", Some(true))
        );
    }

    #[test]
    fn aws_jobs_get_the_scanner_credentials_secret() {
        let env_names = |job: &Job| -> Vec<(String, Option<String>)> {
            job.spec
                .as_ref()
                .unwrap()
                .template
                .spec
                .as_ref()
                .unwrap()
                .containers[0]
                .env
                .iter()
                .flatten()
                .map(|e| {
                    let key = e
                        .value_from
                        .as_ref()
                        .and_then(|v| v.secret_key_ref.as_ref())
                        .map(|r| format!("{}/{}", r.name, r.key));
                    (e.name.clone(), key)
                })
                .collect()
        };
        let with_secret = JobSettings {
            aws_credentials_secret: Some("aws-scanner".into()),
            ..settings()
        };
        let aws = JobRequest {
            cloud: Cloud::Aws,
            images_claim: None,
            disks: vec![AssignedDisk {
                id: "vol-1".into(),
                source: DiskSource::EbsSnapshot {
                    snapshot_id: "snap-1".into(),
                    region: "eu-west-1".into(),
                    endpoint_url: None,
                    assume_role_arn: None,
                    external_id: None,
                },
            }],
            ..request()
        };
        let env = env_names(&scanner_job(&policy("snapsentry"), &aws, &with_secret).unwrap());
        for (var, key) in [
            ("AWS_ACCESS_KEY_ID", "aws-scanner/accessKeyId"),
            ("AWS_SECRET_ACCESS_KEY", "aws-scanner/secretAccessKey"),
            ("AWS_SESSION_TOKEN", "aws-scanner/sessionToken"),
        ] {
            assert!(env.contains(&(var.into(), Some(key.into()))), "{env:?}");
        }
        // Image machines never see AWS credentials, nor do AWS ones without the setting.
        for (req, settings) in [(request(), &with_secret), (aws.clone(), &settings())] {
            let env = env_names(&scanner_job(&policy("snapsentry"), &req, settings).unwrap());
            assert!(env.iter().all(|(n, _)| !n.starts_with("AWS_")), "{env:?}");
        }
    }

    #[test]
    fn the_job() {
        let job = scanner_job(&policy("snapsentry"), &request(), &settings()).unwrap();
        let meta = &job.metadata;
        assert_eq!(meta.namespace.as_deref(), Some("snapsentry"));
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels["snapsentry.io/policy"], "lab-images");
        assert_eq!(labels["snapsentry.io/machine"], "lab-images-web-01");
        assert_eq!(labels["snapsentry.io/scan-id"], "20261122-140000");
        assert_eq!(labels["snapsentry.io/managed-by"], "snapsentry-operator");
        assert!(labels.values().all(|v| is_valid_label_value(v)));
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("ScanPolicy", "lab-images", "0d5c-uid")
        );
        assert_eq!(owner.api_version, "snapsentry.io/v1alpha1");
        assert_eq!(owner.controller, Some(true));

        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        assert_eq!(spec.active_deadline_seconds, Some(900));
        assert_eq!(spec.ttl_seconds_after_finished, Some(3600));
        assert_eq!(
            spec.template.metadata.as_ref().unwrap().labels.as_ref(),
            Some(labels)
        );

        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(
            pod.service_account_name.as_deref(),
            Some("snapsentry-scanner")
        );
        assert_eq!(pod.automount_service_account_token, Some(true));
        let psc = pod.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(
            psc.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        assert_eq!(pod.node_selector.as_ref().unwrap()["pool"], "scanners");
        assert_eq!(
            pod.tolerations.as_ref().unwrap()[0].key.as_deref(),
            Some("scanners")
        );

        let c = &pod.containers[0];
        assert_eq!(
            c.image.as_deref(),
            Some("ghcr.io/snapsentry/snapsentry-scan:0.1.0")
        );
        assert_eq!(
            c.command.as_ref().unwrap()[..2],
            ["snapsentry-scan".to_owned(), "job".to_owned()]
        );
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_owned()][..])
        );
        assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");

        let volumes = pod.volumes.as_ref().unwrap();
        assert!(
            volumes
                .iter()
                .any(|v| v.name == "tmp" && v.empty_dir.is_some())
        );
        let images = volumes.iter().find(|v| v.name == "images").unwrap();
        let pvc = images.persistent_volume_claim.as_ref().unwrap();
        assert_eq!(
            (pvc.claim_name.as_str(), pvc.read_only),
            ("vm-images", Some(true))
        );
        let mounts = c.volume_mounts.as_ref().unwrap();
        assert!(
            mounts
                .iter()
                .any(|m| m.mount_path == "/tmp" && m.read_only.is_none())
        );
        assert!(
            mounts
                .iter()
                .any(|m| m.mount_path == "/images" && m.read_only == Some(true))
        );

        let env = c.env.as_ref().unwrap();
        let key = env
            .iter()
            .find(|e| e.name == "SNAPSENTRY_FINGERPRINT_KEY")
            .unwrap();
        assert!(
            key.value.is_none(),
            "the key comes from the Secret, never inline"
        );
        let sel = key
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(
            (sel.name.as_str(), sel.key.as_str()),
            ("snapsentry-fingerprint", "key")
        );
        let raw = env
            .iter()
            .find(|e| e.name == "SNAPSENTRY_ASSIGNMENT")
            .unwrap()
            .value
            .as_ref()
            .unwrap();
        let a: ScanAssignment = serde_json::from_str(raw).unwrap();
        assert_eq!(a.version, 1);
        assert_eq!(
            (a.policy.as_str(), a.namespace.as_str()),
            ("lab-images", "snapsentry")
        );
        assert_eq!(
            (a.machine.as_str(), a.scan_id.as_str(), a.cloud),
            ("lab-images-web-01", "20261122-140000", Cloud::Image)
        );
        assert_eq!(a.disks, request().disks);
        assert_eq!(a.rules.disable, ["generic-password"]);
        assert!(a.rules.include_tests);
        assert_eq!(a.rules.max_file_size_bytes, Some(1 << 20));
        assert_eq!(a.rules.exclude_paths, ["/var/lib/docker/**"]);
        assert_eq!(a.max_findings, 500);
    }

    #[test]
    fn a_policy_in_another_namespace_is_linked_by_label_not_owner() {
        let job = scanner_job(&policy("team-a"), &request(), &settings()).unwrap();
        assert!(job.metadata.owner_references.is_none());
        assert_eq!(
            job.metadata.labels.as_ref().unwrap()["snapsentry.io/policy-namespace"],
            "team-a"
        );
    }

    #[test]
    fn defaults_without_scanner_spec_or_claim() {
        let mut p = policy("snapsentry");
        p.spec.scanner = None;
        let mut req = request();
        req.images_claim = None;
        let mut s = settings();
        s.default_resources = Some(ResourceRequirements {
            requests: Some(BTreeMap::from([("cpu".into(), Quantity("500m".into()))])),
            ..Default::default()
        });
        let job = scanner_job(&p, &req, &s).unwrap();
        let spec = job.spec.unwrap();
        assert_eq!(spec.active_deadline_seconds, Some(DEFAULT_TIMEOUT_SECONDS));
        let pod = spec.template.spec.unwrap();
        assert!(pod.node_selector.is_none() && pod.tolerations.is_none());
        assert!(pod.volumes.unwrap().iter().all(|v| v.name != "images"));
        assert_eq!(pod.containers[0].resources, s.default_resources);
    }

    #[test]
    fn a_policy_without_namespace_is_an_error() {
        let mut p = policy("x");
        p.metadata.namespace = None;
        assert!(matches!(
            scanner_job(&p, &request(), &settings()),
            Err(Error::MissingField { .. })
        ));
    }
}
