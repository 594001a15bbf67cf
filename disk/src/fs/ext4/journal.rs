//! In-memory replay of an internal jbd2 journal.
//!
//! A filesystem with `needs_recovery` set was not cleanly unmounted: committed metadata may still
//! sit only in the journal. Like the kernel's recovery, this scans the log from `s_start`, keeps
//! the transactions that reached their commit block, applies revoke records, and yields, for every
//! journaled block, where its newest committed copy lives. Nothing is written: the reader consults
//! that overlay on every read.

use std::collections::HashMap;

use super::Ext4;
use crate::bytes::{Fields, be_u16};
use crate::fs::extents::{Extent, lookup};
use crate::{DiskError, Result};

const WHAT: &str = "jbd2 journal";
/// Fields of jbd2 structures (big-endian).
const BE: Fields = Fields::be("jbd2");
const MAGIC: u32 = 0xC03B_3998;

const DESCRIPTOR: u32 = 1;
const COMMIT: u32 = 2;
const SUPERBLOCK_V1: u32 = 3;
const SUPERBLOCK_V2: u32 = 4;
const REVOKE: u32 = 5;

const INCOMPAT_64BIT: u32 = 0x2;
const INCOMPAT_CSUM_V2: u32 = 0x8;
const INCOMPAT_CSUM_V3: u32 = 0x10;

const FLAG_ESCAPE: u32 = 1;
const FLAG_SAME_UUID: u32 = 2;
const FLAG_LAST_TAG: u32 = 8;

/// Largest journal scanned, in blocks.
const MAX_JOURNAL_BLOCKS: u64 = 1 << 22;

/// Where the newest committed copy of one filesystem block is.
#[derive(Clone, Copy, Debug)]
pub(super) struct Copy {
    /// Byte offset of the copy in the source.
    offset: u64,
    /// The journal zeroed the copy's first 4 bytes because they were the jbd2 magic.
    escaped: bool,
}

impl Copy {
    /// Read `out.len()` bytes at `within` the block.
    pub(super) fn read(&self, fs: &Ext4, within: u64, out: &mut [u8]) -> Result<()> {
        let offset = self
            .offset
            .checked_add(within)
            .ok_or_else(|| DiskError::corrupt(WHAT, "offset overflows"))?;
        fs.source.read_at(offset, out)?;
        if self.escaped {
            let magic = MAGIC.to_be_bytes();
            for (i, b) in out.iter_mut().enumerate() {
                let at = within as usize + i;
                if at >= 4 {
                    break;
                }
                *b = magic[at];
            }
        }
        Ok(())
    }
}

/// The journal file: its logical blocks mapped to byte offsets.
struct Log<'a> {
    fs: &'a Ext4,
    runs: Vec<Extent>,
}

impl Log<'_> {
    fn offset(&self, lblock: u64) -> Result<u64> {
        let run = lookup(&self.runs, lblock)
            .ok()
            .filter(|r| !r.zero)
            .ok_or_else(|| {
                DiskError::corrupt(WHAT, format!("journal block {lblock} is not mapped"))
            })?;
        self.fs
            .block_offset(run.physical_of(lblock))
            .map_err(|_| DiskError::corrupt(WHAT, format!("journal block {lblock} out of range")))
    }

    fn block(&self, lblock: u64) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; self.fs.block_size as usize];
        self.fs.source.read_at(self.offset(lblock)?, &mut buf)?;
        Ok(buf)
    }
}

/// One committed (or pending) transaction's block copies: (fs block, journal block, escaped).
type Tags = Vec<(u64, u64, bool)>;

