//! Zip archives (`.zip`, `.jar`, `.war`, `.ear`, …), read from memory with the `zip` crate:
//! stored and deflated entries, each metered by the archive's budget and cut at the entry size
//! limit; encrypted entries and other compression methods are counted as unsupported.

use std::io::{Cursor, Read};

use zip::ZipArchive;
use zip::result::ZipError;

use super::Walker;

/// Read the files of the zip archive `data` into `walker`.
pub(crate) fn read(walker: &mut Walker<'_, '_>, data: &[u8]) {
    let budget = walker.budget;
    let max = walker.limits.max_entry_size;
    let mut archive = match ZipArchive::new(Cursor::new(data)) {
        Ok(a) => a,
        Err(_) => return walker.failed(),
    };
    for i in 0..archive.len() {
        if walker.stopped() {
            return;
        }
        let mut file = match archive.by_index(i) {
            Ok(f) => f,
            Err(
                ZipError::UnsupportedArchive(_)
                | ZipError::CompressionMethodNotSupported(_)
                | ZipError::InvalidPassword,
            ) => {
                walker.stats.unsupported += 1;
                continue;
            }
            Err(_) => {
                walker.failed();
                continue;
            }
        };
        if file.is_dir() || file.is_symlink() {
            continue;
        }
        if !walker.admit() {
            return;
        }
        if file.encrypted() {
            walker.stats.unsupported += 1;
            continue;
        }
        let name = walker.entry_name(file.name_raw());
        if file.size() > max {
            walker.stats.too_large += 1;
            continue;
        }
        let mut content = Vec::with_capacity(file.size().min(1 << 20) as usize);
        let read = budget
            .reader(&mut file)
            .take(max + 1)
            .read_to_end(&mut content);
        drop(file);
        if read.is_err() {
            walker.failed();
            continue;
        }
        if content.len() as u64 > max {
            walker.stats.too_large += 1;
            continue;
        }
        walker.file(name, &content);
    }
}
