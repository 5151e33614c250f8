//! The tenant proxy's added latency in redundant mode: the same replayable request through a proxy over
//! one host and through a proxy over three (`--redundant 3`), on the same engines, one request at a time.
//!
//! The hosts are real `dait-host` binaries (simulated TEE, `--engine-deterministic`). Two rounds:
//! - in-test engines (one per host, instant answers): what the redundant mode itself adds (three sealed
//!   calls at once, three receipt checks and channel states, the comparison);
//! - the real CPU engine, when `DAIT_ENGINE_URL` is set or `scripts/engine.sh start` started one: all
//!   three hosts share it, so the engine serves their three calls one after the other, which a
//!   deployment with an engine per host would not.
//!
//! Run: `cargo bench -p dait-agent --features simulated-tee --bench redundant`. Environment:
//! `DAIT_BENCH_REQUESTS` (requests per proxy with the in-test engines, default 200),
//! `DAIT_BENCH_REAL_REQUESTS` (with the real engine, default 8); both are rounded up to a multiple of 4
//! (four interleaved blocks).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/redundant_hosts/mod.rs"]
mod redundant_hosts;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{CHAT, VLLM_LIKE, real_engine_url, start_engine};
use redundant_hosts::{Host, redundant_proxy, request, single_proxy, start_host};
use serde_json::{Value, json};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Sends `body` `n` times (after 2 unmeasured ones) and returns the sorted latencies.
async fn latencies(addr: SocketAddr, body: &Value, n: usize, expect: &str) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n + 2 {
        let start = Instant::now();
        let (status, headers, reply) = request(addr, http::Method::POST, CHAT, Some(body)).await;
        let took = start.elapsed();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
        let agreement = headers.get("x-dait-agreement").map(|v| v.to_str().unwrap());
        assert_eq!(agreement.unwrap_or("single"), expect);
        if i >= 2 {
            out.push(took);
        }
    }
    out.sort();
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Percentile `p` (0..=100) of sorted `v`.
fn pct(v: &[Duration], p: usize) -> Duration {
    v[(v.len() - 1) * p / 100]
}

/// Measures a single-host proxy over `hosts[0]` and a redundant one over all three; prints the figures.
async fn round(name: &str, hosts: [&Host; 3], body: &Value, n: usize) {
    let single_dir = tempfile::tempdir().unwrap();
    let single = single_proxy(hosts[0], single_dir.path()).await;
    let redundant_dir = tempfile::tempdir().unwrap();
    let redundant = redundant_proxy(&hosts, 3, redundant_dir.path()).await;
    // Interleaved in blocks, so that a change in the machine's load hits both alike.
    let blocks = 4;
    let mut one = Vec::new();
    let mut three = Vec::new();
    for _ in 0..blocks {
        one.extend(latencies(single.local_addr(), body, n.div_ceil(blocks), "single").await);
        three.extend(latencies(redundant.local_addr(), body, n.div_ceil(blocks), "3/3").await);
    }
    one.sort();
    three.sort();
    let (m1, m3) = (pct(&one, 50), pct(&three, 50));
    println!(
        "{name}: {} requests each; single host p50 {:.2} ms p90 {:.2} ms; redundant 3 p50 {:.2} ms p90 {:.2} ms; added p50 {:.2} ms ({:.2}x)",
        one.len(),
        ms(m1),
        ms(pct(&one, 90)),
        ms(m3),
        ms(pct(&three, 90)),
        ms(m3) - ms(m1),
        m3.as_secs_f64() / m1.as_secs_f64(),
    );
    single.shutdown().await;
    redundant.shutdown().await;
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "Name three colours."}], "max_tokens": 8, "temperature": 0});
        let mut hosts = Vec::new();
        for _ in 0..3 {
            let (engine, _) = start_engine(VLLM_LIKE).await;
            hosts.push(start_host(&format!("http://{engine}"), "test-model").await);
        }
        let n = env_usize("DAIT_BENCH_REQUESTS", 200);
        round(
            "in-test engines",
            [&hosts[0], &hosts[1], &hosts[2]],
            &body,
            n,
        )
        .await;
        if let Some(url) = real_engine_url() {
            let model = "smollm2-135m-instruct-q4_1";
            let mut real = Vec::new();
            for _ in 0..3 {
                real.push(start_host(&url, model).await);
            }
            let n = env_usize("DAIT_BENCH_REAL_REQUESTS", 8);
            round(
                "real engine, shared by the three hosts",
                [&real[0], &real[1], &real[2]],
                &body,
                n,
            )
            .await;
        }
    });
}
