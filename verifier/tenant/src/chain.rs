//! The tenant's side of the settlement contract (feature `chain`; `chain-client/contracts/README.md`), over
//! JSON-RPC with `dait-chain-client`'s `evm` client.
//!
//! - [`Chain::open`]: `approve` + `openChannel` to a host's operator account with a random salt; the channel
//!   is recorded as `channels/<channel id hex>/onchain.json` ([`ChannelRecord`]) in the state directory,
//!   next to the `state.pb` the session keeps there.
//! - [`Chain::status`]: the channel as the contract stores it next to the local latest signed state.
//! - [`Chain::close`]: the cooperative close (`closeChannel`) with the local state when it is final and
//!   counter-signed by the host (PROTOCOL.md §4, §8), otherwise `startClose`, which starts the challenge window.
//! - [`final_state`]: the tenant-signed final state for the host to counter-sign (or its operator to send).
//! - [`Chain::challenge`]: during a unilateral close, `claim` with the local state when its turn is above the
//!   chain's.
//! - [`Chain::withdraw`]: `finalize` after the window; the refund is the tenant's balance change.
//! - [`check_host`] / [`check_bundle`]: before a channel is used, the host's operator is bonded, its
//!   attestation for the current epoch names the keyset the tenant verified, and that attestation's release
//!   is usable (published, effective, in its window, not revoked).
//!
//! Every transaction comes back as a [`Tx`] (its name and hash) and every command reports the token
//! balances it changed ([`Balance`]). A contract revert is [`ChainError::Evm`] with
//! [`EvmError::Reverted`]; [`EvmError::revert_name`] gives the contract's error name.

use std::path::{Path, PathBuf};

use dait_chain_client::evm::{
    self, ChannelInfo, ChannelStatus, EvmError, HostStatus, OnchainChannelState, Settlement, Token,
};
use dait_chain_client::{
    Address, B256, ChannelState, Domain, SignedChannelState, SignedReceipt, WireMessage,
};
use dait_verifier::bundle::VerifiedBundle;
use rand::RngCore as _;

use crate::Wallet;

/// Why a settlement command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// `challenge` while the channel is not in its challenge window.
    #[error("the channel is {status:?} on chain, not closing: there is nothing to challenge")]
    ChannelNotClosing {
        /// The channel's phase on chain.
        status: ChannelStatus,
    },
    /// The JSON-RPC call or transaction failed; a revert carries the contract's error name.
    #[error("the settlement contract")]
    Evm(#[from] EvmError),
    /// A final state given for the cooperative close is not one.
    #[error("the given final state is unusable: {reason}")]
    FinalStateUnusable {
        /// Why (`not final`, `no host counter-signature`, `another channel`).
        reason: &'static str,
    },
    /// Reading or writing the state directory failed.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The channel record does not parse.
    #[error("the channel record {path} is malformed ({field})")]
    MalformedRecord {
        /// The file.
        path: PathBuf,
        /// The field (or `json`).
        field: &'static str,
    },
    /// The stored channel state or receipt does not decode.
    #[error("the stored {what} does not decode")]
    MalformedState {
        /// `state.pb` or `receipts.b64`.
        what: &'static str,
        /// The cause.
        #[source]
        source: dait_chain_client::DecodeError,
    },
    /// A cooperative close needs the id of the host key that counter-signed the final state, and no receipt
    /// names one.
    #[error(
        "no host key id: no receipt was recorded on this channel; give the key that counter-signed"
    )]
    NoHostKeyId,
    /// `challenge` without a tenant-signed state in the state directory.
    #[error("no signed channel state is stored for this channel")]
    NoLocalState,
    /// `challenge` when the chain already holds the local turn or a higher one.
    #[error(
        "the chain holds turn {chain_turn}, the local state turn {local_turn}: nothing higher to submit"
    )]
    NothingToChallenge {
        /// The channel's turn on chain.
        chain_turn: u64,
        /// The local state's turn.
        local_turn: u64,
    },
    /// The channel record names another deployment (chain id or contract) than the one connected to.
    #[error("the channel was opened on chain {recorded:?}, not on the connected {connected:?}")]
    WrongDeployment {
        /// The record's domain (chain id, settlement).
        recorded: (u64, Address),
        /// The connected one.
        connected: (u64, Address),
    },
}

