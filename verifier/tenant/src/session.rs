//! One tenant session: a verified host, one channel, and the calls on it (serialised by `&mut self`).

use dait_chain_client::WireMessage as _;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use dait_chain_client::{
    Address, B256, DecodeError, Freshness, NormalizeError, NormalizedResponse, SignedChannelState,
    SignedReceipt, StreamNormalizer, ciphertext_hash,
};
use dait_verifier::bundle::{
    Policy, UnixTime, VerifiedBundle, VerifyError, verify_bundle_with_collateral,
};
use dait_verifier::receipt::{
    CallEvidence, Channel, ReceiptError, VerifiedReceipt, check_replay_parameters,
};
use rand::RngCore as _;
use tokio::sync::mpsc;

use crate::ohttp::{self, StreamEvent};
use crate::store::{self, DisputeRecord};
use crate::transport::{HostClient, MAX_BODY, read_body};
use crate::{HostErrorCode, TenantError, Wallet};

/// The default [`SessionConfig::call_timeout`]: 300 s.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(300);

/// What a session needs besides the wallet.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// `https://host:port` of the agent.
    pub host_url: String,
    /// The verification policy.
    pub policy: Policy,
    /// The most this channel may spend, in the channel's smallest unit.
    pub escrow_cap: u128,
    /// Where accepted receipts, channel states and dispute records are written.
    pub state_dir: PathBuf,
    /// Time allowed for a whole non-streamed call, or between two events of a streamed one
    /// ([`DEFAULT_CALL_TIMEOUT`] unless the engine is known to be slow, e.g. emulated).
    pub call_timeout: Duration,
}

/// How a call is sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallOptions {
    /// Mark the call replayable (`x-dait-replayable: 1`, PROTOCOL.md §6): the host serves it only with an
    /// engine declared deterministic and replayable sampling (`temperature` 0 or a `seed`, `n` absent or
    /// 1), else refuses it ([`HostErrorCode::NotReplayable`], no receipt). Its receipt must say
    /// `deterministic = true` and the seed asked for (the request's `seed`, else 0); the receipt of any
    /// other call must say `deterministic = false` and `seed = 0` ([`ReceiptError::ReplayParameters`]).
    pub replayable: bool,
}

impl CallOptions {
    /// A call marked replayable.
    pub const fn replayable() -> Self {
        Self { replayable: true }
    }
}

/// The seed a call asks for, as its receipt must name it: `None` for a call not sent replayable; for a
/// replayable one its body's `seed` (0 ≤ seed < 2^63), else 0. A replayable body that is not a JSON
/// object, or whose `seed` is no such integer, is not sent ([`TenantError::BadRequestBody`]).
fn replay_seed(body: &[u8], options: CallOptions) -> Result<Option<u64>, TenantError> {
    if !options.replayable {
        return Ok(None);
    }
    let json: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|_| TenantError::BadRequestBody)?;
    match json.get("seed") {
        None => Ok(Some(0)),
        Some(seed) => seed
            .as_u64()
            .filter(|s| *s < dait_chain_client::replay::SEED_LIMIT)
            .map(Some)
            .ok_or(TenantError::BadRequestBody),
    }
}

/// Why a channel stored in the state directory cannot be continued ([`Session::resume_from_store`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResumeError {
    /// The host's newly verified keyset is bound to another chain or settlement contract than the stored
    /// state: the tenant's signature on it does not recover the tenant under the keyset's domain.
    #[error("the host's keyset names another chain or settlement contract than the stored channel")]
    DomainMismatch,
    /// The stored state is final (signed to close the channel): no call can follow it.
    #[error("the stored channel state is final: the channel is being closed")]
    Final,
    /// The stored receipt of the state's turn does not agree with the stored state (its hash, cumulative or
    /// channel), or the state names receipts and none of its turn is stored.
    #[error("the stored receipts do not match the stored channel state")]
    LastReceiptMismatch,
    /// A stored file does not decode.
    #[error("the stored {what} does not decode")]
    Malformed {
        /// `state.pb`.
        what: &'static str,
        /// The cause.
        #[source]
        source: DecodeError,
    },
    /// The state directory holds no signed state for this channel.
    #[error("no signed state is stored for channel {channel}")]
    NoState {
        /// The channel asked for.
        channel: B256,
    },
    /// The state stored under the channel's directory is another channel's.
    #[error("the state stored for channel {asked} is channel {stored}'s")]
    OtherChannel {
        /// The channel asked for.
        asked: B256,
        /// The channel the stored state names.
        stored: B256,
    },
    /// The host is one turn ahead (it logged a receipt the tenant never received) and that receipt is
    /// signed by a key this tenant never verified for the channel: it cannot be checked. Dispute it, or
    /// close the channel unilaterally from the stored state.
    #[error(
        "the host logged receipt {call_seq}, which the tenant never received, under a key this tenant \
         never verified ({host_key_id}): it cannot be checked; dispute it or close unilaterally"
    )]
    UnseenReceiptKey {
        /// The receipt's call_seq.
        call_seq: u64,
        /// The key it names.
        host_key_id: B256,
    },
    /// The receipt the host is ahead with does not decode.
    #[error("the host's logged receipt {call_seq} does not decode")]
    UnseenReceiptMalformed {
        /// The call_seq asked for.
        call_seq: u64,
        /// The cause.
        #[source]
        source: DecodeError,
    },
    /// The verified host belongs to another operator account than the channel's `host`.
    #[error("the verified host's account {verified} is not the channel's host {channel}")]
    WrongHost {
        /// The channel's host account (from the stored state).
        channel: Address,
        /// The verified keyset's `host_account`.
        verified: Address,
    },
    /// The stored state belongs to another tenant than this wallet.
    #[error("the stored channel belongs to tenant {stored}, not to this wallet ({wallet})")]
    WrongTenant {
        /// The stored state's tenant.
        stored: Address,
        /// The wallet's address.
        wallet: Address,
    },
}

