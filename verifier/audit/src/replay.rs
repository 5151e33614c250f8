//! The replay: the checks of a receipt in order, the re-run of its request on the auditor's engine, and the
//! report of what was found.

use std::io::Read as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use dait_chain_client::{
    B256, HostVerifyingKey, NormalizedResponse, SignedReceipt, Usage, request_hash,
};
use dait_tenant::EngineClient;
use http::Method;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::error::{AuditError, Check, Verdict};
use crate::inputs::HostKey;
use crate::request::ReplayRequest;

/// The default bound on the replayed call.
pub const DEFAULT_REPLAY_TIMEOUT: Duration = Duration::from_secs(600);

/// Everything a replay needs.
pub struct Audit {
    /// The signed receipt to audit.
    pub receipt: SignedReceipt,
    /// The disclosed plaintext request (the inner request body, byte for byte).
    pub request: Vec<u8>,
    /// The host's receipt key and its domain.
    pub host_key: HostKey,
    /// The weights file the engine serves.
    pub weights: PathBuf,
    /// The engine build id (its SHA-256 must be the receipt's `engine_build`).
    pub engine_build: String,
    /// The engine's base URL, `http://host:port`.
    pub engine_url: String,
    /// The bound on the replayed call.
    pub timeout: Duration,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The request is a tenant's plaintext: never print it.
        f.debug_struct("Audit")
            .field("receipt", &self.receipt)
            .field("request_len", &self.request.len())
            .field("weights", &self.weights)
            .field("engine_build", &self.engine_build)
            .field("engine_url", &self.engine_url)
            .finish_non_exhaustive()
    }
}

/// What a replay found.
#[derive(Debug)]
pub struct Report {
    /// `Ok` for a match, else the check that failed.
    pub result: Result<(), AuditError>,
    /// The receipt's hash (its EIP-712 signing digest).
    pub receipt_hash: B256,
    /// Milliseconds the replayed engine call took, if it ran.
    pub replay_ms: Option<u64>,
    /// Milliseconds the whole replay took (hashing the weights included).
    pub total_ms: u64,
    /// The usage the engine reported for the replay, if it ran and reported one.
    pub engine_usage: Option<Usage>,
    /// The hash of the replayed response, if it was computed.
    pub replayed_response_hash: Option<B256>,
    receipt: SignedReceipt,
}

impl Report {
    /// The verdict.
    pub fn verdict(&self) -> Verdict {
        match &self.result {
            Ok(()) => Verdict::Match,
            Err(e) => e.verdict(),
        }
    }

    /// The failed check, if any.
    pub fn check(&self) -> Option<Check> {
        self.result.as_ref().err().map(AuditError::check)
    }

    /// The JSON verdict the CLI prints.
    pub fn to_json(&self) -> Value {
        let r = &self.receipt.receipt;
        let detail = match &self.result {
            Ok(()) => "the replayed response hashes to the receipt's response_hash".to_owned(),
            Err(e) => chain(e),
        };
        json!({
            "verdict": self.verdict().as_str(),
            "check": self.check().map(Check::as_str),
            "detail": detail,
            "replay_ms": self.replay_ms,
            "total_ms": self.total_ms,
            "receipt_hash": self.receipt_hash.to_string(),
            "channel_id": r.channel_id.to_string(),
            "call_seq": r.call_seq,
            "host_key_id": r.host_key_id.to_string(),
            "model_id": r.model_id,
            "weight_hash": r.weight_hash.to_string(),
            "engine_build": r.engine_build.to_string(),
            "deterministic": r.deterministic,
            "seed": r.seed,
            "tokens_in": r.tokens_in,
            "tokens_out": r.tokens_out,
            "engine_usage": self.engine_usage.map(|u| json!({
                "prompt_tokens": u.prompt_tokens,
                "completion_tokens": u.completion_tokens,
            })),
            "response_hash": r.response_hash.to_string(),
            "replayed_response_hash": self.replayed_response_hash.map(|h| h.to_string()),
        })
    }
}

/// An error and its causes, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// What the replay fills in as it goes.
#[derive(Default)]
struct Progress {
    replay_ms: Option<u64>,
    engine_usage: Option<Usage>,
    replayed_response_hash: Option<B256>,
}

