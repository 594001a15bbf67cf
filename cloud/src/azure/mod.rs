//! Azure. The data plane: a managed disk snapshot, exported as a SAS URL to its page blob, read
//! as a [`snapsentry_disk::BlockSource`] ([`blob::SasPageBlobSource`]).

#[cfg(feature = "data-plane")]
pub mod blob;
#[cfg(feature = "control-plane")]
pub mod exposure;
#[cfg(feature = "control-plane")]
pub mod network;
#[cfg(feature = "data-plane")]
mod requests;
#[cfg(feature = "data-plane")]
pub mod sas;
#[cfg(feature = "control-plane")]
pub mod services;
