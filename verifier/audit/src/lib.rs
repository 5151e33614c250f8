//! An auditor's replay of a dait receipt: re-run the disclosed request on an engine of the receipt's build and
//! weights, and require the receipt's response hash bit for bit.
//!
//! # What it does
//! [`replay`] runs the checks of an [`Audit`] in order, each failing with its own [`AuditError`] variant
//! ([`Check`] names it, [`Verdict`] says what it means):
//! 1. the host key is the receipt's (`host_key_id`) and its signature verifies under the EIP-712 domain;
//! 2. the disclosed request hashes to `request_hash` (PROTOCOL.md §4: the inner request body, byte for byte);
//! 3. the receipt says `deterministic = true` (else refused: not a replayable receipt), the request is
//!    replayable ([`ReplayRequest`]) and the receipt's `seed` is the one the request implies;
//! 4. the weights file hashes to `weight_hash`, the engine build id to `engine_build`, and the engine's
//!    `/v1/models` lists the receipt's `model_id`;
//! 5. the request is re-run non-streamed with the receipt's `seed` ([`ReplayRequest::engine_body`]), the
//!    engine's usage must be the receipt's `tokens_in` / `tokens_out`, and the response normalised with that
//!    usage must hash to `response_hash`.
//!
//! [`inputs`] reads a receipt and a host key in the forms dait-tenant prints and stores them; [`cli`] is the
//! `dait-audit replay` command line. docs/AUDIT.md is the auditor's guide.
//!
//! # Example
//! ```no_run
//! use dait_audit::{Audit, DEFAULT_REPLAY_TIMEOUT, Verdict, inputs, replay};
//!
//! # async fn audit() -> Result<(), Box<dyn std::error::Error>> {
//! let receipt = inputs::decode_receipt(&std::fs::read("receipt.b64")?)?;
//! let host_key = inputs::parse_host_key(&std::fs::read_to_string("host.json")?, None, None)?;
//! let audit = Audit {
//!     receipt,
//!     request: std::fs::read("request.json")?,
//!     host_key,
//!     weights: "model.gguf".into(),
//!     engine_build: "llama-cpp-python-0.3.36".to_owned(),
//!     engine_url: "http://127.0.0.1:8000".to_owned(),
//!     timeout: DEFAULT_REPLAY_TIMEOUT,
//! };
//! let report = replay(&audit).await;
//! assert_eq!(report.verdict(), Verdict::Match, "{}", report.to_json());
//! # Ok(())
//! # }
//! ```
//!
//! # Feature flags
//! None: the library and the `dait-audit` binary are always built.
//!
//! # Security
//! - A match proves that this engine build with these weights turns the disclosed request into the response
//!   the host signed for; it does not prove the host ran this build (that is what its attestation says), and
//!   it says nothing of calls that were not replayed.
//! - The replay engine is the auditor's own and is trusted: it is reached over plain HTTP
//!   ([`dait_tenant::EngineClient`]). The weights file is checked by its hash, but that the engine serves that
//!   very file is the auditor's to ensure (`just audit` starts it from that file).
//! - The disclosed request is a tenant's plaintext: it is never logged or printed (the `Debug` of [`Audit`]
//!   and [`ReplayRequest`] omit it).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cli;
mod error;
pub mod inputs;
mod replay;
mod request;

pub use error::{AuditError, Check, NotReplayable, Verdict};
pub use replay::{Audit, DEFAULT_REPLAY_TIMEOUT, Report, replay};
pub use request::ReplayRequest;
