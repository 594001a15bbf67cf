//! `snapsentry-scanner` finds plaintext secrets on virtual machine disks without mounting them,
//! behind two front ends that share one pipeline. The CLI front end ([`cli`], `snapsentry-scan
//! image|dir`) scans a disk image or a directory and prints a report of what [`triage`] keeps
//! (ignore file, baseline, severity filter); the Job front end ([`job`],
//! `snapsentry-scan job`) scans the disks a Kubernetes Job was assigned (image files or cloud
//! snapshots, [`ebs`]) and writes SecretFindings and the ScannedMachine's status. Both turn their
//! input into [`options::ScanOptions`] and run the pipeline ([`scan`]: list the files of
//! directories and volumes, honouring [`glob`] exclusions, then run the detection engine over
//! them on all cores; findings in unchanged OS package files drop to `info`, see `vendor`).
//! Engine findings become SecretFindings through the finding model
//! ([`finding`]: grouping per rule and fingerprint, capped locations, the server-side apply
//! body), which the Job applies and `--format yaml` prints; [`report`] renders the CLI's table,
//! JSON, JSONL, SARIF and YAML (tables aligned by `columns`). [`ls`] lists an image's volumes and files without detection, and
//! [`key`] finds the CLI's fingerprint key.
//!
//! The CLI's flags, formats and exit codes are the contract in `docs/cli.md`. The binary
//! (`src/main.rs`) is a thin wrapper over these modules; [`job::run`] is also called directly
//! by the end-to-end tests against a real API server.

pub mod archive;
pub mod cli;
mod columns;
pub mod coverage;
pub mod finding;
pub mod glob;
pub mod job;
pub mod key;
pub mod ls;
pub mod options;
pub mod report;
pub mod scan;
pub mod triage;
mod vendor;
