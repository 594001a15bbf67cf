//! `ls --sha256`: the SHA-256 of every regular file of a chunk of rows, on parallel workers.

use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::Digest;
use snapsentry_disk::{FileKind, Filesystem, NodeId};

use super::FileRow;

/// Bytes read per `read_at` while hashing: large reads keep per-call overhead (and, for qcow2,
/// per-call cluster lookups) off the profile.
const HASH_BUFFER: usize = 256 * 1024;

/// Hash every regular file of `rows` in parallel: workers take the next file from a shared
/// counter (the filesystems are `Sync`), so one huge file does not hold up the others.
pub(super) fn hash_files(filesystems: &[Option<&dyn Filesystem>], rows: &mut [FileRow]) {
    let jobs: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].kind == FileKind::File)
        .collect();
    if jobs.is_empty() {
        return;
    }
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8)
        .min(jobs.len());
    let next = AtomicUsize::new(0);
    let rows_ro: &[FileRow] = rows;
    let results: Vec<(usize, Option<String>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    let mut buf = vec![0u8; HASH_BUFFER];
                    loop {
                        let Some(&row) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) else {
                            return done;
                        };
                        let r = &rows_ro[row];
                        let Some(fs) = filesystems.get(r.volume_index).copied().flatten() else {
                            continue;
                        };
                        match sha256(fs, r.node, &mut buf) {
                            Ok(hex) => done.push((row, Some(hex))),
                            Err(e) => {
                                eprintln!("snapsentry-scan: warning: {}:{}: {e}", r.volume, r.path);
                                done.push((row, None));
                            }
                        }
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    });
    for (row, hex) in results {
        rows[row].sha256 = hex;
    }
}

fn sha256(fs: &dyn Filesystem, node: NodeId, buf: &mut [u8]) -> anyhow::Result<String> {
    let mut content = fs.open(node)?;
    let mut hasher = sha2::Sha256::new();
    let mut offset = 0u64;
    loop {
        let n = content.read_at(offset, buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    Ok(hex(&hasher.finalize()))
}

/// Lowercase hex without a `format!` per byte.
pub(super) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}
