//! Microsoft VHDX (Hyper-V, Azure local disks).
//!
//! Two 4 KiB headers (the valid one with the higher sequence number wins) name a log; two copies
//! of a region table locate the block allocation table (BAT) and the metadata region, which
//! gives block size, logical sector size and virtual size. BAT entries for payload blocks are
//! interleaved with sector-bitmap entries: after every `chunk_ratio` payload entries comes one
//! bitmap entry. A log with entries still to replay, and differencing disks, are unsupported.

use std::sync::Arc;

use super::units::{check_table_fits, for_each_unit};
use crate::bytes::{array, le_u16, le_u32, le_u64};
use crate::crc::crc32c;
use crate::source::{BlockSource, check_bounds};
use crate::{DiskError, Result};

/// File type identifier at offset 0.
pub const MAGIC: &[u8] = b"vhdxfile";

const WHAT: &str = "vhdx";
const KIB64: u64 = 64 * 1024;
const MIB: u64 = 1024 * 1024;
/// Largest BAT read into memory (64 MiB: 8 Mi entries).
const MAX_BAT_ENTRIES: u64 = 8 << 20;

// GUIDs in on-disk byte order (first three fields little-endian).
const BAT_GUID: [u8; 16] = guid(
    0x2DC2_7766,
    0xF623,
    0x4200,
    [0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD, 0x4A, 0x08],
);
const METADATA_GUID: [u8; 16] = guid(
    0x8B7C_A206,
    0x4790,
    0x4B9A,
    [0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F, 0x88, 0x6E],
);
const FILE_PARAMETERS: [u8; 16] = guid(
    0xCAA1_6737,
    0xFA36,
    0x4D43,
    [0xB3, 0xB6, 0x33, 0xF0, 0xAA, 0x44, 0xE7, 0x6B],
);
const VIRTUAL_DISK_SIZE: [u8; 16] = guid(
    0x2FA5_4224,
    0xCD1B,
    0x4876,
    [0xB2, 0x11, 0x5D, 0xBE, 0xD8, 0x3B, 0xF4, 0xB8],
);
const LOGICAL_SECTOR_SIZE: [u8; 16] = guid(
    0x8141_BF1D,
    0xA96F,
    0x4709,
    [0xBA, 0x47, 0xF2, 0x33, 0xA8, 0xFA, 0xAB, 0x5F],
);

const fn guid(a: u32, b: u16, c: u16, d: [u8; 8]) -> [u8; 16] {
    let a = a.to_le_bytes();
    let b = b.to_le_bytes();
    let c = c.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6],
        d[7],
    ]
}

// Payload block states (BAT entry bits 0..3).
const PAYLOAD_NOT_PRESENT: u64 = 0;
const PAYLOAD_UNDEFINED: u64 = 1;
const PAYLOAD_ZERO: u64 = 2;
const PAYLOAD_UNMAPPED: u64 = 3;
const PAYLOAD_FULLY_PRESENT: u64 = 6;
const PAYLOAD_PARTIALLY_PRESENT: u64 = 7;

/// An opened VHDX.
pub struct Vhdx {
    source: Arc<dyn BlockSource>,
    size: u64,
    block_size: u64,
    chunk_ratio: u64,
    bat: Vec<u64>,
}

/// Read `len` bytes at `at` and check the CRC-32C stored at `crc_at` (computed with that field
/// zeroed).
fn read_checked(source: &dyn BlockSource, at: u64, len: usize, what: &str) -> Result<Vec<u8>> {
    let mut b = vec![0u8; len];
    source
        .read_at(at, &mut b)
        .map_err(|e| DiskError::corrupt(WHAT, format!("{what} at {at}: {e}")))?;
    let stored = le_u32(&b, 4).unwrap_or(0);
    b[4..8].fill(0);
    if crc32c(&b) != stored {
        return Err(DiskError::corrupt(
            WHAT,
            format!("{what} at {at}: checksum mismatch"),
        ));
    }
    Ok(b)
}

