//! Azure data plane against Azurite: an ext4 disk as a fixed VHD, uploaded sparse as a page blob,
//! read through `SasPageBlobSource` over a read-only SAS URL — byte for byte, fetching only the
//! written ranges; `open_disk` finds the filesystem inside; injected 503/429 answers are retried
//! and counted; an expired SAS fails without showing its signature. The scanner Job's disk scan
//! (`snapsentry_scanner::job::scan_disks`) reads an `azureSnapshot` disk through the SAS URL in
//! the file its assignment names, and finds the secrets planted on it.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, ensure};
use snapsentry_cloud::aws::ebs::EbsOptions;
use snapsentry_cloud::azure::blob::{AzureBlobError, BlobOptions, SasPageBlobSource};
use snapsentry_crds::{AssignedDisk, Cloud, DiskSource, ScanAssignment};
use snapsentry_disk::{BlockSource, WalkLimits, open_disk, walk};
use snapsentry_scanner::job::{self, DiskScan};
use snapsentry_scanner::options::ScanOptions;
use snapsentry_tests::azurite::{Azurite, FaultProxy};
use snapsentry_tests::planted::{AWS_KEY_ID, AWS_SECRET};

const CONTAINER: &str = "snapshots";
const SECRET_PATH: &str = "/etc/app/credentials.env";
const SECRET: &[u8] = b"DB_PASSWORD=correct-horse-battery-staple\n";
/// An AWS key pair planted for the scanner to find.
const AWS_PATH: &str = "/home/alice/.aws/credentials";

/// An ext4 disk holding a few files, converted to a fixed VHD (the footer in its last 512 bytes,
/// as Azure stores a managed disk).
fn fixed_vhd(dir: &Path) -> Result<PathBuf> {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("etc/app"))?;
    std::fs::write(tree.join("etc/app/credentials.env"), SECRET)?;
    std::fs::write(tree.join("etc/hostname"), b"azure-vm\n")?;
    std::fs::create_dir_all(tree.join("home/alice/.aws"))?;
    std::fs::write(
        tree.join(AWS_PATH.trim_start_matches('/')),
        format!(
            "[default]\naws_access_key_id = {AWS_KEY_ID}\naws_secret_access_key = {AWS_SECRET}\n"
        ),
    )?;
    // A larger file so the written ranges span several requests.
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i * 31 + i / 4096) as u8)
        .collect();
    std::fs::write(tree.join("etc/app/blob.bin"), big)?;
    let raw = dir.join("disk.raw");
    snapsentry_tests::image::ext4(&tree, &raw, 64)?;
    let vhd = dir.join("disk.vhd");
    let out = Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed"])
        .arg(&raw)
        .arg(&vhd)
        .output()
        .context("running qemu-img")?;
    ensure!(
        out.status.success(),
        "qemu-img convert: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(vhd)
}

/// Azurite with the VHD uploaded as the page blob `disk.vhd`: the server, the local file, and
/// the bytes the upload wrote.
fn uploaded(dir: &Path) -> Result<(Azurite, PathBuf, u64)> {
    let vhd = fixed_vhd(dir)?;
    let azurite = Azurite::start()?;
    azurite.create_container(CONTAINER)?;
    let written = azurite.upload_page_blob(CONTAINER, "disk.vhd", &vhd)?;
    Ok((azurite, vhd, written))
}

fn in_an_hour() -> SystemTime {
    SystemTime::now() + Duration::from_secs(3600)
}

/// Every byte of `source` equals the local file's, read in odd-sized pieces.
fn assert_same_bytes(source: &dyn BlockSource, local: &[u8]) -> Result<()> {
    ensure!(
        source.size() == local.len() as u64,
        "size {} vs {}",
        source.size(),
        local.len()
    );
    let mut offset = 0usize;
    let mut buf = vec![0u8; 3 * 1024 * 1024 + 4321];
    while offset < local.len() {
        let n = buf.len().min(local.len() - offset);
        source.read_at(offset as u64, &mut buf[..n])?;
        ensure!(
            buf[..n] == local[offset..offset + n],
            "bytes differ in {offset}..{}",
            offset + n
        );
        offset += n;
    }
    Ok(())
}

/// The signature of a SAS URL.
fn signature(url: &str) -> Result<String> {
    Ok(url
        .split("sig=")
        .nth(1)
        .context("the SAS URL is signed")?
        .to_owned())
}

