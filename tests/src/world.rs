//! One end-to-end test's world: a namespace of the shared control plane holding the CRDs and a
//! fingerprint-key Secret, the local Job runner playing kubelet + Job controller for it, and the
//! operator run in-process (stopped and started at will, its logs captured by [`crate::logs`]);
//! with what a test waits for and what it reads back, down to everything anyone could see for the
//! never-leak checks.
//!
//! What is provider-specific comes in a [`Setup`]: the cloud fixture (moto holding a fleet, a
//! directory of disk images, ...), the Secrets its policies name, the claims the Jobs mount, the
//! Jobs' command and environment. A provider's test is that setup plus its assertions:
//!
//! ```no_run
//! # async fn example() -> Result<(), snapsentry_tests::world::Error> {
//! use snapsentry_tests::world::{Cloud, Setup, World};
//!
//! struct Images(tempfile::TempDir);
//! impl Cloud for Images {}
//!
//! let images = tempfile::tempdir().expect("a temporary directory");
//! let dir = images.path().to_owned();
//! let mut w = World::start(Setup::new("lab", Images(images)).claim("vm-images", &dir)).await?;
//! w.start_operator()?;
//! // ... create a ScanPolicy, then:
//! let policy = w.wait_scan_finished("lab", None, std::time::Duration::from_secs(90)).await?;
//! w.stop_operator().await?;
//! # drop(policy);
//! # Ok(())
//! # }
//! ```

pub mod azure;
pub mod gcp;
pub mod images;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event as CoreEvent, ResourceQuota, Secret};
use kube::ResourceExt as _;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use snapsentry_crds::{AttackPath, Recommendation, ScanPolicy, ScannedMachine, SecretFinding};
use snapsentry_operator::controller::config::Config;
use snapsentry_operator::controller::http::HttpState;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::controlplane::{self, ControlPlane, Options, create_namespace};
use crate::jobrunner::{BlockDeviceResolver, JobRunner, JobRunnerOptions};
use crate::requests::RequestLog;
use crate::volume_protection::VolumeProtection;

/// How often a wait polls the API server.
const POLL: Duration = Duration::from_millis(200);

/// How long an operator may take to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a world could not be built, or a wait or a read failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The control plane could not be started or used.
    #[error(transparent)]
    ControlPlane(#[from] controlplane::Error),
    /// An API request failed.
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// The operator's configuration was refused, or the operator failed.
    #[error(transparent)]
    Operator(#[from] snapsentry_operator::Error),
    /// A file system or process operation failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// A JSON value could not be converted.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The scanner binary is not built.
    #[error(
        "{} is missing: run `cargo build -p snapsentry-scanner` (or `cargo test --workspace`)",
        .0.display()
    )]
    MissingScanner(PathBuf),
    /// A kubectl call failed.
    #[error("kubectl {args}: {stderr}")]
    Kubectl {
        /// The arguments, space-separated.
        args: String,
        /// What kubectl said.
        stderr: String,
    },
    /// The operator did not stop in time, or its task panicked.
    #[error("the operator did not stop: {0}")]
    NotStopped(String),
    /// A wait ran out of time.
    #[error("timed out waiting for {what}; {report}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// The policy's status, the Jobs' output and the cloud's diagnostics.
        report: String,
    },
}

impl Error {
    fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

/// The provider-specific part of a world: what the cloud emulator or the images directory is,
/// kept alive as long as the world.
pub trait Cloud {
    /// What a timed-out wait adds to its report (an emulator's log); nothing by default.
    fn diagnostics(&self) -> String {
        String::new()
    }
}

/// What a world is built from, besides what every world has.
pub struct Setup<C> {
    namespace: String,
    cloud: C,
    secrets: Vec<(String, Vec<(String, String)>)>,
    claims: BTreeMap<String, PathBuf>,
    command: Option<Vec<String>>,
    env: Vec<(String, String)>,
    block_devices: Option<BlockDeviceResolver>,
}

impl<C: Cloud> Setup<C> {
    /// A world in namespace `namespace` with `cloud`; its Jobs run their own command (the real
    /// scanner, found on `PATH`), with no claims and no Secret but the fingerprint key.
    pub fn new(namespace: &str, cloud: C) -> Self {
        Setup {
            namespace: namespace.to_owned(),
            cloud,
            secrets: Vec::new(),
            claims: BTreeMap::new(),
            command: None,
            env: Vec::new(),
            block_devices: None,
        }
    }

