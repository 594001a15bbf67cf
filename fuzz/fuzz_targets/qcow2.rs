#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| snapsentry_disk::image::qcow2::fuzz(data));