/// The last state the tenant signed for `channel_id` and the stored receipt of its turn (none at turn 0),
/// checked to be this channel's, this wallet's and not final.
///
/// The receipt is the last one in `receipts.b64` whose call_seq is the state's turn: a receipt appended
/// after it without its state (a crash between the two writes) or a torn last line is passed over, and the
/// host's log gives that receipt again ([`Session::catch_up`]).
fn load_stored(
    state_dir: &std::path::Path,
    channel_id: &B256,
    wallet: Address,
) -> Result<(SignedChannelState, Option<SignedReceipt>), TenantError> {
    let (state, lines) =
        store::load_channel(state_dir, channel_id.as_bytes()).map_err(TenantError::Io)?;
    let state = state.ok_or(ResumeError::NoState {
        channel: *channel_id,
    })?;
    let state = SignedChannelState::decode(&state).map_err(|source| ResumeError::Malformed {
        what: "state.pb",
        source,
    })?;
    if state.state.channel_id != *channel_id {
        return Err(ResumeError::OtherChannel {
            asked: *channel_id,
            stored: state.state.channel_id,
        }
        .into());
    }
    if state.state.tenant != wallet {
        return Err(ResumeError::WrongTenant {
            stored: state.state.tenant,
            wallet,
        }
        .into());
    }
    if state.state.is_final {
        return Err(ResumeError::Final.into());
    }
    let turn = state.state.turn;
    let last = (turn > 0)
        .then(|| {
            lines
                .iter()
                .rev()
                .filter_map(|line| SignedReceipt::from_header_value(line).ok())
                .find(|r| r.receipt.call_seq == turn)
        })
        .flatten();
    Ok((state, last))
}

/// A call that completed and whose receipt passed every check.
#[derive(Clone, Debug)]
pub struct CallOutcome {
    /// The inner HTTP status (200).
    pub status: u16,
    /// The response body as the engine sent it (JSON, or the server-sent events when streamed).
    pub body: Vec<u8>,
    /// The checked receipt.
    pub receipt: VerifiedReceipt,
    /// The receipt as received (base64url `SignedReceipt`).
    pub receipt_b64: String,
    /// The channel state the tenant signed after accepting the receipt.
    pub state: SignedChannelState,
    /// The encapsulated request as sent (for re-checking the receipt, e.g. in an audit).
    pub request_ct: Vec<u8>,
}

/// One item of a streamed call.
#[derive(Debug)]
pub enum StreamItem {
    /// Response bytes (server-sent events), as they arrived.
    Data(Bytes),
    /// The stream ended with its authenticated final chunk and its receipt passed every check.
    Done(Box<CallOutcome>),
}

/// A tenant's session with one verified host.
#[derive(Debug)]
pub struct Session {
    client: HostClient,
    host_url: String,
    policy: Policy,
    bundle: VerifiedBundle,
    channel: Channel,
    wallet: Wallet,
    state_dir: PathBuf,
    call_timeout: Duration,
    stopped: bool,
    receipts: Vec<VerifiedReceipt>,
}

/// Fetches the host's evidence for a fresh nonce, verifies it under `policy`, checks that the TLS key the
/// host presented is the attested one, and returns a client pinned to it.
pub async fn verify_host(
    host_url: &str,
    policy: &Policy,
) -> Result<(HostClient, VerifiedBundle), TenantError> {
    verify_host_with_collateral(host_url, policy, None).await
}

/// As [`verify_host`], checking a TDX quote against `collateral` (when given) instead of the collateral
/// the bundle carries.
pub async fn verify_host_with_collateral(
    host_url: &str,
    policy: &Policy,
    collateral: Option<&dait_chain_client::proto::Collateral>,
) -> Result<(HostClient, VerifiedBundle), TenantError> {
    let mut nonce = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let first = HostClient::new(host_url)?;
    let bytes = first.fetch_bundle(&nonce).await?;
    let bundle = verify_bundle_with_collateral(
        &bytes,
        policy,
        collateral,
        &Freshness::TenantNonce(nonce),
        UnixTime::now(),
    )?;
    let presented = first
        .presented_spki()
        .ok_or(TenantError::Internal("no TLS key recorded"))?;
    if presented.as_slice() != bundle.tls_spki() {
        return Err(TenantError::TlsSpkiMismatch);
    }
    Ok((first.pin(bundle.tls_spki())?, bundle))
}

impl Session {
    /// Verifies the host and opens a channel with it.
    pub async fn open(config: SessionConfig, wallet: Wallet) -> Result<Self, TenantError> {
        let mut salt = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        Self::open_with_salt(config, wallet, B256(salt)).await
    }

    /// Verifies the host and opens the channel `salt` names with it (`channelId(tenant, host, salt)` in the
    /// keyset's domain: a channel opened on chain with that salt), from turn 0.
    pub async fn open_with_salt(
        config: SessionConfig,
        wallet: Wallet,
        salt: B256,
    ) -> Result<Self, TenantError> {
        let (client, bundle) = verify_host(&config.host_url, &config.policy).await?;
        let channel =
            Channel::open(&bundle, wallet.signer(), &salt, config.escrow_cap).map_err(|_| {
                TenantError::Bundle(VerifyError::MalformedKey {
                    field: "keyset.receipt_key",
                })
            })?;
        tracing::info!(channel = %channel.id(), tenant = %wallet.address(), "channel opened");
        Self::start(config, client, bundle, channel, wallet)
    }

    /// A session on `channel` with the verified host: the state directory created and the bundle's receipt
    /// key recorded for the channel.
    fn start(
        config: SessionConfig,
        client: HostClient,
        bundle: VerifiedBundle,
        channel: Channel,
        wallet: Wallet,
    ) -> Result<Self, TenantError> {
        std::fs::create_dir_all(&config.state_dir).map_err(TenantError::Io)?;
        let session = Self {
            client,
            host_url: config.host_url,
            policy: config.policy,
            bundle,
            channel,
            wallet,
            state_dir: config.state_dir,
            call_timeout: config.call_timeout,
            stopped: false,
            receipts: Vec::new(),
        };
        session.remember_host_key()?;
        Ok(session)
    }

