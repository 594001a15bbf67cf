//! Requests to the EBS direct APIs: the client, listing, block fetches with their checksum,
//! retries with backoff and jitter, and how failures become [`EbsError`]s.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_sdk_ebs::Client;
use aws_sdk_ebs::config::SharedCredentialsProvider;
use aws_sdk_ebs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ebs::operation::get_snapshot_block::GetSnapshotBlockError;
use aws_sdk_ebs::types::{ChecksumAlgorithm, ValidationExceptionReason};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::cache::BlockList;
use super::{Counters, EBS_BLOCK_SIZE, EbsError, EbsOptions, EbsSnapshotSpec, LIST_PAGE, Shared};

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

/// `base64(sha256(data))`, the form of `x-amz-Checksum`.
fn checksum(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(data))
}

/// The EBS client of `spec`: region, credentials (default chain, or the options' provider),
/// assumed role, endpoint override; SDK retries off (the source retries and counts itself).
pub(super) async fn client(spec: &EbsSnapshotSpec, options: &EbsOptions) -> Client {
    let mut loader = crate::aws::sdk::loader(&spec.region);
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
        let provider = crate::aws::sdk::assume_role(
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
pub(super) async fn list_pages(
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
    pub(super) async fn fetch(&self, index: u64) -> Result<Arc<[u8]>, EbsError> {
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
    fn checksums_are_base64_sha256() {
        assert_eq!(
            checksum(b""),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }
}