/// Why [`check_host`] refuses a host.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// The verified bundle's keyset is bound to another chain or settlement contract.
    #[error("the keyset is bound to chain {keyset:?}, not the settlement {settlement:?}")]
    DomainMismatch {
        /// The keyset's (chain id, settlement).
        keyset: (u64, Address),
        /// The connected (chain id, settlement).
        settlement: (u64, Address),
    },
    /// The JSON-RPC call failed.
    #[error("the settlement contract")]
    Evm(#[from] EvmError),
    /// The operator is not registered (or withdrew its stake).
    #[error("host operator {operator} is not registered")]
    HostNotRegistered {
        /// The operator account.
        operator: Address,
    },
    /// The operator was slashed.
    #[error("host operator {operator} was slashed")]
    HostSlashed {
        /// The operator account.
        operator: Address,
    },
    /// The operator is unbonding.
    #[error("host operator {operator} is unbonding (stake withdrawable at {unbonding_at})")]
    HostUnbonding {
        /// The operator account.
        operator: Address,
        /// When its stake can be withdrawn.
        unbonding_at: u64,
    },
    /// The attestation of the current epoch names another keyset than the verified one.
    #[error(
        "the attestation for epoch {epoch} names keyset {attested}, not the verified {verified}"
    )]
    KeysetNotAttested {
        /// The current epoch.
        epoch: u64,
        /// The keyset hash on chain.
        attested: B256,
        /// The keyset hash of the verified bundle.
        verified: B256,
    },
    /// The operator submitted no attestation for the current epoch.
    #[error("host operator {operator} has no attestation for epoch {epoch}")]
    NotAttested {
        /// The operator account.
        operator: Address,
        /// The current epoch.
        epoch: u64,
    },
    /// The attestation's release was revoked.
    #[error("release {release} of the attestation is revoked")]
    ReleaseRevoked {
        /// The release id.
        release: B256,
    },
    /// The attestation's release is unknown, not yet effective or outside its validity window.
    #[error("release {release} of the attestation is not usable ({reason})")]
    ReleaseUnusable {
        /// The release id.
        release: B256,
        /// The contract's error name (`ReleaseUnknown`, `ReleaseNotYetEffective`, `ReleaseOutOfValidity`).
        reason: &'static str,
    },
}

/// The attestation a host passed [`check_host`] with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttestedHost {
    /// The host's operator account.
    pub operator: Address,
    /// The current epoch.
    pub epoch: u64,
    /// The attested keyset's hash (the verified one).
    pub keyset_hash: B256,
    /// The attested receipt key's id.
    pub host_key_id: B256,
    /// The evidence bundle's hash.
    pub bundle_hash: B256,
    /// The release the attestation names (usable now).
    pub release_id: B256,
}

