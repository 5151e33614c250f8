//! [`Token`]: the ERC-20 a settlement is denominated in.

use alloy::primitives::U256;
use alloy::providers::{DynProvider, Provider};

use super::bindings::TestToken::{self, TestTokenInstance};
use super::{EvmError, Outcome, RECEIPT_TIMEOUT};
use crate::{Address, B256};

/// An ERC-20 token: `approve`, `balanceOf` and `allowance` of any ERC-20, plus `mint` and the deployment of the
/// committed test token (`contracts/test/TestToken.sol`, anyone can mint), for tests and the demo.
#[derive(Clone, Debug)]
pub struct Token<P = DynProvider> {
    contract: TestTokenInstance<P>,
}

impl<P: Provider> Token<P> {
    /// The token at `address`.
    pub fn at(address: Address, provider: P) -> Self {
        Self {
            contract: TestToken::new(address.into(), provider),
        }
    }

    /// Deploys the committed test token (`contracts/out/TestToken.json`) from the provider's signer.
    pub async fn deploy_test_token(provider: P) -> Result<Self, EvmError> {
        Ok(Self {
            contract: TestToken::deploy(provider).await?,
        })
    }

    /// The token's address.
    pub fn address(&self) -> Address {
        Address::from(*self.contract.address())
    }

    async fn outcome(
        &self,
        receipt: alloy::rpc::types::TransactionReceipt,
    ) -> Result<Outcome, EvmError> {
        let tx_hash = B256::from(receipt.transaction_hash);
        let block_number = receipt.block_number.unwrap_or_default();
        if !receipt.status() {
            return Err(EvmError::TransactionFailed {
                tx_hash,
                block_number,
            });
        }
        Ok(Outcome {
            tx_hash,
            block_number,
            gas_used: receipt.gas_used,
            events: Vec::new(),
        })
    }

    /// `approve(spender, amount)` (`amount` `None`: unlimited).
    pub async fn approve(
        &self,
        spender: Address,
        amount: Option<u128>,
    ) -> Result<Outcome, EvmError> {
        let amount = amount.map_or(U256::MAX, U256::from);
        let call = self.contract.approve(spender.into(), amount);
        call.call_raw().await?;
        let receipt = call
            .send()
            .await?
            .with_timeout(Some(RECEIPT_TIMEOUT))
            .get_receipt()
            .await?;
        self.outcome(receipt).await
    }

    /// `mint(to, amount)` (test token only).
    pub async fn mint(&self, to: Address, amount: u128) -> Result<Outcome, EvmError> {
        let call = self.contract.mint(to.into(), U256::from(amount));
        call.call_raw().await?;
        let receipt = call
            .send()
            .await?
            .with_timeout(Some(RECEIPT_TIMEOUT))
            .get_receipt()
            .await?;
        self.outcome(receipt).await
    }

    /// `balanceOf(owner)`.
    pub async fn balance_of(&self, owner: Address) -> Result<U256, EvmError> {
        Ok(self.contract.balanceOf(owner.into()).call().await?)
    }

    /// `allowance(owner, spender)`.
    pub async fn allowance(&self, owner: Address, spender: Address) -> Result<U256, EvmError> {
        Ok(self
            .contract
            .allowance(owner.into(), spender.into())
            .call()
            .await?)
    }
}
