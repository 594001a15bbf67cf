//! The snapsentry operator as a library: everything the `snapsentry-operator` binary runs, split
//! so the logic is testable without an API server or a cloud.
//!
//! - [`schedule`] — when a ScanPolicy scans (cron + time zone, `suspend`, `snapsentry.io/scan-now`);
//! - [`provider`] — where machines come from and how their disks become readable
//!   ([`provider::Provider`]; the `images` provider is the first);
//! - [`job`] — the scanner Job for one machine and the [`snapsentry_crds::ScanAssignment`] it carries;
//! - [`correlate`] — findings → lifecycle, verification, risk, labels, AttackPaths and
//!   Recommendations, as pure functions;
//! - [`metrics`] — Prometheus metrics;
//! - [`controller`] — configuration, the HTTP endpoints and the ScanPolicy reconciler.
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
pub mod provider;
pub mod schedule;

pub use error::{Error, Result};
