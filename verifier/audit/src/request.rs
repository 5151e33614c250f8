//! The disclosed request: whether it is replayable, the seed it implies, and the engine request a replay sends
//! (the shared interface of docs/AUDIT.md §1).

use dait_chain_client::replay;
use serde_json::{Map, Value};

use crate::error::NotReplayable;

/// A replayable request: its JSON, its engine path and the seed it implies.
#[derive(Clone)]
pub struct ReplayRequest {
    json: Map<String, Value>,
    /// `/v1/chat/completions` (the request has `messages`) or `/v1/completions` (`prompt`).
    pub path: &'static str,
    /// The request's `seed`, or 0 without one: the seed a receipt of it must name.
    pub seed: u64,
}

impl std::fmt::Debug for ReplayRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the prompt.
        f.debug_struct("ReplayRequest")
            .field("path", &self.path)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

impl ReplayRequest {
    /// Checks that `body` is replayable: a JSON object whose `temperature` is the number 0 or which has an
    /// integer `seed` in 0..2^63, with `n` absent or 1.
    pub fn parse(body: &[u8]) -> Result<Self, NotReplayable> {
        let json: Map<String, Value> =
            serde_json::from_slice(body).map_err(|_| NotReplayable::NotJson)?;
        let path = match (json.contains_key("messages"), json.contains_key("prompt")) {
            (true, false) => "/v1/chat/completions",
            (false, true) => "/v1/completions",
            _ => return Err(NotReplayable::Path),
        };
        let seed = replay::replay_seed(&json)?;
        Ok(Self { json, path, seed })
    }

    /// The body a replay sends to the engine: the request with `seed` set to `seed`, `max_tokens` set to
    /// [`replay::DEFAULT_MAX_TOKENS`] when it names no limit (as the agent does), and not streamed (a streamed
    /// request loses `stream` and `stream_options`; the normalised response is the same).
    pub fn engine_body(&self, seed: u64) -> Vec<u8> {
        let mut json = self.json.clone();
        json.insert("seed".into(), seed.into());
        replay::limit_tokens(&mut json);
        if json.get("stream").and_then(Value::as_bool) == Some(true) {
            json.insert("stream".into(), Value::Bool(false));
            json.remove("stream_options");
        }
        Value::Object(json).to_string().into_bytes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use dait_chain_client::replay::NotReplayable as Rule;

    fn parse(s: &str) -> Result<ReplayRequest, NotReplayable> {
        ReplayRequest::parse(s.as_bytes())
    }

    #[test]
    fn replayable_requests_and_their_seed() {
        let r = parse(r#"{"messages":[],"temperature":0}"#).unwrap();
        assert_eq!((r.path, r.seed), ("/v1/chat/completions", 0));
        let r = parse(r#"{"prompt":"x","temperature":0.0,"n":1}"#).unwrap();
        assert_eq!((r.path, r.seed), ("/v1/completions", 0));
        let r = parse(r#"{"messages":[],"temperature":0.9,"seed":7}"#).unwrap();
        assert_eq!(r.seed, 7);
        let r = parse(r#"{"messages":[],"seed":9223372036854775807}"#).unwrap();
        assert_eq!(r.seed, (1 << 63) - 1);
    }

    #[test]
    fn unreplayable_requests() {
        let cases = [
            ("[1]", NotReplayable::NotJson),
            ("{", NotReplayable::NotJson),
            (r#"{"messages":[],"temperature":0,"n":2}"#, Rule::N.into()),
            (r#"{"messages":[],"temperature":0,"n":"1"}"#, Rule::N.into()),
            (r#"{"temperature":0}"#, NotReplayable::Path),
            (
                r#"{"messages":[],"prompt":"x","temperature":0}"#,
                NotReplayable::Path,
            ),
            (r#"{"messages":[],"seed":-1}"#, Rule::Seed.into()),
            (r#"{"messages":[],"seed":1.5}"#, Rule::Seed.into()),
            (
                r#"{"messages":[],"seed":9223372036854775808}"#,
                Rule::Seed.into(),
            ),
            (r#"{"messages":[]}"#, Rule::Sampling.into()),
            (
                r#"{"messages":[],"temperature":0.1}"#,
                Rule::Sampling.into(),
            ),
            (
                r#"{"messages":[],"temperature":"0"}"#,
                Rule::Sampling.into(),
            ),
        ];
        for (body, want) in cases {
            assert_eq!(parse(body).err(), Some(want), "{body}");
        }
    }

    #[test]
    fn engine_body_sets_seed_limit_and_no_stream() {
        let r = parse(r#"{"messages":[],"temperature":0,"stream":true,"stream_options":{"include_usage":true}}"#)
            .unwrap();
        let body: Value = serde_json::from_slice(&r.engine_body(5)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"messages":[],"temperature":0,"stream":false,"seed":5,"max_tokens":1024})
        );
        let r = parse(r#"{"prompt":"x","seed":3,"max_completion_tokens":4}"#).unwrap();
        let body: Value = serde_json::from_slice(&r.engine_body(3)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"prompt":"x","seed":3,"max_completion_tokens":4})
        );
    }

    #[test]
    fn debug_omits_the_prompt() {
        let r = parse(r#"{"prompt":"secret words","temperature":0}"#).unwrap();
        assert!(!format!("{r:?}").contains("secret"));
    }
}
