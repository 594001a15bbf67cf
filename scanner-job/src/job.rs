//! `snapsentry-scan job`: what a scanner Job runs for one machine of one scan.
//!
//! It reads its [`ScanAssignment`] (`SNAPSENTRY_ASSIGNMENT`, or `--assignment FILE`), the
//! fingerprint key (`SNAPSENTRY_FINGERPRINT_KEY`) and the Kubernetes config (in-cluster or
//! `KUBECONFIG`), then:
//!
//! 1. applies `phase: Scanning` and `progress` to the ScannedMachine's status (at most one
//!    progress update per [`Options::progress_interval`]);
//! 2. scans every assigned disk with the CLI's pipeline (open_disk → walk → engine, on all
//!    cores), volume ids prefixed with the disk index (`disk0/p2`); an image path is read as a
//!    file, an EBS snapshot through the EBS direct APIs ([`snapsentry_cloud::aws::ebs`]);
//! 3. writes one SecretFinding per (rule, fingerprint) — at most [`limits::MAX_LOCATIONS`]
//!    locations and the assignment's `maxFindings` objects — by server-side apply as
//!    [`contract::SCANNER`], keeping `spec.firstSeen` of an existing finding and never sending
//!    `spec.triage` (people's triage, applied by another field manager, survives a rescan);
//! 4. applies the scan summary (`lastScan`, with the snapshot read counters: blocks fetched,
//!    retries), the authorized SSH keys and `phase: Scanned` (or
//!    `Failed` when no volume could be scanned) and clears `progress`.
//!
//! Everything written comes from the engine's redacted findings (a prefix of at most four
//! characters, the length, a keyed HMAC): no secret value reaches an object or a log line.
//!
//! Exit codes: 0 when the scan finished (findings or not); 1 when the API server could not be
//! reached or written, or no volume could be scanned; 2 on an unusable assignment or key.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use snapsentry_crds::contract::{self, Assessment, finding_name};
use snapsentry_crds::label_value::slugify;
use snapsentry_crds::{
    ASSIGNMENT_ENV, AuthorizedKey, DiskSource, FINGERPRINT_KEY_ENV, FindingLocation,
    FindingMetadata, MachinePhase, ScanAssignment, ScanProgress, ScanSummary, ScannedMachine,
    SecretFinding, SecretFindingSpec, SecretTarget, Severity, SnapshotReadStats, SshKeyFacts,
    TargetKind, VolumeResult, limits,
};
use snapsentry_disk::source::FileSource;
use snapsentry_disk::{BlockSource, Filesystem};
use snapsentry_engine::{Engine, EngineConfig, Finding, paths};

use crate::report::{FileInfo, Format, Skipped};
use crate::scan::{self, Counters, ScanArgs};
use snapsentry_cloud::aws::ebs::{EbsOptions, EbsSnapshotSource, EbsSnapshotSpec, EbsStats};

/// Default time between two progress updates.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);
/// Default `--max-file-size` of a Job when the policy sets none.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 64 << 20;

/// `snapsentry-scan job` flags (everything else comes from the assignment).
#[derive(clap::Args, Debug)]
pub struct JobArgs {
    /// Read the assignment from FILE instead of `$SNAPSENTRY_ASSIGNMENT` (local runs).
    #[arg(long, value_name = "FILE")]
    pub assignment: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Accepted for symmetry with the other commands; a Job never draws a progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

/// Why a Job failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unusable assignment: {0}")]
    Assignment(String),
    #[error("no fingerprint key: set {FINGERPRINT_KEY_ENV}")]
    NoKey,
    #[error("ScannedMachine {namespace}/{name} not found")]
    MachineNotFound { namespace: String, name: String },
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("Kubernetes config: {0}")]
    Config(String),
    #[error("rules: {0}")]
    Rules(#[from] snapsentry_engine::RuleError),
    #[error("scan worker: {0}")]
    Worker(String),
    #[error("serialization: {0}")]
    Json(#[from] serde_json::Error),
}

impl Error {
    /// Process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Assignment(_) | Error::NoKey | Error::Rules(_) => 2,
            _ => 1,
        }
    }
}

/// How a Job runs.
#[derive(Clone, Debug)]
pub struct Options {
    pub threads: Option<usize>,
    pub progress_interval: Duration,
    /// How EBS snapshots are read (concurrency, cache, retries, credentials).
    pub ebs: EbsOptions,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            threads: None,
            progress_interval: PROGRESS_INTERVAL,
            ebs: EbsOptions::default(),
        }
    }
}

/// What a finished Job wrote.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The summary written to `status.lastScan`.
    pub summary: ScanSummary,
    /// Names of the SecretFindings written, sorted.
    pub findings: Vec<String>,
}

