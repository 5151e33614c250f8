//! The runtime event log (PROTOCOL.md §10): what the agent measures at boot (model, weights, engine build, its
//! own configuration), in the order it extends the events into the runtime register (TDX RTMR3).
//!
//! - An event's data is `name ":" hex(SHA-256 of the measured content)` ([`event_data`]).
//! - The register is `R_0 = 0^48`, `R_i = SHA-384(R_{i-1} || SHA-384(data_i))` ([`extend_sha384`],
//!   [`replay_data`]).
//! - The served log (the evidence bundle's `event_log`) is a JSON array of
//!   `{"imr":3,"kind":"...","data":"...","digest":"<hex SHA-384(data)>"}` ([`EventLog::encode`],
//!   [`EventLog::decode`], with the `json` feature). [`replay`] decodes it and returns the register value.
//!
//! - Where the guest kernel cannot extend RTMR3, the host fixes the log at launch instead: TDX `MRCONFIGID` =
//!   [`launch_binding_mrconfigid`] and SEV-SNP `HOST_DATA` = [`launch_binding_host_data`] of the register value
//!   the log replays to (PROTOCOL.md §10.1).
//!
//! The replay rule is `no_std`; the JSON encoding needs the `json` feature.

use alloc::string::String;
use alloc::vec::Vec;

use sha2::{Digest as _, Sha256, Sha384};

/// The runtime register the events are extended into: TDX RTMR3 (the `imr` of every event).
pub const RUNTIME_REGISTER: u8 = 3;

/// The vTPM PCR whose SHA-256 bank the agent extends with the same events (SHA-256 of each event's data) where it
/// has a TPM ([`EventLog::vtpm_pcr_sha256`]); reference files name it `runtime.vtpm_pcr`, 23 by default. PCR 23
/// is the application PCR: zero after a TPM reset and extended by nothing else at boot.
pub const RUNTIME_VTPM_PCR: u8 = 23;

/// Event name: SHA-256 of the served model id.
pub const MODEL_ID: &str = "model-id";
/// Event name: SHA-256 of the model weights file (all zero without one).
pub const MODEL_WEIGHTS: &str = "model-weights";
/// Event name: SHA-256 of the engine build id.
pub const ENGINE_BUILD: &str = "engine-build";
/// Event name: SHA-256 of the agent's pricing and settlement configuration line.
pub const AGENT_CONFIG: &str = "agent-config";
/// The agent's events, in the order it records them.
pub const EVENT_NAMES: [&str; 4] = [MODEL_ID, MODEL_WEIGHTS, ENGINE_BUILD, AGENT_CONFIG];

/// Largest encoded log [`EventLog::decode`] accepts, in bytes.
pub const MAX_LOG_LEN: usize = 64 * 1024;
/// Most events [`EventLog::decode`] accepts.
pub const MAX_EVENTS: usize = 64;
/// Longest `kind` accepted, in bytes.
pub const MAX_KIND_LEN: usize = 64;
/// Longest `data` accepted, in bytes.
pub const MAX_DATA_LEN: usize = 1024;

/// Why a runtime event log was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeLogError {
    /// An event's stated digest is not SHA-384 of its data.
    #[error("runtime event {index}: the digest is not SHA-384 of the data")]
    DigestMismatch {
        /// Index of the event.
        index: usize,
    },
    /// An event's digest is not 96 hex digits.
    #[error("runtime event {index}: the digest is not 96 hex digits")]
    InvalidDigest {
        /// Index of the event.
        index: usize,
    },
    /// The log is not a JSON array of events with exactly the fields `imr`, `kind`, `data` and `digest`.
    #[error("runtime event log: not a JSON array of events (line {line}, column {column})")]
    Malformed {
        /// Line of the first error (1-based; 0 if unknown).
        line: usize,
        /// Column of the first error (1-based; 0 if unknown).
        column: usize,
    },
    /// The encoded log is larger than [`MAX_LOG_LEN`].
    #[error("runtime event log: {actual} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The cap.
        max: usize,
        /// Input length.
        actual: usize,
    },
    /// A `kind` or `data` field is longer than its cap ([`MAX_KIND_LEN`], [`MAX_DATA_LEN`]).
    #[error("runtime event {index}: {field} is longer than {max} bytes")]
    TooLong {
        /// Index of the event.
        index: usize,
        /// `kind` or `data`.
        field: &'static str,
        /// The cap.
        max: usize,
    },
    /// The log has more than [`MAX_EVENTS`] events.
    #[error("runtime event log: {actual} events exceeds the limit of {max}")]
    TooManyEvents {
        /// The cap.
        max: usize,
        /// Number of events.
        actual: usize,
    },
    /// An event names a register other than [`RUNTIME_REGISTER`].
    #[error("runtime event {index}: register {imr}, expected 3")]
    UnsupportedRegister {
        /// Index of the event.
        index: usize,
        /// The register found.
        imr: u8,
    },
}

