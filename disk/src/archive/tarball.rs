//! Tar streams (plain, or the inflated content of a gzip stream), read with the `tar` crate:
//! regular files only, each at most the entry size limit, and the stream read to its end so
//! that truncation shows.

use std::io::Read;

use super::Walker;

/// Read the regular files of the tar stream `reader` into `walker`.
pub(crate) fn read(walker: &mut Walker<'_, '_>, reader: impl Read) {
    let max = walker.limits.max_entry_size;
    let mut archive = tar::Archive::new(reader);
    let entries = match archive.entries() {
        Ok(e) => e,
        Err(_) => return walker.failed(),
    };
    for entry in entries {
        if walker.stopped() {
            return;
        }
        let mut entry = match entry {
            Ok(e) => e,
            Err(_) => return walker.failed(),
        };
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_contiguous() || kind.is_gnu_sparse()) {
            continue;
        }
        if !walker.admit() {
            return;
        }
        let name = walker.entry_name(&entry.path_bytes());
        if entry.size() > max {
            walker.stats.too_large += 1;
            continue;
        }
        let mut data = Vec::with_capacity(entry.size().min(1 << 20) as usize);
        if entry.by_ref().take(max + 1).read_to_end(&mut data).is_err() {
            return walker.failed();
        }
        if data.len() as u64 > max {
            walker.stats.too_large += 1;
            continue;
        }
        walker.file(name, &data);
    }
    // Read what follows the end-of-archive blocks (metered): a gzip stream cut at a header
    // boundary, or with a bad checksum, only says so at its end.
    if std::io::copy(&mut archive.into_inner(), &mut std::io::sink()).is_err() {
        walker.failed();
    }
}
