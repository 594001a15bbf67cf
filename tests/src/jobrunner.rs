//! A local Job runner: the kubelet and the Job controller for `batch/v1` Jobs of one namespace,
//! without a container runtime.
//!
//! It watches the namespace's Jobs, runs each new Job's container command as a local process
//! with the container's environment (`valueFrom.secretKeyRef` resolved by reading the Secret;
//! paths under a PersistentVolumeClaim's mount rewritten to a local directory given to the
//! runner; a `secret` volume written, with its `defaultMode`, into a temporary directory of the
//! Job, removed when its process ends, and paths under its mount rewritten there — in the
//! environment's values and in the arguments; a PersistentVolumeClaim used through
//! `volumeDevices` resolved to its PersistentVolume and, for the Compute Engine persistent disk
//! CSI driver, to a local file standing for the disk ([`JobRunnerOptions::block_devices`]), whose
//! path replaces the `devicePath` in the environment's values and the arguments — the runner
//! plays the CSI driver), and writes the Job status the way the Job controller does, which kube-apiserver
//! validates: `startTime` and `active` first; then `SuccessCriteriaMet` before `Complete` (with
//! `completionTime`), or `FailureTarget` before `Failed` (never a `completionTime`), with the
//! `succeeded`/`failed` counts. `activeDeadlineSeconds` kills the process and fails the Job with
//! reason `DeadlineExceeded`; a Job deleted while it runs has its process killed.
//!
//! [`JobRunnerOptions::command`] replaces every Job's command, for tests that stand in for the
//! scanner.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::api::core::v1::{Container, EnvVar, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use tokio::process::Command;
use tokio::sync::watch;
use tokio::task::JoinHandle;

mod volumes;
use volumes::{block_device, rewrite_devices, rewrite_paths, secret_volume};

const POLL: Duration = Duration::from_millis(200);

/// The CSI driver whose volumes [`JobRunnerOptions::block_devices`] resolves.
pub const GCE_PD_DRIVER: &str = "pd.csi.storage.gke.io";

/// Maps a CSI volume handle (`projects/P/zones/Z/disks/NAME`) to the local file standing for
/// the disk (for the fake Compute Engine, `FakeGce::image_of`), or `None` for no such disk.
pub type BlockDeviceResolver = Arc<dyn Fn(&str) -> Option<PathBuf> + Send + Sync>;

/// What the runner runs and where.
#[derive(Clone, Default)]
pub struct JobRunnerOptions {
    /// Namespace whose Jobs are run.
    pub namespace: String,
    /// Local directory standing for each PersistentVolumeClaim, by claim name.
    pub claims: BTreeMap<String, PathBuf>,
    /// Run this argv instead of each container's `command` + `args`.
    pub command: Option<Vec<String>>,
    /// Added to every process's environment (after the container's).
    pub env: Vec<(String, String)>,
    /// Where each Job's output goes (`<job>.log`); a temporary directory when `None`.
    pub log_dir: Option<PathBuf>,
    /// The CSI driver's part: the local file of a [`GCE_PD_DRIVER`] volume's handle, given to
    /// the process in place of the `devicePath` of the container's `volumeDevices` entry. A Job
    /// with a block device the runner cannot resolve (claim missing or not bound, another
    /// driver, no resolver, an unknown handle) fails, saying why; kubelet would keep its pod
    /// pending.
    pub block_devices: Option<BlockDeviceResolver>,
}

impl std::fmt::Debug for JobRunnerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobRunnerOptions")
            .field("namespace", &self.namespace)
            .field("claims", &self.claims)
            .field("command", &self.command)
            .field("env", &self.env)
            .field("log_dir", &self.log_dir)
            .field("block_devices", &self.block_devices.is_some())
            .finish()
    }
}

/// What the runner did, for assertions.
#[derive(Debug, Default)]
struct Record {
    started: Vec<String>,
    running: BTreeSet<String>,
    max_running: usize,
    finished: BTreeMap<String, Result<(), String>>,
}

