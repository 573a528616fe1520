//! libFuzzer target: see `kbdump_fuzz::check_aof_read`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kbdump_fuzz::check_aof_read(data));
