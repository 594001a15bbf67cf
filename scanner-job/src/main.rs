//! `snapsentry-scan`: the scanner Job and the standalone CLI.
//!
//! It reads a disk image, a block device, a directory or (in a Job) a cloud snapshot, walks every
//! filesystem on it without mounting, runs the detection engine over each file and reports
//! findings — never the secret values themselves. See DESIGN.md "CLI" for the contract.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod key;
mod ls;
mod report;
mod scan;

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
    Image(scan::ScanArgs),
    /// Scan a directory tree.
    Dir(scan::ScanArgs),
    /// List the volumes and files of an image, without detection.
    Ls(ls::LsArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SNAPSENTRY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Image(args) => scan::run(scan::Target::Image, &args),
        Command::Dir(args) => scan::run(scan::Target::Dir, &args),
        Command::Ls(args) => ls::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // One line, the reason the input was unusable (DESIGN.md: exit 2).
            eprintln!("snapsentry-scan: {e:#}");
            ExitCode::from(2)
        }
    }
}