/// An assignment of one Azure snapshot disk whose read SAS URL is in `sas_file`.
fn azure_assignment(sas_file: &Path) -> Result<ScanAssignment> {
    Ok(ScanAssignment {
        version: ScanAssignment::VERSION,
        policy: "lab-azure".into(),
        namespace: "snapsentry".into(),
        machine: "lab-azure-vm".into(),
        instance_id: "azure-vm".into(),
        scan_id: "20261206-213000".into(),
        cloud: Cloud::Azure,
        disks: vec![AssignedDisk {
            id: "osdisk".into(),
            source: DiskSource::AzureSnapshot {
                snapshot_id: "/subscriptions/0000/resourceGroups/lab/providers/Microsoft.Compute/snapshots/osdisk".into(),
                sas_file: sas_file.to_str().context("UTF-8 temp path")?.to_owned(),
            },
        }],
        rules: Default::default(),
        max_findings: 500,
    })
}

/// The scanner Job's disk scan of `a`, on two threads.
fn job_scan(a: &ScanAssignment) -> Result<DiskScan> {
    let engine =
        ScanOptions::for_assignment(&a.rules, Some(2)).engine(b"azure-test-key".to_vec())?;
    Ok(job::scan_disks(a, &engine, Some(2), &EbsOptions::default()))
}

/// `Ok` when nothing of `scan` shown (errors, `Debug`) holds any of `hidden`.
fn shows_none_of(scan: &DiskScan, hidden: &[&str]) -> Result<()> {
    let shown = format!("{:?}\n{scan:?}", scan.errors);
    for h in hidden.iter().chain(&["sig="]) {
        ensure!(!shown.contains(h), "{h:?} shown in the scan: {shown}");
    }
    Ok(())
}

#[test]
fn a_scanner_job_reads_an_azure_snapshot_through_the_sas_in_its_file() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (azurite, _vhd, _) = uploaded(dir.path())?;
    let url = azurite.read_sas_url(CONTAINER, "disk.vhd", in_an_hour());
    let sig = signature(&url)?;
    let sas_file = dir.path().join("sas-url");
    std::fs::write(&sas_file, format!("  {url}\n"))?;
    let a = azure_assignment(&sas_file)?;
    ensure!(
        !serde_json::to_string(&a)?.contains(&sig),
        "the assignment never carries the SAS"
    );

    let scan = job_scan(&a)?;
    ensure!(
        scan.errors.is_empty(),
        "{:?}\n{}",
        scan.errors,
        azurite.log_tail()
    );
    ensure!(
        scan.volumes
            .iter()
            .any(|v| v.scanned && v.filesystem.as_deref() == Some("ext4")),
        "{:?}",
        scan.volumes
    );
    let found: BTreeSet<(&str, &str)> = scan
        .findings
        .iter()
        .map(|l| (l.finding.rule_id.as_str(), l.path.as_str()))
        .collect();
    ensure!(found.contains(&("aws-access-key", AWS_PATH)), "{found:?}");
    let reads = scan.snapshot_reads.clone().context("snapshot read stats")?;
    ensure!(
        reads.blocks_listed > 0 && reads.blocks_fetched > 0 && reads.bytes_fetched > 0,
        "{reads:?}"
    );
    shows_none_of(&scan, &[&sig, AWS_KEY_ID, AWS_SECRET])?;

    // A refused (expired) SAS: the disk is reported unreadable, still without the signature.
    let expired = azurite.read_sas_url(
        CONTAINER,
        "disk.vhd",
        SystemTime::now() - Duration::from_secs(3600),
    );
    std::fs::write(&sas_file, &expired)?;
    let scan = job_scan(&a)?;
    ensure!(
        scan.errors.len() == 1 && scan.errors[0].contains("403"),
        "{:?}",
        scan.errors
    );
    ensure!(
        scan.volumes.len() == 1 && !scan.volumes[0].scanned,
        "{:?}",
        scan.volumes
    );
    shows_none_of(&scan, &[&signature(&expired)?])?;
    Ok(())
}

#[test]
fn a_missing_or_empty_sas_file_is_a_clear_error_naming_the_file() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("no-such-sas");
    let empty = dir.path().join("empty-sas");
    std::fs::write(&empty, " \n")?;
    for (file, says) in [(&missing, "No such file"), (&empty, "is empty")] {
        let scan = job_scan(&azure_assignment(file)?)?;
        let path = file.display().to_string();
        ensure!(
            scan.errors.len() == 1
                && scan.errors[0].contains(&path)
                && scan.errors[0].contains("SAS file")
                && scan.errors[0].contains(says),
            "{:?}",
            scan.errors
        );
        let volume = &scan.volumes[..];
        ensure!(
            volume.len() == 1
                && !volume[0].scanned
                && volume[0]
                    .error
                    .as_deref()
                    .is_some_and(|e| e.contains(&path)),
            "{volume:?}"
        );
        ensure!(scan.snapshot_reads.is_none(), "{:?}", scan.snapshot_reads);
    }
    Ok(())
}