/// The `job` subcommand: parse inputs, run, map the result to an exit code.
pub fn main(args: &JobArgs) -> ExitCode {
    let inputs = load_assignment(args).and_then(|a| Ok((a, fingerprint_key_from_env()?)));
    let (assignment, key) = match inputs {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("snapsentry-scan: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("snapsentry-scan: tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let options = Options {
        threads: args.threads,
        ..Options::default()
    };
    let result = runtime.block_on(async {
        let client = Client::try_default()
            .await
            .map_err(|e| Error::Config(e.to_string()))?;
        run(client, &assignment, key, &options).await
    });
    match result {
        Ok(outcome) if outcome.summary.succeeded => ExitCode::SUCCESS,
        Ok(outcome) => {
            eprintln!(
                "snapsentry-scan: no volume could be scanned: {}",
                outcome.summary.errors.join("; ")
            );
            ExitCode::from(1)
        }
        Err(e) => {
            tracing::error!(error = %e, "scan failed");
            eprintln!("snapsentry-scan: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// The assignment from `--assignment FILE` or `$SNAPSENTRY_ASSIGNMENT`, checked.
pub fn load_assignment(args: &JobArgs) -> Result<ScanAssignment, Error> {
    let text = match &args.assignment {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| Error::Assignment(format!("{}: {e}", path.display())))?,
        None => std::env::var(ASSIGNMENT_ENV)
            .map_err(|_| Error::Assignment(format!("{ASSIGNMENT_ENV} is not set")))?,
    };
    parse_assignment(&text)
}

/// Parse and check an assignment.
pub fn parse_assignment(text: &str) -> Result<ScanAssignment, Error> {
    let a: ScanAssignment =
        serde_json::from_str(text).map_err(|e| Error::Assignment(e.to_string()))?;
    if a.version != ScanAssignment::VERSION {
        return Err(Error::Assignment(format!(
            "version {} (this scanner reads version {})",
            a.version,
            ScanAssignment::VERSION
        )));
    }
    for (field, value) in [
        ("policy", &a.policy),
        ("namespace", &a.namespace),
        ("machine", &a.machine),
        ("scanId", &a.scan_id),
    ] {
        if value.is_empty() {
            return Err(Error::Assignment(format!("{field} is empty")));
        }
    }
    if a.disks.is_empty() {
        return Err(Error::Assignment("no disks".into()));
    }
    Ok(a)
}

/// The fingerprint key from `$SNAPSENTRY_FINGERPRINT_KEY` (a Job never creates a key file).
pub fn fingerprint_key_from_env() -> Result<Vec<u8>, Error> {
    std::env::var_os(FINGERPRINT_KEY_ENV)
        .filter(|k| !k.is_empty())
        .map(|k| k.into_encoded_bytes())
        .ok_or(Error::NoKey)
}

/// Scan the assigned machine and write its SecretFindings and ScannedMachine status.
///
/// Returns `Ok` once everything is written, also when no volume could be scanned (then
/// `summary.succeeded` is false and the phase `Failed`); `Err` when the API server refused or
/// the machine does not exist.
pub async fn run(
    client: Client,
    assignment: &ScanAssignment,
    key: Vec<u8>,
    options: &Options,
) -> Result<Outcome, Error> {
    let a = assignment;
    let machines: Api<ScannedMachine> = Api::namespaced(client.clone(), &a.namespace);
    let machine = machines
        .get_opt(&a.machine)
        .await?
        .ok_or_else(|| Error::MachineNotFound {
            namespace: a.namespace.clone(),
            name: a.machine.clone(),
        })?;
    let exposed = machine.spec.exposure.internet_facing;
    let started = Timestamp::now();
    let clock = Instant::now();
    tracing::info!(
        policy = %a.policy, namespace = %a.namespace, machine = %a.machine, scan_id = %a.scan_id,
        disks = a.disks.len(), "scan started"
    );

    let progress = |files: u64, bytes: u64| ScanProgress {
        scan_id: a.scan_id.clone(),
        started_at: Some(Time(started)),
        files_scanned: files,
        bytes_scanned: bytes,
        ..ScanProgress::default()
    };
    apply_machine_status(
        &machines,
        &a.machine,
        serde_json::json!({ "phase": MachinePhase::Scanning, "progress": progress(0, 0) }),
    )
    .await?;

    let mut errors = Vec::new();
    if let Some(cm) = &a.rules.extra_rules_config_map {
        errors.push(format!(
            "extra rules ConfigMap {cm}: not supported in this build"
        ));
    }
    let engine = Engine::new(EngineConfig {
        extra_rules: Vec::new(),
        disabled: a.rules.disable.clone(),
        fingerprint_key: key,
    })?;

    // Scan on blocking threads while this task reports progress.
    let counters = Arc::new(Counters::default());
    let mut scan_task = tokio::task::spawn_blocking({
        let counters = counters.clone();
        let a = a.clone();
        let threads = options.threads;
        let ebs = options.ebs.clone();
        move || scan_disks_counted(&a, &engine, threads, &ebs, &counters)
    });
    let mut ticker = tokio::time::interval(options.progress_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate; progress 0 was just written
    let scanned = loop {
        tokio::select! {
            done = &mut scan_task => break done.map_err(|e| Error::Worker(e.to_string()))?,
            _ = ticker.tick() => {
                let p = progress(
                    counters.files.load(Ordering::Relaxed),
                    counters.bytes.load(Ordering::Relaxed),
                );
                // Progress is best effort: a missed update must not fail the scan.
                if let Err(e) = apply_machine_status(
                    &machines, &a.machine, serde_json::json!({ "progress": p }),
                ).await {
                    tracing::warn!(error = %e, "progress update failed");
                }
            }
        }
    };
    errors.extend(scanned.errors.iter().cloned());
    let files = counters.files.load(Ordering::Relaxed);
    let bytes = counters.bytes.load(Ordering::Relaxed);
    let unreadable = counters.errors.load(Ordering::Relaxed);
    if unreadable > 0 {
        errors.push(format!("{unreadable} file(s) could not be read"));
    }

    // Group and write the findings.
    let mut groups = group_findings(scanned.findings, &a.rules.exclude_secret_types);
    if let Some(e) = cap_findings(&mut groups, a.max_findings) {
        errors.push(e);
    }
    let now = Time(Timestamp::now());
    let findings_api: Api<SecretFinding> = Api::namespaced(client.clone(), &a.namespace);
    let mut names = Vec::with_capacity(groups.len());
    for g in &groups {
        let name = finding_name(&a.machine, &g.rule_id, &g.fingerprint);
        let existing = findings_api.get_opt(&name).await?;
        let object = finding_object(a, g, &name, existing.as_ref(), exposed, &now)?;
        findings_api
            .patch(
                &name,
                &PatchParams::apply(contract::SCANNER).force(),
                &Patch::Apply(&object),
            )
            .await?;
        tracing::debug!(finding = %name, rule = %g.rule_id, locations = g.location_count, "finding written");
        names.push(name);
    }
    names.sort();

    // Final status.
    let succeeded = scanned.volumes.iter().any(|v| v.scanned);
    let mut volumes = scanned.volumes;
    if volumes.len() > limits::MAX_VOLUMES {
        errors.push(format!(
            "{} more volume(s) not listed",
            volumes.len() - limits::MAX_VOLUMES
        ));
        volumes.truncate(limits::MAX_VOLUMES);
    }
    errors.truncate(limits::MAX_SCAN_ERRORS);
    let summary = ScanSummary {
        scan_id: a.scan_id.clone(),
        succeeded,
        started_at: Some(Time(started)),
        finished_at: Some(Time(Timestamp::now())),
        duration_ms: u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX),
        files,
        bytes_scanned: bytes,
        volumes,
        errors,
        findings: names.len() as u32,
        snapshot_reads: scanned.snapshot_reads.clone(),
    };
    let phase = if succeeded {
        MachinePhase::Scanned
    } else {
        MachinePhase::Failed
    };
    // Progress stays in this apply (a status without it could be invalid if another manager
    // co-owns part of it) and is removed by the merge patch below.
    apply_machine_status(
        &machines,
        &a.machine,
        serde_json::json!({
            "phase": phase,
            "progress": progress(files, bytes),
            "lastScan": summary,
            "authorizedKeys": scanned.authorized_keys,
        }),
    )
    .await?;
    machines
        .patch_status(
            &a.machine,
            &PatchParams {
                field_manager: Some(contract::SCANNER.into()),
                ..PatchParams::default()
            },
            &Patch::Merge(serde_json::json!({ "status": { "progress": null } })),
        )
        .await?;
    let reads = scanned.snapshot_reads.unwrap_or_default();
    tracing::info!(
        machine = %a.machine, scan_id = %a.scan_id, ?phase, files, bytes,
        findings = names.len(), duration_ms = summary.duration_ms,
        snapshot_blocks_fetched = reads.blocks_fetched, snapshot_retries = reads.retries,
        "scan finished"
    );
    Ok(Outcome {
        summary,
        findings: names,
    })
}

/// Server-side apply of the scanner's fields of a ScannedMachine's status.
async fn apply_machine_status(
    api: &Api<ScannedMachine>,
    name: &str,
    status: serde_json::Value,
) -> Result<(), Error> {
    let body = serde_json::json!({
        "apiVersion": ScannedMachine::api_version(&()),
        "kind": ScannedMachine::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(contract::SCANNER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

/// What the disks of an assignment yielded.
#[derive(Debug, Default)]
pub struct DiskScan {
    /// Every volume of every disk (ids prefixed `disk<N>/`), or the disk itself when it could
    /// not be opened.
    pub volumes: Vec<VolumeResult>,
    /// Errors met, one line each, never a secret value.
    pub errors: Vec<String>,
    /// Every engine finding, ungrouped.
    pub findings: Vec<Located>,
    /// Authorized SSH keys, deduplicated, at most [`limits::MAX_AUTHORIZED_KEYS`].
    pub authorized_keys: Vec<AuthorizedKey>,
    /// EBS direct read counters summed over the snapshot disks; `None` when there were none.
    pub snapshot_reads: Option<SnapshotReadStats>,
}

/// One engine finding with where it was found.
#[derive(Debug)]
pub struct Located {
    pub finding: Finding,
    /// Volume id, `disk<N>/<volume>`.
    pub volume: String,
    /// Path inside the volume's filesystem.
    pub path: String,
    pub file: FileInfo,
}

/// Open every disk of `a`, list its volumes' files and scan them all, writing nothing: what a
/// Job does between reading its assignment and writing objects. Blocking; EBS snapshots are
/// read with `ebs`.
pub fn scan_disks(
    a: &ScanAssignment,
    engine: &Engine,
    threads: Option<usize>,
    ebs: &EbsOptions,
) -> DiskScan {
    scan_disks_counted(a, engine, threads, ebs, &Counters::default())
}

/// Open one disk's block source: an image file, or an EBS snapshot (kept in `snapshots` for
/// its counters).
fn open_source(
    source: &DiskSource,
    ebs: &EbsOptions,
    snapshots: &mut Vec<Arc<EbsSnapshotSource>>,
) -> Result<Arc<dyn BlockSource>, String> {
    if let DiskSource::Image { path } = source {
        return FileSource::open(std::path::Path::new(path))
            .map(|s| Arc::new(s) as Arc<dyn BlockSource>)
            .map_err(|e| e.to_string());
    }
    if let Some(spec) = EbsSnapshotSpec::from_disk_source(source) {
        let snapshot =
            Arc::new(EbsSnapshotSource::open(&spec, ebs.clone()).map_err(|e| e.to_string())?);
        snapshots.push(snapshot.clone());
        return Ok(snapshot);
    }
    let kind = match source {
        DiskSource::AzureSnapshot { .. } => "Azure snapshots",
        DiskSource::GcpSnapshot { .. } => "GCP snapshots",
        _ => "these disk sources",
    };
    Err(format!("{kind} are not supported in this build"))
}

/// [`scan_disks`], counting files and bytes into `counters` as it goes (the Job's progress).
fn scan_disks_counted(
    a: &ScanAssignment,
    engine: &Engine,
    threads: Option<usize>,
    ebs: &EbsOptions,
    counters: &Counters,
) -> DiskScan {
    let args = ScanArgs {
        path: PathBuf::new(),
        format: Format::Json,
        output: None,
        rules: Vec::new(),
        disable: a.rules.disable.clone(),
        include_tests: a.rules.include_tests,
        max_file_size: a.rules.max_file_size_bytes.unwrap_or(DEFAULT_MAX_FILE_SIZE),
        threads,
        exit_code: 0,
        no_progress: true,
    };
    let mut out = DiskScan::default();
    let mut skipped = Skipped::default();
    let mut jobs = Vec::new();
    let mut filesystems: Vec<Arc<dyn Filesystem>> = Vec::new();
    let mut snapshots = Vec::new();
    for (i, disk) in a.disks.iter().enumerate() {
        let prefix = format!("disk{i}");
        let opened = open_source(&disk.source, ebs, &mut snapshots)
            .and_then(|src| snapsentry_disk::open_disk(src).map_err(|e| e.to_string()));
        let disk_image = match opened {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(disk = %disk.id, volume = %prefix, error = %e, "disk not readable");
                out.errors.push(format!("{prefix} ({}): {e}", disk.id));
                out.volumes.push(VolumeResult {
                    id: prefix,
                    filesystem: None,
                    scanned: false,
                    error: Some(e),
                });
                continue;
            }
        };
        for volume in disk_image.volumes {
            let info = volume.info;
            let id = format!("{prefix}/{}", info.id);
            let mut result = VolumeResult {
                id: id.clone(),
                filesystem: info.filesystem.clone(),
                scanned: info.scanned,
                error: info.error.clone(),
            };
            if let Some(fs) = volume.fs {
                let index = filesystems.len();
                filesystems.push(fs.clone());
                if let Err(e) =
                    scan::collect_volume(&*fs, index, &id, &args, &mut jobs, &mut skipped)
                {
                    result.scanned = false;
                    result.error = Some(format!("{e:#}"));
                }
            }
            if let Some(e) = &result.error {
                out.errors.push(format!("{id}: {e}"));
            }
            out.volumes.push(result);
        }
    }
    let excluded: Vec<Glob> = a.rules.exclude_paths.iter().map(|p| Glob::new(p)).collect();
    jobs.retain(|j| !excluded.iter().any(|g| g.matches(&j.path)));
    tracing::info!(
        files = jobs.len(),
        volumes = out.volumes.len(),
        "files listed"
    );

    let results = scan::scan_all(engine, &jobs, &filesystems, &args, counters);
    if !snapshots.is_empty() {
        let mut total = EbsStats::default();
        for s in &snapshots {
            let st = s.stats();
            tracing::info!(
                snapshot = %s.snapshot_id(), blocks_listed = st.blocks_listed,
                blocks_fetched = st.blocks_fetched, bytes_fetched = st.bytes_fetched,
                retries = st.retries, checksum_mismatches = st.checksum_mismatches,
                "EBS snapshot read"
            );
            total += st;
        }
        out.snapshot_reads = Some(SnapshotReadStats {
            blocks_listed: total.blocks_listed,
            blocks_fetched: total.blocks_fetched,
            bytes_fetched: total.bytes_fetched,
            retries: total.retries,
        });
    }
    let mut keys = BTreeSet::new();
    for (job, scanned) in jobs.iter().zip(results) {
        let Some(scanned) = scanned else { continue };
        let volume = job.volume.clone().unwrap_or_default();
        for f in scanned.findings {
            out.findings.push(Located {
                finding: f,
                volume: volume.clone(),
                path: job.path.clone(),
                file: job.file.clone(),
            });
        }
        for k in scanned.authorized_keys {
            let user = paths::home_user(&job.path).unwrap_or_else(|| "unknown".into());
            keys.insert((user, k.fingerprint, job.path.clone()));
        }
    }
    out.authorized_keys = keys
        .into_iter()
        .take(limits::MAX_AUTHORIZED_KEYS)
        .map(|(user, fingerprint, path)| AuthorizedKey {
            user,
            fingerprint,
            path,
        })
        .collect();
    out
}

/// All locations of one (rule, fingerprint).
#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) rule_id: String,
    secret_type: String,
    severity: Severity,
    pub(crate) fingerprint: String,
    redacted: String,
    metadata: FindingMetadata,
    locations: Vec<FindingLocation>,
    location_count: u32,
}

/// Group findings per (rule, fingerprint), most severe first, locations sorted and capped.
pub(crate) fn group_findings(findings: Vec<Located>, exclude_types: &[String]) -> Vec<Group> {
    let excluded: BTreeSet<String> = exclude_types.iter().map(|t| slugify(t)).collect();
    let mut groups: BTreeMap<(String, String), (Group, BTreeSet<LocKey>)> = BTreeMap::new();
    for l in findings {
        let f = &l.finding;
        if excluded.contains(&slugify(&f.secret_type)) {
            continue;
        }
        let entry = groups
            .entry((f.rule_id.clone(), f.fingerprint.clone()))
            .or_insert_with(|| {
                (
                    Group {
                        rule_id: f.rule_id.clone(),
                        secret_type: f.secret_type.clone(),
                        severity: convert(&f.severity).unwrap_or(Severity::Medium),
                        fingerprint: f.fingerprint.clone(),
                        redacted: f.redacted.clone(),
                        metadata: FindingMetadata::default(),
                        locations: Vec::new(),
                        location_count: 0,
                    },
                    BTreeSet::new(),
                )
            });
        merge_metadata(&mut entry.0.metadata, f);
        entry.1.insert(LocKey {
            volume: l.volume,
            path: l.path,
            line: u32::try_from(f.line).ok(),
            file: l.file,
        });
    }
    let mut out: Vec<Group> = groups
        .into_values()
        .map(|(mut g, locs)| {
            g.location_count = u32::try_from(locs.len()).unwrap_or(u32::MAX);
            g.locations = locs
                .into_iter()
                .take(limits::MAX_LOCATIONS)
                .map(LocKey::into_location)
                .collect();
            g
        })
        .collect();
    out.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.rule_id.cmp(&b.rule_id))
            .then_with(|| a.fingerprint.cmp(&b.fingerprint))
    });
    out
}

/// Keep at most `max_findings` groups (0: [`limits::MAX_FINDINGS_PER_MACHINE`], never more than
/// it), the most severe; the error to record when some were dropped.
pub(crate) fn cap_findings(groups: &mut Vec<Group>, max_findings: u32) -> Option<String> {
    let max = match max_findings as usize {
        0 => limits::MAX_FINDINGS_PER_MACHINE,
        n => n.min(limits::MAX_FINDINGS_PER_MACHINE),
    };
    let total = groups.len();
    (total > max).then(|| {
        groups.truncate(max);
        format!("findings truncated: {max} of {total} written (most severe first)")
    })
}

/// A location while grouping (ordered by volume, path, line).
#[derive(Debug)]
struct LocKey {
    volume: String,
    path: String,
    line: Option<u32>,
    file: FileInfo,
}

impl PartialEq for LocKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl Eq for LocKey {}
impl PartialOrd for LocKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for LocKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&self.volume, &self.path, self.line).cmp(&(&other.volume, &other.path, other.line))
    }
}

impl LocKey {
    fn into_location(self) -> FindingLocation {
        let time = |s: &Option<String>| s.as_deref().and_then(|s| s.parse().ok()).map(Time);
        FindingLocation {
            volume: self.volume,
            path: self.path,
            line: self.line,
            size: Some(self.file.size),
            mode: self.file.mode.clone(),
            uid: self.file.uid,
            modified: time(&self.file.modified),
            accessed: time(&self.file.accessed),
        }
    }
}

/// Fill what `metadata` lacks from one more occurrence of the secret.
fn merge_metadata(m: &mut FindingMetadata, f: &Finding) {
    let src = &f.metadata;
    if m.expires_at.is_none() {
        m.expires_at = src
            .expires_at
            .as_deref()
            .and_then(|s| s.parse().ok())
            .map(Time);
    }
    if m.aws_account_id.is_none() {
        m.aws_account_id = src.aws_account_id.clone();
    }
    if m.target.is_none()
        && let Some(t) = &src.target
    {
        let kind = convert(&t.kind).unwrap_or(TargetKind::Host);
        // An RDS database is listed (and reached) by its endpoint host; the identifier alone
        // (`db1` of `db1.abc.<region>.rds.amazonaws.com`) is not unique across accounts.
        let name = match kind {
            TargetKind::Rds => t.host.clone().or_else(|| t.name.clone()),
            _ => t.name.clone().or_else(|| t.host.clone()),
        };
        if let Some(name) = name {
            m.target = Some(SecretTarget { kind, name });
        }
    }
    if m.ssh.is_none()
        && let Some(s) = &src.ssh
    {
        m.ssh = Some(SshKeyFacts {
            algorithm: s.algorithm.clone().unwrap_or_else(|| "unknown".into()),
            public_key_fingerprint: s.fingerprint.clone(),
            encrypted: s.encrypted,
        });
    }
    let confidence = convert::<_, String>(&f.confidence);
    let rank = |c: &Option<String>| match c.as_deref() {
        Some("high") => 3,
        Some("medium") => 2,
        Some("low") => 1,
        _ => 0,
    };
    if rank(&confidence) > rank(&m.confidence) {
        m.confidence = confidence;
    }
}

/// Convert between the engine's and the API's enums, which serialize alike.
fn convert<T: Serialize, U: DeserializeOwned>(t: &T) -> Option<U> {
    serde_json::from_value(serde_json::to_value(t).ok()?).ok()
}

/// The server-side apply body of one SecretFinding: spec (never `triage`) and the nine query
/// labels. Labels the operator refines after correlation (severity, state, verified, target-kind)
/// keep an existing finding's value, so a rescan does not undo the operator's assessment.
pub(crate) fn finding_object(
    a: &ScanAssignment,
    g: &Group,
    name: &str,
    existing: Option<&SecretFinding>,
    exposed: bool,
    now: &Time,
) -> Result<serde_json::Value, Error> {
    let spec = SecretFindingSpec {
        policy: a.policy.clone(),
        machine: a.machine.clone(),
        cloud: a.cloud,
        rule_id: g.rule_id.clone(),
        secret_type: g.secret_type.clone(),
        rule_severity: g.severity,
        fingerprint: g.fingerprint.clone(),
        redacted: g.redacted.clone(),
        locations: g.locations.clone(),
        location_count: g.location_count,
        metadata: g.metadata.clone(),
        scan_id: a.scan_id.clone(),
        first_seen: existing.map_or_else(|| now.clone(), |f| f.spec.first_seen.clone()),
        last_seen: now.clone(),
        triage: None,
    };
    let assessment = Assessment::scanned(
        &spec,
        exposed,
        existing.and_then(|f| f.metadata.labels.as_ref()),
    );
    let labels = contract::finding_labels(&spec, &assessment);
    let mut spec = serde_json::to_value(&spec)?;
    if let Some(obj) = spec.as_object_mut() {
        obj.remove("triage");
    }
    Ok(serde_json::json!({
        "apiVersion": SecretFinding::api_version(&()),
        "kind": SecretFinding::kind(&()),
        "metadata": { "name": name, "namespace": a.namespace, "labels": labels },
        "spec": spec,
    }))
}

/// A path glob (`exclusions.paths`): `**` matches across `/`, `*` and `?` within one segment.
struct Glob {
    pattern: Vec<char>,
}

impl Glob {
    fn new(p: &str) -> Self {
        Glob {
            pattern: p.chars().collect(),
        }
    }

    fn matches(&self, path: &str) -> bool {
        let text: Vec<char> = path.chars().collect();
        glob_match(&self.pattern, &text)
    }
}

fn glob_match(p: &[char], t: &[char]) -> bool {
    // Iterative matcher with memo over (pattern index, text index); bounded by |p|·|t|.
    let (np, nt) = (p.len(), t.len());
    let mut memo = vec![None::<bool>; (np + 1) * (nt + 1)];
    fn go(p: &[char], t: &[char], i: usize, j: usize, memo: &mut [Option<bool>]) -> bool {
        let idx = i * (t.len() + 1) + j;
        if let Some(v) = memo[idx] {
            return v;
        }
        let v = if i == p.len() {
            j == t.len()
        } else if p[i] == '*' && p.get(i + 1) == Some(&'*') {
            // `**/` also matches nothing.
            let next = if p.get(i + 2) == Some(&'/') {
                i + 3
            } else {
                i + 2
            };
            go(p, t, next, j, memo)
                || (next != i + 2 && go(p, t, i + 2, j, memo))
                || (j < t.len() && go(p, t, i, j + 1, memo))
        } else if p[i] == '*' {
            go(p, t, i + 1, j, memo) || (j < t.len() && t[j] != '/' && go(p, t, i, j + 1, memo))
        } else if j < t.len() && (p[i] == t[j] || (p[i] == '?' && t[j] != '/')) {
            go(p, t, i + 1, j + 1, memo)
        } else {
            false
        };
        memo[idx] = Some(v);
        v
    }
    go(p, t, 0, 0, &mut memo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_are_checked() {
        let ok = r#"{"version":1,"policy":"p","namespace":"ns","machine":"m","instanceId":"i",
            "scanId":"s","cloud":"image","disks":[{"id":"d","source":{"kind":"image","path":"/x"}}],
            "maxFindings":500}"#;
        assert_eq!(parse_assignment(ok).unwrap().machine, "m");
        for bad in [
            ok.replace(r#""version":1"#, r#""version":9"#),
            ok.replace(r#""machine":"m""#, r#""machine":"""#),
            ok.replace(r#"{"id":"d","source":{"kind":"image","path":"/x"}}"#, ""),
            "{".to_owned(),
        ] {
            let e = parse_assignment(&bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{e}");
        }
    }

    fn located(rule: &str, severity: &str, fp: &str, path: &str, line: usize) -> Located {
        let finding = Finding {
            rule_id: rule.into(),
            title: rule.into(),
            secret_type: format!("{rule} type"),
            severity: serde_json::from_value(serde_json::json!(severity)).unwrap(),
            confidence: snapsentry_engine::Confidence::High,
            line,
            fingerprint: fp.into(),
            redacted: "abcd…(40)".into(),
            metadata: Default::default(),
        };
        Located {
            finding,
            volume: "disk0/p1".into(),
            path: path.into(),
            file: FileInfo {
                size: 10,
                modified: Some("2026-11-01T00:00:00Z".into()),
                ..FileInfo::default()
            },
        }
    }

    #[test]
    fn findings_group_per_rule_and_fingerprint_with_capped_locations() {
        let mut input = Vec::new();
        for i in 0..25 {
            input.push(located(
                "aws",
                "high",
                "hmac-sha256:aa",
                &format!("/f{i:02}"),
                1,
            ));
        }
        // The same location twice counts once.
        input.push(located("aws", "high", "hmac-sha256:aa", "/f00", 1));
        input.push(located("aws", "high", "hmac-sha256:bb", "/g", 2));
        input.push(located("ssh", "critical", "hmac-sha256:aa", "/k", 1));
        input.push(located("noise", "low", "hmac-sha256:cc", "/n", 1));
        let groups = group_findings(input, &["Noise type".to_owned()]);
        let keys: Vec<(&str, &str)> = groups
            .iter()
            .map(|g| (g.rule_id.as_str(), g.fingerprint.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("ssh", "hmac-sha256:aa"),
                ("aws", "hmac-sha256:aa"),
                ("aws", "hmac-sha256:bb")
            ]
        );
        let aws = &groups[1];
        assert_eq!(aws.location_count, 25);
        assert_eq!(aws.locations.len(), limits::MAX_LOCATIONS);
        assert_eq!(aws.locations[0].path, "/f00");
        assert_eq!(aws.locations[19].path, "/f19");
        assert_eq!(aws.locations[0].size, Some(10));
        assert!(aws.locations[0].modified.is_some());
        assert_eq!(aws.metadata.confidence.as_deref(), Some("high"));

        let mut capped = groups;
        assert_eq!(cap_findings(&mut capped, 500), None);
        let e = cap_findings(&mut capped, 1).unwrap();
        assert_eq!(e, "findings truncated: 1 of 3 written (most severe first)");
        assert_eq!(capped[0].rule_id, "ssh");
    }

    #[test]
    fn globs() {
        let m = |p: &str, t: &str| Glob::new(p).matches(t);
        assert!(m("/var/lib/docker/**", "/var/lib/docker/a/b/c"));
        assert!(!m("/var/lib/docker/**", "/var/lib/dockerx/a"));
        assert!(m("**/.env", "/opt/app/.env"));
        assert!(m("**/.env", ".env"));
        assert!(m(
            "/home/*/.aws/credentials",
            "/home/alice/.aws/credentials"
        ));
        assert!(!m("/home/*/.aws/credentials", "/home/a/b/.aws/credentials"));
        assert!(m("/tmp/?.txt", "/tmp/a.txt"));
        assert!(!m("/tmp/?.txt", "/tmp/ab.txt"));
    }

    #[test]
    fn labels_keep_the_operators_assessment_and_people_s_triage() {
        let a = parse_assignment(
            r#"{"version":1,"policy":"Lab","namespace":"ns","machine":"lab-web","instanceId":"i",
            "scanId":"s2","cloud":"aws","disks":[{"id":"d","source":{"kind":"image","path":"/x"}}],
            "maxFindings":500}"#,
        )
        .unwrap();
        let g = Group {
            rule_id: "aws-access-key".into(),
            secret_type: "AWS access key".into(),
            severity: Severity::High,
            fingerprint: "hmac-sha256:abcdef0123456789".into(),
            redacted: "AKIA…(20)".into(),
            metadata: FindingMetadata::default(),
            locations: vec![],
            location_count: 0,
        };
        let now = Time(Timestamp::now());
        let fresh = finding_object(&a, &g, "n", None, true, &now).unwrap();
        let l = &fresh["metadata"]["labels"];
        assert_eq!(l["snapsentry.io/policy"], "lab");
        assert_eq!(l["snapsentry.io/secret-type"], "aws-access-key");
        assert_eq!(l["snapsentry.io/state"], "active");
        assert_eq!(l["snapsentry.io/verified"], "unverified");
        assert_eq!(l["snapsentry.io/exposed"], "true");
        assert_eq!(l["snapsentry.io/target-kind"], "none");
        assert_eq!(l["snapsentry.io/severity"], "high");
        assert!(fresh["spec"].get("triage").is_none());

        let mut old: SecretFinding =
            serde_json::from_value(fresh.clone()).expect("the apply body is a SecretFinding");
        let first = Time("2026-01-01T00:00:00Z".parse().unwrap());
        old.spec.first_seen = first.clone();
        old.metadata.labels.as_mut().unwrap().extend([
            (
                "snapsentry.io/state".to_owned(),
                "false-positive".to_owned(),
            ),
            ("snapsentry.io/verified".to_owned(), "verified".to_owned()),
            ("snapsentry.io/severity".to_owned(), "critical".to_owned()),
        ]);
        let again = finding_object(&a, &g, "n", Some(&old), false, &now).unwrap();
        let l = &again["metadata"]["labels"];
        assert_eq!(l["snapsentry.io/state"], "false-positive");
        assert_eq!(l["snapsentry.io/verified"], "verified");
        assert_eq!(l["snapsentry.io/severity"], "critical");
        assert_eq!(l["snapsentry.io/exposed"], "false");
        assert_eq!(
            again["spec"]["firstSeen"],
            serde_json::to_value(&first).unwrap()
        );
    }
}
