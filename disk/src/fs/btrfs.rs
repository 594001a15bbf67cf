//! btrfs reader (single-device volumes: SINGLE and DUP profiles).
//!
//! Everything in btrfs is a copy-on-write B-tree of `(objectid, type, offset)` keys, addressed by
//! logical byte numbers that the chunk tree maps to device offsets. Opening goes: superblock →
//! `sys_chunk_array` (enough chunks to read the chunk tree) → chunk tree (all chunks) → root tree
//! → the default subvolume's fs tree. Files and directories are items of an fs tree keyed by
//! inode number: `INODE_ITEM` (metadata), `DIR_INDEX` (entries), `EXTENT_DATA` (content).
//!
//! Subvolumes (and snapshots) found inside the default subvolume are listed as directories and
//! walked, so a Fedora-style layout (`root`, `home` subvolumes under the top level) is scanned.
//! A node id is `(subvolume slot << 48) | inode number`, slot 0 being the default subvolume.
//!
//! Extents compressed with zlib are inflated (`miniz_oxide`); zstd and LZO extents fail the read
//! with an "unsupported" error. Checksums are not verified: a torn or hostile node is caught by
//! its header (logical address, level) and by the bounds checks of every item.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tracing::debug;

use crate::bytes::{le_i64, le_u16, le_u32, le_u64};
use crate::fs::{DirEntry, FileContent, FileKind, Filesystem, Metadata, NodeId, Timestamp};
use crate::source::BlockSource;
use crate::{DiskError, Result};

const SUPERBLOCK_OFFSET: u64 = 0x10000;
const MAGIC: &[u8; 8] = b"_BHRfS_M";

const FS_TREE_OBJECTID: u64 = 5;
const ROOT_TREE_DIR_OBJECTID: u64 = 6;
const FIRST_FREE_OBJECTID: u64 = 256;

const INODE_ITEM: u8 = 1;
const DIR_ITEM: u8 = 84;
const DIR_INDEX: u8 = 96;
const EXTENT_DATA: u8 = 108;
const ROOT_ITEM: u8 = 132;
const CHUNK_ITEM: u8 = 228;

const BLOCK_GROUP_RAID: u64 = 0x08 | 0x10 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400;

/// Deepest tree accepted (btrfs itself stops at 8 levels).
const MAX_LEVEL: u8 = 7;
/// Most nodes one search may visit.
const MAX_NODE_VISITS: usize = 200_000;
/// Most extents of one file and entries of one directory.
const MAX_EXTENTS: usize = 1 << 20;
const MAX_DIR_ENTRIES: usize = 4 << 20;
/// Largest compressed extent btrfs writes is 128 KiB, inflated at most 128 KiB.
const MAX_COMPRESSED_EXTENT: u64 = 128 * 1024;
/// Node cache size (entries).
const NODE_CACHE: usize = 256;
/// Subvolumes a walk can enter (slot numbers fit the 16 high bits of a node id).
const MAX_SUBVOLUMES: usize = 0xFFFF;
const INODE_MASK: u64 = (1 << 48) - 1;

fn corrupt(what: &'static str, detail: impl Into<String>) -> DiskError {
    DiskError::corrupt(what, detail)
}

/// A tree key, ordered as btrfs orders them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    objectid: u64,
    ty: u8,
    offset: u64,
}

impl Key {
    const fn new(objectid: u64, ty: u8, offset: u64) -> Key {
        Key {
            objectid,
            ty,
            offset,
        }
    }
    fn parse(b: &[u8], off: usize) -> Option<Key> {
        Some(Key {
            objectid: le_u64(b, off)?,
            ty: *b.get(off + 8)?,
            offset: le_u64(b, off + 9)?,
        })
    }
}

/// A chunk: `length` logical bytes from `logical` stored at `physical` on this device.
#[derive(Clone, Copy, Debug)]
struct Chunk {
    logical: u64,
    length: u64,
    physical: u64,
}