#[test]
fn a_sparse_fixed_vhd_reads_back_byte_for_byte_fetching_only_written_ranges() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (azurite, vhd, written) = uploaded(dir.path())?;
    let local = std::fs::read(&vhd)?;
    let url = azurite.read_sas_url(CONTAINER, "disk.vhd", in_an_hour());
    let source = SasPageBlobSource::open(&url, BlobOptions::default())
        .with_context(|| azurite.log_tail())?;
    let allocated: u64 = source
        .allocated_ranges()
        .context("a page blob knows its written ranges")?
        .iter()
        .map(|r| r.end - r.start)
        .sum();
    assert_same_bytes(&source, &local)?;
    let stats = source.stats();
    ensure!(stats.size == local.len() as u64);
    ensure!(
        allocated == stats.written_bytes && written == stats.written_bytes,
        "{stats:?}, uploaded {written}"
    );
    ensure!(
        stats.bytes_fetched == stats.written_bytes && stats.bytes_fetched < stats.size / 2,
        "only the written ranges are fetched, once: {stats:?}"
    );
    ensure!(stats.retries == 0, "{stats:?}");
    // The footer (written) is the blob's last 512 bytes.
    let mut footer = [0u8; 512];
    source.read_at(stats.size - 512, &mut footer)?;
    ensure!(&footer[..8] == b"conectix", "a VHD footer ends the blob");
    Ok(())
}

#[test]
fn open_disk_finds_the_ext4_volume_and_its_files_inside_the_blob() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (azurite, _vhd, _) = uploaded(dir.path())?;
    let url = azurite.read_sas_url(CONTAINER, "disk.vhd", in_an_hour());
    let source = Arc::new(SasPageBlobSource::open(&url, BlobOptions::default())?);
    let disk = open_disk(source.clone())?;
    ensure!(disk.format == "vhd", "format {}", disk.format);
    let volume = disk
        .volumes
        .iter()
        .find(|v| v.info.filesystem.as_deref() == Some("ext4"))
        .context("an ext4 volume")?;
    let fs = volume.fs.as_ref().context("the ext4 volume is opened")?;
    let mut found = None;
    let mut paths = Vec::new();
    walk(fs.as_ref(), &WalkLimits::default(), |entry| {
        if entry.path == SECRET_PATH {
            found = Some(entry.node);
        }
        paths.push(entry.path);
        ControlFlow::Continue(())
    })?;
    ensure!(paths.iter().any(|p| p == "/etc/hostname"), "{paths:?}");
    let node = found.with_context(|| format!("{SECRET_PATH} in {paths:?}"))?;
    let mut content = fs.open(node)?;
    let mut buf = vec![0u8; content.size() as usize];
    let n = content.read_at(0, &mut buf)?;
    ensure!(buf[..n] == *SECRET, "the file's content reads back");
    Ok(())
}

#[test]
fn throttling_and_server_busy_answers_are_retried_and_counted() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (azurite, vhd, _) = uploaded(dir.path())?;
    let local = std::fs::read(&vhd)?;
    let proxy = FaultProxy::start(&azurite, 3)?;
    let url = azurite.read_sas_url_on(proxy.port(), CONTAINER, "disk.vhd", in_an_hour());
    let options = BlobOptions {
        // Small requests and few at a time: many ranged GETs, so several faults.
        request_bytes: 256 * 1024,
        concurrency: 4,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        ..BlobOptions::default()
    };
    let source = SasPageBlobSource::open(&url, options)?;
    assert_same_bytes(&source, &local)?;
    let stats = source.stats();
    ensure!(proxy.faults() >= 3, "faults injected: {}", proxy.faults());
    ensure!(
        stats.retries == proxy.faults(),
        "retries {} vs injected faults {} ({stats:?})",
        stats.retries,
        proxy.faults()
    );
    ensure!(stats.bytes_fetched == stats.written_bytes, "{stats:?}");
    Ok(())
}

#[test]
fn an_expired_sas_fails_clearly_without_showing_its_signature() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (azurite, _vhd, _) = uploaded(dir.path())?;
    let url = azurite.read_sas_url(
        CONTAINER,
        "disk.vhd",
        SystemTime::now() - Duration::from_secs(3600),
    );
    let signature = signature(&url)?;
    let Err(error) = SasPageBlobSource::open(&url, BlobOptions::default()) else {
        anyhow::bail!("an expired SAS opened the blob");
    };
    ensure!(
        matches!(error, AzureBlobError::Rejected { status: 403, .. }),
        "{error:?}"
    );
    for shown in [error.to_string(), format!("{error:?}")] {
        ensure!(
            !shown.contains(&signature) && !shown.contains("sig="),
            "{shown}"
        );
        ensure!(shown.contains("403"), "{shown}");
    }
    ensure!(error.to_string().contains("SAS was refused"), "{error}");
    Ok(())
}
