//! Helpers the image formats share: splitting a read at allocation-unit boundaries, a cache of
//! decompressed units, and bounds checks of tables and compressed data against the file.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::source::BlockSource;
use crate::{DiskError, Result};

/// Split a read of `buf` at `offset` into pieces that each lie inside one allocation unit of
/// `unit` bytes, and call `piece(unit index, offset inside the unit, destination)` for each.
/// The caller has checked bounds.
pub(crate) fn for_each_unit(
    offset: u64,
    buf: &mut [u8],
    unit: u64,
    mut piece: impl FnMut(u64, u64, &mut [u8]) -> Result<()>,
) -> Result<()> {
    let mut done = 0usize;
    while done < buf.len() {
        let pos = offset + done as u64;
        let within = pos % unit;
        let n = (unit - within).min((buf.len() - done) as u64) as usize;
        piece(pos / unit, within, &mut buf[done..done + n])?;
        done += n;
    }
    Ok(())
}

/// A few recently decompressed units (qcow2 compressed clusters, VMDK stream grains), so that
/// a filesystem reading 4 KiB blocks of a 64 KiB compressed cluster inflates it once, not
/// sixteen times.
pub(crate) struct DecodedCache {
    entries: Mutex<VecDeque<(u64, Arc<[u8]>)>>,
}

impl DecodedCache {
    const CAPACITY: usize = 32;

    pub(crate) fn new() -> Self {
        DecodedCache {
            entries: Mutex::new(VecDeque::new()),
        }
    }

    /// The unit keyed `key`, decoded by `decode` on a miss.
    pub(crate) fn get_or(
        &self,
        key: u64,
        decode: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<Arc<[u8]>> {
        {
            let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, data)) = entries.iter().find(|(k, _)| *k == key) {
                return Ok(data.clone());
            }
        }
        let data: Arc<[u8]> = decode()?.into();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= Self::CAPACITY {
            entries.pop_front();
        }
        entries.push_back((key, data.clone()));
        Ok(data)
    }
}

/// Read `len` bytes at `offset` of `source`, or as many as exist (compressed data of the last
/// cluster may be described as longer than what is left of the file).
pub(crate) fn read_clamped(source: &dyn BlockSource, offset: u64, len: u64) -> Result<Vec<u8>> {
    let end = offset.saturating_add(len).min(source.size());
    if offset >= end {
        return Err(DiskError::OutOfBounds {
            offset,
            len,
            size: source.size(),
        });
    }
    let mut data = vec![0u8; (end - offset) as usize];
    source.read_at(offset, &mut data)?;
    Ok(data)
}

/// Fail unless the table of `len` bytes at `offset` lies inside `source`: checked before a table
/// sized by an on-disk field is allocated, so a hostile header cannot make us allocate the cap
/// for a table that is not there.
pub(crate) fn check_table_fits(
    source: &dyn BlockSource,
    what: &'static str,
    table: &str,
    offset: u64,
    len: u64,
) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= source.size() => Ok(()),
        _ => Err(DiskError::corrupt(
            what,
            format!("{table} of {len} bytes at {offset} is past the end of the file"),
        )),
    }
}

/// Copy `src[within..]` into `dst`, zero-filling what `src` lacks (a short last grain).
pub(crate) fn copy_from_unit(src: &[u8], within: u64, dst: &mut [u8]) {
    let avail = usize::try_from(within)
        .ok()
        .and_then(|w| src.get(w..))
        .unwrap_or_default();
    let n = avail.len().min(dst.len());
    dst[..n].copy_from_slice(&avail[..n]);
    dst[n..].fill(0);
}