    /// The cloud fixture, e.g. to fill its directory before the world starts.
    pub fn cloud(&self) -> &C {
        &self.cloud
    }

    /// A Secret `name` holding `data` (text values) in the namespace, e.g. cloud credentials.
    pub fn secret(mut self, name: &str, data: &[(&str, &str)]) -> Self {
        let data = data
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.secrets.push((name.to_owned(), data));
        self
    }

    /// The PersistentVolumeClaim `name`, mapped to the directory `dir` by the Job runner.
    pub fn claim(mut self, name: &str, dir: &Path) -> Self {
        self.claims.insert(name.to_owned(), dir.to_owned());
        self
    }

    /// Every Job runs `command` instead of its own (`None`: its own).
    pub fn command(mut self, command: Option<Vec<String>>) -> Self {
        self.command = command;
        self
    }

    /// `key=value` in every Job's environment.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    /// The Job runner plays the CSI driver with `resolve` (see
    /// [`JobRunnerOptions::block_devices`]), and the world runs [`VolumeProtection`] beside it so
    /// the operator's deleted block volumes and claims go.
    pub fn block_devices(mut self, resolve: BlockDeviceResolver) -> Self {
        self.block_devices = Some(resolve);
        self
    }

    /// Every `(key, value)` of `vars` in every Job's environment.
    pub fn envs(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        self.env.extend(vars);
        self
    }
}

/// An operator run in-process by [`World::start_operator`].
pub struct InProcessOperator {
    stop: watch::Sender<bool>,
    task: JoinHandle<snapsentry_operator::Result<()>>,
}

impl InProcessOperator {
    /// Asks the operator to stop and waits until it has (up to 30 s), releasing its Lease when it
    /// held one.
    pub async fn stop(self) -> Result<(), Error> {
        let _ = self.stop.send(true);
        let result = tokio::time::timeout(STOP_TIMEOUT, self.task)
            .await
            .map_err(|_| Error::NotStopped(format!("still running after {STOP_TIMEOUT:?}")))?
            .map_err(|e| Error::NotStopped(e.to_string()))?;
        Ok(result?)
    }
}

/// One test's world (see the module documentation). Dropping it stops the Job runner and the
/// cloud fixture; a test stops its operator with [`World::stop_operator`].
pub struct World<C> {
    /// The shared control plane.
    pub cp: &'static ControlPlane,
    /// A cluster-admin client of this test's runtime.
    pub client: kube::Client,
    /// The world's namespace: the operator's, the one it watches, and its Jobs'.
    pub ns: String,
    /// The fingerprint key in the namespace's Secret (random per world).
    pub fingerprint_key: String,
    /// The operator started last, if it runs.
    pub operator: Option<InProcessOperator>,
    /// The metrics (and probes) of the operator started last.
    pub http: Arc<HttpState>,
    /// Environment variables of operators started from now on, on top of the world's (e.g.
    /// `SNAPSENTRY_SCANNER_TIMEOUT_SECONDS`).
    pub operator_env: BTreeMap<String, String>,
    /// The Job runner of the namespace.
    pub runner: JobRunner,
    /// The provider-specific part.
    pub cloud: C,
    /// The volume protection controllers, when the Setup has block devices.
    pub protection: Option<VolumeProtection>,
    /// Every request the world's operators sent, through their own client.
    pub operator_requests: RequestLog,
    operator_client: kube::Client,
}

impl<C: Cloud> World<C> {
    /// Builds the world: log capture, the shared control plane with the CRDs, the namespace with
    /// its fingerprint-key Secret and `setup`'s Secrets, and the Job runner, whose Jobs find
    /// kubectl and this workspace's binaries on `PATH` and the control plane in `KUBECONFIG`.
    /// No operator runs yet.
    pub async fn start(setup: Setup<C>) -> Result<Self, Error> {
        crate::logs::capture();
        let cp = ControlPlane::shared().await?;
        let client = cp.client().await?;
        let ns = setup.namespace;
        let fingerprint_key = prepare_namespace(cp, &client, &ns).await?;
        for (name, data) in &setup.secrets {
            let data: Vec<(&str, &str)> = data.iter().map(|(k, v)| (&k[..], &v[..])).collect();
            create_secret(&client, &ns, name, &data).await?;
        }
        let bins = crate::bin_dir().map_err(Error::io("locating the workspace's binaries"))?;
        let path = crate::search_path(&[&Options::default().assets, &bins]);
        let mut env = vec![
            ("PATH".to_owned(), path),
            (
                "KUBECONFIG".to_owned(),
                cp.kubeconfig().display().to_string(),
            ),
        ];
        env.extend(setup.env);
        let protection = setup
            .block_devices
            .is_some()
            .then(|| VolumeProtection::start(client.clone(), &ns));
        let runner = JobRunner::start(
            client.clone(),
            JobRunnerOptions {
                namespace: ns.clone(),
                claims: setup.claims,
                command: setup.command,
                env,
                log_dir: None,
                block_devices: setup.block_devices,
            },
        )
        .map_err(Error::io("starting the Job runner"))?;
        let operator_requests = RequestLog::default();
        let operator_client = cp.client_logging(&operator_requests).await?;
        Ok(World {
            cp,
            client,
            ns,
            fingerprint_key,
            operator: None,
            http: Arc::new(HttpState::default()),
            operator_env: BTreeMap::new(),
            runner,
            cloud: setup.cloud,
            protection,
            operator_requests,
            operator_client,
        })
    }

