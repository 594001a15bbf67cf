//! EBS direct reads: an EBS snapshot as a [`BlockSource`], read over the EBS direct APIs
//! (`ListSnapshotBlocks`, `GetSnapshotBlock`) without creating a volume or attaching anything.
//!
//! [`EbsSnapshotSource::open`] lists every written block of the snapshot (all pages) once; the
//! volume size and the 512 KiB block size come from that listing. A read then fetches only the
//! listed blocks it touches (unwritten blocks read as zeros, and
//! [`allocated_ranges`](BlockSource::allocated_ranges) reports the listed ones), at most
//! [`EbsOptions::concurrency`] requests in flight, with a readahead of the following listed
//! blocks when reads look sequential. Every block's SHA-256 (`x-amz-Checksum`) is checked; a
//! mismatch is retried and then an error, never accepted. Throttling, 5xx answers and network
//! failures are retried with exponential backoff and jitter, a bounded number of times, and
//! counted ([`EbsStats::retries`]). An expired block token makes the source list the snapshot
//! once more. Fetched blocks live in a bounded LRU cache ([`EbsOptions::cache_blocks`]).
//!
//! The scanner reads filesystems from plain threads, while the AWS SDK is async: the source owns
//! a small tokio runtime of its own, runs every request there and hands results back to the
//! reading threads through a condition variable. Nothing here calls `block_on`, so a source can
//! be opened and read from any thread, inside another runtime or not (a thread that waits for a
//! block blocks, so async callers use `spawn_blocking`, as the Job does).
//!
//! Block contents never reach a log line or an error; errors name the snapshot and block index.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use aws_sdk_ebs::Client;
use aws_sdk_ebs::config::SharedCredentialsProvider;
use snapsentry_crds::DiskSource;
use snapsentry_disk::source::check_bounds;
use snapsentry_disk::{BlockSource, DiskError};

mod cache;
mod requests;

use cache::{BlockList, Cache, Slot};
use requests::{client, list_pages};

/// The only block size the EBS direct APIs use (bytes).
pub const EBS_BLOCK_SIZE: u64 = 512 * 1024;

/// Largest page `ListSnapshotBlocks` returns.
const LIST_PAGE: i32 = 10_000;
/// Longest [`EbsSnapshotSource::stats`] waits for the fetches in flight to end.
pub const STATS_SETTLE: std::time::Duration = std::time::Duration::from_secs(30);

/// Why a snapshot could not be opened or a block read. Never carries block contents.
#[derive(Clone, Debug, thiserror::Error)]
pub enum EbsError {
    /// The source's own runtime could not start.
    #[error("EBS reader runtime: {0}")]
    Runtime(String),
    /// The snapshot does not exist (or is not visible to these credentials in this region).
    #[error("EBS snapshot {snapshot_id} not found: {message}")]
    NotFound {
        snapshot_id: String,
        message: String,
    },
    /// The credentials may not read the snapshot.
    #[error("EBS snapshot {snapshot_id}: access denied: {message}")]
    AccessDenied {
        snapshot_id: String,
        message: String,
    },
    /// The snapshot uses a block size these reads do not support.
    #[error(
        "EBS snapshot {snapshot_id} has {block_size}-byte blocks; only {EBS_BLOCK_SIZE}-byte blocks are supported"
    )]
    BlockSize {
        snapshot_id: String,
        block_size: i64,
    },
    /// The listing makes no sense (no volume size, blocks past the end, a repeating page token).
    #[error("EBS snapshot {snapshot_id}: unusable block listing: {detail}")]
    Listing { snapshot_id: String, detail: String },
    /// An API call failed for good (not retryable, or still failing after the last attempt).
    #[error("EBS {operation} of {snapshot_id} failed after {attempts} attempt(s): {message}")]
    Api {
        operation: &'static str,
        snapshot_id: String,
        attempts: u32,
        message: String,
    },
    /// A block kept arriving with a SHA-256 that does not match its `x-amz-Checksum`.
    #[error(
        "EBS snapshot {snapshot_id} block {index}: checksum mismatch after {attempts} attempt(s)"
    )]
    Checksum {
        snapshot_id: String,
        index: u64,
        attempts: u32,
    },
    /// A block came back unusable (wrong length, no checksum, another checksum algorithm).
    #[error("EBS snapshot {snapshot_id} block {index}: {detail}")]
    BadBlock {
        snapshot_id: String,
        index: u64,
        detail: String,
    },
    /// No block arrived in time (the fetch is stuck; the SDK's own timeouts should prevent this).
    #[error("EBS snapshot {snapshot_id} block {index}: no data after {seconds} s")]
    Stalled {
        snapshot_id: String,
        index: u64,
        seconds: u64,
    },
}

