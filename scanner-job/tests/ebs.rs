//! EBS direct reads against a real (patched) moto server: an ext4 image with planted secrets is
//! uploaded as a snapshot through the EBS direct write API, then scanned through
//! [`EbsSnapshotSource`] and the Job's disk pipeline. The findings must equal those of scanning
//! the image file itself; only written blocks may be fetched; throttling and server errors are
//! retried and counted; a corrupt block or a missing snapshot is a clear error. The last test runs
//! the `snapsentry-scan job` binary with two snapshot disks against a real API server, with its
//! AWS credentials from the environment as in a pod.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use aws_sdk_ebs::config::{Credentials, Region, SharedCredentialsProvider};
use snapsentry_cloud::aws::ebs::{
    EBS_BLOCK_SIZE, EbsError, EbsOptions, EbsSnapshotSource, EbsSnapshotSpec,
};
use snapsentry_crds::{MachinePhase, ScanAssignment, ScannedMachine};
use snapsentry_disk::BlockSource;
use snapsentry_engine::{Engine, EngineConfig};
use snapsentry_scanner::job::{self, DiskScan};
use snapsentry_tests::moto::{Moto, REGION};

const AWS_ID: &str = "AKIAWB5WKH7DNSIPZZ7F";
const AWS_SECRET: &str = "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";
const GITHUB: &str = "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";
const STORAGE_KEY: &str =
    "oCCjYoKu3O0JSlnjbqoddVPsCmhLQsKcxfEsy8g1PDYl9jghDqoNRYF/NIn2YM0joVbq0tz8xBhGG3bTPKSG8w==";
const IMAGE_MIB: u64 = 64;
/// Files above this are skipped (their blocks need not be fetched).
const MAX_FILE_SIZE: u64 = 4 << 20;

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

/// Pseudo-random bytes (xorshift), so that files span many blocks without compressing to nothing.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'a' + (x % 26) as u8
        })
        .collect()
}