/// The data the agent measures for an event: `name ":" hex(sha256)` (ASCII, lowercase hex).
/// The runtime register is extended with SHA-384 of these bytes (a vTPM PCR's SHA-256 bank with SHA-256 of them).
pub fn event_data(name: &str, sha256: &[u8; 32]) -> String {
    let mut data = String::with_capacity(name.len().saturating_add(65));
    data.push_str(name);
    data.push(':');
    data.push_str(&crate::types::hex_encode(sha256));
    data
}

/// `SHA-384(register || digest)`: the TDX RTMR (and TPM PCR SHA-384 bank) extend operation.
pub fn extend_sha384(register: &[u8; 48], digest: &[u8; 48]) -> [u8; 48] {
    let mut hasher = Sha384::new();
    hasher.update(register);
    hasher.update(digest);
    hasher.finalize().into()
}

/// `SHA-256(pcr || digest)`: a TPM PCR's SHA-256 bank extend operation.
pub fn extend_sha256(pcr: &[u8; 32], digest: &[u8; 32]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(pcr);
    hasher.update(digest);
    hasher.finalize().into()
}

/// The register after extending SHA-384 of each `data`, in order, from zero.
pub fn replay_data<I>(data: I) -> [u8; 48]
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    data.into_iter().fold([0u8; 48], |register, d| {
        extend_sha384(&register, &Sha384::digest(d.as_ref()).into())
    })
}

/// Domain tag of the launch-time binding values ([`launch_binding_mrconfigid`], [`launch_binding_host_data`]).
pub const LAUNCH_BINDING_TAG: &[u8] = b"dait/v1/launch-binding";

/// The TDX `MRCONFIGID` (48 bytes) a host launches the TD with to bind the runtime configuration whose event
/// log replays to `register`: `SHA-384("dait/v1/launch-binding" || register)`. The tag keeps it apart from any
/// RTMR value, and it is never all zero (an unset `MRCONFIGID` is).
pub fn launch_binding_mrconfigid(register: &[u8; 48]) -> [u8; 48] {
    let mut hasher = Sha384::new();
    hasher.update(LAUNCH_BINDING_TAG);
    hasher.update(register);
    hasher.finalize().into()
}

/// The SEV-SNP `HOST_DATA` (32 bytes) a host launches the guest with to bind the runtime configuration whose
/// event log replays to `register`: `SHA-256("dait/v1/launch-binding" || register)`.
pub fn launch_binding_host_data(register: &[u8; 48]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(LAUNCH_BINDING_TAG);
    hasher.update(register);
    hasher.finalize().into()
}

/// One measured event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Event {
    /// Index of the runtime register: [`RUNTIME_REGISTER`].
    pub imr: u8,
    /// What was measured, one of [`EVENT_NAMES`].
    pub kind: String,
    /// The measured data ([`event_data`]).
    pub data: String,
    /// `SHA-384(data)`.
    pub digest: [u8; 48],
}

impl Event {
    /// The event for `data` in the runtime register, with its digest.
    pub fn new(kind: &str, data: &str) -> Self {
        Self {
            imr: RUNTIME_REGISTER,
            kind: kind.into(),
            data: data.into(),
            digest: Sha384::digest(data.as_bytes()).into(),
        }
    }
}

