//! The `dait-audit` command line.
//!
//! `dait-audit replay --receipt FILE --request FILE --host-key FILE --engine URL --weights FILE --engine-build ID`
//! prints a JSON verdict on stdout (pretty-printed unless `--json`, which prints it on one line).
//!
//! Exit codes: 0 = match; 1 = mismatch or refused; 2 = usage error, an input that cannot be read or decoded,
//! or an engine that cannot be used (verdict `error`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use dait_chain_client::Address;

use crate::error::Verdict;
use crate::inputs::{decode_receipt, parse_host_key};
use crate::replay::{Audit, replay};

/// The `dait-audit` arguments.
#[derive(Parser)]
#[command(
    name = "dait-audit",
    version,
    about = "Replay a dait receipt bit for bit on an engine of its build and weights"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a signed receipt and replay its disclosed request; print the verdict.
    Replay(ReplayArgs),
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// The signed receipt: base64url (one line of dait-tenant's receipts.b64), hex, protobuf bytes, or the
    /// JSON `dait-tenant chat` prints.
    #[arg(long, value_name = "FILE")]
    receipt: PathBuf,
    /// The disclosed plaintext request: the inner request body, byte for byte.
    #[arg(long, value_name = "FILE")]
    request: PathBuf,
    /// The host's receipt public key: hex SEC1, or the JSON `dait-tenant verify` prints (which also names
    /// the chain id and settlement address).
    #[arg(long, value_name = "FILE")]
    host_key: PathBuf,
    /// The EIP-712 chain id, when the host key file does not name it (default: the agent's, 31337).
    #[arg(long)]
    chain_id: Option<u64>,
    /// The EIP-712 settlement address, when the host key file does not name it (default: zero).
    #[arg(long, value_parser = parse_address)]
    settlement: Option<Address>,
    /// The replay engine's base URL (`http://host:port`), OpenAI-compatible.
    #[arg(long, env = "DAIT_ENGINE_URL")]
    engine: String,
    /// The weights file the engine serves; its SHA-256 must be the receipt's weight_hash.
    #[arg(long, value_name = "FILE")]
    weights: PathBuf,
    /// The engine's build id; its SHA-256 must be the receipt's engine_build.
    #[arg(long, value_name = "ID", allow_hyphen_values = true)]
    engine_build: String,
    /// Seconds the replay may take (the engine's model list and the replayed call).
    #[arg(long, value_name = "SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    timeout: u64,
    /// Print the verdict on one line.
    #[arg(long)]
    json: bool,
}

fn parse_address(s: &str) -> Result<Address, String> {
    Address::from_hex(s).ok_or_else(|| "expected 0x and 40 hex digits".to_owned())
}

/// A usage or input error: printed on stderr, exit 2.
fn input_error(what: &str, path: &Path, error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {what} {}: {error}", path.display());
    ExitCode::from(2)
}

/// Runs the command line on a new tokio runtime.
pub fn run(cli: Cli) -> ExitCode {
    let Command::Replay(args) = cli.command;
    let receipt = match std::fs::read(&args.receipt) {
        Ok(bytes) => match decode_receipt(&bytes) {
            Ok(r) => r,
            Err(e) => return input_error("--receipt", &args.receipt, &e),
        },
        Err(e) => return input_error("--receipt", &args.receipt, &e),
    };
    let request = match std::fs::read(&args.request) {
        Ok(bytes) => bytes,
        Err(e) => return input_error("--request", &args.request, &e),
    };
    let host_key = match std::fs::read_to_string(&args.host_key) {
        Ok(text) => match parse_host_key(&text, args.chain_id, args.settlement) {
            Ok(k) => k,
            Err(e) => return input_error("--host-key", &args.host_key, &e),
        },
        Err(e) => return input_error("--host-key", &args.host_key, &e),
    };
    let audit = Audit {
        receipt,
        request,
        host_key,
        weights: args.weights,
        engine_build: args.engine_build,
        engine_url: args.engine,
        timeout: Duration::from_secs(args.timeout),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let report = runtime.block_on(replay(&audit));
    let json = report.to_json();
    let text = if args.json {
        json.to_string()
    } else {
        serde_json::to_string_pretty(&json).unwrap_or_else(|_| json.to_string())
    };
    println!("{text}");
    match report.verdict() {
        Verdict::Match => ExitCode::SUCCESS,
        Verdict::Mismatch | Verdict::Refused => ExitCode::from(1),
        _ => ExitCode::from(2),
    }
}
