//! Fuzz target: see `mkheadnode_fuzz::machines`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mkheadnode_fuzz::machines(data));
