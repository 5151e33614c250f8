//! M-of-N redundant serving: one replayable request sent to N verified hosts, each on its own channel, and
//! the answer whose `response_hash` more than half of them agree on.
//!
//! - Only replayable requests are sent ([`check_replayable`]: `temperature` the number 0 or an integer
//!   `seed`, and `n` absent or 1; never streamed), each marked `x-dait-replayable: 1`
//!   ([`CallOptions::replayable`]), so every honest host serves the same engine request with the same seed
//!   and produces the same normalised response hash.
//! - Every receipt passes the session's usual checks, which for a replayable call include
//!   `deterministic = true` with the seed the request implies (the tenant's `seed`, else 0); a host whose
//!   receipt fails them, or that fails the call, counts as disagreeing.
//! - Majority: more than N/2 of the N hosts returned equal response hashes. The majority's first answer (in
//!   host order) is returned.
//! - Any disagreement or failure is written as dispute evidence, `disputes/<request hash>-<unix ms>.json`
//!   under the state directory ([`DisputeEvidence`]): the request hash, and for each host its URL, host key
//!   id, channel, signed receipt and response hash, or its error, and which ones disagreed. The plaintext
//!   request is not written; the tenant discloses it to an auditor, who checks it against `request_hash`.

use std::path::{Path, PathBuf};

use dait_chain_client::{replay, request_hash};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::Wallet;
use crate::session::{CallOptions, CallOutcome, Session, SessionConfig};

/// The most hosts a redundant proxy serves from.
pub const MAX_REDUNDANT: usize = 16;

/// The directory under the state directory that holds the dispute evidence files.
pub const DISPUTES_DIR: &str = "disputes";

/// Why a request is not replayable, so redundant mode refuses it before sending anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotReplayable {
    /// The body is not a JSON object.
    #[error("the body must be a JSON object")]
    NotAnObject,
    /// The hosts' rule refuses it (`n`, `seed` or `temperature`).
    #[error(transparent)]
    Rule(#[from] replay::NotReplayable),
    /// `"stream": true`: the majority is known only once every host answered.
    #[error("streaming is not offered in redundant mode")]
    Streamed,
}

/// Checks that `request` is replayable by the rule hosts apply ([`replay::replay_seed`], PROTOCOL.md §6),
/// and not streamed; returns the seed its receipts must name (the request's `seed`, else 0).
pub fn check_replayable(request: &Value) -> Result<u64, NotReplayable> {
    let map = request.as_object().ok_or(NotReplayable::NotAnObject)?;
    if map.get("stream").and_then(Value::as_bool) == Some(true) {
        return Err(NotReplayable::Streamed);
    }
    Ok(replay::replay_seed(map)?)
}

/// Why redundant serving failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedundantError {
    /// No majority: the dispute evidence was written (`None` if writing it failed).
    #[error("no majority: at most {agreeing} of {of} hosts agreed{}", crate::DisputeAt(.evidence))]
    NoMajority {
        /// The largest number of hosts that agreed on one response hash.
        agreeing: usize,
        /// The number of hosts asked.
        of: usize,
        /// The evidence file.
        evidence: Option<PathBuf>,
    },
    /// Fewer hosts than required verified and opened a channel.
    #[error("{verified} of the hosts verified and opened a channel; {needed} are required")]
    NotEnoughHosts {
        /// Hosts that verified.
        verified: usize,
        /// The N of `--redundant N`.
        needed: usize,
    },
    /// The request is not replayable (nothing was sent).
    #[error("the request is not replayable: {0}")]
    NotReplayable(#[from] NotReplayable),
    /// N is below 2 or above [`MAX_REDUNDANT`].
    #[error("redundant mode needs 2 to {MAX_REDUNDANT} hosts, not {0}")]
    Size(usize),
}

/// One host of a redundant set: its URL, attested host key id, and session.
#[derive(Debug)]
struct Member {
    url: String,
    host_key_id: String,
    channel_id: String,
    session: Mutex<Session>,
}

/// N verified hosts, each with its own channel, served together.
#[derive(Debug)]
pub struct Redundant {
    members: Vec<Member>,
    state_dir: PathBuf,
}

