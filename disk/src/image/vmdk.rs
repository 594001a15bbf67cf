//! VMware VMDK hosted sparse extents: `monolithicSparse` and `streamOptimized`.
//!
//! Both start with a `KDMV` header and map grains (usually 64 KiB) through a grain directory of
//! grain tables. monolithicSparse stores grains as they are; streamOptimized (what OVAs and
//! vSphere exports use) stores each grain zlib-compressed behind a 12-byte marker and, because it
//! is written as a stream, keeps the real grain directory offset in a footer near the end of the
//! file. Descriptors naming several extents, and differencing links to a parent, are
//! unsupported.

use std::sync::Arc;

use miniz_oxide::inflate::{TINFLStatus, decompress_to_vec_zlib_with_limit};

use super::units::{DecodedCache, check_table_fits, copy_from_unit, for_each_unit, read_clamped};
use crate::bytes::{le_u16, le_u32, le_u64};
use crate::source::{BlockSource, check_bounds};
use crate::{DiskError, Result};

/// `KDMV`, the sparse extent magic, at offset 0.
pub const MAGIC: &[u8] = b"KDMV";

const WHAT: &str = "vmdk";
const SECTOR: u64 = 512;
const FLAG_COMPRESSED: u32 = 1 << 16;
const GD_AT_END: u64 = u64::MAX;
/// Largest grain accepted (1 MiB; VMware uses 64 KiB).
const MAX_GRAIN_BYTES: u64 = 1 << 20;
const MAX_GTES_PER_GT: u64 = 1 << 16;
/// Largest grain directory read into memory (16 MiB: 4 Mi grain tables).
const MAX_GD_BYTES: u64 = 16 << 20;
/// Largest embedded descriptor looked at.
const MAX_DESCRIPTOR: u64 = 1 << 20;

/// An opened VMDK sparse extent.
pub struct Vmdk {
    source: Arc<dyn BlockSource>,
    size: u64,
    grain: u64,
    gtes_per_gt: u64,
    compressed: bool,
    /// Sector of each grain table (0: none).
    gd: Vec<u32>,
    decoded: DecodedCache,
}

/// The fields of a sparse extent header this reader uses.
struct Header {
    flags: u32,
    capacity: u64,
    grain_sectors: u64,
    descriptor_sector: u64,
    descriptor_sectors: u64,
    gtes_per_gt: u64,
    gd_sector: u64,
    compress: u16,
}

fn parse_header(h: &[u8]) -> Result<Header> {
    if h.get(..4) != Some(MAGIC) {
        return Err(DiskError::corrupt(WHAT, "bad sparse extent magic"));
    }
    let version = le_u32(h, 4).unwrap_or(0);
    if !(1..=3).contains(&version) {
        return Err(DiskError::unsupported(
            WHAT,
            format!("sparse extent version {version}"),
        ));
    }
    Ok(Header {
        flags: le_u32(h, 8).unwrap_or(0),
        capacity: le_u64(h, 12).unwrap_or(0),
        grain_sectors: le_u64(h, 20).unwrap_or(0),
        descriptor_sector: le_u64(h, 28).unwrap_or(0),
        descriptor_sectors: le_u64(h, 36).unwrap_or(0),
        gtes_per_gt: u64::from(le_u32(h, 44).unwrap_or(0)),
        gd_sector: le_u64(h, 56).unwrap_or(0),
        compress: le_u16(h, 77).unwrap_or(0),
    })
}

