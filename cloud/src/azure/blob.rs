//! A page blob read over its SAS URL, as a [`BlockSource`]: how the scanner reads an Azure
//! managed disk snapshot (exported as a SAS URL by the control plane).
//!
//! [`SasPageBlobSource::open`] asks for the blob's properties (its size, that it is a page blob)
//! and then for its written ranges (`Get Page Ranges`, every page of it), once. A read fetches
//! only the written ranges it touches with ranged GETs (`x-ms-range`), at most
//! [`BlobOptions::request_bytes`] per request and [`BlobOptions::concurrency`] requests in flight;
//! unwritten ranges read as zeros without a request, and
//! [`allocated_ranges`](BlockSource::allocated_ranges) reports the written ones. Throttling (429),
//! 5xx answers, timeouts and connection failures are retried with exponential backoff and jitter,
//! a bounded number of times, and counted ([`BlobStats::retries`]). Reads go through a bounded
//! [`CachedSource`] ([`BlobOptions::cache_bytes`]).
//!
//! A managed disk snapshot is a fixed VHD: the disk's bytes followed by a 512-byte footer.
//! The source is the whole blob, footer included; `snapsentry_disk::open_disk` recognises the
//! footer and reads the disk inside it.
//!
//! The SAS URL is a credential: it is held in a [`SasUrl`], whose `Debug` and `Display` show only
//! the blob's path, and no error, log line or stat carries its query string.
//!
//! As for EBS reads, the source owns a small tokio runtime and never calls `block_on`: it can be
//! opened and read from any thread (async callers use `spawn_blocking`).

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::{Method, StatusCode};
use snapsentry_disk::source::{CachedSource, check_bounds};
use snapsentry_disk::{BlockSource, DiskError};

use super::requests::{self, Answer, Conn, Counters, encode, error_code, parse_page_list};
use super::sas::SasUrl;
use crate::aws::ebs::wait_on;

/// Why a blob could not be opened or read. Never carries the SAS token or blob contents: the
/// blob is named by its redacted URL.
#[derive(Clone, Debug, thiserror::Error)]
pub enum AzureBlobError {
    /// The source's own runtime (or the TLS set-up) could not start.
    #[error("Azure blob reader runtime: {0}")]
    Runtime(String),
    /// The SAS URL is unusable.
    #[error("{0}")]
    Url(String),
    /// A request failed for good (not retryable, or still failing after the last attempt).
    #[error("Azure blob {operation} of {blob} failed after {attempts} attempt(s): {message}")]
    Http {
        operation: &'static str,
        blob: String,
        attempts: u32,
        message: String,
    },
    /// The service refused the request: 403 is a SAS that expired, lacks read permission or
    /// does not match; 404 a blob that does not exist.
    #[error("Azure blob {operation} of {blob}: HTTP {status}{code}{hint}")]
    Rejected {
        operation: &'static str,
        blob: String,
        status: u16,
        /// ` (x-ms-error-code)`, or empty.
        code: String,
        /// What the status usually means, or empty.
        hint: &'static str,
    },
    /// The blob is not a page blob (a disk snapshot always is).
    #[error("Azure blob {blob} is a {kind}, not a page blob")]
    NotPageBlob { blob: String, kind: String },
    /// The service answered something unusable (no size, a bad page list, a short body).
    #[error("Azure blob {blob}: {detail}")]
    BadAnswer { blob: String, detail: String },
}

/// Tuning of a [`SasPageBlobSource`].
#[derive(Clone, Debug)]
pub struct BlobOptions {
    /// Ranged GETs in flight at most.
    pub concurrency: usize,
    /// Largest range one GET asks for (Azure allows up to 4 MiB with an MD5, more without).
    pub request_bytes: u64,
    /// Block size of the cache (a power of two, 4 KiB..=16 MiB): a read fetches the written
    /// parts of the blocks it touches.
    pub cache_block: u64,
    /// Bytes the cache keeps at most.
    pub cache_bytes: u64,
    /// Attempts per request, the first included, before a retryable failure becomes an error.
    pub max_attempts: u32,
    /// Backoff before the first retry; doubled per retry, with jitter.
    pub base_delay: Duration,
    /// Longest backoff.
    pub max_delay: Duration,
    /// Longest wait for one answer (headers and body) before the attempt counts as failed.
    pub request_timeout: Duration,
}