/// A running Job runner; dropping it stops it and kills the processes it started.
#[derive(Debug)]
pub struct JobRunner {
    task: JoinHandle<()>,
    record: Arc<Mutex<Record>>,
    log_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl JobRunner {
    /// Start running the Jobs of `options.namespace`.
    pub fn start(client: kube::Client, mut options: JobRunnerOptions) -> std::io::Result<Self> {
        let tmp = match options.log_dir {
            Some(_) => None,
            None => Some(tempfile::tempdir()?),
        };
        let log_dir = options
            .log_dir
            .get_or_insert_with(|| tmp.as_ref().expect("temp dir").path().to_owned())
            .clone();
        let record = Arc::new(Mutex::new(Record::default()));
        let task = tokio::spawn(watch_jobs(client, Arc::new(options), record.clone()));
        Ok(Self {
            task,
            record,
            log_dir,
            _tmp: tmp,
        })
    }

    /// Jobs started so far, in order.
    pub fn started(&self) -> Vec<String> {
        self.record.lock().expect("runner record").started.clone()
    }

    /// Most Jobs that ran at the same time.
    pub fn max_concurrent(&self) -> usize {
        self.record.lock().expect("runner record").max_running
    }

    /// Finished Jobs: `Ok` or the failure reason.
    pub fn finished(&self) -> BTreeMap<String, Result<(), String>> {
        self.record.lock().expect("runner record").finished.clone()
    }

    /// The output of a Job's process.
    pub fn log(&self, job: &str) -> String {
        std::fs::read_to_string(self.log_dir.join(format!("{job}.log"))).unwrap_or_default()
    }
}

impl Drop for JobRunner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn watch_jobs(
    client: kube::Client,
    options: Arc<JobRunnerOptions>,
    record: Arc<Mutex<Record>>,
) {
    let api: Api<Job> = Api::namespaced(client.clone(), &options.namespace);
    // Job uid → cancel signal of its process; dropping the map (on abort) kills them all.
    let mut running: BTreeMap<String, (watch::Sender<bool>, JoinHandle<()>)> = BTreeMap::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    loop {
        let jobs = match api.list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(e) => {
                tracing::debug!(error = %e, "job runner: listing Jobs");
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        let present: BTreeSet<String> =
            jobs.iter().filter_map(|j| j.metadata.uid.clone()).collect();
        running.retain(|uid, (cancel, task)| {
            if task.is_finished() {
                return false;
            }
            if !present.contains(uid) {
                let _ = cancel.send(true);
            }
            true
        });
        for job in jobs {
            let Some(uid) = job.metadata.uid.clone() else {
                continue;
            };
            let started = job.status.as_ref().is_some_and(|s| s.start_time.is_some());
            if started || job.metadata.deletion_timestamp.is_some() || !seen.insert(uid.clone()) {
                continue;
            }
            let (cancel, cancelled) = watch::channel(false);
            let task = tokio::spawn(run_job(
                client.clone(),
                options.clone(),
                record.clone(),
                job,
                cancelled,
            ));
            running.insert(uid, (cancel, task));
        }
        tokio::time::sleep(POLL).await;
    }
}

enum Outcome {
    Succeeded,
    Failed {
        reason: &'static str,
        message: String,
    },
}

async fn run_job(
    client: kube::Client,
    options: Arc<JobRunnerOptions>,
    record: Arc<Mutex<Record>>,
    job: Job,
    mut cancelled: watch::Receiver<bool>,
) {
    let name = job.metadata.name.clone().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(client.clone(), &options.namespace);
    let start = Timestamp::now();
    let started = serde_json::json!({ "status": { "startTime": Time(start), "active": 1 } });
    if let Err(e) = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&started))
        .await
    {
        tracing::warn!(job = %name, error = %e, "job runner: cannot mark the Job started");
        return;
    }
    {
        let mut r = record.lock().expect("runner record");
        r.started.push(name.clone());
        r.running.insert(name.clone());
        r.max_running = r.max_running.max(r.running.len());
    }
    let outcome = match prepare(&client, &options, &job).await {
        // The volumes' directories live as long as the process.
        Ok((mut command, _volumes)) => {
            let deadline = job
                .spec
                .as_ref()
                .and_then(|s| s.active_deadline_seconds)
                .map(|s| Duration::from_secs(s.max(0) as u64));
            execute(&options, &name, &mut command, deadline, &mut cancelled).await
        }
        Err(message) => Outcome::Failed {
            reason: "BackoffLimitExceeded",
            message,
        },
    };
    {
        let mut r = record.lock().expect("runner record");
        r.running.remove(&name);
        let result = match &outcome {
            Outcome::Succeeded => Ok(()),
            Outcome::Failed { reason, .. } => Err((*reason).to_owned()),
        };
        r.finished.insert(name.clone(), result);
    }
    if *cancelled.borrow() {
        return;
    }
    if let Err(e) = finish(&api, &name, outcome).await {
        tracing::warn!(job = %name, error = %e, "job runner: cannot write the Job's end");
    }
}

