//! The typed client of dait's EVM settlement contract (`contracts/DaitSettlement.sol`), over JSON-RPC with
//! `alloy` (feature `evm`, std only).
//!
//! # What it does
//!
//! - [`Settlement`]: one method per contract function, taking the core's types ([`Receipt`](crate::Receipt),
//!   [`SignedReceipt`], [`Keyset`](crate::Keyset) bytes, [`TenantSignature`], [`HostSignature`], [`Address`],
//!   [`B256`]) and returning [`EvmError`]. A transaction returns an [`Outcome`] with the contract's events
//!   decoded; a revert comes back as [`EvmError::Reverted`] with the contract's custom error
//!   ([`Revert::name`] gives `"StaleState"`, `"NotOwner"`, …). Transactions are simulated (`eth_call`) first,
//!   so a revert is reported before anything is sent, and their receipt is awaited at most
//!   [`RECEIPT_TIMEOUT`] (adjustable).
//! - Views of the contract's state ([`Settlement::channel`], [`Settlement::host`], [`Settlement::batch`], …)
//!   and its digests ([`Settlement::domain_separator`], [`Settlement::receipt_digest`],
//!   [`Settlement::channel_state_digest`], [`Settlement::channel_id`], [`Settlement::verify_host_signature`]),
//!   for comparing the chain's view with the core's.
//! - Logs: [`Settlement::events`] over a block range and [`EventCursor`], which returns the events since its
//!   last poll (the caller picks the cadence; HTTP only, no subscriptions).
//! - [`Token`]: the ERC-20 the settlement is denominated in (`approve`, `balanceOf`, `allowance`), and the
//!   committed test token's `mint` and deployment for tests and the demo.
//! - [`bindings`]: the `sol!` bindings generated from the committed artefacts `contracts/out/*.json` (ABI and
//!   creation bytecode: [`Settlement::deploy`] deploys exactly those bytes); [`convert`]: the conversions from the
//!   core's types to the contract's structs.
//! - [`anvil`]: a local chain for tests, the pinned anvil started on a free port and killed on drop.
//!
//! # Channel states
//!
//! The contract follows protocol version 2 (PROTOCOL.md §4): a channel names the host's operator account, and
//! `ChannelState` has `host` and `isFinal`. The core's [`crate::ChannelState`] converts into the contract's
//! (`From`), and the tenant's signature over [`crate::ChannelState::signing_digest`] is what the contract checks.
//!
//! # Transport
//!
//! [`connect_http`] speaks plain HTTP (a local node); [`connect_https`] speaks HTTPS with rustls (ring) and the
//! roots of a CA file, as the agent's collateral fetcher does. Any other `alloy` provider works too:
//! [`Settlement`] and [`Token`] are generic over [`Provider`].
//!
//! # Tests
//!
//! `tests/evm.rs` (`cargo test -p dait-chain-client --features evm --test evm`, after
//! `scripts/install-chain-tools.sh`) deploys the committed artefacts on a local anvil and checks the contract's
//! `domainSeparator`, `receiptDigest` and `channelId` against the core and `tests/vectors`, a channel end to end
//! through this client, receipt batches, slashing, that host signatures fail closed on a chain without
//! P256VERIFY, and HTTPS through a TLS proxy. `tests/evm_batches.rs` (`--test evm_batches`) takes receipt
//! batches of 1 to 10,000 receipts through this client with the core's [`crate::batch`] tree, proofs and sample
//! rule, checks each rejection's contract error, and prints the gas (`-- --nocapture`). `just test` runs them
//! with the workspace's all-features tests.
//!
//! # Example
//!
//! ```no_run
//! use dait_chain_client::{Address, B256, evm::{Settlement, connect_http}};
//!
//! # async fn run() -> Result<(), dait_chain_client::evm::EvmError> {
//! let provider = connect_http("http://127.0.0.1:8545", Some(&[0x22; 32]))?;
//! let settlement = Settlement::at(Address([0x5e; 20]), provider).await?;
//! let (channel_id, outcome) = settlement
//!     .open_channel(Address([0xf3; 20]), B256([1; 32]), 1_000_000, 100, 10_000, 2_000_000_000)
//!     .await?;
//! println!("channel {channel_id} opened in block {}", outcome.block_number);
//! # Ok(()) }
//! ```
//!
//! # Security
//!
//! - The client trusts its RPC node for reads: views and logs are what the node says. Settlement decisions that
//!   matter (a channel's paid amount before serving on credit, an epoch nonce) should come from a node the
//!   caller trusts, or be checked against several.
//! - The account secret given to [`connect_http`] or [`connect_https`] signs every transaction; it is held by
//!   `alloy`'s local signer (a `k256` key, zeroized on drop).
//! - [`connect_https`] trusts only the roots in the CA file it is given, never the platform's.

