//! The agent on the EVM settlement contract (feature `settlement`, in the measured image from release 0.3.0):
//! - `dait-host register`: the operator registers the host's GPUs (their NVML UUIDs, hashed) with their stake;
//! - `dait-host serve --chain-rpc …`: the settlement task ([`service`](crate::settlement::service)) attests
//!   each boot's keyset for the chain's epoch, commits and reveals receipt batches and answers unilateral closes;
//!   the cooperative close's counter-signature is `POST /v1/channel/close` ([`close`](crate::settlement::close));
//! - `dait-host attest-epoch`: one epoch attestation of a keyset made for it, written to a file (for checks and
//!   tests; a serving agent attests its own keyset).
//!
//! The transactions are sent from the operator account (`--host-key-path`), the account the keyset's
//! `host_account` comes from, so the contract's check `host_account == sender` holds.

pub mod close;
pub mod service;

use std::path::{Path, PathBuf};

use clap::Args;
use dait_chain_client::evm::{EvmError, Outcome, Settlement, Token, connect_http, connect_https};
use dait_chain_client::{Address, B256, Freshness, bundle_hash, gpu_id_hash};
use zeroize::Zeroizing;

use crate::config::RawConfig;
use crate::http::App;
use crate::{AgentError, Mode, build_app, config};

