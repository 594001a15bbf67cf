#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| snapsentry_disk::fuzzing::archive(data));
