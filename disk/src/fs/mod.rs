//! The filesystem seam: every filesystem reader implements [`Filesystem`], and the generic walk
//! (`crate::walk`) turns any of them into a list of files with metadata and readable content.
//!
//! Readers expose nodes by an opaque [`NodeId`] (an inode number, an MFT record number, a FAT
//! directory-entry position — whatever identifies a file in that format). The walk does the
//! recursion, path building, cycle detection and limits, so a reader only answers "what is in this
//! directory", "what is this node" and "read this node's bytes".

use crate::Result;

/// Identifies a node inside one filesystem. Meaning is private to the reader.
pub type NodeId = u64;

/// What kind of node a directory entry or inode is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (never followed).
    Symlink,
    /// Device, FIFO, socket, or anything else that has no scannable content.
    Other,
}

/// A point in time as the filesystem stores it: seconds since the Unix epoch (may be negative)
/// and nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Whole seconds since 1970-01-01 00:00:00 UTC (negative before).
    pub secs: i64,
    /// Nanoseconds past `secs`, below 1,000,000,000.
    pub nanos: u32,
}

impl Timestamp {
    /// The time `secs` seconds and `nanos` nanoseconds after the Unix epoch.
    pub const fn new(secs: i64, nanos: u32) -> Self {
        Timestamp { secs, nanos }
    }

    /// Windows FILETIME (100 ns ticks since 1601-01-01 UTC), as NTFS stores it.
    pub fn from_filetime(ticks: u64) -> Self {
        const EPOCH_DIFF_SECS: i64 = 11_644_473_600;
        let secs = (ticks / 10_000_000) as i64 - EPOCH_DIFF_SECS;
        let nanos = ((ticks % 10_000_000) * 100) as u32;
        Timestamp { secs, nanos }
    }
}

/// Metadata of one node. Fields a filesystem does not keep are `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// What kind of node this is.
    pub kind: FileKind,
    /// Logical size in bytes (for a sparse file, including holes).
    pub size: u64,
    /// Permission bits and file type bits as in `st_mode` (e.g. `0o100644`), where kept.
    pub mode: Option<u32>,
    /// Owner user id, where kept.
    pub uid: Option<u32>,
    /// Owner group id, where kept.
    pub gid: Option<u32>,
    /// Last content modification (`mtime`).
    pub modified: Option<Timestamp>,
    /// Last access (`atime`).
    pub accessed: Option<Timestamp>,
    /// Last inode change (`ctime`; NTFS: MFT record change).
    pub changed: Option<Timestamp>,
    /// Creation (birth) time.
    pub created: Option<Timestamp>,
    /// Hard-link count, where kept.
    pub nlink: Option<u32>,
    /// Set when the content cannot be read by design (NTFS compressed or EFS-encrypted file,
    /// btrfs compression this reader lacks, …): the walk reports the file as skipped with this
    /// reason instead of reading it.
    pub unreadable: Option<&'static str>,
}

impl Metadata {
    /// Metadata with only a kind and size; readers fill in the rest.
    pub fn new(kind: FileKind, size: u64) -> Self {
        Metadata {
            kind,
            size,
            mode: None,
            uid: None,
            gid: None,
            modified: None,
            accessed: None,
            changed: None,
            created: None,
            nlink: None,
            unreadable: None,
        }
    }
}

/// One entry of a directory listing. `.` and `..` are never returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The name as text; bytes that are not valid UTF-8 (or unpaired UTF-16 surrogates) are
    /// replaced by U+FFFD. Never contains `/` or NUL.
    pub name: String,
    /// The node the entry names.
    pub node: NodeId,
    /// The kind if the directory entry records it (ext4 and XFS file-type fields), so the walk can
    /// skip a metadata lookup; `None` means "ask [`Filesystem::metadata`]".
    pub kind: Option<FileKind>,
}

/// Random-access content of one open file.
pub trait FileContent: Send {
    /// Logical size in bytes.
    fn size(&self) -> u64;
    /// Read up to `buf.len()` bytes at `offset`; returns how many were read, 0 at or past the end.
    /// Holes read as zeros.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize>;
}

/// How many bytes a read of `len` at `offset` returns from a file of `size` bytes: 0 at or past
/// the end — the one clamp every [`FileContent::read_at`] starts with.
pub(crate) fn readable(size: u64, offset: u64, len: usize) -> usize {
    if offset >= size {
        0
    } else {
        (len as u64).min(size - offset) as usize
    }
}

/// A read-only filesystem.
pub trait Filesystem: Send + Sync {
    /// Short lowercase name: `ext2`, `ext3`, `ext4`, `xfs`, `ntfs`, `vfat`, `btrfs`.
    fn kind(&self) -> &'static str;
    /// Volume label, if set.
    fn label(&self) -> Option<String>;
    /// The root directory.
    fn root(&self) -> NodeId;
    /// Entries of the directory `dir`, excluding `.` and `..`.
    fn read_dir(&self, dir: NodeId) -> Result<Vec<DirEntry>>;
    /// Metadata of `node`.
    fn metadata(&self, node: NodeId) -> Result<Metadata>;
    /// Open `node` (a regular file) for reading.
    fn open(&self, node: NodeId) -> Result<Box<dyn FileContent + '_>>;
    /// Target of the symlink `node`, as stored (never followed).
    fn read_link(&self, node: NodeId) -> Result<String>;
}

/// Adapts a [`FileContent`] to [`std::io::Read`] for sequential consumers (hashing, scanning).
pub struct ContentReader<'a> {
    content: Box<dyn FileContent + 'a>,
    pos: u64,
}

impl<'a> ContentReader<'a> {
    /// Read `content` from its start.
    pub fn new(content: Box<dyn FileContent + 'a>) -> Self {
        ContentReader { content, pos: 0 }
    }
}

impl std::io::Read for ContentReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self
            .content
            .read_at(self.pos, buf)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        self.pos += n as u64;
        Ok(n)
    }
}

pub mod btrfs;
pub mod ext4;
pub(crate) mod extents;
pub mod fat;
pub mod ntfs;
pub mod xfs;
