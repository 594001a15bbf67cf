//! The container images: one version for the workspace, the chart and the images; and the images
//! `make images` builds (`scripts/images.sh`) loaded from their OCI archives and run under podman
//! with the security settings the chart gives the operator's pod and the operator gives scanner
//! Jobs — user 65532, a read-only root, no capabilities, no privilege escalation, the runtime's
//! default seccomp profile — the scanner reading a qcow2 from a read-only bind mount as a Job
//! reads the images provider's volume. Their labels, user, entrypoint and `PATH` are the ones the
//! Containerfile declares, so the images built here and the ones the Containerfile builds
//! elsewhere agree.
//!
//! Two things of this machine's sandbox shape the `podman run` flags, nothing of the images: crun
//! refuses the hybrid cgroup layout (cgroup v1 with a cgroup2 hierarchy holding `hugetlb`), so the
//! containers run under Debian's runc; and the sandbox withholds CAP_SYS_RESOURCE, so no runtime
//! may raise a resource limit: podman's default `nofile`/`nproc` limits (above this machine's)
//! are lowered to ones any host allows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::core::v1::{Container, PodSpec};
use snapsentry_tests::chart_rbac::render;
use snapsentry_tests::controlplane::{ControlPlane, cache_dir};
use snapsentry_tests::planted::{AWS_KEY_ID, AWS_SECRET};
use snapsentry_tests::process::ok;
use snapsentry_tests::repo;

use crate::chart::{deployment, images_scanner_job};

/// The workspace version: what the binaries print and the images are tagged with.
const VERSION: &str = env!("CARGO_PKG_VERSION");

const OPERATOR: &str = "snapsentry-operator";
const SCANNER: &str = "snapsentry-scan";

/// The Containerfile's `ARG VERSION` default and the chart's `appVersion` are the workspace version.
#[test]
fn one_version_for_the_workspace_the_chart_and_the_images() -> Result<()> {
    let chart: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(
        repo().join("charts/snapsentry/Chart.yaml"),
    )?)?;
    ensure!(
        chart["appVersion"].as_str() == Some(VERSION),
        "charts/snapsentry/Chart.yaml appVersion {:?} is not the workspace version {VERSION}",
        chart["appVersion"]
    );
    let containerfile = Containerfile::read()?;
    ensure!(
        containerfile.args.get("VERSION").map(String::as_str) == Some(VERSION),
        "Containerfile ARG VERSION {:?} is not the workspace version {VERSION}",
        containerfile.args.get("VERSION")
    );
    Ok(())
}

/// The Containerfile's stages as this test needs them: the `ARG` defaults and, per stage, its
/// parent stage, labels, user, environment and entrypoint.
#[derive(Debug, Default)]
struct Containerfile {
    args: BTreeMap<String, String>,
    stages: BTreeMap<String, Stage>,
}

#[derive(Debug, Default, Clone)]
struct Stage {
    from: String,
    labels: BTreeMap<String, String>,
    user: Option<String>,
    env: BTreeMap<String, String>,
    entrypoint: Option<Vec<String>>,
}

/// What an image's configuration says, from the Containerfile or from `podman image inspect`.
#[derive(Debug, PartialEq, Eq)]
struct ImageConfig {
    labels: BTreeMap<String, String>,
    user: String,
    env: BTreeMap<String, String>,
    entrypoint: Vec<String>,
}

impl Containerfile {
    fn read() -> Result<Self> {
        let text = std::fs::read_to_string(repo().join("Containerfile"))?;
        Self::parse(&text)
    }

