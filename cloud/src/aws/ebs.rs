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

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use aws_sdk_ebs::Client;
use aws_sdk_ebs::config::SharedCredentialsProvider;
use aws_sdk_ebs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ebs::operation::get_snapshot_block::GetSnapshotBlockError;
use aws_sdk_ebs::types::{ChecksumAlgorithm, ValidationExceptionReason};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use snapsentry_crds::DiskSource;
use snapsentry_disk::source::check_bounds;
use snapsentry_disk::{BlockSource, DiskError};

/// The only block size the EBS direct APIs use (bytes).
pub const EBS_BLOCK_SIZE: u64 = 512 * 1024;

/// Largest page `ListSnapshotBlocks` returns.
const LIST_PAGE: i32 = 10_000;

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

/// The listed blocks, sorted by index, and their tokens.
#[derive(Debug, Default)]
struct BlockList {
    indices: Vec<u64>,
    tokens: Vec<Box<str>>,
    /// Bumped by every re-listing.
    generation: u64,
}

impl BlockList {
    fn position(&self, index: u64) -> Option<usize> {
        self.indices.binary_search(&index).ok()
    }

    fn contains(&self, index: u64) -> bool {
        self.position(index).is_some()
    }

    /// The listed block before `index`, if any.
    fn previous(&self, index: u64) -> Option<u64> {
        let p = self.indices.partition_point(|&i| i < index);
        p.checked_sub(1).map(|p| self.indices[p])
    }

    /// Up to `n` listed blocks at or after `index`.
    fn following(&self, index: u64, n: usize) -> &[u64] {
        let p = self.indices.partition_point(|&i| i < index);
        let end = p.saturating_add(n).min(self.indices.len());
        &self.indices[p..end]
    }
}

/// A block of the cache.
enum Slot {
    /// A task is fetching it.
    Pending,
    Ready {
        data: Arc<[u8]>,
        used: u64,
    },
    /// The fetch failed for good; the next reader gets the error and the slot is cleared.
    Failed(EbsError),
}

/// Bounded LRU of fetched blocks, plus the fetches in flight.
struct Cache {
    slots: HashMap<u64, Slot>,
    /// Last use → block index, of the `Ready` slots.
    lru: BTreeMap<u64, u64>,
    clock: u64,
    capacity: usize,
    pending: usize,
}

impl Cache {
    fn new(capacity: usize) -> Self {
        Cache {
            slots: HashMap::new(),
            lru: BTreeMap::new(),
            clock: 0,
            capacity: capacity.max(1),
            pending: 0,
        }
    }

    /// Mark `index` as being fetched unless the cache already has it in any state.
    fn claim(&mut self, index: u64) -> bool {
        if self.slots.contains_key(&index) {
            return false;
        }
        self.slots.insert(index, Slot::Pending);
        self.pending += 1;
        true
    }

    /// The block, when it is ready; counts as a use.
    fn get(&mut self, index: u64) -> Option<Arc<[u8]>> {
        self.clock += 1;
        let clock = self.clock;
        match self.slots.get_mut(&index) {
            Some(Slot::Ready { data, used }) => {
                self.lru.remove(used);
                *used = clock;
                self.lru.insert(clock, index);
                Some(data.clone())
            }
            _ => None,
        }
    }

    /// A fetch ended: keep the block (evicting the least recently used beyond capacity) or the
    /// error.
    fn complete(&mut self, index: u64, result: Result<Arc<[u8]>, EbsError>) {
        if let Some(Slot::Pending) = self.slots.get(&index) {
            self.pending = self.pending.saturating_sub(1);
        }
        match result {
            Ok(data) => {
                self.clock += 1;
                if let Some(Slot::Ready { used, .. }) = self.slots.get(&index) {
                    self.lru.remove(used);
                }
                self.slots.insert(
                    index,
                    Slot::Ready {
                        data,
                        used: self.clock,
                    },
                );
                self.lru.insert(self.clock, index);
                while self.lru.len() > self.capacity {
                    let Some((_, victim)) = self.lru.pop_first() else {
                        break;
                    };
                    self.slots.remove(&victim);
                }
            }
            Err(e) => {
                self.slots.insert(index, Slot::Failed(e));
            }
        }
    }

