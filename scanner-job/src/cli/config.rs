//! The config file of `image` and `dir`: `snapsentry.yaml` in the working directory, or the file
//! `--config` names. Its keys are the long names of the flags (`severity`, `exit-code`,
//! `ignore-file`, …) and set what those flags set; a flag given on the command line wins over the
//! file. An unknown key is an error naming the key, so a misspelt setting is never silently
//! dropped. Relative paths in the file are relative to the file's directory.
//!
//! ```yaml
//! severity: [high, critical]
//! exit-code: 1
//! exit-on: high
//! ignore-file: .snapsentryignore
//! disable: [generic-password]
//! max-file-size: 128MiB
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::ArgMatches;
use clap::parser::ValueSource;
use serde::Deserialize;
use snapsentry_engine::Severity;

use super::{ScanCommand, parse_size};
use crate::report::Format;
use crate::report::manifests::parse_object_name;

/// The file read from the working directory when `--config` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "snapsentry.yaml";

/// `snapsentry.yaml` as written; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ConfigFile {
    format: Option<String>,
    output: Option<PathBuf>,
    rules: Option<Vec<PathBuf>>,
    disable: Option<Vec<String>>,
    include_tests: Option<bool>,
    max_file_size: Option<Size>,
    archive_depth: Option<u32>,
    threads: Option<usize>,
    exit_code: Option<u8>,
    exit_on: Option<Severity>,
    severity: Option<Vec<Severity>>,
    quiet: Option<bool>,
    no_progress: Option<bool>,
    ignore_file: Option<PathBuf>,
    baseline: Option<PathBuf>,
    machine: Option<String>,
    policy: Option<String>,
}

/// `max-file-size`: a number of bytes or a size with a unit (`64MiB`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

impl ScanCommand {
    /// Fill what the command line did not set from the config file: `--config FILE`, else
    /// [`DEFAULT_CONFIG_FILE`] in the working directory when it exists (unless `--no-config`).
    /// `matches` are this subcommand's, to tell flags given from defaults.
    pub fn apply_config(&mut self, matches: &ArgMatches) -> anyhow::Result<()> {
        let path = match &self.scan.config {
            Some(path) => path.clone(),
            None if self.scan.no_config => return Ok(()),
            None => {
                let path = PathBuf::from(DEFAULT_CONFIG_FILE);
                if !path.is_file() {
                    return Ok(());
                }
                path
            }
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("config file {}", path.display()))?;
        self.apply_config_text(&text, &path, matches)
            .with_context(|| format!("config file {}", path.display()))
    }

    /// [`Self::apply_config`] with the file's text.
    fn apply_config_text(
        &mut self,
        text: &str,
        path: &Path,
        matches: &ArgMatches,
    ) -> anyhow::Result<()> {
        let config: Option<ConfigFile> = serde_yaml::from_str(text)?;
        let Some(c) = config else { return Ok(()) };
        let base = path.parent().unwrap_or(Path::new(""));
        let relative = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
        // Whether `id` (a field of ScanArgs or ManifestArgs) was given on the command line.
        let unset = |id: &str| matches.value_source(id) != Some(ValueSource::CommandLine);
        let format = c
            .format
            .map(|v| {
                <Format as clap::ValueEnum>::from_str(&v, true)
                    .map_err(|_| anyhow::anyhow!("format: {v:?} is not an output format"))
            })
            .transpose()?;
        let max_file_size = c
            .max_file_size
            .map(|v| match v {
                Size::Bytes(n) => Ok(n),
                Size::Text(t) => parse_size(&t).map_err(|e| anyhow::anyhow!("max-file-size: {e}")),
            })
            .transpose()?;
        let name =
            |key: &str, v: String| parse_object_name(&v).map_err(|e| anyhow::anyhow!("{key}: {e}"));
        let machine = c.machine.map(|v| name("machine", v)).transpose()?;
        let policy = c.policy.map(|v| name("policy", v)).transpose()?;
        let s = &mut self.scan;
        set(&mut s.format, format, unset("format"));
        set(
            &mut s.output,
            c.output.map(|p| Some(relative(p))),
            unset("output"),
        );
        let rules = c.rules.map(|v| v.into_iter().map(relative).collect());
        set(&mut s.rules, rules, unset("rules"));
        set(&mut s.disable, c.disable, unset("disable"));
        set(
            &mut s.include_tests,
            c.include_tests,
            unset("include_tests"),
        );
        set(&mut s.max_file_size, max_file_size, unset("max_file_size"));
        set(
            &mut s.archive_depth,
            c.archive_depth,
            unset("archive_depth"),
        );
        set(&mut s.threads, c.threads.map(Some), unset("threads"));
        set(&mut s.exit_code, c.exit_code, unset("exit_code"));
        set(&mut s.exit_on, c.exit_on.map(Some), unset("exit_on"));
        set(&mut s.severity, c.severity, unset("severity"));
        set(&mut s.quiet, c.quiet, unset("quiet"));
        set(&mut s.no_progress, c.no_progress, unset("no_progress"));
        let ignore_file = c.ignore_file.map(|p| Some(relative(p)));
        set(&mut s.ignore_file, ignore_file, unset("ignore_file"));
        set(
            &mut s.baseline,
            c.baseline.map(|p| Some(relative(p))),
            unset("baseline"),
        );
        set(
            &mut self.manifest.machine,
            machine.map(Some),
            unset("machine"),
        );
        set(&mut self.manifest.policy, policy, unset("policy"));
        Ok(())
    }
}

