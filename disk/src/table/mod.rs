//! Partition tables: GPT, MBR (with extended/logical partitions), or none.
//!
//! [`read_table`] finds the table from content, as the Linux kernel does: an MBR whose entries
//! make sense is the table unless it is protective (or hybrid, with a 0xEE entry); then the GPT
//! (primary, or the backup when the primary is damaged) must be valid. A GPT with no MBR at all
//! is read too; anything else is one whole-disk volume. Partitions are returned with
//! their extents as the table states them; whether an extent fits the disk is checked by the
//! caller per partition, so one bad entry does not lose the others.

use crate::source::BlockSource;
use crate::{DiskError, Result};

pub mod gpt;
pub mod mbr;

/// One partition as the table describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// 1-based number as Linux names it: the GPT entry index + 1; MBR primaries 1–4, logical
    /// partitions from 5.
    pub number: u32,
    /// Byte offset from the start of the disk.
    pub start: u64,
    /// Length in bytes.
    pub size: u64,
    /// Type: a GPT type GUID (`0FC63DAF-8483-4772-8E79-3D69D8477DE4`) or an MBR type byte
    /// (`0x83`).
    pub type_id: String,
    /// GPT partition name, if any.
    pub name: Option<String>,
    /// Why the entry cannot be used (e.g. its last sector comes before its first), if so.
    pub error: Option<String>,
}

/// A disk's partition table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionTable {
    /// `gpt`, `mbr` or `none`.
    pub scheme: &'static str,
    /// Partitions that may hold data, in table order. Empty for `none`.
    pub partitions: Vec<Partition>,
}

/// Read the partition table of `disk`.
pub fn read_table(disk: &dyn BlockSource) -> Result<PartitionTable> {
    let mut sector0 = [0u8; 512];
    if disk.size() < 512 {
        return Ok(PartitionTable {
            scheme: "none",
            partitions: Vec::new(),
        });
    }
    disk.read_at(0, &mut sector0)?;
    let mbr = mbr::parse_sector(&sector0);
    // Like the Linux kernel: a valid MBR without a 0xEE entry is the table, even if a stale GPT
    // (a disk converted from GPT to MBR) is still there.
    if let Some(m) = &mbr
        && !m.protective
    {
        return Ok(PartitionTable {
            scheme: "mbr",
            partitions: mbr::read(disk, &sector0)?,
        });
    }
    let protective = mbr.is_some();
    match gpt::read(disk) {
        Ok(Some(partitions)) => Ok(PartitionTable {
            scheme: "gpt",
            partitions,
        }),
        Ok(None) if protective => Err(DiskError::corrupt(
            "gpt",
            "protective MBR but no GPT header (primary and backup unreadable)",
        )),
        Err(e) if protective => Err(e),
        Ok(None) => Ok(PartitionTable {
            scheme: "none",
            partitions: Vec::new(),
        }),
        Err(e) => {
            // No MBR either: a damaged GPT on a disk that may well be a whole-disk filesystem.
            tracing::warn!("ignoring unusable GPT: {e}");
            Ok(PartitionTable {
                scheme: "none",
                partitions: Vec::new(),
            })
        }
    }
}
