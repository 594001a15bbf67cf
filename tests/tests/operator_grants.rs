//! A scanner Job's grant Secret against a real kube-apiserver, at the level its pieces live:
//!
//! - the operator's functions ([`snapsentry_operator::controller::grants`]) acting with exactly the
//!   chart's RBAC (the operator's service account, impersonated): the Secret built from a grant,
//!   created before its Job, owned by the Job once it exists, replaced by a later attempt, deleted
//!   by name and by the policy's labels — and never listable by the operator;
//! - the Job runner's `secret` volumes: a Job reads its grant file through the mount (mode 0400,
//!   a directory removed when the process ends), and a Job whose Secret is missing fails with a
//!   message naming it.
//!
//! No provider of this build grants anything yet (images and AWS scanners read with their own
//! identity), so the whole path through a running operator is the Azure end-to-end test's; that
//! an images scan makes no Secret and no grant volume is checked in `operator_images.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use snapsentry_cloud::ReadGrant;
use snapsentry_crds::contract::GRANTS_DIR;
use snapsentry_crds::{AssignedDisk, Cloud, DiskSource, ScanPolicy};
use snapsentry_operator::controller::grants::{self, GrantSecret};
use snapsentry_operator::job::{DEFAULT_TIMEOUT_SECONDS, JobRequest, JobSettings, scanner_job};
use snapsentry_tests::chart_rbac;
use snapsentry_tests::controlplane::ControlPlane;
use snapsentry_tests::jobrunner::{JobRunner, JobRunnerOptions};
use snapsentry_tests::world::prepare_namespace;

/// The namespace the chart's RBAC is installed in (shared with `scanner_job.rs`).
const NS: &str = "snapsentry";
const SAS: &str = "https://devstoreaccount1.blob.localhost/snapshots/vm-1-os?sv=2024&sig=GRANTSIG";

/// A policy `name` of namespace `team-a` with no providers.
pub(crate) fn policy(name: &str) -> Result<ScanPolicy> {
    let p: ScanPolicy = serde_json::from_value(serde_json::json!({
        "apiVersion": "snapsentry.io/v1alpha1",
        "kind": "ScanPolicy",
        "metadata": { "name": name, "namespace": "team-a" },
        "spec": { "providers": [] },
    }))?;
    Ok(p)
}

/// Job settings for Jobs in `ns`.
pub(crate) fn settings(ns: &str) -> JobSettings {
    JobSettings {
        namespace: ns.into(),
        image: "snapsentry-scan:test".into(),
        service_account: "snapsentry-scanner".into(),
        fingerprint_secret: "snapsentry-fingerprint".into(),
        fingerprint_secret_key: "key".into(),
        ttl_seconds_after_finished: 60,
        default_resources: None,
        default_timeout_seconds: DEFAULT_TIMEOUT_SECONDS,
        aws_credentials_secret: None,
        pod_defaults: Default::default(),
        max_findings: 500,
    }
}

fn request<'a>(machine: &'a str, scan_id: &'a str) -> JobRequest<'a> {
    JobRequest {
        machine,
        instance_id: "vm-1",
        cloud: Cloud::Azure,
        scan_id,
        disks: vec![AssignedDisk {
            id: "os".into(),
            source: DiskSource::Image {
                path: format!("{GRANTS_DIR}/os.sas"),
            },
        }],
        images_claim: None,
        grant_secret: None,
    }
}

fn grant(contents: &str) -> ReadGrant {
    ReadGrant {
        files: BTreeMap::from([("os.sas".to_owned(), contents.to_owned())]),
    }
}

