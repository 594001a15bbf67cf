//! `--format yaml`: SecretFinding manifests named and labelled as the Job names them, which a
//! real API server accepts and a later scan's output updates in place.

use super::*;

/// The SecretFinding manifests of `--format yaml`, one per document.
fn manifests(yaml: &[u8]) -> Vec<snapsentry_crds::SecretFinding> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_slice(yaml)
        .map(|doc| snapsentry_crds::SecretFinding::deserialize(doc).expect("a SecretFinding"))
        .collect()
}

/// `--format yaml` is a stream of SecretFinding manifests named and labelled as the Job names
/// them: one per (rule, fingerprint) of the JSON report, the same names on every run.
#[test]
fn yaml_is_a_stream_of_secret_finding_manifests() {
    let parent = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    // The default machine is the directory's name without extension, as a DNS name.
    let tree = parent.path().join("App_Server.v2");
    plant(&tree);
    let out = scan(&tree, config.path(), &["--format", "yaml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_no_leak("yaml stdout", &out.stdout);
    assert_no_leak("yaml stderr", &out.stderr);
    let docs = manifests(&out.stdout);
    assert!(
        out.stdout.starts_with(b"---\n"),
        "every document starts with ---"
    );

    let json: Value =
        serde_json::from_slice(&scan(&tree, config.path(), &["--format", "json"]).stdout).unwrap();
    let mut expected: Vec<(String, String)> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["ruleId"].as_str().unwrap().to_owned(),
                f["fingerprint"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    expected.sort();
    expected.dedup();
    let mut got: Vec<(String, String)> = docs
        .iter()
        .map(|d| (d.spec.rule_id.clone(), d.spec.fingerprint.clone()))
        .collect();
    got.sort();
    assert_eq!(got, expected, "one manifest per (rule, fingerprint)");

    for d in &docs {
        let name = d.metadata.name.as_deref().unwrap();
        let hex = d.spec.fingerprint.strip_prefix("hmac-sha256:").unwrap();
        assert_eq!(
            name,
            format!("app-server-{}-{}", d.spec.rule_id, &hex[..10]),
            "the Job's naming"
        );
        assert_eq!(d.metadata.namespace, None, "kubectl apply -n decides");
        assert_eq!(d.spec.machine, "app-server");
        assert_eq!(d.spec.policy, "snapsentry-scan");
        assert_eq!(d.spec.cloud, snapsentry_crds::Cloud::Image);
        assert_eq!(d.spec.location_count as usize, d.spec.locations.len());
        assert!(d.spec.triage.is_none() && d.status.is_none());
        let labels = d.metadata.labels.as_ref().unwrap();
        // The provisional assessment of a new finding (`snapsentry_crds::assess`): an SSH key is
        // unverified until another machine authorizes it; anything else has no inventory to be
        // checked against.
        let verified = if d.spec.metadata.ssh.is_some() {
            "unverified"
        } else {
            "not-applicable"
        };
        for (k, v) in [
            ("snapsentry.io/machine", "app-server"),
            ("snapsentry.io/policy", "snapsentry-scan"),
            ("snapsentry.io/cloud", "image"),
            ("snapsentry.io/state", "active"),
            ("snapsentry.io/verified", verified),
            ("snapsentry.io/exposed", "false"),
            ("snapsentry.io/new", "true"),
        ] {
            assert_eq!(labels.get(k).map(String::as_str), Some(v), "{name}: {k}");
        }
        // All of them as a Job writes a new finding, on a machine not exposed, at the run's time.
        let assessed = snapsentry_crds::assess::scanned(
            &d.spec,
            None,
            false,
            d.spec.last_seen.0,
            &d.spec.first_seen,
        );
        assert_eq!(labels, &assessed.labels, "{name}");
        let target = d.spec.metadata.target.is_some();
        assert_eq!(
            labels.contains_key("snapsentry.io/target"),
            target,
            "{labels:?}"
        );
        assert_eq!(labels.len(), 10 + usize::from(target), "{labels:?}");
    }
    let aws = docs
        .iter()
        .find(|d| d.spec.rule_id == "aws-access-key")
        .expect("aws manifest");
    assert_eq!(aws.spec.locations[0].path, "/home/ubuntu/.aws/credentials");
    assert_eq!(aws.spec.redacted, "ZYn9…(40)");
    let storage = docs
        .iter()
        .find(|d| d.spec.rule_id == "azure-storage-connection-string")
        .expect("storage manifest");
    assert_eq!(
        storage.metadata.labels.as_ref().unwrap()["snapsentry.io/target-kind"],
        "storage-account"
    );

    // Deterministic: another run, with --machine and --policy, names the same secrets alike.
    let again = scan(
        &tree,
        config.path(),
        &[
            "--format",
            "yaml",
            "--machine",
            "web-01.lab",
            "--policy",
            "lab",
        ],
    );
    assert!(again.status.success());
    let names = |docs: &[snapsentry_crds::SecretFinding]| -> Vec<String> {
        docs.iter()
            .map(|d| d.metadata.name.clone().unwrap())
            .collect()
    };
    let renamed: Vec<String> = names(&docs)
        .iter()
        .map(|n| n.replacen("app-server-", "web-01-lab-", 1))
        .collect();
    let again = manifests(&again.stdout);
    assert_eq!(names(&again), renamed);
    assert!(
        again
            .iter()
            .all(|d| d.spec.machine == "web-01.lab" && d.spec.policy == "lab")
    );
    let third = manifests(&scan(&tree, config.path(), &["--format", "yaml"]).stdout);
    assert_eq!(names(&third), names(&docs));

    // Names that are no Kubernetes object name are refused.
    let bad = scan(
        &tree,
        config.path(),
        &["--format", "yaml", "--machine", "Web_01"],
    );
    assert_eq!(bad.status.code(), Some(2));
}

/// `snapsentry-scan image x --format yaml | kubectl apply -f -` against a real kube-apiserver
/// with the CRDs: the API server's schema validation accepts every manifest, and applying a
/// second scan's output updates the same objects instead of adding others.
#[tokio::test]
async fn yaml_manifests_apply_to_a_real_api_server() {
    use snapsentry_tests::ControlPlane;
    require("mkfs.ext4", "e2fsprogs");
    let tree = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    plant(tree.path());
    let image = work.path().join("web-01.raw");
    snapsentry_tests::image::ext4(tree.path(), &image, 32).unwrap();
    let yaml = |to: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_snapsentry-scan"))
            .arg("image")
            .arg(&image)
            .args(["--format", "yaml", "-o"])
            .arg(to)
            .env("XDG_CONFIG_HOME", config.path())
            .env_remove("SNAPSENTRY_FINGERPRINT_KEY")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read(to).unwrap()
    };
    let first = work.path().join("first.yaml");
    let docs = manifests(&yaml(&first));
    assert!(docs.len() >= 5, "{} manifests", docs.len());
    assert!(docs.iter().all(|d| d.spec.machine == "web-01"));

    let cp = ControlPlane::start().await.expect("control plane");
    cp.install_crds().expect("CRDs");
    let kubectl = |args: &[&str]| {
        let out = cp.kubectl(args).expect("kubectl runs");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let listed = || -> Vec<String> {
        let v: Value =
            serde_json::from_slice(&kubectl(&["get", "sf", "-n", "cli", "-o", "json"])).unwrap();
        let mut names: Vec<String> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };
    kubectl(&["create", "namespace", "cli"]);
    kubectl(&["apply", "-n", "cli", "-f", first.to_str().unwrap()]);
    let mut expected: Vec<String> = docs
        .iter()
        .map(|d| d.metadata.name.clone().unwrap())
        .collect();
    expected.sort();
    assert_eq!(listed(), expected);
    // Server-side apply of a later scan's output: the same objects, updated.
    let second = work.path().join("second.yaml");
    yaml(&second);
    kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-n",
        "cli",
        "-f",
        second.to_str().unwrap(),
    ]);
    assert_eq!(listed(), expected, "same names, same objects");
    let out = kubectl(&["get", "sf", "-n", "cli", "-o", "yaml"]);
    assert_no_leak("objects in the API", &out);
}
