//! `snapsentry-scan image` and `dir`: walk, detect, report.
//!
//! The walk (a directory tree, or every volume of a disk image through `snapsentry-disk`) first
//! lists the files to scan; then `--threads` workers take files from a shared queue, read each
//! (bounded by `--max-file-size`) and run the engine over it. Results are merged and sorted, so
//! the report does not depend on scheduling.

use std::io::{IsTerminal, Read, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use snapsentry_disk::source::FileSource;
use snapsentry_disk::{FileKind, Filesystem, NodeId, WalkLimits, walk};
use snapsentry_engine::{Engine, EngineConfig, paths};

use crate::key;
use crate::report::{
    AuthorizedKeyRow, FileInfo, Format, ManifestArgs, PrivateKeyRow, Report, ReportFinding,
    Skipped, Source, Stats,
};

/// What is scanned.
pub enum Target {
    Image,
    Dir,
}

/// Arguments shared by `image` and `dir`.
#[derive(clap::Args)]
pub struct ScanArgs {
    /// Image, block device or directory.
    pub path: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write the report to FILE instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Extra rule file (YAML, same format as the built-in rules); repeatable.
    #[arg(long = "rules", value_name = "FILE")]
    pub rules: Vec<PathBuf>,
    /// Turn off a rule by id; repeatable.
    #[arg(long = "disable", value_name = "RULE_ID")]
    pub disable: Vec<String>,
    /// Also scan test, example and fixture directories (skipped by default).
    #[arg(long)]
    pub include_tests: bool,
    /// Skip files larger than this (bytes, or with a K/M/G/KiB/MiB/GiB suffix).
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size)]
    pub max_file_size: u64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Exit with this code when anything is found (default 0).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub exit_code: u8,
    /// No progress counter on standard error.
    #[arg(long)]
    pub no_progress: bool,
}

/// `64MiB`, `10M`, `4096`.
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?}: not a size"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("{other:?}: unknown size unit")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?}: too large"))
}

/// Where a file's bytes come from.
pub(crate) enum Content {
    Disk(PathBuf),
    Node { fs: usize, node: NodeId },
}

/// One file to scan.
pub(crate) struct Job {
    pub(crate) volume: Option<String>,
    pub(crate) path: String,
    pub(crate) file: FileInfo,
    content: Content,
}

/// Counters the walk and the workers update.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) files: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) errors: AtomicU64,
}

/// Scan, render in `args.format` (`manifest` names the machine of `yaml` manifests) and write
/// the report; the exit code follows `--exit-code`.
pub fn run(target: Target, args: &ScanArgs, manifest: &ManifestArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let engine = build_engine(args)?;
    let mut skipped = Skipped::default();
    let mut jobs = Vec::new();
    let mut filesystems: Vec<Arc<dyn Filesystem>> = Vec::new();
    let (source, volumes) = match target {
        Target::Dir => {
            let meta = std::fs::metadata(&args.path)
                .with_context(|| format!("{}", args.path.display()))?;
            anyhow::ensure!(meta.is_dir(), "{}: not a directory", args.path.display());
            collect_dir(&args.path, args, &mut jobs, &mut skipped)?;
            (
                Source {
                    kind: "dir",
                    path: args.path.display().to_string(),
                    format: None,
                    size_bytes: None,
                },
                Vec::new(),
            )
        }
        Target::Image => {
            let src =
                FileSource::open(&args.path).with_context(|| format!("{}", args.path.display()))?;
            let disk = snapsentry_disk::open_disk(Arc::new(src))
                .with_context(|| format!("{}", args.path.display()))?;
            let mut infos = Vec::new();
            for volume in disk.volumes {
                let mut info = volume.info;
                if let Some(fs) = volume.fs {
                    let index = filesystems.len();
                    filesystems.push(fs.clone());
                    if let Err(e) =
                        collect_volume(&*fs, index, &info.id, args, &mut jobs, &mut skipped)
                    {
                        info.scanned = false;
                        info.error = Some(format!("{e:#}"));
                    }
                }
                infos.push(info);
            }
            (
                Source {
                    kind: "image",
                    path: args.path.display().to_string(),
                    format: Some(disk.format.to_string()),
                    size_bytes: Some(disk.size),
                },
                infos,
            )
        }
    };

    let counters = Counters::default();
    let results = scan_all(&engine, &jobs, &filesystems, args, &counters);

    let mut findings = Vec::new();
    let mut private_keys = Vec::new();
    let mut authorized_keys = Vec::new();
    for (job, scan) in jobs.iter().zip(results) {
        let Some(scan) = scan else { continue };
        for f in scan.findings {
            findings.push(ReportFinding::new(
                f,
                job.volume.clone(),
                job.path.clone(),
                job.file.clone(),
            ));
        }
        for k in scan.private_keys {
            private_keys.push(PrivateKeyRow {
                volume: job.volume.clone(),
                path: job.path.clone(),
                line: k.line,
                fingerprint: k.info.fingerprint,
                algorithm: k.info.algorithm,
                encrypted: k.info.encrypted,
            });
        }
        for k in scan.authorized_keys {
            authorized_keys.push(AuthorizedKeyRow {
                volume: job.volume.clone(),
                path: job.path.clone(),
                user: paths::home_user(&job.path),
                line: k.line,
                algorithm: k.algorithm,
                fingerprint: k.fingerprint,
            });
        }
    }
    let report = Report::new(
        source,
        volumes,
        Stats {
            files: counters.files.load(Ordering::Relaxed),
            bytes_scanned: counters.bytes.load(Ordering::Relaxed),
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            errors: counters.errors.load(Ordering::Relaxed),
            skipped,
        },
        findings,
        private_keys,
        authorized_keys,
    );
    let rendered = report.render(args.format, engine.rules(), manifest)?;
    match &args.output {
        Some(path) => {
            std::fs::write(path, rendered).with_context(|| format!("{}", path.display()))?
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&rendered)?;
            out.flush()?;
        }
    }
    Ok(if report.findings.is_empty() || args.exit_code == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(args.exit_code)
    })
}