use alloy::contract::SolCallBuilder;
use alloy::network::EthereumWallet;
use alloy::primitives::{self, Bytes, FixedBytes, Uint};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::client::RpcClient;
use alloy::rpc::types::{Filter, Log, TransactionReceipt};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolEventInterface};
use alloy::transports::http::Http;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::{
    Address, B256, Domain, HostSignature, HostVerifyingKey, SignedReceipt, TenantSignature,
};

pub mod anvil;
pub mod bindings;
pub mod convert;
mod error;
mod token;

use bindings::DaitSettlement::{self, DaitSettlementInstance};
pub use error::{EvmError, Revert};
pub use token::Token;

/// Every event of the settlement contract, decoded.
pub type SettlementEvent = DaitSettlement::DaitSettlementEvents;
/// The settlement contract's version 2 channel state (`From<&`[`crate::ChannelState`]`>`).
pub type OnchainChannelState = DaitSettlement::ChannelState;

/// A provider over plain HTTP to `rpc_url` (`http://` only), signing with `secret` (a secp256k1 account key)
/// when given.
///
/// Transactions get their gas limit and EIP-1559 fees estimated, the chain id fetched once, and the nonce read
/// from the node (`pending`) for every transaction rather than cached, so several clients (or a restarted
/// agent) can send from one account one after the other.
pub fn connect_http(rpc_url: &str, secret: Option<&[u8; 32]>) -> Result<DynProvider, EvmError> {
    let url = rpc_url.parse::<reqwest::Url>().map_err(|_| EvmError::Url)?;
    if url.scheme() != "http" {
        return Err(EvmError::Url);
    }
    // No roots: the client can reach no https URL (and a redirect to one fails).
    connect(url, rustls::RootCertStore::empty(), false, secret)
}

/// A provider over HTTPS to `rpc_url` (`https://` only), trusting the certificate authorities in `ca_file`
/// (PEM; e.g. `/etc/ssl/certs/ca-certificates.crt`), signing with `secret` when given; otherwise as
/// [`connect_http`].
///
/// TLS is rustls with the ring provider (TLS 1.2 and 1.3, its safe defaults), the roots taken only from
/// `ca_file`, never from the platform.
pub fn connect_https(
    rpc_url: &str,
    ca_file: &Path,
    secret: Option<&[u8; 32]>,
) -> Result<DynProvider, EvmError> {
    let url = rpc_url.parse::<reqwest::Url>().map_err(|_| EvmError::Url)?;
    if url.scheme() != "https" {
        return Err(EvmError::Url);
    }
    let mut roots = rustls::RootCertStore::empty();
    let pem_err = |source| EvmError::Roots {
        path: ca_file.to_owned(),
        source,
    };
    for cert in CertificateDer::pem_file_iter(ca_file).map_err(pem_err)? {
        // A bundle may hold certificates rustls cannot use as anchors; those are skipped.
        let _ = roots.add(cert.map_err(pem_err)?);
    }
    if roots.is_empty() {
        return Err(EvmError::NoRoots {
            path: ca_file.to_owned(),
        });
    }
    connect(url, roots, true, secret)
}

/// The provider of [`connect_http`] and [`connect_https`]. The reqwest client always gets its rustls
/// configuration (ring, `roots`) here: with the `evm` feature reqwest is built with rustls but no process-wide
/// crypto provider, so a reqwest client built elsewhere without one panics.
fn connect(
    url: reqwest::Url,
    roots: rustls::RootCertStore,
    https_only: bool,
    secret: Option<&[u8; 32]>,
) -> Result<DynProvider, EvmError> {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(EvmError::Tls)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .https_only(https_only)
        .build()
        .map_err(EvmError::HttpClient)?;
    let is_local = url
        .host_str()
        .is_some_and(|h| h == "127.0.0.1" || h == "localhost" || h == "[::1]");
    let rpc = RpcClient::new(Http::with_client(client, url), is_local);
    let builder = ProviderBuilder::new()
        .disable_recommended_fillers()
        .with_gas_estimation()
        .with_simple_nonce_management()
        .fetch_chain_id();
    Ok(match secret {
        Some(secret) => {
            let signer = PrivateKeySigner::from_bytes(&primitives::B256::from(*secret))
                .map_err(|_| EvmError::Key)?;
            builder
                .wallet(EthereumWallet::from(signer))
                .connect_client(rpc)
                .erased()
        }
        None => builder.connect_client(rpc).erased(),
    })
}