    fn ready(&self) -> usize {
        self.lru.len()
    }
}

/// How a request failed, for the retry loop.
#[derive(Debug)]
struct Failure {
    kind: FailureKind,
    message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FailureKind {
    /// Throttling, 5xx, timeouts, connection failures: worth another attempt.
    Transient,
    /// The block's bytes do not match its checksum: worth another attempt, counted apart.
    Checksum,
    /// The block token expired: list the snapshot again.
    ExpiredToken,
    NotFound,
    AccessDenied,
    /// Anything else: a request that will not succeed by repeating it.
    Fatal,
}

impl FailureKind {
    fn retryable(self) -> bool {
        matches!(self, FailureKind::Transient | FailureKind::Checksum)
    }
}

/// Classify an SDK error by its HTTP status and error code (throttling has several spellings
/// across AWS services and emulators).
fn classify<E>(e: &SdkError<E, aws_sdk_ebs::config::http::HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (kind, message) = match e {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().code().unwrap_or_default();
            let mut message = format!("HTTP {status}");
            if !code.is_empty() {
                message.push_str(&format!(" {code}"));
            }
            if let Some(m) = ctx.err().message() {
                message.push_str(&format!(": {m}"));
            }
            let kind = match code {
                "RequestThrottledException"
                | "ThrottlingException"
                | "Throttling"
                | "ThrottledException"
                | "TooManyRequestsException"
                | "SlowDown"
                | "ServiceQuotaExceededException"
                | "InternalServerException"
                | "InternalError"
                | "ServiceUnavailable" => FailureKind::Transient,
                "ResourceNotFoundException" => FailureKind::NotFound,
                "AccessDeniedException" => FailureKind::AccessDenied,
                _ if status == 429 || status >= 500 => FailureKind::Transient,
                _ if status == 404 => FailureKind::NotFound,
                _ if status == 403 => FailureKind::AccessDenied,
                _ => FailureKind::Fatal,
            };
            (kind, message)
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            (FailureKind::Transient, error_chain(e))
        }
        _ => (FailureKind::Fatal, error_chain(e)),
    };
    Failure { kind, message }
}

/// An error and its sources on one line (the SDK's own `Display` says little: "dispatch
/// failure").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.ends_with(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// Backoff before retry number `retry` (1-based): `base · 2^(retry-1)`, capped at `max`, then
/// "equal jitter" (a uniform pick in the upper half), so that concurrent fetches throttled
/// together do not come back together.
fn backoff(retry: u32, base: Duration, max: Duration, random: u64) -> Duration {
    let exp = base
        .checked_mul(1u32 << retry.saturating_sub(1).min(20))
        .unwrap_or(max)
        .min(max);
    let half = exp / 2;
    let span = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    let jitter = if span == 0 { 0 } else { random % (span + 1) };
    half + Duration::from_nanos(jitter)
}

/// A random number for jitter; std's per-process random hash keys are enough for that.
fn jitter_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
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

/// `base64(sha256(data))`, the form of `x-amz-Checksum`.
fn checksum(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(data))
}

