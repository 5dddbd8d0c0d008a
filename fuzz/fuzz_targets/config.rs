//! Fuzz target: see `mkheadnode_fuzz::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mkheadnode_fuzz::config(data));
