//! Intel collateral fetch time from a local PCS on 127.0.0.1 (the real tdx-A1 collateral, real paths and
//! headers): a cold fetch (four requests, parse, freshness check, cache write) and a cache hit (read and
//! parse the cached PCS directory). No network beyond the loopback.
//!
//! Run: `cargo bench -p dait-agent --bench collateral`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{PcsFaults, PcsServer, PcsSet};
use dait_agent::collateral::{PckCa, PcsClient};
use dait_verifier::UnixTime;

const RUNS: usize = 200;

fn report(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let p50 = us(v[v.len() / 2]);
    let p99 = us(v[v.len() * 99 / 100]);
    println!(
        "{name:<48} p50 {p50:>9.1} us   p99 {p99:>9.1} us   ({} runs)",
        v.len()
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let server = PcsServer::start(PcsSet::go_tdx_guest_a1(), PcsFaults::default()).await;
        let now = UnixTime::parse_rfc3339("2023-07-01T01:00:00Z").unwrap();
        let cache = tempfile::tempdir().unwrap();
        let client = PcsClient::new(&server.url(), Path::new("unused"), cache.path()).unwrap();
        let dir = client.cache_path("50806f000000", PckCa::Platform);
        println!("Intel TDX collateral (tdx-A1, FMSPC 50806f000000) from a local PCS on 127.0.0.1");
        let mut cold = Vec::with_capacity(RUNS);
        for i in 0..RUNS + RUNS / 10 {
            std::fs::remove_dir_all(&dir).ok();
            let t = Instant::now();
            client
                .collateral("50806f000000", PckCa::Platform, now)
                .await
                .unwrap();
            if i >= RUNS / 10 {
                cold.push(t.elapsed());
            }
        }
        report("cold: 4 requests + parse + cache write", cold);
        let before = server.requests();
        let mut warm = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let t = Instant::now();
            client
                .collateral("50806f000000", PckCa::Platform, now)
                .await
                .unwrap();
            warm.push(t.elapsed());
        }
        assert_eq!(server.requests(), before, "a cache hit sends no request");
        report("cache hit: read + parse the PCS directory", warm);
        server.stop().await;
    });
}