    /// Starts the operator as pod `operator-0`, without leader election.
    pub fn start_operator(&mut self) -> Result<(), Error> {
        self.start_operator_as("operator-0", false)
    }

    /// Starts an operator as pod `pod` (its Lease identity), with or without leader election,
    /// watching the world's namespace; it becomes [`World::operator`] (a test running two keeps
    /// the first by taking it from there).
    pub fn start_operator_as(&mut self, pod: &str, leader_election: bool) -> Result<(), Error> {
        let mut vars = BTreeMap::from([
            ("SNAPSENTRY_NAMESPACE".to_owned(), self.ns.clone()),
            (
                "SNAPSENTRY_SCANNER_IMAGE".to_owned(),
                "snapsentry-scan:test".to_owned(),
            ),
            ("SNAPSENTRY_WATCH_NAMESPACES".to_owned(), self.ns.clone()),
            ("SNAPSENTRY_POD_NAME".to_owned(), pod.to_owned()),
            (
                "SNAPSENTRY_LEADER_ELECTION".to_owned(),
                leader_election.to_string(),
            ),
        ]);
        vars.extend(self.operator_env.clone());
        let config = Config::from_lookup(|k| vars.get(k).cloned())?;
        let (stop, shutdown) = watch::channel(false);
        self.http = Arc::new(HttpState::default());
        let task = tokio::spawn(snapsentry_operator::run(
            config,
            self.operator_client.clone(),
            self.http.clone(),
            shutdown,
        ));
        self.operator = Some(InProcessOperator { stop, task });
        Ok(())
    }

    /// Stops the running operator, if any.
    pub async fn stop_operator(&mut self) -> Result<(), Error> {
        match self.operator.take() {
            Some(operator) => operator.stop().await,
            None => Ok(()),
        }
    }

    /// The namespaced API of `K` in the world's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Creates `policy` (its namespace should be the world's).
    pub async fn create_policy(&self, policy: &ScanPolicy) -> Result<(), Error> {
        self.api::<ScanPolicy>()
            .create(&PostParams::default(), policy)
            .await?;
        Ok(())
    }

