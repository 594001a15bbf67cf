//! The local control plane is a real Kubernetes API: objects written through `kube` are read back by
//! `kubectl`, the server reports the pinned version, and a broken toolchain fails fast.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Namespace, PodSpec, PodTemplateSpec};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use serde_json::Value;
use snapsentry_tests::ControlPlane;
use snapsentry_tests::controlplane::{Error, Options, Versions};

const NAMESPACE: &str = "snapsentry-e2e";

#[tokio::test]
async fn objects_written_through_kube_are_read_back_by_kubectl() -> Result<()> {
    let control_plane = ControlPlane::start().await?;
    let client = control_plane.client().await?;

    let version = client.apiserver_version().await?;
    let (major, minor) = Versions::pinned().kubernetes_major_minor();
    ensure!(
        (version.major.as_str(), version.minor.as_str()) == (major, minor),
        "server reports {}.{} ({}), versions.env pins {}",
        version.major,
        version.minor,
        version.git_version,
        Versions::pinned().kubernetes
    );

    create_objects(&client).await?;

    let namespace = kubectl_json(&control_plane, &["get", "namespace", NAMESPACE])?;
    ensure!(
        namespace["metadata"]["name"] == NAMESPACE,
        "namespace: {namespace}"
    );

    let config_map = kubectl_json(
        &control_plane,
        &["get", "configmap", "scan-settings", "-n", NAMESPACE],
    )?;
    ensure!(
        config_map["data"]["mode"] == "full",
        "configmap: {config_map}"
    );

    let job = kubectl_json(
        &control_plane,
        &["get", "job", "scan-disk", "-n", NAMESPACE],
    )?;
    ensure!(job["metadata"]["name"] == "scan-disk", "job: {job}");
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    let expected_command = serde_json::json!(["snapsentry-scan", "--once"]);
    ensure!(container["command"] == expected_command, "job: {job}");

    // Dropping the control plane stops the servers and removes their directory.
    let directory = control_plane
        .kubeconfig()
        .parent()
        .context("kubeconfig has a parent")?
        .to_owned();
    let address = control_plane
        .server_url()
        .trim_start_matches("https://")
        .to_owned();
    drop(control_plane);
    ensure!(
        !directory.exists(),
        "{} survived the drop",
        directory.display()
    );
    ensure!(
        TcpStream::connect(&address).is_err(),
        "kube-apiserver still listens on {address}"
    );
    Ok(())
}

async fn create_objects(client: &Client) -> Result<()> {
    let params = PostParams::default();
    let meta = |name: &str| ObjectMeta {
        name: Some(name.to_owned()),
        ..ObjectMeta::default()
    };

    Api::<Namespace>::all(client.clone())
        .create(
            &params,
            &Namespace {
                metadata: meta(NAMESPACE),
                ..Namespace::default()
            },
        )
        .await?;

    let config_map = ConfigMap {
        metadata: meta("scan-settings"),
        data: Some(BTreeMap::from([("mode".to_owned(), "full".to_owned())])),
        ..ConfigMap::default()
    };
    Api::<ConfigMap>::namespaced(client.clone(), NAMESPACE)
        .create(&params, &config_map)
        .await?;

    let job = Job {
        metadata: meta("scan-disk"),
        spec: Some(JobSpec {
            template: PodTemplateSpec {
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "scan".to_owned(),
                        image: Some("snapsentry/scanner-job:test".to_owned()),
                        command: Some(vec!["snapsentry-scan".to_owned(), "--once".to_owned()]),
                        ..Container::default()
                    }],
                    restart_policy: Some("Never".to_owned()),
                    ..PodSpec::default()
                }),
                ..PodTemplateSpec::default()
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    };
    Api::<Job>::namespaced(client.clone(), NAMESPACE)
        .create(&params, &job)
        .await?;
    Ok(())
}

