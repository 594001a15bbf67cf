//! The scan pipeline both front ends run: list the files of directories and volumes (a
//! `Listing`, filtered by [`ScanOptions`]), then read them on `threads` workers from a shared
//! queue (each bounded by `max_file_size`) and run the engine over each. Results come back in
//! listing order, so nothing downstream depends on scheduling.
//!
//! It opens no disk and writes nothing: the CLI ([`crate::cli`]) and the Job ([`crate::job`])
//! say what to list and turn the results into a report or API objects. Findings in files an OS
//! package installed and nobody changed drop to `info` ([`crate::vendor`]). A file that is an
//! archive is scanned entry by entry ([`crate::archive`]): one result per entry.

use std::io::{IsTerminal, Read};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use snapsentry_disk::{FileKind, Filesystem, Metadata, NodeId, WalkLimits, walk};
use snapsentry_engine::{Engine, paths, time};

use crate::archive::{self, ArchiveCounters, ArchiveSkipped, Part};
use crate::glob::Glob;
use crate::options::ScanOptions;
use crate::vendor::PackageDb;

/// Files not scanned, by reason.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    /// In a test, example or fixture directory (see `--include-tests`).
    pub test_directory: u64,
    /// Larger than `--max-file-size`.
    pub too_large: u64,
    /// Content unreadable by design (compressed/encrypted NTFS files, …) or unlistable directories.
    pub unreadable: u64,
    /// Archive content not read (test directories and too-large entries inside archives are
    /// counted above).
    pub archives: ArchiveSkipped,
}

/// File facts reported with a finding.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileInfo {
    /// Size in bytes.
    pub size: u64,
    /// Permission bits in octal (`0600`), where the filesystem keeps them.
    pub mode: Option<String>,
    /// Owner.
    pub uid: Option<u32>,
    /// Group.
    pub gid: Option<u32>,
    /// Last modification, RFC 3339.
    pub modified: Option<String>,
    /// Last access, RFC 3339.
    pub accessed: Option<String>,
}

impl FileInfo {
    /// Facts of a file of a filesystem read by `snapsentry-disk`.
    pub fn from_disk(m: &Metadata) -> Self {
        FileInfo {
            size: m.size,
            mode: m.mode.map(|m| format!("{:04o}", m & 0o7777)),
            uid: m.uid,
            gid: m.gid,
            modified: m.modified.map(|t| time::rfc3339(t.secs)),
            accessed: m.accessed.map(|t| time::rfc3339(t.secs)),
        }
    }

    /// Facts of a file of the local filesystem (`dir`).
    pub fn from_std(m: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        FileInfo {
            size: m.len(),
            mode: Some(format!("{:04o}", m.mode() & 0o7777)),
            uid: Some(m.uid()),
            gid: Some(m.gid()),
            modified: Some(time::rfc3339(m.mtime())),
            accessed: Some(time::rfc3339(m.atime())),
        }
    }
}

/// Where a file's bytes come from.
#[derive(Clone, Debug)]
pub(crate) enum Content {
    Disk(PathBuf),
    Node { fs: usize, node: NodeId },
}

/// One file to scan.
pub(crate) struct FileTask {
    /// Volume id; `None` for a directory.
    pub(crate) volume: Option<String>,
    /// Path inside the volume's filesystem (or below the directory), `/`-separated.
    pub(crate) path: String,
    pub(crate) file: FileInfo,
    content: Content,
    /// Index of the scanned root (directory or volume) in [`Listing`]'s package databases.
    root: usize,
    /// mtime, seconds since the epoch.
    modified: Option<i64>,
}

/// Counters the walk and the workers update.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) files: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) errors: AtomicU64,
    /// What archives held and what of it was not read.
    pub(crate) archives: ArchiveCounters,
}

impl Counters {
    /// Files inside archives scanned.
    pub(crate) fn archive_entries(&self) -> u64 {
        self.archives.entries()
    }
}

/// The files to scan, listed before any is read.
pub(crate) struct Listing<'a> {
    options: &'a ScanOptions,
    excluded: Vec<Glob>,
    /// The files admitted, in listing order.
    pub(crate) tasks: Vec<FileTask>,
    filesystems: Vec<Arc<dyn Filesystem>>,
    /// The dpkg database of each scanned root, by `FileTask::root`.
    packages: Vec<PackageDb>,
    /// Files left out, by reason (test directories, too large, unreadable).
    pub(crate) skipped: Skipped,
}

