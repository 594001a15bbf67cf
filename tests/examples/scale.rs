//! The operator at scale (issue #5): a fleet of `images` machines scanned end to end by the real
//! `snapsentry-operator` binary and the real `snapsentry-scan job`, against a real kube-apiserver
//! and etcd, with the local Job runner playing kubelet + Job controller.
//!
//! It builds ONE small ext4 image holding exactly `FINDINGS` distinct random secrets (checked with
//! `snapsentry-scan image --format json`), declares `MACHINES` machines whose disk is that image
//! (their findings differ because a SecretFinding's name includes its machine), runs the operator
//! as a child process (leader election off, text logs to `DIR/operator.log`) and measures: the
//! time from policy creation to `Scanning=False` for a first scan and for a second, steady-state
//! scan (`snapsentry.io/scan-now`, nothing changed); machines/s and findings/s; the operator's
//! peak and final RSS (`/proc/<pid>/status`) and CPU time, and those of kube-apiserver, etcd, the
//! harness and the scanners; the count, total `kubectl get -o json` bytes and largest object of
//! every kind; etcd's database size; and how long `kubectl get sf` takes at that size.
//!
//! It is a benchmark, not a test: it prints figures, and fails only when the scan fails or the
//! objects are not what the fleet must produce (`MACHINES × FINDINGS` active findings, none
//! resolved by the second scan). `scripts/bench-scale.sh` builds what it needs and runs it:
//!
//! ```text
//! cargo run -p snapsentry-tests --example scale -- [MACHINES [FINDINGS [DIR]]]
//! ```
//!
//! Environment: `SCALE_CONCURRENCY` (the policy's concurrency, default 20), `SCALE_TIMEOUT_SECONDS`
//! (per scan, default 7200: 10,000 machines take about 92 minutes), `SCALE_JOB_TTL_SECONDS`
//! (finished Jobs are deleted after this long, as a cluster's TTL-after-finished controller does
//! with the operator's `SNAPSENTRY_JOB_TTL_SECONDS`; default 60, 0 keeps them), `SCALE_SCANS` (2, the default, adds
//! the steady-state scan; 1 runs the first scan only), `SCALE_BIN_DIR` (where `snapsentry-operator` and `snapsentry-scan`
//! are; default the cargo profile directory this example was built into).

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, Patch, PatchParams, PostParams};
use snapsentry_crds::ScanPolicy;
use snapsentry_tests::controlplane::{ControlPlane, Options};
use snapsentry_tests::jobrunner::{JobRunner, JobRunnerOptions};
use snapsentry_tests::random::{self, ALNUM};
use snapsentry_tests::world::{self, kubectl_ok};
use snapsentry_tests::{process, search_path};