/// Tuning of an [`EbsSnapshotSource`].
#[derive(Clone, Debug)]
pub struct EbsOptions {
    /// `GetSnapshotBlock` requests in flight at most (the EBS direct API throttles per snapshot
    /// and account; a handful of concurrent requests already saturate one scanner's engine).
    pub concurrency: usize,
    /// Blocks kept in memory at most once fetched: the memory bound of the cache is this times
    /// 512 KiB (256 blocks = 128 MiB by default), plus the blocks in flight.
    pub cache_blocks: usize,
    /// Listed blocks fetched ahead of a read that looks sequential (0 turns readahead off).
    pub readahead: usize,
    /// Attempts per request, the first included, before a retryable failure becomes an error.
    pub max_attempts: u32,
    /// Backoff before the first retry; doubled per retry, with jitter.
    pub base_delay: Duration,
    /// Longest backoff.
    pub max_delay: Duration,
    /// Longest wait of a reading thread for one block before it gives up.
    pub read_timeout: Duration,
    /// Credentials to use instead of the default chain (environment, web identity, profile,
    /// container, instance metadata). An assume-role of the disk source starts from these.
    pub credentials: Option<SharedCredentialsProvider>,
}

impl Default for EbsOptions {
    fn default() -> Self {
        EbsOptions {
            concurrency: 16,
            cache_blocks: 256,
            readahead: 16,
            max_attempts: 8,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            read_timeout: Duration::from_secs(600),
            credentials: None,
        }
    }
}

/// Where an EBS snapshot is and how to reach it: the fields of
/// [`DiskSource::EbsSnapshot`].
#[derive(Clone, Debug, Default)]
pub struct EbsSnapshotSpec {
    pub snapshot_id: String,
    pub region: String,
    /// EBS endpoint override (VPC endpoint, emulator).
    pub endpoint_url: Option<String>,
    /// Role to assume before reading (cross-account scanning).
    pub assume_role_arn: Option<String>,
    /// External id of that role's trust policy.
    pub external_id: Option<String>,
}

impl EbsSnapshotSpec {
    /// The spec of an assignment's disk source; `None` when it is not an EBS snapshot.
    pub fn from_disk_source(source: &DiskSource) -> Option<Self> {
        match source {
            DiskSource::EbsSnapshot {
                snapshot_id,
                region,
                endpoint_url,
                assume_role_arn,
                external_id,
            } => Some(EbsSnapshotSpec {
                snapshot_id: snapshot_id.clone(),
                region: region.clone(),
                endpoint_url: endpoint_url.clone(),
                assume_role_arn: assume_role_arn.clone(),
                external_id: external_id.clone(),
            }),
            _ => None,
        }
    }
}

/// What a source has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EbsStats {
    /// Written blocks the snapshot lists.
    pub blocks_listed: u64,
    /// Blocks fetched (successful `GetSnapshotBlock` calls, refetches after eviction included).
    pub blocks_fetched: u64,
    /// Bytes those blocks held.
    pub bytes_fetched: u64,
    /// Requests retried (throttling, 5xx, network, checksum mismatch).
    pub retries: u64,
    /// Of those retries, how many were for a checksum mismatch.
    pub checksum_mismatches: u64,
}

