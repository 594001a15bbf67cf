//! The disks of a Job's assignment: each opened (an image file, or an EBS snapshot through the
//! EBS direct APIs), its volumes listed with ids prefixed by the disk index (`disk0/p2`), and all
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

use crate::finding::Located;
use crate::options::ScanOptions;
use crate::scan::{Counters, Listing};
use snapsentry_cloud::aws::ebs::{EbsOptions, EbsSnapshotSource, EbsSnapshotSpec, EbsStats};

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

/// Open every disk of `a`, list its volumes' files and scan them all, writing nothing: what a
/// Job does between reading its assignment and writing objects. Blocking; EBS snapshots are
/// read with `ebs`.
pub fn scan_disks(
    a: &ScanAssignment,
    engine: &Engine,
    threads: Option<usize>,
    ebs: &EbsOptions,
) -> DiskScan {
    let options = ScanOptions::for_assignment(&a.rules, threads);
    scan_disks_counted(&a.disks, engine, &options, ebs, &Counters::default())
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

/// [`scan_disks`] with `options`, counting files and bytes into `counters` as it goes (the
/// Job's progress).
pub(super) fn scan_disks_counted(
    disks: &[AssignedDisk],
    engine: &Engine,
    options: &ScanOptions,
    ebs: &EbsOptions,
    counters: &Counters,
) -> DiskScan {
    let mut out = DiskScan::default();
    let mut listing = Listing::new(options);
    let mut snapshots = Vec::new();
    for (i, disk) in disks.iter().enumerate() {
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
            if let Some(fs) = volume.fs
                && let Err(e) = listing.add_volume(fs, &id)
            {
                result.scanned = false;
                result.error = Some(format!("{e:#}"));
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
    for (task, scanned) in listing.tasks.iter().zip(results) {
        let Some(scanned) = scanned else { continue };
        let volume = task.volume.clone().unwrap_or_default();
        for f in scanned.findings {
            out.findings.push(Located {
                finding: f,
                volume: volume.clone(),
                path: task.path.clone(),
                file: task.file.clone(),
            });
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
