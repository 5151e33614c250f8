//! Forwarding to the upstream OpenAI-compatible engine on loopback, and reading what it answers:
//! the `usage` of a plain response, and the server-sent events of a stream.

use bytes::Bytes;
use dait_chain_client::{B256, NormalizedResponse, Usage};
use http::{Method, Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value};
use std::time::Duration;

use crate::config::Limits;

/// Default largest non-streamed upstream response body read (bytes); `--max-response-bytes` sets it.
pub const MAX_UPSTREAM_BODY: usize = 16 << 20;

/// What the readiness probe asks the engine: the model list, which every OpenAI-compatible engine
/// serves (vLLM, llama.cpp's server, llama-cpp-python) and which answers without running the model.
pub const ENGINE_HEALTH_PATH: &str = "/v1/models";

/// Largest probe answer read (bytes).
const MAX_PROBE_BODY: usize = 1 << 20;

/// Errors talking to the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Building the upstream request failed.
    #[error("bad upstream request")]
    Build(#[from] http::Error),
    /// Connection or protocol failure.
    #[error("upstream unreachable")]
    Connect(#[from] hyper_util::client::legacy::Error),
    /// Reading the body failed.
    #[error("upstream body")]
    Body(#[from] hyper::Error),
    /// The engine answered with a non-success status.
    #[error("upstream status {0}")]
    Status(u16),
    /// The engine's JSON could not be read.
    #[error("upstream json")]
    Json(#[from] serde_json::Error),
    /// The engine's answer lacked usage.
    #[error("upstream response without usage")]
    NoUsage,
    /// The upstream response was too large.
    #[error("upstream response too large")]
    TooLarge,
    /// The engine's answer could not be normalised.
    #[error("upstream response does not normalise")]
    Normalize(#[source] dait_chain_client::NormalizeError),
    /// The stream ended without `[DONE]` or without a finish reason.
    #[error("upstream stream incomplete")]
    Incomplete,
    /// The tokenizer endpoint could not be used.
    #[error("upstream tokenizer")]
    Tokenize,
    /// The engine did not answer in time (`first byte`: no response head within the first-byte
    /// timeout; `deadline`: the whole call took longer than the call deadline).
    #[error("upstream timed out ({0})")]
    Timeout(&'static str),
}

/// How long the engine may take: to connect, to start its answer, and for the whole call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamTimeouts {
    /// TCP connect.
    pub connect: Duration,
    /// From sending the request to the response head.
    pub first_byte: Duration,
    /// The whole call, the answer's body (or stream) included.
    pub deadline: Duration,
}

impl From<&Limits> for UpstreamTimeouts {
    fn from(l: &Limits) -> Self {
        Self {
            connect: l.upstream_connect_timeout,
            first_byte: l.upstream_first_byte_timeout,
            deadline: l.upstream_deadline,
        }
    }
}

impl Default for UpstreamTimeouts {
    fn default() -> Self {
        Self::from(&Limits::DEFAULT)
    }
}

/// Pooled HTTP/1.1 client for the engine.
#[derive(Clone, Debug)]
pub struct EngineClient {
    client: Client<HttpConnector, Full<Bytes>>,
    base: Uri,
    timeouts: UpstreamTimeouts,
    max_body: usize,
}

impl EngineClient {
    /// A client for the engine at `base` (e.g. `http://127.0.0.1:8000`), with the default
    /// timeouts.
    pub fn new(base: Uri) -> Self {
        Self::with_timeouts(base, UpstreamTimeouts::default())
    }

    /// A client for the engine at `base` with the given timeouts.
    pub fn with_timeouts(base: Uri, timeouts: UpstreamTimeouts) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeouts.connect));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(256)
            .build(connector);
        Self {
            client,
            base,
            timeouts,
            max_body: MAX_UPSTREAM_BODY,
        }
    }

    /// This client, reading non-streamed answers of at most `max_body` bytes
    /// ([`EngineError::TooLarge`] past it).
    #[must_use]
    pub fn with_max_body(mut self, max_body: usize) -> Self {
        self.max_body = max_body;
        self
    }

    /// The timeouts of this client.
    pub fn timeouts(&self) -> UpstreamTimeouts {
        self.timeouts
    }

    fn uri(&self, path: &str) -> Result<Uri, http::Error> {
        let base = self.base.to_string();
        let base = base.trim_end_matches('/');
        Ok(format!("{base}{path}").parse::<Uri>()?)
    }

    /// POST a JSON body; returns the response with its body unread, failing when its head does not
    /// come within the first-byte timeout (the caller bounds the body by the call deadline).
    pub async fn post(
        &self,
        path: &str,
        body: Bytes,
    ) -> Result<http::Response<Incoming>, EngineError> {
        let req = Request::builder()
            .method(Method::POST)
            .uri(self.uri(path)?)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))?;
        let resp = tokio::time::timeout(self.timeouts.first_byte, self.client.request(req))
            .await
            .map_err(|_| EngineError::Timeout("first byte"))??;
        if !resp.status().is_success() {
            return Err(EngineError::Status(resp.status().as_u16()));
        }
        Ok(resp)
    }

    /// `GET` [`ENGINE_HEALTH_PATH`]: `Ok` when the engine answers with a success status.
    pub async fn probe(&self) -> Result<(), EngineError> {
        let req = Request::builder()
            .method(Method::GET)
            .uri(self.uri(ENGINE_HEALTH_PATH)?)
            .body(Full::new(Bytes::new()))?;
        let resp = self.client.request(req).await?;
        if !resp.status().is_success() {
            return Err(EngineError::Status(resp.status().as_u16()));
        }
        read_limited(resp.into_body(), MAX_PROBE_BODY).await?;
        Ok(())
    }

    /// POST and read the whole JSON answer, within the call deadline.
    pub async fn post_json(&self, path: &str, body: Bytes) -> Result<Bytes, EngineError> {
        let call = async {
            let resp = self.post(path, body).await?;
            read_limited(resp.into_body(), self.max_body).await
        };
        tokio::time::timeout(self.timeouts.deadline, call)
            .await
            .map_err(|_| EngineError::Timeout("deadline"))?
    }
}

