//! Everything snapsentry knows about each cloud, in one place, split by who runs it.
//!
//! A cloud has two sides. The *control plane* is what the operator does with a cloud's API:
//! list the machines a policy selects and the resources secrets may open (databases, buckets),
//! create, choose and delete snapshots of their disks — behind the [`Provider`] trait, one
//! implementation per cloud. The *data plane* is what the scanner Job does: read a snapshot's
//! blocks as a [`snapsentry_disk::BlockSource`] (for AWS, the EBS direct APIs). Each cloud has a
//! module holding both sides ([`aws`], and [`images`], disk images whose data plane is a plain
//! local file); the cargo features `control-plane` (the operator's) and `data-plane` (the
//! scanner's) pick the side, so each binary compiles and links only the SDKs it calls. What both
//! sides of a cloud share (for AWS: the HTTPS client on rustls + ring and the assumed-role
//! credentials) sits in one module of that cloud used by both.
//!
//! - control plane: [`Provider`], [`ProviderContext`], [`Inventory`], [`InventoryMachine`],
//!   [`SnapshotRef`], [`from_spec`], [`TargetInventory`], the crate's [`Error`];
//! - data plane: [`aws::ebs`] (`EbsSnapshotSource`), [`azure::blob`] (`SasPageBlobSource`, a
//!   snapshot's page blob read over its SAS URL).

#[cfg(any(feature = "control-plane", feature = "data-plane"))]
pub mod aws;
#[cfg(any(feature = "control-plane", feature = "data-plane"))]
pub mod azure;
#[cfg(feature = "control-plane")]
mod credentials;
#[cfg(feature = "control-plane")]
mod error;
#[cfg(feature = "control-plane")]
pub mod gcp;
#[cfg(feature = "control-plane")]
pub mod images;
#[cfg(feature = "control-plane")]
mod provider;
#[cfg(feature = "control-plane")]
mod registry;
#[cfg(feature = "control-plane")]
mod targets;
#[cfg(all(test, feature = "control-plane"))]
mod testing;
#[cfg(feature = "control-plane")]
mod wait;

#[cfg(feature = "control-plane")]
pub use error::{Error, Result};
#[cfg(feature = "control-plane")]
pub use provider::{
    BlockVolume, Inventory, InventoryMachine, Provider, ProviderContext, ReadGrant, SnapshotRef,
};
#[cfg(feature = "control-plane")]
pub use registry::from_spec;
#[cfg(feature = "control-plane")]
pub use targets::{TargetInventory, normalize_target_name};
#[cfg(feature = "control-plane")]
pub use wait::SnapshotWait;
