//! Read any virtual machine disk, read-only, in userspace.
//!
//! `snapsentry-disk` turns a [`BlockSource`] — a local image file, a block device, or a cloud
//! snapshot read block by block — into the files it holds, without mounting anything and without
//! privileges. The layers stack the way the disk does:
//!
//! ```text
//! BlockSource → image format (raw, qcow2, VHD, VHDX, VMDK) → partition table (GPT, MBR, none)
//!             → LVM2 logical volumes → filesystem (ext2/3/4, XFS, NTFS, FAT, btrfs) → walk
//! ```
//!
//! A VM's disk is controlled by whoever controls the VM, so every parser here treats its input as
//! hostile: no panics, no unbounded loops, no allocation sized by an untrusted field without a cap.
//!
//! ```no_run
//! use std::sync::Arc;
//! use snapsentry_disk::source::FileSource;
//!
//! let source = Arc::new(FileSource::open("web-01.raw")?);
//! # Ok::<(), snapsentry_disk::DiskError>(())
//! ```

#![warn(missing_docs)]

pub mod archive;
pub(crate) mod bytes;
pub(crate) mod crc;
pub mod error;
pub mod fs;
#[doc(hidden)]
pub mod fuzzing;
pub mod image;
pub mod lvm;
pub mod source;
pub mod table;
pub mod volume;
pub mod walk;

pub use error::{DiskError, Result};
pub use fs::{DirEntry, FileContent, FileKind, Filesystem, Metadata, NodeId, Timestamp};
pub use source::BlockSource;
pub use volume::{Disk, Volume, VolumeInfo, open_disk, open_filesystem};
pub use walk::{WalkEntry, WalkLimits, walk};
