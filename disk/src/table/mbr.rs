//! Master Boot Record, with extended partitions.
//!
//! Four primary entries at offset 446 of sector 0. An extended entry (types 0x05, 0x0F, 0x85)
//! starts a chain of extended boot records, each describing one logical partition (relative to
//! itself) and the next record (relative to the extended partition). The chain is followed at
//! most [`MAX_LOGICAL`] steps and never to a record already seen.

use std::collections::HashSet;

use super::Partition;
use crate::Result;
use crate::bytes::{has_at, le_u32};
use crate::source::BlockSource;

const SECTOR: u64 = 512;
/// Most logical partitions followed in one extended partition.
pub const MAX_LOGICAL: usize = 128;

const EMPTY: u8 = 0x00;
const PROTECTIVE: u8 = 0xEE;

fn is_extended(kind: u8) -> bool {
    matches!(kind, 0x05 | 0x0F | 0x85)
}

/// A raw MBR entry.
#[derive(Clone, Copy, Debug)]
struct Entry {
    kind: u8,
    start: u32,
    sectors: u32,
}

fn entries(sector: &[u8; 512]) -> [Entry; 4] {
    std::array::from_fn(|i| {
        let e = 446 + i * 16;
        Entry {
            kind: sector[e + 4],
            start: le_u32(sector, e + 8).unwrap_or(0),
            sectors: le_u32(sector, e + 12).unwrap_or(0),
        }
    })
}

/// What sector 0 says, if it is an MBR.
pub(crate) struct Mbr {
    /// A 0xEE entry: the disk is GPT (protective or hybrid MBR).
    pub(crate) protective: bool,
}

/// Whether sector 0 looks like an MBR: boot signature, sane status bytes, at least one used
/// entry, and not a filesystem's boot sector (FAT and NTFS also end their first sector in
/// `55 AA`).
pub(crate) fn parse_sector(sector: &[u8; 512]) -> Option<Mbr> {
    if sector[510..] != [0x55, 0xAA] {
        return None;
    }
    if has_at(sector, 3, b"NTFS    ")
        || has_at(sector, 3, b"EXFAT   ")
        || has_at(sector, 54, b"FAT")
        || has_at(sector, 82, b"FAT32")
    {
        return None;
    }
    let mut used = 0;
    let mut protective = false;
    for i in 0..4 {
        let e = 446 + i * 16;
        if sector[e] != 0 && sector[e] != 0x80 {
            return None;
        }
    }
    for e in entries(sector) {
        if e.kind == EMPTY {
            continue;
        }
        if e.start == 0 || e.sectors == 0 {
            return None;
        }
        used += 1;
        protective |= e.kind == PROTECTIVE;
    }
    (used > 0).then_some(Mbr { protective })
}

fn partition(number: u32, base: u64, e: Entry) -> Partition {
    Partition {
        number,
        start: (base + u64::from(e.start)) * SECTOR,
        size: u64::from(e.sectors) * SECTOR,
        type_id: format!("{:#04x}", e.kind),
        name: None,
        error: None,
    }
}

/// Primary and logical partitions of the MBR in `sector0` (extended containers excluded).
pub(crate) fn read(disk: &dyn BlockSource, sector0: &[u8; 512]) -> Result<Vec<Partition>> {
    let mut parts = Vec::new();
    let mut extended = None;
    for (i, e) in entries(sector0).into_iter().enumerate() {
        if e.kind == EMPTY {
            continue;
        }
        if is_extended(e.kind) {
            if extended.is_none() {
                extended = Some(e);
            }
            continue;
        }
        parts.push(partition(i as u32 + 1, 0, e));
    }
    if let Some(ext) = extended {
        read_logical(disk, ext, &mut parts);
    }
    Ok(parts)
}

/// Follow the EBR chain of the extended partition `ext`, adding logical partitions 5, 6, ….
/// A broken link ends the chain with a warning; the partitions found so far are kept.
fn read_logical(disk: &dyn BlockSource, ext: Entry, parts: &mut Vec<Partition>) {
    let ext_start = u64::from(ext.start);
    let mut seen = HashSet::new();
    let mut ebr_lba = ext_start;
    let mut number = 5u32;
    for _ in 0..MAX_LOGICAL {
        if !seen.insert(ebr_lba) {
            tracing::warn!("MBR: extended boot record chain loops back to LBA {ebr_lba}");
            return;
        }
        let mut sector = [0u8; 512];
        if let Err(e) = disk.read_at(ebr_lba * SECTOR, &mut sector) {
            tracing::warn!("MBR: extended boot record at LBA {ebr_lba}: {e}");
            return;
        }
        if sector[510..] != [0x55, 0xAA] {
            tracing::warn!("MBR: extended boot record at LBA {ebr_lba} has no signature");
            return;
        }
        let [logical, next, ..] = entries(&sector);
        if logical.kind != EMPTY && logical.sectors != 0 {
            parts.push(partition(number, ebr_lba, logical));
            number += 1;
        }
        if next.kind == EMPTY || next.start == 0 {
            return;
        }
        ebr_lba = ext_start + u64::from(next.start);
    }
    tracing::warn!("MBR: more than {MAX_LOGICAL} logical partitions, the rest are ignored");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::MemSource;

    fn set(s: &mut [u8], slot: usize, kind: u8, start: u32, sectors: u32) {
        let e = 446 + slot * 16;
        s[e + 4] = kind;
        s[e + 8..e + 12].copy_from_slice(&start.to_le_bytes());
        s[e + 12..e + 16].copy_from_slice(&sectors.to_le_bytes());
        s[510] = 0x55;
        s[511] = 0xAA;
    }

    #[test]
    fn ebr_loops_and_long_chains_stop() {
        let mut disk = vec![0u8; 512 * 64];
        set(&mut disk[..512], 0, 0x05, 10, 50);
        // EBR at 10: logical at +1, next at ext+0 (itself): a loop.
        set(&mut disk[512 * 10..512 * 11], 0, 0x83, 1, 2);
        set(&mut disk[512 * 10..512 * 11], 1, 0x05, 0, 5);
        let s0: [u8; 512] = disk[..512].try_into().unwrap();
        let parts = read(&MemSource::new(disk), &s0).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].number, 5);
        assert_eq!(parts[0].start, 11 * 512);
    }

    #[test]
    fn filesystem_boot_sectors_are_not_mbrs() {
        let mut s = [0u8; 512];
        set(&mut s, 0, 0x83, 2048, 100);
        assert!(parse_sector(&s).is_some());
        s[3..11].copy_from_slice(b"NTFS    ");
        assert!(parse_sector(&s).is_none());
        let mut s = [0u8; 512];
        set(&mut s, 0, 0x83, 0, 100);
        assert!(parse_sector(&s).is_none());
    }
}