/// The account address of a secp256k1 secret (the `from` of its transactions).
pub fn account_address(secret: &[u8; 32]) -> Result<Address, EvmError> {
    let signer = PrivateKeySigner::from_bytes(&primitives::B256::from(*secret))
        .map_err(|_| EvmError::Key)?;
    Ok(signer.address().into())
}

/// The deployment parameters (`DaitSettlement.Params`), fixed for the contract's lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// The ERC-20 that stakes, escrows and payments are denominated in.
    pub token: Address,
    /// The release registry's owner.
    pub owner: Address,
    /// Stake locked per registered GPU.
    pub stake_per_gpu: u128,
    /// Seconds between `beginUnbonding` and `withdrawStake`.
    pub unbonding_delay: u64,
    /// Seconds of a channel's challenge window.
    pub challenge_window: u64,
    /// Seconds before a published release is usable.
    pub release_delay: u64,
    /// Blocks per epoch.
    pub epoch_nonce_rotation_blocks: u64,
    /// Blocks between a batch commit and the block whose hash picks the sample.
    pub commit_reveal_window: u64,
    /// Blocks during which the sample can be revealed (at most 256).
    pub reveal_window: u64,
    /// Leaves revealed per batch, 1 to 64.
    pub sample_size: u32,
}

impl From<&Params> for DaitSettlement::Params {
    fn from(p: &Params) -> Self {
        Self {
            token: p.token.into(),
            owner: p.owner.into(),
            stakePerGpu: p.stake_per_gpu,
            unbondingDelay: p.unbonding_delay,
            challengeWindow: p.challenge_window,
            releaseDelay: p.release_delay,
            epochNonceRotationBlocks: p.epoch_nonce_rotation_blocks,
            commitRevealWindow: p.commit_reveal_window,
            revealWindow: p.reveal_window,
            sampleSize: p.sample_size,
        }
    }
}

/// What a mined, successful transaction did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Outcome {
    /// The transaction's hash.
    pub tx_hash: B256,
    /// The block it was mined in.
    pub block_number: u64,
    /// Gas used.
    pub gas_used: u64,
    /// The settlement contract's events, in log order.
    pub events: Vec<SettlementEvent>,
}

/// A settlement event with where it was logged.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LoggedEvent {
    /// The block.
    pub block_number: u64,
    /// The transaction.
    pub tx_hash: B256,
    /// The log's index in the block.
    pub log_index: u64,
    /// The event.
    pub event: SettlementEvent,
}

/// A channel's lifecycle (`DaitSettlement.ChannelStatus`, in the contract's order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChannelStatus {
    /// Never opened.
    None,
    /// Open.
    Open,
    /// In its challenge window.
    Closing,
    /// Settled; the id is never used again.
    Closed,
}

impl ChannelStatus {
    fn from_word(v: u8) -> Result<Self, EvmError> {
        Ok(match v {
            0 => Self::None,
            1 => Self::Open,
            2 => Self::Closing,
            3 => Self::Closed,
            _ => {
                return Err(EvmError::OutOfRange {
                    field: "channel status",
                    ty: "ChannelStatus",
                });
            }
        })
    }
}

/// A host operator's standing (`DaitSettlement.HostStatus`, in the contract's order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostStatus {
    /// Never registered (or withdrawn).
    None,
    /// Registered and bonded (possibly unbonding).
    Active,
    /// Slashed for equivocation; the stake is gone.
    Slashed,
}

impl HostStatus {
    fn from_word(v: u8) -> Result<Self, EvmError> {
        Ok(match v {
            0 => Self::None,
            1 => Self::Active,
            2 => Self::Slashed,
            _ => {
                return Err(EvmError::OutOfRange {
                    field: "host status",
                    ty: "HostStatus",
                });
            }
        })
    }
}

/// A receipt batch's phase (`DaitSettlement.BatchStatus`, in the contract's order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchStatus {
    /// Never committed.
    None,
    /// Committed, not yet revealed.
    Committed,
    /// Its sample was revealed and checked; the host was credited.
    Revealed,
    /// Not revealed in time; it earns nothing.
    Forfeited,
}

