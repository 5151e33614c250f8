#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| { let _ = dait_agent::fuzzing::channel_state_header(data); });
