//! Azure: virtual machines, read through managed-disk snapshots exported as SAS URLs — both sides.
//!
//! Control plane (feature `control-plane`, the operator): one [`AzureProvider`] serves one
//! `spec.providers[].azure` entry. Its clients are built on first use and shared by every call on
//! the same provider value: an [`AzureCredential`] (the policy's `credentialsSecret` with a client
//! secret or certificate, else workload identity, else managed identity; [`auth`]), the generated
//! Compute client (`azure_mgmt_compute`) and one small ARM REST client for everything else
//! ([`arm`]), both over azure_core's HTTP client (reqwest on rustls + ring).
//!
//! - Inventory: the VMs of each subscription (or listed resource group) with their power state,
//!   selected by tags, ids or names, states and excluded tags; OS and data disks in LUN order
//!   (unmanaged VHD disks reported as not supported); exposure from the subscriptions' network
//!   resources ([`exposure`]); targets from the data services' listings ([`services`]).
//! - Snapshots (`create`): one incremental snapshot per managed disk, named from the scan and the
//!   disk and tagged `snapsentry.io-*` (Azure tag names cannot contain `/`); a scan that finds
//!   its own snapshot (an operator restart) reuses it. `newestExisting` picks each disk's newest
//!   snapshot and creates nothing. Read access is a SAS per snapshot (`beginGetAccess`), ended
//!   (`endGetAccess`) when the scan is done; deletion only ever touches snapshots tagged
//!   `snapsentry.io-managed-by=snapsentry`.
//!
//! Data plane (feature `data-plane`, the scanner): a snapshot's page blob read over its SAS URL as
//! a [`snapsentry_disk::BlockSource`] ([`blob::SasPageBlobSource`]).

#[cfg(feature = "data-plane")]
pub mod blob;
#[cfg(feature = "data-plane")]
mod requests;
#[cfg(feature = "data-plane")]
pub mod sas;

#[cfg(feature = "control-plane")]
pub mod arm;
#[cfg(feature = "control-plane")]
pub(crate) mod assertion;
#[cfg(feature = "control-plane")]
pub mod auth;
#[cfg(feature = "control-plane")]
mod clients;
#[cfg(feature = "control-plane")]
pub mod exposure;
#[cfg(feature = "control-plane")]
mod inventory;
#[cfg(feature = "control-plane")]
pub mod network;
#[cfg(feature = "control-plane")]
mod provider;
#[cfg(feature = "control-plane")]
pub mod services;
#[cfg(feature = "control-plane")]
mod snapshots;

#[cfg(feature = "control-plane")]
pub use arm::Retry;
#[cfg(feature = "control-plane")]
pub use auth::{AzureCredential, AzureEnvironment, CLIENT_CERTIFICATE_KEY, CLIENT_SECRET_KEY};
#[cfg(feature = "control-plane")]
pub use clients::{DEFAULT_ARM_ENDPOINT, secret_credential};
#[cfg(feature = "control-plane")]
pub use inventory::{disks, power_state, selects};
#[cfg(feature = "control-plane")]
pub use provider::AzureProvider;
#[cfg(feature = "control-plane")]
pub use snapshots::{
    MACHINE_TAG, MANAGED_BY_TAG, MANAGED_BY_VALUE, POLICY_TAG, SCAN_ID_TAG, grant_file,
    snapshot_name,
};