/// The event log and the register value it produces.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Records an event and returns its digest (what the caller extends into the hardware register).
    pub fn record(&mut self, kind: &str, data: &str) -> [u8; 48] {
        let event = Event::new(kind, data);
        let digest = event.digest;
        self.register = extend_sha384(&self.register, &digest);
        self.events.push(event);
        digest
    }

    /// The register value after all events.
    pub fn register(&self) -> [u8; 48] {
        self.register
    }

    /// The events, in order.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The SHA-256 bank of the runtime vTPM PCR ([`RUNTIME_VTPM_PCR`]) after the events: from zero, extended
    /// with SHA-256 of each event's data, in order.
    pub fn vtpm_pcr_sha256(&self) -> [u8; 32] {
        self.events.iter().fold([0u8; 32], |pcr, e| {
            extend_sha256(&pcr, &Sha256::digest(e.data.as_bytes()).into())
        })
    }

    /// Checks events from an untrusted source (at most [`MAX_EVENTS`]; fields within their caps; register
    /// [`RUNTIME_REGISTER`]; each digest SHA-384 of its data) and replays them.
    pub fn from_events(events: Vec<Event>) -> Result<Self, RuntimeLogError> {
        if events.len() > MAX_EVENTS {
            return Err(RuntimeLogError::TooManyEvents {
                max: MAX_EVENTS,
                actual: events.len(),
            });
        }
        let mut log = Self::default();
        for (index, event) in events.into_iter().enumerate() {
            check_len(index, "kind", &event.kind, MAX_KIND_LEN)?;
            check_len(index, "data", &event.data, MAX_DATA_LEN)?;
            if event.imr != RUNTIME_REGISTER {
                return Err(RuntimeLogError::UnsupportedRegister {
                    index,
                    imr: event.imr,
                });
            }
            if Event::new(&event.kind, &event.data) != event {
                return Err(RuntimeLogError::DigestMismatch { index });
            }
            log.record(&event.kind, &event.data);
        }
        Ok(log)
    }
}

fn check_len(
    index: usize,
    field: &'static str,
    value: &str,
    max: usize,
) -> Result<(), RuntimeLogError> {
    if value.len() > max {
        Err(RuntimeLogError::TooLong { index, field, max })
    } else {
        Ok(())
    }
}

#[cfg(feature = "json")]
mod json {
    use alloc::string::String;
    use alloc::vec::Vec;

    use super::{Event, EventLog, MAX_LOG_LEN, RuntimeLogError};

