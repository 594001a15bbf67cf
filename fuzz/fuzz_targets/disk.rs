#![no_main]
//! The whole stack on arbitrary bytes: image format, partition table, LVM, filesystems.
libfuzzer_sys::fuzz_target!(|data: &[u8]| snapsentry_disk::fuzzing::disk(data));