    fn parse(text: &str) -> Result<Self> {
        let mut file = Containerfile::default();
        let mut current: Option<String> = None;
        for line in logical_lines(text) {
            let (instruction, rest) = line
                .split_once(char::is_whitespace)
                .unwrap_or((line.as_str(), ""));
            let rest = rest.trim();
            match instruction.to_ascii_uppercase().as_str() {
                "ARG" if current.is_none() => {
                    if let Some((name, value)) = rest.split_once('=') {
                        file.args.insert(name.into(), value.into());
                    }
                }
                "FROM" => {
                    let words: Vec<&str> = rest.split_whitespace().collect();
                    let (from, name) = match words[..] {
                        [from, as_, name] if as_.eq_ignore_ascii_case("as") => (from, name),
                        _ => bail!("Containerfile: every stage is named (FROM x AS name): {line}"),
                    };
                    file.stages.insert(
                        name.into(),
                        Stage {
                            from: from.into(),
                            ..Stage::default()
                        },
                    );
                    current = Some(name.into());
                }
                other => {
                    let Some(stage) = current.as_ref().and_then(|s| file.stages.get_mut(s)) else {
                        continue;
                    };
                    match other {
                        "LABEL" => stage.labels.extend(pairs(rest)?),
                        "ENV" => stage.env.extend(pairs(rest)?),
                        "USER" => stage.user = Some(rest.into()),
                        "ENTRYPOINT" => stage.entrypoint = Some(serde_json::from_str(rest)?),
                        _ => {}
                    }
                }
            }
        }
        Ok(file)
    }

    /// The configuration of the image the target `stage` builds: its stage and the stages it is
    /// built `FROM`, later ones winning, `${ARG}`s replaced by their defaults.
    fn image(&self, target: &str) -> Result<ImageConfig> {
        let mut chain = Vec::new();
        let mut name = target;
        while let Some(stage) = self.stages.get(name) {
            chain.push(stage);
            name = &stage.from;
        }
        ensure!(!chain.is_empty(), "Containerfile has no stage {target}");
        let expand = |value: &str| {
            self.args
                .iter()
                .fold(value.to_owned(), |v, (arg, default)| {
                    v.replace(&format!("${{{arg}}}"), default)
                })
        };
        let mut config = ImageConfig {
            labels: BTreeMap::new(),
            user: String::new(),
            env: BTreeMap::new(),
            entrypoint: Vec::new(),
        };
        for stage in chain.into_iter().rev() {
            for (k, v) in &stage.labels {
                config.labels.insert(k.clone(), expand(v));
            }
            for (k, v) in &stage.env {
                config.env.insert(k.clone(), expand(v));
            }
            if let Some(user) = &stage.user {
                config.user = user.clone();
            }
            if let Some(entrypoint) = &stage.entrypoint {
                config.entrypoint = entrypoint.clone();
            }
        }
        Ok(config)
    }
}

/// The instructions of a Containerfile, continuation lines joined, comments and blanks dropped.
fn logical_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
            }
            None => {
                pending.push_str(trimmed);
                lines.push(std::mem::take(&mut pending));
            }
        }
    }
    lines
}

/// `key="value with spaces" key2=value2` (LABEL and ENV).
fn pairs(text: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .with_context(|| format!("no key=value in {text:?}"))?;
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted
                    .find('"')
                    .with_context(|| format!("unclosed quote in {text:?}"))?;
                (&quoted[..end], &quoted[end + 1..])
            }
            None => after.split_once(char::is_whitespace).unwrap_or((after, "")),
        };
        out.push((key.trim().to_owned(), value.to_owned()));
        rest = after.trim_start();
    }
    Ok(out)
}

/// A podman command with what this machine needs to run containers at all (the module's header).
fn podman() -> Command {
    let mut command = Command::new("podman");
    command.args([
        "--runtime",
        "runc",
        "run",
        "--rm",
        "--ulimit",
        "nofile=4096:4096",
        "--ulimit",
        "nproc=4096:4096",
        "--network",
        "none",
    ]);
    command
}

fn output(command: &mut Command, what: &str) -> Result<Output> {
    command
        .output()
        .with_context(|| format!("running {what} (`make images` installs podman)"))
}

