//! Disk images for the tests, made from file trees with the system's tools.

use std::io::{self, Seek, SeekFrom, Write};
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
    run(
        "mke2fs",
        Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-d"])
            .arg(tree)
            .arg(image)
            .arg(format!("{size_mib}M")),
    )
}

/// Makes a 48 MiB GPT disk at `image`: partition 1 the ext4 filesystem of `tree` (16 MiB),
/// partition 2 a LUKS2 volume (`cryptsetup luksFormat`, 16 MiB, a throwaway passphrase) that
/// no scanner can read without its key. Scratch files go next to `image`.
pub fn gpt_ext4_and_luks(tree: &Path, image: &Path) -> Result<(), Error> {
    const MIB: u64 = 1 << 20;
    let scratch = |name: &str| image.with_extension(name);
    let (fs, luks, key) = (scratch("p1"), scratch("p2"), scratch("key"));
    ext4(tree, &fs, 16)?;
    std::fs::write(&key, b"throwaway-passphrase").map_err(io("writing the key file"))?;
    std::fs::File::create(&luks)
        .and_then(|f| f.set_len(16 * MIB))
        .map_err(io("creating the LUKS volume"))?;
    run(
        "cryptsetup",
        Command::new("cryptsetup")
            .args([
                "luksFormat",
                "--batch-mode",
                "--type",
                "luks2",
                "--pbkdf",
                "pbkdf2",
            ])
            .args(["--pbkdf-force-iterations", "1000", "--key-file"])
            .arg(&key)
            .arg(&luks),
    )?;
    std::fs::File::create(image)
        .and_then(|f| f.set_len(48 * MIB))
        .map_err(io("creating the disk"))?;
    // Partitions at 1 MiB and 17 MiB.
    run(
        "sgdisk",
        Command::new("sgdisk")
            .args(["-n1:2048:+16M", "-n2:34816:+16M"])
            .arg(image),
    )?;
    let mut disk = std::fs::OpenOptions::new()
        .write(true)
        .open(image)
        .map_err(io("opening the disk"))?;
    for (part, offset) in [(&fs, MIB), (&luks, 17 * MIB)] {
        let data = std::fs::read(part).map_err(io("reading a partition"))?;
        disk.seek(SeekFrom::Start(offset))
            .and_then(|_| disk.write_all(&data))
            .map_err(io("writing a partition"))?;
    }
    for f in [fs, luks, key] {
        let _ = std::fs::remove_file(f);
    }
    Ok(())
}

/// An I/O failure while assembling an image, as a [`Error::Run`] of `what`.
fn io(what: &'static str) -> impl Fn(io::Error) -> Error {
    move |source| Error::Run { tool: what, source }
}

/// Run `tool` (`cmd`), failing with its standard error.
fn run(tool: &'static str, cmd: &mut Command) -> Result<(), Error> {
    let out = cmd.output().map_err(|source| Error::Run { tool, source })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Failed {
            tool,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}