/// Read a body, failing past `limit` bytes.
pub async fn read_limited(mut body: Incoming, limit: usize) -> Result<Bytes, EngineError> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if out.len() + data.len() > limit {
                return Err(EngineError::TooLarge);
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.into())
}

/// Rewrite a streaming request so the engine reports usage (`stream_options.include_usage`).
pub fn ask_for_usage(body: &mut Map<String, Value>) {
    let opts = body
        .entry("stream_options")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(o) = opts {
        o.insert("include_usage".into(), Value::Bool(true));
    }
}

/// `response_hash` over the normalised response with the metered usage.
pub fn response_hash(n: &NormalizedResponse, usage: Usage) -> Result<B256, EngineError> {
    n.response_hash(usage).map_err(EngineError::Normalize)
}

impl EngineClient {
    /// Meter a streamed call whose engine sent no `usage` (llama.cpp's server, see `docs/ENGINE.md`):
    /// prompt tokens from the engine's own count for the same request run non-streamed with
    /// `max_tokens: 1` (same chat template, same tokenizer; the engine reuses the cached prompt),
    /// completion tokens from the engine's tokenizer over each choice's generated text
    /// (`/extras/tokenize/count`, less the tokens it adds to an empty input).
    pub async fn meter_stream(
        &self,
        path: &str,
        request: &Map<String, Value>,
        response: &NormalizedResponse,
    ) -> Result<Usage, EngineError> {
        let mut twin = request.clone();
        twin.insert("stream".into(), Value::Bool(false));
        twin.remove("stream_options");
        twin.remove("max_completion_tokens");
        twin.insert("max_tokens".into(), 1.into());
        twin.insert("n".into(), 1.into());
        let body = self
            .post_json(path, Bytes::from(Value::Object(twin).to_string()))
            .await?;
        let prompt_tokens = NormalizedResponse::from_body(&body)
            .map_err(EngineError::Normalize)?
            .reported_usage
            .ok_or(EngineError::NoUsage)?
            .prompt_tokens;
        let base = self.count_tokens(request, "").await?;
        let mut completion_tokens = 0u64;
        for c in &response.choices {
            if c.content.is_empty() {
                continue;
            }
            let n = self.count_tokens(request, &c.content).await?;
            completion_tokens = completion_tokens.saturating_add(n.saturating_sub(base));
        }
        Ok(Usage {
            prompt_tokens,
            completion_tokens,
        })
    }

    async fn count_tokens(
        &self,
        request: &Map<String, Value>,
        text: &str,
    ) -> Result<u64, EngineError> {
        let mut m = Map::new();
        m.insert("input".into(), Value::String(text.to_owned()));
        if let Some(model) = request.get("model") {
            m.insert("model".into(), model.clone());
        }
        let body = self
            .post_json(
                "/extras/tokenize/count",
                Bytes::from(Value::Object(m).to_string()),
            )
            .await
            .map_err(|_| EngineError::Tokenize)?;
        let v: Value = serde_json::from_slice(&body)?;
        v.get("count")
            .and_then(Value::as_u64)
            .ok_or(EngineError::Tokenize)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_option_is_added() {
        let mut m = Map::new();
        ask_for_usage(&mut m);
        assert_eq!(
            Value::Object(m),
            json!({"stream_options":{"include_usage":true}})
        );
    }
}
