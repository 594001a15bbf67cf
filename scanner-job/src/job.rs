//! `snapsentry-scan job`: what a scanner Job runs for one machine of one scan.
//!
//! It reads its [`ScanAssignment`] (`SNAPSENTRY_ASSIGNMENT`, or `--assignment FILE`), the
//! fingerprint key (`SNAPSENTRY_FINGERPRINT_KEY`) and the Kubernetes config (in-cluster or
//! `KUBECONFIG`), then:
//!
//! 1. applies `phase: Scanning` and `progress` to the ScannedMachine's status (at most one
//!    progress update per [`Options::progress_interval`]);
//! 2. scans every assigned disk ([`scan_disks`]) with the CLI's pipeline ([`crate::scan`]: walk →
//!    engine, on all cores) and [`ScanOptions`] from the assignment's rules;
//! 3. lists the machine's SecretFindings once (by label, paginated) and writes one per (rule,
//!    fingerprint), as the finding model ([`crate::finding`]) builds it — at most
//!    [`limits::MAX_LOCATIONS`] locations and the assignment's `maxFindings` objects — by
//!    server-side apply as [`contract::SCANNER`]: spec, labels and the provisional assessment
//!    (`status`, [`snapsentry_crds::assess::scanned`]), keeping `spec.firstSeen` and the
//!    operator's verdict of an existing finding and never sending `spec.triage` (people's triage,
//!    applied by another field manager, survives a rescan);
//! 4. applies the scan summary (`lastScan`, with the snapshot read counters: blocks fetched,
//!    retries), the authorized SSH keys and `phase: Scanned` (or
//!    `Failed` when no volume could be scanned) and clears `progress`.
//!
//! Everything written comes from the engine's redacted findings (a prefix of at most four
//! characters, the length, a keyed HMAC): no secret value reaches an object or a log line.
//!
//! Exit codes: 0 when the scan finished (findings or not); 1 when the API server could not be
//! reached or written, or no volume could be scanned; 2 on an unusable assignment or key.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use snapsentry_crds::label_value::slugify;
use snapsentry_crds::{
    ASSIGNMENT_ENV, FINGERPRINT_KEY_ENV, MachineCoverage, MachinePhase, ScanAssignment,
    ScanProgress, ScanSummary, ScannedMachine, SecretFinding, contract, labels, limits,
};

use crate::finding::{FindingScope, cap_findings, finding_object, group_findings, over_cap_error};
use crate::options::ScanOptions;
use crate::scan::Counters;
use snapsentry_cloud::aws::ebs::EbsOptions;
use snapsentry_cloud::azure::blob::BlobOptions;

mod disks;

pub use disks::{DiskScan, scan_disks};

/// Default time between two progress updates.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);

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
    /// How Azure snapshots' page blobs are read (concurrency, request size, cache, retries).
    pub azure: BlobOptions,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            threads: None,
            progress_interval: PROGRESS_INTERVAL,
            ebs: EbsOptions::default(),
            azure: BlobOptions::default(),
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
    // To the second, as `lastScan.startedAt` is stored: the findings' `snapsentry.io/new` is
    // judged against it here and again by the operator after the scan.
    let started = Timestamp::from_second(Timestamp::now().as_second())
        .map_err(|e| Error::Config(e.to_string()))?;
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
    let scan_options = ScanOptions::for_assignment(&a.rules, options.threads);
    let engine = scan_options.engine(key)?;

    // Scan on blocking threads while this task reports progress.
    let counters = Arc::new(Counters::default());
    let mut scan_task = tokio::task::spawn_blocking({
        let counters = counters.clone();
        let disks = a.disks.clone();
        let readers = disks::Readers {
            ebs: options.ebs.clone(),
            azure: options.azure.clone(),
        };
        move || disks::scan_disks_counted(&disks, &engine, &scan_options, &readers, &counters)
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
    let over_cap = cap_findings(&mut groups, a.max_findings);
    if over_cap > 0 {
        errors.push(over_cap_error(groups.len(), over_cap));
    }
    let now = Time(Timestamp::now());
    let findings_api: Api<SecretFinding> = Api::namespaced(client.clone(), &a.namespace);
    let mut names = Vec::with_capacity(groups.len());
    let scope = FindingScope::of_assignment(a);
    let mut existing = if groups.is_empty() {
        BTreeMap::new()
    } else {
        machine_findings(&findings_api, a).await?
    };
    for g in &groups {
        let name = scope.name(g);
        let object = finding_object(
            &scope,
            g,
            existing.remove(&name).as_ref(),
            exposed,
            &now,
            &Time(started),
        )?;
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
        findings_over_cap: u32::try_from(over_cap).unwrap_or(u32::MAX),
        snapshot_reads: scanned.snapshot_reads.clone(),
    };
    // The operator writes the same phase (and `status.coverage`) from this summary.
    let phase = if !succeeded {
        MachinePhase::Failed
    } else if MachineCoverage::of(&summary).is_complete() {
        MachinePhase::Scanned
    } else {
        MachinePhase::Incomplete
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

/// The SecretFindings of the assignment's machine, by name: one paginated list by the policy and
/// machine labels (not a GET per finding), what each finding written carries forward.
async fn machine_findings(
    api: &Api<SecretFinding>,
    a: &ScanAssignment,
) -> Result<BTreeMap<String, SecretFinding>, Error> {
    let selector = format!(
        "{}={},{}={}",
        labels::POLICY,
        slugify(&a.policy),
        labels::MACHINE,
        slugify(&a.machine)
    );
    let mut params = ListParams::default().labels(&selector).limit(LIST_PAGE);
    let mut out = BTreeMap::new();
    loop {
        let page = api.list(&params).await?;
        for f in page.items {
            // Slugs may collide: the spec says whose it is.
            if f.spec.policy == a.policy && f.spec.machine == a.machine {
                out.insert(f.name_any(), f);
            }
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(out),
        }
    }
}

/// Findings per list page.
const LIST_PAGE: u32 = 500;

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
}
