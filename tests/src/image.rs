//! Disk images for the tests, made from file trees with the system's tools.

use std::io;
use std::path::Path;
use std::process::Command;

/// Why an image could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The tool could not be run.
    #[error("running {tool}")]
    Run {
        /// The tool.
        tool: &'static str,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// The tool failed.
    #[error("{tool} failed: {stderr}")]
    Failed {
        /// The tool.
        tool: &'static str,
        /// What it wrote to stderr.
        stderr: String,
    },
}

/// Makes the file tree `tree` into an ext4 image of `size_mib` MiB at `image` (`mke2fs -d`),
/// replacing what is there.
pub fn ext4(tree: &Path, image: &Path, size_mib: usize) -> Result<(), Error> {
    let out = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-d"])
        .arg(tree)
        .arg(image)
        .arg(format!("{size_mib}M"))
        .output()
        .map_err(|source| Error::Run {
            tool: "mke2fs",
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Failed {
            tool: "mke2fs",
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}
