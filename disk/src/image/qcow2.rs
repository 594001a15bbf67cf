//! QEMU copy-on-write images, versions 2 and 3.
//!
//! A virtual offset splits into an L1 index, an L2 index and an offset inside a cluster; the L1
//! table (read once, capped) points at L2 tables (read entry by entry), whose entries point at
//! data clusters, mark them as zero, or point at deflate-compressed data. Backing files, external
//! data files, extended L2 entries, zstd compression and encryption are reported as unsupported.

use std::sync::Arc;

use miniz_oxide::inflate::{TINFLStatus, decompress_to_vec_with_limit};

use super::units::{DecodedCache, check_table_fits, copy_from_unit, for_each_unit, read_clamped};
use crate::bytes::{be_u32, be_u64};
use crate::source::{BlockSource, check_bounds};
use crate::{DiskError, Result};

/// `QFI\xfb` at offset 0.
pub const MAGIC: &[u8] = b"QFI\xfb";

const WHAT: &str = "qcow2";
/// Largest L1 table read into memory (32 MiB: 4 Mi entries, 256 TiB with 64 KiB clusters).
const MAX_L1_BYTES: u64 = 32 << 20;
/// Bits 9..=55 of L1 and standard L2 entries hold a host offset.
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const L2_COMPRESSED: u64 = 1 << 62;
const L2_ZERO: u64 = 1;

/// An opened qcow2 image.
pub struct Qcow2 {
    source: Arc<dyn BlockSource>,
    size: u64,
    cluster_bits: u32,
    l1: Vec<u64>,
    decoded: DecodedCache,
}

impl Qcow2 {
    /// Parse the header and L1 table of the qcow2 image in `source`.
    pub fn open(source: Arc<dyn BlockSource>) -> Result<Self> {
        let mut h = [0u8; 112];
        let n = h
            .len()
            .min(usize::try_from(source.size()).unwrap_or(h.len()));
        if n < 72 {
            return Err(DiskError::corrupt(WHAT, "header truncated"));
        }
        source.read_at(0, &mut h[..n])?;
        if &h[..4] != MAGIC {
            return Err(DiskError::corrupt(WHAT, "bad magic"));
        }
        let version = be_u32(&h, 4).unwrap_or(0);
        if !(2..=3).contains(&version) {
            return Err(DiskError::unsupported(
                WHAT,
                format!("version {version} (2 and 3 are supported)"),
            ));
        }
        if be_u64(&h, 8).unwrap_or(0) != 0 {
            return Err(DiskError::unsupported(
                WHAT,
                "image has a backing file (read the flattened image instead)",
            ));
        }
        let cluster_bits = be_u32(&h, 20).unwrap_or(0);
        if !(9..=21).contains(&cluster_bits) {
            return Err(DiskError::corrupt(
                WHAT,
                format!("cluster_bits {cluster_bits} outside 9..=21"),
            ));
        }
        let size = be_u64(&h, 24).unwrap_or(0);
        if be_u32(&h, 32).unwrap_or(0) != 0 {
            return Err(DiskError::unsupported(WHAT, "image is encrypted"));
        }
        let l1_size = u64::from(be_u32(&h, 36).unwrap_or(0));
        let l1_offset = be_u64(&h, 40).unwrap_or(0);
        if version >= 3 {
            if n < 104 {
                return Err(DiskError::corrupt(WHAT, "version 3 header truncated"));
            }
            let incompatible = be_u64(&h, 72).unwrap_or(0);
            let header_len = be_u32(&h, 100).unwrap_or(0);
            // Bit 0 dirty and bit 1 corrupt concern refcounts and writers, not reads.
            if incompatible & (1 << 2) != 0 {
                return Err(DiskError::unsupported(WHAT, "external data file"));
            }
            if incompatible & (1 << 4) != 0 {
                return Err(DiskError::unsupported(
                    WHAT,
                    "extended L2 entries (subclusters)",
                ));
            }
            if incompatible & (1 << 3) != 0 {
                let kind = if header_len > 104 { h[104] } else { 0 };
                if kind != 0 {
                    return Err(DiskError::unsupported(
                        WHAT,
                        format!("compression type {kind} (only deflate is supported; 1 is zstd)"),
                    ));
                }
            }
            let unknown = incompatible & !0x1f;
            if unknown != 0 {
                return Err(DiskError::unsupported(
                    WHAT,
                    format!("incompatible feature bits {unknown:#x}"),
                ));
            }
        }
        let cluster = 1u64 << cluster_bits;
        let l2_entries = cluster / 8;
        let needed = size.div_ceil(cluster).div_ceil(l2_entries);
        if l1_size < needed {
            return Err(DiskError::corrupt(
                WHAT,
                format!("L1 table has {l1_size} entries, {needed} needed for {size} bytes"),
            ));
        }
        if needed * 8 > MAX_L1_BYTES {
            return Err(DiskError::Limit(format!(
                "qcow2 L1 table of {needed} entries is larger than {MAX_L1_BYTES} bytes"
            )));
        }
        check_table_fits(source.as_ref(), WHAT, "L1 table", l1_offset, needed * 8)?;
        let mut raw = vec![0u8; (needed * 8) as usize];
        source.read_at(l1_offset, &mut raw).map_err(|e| {
            DiskError::corrupt(WHAT, format!("L1 table at {l1_offset} unreadable: {e}"))
        })?;
        let l1 = raw
            .chunks_exact(8)
            .map(|c| be_u64(c, 0).unwrap_or(0) & OFFSET_MASK)
            .collect();
        Ok(Qcow2 {
            source,
            size,
            cluster_bits,
            l1,
            decoded: DecodedCache::new(),
        })
    }

    fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// The L2 entry of virtual cluster `index`, 0 when its L2 table is unallocated.
    fn l2_entry(&self, index: u64) -> Result<u64> {
        let per_table = self.cluster_size() / 8;
        let l1_index = usize::try_from(index / per_table).unwrap_or(usize::MAX);
        let l2_offset = *self
            .l1
            .get(l1_index)
            .ok_or_else(|| DiskError::corrupt(WHAT, "cluster beyond the L1 table"))?;
        if l2_offset == 0 {
            return Ok(0);
        }
        let mut e = [0u8; 8];
        let at = l2_offset
            .checked_add((index % per_table) * 8)
            .ok_or_else(|| DiskError::corrupt(WHAT, "L2 offset overflows"))?;
        self.source
            .read_at(at, &mut e)
            .map_err(|err| DiskError::corrupt(WHAT, format!("L2 table at {l2_offset}: {err}")))?;
        Ok(u64::from_be_bytes(e))
    }

    /// Inflate the compressed cluster described by `entry`.
    fn decompress(&self, entry: u64) -> Result<Vec<u8>> {
        // Bits 0..x-1 hold the host offset, x..61 the count of additional 512-byte sectors.
        let x = 62 - (self.cluster_bits - 8);
        let host = entry & ((1u64 << x) - 1);
        let sectors = ((entry & ((1u64 << 62) - 1)) >> x) + 1;
        let len = sectors * 512 - (host % 512);
        let data = read_clamped(self.source.as_ref(), host, len)?;
        let cluster = self.cluster_size() as usize;
        match decompress_to_vec_with_limit(&data, cluster) {
            Ok(out) => Ok(out),
            // A cluster fills the limit exactly; trailing bytes of the last sector are padding.
            Err(e) if e.status == TINFLStatus::HasMoreOutput && e.output.len() == cluster => {
                Ok(e.output)
            }
            Err(e) => Err(DiskError::corrupt(
                WHAT,
                format!(
                    "compressed cluster at {host}: inflate failed ({:?})",
                    e.status
                ),
            )),
        }
    }
}

impl BlockSource for Qcow2 {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_bounds(offset, buf.len(), self.size)?;
        for_each_unit(offset, buf, self.cluster_size(), |index, within, out| {
            let entry = self.l2_entry(index)?;
            if entry & L2_COMPRESSED != 0 {
                let data = self.decoded.get_or(entry, || self.decompress(entry))?;
                copy_from_unit(&data, within, out);
                return Ok(());
            }
            let host = entry & OFFSET_MASK;
            if entry & L2_ZERO != 0 || host == 0 {
                out.fill(0);
                return Ok(());
            }
            self.source.read_at(host + within, out).map_err(|e| {
                DiskError::corrupt(WHAT, format!("data cluster at {host} unreadable: {e}"))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::MemSource;

    /// A tiny v3 image: 512-byte clusters, 4 clusters of virtual size, one L2 table.
    fn image(l2: [u64; 4], extra: &[u8]) -> Vec<u8> {
        let mut img = vec![0u8; 2048];
        img[..4].copy_from_slice(MAGIC);
        img[4..8].copy_from_slice(&3u32.to_be_bytes());
        img[20..24].copy_from_slice(&9u32.to_be_bytes());
        img[24..32].copy_from_slice(&2048u64.to_be_bytes());
        img[36..40].copy_from_slice(&1u32.to_be_bytes());
        img[40..48].copy_from_slice(&512u64.to_be_bytes());
        img[100..104].copy_from_slice(&104u32.to_be_bytes());
        img[512..520].copy_from_slice(&1024u64.to_be_bytes());
        for (i, e) in l2.iter().enumerate() {
            img[1024 + i * 8..1032 + i * 8].copy_from_slice(&e.to_be_bytes());
        }
        img.extend_from_slice(extra);
        img
    }

    #[test]
    fn reads_data_zero_and_unallocated_clusters() {
        let img = image([2048, L2_ZERO | 2048, 0, 2048], &[0xAB; 512]);
        let q = Qcow2::open(Arc::new(MemSource::new(img))).unwrap();
        assert_eq!(q.size(), 2048);
        let mut buf = vec![0u8; 2048];
        q.read_at(0, &mut buf).unwrap();
        assert!(buf[..512].iter().all(|&b| b == 0xAB));
        assert!(buf[512..1536].iter().all(|&b| b == 0));
        assert!(buf[1536..].iter().all(|&b| b == 0xAB));
        assert!(q.read_at(2040, &mut [0u8; 16]).is_err());
    }

    #[test]
    fn rejects_unsupported_features_and_bad_tables() {
        let mut img = image([0; 4], &[]);
        img[8..16].copy_from_slice(&1000u64.to_be_bytes());
        assert!(matches!(
            Qcow2::open(Arc::new(MemSource::new(img))),
            Err(DiskError::Unsupported { .. })
        ));
        let mut img = image([0; 4], &[]);
        img[72..80].copy_from_slice(&(1u64 << 4).to_be_bytes());
        assert!(matches!(
            Qcow2::open(Arc::new(MemSource::new(img))),
            Err(DiskError::Unsupported { .. })
        ));
        // Huge virtual size with a tiny L1 table.
        let mut img = image([0; 4], &[]);
        img[24..32].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(Qcow2::open(Arc::new(MemSource::new(img))).is_err());
        // Data cluster past the end of the file is an error on read, not a panic.
        let img = image([1 << 50, 0, 0, 0], &[]);
        let q = Qcow2::open(Arc::new(MemSource::new(img))).unwrap();
        assert!(q.read_at(0, &mut [0u8; 8]).is_err());
    }
}