/// Parse a chunk item; RAID profiles and chunks on other devices are refused.
fn parse_chunk(logical: u64, b: &[u8]) -> Result<Chunk> {
    const WHAT: &str = "btrfs chunk item";
    let (Some(length), Some(ty), Some(num_stripes), Some(physical)) = (
        le_u64(b, 0),
        le_u64(b, 24),
        le_u16(b, 44),
        le_u64(b, 48 + 8),
    ) else {
        return Err(corrupt(WHAT, format!("chunk at {logical} truncated")));
    };
    if ty & BLOCK_GROUP_RAID != 0 {
        return Err(DiskError::unsupported(
            "btrfs chunk",
            format!("RAID profile {ty:#x} (only single and DUP are read)"),
        ));
    }
    if num_stripes == 0 || length == 0 || logical.checked_add(length).is_none() {
        return Err(corrupt(
            WHAT,
            format!("chunk at {logical}: {num_stripes} stripes, length {length}"),
        ));
    }
    Ok(Chunk {
        logical,
        length,
        physical,
    })
}

/// A parsed tree node: leaf items or internal key pointers.
enum Node {
    Leaf(Vec<(Key, Arc<[u8]>)>),
    Internal(Vec<(Key, u64)>),
}

/// A btrfs filesystem, read-only.
pub struct Btrfs {
    source: Arc<dyn BlockSource>,
    nodesize: u64,
    chunks: Vec<Chunk>,
    /// Root tree: (logical address, level).
    root_tree: (u64, u8),
    label: Option<String>,
    /// Subvolume slots: slot → (tree root address, level). Slot 0 is the default subvolume.
    subvolumes: Mutex<Vec<(u64, (u64, u8))>>,
    cache: Mutex<HashMap<u64, Arc<Node>>>,
}

/// True when `head` (the first [`crate::volume::DETECT_LEN`] bytes of a volume, or fewer)
/// holds a btrfs superblock.
pub fn detect(head: &[u8]) -> bool {
    head.get(0x10040..0x10048) == Some(MAGIC)
}