/// A 64 MiB ext4 image of a small tree: secrets in small files, one at the end of a 3 MiB file
/// (a read across several 512 KiB blocks), and bulk files. `variant` changes which secrets.
fn image(dir: &Path, name: &str, variant: u8) -> PathBuf {
    let tree = dir.join(format!("{name}-tree"));
    match variant {
        0 => {
            write(
                &tree,
                "/home/ubuntu/.aws/credentials",
                format!(
                    "[default]\naws_access_key_id = {AWS_ID}\naws_secret_access_key = {AWS_SECRET}\n"
                )
                .as_bytes(),
            );
            let mut big = noise(3 << 20, 7);
            big.extend_from_slice(format!("\nGITHUB_TOKEN={GITHUB}\n").as_bytes());
            write(&tree, "/var/log/app/big.log", &big);
            // Larger than the assignment's maxFileSizeBytes: listed but never read.
            write(&tree, "/var/backups/huge.bin", &noise(24 << 20, 9));
        }
        _ => {
            write(
                &tree,
                "/srv/app/appsettings.json",
                format!("{{\"Storage\": \"DefaultEndpointsProtocol=https;AccountName=prodbackups01;AccountKey={STORAGE_KEY};EndpointSuffix=core.windows.net\"}}\n").as_bytes(),
            );
        }
    }
    for i in 0..20u64 {
        write(
            &tree,
            &format!("/usr/share/doc/pkg{i}/README"),
            &noise(20_000 + i as usize * 3000, i + 100),
        );
    }
    let image = dir.join(format!("{name}.img"));
    let out = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-E", "nodiscard", "-d"])
        .arg(&tree)
        .arg(&image)
        .arg(format!("{IMAGE_MIB}M"))
        .output()
        .expect("mke2fs (e2fsprogs) is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    image
}

fn moto() -> Moto {
    Moto::start().expect("moto starts (scripts/toolchain.sh makes its venv)")
}

fn upload(moto: &Moto, image: &Path) -> String {
    let id = moto.upload_snapshot(image).expect("snapshot uploaded");
    assert!(id.starts_with("snap-"), "{id}");
    id
}

/// Options for in-process reads: moto's test credentials (this process's environment is not
/// changed), a short backoff so fault tests run quickly.
fn options() -> EbsOptions {
    EbsOptions {
        credentials: Some(SharedCredentialsProvider::new(Credentials::new(
            "testing", "testing", None, None, "tests",
        ))),
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(100),
        ..EbsOptions::default()
    }
}

fn spec(moto: &Moto, snapshot_id: &str) -> EbsSnapshotSpec {
    EbsSnapshotSpec {
        snapshot_id: snapshot_id.into(),
        region: REGION.into(),
        endpoint_url: Some(moto.endpoint()),
        ..EbsSnapshotSpec::default()
    }
}

fn engine() -> Engine {
    Engine::new(EngineConfig::with_key(b"ebs-test-key".to_vec())).expect("engine")
}

fn assignment(disks: serde_json::Value) -> ScanAssignment {
    job::parse_assignment(
        &serde_json::json!({
            "version": 1, "policy": "lab", "namespace": "lab", "machine": "lab-web-01",
            "instanceId": "i-0123456789abcdef0", "scanId": "20261122-140000", "cloud": "aws",
            "disks": disks, "maxFindings": 500,
            "rules": {"maxFileSizeBytes": MAX_FILE_SIZE},
        })
        .to_string(),
    )
    .expect("assignment")
}

fn ebs_disk(moto: &Moto, snapshot_id: &str) -> serde_json::Value {
    serde_json::json!({"id": snapshot_id, "source": {
        "kind": "ebsSnapshot", "snapshotId": snapshot_id, "region": REGION,
        "endpointUrl": moto.endpoint(),
    }})
}

fn image_disk(path: &Path) -> serde_json::Value {
    serde_json::json!({"id": "image", "source": {"kind": "image", "path": path}})
}

/// (volume, path, line, rule, fingerprint) of every finding.
fn findings(scan: &DiskScan) -> BTreeSet<(String, String, usize, String, String)> {
    scan.findings
        .iter()
        .map(|l| {
            (
                l.volume.clone(),
                l.path.clone(),
                l.finding.line,
                l.finding.rule_id.clone(),
                l.finding.fingerprint.clone(),
            )
        })
        .collect()
}

fn rules(scan: &DiskScan) -> BTreeSet<String> {
    scan.findings
        .iter()
        .map(|l| l.finding.rule_id.clone())
        .collect()
}

#[test]
fn snapshot_reads_equal_the_image_and_fetch_only_what_the_scan_needs() {
    let dir = tempfile::tempdir().unwrap();
    let path = image(dir.path(), "web", 0);
    let moto = moto();
    let snapshot = upload(&moto, &path);

    // Byte for byte: the snapshot reads as the image (zeros past its end, up to the 1 GiB volume).
    let source = EbsSnapshotSource::open(&spec(&moto, &snapshot), options()).expect("opens");
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(source.size(), 1 << 30, "VolumeSize is 1 GiB");
    let listed = source.stats().blocks_listed;
    let total = source.size() / EBS_BLOCK_SIZE;
    let nonzero = bytes
        .chunks(EBS_BLOCK_SIZE as usize)
        .filter(|c| c.iter().any(|&b| b != 0))
        .count() as u64;
    assert_eq!(listed, nonzero, "the written blocks are listed");
    let ranges = source
        .allocated_ranges()
        .expect("EBS knows its written blocks");
    let in_ranges: u64 = ranges.iter().map(|r| r.end - r.start).sum();
    assert_eq!(in_ranges, listed * EBS_BLOCK_SIZE);
    // Odd offsets and lengths, across block boundaries, and the whole image in one read.
    for (offset, len) in [
        (0u64, 1024usize),
        (EBS_BLOCK_SIZE - 100, 300),
        (3 * EBS_BLOCK_SIZE + 17, 5 * EBS_BLOCK_SIZE as usize + 3),
        (0, bytes.len()),
    ] {
        let mut buf = vec![0xAAu8; len];
        source.read_at(offset, &mut buf).expect("read");
        assert!(
            buf == bytes[offset as usize..offset as usize + len],
            "bytes at {offset}+{len} differ"
        );
    }
    let mut tail = vec![0xAAu8; 4096];
    source.read_at(source.size() - 4096, &mut tail).unwrap();
    assert!(
        tail.iter().all(|&b| b == 0),
        "unwritten blocks read as zeros"
    );
    assert!(source.read_at(source.size() - 10, &mut tail).is_err());
    let stats = source.stats();
    assert_eq!(
        stats.blocks_fetched, listed,
        "whole image read once: every listed block"
    );
    assert_eq!(stats.bytes_fetched, listed * EBS_BLOCK_SIZE);
    assert_eq!(stats.retries, 0);
    assert!(source.cached_blocks() <= EbsOptions::default().cache_blocks);
    drop(source);

    // The Job's scan of the snapshot finds what the scan of the file finds.
    let engine = engine();
    let direct = job::scan_disks(
        &assignment(serde_json::json!([image_disk(&path)])),
        &engine,
        Some(2),
        &options(),
    );
    let remote = job::scan_disks(
        &assignment(serde_json::json!([ebs_disk(&moto, &snapshot)])),
        &engine,
        Some(2),
        &options(),
    );
    assert!(direct.errors.is_empty(), "{:?}", direct.errors);
    assert!(remote.errors.is_empty(), "{:?}", remote.errors);
    let found = rules(&direct);
    for rule in ["aws-access-key", "github-token"] {
        assert!(found.contains(rule), "{rule} not in {found:?}");
    }
    assert_eq!(findings(&remote), findings(&direct));
    assert_eq!(remote.volumes, direct.volumes);
    assert!(direct.snapshot_reads.is_none());
    let reads = remote.snapshot_reads.expect("snapshot read counters");
    eprintln!("scan through EBS: {reads:?} of {total} blocks; findings {found:?}");
    assert_eq!(reads.blocks_listed, listed);
    assert!(reads.blocks_fetched > 0);
    // The 24 MiB file over the size limit (48 blocks) is not read; at most a readahead of its
    // first blocks is fetched.
    assert!(
        reads.blocks_fetched + 24 <= reads.blocks_listed && reads.blocks_listed < total,
        "fetched {} listed {} total {total}",
        reads.blocks_fetched,
        reads.blocks_listed
    );
    assert_eq!(reads.retries, 0);
}

#[test]
fn every_snapshot_disk_of_an_assignment_is_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let moto = moto();
    let web = upload(&moto, &image(dir.path(), "web", 0));
    let data = upload(&moto, &image(dir.path(), "data", 1));
    let scan = job::scan_disks(
        &assignment(serde_json::json!([
            ebs_disk(&moto, &web),
            ebs_disk(&moto, &data)
        ])),
        &engine(),
        Some(2),
        &options(),
    );
    assert!(scan.errors.is_empty(), "{:?}", scan.errors);
    let volumes: Vec<(&str, bool)> = scan
        .volumes
        .iter()
        .map(|v| (v.id.as_str(), v.scanned))
        .collect();
    assert_eq!(volumes, [("disk0/disk", true), ("disk1/disk", true)]);
    let per_volume: BTreeSet<(String, String)> = scan
        .findings
        .iter()
        .map(|l| (l.volume.clone(), l.finding.rule_id.clone()))
        .collect();
    for want in [
        ("disk0/disk", "aws-access-key"),
        ("disk0/disk", "github-token"),
        ("disk1/disk", "azure-storage"),
    ] {
        assert!(
            per_volume
                .iter()
                .any(|(v, r)| v == want.0 && r.starts_with(want.1)),
            "{want:?} not in {per_volume:?}"
        );
    }
    let reads = scan.snapshot_reads.expect("counters");
    assert!(reads.blocks_fetched > 0 && reads.blocks_fetched <= reads.blocks_listed);
}