/// Checks on chain that `operator` is a bonded host whose attestation for the current epoch names
/// `keyset_hash` (the keyset of the bundle the tenant verified) and a usable release.
pub async fn check_host(
    settlement: &Settlement,
    operator: Address,
    keyset_hash: B256,
) -> Result<AttestedHost, CheckError> {
    let host = settlement.host(operator).await?;
    match host.status {
        HostStatus::Active => {}
        HostStatus::Slashed => return Err(CheckError::HostSlashed { operator }),
        _ => return Err(CheckError::HostNotRegistered { operator }),
    }
    if host.unbonding_at != 0 {
        return Err(CheckError::HostUnbonding {
            operator,
            unbonding_at: host.unbonding_at,
        });
    }
    let epoch = settlement.current_epoch().await?;
    let attestation = settlement
        .instance()
        .attestations(operator.into(), epoch)
        .call()
        .await
        .map_err(EvmError::from)?;
    let attested = B256::from(attestation.keysetHash);
    if attested.is_zero() {
        return Err(CheckError::NotAttested { operator, epoch });
    }
    if attested != keyset_hash {
        return Err(CheckError::KeysetNotAttested {
            epoch,
            attested,
            verified: keyset_hash,
        });
    }
    let release = B256::from(attestation.releaseId);
    if let Err(error) = settlement.check_release(release).await {
        return Err(match error.revert_name() {
            Some("ReleaseRevoked") => CheckError::ReleaseRevoked { release },
            Some(reason) => CheckError::ReleaseUnusable { release, reason },
            None => CheckError::Evm(error),
        });
    }
    Ok(AttestedHost {
        operator,
        epoch,
        keyset_hash,
        host_key_id: attestation.hostKeyId.into(),
        bundle_hash: attestation.bundleHash.into(),
        release_id: release,
    })
}

/// [`check_host`] for a verified bundle: its keyset must be bound to this chain and contract, and its
/// `host_account` and keyset hash are what is checked.
pub async fn check_bundle(
    settlement: &Settlement,
    bundle: &VerifiedBundle,
) -> Result<AttestedHost, CheckError> {
    let keyset = bundle.domain();
    let connected = settlement.domain();
    if keyset != connected {
        return Err(CheckError::DomainMismatch {
            keyset: (keyset.chain_id, keyset.settlement),
            settlement: (connected.chain_id, connected.settlement),
        });
    }
    check_host(
        settlement,
        bundle.keyset().host_account,
        *bundle.keyset_hash(),
    )
    .await
}

/// A channel opened on chain, as kept in `channels/<channel id hex>/onchain.json`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelRecord {
    /// `channelId(tenant, host, salt)`.
    pub channel_id: B256,
    /// The EIP-712 domain: chain id and settlement contract.
    pub domain: Domain,
    /// The token escrowed.
    pub token: Address,
    /// The tenant (the wallet's address).
    pub tenant: Address,
    /// The host's operator account.
    pub host: Address,
    /// The salt the id derives from (needed by `startClose`, `claim`, `finalize`).
    pub salt: B256,
    /// Escrowed amount.
    pub escrow: u128,
    /// Most calls.
    pub max_calls: u32,
    /// Most a call may cost.
    pub max_per_call: u128,
    /// Deadline (unix seconds).
    pub deadline: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct RawRecord {
    channel_id: String,
    chain_id: u64,
    settlement: String,
    token: String,
    tenant: String,
    host: String,
    salt: String,
    escrow: String,
    max_calls: u32,
    max_per_call: String,
    deadline: u64,
}

impl ChannelRecord {
    /// The channel's directory under the state directory (shared with the session's `state.pb`).
    pub fn dir(state_dir: &Path, channel_id: &B256) -> PathBuf {
        state_dir
            .join("channels")
            .join(hex::encode(channel_id.as_bytes()))
    }

    fn path(state_dir: &Path, channel_id: &B256) -> PathBuf {
        Self::dir(state_dir, channel_id).join("onchain.json")
    }

    /// Loads the record of `channel_id`.
    pub fn load(state_dir: &Path, channel_id: &B256) -> Result<Self, ChainError> {
        let path = Self::path(state_dir, channel_id);
        let text = std::fs::read_to_string(&path).map_err(|source| ChainError::Io {
            path: path.clone(),
            source,
        })?;
        let malformed = |field| ChainError::MalformedRecord {
            path: path.clone(),
            field,
        };
        let raw: RawRecord = serde_json::from_str(&text).map_err(|_| malformed("json"))?;
        let record = Self {
            channel_id: B256::from_hex(&raw.channel_id).ok_or_else(|| malformed("channel_id"))?,
            domain: Domain {
                chain_id: raw.chain_id,
                settlement: Address::from_hex(&raw.settlement)
                    .ok_or_else(|| malformed("settlement"))?,
            },
            token: Address::from_hex(&raw.token).ok_or_else(|| malformed("token"))?,
            tenant: Address::from_hex(&raw.tenant).ok_or_else(|| malformed("tenant"))?,
            host: Address::from_hex(&raw.host).ok_or_else(|| malformed("host"))?,
            salt: B256::from_hex(&raw.salt).ok_or_else(|| malformed("salt"))?,
            escrow: raw.escrow.parse().map_err(|_| malformed("escrow"))?,
            max_calls: raw.max_calls,
            max_per_call: raw
                .max_per_call
                .parse()
                .map_err(|_| malformed("max_per_call"))?,
            deadline: raw.deadline,
        };
        if record.channel_id != *channel_id {
            return Err(malformed("channel_id"));
        }
        Ok(record)
    }

