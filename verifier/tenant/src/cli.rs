//! The `dait-tenant` command line (feature `cli`): verify a dait host, chat with it, or run a local
//! OpenAI-compatible proxy to it.
//!
//! `proxy --redundant N --host A --host B --host C …` serves from N hosts at once and returns the answer a
//! majority agrees on ([`crate::redundant`]; docs/REDUNDANT.md).
//!
//! `channel open | status | final-state | close | challenge | withdraw | check` drive the settlement contract over JSON-RPC
//! ([`crate::chain`]): each prints one JSON object with the transactions it sent and the token balances it
//! changed. `channel close --host-url URL` runs the whole cooperative close: the host counter-signs the
//! final state ([`crate::close`]), then `closeChannel`.
//!
//! `chat` and `proxy` with `--channel ID` continue a channel used before from `--state-dir`
//! ([`Session::resume_from_store`]), so a restarted tenant goes on at the next call_seq.
//!
//! Exit codes: 0 = ok; 1 = rejected (evidence, TLS key, receipt or stream failed verification; the
//! settlement contract reverted, its error name printed; `channel check` refused the host; `channel
//! challenge` had nothing higher to submit; `channel close --host-url` got a counter-signature or state that
//! does not verify; `--channel` resumed with a host of another account or domain); 2 = usage, I/O, RPC or host error (a `--policy` reference file
//! that does not load included).
//!
//! Policy: the default accepts real TDX/SNP evidence only. `--policy <reference.json>` pins a published
//! release's measurements (`Policy::from_reference`), the runtime events (model, engine, agent
//! configuration) included; `--dangerous-allow-simulated` and `--min-gpus` are applied on top of it.
//!
//! Without `--policy`, no measurement is pinned: any genuine guest would pass. `chat` and `proxy` then
//! refuse to send anything (exit 2, before contacting the host) unless told `--dangerous-any-measurement`;
//! `verify` still runs and reports `"reference": null`. Whatever the policy, every receipt must name the
//! model, weights and engine build the evidence attests (`dait_verifier::receipt::Channel::check`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use dait_chain_client::WireMessage as _;
use dait_measure::ReferenceMeasurements;
use dait_verifier::bundle::{Platform, Policy};
use dait_verifier::collateral::TdxCollateral;

use crate::chain;
use crate::close;
use crate::redundant::{self, Redundant};
use crate::{
    CallOptions, Session, SessionConfig, StreamItem, TenantError, Wallet, proxy,
    verify_host_with_collateral,
};

/// The `dait-tenant` arguments.
#[derive(Parser)]
#[command(
    name = "dait-tenant",
    version,
    about = "Verify a dait host and talk to it privately"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct HostArgs {
    /// The agent's base URL, `https://host:port`. `proxy --redundant N` takes it several times (at least
    /// N); the other commands take it once.
    #[arg(long, env = "DAIT_HOST_URL", required = true)]
    host: Vec<String>,
    #[command(flatten)]
    trust: PolicyArgs,
}

/// How the host's evidence is judged (`verify`, `chat`, `proxy`, `channel close --host-url`).
#[derive(clap::Args)]
struct PolicyArgs {
    /// Accept SIMULATED evidence certified by the root public key in this file (hex, as written by
    /// `dait-host init --tee simulated`). Development and tests only: simulated evidence proves nothing.
    #[arg(long, value_name = "ROOT_PUB_FILE")]
    dangerous_allow_simulated: Option<PathBuf>,
    /// Check the evidence against this reference measurements file (`measurements/reference/<release>.json`):
    /// the release's launch measurements and its runtime events (model, engine and agent configuration,
    /// replayed from the host's event log; for simulated evidence too). Without it the default policy
    /// pins no measurements.
    #[arg(long, value_name = "REFERENCE_JSON")]
    policy: Option<PathBuf>,
    /// Send prompts (`chat`, `proxy`) without `--policy`: to a host whose measurements nobody pinned, any
    /// genuine guest running any code. Development only.
    #[arg(long)]
    dangerous_any_measurement: bool,
    /// Require at least this many verified GPUs in the evidence (a bundle with fewer is rejected).
    #[arg(long, value_name = "N", default_value_t = 0)]
    min_gpus: usize,
    /// Require a vTPM quote signed by this attestation key: its TPM name in hex (`000b` followed by SHA-256 of
    /// its `TPMT_PUBLIC`), which the operator publishes for the host (a reference file cannot know it).
    #[arg(long, value_name = "HEX")]
    tpm_ak_name: Option<String>,
}

