//! How long a provider waits for a cloud's asynchronous work (snapshots completing, long-running
//! operations), shared by the clouds.

use std::time::Duration;

/// How long [`Provider::prepare_snapshots`](crate::Provider::prepare_snapshots) waits for
/// snapshots to complete, and how often it looks (the interval doubles up to `max_poll`). Azure
/// also bounds each long-running operation (grants, revocations, deletions) by `timeout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotWait {
    pub timeout: Duration,
    pub first_poll: Duration,
    pub max_poll: Duration,
}

impl Default for SnapshotWait {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(20 * 60),
            first_poll: Duration::from_secs(2),
            max_poll: Duration::from_secs(30),
        }
    }
}

impl SnapshotWait {
    /// The poll interval after `poll`.
    pub fn next_poll(&self, poll: Duration) -> Duration {
        (poll * 2).min(self.max_poll)
    }
}