impl std::ops::AddAssign for EbsStats {
    fn add_assign(&mut self, o: Self) {
        self.blocks_listed += o.blocks_listed;
        self.blocks_fetched += o.blocks_fetched;
        self.bytes_fetched += o.bytes_fetched;
        self.retries += o.retries;
        self.checksum_mismatches += o.checksum_mismatches;
    }
}

/// An EBS snapshot read through the EBS direct APIs. See the module documentation.
pub struct EbsSnapshotSource {
    shared: Arc<Shared>,
    /// `Some` until dropped; shut down without waiting (dropping a runtime may not block inside
    /// another runtime).
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

/// What the reading threads and the fetch tasks share.
struct Shared {
    client: Client,
    snapshot_id: String,
    size: u64,
    blocks: RwLock<BlockList>,
    cache: Mutex<Cache>,
    /// Signalled whenever a block arrives or fails.
    arrived: Condvar,
    permits: tokio::sync::Semaphore,
    /// Held while re-listing, so one expired token does not make every task list the snapshot.
    relist: tokio::sync::Mutex<u32>,
    options: EbsOptions,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    listed: AtomicU64,
    fetched: AtomicU64,
    bytes: AtomicU64,
    retries: AtomicU64,
    checksum_mismatches: AtomicU64,
}

/// The block indices a read of `len` bytes at `offset` touches (`len > 0`).
fn blocks_of(offset: u64, len: u64, block_size: u64) -> Range<u64> {
    if len == 0 {
        return 0..0;
    }
    offset / block_size..(offset + len - 1) / block_size + 1
}

/// Listed blocks as byte ranges, adjacent blocks merged, clipped to `size`.
fn ranges_of(indices: &[u64], block_size: u64, size: u64) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::new();
    for &i in indices {
        let start = i * block_size;
        let end = (start + block_size).min(size);
        if start >= end {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.end == start => last.end = end,
            _ => out.push(start..end),
        }
    }
    out
}

/// Run `fut` on `handle` and wait for it from this (plain or blocking) thread without
/// `block_on`, which would panic inside another runtime's worker.
pub(crate) fn wait_on<T: Send + 'static>(
    handle: &tokio::runtime::Handle,
    fut: impl std::future::Future<Output = T> + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().ok()
}

