//! The CLI front end, `snapsentry-scan image` and `dir`: flags (and the [`config`] file) to
//! [`ScanOptions`], the pipeline ([`crate::scan`]) over one image or directory, the findings
//! through triage ([`crate::triage`]: ignore file, baseline, `--severity`), a [`Report`] rendered
//! in `--format`, and the exit code; and `rules` ([`rules`]), the rules it runs. The flags,
//! formats and exit codes are the contract in `docs/cli.md`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Context;
use snapsentry_disk::source::FileSource;
use snapsentry_engine::{Severity, paths};

use crate::key;
use crate::options::ScanOptions;
use crate::report::{
    AuthorizedKeyRow, Format, ManifestArgs, PrivateKeyRow, Report, ReportFinding, Source, Stats,
};
use crate::scan::{Counters, Listing};
use crate::triage::ignore::DEFAULT_IGNORE_FILE;
use crate::triage::{Baseline, IgnoreFile, Triage, parse_severity};

pub mod config;
pub mod rules;

/// What is scanned.
pub enum Target {
    /// A disk image or block device.
    Image,
    /// A directory tree.
    Dir,
}

/// `image` and `dir`: what to scan and how, and whose findings `--format yaml` writes.
#[derive(clap::Args)]
pub struct ScanCommand {
    #[command(flatten)]
    pub scan: ScanArgs,
    #[command(flatten)]
    pub manifest: ManifestArgs,
}

/// Arguments shared by `image` and `dir`. Every flag but `--config` and `--no-config` can also be
/// set in the config file ([`config`]).
#[derive(clap::Args)]
pub struct ScanArgs {
    /// Image, block device or directory.
    pub path: PathBuf,
    /// Read settings from this YAML file (keys: the long flag names, e.g. `exit-code`); flags
    /// override it. Default: ./snapsentry.yaml when it exists.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Do not read ./snapsentry.yaml.
    #[arg(long, conflicts_with = "config")]
    pub no_config: bool,
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
    /// Levels of archives (tar, tar.gz/tgz, gz, zip, jar/war/ear) opened to scan the files inside;
    /// 0 scans archives as plain files.
    #[arg(long, value_name = "N", default_value_t = crate::options::DEFAULT_ARCHIVE_DEPTH, value_parser = clap::value_parser!(u32).range(0..=8))]
    pub archive_depth: u32,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Report only findings of these severities (comma-separated: info, low, medium, high,
    /// critical).
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = parse_severity)]
    pub severity: Vec<Severity>,
    /// Ignore the findings this YAML file lists (by fingerprint, rule or path glob, each with a
    /// reason and an optional expiry). Default: ./.snapsentryignore when it exists.
    #[arg(long, value_name = "FILE")]
    pub ignore_file: Option<PathBuf>,
    /// Report only findings whose fingerprint is not in FILE, an earlier `--format json` report.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Exit with this code when a finding is reported (see --exit-on).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub exit_code: u8,
    /// Only reported findings of this severity or above make --exit-code apply (info, low,
    /// medium, high, critical; default: any).
    #[arg(long, value_name = "SEVERITY", value_parser = parse_severity)]
    pub exit_on: Option<Severity>,
    /// Print only what matters: no progress counter, no logs below errors, and a `table` of
    /// just the findings (nothing when there are none). Warnings that change what the result
    /// means (coverage, expired ignore entries) are still printed.
    #[arg(short, long)]
    pub quiet: bool,
    /// No progress counter on standard error.
    #[arg(long)]
    pub no_progress: bool,
}

impl ScanArgs {
    /// The pipeline's options these flags ask for (reads the `--rules` files).
    pub fn options(&self) -> anyhow::Result<ScanOptions> {
        Ok(ScanOptions {
            extra_rules: read_rule_files(&self.rules)?,
            disabled_rules: self.disable.clone(),
            include_tests: self.include_tests,
            max_file_size: self.max_file_size,
            threads: self.threads,
            exclude_paths: Vec::new(),
            progress: !self.no_progress && !self.quiet,
            archive_depth: self.archive_depth,
        })
    }

