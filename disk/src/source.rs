//! Block sources: anything that can read bytes at an offset.
//!
//! Every layer above (image formats, partitions, logical volumes) is itself a [`BlockSource`] over
//! the one below, so a filesystem parser never knows whether it reads a local file, a qcow2
//! cluster, an LVM segment or a cloud snapshot block.

use std::fs::File;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use crate::{DiskError, Result};

/// A read-only, random-access byte source of known size.
///
/// Implementations must be safe to share between threads: the scanner reads files in parallel.
pub trait BlockSource: Send + Sync {
    /// Size in bytes.
    fn size(&self) -> u64;

    /// Fill `buf` entirely with the bytes at `offset`.
    ///
    /// Fails with [`DiskError::OutOfBounds`] when `offset + buf.len()` is past [`size`](Self::size);
    /// a short read is never returned.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// The ranges that hold data, when the source knows (EBS lists only written blocks; a sparse
    /// image knows its unallocated clusters). `None` means "assume everything". Bytes outside the
    /// ranges read as zeros.
    fn allocated_ranges(&self) -> Option<Vec<Range<u64>>> {
        None
    }
}

impl<T: BlockSource + ?Sized> BlockSource for Arc<T> {
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        (**self).read_at(offset, buf)
    }
    fn allocated_ranges(&self) -> Option<Vec<Range<u64>>> {
        (**self).allocated_ranges()
    }
}

impl<T: BlockSource + ?Sized> BlockSource for Box<T> {
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        (**self).read_at(offset, buf)
    }
    fn allocated_ranges(&self) -> Option<Vec<Range<u64>>> {
        (**self).allocated_ranges()
    }
}

/// Check that `len` bytes at `offset` fit in `size`; the common bounds check of every source.
pub fn check_bounds(offset: u64, len: usize, size: u64) -> Result<()> {
    let len = len as u64;
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(DiskError::OutOfBounds { offset, len, size }),
    }
}

/// An in-memory source; used by tests and fuzz targets.
#[derive(Clone)]
pub struct MemSource(pub Arc<[u8]>);

impl MemSource {
    /// A source holding `bytes`.
    pub fn new(bytes: impl Into<Arc<[u8]>>) -> Self {
        MemSource(bytes.into())
    }
}

impl BlockSource for MemSource {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_bounds(offset, buf.len(), self.size())?;
        let start = offset as usize;
        buf.copy_from_slice(&self.0[start..start + buf.len()]);
        Ok(())
    }
}

/// A local image file or block device, read with positional reads (no shared cursor).
pub struct FileSource {
    file: File,
    size: u64,
}

impl FileSource {
    /// Open `path` read-only. Block devices report their size by seeking to the end.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        use std::io::{Seek, SeekFrom};
        let mut file =
            File::open(path.as_ref()).map_err(|source| DiskError::Io { offset: 0, source })?;
        let size = file
            .seek(SeekFrom::End(0))
            .map_err(|source| DiskError::Io { offset: 0, source })?;
        Ok(FileSource { file, size })
    }
}

impl BlockSource for FileSource {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        check_bounds(offset, buf.len(), self.size)?;
        self.file
            .read_exact_at(buf, offset)
            .map_err(|source| DiskError::Io { offset, source })
    }
}

/// A window `[start, start + len)` of another source: a partition, an LVM segment's extent.
pub struct Slice<S> {
    inner: S,
    start: u64,
    len: u64,
}

impl<S: BlockSource> Slice<S> {
    /// Fails when the window does not fit inside `inner` (a partition table pointing past the end).
    pub fn new(inner: S, start: u64, len: u64) -> Result<Self> {
        let end = start
            .checked_add(len)
            .ok_or_else(|| DiskError::corrupt("slice", "start + length overflows"))?;
        if end > inner.size() {
            return Err(DiskError::OutOfBounds {
                offset: start,
                len,
                size: inner.size(),
            });
        }
        Ok(Slice { inner, start, len })
    }
}

impl<S: BlockSource> BlockSource for Slice<S> {
    fn size(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_bounds(offset, buf.len(), self.len)?;
        self.inner.read_at(self.start + offset, buf)
    }
}

/// A read cache in front of a slow source (a cloud snapshot read over HTTP, EBS direct reads).
///
/// The source is cut into aligned blocks of `block_size` bytes; a read fetches the blocks it
/// touches that are not cached and copies from them. Memory is bounded by `capacity` bytes.
/// The cache is split into shards, each behind its own lock and chosen by block number, so
/// parallel readers of different blocks do not serialize; a fetch from the inner source happens
/// outside every lock (two threads missing the same block may both fetch it, which is cheaper than
/// making one wait on a network round trip while holding a lock).
pub struct CachedSource<S> {
    inner: S,
    block_size: u64,
    shards: Vec<std::sync::Mutex<CacheShard>>,
    blocks_per_shard: usize,
}