impl<'a> Listing<'a> {
    /// An empty listing that admits files as `options` say.
    pub(crate) fn new(options: &'a ScanOptions) -> Self {
        Listing {
            options,
            excluded: options.exclude_paths.iter().map(|p| Glob::new(p)).collect(),
            tasks: Vec::new(),
            filesystems: Vec::new(),
            packages: Vec::new(),
            skipped: Skipped::default(),
        }
    }

    /// Decide whether a regular file is scanned; count it in `skipped` if not (a path excluded
    /// by `exclude_paths` is not counted).
    fn admit(&mut self, path: &str, size: u64) -> bool {
        if self.excluded.iter().any(|g| g.matches(path)) {
            return false;
        }
        if !self.options.include_tests && paths::is_test_path(path) {
            self.skipped.test_directory += 1;
            return false;
        }
        if size > self.options.max_file_size {
            self.skipped.too_large += 1;
            return false;
        }
        true
    }

    /// List the regular files under `root` (symlinks are not followed), sorted by path.
    pub(crate) fn add_dir(&mut self, root: &Path) -> anyhow::Result<()> {
        let mut stack = vec![root.to_path_buf()];
        let first = self.tasks.len();
        let root_index = self.packages.len();
        let mut db = PackageDb::default();
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if dir == root => {
                    return Err(e).with_context(|| format!("{}", root.display()));
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "directory not readable");
                    self.skipped.unreadable += 1;
                    continue;
                }
            };
            let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
            entries.sort_by_key(|e| e.file_name());
            for entry in entries.into_iter().rev() {
                let full = entry.path();
                let Ok(meta) = std::fs::symlink_metadata(&full) else {
                    self.skipped.unreadable += 1;
                    continue;
                };
                if meta.is_dir() {
                    stack.push(full);
                    continue;
                }
                if !meta.is_file() {
                    continue;
                }
                let rel = full.strip_prefix(root).unwrap_or(&full);
                let path = format!("/{}", rel.to_string_lossy().replace('\\', "/"));
                let content = Content::Disk(full);
                let modified = Some(std::os::unix::fs::MetadataExt::mtime(&meta));
                db.note(&path, &content, meta.len(), modified);
                if !self.admit(&path, meta.len()) {
                    continue;
                }
                self.tasks.push(FileTask {
                    volume: None,
                    path,
                    file: FileInfo::from_std(&meta),
                    content,
                    root: root_index,
                    modified,
                });
            }
        }
        self.packages.push(db);
        self.tasks[first..].sort_by(|a, b| a.path.cmp(&b.path));
        Ok(())
    }

    /// List the regular files of one volume, whose id is `volume`.
    pub(crate) fn add_volume(
        &mut self,
        fs: Arc<dyn Filesystem>,
        volume: &str,
    ) -> anyhow::Result<()> {
        let index = self.filesystems.len();
        self.filesystems.push(fs.clone());
        let root_index = self.packages.len();
        let mut db = PackageDb::default();
        let summary = walk(&*fs, &WalkLimits::default(), |entry| {
            let m = &entry.metadata;
            if m.kind != FileKind::File {
                return ControlFlow::Continue(());
            }
            if m.unreadable.is_some() {
                self.skipped.unreadable += 1;
                return ControlFlow::Continue(());
            }
            let content = Content::Node {
                fs: index,
                node: entry.node,
            };
            let modified = m.modified.map(|t| t.secs);
            db.note(&entry.path, &content, m.size, modified);
            if self.admit(&entry.path, m.size) {
                self.tasks.push(FileTask {
                    volume: Some(volume.to_string()),
                    file: FileInfo::from_disk(m),
                    path: entry.path,
                    content,
                    root: root_index,
                    modified,
                });
            }
            ControlFlow::Continue(())
        })?;
        self.packages.push(db);
        for e in &summary.errors {
            tracing::warn!(volume, path = %e.path, error = %e.error, "walk error");
        }
        Ok(())
    }

    /// Scan every listed file; result `i` belongs to `tasks[i]` (`None`: unreadable): the file's
    /// scan, or one per file inside it when it is an archive.
    pub(crate) fn scan(&self, engine: &Engine, counters: &Counters) -> Vec<Option<Vec<Part>>> {
        scan_all(engine, self, self.options, counters)
    }

    /// Files left out, by reason: those of the listing and those inside archives, once the
    /// scan (which counts the latter into `counters`) is done.
    pub(crate) fn skipped(&self, counters: &Counters) -> Skipped {
        let a = &counters.archives;
        let mut out = self.skipped.clone();
        out.test_directory += a.test_directory.load(Ordering::Relaxed);
        out.too_large += a.too_large.load(Ordering::Relaxed);
        out.archives = a.skipped();
        out
    }
}

