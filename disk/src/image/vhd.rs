//! Microsoft Virtual Hard Disk (VHD, "vpc"): fixed and dynamic.
//!
//! A fixed VHD is the raw disk followed by a 512-byte footer (what Azure stores). A dynamic VHD
//! has a copy of the footer at offset 0, a dynamic header, and a block allocation table (BAT)
//! mapping each block to a sector that holds the block's sector bitmap followed by its data.
//! Unallocated blocks read as zeros; the bitmaps are ignored (a non-differencing disk never has
//! a sector that is allocated in a block but marked absent). Differencing disks are unsupported.

use std::sync::Arc;

use super::units::{check_table_fits, for_each_unit};
use crate::bytes::{be_u32, be_u64};
use crate::source::{BlockSource, check_bounds};
use crate::{DiskError, Result};

/// Cookie of the footer (`conectix`), at the end of every VHD and at offset 0 of dynamic ones.
pub const MAGIC: &[u8] = b"conectix";

const WHAT: &str = "vhd";
const FOOTER: u64 = 512;
/// Largest BAT read into memory: 8 Mi blocks (16 TiB with the usual 2 MiB blocks; VHD stops at
/// 2 TiB anyway).
const MAX_BAT_ENTRIES: u64 = 8 << 20;
const UNALLOCATED: u32 = 0xFFFF_FFFF;

/// Whether the last 512 bytes of `source` carry a VHD footer cookie.
pub fn has_footer(source: &dyn BlockSource) -> Result<bool> {
    if source.size() < FOOTER {
        return Ok(false);
    }
    let mut cookie = [0u8; 8];
    source.read_at(source.size() - FOOTER, &mut cookie)?;
    Ok(cookie == MAGIC)
}

/// One's complement of the byte sum, with the checksum field (64..68) counted as zero.
fn footer_checksum(f: &[u8; 512]) -> u32 {
    let sum = f
        .iter()
        .enumerate()
        .filter(|(i, _)| !(64..68).contains(i))
        .fold(0u32, |acc, (_, &b)| acc.wrapping_add(u32::from(b)));
    !sum
}

/// How virtual blocks are found.
enum Layout {
    /// The data is the file, up to the footer.
    Fixed,
    /// Blocks of `block_size` bytes; `bat[i]` is the sector of block `i`'s bitmap.
    Dynamic {
        block_size: u64,
        bitmap_bytes: u64,
        bat: Vec<u32>,
    },
}

/// An opened VHD.
pub struct Vhd {
    source: Arc<dyn BlockSource>,
    size: u64,
    layout: Layout,
}

impl Vhd {
    /// Parse the footer (at the end, or the copy at the start of a dynamic disk whose end was
    /// lost) and, for dynamic disks, the dynamic header and BAT.
    pub fn open(source: Arc<dyn BlockSource>) -> Result<Self> {
        if source.size() < FOOTER {
            return Err(DiskError::corrupt(WHAT, "file smaller than a footer"));
        }
        let mut footer = [0u8; 512];
        source.read_at(source.size() - FOOTER, &mut footer)?;
        if &footer[..8] != MAGIC {
            source.read_at(0, &mut footer)?;
            if &footer[..8] != MAGIC {
                return Err(DiskError::corrupt(WHAT, "no footer"));
            }
        }
        let stored = be_u32(&footer, 64).unwrap_or(0);
        if stored != footer_checksum(&footer) {
            return Err(DiskError::corrupt(WHAT, "footer checksum mismatch"));
        }
        let size = be_u64(&footer, 48).unwrap_or(0);
        match be_u32(&footer, 60).unwrap_or(0) {
            2 => {
                let data = source.size() - FOOTER;
                if size > data {
                    return Err(DiskError::corrupt(
                        WHAT,
                        format!("fixed disk of {size} bytes in a {data}-byte file"),
                    ));
                }
                Ok(Vhd {
                    source,
                    size,
                    layout: Layout::Fixed,
                })
            }
            3 => Self::open_dynamic(source, size, be_u64(&footer, 16).unwrap_or(0)),
            4 => Err(DiskError::unsupported(
                WHAT,
                "differencing disk (needs its parent image)",
            )),
            t => Err(DiskError::corrupt(WHAT, format!("disk type {t}"))),
        }
    }