#[test]
fn throttling_and_server_errors_are_retried_counted_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = image(dir.path(), "web", 0);
    let moto = moto();
    let snapshot = upload(&moto, &path);
    let engine = engine();
    let clean = job::scan_disks(
        &assignment(serde_json::json!([ebs_disk(&moto, &snapshot)])),
        &engine,
        Some(2),
        &options(),
    );
    assert!(clean.errors.is_empty(), "{:?}", clean.errors);

    moto.set_faults(&serde_json::json!({
        "getSnapshotBlock": {"throttleEvery": 3, "serverErrorEvery": 5},
    }))
    .unwrap();
    let faulty = job::scan_disks(
        &assignment(serde_json::json!([ebs_disk(&moto, &snapshot)])),
        &engine,
        Some(2),
        &options(),
    );
    assert!(faulty.errors.is_empty(), "{:?}", faulty.errors);
    assert_eq!(findings(&faulty), findings(&clean));
    assert!(!faulty.findings.is_empty());
    let counters = moto.fault_counters().unwrap();
    let get = &counters["getSnapshotBlock"];
    let injected = get["throttled"].as_u64().unwrap() + get["serverErrors"].as_u64().unwrap();
    assert!(get["throttled"].as_u64().unwrap() > 0, "{counters}");
    assert!(get["serverErrors"].as_u64().unwrap() > 0, "{counters}");
    let reads = faulty.snapshot_reads.expect("counters");
    eprintln!("with faults: {reads:?}, moto: {counters}");
    // Every injected fault was retried. A transport failure is retried and counted too (a pooled
    // keep-alive connection moto had closed, on a loaded machine), and moto may not have seen
    // that request at all, or counted it before the answer was lost: so the reader counts at
    // least the injected faults, and moto's calls beyond the blocks fetched and the faults it
    // injected are at most those extra retries.
    assert!(
        reads.retries >= injected,
        "every injected fault was retried: {counters}"
    );
    let calls = get["calls"].as_u64().unwrap();
    assert!(
        calls >= reads.blocks_fetched + injected,
        "every fetched block and every fault was a call: {counters}"
    );
    assert!(
        calls - reads.blocks_fetched - injected <= reads.retries - injected,
        "no call went uncounted: {counters}"
    );
}

