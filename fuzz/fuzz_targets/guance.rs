#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oneway_oracle::fuzz::guance(data));