    fn save(&self, state_dir: &Path) -> Result<(), ChainError> {
        let path = Self::path(state_dir, &self.channel_id);
        let raw = RawRecord {
            channel_id: self.channel_id.to_string(),
            chain_id: self.domain.chain_id,
            settlement: self.domain.settlement.to_string(),
            token: self.token.to_string(),
            tenant: self.tenant.to_string(),
            host: self.host.to_string(),
            salt: self.salt.to_string(),
            escrow: self.escrow.to_string(),
            max_calls: self.max_calls,
            max_per_call: self.max_per_call.to_string(),
            deadline: self.deadline,
        };
        let io = |source| ChainError::Io {
            path: path.clone(),
            source,
        };
        let json = serde_json::to_vec_pretty(&raw).map_err(|e| io(std::io::Error::other(e)))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        crate::store::write_atomic(&path, &json).map_err(io)
    }

    /// The latest signed state the session stored for this channel (`state.pb`), if any.
    pub fn local_state(&self, state_dir: &Path) -> Result<Option<SignedChannelState>, ChainError> {
        let path = Self::dir(state_dir, &self.channel_id).join("state.pb");
        match std::fs::read(&path) {
            Ok(bytes) => SignedChannelState::decode(&bytes)
                .map(Some)
                .map_err(|source| ChainError::MalformedState {
                    what: "state.pb",
                    source,
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ChainError::Io { path, source }),
        }
    }

    /// The host key id of the last receipt recorded on this channel (`receipts.b64`), if any.
    pub fn last_host_key_id(&self, state_dir: &Path) -> Result<Option<B256>, ChainError> {
        let path = Self::dir(state_dir, &self.channel_id).join("receipts.b64");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ChainError::Io { path, source }),
        };
        let Some(line) = text.lines().rev().find(|l| !l.trim().is_empty()) else {
            return Ok(None);
        };
        let receipt = SignedReceipt::from_header_value(line.trim()).map_err(|source| {
            ChainError::MalformedState {
                what: "receipts.b64",
                source,
            }
        })?;
        Ok(Some(receipt.receipt.host_key_id))
    }
}

/// The state that closes `record`'s channel cooperatively: the local latest signed state (the open state when
/// there is none) with `is_final` set, signed by the tenant. The host counter-signs it (PROTOCOL.md §4) for
/// [`Chain::close`], or its operator sends `closeChannel` with it, which needs no counter-signature.
pub fn final_state(
    record: &ChannelRecord,
    state_dir: &Path,
    wallet: &Wallet,
) -> Result<SignedChannelState, ChainError> {
    let mut state = match record.local_state(state_dir)? {
        Some(signed) => signed.state,
        None => ChannelState::open(record.channel_id, record.escrow, record.tenant, record.host),
    };
    state.is_final = true;
    Ok(SignedChannelState {
        tenant_signature: wallet.signer().sign_state(&state, &record.domain),
        state,
        host_signature: None,
    })
}

/// A transaction a command sent.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Tx {
    /// The function (`approve`, `openChannel`, …).
    pub name: &'static str,
    /// The transaction's hash.
    pub hash: B256,
}