#[derive(clap::Args)]
struct ChannelArgs {
    /// The tenant's secp256k1 wallet key (hex); created if missing.
    #[arg(long, value_name = "FILE")]
    wallet_key: PathBuf,
    /// The most the channel may spend, in the channel's smallest unit (with `--settlement` and no `--channel`:
    /// the escrow of the channel opened on chain).
    #[arg(long, default_value_t = 1_000_000_000)]
    escrow_cap: u128,
    /// Where receipts, channel states and dispute records are kept.
    #[arg(long, value_name = "DIR")]
    state_dir: PathBuf,
    /// Seconds allowed for one call, or between two events of a streamed call (raise it for an emulated
    /// guest, whose CPU engine is slow).
    #[arg(long, value_name = "SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    timeout: u64,
    /// Before sending anything, check the verified host on this settlement contract (`channel check`): its
    /// operator is bonded and attested the verified keyset for the current epoch under a usable release.
    /// Needs `--rpc-url`. Not with `--redundant`.
    #[arg(long, value_name = "ADDRESS", requires = "rpc_url")]
    settlement: Option<String>,
    /// The JSON-RPC URL for `--settlement` (`http://`, or `https://` with `--rpc-ca-file`).
    #[arg(long, value_name = "URL")]
    rpc_url: Option<String>,
    /// Trust only the CA certificates in this PEM file for an `https://` RPC URL.
    #[arg(long, value_name = "PEM")]
    rpc_ca_file: Option<PathBuf>,
    /// Use this channel, opened on chain by `channel open` into the same `--state-dir`, instead of a fresh
    /// off-chain one: its salt, and its escrow as the cap. It must be open on chain. A channel with signed
    /// calls goes on from the last state stored in `--state-dir` (the verified host must be the channel's
    /// host account, in its domain); a receipt the host logged but this tenant never received is fetched
    /// from the host and accepted as the host's claim first. Needs `--settlement`; without it, `--settlement`
    /// opens a new channel on chain to the verified host's operator account with `--escrow-cap` as the escrow
    /// (recorded in `--state-dir`, so a later `--channel` goes on with it).
    #[arg(long = "channel", value_name = "ID", requires = "settlement")]
    onchain_channel: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch the host's evidence for a fresh nonce, verify it and print the attested keys.
    Verify {
        #[command(flatten)]
        host: HostArgs,
        /// Check a TDX quote against this Intel collateral instead of the collateral the bundle carries: a
        /// directory of the files Intel's PCS serves (as the agent caches them) or a dcap-qvl JSON bundle.
        #[arg(long, value_name = "DIR_OR_JSON")]
        collateral: Option<PathBuf>,
    },
    /// Send one encrypted request and print the reply and its verified receipt.
    Chat {
        #[command(flatten)]
        host: HostArgs,
        #[command(flatten)]
        channel: ChannelArgs,
        /// Model name sent in the request.
        #[arg(long, default_value = "default")]
        model: String,
        /// `max_tokens` of the request.
        #[arg(long, default_value_t = 64)]
        max_tokens: u64,
        /// Stream the reply (chunked OHTTP).
        #[arg(long)]
        stream: bool,
        /// Send the call replayable (`x-dait-replayable: 1`; the request has temperature 0, so seed 0): the
        /// host serves it only with an engine declared deterministic, else refuses it (`NotReplayable`),
        /// and its receipt must say `deterministic = true` and `seed = 0`, so an auditor can replay it.
        #[arg(long)]
        replayable: bool,
        /// A system message sent before the user message (instead of the chat template's default one).
        #[arg(long, value_name = "TEXT")]
        system: Option<String>,
        /// The user message.
        prompt: String,
    },
    /// Open, inspect, close, challenge or finalize a channel on the settlement contract; check a host on chain.
    Channel {
        #[command(subcommand)]
        command: ChannelCommand,
    },
    /// Serve a local OpenAI-compatible endpoint that runs the whole tenant flow per request.
    Proxy {
        #[command(flatten)]
        host: HostArgs,
        #[command(flatten)]
        channel: ChannelArgs,
        /// Address to listen on (loopback).
        #[arg(long, default_value = "127.0.0.1:8088")]
        listen: SocketAddr,
        /// Serve every request from N hosts, each verified and on its own channel (state in
        /// `<state-dir>/hosts/<host>_<port>`), and return the answer whose response hash more than N/2 of
        /// them agree on. Needs at least N `--host`s: the first N (in order) that verify are used, and the
        /// proxy does not start with fewer. Only replayable, non-streamed requests are served (`temperature`
        /// 0 or an integer `seed`, `n` absent or 1); disagreements are written to `<state-dir>/disputes/`.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(2..=16))]
        redundant: Option<u64>,
    },
}

#[derive(clap::Args)]
struct ChainArgs {
    /// The JSON-RPC URL of the chain's node (`http://` or, with `--rpc-ca-file`, `https://`).
    #[arg(long, env = "DAIT_RPC_URL")]
    rpc_url: String,
    /// Trust only the CA certificates in this PEM file for an `https://` RPC URL.
    #[arg(long, value_name = "PEM")]
    rpc_ca_file: Option<PathBuf>,
    /// The settlement contract's address.
    #[arg(long, env = "DAIT_SETTLEMENT", value_name = "ADDRESS")]
    settlement: String,
    /// The ERC-20 the settlement is denominated in; default: the contract's own `token()`.
    #[arg(long, value_name = "ADDRESS")]
    token: Option<String>,
    /// The tenant's secp256k1 wallet key (hex), which sends the transactions; created if missing.
    #[arg(long, env = "DAIT_WALLET_KEY", value_name = "FILE")]
    wallet_key: PathBuf,
    /// Where channel records and states are kept (the `--state-dir` of `chat` and `proxy`).
    #[arg(long, value_name = "DIR")]
    state_dir: PathBuf,
}

