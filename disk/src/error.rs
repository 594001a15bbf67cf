//! The one error type of this crate.

use std::io;

/// Everything that can go wrong while reading a disk. Messages name the structure that was bad
/// and where, never file contents.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The underlying source failed (I/O error, network error of a remote source, …).
    #[error("read failed at offset {offset}: {source}")]
    Io {
        /// Byte offset of the failed read in the source.
        offset: u64,
        /// The source's own error.
        #[source]
        source: io::Error,
    },
    /// A read reached past the end of a source, image, partition or file.
    #[error("read of {len} bytes at offset {offset} is past the end ({size} bytes)")]
    OutOfBounds {
        /// Byte offset of the read.
        offset: u64,
        /// Bytes asked for.
        len: u64,
        /// Size of what was read from, in bytes.
        size: u64,
    },
    /// An on-disk structure is malformed. `what` names the format and structure.
    #[error("corrupt {what}: {detail}")]
    Corrupt {
        /// The format and structure (`ext4`, `gpt`, `ntfs boot sector`).
        what: &'static str,
        /// What was wrong with it, and where.
        detail: String,
    },
    /// A well-formed structure uses a feature this reader does not implement.
    #[error("unsupported {what}: {detail}")]
    Unsupported {
        /// The format or structure (`vmdk`, `ext4 file`).
        what: &'static str,
        /// The feature, and where it was met.
        detail: String,
    },
    /// The volume is encrypted (LUKS, BitLocker) and is not scanned.
    #[error("encrypted volume ({scheme}), not scanned")]
    Encrypted {
        /// `luks` or `bitlocker`.
        scheme: &'static str,
    },
    /// A safety limit (depth, count, size) was hit while reading hostile or absurd input.
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// The thing asked for does not exist (no such file, not a directory, …).
    #[error("not found: {0}")]
    NotFound(String),
}

impl DiskError {
    /// Shorthand for [`DiskError::Corrupt`].
    pub fn corrupt(what: &'static str, detail: impl Into<String>) -> Self {
        DiskError::Corrupt {
            what,
            detail: detail.into(),
        }
    }

    /// Shorthand for [`DiskError::Unsupported`].
    pub fn unsupported(what: &'static str, detail: impl Into<String>) -> Self {
        DiskError::Unsupported {
            what,
            detail: detail.into(),
        }
    }
}

/// `Result` with [`DiskError`].
pub type Result<T, E = DiskError> = std::result::Result<T, E>;