/// A token balance before and after a command.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Balance {
    /// Whose (`tenant`, `host`, `settlement`).
    pub who: &'static str,
    /// The account.
    pub account: Address,
    /// Before, in the token's smallest unit.
    pub before: u128,
    /// After.
    pub after: u128,
}

/// What a command sent and changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// The transactions, in order.
    pub txs: Vec<Tx>,
    /// The token balances of the parties and the contract.
    pub balances: Vec<Balance>,
}

/// What [`Chain::close`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseKind {
    /// `closeChannel` with the final state counter-signed by the host: settled at once.
    Cooperative,
    /// `startClose`: the challenge window ends at `window_end` (unix seconds); then `withdraw`.
    Unilateral {
        /// The end of the challenge window.
        window_end: u64,
    },
}

/// The channel on chain next to the local state.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ChannelView {
    /// As the contract stores it.
    pub onchain: ChannelInfo,
    /// The latest state the tenant signed (`state.pb`), if any.
    pub local: Option<SignedChannelState>,
}

/// A connection to the settlement contract that sends from the tenant's wallet.
#[derive(Clone, Debug)]
pub struct Chain {
    settlement: Settlement,
    token: Token,
    tenant: Address,
}

/// Where the JSON-RPC node is.
#[derive(Clone, Debug)]
pub struct Rpc<'a> {
    /// `http://…` or `https://…`.
    pub url: &'a str,
    /// The CA file trusted for an `https://` URL (PEM); an `https://` URL needs one.
    pub ca_file: Option<&'a Path>,
}

fn u128_of(value: impl std::fmt::Display) -> u128 {
    // A token balance above u128 (the contract escrows uint128) is shown as the maximum.
    value.to_string().parse().unwrap_or(u128::MAX)
}

impl Chain {
    /// Connects to the settlement at `settlement`, sending from `wallet`; the token is the contract's own
    /// (`token()`) unless `token` is given.
    pub async fn connect(
        rpc: &Rpc<'_>,
        settlement: Address,
        token: Option<Address>,
        wallet: &Wallet,
    ) -> Result<Self, ChainError> {
        let secret = Some(wallet.secret());
        let provider = match rpc.ca_file {
            Some(ca) => evm::connect_https(rpc.url, ca, secret)?,
            None => evm::connect_http(rpc.url, secret)?,
        };
        let settlement = Settlement::at(settlement, provider.clone()).await?;
        let token = match token {
            Some(token) => token,
            None => Address::from(
                settlement
                    .instance()
                    .token()
                    .call()
                    .await
                    .map_err(EvmError::from)?,
            ),
        };
        Ok(Self {
            settlement,
            token: Token::at(token, provider),
            tenant: wallet.address(),
        })
    }

    /// The settlement client.
    pub fn settlement(&self) -> &Settlement {
        &self.settlement
    }

    /// The token.
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// The tenant's account.
    pub fn tenant(&self) -> Address {
        self.tenant
    }