/// Run `fut` on `handle` and wait for it from this (plain or blocking) thread without
/// `block_on`, which would panic inside another runtime's worker.
fn wait_on<T: Send + 'static>(
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

    /// Counters so far.
    pub fn stats(&self) -> EbsStats {
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

/// The EBS client of `spec`: region, credentials (default chain, or the options' provider),
/// assumed role, endpoint override; SDK retries off (the source retries and counts itself).
async fn client(spec: &EbsSnapshotSpec, options: &EbsOptions) -> Client {
    let mut loader = super::sdk::loader(&spec.region);
    if let Some(credentials) = &options.credentials {
        loader = loader.credentials_provider(credentials.clone());
    }
    let sdk = loader.load().await;
    let mut config = aws_sdk_ebs::config::Builder::from(&sdk)
        .retry_config(aws_sdk_ebs::config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_sdk_ebs::config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .operation_attempt_timeout(Duration::from_secs(120))
                .build(),
        );
    if let Some(role) = &spec.assume_role_arn {
        let provider = super::sdk::assume_role(
            &sdk,
            role,
            spec.external_id.as_deref(),
            "snapsentry-scanner",
        )
        .await;
        config = config.credentials_provider(SharedCredentialsProvider::new(provider));
    }
    if let Some(url) = &spec.endpoint_url {
        config = config.endpoint_url(url.clone());
    }
    Client::from_conf(config.build())
}

/// Run `attempt` until it succeeds, fails for good, or `max_attempts` ran out, sleeping with
/// backoff between attempts and counting retries.
async fn with_retries<T, F, Fut>(
    options: &EbsOptions,
    counters: &Counters,
    mut attempt: F,
) -> Result<T, (Failure, u32)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let mut n = 0u32;
    let seed = jitter_seed();
    loop {
        n += 1;
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(f) if f.kind.retryable() && n < options.max_attempts.max(1) => {
                counters.retries.fetch_add(1, Ordering::Relaxed);
                if f.kind == FailureKind::Checksum {
                    counters.checksum_mismatches.fetch_add(1, Ordering::Relaxed);
                }
                let delay = backoff(
                    n,
                    options.base_delay,
                    options.max_delay,
                    seed.rotate_left(n * 7),
                );
                tracing::debug!(attempt = n, ?delay, error = %f.message, "EBS request retried");
                tokio::time::sleep(delay).await;
            }
            Err(f) => return Err((f, n)),
        }
    }
}

/// Map a final failure of `operation` to the error a caller sees.
fn api_error(
    snapshot_id: &str,
    operation: &'static str,
    (failure, attempts): (Failure, u32),
) -> EbsError {
    let snapshot_id = snapshot_id.to_owned();
    match failure.kind {
        FailureKind::NotFound => EbsError::NotFound {
            snapshot_id,
            message: failure.message,
        },
        FailureKind::AccessDenied => EbsError::AccessDenied {
            snapshot_id,
            message: failure.message,
        },
        _ => EbsError::Api {
            operation,
            snapshot_id,
            attempts,
            message: failure.message,
        },
    }
}

/// List every written block of the snapshot (all pages): volume size in bytes and the blocks.
async fn list_pages(
    client: &Client,
    snapshot_id: &str,
    options: &EbsOptions,
    counters: &Counters,
) -> Result<(u64, BlockList), EbsError> {
    let listing = |detail: String| EbsError::Listing {
        snapshot_id: snapshot_id.to_owned(),
        detail,
    };
    let mut blocks: Vec<(u64, Box<str>)> = Vec::new();
    let mut next: Option<String> = None;
    let mut volume_bytes: Option<u64> = None;
    loop {
        let token = next.clone();
        let page = with_retries(options, counters, || {
            let request = client
                .list_snapshot_blocks()
                .snapshot_id(snapshot_id)
                .max_results(LIST_PAGE)
                .set_next_token(token.clone());
            async move { request.send().await.map_err(|e| classify(&e)) }
        })
        .await
        .map_err(|f| api_error(snapshot_id, "ListSnapshotBlocks", f))?;

        let block_size = page.block_size().unwrap_or_default();
        if i64::from(block_size) != EBS_BLOCK_SIZE as i64 {
            return Err(EbsError::BlockSize {
                snapshot_id: snapshot_id.to_owned(),
                block_size: block_size.into(),
            });
        }
        let gib = page
            .volume_size()
            .filter(|&g| g > 0)
            .ok_or_else(|| listing("no volume size".into()))?;
        let bytes = u64::try_from(gib)
            .ok()
            .and_then(|g| g.checked_mul(1 << 30))
            .ok_or_else(|| listing(format!("volume size {gib} GiB")))?;
        if volume_bytes.is_some_and(|v| v != bytes) {
            return Err(listing("volume size changed between pages".into()));
        }
        volume_bytes = Some(bytes);
        let max_blocks = bytes / EBS_BLOCK_SIZE;
        for b in page.blocks() {
            let (Some(index), Some(token)) = (b.block_index(), b.block_token()) else {
                return Err(listing("a block without index or token".into()));
            };
            let index = u64::try_from(index)
                .ok()
                .filter(|&i| i < max_blocks)
                .ok_or_else(|| listing(format!("block index {index} outside the volume")))?;
            blocks.push((index, token.into()));
        }
        if blocks.len() as u64 > max_blocks {
            return Err(listing("more blocks listed than the volume holds".into()));
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => {
                if next.as_deref() == Some(t) {
                    return Err(listing("the page token repeats".into()));
                }
                next = Some(t.to_owned());
            }
            _ => break,
        }
    }
    blocks.sort_by_key(|(i, _)| *i);
    blocks.dedup_by_key(|(i, _)| *i);
    let (indices, tokens) = blocks.into_iter().unzip();
    Ok((
        volume_bytes.unwrap_or_default(),
        BlockList {
            indices,
            tokens,
            generation: 0,
        },
    ))
}