/// `*field = value` when the file has a value and the command line did not set the flag.
fn set<T>(field: &mut T, value: Option<T>, unset: bool) {
    if let Some(v) = value
        && unset
    {
        *field = v;
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches, Parser};

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        scan: ScanCommand,
    }

    /// `image ARGS…` with `config` applied.
    fn configured(args: &[&str], config: &str) -> anyhow::Result<ScanCommand> {
        let matches = Cli::command().try_get_matches_from(
            std::iter::once("snapsentry-scan")
                .chain(["disk.img"])
                .chain(args.iter().copied()),
        )?;
        let mut cmd = Cli::from_arg_matches(&matches)?.scan;
        cmd.apply_config_text(config, Path::new("/etc/scan/snapsentry.yaml"), &matches)?;
        Ok(cmd)
    }

    #[test]
    fn every_key_sets_its_flag_and_flags_win() {
        let config = "
format: json
output: out/report.json
rules: [extra.yaml, /abs/rules.yaml]
disable: [generic-password]
include-tests: true
max-file-size: 1MiB
threads: 3
exit-code: 7
exit-on: high
severity: [high, critical]
quiet: true
no-progress: true
ignore-file: ignore.yaml
baseline: /var/lib/previous.json
machine: web-01
policy: nightly
";
        let c = configured(&[], config).unwrap();
        let s = &c.scan;
        assert_eq!(s.format, Format::Json);
        assert_eq!(
            s.output.as_deref(),
            Some(Path::new("/etc/scan/out/report.json"))
        );
        assert_eq!(
            s.rules,
            [
                PathBuf::from("/etc/scan/extra.yaml"),
                PathBuf::from("/abs/rules.yaml")
            ]
        );
        assert_eq!(s.disable, ["generic-password"]);
        assert!(s.include_tests && s.quiet && s.no_progress);
        assert_eq!(s.max_file_size, 1 << 20);
        assert_eq!(s.threads, Some(3));
        assert_eq!((s.exit_code, s.exit_on), (7, Some(Severity::High)));
        assert_eq!(s.severity, [Severity::High, Severity::Critical]);
        assert_eq!(
            s.ignore_file.as_deref(),
            Some(Path::new("/etc/scan/ignore.yaml"))
        );
        assert_eq!(
            s.baseline.as_deref(),
            Some(Path::new("/var/lib/previous.json"))
        );
        assert_eq!(c.manifest.machine.as_deref(), Some("web-01"));
        assert_eq!(c.manifest.policy, "nightly");

        let c = configured(
            &[
                "--format=sarif",
                "--severity=low",
                "--exit-code=0",
                "--max-file-size=10",
                "--policy=p",
                "--disable=x",
            ],
            config,
        )
        .unwrap();
        let s = &c.scan;
        assert_eq!(s.format, Format::Sarif);
        assert_eq!(s.severity, [Severity::Low]);
        assert_eq!((s.exit_code, s.max_file_size), (0, 10));
        assert_eq!(s.disable, ["x"]);
        assert_eq!(c.manifest.policy, "p");
        // What the command line left alone still comes from the file.
        assert_eq!(s.exit_on, Some(Severity::High));
        // An empty file changes nothing.
        let c = configured(&["--format=jsonl"], "").unwrap();
        assert_eq!(c.scan.format, Format::Jsonl);
        assert_eq!(c.scan.max_file_size, crate::options::DEFAULT_MAX_FILE_SIZE);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors_naming_them() {
        let err = |config: &str| match configured(&[], config) {
            Ok(_) => panic!("{config:?} was accepted"),
            Err(e) => format!("{e:#}"),
        };
        let e = err("severity: [high]\nexit_code: 1\n");
        assert!(e.contains("unknown field `exit_code`"), "{e}");
        assert!(err("format: pdf\n").contains("format: \"pdf\""));
        assert!(err("severity: [severe]\n").contains("severe"));
        assert!(err("max-file-size: 12 parsecs\n").contains("max-file-size"));
        assert!(err("machine: Web_01\n").contains("machine"));
        assert!(err("threads: -1\n").contains("threads"));
        assert!(err("- format\n").contains("invalid type"));
    }
}
