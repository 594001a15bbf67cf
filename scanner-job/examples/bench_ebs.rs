//! EBS direct-read benchmark (driven by `scripts/bench-ebs.sh`): scan one snapshot through
//! [`EbsSnapshotSource`] and the Job's disk pipeline, then the same image as a local file, and
//! print throughput and the block counters as one JSON object on standard output.
//!
//! ```text
//! bench_ebs --snapshot snap-… --region us-east-1 [--endpoint http://127.0.0.1:PORT] --image disk.img
//! ```
//! AWS credentials come from the environment (the default chain), as in a scanner pod.

use std::time::Instant;

use snapsentry_cloud::aws::ebs::{EBS_BLOCK_SIZE, EbsOptions};
use snapsentry_engine::{Engine, EngineConfig};
use snapsentry_scanner::job;

#[path = "common/bench.rs"]
mod bench;
use bench::{arg, findings_key};

fn main() {
    bench::init_logs();
    let snapshot = arg("--snapshot").expect("--snapshot ID");
    let region = arg("--region").unwrap_or_else(|| "us-east-1".into());
    let endpoint = arg("--endpoint");
    let image = arg("--image");
    let threads = arg("--threads").and_then(|t| t.parse().ok());
    let engine =
        Engine::new(EngineConfig::with_key(b"bench-ebs".to_vec())).expect("built-in rules");

    let mut source =
        serde_json::json!({"kind": "ebsSnapshot", "snapshotId": snapshot, "region": region});
    if let Some(e) = &endpoint {
        source["endpointUrl"] = e.clone().into();
    }
    let started = Instant::now();
    let remote = job::scan_disks(
        &bench::assignment("aws", serde_json::json!({"id": snapshot, "source": source})),
        &engine,
        threads,
        &EbsOptions::default(),
    );
    let remote_secs = started.elapsed().as_secs_f64();
    let reads = remote.snapshot_reads.clone().unwrap_or_default();

    let mut out = serde_json::json!({
        "ebs": {
            "seconds": remote_secs,
            "blocksListed": reads.blocks_listed,
            "blocksFetched": reads.blocks_fetched,
            "bytesFetched": reads.bytes_fetched,
            "retries": reads.retries,
            "fetchedMBps": reads.bytes_fetched as f64 / 1e6 / remote_secs,
            "findings": remote.findings.len(),
            "errors": remote.errors,
            "blockSize": EBS_BLOCK_SIZE,
        },
    });
    if let Some(image) = image {
        let started = Instant::now();
        let local = job::scan_disks(
            &bench::assignment(
                "aws",
                serde_json::json!({"id": "image", "source": {"kind": "image", "path": image}}),
            ),
            &engine,
            threads,
            &EbsOptions::default(),
        );
        let secs = started.elapsed().as_secs_f64();
        out["image"] = serde_json::json!({
            "seconds": secs,
            "findings": local.findings.len(),
            "sameFindings": findings_key(&local) == findings_key(&remote),
        });
    }
    println!("{out}");
}
