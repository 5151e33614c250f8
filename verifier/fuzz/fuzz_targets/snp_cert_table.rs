#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| dait_verifier::fuzzing::snp_cert_table(data));