impl Vmdk {
    /// Parse the header (and footer, for streamOptimized), check the embedded descriptor, and
    /// read the grain directory.
    pub fn open(source: Arc<dyn BlockSource>) -> Result<Self> {
        let mut h = [0u8; 512];
        if source.size() < SECTOR {
            return Err(DiskError::corrupt(WHAT, "file smaller than a header"));
        }
        source.read_at(0, &mut h)?;
        let mut header = parse_header(&h)?;
        check_descriptor(source.as_ref(), &header)?;
        if header.gd_sector == GD_AT_END {
            // streamOptimized: footer (a header copy) in the second-to-last sector, before the
            // end-of-stream marker.
            let at = source
                .size()
                .checked_sub(2 * SECTOR)
                .ok_or_else(|| DiskError::corrupt(WHAT, "no room for a footer"))?;
            source.read_at(at, &mut h)?;
            let footer =
                parse_header(&h).map_err(|e| DiskError::corrupt(WHAT, format!("footer: {e}")))?;
            if footer.gd_sector == GD_AT_END {
                return Err(DiskError::corrupt(WHAT, "footer has no grain directory"));
            }
            header.gd_sector = footer.gd_sector;
        }
        let compressed = header.flags & FLAG_COMPRESSED != 0;
        if compressed && header.compress != 1 {
            return Err(DiskError::unsupported(
                WHAT,
                format!("compression algorithm {}", header.compress),
            ));
        }
        let grain = header
            .grain_sectors
            .checked_mul(SECTOR)
            .filter(|g| (4096..=MAX_GRAIN_BYTES).contains(g) && g.is_power_of_two())
            .ok_or_else(|| {
                DiskError::corrupt(WHAT, format!("grain of {} sectors", header.grain_sectors))
            })?;
        if !(1..=MAX_GTES_PER_GT).contains(&header.gtes_per_gt) {
            return Err(DiskError::corrupt(
                WHAT,
                format!("{} entries per grain table", header.gtes_per_gt),
            ));
        }
        let size = header
            .capacity
            .checked_mul(SECTOR)
            .ok_or_else(|| DiskError::corrupt(WHAT, "capacity overflows"))?;
        let tables = size.div_ceil(grain).div_ceil(header.gtes_per_gt);
        if tables * 4 > MAX_GD_BYTES {
            return Err(DiskError::Limit(format!(
                "VMDK grain directory of {tables} entries is larger than {MAX_GD_BYTES} bytes"
            )));
        }
        let gd_at = header
            .gd_sector
            .checked_mul(SECTOR)
            .ok_or_else(|| DiskError::corrupt(WHAT, "grain directory offset overflows"))?;
        check_table_fits(source.as_ref(), WHAT, "grain directory", gd_at, tables * 4)?;
        let mut raw = vec![0u8; (tables * 4) as usize];
        source
            .read_at(gd_at, &mut raw)
            .map_err(|e| DiskError::corrupt(WHAT, format!("grain directory at {gd_at}: {e}")))?;
        let gd = raw
            .chunks_exact(4)
            .map(|c| le_u32(c, 0).unwrap_or(0))
            .collect();
        Ok(Vmdk {
            source,
            size,
            grain,
            gtes_per_gt: header.gtes_per_gt,
            compressed,
            gd,
            decoded: DecodedCache::new(),
        })
    }

    /// The grain table entry of grain `index` (0: unallocated, 1: zero grain).
    fn gte(&self, index: u64) -> Result<u32> {
        let table = usize::try_from(index / self.gtes_per_gt).unwrap_or(usize::MAX);
        let gt_sector = *self
            .gd
            .get(table)
            .ok_or_else(|| DiskError::corrupt(WHAT, "grain beyond the grain directory"))?;
        if gt_sector == 0 {
            return Ok(0);
        }
        let at = u64::from(gt_sector) * SECTOR + (index % self.gtes_per_gt) * 4;
        let mut e = [0u8; 4];
        self.source.read_at(at, &mut e).map_err(|err| {
            DiskError::corrupt(WHAT, format!("grain table at sector {gt_sector}: {err}"))
        })?;
        Ok(u32::from_le_bytes(e))
    }

    /// Inflate the stream-optimized grain at `sector`: a marker (LBA, compressed size) and zlib data.
    fn inflate_grain(&self, sector: u32) -> Result<Vec<u8>> {
        let at = u64::from(sector) * SECTOR;
        let mut marker = [0u8; 12];
        self.source.read_at(at, &mut marker)?;
        let len = u64::from(le_u32(&marker, 8).unwrap_or(0));
        if len == 0 || len > 2 * self.grain + 4096 {
            return Err(DiskError::corrupt(
                WHAT,
                format!("grain at sector {sector}: compressed size {len}"),
            ));
        }
        let data = read_clamped(self.source.as_ref(), at + 12, len)?;
        let grain = self.grain as usize;
        match decompress_to_vec_zlib_with_limit(&data, grain) {
            Ok(out) => Ok(out),
            Err(e) if e.status == TINFLStatus::HasMoreOutput && e.output.len() == grain => {
                Ok(e.output)
            }
            Err(e) => Err(DiskError::corrupt(
                WHAT,
                format!("grain at sector {sector}: inflate failed ({:?})", e.status),
            )),
        }
    }
}

