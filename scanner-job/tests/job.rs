//! The `snapsentry-scan job` binary as a Job runs it: assignment and key in the environment,
//! `KUBECONFIG` for the API server (the harness's real kube-apiserver), JSON logs at trace level
//! on standard error. Checks the exit codes and that nothing secret is logged. The objects it
//! writes are checked in depth by `tests/tests/scanner_job.rs`, which calls the same code
//! in-process.

use std::path::Path;
use std::process::{Command, Output};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use snapsentry_crds::{MachinePhase, ScannedMachine};
use snapsentry_tests::ControlPlane;

const AWS_SECRET: &str = "Qm8rT2vX9pL4sW7yN1cK5dF3hJ6gB0zE8uR2tY5i";

fn kubectl(cp: &ControlPlane, args: &[&str]) -> String {
    let out = cp.kubectl(args).expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn image(dir: &Path) -> std::path::PathBuf {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("root/.aws")).unwrap();
    std::fs::write(
        tree.join("root/.aws/credentials"),
        format!(
            "[default]\naws_access_key_id = AKIAZ3MHTQ4XWPLN7RVB\naws_secret_access_key = {AWS_SECRET}\n"
        ),
    )
    .unwrap();
    let image = dir.join("disk.img");
    let out = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-d"])
        .arg(&tree)
        .arg(&image)
        .arg("16M")
        .output()
        .expect("mke2fs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    image
}

fn job(cp: &ControlPlane, assignment: &str, key: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_snapsentry-scan"));
    cmd.args(["job", "--no-progress"])
        .env("KUBECONFIG", cp.kubeconfig())
        .env("SNAPSENTRY_ASSIGNMENT", assignment)
        .env("SNAPSENTRY_LOG", "trace")
        .env("SNAPSENTRY_LOG_FORMAT", "json")
        .env_remove("SNAPSENTRY_FINGERPRINT_KEY");
    if let Some(k) = key {
        cmd.env("SNAPSENTRY_FINGERPRINT_KEY", k);
    }
    cmd.output().expect("snapsentry-scan job runs")
}

#[tokio::test]
async fn the_job_binary_scans_writes_and_exits_by_contract() {
    let dir = tempfile::tempdir().unwrap();
    let image = image(dir.path());
    let cp = ControlPlane::start().await.expect("control plane");
    let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/snapsentry.io_crds.yaml");
    kubectl(
        &cp,
        &["apply", "--server-side", "-f", crds.to_str().unwrap()],
    );
    kubectl(
        &cp,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd",
            "--all",
        ],
    );
    let client = cp.client().await.expect("client");
    let mut ns = Namespace::default();
    ns.metadata.name = Some("lab".into());
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    let machine: ScannedMachine = serde_json::from_value(serde_json::json!({
        "apiVersion": "snapsentry.io/v1alpha1", "kind": "ScannedMachine",
        "metadata": {"name": "lab-web-01", "namespace": "lab"},
        "spec": {"policy": "lab", "cloud": "image", "instanceId": "web-01"},
    }))
    .unwrap();
    Api::<ScannedMachine>::namespaced(client.clone(), "lab")
        .create(&PostParams::default(), &machine)
        .await
        .expect("ScannedMachine");

    let assignment = |machine: &str| {
        serde_json::json!({
            "version": 1, "policy": "lab", "namespace": "lab", "machine": machine,
            "instanceId": "web-01", "scanId": "20261122-140000", "cloud": "image",
            "disks": [{"id": "disk.img", "source": {"kind": "image", "path": image}}],
            "maxFindings": 500,
        })
        .to_string()
    };

    let out = job(&cp, &assignment("lab-web-01"), Some("job-test-key"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("scan finished"), "{stderr}");
    assert!(
        stderr.lines().all(|l| l.starts_with('{')),
        "JSON log lines: {stderr}"
    );
    let sm = Api::<ScannedMachine>::namespaced(client, "lab")
        .get("lab-web-01")
        .await
        .expect("ScannedMachine");
    let status = sm.status.expect("status");
    assert_eq!(status.phase, Some(MachinePhase::Scanned));
    assert_eq!(status.last_scan.expect("lastScan").findings, 1);
    let yaml = kubectl(&cp, &["get", "sf,sm", "-n", "lab", "-o", "yaml"]);
    assert!(yaml.contains("ruleId: aws-access-key"), "{yaml}");
    for (what, text) in [("stderr", &*stderr), ("objects", &*yaml)] {
        for w in AWS_SECRET.as_bytes().windows(12) {
            let w = std::str::from_utf8(w).unwrap();
            assert!(!text.contains(w), "{what} leaks {w:?}");
        }
    }

    // An unusable assignment or no key: exit 2. An unknown machine (the API said no): exit 1.
    assert_eq!(job(&cp, "{", Some("k")).status.code(), Some(2));
    assert_eq!(
        job(&cp, &assignment("lab-web-01"), None).status.code(),
        Some(2)
    );
    let out = job(&cp, &assignment("no-such-machine"), Some("k"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}