/// The process for a Job's (first) container, and the temporary directories of its `secret`
/// volumes (removed when dropped).
async fn prepare(
    client: &kube::Client,
    options: &JobRunnerOptions,
    job: &Job,
) -> Result<(Command, Vec<tempfile::TempDir>), String> {
    let pod = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .ok_or("Job without a pod template")?;
    let container: &Container = pod.containers.first().ok_or("pod without a container")?;
    let argv: Vec<String> = match &options.command {
        Some(argv) => argv.clone(),
        None => container
            .command
            .iter()
            .flatten()
            .chain(container.args.iter().flatten())
            .cloned()
            .collect(),
    };
    let (program, args) = argv.split_first().ok_or("container without a command")?;

    let namespace = job
        .metadata
        .namespace
        .as_deref()
        .unwrap_or(&options.namespace);
    // Mount path → local directory, for the claims the runner knows and the secret volumes.
    let mut mounts: Vec<(String, String)> = Vec::new();
    let mut volumes = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let Some(volume) = pod.volumes.iter().flatten().find(|v| v.name == m.name) else {
            continue;
        };
        let local = if let Some(secret) = &volume.secret {
            let dir = secret_volume(client, namespace, &volume.name, secret).await?;
            let path = dir.path().display().to_string();
            volumes.push(dir);
            path
        } else if let Some(local) = volume
            .persistent_volume_claim
            .as_ref()
            .and_then(|c| options.claims.get(&c.claim_name))
        {
            local.display().to_string()
        } else {
            continue;
        };
        mounts.push((m.mount_path.trim_end_matches('/').to_owned(), local));
    }
    // Device path → local file, for the block volumes.
    let mut devices: Vec<(String, String)> = Vec::new();
    for d in container.volume_devices.iter().flatten() {
        let claim = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == d.name)
            .and_then(|v| v.persistent_volume_claim.as_ref())
            .ok_or_else(|| {
                format!(
                    "block device {}: not a persistentVolumeClaim volume",
                    d.name
                )
            })?;
        let local = block_device(client, options, namespace, &d.name, &claim.claim_name).await?;
        devices.push((d.device_path.clone(), local.display().to_string()));
    }
    let rewrite = |value: &str| rewrite_devices(&rewrite_paths(value, &mounts), &devices);
    let mut command = Command::new(rewrite(program));
    command.args(args.iter().map(|a| rewrite(a)));
    for var in container.env.iter().flatten() {
        let value = env_value(client, namespace, var).await?;
        command.env(&var.name, rewrite(&value));
    }
    for (k, v) in &options.env {
        command.env(k, v);
    }
    command.kill_on_drop(true);
    Ok((command, volumes))
}

