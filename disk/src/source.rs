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
}
