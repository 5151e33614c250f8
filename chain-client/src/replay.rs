//! Replayable calls (PROTOCOL.md §6, "Replayable calls"): which requests an auditor can replay bit for bit, the
//! seed their receipt names, and the token limit a host sets on a request that names none. The host that serves
//! a call, the tenant that checks its receipt and the auditor that replays it apply these same rules.
//!
//! A request is replayable when it is a JSON object with `n` absent or 1 and either an integer `seed`
//! (0 ≤ seed < 2^63) or a `temperature` that is the number 0. Its seed is its `seed`, else 0; the host sends the
//! engine the request with `seed` set to it, and `max_tokens` set to [`DEFAULT_MAX_TOKENS`] when it names neither
//! `max_tokens` nor `max_completion_tokens`.

use serde_json::{Map, Value};

/// The largest seed, exclusive: 2^63 (every engine takes it as a signed 64-bit integer).
pub const SEED_LIMIT: u64 = 1 << 63;

/// The `max_tokens` a host sets on a request that names neither `max_tokens` nor `max_completion_tokens`; a
/// replay must send the same.
pub const DEFAULT_MAX_TOKENS: u64 = 1024;

/// Why a request is not replayable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.reason())]
#[non_exhaustive]
pub enum NotReplayable {
    /// `n` is present and not 1.
    N,
    /// `seed` is present and not an integer in 0..2^63.
    Seed,
    /// No `seed`, and `temperature` is not the number 0.
    Sampling,
}

impl NotReplayable {
    /// The reason, as the host's `not_replayable` error message names it.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::N => "n must be absent or 1",
            Self::Seed => "seed must be an integer from 0 to 2^63-1",
            Self::Sampling => "needs temperature 0 or a seed",
        }
    }
}

/// The seed a replayable `request` is served and replayed with: its `seed`, else 0 when its `temperature` is
/// the number 0.
pub fn replay_seed(request: &Map<String, Value>) -> Result<u64, NotReplayable> {
    match request.get("n") {
        None => {}
        Some(n) if n.as_u64() == Some(1) => {}
        Some(_) => return Err(NotReplayable::N),
    }
    let seed = match request.get("seed") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|s| *s < SEED_LIMIT)
                .ok_or(NotReplayable::Seed)?,
        ),
    };
    let greedy = request
        .get("temperature")
        .and_then(Value::as_f64)
        .is_some_and(|t| t == 0.0);
    match seed {
        Some(seed) => Ok(seed),
        None if greedy => Ok(0),
        None => Err(NotReplayable::Sampling),
    }
}

/// Sets `max_tokens` to [`DEFAULT_MAX_TOKENS`] when `request` names neither `max_tokens` nor
/// `max_completion_tokens` (what the host sends the engine, so what a replay must send).
pub fn limit_tokens(request: &mut Map<String, Value>) {
    if !request.contains_key("max_tokens") && !request.contains_key("max_completion_tokens") {
        request.insert("max_tokens".into(), DEFAULT_MAX_TOKENS.into());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seed_of(v: Value) -> Result<u64, NotReplayable> {
        match v {
            Value::Object(m) => replay_seed(&m),
            _ => unreachable!(),
        }
    }

    #[test]
    fn replayable_requests_and_their_seed() {
        assert_eq!(seed_of(json!({"temperature": 0})), Ok(0));
        assert_eq!(seed_of(json!({"temperature": 0.0})), Ok(0));
        assert_eq!(seed_of(json!({"temperature": 0, "seed": 5})), Ok(5));
        assert_eq!(seed_of(json!({"temperature": 0.9, "seed": 7})), Ok(7));
        assert_eq!(seed_of(json!({"seed": 0})), Ok(0));
        assert_eq!(
            seed_of(json!({"seed": SEED_LIMIT - 1, "n": 1})),
            Ok(SEED_LIMIT - 1)
        );
        assert_eq!(seed_of(json!({"temperature": 0, "n": 1})), Ok(0));
    }

    #[test]
    fn unreplayable_requests_each_say_why() {
        for sampling in [
            json!({}),
            json!({"temperature": 0.9}),
            json!({"temperature": "0"}),
            json!({"temperature": null}),
        ] {
            assert_eq!(seed_of(sampling), Err(NotReplayable::Sampling));
        }
        for n in [json!(2), json!(null), json!("1"), json!(0)] {
            assert_eq!(
                seed_of(json!({"temperature": 0, "n": n})),
                Err(NotReplayable::N)
            );
        }
        for seed in [
            json!(-1),
            json!(1.5),
            json!("7"),
            json!(null),
            json!(SEED_LIMIT),
        ] {
            assert_eq!(
                seed_of(json!({"temperature": 0, "seed": seed})),
                Err(NotReplayable::Seed)
            );
        }
        assert_eq!(
            NotReplayable::Sampling.to_string(),
            "needs temperature 0 or a seed"
        );
    }

    #[test]
    fn the_default_limit_only_when_none_is_named() {
        let mut none = Map::new();
        limit_tokens(&mut none);
        assert_eq!(none["max_tokens"], DEFAULT_MAX_TOKENS);
        for named in ["max_tokens", "max_completion_tokens"] {
            let mut m = Map::new();
            m.insert(named.into(), 7.into());
            limit_tokens(&mut m);
            assert_eq!(m.len(), 1);
            assert_eq!(m[named], 7);
        }
    }
}