impl Default for BlobOptions {
    fn default() -> Self {
        BlobOptions {
            concurrency: 16,
            request_bytes: 4 << 20,
            cache_block: 1 << 20,
            cache_bytes: 128 << 20,
            max_attempts: 8,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
        }
    }
}

/// What a source has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlobStats {
    /// The blob's size (bytes, the VHD footer included).
    pub size: u64,
    /// Written ranges the page list holds (adjacent ones merged).
    pub written_ranges: u64,
    /// Bytes those ranges cover.
    pub written_bytes: u64,
    /// HTTP requests sent (properties, page list pages, ranged GETs; retries included).
    pub requests: u64,
    /// Requests retried (429, 5xx, timeouts, connection failures).
    pub retries: u64,
    /// Bytes the ranged GETs returned.
    pub bytes_fetched: u64,
}

/// A page blob read over its SAS URL. See the module documentation.
pub struct SasPageBlobSource {
    cached: CachedSource<Fetcher>,
    shared: Arc<Shared>,
}

/// What the reading threads and the request tasks share.
struct Shared {
    conn: Conn,
    size: u64,
    /// Written ranges, sorted, merged, inside `0..size`.
    ranges: Vec<Range<u64>>,
    permits: tokio::sync::Semaphore,
}

/// The uncached reader: written ranges by ranged GETs, the rest zeros.
struct Fetcher {
    shared: Arc<Shared>,
    /// `Some` until dropped; shut down without waiting.
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

impl SasPageBlobSource {
    /// Open the blob at `sas_url`: its properties, then its page list. Blocks the calling thread
    /// until both are in.
    pub fn open(sas_url: &str, options: BlobOptions) -> Result<Self, AzureBlobError> {
        let url = SasUrl::parse(sas_url).map_err(|e| AzureBlobError::Url(e.to_string()))?;
        Self::open_url(url, options)
    }

    /// [`open`](Self::open) with an already parsed URL.
    pub fn open_url(url: SasUrl, options: BlobOptions) -> Result<Self, AzureBlobError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("azure-blob")
            .enable_all()
            .build()
            .map_err(|e| AzureBlobError::Runtime(e.to_string()))?;
        let handle = runtime.handle().clone();
        let (url2, opts) = (url.clone(), options.clone());
        let opened = wait_on(&handle, async move {
            let conn = Conn {
                client: requests::client()?,
                url: url2,
                options: opts,
                counters: Counters::default(),
            };
            let size = properties(&conn).await?;
            let ranges = page_ranges(&conn, size).await?;
            Ok::<_, AzureBlobError>((conn, size, ranges))
        })
        .ok_or_else(|| AzureBlobError::Runtime("the runtime stopped while opening".into()))?;
        let (conn, size, ranges) = match opened {
            Ok(v) => v,
            Err(e) => {
                runtime.shutdown_background();
                return Err(e);
            }
        };
        let written: u64 = ranges.iter().map(|r| r.end - r.start).sum();
        tracing::info!(
            blob = %conn.url, size, written_ranges = ranges.len(), written_bytes = written,
            "Azure page blob listed"
        );
        let shared = Arc::new(Shared {
            conn,
            size,
            ranges,
            permits: tokio::sync::Semaphore::new(options.concurrency.max(1)),
        });
        let fetcher = Fetcher {
            shared: shared.clone(),
            runtime: Some(runtime),
            handle,
        };
        Ok(SasPageBlobSource {
            cached: CachedSource::new(fetcher, options.cache_block, options.cache_bytes),
            shared,
        })
    }

    /// The blob's URL (its `Display` hides the SAS token).
    pub fn url(&self) -> &SasUrl {
        &self.shared.conn.url
    }