impl Btrfs {
    /// Open the btrfs filesystem that `source` holds (one whole volume), validating its
    /// superblock.
    pub fn open(source: Arc<dyn BlockSource>) -> Result<Self> {
        const WHAT: &str = "btrfs superblock";
        let mut sb = vec![0u8; 4096];
        source.read_at(SUPERBLOCK_OFFSET, &mut sb)?;
        if &sb[0x40..0x48] != MAGIC {
            return Err(corrupt(WHAT, "no btrfs magic at 64 KiB"));
        }
        let field = |off| le_u64(&sb, off).unwrap_or(0);
        let root = field(0x50);
        let chunk_root = field(0x58);
        let num_devices = field(0x88);
        let nodesize = u64::from(le_u32(&sb, 0x94).unwrap_or(0));
        let sys_len = le_u32(&sb, 0xA0).unwrap_or(0) as usize;
        let root_level = sb[0xC6];
        let chunk_level = sb[0xC7];
        if !nodesize.is_power_of_two() || !(4096..=65536).contains(&nodesize) {
            return Err(corrupt(WHAT, format!("node size {nodesize}")));
        }
        if num_devices != 1 {
            return Err(DiskError::unsupported(
                "btrfs volume",
                format!("{num_devices} devices (only single-device volumes are read)"),
            ));
        }
        if root_level > MAX_LEVEL || chunk_level > MAX_LEVEL {
            return Err(corrupt(WHAT, "tree level above 7"));
        }
        let label = {
            let raw = &sb[0x12B..0x12B + 256];
            let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
            let s = String::from_utf8_lossy(&raw[..end]).into_owned();
            (!s.is_empty()).then_some(s)
        };
        // Bootstrap chunks: (key, chunk item) pairs.
        let sys = sb
            .get(0x32B..0x32B + sys_len.min(2048))
            .ok_or_else(|| corrupt(WHAT, "sys_chunk_array size"))?;
        let mut chunks = Vec::new();
        let mut pos = 0usize;
        while pos + 17 <= sys.len() {
            let key = Key::parse(sys, pos).ok_or_else(|| corrupt(WHAT, "sys_chunk_array key"))?;
            pos += 17;
            let item = sys.get(pos..).unwrap_or(&[]);
            let stripes = usize::from(le_u16(item, 44).unwrap_or(0));
            let len = 48 + 32 * stripes;
            if key.ty != CHUNK_ITEM || item.len() < len {
                return Err(corrupt(WHAT, "sys_chunk_array entry"));
            }
            chunks.push(parse_chunk(key.offset, &item[..len])?);
            pos += len;
        }
        let mut fs = Btrfs {
            source,
            nodesize,
            chunks,
            root_tree: (root, root_level),
            label,
            subvolumes: Mutex::new(Vec::new()),
            cache: Mutex::new(HashMap::new()),
        };
        fs.sort_chunks();
        // The whole chunk tree.
        let mut all = Vec::new();
        fs.search(
            (chunk_root, chunk_level),
            Key::new(0, CHUNK_ITEM, 0),
            Key::new(u64::MAX, CHUNK_ITEM, u64::MAX),
            &mut |k, v| {
                if k.ty == CHUNK_ITEM {
                    all.push(parse_chunk(k.offset, v)?);
                }
                Ok(())
            },
        )?;
        if !all.is_empty() {
            fs.chunks = all;
            fs.sort_chunks();
        }
        fs.cache_clear();
        // The default subvolume: the `default` entry of the root tree directory, else FS_TREE.
        let mut default = FS_TREE_OBJECTID;
        fs.search(
            fs.root_tree,
            Key::new(ROOT_TREE_DIR_OBJECTID, DIR_ITEM, 0),
            Key::new(ROOT_TREE_DIR_OBJECTID, DIR_ITEM, u64::MAX),
            &mut |_, v| {
                for (location, _, name) in dir_items(v) {
                    if name == b"default" && location.objectid != 0 {
                        default = location.objectid;
                    }
                }
                Ok(())
            },
        )?;
        let tree = fs.subvolume_root(default)?;
        fs.subvolumes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((default, tree));
        debug!(nodesize, chunks = fs.chunks.len(), default, "btrfs volume");
        Ok(fs)
    }

    fn sort_chunks(&mut self) {
        self.chunks.sort_by_key(|c| c.logical);
    }

