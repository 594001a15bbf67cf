//! From a block source to scannable volumes: image format → partition table → LVM → filesystem.
//!
//! [`open_disk`] never fails because of one bad volume: each volume carries its own error and the
//! others are still returned. It fails only when the disk as a whole is unusable (an image format
//! it cannot read, a source that cannot be read at all).

use std::sync::Arc;

use serde::Serialize;

use crate::fs::Filesystem;
use crate::source::BlockSource;
use crate::{DiskError, Result};

/// A disk opened down to its volumes.
pub struct Disk {
    /// Container format detected from content: `raw`, `qcow2`, `vhd`, `vhdx`, `vmdk`.
    pub format: &'static str,
    /// Virtual size of the disk (what the VM sees), in bytes.
    pub size: u64,
    /// Partition scheme: `gpt`, `mbr` or `none`.
    pub scheme: &'static str,
    pub volumes: Vec<Volume>,
}

/// One volume: a partition, a logical volume or a whole-disk filesystem.
pub struct Volume {
    pub info: VolumeInfo,
    /// The opened filesystem, when `info.scanned` is true.
    pub fs: Option<Arc<dyn Filesystem>>,
}

/// What the CLI and the Job report about a volume (DESIGN.md "CLI" JSON contract).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeInfo {
    /// Stable id inside the disk: `p2` (partition 2), `disk` (no partition table),
    /// `p3/rootvg/rootlv` (logical volume `rootlv` of volume group `rootvg` on partition 3).
    pub id: String,
    /// 1-based partition number, `None` for a whole-disk filesystem.
    pub partition: Option<u32>,
    pub scheme: &'static str,
    pub lvm: Option<LvmInfo>,
    /// Filesystem kind (`ext4`, `xfs`, `ntfs`, `vfat`, `btrfs`), `luks`/`bitlocker` for encrypted
    /// volumes, `lvm2` for a physical volume, or `None` when unrecognised.
    pub filesystem: Option<String>,
    pub label: Option<String>,
    /// Byte offset of the volume inside the disk and its size.
    #[serde(skip)]
    pub offset: u64,
    pub size_bytes: u64,
    pub scanned: bool,
    /// Why the volume was not scanned, in one line.
    pub error: Option<String>,
}

/// Logical volume identity.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LvmInfo {
    pub vg: String,
    pub lv: String,
}

/// Bytes at the start of a volume that filesystem detection looks at (btrfs keeps its superblock
/// at 64 KiB).
pub const DETECT_LEN: usize = 128 * 1024;

/// Open a disk: detect the image format, read the partition table, expand LVM, open filesystems.
pub fn open_disk(source: Arc<dyn BlockSource>) -> Result<Disk> {
    let _ = source;
    Err(DiskError::unsupported(
        "disk",
        "volume discovery not implemented yet",
    ))
}

/// Detect and open the filesystem on `source`. `Ok(None)` when no known filesystem is there.
pub fn open_filesystem(source: Arc<dyn BlockSource>) -> Result<Option<Arc<dyn Filesystem>>> {
    let len = DETECT_LEN.min(usize::try_from(source.size()).unwrap_or(DETECT_LEN));
    let mut head = vec![0u8; len];
    source.read_at(0, &mut head)?;
    use crate::fs::{btrfs, ext4, fat, ntfs, xfs};
    let fs: Arc<dyn Filesystem> = if ext4::detect(&head) {
        Arc::new(ext4::Ext4::open(source)?)
    } else if xfs::detect(&head) {
        Arc::new(xfs::Xfs::open(source)?)
    } else if ntfs::detect(&head) {
        Arc::new(ntfs::Ntfs::open(source)?)
    } else if btrfs::detect(&head) {
        Arc::new(btrfs::Btrfs::open(source)?)
    } else if fat::detect(&head) {
        Arc::new(fat::Fat::open(source)?)
    } else {
        return Ok(None);
    };
    Ok(Some(fs))
}