    async fn balances(&self, who: &[(&'static str, Address)]) -> Result<Vec<Balance>, ChainError> {
        let mut out = Vec::with_capacity(who.len());
        for (name, account) in who {
            let now = u128_of(self.token.balance_of(*account).await?);
            out.push(Balance {
                who: name,
                account: *account,
                before: now,
                after: now,
            });
        }
        Ok(out)
    }

    async fn update(&self, balances: &mut [Balance]) -> Result<(), ChainError> {
        for b in balances {
            b.after = u128_of(self.token.balance_of(b.account).await?);
        }
        Ok(())
    }

    fn parties(&self, record: &ChannelRecord) -> [(&'static str, Address); 3] {
        [
            ("tenant", record.tenant),
            ("host", record.host),
            ("settlement", self.settlement.address()),
        ]
    }

    fn same_deployment(&self, record: &ChannelRecord) -> Result<(), ChainError> {
        let connected = self.settlement.domain();
        if record.domain != connected {
            return Err(ChainError::WrongDeployment {
                recorded: (record.domain.chain_id, record.domain.settlement),
                connected: (connected.chain_id, connected.settlement),
            });
        }
        Ok(())
    }

    /// `approve(escrow)` and `openChannel` to `host` with a random salt; records the channel under
    /// `state_dir`.
    pub async fn open(
        &self,
        state_dir: &Path,
        host: Address,
        escrow: u128,
        max_calls: u32,
        max_per_call: u128,
        deadline: u64,
    ) -> Result<(ChannelRecord, Report), ChainError> {
        let mut salt = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let salt = B256(salt);
        let mut balances = self
            .balances(&[
                ("tenant", self.tenant),
                ("settlement", self.settlement.address()),
            ])
            .await?;
        let approve = self
            .token
            .approve(self.settlement.address(), Some(escrow))
            .await?;
        let (channel_id, opened) = self
            .settlement
            .open_channel(host, salt, escrow, max_calls, max_per_call, deadline)
            .await?;
        let record = ChannelRecord {
            channel_id,
            domain: self.settlement.domain(),
            token: self.token.address(),
            tenant: self.tenant,
            host,
            salt,
            escrow,
            max_calls,
            max_per_call,
            deadline,
        };
        record.save(state_dir)?;
        self.update(&mut balances).await?;
        let txs = vec![
            Tx {
                name: "approve",
                hash: approve.tx_hash,
            },
            Tx {
                name: "openChannel",
                hash: opened.tx_hash,
            },
        ];
        Ok((record, Report { txs, balances }))
    }

    /// The channel on chain and the local latest signed state.
    pub async fn status(
        &self,
        record: &ChannelRecord,
        state_dir: &Path,
    ) -> Result<ChannelView, ChainError> {
        self.same_deployment(record)?;
        Ok(ChannelView {
            onchain: self.settlement.channel(record.channel_id).await?,
            local: record.local_state(state_dir)?,
        })
    }

    /// Closes the channel: cooperatively (`closeChannel`) when the local state is final and counter-signed
    /// by the host, by the key `host_key_id` (default: the key of the last recorded receipt); otherwise
    /// `startClose`.
    ///
    /// `final_state`, when given, is used instead of the local state: it must be final, counter-signed by
    /// the host and for this channel (e.g. [`final_state`]'s output after the host counter-signed it).
    pub async fn close(
        &self,
        record: &ChannelRecord,
        state_dir: &Path,
        host_key_id: Option<B256>,
        final_state: Option<SignedChannelState>,
    ) -> Result<(CloseKind, Report), ChainError> {
        self.same_deployment(record)?;
        let local = match final_state {
            None => record.local_state(state_dir)?,
            Some(given) => {
                let reason = if given.state.channel_id != record.channel_id {
                    Some("another channel")
                } else if !given.state.is_final {
                    Some("not final")
                } else if given.host_signature.is_none() {
                    Some("no host counter-signature")
                } else {
                    None
                };
                if let Some(reason) = reason {
                    return Err(ChainError::FinalStateUnusable { reason });
                }
                Some(given)
            }
        };
        let mut balances = self.balances(&self.parties(record)).await?;
        let (kind, tx) = match local {
            Some(SignedChannelState {
                state,
                tenant_signature,
                host_signature: Some(host_signature),
            }) if state.is_final => {
                let key = match host_key_id {
                    Some(key) => key,
                    None => record
                        .last_host_key_id(state_dir)?
                        .ok_or(ChainError::NoHostKeyId)?,
                };
                let outcome = self
                    .settlement
                    .close_channel(
                        record.salt,
                        &OnchainChannelState::from(&state),
                        &tenant_signature,
                        key,
                        Some(&host_signature),
                    )
                    .await?;
                (
                    CloseKind::Cooperative,
                    Tx {
                        name: "closeChannel",
                        hash: outcome.tx_hash,
                    },
                )
            }
            _ => {
                let outcome = self
                    .settlement
                    .start_close(record.tenant, record.host, record.salt)
                    .await?;
                let window_end = self.settlement.channel(record.channel_id).await?.time;
                (
                    CloseKind::Unilateral { window_end },
                    Tx {
                        name: "startClose",
                        hash: outcome.tx_hash,
                    },
                )
            }
        };
        self.update(&mut balances).await?;
        Ok((
            kind,
            Report {
                txs: vec![tx],
                balances,
            },
        ))
    }

    /// During a unilateral close, submits the local tenant-signed state (`claim`) when its turn is above the
    /// chain's.
    pub async fn challenge(
        &self,
        record: &ChannelRecord,
        state_dir: &Path,
    ) -> Result<Report, ChainError> {
        self.same_deployment(record)?;
        let local = record
            .local_state(state_dir)?
            .ok_or(ChainError::NoLocalState)?;
        let onchain = self.settlement.channel(record.channel_id).await?;
        if onchain.status != ChannelStatus::Closing {
            return Err(ChainError::ChannelNotClosing {
                status: onchain.status,
            });
        }
        if local.state.turn <= onchain.turn {
            return Err(ChainError::NothingToChallenge {
                chain_turn: onchain.turn,
                local_turn: local.state.turn,
            });
        }
        let mut balances = self.balances(&self.parties(record)).await?;
        let outcome = self
            .settlement
            .claim(
                record.salt,
                &OnchainChannelState::from(&local.state),
                &local.tenant_signature,
            )
            .await?;
        self.update(&mut balances).await?;
        Ok(Report {
            txs: vec![Tx {
                name: "claim",
                hash: outcome.tx_hash,
            }],
            balances,
        })
    }

    /// `finalize` after the challenge window: the tenant gets back what was not paid to the host.
    pub async fn withdraw(&self, record: &ChannelRecord) -> Result<Report, ChainError> {
        self.same_deployment(record)?;
        let mut balances = self.balances(&self.parties(record)).await?;
        let outcome = self
            .settlement
            .finalize(record.tenant, record.host, record.salt)
            .await?;
        self.update(&mut balances).await?;
        Ok(Report {
            txs: vec![Tx {
                name: "finalize",
                hash: outcome.tx_hash,
            }],
            balances,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn record() -> ChannelRecord {
        ChannelRecord {
            channel_id: B256([1; 32]),
            domain: Domain {
                chain_id: 31337,
                settlement: Address([2; 20]),
            },
            token: Address([3; 20]),
            tenant: Address([4; 20]),
            host: Address([5; 20]),
            salt: B256([6; 32]),
            escrow: u128::MAX,
            max_calls: 7,
            max_per_call: 8,
            deadline: 9,
        }
    }

    #[test]
    fn a_record_loads_back_and_a_damaged_one_names_its_field() {
        let dir = std::env::temp_dir().join(format!("dait-chain-record-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let r = record();
        r.save(&dir).unwrap();
        assert_eq!(ChannelRecord::load(&dir, &r.channel_id).unwrap(), r);
        assert!(r.local_state(&dir).unwrap().is_none());
        assert!(r.last_host_key_id(&dir).unwrap().is_none());

        let path = ChannelRecord::path(&dir, &r.channel_id);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace(&r.salt.to_string(), "0x12")).unwrap();
        assert!(matches!(
            ChannelRecord::load(&dir, &r.channel_id),
            Err(ChainError::MalformedRecord { field: "salt", .. })
        ));
        // A record filed under another id.
        let other = B256([9; 32]);
        std::fs::create_dir_all(ChannelRecord::dir(&dir, &other)).unwrap();
        std::fs::write(ChannelRecord::path(&dir, &other), text).unwrap();
        assert!(matches!(
            ChannelRecord::load(&dir, &other),
            Err(ChainError::MalformedRecord {
                field: "channel_id",
                ..
            })
        ));
        assert!(matches!(
            ChannelRecord::load(&dir, &B256([0xee; 32])),
            Err(ChainError::Io { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