    /// Asks for a scan of the policy now: the `snapsentry.io/scan-now` annotation set to `value`,
    /// as a user would.
    pub async fn scan_now(&self, policy: &str, value: &str) -> Result<(), Error> {
        let patch = serde_json::json!({ "metadata": { "annotations": {
            "snapsentry.io/scan-now": value,
        }}});
        self.api::<ScanPolicy>()
            .patch(policy, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    /// Waits (up to `timeout`) until `done` holds for the policy `name`; the error says what was
    /// awaited and reports the policy's status, the Jobs' output and the cloud's diagnostics.
    pub async fn wait_policy(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        done: impl Fn(&ScanPolicy) -> bool,
    ) -> Result<ScanPolicy, Error> {
        let api = self.api::<ScanPolicy>();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let p = api.get(name).await?;
            if done(&p) {
                return Ok(p);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: what.to_owned(),
                    report: format!(
                        "policy status: {}\nJobs started: {:?}\nJob logs: {}\n{}",
                        serde_json::to_string_pretty(&p.status)?,
                        self.runner.started(),
                        self.job_logs(),
                        self.cloud.diagnostics()
                    ),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits (up to `timeout`) until a scan of the policy `name` other than `previous` has
    /// finished (`Scanning=False` with a scan id).
    pub async fn wait_scan_finished(
        &self,
        name: &str,
        previous: Option<&str>,
        timeout: Duration,
    ) -> Result<ScanPolicy, Error> {
        self.wait_policy(name, "the scan to finish", timeout, |p| {
            let Some(s) = &p.status else { return false };
            let finished = s
                .conditions
                .iter()
                .any(|c| c.type_ == "Scanning" && c.status == "False");
            finished && s.scan_id.is_some() && s.scan_id.as_deref() != previous
        })
        .await
    }

    /// The output of every Job the runner started, each under a `--- <job>` line.
    pub fn job_logs(&self) -> String {
        self.runner
            .started()
            .iter()
            .map(|j| format!("\n--- {j}\n{}", self.runner.log(j)))
            .collect()
    }

    /// The namespace's Jobs.
    pub async fn jobs(&self) -> Result<Vec<Job>, Error> {
        Ok(self.api::<Job>().list(&ListParams::default()).await?.items)
    }

    /// The namespace's ScannedMachines by object name.
    pub async fn machines(&self) -> Result<BTreeMap<String, ScannedMachine>, Error> {
        Ok(self
            .api::<ScannedMachine>()
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .map(|m| (m.name_any(), m))
            .collect())
    }

    /// The namespace's SecretFindings.
    pub async fn findings(&self) -> Result<Vec<SecretFinding>, Error> {
        Ok(self
            .api::<SecretFinding>()
            .list(&ListParams::default())
            .await?
            .items)
    }

    /// The titles of the namespace's AttackPaths.
    pub async fn attack_path_titles(&self) -> Result<BTreeSet<String>, Error> {
        Ok(self
            .api::<AttackPath>()
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .map(|p| p.spec.title)
            .collect())
    }

    /// The machines the namespace's Recommendation titled `title` lists as affected; `None`
    /// when there is no such Recommendation.
    pub async fn recommended_machines(
        &self,
        title: &str,
    ) -> Result<Option<BTreeSet<String>>, Error> {
        Ok(self
            .api::<Recommendation>()
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .find(|r| r.spec.title == title)
            .map(|r| {
                r.spec
                    .affected_resources
                    .into_iter()
                    .map(|a| a.machine)
                    .collect()
            }))
    }

    /// The reasons of the namespace's Events.
    pub async fn event_reasons(&self) -> Result<Vec<String>, Error> {
        // The Recorder writes events.k8s.io/v1 Events; they read back through core/v1 too.
        let events: Api<CoreEvent> = self.api();
        Ok(events
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter_map(|e| e.reason)
            .collect())
    }

    /// An admission webhook that cannot be reached (`failurePolicy: Fail`), limited to the
    /// namespace's Jobs: every Job creation fails with a server error, which the operator retries
    /// as it is, so it gets as far as creating a Job and stops there (a cloud's snapshots are
    /// taken before). The API server takes it into account within a moment.
    pub async fn forbid_jobs(&self) -> Result<(), Error> {
        let webhook: ValidatingWebhookConfiguration = serde_json::from_value(serde_json::json!({
            "metadata": { "name": self.hold_jobs_name() },
            "webhooks": [{
                "name": "hold-jobs.snapsentry.test",
                "clientConfig": { "url": "https://127.0.0.1:1/hold" },
                "rules": [{
                    "apiGroups": ["batch"], "apiVersions": ["v1"],
                    "operations": ["CREATE"], "resources": ["jobs"]
                }],
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 2,
                "namespaceSelector": {
                    "matchLabels": { "kubernetes.io/metadata.name": self.ns }
                }
            }]
        }))?;
        Api::<ValidatingWebhookConfiguration>::all(self.client.clone())
            .create(&PostParams::default(), &webhook)
            .await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok(())
    }

    /// Removes the webhook of [`World::forbid_jobs`]: Jobs are admitted again.
    pub async fn allow_jobs(&self) -> Result<(), Error> {
        Api::<ValidatingWebhookConfiguration>::all(self.client.clone())
            .delete(&self.hold_jobs_name(), &DeleteParams::default())
            .await?;
        Ok(())
    }

    fn hold_jobs_name(&self) -> String {
        format!("{}-hold-jobs", self.ns)
    }

    /// A ResourceQuota `job-quota` admitting `jobs` Jobs in the namespace (the API server counts
    /// each Job created; with no quota controller running, none is ever given back).
    pub async fn limit_jobs(&self, jobs: u32) -> Result<(), Error> {
        let mut quota = ResourceQuota::default();
        quota.metadata.name = Some("job-quota".into());
        let hard = serde_json::json!({ "count/jobs.batch": jobs.to_string() });
        quota.spec = Some(serde_json::from_value(serde_json::json!({ "hard": hard }))?);
        self.api::<ResourceQuota>()
            .create(&PostParams::default(), &quota)
            .await?;
        // The quota controller is not running: set the quota's usage so admission enforces it.
        self.api::<ResourceQuota>()
            .patch_status(
                "job-quota",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "status": {
                    "hard": hard, "used": { "count/jobs.batch": "0" }
                }})),
            )
            .await?;
        Ok(())
    }

    /// Removes the quota of [`World::limit_jobs`].
    pub async fn unlimit_jobs(&self) -> Result<(), Error> {
        self.api::<ResourceQuota>()
            .delete("job-quota", &DeleteParams::default())
            .await?;
        Ok(())
    }

    /// kubectl `args` against the control plane; its standard output, or an error when it fails.
    pub fn kubectl_ok(&self, args: &[&str]) -> Result<Vec<u8>, Error> {
        kubectl_ok(self.cp, args)
    }

    /// Everything a user, an operator of the cluster or a log collector could see, each with
    /// what it is: every snapsentry object, Event, Job and ConfigMap in the cluster, the
    /// captured logs, the output of the world's Jobs and the operator's metrics.
    pub fn everything_visible(&self) -> Result<Vec<(String, Vec<u8>)>, Error> {
        let mut seen = Vec::new();
        for args in [
            &["get", "sp,sf,sm,ap,rec", "-A", "-o", "json"][..],
            &["get", "sp,sf,sm,ap,rec", "-A", "-o", "wide"][..],
            &["get", "events", "-A", "-o", "json"][..],
            &["get", "events.events.k8s.io", "-A", "-o", "json"][..],
            &["get", "jobs,configmaps", "-A", "-o", "json"][..],
        ] {
            seen.push((
                format!("kubectl {}", args.join(" ")),
                self.kubectl_ok(args)?,
            ));
        }
        seen.push(("the operator's logs".to_owned(), crate::logs::captured()));
        for job in self.runner.started() {
            seen.push((
                format!("the output of Job {job}"),
                self.runner.log(&job).into_bytes(),
            ));
        }
        seen.push((
            "/metrics".to_owned(),
            self.http.metrics.encode().into_bytes(),
        ));
        Ok(seen)
    }

    /// The first of `never_shown` (`(what it is, text to look for)`, each at least 8 bytes)
    /// found in [`World::everything_visible`], said as where it showed and what came before it
    /// on its line (never the value); `None` when none shows. Fails when too little was
    /// collected (under 10 kB) for the check to mean anything.
    pub fn first_leak(&self, never_shown: &[(String, String)]) -> Result<Option<String>, Error> {
        let seen: Vec<(String, String)> = self
            .everything_visible()?
            .into_iter()
            .map(|(place, text)| (place, String::from_utf8_lossy(&text).into_owned()))
            .collect();
        let total: usize = seen.iter().map(|(_, text)| text.len()).sum();
        if total <= 10_000 {
            return Ok(Some(format!(
                "too little collected ({total} bytes) to be a check"
            )));
        }
        for (what, probe) in never_shown {
            if probe.len() < 8 {
                return Ok(Some(format!("{what} is too short to look for")));
            }
            for (place, text) in &seen {
                if let Some(at) = text.find(probe.as_str()) {
                    let line = text[..at].rsplit('\n').next().unwrap_or_default();
                    let skip = line.chars().count().saturating_sub(300);
                    let before: String = line.chars().skip(skip).collect();
                    return Ok(Some(format!("{what} leaked into {place}, after: {before}")));
                }
            }
        }
        Ok(None)
    }
}

/// The policy's condition of type `type_`, if it has one.
pub fn condition<'a>(
    policy: &'a ScanPolicy,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    policy
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// The path of the scanner binary (`snapsentry-scan`) of this workspace, or an error saying how
/// to build it.
pub fn scanner() -> Result<PathBuf, Error> {
    let scanner = crate::bin_dir()
        .map_err(Error::io("locating the workspace's binaries"))?
        .join("snapsentry-scan");
    if scanner.is_file() {
        Ok(scanner)
    } else {
        Err(Error::MissingScanner(scanner))
    }
}

/// A Job command standing in for the scanner: the real one (`snapsentry-scan job`), killed with
/// SIGKILL once it has started reading (a node lost, an OOM kill); the Job fails.
pub fn killed_scanner() -> Vec<String> {
    vec![
        "sh".to_owned(),
        "-c".to_owned(),
        "snapsentry-scan job --no-progress & pid=$!; sleep 0.3; kill -9 $pid; wait $pid; exit 137"
            .to_owned(),
    ]
}

/// Makes `ns` ready for the operator: installs the CRDs (once per control plane), creates the
/// namespace and its `snapsentry-fingerprint` Secret with a random key (64 hex digits: the Job
/// runner passes Secret values to the scanner as environment text); returns the key.
pub async fn prepare_namespace(
    cp: &ControlPlane,
    client: &kube::Client,
    ns: &str,
) -> Result<String, Error> {
    cp.install_crds()?;
    create_namespace(client, ns).await?;
    let key =
        crate::random::string(crate::random::HEX, 64).map_err(Error::io("reading /dev/urandom"))?;
    create_secret(client, ns, "snapsentry-fingerprint", &[("key", &key)]).await?;
    Ok(key)
}

/// Creates the Secret `name` in `ns` holding `data` (text values).
pub async fn create_secret(
    client: &kube::Client,
    ns: &str,
    name: &str,
    data: &[(&str, &str)],
) -> Result<(), Error> {
    let mut secret = Secret::default();
    secret.metadata.name = Some(name.to_owned());
    secret.data = Some(
        data.iter()
            .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
            .collect(),
    );
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await?;
    Ok(())
}

/// kubectl `args` against `cp`; its standard output, or an error when it fails.
pub fn kubectl_ok(cp: &ControlPlane, args: &[&str]) -> Result<Vec<u8>, Error> {
    let out = cp.kubectl(args)?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(Error::Kubectl {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}
