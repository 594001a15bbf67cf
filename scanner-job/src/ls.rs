//! `snapsentry-scan ls`: volumes and files of an image, no detection.

use std::process::ExitCode;

/// Arguments of `ls`.
#[derive(clap::Args)]
pub struct LsArgs {
    /// Disk image or block device.
    pub path: std::path::PathBuf,
}

pub fn run(args: &LsArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("{}: ls is not implemented yet", args.path.display())
}