    /// Counters so far.
    pub fn stats(&self) -> BlobStats {
        let s = &self.shared;
        BlobStats {
            size: s.size,
            written_ranges: s.ranges.len() as u64,
            written_bytes: s.ranges.iter().map(|r| r.end - r.start).sum(),
            requests: s.conn.counters.requests.load(Ordering::Relaxed),
            retries: s.conn.counters.retries.load(Ordering::Relaxed),
            bytes_fetched: s.conn.counters.bytes.load(Ordering::Relaxed),
        }
    }
}

impl BlockSource for SasPageBlobSource {
    fn size(&self) -> u64 {
        self.shared.size
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> snapsentry_disk::Result<()> {
        self.cached.read_at(offset, buf)
    }
    fn allocated_ranges(&self) -> Option<Vec<Range<u64>>> {
        Some(self.shared.ranges.clone())
    }
}

/// Get Blob Properties: the size of a page blob.
async fn properties(conn: &Conn) -> Result<u64, AzureBlobError> {
    const OP: &str = "Get Blob Properties";
    let url = &conn.url;
    let answer = conn.send(OP, Method::HEAD, "", None).await?;
    expect(&answer, OP, url, StatusCode::OK)?;
    let header = |name: &str| answer.headers.get(name).and_then(|v| v.to_str().ok());
    let kind = header("x-ms-blob-type").unwrap_or("blob of unknown type");
    if kind != "PageBlob" {
        return Err(AzureBlobError::NotPageBlob {
            blob: url.to_string(),
            kind: kind.chars().filter(char::is_ascii_alphanumeric).collect(),
        });
    }
    header("content-length")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| AzureBlobError::BadAnswer {
            blob: url.to_string(),
            detail: "properties without a numeric Content-Length".into(),
        })
}

/// Get Page Ranges, every page: the written ranges, sorted, merged, clipped to `size`.
async fn page_ranges(conn: &Conn, size: u64) -> Result<Vec<Range<u64>>, AzureBlobError> {
    const OP: &str = "Get Page Ranges";
    let url = &conn.url;
    let bad = |detail: String| AzureBlobError::BadAnswer {
        blob: url.to_string(),
        detail,
    };
    let mut all = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let query = match &marker {
            Some(m) => format!("comp=pagelist&marker={}", encode(m)),
            None => "comp=pagelist".to_owned(),
        };
        let answer = conn.send(OP, Method::GET, &query, None).await?;
        expect(&answer, OP, url, StatusCode::OK)?;
        let xml = std::str::from_utf8(&answer.body)
            .map_err(|_| bad("the page list is not UTF-8".into()))?;
        let (ranges, next) =
            parse_page_list(xml).map_err(|e| bad(format!("unusable page list: {e}")))?;
        all.extend(ranges);
        match next {
            Some(n) if marker.as_ref() == Some(&n) => {
                return Err(bad("the page list repeats its continuation marker".into()));
            }
            Some(n) => marker = Some(n),
            None => break,
        }
    }
    Ok(merge(all, size))
}

