//! Heap used to finish a scan at scale (issue #16): the operator's own code from the list pages
//! to the finding writes, with a counting allocator instead of a cluster.
//!
//! For each fleet size it lists the machines and then the findings page by page as
//! `finish_scan` does — each page of [`LIST_PAGE`] objects serialized as the API server sends
//! it, deserialized, and each object made into what the operator keeps of it right away
//! (machines without managed fields, findings as [`FindingRecord`]s) — then correlates
//! ([`Correlator::correlation`]) and reads every finding's desired state one at a time
//! ([`Correlator::updates`]) through the operator's change detection ([`changed_finding`]).
//! Findings arrive as a first scan leaves them (the scanner's labels and provisional status),
//! so every one of them is a write. It prints the heap each phase keeps and peaks at, per
//! machine and per finding.
//!
//! It is a benchmark, not a test:
//!
//! ```text
//! cargo run --release -p snapsentry-operator --example correlate_memory -- [MACHINES FINDINGS-PER-MACHINE]…
//! ```
//!
//! With no arguments it runs 1,000 × 20 and 10,000 × 20 (20,000 and 200,000 findings).
//!
//! The counting allocator needs `unsafe` (a `GlobalAlloc` impl): it only forwards to the
//! system allocator and adds up sizes.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    Condition, FieldsV1, ManagedFieldsEntry, ObjectMeta, OwnerReference, Time,
};
use snapsentry_crds::{
    AuthorizedKey, Cloud, Exposure, FindingLocation, FindingMetadata, FindingState, MachineDisk,
    MachinePhase, ScanSummary, ScannedMachine, ScannedMachineSpec, ScannedMachineStatus,
    SecretFinding, SecretFindingSpec, SecretFindingStatus, SecretTarget, Severity, SeverityCounts,
    SshKeyFacts, TargetKind, Verification, VolumeResult, contract, labels,
};
use snapsentry_operator::controller::children::changed_finding;
use snapsentry_operator::controller::scope::{LIST_PAGE, without_managed_fields};
use snapsentry_operator::correlate::{
    CorrelationInput, Correlator, FindingRecord, Records, TargetInventory,
};

/// The system allocator, counting the bytes allocated now and the most at once.
struct Counting;

