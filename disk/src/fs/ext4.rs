//! ext2/3/4 reader.
//!
//! Reads the superblock, group descriptors (32- and 64-byte, `meta_bg`), inodes (128 bytes and
//! larger, with extra timestamp bits), block maps and extent trees, inline data, linear and htree
//! directories (read linearly: htree interior blocks look like empty dirent blocks), inline
//! directories and fast and slow symlinks. When the `needs_recovery` flag is set, committed jbd2
//! transactions are replayed in memory (see [`journal`]): reads of a block the journal holds a
//! newer copy of come from the journal.
//!
//! Every on-disk number is treated as hostile: bounds are checked, arithmetic is checked, tree
//! depths, block counts and sizes are capped.

mod journal;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::bytes::{Fields, le_u16, le_u32};
use crate::fs::extents::{BlockReader, Extent, ExtentFile};
use crate::fs::{DirEntry, FileContent, FileKind, Filesystem, Metadata, NodeId, Timestamp};
use crate::source::BlockSource;
use crate::{DiskError, Result};

const WHAT: &str = "ext4";
/// Fields of ext4 structures (little-endian).
const LE: Fields = Fields::le(WHAT);

/// Largest directory read (bytes).
const MAX_DIR_SIZE: u64 = 256 << 20;
/// Longest symlink target read (bytes).
const MAX_SYMLINK: u64 = 64 << 10;
/// Deepest extent tree accepted (the kernel allows 5).
const MAX_EXTENT_DEPTH: u16 = 5;
/// Most extent-tree or indirect blocks read to map one file.
const MAX_MAP_BLOCKS: usize = 1 << 20;
/// Most runs kept for one file.
const MAX_RUNS: usize = 4 << 20;

// Superblock feature flags.
const COMPAT_HAS_JOURNAL: u32 = 0x4;
const INCOMPAT_FILETYPE: u32 = 0x2;
const INCOMPAT_RECOVER: u32 = 0x4;
const INCOMPAT_JOURNAL_DEV: u32 = 0x8;
const INCOMPAT_META_BG: u32 = 0x10;
const INCOMPAT_EXTENTS: u32 = 0x40;
const INCOMPAT_64BIT: u32 = 0x80;
const INCOMPAT_FLEX_BG: u32 = 0x200;
const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;

// Inode flags.
const FL_ENCRYPT: u32 = 0x800;
const FL_EXTENTS: u32 = 0x8_0000;
const FL_INLINE_DATA: u32 = 0x1000_0000;

const ROOT_INO: u64 = 2;

/// True when `head` (the first [`crate::volume::DETECT_LEN`] bytes of a volume, or fewer)
/// holds a ext2/3/4 superblock.
pub fn detect(head: &[u8]) -> bool {
    let Some(sb) = head.get(1024..2048) else {
        return false;
    };
    let magic = le_u16(sb, 0x38).unwrap_or(0);
    let log = le_u32(sb, 0x18).unwrap_or(u32::MAX);
    let bpg = le_u32(sb, 0x20).unwrap_or(0);
    let ipg = le_u32(sb, 0x28).unwrap_or(0);
    magic == 0xEF53 && log <= 6 && bpg != 0 && ipg != 0
}

/// A ext2/3/4 filesystem, read-only.
pub struct Ext4 {
    source: Arc<dyn BlockSource>,
    block_size: u64,
    blocks_count: u64,
    first_data_block: u64,
    blocks_per_group: u64,
    inodes_per_group: u64,
    inodes_count: u64,
    inode_size: usize,
    desc_size: usize,
    group_count: u64,
    first_meta_bg: u64,
    compat: u32,
    incompat: u32,
    ro_compat: u32,
    label: Option<String>,
    /// Blocks the journal holds newer committed copies of: block → (byte offset of the copy in
    /// the source, whether its first 4 bytes were escaped).
    overlay: HashMap<u64, journal::Copy>,
}

/// A parsed inode.
struct Inode {
    ino: u64,
    raw: Vec<u8>,
    mode: u16,
    flags: u32,
    size: u64,
}

impl Inode {
    fn kind(&self) -> FileKind {
        match self.mode & 0o170000 {
            0o100000 => FileKind::File,
            0o040000 => FileKind::Dir,
            0o120000 => FileKind::Symlink,
            _ => FileKind::Other,
        }
    }
    fn i_block(&self) -> &[u8] {
        self.raw.get(0x28..0x64).unwrap_or(&[])
    }
}

