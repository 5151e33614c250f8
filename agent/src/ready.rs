//! Readiness (`GET /readyz`): a set of named conditions, each with a stable failure code, that must
//! all hold for the agent to take calls.
//!
//! | condition | code when failing | holds when |
//! |---|---|---|
//! | [`Condition::EngineReachable`] | `engine_unreachable` | the engine answered `GET` [`crate::engine::ENGINE_HEALTH_PATH`] with a success status within [`ENGINE_PROBE_TIMEOUT`]; the answer is cached for [`ENGINE_PROBE_TTL`], so `/readyz` never probes once per request |
//! | [`Condition::ReceiptLogWritable`] | `receipt_log_unwritable` | a receipt log is open and takes appends ([`LogState::Writable`]): out of space it turns ready again once space is found (probed by `/readyz` and by calls, at most once a second); after any other failed write or `fdatasync` it stays unready until a restart |
//! | [`Condition::TeeUsable`] | `tee_unusable` | the last evidence generation (at start, then each attestation) succeeded |
//! | [`Condition::GpusUsable`] | `gpus_unusable` | with `--gpus N` (N > 0), the last collection of the GPUs' evidence (at start, then each attestation) succeeded; without GPUs it holds |
//!
//! Not a condition yet: the freshness of the TDX collateral the agent fetches ([`crate::collateral`]); it
//! becomes one more [`Condition`] here.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::engine::{EngineClient, EngineError};
use crate::receipt_log::LogState;

/// How long an engine probe's answer is reused.
pub const ENGINE_PROBE_TTL: Duration = Duration::from_secs(1);
/// How long the engine may take to answer its probe.
pub const ENGINE_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// One thing readiness depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Condition {
    /// The inference engine answers its health probe.
    EngineReachable,
    /// The receipt log can make records durable.
    ReceiptLogWritable,
    /// The TEE backend produces evidence.
    TeeUsable,
    /// The GPUs produce evidence.
    GpusUsable,
}

impl Condition {
    /// The stable, machine-readable code reported when this condition fails.
    pub fn code(self) -> &'static str {
        match self {
            Self::EngineReachable => "engine_unreachable",
            Self::ReceiptLogWritable => "receipt_log_unwritable",
            Self::TeeUsable => "tee_unusable",
            Self::GpusUsable => "gpus_unusable",
        }
    }
}

/// A failing condition, as `/readyz` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// [`Condition::code`].
    pub code: &'static str,
    /// Why, for a person.
    pub message: &'static str,
}

impl Failure {
    fn new(condition: Condition, message: &'static str) -> Self {
        Self {
            code: condition.code(),
            message,
        }
    }
}

/// The readiness state: what the request path reports, and the engine probe's cache.
#[derive(Debug)]
pub struct Readiness {
    engine: Option<EngineClient>,
    probe: tokio::sync::Mutex<Option<(Instant, Result<(), &'static str>)>>,
    receipt_log: Option<AtomicU8>,
    tee: AtomicBool,
    gpus: AtomicBool,
}

impl Readiness {
    /// Readiness of an agent with this engine (if configured) and a receipt log (if open). The TEE
    /// counts as usable until an evidence generation fails.
    pub fn new(engine: Option<EngineClient>, receipt_log: bool) -> Self {
        Self {
            engine,
            probe: tokio::sync::Mutex::new(None),
            receipt_log: receipt_log.then(|| AtomicU8::new(LogState::Writable.to_u8())),
            tee: AtomicBool::new(true),
            gpus: AtomicBool::new(true),
        }
    }

    /// Record whether the receipt log takes appends.
    pub fn set_receipt_log(&self, state: LogState) {
        if let Some(flag) = &self.receipt_log {
            flag.store(state.to_u8(), Ordering::Relaxed);
        }
    }

    /// Record how the last evidence generation went.
    pub fn set_tee(&self, ok: bool) {
        self.tee.store(ok, Ordering::Relaxed);
    }

    /// Record how the last collection of the GPUs' evidence went.
    pub fn set_gpus(&self, ok: bool) {
        self.gpus.store(ok, Ordering::Relaxed);
    }