    /// Records the verified bundle's receipt key for the channel in the state directory, so that a receipt
    /// this boot of the host logs but never delivers can be checked after the host restarted
    /// ([`Session::catch_up`]).
    fn remember_host_key(&self) -> Result<(), TenantError> {
        store::record_host_key(
            &self.state_dir,
            self.channel.id().as_bytes(),
            self.bundle.host_key_id().as_bytes(),
            self.bundle.receipt_key(),
            self.bundle.keyset_hash().as_bytes(),
        )
        .map_err(TenantError::Io)
    }

    /// Continues a channel this tenant used before, from the state directory (`config.state_dir`), after the
    /// tenant's own process restarted (PROTOCOL.md §4, "Opening and restarts").
    ///
    /// Loads the last state the tenant signed for `channel_id` (`state.pb`) and the last accepted receipt
    /// (`receipts.b64`), verifies the host at `config.host_url` afresh under `config.policy`, requires the
    /// verified keyset's `host_account` to be the state's `host` ([`ResumeError::WrongHost`]) and its domain
    /// the channel's (the tenant signature on the state must recover this wallet under it,
    /// [`ResumeError::DomainMismatch`]), and goes on from that state: the next call gets call_seq
    /// `turn + 1` and must chain to the stored receipt. The escrow cap is the stored state's
    /// (`config.escrow_cap` is not used). Then [`Session::catch_up`] runs once, so a receipt the host logged
    /// but the tenant never received is fetched and accepted (or refused) before the first call.
    pub async fn resume_from_store(
        config: SessionConfig,
        wallet: Wallet,
        channel_id: &B256,
    ) -> Result<Self, TenantError> {
        let (state, last) = load_stored(&config.state_dir, channel_id, wallet.address())?;
        let (client, bundle) = verify_host(&config.host_url, &config.policy).await?;
        let verified = bundle.keyset().host_account;
        if verified != state.state.host {
            return Err(ResumeError::WrongHost {
                channel: state.state.host,
                verified,
            }
            .into());
        }
        if state.verify_tenant(&bundle.domain()).ok() != Some(wallet.address()) {
            return Err(ResumeError::DomainMismatch.into());
        }
        let channel = Channel::restore(&bundle, state, last.as_ref().map(|r| &r.receipt)).map_err(
            |error| match error {
                ReceiptError::Rule(dait_chain_client::ReceiptError::Final) => ResumeError::Final,
                _ => ResumeError::LastReceiptMismatch,
            },
        )?;
        tracing::info!(
            channel = %channel.id(),
            turn = channel.state().state.turn,
            host_key_id = %bundle.host_key_id(),
            "channel resumed from the state directory"
        );
        let mut session = Self::start(config, client, bundle, channel, wallet)?;
        session.catch_up().await?;
        Ok(session)
    }

    /// Asks the host's receipt log for the receipt after the tenant's latest state
    /// (`GET /v1/receipts/<channel>/<turn + 1>`, PROTOCOL.md §6): a host one turn ahead (it logged a receipt
    /// and then crashed, or the tenant left or crashed before the receipt arrived) refuses the tenant's
    /// state as `stale_state` until the tenant accepts that receipt.
    ///
    /// Returns `None` when the host has no such receipt (404). Otherwise the receipt gets every check that
    /// does not need the call ([`Channel::check_unseen`]: signature by the attested key, `host_key_id`,
    /// `keyset_hash`, channel, call_seq, the chain to the last receipt, amount and cumulative arithmetic,
    /// the escrow cap, prices, model, weights and engine). Its request and response hashes cannot be
    /// recomputed, so it is accepted as the host's claim, which the tenant then pays: the settlement contract
    /// already lets the host claim one receipt on top of the tenant's latest signed state in a unilateral
    /// close, so accepting it costs the tenant nothing the host could not claim anyway (at most the
    /// channel's per-call limit). It is stored like any accepted receipt, listed in the channel's
    /// `unchecked.txt` in the state directory as well, and the tenant signs the next state.
    /// A receipt that fails a check stops the session and is written for a dispute
    /// ([`TenantError::ReceiptRejected`]). One signed by an earlier boot's key (the host logged it, then
    /// restarted) is checked under that key when this tenant verified it for the channel before (the
    /// state directory's `host_keys.txt`), its model against the runtime attested now; under a key it never
    /// verified it is refused ([`ResumeError::UnseenReceiptKey`]). A host without a receipt log (503) is
    /// taken as not ahead. After [`Session::resume`] (the host restarted while this session lived), call
    /// this when a call is refused as `stale_state`.
    pub async fn catch_up(&mut self) -> Result<Option<VerifiedReceipt>, TenantError> {
        if self.stopped {
            return Err(TenantError::SessionStopped);
        }
        let state = self.channel.state().clone();
        let call_seq = state
            .state
            .turn
            .checked_add(1)
            .ok_or(TenantError::Internal("turn overflow"))?;
        let fetched = match self
            .client
            .fetch_receipt(
                self.channel.id().as_bytes(),
                call_seq,
                &state.to_header_value(),
            )
            .await
        {
            Ok(fetched) => fetched,
            Err(TenantError::HostStatus { status: 503 }) => None,
            Err(error) => return Err(error),
        };
        let Some(bytes) = fetched else {
            return Ok(None);
        };
        let signed = SignedReceipt::decode(&bytes)
            .map_err(|source| ResumeError::UnseenReceiptMalformed { call_seq, source })?;
        let receipt_b64 = signed.to_header_value();
        let key = signed.receipt.host_key_id;
        let checked = if key == *self.bundle.host_key_id() {
            self.channel.check_unseen(signed)
        } else {
            // An earlier boot of the host logged it and restarted before delivering it: checkable under
            // that boot's key if this tenant verified it for the channel.
            let known = store::host_key(
                &self.state_dir,
                self.channel.id().as_bytes(),
                key.as_bytes(),
            )
            .map_err(TenantError::Io)?;
            let Some((receipt_key, keyset_hash)) = known else {
                return Err(ResumeError::UnseenReceiptKey {
                    call_seq,
                    host_key_id: key,
                }
                .into());
            };
            self.channel
                .check_unseen_by(signed, &receipt_key, B256(keyset_hash))
        };
        let receipt = match checked {
            Ok(receipt) => receipt,
            Err(error) => return Err(self.stop(receipt_b64.as_bytes(), error)),
        };
        let next = match self.channel.accept(&receipt, self.wallet.signer()) {
            Ok(next) => next.clone(),
            Err(error) => return Err(self.stop(receipt_b64.as_bytes(), error)),
        };
        store::record_accepted(
            &self.state_dir,
            self.channel.id().as_bytes(),
            receipt_b64.as_bytes(),
            &next.encode(),
        )
        .map_err(TenantError::Io)?;
        store::record_unchecked(
            &self.state_dir,
            self.channel.id().as_bytes(),
            call_seq,
            receipt.hash().as_bytes(),
        )
        .map_err(TenantError::Io)?;
        tracing::warn!(
            call_seq,
            amount = receipt.receipt().amount,
            "accepted a receipt the host logged but the tenant never received (request and response \
             not checkable: the host's claim)"
        );
        self.receipts.push(receipt.clone());
        Ok(Some(receipt))
    }