/// A request that a majority agreed on.
#[derive(Debug)]
pub struct Agreed {
    /// The answer returned: the first agreeing host's, with its checked receipt.
    pub outcome: CallOutcome,
    /// The URL of the host whose answer is returned.
    pub host: String,
    /// How many hosts agreed.
    pub agreeing: usize,
    /// How many hosts were asked.
    pub of: usize,
    /// Every receipt accepted for this request (one per host that answered), for `/dait/receipts`.
    pub accepted: Vec<CallOutcome>,
    /// The dispute evidence written because not every host agreed (`None` when all agreed, or writing
    /// failed).
    pub evidence: Option<PathBuf>,
}

/// The dispute evidence of one request (the JSON of a `disputes/*.json` file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisputeEvidence {
    /// Format version (1).
    pub version: u32,
    /// When it was written, unix seconds.
    pub time: u64,
    /// The request path (`/v1/chat/completions` or `/v1/completions`).
    pub path: String,
    /// `0x` hex SHA-256 of the plaintext request (every receipt's `request_hash`).
    pub request_hash: String,
    /// `agreeing/asked`, e.g. `2/3`; the agreeing count is 0 when no two hosts agreed.
    pub agreement: String,
    /// The majority's response hash, `None` when there is no majority.
    pub majority_response_hash: Option<String>,
    /// Each host's answer, in host order.
    pub hosts: Vec<HostAnswer>,
    /// The URLs of the hosts that did not agree with the majority (every host, without a majority).
    pub disagreeing: Vec<String>,
}

/// One host's part of [`DisputeEvidence`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostAnswer {
    /// The host's URL.
    pub host: String,
    /// `0x` hex of the attested host key id.
    pub host_key_id: String,
    /// `0x` hex of the tenant's channel with this host.
    pub channel_id: String,
    /// Whether its response hash is the majority's.
    pub agrees: bool,
    /// `0x` hex of its receipt's `response_hash` (absent when the call failed).
    pub response_hash: Option<String>,
    /// Its signed receipt, base64url `SignedReceipt` as received (absent when the call failed).
    pub signed_receipt: Option<String>,
    /// Why the call failed or the receipt was not counted.
    pub error: Option<String>,
}

impl Redundant {
    /// Verifies every host and opens a channel with each (concurrently); keeps the first `n` that
    /// succeed, in the order given. Dispute evidence goes under `state_dir`; each session keeps its own
    /// state in its [`SessionConfig::state_dir`].
    pub async fn open(
        hosts: Vec<(SessionConfig, Wallet)>,
        n: usize,
        state_dir: PathBuf,
    ) -> Result<Self, RedundantError> {
        if !(2..=MAX_REDUNDANT).contains(&n) {
            return Err(RedundantError::Size(n));
        }
        let opened = futures::future::join_all(hosts.into_iter().map(|(config, wallet)| {
            let url = config.host_url.clone();
            async move { (url, Session::open(config, wallet).await) }
        }))
        .await;
        let mut members = Vec::new();
        for (url, opened) in opened {
            match opened {
                Ok(session) if members.len() < n => members.push(Member {
                    host_key_id: session.bundle().host_key_id().to_string(),
                    channel_id: session.channel().id().to_string(),
                    url,
                    session: Mutex::new(session),
                }),
                Ok(_) => tracing::info!(host = %url, "verified; not needed (spare)"),
                Err(error) => {
                    tracing::warn!(host = %url, error = %crate::proxy::format_chain(&error), "host not used")
                }
            }
        }
        if members.len() < n {
            return Err(RedundantError::NotEnoughHosts {
                verified: members.len(),
                needed: n,
            });
        }
        Ok(Self { members, state_dir })
    }

    /// The URLs of the hosts, in order.
    pub fn hosts(&self) -> Vec<String> {
        self.members.iter().map(|m| m.url.clone()).collect()
    }

    /// The latest channel state of each host, in order.
    pub async fn states(&self) -> Vec<dait_chain_client::SignedChannelState> {
        let mut out = Vec::new();
        for member in &self.members {
            out.push(member.session.lock().await.state().clone());
        }
        out
    }

