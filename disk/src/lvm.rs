//! LVM2: physical volume labels, text metadata, linear logical volumes.