    fn cache_clear(&self) {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Device offset of `len` bytes at logical address `logical` (not crossing a chunk).
    fn physical(&self, logical: u64, len: u64) -> Result<u64> {
        let idx = self.chunks.partition_point(|c| c.logical <= logical);
        let chunk = idx
            .checked_sub(1)
            .and_then(|i| self.chunks.get(i))
            .filter(|c| {
                (logical - c.logical)
                    .checked_add(len)
                    .is_some_and(|end| end <= c.length)
            })
            .ok_or_else(|| {
                corrupt(
                    "btrfs chunk map",
                    format!("logical address {logical} (+{len}) is in no chunk"),
                )
            })?;
        chunk
            .physical
            .checked_add(logical - chunk.logical)
            .ok_or_else(|| corrupt("btrfs chunk map", "physical address overflows"))
    }

    /// Read logical bytes, possibly across chunks.
    fn read_logical(&self, logical: u64, buf: &mut [u8]) -> Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = logical
                .checked_add(done as u64)
                .ok_or_else(|| corrupt("btrfs extent", "address overflows"))?;
            let idx = self.chunks.partition_point(|c| c.logical <= at);
            let chunk = idx
                .checked_sub(1)
                .and_then(|i| self.chunks.get(i))
                .filter(|c| at - c.logical < c.length)
                .ok_or_else(|| {
                    corrupt(
                        "btrfs chunk map",
                        format!("logical address {at} is in no chunk"),
                    )
                })?;
            let n = ((chunk.length - (at - chunk.logical)) as usize).min(buf.len() - done);
            let phys = self.physical(at, n as u64)?;
            self.source.read_at(phys, &mut buf[done..done + n])?;
            done += n;
        }
        Ok(())
    }

    /// The tree node at `logical`, which must say it is at `level`.
    fn node(&self, logical: u64, level: u8) -> Result<Arc<Node>> {
        const WHAT: &str = "btrfs tree node";
        if let Some(n) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&logical)
        {
            return Ok(n.clone());
        }
        let mut b = vec![0u8; self.nodesize as usize];
        let phys = self.physical(logical, self.nodesize)?;
        self.source.read_at(phys, &mut b)?;
        let bytenr = le_u64(&b, 0x30).unwrap_or(0);
        let nritems = le_u32(&b, 0x60).unwrap_or(0) as usize;
        let got_level = b[0x64];
        if bytenr != logical || got_level != level {
            return Err(corrupt(
                WHAT,
                format!(
                    "node at {logical} says it is at {bytenr}, level {got_level} (expected level {level})"
                ),
            ));
        }
        const HEADER: usize = 0x65;
        let node = if level == 0 {
            if nritems > (b.len() - HEADER) / 25 {
                return Err(corrupt(WHAT, format!("leaf at {logical}: {nritems} items")));
            }
            let mut items = Vec::with_capacity(nritems);
            for i in 0..nritems {
                let at = HEADER + i * 25;
                let key = Key::parse(&b, at).ok_or_else(|| corrupt(WHAT, "item key"))?;
                let off = le_u32(&b, at + 17).unwrap_or(0) as usize;
                let size = le_u32(&b, at + 21).unwrap_or(0) as usize;
                let data = b
                    .get(HEADER + off..(HEADER + off).saturating_add(size))
                    .ok_or_else(|| {
                        corrupt(WHAT, format!("leaf at {logical}: item {i} out of bounds"))
                    })?;
                items.push((key, Arc::from(data)));
            }
            Node::Leaf(items)
        } else {
            if nritems > (b.len() - HEADER) / 33 {
                return Err(corrupt(
                    WHAT,
                    format!("node at {logical}: {nritems} pointers"),
                ));
            }
            let mut ptrs = Vec::with_capacity(nritems);
            for i in 0..nritems {
                let at = HEADER + i * 33;
                let key = Key::parse(&b, at).ok_or_else(|| corrupt(WHAT, "pointer key"))?;
                ptrs.push((key, le_u64(&b, at + 17).unwrap_or(0)));
            }
            Node::Internal(ptrs)
        };
        let node = Arc::new(node);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= NODE_CACHE {
            cache.clear();
        }
        cache.insert(logical, node.clone());
        Ok(node)
    }

    /// Call `visit` for every item with `lo <= key <= hi` in the tree rooted at `root`, in key
    /// order. Depth and node visits are bounded; a child must sit one level below its parent,
    /// so a node pointing at itself or an ancestor is refused.
    fn search(
        &self,
        root: (u64, u8),
        lo: Key,
        hi: Key,
        visit: &mut dyn FnMut(Key, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut visits = 0usize;
        self.search_node(root.0, root.1, lo, hi, visit, &mut visits)
    }

    fn search_node(
        &self,
        logical: u64,
        level: u8,
        lo: Key,
        hi: Key,
        visit: &mut dyn FnMut(Key, &[u8]) -> Result<()>,
        visits: &mut usize,
    ) -> Result<()> {
        *visits += 1;
        if *visits > MAX_NODE_VISITS {
            return Err(DiskError::Limit(format!(
                "btrfs search visited more than {MAX_NODE_VISITS} nodes"
            )));
        }
        if level > MAX_LEVEL {
            return Err(corrupt("btrfs tree node", format!("level {level}")));
        }
        let node = self.node(logical, level)?;
        match &*node {
            Node::Leaf(items) => {
                for (k, v) in items {
                    if *k > hi {
                        break;
                    }
                    if *k >= lo {
                        visit(*k, v)?;
                    }
                }
            }
            Node::Internal(ptrs) => {
                if level == 0 {
                    return Err(corrupt("btrfs tree node", "internal node at level 0"));
                }
                for (i, (k, child)) in ptrs.iter().enumerate() {
                    if *k > hi {
                        break;
                    }
                    // The child covers [k, next key); skip it when that ends before `lo`.
                    if let Some((next, _)) = ptrs.get(i + 1)
                        && *next <= lo
                    {
                        continue;
                    }
                    self.search_node(*child, level - 1, lo, hi, visit, visits)?;
                }
            }
        }
        Ok(())
    }

    /// Root (address, level) of subvolume tree `id`, from its ROOT_ITEM in the root tree.
    fn subvolume_root(&self, id: u64) -> Result<(u64, u8)> {
        let mut found = None;
        self.search(
            self.root_tree,
            Key::new(id, ROOT_ITEM, 0),
            Key::new(id, ROOT_ITEM, u64::MAX),
            &mut |_, v| {
                if let (Some(bytenr), Some(&level)) = (le_u64(v, 176), v.get(238)) {
                    found = Some((bytenr, level));
                }
                Ok(())
            },
        )?;
        let (bytenr, level) = found
            .ok_or_else(|| corrupt("btrfs root tree", format!("no ROOT_ITEM for tree {id}")))?;
        if level > MAX_LEVEL {
            return Err(corrupt(
                "btrfs root item",
                format!("tree {id} level {level}"),
            ));
        }
        Ok((bytenr, level))
    }

    /// Split a node id into (fs tree root, inode number).
    fn locate(&self, node: NodeId) -> Result<((u64, u8), u64)> {
        let slot = (node >> 48) as usize;
        let subvols = self.subvolumes.lock().unwrap_or_else(|e| e.into_inner());
        let (_, tree) = subvols
            .get(slot)
            .ok_or_else(|| DiskError::NotFound(format!("btrfs node {node:#x}")))?;
        Ok((*tree, node & INODE_MASK))
    }

    /// Node id of the root directory of subvolume `id`, registering it.
    fn subvolume_node(&self, id: u64) -> Result<NodeId> {
        {
            let subvols = self.subvolumes.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(slot) = subvols.iter().position(|(s, _)| *s == id) {
                return Ok(((slot as u64) << 48) | FIRST_FREE_OBJECTID);
            }
            if subvols.len() >= MAX_SUBVOLUMES {
                return Err(DiskError::Limit(format!(
                    "more than {MAX_SUBVOLUMES} btrfs subvolumes"
                )));
            }
        }
        let tree = self.subvolume_root(id)?;
        let mut subvols = self.subvolumes.lock().unwrap_or_else(|e| e.into_inner());
        let slot = match subvols.iter().position(|(s, _)| *s == id) {
            Some(slot) => slot,
            None => {
                subvols.push((id, tree));
                subvols.len() - 1
            }
        };
        Ok(((slot as u64) << 48) | FIRST_FREE_OBJECTID)
    }

    fn inode_item(&self, node: NodeId) -> Result<Vec<u8>> {
        let (tree, ino) = self.locate(node)?;
        let mut found = None;
        self.search(
            tree,
            Key::new(ino, INODE_ITEM, 0),
            Key::new(ino, INODE_ITEM, 0),
            &mut |_, v| {
                found = Some(v.to_vec());
                Ok(())
            },
        )?;
        match found {
            Some(v) if v.len() >= 160 => Ok(v),
            Some(_) => Err(corrupt(
                "btrfs inode item",
                format!("inode {ino} truncated"),
            )),
            None => Err(DiskError::NotFound(format!("btrfs inode {ino}"))),
        }
    }

    /// The file extents of `node`, in file-offset order.
    fn extents(&self, node: NodeId) -> Result<Vec<(u64, Arc<[u8]>)>> {
        let (tree, ino) = self.locate(node)?;
        let mut out = Vec::new();
        self.search(
            tree,
            Key::new(ino, EXTENT_DATA, 0),
            Key::new(ino, EXTENT_DATA, u64::MAX),
            &mut |k, v| {
                if out.len() >= MAX_EXTENTS {
                    return Err(DiskError::Limit(format!(
                        "btrfs inode {ino}: more than {MAX_EXTENTS} extents"
                    )));
                }
                out.push((k.offset, Arc::from(v)));
                Ok(())
            },
        )?;
        Ok(out)
    }
}