/// The grant Secret and the Job mounting it, as `start_machine` builds them.
fn secret_and_job(
    p: &ScanPolicy,
    machine: &str,
    scan_id: &str,
    sas: &str,
) -> Result<(GrantSecret, Job)> {
    let mut req = request(machine, scan_id);
    let secret = grants::grant_secret(p, &req, &settings(NS), &grant(sas))?
        .context("a grant makes a Secret")?;
    let name = secret.name();
    req.grant_secret = Some(&name);
    let job = scanner_job(p, &req, &settings(NS))?;
    Ok((secret, job))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grant_secret_with_the_charts_rbac() -> Result<()> {
    let cp = ControlPlane::shared().await?;
    let admin = cp.client().await?;
    chart_rbac::install(cp, &admin, NS).await?;
    let operator = chart_rbac::client_as(cp, NS, chart_rbac::OPERATOR).await?;
    let as_operator: Api<Secret> = Api::namespaced(operator.clone(), NS);
    let as_admin: Api<Secret> = Api::namespaced(admin.clone(), NS);
    let p = policy("grants-rbac")?;

    // Created first (by the operator), then the Job, then the Job owns the Secret.
    let (secret, job) = secret_and_job(&p, "grants-rbac-vm-1", "20261206-220000", SAS)?;
    let name = secret.name();
    assert_eq!(Some(&name), job.metadata.name.as_ref());
    grants::apply(&as_operator, &secret).await?;
    let job = Api::<Job>::namespaced(operator.clone(), NS)
        .create(&PostParams::default(), &job)
        .await?;
    grants::adopt(&as_operator, &name, &job).await?;
    let stored = as_admin.get(&name).await?;
    let owner = stored
        .owner_references()
        .first()
        .context("an owner")?
        .clone();
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.name.as_str(),
            Some(owner.uid.clone())
        ),
        ("Job", name.as_str(), job.uid())
    );
    assert_eq!(owner.controller, Some(true));
    assert_eq!(stored.labels(), job.labels());
    let data = stored.data.clone().context("data")?;
    assert_eq!(data["os.sas"].0, SAS.as_bytes());
    let volume = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.volumes.as_ref())
        .and_then(|v| v.iter().find(|v| v.name == "grants"))
        .and_then(|v| v.secret.as_ref())
        .context("the Job mounts its grant Secret")?;
    assert_eq!(volume.secret_name.as_deref(), Some(name.as_str()));

    // A later attempt (an operator restarted before its Job) replaces the files.
    let (again, _) = secret_and_job(
        &p,
        "grants-rbac-vm-1",
        "20261206-220000",
        "https://x/y?sig=NEW",
    )?;
    grants::apply(&as_operator, &again).await?;
    let stored = as_admin.get(&name).await?;
    assert_eq!(
        stored.data.context("data")?["os.sas"].0,
        b"https://x/y?sig=NEW"
    );

    // The operator may not list (and so read) the namespace's Secrets.
    let listed = as_operator.list(&ListParams::default()).await;
    ensure!(
        matches!(&listed, Err(kube::Error::Api(s)) if s.code == 403),
        "the operator can list Secrets: {:?}",
        listed.map(|l| l.items.len())
    );

    // Deleted by name (twice: idempotent), and a policy's by its labels.
    grants::delete(&as_operator, &name).await?;
    grants::delete(&as_operator, &name).await?;
    ensure!(as_admin.get_opt(&name).await?.is_none(), "deleted by name");
    let (first, _) = secret_and_job(&p, "grants-rbac-vm-2", "20261206-220000", SAS)?;
    let (second, _) = secret_and_job(&p, "grants-rbac-vm-3", "20261206-220000", SAS)?;
    let (other, _) = secret_and_job(
        &policy("grants-other")?,
        "grants-other-vm-1",
        "20261206-220000",
        SAS,
    )?;
    for s in [&first, &second, &other] {
        grants::apply(&as_operator, s).await?;
    }
    let selector = "snapsentry.io/policy=grants-rbac,snapsentry.io/policy-namespace=team-a";
    grants::delete_selected(&as_operator, selector).await?;
    for (s, kept) in [(&first, false), (&second, false), (&other, true)] {
        let present = as_admin.get_opt(&s.name()).await?.is_some();
        assert_eq!(present, kept, "{}", s.name());
    }
    as_admin
        .delete(&other.name(), &DeleteParams::default())
        .await?;
    Api::<Job>::namespaced(admin, NS)
        .delete(&name, &DeleteParams::background())
        .await?;
    Ok(())
}