impl BatchStatus {
    fn from_word(v: u8) -> Result<Self, EvmError> {
        Ok(match v {
            0 => Self::None,
            1 => Self::Committed,
            2 => Self::Revealed,
            3 => Self::Forfeited,
            _ => {
                return Err(EvmError::OutOfRange {
                    field: "batch status",
                    ty: "BatchStatus",
                });
            }
        })
    }
}

/// A channel as the contract stores it (`channels(id)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelInfo {
    /// Escrowed amount.
    pub escrow: u128,
    /// Most a single call may cost.
    pub max_per_call: u128,
    /// Most calls.
    pub max_calls: u32,
    /// Paid to the host so far.
    pub paid: u128,
    /// The highest claimed turn.
    pub turn: u64,
    /// The deadline while open; the end of the challenge window while closing.
    pub time: u64,
    /// The phase.
    pub status: ChannelStatus,
}

/// A host operator's registration (`hosts(operator)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostInfo {
    /// Locked stake.
    pub stake: u128,
    /// Registered GPUs.
    pub gpu_count: u32,
    /// When the stake can be withdrawn (0 while bonded).
    pub unbonding_at: u64,
    /// The standing.
    pub status: HostStatus,
}

/// A receipt batch (`batch(host, root)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchInfo {
    /// Receipts in the batch.
    pub count: u32,
    /// Their total amount.
    pub total: u128,
    /// The commit's block.
    pub commit_block: u64,
    /// The phase.
    pub status: BatchStatus,
}

/// An epoch's nonce (`epochNonce(epoch)`): the value recorded, or the one the next recording would fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EpochNonce {
    /// The nonce.
    pub nonce: B256,
    /// Whether it is fixed on chain.
    pub recorded: bool,
}

/// One revealed leaf of a receipt batch: the host-signed receipt and its Merkle sum proof (sibling hash and
/// sibling sum per level, leaf to root, as words).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reveal {
    /// The receipt with the host's signature over its digest.
    pub receipt: SignedReceipt,
    /// `2 × depth` words.
    pub proof: Vec<B256>,
}

/// How long a sent transaction may take to be mined before [`EvmError::Pending`] (by default; see
/// [`Settlement::with_receipt_timeout`]).
pub const RECEIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// The typed client of one deployed settlement contract.
#[derive(Clone, Debug)]
pub struct Settlement<P = DynProvider> {
    contract: DaitSettlementInstance<P>,
    domain: Domain,
    receipt_timeout: Duration,
}

impl<P: Provider> Settlement<P> {
    /// The contract at `address`; reads the chain id for the EIP-712 domain, and fails with
    /// [`EvmError::NoContract`] when the address holds no code.
    pub async fn at(address: Address, provider: P) -> Result<Self, EvmError> {
        let chain_id = provider.get_chain_id().await?;
        if provider.get_code_at(address.into()).await?.is_empty() {
            return Err(EvmError::NoContract { address });
        }
        Ok(Self {
            contract: DaitSettlement::new(address.into(), provider),
            domain: Domain {
                chain_id,
                settlement: address,
            },
            receipt_timeout: RECEIPT_TIMEOUT,
        })
    }

    /// The same client with another limit on the wait for a transaction's receipt.
    #[must_use]
    pub fn with_receipt_timeout(mut self, timeout: Duration) -> Self {
        self.receipt_timeout = timeout;
        self
    }

    /// Deploys the committed artefact (`contracts/out/DaitSettlement.json`) with `params`, from the provider's
    /// signer. The address is the sender's `CREATE` address at its current nonce.
    pub async fn deploy(provider: P, params: &Params) -> Result<Self, EvmError> {
        let chain_id = provider.get_chain_id().await?;
        let contract = DaitSettlement::deploy(provider, params.into()).await?;
        let settlement = Address::from(*contract.address());
        Ok(Self {
            contract,
            domain: Domain {
                chain_id,
                settlement,
            },
            receipt_timeout: RECEIPT_TIMEOUT,
        })
    }

    /// The contract's address.
    pub fn address(&self) -> Address {
        Address::from(*self.contract.address())
    }

    /// The EIP-712 domain of this deployment (chain id, contract address).
    pub fn domain(&self) -> Domain {
        self.domain
    }

    /// The provider.
    pub fn provider(&self) -> &P {
        self.contract.provider()
    }

    /// The generated instance, for anything this client does not wrap.
    pub fn instance(&self) -> &DaitSettlementInstance<P> {
        &self.contract
    }

