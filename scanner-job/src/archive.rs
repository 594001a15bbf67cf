//! Scanning inside archives: a file whose bytes are a tar, gzip or zip archive (`.jar`, `.war`,
//! `.ear` too) is scanned entry by entry, nested archives included down to
//! [`ScanOptions::archive_depth`], under the bounds of [`snapsentry_disk::archive`]. Each entry
//! becomes one [`Part`] whose location is `<archive>!<entry>` (`/srv/backup.tar.gz!etc/app/.env`,
//! `/a.zip!lib/app.jar!application.properties`). Entries in test directories are skipped as files
//! are; what the archive reader left unread is counted in [`ArchiveCounters`], so a scan that
//! skipped content never looks complete.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use snapsentry_crds::ArchiveLocation;
use snapsentry_disk::archive::{ArchiveLimits, ArchiveStats, read_archive};
use snapsentry_engine::{Engine, FileScan, paths};

use crate::options::ScanOptions;

/// What the engine found in one file, or in one file inside an archive.
#[derive(Debug)]
pub(crate) struct Part {
    /// The path inside the archive (`etc/app/.env`; `lib/app.jar!application.properties` when
    /// nested); `None` for the file itself.
    pub(crate) entry: Option<String>,
    /// The engine's result.
    pub(crate) scan: FileScan,
}

impl Part {
    /// Where this part is, for a file at `path`: `path` itself, or `path!entry` and the archive
    /// location.
    pub(crate) fn location(&self, path: &str) -> (String, Option<ArchiveLocation>) {
        match &self.entry {
            None => (path.to_owned(), None),
            Some(entry) => (
                format!("{path}!{entry}"),
                Some(ArchiveLocation {
                    path: path.to_owned(),
                    entry: entry.clone(),
                }),
            ),
        }
    }
}

/// Archive content not read, summed over the workers (`skipped` in the report).
#[derive(Debug, Default)]
pub(crate) struct ArchiveCounters {
    /// Files inside archives scanned.
    pub(crate) entries: AtomicU64,
    /// Entries in test, example or fixture directories.
    pub(crate) test_directory: AtomicU64,
    /// Entries larger than the file size limit.
    pub(crate) too_large: AtomicU64,
    /// Archives nested deeper than the depth limit.
    pub(crate) too_deep: AtomicU64,
    /// Entries or files in a compressed format, method or encryption not read.
    pub(crate) unsupported: AtomicU64,
    /// Damaged or truncated archives (read as far as they go).
    pub(crate) corrupt: AtomicU64,
    /// Archives cut short by a limit (zip/gzip bombs, too many entries).
    pub(crate) limited: AtomicU64,
}

/// Archive counts for the report, read once the workers are done.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveSkipped {
    /// Archives nested deeper than `--archive-depth`, not opened.
    pub too_deep: u64,
    /// Files in a compressed format, compression method or encryption not read (bzip2, xz,
    /// zstd, 7z, rar; encrypted zip entries).
    pub unsupported: u64,
    /// Archives damaged or truncated, read as far as they go.
    pub corrupt: u64,
    /// Archives cut short by a decompression or entry limit (zip and gzip bombs).
    pub limited: u64,
}

impl ArchiveSkipped {
    /// Whether any archive content was left unread.
    pub fn any(&self) -> bool {
        self.too_deep + self.unsupported + self.corrupt + self.limited > 0
    }

    /// The non-zero counts in words (`1 cut short by a limit (zip/gzip bomb), 2 damaged`).
    pub fn describe(&self) -> String {
        [
            (self.limited, "cut short by a limit (zip/gzip bomb)"),
            (self.corrupt, "damaged or truncated"),
            (self.too_deep, "nested too deep"),
            (self.unsupported, "in an unsupported format or encrypted"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect::<Vec<_>>()
        .join(", ")
    }

    /// The warning for people and the scan error of a Job when archive content was not read.
    pub fn warning(&self) -> Option<String> {
        self.any()
            .then(|| format!("archive content not read: {}", self.describe()))
    }
}

impl ArchiveCounters {
    /// Add what reading one archive left out.
    fn add(&self, s: &ArchiveStats) {
        let add = |c: &AtomicU64, n: u64| {
            if n > 0 {
                c.fetch_add(n, Ordering::Relaxed);
            }
        };
        add(&self.too_large, s.too_large);
        add(&self.too_deep, s.too_deep);
        add(&self.unsupported, s.unsupported);
        add(&self.corrupt, s.corrupt);
        add(&self.limited, u64::from(s.limited));
    }

    /// Files inside archives scanned.
    pub(crate) fn entries(&self) -> u64 {
        self.entries.load(Ordering::Relaxed)
    }

    /// The counts for the report.
    pub(crate) fn skipped(&self) -> ArchiveSkipped {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ArchiveSkipped {
            too_deep: get(&self.too_deep),
            unsupported: get(&self.unsupported),
            corrupt: get(&self.corrupt),
            limited: get(&self.limited),
        }
    }
}

/// The archive limits of `options`.
fn limits(options: &ScanOptions) -> ArchiveLimits {
    ArchiveLimits {
        max_depth: options.archive_depth,
        max_entry_size: options.max_file_size,
        ..ArchiveLimits::default()
    }
}

/// Scan the entries of `data` (the file at `path`) if it is an archive and archives are
/// scanned; `None` when it is to be scanned as a file. `excluded` says whether a location
/// (`path!entry`) is excluded by the path globs (not counted, as for files).
pub(crate) fn scan_entries(
    engine: &Engine,
    path: &str,
    data: &[u8],
    options: &ScanOptions,
    excluded: &dyn Fn(&str) -> bool,
    counters: &ArchiveCounters,
) -> Option<Vec<Part>> {
    if options.archive_depth == 0 {
        return None;
    }
    let mut parts = Vec::new();
    let stats = read_archive(path, data, &limits(options), &mut |entry| {
        let joined = entry.path.join("!");
        if excluded(&format!("{path}!{joined}")) {
            return;
        }
        if !options.include_tests
            && entry
                .path
                .iter()
                .any(|p| paths::is_test_path(&format!("/{p}")))
        {
            counters.test_directory.fetch_add(1, Ordering::Relaxed);
            return;
        }
        counters.entries.fetch_add(1, Ordering::Relaxed);
        // The engine sees the entry's own path (its name selects path rules): `/etc/app/.env`.
        let inner = entry.path.last().map_or("", String::as_str);
        let scan = engine.scan(&format!("/{inner}"), entry.data);
        parts.push(Part {
            entry: Some(joined),
            scan,
        });
    })?;
    if stats.incomplete() {
        tracing::debug!(path, ?stats, "archive not read whole");
    }
    counters.add(&stats);
    Some(parts)
}
