#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| dait_verifier::fuzzing::bundle(data));
