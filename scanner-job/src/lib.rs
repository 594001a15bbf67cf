//! `snapsentry-scanner`: the scanner Job and the standalone CLI (`snapsentry-scan`).
//!
//! The binary is a thin wrapper over these modules; [`job::run`] is also called directly by the
//! end-to-end tests against a real API server.

pub mod job;
pub mod key;
pub mod ls;
pub mod report;
pub mod scan;