async fn env_value(client: &kube::Client, namespace: &str, var: &EnvVar) -> Result<String, String> {
    if let Some(v) = &var.value {
        return Ok(v.clone());
    }
    let Some(key_ref) = var
        .value_from
        .as_ref()
        .and_then(|f| f.secret_key_ref.as_ref())
    else {
        return Ok(String::new());
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let missing = || {
        format!(
            "secret {}/{} has no key {}",
            namespace, key_ref.name, key_ref.key
        )
    };
    let secret = secrets
        .get(&key_ref.name)
        .await
        .map_err(|e| format!("secret {}: {e}", key_ref.name))?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&key_ref.key))
        .map(|b| b.0.clone())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(&key_ref.key))
                .map(|s| s.clone().into_bytes())
        })
        .ok_or_else(missing)?;
    String::from_utf8(bytes)
        .map_err(|_| format!("secret {} key {} is not UTF-8", key_ref.name, key_ref.key))
}

async fn execute(
    options: &JobRunnerOptions,
    name: &str,
    command: &mut Command,
    deadline: Option<Duration>,
    cancelled: &mut watch::Receiver<bool>,
) -> Outcome {
    let log_dir = options.log_dir.clone().unwrap_or_default();
    let log = match std::fs::File::create(log_dir.join(format!("{name}.log"))) {
        Ok(f) => f,
        Err(e) => {
            return Outcome::Failed {
                reason: "BackoffLimitExceeded",
                message: format!("log file: {e}"),
            };
        }
    };
    let stderr = match log.try_clone() {
        Ok(f) => f,
        Err(e) => {
            return Outcome::Failed {
                reason: "BackoffLimitExceeded",
                message: format!("log file: {e}"),
            };
        }
    };
    command
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(stderr);
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Outcome::Failed {
                reason: "BackoffLimitExceeded",
                message: format!("cannot start the container command: {e}"),
            };
        }
    };
    let deadline = deadline.unwrap_or(Duration::from_secs(365 * 24 * 3600));
    tokio::select! {
        status = child.wait() => match status {
            Ok(s) if s.success() => Outcome::Succeeded,
            Ok(s) => Outcome::Failed {
                reason: "BackoffLimitExceeded",
                message: format!("Job has reached the specified backoff limit ({s})"),
            },
            Err(e) => Outcome::Failed { reason: "BackoffLimitExceeded", message: e.to_string() },
        },
        _ = tokio::time::sleep(deadline) => {
            let _ = child.kill().await;
            Outcome::Failed {
                reason: "DeadlineExceeded",
                message: "Job was active longer than specified deadline".to_owned(),
            }
        }
        _ = async { cancelled.wait_for(|c| *c).await.is_ok() } => {
            let _ = child.kill().await;
            Outcome::Failed { reason: "Deleted", message: "Job deleted".to_owned() }
        }
    }
}

fn condition(type_: &str, reason: &str, message: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: type_.to_owned(),
        status: "True".to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Two status writes, as the Job controller makes them: the interim condition with the counts,
/// then the terminal condition.
async fn finish(api: &Api<Job>, name: &str, outcome: Outcome) -> Result<(), kube::Error> {
    let now = Timestamp::now();
    let params = PatchParams::default();
    match outcome {
        Outcome::Succeeded => {
            let met = condition(
                "SuccessCriteriaMet",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                now,
            );
            let first = serde_json::json!({ "status": {
                "active": 0, "succeeded": 1, "conditions": [met],
            }});
            api.patch_status(name, &params, &Patch::Merge(&first))
                .await?;
            let complete = condition(
                "Complete",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                now,
            );
            let second = serde_json::json!({ "status": {
                "conditions": [met, complete], "completionTime": Time(now),
            }});
            api.patch_status(name, &params, &Patch::Merge(&second))
                .await?;
        }
        Outcome::Failed { reason, message } => {
            let target = condition("FailureTarget", reason, &message, now);
            let first = serde_json::json!({ "status": {
                "active": 0, "failed": 1, "conditions": [target],
            }});
            api.patch_status(name, &params, &Patch::Merge(&first))
                .await?;
            let failed = condition("Failed", reason, &message, now);
            let second = serde_json::json!({ "status": { "conditions": [target, failed] } });
            api.patch_status(name, &params, &Patch::Merge(&second))
                .await?;
        }
    }
    Ok(())
}