    /// An event as the log encodes it; the field order is the encoding's.
    #[derive(serde::Serialize, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct JsonEvent {
        imr: u8,
        kind: String,
        data: String,
        digest: String,
    }

    impl EventLog {
        /// The encoded log: a JSON array of `{"imr":3,"kind":..,"data":..,"digest":"<hex>"}`, no white space.
        pub fn encode(&self) -> Vec<u8> {
            let events: Vec<JsonEvent> = self
                .events
                .iter()
                .map(|e| JsonEvent {
                    imr: e.imr,
                    kind: e.kind.clone(),
                    data: e.data.clone(),
                    digest: crate::types::hex_encode(&e.digest),
                })
                .collect();
            // INVARIANT: serialising strings and integers into a Vec cannot fail.
            serde_json::to_vec(&events).unwrap_or_default()
        }

        /// Decodes an encoded log: at most [`MAX_LOG_LEN`] bytes, a JSON array of objects with exactly the fields
        /// `imr`, `kind`, `data`, `digest` (96 hex digits), then [`EventLog::from_events`].
        pub fn decode(bytes: &[u8]) -> Result<Self, RuntimeLogError> {
            if bytes.len() > MAX_LOG_LEN {
                return Err(RuntimeLogError::TooLarge {
                    max: MAX_LOG_LEN,
                    actual: bytes.len(),
                });
            }
            let raw: Vec<JsonEvent> =
                serde_json::from_slice(bytes).map_err(|e| RuntimeLogError::Malformed {
                    line: e.line(),
                    column: e.column(),
                })?;
            let events = raw
                .into_iter()
                .enumerate()
                .map(|(index, e)| {
                    let mut digest = [0u8; 48];
                    if e.digest.starts_with("0x")
                        || crate::types::hex_decode_into(&e.digest, &mut digest).is_none()
                    {
                        return Err(RuntimeLogError::InvalidDigest { index });
                    }
                    Ok(Event {
                        imr: e.imr,
                        kind: e.kind,
                        data: e.data,
                        digest,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            EventLog::from_events(events)
        }
    }

    /// Replays an encoded log into the runtime register ([`EventLog::decode`], then the register): every event
    /// must name register 3 and state the SHA-384 of its data; malformed JSON is an error.
    pub fn replay(log: &[u8]) -> Result<[u8; 48], RuntimeLogError> {
        EventLog::decode(log).map(|l| l.register())
    }
}

#[cfg(feature = "json")]
pub use json::replay;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::vec;

    #[test]
    fn extend_rule() {
        let mut log = EventLog::default();
        let d = log.record("dait.model-id", "m");
        let mut h = Sha384::new();
        h.update([0u8; 48]);
        h.update(d);
        let expect: [u8; 48] = h.finalize().into();
        assert_eq!(log.register(), expect);
        assert_eq!(replay_data(["m"]), expect);
        assert_eq!(replay_data::<[&str; 0]>([]), [0u8; 48]);
    }

    #[test]
    fn vtpm_pcr_is_the_sha256_bank_replay() {
        let mut log = EventLog::default();
        assert_eq!(log.vtpm_pcr_sha256(), [0u8; 32]);
        log.record("a", "a:00");
        log.record("b", "b:01");
        let first: [u8; 32] =
            Sha256::digest([[0u8; 32], Sha256::digest(b"a:00").into()].concat()).into();
        let second: [u8; 32] =
            Sha256::digest([first, Sha256::digest(b"b:01").into()].concat()).into();
        assert_eq!(log.vtpm_pcr_sha256(), second);
        assert_ne!(first, second);
    }

    #[test]
    fn event_data_is_name_colon_hex() {
        let data = event_data(MODEL_WEIGHTS, &[10; 32]);
        assert_eq!(data, format!("model-weights:{}", "0a".repeat(32)));
        // Pinned: SHA-384(0^48 || SHA-384("model-weights:0a0a…0a")), from Python's hashlib.
        assert_eq!(
            crate::types::hex_encode(&replay_data([&data])),
            "08ed9e1a8a181b7af2d3c640d87c1a649fc6ba327bf35dec902ed49aee7483323452dd685485a39a0554347da2945d1c"
        );
    }

    #[test]
    fn launch_binding_vectors() {
        let register = replay_data([event_data(MODEL_WEIGHTS, &[10; 32])]);
        // Pinned: SHA-384 / SHA-256 of b"dait/v1/launch-binding" || register, from Python's hashlib.
        assert_eq!(
            crate::types::hex_encode(&launch_binding_mrconfigid(&register)),
            "a077f6425dd29bc33f5b1c6f3bcd036d583026e58037c13ba24f19fae47d84408dfa1a0edd3032776c4c48e173fa2524"
        );
        assert_eq!(
            crate::types::hex_encode(&launch_binding_host_data(&register)),
            "b9addd93119165593e28eeed3a5958814af98e2d7ca41da0097519d29e4dc31b"
        );
        // A log without events still binds to a non-zero value, unlike an unset field.
        assert_eq!(
            crate::types::hex_encode(&launch_binding_mrconfigid(&[0; 48])),
            "185ad140a8f613ec6a7986ec59b7780d645554849457d061b20af1b2c3f7adf83c84373c5f5250c296195e909a97bc46"
        );
        assert_eq!(
            crate::types::hex_encode(&launch_binding_host_data(&[0; 48])),
            "bb26365a579be99f2e13b98894be58ade35b7ca76b51164e31f11504237a2e60"
        );
    }

    #[test]
    fn from_events_checks_every_rule() {
        let good = Event::new(MODEL_ID, "model-id:00");
        assert_eq!(
            EventLog::from_events(vec![good.clone()]).unwrap().events(),
            core::slice::from_ref(&good)
        );
        let mut wrong_register = good.clone();
        wrong_register.imr = 2;
        assert_eq!(
            EventLog::from_events(vec![good.clone(), wrong_register]),
            Err(RuntimeLogError::UnsupportedRegister { index: 1, imr: 2 })
        );
        let mut wrong_digest = good.clone();
        wrong_digest.digest[0] ^= 1;
        assert_eq!(
            EventLog::from_events(vec![wrong_digest]),
            Err(RuntimeLogError::DigestMismatch { index: 0 })
        );
        let long = Event::new(&"k".repeat(MAX_KIND_LEN + 1), "d");
        assert_eq!(
            EventLog::from_events(vec![long]),
            Err(RuntimeLogError::TooLong {
                index: 0,
                field: "kind",
                max: MAX_KIND_LEN
            })
        );
        let long = Event::new(MODEL_ID, &"d".repeat(MAX_DATA_LEN + 1));
        assert!(matches!(
            EventLog::from_events(vec![long]),
            Err(RuntimeLogError::TooLong { field: "data", .. })
        ));
        assert_eq!(
            EventLog::from_events(vec![good; MAX_EVENTS + 1]),
            Err(RuntimeLogError::TooManyEvents {
                max: MAX_EVENTS,
                actual: MAX_EVENTS + 1
            })
        );
    }

    #[cfg(feature = "json")]
    mod json {
        use super::*;
        use alloc::string::String;

        fn agent_log() -> EventLog {
            let mut log = EventLog::default();
            for (name, n) in EVENT_NAMES.iter().zip(1u8..) {
                log.record(name, &event_data(name, &[n; 32]));
            }
            log
        }

        #[test]
        fn encoding_is_the_served_format() {
            let mut log = EventLog::default();
            let d = log.record("dait.model-id", "m");
            let text = String::from_utf8(log.encode()).unwrap();
            assert_eq!(
                text,
                format!(
                    r#"[{{"imr":3,"kind":"dait.model-id","data":"m","digest":"{}"}}]"#,
                    crate::types::hex_encode(&d)
                )
            );
            assert_eq!(EventLog::default().encode(), b"[]");
        }

        #[test]
        fn decode_round_trips_and_replays() {
            let log = agent_log();
            let bytes = log.encode();
            assert_eq!(EventLog::decode(&bytes).unwrap(), log);
            assert_eq!(replay(&bytes).unwrap(), log.register());
            assert_eq!(
                replay(&bytes).unwrap(),
                replay_data(log.events().iter().map(|e| &e.data))
            );
            assert_eq!(replay(b"[]").unwrap(), [0u8; 48]);
            // Upper-case hex digests are accepted, as the verifier always has.
            let upper = String::from_utf8(bytes)
                .unwrap()
                .replace(&crate::types::hex_encode(&log.events()[0].digest), &{
                    crate::types::hex_encode(&log.events()[0].digest).to_uppercase()
                });
            assert_eq!(replay(upper.as_bytes()).unwrap(), log.register());
        }

        #[test]
        fn decode_rejects_what_the_agent_never_writes() {
            let text = String::from_utf8(agent_log().encode()).unwrap();
            let digest = crate::types::hex_encode(&agent_log().events()[0].digest);
            let cases: [(&str, String, RuntimeLogError); 6] = [
                (
                    "changed data",
                    text.replacen(":01", ":02", 1),
                    RuntimeLogError::DigestMismatch { index: 0 },
                ),
                (
                    "register 2",
                    text.replacen(r#""imr":3"#, r#""imr":2"#, 1),
                    RuntimeLogError::UnsupportedRegister { index: 0, imr: 2 },
                ),
                (
                    "short digest",
                    text.replacen(&digest, &digest[2..], 1),
                    RuntimeLogError::InvalidDigest { index: 0 },
                ),
                (
                    "0x digest",
                    text.replacen(&digest, &format!("0x{}", &digest[2..]), 1),
                    RuntimeLogError::InvalidDigest { index: 0 },
                ),
                (
                    "too large",
                    " ".repeat(MAX_LOG_LEN + 1),
                    RuntimeLogError::TooLarge {
                        max: MAX_LOG_LEN,
                        actual: MAX_LOG_LEN + 1,
                    },
                ),
                (
                    "not json",
                    "not json".into(),
                    RuntimeLogError::Malformed { line: 1, column: 2 },
                ),
            ];
            for (name, input, want) in cases {
                assert_eq!(EventLog::decode(input.as_bytes()), Err(want), "{name}");
            }
            for (name, input) in [
                (
                    "unknown field",
                    text.replacen(r#""imr":3,"#, r#""imr":3,"x":1,"#, 1),
                ),
                (
                    "missing kind",
                    text.replacen(r#""kind":"model-id","#, "", 1),
                ),
                (
                    "imr as text",
                    text.replacen(r#""imr":3"#, r#""imr":"3""#, 1),
                ),
                ("an object", String::from("{}")),
                ("empty", String::new()),
                ("trailing bytes", format!("{text} []")),
            ] {
                assert!(
                    matches!(
                        EventLog::decode(input.as_bytes()),
                        Err(RuntimeLogError::Malformed { .. })
                    ),
                    "{name}"
                );
            }
        }
    }
}