impl Vhdx {
    /// Parse headers, region table, metadata and BAT.
    pub fn open(source: Arc<dyn BlockSource>) -> Result<Self> {
        let mut ident = [0u8; 8];
        source.read_at(0, &mut ident)?;
        if ident != MAGIC {
            return Err(DiskError::corrupt(WHAT, "bad file identifier"));
        }
        // The current header: valid, signature "head", highest sequence number.
        let header = [KIB64, 2 * KIB64]
            .into_iter()
            .filter_map(|at| read_checked(source.as_ref(), at, 4096, "header").ok())
            .filter(|h| h.starts_with(b"head"))
            .max_by_key(|h| le_u64(h, 8).unwrap_or(0))
            .ok_or_else(|| DiskError::corrupt(WHAT, "no valid header"))?;
        if array::<16>(&header, 48).is_some_and(|g| g != [0; 16]) {
            return Err(DiskError::unsupported(
                WHAT,
                "the log holds entries not yet replayed (image was not closed cleanly)",
            ));
        }
        let version = le_u16(&header, 66).unwrap_or(0);
        if version != 1 {
            return Err(DiskError::unsupported(WHAT, format!("version {version}")));
        }
        let regions = [3 * KIB64, 4 * KIB64]
            .into_iter()
            .filter_map(|at| read_checked(source.as_ref(), at, KIB64 as usize, "region table").ok())
            .find(|r| r.starts_with(b"regi"))
            .ok_or_else(|| DiskError::corrupt(WHAT, "no valid region table"))?;
        let count = le_u32(&regions, 8).unwrap_or(0).min(2047) as usize;
        let (mut bat_region, mut meta_region) = (None, None);
        for i in 0..count {
            let e = 16 + i * 32;
            let id = array::<16>(&regions, e).unwrap_or_default();
            let loc = (
                le_u64(&regions, e + 16).unwrap_or(0),
                u64::from(le_u32(&regions, e + 24).unwrap_or(0)),
            );
            let required = le_u32(&regions, e + 28).unwrap_or(0) & 1 != 0;
            if id == BAT_GUID {
                bat_region = Some(loc);
            } else if id == METADATA_GUID {
                meta_region = Some(loc);
            } else if required {
                return Err(DiskError::unsupported(WHAT, "unknown required region"));
            }
        }
        let (bat_at, bat_len) =
            bat_region.ok_or_else(|| DiskError::corrupt(WHAT, "no BAT region"))?;
        let (meta_at, meta_len) =
            meta_region.ok_or_else(|| DiskError::corrupt(WHAT, "no metadata region"))?;
        let meta = Metadata::read(source.as_ref(), meta_at, meta_len)?;
        if meta.has_parent {
            return Err(DiskError::unsupported(
                WHAT,
                "differencing disk (needs its parent image)",
            ));
        }
        let block_size = meta.block_size;
        let chunk_ratio = ((1u64 << 23) * meta.logical_sector) / block_size;
        if chunk_ratio == 0 {
            return Err(DiskError::corrupt(WHAT, "chunk ratio is zero"));
        }
        let blocks = meta.size.div_ceil(block_size);
        // Payload entries, plus one bitmap entry per full or partial chunk before the last.
        let entries = blocks + blocks.saturating_sub(1) / chunk_ratio;
        if entries > MAX_BAT_ENTRIES {
            return Err(DiskError::Limit(format!(
                "VHDX BAT of {entries} entries is larger than {MAX_BAT_ENTRIES}"
            )));
        }
        if entries * 8 > bat_len {
            return Err(DiskError::corrupt(
                WHAT,
                format!("BAT region of {bat_len} bytes holds fewer than {entries} entries"),
            ));
        }
        check_table_fits(source.as_ref(), WHAT, "BAT", bat_at, entries * 8)?;
        let mut raw = vec![0u8; (entries * 8) as usize];
        source
            .read_at(bat_at, &mut raw)
            .map_err(|e| DiskError::corrupt(WHAT, format!("BAT at {bat_at}: {e}")))?;
        let bat = raw
            .chunks_exact(8)
            .map(|c| le_u64(c, 0).unwrap_or(0))
            .collect();
        Ok(Vhdx {
            source,
            size: meta.size,
            block_size,
            chunk_ratio,
            bat,
        })
    }
}

