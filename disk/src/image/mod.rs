//! Virtual disk container formats, detected from content: raw, qcow2, VHD, VHDX, VMDK.
//! Each format is a [`crate::BlockSource`] over the source below it.