impl EbsSnapshotSource {
    /// Open a snapshot: build the client (default credential chain or
    /// [`EbsOptions::credentials`], then the spec's role if any), list every written block and
    /// check the block size. Blocks the calling thread until the listing is complete.
    pub fn open(spec: &EbsSnapshotSpec, options: EbsOptions) -> Result<Self, EbsError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ebs-direct")
            .enable_all()
            .build()
            .map_err(|e| EbsError::Runtime(e.to_string()))?;
        let handle = runtime.handle().clone();
        let spec_owned = spec.clone();
        let opts = options.clone();
        let opened = wait_on(&handle, async move {
            let client = client(&spec_owned, &opts).await;
            let counters = Counters::default();
            let list = list_pages(&client, &spec_owned.snapshot_id, &opts, &counters).await?;
            Ok::<_, EbsError>((client, list, counters))
        })
        .ok_or_else(|| EbsError::Runtime("the runtime stopped while listing".into()))?;
        let (client, (size, list), counters) = match opened {
            Ok(v) => v,
            Err(e) => {
                runtime.shutdown_background();
                return Err(e);
            }
        };
        let listed = list.indices.len() as u64;
        tracing::info!(
            snapshot = %spec.snapshot_id, size, blocks_listed = listed,
            "EBS snapshot listed"
        );
        counters.listed.store(listed, Ordering::Relaxed);
        let shared = Arc::new(Shared {
            client,
            snapshot_id: spec.snapshot_id.clone(),
            size,
            blocks: RwLock::new(list),
            cache: Mutex::new(Cache::new(options.cache_blocks)),
            arrived: Condvar::new(),
            permits: tokio::sync::Semaphore::new(options.concurrency.max(1)),
            relist: tokio::sync::Mutex::new(0),
            options,
            counters,
        });
        Ok(EbsSnapshotSource {
            shared,
            runtime: Some(runtime),
            handle,
        })
    }

    /// The snapshot id.
    pub fn snapshot_id(&self) -> &str {
        &self.shared.snapshot_id
    }

    /// Counters once the fetches in flight (readahead included) have ended, so a retry of a
    /// block nobody waited for is still counted; after [`STATS_SETTLE`] the counters as they are.
    pub fn stats(&self) -> EbsStats {
        let deadline = std::time::Instant::now() + STATS_SETTLE;
        let mut cache = self.lock_cache();
        while cache.pending > 0 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            cache = match self.shared.arrived.wait_timeout(cache, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        drop(cache);
        let c = &self.shared.counters;
        EbsStats {
            blocks_listed: c.listed.load(Ordering::Relaxed),
            blocks_fetched: c.fetched.load(Ordering::Relaxed),
            bytes_fetched: c.bytes.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            checksum_mismatches: c.checksum_mismatches.load(Ordering::Relaxed),
        }
    }

    /// Blocks held by the cache now (at most [`EbsOptions::cache_blocks`]).
    pub fn cached_blocks(&self) -> usize {
        self.lock_cache().ready()
    }

    fn lock_cache(&self) -> MutexGuard<'_, Cache> {
        self.shared.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Start fetching `index` (the caller has claimed its slot).
    fn spawn_fetch(&self, index: u64) {
        let shared = self.shared.clone();
        self.handle.spawn(async move {
            // Completes the slot even when the task is cancelled or panics, so no reader waits
            // for a block that never comes.
            struct Done(Arc<Shared>, u64, Option<Result<Arc<[u8]>, EbsError>>);
            impl Drop for Done {
                fn drop(&mut self) {
                    let result = self.2.take().unwrap_or_else(|| {
                        Err(EbsError::Runtime(format!(
                            "fetch of block {} ended without a result",
                            self.1
                        )))
                    });
                    let mut cache = self.0.cache.lock().unwrap_or_else(|e| e.into_inner());
                    cache.complete(self.1, result);
                    drop(cache);
                    self.0.arrived.notify_all();
                }
            }
            let mut done = Done(shared.clone(), index, None);
            done.2 = Some(shared.fetch(index).await);
        });
    }

    /// Claim and start fetching the listed blocks of `range` the cache lacks, and a readahead
    /// after `read_end` when the read looks sequential.
    fn request(&self, range: Range<u64>, read_end: u64) {
        let list = self.shared.blocks.read().unwrap_or_else(|e| e.into_inner());
        let mut spawn = Vec::new();
        let mut cache = self.lock_cache();
        for b in range.clone() {
            if list.contains(b) && cache.claim(b) {
                spawn.push(b);
            }
        }
        let readahead = self.shared.options.readahead;
        // Sequential: the listed block just before this read was read (or is on its way).
        let sequential = list
            .previous(range.start)
            .is_some_and(|p| cache.slots.contains_key(&p));
        if !spawn.is_empty() && readahead > 0 && sequential {
            let max_pending = self.shared.options.concurrency.max(1) * 4;
            for &b in list.following(read_end, readahead) {
                if cache.pending >= max_pending {
                    break;
                }
                if cache.claim(b) {
                    spawn.push(b);
                }
            }
        }
        drop(cache);
        drop(list);
        for b in spawn {
            self.spawn_fetch(b);
        }
    }

    /// The listed block `index`: wait for it, fetching it again if it was evicted meanwhile.
    fn wait(&self, index: u64) -> Result<Arc<[u8]>, EbsError> {
        let deadline = Instant::now() + self.shared.options.read_timeout;
        let mut cache = self.lock_cache();
        loop {
            match cache.slots.get(&index) {
                Some(Slot::Ready { .. }) => {
                    if let Some(data) = cache.get(index) {
                        return Ok(data);
                    }
                }
                Some(Slot::Failed(e)) => {
                    let e = e.clone();
                    cache.slots.remove(&index);
                    return Err(e);
                }
                Some(Slot::Pending) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(EbsError::Stalled {
                            snapshot_id: self.shared.snapshot_id.clone(),
                            index,
                            seconds: self.shared.options.read_timeout.as_secs(),
                        });
                    }
                    cache = self
                        .shared
                        .arrived
                        .wait_timeout(cache, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                None => {
                    cache.claim(index);
                    self.spawn_fetch(index);
                }
            }
        }
    }

    fn read_blocks(&self, offset: u64, buf: &mut [u8]) -> Result<(), EbsError> {
        let len = buf.len() as u64;
        let all = blocks_of(offset, len, EBS_BLOCK_SIZE);
        // Windows of `concurrency` blocks bound the memory a huge read pins at once.
        let window = self.shared.options.concurrency.max(1) as u64;
        let mut start = all.start;
        while start < all.end {
            let stop = (start + window).min(all.end);
            self.request(start..stop, all.end);
            for b in start..stop {
                let block_start = b * EBS_BLOCK_SIZE;
                let from = offset.max(block_start);
                let to = (offset + len).min(block_start + EBS_BLOCK_SIZE);
                let dst = &mut buf[(from - offset) as usize..(to - offset) as usize];
                let listed = self
                    .shared
                    .blocks
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(b);
                if listed {
                    let data = self.wait(b)?;
                    let at = (from - block_start) as usize;
                    dst.copy_from_slice(&data[at..at + dst.len()]);
                } else {
                    dst.fill(0);
                }
            }
            start = stop;
        }
        Ok(())
    }
}