/// The `(location, file type, name)` entries packed in one DIR_ITEM / DIR_INDEX item.
fn dir_items(v: &[u8]) -> Vec<(Key, u8, &[u8])> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos + 30 <= v.len() {
        let (Some(location), Some(data_len), Some(name_len), Some(&ty)) = (
            Key::parse(v, pos),
            le_u16(v, pos + 25),
            le_u16(v, pos + 27),
            v.get(pos + 29),
        ) else {
            break;
        };
        let name_start = pos + 30;
        let Some(name) = v.get(name_start..name_start + usize::from(name_len)) else {
            break;
        };
        out.push((location, ty, name));
        pos = name_start + usize::from(name_len) + usize::from(data_len);
    }
    out
}

fn timestamp(v: &[u8], off: usize) -> Option<Timestamp> {
    let secs = le_i64(v, off)?;
    let nanos = le_u32(v, off + 8)?;
    (nanos < 1_000_000_000).then_some(Timestamp::new(secs, nanos))
}

fn kind_of_mode(mode: u32) -> FileKind {
    match mode & 0o170000 {
        0o100000 => FileKind::File,
        0o040000 => FileKind::Dir,
        0o120000 => FileKind::Symlink,
        _ => FileKind::Other,
    }
}

impl Filesystem for Btrfs {
    fn kind(&self) -> &'static str {
        "btrfs"
    }

    fn label(&self) -> Option<String> {
        self.label.clone()
    }

    fn root(&self) -> NodeId {
        FIRST_FREE_OBJECTID
    }

    fn read_dir(&self, dir: NodeId) -> Result<Vec<DirEntry>> {
        let (tree, ino) = self.locate(dir)?;
        let slot = dir & !INODE_MASK;
        let mut raw = Vec::new();
        self.search(
            tree,
            Key::new(ino, DIR_INDEX, 0),
            Key::new(ino, DIR_INDEX, u64::MAX),
            &mut |_, v| {
                for (location, ty, name) in dir_items(v) {
                    if raw.len() >= MAX_DIR_ENTRIES {
                        return Err(DiskError::Limit(format!(
                            "btrfs directory {ino}: more than {MAX_DIR_ENTRIES} entries"
                        )));
                    }
                    raw.push((location, ty, name.to_vec()));
                }
                Ok(())
            },
        )?;
        let mut out = Vec::with_capacity(raw.len());
        for (location, ty, name) in raw {
            let name: String = String::from_utf8_lossy(&name)
                .chars()
                .map(|c| {
                    if c == '/' || c == '\0' {
                        char::REPLACEMENT_CHARACTER
                    } else {
                        c
                    }
                })
                .collect();
            if name.is_empty() || name == "." || name == ".." {
                continue;
            }
            let node = match location.ty {
                INODE_ITEM if location.objectid <= INODE_MASK => slot | location.objectid,
                ROOT_ITEM => match self.subvolume_node(location.objectid) {
                    Ok(n) => n,
                    Err(e) => {
                        debug!(error = %e, name, "btrfs subvolume skipped");
                        continue;
                    }
                },
                _ => continue,
            };
            let kind = match ty {
                1 => Some(FileKind::File),
                2 => Some(FileKind::Dir),
                7 => Some(FileKind::Symlink),
                _ => Some(FileKind::Other),
            };
            out.push(DirEntry { name, node, kind });
        }
        Ok(out)
    }

    fn metadata(&self, node: NodeId) -> Result<Metadata> {
        let v = self.inode_item(node)?;
        let mode = le_u32(&v, 52).unwrap_or(0);
        let kind = kind_of_mode(mode);
        let size = if kind == FileKind::Dir {
            0
        } else {
            le_u64(&v, 16).unwrap_or(0)
        };
        let mut m = Metadata::new(kind, size);
        m.mode = Some(mode);
        m.uid = le_u32(&v, 44);
        m.gid = le_u32(&v, 48);
        m.nlink = le_u32(&v, 40);
        m.accessed = timestamp(&v, 112);
        m.changed = timestamp(&v, 124);
        m.modified = timestamp(&v, 136);
        m.created = timestamp(&v, 148);
        Ok(m)
    }

    fn open(&self, node: NodeId) -> Result<Box<dyn FileContent + '_>> {
        let inode = self.inode_item(node)?;
        let size = le_u64(&inode, 16).unwrap_or(0);
        if kind_of_mode(le_u32(&inode, 52).unwrap_or(0)) != FileKind::File {
            return Err(DiskError::NotFound(format!(
                "btrfs node {node:#x} is not a regular file"
            )));
        }
        let extents = if size == 0 {
            Vec::new()
        } else {
            self.extents(node)?
        };
        Ok(Box::new(BtrfsFile {
            fs: self,
            size,
            extents,
            inflated: None,
        }))
    }

    fn read_link(&self, node: NodeId) -> Result<String> {
        let extents = self.extents(node)?;
        let (_, v) = extents
            .first()
            .ok_or_else(|| corrupt("btrfs symlink", format!("node {node:#x} has no extent")))?;
        if v.get(20) != Some(&0) || v.get(16) != Some(&0) {
            return Err(corrupt(
                "btrfs symlink",
                format!("node {node:#x}: target is not an uncompressed inline extent"),
            ));
        }
        // mkfs.btrfs --rootdir stores the terminating NUL; the kernel does not.
        let target = v.get(21..).unwrap_or(&[]);
        let end = target.iter().position(|&c| c == 0).unwrap_or(target.len());
        Ok(String::from_utf8_lossy(&target[..end]).into_owned())
    }
}

