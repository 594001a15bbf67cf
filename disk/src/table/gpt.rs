//! GUID Partition Table.
//!
//! The primary header is at LBA 1 and its backup at the last LBA; each carries a CRC-32 of
//! itself and of the partition entry array. The first copy whose header and entries check out
//! is used, so a disk whose primary was overwritten still opens from the backup. Sector size
//! 512 is tried first, then 4096.

use super::Partition;
use crate::bytes::{array, guid_string, le_u32, le_u64, utf16_le_units};
use crate::crc::crc32;
use crate::source::BlockSource;
use crate::{DiskError, Result};

const WHAT: &str = "gpt";
const SIGNATURE: &[u8] = b"EFI PART";
/// Largest partition entry array read (1 MiB; the usual one is 16 KiB).
const MAX_ENTRIES_BYTES: u64 = 1 << 20;

/// Types that never hold a filesystem: BIOS boot and Microsoft reserved. (All-zero is "unused".)
const NO_FILESYSTEM: [&str; 2] = [
    "21686148-6449-6E6F-744E-656564454649",
    "E3C9E316-0B5C-4DB8-817D-F92DF00215AE",
];

/// Read the GPT of `disk`: `Ok(None)` when no copy has a GPT signature, an error when copies
/// exist but none is valid.
pub fn read(disk: &dyn BlockSource) -> Result<Option<Vec<Partition>>> {
    let mut first_error = None;
    for sector in [512u64, 4096] {
        let Some(last_lba) = (disk.size() / sector).checked_sub(1) else {
            continue;
        };
        for lba in [1, last_lba] {
            if lba < 1 {
                continue;
            }
            match read_copy(disk, sector, lba) {
                Ok(Some(parts)) => {
                    if lba != 1 {
                        tracing::warn!("primary GPT header unusable, using the backup");
                    }
                    return Ok(Some(parts));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!("GPT copy at LBA {lba} ({sector}-byte sectors): {e}");
                    first_error.get_or_insert(e);
                }
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(None),
    }
}

/// One header at `lba` and its entries. `Ok(None)`: no signature there.
fn read_copy(disk: &dyn BlockSource, sector: u64, lba: u64) -> Result<Option<Vec<Partition>>> {
    let mut h = vec![0u8; sector as usize];
    disk.read_at(lba * sector, &mut h)?;
    if !h.starts_with(SIGNATURE) {
        return Ok(None);
    }
    let header_len = le_u32(&h, 12).unwrap_or(0) as usize;
    if !(92..=h.len()).contains(&header_len) {
        return Err(DiskError::corrupt(
            WHAT,
            format!("header size {header_len}"),
        ));
    }
    let stored = le_u32(&h, 16).unwrap_or(0);
    let mut copy = h[..header_len].to_vec();
    copy[16..20].fill(0);
    if crc32(&copy) != stored {
        return Err(DiskError::corrupt(
            WHAT,
            format!("header at LBA {lba}: checksum mismatch"),
        ));
    }
    if le_u64(&h, 24).unwrap_or(0) != lba {
        return Err(DiskError::corrupt(
            WHAT,
            format!(
                "header at LBA {lba} says it is at LBA {}",
                le_u64(&h, 24).unwrap_or(0)
            ),
        ));
    }
    let entries_lba = le_u64(&h, 72).unwrap_or(0);
    let count = u64::from(le_u32(&h, 80).unwrap_or(0));
    let entry_size = u64::from(le_u32(&h, 84).unwrap_or(0));
    if entry_size < 128 || !entry_size.is_power_of_two() || entry_size > 4096 {
        return Err(DiskError::corrupt(WHAT, format!("entry size {entry_size}")));
    }
    let bytes = count * entry_size;
    if bytes > MAX_ENTRIES_BYTES {
        return Err(DiskError::Limit(format!(
            "GPT entry array of {bytes} bytes is larger than {MAX_ENTRIES_BYTES}"
        )));
    }
    let at = entries_lba
        .checked_mul(sector)
        .ok_or_else(|| DiskError::corrupt(WHAT, "entry array offset overflows"))?;
    let mut entries = vec![0u8; bytes as usize];
    disk.read_at(at, &mut entries)
        .map_err(|e| DiskError::corrupt(WHAT, format!("entry array at LBA {entries_lba}: {e}")))?;
    if crc32(&entries) != le_u32(&h, 88).unwrap_or(0) {
        return Err(DiskError::corrupt(
            WHAT,
            format!("entry array at LBA {entries_lba}: checksum mismatch"),
        ));
    }
    let mut parts = Vec::new();
    for (i, e) in entries.chunks_exact(entry_size as usize).enumerate() {
        let type_guid = array::<16>(e, 0).unwrap_or_default();
        if type_guid == [0; 16] {
            continue;
        }
        let type_id = guid_string(&type_guid);
        if NO_FILESYSTEM.contains(&type_id.as_str()) {
            continue;
        }
        let (first, last) = (le_u64(e, 32).unwrap_or(0), le_u64(e, 40).unwrap_or(0));
        let extent = last
            .checked_sub(first)
            .and_then(|n| n.checked_add(1))
            .and_then(|n| n.checked_mul(sector))
            .zip(first.checked_mul(sector));
        let name: Vec<u16> = utf16_le_units(e.get(56..128).unwrap_or_default())
            .take_while(|&c| c != 0)
            .collect();
        let name = String::from_utf16_lossy(&name);
        let (start, size, error) = match extent {
            Some((size, start)) => (start, size, None),
            None => (
                first.saturating_mul(sector),
                0,
                Some(format!("bad extent: first LBA {first}, last LBA {last}")),
            ),
        };
        parts.push(Partition {
            number: i as u32 + 1,
            start,
            size,
            type_id,
            name: (!name.is_empty()).then_some(name),
            error,
        });
    }
    Ok(Some(parts))
}
