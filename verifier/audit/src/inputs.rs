//! Reading what the auditor is given: the signed receipt (in any form dait-tenant prints or stores it) and the
//! host's receipt key (hex, or the JSON `dait-tenant verify` prints, which also names the EIP-712 domain).

use dait_chain_client::{
    Address, DecodeError, Domain, HostVerifyingKey, SignedReceipt, WireMessage as _,
};
use serde_json::Value;

/// The agent's default EIP-712 chain id (`--chain-id`), used when neither the key file nor the caller names one.
pub const DEFAULT_CHAIN_ID: u64 = 31337;

/// Why an input could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The domain given disagrees with the one in the key file.
    #[error("{field} given ({given}) differs from the key file's ({file})")]
    DomainConflict {
        /// `chain_id` or `settlement`.
        field: &'static str,
        /// The value given.
        given: String,
        /// The key file's value.
        file: String,
    },
    /// The key file holds neither hex nor a JSON object with `receipt_key`, or a field has the wrong form.
    #[error("the host key file is not hex or dait-tenant verify JSON ({0})")]
    KeyForm(&'static str),
    /// The key is not a P-256 point.
    #[error("the host key is not a P-256 public key")]
    Key(#[source] dait_chain_client::SignatureError),
    /// The receipt file holds more than one receipt (a `receipts.b64` log): pick one line.
    #[error("the receipt file holds {0} receipts; give one (one line of receipts.b64)")]
    ManyReceipts(usize),
    /// The receipt does not decode.
    #[error("the receipt does not decode")]
    Receipt(#[source] DecodeError),
    /// A JSON receipt file has no `signed_receipt` string.
    #[error("the JSON receipt file has no signed_receipt field")]
    ReceiptJson,
}

/// Decodes a signed receipt from what a file holds: base64url (the `x-dait-receipt` header form; one line of
/// dait-tenant's `receipts.b64`, or a dispute record's `receipt.b64`), hex (optional `0x`), the JSON
/// `dait-tenant chat` prints (its `receipt.signed_receipt`), or the protobuf bytes themselves.
pub fn decode_receipt(bytes: &[u8]) -> Result<SignedReceipt, InputError> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return SignedReceipt::decode(bytes).map_err(InputError::Receipt);
    };
    let text = text.trim();
    if text.starts_with('{') {
        let v: Value = serde_json::from_str(text).map_err(|_| InputError::ReceiptJson)?;
        let b64 = v
            .pointer("/receipt/signed_receipt")
            .or_else(|| v.get("signed_receipt"))
            .and_then(Value::as_str)
            .ok_or(InputError::ReceiptJson)?;
        return SignedReceipt::from_header_value(b64).map_err(InputError::Receipt);
    }
    let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
    if lines > 1 {
        return Err(InputError::ManyReceipts(lines));
    }
    let hex_text = text.strip_prefix("0x").unwrap_or(text);
    if let Ok(raw) = hex::decode(hex_text) {
        return SignedReceipt::decode(&raw).map_err(InputError::Receipt);
    }
    match SignedReceipt::from_header_value(text) {
        Ok(r) => Ok(r),
        // Not text after all: protobuf bytes that happen to be UTF-8.
        Err(e) => SignedReceipt::decode(bytes).map_err(|_| InputError::Receipt(e)),
    }
}

/// The host's receipt key and the EIP-712 domain its receipts are signed under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostKey {
    /// The receipt verifying key.
    pub key: HostVerifyingKey,
    /// The domain.
    pub domain: Domain,
}

/// Reads the host key from a file's text: hex of the SEC1 point (optional `0x`), or the JSON that
/// `dait-tenant verify` prints (`receipt_key`, and `chain_id` / `settlement`, which give the domain).
/// `chain_id` / `settlement` given here fill in what the file does not name and must agree with what it does;
/// the rest is the agent's defaults ([`DEFAULT_CHAIN_ID`], the zero address).
pub fn parse_host_key(
    text: &str,
    chain_id: Option<u64>,
    settlement: Option<Address>,
) -> Result<HostKey, InputError> {
    let text = text.trim();
    let (key_hex, file_chain, file_settlement) = if text.starts_with('{') {
        let v: Value =
            serde_json::from_str(text).map_err(|_| InputError::KeyForm("invalid JSON"))?;
        let key = v
            .get("receipt_key")
            .and_then(Value::as_str)
            .ok_or(InputError::KeyForm("no receipt_key string"))?
            .to_owned();
        let chain = match v.get("chain_id") {
            None => None,
            Some(c) => Some(
                c.as_u64()
                    .ok_or(InputError::KeyForm("chain_id is not an integer"))?,
            ),
        };
        let settlement = match v.get("settlement") {
            None => None,
            Some(s) => Some(
                s.as_str()
                    .and_then(Address::from_hex)
                    .ok_or(InputError::KeyForm("settlement is not an address"))?,
            ),
        };
        (key, chain, settlement)
    } else {
        (text.to_owned(), None, None)
    };
    let raw = hex::decode(key_hex.strip_prefix("0x").unwrap_or(&key_hex))
        .map_err(|_| InputError::KeyForm("the key is not hex"))?;
    let key = HostVerifyingKey::from_sec1(&raw).map_err(InputError::Key)?;
    let chain_id = agree("chain_id", chain_id, file_chain)?.unwrap_or(DEFAULT_CHAIN_ID);
    let settlement = agree("settlement", settlement, file_settlement)?.unwrap_or(Address::ZERO);
    Ok(HostKey {
        key,
        domain: Domain {
            chain_id,
            settlement,
        },
    })
}

