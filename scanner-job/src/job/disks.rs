//! The disks of a Job's assignment: each opened (an image file, an EBS snapshot through the EBS
//! direct APIs, or an Azure snapshot's page blob through the read SAS URL in the file the
//! assignment names), its volumes listed with ids prefixed by the disk index (`disk0/p2`), and all
//! of them scanned by the pipeline ([`crate::scan`]). Writes nothing.

use std::collections::BTreeSet;
use std::sync::Arc;

use snapsentry_crds::{
    AssignedDisk, AuthorizedKey, DiskSource, ScanAssignment, SnapshotReadStats, VolumeResult,
    limits,
};
use snapsentry_disk::BlockSource;
use snapsentry_disk::source::FileSource;
use snapsentry_engine::{Engine, paths};

use crate::coverage::classify;
use crate::finding::Located;
use crate::options::ScanOptions;
use crate::scan::{Counters, Listing};
use snapsentry_cloud::aws::ebs::{EbsOptions, EbsSnapshotSource, EbsSnapshotSpec, EbsStats};
use snapsentry_cloud::azure::blob::{BlobOptions, SasPageBlobSource};

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
    /// Snapshot read counters (EBS direct reads, Azure page blob reads) summed over the snapshot
    /// disks; `None` when there were none.
    pub snapshot_reads: Option<SnapshotReadStats>,
}

/// Open every disk of `a`, list its volumes' files and scan them all, writing nothing: what a
/// Job does between reading its assignment and writing objects. Blocking; EBS snapshots are
/// read with `ebs`, Azure snapshots with [`BlobOptions::default`].
pub fn scan_disks(
    a: &ScanAssignment,
    engine: &Engine,
    threads: Option<usize>,
    ebs: &EbsOptions,
) -> DiskScan {
    let options = ScanOptions::for_assignment(&a.rules, threads);
    let readers = Readers {
        ebs: ebs.clone(),
        azure: BlobOptions::default(),
    };
    scan_disks_counted(&a.disks, engine, &options, &readers, &Counters::default())
}

/// How snapshots are read, per cloud.
#[derive(Clone, Debug, Default)]
pub(super) struct Readers {
    /// EBS direct reads.
    pub ebs: EbsOptions,
    /// Azure page blob reads.
    pub azure: BlobOptions,
}

/// The snapshot sources opened so far, kept for their read counters.
#[derive(Default)]
struct Snapshots {
    ebs: Vec<Arc<EbsSnapshotSource>>,
    azure: Vec<Arc<SasPageBlobSource>>,
}

impl Snapshots {
    /// Counters summed over every snapshot, each logged; `None` when there were none. An Azure
    /// blob's ranged GETs and other requests count as blocks fetched, its written page ranges as
    /// blocks listed.
    fn stats(&self) -> Option<SnapshotReadStats> {
        if self.ebs.is_empty() && self.azure.is_empty() {
            return None;
        }
        let mut total = EbsStats::default();
        for s in &self.ebs {
            let st = s.stats();
            tracing::info!(
                snapshot = %s.snapshot_id(), blocks_listed = st.blocks_listed,
                blocks_fetched = st.blocks_fetched, bytes_fetched = st.bytes_fetched,
                retries = st.retries, checksum_mismatches = st.checksum_mismatches,
                "EBS snapshot read"
            );
            total += st;
        }
        let mut out = SnapshotReadStats {
            blocks_listed: total.blocks_listed,
            blocks_fetched: total.blocks_fetched,
            bytes_fetched: total.bytes_fetched,
            retries: total.retries,
        };
        for s in &self.azure {
            let st = s.stats();
            tracing::info!(
                blob = %s.url(), written_ranges = st.written_ranges,
                written_bytes = st.written_bytes, requests = st.requests,
                bytes_fetched = st.bytes_fetched, retries = st.retries,
                "Azure snapshot read"
            );
            out.blocks_listed += st.written_ranges;
            out.blocks_fetched += st.requests;
            out.bytes_fetched += st.bytes_fetched;
            out.retries += st.retries;
        }
        Some(out)
    }
}

/// Why an Azure snapshot's SAS file is unusable: names the file, never its content.
#[derive(Debug, thiserror::Error)]
enum SasFileError {
    #[error("Azure snapshot SAS file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Azure snapshot SAS file {path} is empty")]
    Empty { path: String },
}