/// Ranges sorted, overlapping or adjacent ones merged, clipped to `0..size`, empty ones dropped.
fn merge(mut ranges: Vec<Range<u64>>, size: u64) -> Vec<Range<u64>> {
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::new();
    for r in ranges {
        let r = r.start.min(size)..r.end.min(size);
        if r.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.end >= r.start => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// The written parts of `want`, each cut into pieces of at most `max` bytes.
fn pieces(ranges: &[Range<u64>], want: Range<u64>, max: u64) -> Vec<Range<u64>> {
    let first = ranges.partition_point(|r| r.end <= want.start);
    let mut out = Vec::new();
    for r in &ranges[first..] {
        if r.start >= want.end {
            break;
        }
        let (mut start, end) = (r.start.max(want.start), r.end.min(want.end));
        while start < end {
            let stop = end.min(start + max.max(512));
            out.push(start..stop);
            start = stop;
        }
    }
    out
}

/// `Ok` when the answer has status `want`; otherwise the error it means.
fn expect(
    answer: &Answer,
    operation: &'static str,
    url: &SasUrl,
    want: StatusCode,
) -> Result<(), AzureBlobError> {
    if answer.status == want {
        return Ok(());
    }
    let hint = match answer.status.as_u16() {
        403 => {
            ": the SAS was refused (expired, not yet valid, without read permission, or not matching)"
        }
        404 => ": no such blob",
        _ => "",
    };
    Err(AzureBlobError::Rejected {
        operation,
        blob: url.to_string(),
        status: answer.status.as_u16(),
        code: error_code(&answer.headers),
        hint,
    })
}

impl Shared {
    /// One ranged GET of a written range.
    async fn get(&self, range: Range<u64>) -> Result<hyper::body::Bytes, AzureBlobError> {
        const OP: &str = "Get Blob";
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| AzureBlobError::Runtime("the request limiter closed".into()))?;
        let len = range.end - range.start;
        let answer = self
            .conn
            .send(OP, Method::GET, "", Some(range.clone()))
            .await?;
        if answer.status != StatusCode::OK {
            expect(&answer, OP, &self.conn.url, StatusCode::PARTIAL_CONTENT)?;
        }
        self.conn
            .counters
            .bytes
            .fetch_add(answer.body.len() as u64, Ordering::Relaxed);
        if answer.body.len() as u64 != len {
            return Err(AzureBlobError::BadAnswer {
                blob: self.conn.url.to_string(),
                detail: format!(
                    "asked for {len} bytes at {}, got {}",
                    range.start,
                    answer.body.len()
                ),
            });
        }
        Ok(answer.body)
    }
}

impl Fetcher {
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), AzureBlobError> {
        buf.fill(0);
        let want = offset..offset + buf.len() as u64;
        let todo = pieces(
            &self.shared.ranges,
            want,
            self.shared.conn.options.request_bytes,
        );
        if todo.is_empty() {
            return Ok(());
        }
        let shared = self.shared.clone();
        let fetched = wait_on(&self.handle, async move {
            let mut set = tokio::task::JoinSet::new();
            for piece in todo {
                let shared = shared.clone();
                set.spawn(async move {
                    Ok::<_, AzureBlobError>((piece.start, shared.get(piece).await?))
                });
            }
            let mut out = Vec::new();
            while let Some(done) = set.join_next().await {
                out.push(done.map_err(|e| AzureBlobError::Runtime(e.to_string()))??);
            }
            Ok::<_, AzureBlobError>(out)
        })
        .ok_or_else(|| AzureBlobError::Runtime("the runtime stopped while reading".into()))??;
        for (start, data) in fetched {
            let at = (start - offset) as usize;
            buf[at..at + data.len()].copy_from_slice(&data);
        }
        Ok(())
    }
}