impl Drop for EbsSnapshotSource {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl BlockSource for EbsSnapshotSource {
    fn size(&self) -> u64 {
        self.shared.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> snapsentry_disk::Result<()> {
        check_bounds(offset, buf.len(), self.shared.size)?;
        self.read_blocks(offset, buf).map_err(|e| DiskError::Io {
            offset,
            source: std::io::Error::other(e),
        })
    }

    fn allocated_ranges(&self) -> Option<Vec<Range<u64>>> {
        let list = self.shared.blocks.read().unwrap_or_else(|e| e.into_inner());
        Some(ranges_of(&list.indices, EBS_BLOCK_SIZE, self.shared.size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_map_to_the_blocks_they_touch() {
        let bs = EBS_BLOCK_SIZE;
        assert_eq!(blocks_of(0, 1, bs), 0..1);
        assert_eq!(blocks_of(0, bs, bs), 0..1);
        assert_eq!(blocks_of(0, bs + 1, bs), 0..2);
        assert_eq!(blocks_of(bs - 1, 2, bs), 0..2);
        assert_eq!(blocks_of(3 * bs, bs, bs), 3..4);
        assert_eq!(blocks_of(3 * bs + 5, 10 * bs, bs), 3..14);
        assert_eq!(blocks_of(12345, 0, bs), 0..0);
    }

    #[test]
    fn listed_blocks_become_merged_byte_ranges() {
        let bs = EBS_BLOCK_SIZE;
        assert_eq!(ranges_of(&[], bs, 10 * bs), Vec::<Range<u64>>::new());
        assert_eq!(
            ranges_of(&[0, 1, 2, 5, 7, 8], bs, 10 * bs),
            vec![0..3 * bs, 5 * bs..6 * bs, 7 * bs..9 * bs]
        );
        // Clipped to the size; a block past the end is dropped.
        assert_eq!(
            ranges_of(&[9, 10], bs, 9 * bs + 100),
            vec![9 * bs..9 * bs + 100]
        );
    }

    #[test]
    fn only_ebs_sources_make_a_spec() {
        let ebs = DiskSource::EbsSnapshot {
            snapshot_id: "snap-1".into(),
            region: "eu-west-1".into(),
            endpoint_url: None,
            assume_role_arn: Some("arn:aws:iam::1:role/r".into()),
            external_id: Some("x".into()),
        };
        let spec = EbsSnapshotSpec::from_disk_source(&ebs).unwrap();
        assert_eq!(spec.snapshot_id, "snap-1");
        assert_eq!(spec.external_id.as_deref(), Some("x"));
        assert!(
            EbsSnapshotSpec::from_disk_source(&DiskSource::Image { path: "/x".into() }).is_none()
        );
    }
}