struct CacheShard {
    /// Block number → (contents, last use).
    blocks: std::collections::HashMap<u64, (Arc<[u8]>, u64)>,
    clock: u64,
}

impl<S: BlockSource> CachedSource<S> {
    /// Number of shards: enough that a handful of threads rarely meet on one lock.
    const SHARDS: usize = 16;

    /// Cache `inner` in blocks of `block_size` bytes (clamped to 4 KiB..=16 MiB and rounded up to
    /// a power of two), keeping at most about `capacity` bytes (at least one block per shard).
    pub fn new(inner: S, block_size: u64, capacity: u64) -> Self {
        let block_size = block_size.clamp(4096, 16 << 20).next_power_of_two();
        let blocks = (capacity / block_size).max(Self::SHARDS as u64);
        let blocks_per_shard = usize::try_from(blocks / Self::SHARDS as u64)
            .unwrap_or(usize::MAX)
            .max(1);
        let shards = (0..Self::SHARDS)
            .map(|_| {
                std::sync::Mutex::new(CacheShard {
                    blocks: std::collections::HashMap::new(),
                    clock: 0,
                })
            })
            .collect();
        CachedSource {
            inner,
            block_size,
            shards,
            blocks_per_shard,
        }
    }

    /// The block `index`, from the cache or fetched from the inner source.
    fn block(&self, index: u64) -> Result<Arc<[u8]>> {
        let shard = &self.shards[(index % Self::SHARDS as u64) as usize];
        {
            let mut guard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let shard = &mut *guard;
            shard.clock += 1;
            if let Some((data, used)) = shard.blocks.get_mut(&index) {
                *used = shard.clock;
                return Ok(data.clone());
            }
        }
        let start = index * self.block_size;
        let len = self.block_size.min(self.inner.size().saturating_sub(start));
        let mut data = vec![0u8; len as usize];
        self.inner.read_at(start, &mut data)?;
        let data: Arc<[u8]> = data.into();
        let mut guard = shard.lock().unwrap_or_else(|e| e.into_inner());
        let shard = &mut *guard;
        if shard.blocks.len() >= self.blocks_per_shard {
            // Least recently used; shards are small, so a scan is cheaper than an ordered index.
            if let Some(&victim) = shard
                .blocks
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k)
            {
                shard.blocks.remove(&victim);
            }
        }
        shard.clock += 1;
        let clock = shard.clock;
        shard.blocks.insert(index, (data.clone(), clock));
        Ok(data)
    }
}

impl<S: BlockSource> BlockSource for CachedSource<S> {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_bounds(offset, buf.len(), self.size())?;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let block = self.block(pos / self.block_size)?;
            let within = (pos % self.block_size) as usize;
            let avail = block.get(within..).unwrap_or_default();
            let n = avail.len().min(buf.len() - done);
            if n == 0 {
                return Err(DiskError::OutOfBounds {
                    offset: pos,
                    len: (buf.len() - done) as u64,
                    size: self.size(),
                });
            }
            buf[done..done + n].copy_from_slice(&avail[..n]);
            done += n;
        }
        Ok(())
    }
    fn allocated_ranges(&self) -> Option<Vec<Range<u64>>> {
        self.inner.allocated_ranges()
    }
}

/// A source that reads as zeros: the unallocated parts of sparse images, and tests.
#[derive(Clone, Copy, Debug)]
pub struct ZeroSource(pub u64);

impl BlockSource for ZeroSource {
    fn size(&self) -> u64 {
        self.0
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_bounds(offset, buf.len(), self.0)?;
        buf.fill(0);
        Ok(())
    }
}

/// Pieces of other sources laid end to end: a logical volume made of several segments.
pub struct ConcatSource {
    /// (start inside this source, length, source, offset inside that source), sorted, contiguous.
    pieces: Vec<(u64, u64, Arc<dyn BlockSource>, u64)>,
    size: u64,
}

impl ConcatSource {
    /// `pieces` are (source, offset inside it, length), in order. Fails when a piece does not fit
    /// in its source or the total overflows.
    pub fn new(pieces: Vec<(Arc<dyn BlockSource>, u64, u64)>) -> Result<Self> {
        let mut out = Vec::with_capacity(pieces.len());
        let mut size = 0u64;
        for (source, offset, len) in pieces {
            let end = offset
                .checked_add(len)
                .ok_or_else(|| DiskError::corrupt("concatenated source", "piece overflows"))?;
            if end > source.size() {
                return Err(DiskError::OutOfBounds {
                    offset,
                    len,
                    size: source.size(),
                });
            }
            if len == 0 {
                continue;
            }
            out.push((size, len, source, offset));
            size = size
                .checked_add(len)
                .ok_or_else(|| DiskError::corrupt("concatenated source", "total size overflows"))?;
        }
        Ok(ConcatSource { pieces: out, size })
    }
}