    /// The verified evidence of the host.
    pub fn bundle(&self) -> &VerifiedBundle {
        &self.bundle
    }
    /// The channel.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }
    /// The latest channel state the tenant signed.
    pub fn state(&self) -> &SignedChannelState {
        self.channel.state()
    }
    /// Every receipt this session accepted on the channel, in order (a session resumed from the state
    /// directory starts with none; the earlier ones are in `receipts.b64`).
    pub fn receipts(&self) -> &[VerifiedReceipt] {
        &self.receipts
    }
    /// The state that closes the channel cooperatively: the latest agreed state with `is_final` set, signed
    /// by the tenant, for the host to counter-sign ([`crate::close::request_countersignature`]). The session
    /// is unchanged; the host serves no call on a final state.
    pub fn final_state(&self) -> SignedChannelState {
        self.channel.close(self.wallet.signer())
    }
    /// Whether a failed check stopped the session.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }
    /// The pinned client for the host.
    pub fn host(&self) -> &HostClient {
        &self.client
    }

    /// Continues the channel after the host restarted (PROTOCOL.md §4): verifies the host's new evidence at
    /// `host_url` (the session's own URL when `None`) for a fresh nonce under the session's policy, requires
    /// its keyset to name the channel's `host` account and domain, and from then on checks receipts against
    /// the new receipt key and keyset and pins the new TLS key. The channel goes on from the last state the
    /// tenant signed, and the new receipt key is recorded in the state directory ([`Session::catch_up`]). On
    /// an error nothing changes, except that an I/O error recording the key leaves the session resumed. A
    /// stopped session stays stopped.
    pub async fn resume(&mut self, host_url: Option<&str>) -> Result<(), TenantError> {
        let url = host_url.unwrap_or(&self.host_url).to_owned();
        let (client, bundle) = verify_host(&url, &self.policy).await?;
        self.channel
            .resume(&bundle)
            .map_err(TenantError::CannotResume)?;
        tracing::info!(
            channel = %self.channel.id(),
            host_key_id = %bundle.host_key_id(),
            "channel resumed with the host's new key"
        );
        self.client = client;
        self.bundle = bundle;
        self.host_url = url;
        self.remember_host_key()
    }

    /// One non-streamed call: `POST path` with `body`, carrying the latest signed state.
    pub async fn call(&mut self, path: &str, body: Vec<u8>) -> Result<CallOutcome, TenantError> {
        self.call_with_options(path, body, CallOptions::default())
            .await
    }

    /// [`Session::call`] sent as `options` say (e.g. [`CallOptions::replayable`]).
    pub async fn call_with_options(
        &mut self,
        path: &str,
        body: Vec<u8>,
        options: CallOptions,
    ) -> Result<CallOutcome, TenantError> {
        let state = self.channel.state().clone();
        self.send(path, body, &state, options).await
    }

    /// A non-streamed call carrying `state` instead of the latest one: for replays and tests of the host's
    /// state checks. A receipt, if one comes back, is still checked against the channel.
    pub async fn call_with_state(
        &mut self,
        path: &str,
        body: Vec<u8>,
        state: &SignedChannelState,
    ) -> Result<CallOutcome, TenantError> {
        self.send(path, body, state, CallOptions::default()).await
    }

    async fn send(
        &mut self,
        path: &str,
        body: Vec<u8>,
        state: &SignedChannelState,
        options: CallOptions,
    ) -> Result<CallOutcome, TenantError> {
        if self.stopped {
            return Err(TenantError::SessionStopped);
        }
        let replay = replay_seed(&body, options)?;
        let inner =
            ohttp::encode_inner_request(path, &body, &state.to_header_value(), options.replayable)?;
        let sealed = ohttp::seal(self.bundle.ohttp_key_config(), &inner)?;
        let request_ct = sealed.bytes;
        let exchange = async {
            let response = self
                .client
                .post_ohttp(ohttp::REQ, request_ct.clone())
                .await?;
            read_body(response.into_body(), MAX_BODY).await
        };
        let enc_response = tokio::time::timeout(self.call_timeout, exchange)
            .await
            .map_err(|_| TenantError::Timeout)??;
        let response_ct_hash = ciphertext_hash(&enc_response);
        let plain = sealed
            .opener
            .decapsulate(&enc_response)
            .map_err(|_| TenantError::ResponseDecrypt)?;
        let inner = ohttp::decode_inner_response(&plain)?;
        if inner.status != 200 {
            return Err(host_error(inner.status, &inner.body));
        }
        self.finish_call(
            &body,
            inner.body,
            inner.receipt,
            &request_ct,
            response_ct_hash,
            false,
            replay,
        )
    }

