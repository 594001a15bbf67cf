//! btrfs reader (not implemented yet).

use std::sync::Arc;

use crate::fs::{DirEntry, FileContent, Filesystem, Metadata, NodeId};
use crate::source::BlockSource;
use crate::{DiskError, Result};

/// True when `head` (the first [`crate::volume::DETECT_LEN`] bytes of a volume, or fewer)
/// holds a btrfs superblock.
pub fn detect(head: &[u8]) -> bool {
    let _ = head;
    false
}

/// A btrfs filesystem, read-only.
pub struct Btrfs {
    _source: Arc<dyn BlockSource>,
}

impl Btrfs {
    pub fn open(source: Arc<dyn BlockSource>) -> Result<Self> {
        let _ = source;
        Err(DiskError::unsupported(
            "btrfs",
            "reader not implemented yet",
        ))
    }
}

impl Filesystem for Btrfs {
    fn kind(&self) -> &'static str {
        "btrfs"
    }
    fn label(&self) -> Option<String> {
        None
    }
    fn root(&self) -> NodeId {
        0
    }
    fn read_dir(&self, _dir: NodeId) -> Result<Vec<DirEntry>> {
        Err(DiskError::unsupported(
            "btrfs",
            "reader not implemented yet",
        ))
    }
    fn metadata(&self, _node: NodeId) -> Result<Metadata> {
        Err(DiskError::unsupported(
            "btrfs",
            "reader not implemented yet",
        ))
    }
    fn open(&self, _node: NodeId) -> Result<Box<dyn FileContent + '_>> {
        Err(DiskError::unsupported(
            "btrfs",
            "reader not implemented yet",
        ))
    }
    fn read_link(&self, _node: NodeId) -> Result<String> {
        Err(DiskError::unsupported(
            "btrfs",
            "reader not implemented yet",
        ))
    }
}

/// Fuzz entry: open `data` as a btrfs volume and walk and read everything.
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    crate::fuzzing::exercise_volume(data, |s| Btrfs::open(s).map(|fs| Arc::new(fs) as _));
}