/// Namespace of the fleet, the operator and its Jobs.
const NS: &str = "scale";
/// The policy's name.
const POLICY: &str = "fleet";
/// The images claim, mapped by the Job runner to the directory holding the image.
const CLAIM: &str = "scale-images";
/// Machines per images provider at most (the CRD's bound); a larger fleet is split over several.
const PER_PROVIDER: usize = 1000;
/// Machines of one policy at most: 16 providers of [`PER_PROVIDER`].
const MAX_MACHINES: usize = 16 * PER_PROVIDER;
/// The one disk image every machine has.
const IMAGE: &str = "fleet.raw";
/// Linux clock ticks per second (`getconf CLK_TCK`; 100 on every mainstream kernel build).
const CLOCK_TICKS: f64 = 100.0;
/// How often the scan's progress is polled.
const POLL: Duration = Duration::from_millis(500);
/// How often progress is printed.
const REPORT_EVERY: Duration = Duration::from_secs(30);
/// Kinds measured at the end: (short name for kubectl, label in the report).
const KINDS: [(&str, &str); 7] = [
    ("sf", "SecretFinding"),
    ("sm", "ScannedMachine"),
    ("ap", "AttackPath"),
    ("rec", "Recommendation"),
    ("sp", "ScanPolicy"),
    ("jobs", "Job"),
    ("events", "Event"),
];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let machines: usize = parse_arg(args.next(), 1000, "MACHINES")?;
    let per_machine: usize = parse_arg(args.next(), 20, "FINDINGS")?;
    ensure!(
        (1..=MAX_MACHINES).contains(&machines),
        "MACHINES must be 1..={MAX_MACHINES} (a policy holds at most 16 providers of 1000 images machines)"
    );
    ensure!(
        (1..=snapsentry_crds::limits::MAX_FINDINGS_PER_MACHINE).contains(&per_machine),
        "FINDINGS must be 1..={}",
        snapsentry_crds::limits::MAX_FINDINGS_PER_MACHINE
    );
    let dir = match args.next() {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir().join(format!("snapsentry-scale-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    let concurrency: u32 = parse_arg(
        std::env::var("SCALE_CONCURRENCY").ok(),
        20,
        "SCALE_CONCURRENCY",
    )?;
    let timeout = Duration::from_secs(parse_arg(
        std::env::var("SCALE_TIMEOUT_SECONDS").ok(),
        7200,
        "SCALE_TIMEOUT_SECONDS",
    )?);
    let job_ttl: u64 = parse_arg(
        std::env::var("SCALE_JOB_TTL_SECONDS").ok(),
        60,
        "SCALE_JOB_TTL_SECONDS",
    )?;
    let scans: u32 = parse_arg(std::env::var("SCALE_SCANS").ok(), 2, "SCALE_SCANS")?;
    ensure!((1..=2).contains(&scans), "SCALE_SCANS must be 1 or 2");
    let bins = bin_dir()?;
    for bin in ["snapsentry-operator", "snapsentry-scan"] {
        ensure!(
            bins.join(bin).is_file(),
            "{} is missing: run scripts/bench-scale.sh (it builds it), or set SCALE_BIN_DIR",
            bins.join(bin).display()
        );
    }
    println!(
        "scale: {machines} machines x {per_machine} findings, concurrency {concurrency}, Job TTL \
         {job_ttl} s, output in {}",
        dir.display()
    );

    // 1. The image: exactly `per_machine` findings.
    let images = dir.join("images");
    std::fs::create_dir_all(&images)?;
    let planted = build_image(&bins, &dir.join("tree"), &images.join(IMAGE), per_machine)?;
    println!(
        "image: {} ({} files, {} bytes), {per_machine} findings by snapsentry-scan image",
        images.join(IMAGE).display(),
        planted,
        std::fs::metadata(images.join(IMAGE))?.len()
    );

    // 2. The control plane, CRDs, namespace, fingerprint key.
    let cp = ControlPlane::start().await?;
    let client = cp.client().await?;
    world::prepare_namespace(&cp, &client, NS).await?;
    let etcd = child_process("etcd");
    let apiserver = child_process("kube-apiserver");

    // 3. The operator (a child process) and the Job runner (in this process).
    let path = search_path(&[&bins, &Options::default().assets]);
    let operator_log = dir.join("operator.log");
    let mut operator = Operator::start(&bins, cp.kubeconfig(), &operator_log, job_ttl)?;
    let jobs_dir = dir.join("jobs");
    std::fs::create_dir_all(&jobs_dir)?;
    let runner = JobRunner::start(
        client.clone(),
        JobRunnerOptions {
            namespace: NS.into(),
            claims: BTreeMap::from([(CLAIM.to_owned(), images.clone())]),
            command: None,
            env: vec![
                ("PATH".into(), path),
                ("KUBECONFIG".into(), cp.kubeconfig().display().to_string()),
                ("SNAPSENTRY_LOG".into(), "info".into()),
            ],
            log_dir: Some(jobs_dir.clone()),
            block_devices: None,
        },
    )?;
    let _ttl_controller =
        (job_ttl > 0).then(|| tokio::spawn(delete_finished_jobs(client.clone(), job_ttl)));
    let policies: Api<ScanPolicy> = Api::namespaced(client.clone(), NS);

    // 4. The first scan, from policy creation.
    let started = Instant::now();
    policies
        .create(&PostParams::default(), &policy(machines, concurrency)?)
        .await?;
    let first = wait_scan(
        &policies,
        &runner,
        &mut operator,
        None,
        started,
        machines,
        timeout,
    )
    .await?;
    first.print("first scan", machines, per_machine);
    print_failures(&client, &runner, &jobs_dir).await?;
    let after_first = operator.memory()?;

    // 5. The second scan: nothing changed (unless SCALE_SCANS=1).
    let second = if scans == 2 {
        let patch = serde_json::json!({ "metadata": { "annotations": {
            "snapsentry.io/scan-now": "steady-state",
        }}});
        let started = Instant::now();
        policies
            .patch(POLICY, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let second = wait_scan(
            &policies,
            &runner,
            &mut operator,
            Some(&first.scan_id),
            started,
            machines,
            timeout,
        )
        .await?;
        second.print("second scan (nothing changed)", machines, per_machine);
        print_failures(&client, &runner, &jobs_dir).await?;
        Some(second)
    } else {
        None
    };

    // 6. Memory, CPU, objects, etcd, kubectl.
    let mem = operator.memory()?;
    let mut record = serde_json::json!({
        "date": jiff::Timestamp::now().to_string(),
        "profile": if cfg!(debug_assertions) { "dev" } else { "release" },
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "machines": machines,
        "findingsPerMachine": per_machine,
        "concurrency": concurrency,
        "first": first.record(machines, per_machine),
        "second": second.as_ref().map(|s| s.record(machines, per_machine)),
        "operatorPeakMiB": mib(mem.peak),
        "operatorAfterFirstMiB": mib(after_first.rss),
        "operatorEndMiB": mib(mem.rss),
    });
    println!("\n## memory and CPU");
    println!(
        "operator: peak RSS (VmHWM) {:.1} MiB; RSS after the first scan {:.1} MiB, after the \
         second {:.1} MiB; CPU {:.1} s",
        mib(mem.peak),
        mib(after_first.rss),
        mib(mem.rss),
        cpu_seconds(operator.pid()).unwrap_or(f64::NAN)
    );
    for (name, pid) in [("kube-apiserver", apiserver), ("etcd", etcd)] {
        match pid {
            Some(pid) => {
                let m = memory_of(pid)?;
                record[format!("{name}PeakMiB")] = mib(m.peak).into();
                record[format!("{name}EndMiB")] = mib(m.rss).into();
                println!(
                    "{name}: peak RSS {:.1} MiB, RSS {:.1} MiB, CPU {:.1} s",
                    mib(m.peak),
                    mib(m.rss),
                    cpu_seconds(pid).unwrap_or(f64::NAN)
                );
            }
            None => println!("{name}: process not found"),
        }
    }
    let (own, children) = own_cpu_seconds()?;
    println!(
        "harness (Job runner, this process): CPU {own:.1} s; scanner processes and kubectl \
         calls (reaped children): CPU {children:.1} s"
    );

    println!("\n## objects in namespace {NS}");
    println!(
        "| kind | count | `kubectl get -o json` bytes | per object | compact JSON bytes | largest object (compact) |"
    );
    println!("|---|---|---|---|---|---|");
    let mut findings = Vec::new();
    for (short, kind) in KINDS {
        let out = kubectl_ok(&cp, &["get", short, "-n", NS, "-o", "json"])?;
        let list: serde_json::Value = serde_json::from_slice(&out)?;
        let items = list["items"].as_array().cloned().unwrap_or_default();
        let sizes = items
            .iter()
            .map(|i| serde_json::to_vec(i).map(|v| v.len()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        println!(
            "| {kind} | {} | {} | {} | {} | {} |",
            items.len(),
            out.len(),
            out.len().checked_div(items.len()).unwrap_or(0),
            sizes.iter().sum::<usize>(),
            sizes.iter().max().copied().unwrap_or(0)
        );
        if short == "sf" {
            findings = items;
            record["findingsJsonBytes"] = out.len().into();
            record["findingsCompactBytes"] = sizes.iter().sum::<usize>().into();
        }
    }
    match etcd.and_then(etcd_client_url) {
        Some(url) => match etcd_db_size(&url) {
            Ok((total, in_use)) => {
                record["etcdDbMiB"] = mib(total).into();
                record["etcdDbInUseMiB"] = mib(in_use).into();
                println!(
                    "etcd database: {:.1} MiB ({:.1} MiB in use)",
                    mib(total),
                    mib(in_use)
                )
            }
            Err(e) => println!("etcd database: metrics unreadable ({e:#})"),
        },
        None => println!("etcd database: client URL not found"),
    }

    println!("\n## kubectl at this size");
    for args in [
        &[
            "get",
            "sf",
            "-n",
            NS,
            "-l",
            "snapsentry.io/severity=critical",
        ][..],
        &["get", "sf", "-n", NS][..],
        &["get", "sm", "-n", NS][..],
    ] {
        let mut times = Vec::new();
        let mut rows = 0;
        for _ in 0..3 {
            let t = Instant::now();
            let out = kubectl_ok(&cp, args)?;
            times.push(t.elapsed());
            rows = out
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                .saturating_sub(1);
        }
        times.sort();
        record["kubectl"][args.join(" ")] = times[0].as_secs_f64().into();
        println!(
            "`kubectl {}`: {rows} rows, {:.2} s (best of 3; worst {:.2} s)",
            args.join(" "),
            times[0].as_secs_f64(),
            times[2].as_secs_f64()
        );
    }

    // 7. What the fleet must have produced.
    let state = |f: &serde_json::Value| {
        f["metadata"]["labels"]["snapsentry.io/state"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_severity: BTreeMap<String, usize> = BTreeMap::new();
    for f in &findings {
        *by_state.entry(state(f)).or_default() += 1;
        let severity = f["metadata"]["labels"]["snapsentry.io/severity"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        *by_severity.entry(severity).or_default() += 1;
    }
    println!("\nfindings by state: {by_state:?}; by severity: {by_severity:?}");
    let mut problems = Vec::new();
    let expected = machines * per_machine;
    if findings.len() != expected {
        problems.push(format!(
            "{} SecretFindings, expected {machines} x {per_machine} = {expected}",
            findings.len()
        ));
    }
    if by_state.get("active").copied().unwrap_or(0) != expected {
        problems.push(format!(
            "findings by state {by_state:?}: expected {expected} active"
        ));
    }
    for (label, scan) in [("first", Some(&first)), ("second", second.as_ref())] {
        let Some(scan) = scan else { continue };
        if scan.scanned != machines || scan.failed != 0 {
            problems.push(format!(
                "{label} scan: {} scanned, {} failed of {machines}",
                scan.scanned, scan.failed
            ));
        }
    }
    let errors = count_lines(&operator_log, &[" ERROR ", " WARN "])?;
    println!(
        "operator log: {} ERROR and {} WARN lines ({})",
        errors[0],
        errors[1],
        operator_log.display()
    );
    println!(
        "load average at the end: {}",
        std::fs::read_to_string("/proc/loadavg")?.trim()
    );
    record["loadAverage"] = std::fs::read_to_string("/proc/loadavg")?.trim().into();
    record["problems"] = problems.len().into();
    let line = serde_json::to_string(&record)?;
    std::fs::write(dir.join("result.json"), format!("{line}\n"))?;
    println!("result: {line}");
    operator.stop();
    drop(runner);
    if problems.is_empty() {
        println!("checks: the fleet's objects are complete");
        Ok(())
    } else {
        bail!("checks failed:\n  {}", problems.join("\n  "))
    }
}

fn parse_arg<T: std::str::FromStr>(value: Option<String>, default: T, what: &str) -> Result<T> {
    match value.filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| anyhow::anyhow!("{what}: not a number: {v:?}")),
    }
}

/// `SCALE_BIN_DIR`, else the cargo profile directory: this example lives in `<profile>/examples`.
fn bin_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("SCALE_BIN_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    Ok(snapsentry_tests::bin_dir()?)
}

/// The fleet's policy: `machines` image machines (every tenth declared internet-facing), all
/// with the same disk, in images providers of at most [`PER_PROVIDER`] machines.
fn policy(machines: usize, concurrency: u32) -> Result<ScanPolicy> {
    let list: Vec<serde_json::Value> = (0..machines)
        .map(|i| {
            serde_json::json!({
                "name": format!("vm-{i:04}"),
                "disks": [IMAGE],
                "exposure": { "internetFacing": i % 10 == 0, "reasons": [] },
            })
        })
        .collect();
    let providers: Vec<serde_json::Value> = list
        .chunks(PER_PROVIDER)
        .map(|chunk| {
            serde_json::json!({ "images": { "persistentVolumeClaim": CLAIM, "machines": chunk } })
        })
        .collect();
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "snapsentry.io/v1alpha1",
        "kind": "ScanPolicy",
        "metadata": { "name": POLICY, "namespace": NS },
        "spec": {
            "providers": providers,
            "concurrency": concurrency,
        },
    }))?)
}

/// One scan's figures.
struct Scan {
    scan_id: String,
    /// Policy creation (or the scan-now annotation) to the last Job finished.
    jobs_done: Option<Duration>,
    /// Policy creation (or the scan-now annotation) to `Scanning=False`.
    total: Duration,
    scanned: usize,
    failed: usize,
    open_findings: Option<u32>,
    max_jobs_at_once: usize,
}

impl Scan {
    /// The figures for the results file.
    fn record(&self, machines: usize, per_machine: usize) -> serde_json::Value {
        let secs = self.total.as_secs_f64();
        serde_json::json!({
            "totalSeconds": secs,
            "machinesPerSecond": machines as f64 / secs,
            "findingsPerSecond": (machines * per_machine) as f64 / secs,
            "lastJobSeconds": self.jobs_done.map(|d| d.as_secs_f64()),
            "finishSeconds": self.jobs_done.map(|d| secs - d.as_secs_f64()),
            "scanned": self.scanned,
            "failed": self.failed,
        })
    }

    fn print(&self, what: &str, machines: usize, per_machine: usize) {
        let secs = self.total.as_secs_f64();
        println!("\n## {what} ({})", self.scan_id);
        println!(
            "{} machines scanned, {} failed; policy status counts {} open findings",
            self.scanned,
            self.failed,
            self.open_findings
                .map_or("no".to_owned(), |n| n.to_string())
        );
        println!(
            "time to Scanning=False: {secs:.1} s ({:.2} machines/s, {:.1} findings/s)",
            machines as f64 / secs,
            (machines * per_machine) as f64 / secs
        );
        if let Some(done) = self.jobs_done {
            println!(
                "last Job finished at {:.1} s; finishing the scan (status, correlation) took \
                 {:.1} s after it (± {:.1} s polling)",
                done.as_secs_f64(),
                secs - done.as_secs_f64(),
                POLL.as_secs_f64()
            );
        }
        println!(
            "most Jobs running at once (whole run so far): {}",
            self.max_jobs_at_once
        );
    }
}

/// Wait until the policy's scan (other than `previous`) has finished, watching the operator;
/// times count from `started`.
async fn wait_scan(
    policies: &Api<ScanPolicy>,
    runner: &JobRunner,
    operator: &mut Operator,
    previous: Option<&str>,
    started: Instant,
    machines: usize,
    timeout: Duration,
) -> Result<Scan> {
    let finished_before = runner.finished().len();
    let mut jobs_done = None;
    let mut last_report = Instant::now();
    loop {
        operator.check_running()?;
        let p = policies.get(POLICY).await?;
        let status = p.status.clone().unwrap_or_default();
        let scanning = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Scanning")
            .map(|c| c.status.clone());
        let finished = runner.finished().len() - finished_before;
        if jobs_done.is_none() && finished >= machines {
            jobs_done = Some(started.elapsed());
        }
        if let Some(id) = status.scan_id.as_deref()
            && Some(id) != previous
            && scanning.as_deref() == Some("False")
        {
            let counts = status.machines.clone().unwrap_or_default();
            return Ok(Scan {
                scan_id: id.to_owned(),
                jobs_done,
                total: started.elapsed(),
                scanned: counts.scanned as usize,
                failed: counts.failed as usize,
                open_findings: status.findings.as_ref().map(|f| f.total),
                max_jobs_at_once: runner.max_concurrent(),
            });
        }
        if last_report.elapsed() >= REPORT_EVERY {
            last_report = Instant::now();
            let mem = operator.memory()?;
            println!(
                "  {:>6.0} s: {finished}/{machines} Jobs finished, operator RSS {:.1} MiB",
                started.elapsed().as_secs_f64(),
                mib(mem.rss)
            );
            std::io::stdout().flush()?;
        }
        if started.elapsed() > timeout {
            bail!(
                "the scan did not finish in {timeout:?}: {finished}/{machines} Jobs finished; \
                 policy status: {}",
                serde_json::to_string_pretty(&p.status)?
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The TTL-after-finished controller of a cluster: deletes Jobs finished more than `ttl` seconds
/// ago. Without it every Job stays, and the Job runner, which lists the namespace's Jobs five
/// times a second, would spend more of the two CPUs than the operator.
async fn delete_finished_jobs(client: kube::Client, ttl: u64) {
    let jobs: Api<Job> = Api::namespaced(client, NS);
    let ttl = k8s_openapi::jiff::SignedDuration::from_secs(ttl as i64);
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let Ok(list) = jobs.list(&Default::default()).await else {
            continue;
        };
        let now = k8s_openapi::jiff::Timestamp::now();
        for job in list.items {
            let finished = job.status.as_ref().and_then(|s| {
                s.completion_time.as_ref().map(|t| t.0).or_else(|| {
                    s.conditions
                        .iter()
                        .flatten()
                        .find(|c| c.type_ == "Failed" && c.status == "True")
                        .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
                })
            });
            if let (Some(at), Some(name)) = (finished, job.metadata.name.as_deref())
                && now.duration_since(at) > ttl
            {
                let background = kube::api::DeleteParams::background();
                if let Err(e) = jobs.delete(name, &background).await {
                    tracing::debug!(job = name, error = %e, "deleting a finished Job");
                }
            }
        }
    }
}

/// Print why the first few failed Jobs failed (the Job's condition, the end of its log).
async fn print_failures(client: &kube::Client, runner: &JobRunner, jobs_dir: &Path) -> Result<()> {
    let failed: Vec<String> = runner
        .finished()
        .into_iter()
        .filter_map(|(job, r)| r.is_err().then_some(job))
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    println!("{} Jobs failed so far; the first ones:", failed.len());
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    for name in failed.iter().take(3) {
        let message = match jobs.get_opt(name).await? {
            Some(job) => job
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.type_ == "Failed")
                .and_then(|c| c.message)
                .unwrap_or_default(),
            None => "(Job gone)".to_owned(),
        };
        let log = std::fs::read_to_string(jobs_dir.join(format!("{name}.log"))).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        println!(
            "  {name}: {message}\n    {}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n    ")
        );
    }
    Ok(())
}

/// The operator binary, a child process killed when dropped.
struct Operator {
    child: Child,
    log: PathBuf,
}

impl Operator {
    fn start(bins: &Path, kubeconfig: &Path, log: &Path, job_ttl: u64) -> Result<Self> {
        let out = std::fs::File::create(log)?;
        // Only /metrics and the probes listen here; a free port keeps runs from clashing.
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        // `setpriv --pdeathsig KILL`: the operator dies with this process, however it ends.
        let child = process::tied_to_this_process(bins.join("snapsentry-operator"))
            .env("KUBECONFIG", kubeconfig)
            .env("SNAPSENTRY_NAMESPACE", NS)
            .env("SNAPSENTRY_WATCH_NAMESPACES", NS)
            .env("SNAPSENTRY_SCANNER_IMAGE", "snapsentry-scan:bench")
            .env("SNAPSENTRY_LEADER_ELECTION", "false")
            .env(
                "SNAPSENTRY_JOB_TTL_SECONDS",
                if job_ttl > 0 { job_ttl } else { 3600 }.to_string(),
            )
            .env("SNAPSENTRY_POD_NAME", "operator-0")
            .env("SNAPSENTRY_LOG", "info")
            .env("SNAPSENTRY_LOG_FORMAT", "text")
            .env("SNAPSENTRY_LISTEN", format!("127.0.0.1:{port}"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting snapsentry-operator through setpriv")?;
        Ok(Self {
            child,
            log: log.to_owned(),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            bail!(
                "snapsentry-operator exited ({status}); last lines of {}:\n{}",
                self.log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        Ok(())
    }

    fn memory(&self) -> Result<Memory> {
        memory_of(self.pid())
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Resident memory of a process, in bytes.
struct Memory {
    /// `VmHWM`: the peak.
    peak: u64,
    /// `VmRSS`: now.
    rss: u64,
}

fn memory_of(pid: u32) -> Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("{name} not in /proc/{pid}/status"))?;
        let kib: u64 = line.split_whitespace().nth(1).context("a value")?.parse()?;
        Ok(kib * 1024)
    };
    Ok(Memory {
        peak: field("VmHWM:")?,
        rss: field("VmRSS:")?,
    })
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Fields of `/proc/<pid>/stat` after the command name (field 3 onwards).
fn stat_fields(pid: &str) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(") ")?.1;
    Some(after.split_whitespace().map(str::to_owned).collect())
}

/// User + system CPU seconds of a process.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let f = stat_fields(&pid.to_string())?;
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the command.
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / CLOCK_TICKS)
}

/// This process's own CPU seconds and those of its reaped children.
fn own_cpu_seconds() -> Result<(f64, f64)> {
    let f = stat_fields("self").context("/proc/self/stat")?;
    let n = |i: usize| -> Result<f64> { Ok(f.get(i).context("a stat field")?.parse::<f64>()?) };
    Ok((
        (n(11)? + n(12)?) / CLOCK_TICKS,
        (n(13)? + n(14)?) / CLOCK_TICKS,
    ))
}

/// The pid of this process's child named `comm` (the control plane's servers run under
/// `setpriv`, which execs them, so they are direct children).
fn child_process(comm: &str) -> Option<u32> {
    let me = std::process::id().to_string();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(c) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
            continue;
        };
        if c.trim() == comm && stat_fields(pid).and_then(|f| f.get(1).cloned()) == Some(me.clone())
        {
            return pid.parse().ok();
        }
    }
    None
}

/// etcd's `--listen-client-urls`, from its command line.
fn etcd_client_url(pid: u32) -> Option<String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    cmdline
        .split(|b| *b == 0)
        .filter_map(|a| std::str::from_utf8(a).ok())
        .find_map(|a| a.strip_prefix("--listen-client-urls="))
        .map(|u| u.split(',').next().unwrap_or(u).to_owned())
}

/// `etcd_mvcc_db_total_size_in_bytes` and `..._in_use_in_bytes` from etcd's `/metrics`.
fn etcd_db_size(url: &str) -> Result<(u64, u64)> {
    let host = url
        .strip_prefix("http://")
        .context("etcd's client URL is not plain http")?;
    let mut stream = TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    let metric = |name: &str| -> Result<u64> {
        let line = body
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .with_context(|| format!("{name} not in etcd's metrics"))?;
        let value: f64 = line[name.len()..].trim().parse()?;
        Ok(value as u64)
    };
    Ok((
        metric("etcd_mvcc_db_total_size_in_bytes")?,
        metric("etcd_mvcc_db_total_size_in_use_in_bytes")?,
    ))
}

/// Lines of `file` containing each needle.
fn count_lines(file: &Path, needles: &[&str]) -> Result<Vec<usize>> {
    let text = std::fs::read_to_string(file)?;
    Ok(needles
        .iter()
        .map(|n| text.lines().filter(|l| l.contains(n)).count())
        .collect())
}

/// Plants secret number `i` under `tree`: even numbers an AWS credentials file (access key id +
/// secret key), odd numbers a `.env` password; each should be one finding. Returns the file.
fn plant(tree: &Path, i: usize) -> Result<PathBuf> {
    let (file, text) = if i.is_multiple_of(2) {
        let key_id = format!(
            "AKIA{}",
            random::string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)?
        );
        let secret = random::string(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
            40,
        )?;
        (
            tree.join(format!("home/user{i:03}/.aws/credentials")),
            format!("[default]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"),
        )
    } else {
        (
            tree.join(format!("srv/app{i:03}/.env")),
            format!(
                "APP_ENV=production\nDB_PASSWORD={}\n",
                random::string(ALNUM, 24)?
            ),
        )
    };
    std::fs::create_dir_all(file.parent().context("a parent directory")?)?;
    std::fs::write(&file, text)?;
    Ok(file)
}