    /// Simulates the call (`eth_call`, which returns the revert data of a custom error), then sends it and waits
    /// for its receipt, at most the receipt timeout. (The gas estimate alone does not do: with fee fields set,
    /// anvil answers a reverting estimate with "insufficient funds" and no revert data.)
    async fn send<C: SolCall>(&self, call: SolCallBuilder<&P, C>) -> Result<Outcome, EvmError> {
        call.call_raw().await?;
        let pending = call.send().await?.with_timeout(Some(self.receipt_timeout));
        let receipt = pending.get_receipt().await?;
        self.outcome(&receipt)
    }

    fn outcome(&self, receipt: &TransactionReceipt) -> Result<Outcome, EvmError> {
        let tx_hash = B256::from(receipt.transaction_hash);
        let block_number = receipt.block_number.unwrap_or_default();
        if !receipt.status() {
            return Err(EvmError::TransactionFailed {
                tx_hash,
                block_number,
            });
        }
        let events = receipt
            .inner
            .logs()
            .iter()
            .filter(|log| log.address() == *self.contract.address())
            .map(|log| self.decode(log).map(|e| e.event))
            .collect::<Result<_, _>>()?;
        Ok(Outcome {
            tx_hash,
            block_number,
            gas_used: receipt.gas_used,
            events,
        })
    }

    fn decode(&self, log: &Log) -> Result<LoggedEvent, EvmError> {
        let event = SettlementEvent::decode_log(&log.inner).map_err(EvmError::UndecodableLog)?;
        Ok(LoggedEvent {
            block_number: log.block_number.unwrap_or_default(),
            tx_hash: log.transaction_hash.unwrap_or_default().into(),
            log_index: log.log_index.unwrap_or_default(),
            event: event.data,
        })
    }

    // ---- hosts ----------------------------------------------------------------------------------------------

    /// `registerHost`: locks `stakePerGpu × n` from the sender (approve the token first).
    pub async fn register_host(&self, gpu_id_hashes: &[B256]) -> Result<Outcome, EvmError> {
        self.send(self.contract.registerHost(words(gpu_id_hashes)))
            .await
    }

    /// `beginUnbonding`: no new channels or attestations from now on.
    pub async fn begin_unbonding(&self) -> Result<Outcome, EvmError> {
        self.send(self.contract.beginUnbonding()).await
    }

    /// `withdrawStake`: after the unbonding delay, returns the stake and frees the GPU ids.
    pub async fn withdraw_stake(&self, gpu_id_hashes: &[B256]) -> Result<Outcome, EvmError> {
        self.send(self.contract.withdrawStake(words(gpu_id_hashes)))
            .await
    }

    /// `slashEquivocation`: two different receipts by one attested key for the same channel and call.
    pub async fn slash_equivocation(
        &self,
        a: &SignedReceipt,
        b: &SignedReceipt,
    ) -> Result<Outcome, EvmError> {
        let (ra, sa) = convert::host_signature_words(&a.host_signature);
        let (rb, sb) = convert::host_signature_words(&b.host_signature);
        self.send(self.contract.slashEquivocation(
            (&a.receipt).into(),
            ra,
            sa,
            (&b.receipt).into(),
            rb,
            sb,
        ))
        .await
    }

    /// `hosts(operator)`.
    pub async fn host(&self, operator: Address) -> Result<HostInfo, EvmError> {
        let h = self.contract.hosts(operator.into()).call().await?;
        Ok(HostInfo {
            stake: h.stake,
            gpu_count: h.gpuCount,
            unbonding_at: h.unbondingAt.to(),
            status: HostStatus::from_word(h.status)?,
        })
    }

    /// `hostKeys(hostKeyId)`: the operator that attested the key (zero if none) and the key's last epoch.
    pub async fn host_key(&self, host_key_id: B256) -> Result<(Address, u64), EvmError> {
        let k = self.contract.hostKeys(host_key_id.into()).call().await?;
        Ok((k.operator.into(), k.lastEpoch))
    }

    // ---- releases ---------------------------------------------------------------------------------------------

    /// `publishRelease` (owner): usable from `now + releaseDelay`, within `[not_before, not_after]`.
    pub async fn publish_release(
        &self,
        release_id: B256,
        reference_hash: B256,
        not_before: u64,
        not_after: u64,
    ) -> Result<Outcome, EvmError> {
        self.send(self.contract.publishRelease(
            release_id.into(),
            reference_hash.into(),
            not_before,
            not_after,
        ))
        .await
    }

    /// `revokeRelease` (owner): at once.
    pub async fn revoke_release(&self, release_id: B256) -> Result<Outcome, EvmError> {
        self.send(self.contract.revokeRelease(release_id.into()))
            .await
    }

