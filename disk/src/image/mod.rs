//! Virtual disk container formats, detected from content: raw, qcow2, VHD, VHDX, VMDK.
//! Each format is a [`crate::BlockSource`] over the source below it.
//!
//! Detection never trusts a file name: [`open_image`] looks at the magic numbers at the start
//! (qcow2, VHDX, VMDK sparse, VMDK descriptor, VHD dynamic) and at the end (VHD footer) and
//! falls back to raw. Formats or features this crate does not read (backing files, differencing
//! disks, encryption, split VMDKs) fail with [`DiskError::Unsupported`] naming the feature,
//! rather than being read as raw bytes that would look like garbage.

use std::sync::Arc;

use crate::source::BlockSource;
use crate::{DiskError, Result};

pub mod qcow2;
mod units;
pub mod vhd;
pub mod vhdx;
pub mod vmdk;

/// Detect the container format of `source` and open it.
///
/// Returns the format name (`raw`, `qcow2`, `vhd`, `vhdx`, `vmdk`) and the virtual disk as a
/// block source (the source itself for raw).
pub fn open_image(source: Arc<dyn BlockSource>) -> Result<(&'static str, Arc<dyn BlockSource>)> {
    let mut head = [0u8; 512];
    let n = head
        .len()
        .min(usize::try_from(source.size()).unwrap_or(head.len()));
    source.read_at(0, &mut head[..n])?;
    let head = &head[..n];
    if head.starts_with(qcow2::MAGIC) {
        return Ok(("qcow2", Arc::new(qcow2::Qcow2::open(source)?)));
    }
    if head.starts_with(vhdx::MAGIC) {
        return Ok(("vhdx", Arc::new(vhdx::Vhdx::open(source)?)));
    }
    if head.starts_with(vmdk::MAGIC) {
        return Ok(("vmdk", Arc::new(vmdk::Vmdk::open(source)?)));
    }
    if head.starts_with(b"COWD") {
        return Err(DiskError::unsupported(
            "vmdk",
            "VMware 3 (COWD) sparse extents are not supported",
        ));
    }
    if head.starts_with(b"# Disk DescriptorFile") {
        return Err(DiskError::unsupported(
            "vmdk",
            "descriptor-only VMDK: its data is in other files, open the extent file instead",
        ));
    }
    if head.starts_with(vhd::MAGIC) || vhd::has_footer(source.as_ref())? {
        return Ok(("vhd", Arc::new(vhd::Vhd::open(source)?)));
    }
    Ok(("raw", source))
}