/// Build an ext4 image of `tree` into `image` whose scan (`snapsentry-scan image --format json`)
/// yields exactly `wanted` findings, planting or removing files until it does. Returns how many
/// files hold secrets.
fn build_image(bins: &Path, tree: &Path, image: &Path, wanted: usize) -> Result<usize> {
    if tree.exists() {
        std::fs::remove_dir_all(tree)?;
    }
    std::fs::create_dir_all(tree)?;
    let mut files = Vec::new();
    let mut next = 0;
    let mut found = 0;
    for _ in 0..10 {
        // Each planted file should be one finding; correct by the difference until it holds.
        if found < wanted {
            for _ in 0..wanted - found {
                files.push(plant(tree, next)?);
                next += 1;
            }
        } else {
            for _ in 0..(found - wanted).min(files.len()) {
                if let Some(f) = files.pop() {
                    std::fs::remove_file(f)?;
                }
            }
        }
        let size_mib = 32 + wanted / 64;
        snapsentry_tests::image::ext4(tree, image, size_mib)?;
        let out = Command::new(bins.join("snapsentry-scan"))
            .arg("image")
            .arg(image)
            .args(["--format", "json", "--no-progress"])
            .output()
            .context("snapsentry-scan image")?;
        ensure!(
            out.status.success(),
            "snapsentry-scan image: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        found = report["findings"].as_array().map_or(0, Vec::len);
        if found == wanted {
            return Ok(files.len());
        }
    }
    bail!("could not build an image with exactly {wanted} findings (last try: {found})")
}