/// Refuse extents whose embedded descriptor says the disk is more than this one file.
fn check_descriptor(source: &dyn BlockSource, header: &Header) -> Result<()> {
    if header.descriptor_sector == 0 || header.descriptor_sectors == 0 {
        return Ok(());
    }
    let (Some(at), Some(len)) = (
        header.descriptor_sector.checked_mul(SECTOR),
        header.descriptor_sectors.checked_mul(SECTOR),
    ) else {
        return Err(DiskError::corrupt(WHAT, "descriptor location overflows"));
    };
    let text = read_clamped(source, at, len.min(MAX_DESCRIPTOR))
        .map_err(|e| DiskError::corrupt(WHAT, format!("descriptor: {e}")))?;
    let text = String::from_utf8_lossy(&text);
    let text = text.split('\0').next().unwrap_or_default();
    let mut extents = 0;
    for line in text.lines().map(str::trim) {
        if line.starts_with("RW ") || line.starts_with("RDONLY ") || line.starts_with("NOACCESS ") {
            extents += 1;
        }
        if let Some(v) = line.strip_prefix("parentCID") {
            let v = v.trim_start_matches([' ', '=']).trim();
            if !v.eq_ignore_ascii_case("ffffffff") {
                return Err(DiskError::unsupported(
                    WHAT,
                    "differencing disk (has a parent)",
                ));
            }
        }
    }
    if extents > 1 {
        return Err(DiskError::unsupported(
            WHAT,
            format!("descriptor lists {extents} extents; only single-file VMDKs are read"),
        ));
    }
    Ok(())
}

impl BlockSource for Vmdk {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_bounds(offset, buf.len(), self.size)?;
        for_each_unit(offset, buf, self.grain, |index, within, out| {
            let sector = self.gte(index)?;
            if sector <= 1 {
                out.fill(0);
                return Ok(());
            }
            if self.compressed {
                let data = self
                    .decoded
                    .get_or(u64::from(sector), || self.inflate_grain(sector))?;
                copy_from_unit(&data, within, out);
                return Ok(());
            }
            let at = u64::from(sector) * SECTOR + within;
            self.source.read_at(at, out).map_err(|e| {
                DiskError::corrupt(WHAT, format!("grain {index} at sector {sector}: {e}"))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::MemSource;

    fn header(gd_sector: u64) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..4].copy_from_slice(MAGIC);
        h[4..8].copy_from_slice(&1u32.to_le_bytes());
        h[12..20].copy_from_slice(&256u64.to_le_bytes()); // 128 KiB
        h[20..28].copy_from_slice(&128u64.to_le_bytes()); // 64 KiB grains
        h[44..48].copy_from_slice(&512u32.to_le_bytes());
        h[56..64].copy_from_slice(&gd_sector.to_le_bytes());
        h
    }

    #[test]
    fn sparse_extent_maps_grains() {
        let mut img = header(1);
        img.extend_from_slice(&{
            let mut gd = vec![0u8; 512];
            gd[..4].copy_from_slice(&2u32.to_le_bytes());
            gd
        });
        let mut gt = vec![0u8; 512 * 4];
        gt[4..8].copy_from_slice(&6u32.to_le_bytes()); // grain 1 at sector 6
        img.extend_from_slice(&gt);
        img.extend_from_slice(&[0x77u8; 65536]);
        let v = Vmdk::open(Arc::new(MemSource::new(img))).unwrap();
        assert_eq!(v.size(), 131072);
        let mut buf = vec![0u8; 131072];
        v.read_at(0, &mut buf).unwrap();
        assert!(buf[..65536].iter().all(|&b| b == 0));
        assert!(buf[65536..].iter().all(|&b| b == 0x77));
    }

    #[test]
    fn split_and_differencing_descriptors_are_unsupported() {
        let mut img = header(0);
        img[28..36].copy_from_slice(&1u64.to_le_bytes());
        img[36..44].copy_from_slice(&1u64.to_le_bytes());
        let mut d =
            b"# Disk DescriptorFile\nparentCID=12345678\nRW 10 SPARSE \"a.vmdk\"\n".to_vec();
        d.resize(512, 0);
        img.extend_from_slice(&d);
        assert!(matches!(
            Vmdk::open(Arc::new(MemSource::new(img))),
            Err(DiskError::Unsupported { .. })
        ));
    }
}