#[derive(Subcommand)]
enum ChannelCommand {
    /// Check that a host may be used: its operator is bonded, its attestation for the current epoch names
    /// the keyset hash (as `dait-tenant verify` prints it) and its release is usable.
    Check {
        #[command(flatten)]
        chain: ChainArgs,
        /// The host's operator account (`host_account` of `verify`).
        #[arg(long, value_name = "ADDRESS")]
        host_account: String,
        /// The keyset hash of the verified bundle (`keyset_hash` of `verify`).
        #[arg(long, value_name = "HEX")]
        keyset_hash: String,
    },
    /// Approve the escrow and open a channel to a host's operator account; records it in the state directory.
    Open {
        #[command(flatten)]
        chain: ChainArgs,
        /// The host's operator account.
        #[arg(long, value_name = "ADDRESS")]
        host_account: String,
        /// Escrow, in the token's smallest unit.
        #[arg(long)]
        escrow: u128,
        /// Most calls.
        #[arg(long, default_value_t = 1_000_000)]
        max_calls: u32,
        /// Most a single call may cost; default: the escrow.
        #[arg(long)]
        max_per_call: Option<u128>,
        /// Seconds from now until the channel's deadline.
        #[arg(long, value_name = "SECS", default_value_t = 30 * 86_400)]
        duration: u64,
    },
    /// The channel on chain (phase, paid, escrow, close deadline) next to the local latest signed state.
    Status {
        #[command(flatten)]
        chain: ChainArgs,
        /// The channel id (hex).
        #[arg(long)]
        channel: String,
    },
    /// Close cooperatively: with `--host-url`, the host counter-signs the local final state first (checked
    /// under its attested key; kept as `channels/<id>/final.b64`); else with `--final-state FILE` or the local
    /// state when counter-signed. Without any of them, start the challenge window (`startClose`).
    Close {
        #[command(flatten)]
        chain: ChainArgs,
        /// The channel id (hex).
        #[arg(long)]
        channel: String,
        /// The host key that counter-signed the final state; default: the last recorded receipt's.
        #[arg(long, value_name = "HEX")]
        host_key_id: Option<String>,
        /// Close with this final state counter-signed by the host (a file holding its base64url header
        /// value, as `channel final-state` prints it before the host counter-signs) instead of the local state.
        #[arg(long, value_name = "FILE", conflicts_with = "host_url")]
        final_state: Option<PathBuf>,
        /// The whole cooperative close: verify the host at this URL (policy flags as for `chat`), send it
        /// the tenant-signed final state (`POST /v1/channel/close` over the pinned TLS connection), check
        /// its counter-signature under the attested receipt key, then `closeChannel` with it.
        #[arg(long, value_name = "URL", conflicts_with = "host_key_id")]
        host_url: Option<String>,
        #[command(flatten)]
        trust: PolicyArgs,
    },
    /// Print the tenant-signed final state of the channel (the latest local state, `is_final` set) for the host
    /// to counter-sign, or for its operator to send with `closeChannel`.
    FinalState {
        #[command(flatten)]
        chain: ChainArgs,
        /// The channel id (hex).
        #[arg(long)]
        channel: String,
    },
    /// During a unilateral close, submit the local signed state if its turn is above the chain's.
    Challenge {
        #[command(flatten)]
        chain: ChainArgs,
        /// The channel id (hex).
        #[arg(long)]
        channel: String,
    },
    /// After the challenge window, finalize the channel and print the refund.
    Withdraw {
        #[command(flatten)]
        chain: ChainArgs,
        /// The channel id (hex).
        #[arg(long)]
        channel: String,
    },
}

fn parse_address(flag: &str, text: &str) -> anyhow::Result<dait_chain_client::Address> {
    dait_chain_client::Address::from_hex(text.trim())
        .with_context(|| format!("{flag} {text}: not a 20-byte hex address"))
}

fn parse_b256(flag: &str, text: &str) -> anyhow::Result<dait_chain_client::B256> {
    dait_chain_client::B256::from_hex(text.trim())
        .with_context(|| format!("{flag} {text}: not 32 bytes of hex"))
}

/// The channel `--channel` names: its id, its record in the state directory, and the chain to act on it.
async fn stored_channel(
    args: &ChainArgs,
    channel: &str,
) -> anyhow::Result<(dait_chain_client::B256, chain::ChannelRecord, chain::Chain)> {
    let id = parse_b256("--channel", channel)?;
    let record = chain::ChannelRecord::load(&args.state_dir, &id)?;
    Ok((id, record, connect_chain(args).await?))
}

async fn connect_chain(args: &ChainArgs) -> anyhow::Result<chain::Chain> {
    let wallet = Wallet::load_or_create(&args.wallet_key)?;
    let settlement = parse_address("--settlement", &args.settlement)?;
    let token = args
        .token
        .as_deref()
        .map(|t| parse_address("--token", t))
        .transpose()?;
    let rpc = chain::Rpc {
        url: &args.rpc_url,
        ca_file: args.rpc_ca_file.as_deref(),
    };
    chain::Chain::connect(&rpc, settlement, token, &wallet)
        .await
        .with_context(|| {
            format!(
                "connecting to the settlement at {} via {}",
                args.settlement, args.rpc_url
            )
        })
}

fn report_json(report: &chain::Report) -> serde_json::Value {
    let txs: Vec<_> = report
        .txs
        .iter()
        .map(|tx| serde_json::json!({"name": tx.name, "tx_hash": tx.hash.to_string()}))
        .collect();
    let balances: Vec<_> = report
        .balances
        .iter()
        .map(|b| {
            serde_json::json!({
                "who": b.who,
                "account": b.account.to_string(),
                "before": b.before.to_string(),
                "after": b.after.to_string(),
            })
        })
        .collect();
    serde_json::json!({"transactions": txs, "balances": balances})
}

fn record_json(record: &chain::ChannelRecord) -> serde_json::Value {
    serde_json::json!({
        "channel_id": record.channel_id.to_string(),
        "chain_id": record.domain.chain_id,
        "settlement": record.domain.settlement.to_string(),
        "token": record.token.to_string(),
        "tenant": record.tenant.to_string(),
        "host": record.host.to_string(),
        "salt": record.salt.to_string(),
        "escrow": record.escrow.to_string(),
        "max_calls": record.max_calls,
        "max_per_call": record.max_per_call.to_string(),
        "deadline": record.deadline,
    })
}