/// A snapshot whose block 0 is stored with the checksum of other bytes, through the EBS direct
/// write API (moto keeps the checksum it is given, as a corrupted store would).
fn corrupt_snapshot(moto: &Moto) -> String {
    use aws_sdk_ebs::primitives::ByteStream;
    use aws_sdk_ebs::types::ChecksumAlgorithm;
    use base64::Engine as _;
    use sha2::Digest as _;

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let config = aws_sdk_ebs::Config::builder()
            .behavior_version(aws_sdk_ebs::config::BehaviorVersion::latest())
            .http_client(http)
            .region(Region::new(REGION))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
            .endpoint_url(moto.endpoint())
            .build();
        let client = aws_sdk_ebs::Client::from_conf(config);
        let started = client
            .start_snapshot()
            .volume_size(1)
            .send()
            .await
            .expect("StartSnapshot");
        let id = started.snapshot_id().unwrap().to_owned();
        let block = vec![7u8; EBS_BLOCK_SIZE as usize];
        let wrong = base64::engine::general_purpose::STANDARD
            .encode(sha2::Sha256::digest(vec![8u8; EBS_BLOCK_SIZE as usize]));
        client
            .put_snapshot_block()
            .snapshot_id(&id)
            .block_index(0)
            .block_data(ByteStream::from(block))
            .data_length(EBS_BLOCK_SIZE as i32)
            .checksum(wrong)
            .checksum_algorithm(ChecksumAlgorithm::ChecksumAlgorithmSha256)
            .send()
            .await
            .expect("PutSnapshotBlock");
        client
            .complete_snapshot()
            .snapshot_id(&id)
            .changed_blocks_count(1)
            .send()
            .await
            .expect("CompleteSnapshot");
        id
    })
}