    /// `checkRelease`: `Ok` when the release is usable now, else its revert (`ReleaseUnknown`, …).
    pub async fn check_release(&self, release_id: B256) -> Result<(), EvmError> {
        self.contract.checkRelease(release_id.into()).call().await?;
        Ok(())
    }

    /// `transferOwnership` (owner): the first step of the handover.
    pub async fn transfer_ownership(&self, new_owner: Address) -> Result<Outcome, EvmError> {
        self.send(self.contract.transferOwnership(new_owner.into()))
            .await
    }

    /// `acceptOwnership` (the pending owner): the second step.
    pub async fn accept_ownership(&self) -> Result<Outcome, EvmError> {
        self.send(self.contract.acceptOwnership()).await
    }

    /// `owner()`.
    pub async fn owner(&self) -> Result<Address, EvmError> {
        Ok(self.contract.owner().call().await?.into())
    }

    /// `pendingOwner()`.
    pub async fn pending_owner(&self) -> Result<Address, EvmError> {
        Ok(self.contract.pendingOwner().call().await?.into())
    }

    // ---- attestations -----------------------------------------------------------------------------------------

    /// `recordEpochNonce`: fixes the current epoch's nonce if nobody has yet (then the outcome has an
    /// `EpochNonceRecorded` event).
    pub async fn record_epoch_nonce(&self) -> Result<Outcome, EvmError> {
        self.send(self.contract.recordEpochNonce()).await
    }

    /// `epochNonce(epoch)`.
    pub async fn epoch_nonce(&self, epoch: u64) -> Result<EpochNonce, EvmError> {
        let r = self.contract.epochNonce(epoch).call().await?;
        Ok(EpochNonce {
            nonce: r.nonce.into(),
            recorded: r.recorded,
        })
    }

    /// `currentEpoch()`.
    pub async fn current_epoch(&self) -> Result<u64, EvmError> {
        Ok(self.contract.currentEpoch().call().await?)
    }

    /// `submitAttestation` (operator): `keyset` is the keyset document's exact bytes (`Keyset::encode`), bound to
    /// this chain, this contract and the sender; `host_key_id` the SHA-256 of its receipt key.
    pub async fn submit_attestation(
        &self,
        keyset: &[u8],
        host_key_id: B256,
        epoch: u64,
        bundle_hash: B256,
        release_id: B256,
        uri: &str,
    ) -> Result<Outcome, EvmError> {
        self.send(self.contract.submitAttestation(
            Bytes::copy_from_slice(keyset),
            host_key_id.into(),
            epoch,
            bundle_hash.into(),
            release_id.into(),
            uri.into(),
        ))
        .await
    }

    // ---- channels ---------------------------------------------------------------------------------------------

    /// `openChannel` (tenant): escrows `escrow` for `host` (an operator account) and returns the channel id from
    /// the `ChannelOpened` event. `max_per_call` must fit a `uint96`, `deadline` (unix seconds) a `uint40`.
    pub async fn open_channel(
        &self,
        host: Address,
        salt: B256,
        escrow: u128,
        max_calls: u32,
        max_per_call: u128,
        deadline: u64,
    ) -> Result<(B256, Outcome), EvmError> {
        let max_per_call =
            Uint::<96, 2>::try_from(max_per_call).map_err(|_| EvmError::OutOfRange {
                field: "max_per_call",
                ty: "uint96",
            })?;
        let deadline = Uint::<40, 1>::try_from(deadline).map_err(|_| EvmError::OutOfRange {
            field: "deadline",
            ty: "uint40",
        })?;
        let call = self.contract.openChannel(
            host.into(),
            salt.into(),
            escrow,
            max_calls,
            max_per_call,
            deadline,
        );
        let outcome = self.send(call).await?;
        let id = outcome.events.iter().find_map(|e| match e {
            SettlementEvent::ChannelOpened(o) => Some(B256::from(o.channelId)),
            _ => None,
        });
        match id {
            Some(id) => Ok((id, outcome)),
            None => Err(EvmError::MissingEvent {
                event: "ChannelOpened",
                tx_hash: outcome.tx_hash,
            }),
        }
    }

    /// `claim`: pays the host up to a tenant-signed state with a higher turn.
    pub async fn claim(
        &self,
        salt: B256,
        state: &OnchainChannelState,
        tenant_signature: &TenantSignature,
    ) -> Result<Outcome, EvmError> {
        let sig = convert::tenant_signature_bytes(tenant_signature);
        self.send(self.contract.claim(salt.into(), state.clone(), sig))
            .await
    }