/// A runner for namespace `ns` whose Jobs run `command`.
async fn runner(ns: &str, command: &[&str]) -> Result<(kube::Client, JobRunner)> {
    let cp = ControlPlane::shared().await?;
    let client = cp.client().await?;
    prepare_namespace(cp, &client, ns).await?;
    let runner = JobRunner::start(
        client.clone(),
        JobRunnerOptions {
            namespace: ns.into(),
            command: Some(command.iter().map(|s| (*s).to_owned()).collect()),
            ..Default::default()
        },
    )?;
    Ok((client, runner))
}

/// Wait (up to 30 s) for the runner to finish Job `name`.
pub(crate) async fn finished(
    runner: &JobRunner,
    name: &str,
) -> Result<std::result::Result<(), String>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(r) = runner.finished().get(name) {
            return Ok(r.clone());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "Job {name} did not finish"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_runner_mounts_secret_volumes() -> Result<()> {
    let ns = "runner-secrets";
    // Prints the mode and contents of the grant file through the rewritten path, and the path.
    let (client, runner) = runner(
        ns,
        &[
            "sh",
            "-c",
            r#"stat -c 'mode %a' "$1" && cat "$1" && echo && echo "dir $(dirname "$1")""#,
            "sh",
            &format!("{GRANTS_DIR}/os.sas"),
        ],
    )
    .await?;
    let p = policy("runner")?;
    let mut req = request("runner-vm-1", "20261206-220000");
    let settings = settings(ns);
    let secret = grants::grant_secret(&p, &req, &settings, &grant(SAS))?.context("a Secret")?;
    let name = secret.name();
    grants::apply(&Api::namespaced(client.clone(), ns), &secret).await?;
    req.grant_secret = Some(&name);
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    jobs.create(&PostParams::default(), &scanner_job(&p, &req, &settings)?)
        .await?;
    assert_eq!(
        finished(&runner, &name).await?,
        Ok(()),
        "{}",
        runner.log(&name)
    );
    let log = runner.log(&name);
    assert!(log.contains("mode 400"), "{log}");
    assert!(log.contains(SAS), "{log}");
    let dir = log
        .lines()
        .find_map(|l| l.strip_prefix("dir "))
        .context("the directory")?;
    assert_ne!(dir, GRANTS_DIR, "the path was rewritten");
    ensure!(
        !std::path::Path::new(dir).exists(),
        "{dir} is removed when the process ends"
    );

    // The Secret of a Job is missing: the Job fails, saying which.
    let mut req = request("runner-vm-2", "20261206-220000");
    req.grant_secret = Some("no-such-grant");
    let job = scanner_job(&p, &req, &settings)?;
    let job_name = job.name_any();
    jobs.create(&PostParams::default(), &job).await?;
    ensure!(
        finished(&runner, &job_name).await?.is_err(),
        "the Job failed"
    );
    let message = failure(&jobs, &job_name).await?;
    assert!(
        message.contains(&format!("Secret {ns}/no-such-grant not found")),
        "{message}"
    );
    Ok(())
}

/// The message of Job `name`'s `Failed` condition (waiting up to 10 s for it).
pub(crate) async fn failure(jobs: &Api<Job>, name: &str) -> Result<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let job = jobs.get(name).await?;
        let failed = job
            .status
            .and_then(|s| s.conditions)
            .into_iter()
            .flatten()
            .find(|c| c.type_ == "Failed");
        if let Some(c) = failed {
            return Ok(c.message.unwrap_or_default());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no Failed condition"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