    /// Every failing condition, in [`Condition`] order; empty when ready.
    pub async fn failures(&self) -> Vec<Failure> {
        let mut out = Vec::new();
        if let Err(message) = self.engine().await {
            out.push(Failure::new(Condition::EngineReachable, message));
        }
        match &self.receipt_log {
            None => out.push(Failure::new(
                Condition::ReceiptLogWritable,
                "no receipt log is open",
            )),
            Some(flag) => match LogState::from_u8(flag.load(Ordering::Relaxed)) {
                LogState::Writable => {}
                LogState::NoSpace => out.push(Failure::new(
                    Condition::ReceiptLogWritable,
                    "no space left on the receipt log's device (ENOSPC): the write was rolled back and \
                     no receipt can be made durable until space is freed (probed at most once a second)",
                )),
                _ => out.push(Failure::new(
                    Condition::ReceiptLogWritable,
                    "a receipt log write or fdatasync failed: what the file holds past its last durable \
                     record is unknown, so no receipt can be made durable until a restart replays it",
                )),
            },
        }
        if !self.tee.load(Ordering::Relaxed) {
            out.push(Failure::new(
                Condition::TeeUsable,
                "the last evidence generation failed",
            ));
        }
        if !self.gpus.load(Ordering::Relaxed) {
            out.push(Failure::new(
                Condition::GpusUsable,
                "the last collection of the GPUs' evidence failed",
            ));
        }
        out
    }

    /// The engine condition, from the cache or one probe. Concurrent callers wait for the same
    /// probe and share its answer.
    async fn engine(&self) -> Result<(), &'static str> {
        let Some(engine) = &self.engine else {
            return Err("no upstream engine is configured");
        };
        let mut cached = self.probe.lock().await;
        if let Some((at, result)) = *cached
            && at.elapsed() < ENGINE_PROBE_TTL
        {
            return result;
        }
        let result = match tokio::time::timeout(ENGINE_PROBE_TIMEOUT, engine.probe()).await {
            Err(_) => Err("the engine did not answer its health probe in time"),
            Ok(Ok(())) => Ok(()),
            Ok(Err(EngineError::Status(_))) => Err("the engine's health probe answered an error"),
            Ok(Err(_)) => Err("the engine is unreachable"),
        };
        *cached = Some((Instant::now(), result));
        result
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn codes(f: &[Failure]) -> Vec<&'static str> {
        f.iter().map(|f| f.code).collect()
    }

    #[tokio::test]
    async fn each_condition_fails_with_its_code() {
        let r = Readiness::new(None, true);
        assert_eq!(codes(&r.failures().await), ["engine_unreachable"]);
        r.set_receipt_log(LogState::Failed);
        r.set_tee(false);
        assert_eq!(
            codes(&r.failures().await),
            [
                "engine_unreachable",
                "receipt_log_unwritable",
                "tee_unusable"
            ]
        );
        r.set_gpus(false);
        assert_eq!(
            codes(&r.failures().await),
            [
                "engine_unreachable",
                "receipt_log_unwritable",
                "tee_unusable",
                "gpus_unusable"
            ]
        );
        r.set_tee(true);
        r.set_gpus(true);
        assert_eq!(
            codes(&r.failures().await),
            ["engine_unreachable", "receipt_log_unwritable"]
        );
        // Out of space is unready with its own reason, and ready again once space is found.
        r.set_receipt_log(LogState::NoSpace);
        let failing = r.failures().await;
        assert_eq!(
            codes(&failing),
            ["engine_unreachable", "receipt_log_unwritable"]
        );
        assert!(failing[1].message.contains("no space"), "{failing:?}");
        r.set_receipt_log(LogState::Writable);
        assert_eq!(codes(&r.failures().await), ["engine_unreachable"]);
        let no_log = Readiness::new(None, false);
        no_log.set_receipt_log(LogState::Writable);
        assert!(codes(&no_log.failures().await).contains(&"receipt_log_unwritable"));
    }

    #[tokio::test]
    async fn engine_probe_is_cached() {
        // Nothing listens on this port: unreachable, and the answer is reused within the TTL.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let engine = EngineClient::new(format!("http://{addr}").parse().unwrap());
        let r = Readiness::new(Some(engine), true);
        assert_eq!(codes(&r.failures().await), ["engine_unreachable"]);
        let first = r.probe.lock().await.unwrap().0;
        assert_eq!(codes(&r.failures().await), ["engine_unreachable"]);
        assert_eq!(r.probe.lock().await.unwrap().0, first);
    }
}
