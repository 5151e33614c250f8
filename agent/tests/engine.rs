//! The agent in front of the real development engine (`DAIT_ENGINE_URL`, started by
//! `scripts/engine.sh`): a streamed call is metered exactly like the same non-streamed call, and
//! both have the same response hash. Skipped when no engine is configured, unless
//! `DAIT_REQUIRE_ENGINE=1`, which makes a missing engine a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use serde_json::json;

fn engine_url() -> Option<String> {
    match std::env::var("DAIT_ENGINE_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var("DAIT_REQUIRE_ENGINE").as_deref() != Ok("1"),
                "DAIT_REQUIRE_ENGINE=1 but DAIT_ENGINE_URL is not set"
            );
            eprintln!("skipped: DAIT_ENGINE_URL not set");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_usage_equals_plain_usage_on_the_real_engine() {
    let Some(url) = engine_url() else { return };
    tokio::time::timeout(std::time::Duration::from_secs(300), run(url))
        .await
        .expect("timed out");
}

async fn run(url: String) {
    let flags = [
        "--upstream",
        &url,
        "--price-in",
        "1",
        "--price-out",
        "4",
        "--model-id",
        "smollm2-135m-instruct-q4_1",
    ];
    let agent = serve_in_process(&flags, true).await;
    let mut conn = Conn::connect(agent.addr, true).await.unwrap();
    let info = host_info(&mut conn).await;
    let mut t = Tenant::new(&info, u128::MAX / 2, 1);

    let cases = [
        (
            "/v1/chat/completions",
            json!({"model":"m","messages":[{"role":"user","content":"What is the capital of France?"}],"temperature":0,"max_tokens":12}),
        ),
        (
            "/v1/chat/completions",
            json!({"model":"m","messages":[{"role":"system","content":"Réponds en français."},{"role":"user","content":"Dis bonjour 👋"}],"temperature":0,"max_tokens":10}),
        ),
        (
            "/v1/completions",
            json!({"model":"m","prompt":"The capital of France is","temperature":0,"max_tokens":8}),
        ),
    ];
    for (path, body) in cases {
        let plain_body = body.to_string().into_bytes();
        let plain = t.call(&mut conn, path, &plain_body).await;
        assert_eq!(
            plain.status,
            200,
            "{}",
            String::from_utf8_lossy(&plain.body)
        );
        t.accept(&plain, false).unwrap();
        let mut sbody = body.clone();
        sbody["stream"] = json!(true);
        let streamed = t
            .stream(&mut conn, path, &sbody.to_string().into_bytes())
            .await;
        assert_eq!(streamed.status, 200);
        t.accept(&streamed, true).unwrap();
        let p = &plain.receipt.as_ref().unwrap().receipt;
        let s = &streamed.receipt.as_ref().unwrap().receipt;
        let v: serde_json::Value = serde_json::from_slice(&plain.body).unwrap();
        assert_eq!(p.tokens_in, v["usage"]["prompt_tokens"].as_u64().unwrap());
        assert_eq!(
            p.tokens_out,
            v["usage"]["completion_tokens"].as_u64().unwrap()
        );
        assert_eq!(
            (s.tokens_in, s.tokens_out),
            (p.tokens_in, p.tokens_out),
            "{path}: streamed metering"
        );
        assert_eq!(
            s.response_hash, p.response_hash,
            "{path}: same normalised response"
        );
    }
}