/// The `podman run` flags for a pod's security settings and a container's, refusing any setting
/// this mapping does not know, so a change to the chart or the Job cannot pass unnoticed.
fn security_flags(
    pod: &PodSpec,
    container: &Container,
    seccomp_default: &str,
) -> Result<Vec<String>> {
    let pod_sc = pod.security_context.clone().unwrap_or_default();
    let sc = container.security_context.clone().unwrap_or_default();
    let mut flags = Vec::new();
    let uid = sc
        .run_as_user
        .or(pod_sc.run_as_user)
        .context("no runAsUser")?;
    let gid = sc
        .run_as_group
        .or(pod_sc.run_as_group)
        .context("no runAsGroup")?;
    flags.push(format!("--user={uid}:{gid}"));
    if let Some(fs_group) = pod_sc.fs_group {
        // The kubelet adds fsGroup to the container's supplementary groups.
        flags.push(format!("--group-add={fs_group}"));
    }
    ensure!(
        sc.run_as_non_root.or(pod_sc.run_as_non_root) == Some(true) && uid != 0,
        "not runAsNonRoot with a non-zero user: {pod_sc:?} {sc:?}"
    );
    if sc.read_only_root_filesystem == Some(true) {
        // podman's own tmpfs on /tmp, /run and /var/tmp would hide what the pod really has.
        flags.extend(["--read-only".into(), "--read-only-tmpfs=false".into()]);
    }
    if sc.allow_privilege_escalation == Some(false) {
        flags.push("--security-opt=no-new-privileges".into());
    }
    ensure!(sc.privileged != Some(true), "privileged: {sc:?}");
    if let Some(caps) = &sc.capabilities {
        ensure!(
            caps.add.as_deref().unwrap_or_default().is_empty(),
            "{caps:?}"
        );
        for cap in caps.drop.iter().flatten() {
            flags.push(format!("--cap-drop={cap}"));
        }
    }
    let seccomp = sc
        .seccomp_profile
        .clone()
        .or(pod_sc.seccomp_profile.clone());
    match seccomp.as_ref().map(|p| p.type_.as_str()) {
        Some("RuntimeDefault") => flags.push(format!("--security-opt=seccomp={seccomp_default}")),
        other => bail!("seccomp profile {other:?}: the chart sets RuntimeDefault"),
    }
    // Every setting set is mapped above.
    let set = |value: serde_json::Value| -> Vec<String> {
        value
            .as_object()
            .map(|o| {
                o.iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default()
    };
    let known_pod = [
        "runAsUser",
        "runAsGroup",
        "runAsNonRoot",
        "fsGroup",
        "seccompProfile",
    ];
    let known = [
        "runAsUser",
        "runAsGroup",
        "runAsNonRoot",
        "readOnlyRootFilesystem",
        "allowPrivilegeEscalation",
        "privileged",
        "capabilities",
        "seccompProfile",
    ];
    for key in set(serde_json::to_value(&pod_sc)?) {
        ensure!(
            known_pod.contains(&key.as_str()),
            "pod securityContext.{key} is not mapped to podman"
        );
    }
    for key in set(serde_json::to_value(&sc)?) {
        ensure!(
            known.contains(&key.as_str()),
            "securityContext.{key} is not mapped to podman"
        );
    }
    Ok(flags)
}

/// The seccomp profile podman applies by default: the runtime default a `RuntimeDefault` pod gets.
fn seccomp_default() -> Result<String> {
    let out = output(
        Command::new("podman").args(["info", "--format", "{{.Host.Security.SECCOMPProfilePath}}"]),
        "podman info",
    )?;
    let path = ok(out, "podman info")?.trim().to_owned();
    ensure!(
        Path::new(&path).is_file(),
        "podman's seccomp profile {path:?} is not a file"
    );
    Ok(path)
}

/// Loads `name`'s OCI archive from `make images` and returns its reference.
fn load(name: &str) -> Result<String> {
    let archive = cache_dir()
        .join("images")
        .join(format!("{name}-{VERSION}.oci.tar"));
    ensure!(
        archive.is_file(),
        "{} is missing: run `make images`",
        archive.display()
    );
    let reference = format!("localhost/{name}:{VERSION}");
    // A stale image of that name must not answer for the archive.
    let _ = Command::new("podman")
        .args(["rmi", "--force", reference.as_str()])
        .output();
    let out = output(
        Command::new("podman")
            .arg("load")
            .arg("--input")
            .arg(&archive),
        "podman load",
    )?;
    let loaded = ok(out, "podman load")?;
    ensure!(
        loaded.contains(&reference),
        "podman load named no {reference}: {loaded}"
    );
    Ok(reference)
}

/// The loaded image's configuration, as `podman image inspect` reports it.
fn inspect(reference: &str) -> Result<ImageConfig> {
    let out = output(
        Command::new("podman").args(["image", "inspect", reference]),
        "podman image inspect",
    )?;
    let inspected: serde_json::Value = serde_json::from_str(&ok(out, "podman image inspect")?)?;
    let config = &inspected[0]["Config"];
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    };
    Ok(ImageConfig {
        labels: serde_json::from_value(config["Labels"].clone()).unwrap_or_default(),
        user: config["User"].as_str().unwrap_or_default().to_owned(),
        env: strings(&config["Env"])
            .into_iter()
            .filter_map(|e| e.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect(),
        entrypoint: strings(&config["Entrypoint"]),
    })
}

/// A qcow2 disk holding an ext4 filesystem with AWS credentials in root's home, in its own
/// directory (what the test bind-mounts), named `web-01.qcow2`.
fn planted_qcow2(dir: &Path) -> Result<PathBuf> {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("root/.aws"))?;
    std::fs::write(
        tree.join("root/.aws/credentials"),
        format!(
            "[default]\naws_access_key_id = {AWS_KEY_ID}\naws_secret_access_key = {AWS_SECRET}\n"
        ),
    )?;
    let raw = dir.join("web-01.raw");
    snapsentry_tests::image::ext4(&tree, &raw, 16)?;
    let disks = dir.join("disks");
    std::fs::create_dir(&disks)?;
    let qcow2 = disks.join("web-01.qcow2");
    let out = Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(&raw)
        .arg(&qcow2)
        .output()
        .context("running qemu-img")?;
    ok(out, "qemu-img convert")?;
    Ok(qcow2)
}

/// Both images, loaded from the archives `make images` writes, run as the chart and the operator
/// run them; the scanner finds the planted key on a qcow2 it reads from a read-only bind mount.
#[tokio::test]
#[ignore = "needs `make images` (release binaries); `make images-test` runs it"]
async fn container_images_run_with_the_charts_security_settings() -> Result<()> {
    let containerfile = Containerfile::read()?;
    let seccomp = seccomp_default()?;
    let cp = ControlPlane::shared().await?;

    // The operator's pod and container, as the chart renders them.
    let rendered = render(
        cp,
        "snapsentry",
        &["--show-only", "templates/deployment.yaml"],
    )?;
    let operator_deployment = deployment(&rendered)?;
    let operator_pod = operator_deployment
        .spec
        .template
        .spec
        .clone()
        .context("no operator pod spec")?;
    let operator_flags = security_flags(&operator_pod, &operator_pod.containers[0], &seccomp)?;

    // A scanner Job for an images-provider disk at /images/web-01.qcow2, as the operator
    // configured by the chart builds it.
    let job = images_scanner_job(&operator_deployment)?;
    let scanner_pod = job
        .spec
        .and_then(|s| s.template.spec)
        .context("no scanner pod spec")?;
    let scanner = &scanner_pod.containers[0];
    let scanner_flags = security_flags(&scanner_pod, scanner, &seccomp)?;

    for (name, target) in [(OPERATOR, "operator"), (SCANNER, "scan")] {
        let reference = load(name)?;
        let built = inspect(&reference)?;
        let declared = containerfile.image(target)?;
        ensure!(
            built == declared,
            "{reference} is not what the Containerfile's {target} target declares:\n built    {built:?}\n declared {declared:?}"
        );
        // No shell to exec into.
        let out = output(
            podman().args(["--entrypoint", "/bin/sh", reference.as_str(), "-c", "true"]),
            "podman run",
        )?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success() && stderr.contains("no such file"),
            "{reference} has a /bin/sh (or podman failed otherwise): {stderr}"
        );
    }

    // The operator: --version and --help, in the chart's pod settings.
    let operator = format!("localhost/{OPERATOR}:{VERSION}");
    let out = output(
        podman()
            .args(&operator_flags)
            .args([operator.as_str(), "--version"]),
        "podman run",
    )?;
    let printed = ok(out, "snapsentry-operator --version")?;
    ensure!(
        printed.trim() == format!("{OPERATOR} {VERSION}"),
        "{printed:?}"
    );
    let out = output(
        podman()
            .args(&operator_flags)
            .args([operator.as_str(), "--help"]),
        "podman run",
    )?;
    let printed = ok(out, "snapsentry-operator --help")?;
    ensure!(
        printed.starts_with("usage: snapsentry-operator"),
        "{printed:?}"
    );

    // The scanner: the Job's command name, its security settings, its /tmp and the images volume
    // read-only, the fingerprint key in the environment as the Job gets it from its Secret.
    let dir = tempfile::tempdir()?;
    let qcow2 = planted_qcow2(dir.path())?;
    let mut volumes = Vec::new();
    for mount in scanner.volume_mounts.iter().flatten() {
        let volume = scanner_pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == mount.name)
            .context("a mount without its volume")?;
        if volume.empty_dir.is_some() {
            volumes.push(format!("--tmpfs={}", mount.mount_path));
        } else if volume.persistent_volume_claim.is_some() {
            ensure!(mount.read_only == Some(true), "{mount:?} is writable");
            let disks = qcow2.parent().context("disk directory")?;
            volumes.push(format!(
                "--volume={}:{}:ro",
                disks.display(),
                mount.mount_path
            ));
        } else {
            bail!("the scanner Job mounts {volume:?}, which this test does not map");
        }
    }
    let mut job_env = Vec::new();
    for var in scanner.env.iter().flatten() {
        if let Some(value) = &var.value {
            job_env.push(format!("--env={}={value}", var.name));
        }
    }
    job_env.push("--env=SNAPSENTRY_FINGERPRINT_KEY=container-image-test".into());
    let command = scanner.command.as_deref().unwrap_or_default();
    ensure!(
        command.first().map(String::as_str) == Some(SCANNER),
        "{command:?}"
    );
    let scan = format!("localhost/{SCANNER}:{VERSION}");
    let out = output(
        podman()
            .args(&scanner_flags)
            .args(&volumes)
            .args(&job_env)
            .args(["--entrypoint", SCANNER, scan.as_str()])
            .args(["image", "/images/web-01.qcow2", "--format", "json"]),
        "podman run",
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = ok(out, "snapsentry-scan image in its container")?;
    ensure!(
        !stdout.contains(AWS_SECRET) && !stderr.contains(AWS_SECRET),
        "the secret value reached the scanner's output"
    );
    let report: serde_json::Value = serde_json::from_str(&stdout)?;
    ensure!(report["source"]["format"] == "qcow2", "{stdout}");
    let found = report["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|f| {
            f["path"] == "/root/.aws/credentials"
                && f["ruleId"].as_str().is_some_and(|r| r.starts_with("aws"))
        });
    ensure!(found, "no AWS finding at /root/.aws/credentials: {stdout}");

    let out = output(
        podman()
            .args(&scanner_flags)
            .args([scan.as_str(), "--version"]),
        "podman run",
    )?;
    let printed = ok(out, "snapsentry-scan --version")?;
    ensure!(
        printed.trim() == format!("{SCANNER} {VERSION}"),
        "{printed:?}"
    );
    Ok(())
}

#[test]
fn containerfile_parsing() -> Result<()> {
    let file = Containerfile::parse(
        "ARG VERSION=1.2.3\nFROM x AS build\nLABEL a=b\nFROM scratch AS base\n# c\nLABEL v=\"${VERSION}\" \\\n  t=\"two words\"\nUSER 1:1\nFROM base AS app\nENV PATH=/bin\nENTRYPOINT [\"/app\"]\n",
    )?;
    let app = file.image("app")?;
    ensure!(
        app.labels.get("v").map(String::as_str) == Some("1.2.3"),
        "{app:?}"
    );
    ensure!(
        app.labels.get("t").map(String::as_str) == Some("two words"),
        "{app:?}"
    );
    ensure!(
        !app.labels.contains_key("a"),
        "the build stage's label leaked: {app:?}"
    );
    ensure!(app.user == "1:1" && app.entrypoint == ["/app"] && app.env["PATH"] == "/bin");
    Ok(())
}
