//! Gzip streams (all members), inflated with `flate2` under the archive's budget: a tar inside
//! is read as a stream (`backup.tar.gz` → its files), anything else is one file named after the
//! gzip file without its suffix (`app.conf.gz` → `app.conf`).

use std::io::{Cursor, Read};

use flate2::read::MultiGzDecoder;

use super::Walker;
use super::detect::{TAR_BLOCK, gunzipped_name, is_tar};

/// Read the gzip stream `data` (of the file `name`) into `walker`.
pub(crate) fn read(walker: &mut Walker<'_, '_>, name: &str, data: &[u8]) {
    let budget = walker.budget;
    let mut stream = budget.reader(MultiGzDecoder::new(data));
    let mut head = Vec::with_capacity(TAR_BLOCK);
    if stream
        .by_ref()
        .take(TAR_BLOCK as u64)
        .read_to_end(&mut head)
        .is_err()
    {
        return walker.failed();
    }
    let base = name.rsplit('/').next().unwrap_or(name);
    let inner = gunzipped_name(base);
    if is_tar(&inner, &head) {
        return super::tarball::read(walker, Cursor::new(head).chain(stream));
    }
    let max = walker.limits.max_entry_size;
    if !walker.admit() {
        return;
    }
    let mut content = head;
    let read = stream
        .take(max.saturating_add(1).saturating_sub(content.len() as u64))
        .read_to_end(&mut content);
    if read.is_err() {
        return walker.failed();
    }
    if content.len() as u64 > max {
        walker.stats.too_large += 1;
        return;
    }
    let inner = walker.entry_name(inner.as_bytes());
    walker.file(inner, &content);
}
