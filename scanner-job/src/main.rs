//! `snapsentry-scan`: the scanner Job and the standalone CLI.
//!
//! It reads a disk image, a block device, a directory or (in a Job) a cloud snapshot, walks every
//! filesystem on it without mounting, runs the detection engine over each file and reports
//! findings — never the secret values themselves. The contract (flags, formats, exit codes) is
//! docs/cli.md.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use snapsentry_scanner::{cli, job, ls};

#[derive(Parser)]
#[command(
    name = "snapsentry-scan",
    version,
    about = "Find plaintext secrets on VM disks, without mounting them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Scan a disk image (raw, qcow2, VHD, VHDX, VMDK) or a block device.
    Image(cli::ScanCommand),
    /// Scan a directory tree.
    Dir(cli::ScanCommand),
    /// List the volumes and files of an image, without detection.
    Ls(ls::LsArgs),
    /// List the detection rules, or show one with its examples.
    Rules(cli::rules::RulesArgs),
    /// Scan one machine as a Kubernetes Job: read $SNAPSENTRY_ASSIGNMENT, write SecretFindings
    /// and the ScannedMachine's status.
    Job(job::JobArgs),
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let mut parsed = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // `image` and `dir` read their config file before anything else (it may ask for --quiet).
    if let (Command::Image(c) | Command::Dir(c), Some((_, sub))) =
        (&mut parsed.command, matches.subcommand())
        && let Err(e) = c.apply_config(sub)
    {
        return fail(&e);
    }
    let default_level = match &parsed.command {
        Command::Job(_) => "info",
        Command::Image(c) | Command::Dir(c) if c.scan.quiet => "error",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SNAPSENTRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // Colour only for a person at a terminal, and never under NO_COLOR (no-color.org).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let logs = tracing_subscriber::fmt()
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    // Jobs log JSON (`SNAPSENTRY_LOG_FORMAT=json`, set by the operator) for log collectors.
    if std::env::var("SNAPSENTRY_LOG_FORMAT").is_ok_and(|f| f == "json") {
        logs.json().init();
    } else {
        logs.init();
    }
    let result = match parsed.command {
        Command::Image(c) => cli::run(cli::Target::Image, &c.scan, &c.manifest),
        Command::Dir(c) => cli::run(cli::Target::Dir, &c.scan, &c.manifest),
        Command::Ls(args) => ls::run(&args),
        Command::Rules(args) => cli::rules::run(&args),
        Command::Job(args) => return job::main(&args),
    };
    result.unwrap_or_else(|e| fail(&e))
}

/// One line, the reason the input was unusable (docs/cli.md: exit 2).
fn fail(e: &anyhow::Error) -> ExitCode {
    eprintln!("snapsentry-scan: {}", cli::error_chain(e));
    ExitCode::from(2)
}
