#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| virtfleet_fuzz::inventory(data, "hosts.yml"));