    /// `claimWithReceipt`: `claim` plus the host-signed receipt of the next call on top of the state.
    pub async fn claim_with_receipt(
        &self,
        salt: B256,
        state: &OnchainChannelState,
        tenant_signature: &TenantSignature,
        receipt: &SignedReceipt,
    ) -> Result<Outcome, EvmError> {
        let sig = convert::tenant_signature_bytes(tenant_signature);
        let (r, s) = convert::host_signature_words(&receipt.host_signature);
        self.send(self.contract.claimWithReceipt(
            salt.into(),
            state.clone(),
            sig,
            (&receipt.receipt).into(),
            r,
            s,
        ))
        .await
    }

    /// `closeChannel`: cooperative close with a final state (`isFinal`) signed by the tenant and counter-signed
    /// by the host key `host_key_id`; `host_signature` may be `None` when the host's operator sends it.
    pub async fn close_channel(
        &self,
        salt: B256,
        state: &OnchainChannelState,
        tenant_signature: &TenantSignature,
        host_key_id: B256,
        host_signature: Option<&HostSignature>,
    ) -> Result<Outcome, EvmError> {
        let sig = convert::tenant_signature_bytes(tenant_signature);
        let (r, s) = host_signature
            .map(convert::host_signature_words)
            .unwrap_or_default();
        self.send(self.contract.closeChannel(
            salt.into(),
            state.clone(),
            sig,
            host_key_id.into(),
            r,
            s,
        ))
        .await
    }

    /// `startClose` (tenant or host): starts the challenge window.
    pub async fn start_close(
        &self,
        tenant: Address,
        host: Address,
        salt: B256,
    ) -> Result<Outcome, EvmError> {
        self.send(
            self.contract
                .startClose(tenant.into(), host.into(), salt.into()),
        )
        .await
    }

    /// `finalize`: after the window, refunds the tenant what was not paid.
    pub async fn finalize(
        &self,
        tenant: Address,
        host: Address,
        salt: B256,
    ) -> Result<Outcome, EvmError> {
        self.send(
            self.contract
                .finalize(tenant.into(), host.into(), salt.into()),
        )
        .await
    }

    /// `channels(id)`.
    pub async fn channel(&self, channel_id: B256) -> Result<ChannelInfo, EvmError> {
        let c = self.contract.channels(channel_id.into()).call().await?;
        let status = ChannelStatus::from_word(c.status)?;
        Ok(ChannelInfo {
            escrow: c.escrow,
            max_per_call: c.maxPerCall.to(),
            max_calls: c.maxCalls,
            paid: c.paid,
            turn: c.turn,
            time: c.time.to(),
            status,
        })
    }

    // ---- batches ----------------------------------------------------------------------------------------------

    /// `commitReceipts` (operator): a Merkle sum root over `count` receipts adding up to `total`.
    pub async fn commit_receipts(
        &self,
        root: B256,
        count: u32,
        total: u128,
    ) -> Result<Outcome, EvmError> {
        self.send(self.contract.commitReceipts(root.into(), count, total))
            .await
    }

    /// `sampleIndices(host, root)`: the leaves to reveal (once the sample block exists).
    pub async fn sample_indices(&self, host: Address, root: B256) -> Result<Vec<u64>, EvmError> {
        let indices = self
            .contract
            .sampleIndices(host.into(), root.into())
            .call()
            .await?;
        indices
            .iter()
            .map(|i| {
                u64::try_from(*i).map_err(|_| EvmError::OutOfRange {
                    field: "sample index",
                    ty: "u64",
                })
            })
            .collect()
    }

    /// `revealReceipts`: the sampled receipts, in sample order, with their proofs.
    pub async fn reveal_receipts(
        &self,
        host: Address,
        root: B256,
        reveals: &[Reveal],
    ) -> Result<Outcome, EvmError> {
        let items = reveals
            .iter()
            .map(|r| {
                let (rr, ss) = convert::host_signature_words(&r.receipt.host_signature);
                DaitSettlement::Reveal {
                    receipt: (&r.receipt.receipt).into(),
                    r: rr,
                    s: ss,
                    proof: words(&r.proof),
                }
            })
            .collect();
        self.send(
            self.contract
                .revealReceipts(host.into(), root.into(), items),
        )
        .await
    }

    /// `forfeitBatch`: after the reveal window, the batch earns nothing.
    pub async fn forfeit_batch(&self, host: Address, root: B256) -> Result<Outcome, EvmError> {
        self.send(self.contract.forfeitBatch(host.into(), root.into()))
            .await
    }

