//! The snapsentry operator as a library: everything the `snapsentry-operator` binary runs, split
//! so the logic is testable without an API server or a cloud.
//!
//! - [`schedule`] — when a ScanPolicy scans (cron + time zone, `suspend`, `snapsentry.io/scan-now`);
//! - where machines come from and how their disks become readable is the control plane of
//!   [`snapsentry_cloud`] ([`snapsentry_cloud::Provider`]: AWS, disk images);
//! - [`job`] — the scanner Job for one machine and the [`snapsentry_crds::ScanAssignment`] it carries;
//! - [`correlate`] — findings → lifecycle, verification, risk, labels, AttackPaths and
//!   Recommendations, as pure functions;
//! - [`metrics`] — Prometheus metrics;
//! - [`controller`] — configuration, the HTTP endpoints, leader election and the ScanPolicy
//!   reconciler (scan orchestration: ScannedMachines → Jobs under the policy's concurrency →
//!   snapshot cleanup → correlation → status, Events, a finalizer);
//! - [`run`] — the controllers behind the leader Lease, the entry point of the binary and of the
//!   end-to-end tests.
//!
//! ```
//! use snapsentry_operator::schedule::Schedule;
//! let s = Schedule::parse("0 3 * * *", Some("Europe/Paris")).unwrap();
//! let next = s.next_after("2026-11-22T14:00:00Z".parse().unwrap()).unwrap();
//! assert_eq!(next.to_string(), "2026-11-23T02:00:00Z");
//! ```

pub mod controller;
pub mod correlate;
mod error;
pub mod job;
pub mod metrics;
pub mod schedule;

pub use error::{Error, Result};

/// Log filter directives added after `SNAPSENTRY_LOG`'s, so they hold whatever it asks for:
/// `azure_core`'s transport policy dumps every request it sends at debug level, headers included —
/// the ARM bearer token with them.
pub const LOG_GUARDS: &[&str] = &["azure_core::policies::transport=info"];

use std::sync::Arc;

use tokio::sync::watch;

/// Run the operator's controllers until `shutdown` turns `true`: behind the leader Lease when
/// `config.leader_election` is set, at once otherwise. The binary adds the HTTP endpoints
/// (sharing `http`); tests call this with a client of their own API server.
pub async fn run(
    config: controller::config::Config,
    client: kube::Client,
    http: Arc<controller::http::HttpState>,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let ctx = Arc::new(controller::Context::new(client.clone(), config, http));
    if !ctx.config.leader_election {
        controller::run(ctx, shutdown).await;
        return Ok(());
    }
    let settings =
        controller::leader::LeaseSettings::new(&ctx.config.namespace, &ctx.config.pod_name);
    controller::leader::lead(client, settings, shutdown, move |stop| {
        controller::run(ctx, stop)
    })
    .await
}