impl Shared {
    fn token(&self, index: u64) -> Result<(Box<str>, u64), EbsError> {
        let list = self.blocks.read().unwrap_or_else(|e| e.into_inner());
        let p = list.position(index).ok_or_else(|| EbsError::BadBlock {
            snapshot_id: self.snapshot_id.clone(),
            index,
            detail: "not listed any more".into(),
        })?;
        Ok((list.tokens[p].clone(), list.generation))
    }

    /// Fetch, verify and count one block, within the concurrency bound.
    async fn fetch(&self, index: u64) -> Result<Arc<[u8]>, EbsError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| EbsError::Runtime(e.to_string()))?;
        let mut relisted = false;
        loop {
            let (token, generation) = self.token(index)?;
            let result = with_retries(&self.options, &self.counters, || {
                self.get_block(index, &token)
            })
            .await;
            match result {
                Ok(data) => {
                    self.counters.fetched.fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .bytes
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                    return Ok(data);
                }
                Err((f, _)) if f.kind == FailureKind::ExpiredToken && !relisted => {
                    relisted = true;
                    self.relist(generation).await?;
                }
                Err((f, attempts)) if f.kind == FailureKind::Checksum => {
                    tracing::warn!(snapshot = %self.snapshot_id, index, attempts, "EBS block checksum mismatch");
                    return Err(EbsError::Checksum {
                        snapshot_id: self.snapshot_id.clone(),
                        index,
                        attempts,
                    });
                }
                Err(f) => return Err(api_error(&self.snapshot_id, "GetSnapshotBlock", f)),
            }
        }
    }

    /// One `GetSnapshotBlock` attempt, checked.
    async fn get_block(&self, index: u64, token: &str) -> Result<Arc<[u8]>, Failure> {
        let fatal = |message: String| Failure {
            kind: FailureKind::Fatal,
            message,
        };
        let block_index =
            i32::try_from(index).map_err(|_| fatal(format!("block index {index} too large")))?;
        let out = self
            .client
            .get_snapshot_block()
            .snapshot_id(&self.snapshot_id)
            .block_index(block_index)
            .block_token(token)
            .send()
            .await
            .map_err(|e| {
                let expired = matches!(
                    e.as_service_error(),
                    Some(GetSnapshotBlockError::ValidationException(v))
                        if v.reason() == Some(&ValidationExceptionReason::InvalidBlockToken)
                );
                let mut f = classify(&e);
                if expired {
                    f.kind = FailureKind::ExpiredToken;
                }
                f
            })?;
        match out.checksum_algorithm() {
            None | Some(ChecksumAlgorithm::ChecksumAlgorithmSha256) => {}
            Some(other) => {
                return Err(fatal(format!(
                    "block {index}: unsupported checksum algorithm {}",
                    other.as_str()
                )));
            }
        }
        let want = out
            .checksum()
            .map(str::to_owned)
            .ok_or_else(|| fatal(format!("block {index}: the response has no checksum")))?;
        let data = out
            .block_data
            .collect()
            .await
            .map_err(|e| Failure {
                kind: FailureKind::Transient,
                message: format!("block {index}: body: {}", error_chain(&e)),
            })?
            .into_bytes();
        if data.len() as u64 != EBS_BLOCK_SIZE {
            return Err(Failure {
                kind: FailureKind::Transient,
                message: format!(
                    "block {index}: {} bytes received, {EBS_BLOCK_SIZE} expected",
                    data.len()
                ),
            });
        }
        if checksum(&data) != want {
            return Err(Failure {
                kind: FailureKind::Checksum,
                message: format!("block {index}: checksum mismatch"),
            });
        }
        Ok(Arc::from(&data[..]))
    }

    /// List the snapshot again for fresh block tokens, once per source lifetime (a scan never
    /// outlives the ~7-day token expiry twice). `seen` is the listing generation the caller's
    /// token came from: when another task already re-listed, its tokens are used.
    async fn relist(&self, seen: u64) -> Result<(), EbsError> {
        let mut relists = self.relist.lock().await;
        let current = self
            .blocks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .generation;
        if current != seen {
            return Ok(());
        }
        if *relists >= 1 {
            return Err(EbsError::Api {
                operation: "GetSnapshotBlock",
                snapshot_id: self.snapshot_id.clone(),
                attempts: 1,
                message: "block token expired again after re-listing".into(),
            });
        }
        *relists += 1;
        tracing::info!(snapshot = %self.snapshot_id, "EBS block tokens expired; listing again");
        let (size, mut fresh) = list_pages(
            &self.client,
            &self.snapshot_id,
            &self.options,
            &self.counters,
        )
        .await?;
        if size != self.size {
            return Err(EbsError::Listing {
                snapshot_id: self.snapshot_id.clone(),
                detail: "volume size changed on re-listing".into(),
            });
        }
        let mut list = self.blocks.write().unwrap_or_else(|e| e.into_inner());
        fresh.generation = list.generation + 1;
        *list = fresh;
        Ok(())
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
    fn block_list_lookups() {
        let list = BlockList {
            indices: vec![2, 3, 7, 20],
            tokens: vec!["a".into(), "b".into(), "c".into(), "d".into()],
            generation: 0,
        };
        assert!(list.contains(7) && !list.contains(8));
        assert_eq!(list.previous(7), Some(3));
        assert_eq!(list.previous(8), Some(7));
        assert_eq!(list.previous(2), None);
        assert_eq!(list.following(4, 2), &[7, 20]);
        assert_eq!(list.following(3, 10), &[3, 7, 20]);
        assert_eq!(list.following(21, 4), &[] as &[u64]);
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        for retry in 1..40 {
            let exp = base.saturating_mul(1 << (retry - 1).min(20)).min(max);
            for random in [0u64, 1, 12345, u64::MAX] {
                let d = backoff(retry, base, max, random);
                assert!(d >= exp / 2 && d <= exp, "retry {retry}: {d:?} vs {exp:?}");
            }
        }
        assert_eq!(backoff(1, base, max, 0), Duration::from_millis(50));
        assert_eq!(backoff(3, base, max, 0), Duration::from_millis(200));
        assert_eq!(backoff(30, base, max, 0), Duration::from_secs(1));
        // Two seeds rarely give the same delay: the jitter is there.
        let delays: std::collections::BTreeSet<_> = (0..20)
            .map(|i| backoff(4, base, max, jitter_seed().wrapping_add(i)))
            .collect();
        assert!(delays.len() > 10, "{delays:?}");
    }

    #[test]
    fn cache_keeps_at_most_its_capacity_least_recently_used_first() {
        let mut c = Cache::new(3);
        let block = |n: u8| -> Arc<[u8]> { Arc::from(vec![n; 4]) };
        for i in 0..3 {
            assert!(c.claim(i));
            assert!(!c.claim(i), "a pending block is not claimed twice");
            c.complete(i, Ok(block(i as u8)));
        }
        assert_eq!(c.pending, 0);
        assert_eq!(c.get(0).as_deref(), Some(&[0u8; 4][..])); // 0 is now the most recent
        assert!(c.claim(3));
        c.complete(3, Ok(block(3)));
        assert_eq!(c.ready(), 3);
        assert!(c.get(1).is_none(), "1 was least recently used");
        assert!(c.get(0).is_some() && c.get(2).is_some() && c.get(3).is_some());
        for i in 10..100 {
            c.claim(i);
            c.complete(i, Ok(block(1)));
            assert!(c.ready() <= 3);
            assert_eq!(c.slots.len(), c.ready());
        }
        // A failure is kept for the reader, and does not count against the capacity.
        assert!(c.claim(500));
        c.complete(500, Err(EbsError::Runtime("x".into())));
        assert!(matches!(c.slots.get(&500), Some(Slot::Failed(_))));
        assert_eq!(c.ready(), 3);
    }

    #[test]
    fn checksums_are_base64_sha256() {
        assert_eq!(
            checksum(b""),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
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