    /// One streamed call (`"stream": true` in `body`) over chunked OHTTP. Returns once the host's inner
    /// status is known; the body follows through [`StreamCall::next`].
    pub async fn call_stream(
        &mut self,
        path: &str,
        body: Vec<u8>,
    ) -> Result<StreamCall<'_>, TenantError> {
        self.call_stream_with_options(path, body, CallOptions::default())
            .await
    }

    /// [`Session::call_stream`] sent as `options` say (e.g. [`CallOptions::replayable`]).
    pub async fn call_stream_with_options(
        &mut self,
        path: &str,
        body: Vec<u8>,
        options: CallOptions,
    ) -> Result<StreamCall<'_>, TenantError> {
        if self.stopped {
            return Err(TenantError::SessionStopped);
        }
        let replay = replay_seed(&body, options)?;
        let state = self.channel.state().clone();
        let inner =
            ohttp::encode_inner_request(path, &body, &state.to_header_value(), options.replayable)?;
        let mut rx = ohttp::stream_call(
            self.client.clone(),
            self.bundle.ohttp_key_config().to_vec(),
            inner,
        );
        let mut request_ct = None;
        let timeout = self.call_timeout;
        loop {
            match recv(&mut rx, timeout).await? {
                StreamEvent::Sent(sent) => request_ct = Some(sent),
                StreamEvent::Status(200) => break,
                StreamEvent::Status(status) => {
                    let mut error_body = Vec::new();
                    while let StreamEvent::Body(chunk) = recv(&mut rx, timeout).await? {
                        error_body.extend_from_slice(&chunk);
                    }
                    return Err(host_error(status, &error_body));
                }
                StreamEvent::Body(_) | StreamEvent::End { .. } => {
                    return Err(TenantError::Internal("stream events out of order"));
                }
            }
        }
        Ok(StreamCall {
            session: self,
            rx,
            request_body: body,
            replay,
            request_ct: request_ct.ok_or(TenantError::Internal("stream events out of order"))?,
            collected: Vec::new(),
            finished: false,
        })
    }

    /// Checks a call's receipt (its replay parameters against `replay`, the seed a replayable call asked
    /// for), then accepts it (signing the next state) or stops the session.
    // Each argument is one fact of the call as the tenant observed it.
    #[allow(clippy::too_many_arguments)]
    fn finish_call(
        &mut self,
        request_body: &[u8],
        body: Vec<u8>,
        receipt_b64: Option<Vec<u8>>,
        request_ct: &[u8],
        response_ct_hash: B256,
        streamed: bool,
        replay: Option<u64>,
    ) -> Result<CallOutcome, TenantError> {
        let Some(receipt_b64) = receipt_b64 else {
            return Err(self.stop(&[], ReceiptError::Missing));
        };
        let response = match normalize(&body, streamed) {
            Ok(response) => response,
            Err(error) => {
                return Err(self.stop(&receipt_b64, ReceiptError::ResponseUnreadable(error)));
            }
        };
        let evidence = CallEvidence {
            request_body,
            response: &response,
            request_ct,
            response_ct_hash: bound_response_ct_hash(&response_ct_hash),
        };
        let receipt = match self.channel.check_header(&receipt_b64, &evidence) {
            Ok(receipt) => receipt,
            Err(error) => return Err(self.stop(&receipt_b64, error)),
        };
        if let Err(error) = check_replay_parameters(receipt.receipt(), replay) {
            return Err(self.stop(&receipt_b64, error));
        }
        let state = match self.channel.accept(&receipt, self.wallet.signer()) {
            Ok(state) => state.clone(),
            Err(error) => return Err(self.stop(&receipt_b64, error)),
        };
        let receipt_text = String::from_utf8_lossy(&receipt_b64).into_owned();
        store::record_accepted(
            &self.state_dir,
            self.channel.id().as_bytes(),
            receipt_text.as_bytes(),
            &state.encode(),
        )
        .map_err(TenantError::Io)?;
        tracing::info!(
            call_seq = receipt.receipt().call_seq,
            amount = receipt.receipt().amount,
            "receipt verified"
        );
        self.receipts.push(receipt.clone());
        Ok(CallOutcome {
            status: 200,
            body,
            receipt,
            receipt_b64: receipt_text,
            state,
            request_ct: request_ct.to_vec(),
        })
    }

    /// Stops the session after a failed check and writes the dispute record.
    fn stop(&mut self, receipt_b64: &[u8], error: ReceiptError) -> TenantError {
        self.stopped = true;
        let state = self.channel.state();
        let call_seq = state.state.turn.saturating_add(1);
        let reason = format!("{error}");
        tracing::error!(%reason, call_seq, "receipt check failed: session stopped; dispute this call");
        let record = match store::record_dispute(
            &self.state_dir,
            self.channel.id().as_bytes(),
            call_seq,
            receipt_b64,
            &state.encode(),
            &reason,
        ) {
            Ok(DisputeRecord { dir }) => Some(dir),
            Err(io) => {
                tracing::error!(error = %io, "writing the dispute record failed");
                None
            }
        };
        TenantError::ReceiptRejected { error, record }
    }
}

/// A streamed call in progress; holds the session until it ends.
///
/// Drive it to its end. A host that sees the tenant gone before the receipt makes none (the channel is
/// unchanged); one that made the receipt before it noticed is one turn ahead, and the next call on the
/// channel is then refused as `stale_state` (PROTOCOL.md §6).
#[derive(Debug)]
pub struct StreamCall<'s> {
    session: &'s mut Session,
    rx: mpsc::Receiver<Result<StreamEvent, TenantError>>,
    request_body: Vec<u8>,
    /// The seed the receipt must name when the call was sent replayable.
    replay: Option<u64>,
    request_ct: Vec<u8>,
    collected: Vec<u8>,
    finished: bool,
}

