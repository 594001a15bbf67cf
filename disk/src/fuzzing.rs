//! Shared bodies of the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`) and of the corpus
//! regression test (`disk/tests/fuzz_corpus.rs`), so both exercise exactly the same code.
//!
//! Each body drives a parser as far as it will go on arbitrary bytes — open, walk, read every
//! file — with small limits, and ignores every error: the property checked is "no panic, no hang,
//! no unbounded allocation", not a result.

use std::ops::ControlFlow;
use std::sync::Arc;

use crate::Result;
use crate::fs::{FileKind, Filesystem};
use crate::source::{BlockSource, MemSource};
use crate::walk::{WalkLimits, walk};

/// Limits small enough that one fuzz input finishes in milliseconds.
pub fn fuzz_limits() -> WalkLimits {
    WalkLimits {
        max_depth: 32,
        max_nodes: 4096,
        max_path_len: 4096,
    }
}

/// Walk `fs` and read every regular file (at most 1 MiB of each).
pub fn exercise_fs(fs: &dyn Filesystem) {
    let mut files = Vec::new();
    let _ = walk(fs, &fuzz_limits(), |e| {
        if e.metadata.kind == FileKind::File && e.metadata.unreadable.is_none() {
            files.push(e.node);
        }
        ControlFlow::Continue(())
    });
    let mut buf = vec![0u8; 64 * 1024];
    for node in files {
        let Ok(mut content) = fs.open(node) else {
            continue;
        };
        let mut offset = 0u64;
        while offset < (1 << 20) {
            match content.read_at(offset, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => offset += n as u64,
            }
        }
    }
}

/// Open `data` as a volume with `open` and exercise the filesystem.
pub fn exercise_volume(
    data: &[u8],
    open: impl FnOnce(Arc<dyn BlockSource>) -> Result<Arc<dyn Filesystem>>,
) {
    let source: Arc<dyn BlockSource> = Arc::new(MemSource::new(data.to_vec()));
    if let Ok(fs) = open(source) {
        exercise_fs(fs.as_ref());
    }
}

/// Read a source end to end in 64 KiB steps (at most 64 MiB): drives image-format lookups.
pub fn exercise_source(source: &dyn BlockSource) {
    let mut buf = vec![0u8; 64 * 1024];
    let size = source.size().min(64 << 20);
    let mut offset = 0u64;
    while offset < size {
        let n = (size - offset).min(buf.len() as u64) as usize;
        if source.read_at(offset, &mut buf[..n]).is_err() {
            break;
        }
        offset += n as u64;
    }
}

/// The whole stack on arbitrary bytes: format, table, LVM, filesystems.
pub fn exercise_disk(data: &[u8]) {
    let source: Arc<dyn BlockSource> = Arc::new(MemSource::new(data.to_vec()));
    if let Ok(disk) = crate::volume::open_disk(source) {
        for v in disk.volumes {
            if let Some(fs) = v.fs {
                exercise_fs(fs.as_ref());
            }
        }
    }
}