fn agree<T: PartialEq + std::fmt::Display>(
    field: &'static str,
    given: Option<T>,
    file: Option<T>,
) -> Result<Option<T>, InputError> {
    match (given, file) {
        (Some(g), Some(f)) if g != f => Err(InputError::DomainConflict {
            field,
            given: g.to_string(),
            file: f.to_string(),
        }),
        (g, f) => Ok(f.or(g)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use dait_chain_client::{B256, HostSigningKey, Receipt};

    fn signed() -> SignedReceipt {
        let key = HostSigningKey::from_bytes(&[3; 32]).unwrap();
        let receipt = Receipt {
            version: 1,
            channel_id: B256([1; 32]),
            call_seq: 1,
            host_key_id: key.verifying_key().key_id(),
            keyset_hash: B256([2; 32]),
            model_id: "m".into(),
            weight_hash: B256([3; 32]),
            request_hash: B256([4; 32]),
            response_hash: B256([5; 32]),
            request_ct_hash: B256([6; 32]),
            response_ct_hash: B256::ZERO,
            tokens_in: 1,
            tokens_out: 2,
            price_in: 0,
            price_out: 0,
            amount: 0,
            cumulative: 0,
            prev_receipt_hash: B256::ZERO,
            timestamp: 1,
            seed: 0,
            engine_build: B256([7; 32]),
            deterministic: true,
        };
        key.sign_receipt(
            receipt,
            &Domain {
                chain_id: DEFAULT_CHAIN_ID,
                settlement: Address::ZERO,
            },
        )
    }

    #[test]
    fn every_receipt_form_decodes() {
        let r = signed();
        let b64 = r.to_header_value();
        let forms = [
            r.encode(),
            format!("{b64}\n").into_bytes(),
            hex::encode(r.encode()).into_bytes(),
            format!("0x{}", hex::encode(r.encode())).into_bytes(),
            format!(r#"{{"receipt":{{"signed_receipt":"{b64}"}},"state":{{}}}}"#).into_bytes(),
        ];
        for form in forms {
            assert_eq!(decode_receipt(&form).unwrap(), r);
        }
        assert!(matches!(
            decode_receipt(format!("{b64}\n{b64}\n").as_bytes()),
            Err(InputError::ManyReceipts(2))
        ));
        assert!(matches!(
            decode_receipt(b"not a receipt"),
            Err(InputError::Receipt(_))
        ));
        assert!(matches!(
            decode_receipt(b"{\"x\":1}"),
            Err(InputError::ReceiptJson)
        ));
    }

    #[test]
    fn host_key_forms_and_domain() {
        let key = HostSigningKey::from_bytes(&[3; 32])
            .unwrap()
            .verifying_key();
        let hex_key = format!("0x{}\n", hex::encode(key.to_sec1()));
        let k = parse_host_key(&hex_key, None, None).unwrap();
        assert_eq!(k.key, key);
        assert_eq!(k.domain.chain_id, DEFAULT_CHAIN_ID);
        let settlement = Address([0x5e; 20]);
        let json = format!(
            r#"{{"receipt_key":"{}","chain_id":7,"settlement":"{settlement}"}}"#,
            hex_key.trim()
        );
        let k = parse_host_key(&json, None, None).unwrap();
        assert_eq!((k.domain.chain_id, k.domain.settlement), (7, settlement));
        assert!(parse_host_key(&json, Some(7), Some(settlement)).is_ok());
        assert!(matches!(
            parse_host_key(&json, Some(8), None),
            Err(InputError::DomainConflict {
                field: "chain_id",
                ..
            })
        ));
        let k = parse_host_key(&hex_key, Some(9), Some(settlement)).unwrap();
        assert_eq!((k.domain.chain_id, k.domain.settlement), (9, settlement));
        assert!(matches!(
            parse_host_key("0x04", None, None),
            Err(InputError::Key(_))
        ));
        assert!(matches!(
            parse_host_key("{}", None, None),
            Err(InputError::KeyForm(_))
        ));
    }
}