impl StreamCall<'_> {
    /// The next item: data as it arrives, then `Done` with the checked receipt. `None` after the end or
    /// after an error.
    pub async fn next(&mut self) -> Option<Result<StreamItem, TenantError>> {
        if self.finished {
            return None;
        }
        let event = match recv(&mut self.rx, self.session.call_timeout).await {
            Ok(event) => event,
            Err(error) => {
                self.finished = true;
                return Some(Err(error));
            }
        };
        match event {
            StreamEvent::Body(chunk) => {
                if self.collected.len().saturating_add(chunk.len()) > MAX_BODY {
                    self.finished = true;
                    return Some(Err(TenantError::BodyRead));
                }
                self.collected.extend_from_slice(&chunk);
                Some(Ok(StreamItem::Data(chunk)))
            }
            StreamEvent::End {
                receipt: None,
                error: Some(code),
                ..
            } => {
                // The host's engine failed after the stream started: an authenticated error, no
                // receipt, and the channel is where it was, so the next call reuses this turn.
                self.finished = true;
                let code = HostErrorCode::from_code(&String::from_utf8_lossy(&code));
                Some(Err(TenantError::StreamFailed { code }))
            }
            StreamEvent::End {
                receipt, ct_hash, ..
            } => {
                self.finished = true;
                let body = std::mem::take(&mut self.collected);
                let request_body = std::mem::take(&mut self.request_body);
                Some(
                    self.session
                        .finish_call(
                            &request_body,
                            body,
                            receipt,
                            &self.request_ct,
                            B256(ct_hash),
                            true,
                            self.replay,
                        )
                        .map(|outcome| StreamItem::Done(Box::new(outcome))),
                )
            }
            StreamEvent::Sent(_) | StreamEvent::Status(_) => {
                self.finished = true;
                Some(Err(TenantError::Internal("stream events out of order")))
            }
        }
    }
}

/// The next stream event; a closed channel without an end is a truncated stream.
async fn recv(
    rx: &mut mpsc::Receiver<Result<StreamEvent, TenantError>>,
    timeout: Duration,
) -> Result<StreamEvent, TenantError> {
    match tokio::time::timeout(timeout, rx.recv()).await {
        Err(_) => Err(TenantError::Timeout),
        Ok(None) => Err(TenantError::StreamTruncated),
        Ok(Some(event)) => event,
    }
}

/// Maps an inner error response to [`TenantError::Host`].
fn host_error(status: u16, body: &[u8]) -> TenantError {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: Inner,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        code: String,
    }
    let code = serde_json::from_slice::<Envelope>(body)
        .map(|e| HostErrorCode::from_code(&e.error.code))
        .unwrap_or(HostErrorCode::Other);
    TenantError::Host { code, status }
}

/// The `response_ct_hash` a receipt must carry for a response whose ciphertext hashes to `_observed`.
///
/// The receipt travels inside the encrypted response (header, or trailer in the final chunk), so the host
/// cannot hash the ciphertext that contains it; the agent puts zero there, and the response is bound to
/// the receipt through `response_hash` and the AEAD instead. The observed hash is kept so the binding can
/// be tightened (e.g. to a hash of the body chunks) without changing callers.
fn bound_response_ct_hash(_observed: &B256) -> B256 {
    B256::ZERO
}