/// Replay the journal in inode `journal_ino` of `fs`; returns the overlay of newest copies.
pub(super) fn replay(fs: &Ext4, journal_ino: u64) -> Result<HashMap<u64, Copy>> {
    let inode = fs.inode(journal_ino)?;
    let bs = fs.block_size;
    let nblocks = inode.size / bs;
    if nblocks == 0 || nblocks > MAX_JOURNAL_BLOCKS {
        return Err(DiskError::corrupt(
            WHAT,
            format!("journal of {nblocks} blocks"),
        ));
    }
    let log = Log {
        fs,
        runs: fs.map(&inode, nblocks)?,
    };
    let sb = log.block(0)?;
    let blocktype = BE.u32(&sb, 4)?;
    if BE.u32(&sb, 0)? != MAGIC || !(blocktype == SUPERBLOCK_V1 || blocktype == SUPERBLOCK_V2) {
        return Err(DiskError::corrupt(WHAT, "bad journal superblock"));
    }
    if BE.u32(&sb, 0xC)? as u64 != bs {
        return Err(DiskError::unsupported(
            WHAT,
            "journal block size differs from the filesystem's",
        ));
    }
    let maxlen = (BE.u32(&sb, 0x10)? as u64).min(nblocks);
    let first = BE.u32(&sb, 0x14)? as u64;
    let mut seq = BE.u32(&sb, 0x18)?;
    let start = BE.u32(&sb, 0x1C)? as u64;
    let incompat = if blocktype == SUPERBLOCK_V2 {
        BE.u32(&sb, 0x28)?
    } else {
        0
    };
    if start == 0 {
        tracing::debug!("ext4 journal is empty");
        return Ok(HashMap::new());
    }
    if first == 0 || first >= maxlen || start < first || start >= maxlen {
        return Err(DiskError::corrupt(
            WHAT,
            format!("log bounds first {first}, start {start}, length {maxlen}"),
        ));
    }
    let wide = incompat & INCOMPAT_64BIT != 0;
    let csum3 = incompat & INCOMPAT_CSUM_V3 != 0;
    let csum2 = incompat & INCOMPAT_CSUM_V2 != 0;
    let tag_size: usize = if csum3 {
        16
    } else {
        let mut s = 12usize;
        if csum2 {
            s += 2;
        }
        if wide { s } else { s - 4 }
    };
    let tail = if csum2 || csum3 { 4 } else { 0 };
    let next = |b: u64| if b + 1 >= maxlen { first } else { b + 1 };

    // Scan: collect committed transactions and revoke records.
    let mut committed: Vec<(u32, Tags)> = Vec::new();
    let mut revoked: HashMap<u64, u32> = HashMap::new();
    let mut pending: Tags = Vec::new();
    let mut pending_revokes: Vec<u64> = Vec::new();
    let mut pos = start;
    let mut steps = 0u64;
    loop {
        steps += 1;
        if steps > maxlen {
            break;
        }
        let Ok(block) = log.block(pos) else { break };
        if BE.u32(&block, 0)? != MAGIC || BE.u32(&block, 8)? != seq {
            break;
        }
        match BE.u32(&block, 4)? {
            DESCRIPTOR => {
                let mut off = 12usize;
                let end = block.len().saturating_sub(tail);
                let mut data_pos = pos;
                loop {
                    if off + tag_size > end {
                        break;
                    }
                    let lo = BE.u32(&block, off)? as u64;
                    let (flags, hi) = if csum3 {
                        (BE.u32(&block, off + 4)?, BE.u32(&block, off + 8)? as u64)
                    } else {
                        // Inside the block: `off + tag_size <= end` was checked above.
                        let f = u32::from(be_u16(&block, off + 6).unwrap_or(0));
                        (
                            f,
                            if wide {
                                BE.u32(&block, off + 8)? as u64
                            } else {
                                0
                            },
                        )
                    };
                    let target = if wide { lo | hi << 32 } else { lo };
                    off += tag_size;
                    if flags & FLAG_SAME_UUID == 0 {
                        off += 16;
                    }
                    data_pos = next(data_pos);
                    steps += 1;
                    pending.push((target, data_pos, flags & FLAG_ESCAPE != 0));
                    if flags & FLAG_LAST_TAG != 0 {
                        break;
                    }
                }
                pos = data_pos;
            }
            COMMIT => {
                committed.push((seq, std::mem::take(&mut pending)));
                for b in pending_revokes.drain(..) {
                    let e = revoked.entry(b).or_insert(seq);
                    *e = (*e).max(seq);
                }
                seq = seq.wrapping_add(1);
            }
            REVOKE => {
                let count = (BE.u32(&block, 12)? as usize).min(block.len().saturating_sub(tail));
                let width = if wide { 8 } else { 4 };
                let mut off = 16usize;
                while off + width <= count {
                    let b = if wide {
                        (BE.u32(&block, off)? as u64) << 32 | BE.u32(&block, off + 4)? as u64
                    } else {
                        BE.u32(&block, off)? as u64
                    };
                    pending_revokes.push(b);
                    off += width;
                }
            }
            other => {
                tracing::debug!(
                    blocktype = other,
                    "ext4 journal: unknown block type, log ends"
                );
                break;
            }
        }
        pos = next(pos);
    }
    let mut overlay = HashMap::new();
    for (tseq, tags) in committed {
        for (target, jblock, escaped) in tags {
            if revoked.get(&target).is_some_and(|&r| r >= tseq) {
                continue;
            }
            let Ok(offset) = log.offset(jblock) else {
                continue;
            };
            if target >= fs.blocks_count {
                continue;
            }
            overlay.insert(target, Copy { offset, escaped });
        }
    }
    Ok(overlay)
}