fn print_json(mut value: serde_json::Value, report: Option<&chain::Report>) -> anyhow::Result<()> {
    if let (Some(report), Some(object)) = (report, value.as_object_mut())
        && let serde_json::Value::Object(extra) = report_json(report)
    {
        object.extend(extra);
    }
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

async fn channel(command: ChannelCommand) -> anyhow::Result<()> {
    match command {
        ChannelCommand::Check {
            chain: args,
            host_account,
            keyset_hash,
        } => {
            let operator = parse_address("--host-account", &host_account)?;
            let keyset_hash = parse_b256("--keyset-hash", &keyset_hash)?;
            let chain = connect_chain(&args).await?;
            let attested = chain::check_host(chain.settlement(), operator, keyset_hash).await?;
            print_json(
                serde_json::json!({
                    "host_account": attested.operator.to_string(),
                    "epoch": attested.epoch,
                    "keyset_hash": attested.keyset_hash.to_string(),
                    "host_key_id": attested.host_key_id.to_string(),
                    "bundle_hash": attested.bundle_hash.to_string(),
                    "release_id": attested.release_id.to_string(),
                }),
                None,
            )
        }
        ChannelCommand::Open {
            chain: args,
            host_account,
            escrow,
            max_calls,
            max_per_call,
            duration,
        } => {
            let host = parse_address("--host-account", &host_account)?;
            let chain = connect_chain(&args).await?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("the system clock is before 1970")?
                .as_secs();
            let deadline = now.saturating_add(duration);
            let (record, report) = chain
                .open(
                    &args.state_dir,
                    host,
                    escrow,
                    max_calls,
                    max_per_call.unwrap_or(escrow),
                    deadline,
                )
                .await?;
            print_json(record_json(&record), Some(&report))
        }
        ChannelCommand::Status {
            chain: args,
            channel,
        } => {
            let (_, record, chain) = stored_channel(&args, &channel).await?;
            let view = chain.status(&record, &args.state_dir).await?;
            let local = view.local.as_ref().map(|s| {
                serde_json::json!({
                    "state": proxy::state_json(s),
                    "is_final": s.state.is_final,
                    "host_counter_signed": s.host_signature.is_some(),
                })
            });
            let c = &view.onchain;
            print_json(
                serde_json::json!({
                    "channel": record_json(&record),
                    "onchain": {
                        "phase": format!("{:?}", c.status),
                        "escrow": c.escrow.to_string(),
                        "paid": c.paid.to_string(),
                        "turn": c.turn,
                        "max_calls": c.max_calls,
                        "max_per_call": c.max_per_call.to_string(),
                        // The deadline while open, the end of the challenge window while closing.
                        "deadline": (c.status == dait_chain_client::evm::ChannelStatus::Open).then_some(c.time),
                        "window_end": (c.status == dait_chain_client::evm::ChannelStatus::Closing).then_some(c.time),
                    },
                    "local": local,
                }),
                None,
            )
        }
        ChannelCommand::FinalState {
            chain: args,
            channel,
        } => {
            let id = parse_b256("--channel", &channel)?;
            let record = chain::ChannelRecord::load(&args.state_dir, &id)?;
            let wallet = Wallet::load_or_create(&args.wallet_key)?;
            let signed = chain::final_state(&record, &args.state_dir, &wallet)?;
            print_json(
                serde_json::json!({
                    "digest": signed.state.signing_digest(&record.domain).to_string(),
                    "state": proxy::state_json(&signed),
                }),
                None,
            )
        }
        ChannelCommand::Close {
            chain: args,
            channel,
            host_key_id,
            final_state,
            host_url,
            trust,
        } => {
            let id = parse_b256("--channel", &channel)?;
            let (final_state, host_key_id) = match (&final_state, &host_url) {
                (_, Some(url)) => {
                    check_pinned(&trust)?;
                    let record = chain::ChannelRecord::load(&args.state_dir, &id)?;
                    let wallet = Wallet::load_or_create(&args.wallet_key)?;
                    let signed = chain::final_state(&record, &args.state_dir, &wallet)?;
                    let countersigned =
                        close::request_countersignature(url, &policy(&trust)?.0, &signed)
                            .await
                            .with_context(|| {
                                format!("the host at {url} counter-signing the close")
                            })?;
                    // Kept before anything goes on chain, so a failed transaction can be sent again
                    // with `--final-state FILE --host-key-id K`.
                    let kept = chain::ChannelRecord::dir(&args.state_dir, &id).join("final.b64");
                    crate::store::write_atomic(
                        &kept,
                        countersigned.state.to_header_value().as_bytes(),
                    )
                    .with_context(|| format!("writing {}", kept.display()))?;
                    eprintln!(
                        "the host counter-signed the final state (turn {}, cumulative {}) with key {}; \
                         kept in {}",
                        countersigned.state.state.turn,
                        countersigned.state.state.cumulative,
                        countersigned.host_key_id,
                        kept.display()
                    );
                    (
                        Some(countersigned.state),
                        Some(countersigned.host_key_id.to_string()),
                    )
                }
                (None, None) => (None, host_key_id),
                (Some(path), None) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let given =
                        dait_chain_client::SignedChannelState::from_header_value(text.trim())
                            .with_context(|| {
                                format!("{} is not a signed channel state", path.display())
                            })?;
                    (Some(given), host_key_id)
                }
            };
            let host_key_id = host_key_id
                .as_deref()
                .map(|k| parse_b256("--host-key-id", k))
                .transpose()?;
            let record = chain::ChannelRecord::load(&args.state_dir, &id)?;
            let chain = connect_chain(&args).await?;
            let (kind, report) = chain
                .close(&record, &args.state_dir, host_key_id, final_state)
                .await?;
            let out = match kind {
                chain::CloseKind::Cooperative => serde_json::json!({
                    "channel_id": id.to_string(), "close": "cooperative",
                }),
                chain::CloseKind::Unilateral { window_end } => serde_json::json!({
                    "channel_id": id.to_string(), "close": "unilateral", "window_end": window_end,
                }),
            };
            print_json(out, Some(&report))
        }
        ChannelCommand::Challenge {
            chain: args,
            channel,
        } => {
            let (id, record, chain) = stored_channel(&args, &channel).await?;
            let report = chain.challenge(&record, &args.state_dir).await?;
            print_json(
                serde_json::json!({"channel_id": id.to_string()}),
                Some(&report),
            )
        }
        ChannelCommand::Withdraw {
            chain: args,
            channel,
        } => {
            let (id, record, chain) = stored_channel(&args, &channel).await?;
            let report = chain.withdraw(&record).await?;
            let refund = report
                .balances
                .iter()
                .find(|b| b.who == "tenant")
                .map(|b| b.after.saturating_sub(b.before))
                .unwrap_or(0);
            print_json(
                serde_json::json!({"channel_id": id.to_string(), "refund": refund.to_string()}),
                Some(&report),
            )
        }
    }
}