    /// Where dispute evidence is written.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Sends the replayable `body` to every host at once and returns the majority's answer. Refuses a
    /// request that is not replayable before sending anything.
    pub async fn call(&self, path: &str, body: Vec<u8>) -> Result<Agreed, RedundantError> {
        let request: Value =
            serde_json::from_slice(&body).map_err(|_| NotReplayable::NotAnObject)?;
        check_replayable(&request)?;
        let results = futures::future::join_all(self.members.iter().map(|member| {
            let body = body.clone();
            async move {
                let mut session = member.session.lock().await;
                session
                    .call_with_options(path, body, CallOptions::replayable())
                    .await
            }
        }))
        .await;
        // The session has checked each receipt, its replay parameters included: `deterministic = true`
        // and the seed the request implies (`ReceiptError::ReplayParameters` otherwise, which stops that
        // host's session).
        let answers: Vec<Result<CallOutcome, String>> = results
            .into_iter()
            .map(|result| result.map_err(|error| crate::proxy::format_chain(&error)))
            .collect();
        let of = self.members.len();
        // The response hash most hosts agree on, and how many; ties go to the first in host order.
        let mut best: Option<(dait_chain_client::B256, usize)> = None;
        for answer in answers.iter().flatten() {
            let hash = answer.receipt.receipt().response_hash;
            let count = answers
                .iter()
                .flatten()
                .filter(|a| a.receipt.receipt().response_hash == hash)
                .count();
            if best.is_none_or(|(_, c)| count > c) {
                best = Some((hash, count));
            }
        }
        let agreeing = best.map_or(0, |(_, c)| c);
        let majority = best
            .filter(|(_, c)| c.saturating_mul(2) > of)
            .map(|(h, _)| h);
        let evidence = if agreeing == of {
            None
        } else {
            self.record(path, &body, &answers, majority, agreeing)
        };
        let Some(majority) = majority else {
            return Err(RedundantError::NoMajority {
                agreeing,
                of,
                evidence,
            });
        };
        let mut chosen = None;
        let mut accepted = Vec::new();
        for (member, answer) in self.members.iter().zip(answers) {
            let Ok(outcome) = answer else { continue };
            if chosen.is_none() && outcome.receipt.receipt().response_hash == majority {
                chosen = Some((member.url.clone(), outcome.clone()));
            }
            accepted.push(outcome);
        }
        let Some((host, outcome)) = chosen else {
            // Unreachable: `majority` is the response hash of at least one answer.
            return Err(RedundantError::NoMajority {
                agreeing,
                of,
                evidence,
            });
        };
        Ok(Agreed {
            outcome,
            host,
            agreeing,
            of,
            accepted,
            evidence,
        })
    }

    /// Writes the dispute evidence of one request; logs and returns its path (`None` if writing failed).
    fn record(
        &self,
        path: &str,
        body: &[u8],
        answers: &[Result<CallOutcome, String>],
        majority: Option<dait_chain_client::B256>,
        agreeing: usize,
    ) -> Option<PathBuf> {
        let request_hash = request_hash(body).to_string();
        let hosts: Vec<HostAnswer> = self
            .members
            .iter()
            .zip(answers)
            .map(|(member, answer)| {
                let (response_hash, signed_receipt, error) = match answer {
                    Ok(outcome) => (
                        Some(outcome.receipt.receipt().response_hash),
                        Some(outcome.receipt_b64.clone()),
                        None,
                    ),
                    Err(error) => (None, None, Some(error.clone())),
                };
                HostAnswer {
                    host: member.url.clone(),
                    host_key_id: member.host_key_id.clone(),
                    channel_id: member.channel_id.clone(),
                    agrees: majority.is_some() && response_hash == majority,
                    response_hash: response_hash.map(|h| h.to_string()),
                    signed_receipt,
                    error,
                }
            })
            .collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let evidence = DisputeEvidence {
            version: 1,
            time: now.as_secs(),
            path: path.to_owned(),
            request_hash: request_hash.clone(),
            agreement: format!("{agreeing}/{}", self.members.len()),
            majority_response_hash: majority.map(|h| h.to_string()),
            disagreeing: hosts
                .iter()
                .filter(|h| !h.agrees)
                .map(|h| h.host.clone())
                .collect(),
            hosts,
        };
        let name = format!(
            "{}-{}.json",
            request_hash.trim_start_matches("0x"),
            now.as_millis()
        );
        let dir = self.state_dir.join(DISPUTES_DIR);
        let file = dir.join(name);
        let written = std::fs::create_dir_all(&dir).and_then(|()| {
            let text = serde_json::to_vec_pretty(&evidence).map_err(std::io::Error::other)?;
            std::fs::write(&file, text)
        });
        match written {
            Ok(()) => {
                tracing::warn!(
                    agreement = %evidence.agreement,
                    disagreeing = ?evidence.disagreeing,
                    evidence = %file.display(),
                    "hosts disagreed on a replayable request: dispute evidence written"
                );
                Some(file)
            }
            Err(error) => {
                tracing::error!(%error, "writing the dispute evidence failed");
                None
            }
        }
    }
}

