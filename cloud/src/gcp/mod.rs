//! GCP: Compute Engine instances, read through disks made from snapshots that the cluster's
//! persistent-disk CSI driver attaches to the scanner Job as raw block volumes (control plane
//! only: the scanner reads a block device, [`snapsentry_crds::DiskSource::BlockVolume`]).
//!
//! One [`GcpProvider`] serves one `spec.providers[].gcp` entry. Its clients are built on first
//! use with google-cloud-auth's credentials (the policy's `credentialsSecret` with a service
//! account's JSON key, else the key file `GOOGLE_APPLICATION_CREDENTIALS` names, else the
//! metadata server: GKE workload identity): Compute Engine through
//! `google-cloud-compute-v1` with this crate's retries and operation polling, the
//! Cloud SQL and GCS listings as small REST calls ([`rest`]).
//!
//! - Inventory: each project's aggregated instance list, selected by labels, ids or names,
//!   statuses and excluded labels; disks in index order; OS from the boot disk's licenses;
//!   exposure from external addresses and firewall rules ([`exposure`]); Cloud SQL instances
//!   and GCS buckets as targets ([`services`]); the SSH keys project and instance metadata
//!   authorize ([`metadata`]).
//! - Snapshots ([`snapshots`], named and labelled as [`names`] says): a snapshot per disk (or the
//!   newest existing one), then a disk from it in the first scanner zone;
//!   [`Provider::block_volumes`](crate::Provider) names those disks for the operator's
//!   PersistentVolumes, `reader_config` the devices the Job reads. Release deletes the disk, then
//!   a snapshot the scan created; the sweep finds leftovers of both by label.

mod clients;
mod compute;
pub mod exposure;
pub mod inventory;
pub mod metadata;
mod names;
mod provider;
pub mod rest;
pub mod services;
mod snapshots;

pub use clients::{
    DEFAULT_METADATA_HOST, KEY_FILE_VAR, SERVICE_ACCOUNT_KEY, key_credentials,
    key_file_credentials, key_file_from_env, key_file_label, metadata_credentials,
    metadata_host_from_env, secret_credentials,
};
pub use names::{
    MACHINE_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE, POLICY_LABEL, SCAN_ID_LABEL, disk_name,
    label_value, policy_label, snapshot_name, volume_handle,
};
pub use provider::{CSI_DRIVER, GcpProvider, ZONE_TOPOLOGY_KEY, device_path};