/// Normalises a response body as received: JSON, or server-sent events when streamed.
fn normalize(body: &[u8], streamed: bool) -> Result<NormalizedResponse, NormalizeError> {
    if streamed {
        let mut normalizer = StreamNormalizer::new();
        normalizer.push(body)?;
        normalizer.finish()
    } else {
        NormalizedResponse::from_body(body)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use dait_chain_client::{NormalizedResponse, Receipt, Usage, receipt_hash, request_hash};
    use dait_verifier::bundle::verify_bundle;

    use super::*;
    use crate::support::{key, keyset, simulated_bundle};

    const NOW: u64 = 1_750_000_000;

    const REQUEST: &[u8] = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    const RESPONSE: &[u8] = br#"{"choices":[{"index":0,"message":{"content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":4,"completion_tokens":1}}"#;

    /// The runtime event log the receipts of [`receipt_for`] agree with: model "m", zero weights and engine.
    fn runtime_log() -> Vec<u8> {
        use dait_chain_client::runtime_log::{self, EventLog, event_data};
        use sha2::Digest as _;
        let mut log = EventLog::default();
        let model: [u8; 32] = sha2::Sha256::digest(b"m").into();
        for (kind, value) in [
            (runtime_log::MODEL_ID, model),
            (runtime_log::MODEL_WEIGHTS, [0; 32]),
            (runtime_log::ENGINE_BUILD, [0; 32]),
        ] {
            log.record(kind, &event_data(kind, &value));
        }
        log.encode()
    }

    /// A session over a simulated bundle; no network is used by `finish_call`.
    fn session(dir: &std::path::Path) -> Session {
        let freshness = Freshness::TenantNonce([5; 32]);
        let policy = Policy::new()
            .dangerous_allow_simulated(&key(1).verifying_key().to_sec1())
            .unwrap();
        let bundle = verify_bundle(
            &simulated_bundle(&keyset(&[4, 5, 6]), &freshness, &runtime_log()),
            &policy,
            &freshness,
            UnixTime::from_secs(NOW),
        )
        .unwrap();
        let wallet = Wallet::generate();
        let channel = Channel::open(&bundle, wallet.signer(), &B256([3; 32]), 1_000).unwrap();
        Session {
            client: HostClient::new("https://127.0.0.1:9").unwrap(),
            host_url: "https://127.0.0.1:9".into(),
            policy,
            bundle,
            channel,
            wallet,
            state_dir: dir.to_path_buf(),
            call_timeout: DEFAULT_CALL_TIMEOUT,
            stopped: false,
            receipts: Vec::new(),
        }
    }

    /// A receipt for the next call on `session`, signed by the attested receipt key.
    fn receipt_for(session: &Session, request_ct: &[u8]) -> String {
        receipt_claiming(session, request_ct, false, 0)
    }

    /// A plain call on `session` answered with [`RESPONSE`] and the receipt `header` (from [`receipt_for`]).
    fn answer(session: &mut Session, header: &str) -> Result<CallOutcome, TenantError> {
        session.finish_call(
            REQUEST,
            RESPONSE.to_vec(),
            Some(header.as_bytes().to_vec()),
            b"ct",
            B256::ZERO,
            false,
            None,
        )
    }

    /// [`receipt_for`] with the replay parameters `deterministic` and `seed`.
    fn receipt_claiming(
        session: &Session,
        request_ct: &[u8],
        deterministic: bool,
        seed: u64,
    ) -> String {
        let last = &session.state().state;
        let response = NormalizedResponse::from_body(RESPONSE).unwrap();
        let receipt = Receipt {
            version: 1,
            channel_id: last.channel_id,
            call_seq: last.turn + 1,
            host_key_id: *session.bundle().host_key_id(),
            keyset_hash: *session.bundle().keyset_hash(),
            model_id: "m".into(),
            weight_hash: B256::ZERO,
            request_hash: request_hash(REQUEST),
            response_hash: response
                .response_hash(Usage {
                    prompt_tokens: 4,
                    completion_tokens: 1,
                })
                .unwrap(),
            request_ct_hash: ciphertext_hash(request_ct),
            response_ct_hash: B256::ZERO,
            tokens_in: 4,
            tokens_out: 1,
            price_in: 1,
            price_out: 1,
            amount: 5,
            cumulative: last.cumulative + 5,
            prev_receipt_hash: last.last_receipt_hash,
            timestamp: NOW,
            seed,
            engine_build: B256::ZERO,
            deterministic,
        };
        key(3)
            .sign_receipt(receipt, session.channel().domain())
            .to_header_value()
    }

    #[test]
    fn accepted_receipt_is_recorded_and_the_state_advances() {
        let dir = tempdir("accept");
        let mut session = session(&dir);
        let header = receipt_for(&session, b"ct");
        let outcome = answer(&mut session, &header).unwrap();
        assert_eq!(outcome.state.state.turn, 1);
        assert_eq!(
            outcome.state.state.last_receipt_hash,
            receipt_hash(outcome.receipt.receipt(), session.channel().domain())
        );
        let channel_dir = dir
            .join("channels")
            .join(hex::encode(session.channel().id().as_bytes()));
        let log = std::fs::read_to_string(channel_dir.join("receipts.b64")).unwrap();
        assert_eq!(log.trim(), header);
        let state =
            SignedChannelState::decode(&std::fs::read(channel_dir.join("state.pb")).unwrap())
                .unwrap();
        assert_eq!(state, outcome.state);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn failed_check_stops_the_session_and_keeps_the_receipt_for_a_dispute() {
        let dir = tempdir("dispute");
        let mut session = session(&dir);
        let header = receipt_for(&session, b"ct");
        let opening = session.state().clone();
        // The response the tenant received differs from the one the receipt was made for.
        let altered = RESPONSE
            .to_vec()
            .iter()
            .map(|b| if *b == b'H' { b'J' } else { *b })
            .collect();
        let err = session
            .finish_call(
                REQUEST,
                altered,
                Some(header.clone().into_bytes()),
                b"ct",
                B256::ZERO,
                false,
                None,
            )
            .unwrap_err();
        let TenantError::ReceiptRejected { error, record } = err else {
            panic!("expected ReceiptRejected, got {err:?}");
        };
        assert!(matches!(
            error,
            ReceiptError::Rule(dait_chain_client::ReceiptError::ResponseHash)
        ));
        assert!(session.is_stopped());
        assert_eq!(
            session.state(),
            &opening,
            "a failed check leaves the agreed state"
        );
        let record = record.expect("the record was written");
        assert_eq!(
            std::fs::read_to_string(record.join("receipt.b64")).unwrap(),
            header
        );
        let kept =
            SignedChannelState::decode(&std::fs::read(record.join("state.pb")).unwrap()).unwrap();
        assert_eq!(kept, opening);
        assert!(
            std::fs::read_to_string(record.join("reason.txt"))
                .unwrap()
                .contains("response_hash")
        );

        // Nothing more goes out on a stopped session.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt
            .block_on(session.call("/v1/chat/completions", REQUEST.to_vec()))
            .unwrap_err();
        assert!(matches!(err, TenantError::SessionStopped));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn replay_parameters_are_checked_against_the_call() {
        let finish = |session: &mut Session, header: String, replay| {
            session.finish_call(
                REQUEST,
                RESPONSE.to_vec(),
                Some(header.into_bytes()),
                b"ct",
                B256::ZERO,
                false,
                replay,
            )
        };
        // A replayable call's receipt names its seed; then a plain call's names none.
        let dir = tempdir("replay");
        let mut honest = session(&dir);
        let header = receipt_claiming(&honest, b"ct", true, 7);
        finish(&mut honest, header, Some(7)).unwrap();
        let header = receipt_for(&honest, b"ct");
        finish(&mut honest, header, None).unwrap();
        let _ = std::fs::remove_dir_all(&dir);

        // A replayable call whose receipt does not say so, or names another seed, or a plain call whose
        // receipt claims a seed: stopped, kept for a dispute.
        for (deterministic, seed, replay) in [
            (false, 0, Some(0)),
            (true, 0, Some(7)),
            (true, 7, None),
            (false, 7, None),
        ] {
            let dir = tempdir("replay-wrong");
            let mut lying = session(&dir);
            let header = receipt_claiming(&lying, b"ct", deterministic, seed);
            let err = finish(&mut lying, header, replay).unwrap_err();
            let TenantError::ReceiptRejected { error, record } = err else {
                panic!("expected ReceiptRejected, got {err:?}");
            };
            assert!(
                matches!(
                    error,
                    ReceiptError::ReplayParameters { deterministic: d, seed: s }
                        if (d, s) == (deterministic, seed)
                ),
                "{error:?}"
            );
            assert!(lying.is_stopped());
            assert!(record.unwrap().join("receipt.b64").exists());
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[test]
    fn a_replayable_call_asks_for_its_seed_or_0() {
        let replayable = CallOptions::replayable();
        let seed = |body: &[u8]| replay_seed(body, replayable);
        assert_eq!(
            replay_seed(b"not json", CallOptions::default()).unwrap(),
            None
        );
        assert_eq!(seed(br#"{"temperature":0}"#).unwrap(), Some(0));
        assert_eq!(seed(br#"{"temperature":0.9,"seed":7}"#).unwrap(), Some(7));
        for bad in [
            &br#"{"seed":-1}"#[..],
            br#"{"seed":"7"}"#,
            br#"{"seed":9223372036854775808}"#,
            b"[]",
            b"not json",
        ] {
            assert!(
                matches!(seed(bad), Err(TenantError::BadRequestBody)),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn missing_receipt_stops_the_session() {
        let dir = tempdir("missing");
        let mut session = session(&dir);
        let err = session
            .finish_call(
                REQUEST,
                RESPONSE.to_vec(),
                None,
                b"ct",
                B256::ZERO,
                false,
                None,
            )
            .unwrap_err();
        assert!(matches!(
            err,
            TenantError::ReceiptRejected {
                error: ReceiptError::Missing,
                ..
            }
        ));
        assert!(session.is_stopped());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn host_error_codes_map_to_their_variants() {
        let e = host_error(409, br#"{"error":{"code":"stale_state","message":"x"}}"#);
        assert!(matches!(
            e,
            TenantError::Host {
                code: HostErrorCode::StaleState,
                status: 409
            }
        ));
        let e = host_error(
            402,
            br#"{"error":{"code":"over_escrow_cap","message":"x"}}"#,
        );
        assert!(matches!(
            e,
            TenantError::Host {
                code: HostErrorCode::OverEscrowCap,
                status: 402
            }
        ));
        let e = host_error(409, br#"{"error":{"code":"channel_final","message":"x"}}"#);
        assert!(matches!(
            e,
            TenantError::Host {
                code: HostErrorCode::ChannelFinal,
                status: 409
            }
        ));
        assert_eq!(HostErrorCode::ChannelFinal.as_code(), Some("channel_final"));
        let e = host_error(500, b"not json");
        assert!(matches!(
            e,
            TenantError::Host {
                code: HostErrorCode::Other,
                status: 500
            }
        ));
    }

    /// Calls 1 and 2 on one session; a second session over the same state directory, wallet and bundle,
    /// restored from what the first stored, goes on with call 3 chained to receipt 2; a receipt the host
    /// logged but the tenant never got (call 4) passes every check but the call's own and is accepted.
    #[test]
    fn a_channel_restored_from_the_store_goes_on_at_the_next_call_seq() {
        let dir = tempdir("restore");
        let mut first = session(&dir);
        for _ in 0..2 {
            let header = receipt_for(&first, b"ct");
            answer(&mut first, &header).unwrap();
        }
        let second_hash = *first.receipts()[1].hash();
        let id = *first.channel().id();
        // A crash between appending receipt 3 and storing its state, then a torn line: passed over.
        let log = dir
            .join("channels")
            .join(hex::encode(id.as_bytes()))
            .join("receipts.b64");
        let mut text = std::fs::read_to_string(&log).unwrap();
        text.push_str(&receipt_for(&first, b"unstored"));
        text.push_str("\nCiB0b3Ju\n");
        std::fs::write(&log, text).unwrap();
        let (state, last) = load_stored(&dir, &id, first.wallet.address()).unwrap();
        let last = last.unwrap();
        assert_eq!(last.receipt.call_seq, 2);
        let first_receipt = first.receipts()[0].receipt().clone();
        assert_eq!(state.state.turn, 2);
        // Another channel, another wallet: each its own error.
        assert!(matches!(
            load_stored(&dir, &B256([1; 32]), first.wallet.address()),
            Err(TenantError::Resume(ResumeError::NoState { .. }))
        ));
        assert!(matches!(
            load_stored(&dir, &id, Address([1; 20])),
            Err(TenantError::Resume(ResumeError::WrongTenant { .. }))
        ));
        let Session {
            bundle,
            wallet,
            policy,
            ..
        } = first;
        assert_eq!(
            state.verify_tenant(&bundle.domain()).unwrap(),
            wallet.address()
        );

        // The stored state must agree with the stored last receipt; the host must be the state's.
        for wrong in [None, Some(&first_receipt)] {
            assert!(matches!(
                Channel::restore(&bundle, state.clone(), wrong),
                Err(ReceiptError::RestoredState)
            ));
        }
        let mut foreign = state.clone();
        foreign.state.host = Address([0xee; 20]);
        assert!(matches!(
            Channel::restore(&bundle, foreign, Some(&last.receipt)),
            Err(ReceiptError::Rule(
                dait_chain_client::ReceiptError::WrongHost
            ))
        ));
        let mut closed = state.clone();
        closed.state.is_final = true;
        assert!(matches!(
            Channel::restore(&bundle, closed, Some(&last.receipt)),
            Err(ReceiptError::Rule(dait_chain_client::ReceiptError::Final))
        ));

        let channel = Channel::restore(&bundle, state, Some(&last.receipt)).unwrap();
        let mut second = Session {
            client: HostClient::new("https://127.0.0.1:9").unwrap(),
            host_url: "https://127.0.0.1:9".into(),
            policy,
            bundle,
            channel,
            wallet,
            state_dir: dir.clone(),
            call_timeout: DEFAULT_CALL_TIMEOUT,
            stopped: false,
            receipts: Vec::new(),
        };
        let header = receipt_for(&second, b"ct");
        let third = answer(&mut second, &header).unwrap();
        assert_eq!(third.receipt.receipt().call_seq, 3);
        assert_eq!(third.receipt.receipt().prev_receipt_hash, second_hash);
        assert_eq!(third.state.state.turn, 3);

        // Call 4, never received: checked without its call, then accepted.
        let unseen = SignedReceipt::from_header_value(&receipt_for(&second, b"lost")).unwrap();
        let mut tampered = unseen.clone();
        tampered.receipt.amount += 1;
        assert!(matches!(
            second.channel.check_unseen(tampered),
            Err(ReceiptError::Rule(
                dait_chain_client::ReceiptError::HostSignature(_)
            ))
        ));
        let checked = second.channel.check_unseen(unseen).unwrap();
        let state = second
            .channel
            .accept(&checked, second.wallet.signer())
            .unwrap();
        assert_eq!(state.state.turn, 4);
        assert_eq!(state.state.last_receipt_hash, *checked.hash());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dait-session-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
