//! The CLI front end, `snapsentry-scan image` and `dir`: flags to [`ScanOptions`], the pipeline
//! ([`crate::scan`]) over one image or directory, a [`Report`] rendered in `--format`, and the
//! exit code. The flags, formats and exit codes are the contract in `docs/cli.md`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Context;
use snapsentry_disk::source::FileSource;
use snapsentry_engine::paths;

use crate::key;
use crate::options::ScanOptions;
use crate::report::{
    AuthorizedKeyRow, Format, ManifestArgs, PrivateKeyRow, Report, ReportFinding, Source, Stats,
};
use crate::scan::{Counters, Listing};

/// What is scanned.
pub enum Target {
    /// A disk image or block device.
    Image,
    /// A directory tree.
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

impl ScanArgs {
    /// The pipeline's options these flags ask for (reads the `--rules` files).
    pub fn options(&self) -> anyhow::Result<ScanOptions> {
        let mut extra_rules = Vec::new();
        for path in &self.rules {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--rules {}", path.display()))?;
            extra_rules.push((path.display().to_string(), text));
        }
        Ok(ScanOptions {
            extra_rules,
            disabled_rules: self.disable.clone(),
            include_tests: self.include_tests,
            max_file_size: self.max_file_size,
            threads: self.threads,
            exclude_paths: Vec::new(),
            progress: !self.no_progress,
        })
    }
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

/// Scan, render in `args.format` (`manifest` names the machine of `yaml` manifests) and write
/// the report; the exit code follows `--exit-code`.
pub fn run(target: Target, args: &ScanArgs, manifest: &ManifestArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let options = args.options()?;
    if let Target::Image = target {
        check_image_input(&args.path)?;
    }
    let mut listing = Listing::new(&options);
    let (source, volumes) = match target {
        Target::Dir => {
            let meta = std::fs::metadata(&args.path)
                .with_context(|| format!("{}", args.path.display()))?;
            anyhow::ensure!(meta.is_dir(), "{}: not a directory", args.path.display());
            listing.add_dir(&args.path)?;
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
                if let Some(fs) = volume.fs
                    && let Err(e) = listing.add_volume(fs, &info.id)
                {
                    info.scanned = false;
                    info.error = Some(format!("{e:#}"));
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

    // The key after the input: an unusable input is the error to report, not a missing key.
    let engine = options.engine(key::fingerprint_key()?)?;
    let counters = Counters::default();
    let results = listing.scan(&engine, &counters);

    let mut findings = Vec::new();
    let mut private_keys = Vec::new();
    let mut authorized_keys = Vec::new();
    for (task, scan) in listing.tasks.iter().zip(results) {
        let Some(scan) = scan else { continue };
        for f in scan.findings {
            findings.push(ReportFinding::new(
                f,
                task.volume.clone(),
                task.path.clone(),
                task.file.clone(),
            ));
        }
        for k in scan.private_keys {
            private_keys.push(PrivateKeyRow {
                volume: task.volume.clone(),
                path: task.path.clone(),
                line: k.line,
                fingerprint: k.info.fingerprint,
                algorithm: k.info.algorithm,
                encrypted: k.info.encrypted,
            });
        }
        for k in scan.authorized_keys {
            authorized_keys.push(AuthorizedKeyRow {
                volume: task.volume.clone(),
                path: task.path.clone(),
                user: paths::home_user(&task.path),
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
            skipped: listing.skipped.clone(),
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
    let coverage = &report.coverage;
    let mut err = std::io::stderr().lock();
    if matches!(args.format, Format::Jsonl | Format::Yaml) {
        // Neither stream has room for a summary its consumers would not choke on.
        writeln!(err, "{}", coverage.summary())?;
    }
    for line in coverage.warnings() {
        writeln!(err, "{line}")?;
    }
    Ok(ExitCode::from(
        coverage.exit_code(report.findings.len(), args.exit_code),
    ))
}

/// Refuse at once what `image` (and `ls`) cannot read as a disk: a directory (`dir` scans those), a FIFO,
/// a socket or a character device (reading one could block forever or never end).
pub(crate) fn check_image_input(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let shown = path.display();
    let kind = std::fs::metadata(path)
        .with_context(|| format!("{shown}"))?
        .file_type();
    if kind.is_dir() {
        anyhow::bail!("{shown}: is a directory; scan it with `snapsentry-scan dir {shown}`");
    }
    let what = if kind.is_file() || kind.is_block_device() {
        return Ok(());
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else {
        "not a regular file"
    };
    anyhow::bail!("{shown}: {what}, not a disk image or block device")
}

/// `e` and its causes, `: `-separated, each said once: a cause whose text its parent already
/// ends with (an I/O error its wrapper printed) is left out.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_said_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let text = io.to_string();
        #[derive(Debug, thiserror::Error)]
        #[error("read failed at offset 0: {0}")]
        struct Wrapper(#[source] std::io::Error);
        let e = anyhow::Error::new(Wrapper(io)).context("disk.img");
        assert_eq!(
            error_chain(&e),
            format!("disk.img: read failed at offset 0: {text}")
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("10k"), Ok(10 << 10));
        assert_eq!(parse_size("123"), Ok(123));
        assert!(parse_size("1x").is_err());
    }
}
