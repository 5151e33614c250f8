//! Test and bench support: the real engine (or a skip), and a genuine receipt for a call served by it, signed
//! the way the agent signs one.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use dait_audit::inputs::HostKey;
use dait_audit::{Audit, DEFAULT_REPLAY_TIMEOUT};
use dait_chain_client::WireMessage as _;
use dait_chain_client::{
    B256, NormalizedResponse, Receipt, SignedReceipt, keyset_hash, request_hash,
};
use dait_tenant::EngineClient;
use dait_verifier::bundle::fixture::Fixture;
use sha2::{Digest as _, Sha256};

/// The engine build id the tests' receipts name.
pub const ENGINE_BUILD: &str = "llama-cpp-python-0.3.36 (test)";

/// A replayable chat request: temperature 0 and a seed; `max_tokens` set, so the agent sends it unchanged.
pub const REQUEST: &str = r#"{"model":"smollm2-135m-instruct-q4_1","messages":[{"role":"user","content":"Name three colours."}],"temperature":0,"seed":7,"max_tokens":16}"#;

/// The real engine and the weights file it serves.
#[derive(Clone, Debug)]
pub struct Engine {
    pub url: String,
    pub weights: PathBuf,
}

/// The engine at `DAIT_ENGINE_URL`, or the one `scripts/engine.sh start` started, with the weights file it
/// serves; `None` (the caller skips) without one, a panic instead when `DAIT_REQUIRE_ENGINE=1`.
pub fn engine() -> Option<Engine> {
    let url = dait_testdata::engine_url()?;
    Some(Engine {
        url,
        weights: dait_testdata::engine_model().expect(
            "the engine's weights file is unknown: set DAIT_ENGINE_MODEL (scripts/engine.sh model)",
        ),
    })
}

/// SHA-256 of the weights file, computed once per process.
pub fn weight_hash(weights: &Path) -> B256 {
    static HASH: OnceLock<(PathBuf, B256)> = OnceLock::new();
    let (path, hash) = HASH.get_or_init(|| {
        let bytes = std::fs::read(weights).expect("reading the weights file");
        (weights.to_owned(), B256(Sha256::digest(&bytes).into()))
    });
    assert_eq!(path, weights);
    *hash
}

/// A call served by the real engine: the signed receipt and how long the engine took.
pub struct Served {
    pub receipt: SignedReceipt,
    pub served: Duration,
    fixture: Fixture,
}

impl Served {
    /// The host key (and domain) the receipt verifies under.
    pub fn host_key(&self) -> HostKey {
        HostKey {
            key: self.fixture.receipt_key.verifying_key(),
            domain: self.fixture.keyset.domain(),
        }
    }

    /// The receipt changed by `f` and signed again by the same key.
    pub fn resigned(&self, f: impl FnOnce(&mut Receipt)) -> SignedReceipt {
        let mut r = self.receipt.receipt.clone();
        f(&mut r);
        self.fixture
            .receipt_key
            .sign_receipt(r, &self.fixture.keyset.domain())
    }

    /// An audit of `receipt` for `request` on `engine` with the tests' build id.
    pub fn audit(&self, engine: &Engine, receipt: SignedReceipt, request: &str) -> Audit {
        Audit {
            receipt,
            request: request.as_bytes().to_vec(),
            host_key: self.host_key(),
            weights: engine.weights.clone(),
            engine_build: ENGINE_BUILD.to_owned(),
            engine_url: engine.url.clone(),
            timeout: DEFAULT_REPLAY_TIMEOUT,
        }
    }
}

/// Serves `request` (a body with `seed` and `max_tokens`, which the agent sends to the engine unchanged) on the
/// real engine and signs its receipt as the agent does: the engine's usage, the normalised response hash, the
/// request's seed, `deterministic = true`, the fixture's receipt key, keyset and domain.
pub async fn serve(engine: &Engine, request: &str) -> Served {
    let fixture = Fixture::new();
    let json: serde_json::Value = serde_json::from_str(request).unwrap();
    let path = if json.get("messages").is_some() {
        "/v1/chat/completions"
    } else {
        "/v1/completions"
    };
    let client = EngineClient::new(&engine.url).unwrap();
    let start = Instant::now();
    let body = tokio::time::timeout(
        Duration::from_secs(300),
        client.request(http::Method::POST, path, Some(request.as_bytes().to_vec())),
    )
    .await
    .expect("the engine answers within 300 s")
    .expect("the engine serves the request");
    let served = start.elapsed();
    let normalized = NormalizedResponse::from_body(&body).unwrap();
    let usage = normalized.reported_usage.expect("the engine reports usage");
    let host_key_id = fixture.receipt_key.verifying_key().key_id();
    let receipt = Receipt {
        version: 1,
        channel_id: B256([0xc1; 32]),
        call_seq: 1,
        host_key_id,
        keyset_hash: keyset_hash(&fixture.keyset.encode()),
        model_id: json["model"].as_str().unwrap_or("default").to_owned(),
        weight_hash: weight_hash(&engine.weights),
        request_hash: request_hash(request.as_bytes()),
        response_hash: normalized.response_hash(usage).unwrap(),
        request_ct_hash: B256([4; 32]),
        response_ct_hash: B256::ZERO,
        tokens_in: usage.prompt_tokens,
        tokens_out: usage.completion_tokens,
        price_in: 2,
        price_out: 3,
        amount: u128::from(usage.prompt_tokens) * 2 + u128::from(usage.completion_tokens) * 3,
        cumulative: u128::from(usage.prompt_tokens) * 2 + u128::from(usage.completion_tokens) * 3,
        prev_receipt_hash: B256::ZERO,
        timestamp: 1_750_000_000,
        seed: json["seed"].as_u64().unwrap_or(0),
        engine_build: B256(Sha256::digest(ENGINE_BUILD.as_bytes()).into()),
        deterministic: true,
    };
    let receipt = fixture
        .receipt_key
        .sign_receipt(receipt, &fixture.keyset.domain());
    Served {
        receipt,
        served,
        fixture,
    }
}