/// What the metadata region says about the disk.
struct Metadata {
    block_size: u64,
    has_parent: bool,
    size: u64,
    logical_sector: u64,
}

impl Metadata {
    fn read(source: &dyn BlockSource, at: u64, len: u64) -> Result<Self> {
        if !(KIB64..=MIB * 16).contains(&len) {
            return Err(DiskError::corrupt(
                WHAT,
                format!("metadata region of {len} bytes"),
            ));
        }
        check_table_fits(source, WHAT, "metadata region", at, len)?;
        let mut m = vec![0u8; len as usize];
        source
            .read_at(at, &mut m)
            .map_err(|e| DiskError::corrupt(WHAT, format!("metadata region at {at}: {e}")))?;
        if !m.starts_with(b"metadata") {
            return Err(DiskError::corrupt(WHAT, "metadata region: bad signature"));
        }
        let count = usize::from(le_u16(&m, 10).unwrap_or(0)).min(2047);
        let item = |id: [u8; 16], want: usize| -> Result<&[u8]> {
            for i in 0..count {
                let e = 32 + i * 32;
                if array::<16>(&m, e) == Some(id) {
                    let off = le_u32(&m, e + 16).unwrap_or(0) as usize;
                    return m
                        .get(off..off.saturating_add(want))
                        .filter(|s| s.len() == want)
                        .ok_or_else(|| DiskError::corrupt(WHAT, "metadata item out of range"));
                }
            }
            Err(DiskError::corrupt(WHAT, "metadata item missing"))
        };
        let params = item(FILE_PARAMETERS, 8)?;
        let block_size = u64::from(le_u32(params, 0).unwrap_or(0));
        let has_parent = le_u32(params, 4).unwrap_or(0) & 2 != 0;
        let size = le_u64(item(VIRTUAL_DISK_SIZE, 8)?, 0).unwrap_or(0);
        let logical_sector = u64::from(le_u32(item(LOGICAL_SECTOR_SIZE, 4)?, 0).unwrap_or(0));
        if !(MIB..=256 * MIB).contains(&block_size) || !block_size.is_power_of_two() {
            return Err(DiskError::corrupt(WHAT, format!("block size {block_size}")));
        }
        if logical_sector != 512 && logical_sector != 4096 {
            return Err(DiskError::corrupt(
                WHAT,
                format!("logical sector size {logical_sector}"),
            ));
        }
        if size > (64 << 40) {
            return Err(DiskError::corrupt(
                WHAT,
                format!("virtual size {size} above 64 TiB"),
            ));
        }
        Ok(Metadata {
            block_size,
            has_parent,
            size,
            logical_sector,
        })
    }
}

impl BlockSource for Vhdx {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_bounds(offset, buf.len(), self.size)?;
        for_each_unit(offset, buf, self.block_size, |block, within, out| {
            let index = block + block / self.chunk_ratio;
            let entry = usize::try_from(index)
                .ok()
                .and_then(|i| self.bat.get(i))
                .copied()
                .ok_or_else(|| DiskError::corrupt(WHAT, "block beyond the BAT"))?;
            match entry & 7 {
                PAYLOAD_NOT_PRESENT | PAYLOAD_UNDEFINED | PAYLOAD_ZERO | PAYLOAD_UNMAPPED => {
                    out.fill(0);
                    Ok(())
                }
                PAYLOAD_FULLY_PRESENT | PAYLOAD_PARTIALLY_PRESENT => {
                    let at = entry & !(MIB - 1);
                    let pos = at.checked_add(within).ok_or_else(|| {
                        DiskError::corrupt(WHAT, format!("block {block}: offset overflows"))
                    })?;
                    self.source.read_at(pos, out).map_err(|e| {
                        DiskError::corrupt(WHAT, format!("block {block} at {at}: {e}"))
                    })
                }
                state => Err(DiskError::corrupt(
                    WHAT,
                    format!("block {block}: BAT state {state}"),
                )),
            }
        })
    }
}