    /// `batch(host, root)`.
    pub async fn batch(&self, host: Address, root: B256) -> Result<BatchInfo, EvmError> {
        let b = self.contract.batch(host.into(), root.into()).call().await?;
        Ok(BatchInfo {
            count: b.count,
            total: b.total,
            commit_block: b.commitBlock,
            status: BatchStatus::from_word(b.status)?,
        })
    }

    // ---- digests ----------------------------------------------------------------------------------------------

    /// `domainSeparator()`: equals [`Domain::separator`] of [`Self::domain`].
    pub async fn domain_separator(&self) -> Result<B256, EvmError> {
        Ok(self.contract.domainSeparator().call().await?.into())
    }

    /// `receiptDigest(receipt)`: equals [`crate::Receipt::signing_digest`].
    pub async fn receipt_digest(&self, receipt: &crate::Receipt) -> Result<B256, EvmError> {
        Ok(self
            .contract
            .receiptDigest(receipt.into())
            .call()
            .await?
            .into())
    }

    /// `channelStateDigest(state)`: the version 2 digest the tenant signs and the host counter-signs.
    pub async fn channel_state_digest(
        &self,
        state: &OnchainChannelState,
    ) -> Result<B256, EvmError> {
        Ok(self
            .contract
            .channelStateDigest(state.clone())
            .call()
            .await?
            .into())
    }

    /// `channelId(tenant, host, salt)`.
    pub async fn channel_id(
        &self,
        tenant: Address,
        host: Address,
        salt: B256,
    ) -> Result<B256, EvmError> {
        Ok(self
            .contract
            .channelId(tenant.into(), host.into(), salt.into())
            .call()
            .await?
            .into())
    }

    /// `verifyHostSignature(digest, r, s, x, y)`: `Ok(true)` when P256VERIFY accepts; a high `s` reverts with
    /// `HostSignatureHighS`, anything else (including a chain without the precompile) with `BadHostSignature`.
    pub async fn verify_host_signature(
        &self,
        digest: B256,
        signature: &HostSignature,
        key: &HostVerifyingKey,
    ) -> Result<bool, EvmError> {
        let (r, s) = convert::host_signature_words(signature);
        let (x, y) = convert::host_key_words(key);
        Ok(self
            .contract
            .verifyHostSignature(digest.into(), r, s, x, y)
            .call()
            .await?)
    }

    // ---- logs -------------------------------------------------------------------------------------------------

    /// The chain's latest block number.
    pub async fn block_number(&self) -> Result<u64, EvmError> {
        Ok(self.provider().get_block_number().await?)
    }

    /// The contract's events in blocks `from_block..=to_block` (to the latest block when `None`).
    pub async fn events(
        &self,
        from_block: u64,
        to_block: Option<u64>,
    ) -> Result<Vec<LoggedEvent>, EvmError> {
        let mut filter = Filter::new()
            .address(*self.contract.address())
            .from_block(from_block);
        if let Some(to) = to_block {
            filter = filter.to_block(to);
        }
        let logs = self.provider().get_logs(&filter).await?;
        logs.iter().map(|log| self.decode(log)).collect()
    }

    /// A cursor over the contract's events from `from_block` on.
    pub fn event_cursor(&self, from_block: u64) -> EventCursor<'_, P> {
        EventCursor {
            settlement: self,
            next_block: from_block,
        }
    }
}

/// The settlement's events block by block: each [`EventCursor::poll`] returns those logged since the last one,
/// up to the latest block.
#[derive(Debug)]
pub struct EventCursor<'a, P> {
    settlement: &'a Settlement<P>,
    next_block: u64,
}

impl<P: Provider> EventCursor<'_, P> {
    /// The events in the blocks from the cursor to the latest; empty when no block came.
    pub async fn poll(&mut self) -> Result<Vec<LoggedEvent>, EvmError> {
        let latest = self.settlement.provider().get_block_number().await?;
        if latest < self.next_block {
            return Ok(Vec::new());
        }
        let events = self
            .settlement
            .events(self.next_block, Some(latest))
            .await?;
        self.next_block = latest.saturating_add(1);
        Ok(events)
    }

    /// The first block the next poll reads.
    pub fn next_block(&self) -> u64 {
        self.next_block
    }
}

fn words(v: &[B256]) -> Vec<FixedBytes<32>> {
    v.iter().map(|b| FixedBytes::from(b.0)).collect()
}