impl Ext4 {
    /// Open the ext2/3/4 filesystem that `source` holds (one whole volume), validating its
    /// superblock.
    pub fn open(source: Arc<dyn BlockSource>) -> Result<Self> {
        let mut sb = vec![0u8; 1024];
        source.read_at(1024, &mut sb)?;
        if LE.u16(&sb, 0x38)? != 0xEF53 {
            return Err(DiskError::corrupt("ext4 superblock", "bad magic"));
        }
        let log = LE.u32(&sb, 0x18)?;
        if log > 6 {
            return Err(DiskError::corrupt(
                "ext4 superblock",
                format!("block size 2^(10+{log}) out of range"),
            ));
        }
        let block_size = 1024u64 << log;
        let compat = LE.u32(&sb, 0x5C)?;
        let incompat = LE.u32(&sb, 0x60)?;
        let ro_compat = LE.u32(&sb, 0x64)?;
        let mut blocks_count = LE.u32(&sb, 0x4)? as u64;
        if incompat & INCOMPAT_64BIT != 0 {
            blocks_count |= (LE.u32(&sb, 0x150)? as u64) << 32;
        }
        let first_data_block = LE.u32(&sb, 0x14)? as u64;
        let blocks_per_group = LE.u32(&sb, 0x20)? as u64;
        let inodes_per_group = LE.u32(&sb, 0x28)? as u64;
        let inodes_count = LE.u32(&sb, 0x0)? as u64;
        if blocks_per_group == 0 || inodes_per_group == 0 || blocks_per_group > block_size * 8 * 8 {
            return Err(DiskError::corrupt(
                "ext4 superblock",
                format!("blocks per group {blocks_per_group}, inodes per group {inodes_per_group}"),
            ));
        }
        if blocks_count <= first_data_block {
            return Err(DiskError::corrupt(
                "ext4 superblock",
                format!("block count {blocks_count} not above first data block {first_data_block}"),
            ));
        }
        let rev = LE.u32(&sb, 0x4C)?;
        let inode_size = if rev == 0 {
            128
        } else {
            LE.u16(&sb, 0x58)? as usize
        };
        if inode_size < 128 || !inode_size.is_power_of_two() || inode_size as u64 > block_size {
            return Err(DiskError::corrupt(
                "ext4 superblock",
                format!("inode size {inode_size}"),
            ));
        }
        let desc_size = if incompat & INCOMPAT_64BIT != 0 {
            let d = LE.u16(&sb, 0xFE)? as usize;
            if d < 32 || !d.is_power_of_two() || d as u64 > block_size {
                return Err(DiskError::corrupt(
                    "ext4 superblock",
                    format!("group descriptor size {d}"),
                ));
            }
            d
        } else {
            32
        };
        let group_count = (blocks_count - first_data_block).div_ceil(blocks_per_group);
        let max_inodes = group_count.saturating_mul(inodes_per_group);
        if inodes_count == 0 || inodes_count > max_inodes {
            return Err(DiskError::corrupt(
                "ext4 superblock",
                format!(
                    "{inodes_count} inodes but {group_count} groups of {inodes_per_group} inodes"
                ),
            ));
        }
        let name = sb.get(0x78..0x88).unwrap_or(&[]);
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        let label = (!name.is_empty()).then(|| String::from_utf8_lossy(name).into_owned());
        let first_meta_bg = LE.u32(&sb, 0x104)? as u64;
        let mut fs = Ext4 {
            source,
            block_size,
            blocks_count,
            first_data_block,
            blocks_per_group,
            inodes_per_group,
            inodes_count,
            inode_size,
            desc_size,
            group_count,
            first_meta_bg,
            compat,
            incompat,
            ro_compat,
            label,
            overlay: HashMap::new(),
        };
        if incompat & INCOMPAT_JOURNAL_DEV != 0 {
            return Err(DiskError::unsupported(
                "ext4",
                "external journal device, not a filesystem",
            ));
        }
        if incompat & INCOMPAT_RECOVER != 0 {
            let journal_ino = LE.u32(&sb, 0xE0)? as u64;
            let journal_dev = LE.u32(&sb, 0xE4)?;
            if compat & COMPAT_HAS_JOURNAL == 0 || journal_ino == 0 || journal_dev != 0 {
                tracing::warn!(
                    "ext4: needs_recovery set but no internal journal; reading as-is (recent changes may be missing)"
                );
            } else {
                match journal::replay(&fs, journal_ino) {
                    Ok(overlay) => {
                        tracing::info!(blocks = overlay.len(), "ext4: replayed journal in memory");
                        fs.overlay = overlay;
                    }
                    Err(e) => tracing::warn!(
                        "ext4: journal replay failed ({e}); reading as-is (recent changes may be missing)"
                    ),
                }
            }
        }
        // The root must be a readable directory, or this is not a usable filesystem.
        let root = fs.inode(ROOT_INO)?;
        if root.kind() != FileKind::Dir {
            return Err(DiskError::corrupt("ext4 root inode", "not a directory"));
        }
        Ok(fs)
    }