/// Runs the command line on a new tokio runtime; the binary's `main` calls this after setting up tracing.
pub fn run(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            if let Some(name) = revert_name(&error) {
                eprintln!("revert: {name}");
            }
            if is_rejection(&error) {
                ExitCode::from(1)
            } else {
                ExitCode::from(2)
            }
        }
    }
}

/// The settlement contract's error name, when it reverted.
fn revert_name(error: &anyhow::Error) -> Option<&'static str> {
    error.chain().find_map(|cause| {
        cause
            .downcast_ref::<dait_chain_client::evm::EvmError>()
            .and_then(dait_chain_client::evm::EvmError::revert_name)
    })
}

/// Whether the failure is a verification failure (exit 1) rather than usage or I/O (exit 2).
fn is_rejection(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        if let Some(error) = cause.downcast_ref::<dait_chain_client::evm::EvmError>() {
            return error.revert_name().is_some();
        }
        if let Some(error) = cause.downcast_ref::<chain::CheckError>() {
            return !matches!(error, chain::CheckError::Evm(_));
        }
        if matches!(
            cause.downcast_ref::<close::CloseError>(),
            Some(
                close::CloseError::BadCounterSignature(_)
                    | close::CloseError::DomainMismatch
                    | close::CloseError::HostKeyId { .. }
                    | close::CloseError::Malformed
                    | close::CloseError::StateChanged
                    | close::CloseError::WrongHost
            )
        ) || matches!(
            cause.downcast_ref::<crate::ResumeError>(),
            Some(crate::ResumeError::DomainMismatch | crate::ResumeError::WrongHost { .. })
        ) {
            return true;
        }
        if let Some(error) = cause.downcast_ref::<chain::ChainError>() {
            return matches!(
                error,
                chain::ChainError::ChannelNotClosing { .. }
                    | chain::ChainError::NothingToChallenge { .. }
            );
        }
        matches!(
            cause.downcast_ref::<TenantError>(),
            Some(
                TenantError::Bundle(_)
                    | TenantError::ReceiptRejected { .. }
                    | TenantError::ResponseDecrypt
                    | TenantError::SessionStopped
                    | TenantError::StreamTruncated
                    | TenantError::TlsSpkiMismatch
            )
        )
    })
}

/// Why the tenant refuses to send a prompt: the policy pins no measurements (a usage error, exit 2).
#[derive(Debug, thiserror::Error)]
#[error(
    "no --policy: refusing to send a prompt to a host whose measurements are not pinned; give \
     --policy <reference.json>, or --dangerous-any-measurement to accept any"
)]
pub struct UnpinnedPolicy;

/// The verification policy and, with `--policy`, the release of the reference it pins.
fn policy(host: &PolicyArgs) -> anyhow::Result<(Policy, Option<String>)> {
    let (mut policy, release) = match &host.policy {
        None => (Policy::new(), None),
        Some(path) => {
            let reference = ReferenceMeasurements::load(path).with_context(|| {
                format!(
                    "--policy {}: not a loadable reference measurements file",
                    path.display()
                )
            })?;
            let policy = Policy::from_reference(&reference)
                .with_context(|| format!("--policy {}: unusable as a policy", path.display()))?;
            eprintln!(
                "checking against reference release {} ({})",
                reference.release,
                path.display()
            );
            (policy, Some(reference.release))
        }
    };
    policy.min_gpus = host.min_gpus;
    if let Some(name) = &host.tpm_ak_name {
        let name = name.trim();
        let name = hex::decode(name.strip_prefix("0x").unwrap_or(name))
            .context("--tpm-ak-name is not hex")?;
        policy.tpm.ak_name = Some(name);
        policy.tpm.required = true;
    }
    match &host.dangerous_allow_simulated {
        None => Ok((policy, release)),
        Some(path) => {
            let root = read_hex_key(path)?;
            eprintln!(
                "warning: accepting SIMULATED evidence (--dangerous-allow-simulated); it proves nothing"
            );
            let policy = policy
                .dangerous_allow_simulated(&root)
                .with_context(|| format!("simulated root in {}", path.display()))?;
            Ok((policy, release))
        }
    }
}

fn read_hex_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let text = text.trim();
    hex::decode(text.strip_prefix("0x").unwrap_or(text))
        .with_context(|| format!("{} is not hex", path.display()))
}

