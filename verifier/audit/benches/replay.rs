//! Replay time against serving time for the same request, on the real engine.
//!
//! Each run serves a replayable request on the engine (what the agent's engine call costs), then replays its
//! receipt with `dait_audit::replay` (every check: signature, request hash, the weights file's SHA-256, the
//! engine's model list, the replayed call, normalisation and hash). Before each of the two an unrelated
//! one-token request clears the engine's cached prompt, so neither reuses the other's prompt evaluation. It
//! prints each run and the medians: the serving time, the replayed engine call, the whole replay, and their
//! ratios.
//!
//! Run: `cargo bench -p dait-audit --bench replay` with the engine running (`scripts/engine.sh start`, or
//! `DAIT_ENGINE_URL`); `DAIT_AUDIT_BENCH_RUNS` sets the number of runs (default 5). Without an engine it
//! prints `skipped: no engine`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use dait_audit::{Verdict, replay};
use dait_tenant::EngineClient;

/// A replayable request that generates its full 64 tokens.
const BENCH_REQUEST: &str = r#"{"model":"smollm2-135m-instruct-q4_1","messages":[{"role":"user","content":"Tell a short story about a lighthouse keeper."}],"temperature":0,"seed":7,"max_tokens":64}"#;

/// An unrelated one-token request: the engine's cached prompt is this one afterwards.
const FLUSH: &str =
    r#"{"messages":[{"role":"user","content":"Count to three."}],"temperature":0,"max_tokens":1}"#;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    let runs: usize = std::env::var("DAIT_AUDIT_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(5);
    let Some(engine) = support::engine() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = EngineClient::new(&engine.url).unwrap();
        let flush = || async {
            tokio::time::timeout(
                Duration::from_secs(300),
                client.request(
                    http::Method::POST,
                    "/v1/chat/completions",
                    Some(FLUSH.as_bytes().to_vec()),
                ),
            )
            .await
            .unwrap()
            .unwrap();
        };
        // Warm-up: hashes the weights once for the receipts (the replay hashes them every time).
        flush().await;
        support::weight_hash(&engine.weights);

        let (mut serve_ms, mut engine_ms, mut total_ms) = (Vec::new(), Vec::new(), Vec::new());
        println!("run  serve_ms  replay_engine_ms  replay_total_ms  tokens_out");
        for run in 1..=runs {
            flush().await;
            let served = support::serve(&engine, BENCH_REQUEST).await;
            flush().await;
            let report = replay(&served.audit(&engine, served.receipt.clone(), BENCH_REQUEST)).await;
            assert_eq!(report.verdict(), Verdict::Match, "{}", report.to_json());
            let s = served.served.as_secs_f64() * 1e3;
            let e = report.replay_ms.unwrap() as f64;
            let t = report.total_ms as f64;
            println!(
                "{run:>3}  {s:>8.0}  {e:>16.0}  {t:>15.0}  {:>10}",
                served.receipt.receipt.tokens_out
            );
            serve_ms.push(s);
            engine_ms.push(e);
            total_ms.push(t);
        }
        let (s, e, t) = (median(serve_ms), median(engine_ms), median(total_ms));
        println!(
            "median over {runs} runs: serve {s:.0} ms, replayed engine call {e:.0} ms ({:.2}x serve), \
             whole replay {t:.0} ms ({:.2}x serve)",
            e / s,
            t / s
        );
    });
}
