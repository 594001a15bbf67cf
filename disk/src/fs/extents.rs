//! Reading a file whose content is mapped as extents (runs of blocks), shared by the readers
//! that map files that way (ext2/3/4 block maps and extent trees, XFS extent lists and B+trees).
//!
//! A reader maps a file's logical blocks once into a sorted list of [`Extent`]s and hands it to
//! an [`ExtentFile`] with a [`BlockReader`] that knows where a physical block is; the file then
//! serves reads: extents are read from the reader, holes and uninitialized extents read as zeros,
//! and data stored inside the inode (ext4 inline data, XFS local format) is served from memory.

use crate::Result;
use crate::fs::FileContent;

/// One mapped piece of a file: `len` blocks from logical block `logical` at physical block
/// `physical` (in the filesystem's own numbering); `zero` for an uninitialized (ext4) or
/// unwritten (XFS) extent, which reads as zeros.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Extent {
    pub(crate) logical: u64,
    pub(crate) physical: u64,
    pub(crate) len: u64,
    pub(crate) zero: bool,
}

impl Extent {
    /// Physical block of logical block `lblock`, which this extent holds.
    pub(crate) fn physical_of(&self, lblock: u64) -> u64 {
        self.physical.saturating_add(lblock - self.logical)
    }
}

/// The extent of `extents` (sorted by logical block) that holds logical block `lblock`; else
/// (a hole) the index of the next extent, `extents.len()` if none.
pub(crate) fn lookup(extents: &[Extent], lblock: u64) -> std::result::Result<&Extent, usize> {
    let i = extents.partition_point(|e| e.logical <= lblock);
    i.checked_sub(1)
        .and_then(|i| extents.get(i))
        .filter(|e| lblock < e.logical.saturating_add(e.len))
        .ok_or(i)
}

/// A filesystem's blocks, as an [`ExtentFile`] reads them.
pub(crate) trait BlockReader: Sync {
    /// Block size in bytes.
    fn block_size(&self) -> u64;
    /// Whether a read is split at every block boundary (so that each piece is checked on its
    /// own), rather than served in one piece per extent.
    const SPLIT_AT_BLOCKS: bool;
    /// Read `out.len()` bytes starting `within` bytes into physical block `block`. The bytes lie
    /// inside one extent (and inside one block when [`Self::SPLIT_AT_BLOCKS`]); the reader
    /// checks that they lie inside the filesystem.
    fn read_blocks(&self, block: u64, within: u64, out: &mut [u8]) -> Result<()>;
}

/// The content of one open file: stored inside the inode, or mapped as extents sorted by
/// logical block.
pub(crate) struct ExtentFile<'a, R> {
    fs: &'a R,
    size: u64,
    inline: Option<Vec<u8>>,
    extents: Vec<Extent>,
}

impl<'a, R: BlockReader> ExtentFile<'a, R> {
    /// A file of `size` bytes held in memory (`data` has at least `size` bytes).
    pub(crate) fn inline(fs: &'a R, size: u64, data: Vec<u8>) -> Self {
        ExtentFile {
            fs,
            size,
            inline: Some(data),
            extents: Vec::new(),
        }
    }

    /// A file of `size` bytes mapped by `extents`, sorted by logical block.
    pub(crate) fn mapped(fs: &'a R, size: u64, extents: Vec<Extent>) -> Self {
        ExtentFile {
            fs,
            size,
            inline: None,
            extents,
        }
    }

    /// The whole content (the caller has capped the size).
    pub(crate) fn read_to_end(&mut self) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; self.size as usize];
        let mut done = 0;
        while done < buf.len() {
            let n = self.read_at(done as u64, &mut buf[done..])?;
            if n == 0 {
                break;
            }
            done += n;
        }
        Ok(buf)
    }
}

impl<R: BlockReader> FileContent for ExtentFile<'_, R> {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let want = super::readable(self.size, offset, buf.len());
        if want == 0 {
            return Ok(0);
        }
        let buf = &mut buf[..want];
        if let Some(data) = &self.inline {
            let start = offset as usize;
            buf.copy_from_slice(&data[start..start + want]);
            return Ok(want);
        }
        let bs = self.fs.block_size();
        let mut done = 0usize;
        while done < want {
            let pos = offset + done as u64;
            let lblock = pos / bs;
            let within = pos % bs;
            let left = (want - done) as u64;
            match lookup(&self.extents, lblock) {
                Ok(e) => {
                    let extent_end = e.logical.saturating_add(e.len).saturating_mul(bs);
                    let mut n = (extent_end - pos).min(left);
                    if R::SPLIT_AT_BLOCKS {
                        n = n.min(bs - within);
                    }
                    let out = &mut buf[done..done + n as usize];
                    if e.zero {
                        out.fill(0);
                    } else {
                        self.fs.read_blocks(e.physical_of(lblock), within, out)?;
                    }
                    done += n as usize;
                }
                Err(i) => {
                    // A hole: zeros up to the next extent.
                    let next = self
                        .extents
                        .get(i)
                        .map(|e| e.logical.saturating_mul(bs))
                        .unwrap_or(u64::MAX);
                    let n = (next - pos).min(left) as usize;
                    buf[done..done + n].fill(0);
                    done += n;
                }
            }
        }
        Ok(want)
    }
}
