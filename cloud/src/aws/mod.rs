//! AWS: EC2 instances, read through EBS snapshots — both sides.
//!
//! Control plane (feature `control-plane`, the operator): one [`AwsProvider`] serves one
//! `spec.providers[].aws` entry. Its SDK clients (EC2 and RDS per region, one S3 client) are built
//! on first use and shared by every call on the same provider value; credentials come from the
//! default chain (environment, IRSA web identity, instance profile) or from the policy's
//! `credentialsSecret`, optionally exchanged for an assumed role.
//!
//! - Inventory: DescribeInstances (filtered by the selector), the instances' security groups and
//!   volumes, their exposure; targets are RDS instance and cluster endpoints and S3 buckets.
//! - Snapshots (`create`): one CreateSnapshots per instance, tagged `snapsentry.io/*`; a scan
//!   that finds its own tagged snapshots (an operator restart) reuses them. `newestExisting`
//!   picks each volume's newest completed snapshot and creates nothing.
//! - Deletion only ever touches snapshots that carry `snapsentry.io/managed-by=snapsentry`.
//!
//! Data plane (feature `data-plane`, the scanner): [`ebs`] reads a snapshot's blocks over the EBS
//! direct APIs as a `snapsentry_disk::BlockSource`.
//!
//! Both sides build their SDK clients the same way (`sdk`): the HTTPS client is hyper on rustls
//! with the ring crypto provider, and a role is assumed through STS.

mod sdk;

#[cfg(feature = "data-plane")]
pub mod ebs;

#[cfg(feature = "control-plane")]
mod clients;
#[cfg(feature = "control-plane")]
mod exposure;
#[cfg(feature = "control-plane")]
mod inventory;
#[cfg(feature = "control-plane")]
mod provider;
#[cfg(feature = "control-plane")]
mod snapshots;
#[cfg(feature = "control-plane")]
mod targets;

#[cfg(feature = "control-plane")]
pub use clients::{
    ACCESS_KEY_ID_KEY, SECRET_ACCESS_KEY_KEY, SESSION_TOKEN_KEY, secret_credentials,
};
#[cfg(feature = "control-plane")]
pub use inventory::{DEFAULT_STATES, instance_filters, selects};
#[cfg(feature = "control-plane")]
pub use provider::AwsProvider;
#[cfg(feature = "control-plane")]
pub use snapshots::{
    INSTANCE_TAG, MANAGED_BY_TAG, MANAGED_BY_VALUE, POLICY_TAG, SCAN_ID_TAG, SnapshotWait,
};
