//! [`EvmError`], the one error type of the EVM client, and [`Revert`], a contract revert decoded into the
//! contract's own custom error.

use alloy::contract::Error as ContractError;
use alloy::primitives::Bytes;
use alloy::providers::PendingTransactionError;
use alloy::sol_types::SolInterface;
use alloy::transports::TransportError;

use super::bindings::DaitSettlement::DaitSettlementErrors;
use super::bindings::TestToken::TestTokenErrors;
use crate::B256;

/// What went wrong talking to the settlement contract.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvmError {
    /// Another failure of the contract layer (ABI decoding of a result, a deployment without an address).
    #[error("contract call")]
    Contract(#[source] ContractError),
    /// The HTTP client could not be built.
    #[error("building the HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// The account secret is not a valid secp256k1 key.
    #[error("the account secret is not a valid secp256k1 key")]
    Key,
    /// A transaction receipt lacks the event the function always emits (a different contract at the address).
    #[error("the receipt of {tx_hash} has no {event} event of the settlement contract")]
    MissingEvent {
        /// The event's name.
        event: &'static str,
        /// The transaction's hash.
        tx_hash: B256,
    },
    /// The address holds no contract code.
    #[error("no contract at {address}")]
    NoContract {
        /// The address.
        address: crate::Address,
    },
    /// The CA file holds no certificate usable as a trust anchor.
    #[error("the CA file {path} holds no usable certificate")]
    NoRoots {
        /// The file.
        path: std::path::PathBuf,
    },
    /// A value does not fit the contract's parameter type (e.g. `maxPerCall` is a `uint96`).
    #[error("{field} does not fit the contract's {ty}")]
    OutOfRange {
        /// The parameter.
        field: &'static str,
        /// Its Solidity type.
        ty: &'static str,
    },
    /// Waiting for a sent transaction failed (timeout, RPC).
    #[error("waiting for the transaction's receipt")]
    Pending(#[source] PendingTransactionError),
    /// The contract declined: the call (or the gas estimate of a transaction) reverted with one of the custom
    /// errors of the settlement contract or the token. Nothing was sent.
    #[error("the contract reverted with {}", .0.name())]
    Reverted(Revert),
    /// The CA file does not read as PEM certificates.
    #[error("reading the CA file {path}")]
    Roots {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// JSON-RPC failed (connection, HTTP status, a node error other than a revert).
    #[error("JSON-RPC")]
    Rpc(#[source] TransportError),
    /// The TLS configuration was refused.
    #[error("TLS configuration")]
    Tls(#[source] rustls::Error),
    /// The transaction was mined but failed (its gas estimate had passed: the chain changed in between).
    #[error("transaction {tx_hash} was mined in block {block_number} but reverted")]
    TransactionFailed {
        /// The transaction's hash.
        tx_hash: B256,
        /// The block it was mined in.
        block_number: u64,
    },
    /// A log of the settlement contract does not decode as any of its events.
    #[error("a log of the settlement contract does not decode as one of its events")]
    UndecodableLog(#[source] alloy::sol_types::Error),
    /// The call reverted with data that is none of the contracts' custom errors (empty for a bare `revert()`, or
    /// a `Panic(uint256)`/`Error(string)` from elsewhere, e.g. a token other than the test token).
    #[error("the call reverted without a known custom error (revert data {data})")]
    UnknownRevert {
        /// The raw revert data.
        data: Bytes,
    },
    /// The RPC URL does not parse (or, for [`super::connect_https`], is not `https://`).
    #[error("the RPC URL does not parse or has the wrong scheme")]
    Url,
}

impl EvmError {
    /// The custom error's name when the contract reverted with one (`"StaleState"`, `"NotOwner"`, …).
    pub fn revert_name(&self) -> Option<&'static str> {
        match self {
            Self::Reverted(r) => Some(r.name()),
            _ => None,
        }
    }

    /// The settlement contract's custom error, when it reverted with one.
    pub fn settlement_revert(&self) -> Option<&DaitSettlementErrors> {
        match self {
            Self::Reverted(Revert::Settlement(e)) => Some(e),
            _ => None,
        }
    }
}

impl From<ContractError> for EvmError {
    fn from(e: ContractError) -> Self {
        if let Some(data) = e.as_revert_data() {
            return match Revert::decode(&data) {
                Some(r) => Self::Reverted(r),
                None => Self::UnknownRevert { data },
            };
        }
        match e {
            ContractError::TransportError(t) => Self::Rpc(t),
            ContractError::PendingTransactionError(p) => Self::Pending(p),
            other => Self::Contract(other),
        }
    }
}

impl From<TransportError> for EvmError {
    fn from(e: TransportError) -> Self {
        Self::from(ContractError::TransportError(e))
    }
}

impl From<PendingTransactionError> for EvmError {
    fn from(e: PendingTransactionError) -> Self {
        Self::Pending(e)
    }
}

/// A revert decoded into the custom error of the contract that raised it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revert {
    /// One of the settlement contract's custom errors.
    Settlement(DaitSettlementErrors),
    /// One of the test token's custom errors (`InsufficientAllowance`, `InsufficientBalance`).
    Token(TestTokenErrors),
}

impl Revert {
    /// Decodes revert data: the settlement's errors first, then the token's.
    pub fn decode(data: &[u8]) -> Option<Self> {
        if let Ok(e) = DaitSettlementErrors::abi_decode(data) {
            return Some(Self::Settlement(e));
        }
        TestTokenErrors::abi_decode(data).ok().map(Self::Token)
    }

    /// The custom error's name as the contract declares it.
    pub fn name(&self) -> &'static str {
        let name = match self {
            Self::Settlement(e) => DaitSettlementErrors::name_by_selector(e.selector()),
            Self::Token(e) => TestTokenErrors::name_by_selector(e.selector()),
        };
        // A decoded error always has a known selector; the fallback is never taken.
        name.unwrap_or("unknown")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::sol_types::SolError;

    use crate::evm::bindings::DaitSettlement;

    #[test]
    fn decodes_custom_errors_by_name() {
        let data = DaitSettlement::StaleState {}.abi_encode();
        let r = Revert::decode(&data);
        assert!(matches!(
            r,
            Some(Revert::Settlement(DaitSettlementErrors::StaleState(_)))
        ));
        assert_eq!(r.map(|r| r.name()), Some("StaleState"));
        let data = DaitSettlement::WrongEpoch { current: 7 }.abi_encode();
        let r = Revert::decode(&data);
        assert_eq!(r.as_ref().map(Revert::name), Some("WrongEpoch"));
        assert!(matches!(
            r,
            Some(Revert::Settlement(DaitSettlementErrors::WrongEpoch(
                DaitSettlement::WrongEpoch { current: 7 }
            )))
        ));
        let data = crate::evm::bindings::TestToken::InsufficientBalance {}.abi_encode();
        assert_eq!(
            Revert::decode(&data).map(|r| r.name()),
            Some("InsufficientBalance")
        );
        assert_eq!(Revert::decode(&[0xde, 0xad, 0xbe, 0xef]), None);
        assert_eq!(Revert::decode(&[]), None);
    }
}
