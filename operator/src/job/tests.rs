//! Tests of the scanner Job's shape.

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
                archive_depth: Some(2),
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
        pod_defaults: ScannerPodDefaults::default(),
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
    assert_eq!(a.rules.archive_depth, Some(2));
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