fn kubectl_json(control_plane: &ControlPlane, args: &[&str]) -> Result<Value> {
    let output = control_plane.kubectl(args.iter().chain(&["-o", "json"]))?;
    ensure!(
        output.status.success(),
        "kubectl {} failed ({}): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).context("kubectl printed invalid JSON")
}

#[tokio::test]
async fn shared_control_plane_outlives_the_thread_that_started_it() -> Result<()> {
    // Start it from a thread (and runtime) that ends before the control plane is used: the servers
    // must not be tied to the thread that happened to start them.
    std::thread::spawn(|| -> Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(ControlPlane::shared())?;
        Ok(())
    })
    .join()
    .expect("starter thread panicked")?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let control_plane = ControlPlane::shared().await?;
    let namespaces = Api::<Namespace>::all(control_plane.client().await?)
        .list(&Default::default())
        .await?;
    let names: Vec<String> = namespaces
        .items
        .into_iter()
        .filter_map(|namespace| namespace.metadata.name)
        .collect();
    ensure!(
        names.iter().any(|name| name == "kube-system"),
        "namespaces: {names:?}"
    );
    Ok(())
}

#[tokio::test]
async fn missing_binaries_are_an_error_naming_the_toolchain_script() -> Result<()> {
    let empty = tempfile::tempdir()?;
    let options = Options {
        assets: empty.path().to_owned(),
        ..Options::default()
    };
    let error = ControlPlane::start_with(options)
        .await
        .expect_err("started without binaries");
    ensure!(
        matches!(error, Error::MissingBinaries { .. }),
        "unexpected error: {error:?}"
    );
    ensure!(
        error.to_string().contains("scripts/toolchain.sh"),
        "unhelpful message: {error}"
    );
    Ok(())
}

#[tokio::test]
async fn a_server_that_exits_at_startup_is_reported_with_its_log() -> Result<()> {
    let assets = tempfile::tempdir()?;
    for name in ["etcd", "kube-apiserver", "kubectl"] {
        let path = assets.path().join(name);
        std::fs::write(&path, "#!/bin/sh\necho \"$0: cannot start\" >&2\nexit 3\n")?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    let options = Options {
        assets: assets.path().to_owned(),
        ..Options::default()
    };
    let started = Instant::now();
    let error = ControlPlane::start_with(options)
        .await
        .expect_err("a crashing etcd started");
    ensure!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let Error::Exited {
        name, status, tail, ..
    } = &error
    else {
        anyhow::bail!("unexpected error: {error:?}");
    };
    ensure!(
        *name == "etcd" && status.code() == Some(3),
        "unexpected error: {error}"
    );
    ensure!(
        tail.contains("cannot start"),
        "log tail lacks the server's output: {error}"
    );
    Ok(())
}

#[tokio::test]
async fn a_server_that_never_gets_ready_times_out_with_its_log() -> Result<()> {
    let assets = tempfile::tempdir()?;
    let toolchain = snapsentry_tests::controlplane::toolchain_dir();
    std::os::unix::fs::symlink(toolchain.join("etcd"), assets.path().join("etcd"))?;
    std::os::unix::fs::symlink(toolchain.join("kubectl"), assets.path().join("kubectl"))?;
    let apiserver = assets.path().join("kube-apiserver");
    std::fs::write(
        &apiserver,
        "#!/bin/sh\necho \"$0: hanging\"\nexec sleep 600\n",
    )?;
    std::fs::set_permissions(&apiserver, std::fs::Permissions::from_mode(0o755))?;

    let timeout = Duration::from_secs(3);
    let options = Options {
        assets: assets.path().to_owned(),
        startup_timeout: timeout,
        node: None,
    };
    let started = Instant::now();
    let error = ControlPlane::start_with(options)
        .await
        .expect_err("a hanging server got ready");
    ensure!(
        started.elapsed() < timeout * 3,
        "took {:?}",
        started.elapsed()
    );
    let Error::NotReady { name, tail, .. } = &error else {
        anyhow::bail!("unexpected error: {error:?}");
    };
    ensure!(*name == "kube-apiserver", "unexpected error: {error}");
    ensure!(
        tail.contains("hanging"),
        "log tail lacks the server's output: {error}"
    );
    Ok(())
}

#[tokio::test]
async fn helm_talks_to_the_control_plane() -> Result<()> {
    let control_plane = ControlPlane::shared().await?;
    let output = std::process::Command::new(control_plane.helm()?)
        .arg("list")
        .arg("--all-namespaces")
        .args(["--output", "json"])
        .arg("--kubeconfig")
        .arg(control_plane.kubeconfig())
        .output()?;
    ensure!(
        output.status.success(),
        "helm list failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let releases: Value = serde_json::from_slice(&output.stdout)?;
    ensure!(releases == serde_json::json!([]), "releases: {releases}");
    Ok(())
}
