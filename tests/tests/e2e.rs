//! The end-to-end suite as one test binary: each module below was a test binary of its own, and
//! every one of them linked the operator, the kube client and the AWS SDKs — one link instead of
//! seven is most of what a warm `make test` spends building. The tests still run two at a time,
//! now across modules too. `scanner_job.rs` stays a binary of its own: it installs its own
//! trace-level `tracing` subscriber for the whole process.

mod api;
mod aws_provider;
mod azure_blob;
mod azure_provider;
mod chart;
mod cluster;
mod container_images;
mod controlplane;
mod fake_arm;
mod fake_gce;
mod finish_writes;
mod gcp_provider;
mod moto;
mod operator_aws;
mod operator_azure;
mod operator_gcp;
mod operator_grants;
mod operator_images;
mod operator_real_scanner;
mod operator_validation;
mod operator_volumes;
mod views;
