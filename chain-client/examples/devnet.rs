//! A local settlement chain for the demo (`scripts/demo.sh`): starts anvil (Osaka) on 127.0.0.1 with the
//! project's harness, deploys the test token and the settlement contract, publishes a release and lets its delay
//! pass, funds the operator (tokens for its stake) and the tenant (ether and tokens), prints one JSON line with
//! what a host and a tenant need, and keeps the chain running until SIGINT or SIGTERM, when anvil is stopped.
//!
//! ```text
//! cargo run -p dait-chain-client --features evm --example devnet -- OPERATOR_KEY TENANT_KEY
//! ```
//! `OPERATOR_KEY` is written with anvil's second development key (the operator account); `TENANT_KEY` is the
//! tenant's wallet file (hex secp256k1, as `dait-tenant --wallet-key` reads it), created with a fresh key when
//! missing. Neither may be used anywhere but a local chain.
#![allow(clippy::print_stdout)]

use std::error::Error;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use dait_chain_client::B256;
use dait_chain_client::evm::anvil::{Anvil, CHAIN_ID, Hardfork};
use dait_chain_client::evm::{Params, Settlement, Token, account_address, connect_http};
use sha2::Digest as _;

const E18: u128 = 1_000_000_000_000_000_000;
const DAY: u64 = 86_400;
const RELEASE_DELAY: u64 = 3600;
/// The release the demo's host attests under: the demo's own label, not a published image release.
const RELEASE_LABEL: &[u8] = b"dait demo release";

fn write_key(path: &Path, key: &[u8; 32]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    writeln!(f, "{hex}")
}

fn read_or_create_key(path: &Path) -> Result<[u8; 32], Box<dyn Error>> {
    if let Ok(text) = std::fs::read_to_string(path) {
        let text = text.trim().trim_start_matches("0x");
        if text.len() != 64 {
            return Err(format!("{}: not 64 hex characters", path.display()).into());
        }
        let mut key = [0u8; 32];
        for (i, b) in key.iter_mut().enumerate() {
            *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)?;
        }
        return Ok(key);
    }
    let key: [u8; 32] = rand_key()?;
    write_key(path, &key)?;
    Ok(key)
}

fn rand_key() -> Result<[u8; 32], Box<dyn Error>> {
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut key))?;
    Ok(key)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, operator_key, tenant_key] = args.as_slice() else {
        return Err("usage: devnet OPERATOR_KEY TENANT_KEY".into());
    };
    let anvil = Anvil::start(Hardfork::Osaka)?;
    let deployer = connect_http(anvil.url(), Some(&Anvil::DEV_KEYS[0]))?;
    let token = Token::deploy_test_token(deployer.clone()).await?;
    let owner_key = Anvil::DEV_KEYS[2];
    let settlement = Settlement::deploy(
        deployer,
        &Params {
            token: token.address(),
            owner: account_address(&owner_key)?,
            stake_per_gpu: 100 * E18,
            unbonding_delay: 7 * DAY,
            challenge_window: DAY,
            release_delay: RELEASE_DELAY,
            epoch_nonce_rotation_blocks: 1000,
            commit_reveal_window: 2,
            reveal_window: 256,
            sample_size: 2,
        },
    )
    .await?;

    write_key(Path::new(operator_key), &Anvil::DEV_KEYS[1])?;
    let operator = account_address(&Anvil::DEV_KEYS[1])?;
    let tenant_secret = read_or_create_key(Path::new(tenant_key))?;
    let tenant = account_address(&tenant_secret)?;
    token.mint(operator, 1_000 * E18).await?;
    token.mint(tenant, 100 * E18).await?;
    anvil.set_balance(tenant, 100 * E18)?;

    let release = B256(sha2::Sha256::digest(RELEASE_LABEL).into());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let as_owner = Settlement::at(
        settlement.address(),
        connect_http(anvil.url(), Some(&owner_key))?,
    )
    .await?;
    as_owner
        .publish_release(release, B256([0; 32]), now, now + 365 * DAY)
        .await?;
    anvil.increase_time(RELEASE_DELAY + 1)?;
    settlement.check_release(release).await?;

    println!(
        "{}",
        serde_json::json!({
            "rpc_url": anvil.url(),
            "chain_id": CHAIN_ID,
            "settlement": settlement.address().to_string(),
            "token": token.address().to_string(),
            "release_id": release.to_string(),
            "operator": operator.to_string(),
            "tenant": tenant.to_string(),
        })
    );
    std::io::stdout().flush()?;

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    drop(anvil);
    Ok(())
}
