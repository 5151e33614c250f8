//! The runtime event log: what the agent measured at boot (model weights, engine and agent
//! configuration), in the order it was extended into the runtime register (TDX RTMR3).
//!
//! Encoding (served as the bundle's `event_log`): a JSON array of
//! `{"imr": 3, "kind": "...", "data": "...", "digest": "<hex SHA-384(data)>"}`.
//! The register value is `R_0 = 0^48`, `R_i = SHA-384(R_{i-1} || digest_i)` (the TDX RTMR extend rule).

use serde::Serialize;

/// Event name: SHA-256 of the served model id.
pub const MODEL_ID: &str = "model-id";
/// Event name: SHA-256 of the model weights file.
pub const MODEL_WEIGHTS: &str = "model-weights";
/// Event name: SHA-256 of the engine build id.
pub const ENGINE_BUILD: &str = "engine-build";
/// Event name: SHA-256 of the agent's pricing and settlement configuration line.
pub const AGENT_CONFIG: &str = "agent-config";
use sha2::{Digest, Sha384};

/// One measured event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Index of the runtime register (3).
    pub imr: u8,
    /// What was measured: [`MODEL_ID`], [`MODEL_WEIGHTS`], [`ENGINE_BUILD`] or [`AGENT_CONFIG`].
    pub kind: String,
    /// The measured data (text).
    pub data: String,
    /// `SHA-384(data)`, hex.
    pub digest: String,
}

/// The event log and the register value it produces.
#[derive(Debug, Clone)]
pub struct EventLog {
    events: Vec<Event>,
    register: [u8; 48],
}

impl Default for EventLog {
    fn default() -> Self {
        Self {
            events: Vec::new(),
            register: [0u8; 48],
        }
    }
}

impl EventLog {
    /// Record an event; returns its 48-byte digest (to be extended into the hardware register).
    pub fn record(&mut self, kind: &str, data: &str) -> [u8; 48] {
        let digest: [u8; 48] = Sha384::digest(data.as_bytes()).into();
        self.register = dait_measure::reference::extend_sha384(&self.register, &digest);
        self.events.push(Event {
            imr: 3,
            kind: kind.to_owned(),
            data: data.to_owned(),
            digest: hex::encode(digest),
        });
        digest
    }

    /// The register value after all events.
    pub fn register(&self) -> [u8; 48] {
        self.register
    }

    /// The events.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The encoded log (JSON array).
    pub fn encode(&self) -> Vec<u8> {
        // INVARIANT: serialising plain strings and integers cannot fail.
        serde_json::to_vec(&self.events).unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn extend_rule() {
        let mut log = EventLog::default();
        let d = log.record("dait.model-id", "m");
        let mut h = Sha384::new();
        h.update([0u8; 48]);
        h.update(d);
        let expect: [u8; 48] = h.finalize().into();
        assert_eq!(log.register(), expect);
        let v: serde_json::Value = serde_json::from_slice(&log.encode()).unwrap();
        assert_eq!(v[0]["kind"], "dait.model-id");
        assert_eq!(v[0]["digest"], hex::encode(d));
    }
}