#[test]
fn a_corrupt_block_or_a_missing_snapshot_is_a_clear_error() {
    let moto = moto();
    let snapshot = corrupt_snapshot(&moto);
    let opts = EbsOptions {
        max_attempts: 3,
        ..options()
    };
    let source = EbsSnapshotSource::open(&spec(&moto, &snapshot), opts.clone()).expect("opens");
    let mut buf = vec![0u8; 4096];
    let started = Instant::now();
    let e = source
        .read_at(0, &mut buf)
        .expect_err("a mismatching block is never accepted");
    let text = e.to_string();
    eprintln!("corrupt block: {text}");
    assert!(
        text.contains("checksum mismatch") && text.contains(&snapshot) && text.contains("block 0"),
        "{text}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(source.stats().retries, 2, "refetched before giving up");
    assert_eq!(source.stats().blocks_fetched, 0);
    // The next read tries again rather than serving a cached failure forever.
    assert!(source.read_at(0, &mut buf).is_err());
    assert_eq!(source.stats().retries, 4);
    // Past the corrupt block everything reads (as zeros here).
    source.read_at(EBS_BLOCK_SIZE, &mut buf).unwrap();
    drop(source);

    // In the Job: the disk is reported unreadable with the reason; nothing panics.
    let scan = job::scan_disks(
        &assignment(serde_json::json!([ebs_disk(&moto, &snapshot)])),
        &engine(),
        Some(2),
        &opts,
    );
    assert_eq!(scan.volumes.len(), 1);
    assert!(!scan.volumes[0].scanned);
    let error = scan.volumes[0].error.as_deref().unwrap_or_default();
    assert!(error.contains("checksum mismatch"), "{error}");

    // A snapshot that does not exist.
    let started = Instant::now();
    let missing = "snap-0123456789abcdef0";
    let e = match EbsSnapshotSource::open(&spec(&moto, missing), opts) {
        Ok(_) => panic!("a missing snapshot opened"),
        Err(e) => e,
    };
    assert!(started.elapsed() < Duration::from_secs(30));
    let text = e.to_string();
    eprintln!("missing snapshot: {text}");
    assert!(text.contains(missing), "{text}");
    assert!(
        matches!(e, EbsError::NotFound { .. } | EbsError::Api { .. }),
        "{e:?}"
    );
}

/// The Job binary with two snapshot disks and throttling, credentials and region from the
/// environment (as a pod gets them): both disks scanned, the retries in `lastScan`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_reads_snapshots_and_reports_retries() {
    use kube::api::{Api, PostParams};
    use snapsentry_tests::ControlPlane;

    let dir = tempfile::tempdir().unwrap();
    let web_image = image(dir.path(), "web", 0);
    let data_image = image(dir.path(), "data", 1);
    let moto = tokio::task::spawn_blocking(moto).await.unwrap();
    let web = upload(&moto, &web_image);
    let data = upload(&moto, &data_image);
    moto.set_faults(
        &serde_json::json!({"getSnapshotBlock": {"throttleEvery": 4, "serverErrorEvery": 7}}),
    )
    .unwrap();

    let cp = ControlPlane::start().await.expect("control plane");
    cp.install_crds().expect("CRDs");
    let client = cp.client().await.expect("client");
    snapsentry_tests::controlplane::create_namespace(&client, "lab")
        .await
        .expect("namespace");
    let machine: ScannedMachine = serde_json::from_value(serde_json::json!({
        "apiVersion": "snapsentry.io/v1alpha1", "kind": "ScannedMachine",
        "metadata": {"name": "lab-web-01", "namespace": "lab"},
        "spec": {"policy": "lab", "cloud": "aws", "instanceId": "i-0123456789abcdef0"},
    }))
    .unwrap();
    let machines = Api::<ScannedMachine>::namespaced(client.clone(), "lab");
    machines
        .create(&PostParams::default(), &machine)
        .await
        .expect("ScannedMachine");

    // No endpoint in the assignment: the Job finds moto through AWS_ENDPOINT_URL.
    let disk = |id: &str| serde_json::json!({"id": id, "source": {"kind": "ebsSnapshot", "snapshotId": id, "region": REGION}});
    // The second disk is read as a role assumed with an external id (moto's STS grants it).
    let assumed = |id: &str| {
        let mut d = disk(id);
        d["source"]["assumeRoleArn"] = "arn:aws:iam::123456789012:role/snapsentry-scanner".into();
        d["source"]["externalId"] = "snapsentry-test".into();
        d
    };
    let assignment = serde_json::json!({
        "version": 1, "policy": "lab", "namespace": "lab", "machine": "lab-web-01",
        "instanceId": "i-0123456789abcdef0", "scanId": "20261122-140000", "cloud": "aws",
        "disks": [disk(&web), assumed(&data)], "maxFindings": 500,
        "rules": {"maxFileSizeBytes": MAX_FILE_SIZE},
    });
    let out = Command::new(env!("CARGO_BIN_EXE_snapsentry-scan"))
        .args(["job", "--no-progress"])
        .env("KUBECONFIG", cp.kubeconfig())
        .env("SNAPSENTRY_ASSIGNMENT", assignment.to_string())
        .env("SNAPSENTRY_FINGERPRINT_KEY", "ebs-job-key")
        .env("SNAPSENTRY_LOG", "debug")
        .envs(moto.env())
        .output()
        .expect("snapsentry-scan job runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("EBS snapshot read"), "{stderr}");
    assert!(
        stderr.contains("obtained assumed credentials"),
        "the role was assumed: {stderr}"
    );
    for secret in [AWS_SECRET, GITHUB, STORAGE_KEY] {
        for w in secret.as_bytes().windows(12) {
            let w = std::str::from_utf8(w).unwrap();
            assert!(!stderr.contains(w), "the log leaks {w:?}");
        }
    }

    let status = machines
        .get("lab-web-01")
        .await
        .unwrap()
        .status
        .expect("status");
    assert_eq!(status.phase, Some(MachinePhase::Scanned));
    let last = status.last_scan.expect("lastScan");
    let volumes: Vec<(&str, bool)> = last
        .volumes
        .iter()
        .map(|v| (v.id.as_str(), v.scanned))
        .collect();
    assert_eq!(volumes, [("disk0/disk", true), ("disk1/disk", true)]);
    assert!(last.findings >= 3, "{last:?}");
    let reads = last.snapshot_reads.expect("snapshotReads in lastScan");
    let counters = moto.fault_counters().unwrap();
    let get = &counters["getSnapshotBlock"];
    assert_eq!(
        reads.retries,
        get["throttled"].as_u64().unwrap() + get["serverErrors"].as_u64().unwrap(),
        "{counters}"
    );
    assert!(reads.retries > 0, "{counters}");
    assert!(reads.blocks_fetched > 0 && reads.blocks_fetched <= reads.blocks_listed);
}