impl BlockSource for Fetcher {
    fn size(&self) -> u64 {
        self.shared.size
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> snapsentry_disk::Result<()> {
        check_bounds(offset, buf.len(), self.shared.size)?;
        self.read(offset, buf).map_err(|e| DiskError::Io {
            offset,
            source: std::io::Error::other(e),
        })
    }
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_clip() {
        assert_eq!(
            merge(
                vec![1024..2048, 0..512, 512..600, 4000..5000, 9000..9100],
                4500
            ),
            vec![0..600, 1024..2048, 4000..4500]
        );
    }

    #[test]
    fn reads_split_into_written_pieces() {
        let ranges = [0..1024, 4096..20480];
        assert_eq!(
            pieces(&ranges, 512..8192, 4096),
            vec![512..1024, 4096..8192]
        );
        assert_eq!(
            pieces(&ranges, 0..20480, 8192),
            vec![0..1024, 4096..12288, 12288..20480]
        );
        assert!(pieces(&ranges, 1024..4096, 4096).is_empty());
    }

    /// A planted signature never shows in an error of a failed open (nothing listens on the
    /// port, so every attempt is a connection failure) nor in any `Debug`.
    #[test]
    fn errors_never_carry_the_signature() {
        const SIG: &str = "PLANTEDsecretSIGvalue%2Fabc%3D";
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let url = format!(
            "http://127.0.0.1:{port}/devstoreaccount1/c/disk.vhd?sv=2021-08-06&sp=r&sig={SIG}"
        );
        let options = BlobOptions {
            max_attempts: 2,
            base_delay: Duration::from_millis(1),
            ..BlobOptions::default()
        };
        let Err(e) = SasPageBlobSource::open(&url, options) else {
            panic!("opened a blob nobody serves");
        };
        assert!(
            matches!(e, AzureBlobError::Http { attempts: 2, .. }),
            "{e:?}"
        );
        let disk: DiskError = DiskError::Io {
            offset: 0,
            source: std::io::Error::other(e.clone()),
        };
        for shown in [
            format!("{e}"),
            format!("{e:?}"),
            format!("{disk}"),
            format!("{disk:?}"),
        ] {
            assert!(!shown.contains(SIG) && !shown.contains("sig="), "{shown}");
        }
        assert!(
            e.to_string()
                .contains("/devstoreaccount1/c/disk.vhd?<redacted>"),
            "{e}"
        );
    }

    /// A page list in two pages (`NextMarker`) from a one-blob HTTP server: both pages are asked
    /// for, in order, and only the written ranges are fetched.
    #[test]
    fn page_lists_are_followed_across_markers() {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let blob = |at: u64| (at % 251) as u8 + 1;
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let (mut line, mut range) = (String::new(), None);
                reader.read_line(&mut line).unwrap();
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    if let Some(r) = h.strip_prefix("x-ms-range: bytes=") {
                        let (a, b) = r.trim().split_once('-').unwrap();
                        range = Some((a.parse::<u64>().unwrap(), b.parse::<u64>().unwrap()));
                    }
                    if h.trim().is_empty() {
                        break;
                    }
                }
                let (status, extra, body): (&str, &str, Vec<u8>) = if line.starts_with("HEAD") {
                    ("200 OK", "x-ms-blob-type: PageBlob\r\n", vec![])
                } else if line.contains("marker=m1%2Fx%3D") {
                    let xml = "<PageList><PageRange><Start>4096</Start><End>8191</End></PageRange><NextMarker/></PageList>";
                    ("200 OK", "", xml.into())
                } else if line.contains("comp=pagelist") {
                    let xml = "<PageList><PageRange><Start>0</Start><End>511</End></PageRange><NextMarker>m1/x=</NextMarker></PageList>";
                    ("200 OK", "", xml.into())
                } else {
                    let (a, b) = range.unwrap();
                    assert!(
                        b < 512 || a >= 4096,
                        "an unwritten range was fetched: {a}-{b}"
                    );
                    ("206 Partial Content", "", (a..=b).map(blob).collect())
                };
                let length = if line.starts_with("HEAD") {
                    8192
                } else {
                    body.len()
                };
                let mut out = stream;
                let head = format!(
                    "HTTP/1.1 {status}\r\n{extra}Content-Length: {length}\r\nConnection: close\r\n\r\n"
                );
                out.write_all(head.as_bytes()).unwrap();
                out.write_all(&body).unwrap();
            }
        });
        let url = format!("http://127.0.0.1:{port}/acct/c/disk.vhd?sv=1&sig=s");
        let source = SasPageBlobSource::open(&url, BlobOptions::default()).unwrap();
        assert_eq!(source.allocated_ranges(), Some(vec![0..512, 4096..8192]));
        let mut all = vec![0u8; 8192];
        source.read_at(0, &mut all).unwrap();
        let want: Vec<u8> = (0..8192u64)
            .map(|at| {
                if (512..4096).contains(&at) {
                    0
                } else {
                    blob(at)
                }
            })
            .collect();
        assert_eq!(all, want);
        let stats = source.stats();
        assert_eq!((stats.bytes_fetched, stats.written_bytes), (4608, 4608));
        // HEAD, two page list pages, two ranged GETs.
        assert_eq!((stats.requests, stats.retries), (5, 0));
    }
}