    /// The triage these flags ask for: reads the ignore file (`--ignore-file`, else
    /// [`DEFAULT_IGNORE_FILE`] in the working directory when it exists) and the baseline.
    pub fn triage(&self) -> anyhow::Result<Triage> {
        let today = jiff::Timestamp::now()
            .to_zoned(jiff::tz::TimeZone::UTC)
            .date();
        let ignore_file = self.ignore_file.clone().or_else(|| {
            let default = PathBuf::from(DEFAULT_IGNORE_FILE);
            default.is_file().then_some(default)
        });
        Ok(Triage {
            ignore: ignore_file
                .map(|path| IgnoreFile::load(&path, today))
                .transpose()?,
            baseline: self.baseline.as_deref().map(Baseline::load).transpose()?,
            severities: self.severity.clone(),
        })
    }
}

/// The `--rules` files, as `(name, YAML text)`.
pub(crate) fn read_rule_files(paths: &[PathBuf]) -> anyhow::Result<Vec<(String, String)>> {
    paths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--rules {}", path.display()))?;
            Ok((path.display().to_string(), text))
        })
        .collect()
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

/// Scan, triage, render in `args.format` (`manifest` names the machine of `yaml` manifests) and
/// write the report; the exit code follows the coverage, `--exit-code` and `--exit-on`.
pub fn run(target: Target, args: &ScanArgs, manifest: &ManifestArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let options = args.options()?;
    if let Target::Image = target {
        check_image_input(&args.path)?;
    }
    // Read before the scan: a bad ignore file or baseline fails at once.
    let triage = args.triage()?;
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
    for (task, part) in listing
        .tasks
        .iter()
        .zip(results)
        .flat_map(|(task, parts)| parts.into_iter().flatten().map(move |p| (task, p)))
    {
        let (path, archive) = part.location(&task.path);
        let scan = part.scan;
        for f in scan.findings {
            let mut finding =
                ReportFinding::new(f, task.volume.clone(), path.clone(), task.file.clone());
            finding.archive = archive.clone();
            findings.push(finding);
        }
        for k in scan.private_keys {
            private_keys.push(PrivateKeyRow {
                volume: task.volume.clone(),
                path: path.clone(),
                line: k.line,
                fingerprint: k.info.fingerprint,
                algorithm: k.info.algorithm,
                encrypted: k.info.encrypted,
            });
        }
        // An authorized_keys file inside an archive (a backup) grants no access.
        if archive.is_some() {
            continue;
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
    let (findings, suppressed) = triage.apply(findings);
    let mut report = Report::new(
        source,
        volumes,
        Stats {
            files: counters.files.load(Ordering::Relaxed),
            bytes_scanned: counters.bytes.load(Ordering::Relaxed),
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            errors: counters.errors.load(Ordering::Relaxed),
            archive_entries: counters.archive_entries(),
            skipped: listing.skipped(&counters),
        },
        findings,
        private_keys,
        authorized_keys,
    );
    report.suppressed = suppressed;
    let rendered = if args.quiet && args.format == Format::Table {
        report.findings_table()?
    } else {
        report.render(args.format, engine.rules(), manifest)?
    };
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
    if matches!(args.format, Format::Jsonl | Format::Yaml) && !args.quiet {
        // Neither stream has room for a summary its consumers would not choke on.
        writeln!(err, "{}", coverage.summary())?;
        if suppressed.any() {
            writeln!(err, "not reported: {}", suppressed.describe())?;
        }
    }
    if let Some(ignore) = &triage.ignore {
        let is_rule = |id: &str| engine.rules().iter().any(|r| r.id() == id);
        for line in ignore
            .warnings()
            .iter()
            .chain(&ignore.unknown_rules(is_rule))
        {
            writeln!(err, "{line}")?;
        }
    }
    for line in coverage.warnings() {
        writeln!(err, "{line}")?;
    }
    if let Some(line) = report.stats.skipped.archives.warning() {
        writeln!(err, "warning: {line}")?;
    }
    let exit_on = args.exit_on.unwrap_or(Severity::Info);
    let counted = report
        .findings
        .iter()
        .filter(|f| f.severity >= exit_on)
        .count();
    Ok(ExitCode::from(coverage.exit_code(counted, args.exit_code)))
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
