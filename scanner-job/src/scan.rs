//! `snapsentry-scan image` and `dir`: walk, detect, report.

use std::process::ExitCode;

/// What is scanned.
pub enum Target {
    Image,
    Dir,
}

/// Arguments shared by `image` and `dir`.
#[derive(clap::Args)]
pub struct ScanArgs {
    /// Image, block device or directory.
    pub path: std::path::PathBuf,
}

pub fn run(target: Target, args: &ScanArgs) -> anyhow::Result<ExitCode> {
    let _ = target;
    anyhow::bail!("{}: scanning is not implemented yet", args.path.display())
}
