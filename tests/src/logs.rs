//! What this test process logs through `tracing`, kept in memory: the operators that the
//! end-to-end tests run in-process log there, and the never-leak checks read it.

use std::sync::{Mutex, MutexGuard};

/// Everything captured since [`capture`] was first called.
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// What is captured: every crate at debug level but the HTTP, TLS and AWS SDK plumbing (at info).
const CAPTURED: &str = "debug,hyper=info,hyper_util=info,h2=info,rustls=info,tower=info,\
                        aws_smithy=info,aws_sdk=info,aws_config=info";

/// `filter` with the operator binary's [`snapsentry_operator::LOG_GUARDS`]: what the operator run
/// in-process logs is what the binary would.
fn guarded(mut filter: tracing_subscriber::EnvFilter) -> tracing_subscriber::EnvFilter {
    for guard in snapsentry_operator::LOG_GUARDS {
        filter = filter.add_directive(guard.parse().expect("a valid directive"));
    }
    filter
}

/// Installs this process's `tracing` subscriber (once; later calls do nothing): the test output
/// shows what `RUST_LOG` selects (default: the operator at info), and [`CAPTURED`] goes into
/// memory for [`captured`] and [`tail`], both with the operator's log guards.
pub fn capture() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{EnvFilter, Layer as _, fmt};
    let shown = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("snapsentry_operator=info"));
    let _ = tracing_subscriber::registry()
        .with(fmt::layer().with_test_writer().with_filter(guarded(shown)))
        .with(
            fmt::layer()
                .with_ansi(false)
                .with_writer(|| Writer)
                .with_filter(guarded(EnvFilter::new(CAPTURED))),
        )
        .try_init();
}

/// Everything captured so far.
pub fn captured() -> Vec<u8> {
    lock().clone()
}

/// The last `lines` captured lines, for a failure message.
pub fn tail(lines: usize) -> String {
    let logs = lock();
    let text = String::from_utf8_lossy(&logs);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The buffer; a panic while it was held leaves whole lines behind, so a poisoned lock is used
/// as it is.
fn lock() -> MutexGuard<'static, Vec<u8>> {
    LOGS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A `tracing` writer appending to [`LOGS`].
struct Writer;

impl std::io::Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
