//! Why a replay did not end in a match: one [`AuditError`] variant per check, each naming its [`Check`] and its
//! [`Verdict`].

use dait_chain_client::{B256, NormalizeError, SignatureError, Usage};
use dait_tenant::TenantError;

/// The outcome of a replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// The engine could not be used (unreachable, an error status, an answer that is not a response): the
    /// receipt was not judged.
    Error,
    /// The replayed response hashes to the receipt's `response_hash`, bit for bit.
    Match,
    /// The receipt is signed, replayable and was replayed on the receipt's engine build and weights, and the
    /// host's claim does not hold: its response hash, its usage or its seed.
    Mismatch,
    /// The receipt cannot be audited with these inputs: its signature, the disclosed request, the weights or
    /// the engine build do not fit it, or it is not a replayable receipt.
    Refused,
}

impl Verdict {
    /// The verdict's JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Match => "match",
            Self::Mismatch => "mismatch",
            Self::Refused => "refused",
        }
    }
}

/// The checks of a replay, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Check {
    /// The host key's id is the receipt's `host_key_id`.
    HostKey,
    /// The host's signature over the receipt verifies.
    Signature,
    /// The disclosed request hashes to `request_hash`.
    RequestHash,
    /// The receipt says `deterministic = true`.
    Deterministic,
    /// The disclosed request is replayable (temperature 0 or a seed; `n` absent or 1).
    Replayable,
    /// The receipt's `seed` is the one the request implies (its `seed`, else 0).
    Seed,
    /// The weights file hashes to `weight_hash`.
    Weights,
    /// The engine build id hashes to `engine_build`.
    EngineBuild,
    /// The engine serves the receipt's `model_id`.
    Model,
    /// The engine answered the replay.
    Engine,
    /// The engine's usage is the receipt's `tokens_in` / `tokens_out`.
    Usage,
    /// The replayed response hashes to `response_hash`.
    ResponseHash,
}

impl Check {
    /// The check's JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HostKey => "host_key",
            Self::Signature => "signature",
            Self::RequestHash => "request_hash",
            Self::Deterministic => "deterministic",
            Self::Replayable => "replayable",
            Self::Seed => "seed",
            Self::Weights => "weights",
            Self::EngineBuild => "engine_build",
            Self::Model => "model",
            Self::Engine => "engine",
            Self::Usage => "usage",
            Self::ResponseHash => "response_hash",
        }
    }
}

/// Why a disclosed request is not replayable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotReplayable {
    /// The body is not a JSON object.
    #[error("the request is not a JSON object")]
    NotJson,
    /// Neither `messages` nor `prompt`, or both: no engine path.
    #[error("the request has neither messages (chat) nor prompt (completions), or both")]
    Path,
    /// The shared rule of the host and the auditor (`dait_chain_client::replay`) does not hold.
    #[error("{0}")]
    Rule(#[from] dait_chain_client::replay::NotReplayable),
}