/// The read SAS URL in `path`, trimmed.
fn read_sas_file(path: &str) -> Result<String, SasFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| SasFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let url = text.trim();
    if url.is_empty() {
        return Err(SasFileError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(url.to_owned())
}

/// Open one disk's block source: an image file, an EBS snapshot or an Azure snapshot (the
/// snapshots kept in `snapshots` for their counters).
fn open_source(
    source: &DiskSource,
    readers: &Readers,
    snapshots: &mut Snapshots,
) -> Result<Arc<dyn BlockSource>, String> {
    if let DiskSource::Image { path }
    | DiskSource::BlockVolume {
        device_path: path, ..
    } = source
    {
        return FileSource::open(std::path::Path::new(path))
            .map(|s| Arc::new(s) as Arc<dyn BlockSource>)
            .map_err(|e| e.to_string());
    }
    if let Some(spec) = EbsSnapshotSpec::from_disk_source(source) {
        let snapshot = Arc::new(
            EbsSnapshotSource::open(&spec, readers.ebs.clone()).map_err(|e| e.to_string())?,
        );
        snapshots.ebs.push(snapshot.clone());
        return Ok(snapshot);
    }
    if let DiskSource::AzureSnapshot { sas_file, .. } = source {
        let url = read_sas_file(sas_file).map_err(|e| e.to_string())?;
        let blob = Arc::new(
            SasPageBlobSource::open(&url, readers.azure.clone()).map_err(|e| e.to_string())?,
        );
        snapshots.azure.push(blob.clone());
        return Ok(blob);
    }
    let kind = match source {
        DiskSource::GcpSnapshot { .. } => "GCP snapshots",
        _ => "these disk sources",
    };
    Err(format!("{kind} are not supported in this build"))
}

/// [`scan_disks`] with `options`, counting files and bytes into `counters` as it goes (the
/// Job's progress).
pub(super) fn scan_disks_counted(
    disks: &[AssignedDisk],
    engine: &Engine,
    options: &ScanOptions,
    readers: &Readers,
    counters: &Counters,
) -> DiskScan {
    let mut out = DiskScan::default();
    let mut listing = Listing::new(options);
    let mut snapshots = Snapshots::default();
    for (i, disk) in disks.iter().enumerate() {
        let prefix = format!("disk{i}");
        let opened = open_source(&disk.source, readers, &mut snapshots)
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
                    skip_reason: Some(classify(None, Some(&e))),
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
                skip_reason: None,
            };
            if let Some(fs) = volume.fs
                && let Err(e) = listing.add_volume(fs, &id)
            {
                result.scanned = false;
                result.error = Some(format!("{e:#}"));
            }
            if !result.scanned {
                result.skip_reason = Some(classify(
                    result.filesystem.as_deref(),
                    result.error.as_deref(),
                ));
            }
            if let Some(e) = &result.error {
                out.errors.push(format!("{id}: {e}"));
            }
            out.volumes.push(result);
        }
    }
    tracing::info!(
        files = listing.tasks.len(),
        volumes = out.volumes.len(),
        "files listed"
    );

    let results = listing.scan(engine, counters);
    out.snapshot_reads = snapshots.stats();
    if let Some(line) = listing.skipped(counters).archives.warning() {
        tracing::warn!("{line}");
        out.errors.push(line);
    }
    let mut keys = BTreeSet::new();
    for (task, part) in listing
        .tasks
        .iter()
        .zip(results)
        .flat_map(|(task, parts)| parts.into_iter().flatten().map(move |p| (task, p)))
    {
        let volume = task.volume.clone().unwrap_or_default();
        let (path, archive) = part.location(&task.path);
        let scanned = part.scan;
        for f in scanned.findings {
            out.findings.push(Located {
                finding: f,
                volume: volume.clone(),
                path: path.clone(),
                archive: archive.clone(),
                file: task.file.clone(),
            });
        }
        // An authorized_keys file inside an archive (a backup) grants no access.
        if archive.is_some() {
            continue;
        }
        for k in scanned.authorized_keys {
            let user = paths::home_user(&task.path).unwrap_or_else(|| "unknown".into());
            keys.insert((user, k.fingerprint, task.path.clone()));
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
