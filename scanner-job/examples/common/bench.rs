//! What the disk-read benchmarks share (`bench_ebs` here, `bench_azure` in the tests crate, which
//! includes this file by path): their command line, the one-disk assignment they scan, and the
//! findings compared between a remote and a local scan.

use snapsentry_crds::ScanAssignment;
use snapsentry_scanner::job;

/// The value after `name` on the command line.
pub fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// A scanner Job's assignment of one `disk` of a machine of `cloud`.
pub fn assignment(cloud: &str, disk: serde_json::Value) -> ScanAssignment {
    job::parse_assignment(
        &serde_json::json!({
            "version": 1, "policy": "bench", "namespace": "bench", "machine": "bench",
            "instanceId": "bench", "scanId": "bench", "cloud": cloud,
            "disks": [disk], "maxFindings": 100000,
        })
        .to_string(),
    )
    .expect("assignment")
}

/// The findings of a scan as comparable (path, rule, fingerprint) triples, sorted.
pub fn findings_key(s: &job::DiskScan) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = s
        .findings
        .iter()
        .map(|l| {
            (
                l.path.clone(),
                l.finding.rule_id.clone(),
                l.finding.fingerprint.clone(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Logs to standard error at `SNAPSENTRY_LOG` (default `warn`).
pub fn init_logs() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SNAPSENTRY_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}
