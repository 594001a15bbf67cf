//! Azure SAS-read benchmark (driven by `scripts/bench-azure.sh`): a disk image uploaded to Azurite
//! as a sparse page blob (only its non-zero 4 MiB chunks written, as a managed disk snapshot holds
//! only written ranges), scanned through its read SAS URL by the scanner Job's disk pipeline
//! (`SasPageBlobSource`: Get Page Ranges, then ranged GETs of the written ranges only), then the
//! same image as a local file; prints throughput and bytes read against bytes written in the blob
//! as one JSON object on standard output.
//!
//! ```text
//! bench_azure --image disk.vhd [--fault-every N]
//! ```
//! With `--fault-every N`, reads go through the tests' fault proxy, which answers every Nth
//! ranged GET with 503 or 429: the scan must complete with the same findings, retries counted.

use std::time::{Duration, Instant, SystemTime};

use snapsentry_engine::{Engine, EngineConfig};
use snapsentry_scanner::job;
use snapsentry_tests::azurite::{Azurite, FaultProxy};

#[path = "../../scanner-job/examples/common/bench.rs"]
mod bench;
use bench::{arg, findings_key};

fn main() {
    bench::init_logs();
    let image = arg("--image").expect("--image PATH");
    let fault_every = arg("--fault-every").and_then(|n| n.parse::<u64>().ok());
    let engine =
        Engine::new(EngineConfig::with_key(b"bench-azure".to_vec())).expect("built-in rules");

    // Room in Azurite's memory for the whole image (what is written of it, at most) and more.
    let image_mib = std::fs::metadata(&image).expect("the image").len() >> 20;
    let azurite = Azurite::start_with_memory(image_mib + 1024)
        .expect("Azurite (scripts/toolchain.sh installs it)");
    azurite.create_container("snapshots").expect("container");
    let started = Instant::now();
    let written = azurite
        .upload_page_blob("snapshots", "disk.vhd", image.as_ref())
        .expect("upload");
    let upload_secs = started.elapsed().as_secs_f64();
    let proxy = fault_every.map(|n| FaultProxy::start(&azurite, n).expect("fault proxy"));
    let port = proxy.as_ref().map_or(azurite.port(), FaultProxy::port);
    let expiry = SystemTime::now() + Duration::from_secs(3600);
    let sas = azurite.read_sas_url_on(port, "snapshots", "disk.vhd", expiry);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sas_file = dir.path().join("disk0");
    std::fs::write(&sas_file, sas).expect("writing the SAS file");

    let started = Instant::now();
    let remote = job::scan_disks(
        &bench::assignment(
            "azure",
            serde_json::json!({"id": "disk.vhd", "source": {
                "kind": "azureSnapshot",
                "snapshotId": "/subscriptions/bench/resourceGroups/bench/providers/Microsoft.Compute/snapshots/bench",
                "sasFile": sas_file,
            }}),
        ),
        &engine,
        None,
        &Default::default(),
    );
    let remote_secs = started.elapsed().as_secs_f64();
    let reads = remote.snapshot_reads.clone().unwrap_or_default();

    let started = Instant::now();
    let local = job::scan_disks(
        &bench::assignment(
            "azure",
            serde_json::json!({"id": "image", "source": {"kind": "image", "path": image}}),
        ),
        &engine,
        None,
        &Default::default(),
    );
    let local_secs = started.elapsed().as_secs_f64();
    let out = serde_json::json!({
        "blob": {
            "bytesWritten": written,
            "uploadSeconds": upload_secs,
        },
        "sas": {
            "seconds": remote_secs,
            "rangesListed": reads.blocks_listed,
            "requests": reads.blocks_fetched,
            "bytesFetched": reads.bytes_fetched,
            "retries": reads.retries,
            "fetchedMBps": reads.bytes_fetched as f64 / 1e6 / remote_secs,
            "findings": remote.findings.len(),
            "errors": remote.errors,
            "faultsInjected": proxy.as_ref().map(FaultProxy::faults),
        },
        "image": {
            "seconds": local_secs,
            "findings": local.findings.len(),
            "sameFindings": findings_key(&local) == findings_key(&remote),
        },
    });
    println!("{out}");
}
