#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oneway_protocol::fuzzing::proxy_header(data));