/// Every dispute evidence file under `state_dir`, oldest name first, with its file name.
pub fn list_disputes(state_dir: &Path) -> std::io::Result<Vec<(String, DisputeEvidence)>> {
    let dir = state_dir.join(DISPUTES_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".json") {
            continue;
        }
        let text = std::fs::read(entry.path())?;
        match serde_json::from_slice::<DisputeEvidence>(&text) {
            Ok(evidence) => out.push((name, evidence)),
            Err(error) => tracing::warn!(file = %name, %error, "unreadable dispute evidence"),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The state directory of one host's session under a redundant proxy's `state_dir`:
/// `hosts/<host>_<port>` (the URL's authority, `:` replaced).
pub fn host_state_dir(state_dir: &Path, host_url: &str) -> PathBuf {
    let authority = host_url
        .trim_start_matches("https://")
        .trim_end_matches('/');
    let name: String = authority
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    state_dir.join("hosts").join(name)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replayable_requests_follow_the_hosts_rule_and_are_not_streamed() {
        let ok = |v: Value| check_replayable(&v);
        assert_eq!(ok(json!({"temperature": 0})), Ok(0));
        assert_eq!(ok(json!({"temperature": 0.9, "seed": 7})), Ok(7));
        let rule = |r| Err(NotReplayable::Rule(r));
        assert_eq!(
            ok(json!({"temperature": 0.1})),
            rule(replay::NotReplayable::Sampling)
        );
        assert_eq!(
            ok(json!({"temperature": 0, "n": 2})),
            rule(replay::NotReplayable::N)
        );
        assert_eq!(
            ok(json!({"temperature": 0, "stream": true})),
            Err(NotReplayable::Streamed)
        );
        assert_eq!(ok(json!([1])), Err(NotReplayable::NotAnObject));
    }

    #[test]
    fn host_state_dirs_are_named_after_the_authority() {
        let dir = host_state_dir(Path::new("s"), "https://127.0.0.1:8443/");
        assert_eq!(dir, Path::new("s/hosts/127.0.0.1_8443"));
    }

    #[test]
    fn disputes_list_reads_the_json_files_only() {
        let dir = std::env::temp_dir().join(format!("dait-redundant-list-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(list_disputes(&dir).unwrap().is_empty(), "no directory yet");
        let disputes = dir.join(DISPUTES_DIR);
        std::fs::create_dir_all(disputes.join("a-session-record")).unwrap();
        let evidence = DisputeEvidence {
            version: 1,
            time: 1,
            path: "/v1/completions".into(),
            request_hash: "0x00".into(),
            agreement: "2/3".into(),
            majority_response_hash: Some("0x01".into()),
            hosts: Vec::new(),
            disagreeing: vec!["https://h".into()],
        };
        std::fs::write(
            disputes.join("00-1.json"),
            serde_json::to_vec(&evidence).unwrap(),
        )
        .unwrap();
        let listed = list_disputes(&dir).unwrap();
        assert_eq!(listed, vec![("00-1.json".to_owned(), evidence)]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