/// The one `--host` of a command that talks to a single host.
fn single_host(host: &HostArgs) -> anyhow::Result<&str> {
    match host.host.as_slice() {
        [url] => Ok(url),
        _ => Err(anyhow::anyhow!(
            "--host given {} times: only `proxy --redundant N` takes several",
            host.host.len()
        )),
    }
}

/// Refuses to send prompts under a policy that pins no measurements, unless told otherwise.
fn check_pinned(host: &PolicyArgs) -> anyhow::Result<()> {
    if host.policy.is_none() {
        if !host.dangerous_any_measurement {
            return Err(UnpinnedPolicy.into());
        }
        eprintln!(
            "warning: sending prompts to a host whose measurements are not pinned \
             (--dangerous-any-measurement)"
        );
    }
    Ok(())
}

async fn open(host: &HostArgs, channel: &ChannelArgs) -> anyhow::Result<Session> {
    let url = single_host(host)?;
    check_pinned(&host.trust)?;
    let wallet = Wallet::load_or_create(&channel.wallet_key)?;
    let record = match (&channel.onchain_channel, &channel.settlement) {
        (Some(id), _) => Some(onchain_record(channel, id, &wallet)?),
        (None, Some(settlement)) => Some(open_onchain(host, channel, settlement, &wallet).await?),
        (None, None) => None,
    };
    let config = SessionConfig {
        host_url: url.to_owned(),
        policy: policy(&host.trust)?.0,
        escrow_cap: record.as_ref().map_or(channel.escrow_cap, |r| r.escrow),
        state_dir: channel.state_dir.clone(),
        call_timeout: std::time::Duration::from_secs(channel.timeout),
    };
    let session = match &record {
        None => Session::open(config, wallet)
            .await
            .context("opening a session with the host")?,
        // A channel with signed calls goes on from its last co-signed state (and catches up with a
        // receipt the host logged but this tenant never received).
        Some(record) if record.local_state(&channel.state_dir)?.is_some() => {
            let session = Session::resume_from_store(config, wallet, &record.channel_id)
                .await
                .with_context(|| {
                    format!(
                        "resuming channel {} from {}",
                        record.channel_id,
                        channel.state_dir.display()
                    )
                })?;
            eprintln!(
                "resuming channel {} at turn {}",
                record.channel_id,
                session.state().state.turn
            );
            session
        }
        Some(record) => {
            let mut session = Session::open_with_salt(config, wallet, record.salt)
                .await
                .context("opening a session with the host")?;
            // The tenant may have left during its first call, after the host logged its receipt. A host
            // whose log cannot tell (an older agent) is not fatal: a host ahead refuses the next call
            // as stale_state anyway.
            match session.catch_up().await {
                Ok(_) => {}
                Err(TenantError::HostStatus { status }) => eprintln!(
                    "warning: the host's receipt log answered HTTP {status}; not checked for a receipt \
                     this tenant never received"
                ),
                Err(error) => {
                    return Err(error)
                        .context("fetching a receipt the host logged on this channel");
                }
            }
            session
        }
    };
    if let Some(settlement) = &channel.settlement {
        let (attested, settlement) = check_on_chain(channel, settlement, session.bundle()).await?;
        eprintln!(
            "host {} attested keyset {} for epoch {} under release {} on {}",
            attested.operator,
            attested.keyset_hash,
            attested.epoch,
            attested.release_id,
            settlement.address()
        );
        if let Some(record) = &record {
            if session.channel().id() != &record.channel_id {
                anyhow::bail!(
                    "--channel {}: the verified host ({}) and this wallet make channel {}; the record is for host {}",
                    record.channel_id,
                    session.bundle().keyset().host_account,
                    session.channel().id(),
                    record.host
                );
            }
            let status = settlement.channel(record.channel_id).await?.status;
            if status != dait_chain_client::evm::ChannelStatus::Open {
                anyhow::bail!(
                    "--channel {}: the channel is {status:?} on chain, not open",
                    record.channel_id
                );
            }
            eprintln!("using channel {} opened on chain", record.channel_id);
        }
    }
    Ok(session)
}