impl BlockSource for ConcatSource {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_bounds(offset, buf.len(), self.size)?;
        let mut done = 0usize;
        // The piece holding `offset`: the last one starting at or before it.
        let mut i = self
            .pieces
            .partition_point(|p| p.0 <= offset)
            .saturating_sub(1);
        while done < buf.len() {
            let pos = offset + done as u64;
            let Some((start, len, source, inner)) = self.pieces.get(i) else {
                return Err(DiskError::corrupt("concatenated source", "gap in pieces"));
            };
            let within = pos - start;
            let n = (len - within).min((buf.len() - done) as u64) as usize;
            source.read_at(inner + within, &mut buf[done..done + n])?;
            done += n;
            i += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_rejects_windows_past_the_end() {
        let mem = MemSource::new(vec![7u8; 100]);
        assert!(Slice::new(mem.clone(), 90, 20).is_err());
        assert!(Slice::new(mem.clone(), u64::MAX, 2).is_err());
        let s = Slice::new(mem, 10, 20).unwrap();
        let mut buf = [0u8; 20];
        s.read_at(0, &mut buf).unwrap();
        assert!(s.read_at(1, &mut buf).is_err());
    }

    /// Counts reads of the inner source, to see the cache work.
    struct Counting(MemSource, std::sync::atomic::AtomicUsize);
    impl BlockSource for Counting {
        fn size(&self) -> u64 {
            self.0.size()
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.0.read_at(offset, buf)
        }
    }

    #[test]
    fn cached_source_reads_what_the_inner_source_holds() {
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 256) as u8).collect();
        let inner = Counting(MemSource::new(bytes.clone()), Default::default());
        let cache = CachedSource::new(inner, 4096, 64 * 4096);
        for (offset, len) in [
            (0u64, 10usize),
            (4090, 20),
            (0, 100_000),
            (99_990, 10),
            (5000, 0),
        ] {
            let mut buf = vec![0u8; len];
            cache.read_at(offset, &mut buf).unwrap();
            assert_eq!(buf, bytes[offset as usize..offset as usize + len]);
        }
        let before = cache.inner.1.load(std::sync::atomic::Ordering::Relaxed);
        let mut buf = [0u8; 16];
        cache.read_at(4096 * 3, &mut buf).unwrap();
        assert_eq!(
            before,
            cache.inner.1.load(std::sync::atomic::Ordering::Relaxed)
        );
        assert!(cache.read_at(99_999, &mut buf).is_err());
    }

    #[test]
    fn cached_source_stays_bounded_and_is_shareable() {
        let bytes: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let cache = CachedSource::new(MemSource::new(bytes.clone()), 4096, 16 * 4096);
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let (cache, bytes) = (&cache, &bytes);
                s.spawn(move || {
                    for i in 0..200u64 {
                        let off = (i * 7919 + t * 104_729) % 990_000;
                        let mut buf = [0u8; 5000];
                        cache.read_at(off, &mut buf).unwrap();
                        assert_eq!(buf[..], bytes[off as usize..off as usize + 5000]);
                    }
                });
            }
        });
        let cached: usize = cache
            .shards
            .iter()
            .map(|s| s.lock().unwrap().blocks.len())
            .sum();
        assert!(cached <= 16, "{cached} blocks cached");
    }

    #[test]
    fn concat_source_joins_pieces() {
        let a: Arc<dyn BlockSource> = Arc::new(MemSource::new((0..100u8).collect::<Vec<_>>()));
        let c = ConcatSource::new(vec![
            (a.clone(), 50, 10),
            (a.clone(), 0, 5),
            (a.clone(), 90, 10),
        ])
        .unwrap();
        assert_eq!(c.size(), 25);
        let mut buf = [0u8; 25];
        c.read_at(0, &mut buf).unwrap();
        let want: Vec<u8> = (50..60).chain(0..5).chain(90..100).collect();
        assert_eq!(buf[..], want[..]);
        let mut buf = [0u8; 4];
        c.read_at(8, &mut buf).unwrap();
        assert_eq!(buf, [58, 59, 0, 1]);
        assert!(ConcatSource::new(vec![(a, 95, 10)]).is_err());
    }
}
