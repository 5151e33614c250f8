//! Per-request evidence time with and without the vTPM: `dait_agent::http::bundle` (what `GET
//! /v1/attestation` runs for a nonce it has not cached) on the simulated TEE alone, and on the simulated TEE
//! with a real swtpm on 127.0.0.1 (`--tpm`: a TPM2_Quote over ten PCRs and the PCR read), interleaved, with
//! the ratio of the medians from the same run.
//!
//! Run: `cargo bench -p dait-agent --features simulated-tee,vtpm --bench vtpm` (needs `swtpm`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Swtpm, simulated_app, swtpm_available};
use dait_chain_client::Freshness;

const RUNS: usize = 300;
const WARMUP: usize = 30;

fn percentile(v: &[Duration], p: usize) -> Duration {
    v[(v.len() * p / 100).min(v.len() - 1)]
}

fn report(name: &str, v: &mut [Duration]) -> Duration {
    v.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let p50 = percentile(v, 50);
    println!(
        "{name:<36} p50 {:>9.1} us   p90 {:>9.1} us   p99 {:>9.1} us   ({} runs)",
        us(p50),
        us(percentile(v, 90)),
        us(percentile(v, 99)),
        v.len()
    );
    p50
}

fn main() {
    if !swtpm_available() {
        return;
    }
    let tpm = Swtpm::start();
    let (plain, _plain_dir) = simulated_app(&[], dait_agent::Mode::Attest);
    let (with_tpm, _tpm_dir) = simulated_app(&["--tpm", &tpm.tcti()], dait_agent::Mode::Attest);
    let mut alone = Vec::with_capacity(RUNS);
    let mut quoted = Vec::with_capacity(RUNS);
    for i in 0..WARMUP + RUNS {
        let mut nonce = [0u8; 32];
        nonce[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let freshness = Freshness::TenantNonce(nonce);
        let t = Instant::now();
        dait_agent::http::bundle(&plain, &freshness).unwrap();
        let a = t.elapsed();
        let t = Instant::now();
        let bytes = dait_agent::http::bundle(&with_tpm, &freshness).unwrap();
        let q = t.elapsed();
        if i >= WARMUP {
            alone.push(a);
            quoted.push(q);
        }
        if i == 0 {
            let bundle = dait_chain_client::decode_bundle(&bytes).unwrap();
            assert!(bundle.tpm.is_some(), "the --tpm bundle carries a quote");
        }
    }
    println!("evidence per request (dait_agent::http::bundle), simulated TEE; swtpm on 127.0.0.1");
    let a = report("simulated TEE alone", &mut alone);
    let q = report("simulated TEE + swtpm quote", &mut quoted);
    println!(
        "ratio of medians (with / without the vTPM): {:.1}x",
        q.as_secs_f64() / a.as_secs_f64()
    );
}