    /// Read `buf.len()` bytes at byte offset `offset`, preferring journal copies of blocks.
    fn read_bytes(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        if self.overlay.is_empty() {
            return self.source.read_at(offset, buf);
        }
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset
                .checked_add(done as u64)
                .ok_or_else(|| DiskError::corrupt(WHAT, "offset overflows"))?;
            let block = pos / self.block_size;
            let within = pos % self.block_size;
            let n = ((self.block_size - within) as usize).min(buf.len() - done);
            let out = &mut buf[done..done + n];
            match self.overlay.get(&block) {
                Some(copy) => copy.read(self, within, out)?,
                None => self.source.read_at(pos, out)?,
            }
            done += n;
        }
        Ok(())
    }

    /// Byte offset of block `block`, checked.
    fn block_offset(&self, block: u64) -> Result<u64> {
        if block >= self.blocks_count {
            return Err(DiskError::corrupt(
                WHAT,
                format!("block {block} past the end ({} blocks)", self.blocks_count),
            ));
        }
        // Checked to the block's end, so any offset inside the block fits too.
        block
            .checked_add(1)
            .and_then(|b| b.checked_mul(self.block_size))
            .map(|end| end - self.block_size)
            .ok_or_else(|| DiskError::corrupt(WHAT, format!("block {block} overflows")))
    }

    fn read_block(&self, block: u64) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; self.block_size as usize];
        self.read_bytes(self.block_offset(block)?, &mut buf)?;
        Ok(buf)
    }

    fn has_super(&self, group: u64) -> bool {
        if self.ro_compat & RO_COMPAT_SPARSE_SUPER == 0 || group <= 1 {
            return true;
        }
        for base in [3u64, 5, 7] {
            let mut p = base;
            while p < group {
                p = p.saturating_mul(base);
            }
            if p == group {
                return true;
            }
        }
        false
    }

    /// The descriptor of block group `group`.
    fn group_desc(&self, group: u64) -> Result<Vec<u8>> {
        if group >= self.group_count {
            return Err(DiskError::corrupt(
                "ext4 group descriptor",
                format!("group {group} past {} groups", self.group_count),
            ));
        }
        let per_block = self.block_size / self.desc_size as u64;
        let meta_group = group / per_block;
        let block = if self.incompat & INCOMPAT_META_BG != 0 && meta_group >= self.first_meta_bg {
            let first = meta_group * per_block;
            first
                .checked_mul(self.blocks_per_group)
                .and_then(|b| b.checked_add(self.first_data_block))
                .and_then(|b| b.checked_add(u64::from(self.has_super(first))))
        } else {
            self.first_data_block.checked_add(1 + meta_group)
        }
        .ok_or_else(|| DiskError::corrupt("ext4 group descriptor", "location overflows"))?;
        let offset = self.block_offset(block)? + (group % per_block) * self.desc_size as u64;
        let mut desc = vec![0u8; self.desc_size];
        self.read_bytes(offset, &mut desc)?;
        Ok(desc)
    }

    fn inode(&self, ino: u64) -> Result<Inode> {
        if ino == 0 || ino > self.inodes_count {
            return Err(DiskError::corrupt(
                "ext4 inode",
                format!(
                    "inode number {ino} out of range (1..={})",
                    self.inodes_count
                ),
            ));
        }
        let group = (ino - 1) / self.inodes_per_group;
        let index = (ino - 1) % self.inodes_per_group;
        let desc = self.group_desc(group)?;
        let mut table = LE.u32(&desc, 0x8)? as u64;
        if self.desc_size >= 64 {
            table |= (LE.u32(&desc, 0x28)? as u64) << 32;
        }
        let offset = self
            .block_offset(table)?
            .checked_add(index * self.inode_size as u64)
            .ok_or_else(|| DiskError::corrupt("ext4 inode", "offset overflows"))?;
        let mut raw = vec![0u8; self.inode_size];
        self.read_bytes(offset, &mut raw)?;
        let mode = LE.u16(&raw, 0)?;
        let flags = LE.u32(&raw, 0x20)?;
        let size = LE.u32(&raw, 0x4)? as u64 | ((LE.u32(&raw, 0x6C)? as u64) << 32);
        Ok(Inode {
            ino,
            raw,
            mode,
            flags,
            size,
        })
    }

    /// Bytes of the inode after the 128-byte base that it actually uses (`i_extra_isize`).
    fn extra_end(&self, inode: &Inode) -> usize {
        if self.inode_size <= 128 {
            return 128;
        }
        let extra = le_u16(&inode.raw, 0x80).unwrap_or(0) as usize;
        (128 + extra).min(self.inode_size)
    }

    fn time(&self, inode: &Inode, base: usize, extra: Option<usize>) -> Option<Timestamp> {
        let secs = le_u32(&inode.raw, base)? as i32 as i64;
        let end = self.extra_end(inode);
        match extra {
            Some(off) if off + 4 <= end => {
                let x = le_u32(&inode.raw, off)?;
                let epoch = (x & 3) as i64;
                let nanos = (x >> 2).min(999_999_999);
                Some(Timestamp::new(secs + (epoch << 32), nanos))
            }
            _ => Some(Timestamp::new(secs, 0)),
        }
    }

    /// In-inode extended attribute `system.<name>` (index 7), if present.
    fn inline_xattr(&self, inode: &Inode, want: &[u8]) -> Result<Option<Vec<u8>>> {
        let start = self.extra_end(inode);
        let Some(area) = inode.raw.get(start..) else {
            return Ok(None);
        };
        if area.len() < 4 || LE.u32(area, 0)? != 0xEA02_0000 {
            return Ok(None);
        }
        let entries = &area[4..];
        let mut off = 0usize;
        while off + 16 <= entries.len() {
            if LE.u32(entries, off)? == 0 {
                break;
            }
            let name_len = LE.u8(entries, off)? as usize;
            let index = LE.u8(entries, off + 1)?;
            let value_offs = LE.u16(entries, off + 2)? as usize;
            let value_inum = LE.u32(entries, off + 4)?;
            let value_size = LE.u32(entries, off + 8)? as usize;
            let name = LE.slice(entries, off + 16, name_len)?;
            if index == 7 && name == want {
                if value_inum != 0 {
                    return Err(DiskError::unsupported(
                        "ext4 xattr",
                        "inline data value in an EA inode",
                    ));
                }
                let value = entries
                    .get(value_offs..value_offs.saturating_add(value_size))
                    .ok_or_else(|| {
                        DiskError::corrupt(
                            "ext4 xattr",
                            format!(
                                "inode {}: value of {value_size} bytes at {value_offs} past the inode",
                                inode.ino
                            ),
                        )
                    })?;
                return Ok(Some(value.to_vec()));
            }
            off += (16 + name_len + 3) & !3;
        }
        Ok(None)
    }

    /// The whole inline data of an `EXT4_INLINE_DATA_FL` inode: `i_block` then `system.data`.
    fn inline_data(&self, inode: &Inode) -> Result<Vec<u8>> {
        let mut data = inode.i_block().to_vec();
        if let Some(more) = self.inline_xattr(inode, b"data")? {
            data.extend_from_slice(&more);
        }
        Ok(data)
    }

    /// Map a file's logical blocks below `nblocks` to physical runs.
    fn map(&self, inode: &Inode, nblocks: u64) -> Result<Vec<Extent>> {
        let mut runs = Vec::new();
        if inode.flags & FL_EXTENTS != 0 {
            let mut visited = HashSet::new();
            self.map_extents(
                inode,
                inode.i_block(),
                None,
                MAX_EXTENT_DEPTH + 1,
                nblocks,
                &mut visited,
                &mut runs,
            )?;
        } else {
            let mut reads = 0usize;
            let ib = inode.i_block();
            for i in 0..12u64 {
                let b = LE.u32(ib, i as usize * 4)? as u64;
                if b != 0 && i < nblocks {
                    push_run(&mut runs, i, b, 1, false)?;
                }
            }
            let per = self.block_size / 4;
            let mut start = 12u64;
            for level in 1..=3u32 {
                let b = LE.u32(ib, (11 + level as usize) * 4)? as u64;
                let span = per.saturating_pow(level);
                if b != 0 && start < nblocks {
                    self.map_indirect(b, level, start, nblocks, &mut reads, &mut runs)?;
                }
                start = start.saturating_add(span);
            }
        }
        runs.sort_by_key(|r| r.logical);
        Ok(runs)
    }

    fn map_indirect(
        &self,
        block: u64,
        level: u32,
        start: u64,
        nblocks: u64,
        reads: &mut usize,
        runs: &mut Vec<Extent>,
    ) -> Result<()> {
        *reads += 1;
        if *reads > MAX_MAP_BLOCKS {
            return Err(DiskError::Limit(format!(
                "ext4 block map needs more than {MAX_MAP_BLOCKS} indirect blocks"
            )));
        }
        let buf = self.read_block(block)?;
        let per = self.block_size / 4;
        let span = per.saturating_pow(level - 1);
        for i in 0..per {
            let logical = start.saturating_add(i.saturating_mul(span));
            if logical >= nblocks {
                break;
            }
            let b = LE.u32(&buf, i as usize * 4)? as u64;
            if b == 0 {
                continue;
            }
            if level == 1 {
                push_run(runs, logical, b, 1, false)?;
            } else {
                self.map_indirect(b, level - 1, logical, nblocks, reads, runs)?;
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn map_extents(
        &self,
        inode: &Inode,
        node: &[u8],
        expect_depth: Option<u16>,
        budget: u16,
        nblocks: u64,
        visited: &mut HashSet<u64>,
        runs: &mut Vec<Extent>,
    ) -> Result<()> {
        let bad = |detail: String| {
            DiskError::corrupt("ext4 extent tree", format!("inode {}: {detail}", inode.ino))
        };
        if LE.u16(node, 0)? != 0xF30A {
            return Err(bad("bad extent header magic".into()));
        }
        let entries = LE.u16(node, 2)? as usize;
        let depth = LE.u16(node, 6)?;
        if depth >= budget || depth > MAX_EXTENT_DEPTH {
            return Err(bad(format!("depth {depth} too deep")));
        }
        if let Some(d) = expect_depth
            && d != depth
        {
            return Err(bad(format!("node depth {depth}, parent expects {d}")));
        }
        if 12 + entries * 12 > node.len() {
            return Err(bad(format!("{entries} entries do not fit the node")));
        }
        for i in 0..entries {
            let e = 12 + i * 12;
            let logical = LE.u32(node, e)? as u64;
            if depth == 0 {
                let raw_len = LE.u16(node, e + 4)? as u64;
                let phys = ((LE.u16(node, e + 6)? as u64) << 32) | LE.u32(node, e + 8)? as u64;
                let (len, zero) = if raw_len > 32768 {
                    (raw_len - 32768, true)
                } else {
                    (raw_len, false)
                };
                if len == 0 || logical >= nblocks {
                    continue;
                }
                push_run(runs, logical, phys, len, zero)?;
            } else {
                let child = ((LE.u16(node, e + 8)? as u64) << 32) | LE.u32(node, e + 4)? as u64;
                if !visited.insert(child) {
                    return Err(bad(format!("block {child} referenced twice (cycle)")));
                }
                if visited.len() > MAX_MAP_BLOCKS {
                    return Err(DiskError::Limit(format!(
                        "ext4 extent tree of inode {} has more than {MAX_MAP_BLOCKS} nodes",
                        inode.ino
                    )));
                }
                if logical >= nblocks {
                    continue;
                }
                let buf = self.read_block(child)?;
                self.map_extents(inode, &buf, Some(depth - 1), depth, nblocks, visited, runs)?;
            }
        }
        Ok(())
    }

    /// Open the content of `inode` (file, directory or symlink data), mapping its blocks once.
    fn content(&self, inode: &Inode, size: u64) -> Result<ExtentFile<'_, Ext4>> {
        if inode.flags & FL_INLINE_DATA != 0 {
            let mut data = self.inline_data(inode)?;
            if size > data.len() as u64 {
                return Err(DiskError::corrupt(
                    "ext4 inline data",
                    format!(
                        "inode {}: size {size} larger than the {} inline bytes",
                        inode.ino,
                        data.len()
                    ),
                ));
            }
            data.truncate(size as usize);
            return Ok(ExtentFile::inline(self, size, data));
        }
        let nblocks = size.div_ceil(self.block_size);
        Ok(ExtentFile::mapped(self, size, self.map(inode, nblocks)?))
    }

    /// Whole content of a small node (directory, symlink) into memory, capped at `cap` bytes.
    fn read_all(&self, inode: &Inode, cap: u64, what: &'static str) -> Result<Vec<u8>> {
        if inode.size > cap {
            return Err(DiskError::Limit(format!(
                "{what} of inode {} is {} bytes (limit {cap})",
                inode.ino, inode.size
            )));
        }
        self.content(inode, inode.size)?.read_to_end()
    }

    /// Parse dirents in `buf` (one directory block or inline region) into `out`.
    fn parse_dirents(&self, dir: u64, buf: &[u8], out: &mut Vec<DirEntry>) -> Result<()> {
        let filetype = self.incompat & INCOMPAT_FILETYPE != 0;
        let mut off = 0usize;
        while off + 8 <= buf.len() {
            let ino = LE.u32(buf, off)? as u64;
            let raw = LE.u16(buf, off + 4)? as usize;
            let rec_len = if self.block_size >= 65536 && (raw == 65535 || raw == 0) {
                65536
            } else if self.block_size >= 65536 {
                (raw & 65532) | ((raw & 3) << 16)
            } else {
                raw
            };
            if rec_len < 8 || !rec_len.is_multiple_of(4) || off + rec_len > buf.len() {
                return Err(DiskError::corrupt(
                    "ext4 directory entry",
                    format!(
                        "directory inode {dir}: rec_len {rec_len} at offset {off} of a {}-byte block",
                        buf.len()
                    ),
                ));
            }
            let name_len = LE.u8(buf, off + 6)? as usize;
            let ftype = LE.u8(buf, off + 7)?;
            let name_len = if filetype {
                name_len
            } else {
                name_len | (ftype as usize) << 8
            };
            if ino != 0 && name_len > 0 {
                if 8 + name_len > rec_len {
                    return Err(DiskError::corrupt(
                        "ext4 directory entry",
                        format!(
                            "directory inode {dir}: name of {name_len} bytes in a {rec_len}-byte entry"
                        ),
                    ));
                }
                let name = &buf[off + 8..off + 8 + name_len];
                if name != b"." && name != b".." {
                    let kind = if filetype {
                        match ftype {
                            1 => Some(FileKind::File),
                            2 => Some(FileKind::Dir),
                            7 => Some(FileKind::Symlink),
                            3..=6 => Some(FileKind::Other),
                            _ => None,
                        }
                    } else {
                        None
                    };
                    out.push(DirEntry {
                        name: String::from_utf8_lossy(name).into_owned(),
                        node: ino,
                        kind,
                    });
                }
            }
            off += rec_len;
        }
        Ok(())
    }
}

fn push_run(
    runs: &mut Vec<Extent>,
    logical: u64,
    physical: u64,
    len: u64,
    zero: bool,
) -> Result<()> {
    if let Some(last) = runs.last_mut()
        && !zero
        && !last.zero
        && last.logical.checked_add(last.len) == Some(logical)
        && last.physical.checked_add(last.len) == Some(physical)
    {
        last.len += len;
        return Ok(());
    }
    if runs.len() >= MAX_RUNS {
        return Err(DiskError::Limit(format!(
            "ext4 file maps to more than {MAX_RUNS} pieces"
        )));
    }
    runs.push(Extent {
        logical,
        physical,
        len,
        zero,
    });
    Ok(())
}

impl BlockReader for Ext4 {
    fn block_size(&self) -> u64 {
        self.block_size
    }

    const SPLIT_AT_BLOCKS: bool = false;

    fn read_blocks(&self, block: u64, within: u64, out: &mut [u8]) -> Result<()> {
        // The whole piece must lie inside the filesystem.
        let last = block.saturating_add((within + out.len() as u64 - 1) / self.block_size);
        self.block_offset(last)?;
        self.read_bytes(self.block_offset(block)? + within, out)
    }
}

impl Filesystem for Ext4 {
    fn kind(&self) -> &'static str {
        if self.incompat & (INCOMPAT_EXTENTS | INCOMPAT_64BIT | INCOMPAT_FLEX_BG) != 0 {
            "ext4"
        } else if self.compat & COMPAT_HAS_JOURNAL != 0 {
            "ext3"
        } else {
            "ext2"
        }
    }

    fn label(&self) -> Option<String> {
        self.label.clone()
    }

    fn root(&self) -> NodeId {
        ROOT_INO
    }

    fn read_dir(&self, dir: NodeId) -> Result<Vec<DirEntry>> {
        let inode = self.inode(dir)?;
        if inode.kind() != FileKind::Dir {
            return Err(DiskError::NotFound(format!(
                "ext4 inode {dir} is not a directory"
            )));
        }
        if inode.flags & FL_ENCRYPT != 0 {
            return Err(DiskError::unsupported(
                "ext4 directory",
                format!("inode {dir} is encrypted"),
            ));
        }
        let mut out = Vec::new();
        if inode.flags & FL_INLINE_DATA != 0 {
            // 4 bytes of parent inode, then dirents in the rest of i_block, then in system.data.
            let ib = inode.i_block();
            self.parse_dirents(dir, ib.get(4..).unwrap_or(&[]), &mut out)?;
            if let Some(more) = self.inline_xattr(&inode, b"data")? {
                self.parse_dirents(dir, &more, &mut out)?;
            }
            return Ok(out);
        }
        if inode.size > MAX_DIR_SIZE {
            return Err(DiskError::Limit(format!(
                "directory inode {dir} is {} bytes (limit {MAX_DIR_SIZE})",
                inode.size
            )));
        }
        // One block at a time: a sparse (hostile) directory costs no memory.
        let mut file = self.content(&inode, inode.size)?;
        let mut block = vec![0u8; self.block_size as usize];
        let mut offset = 0u64;
        while offset < inode.size {
            let n = file.read_at(offset, &mut block)?;
            if n == 0 {
                break;
            }
            self.parse_dirents(dir, &block[..n], &mut out)?;
            offset += n as u64;
        }
        Ok(out)
    }

    fn metadata(&self, node: NodeId) -> Result<Metadata> {
        let inode = self.inode(node)?;
        let raw = &inode.raw;
        let kind = inode.kind();
        let mut size = inode.size;
        if kind == FileKind::Other {
            size = 0;
        }
        let mut meta = Metadata::new(kind, size);
        meta.mode = Some(inode.mode as u32);
        meta.uid = Some(LE.u16(raw, 0x2)? as u32 | (LE.u16(raw, 0x78)? as u32) << 16);
        meta.gid = Some(LE.u16(raw, 0x18)? as u32 | (LE.u16(raw, 0x7A)? as u32) << 16);
        meta.accessed = self.time(&inode, 0x8, Some(0x8C));
        meta.changed = self.time(&inode, 0xC, Some(0x84));
        meta.modified = self.time(&inode, 0x10, Some(0x88));
        if self.extra_end(&inode) >= 0x94 {
            meta.created = self.time(&inode, 0x90, Some(0x94));
        }
        meta.nlink = Some(LE.u16(raw, 0x1A)? as u32);
        if kind == FileKind::File && inode.flags & FL_ENCRYPT != 0 {
            meta.unreadable = Some("ext4 encrypted file");
        }
        Ok(meta)
    }

    fn open(&self, node: NodeId) -> Result<Box<dyn FileContent + '_>> {
        let inode = self.inode(node)?;
        if inode.kind() != FileKind::File {
            return Err(DiskError::NotFound(format!(
                "ext4 inode {node} is not a regular file"
            )));
        }
        if inode.flags & FL_ENCRYPT != 0 {
            return Err(DiskError::unsupported(
                "ext4 file",
                format!("inode {node} is encrypted"),
            ));
        }
        Ok(Box::new(self.content(&inode, inode.size)?))
    }

    fn read_link(&self, node: NodeId) -> Result<String> {
        let inode = self.inode(node)?;
        if inode.kind() != FileKind::Symlink {
            return Err(DiskError::NotFound(format!(
                "ext4 inode {node} is not a symlink"
            )));
        }
        if inode.size > MAX_SYMLINK {
            return Err(DiskError::Limit(format!(
                "symlink inode {node} target is {} bytes (limit {MAX_SYMLINK})",
                inode.size
            )));
        }
        let bytes = if inode.size < 60 && inode.flags & (FL_EXTENTS | FL_INLINE_DATA) == 0 {
            inode
                .i_block()
                .get(..inode.size as usize)
                .unwrap_or(&[])
                .to_vec()
        } else {
            self.read_all(&inode, MAX_SYMLINK, "symlink")?
        };
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}