/// Read a whole file (at most `limit` bytes).
pub(crate) fn read_content(
    content: &Content,
    filesystems: &[Arc<dyn Filesystem>],
    limit: u64,
) -> anyhow::Result<Vec<u8>> {
    match content {
        Content::Disk(path) => {
            let mut buf = Vec::new();
            std::fs::File::open(path)?
                .take(limit)
                .read_to_end(&mut buf)?;
            Ok(buf)
        }
        Content::Node { fs, node } => {
            let mut content = filesystems[*fs].open(*node)?;
            let size = content.size().min(limit);
            let mut buf = vec![0u8; usize::try_from(size)?];
            let mut off = 0usize;
            while off < buf.len() {
                let n = content.read_at(off as u64, &mut buf[off..])?;
                if n == 0 {
                    break;
                }
                off += n;
            }
            buf.truncate(off);
            Ok(buf)
        }
    }
}

/// Scan one file's bytes: entry by entry if it is an archive, else whole. Findings of a file an
/// OS package installed unchanged (an archive too) drop to `info`.
fn scan_one(
    engine: &Engine,
    listing: &Listing,
    task: &FileTask,
    data: &[u8],
    counters: &Counters,
) -> Vec<Part> {
    let excluded = |location: &str| listing.excluded.iter().any(|g| g.matches(location));
    let mut parts = archive::scan_entries(
        engine,
        &task.path,
        data,
        listing.options,
        &excluded,
        &counters.archives,
    )
    .unwrap_or_else(|| {
        vec![Part {
            entry: None,
            scan: engine.scan(&task.path, data),
        }]
    });
    for part in parts.iter_mut().filter(|p| !p.scan.findings.is_empty()) {
        listing.packages[task.root].apply(
            &task.path,
            data,
            task.modified,
            &mut part.scan.findings,
            &listing.filesystems,
        );
    }
    parts
}

/// Scan every task of `listing` on `options.threads` workers; result `i` belongs to task `i`
/// (`None`: unreadable).
fn scan_all(
    engine: &Engine,
    listing: &Listing,
    options: &ScanOptions,
    counters: &Counters,
) -> Vec<Option<Vec<Part>>> {
    let (tasks, filesystems) = (&listing.tasks, &listing.filesystems);
    let threads = options
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 256);
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let finished = AtomicBool::new(false);
    let show_progress = options.progress && std::io::stderr().is_terminal();
    let mut results: Vec<Option<Vec<Part>>> = Vec::with_capacity(tasks.len());
    results.resize_with(tasks.len(), || None);
    std::thread::scope(|scope| {
        if show_progress {
            let (done, finished) = (&done, &finished);
            scope.spawn(move || {
                let total = tasks.len();
                while !finished.load(Ordering::Relaxed) {
                    eprint!(
                        "\rscanning: {}/{} files",
                        done.load(Ordering::Relaxed),
                        total
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
                eprint!("\r\x1b[2K");
            });
        }
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut local = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(task) = tasks.get(i) else { break };
                        match read_content(&task.content, filesystems, options.max_file_size) {
                            Ok(data) => {
                                counters.files.fetch_add(1, Ordering::Relaxed);
                                counters.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                                local.push((i, scan_one(engine, listing, task, &data, counters)));
                            }
                            Err(e) => {
                                counters.errors.fetch_add(1, Ordering::Relaxed);
                                tracing::warn!(volume = task.volume.as_deref(), path = %task.path, error = %e, "file not readable");
                            }
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    local
                })
            })
            .collect();
        for w in workers {
            // A worker panicking is a bug; propagate it rather than report partial results.
            for (i, scan) in w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)) {
                results[i] = Some(scan);
            }
        }
        finished.store(true, Ordering::Relaxed);
    });
    results
}