fn build_engine(args: &ScanArgs) -> anyhow::Result<Engine> {
    let mut extra = Vec::new();
    for path in &args.rules {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("--rules {}", path.display()))?;
        extra.push((path.display().to_string(), text));
    }
    let config = EngineConfig {
        extra_rules: extra,
        disabled: args.disable.clone(),
        fingerprint_key: key::fingerprint_key()?,
    };
    Ok(Engine::new(config)?)
}

/// Decide whether a regular file is scanned; count it in `skipped` if not.
fn admit(path: &str, size: u64, args: &ScanArgs, skipped: &mut Skipped) -> bool {
    if !args.include_tests && paths::is_test_path(path) {
        skipped.test_directory += 1;
        return false;
    }
    if size > args.max_file_size {
        skipped.too_large += 1;
        return false;
    }
    true
}

/// List the regular files under `root` (symlinks are not followed).
fn collect_dir(
    root: &Path,
    args: &ScanArgs,
    jobs: &mut Vec<Job>,
    skipped: &mut Skipped,
) -> anyhow::Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if dir == root => return Err(e).with_context(|| format!("{}", root.display())),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "directory not readable");
                skipped.unreadable += 1;
                continue;
            }
        };
        let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries.into_iter().rev() {
            let full = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&full) else {
                skipped.unreadable += 1;
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
            if !admit(&path, meta.len(), args, skipped) {
                continue;
            }
            jobs.push(Job {
                volume: None,
                path,
                file: FileInfo::from_std(&meta),
                content: Content::Disk(full),
            });
        }
    }
    jobs.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(())
}

/// List the regular files of one volume.
pub(crate) fn collect_volume(
    fs: &dyn Filesystem,
    index: usize,
    volume: &str,
    args: &ScanArgs,
    jobs: &mut Vec<Job>,
    skipped: &mut Skipped,
) -> anyhow::Result<()> {
    let summary = walk(fs, &WalkLimits::default(), |entry| {
        let m = &entry.metadata;
        if m.kind != FileKind::File {
            return ControlFlow::Continue(());
        }
        if m.unreadable.is_some() {
            skipped.unreadable += 1;
            return ControlFlow::Continue(());
        }
        if admit(&entry.path, m.size, args, skipped) {
            jobs.push(Job {
                volume: Some(volume.to_string()),
                file: FileInfo::from_disk(m),
                path: entry.path,
                content: Content::Node {
                    fs: index,
                    node: entry.node,
                },
            });
        }
        ControlFlow::Continue(())
    })?;
    for e in &summary.errors {
        tracing::warn!(volume, path = %e.path, error = %e.error, "walk error");
    }
    Ok(())
}

/// Read a whole file (at most `limit` bytes).
fn read_job(job: &Job, filesystems: &[Arc<dyn Filesystem>], limit: u64) -> anyhow::Result<Vec<u8>> {
    match &job.content {
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

/// Scan every job on `--threads` workers; result `i` belongs to job `i` (`None`: unreadable).
pub(crate) fn scan_all(
    engine: &Engine,
    jobs: &[Job],
    filesystems: &[Arc<dyn Filesystem>],
    args: &ScanArgs,
    counters: &Counters,
) -> Vec<Option<snapsentry_engine::FileScan>> {
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 256);
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let finished = AtomicBool::new(false);
    let show_progress = !args.no_progress && std::io::stderr().is_terminal();
    let mut results: Vec<Option<snapsentry_engine::FileScan>> = Vec::with_capacity(jobs.len());
    results.resize_with(jobs.len(), || None);
    std::thread::scope(|scope| {
        if show_progress {
            let (done, finished) = (&done, &finished);
            scope.spawn(move || {
                let total = jobs.len();
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
                        let Some(job) = jobs.get(i) else { break };
                        match read_job(job, filesystems, args.max_file_size) {
                            Ok(data) => {
                                counters.files.fetch_add(1, Ordering::Relaxed);
                                counters.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                                local.push((i, engine.scan(&job.path, &data)));
                            }
                            Err(e) => {
                                counters.errors.fetch_add(1, Ordering::Relaxed);
                                tracing::warn!(volume = job.volume.as_deref(), path = %job.path, error = %e, "file not readable");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("10k"), Ok(10 << 10));
        assert_eq!(parse_size("123"), Ok(123));
        assert!(parse_size("1x").is_err());
    }
}