/// Runs the checks in order and the replay; the first failure ends it.
pub async fn replay(audit: &Audit) -> Report {
    let start = Instant::now();
    let mut progress = Progress::default();
    let result = run(audit, &mut progress).await;
    Report {
        result,
        receipt_hash: audit.receipt.receipt.signing_digest(&audit.host_key.domain),
        replay_ms: progress.replay_ms,
        total_ms: millis(start.elapsed()),
        engine_usage: progress.engine_usage,
        replayed_response_hash: progress.replayed_response_hash,
        receipt: audit.receipt.clone(),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

async fn run(audit: &Audit, progress: &mut Progress) -> Result<(), AuditError> {
    let r = &audit.receipt.receipt;
    check_key(audit.host_key.key, r.host_key_id)?;
    audit
        .receipt
        .verify(&audit.host_key.key, &audit.host_key.domain)
        .map_err(AuditError::Signature)?;
    let disclosed = request_hash(&audit.request);
    if disclosed != r.request_hash {
        return Err(AuditError::RequestHash {
            receipt: r.request_hash,
            disclosed,
        });
    }
    if !r.deterministic {
        return Err(AuditError::NotDeterministic);
    }
    let request = ReplayRequest::parse(&audit.request).map_err(AuditError::NotReplayable)?;
    if r.seed != request.seed {
        return Err(AuditError::Seed {
            receipt: r.seed,
            request: request.seed,
        });
    }
    let file = file_sha256(&audit.weights).map_err(AuditError::WeightsRead)?;
    if file != r.weight_hash {
        return Err(AuditError::Weights {
            receipt: r.weight_hash,
            file,
        });
    }
    let given = B256(Sha256::digest(audit.engine_build.as_bytes()).into());
    if given != r.engine_build {
        return Err(AuditError::EngineBuild {
            receipt: r.engine_build,
            given,
        });
    }

    let engine = EngineClient::new(&audit.engine_url).map_err(AuditError::Engine)?;
    let deadline = Instant::now() + audit.timeout;
    let models = bounded(deadline, engine.request(Method::GET, "/v1/models", None)).await?;
    if !serves(&models, &r.model_id) {
        return Err(AuditError::Model);
    }

    let body = request.engine_body(r.seed);
    let started = Instant::now();
    let answer = bounded(
        deadline,
        engine.request(Method::POST, request.path, Some(body)),
    )
    .await?;
    progress.replay_ms = Some(millis(started.elapsed()));

    let normalized = NormalizedResponse::from_body(&answer).map_err(AuditError::EngineAnswer)?;
    let usage = Usage {
        prompt_tokens: r.tokens_in,
        completion_tokens: r.tokens_out,
    };
    progress.engine_usage = normalized.reported_usage;
    if let Some(engine) = normalized.reported_usage.filter(|u| *u != usage) {
        return Err(AuditError::Usage {
            receipt: usage,
            engine,
        });
    }
    let replayed = normalized
        .response_hash(usage)
        .map_err(AuditError::EngineAnswer)?;
    progress.replayed_response_hash = Some(replayed);
    if replayed != r.response_hash {
        return Err(AuditError::ResponseHash {
            receipt: r.response_hash,
            replayed,
        });
    }
    Ok(())
}

fn check_key(key: HostVerifyingKey, receipt: B256) -> Result<(), AuditError> {
    let given = key.key_id();
    if given == receipt {
        Ok(())
    } else {
        Err(AuditError::HostKey { receipt, given })
    }
}

/// Awaits an engine call, failing at `deadline`.
async fn bounded(
    deadline: Instant,
    call: impl Future<Output = Result<Vec<u8>, dait_tenant::TenantError>>,
) -> Result<Vec<u8>, AuditError> {
    tokio::time::timeout_at(deadline.into(), call)
        .await
        .map_err(|_| AuditError::EngineTimeout)?
        .map_err(AuditError::Engine)
}

/// Whether the `/v1/models` answer lists `model_id` (the agent's `--model-id`; `default`, the agent's
/// default, names no model and is accepted whatever the engine serves).
fn serves(models: &[u8], model_id: &str) -> bool {
    if model_id == "default" {
        return true;
    }
    let Ok(v) = serde_json::from_slice::<Value>(models) else {
        return false;
    };
    v.get("data").and_then(Value::as_array).is_some_and(|data| {
        data.iter()
            .any(|m| m.get("id").and_then(Value::as_str) == Some(model_id))
    })
}

/// SHA-256 of a file's content, read in 1 MiB pieces.
fn file_sha256(path: &std::path::Path) -> std::io::Result<B256> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    Ok(B256(hasher.finalize().into()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn model_list() {
        let list = br#"{"object":"list","data":[{"id":"smollm2","object":"model"}]}"#;
        assert!(serves(list, "smollm2"));
        assert!(!serves(list, "other"));
        assert!(serves(list, "default"));
        assert!(!serves(b"not json", "smollm2"));
    }

    #[test]
    fn weights_hash() {
        let path = std::env::temp_dir().join(format!("dait-audit-weights-{}", std::process::id()));
        std::fs::write(&path, b"abc").unwrap();
        let h = file_sha256(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            h.to_string(),
            "0xba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