/// An open btrfs file: its EXTENT_DATA items, read on demand.
struct BtrfsFile<'a> {
    fs: &'a Btrfs,
    size: u64,
    extents: Vec<(u64, Arc<[u8]>)>,
    /// The last inflated compressed extent: (its logical address, its bytes).
    inflated: Option<(u64, Vec<u8>)>,
}

impl BtrfsFile<'_> {
    fn inflate(
        &mut self,
        what: &'static str,
        compression: u8,
        data: &[u8],
        key: u64,
    ) -> Result<()> {
        if self.inflated.as_ref().is_some_and(|(k, _)| *k == key) {
            return Ok(());
        }
        match compression {
            1 => {
                let out = miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(
                    data,
                    MAX_COMPRESSED_EXTENT as usize,
                )
                .map_err(|e| corrupt(what, format!("zlib stream: {:?}", e.status)))?;
                self.inflated = Some((key, out));
                Ok(())
            }
            2 => Err(DiskError::unsupported("btrfs compressed extent", "LZO")),
            3 => Err(DiskError::unsupported("btrfs compressed extent", "zstd")),
            c => Err(corrupt(what, format!("compression type {c}"))),
        }
    }

    /// Fill `buf` (file bytes at `pos`) from extent `idx`; returns bytes filled.
    fn read_extent(&mut self, idx: usize, pos: u64, buf: &mut [u8]) -> Result<usize> {
        const WHAT: &str = "btrfs file extent";
        let (start, v) = self.extents[idx].clone();
        let compression = v.get(16).copied().unwrap_or(0);
        if v.get(17).copied().unwrap_or(0) != 0 || le_u16(&v, 18).unwrap_or(0) != 0 {
            return Err(DiskError::unsupported(WHAT, "encrypted or encoded extent"));
        }
        let within = pos - start;
        match v.get(20).copied() {
            Some(0) => {
                let data = v.get(21..).unwrap_or(&[]);
                let plain: &[u8] = if compression == 0 {
                    data
                } else {
                    self.inflate(WHAT, compression, data, u64::MAX - idx as u64)?;
                    self.inflated
                        .as_ref()
                        .map_or(&[][..], |(_, d)| d.as_slice())
                };
                let n = plain.len().saturating_sub(within as usize).min(buf.len());
                if within >= plain.len() as u64 {
                    buf.fill(0);
                    return Ok(buf.len());
                }
                buf[..n].copy_from_slice(&plain[within as usize..within as usize + n]);
                buf[n..].fill(0);
                Ok(buf.len())
            }
            Some(1 | 2) => {
                let (Some(disk), Some(disk_len), Some(offset), Some(num)) = (
                    le_u64(&v, 21),
                    le_u64(&v, 29),
                    le_u64(&v, 37),
                    le_u64(&v, 45),
                ) else {
                    return Err(corrupt(WHAT, "regular extent item truncated"));
                };
                if within >= num {
                    buf.fill(0);
                    return Ok(buf.len());
                }
                let n = ((num - within) as usize).min(buf.len());
                let prealloc = v.get(20) == Some(&2);
                if disk == 0 || prealloc {
                    buf[..n].fill(0);
                } else if compression == 0 {
                    let at = disk
                        .checked_add(offset)
                        .and_then(|a| a.checked_add(within))
                        .ok_or_else(|| corrupt(WHAT, "address overflows"))?;
                    self.fs.read_logical(at, &mut buf[..n])?;
                } else {
                    if disk_len > MAX_COMPRESSED_EXTENT {
                        return Err(corrupt(
                            WHAT,
                            format!("compressed extent of {disk_len} bytes"),
                        ));
                    }
                    if compression == 1 && self.inflated.as_ref().is_none_or(|(k, _)| *k != disk) {
                        let mut raw = vec![0u8; disk_len as usize];
                        self.fs.read_logical(disk, &mut raw)?;
                        self.inflate(WHAT, compression, &raw, disk)?;
                    } else if compression != 1 {
                        self.inflate(WHAT, compression, &[], disk)?;
                    }
                    let plain = self
                        .inflated
                        .as_ref()
                        .map_or(&[][..], |(_, d)| d.as_slice());
                    let from = offset.saturating_add(within);
                    let src = usize::try_from(from)
                        .ok()
                        .and_then(|f| plain.get(f..))
                        .unwrap_or(&[]);
                    let m = src.len().min(n);
                    buf[..m].copy_from_slice(&src[..m]);
                    buf[m..n].fill(0);
                }
                Ok(n)
            }
            other => Err(corrupt(WHAT, format!("extent type {other:?}"))),
        }
    }
}

impl FileContent for BtrfsFile<'_> {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let want = super::readable(self.size, offset, buf.len());
        if want == 0 {
            return Ok(0);
        }
        let buf = &mut buf[..want];
        // The extent covering `offset`: the last starting at or before it.
        let idx = self.extents.partition_point(|(start, _)| *start <= offset);
        if idx == 0 {
            // A hole before the first extent.
            let end = self.extents.first().map_or(u64::MAX, |(s, _)| *s);
            let n = ((end - offset) as usize).min(want);
            buf[..n].fill(0);
            return Ok(n);
        }
        let next = self.extents.get(idx).map_or(u64::MAX, |(s, _)| *s);
        let limit = ((next - offset) as usize).min(want);
        let n = self.read_extent(idx - 1, offset, &mut buf[..limit])?;
        Ok(n.max(1).min(limit))
    }
}