/// `--settlement` without `--channel`: verifies the host, checks it on chain, then opens a channel to its operator
/// account with `--escrow-cap` as the escrow (approved and locked by this wallet; 30 days, at most one million
/// calls, each at most the escrow) and records it in the state directory, where a later `--channel` finds it.
async fn open_onchain(
    host: &HostArgs,
    channel: &ChannelArgs,
    settlement: &str,
    wallet: &Wallet,
) -> anyhow::Result<chain::ChannelRecord> {
    let url = single_host(host)?;
    let (_, bundle) = crate::verify_host(url, &policy(&host.trust)?.0)
        .await
        .context("verifying the host before opening a channel to it")?;
    let (attested, _) = check_on_chain(channel, settlement, &bundle).await?;
    let rpc_url = channel
        .rpc_url
        .as_deref()
        .context("--settlement needs --rpc-url")?;
    let rpc = chain::Rpc {
        url: rpc_url,
        ca_file: channel.rpc_ca_file.as_deref(),
    };
    let address = parse_address("--settlement", settlement)?;
    let chain = chain::Chain::connect(&rpc, address, None, wallet)
        .await
        .with_context(|| format!("connecting to the settlement at {settlement} via {rpc_url}"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs();
    let (record, report) = chain
        .open(
            &channel.state_dir,
            attested.operator,
            channel.escrow_cap,
            1_000_000,
            channel.escrow_cap,
            now.saturating_add(30 * 86_400),
        )
        .await
        .context("opening a channel on chain")?;
    let txs: Vec<String> = report
        .txs
        .iter()
        .map(|tx| format!("{} {}", tx.name, tx.hash))
        .collect();
    eprintln!(
        "opened channel {} on chain to {} with escrow {} ({}); use it again with --channel {}, close it with \
         `dait-tenant channel close`",
        record.channel_id,
        record.host,
        record.escrow,
        txs.join(", "),
        record.channel_id
    );
    Ok(record)
}

/// The record of `--channel`: opened by this wallet on the `--settlement`.
fn onchain_record(
    channel: &ChannelArgs,
    id: &str,
    wallet: &Wallet,
) -> anyhow::Result<chain::ChannelRecord> {
    let id = parse_b256("--channel", id)?;
    let record = chain::ChannelRecord::load(&channel.state_dir, &id)?;
    if record.tenant != wallet.address() {
        anyhow::bail!(
            "--channel {id} was opened by {}, not by this wallet ({})",
            record.tenant,
            wallet.address()
        );
    }
    if let Some(settlement) = &channel.settlement
        && parse_address("--settlement", settlement)? != record.domain.settlement
    {
        anyhow::bail!(
            "--channel {id} was opened on the settlement {}, not {settlement}",
            record.domain.settlement
        );
    }
    Ok(record)
}

/// [`chain::check_bundle`] against `--settlement` over `--rpc-url`, read-only.
async fn check_on_chain(
    channel: &ChannelArgs,
    settlement: &str,
    bundle: &dait_verifier::bundle::VerifiedBundle,
) -> anyhow::Result<(chain::AttestedHost, dait_chain_client::evm::Settlement)> {
    let address = parse_address("--settlement", settlement)?;
    let url = channel
        .rpc_url
        .as_deref()
        .context("--settlement needs --rpc-url")?;
    let provider = match &channel.rpc_ca_file {
        Some(ca) => dait_chain_client::evm::connect_https(url, ca, None),
        None => dait_chain_client::evm::connect_http(url, None),
    }
    .with_context(|| format!("connecting to {url}"))?;
    let settlement = dait_chain_client::evm::Settlement::at(address, provider)
        .await
        .with_context(|| format!("the settlement at {address}"))?;
    let attested = chain::check_bundle(&settlement, bundle).await?;
    Ok((attested, settlement))
}

/// Verifies every `--host` and opens a channel with the first `n` that pass, one wallet for all.
async fn open_redundant(
    host: &HostArgs,
    channel: &ChannelArgs,
    n: usize,
) -> anyhow::Result<Redundant> {
    if host.host.len() < n {
        anyhow::bail!(
            "--redundant {n} needs at least {n} --host, got {}",
            host.host.len()
        );
    }
    check_pinned(&host.trust)?;
    if channel.settlement.is_some() {
        anyhow::bail!("--settlement is not supported with --redundant yet");
    }
    let policy = policy(&host.trust)?.0;
    let mut hosts = Vec::new();
    for url in &host.host {
        let config = SessionConfig {
            host_url: url.clone(),
            policy: policy.clone(),
            escrow_cap: channel.escrow_cap,
            state_dir: redundant::host_state_dir(&channel.state_dir, url),
            call_timeout: std::time::Duration::from_secs(channel.timeout),
        };
        hosts.push((config, Wallet::load_or_create(&channel.wallet_key)?));
    }
    Redundant::open(hosts, n, channel.state_dir.clone())
        .await
        .context("opening sessions with the hosts")
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Channel { command } => channel(command).await,
        Command::Verify { host, collateral } => {
            let (policy, release) = policy(&host.trust)?;
            let collateral = collateral
                .map(|path| {
                    TdxCollateral::load(&path)
                        .map(|c| c.to_proto())
                        .with_context(|| format!("--collateral {}", path.display()))
                })
                .transpose()?;
            let (_, bundle) =
                verify_host_with_collateral(single_host(&host)?, &policy, collateral.as_ref())
                    .await
                    .context("verifying the host")?;
            let out = serde_json::json!({
                "verified": true,
                "platform": match bundle.platform() {
                    Platform::Simulated => "simulated",
                    Platform::Snp => "snp",
                    Platform::Tdx => "tdx",
                    _ => "other",
                },
                "keyset_hash": bundle.keyset_hash().to_string(),
                "host_key_id": bundle.host_key_id().to_string(),
                "host_account": bundle.keyset().host_account.to_string(),
                "receipt_key": format!("0x{}", hex::encode(bundle.receipt_key())),
                "tls_spki": format!("0x{}", hex::encode(bundle.tls_spki())),
                "chain_id": bundle.domain().chain_id,
                "settlement": bundle.domain().settlement.to_string(),
                "report_data": format!("0x{}", hex::encode(bundle.report_data())),
                // The reference release whose measurements were checked; null: the default policy.
                "reference": release,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
        Command::Chat {
            host,
            channel,
            model,
            max_tokens,
            stream,
            replayable,
            system,
            prompt,
        } => {
            let mut session = open(&host, &channel).await?;
            let mut messages = Vec::new();
            if let Some(system) = system {
                messages.push(serde_json::json!({"role": "system", "content": system}));
            }
            messages.push(serde_json::json!({"role": "user", "content": prompt}));
            let body = serde_json::to_vec(&serde_json::json!({
                "model": model,
                "messages": messages,
                "max_tokens": max_tokens,
                "temperature": 0,
                "stream": stream,
            }))?;
            let options = if replayable {
                CallOptions::replayable()
            } else {
                CallOptions::default()
            };
            let outcome = if stream {
                let mut call = session
                    .call_stream_with_options("/v1/chat/completions", body, options)
                    .await?;
                let mut done = None;
                while let Some(item) = call.next().await {
                    if let StreamItem::Done(outcome) = item? {
                        done = Some(*outcome);
                    }
                }
                let outcome = done.ok_or(TenantError::StreamTruncated)?;
                let mut normalizer = dait_chain_client::StreamNormalizer::new();
                normalizer.push(&outcome.body)?;
                println!("{}", normalizer.finish()?.text());
                outcome
            } else {
                let outcome = session
                    .call_with_options("/v1/chat/completions", body, options)
                    .await?;
                let response = dait_chain_client::NormalizedResponse::from_body(&outcome.body)?;
                println!("{}", response.text());
                outcome
            };
            let receipt = proxy::receipt_json(&outcome.receipt, &outcome.receipt_b64);
            let state = proxy::state_json(&outcome.state);
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({"receipt": receipt, "state": state})
                )?
            );
            Ok(())
        }
        Command::Proxy {
            host,
            channel,
            listen,
            redundant,
        } => {
            let bind = || async {
                tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("binding {listen}"))
            };
            let handle = match redundant {
                None => {
                    let session = open(&host, &channel).await?;
                    proxy::spawn(bind().await?, session)?
                }
                Some(n) => {
                    let n = usize::try_from(n).context("--redundant")?;
                    let redundant = open_redundant(&host, &channel, n).await?;
                    eprintln!(
                        "redundant mode: serving from {}",
                        redundant.hosts().join(", ")
                    );
                    proxy::spawn_redundant(bind().await?, redundant).await?
                }
            };
            println!(
                "dait-tenant proxy listening on http://{}",
                handle.local_addr()
            );
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = wait_term() => {}
            }
            handle.shutdown().await;
            Ok(())
        }
    }
}

