//! Fuzz target: see `mkheadnode_fuzz::template`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mkheadnode_fuzz::template(data));