/// Reasons a settlement step fails.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettlementError {
    /// A call or transaction failed; a revert names the contract's custom error (in the source).
    #[error("{what}")]
    Chain {
        /// The step (`"registerHost"`, `"submitAttestation"`, …).
        what: &'static str,
        /// The client's error (boxed: it is large).
        #[source]
        source: Box<EvmError>,
    },
    /// The evidence bundle could not be produced.
    #[error("evidence bundle")]
    Evidence(#[source] crate::tee::TeeError),
    /// The operator account key file is unreadable or malformed.
    #[error("operator account key {0}")]
    Key(&'static str),
    /// A setting is missing or malformed.
    #[error("invalid setting {0}")]
    Usage(&'static str),
    /// The settlement store (`settlement.json`) or the receipt log behind it.
    #[error("settlement store: {0}")]
    Store(&'static str),
}

impl From<SettlementError> for AgentError {
    fn from(e: SettlementError) -> Self {
        Self::Settlement(Box::new(e))
    }
}

impl SettlementError {
    /// The contract's custom error name, when a call reverted with one.
    pub fn revert_name(&self) -> Option<&'static str> {
        match self {
            Self::Chain { source, .. } => source.revert_name(),
            _ => None,
        }
    }
}

pub(crate) fn chain(what: &'static str) -> impl FnOnce(EvmError) -> SettlementError {
    move |source| SettlementError::Chain {
        what,
        source: Box::new(source),
    }
}

/// `register`: the operator's GPUs and stake on chain.
#[derive(Debug, Clone, Args)]
pub struct RegisterArgs {
    /// Chain RPC endpoint (`http://`, or `https://` trusted through `DAIT_PCCS_CA_FILE`'s roots).
    #[arg(long = "chain-rpc", visible_alias = "rpc-url", env = "DAIT_CHAIN_RPC")]
    pub chain_rpc: String,
    /// The settlement contract (0x + 40 hex).
    #[arg(long, env = "DAIT_SETTLEMENT")]
    pub settlement: String,
    /// The operator's chain account key file (hex secp256k1 secret): the account that stakes and that the
    /// keyset's `host_account` names.
    #[arg(long, env = "DAIT_HOST_KEY_PATH")]
    pub host_key_path: PathBuf,
    /// A GPU's UUID as NVML prints it (`GPU-…`), once per GPU; registered as its `gpu_id_hash`. Without it,
    /// every GPU NVML finds on this machine.
    #[arg(long = "gpu-id", value_name = "UUID")]
    pub gpu_ids: Vec<String>,
}

/// `attest-epoch`: one evidence bundle for the chain's current epoch, attested on chain.
#[derive(Debug, Clone, Args)]
pub struct AttestEpochArgs {
    /// Common configuration; needs `--chain-rpc`, `--settlement`, `--host-key-path` and `--release-id` (and
    /// takes `--bundle-uri`), as `serve`'s settlement task does.
    #[command(flatten)]
    pub raw: RawConfig,
    /// Output file for the protobuf `EvidenceBundle`.
    #[arg(long)]
    pub out: PathBuf,
}

/// Reads the operator account key file (hex secp256k1 secret, optional `0x`).
pub fn read_operator_key(path: &Path) -> Result<Zeroizing<[u8; 32]>, SettlementError> {
    let text =
        Zeroizing::new(std::fs::read_to_string(path).map_err(|_| SettlementError::Key("file"))?);
    let t = text.trim();
    let t = t.strip_prefix("0x").unwrap_or(t);
    let mut secret = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(t, &mut secret[..]).map_err(|_| SettlementError::Key("(64 hex)"))?;
    Ok(secret)
}

/// The settlement contract at `settlement`, sending from the operator account `secret`.
pub async fn connect(
    rpc_url: &str,
    settlement: Address,
    secret: &[u8; 32],
) -> Result<Settlement, SettlementError> {
    let provider = if rpc_url.starts_with("https://") {
        connect_https(rpc_url, &crate::collateral::ca_file(), Some(secret))
    } else {
        connect_http(rpc_url, Some(secret))
    }
    .map_err(chain("connect"))?;
    Settlement::at(settlement, provider)
        .await
        .map_err(chain("settlement contract"))
}

/// Approves `stakePerGpu × n` of the contract's token and calls `registerHost` with the GPU id hashes of
/// `gpu_ids` (NVML UUIDs). Returns the `registerHost` outcome.
pub async fn register(
    settlement: &Settlement,
    gpu_ids: &[String],
) -> Result<Outcome, SettlementError> {
    if gpu_ids.is_empty() {
        return Err(SettlementError::Usage("--gpu-id (at least one)"));
    }
    let hashes: Vec<B256> = gpu_ids.iter().map(|u| gpu_id_hash(u.trim())).collect();
    let c = settlement.instance();
    let token = c
        .token()
        .call()
        .await
        .map_err(|e| chain("token")(e.into()))?;
    let stake_per_gpu = c
        .stakePerGpu()
        .call()
        .await
        .map_err(|e| chain("stakePerGpu")(e.into()))?;
    let count = u128::try_from(hashes.len()).map_err(|_| SettlementError::Usage("--gpu-id"))?;
    let stake = stake_per_gpu
        .checked_mul(count)
        .ok_or(SettlementError::Usage("--gpu-id (stake overflows)"))?;
    let token = Token::at(token.into(), settlement.provider().clone());
    token
        .approve(settlement.address(), Some(stake))
        .await
        .map_err(chain("approve"))?;
    settlement
        .register_host(&hashes)
        .await
        .map_err(chain("registerHost"))
}

/// One epoch's attestation: the bundle, its hash and the transaction that recorded it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EpochAttestation {
    /// The epoch attested.
    pub epoch: u64,
    /// The epoch nonce bound into the bundle.
    pub nonce: B256,
    /// The protobuf `EvidenceBundle`.
    pub bundle: Vec<u8>,
    /// `bundle_hash(bundle)`, as recorded on chain.
    pub bundle_hash: B256,
    /// The `submitAttestation` transaction.
    pub outcome: Outcome,
}

/// The current epoch and its nonce, recording the nonce first when nobody has (`recordEpochNonce`).
pub async fn epoch_freshness(settlement: &Settlement) -> Result<Freshness, SettlementError> {
    let epoch = settlement
        .current_epoch()
        .await
        .map_err(chain("currentEpoch"))?;
    let mut nonce = settlement
        .epoch_nonce(epoch)
        .await
        .map_err(chain("epochNonce"))?;
    if !nonce.recorded {
        settlement
            .record_epoch_nonce()
            .await
            .map_err(chain("recordEpochNonce"))?;
        nonce = settlement
            .epoch_nonce(epoch)
            .await
            .map_err(chain("epochNonce"))?;
    }
    Ok(Freshness::ChainEpoch {
        epoch,
        nonce: nonce.nonce.0,
    })
}

/// Attests `app`'s keyset for the current epoch: the bundle bound to the epoch nonce, and `submitAttestation`
/// with its hash, `release_id` and `uri`.
pub async fn attest_epoch(
    app: &App,
    settlement: &Settlement,
    release_id: B256,
    uri: &str,
) -> Result<EpochAttestation, SettlementError> {
    let freshness = epoch_freshness(settlement).await?;
    let bundle = crate::http::bundle(app, &freshness).map_err(SettlementError::Evidence)?;
    let hash = bundle_hash(&bundle);
    let epoch = freshness.epoch();
    let outcome = settlement
        .submit_attestation(
            &app.keys.keyset_bytes,
            app.keys.host_key_id,
            epoch,
            hash,
            release_id,
            uri,
        )
        .await
        .map_err(chain("submitAttestation"))?;
    Ok(EpochAttestation {
        epoch,
        nonce: B256(*freshness.nonce()),
        bundle,
        bundle_hash: hash,
        outcome,
    })
}

/// `register`.
pub async fn run_register(args: RegisterArgs) -> Result<(), AgentError> {
    let settlement =
        config::parse_address(&args.settlement).ok_or(SettlementError::Usage("--settlement"))?;
    let gpu_ids = if args.gpu_ids.is_empty() {
        crate::tee::NvmlAttester::open()
            .and_then(|n| n.uuids())
            .map_err(AgentError::Gpu)?
    } else {
        args.gpu_ids
    };
    let secret = read_operator_key(&args.host_key_path)?;
    let s = connect(&args.chain_rpc, Address(settlement), &secret).await?;
    let outcome = register(&s, &gpu_ids).await?;
    println!("registerHost {} status success", outcome.tx_hash);
    println!("gpus {}", gpu_ids.len());
    for id in &gpu_ids {
        println!("gpu {id} {}", gpu_id_hash(id.trim()));
    }
    Ok(())
}

/// `attest-epoch`.
pub async fn run_attest_epoch(args: AttestEpochArgs) -> Result<(), AgentError> {
    let config = args.raw.validate().map_err(AgentError::from)?;
    let release_id = config
        .settle
        .release_id
        .as_deref()
        .and_then(|t| B256::from_hex(t.trim()))
        .ok_or(SettlementError::Usage("--release-id (64 hex)"))?;
    let (Some(rpc), Some(key_path)) = (&config.chain_rpc, &config.host_key_path) else {
        return Err(
            SettlementError::Usage("attest-epoch needs --chain-rpc and --host-key-path").into(),
        );
    };
    let secret = read_operator_key(key_path)?;
    let s = connect(rpc, Address(config.settlement), &secret).await?;
    let app = build_app(&config, Mode::Attest)?;
    let a = attest_epoch(&app, &s, release_id, &config.settle.bundle_uri).await?;
    std::fs::write(&args.out, &a.bundle).map_err(|e| AgentError::Io("output file", e))?;
    println!("epoch {}", a.epoch);
    println!("epoch_nonce {}", a.nonce);
    println!("bundle_hash {}", a.bundle_hash);
    println!("keyset_hash {}", app.keys.keyset_hash);
    println!("submitAttestation {} status success", a.outcome.tx_hash);
    Ok(())
}