#[cfg(unix)]
async fn wait_term() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            term.recv().await;
        }
        Err(_) => std::future::pending::<()>().await,
    }
}

#[cfg(not(unix))]
async fn wait_term() {
    std::future::pending::<()>().await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<Cli, clap::Error> {
        let mut args = vec![
            "dait-tenant",
            "proxy",
            "--wallet-key",
            "w.key",
            "--state-dir",
            "state",
        ];
        args.extend_from_slice(extra);
        Cli::try_parse_from(args)
    }

    #[test]
    fn proxy_takes_several_hosts_and_a_redundancy_of_2_to_16() {
        let cli = parse(&[
            "--host",
            "https://a:1",
            "--host",
            "https://b:2",
            "--redundant",
            "2",
        ])
        .unwrap();
        let Command::Proxy {
            host, redundant, ..
        } = cli.command
        else {
            panic!("not the proxy command");
        };
        assert_eq!(host.host, ["https://a:1", "https://b:2"]);
        assert_eq!(redundant, Some(2));
        assert!(single_host(&host).is_err(), "two hosts for one channel");
        for n in ["1", "17"] {
            assert!(
                parse(&["--host", "https://a:1", "--redundant", n]).is_err(),
                "--redundant {n}"
            );
        }
    }

    #[test]
    fn tpm_ak_name_pins_the_key_and_requires_a_quote() {
        let cli = parse(&["--host", "https://a:1", "--tpm-ak-name", "0x000bff"]).unwrap();
        let Command::Proxy { host, .. } = cli.command else {
            panic!("not the proxy command");
        };
        let (pinned, _) = policy(&host.trust).unwrap();
        assert_eq!(pinned.tpm.ak_name, Some(vec![0x00, 0x0b, 0xff]));
        assert!(pinned.tpm.required);
        let cli = parse(&["--host", "https://a:1", "--tpm-ak-name", "zz"]).unwrap();
        let Command::Proxy { host, .. } = cli.command else {
            panic!("not the proxy command");
        };
        assert!(policy(&host.trust).is_err());
    }

    #[test]
    fn close_takes_a_host_url_with_policy_flags_or_a_final_state_file_not_both() {
        let base = [
            "dait-tenant",
            "channel",
            "close",
            "--channel",
            "0x01",
            "--rpc-url",
            "http://127.0.0.1:8545",
            "--settlement",
            "0x02",
            "--wallet-key",
            "w.key",
            "--state-dir",
            "state",
        ];
        let with = |extra: &[&str]| {
            let mut args = base.to_vec();
            args.extend_from_slice(extra);
            Cli::try_parse_from(args)
        };
        let cli = with(&[
            "--host-url",
            "https://h:1",
            "--policy",
            "ref.json",
            "--min-gpus",
            "2",
        ])
        .unwrap();
        let Command::Channel {
            command: ChannelCommand::Close {
                host_url, trust, ..
            },
        } = cli.command
        else {
            panic!("not channel close");
        };
        assert_eq!(host_url.as_deref(), Some("https://h:1"));
        assert_eq!(trust.min_gpus, 2);
        assert!(with(&["--final-state", "f.b64"]).is_ok());
        assert!(with(&["--host-url", "https://h:1", "--final-state", "f.b64"]).is_err());
        assert!(with(&["--host-url", "https://h:1", "--host-key-id", "0x03"]).is_err());
    }

    #[tokio::test]
    async fn redundant_mode_needs_at_least_n_hosts_before_contacting_any() {
        let cli = parse(&[
            "--host",
            "https://127.0.0.1:1",
            "--host",
            "https://127.0.0.1:2",
            "--redundant",
            "3",
            "--dangerous-any-measurement",
        ])
        .unwrap();
        let Command::Proxy { host, channel, .. } = cli.command else {
            panic!("not the proxy command");
        };
        let error = open_redundant(&host, &channel, 3).await.unwrap_err();
        assert!(
            format!("{error:#}").contains("needs at least 3 --host, got 2"),
            "{error:#}"
        );
    }
}