static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = NOW.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` with the caller's arguments, which uphold
// `GlobalAlloc`'s contract; the counters have no effect on the memory returned.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is (see the impl).
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is (see the impl).
        unsafe { System.dealloc(ptr, layout) };
        NOW.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is (see the impl).
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            NOW.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn now_bytes() -> usize {
    NOW.load(Ordering::Relaxed)
}

/// Start a new peak from what is allocated now.
fn reset_peak() {
    PEAK.store(now_bytes(), Ordering::Relaxed);
}

fn peak_bytes() -> usize {
    PEAK.load(Ordering::Relaxed)
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

const POLICY: &str = "prod";
const NAMESPACE: &str = "security";
const SCAN: &str = "scan-20261207-120000";

fn time(secs: i64) -> Time {
    Time(Timestamp::from_second(1_796_000_000 + secs).expect("in range"))
}

/// A managed-fields entry as the API server records one: `fields` are the `f:` keys the
/// manager owns under `metadata.labels`, `spec` and `status`.
fn managed(manager: &str, labels: &[&str], spec: &[&str], status: &[&str]) -> ManagedFieldsEntry {
    let set = |keys: &[&str]| -> serde_json::Value {
        keys.iter()
            .map(|k| (format!("f:{k}"), serde_json::json!({})))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    ManagedFieldsEntry {
        api_version: Some("snapsentry.io/v1alpha1".into()),
        fields_type: Some("FieldsV1".into()),
        fields_v1: Some(FieldsV1(serde_json::json!({
            "f:metadata": { "f:labels": set(labels) },
            "f:spec": set(spec),
            "f:status": set(status),
        }))),
        manager: Some(manager.into()),
        operation: Some("Apply".into()),
        subresource: None,
        time: Some(time(0)),
    }
}

/// The public key fingerprint of SSH key `k`.
fn ssh_key(k: usize) -> String {
    format!("SHA256:{k:043}")
}

/// Every tenth machine is internet-facing.
fn exposed(i: usize) -> bool {
    i.is_multiple_of(10)
}

fn machine_name(i: usize) -> String {
    format!("{POLICY}-web-{i:05}")
}

/// A ScannedMachine after a scan, as listed: two authorized keys, one disk, a `Scanned`
/// condition, the last scan's summary, managed fields of the operator and the scanner.
fn machine(i: usize) -> ScannedMachine {
    let name = machine_name(i);
    // Machine i holds key i/2 (see `finding`) and authorizes key i/2 + 1 for `deploy`: each key
    // is held by two machines and authorized on two others, whatever the fleet's size.
    let authorized = |fingerprint: String, user: &str| AuthorizedKey {
        user: user.into(),
        fingerprint,
        path: format!("/home/{user}/.ssh/authorized_keys"),
    };
    ScannedMachine {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(NAMESPACE.into()),
            uid: Some(format!("5f0c2a8e-0000-4000-8000-{i:012}")),
            resource_version: Some(format!("{}", 100_000 + i)),
            generation: Some(1),
            creation_timestamp: Some(time(0)),
            labels: Some(BTreeMap::from([
                (labels::POLICY.into(), POLICY.into()),
                (labels::CLOUD.into(), "aws".into()),
                (labels::MANAGED_BY.into(), contract::OPERATOR.into()),
            ])),
            annotations: Some(BTreeMap::from([(
                snapsentry_crds::contract::annotations::PROVIDER_INDEX.into(),
                "0".into(),
            )])),
            owner_references: Some(vec![OwnerReference {
                api_version: "snapsentry.io/v1alpha1".into(),
                kind: "ScanPolicy".into(),
                name: POLICY.into(),
                uid: "0d6f4a1c-0000-4000-8000-000000000001".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            managed_fields: Some(vec![
                managed(
                    contract::OPERATOR,
                    &["snapsentry.io/policy", "snapsentry.io/cloud"],
                    &[
                        "policy",
                        "cloud",
                        "instanceId",
                        "region",
                        "platform",
                        "state",
                        "exposure",
                        "disks",
                    ],
                    &["phase", "conditions", "lastScan", "findings"],
                ),
                managed(contract::SCANNER, &[], &[], &["authorizedKeys", "coverage"]),
            ]),
            ..Default::default()
        },
        spec: ScannedMachineSpec {
            policy: POLICY.into(),
            cloud: Cloud::Aws,
            instance_id: format!("i-{i:017x}"),
            display_name: Some(format!("web-{i}")),
            region: Some("eu-west-1".into()),
            platform: Some("linux".into()),
            state: Some("running".into()),
            exposure: Exposure {
                internet_facing: exposed(i),
                reasons: if exposed(i) {
                    vec!["public IPv4 203.0.113.7, security group sg-0123 open to 0.0.0.0/0".into()]
                } else {
                    vec![]
                },
            },
            disks: vec![MachineDisk {
                id: format!("vol-{i:017x}"),
                device: Some("/dev/xvda".into()),
                size_bytes: Some(8 << 30),
                unsupported: None,
            }],
            cloud_authorized_keys: vec![],
        },
        status: Some(ScannedMachineStatus {
            phase: Some(MachinePhase::Scanned),
            conditions: vec![Condition {
                type_: "Scanned".into(),
                status: "True".into(),
                reason: "ScanSucceeded".into(),
                message: format!("scan {SCAN}: 1 of 1 volumes scanned, 20 findings"),
                last_transition_time: time(60),
                observed_generation: Some(1),
            }],
            progress: None,
            last_scan: Some(ScanSummary {
                scan_id: SCAN.into(),
                succeeded: true,
                started_at: Some(time(10)),
                finished_at: Some(time(60)),
                duration_ms: 50_000,
                files: 41_000,
                bytes_scanned: 1 << 30,
                volumes: vec![VolumeResult {
                    id: format!("vol-{i:017x}/p1"),
                    filesystem: Some("ext4".into()),
                    scanned: true,
                    error: None,
                    skip_reason: None,
                }],
                findings: 20,
                ..Default::default()
            }),
            authorized_keys: vec![
                authorized(ssh_key(i / 2 + 1), "deploy"),
                authorized(format!("SHA256:{:043}", 9_000_000 + i), "ubuntu"),
            ],
            findings: Some(SeverityCounts::default()),
            coverage: None,
        }),
    }
}

/// Finding `k` of machine `i` as the scanner leaves it on a first scan: its nine labels, a
/// provisional status, one location, managed fields. One in twenty is an SSH key (held by a
/// another machine, authorized on two others), one in ten names an RDS database.
fn finding(i: usize, k: usize) -> SecretFinding {
    let machine = machine_name(i);
    let (rule_id, secret_type) = match k % 4 {
        0 => ("aws-access-key", "AWS access key"),
        1 => ("dotenv-password", "Password in .env file"),
        2 => ("github-pat", "GitHub token"),
        _ => ("postgres-uri", "PostgreSQL connection string"),
    };
    let ssh = k == 0;
    let (rule_id, secret_type) = if ssh {
        ("ssh-private-key", "SSH private key")
    } else {
        (rule_id, secret_type)
    };
    let fingerprint = format!("hmac-sha256:{:064x}", i * 1_000 + k);
    let name = contract::finding_name(&machine, rule_id, &fingerprint);
    let mut metadata = FindingMetadata {
        confidence: Some("high".into()),
        ..Default::default()
    };
    if ssh {
        metadata.ssh = Some(SshKeyFacts {
            algorithm: "ssh-ed25519".into(),
            public_key_fingerprint: Some(ssh_key(i / 2)),
            encrypted: false,
        });
    }
    if k % 10 == 3 {
        metadata.target = Some(SecretTarget {
            kind: TargetKind::Rds,
            name: format!("billing-{}.cluster-abc.eu-west-1.rds.amazonaws.com", i % 50),
        });
    }
    let spec = SecretFindingSpec {
        policy: POLICY.into(),
        machine: machine.clone(),
        cloud: Cloud::Aws,
        rule_id: rule_id.into(),
        secret_type: secret_type.into(),
        rule_severity: Severity::High,
        fingerprint,
        redacted: "AKIA…(20)".into(),
        locations: vec![FindingLocation {
            volume: format!("vol-{i:017x}/p1"),
            path: format!("/srv/app-{k}/config/.env"),
            archive: None,
            line: Some(12),
            size: Some(2_048),
            mode: Some("0644".into()),
            uid: Some(1000),
            modified: Some(time(-86_400)),
            accessed: None,
        }],
        location_count: 1,
        metadata,
        scan_id: SCAN.into(),
        first_seen: time(30),
        last_seen: time(30),
        triage: None,
    };
    // The scanner's labels; the status below is not the one correlation wants (a worst case:
    // every finding is written).
    let finding_labels = snapsentry_crds::assess::scanned(
        &spec,
        None,
        exposed(i),
        spec.first_seen.0,
        &spec.first_seen,
    )
    .labels;
    SecretFinding {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(NAMESPACE.into()),
            uid: Some(format!("7a1b3c5d-0000-4000-8000-{:012}", i * 100 + k)),
            resource_version: Some(format!("{}", 200_000 + i * 100 + k)),
            generation: Some(1),
            creation_timestamp: Some(time(30)),
            labels: Some(finding_labels),
            managed_fields: Some(vec![managed(
                contract::SCANNER,
                &contract::SCANNER_FINDING_LABELS,
                &[
                    "policy",
                    "machine",
                    "cloud",
                    "ruleId",
                    "secretType",
                    "ruleSeverity",
                    "fingerprint",
                    "redacted",
                    "locations",
                    "locationCount",
                    "metadata",
                    "scanId",
                    "firstSeen",
                    "lastSeen",
                ],
                &["state", "severity", "verification", "exposed"],
            )]),
            ..Default::default()
        },
        spec,
        status: Some(SecretFindingStatus {
            state: Some(FindingState::Active),
            severity: Some(Severity::High),
            verification: Some(Verification::Unverified),
            exposed: exposed(i),
            ..Default::default()
        }),
    }
}

/// `objects` as one list page: serialized (the response body), then deserialized, as the
/// client receives it.
fn page<K: serde::Serialize + serde::de::DeserializeOwned>(objects: Vec<K>) -> Vec<K> {
    let body = serde_json::to_vec(&objects).expect("serializable");
    drop(objects);
    serde_json::from_slice(&body).expect("what was serialized")
}

fn run(machines: usize, per_machine: usize) {
    let findings_total = machines * per_machine;
    println!("== {machines} machines × {per_machine} = {findings_total} findings");
    let page_size = LIST_PAGE as usize;
    let start = now_bytes();
    reset_peak();

    // The machines, as `Scope::machines` keeps them.
    let mut listed: Vec<ScannedMachine> = Vec::new();
    let mut json_bytes = 0;
    for first in (0..machines).step_by(page_size) {
        let objects: Vec<ScannedMachine> = (first..(first + page_size).min(machines))
            .map(machine)
            .collect();
        json_bytes += serde_json::to_vec(&objects).map_or(0, |b| b.len());
        listed.extend(page(objects).into_iter().map(without_managed_fields));
    }
    listed.shrink_to_fit();
    let machines_kept = now_bytes() - start;
    // For comparison, what a machine costs kept whole (managed fields included).
    let before_whole = now_bytes();
    let whole = page(
        (0..page_size.min(machines))
            .map(machine)
            .collect::<Vec<_>>(),
    );
    let whole_bytes = (now_bytes() - before_whole) / whole.len().max(1);
    drop(whole);
    println!(
        "machines: {} kept ({} bytes a machine; {whole_bytes} kept whole; {} bytes of JSON a machine as listed)",
        mib(machines_kept),
        machines_kept / machines.max(1),
        json_bytes / machines.max(1),
    );

    // The findings, as `finish_scan` keeps them.
    let before_records = now_bytes();
    reset_peak();
    let mut records = Records::new();
    let mut kept: Vec<FindingRecord> = Vec::new();
    for first in (0..findings_total).step_by(page_size) {
        let objects: Vec<SecretFinding> = (first..(first + page_size).min(findings_total))
            .map(|n| finding(n / per_machine, n % per_machine))
            .collect();
        kept.extend(page(objects).into_iter().filter_map(|f| records.record(f)));
    }
    kept.shrink_to_fit();
    let listing_peak = peak_bytes() - before_records;
    let records_kept = now_bytes() - before_records;
    println!(
        "finding records: {} kept ({} bytes a finding; {} bytes of which the record itself); listing peaked at {}",
        mib(records_kept),
        records_kept / findings_total.max(1),
        size_of::<FindingRecord>(),
        mib(listing_peak),
    );

    // Correlation and change detection, as `finish_scan` runs them.
    let before_correlation = now_bytes();
    reset_peak();
    let targets = TargetInventory::default();
    let input = CorrelationInput {
        policy: POLICY,
        namespace: NAMESPACE,
        owner: None,
        machines: &listed,
        findings: &kept,
        targets: &targets,
        now: time(120).0,
        retention: SignedDuration::from_hours(720),
    };
    let correlator = Correlator::new(&input);
    let correlation = correlator.correlation();
    let aggregates_peak = peak_bytes() - before_correlation;
    let aggregates_kept = now_bytes() - before_correlation;
    reset_peak();
    let (mut changed, mut labels, mut status) = (0usize, 0usize, 0usize);
    for w in correlator.updates().filter_map(changed_finding) {
        changed += 1;
        labels += usize::from(w.changes.labels);
        status += usize::from(w.changes.status);
    }
    let updates_peak = peak_bytes() - before_correlation - aggregates_kept;
    let correlation_peak =
        (before_correlation + aggregates_peak).max(peak_bytes()) - before_correlation;
    println!(
        "correlation: indexes and aggregates keep {} (peak {}), reading every update peaks {} above that",
        mib(aggregates_kept),
        mib(aggregates_peak),
        mib(updates_peak),
    );
    println!(
        "correlation: {} open, {} attack paths, {} recommendations; {changed} findings to write ({labels} labels, {status} status); peaked at {} above the records ({} bytes a finding)",
        correlation.open.total,
        correlation.attack_paths.len(),
        correlation.recommendations.len(),
        mib(correlation_peak),
        correlation_peak / findings_total.max(1),
    );
    drop(correlator);
    let mut correlation = correlation;
    let paths = correlation.attack_paths.len();
    let before_paths = now_bytes();
    correlation.attack_paths = Vec::new();
    println!(
        "of which the AttackPaths: {} ({} bytes each)",
        mib(before_paths - now_bytes()),
        (before_paths - now_bytes()) / paths.max(1),
    );
    drop(correlation);
    let total_peak = peak_bytes().max(before_records + listing_peak) - start;
    println!(
        "peak heap of the whole finish: {} ({} bytes a finding, machines included)\n",
        mib(total_peak),
        total_peak / findings_total.max(1),
    );
    drop(kept);
    drop(records);
    drop(listed);
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| {
            a.parse()
                .expect("MACHINES and FINDINGS-PER-MACHINE are numbers")
        })
        .collect();
    let runs: Vec<(usize, usize)> = if args.is_empty() {
        vec![(1_000, 20), (10_000, 20)]
    } else {
        args.chunks(2)
            .map(|c| (c[0], c.get(1).copied().unwrap_or(20)))
            .collect()
    };
    for (machines, per_machine) in runs {
        run(machines, per_machine);
    }
}
