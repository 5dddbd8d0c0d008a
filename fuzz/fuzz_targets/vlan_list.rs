//! Fuzz target: see `mkheadnode_fuzz::vlan_list`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mkheadnode_fuzz::vlan_list(data));
