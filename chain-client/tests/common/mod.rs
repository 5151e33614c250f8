//! What the EVM client's tests on anvil share: the deployment parameters, the dev accounts' roles, the JSON
//! vectors and the chain's clock.
#![allow(dead_code, clippy::unwrap_used)]

use std::error::Error;
use std::path::PathBuf;

use alloy::eips::BlockNumberOrTag;
use alloy::providers::Provider as _;
use dait_chain_client::evm::{Params, Settlement};
use dait_chain_client::{Address, B256};
use serde_json::Value;

pub type TestResult = Result<(), Box<dyn Error>>;

pub const E18: u128 = 1_000_000_000_000_000_000;
pub const DAY: u64 = 86_400;
/// The vectors' host receipt key, which the vectors' keyset attests.
pub const HOST_SECRET: [u8; 32] = [0x11; 32];
/// Roles of anvil's dev accounts (`Anvil::DEV_KEYS`): the host operator deploys the settlement at nonce 0 (the
/// vectors' `settlement` address and `host_account`).
pub const HOST_OP: usize = 0;
pub const TOKEN_DEPLOYER: usize = 1;
pub const OWNER: usize = 2;
pub const COMMIT_REVEAL_WINDOW: u64 = 5;
pub const REVEAL_WINDOW: u64 = 64;
pub const SAMPLE_SIZE: u32 = 8;

/// The deployment parameters of every test.
pub fn params(token: Address, owner: Address) -> Params {
    Params {
        token,
        owner,
        stake_per_gpu: 100 * E18,
        unbonding_delay: 7 * DAY,
        challenge_window: DAY,
        release_delay: 3600,
        epoch_nonce_rotation_blocks: 100,
        commit_reveal_window: COMMIT_REVEAL_WINDOW,
        reveal_window: REVEAL_WINDOW,
        sample_size: SAMPLE_SIZE,
    }
}

/// The JSON vector `tests/vectors/<name>.json`.
pub fn load(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/vectors/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A vector's hex string as bytes.
pub fn unhex(v: &Value) -> Vec<u8> {
    let s = v.as_str().unwrap();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A vector's 32-byte hex string.
pub fn b256(v: &Value) -> B256 {
    B256::from_slice(&unhex(v)).unwrap()
}

/// The latest block's timestamp.
pub async fn now(s: &Settlement) -> Result<u64, Box<dyn Error>> {
    let block = s
        .provider()
        .get_block_by_number(BlockNumberOrTag::Latest)
        .await?;
    Ok(block.ok_or("no latest block")?.header.timestamp)
}