    fn open_dynamic(source: Arc<dyn BlockSource>, size: u64, header_at: u64) -> Result<Self> {
        let mut h = [0u8; 1024];
        source
            .read_at(header_at, &mut h)
            .map_err(|e| DiskError::corrupt(WHAT, format!("dynamic header at {header_at}: {e}")))?;
        if &h[..8] != b"cxsparse" {
            return Err(DiskError::corrupt(WHAT, "dynamic header: bad cookie"));
        }
        let bat_at = be_u64(&h, 16).unwrap_or(0);
        let entries = u64::from(be_u32(&h, 28).unwrap_or(0));
        let block_size = u64::from(be_u32(&h, 32).unwrap_or(0));
        if block_size < 512 || !block_size.is_power_of_two() {
            return Err(DiskError::corrupt(
                WHAT,
                format!("block size {block_size} is not a power of two of at least 512"),
            ));
        }
        let needed = size.div_ceil(block_size);
        if entries < needed {
            return Err(DiskError::corrupt(
                WHAT,
                format!("BAT has {entries} entries, {needed} needed for {size} bytes"),
            ));
        }
        if needed > MAX_BAT_ENTRIES {
            return Err(DiskError::Limit(format!(
                "VHD BAT of {needed} entries is larger than {MAX_BAT_ENTRIES}"
            )));
        }
        check_table_fits(source.as_ref(), WHAT, "BAT", bat_at, needed * 4)?;
        let mut raw = vec![0u8; (needed * 4) as usize];
        source
            .read_at(bat_at, &mut raw)
            .map_err(|e| DiskError::corrupt(WHAT, format!("BAT at {bat_at}: {e}")))?;
        let bat = raw
            .chunks_exact(4)
            .map(|c| be_u32(c, 0).unwrap_or(0))
            .collect();
        // One bit per sector, padded to whole sectors.
        let bitmap_bytes = (block_size / 512).div_ceil(8).next_multiple_of(512);
        Ok(Vhd {
            source,
            size,
            layout: Layout::Dynamic {
                block_size,
                bitmap_bytes,
                bat,
            },
        })
    }
}

impl BlockSource for Vhd {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_bounds(offset, buf.len(), self.size)?;
        match &self.layout {
            Layout::Fixed => self.source.read_at(offset, buf),
            Layout::Dynamic {
                block_size,
                bitmap_bytes,
                bat,
            } => for_each_unit(offset, buf, *block_size, |index, within, out| {
                let sector = usize::try_from(index)
                    .ok()
                    .and_then(|i| bat.get(i))
                    .copied()
                    .ok_or_else(|| DiskError::corrupt(WHAT, "block beyond the BAT"))?;
                if sector == UNALLOCATED {
                    out.fill(0);
                    return Ok(());
                }
                let at = u64::from(sector) * 512 + bitmap_bytes + within;
                self.source.read_at(at, out).map_err(|e| {
                    DiskError::corrupt(WHAT, format!("block {index} at sector {sector}: {e}"))
                })
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::MemSource;

    fn footer(kind: u32, size: u64, data_offset: u64) -> [u8; 512] {
        let mut f = [0u8; 512];
        f[..8].copy_from_slice(MAGIC);
        f[16..24].copy_from_slice(&data_offset.to_be_bytes());
        f[48..56].copy_from_slice(&size.to_be_bytes());
        f[60..64].copy_from_slice(&kind.to_be_bytes());
        let c = footer_checksum(&f);
        f[64..68].copy_from_slice(&c.to_be_bytes());
        f
    }

    #[test]
    fn fixed_disk_is_the_data_before_the_footer() {
        let mut img = vec![0x5Au8; 4096];
        img.extend_from_slice(&footer(2, 4096, u64::MAX));
        let v = Vhd::open(Arc::new(MemSource::new(img.clone()))).unwrap();
        assert_eq!(v.size(), 4096);
        let mut buf = [0u8; 8];
        v.read_at(4088, &mut buf).unwrap();
        assert_eq!(buf, [0x5A; 8]);
        // A flipped byte breaks the checksum.
        let n = img.len();
        img[n - 400] ^= 1;
        assert!(Vhd::open(Arc::new(MemSource::new(img))).is_err());
    }

    #[test]
    fn differencing_disks_are_unsupported() {
        let mut img = vec![0u8; 1024];
        img.extend_from_slice(&footer(4, 4096, 512));
        assert!(matches!(
            Vhd::open(Arc::new(MemSource::new(img))),
            Err(DiskError::Unsupported { .. })
        ));
    }
}