/// Why a replay did not match.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The receipt names another host key than the one given.
    #[error("the receipt names host key {receipt}, the key given is {given}")]
    HostKey {
        /// The receipt's `host_key_id`.
        receipt: B256,
        /// The id of the key given.
        given: B256,
    },
    /// The host's signature does not verify.
    #[error("the receipt's signature does not verify")]
    Signature(#[source] SignatureError),
    /// The disclosed request is not the one the receipt covers.
    #[error("the disclosed request hashes to {disclosed}, the receipt's request_hash is {receipt}")]
    RequestHash {
        /// The receipt's `request_hash`.
        receipt: B256,
        /// The hash of the disclosed request.
        disclosed: B256,
    },
    /// The receipt says `deterministic = false`: not a replayable receipt.
    #[error("not a replayable receipt: deterministic = false")]
    NotDeterministic,
    /// The disclosed request is not replayable (the agent should have refused it).
    #[error("the request is not replayable: {0}")]
    NotReplayable(#[source] NotReplayable),
    /// The receipt's seed is not the one the request implies.
    #[error("the receipt's seed is {receipt}, the request implies {request}")]
    Seed {
        /// The receipt's `seed`.
        receipt: u64,
        /// The request's `seed`, or 0 without one.
        request: u64,
    },
    /// Reading the weights file failed.
    #[error("reading the weights file failed")]
    WeightsRead(#[source] std::io::Error),
    /// The weights file is not the receipt's.
    #[error("the weights file hashes to {file}, the receipt's weight_hash is {receipt}")]
    Weights {
        /// The receipt's `weight_hash`.
        receipt: B256,
        /// SHA-256 of the file.
        file: B256,
    },
    /// The engine build id is not the receipt's.
    #[error("the engine build id hashes to {given}, the receipt's engine_build is {receipt}")]
    EngineBuild {
        /// The receipt's `engine_build`.
        receipt: B256,
        /// SHA-256 of the build id given.
        given: B256,
    },
    /// The engine does not serve the receipt's model.
    #[error("the engine's /v1/models does not list the receipt's model id")]
    Model,
    /// The engine could not be reached or answered with an error status.
    #[error("the engine failed")]
    Engine(#[source] TenantError),
    /// The engine's answer is not JSON or not a completion.
    #[error("the engine's answer is not a completion")]
    EngineAnswer(#[source] NormalizeError),
    /// The engine did not answer within the timeout.
    #[error("the engine did not answer in time")]
    EngineTimeout,
    /// The engine's own usage differs from the receipt's tokens.
    #[error(
        "the engine counted {} prompt and {} completion tokens, the receipt {} and {}",
        engine.prompt_tokens, engine.completion_tokens, receipt.prompt_tokens, receipt.completion_tokens
    )]
    Usage {
        /// The receipt's `tokens_in` / `tokens_out`.
        receipt: Usage,
        /// The engine's `usage`.
        engine: Usage,
    },
    /// The replayed response is not the receipt's.
    #[error("the replayed response hashes to {replayed}, the receipt's response_hash is {receipt}")]
    ResponseHash {
        /// The receipt's `response_hash`.
        receipt: B256,
        /// The hash of the replayed response.
        replayed: B256,
    },
}

impl AuditError {
    /// The check that failed.
    pub fn check(&self) -> Check {
        match self {
            Self::HostKey { .. } => Check::HostKey,
            Self::Signature(_) => Check::Signature,
            Self::RequestHash { .. } => Check::RequestHash,
            Self::NotDeterministic => Check::Deterministic,
            Self::NotReplayable(_) => Check::Replayable,
            Self::Seed { .. } => Check::Seed,
            Self::WeightsRead(_) | Self::Weights { .. } => Check::Weights,
            Self::EngineBuild { .. } => Check::EngineBuild,
            Self::Model => Check::Model,
            Self::Engine(_) | Self::EngineAnswer(_) | Self::EngineTimeout => Check::Engine,
            Self::Usage { .. } => Check::Usage,
            Self::ResponseHash { .. } => Check::ResponseHash,
        }
    }

    /// What the failure says about the receipt.
    pub fn verdict(&self) -> Verdict {
        match self {
            Self::Seed { .. } | Self::Usage { .. } | Self::ResponseHash { .. } => Verdict::Mismatch,
            Self::WeightsRead(_)
            | Self::Engine(_)
            | Self::EngineAnswer(_)
            | Self::EngineTimeout => Verdict::Error,
            _ => Verdict::Refused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_claims_are_mismatches_and_setup_faults_refusals() {
        let b = B256([1; 32]);
        let seed = AuditError::Seed {
            receipt: 1,
            request: 2,
        };
        assert_eq!(
            (seed.check(), seed.verdict()),
            (Check::Seed, Verdict::Mismatch)
        );
        let hash = AuditError::ResponseHash {
            receipt: b,
            replayed: b,
        };
        assert_eq!(hash.verdict(), Verdict::Mismatch);
        let weights = AuditError::Weights {
            receipt: b,
            file: b,
        };
        assert_eq!(
            (weights.check(), weights.verdict()),
            (Check::Weights, Verdict::Refused)
        );
        assert_eq!(AuditError::NotDeterministic.verdict(), Verdict::Refused);
        assert_eq!(AuditError::EngineTimeout.verdict(), Verdict::Error);
        assert_eq!(Check::ResponseHash.as_str(), "response_hash");
    }
}
