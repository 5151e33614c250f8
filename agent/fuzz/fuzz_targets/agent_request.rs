#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| { let _ = dait_agent::fuzzing::inner_request(data); });
