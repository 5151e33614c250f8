//! The dcap-qvl adapter: the one place its `anyhow` errors and status strings become [`TdxError`] and
//! [`TcbStatus`].

use super::{TcbStatus, TdxError, TdxQuote};
use crate::collateral::{TdxCollateral, UnixTime};
use crate::wire::ParseError;

/// The outcome of the cryptographic part alone (dcap-qvl), before policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxCryptoOutcome {
    /// TCB status.
    pub tcb_status: TcbStatus,
    /// Advisory IDs.
    pub advisory_ids: Vec<String>,
}

/// Runs dcap-qvl on the exact quote bytes (debug and other TD attributes are left to [`TdxPolicy`](super::TdxPolicy)
/// and [`check_policy`](super::check_policy), except the attribute checks dcap-qvl always makes).
pub fn verify_crypto(
    quote: &TdxQuote<'_>,
    collateral: &TdxCollateral,
    root_ca_der: &[u8],
    now: UnixTime,
) -> Result<TdxCryptoOutcome, TdxError> {
    let verifier = dcap_qvl::verify::QuoteVerifier::new(root_ca_der.to_vec()).allow_debug(true);
    let report = verifier
        .verify(quote.bytes, &collateral.inner, now.as_secs())
        .map_err(|e| map_qvl_error(&e))?;
    let tcb_status: TcbStatus = report
        .status
        .parse()
        .map_err(|_| TdxError::UnknownTcbStatus)?;
    Ok(TdxCryptoOutcome {
        tcb_status,
        advisory_ids: report.advisory_ids,
    })
}

/// The one place dcap-qvl's `anyhow` errors become [`TdxError`]: by the messages it documents in its
/// verification steps (checked against dcap-qvl 0.7).
fn map_qvl_error(e: &anyhow::Error) -> TdxError {
    let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    let has = |needle: &str| chain.iter().any(|m| m.contains(needle));
    if has("No matching TCB level") || has("TDX module identity") || has("TDX module TCB level") {
        return TdxError::TcbNotSupported;
    }
    if has("Revoked") && has("TCB status") {
        return TdxError::TcbRevoked;
    }
    if has("TCBInfo expired") || has("TCBInfo issue date is in the future") {
        return TdxError::CollateralExpired("TCB Info");
    }
    if has("QE Identity expired") || has("QE Identity issue date is in the future") {
        return TdxError::CollateralExpired("QE Identity");
    }
    if has("Signature is invalid for qe_report") {
        return TdxError::Signature("QE report");
    }
    if has("QE report hash mismatch") {
        return TdxError::Signature("QE report does not bind the attestation key");
    }
    if has("Signature is invalid for tcb_info") {
        return TdxError::CollateralInvalid("TCB Info signature");
    }
    if has("Signature is invalid for qe_identity") {
        return TdxError::CollateralInvalid("QE Identity signature");
    }
    if has("ISV enclave report signature")
        || has("Signature is invalid for quote")
        || has("ISV report")
    {
        return TdxError::Signature("quote");
    }
    if has("CertExpired") || has("CertNotValidYet") || (has("expired") && has("ert")) {
        return TdxError::Chain("certificate outside its validity window");
    }
    if has("InvalidCrlSignatureForPublicKey") {
        return TdxError::Chain("CRL not signed by the trust anchor");
    }
    if has("CrlExpired") || (has("CRL") && has("xpired")) {
        return TdxError::CollateralExpired("CRL");
    }
    if has("CertRevoked") {
        return TdxError::Chain("certificate revoked");
    }
    if has("UnknownIssuer")
        || has("BadSignature")
        || has("InvalidSignatureForPublicKey")
        || has("root ca")
    {
        return TdxError::Chain("unknown issuer or bad certificate signature");
    }
    if has("PCK certificate")
        || has("Certificate chain is too short")
        || has("Failed to extract PCK")
    {
        return TdxError::Chain("PCK chain");
    }
    if has("Fmspc mismatch") || has("non-TDX TCB info") || has("QE Identity id/version") {
        return TdxError::CollateralInvalid("collateral does not match the quote");
    }
    if has("Failed to decode TcbInfo") || has("Failed to decode QeIdentity") || has("CRL") {
        return TdxError::CollateralInvalid("malformed collateral");
    }
    if has("MRSIGNER")
        || has("ISVPRODID")
        || has("QE ISVSVN")
        || has("MISCSELECT")
        || has("QE report attributes")
    {
        return TdxError::Chain("QE report does not match the QE Identity");
    }
    if has("Debug mode is enabled") {
        return TdxError::Debug;
    }
    if has("TD profiling") {
        return TdxError::TdAttributes("profiling enabled");
    }
    if has("TD migration") {
        return TdxError::TdAttributes("migratable");
    }
    if has("Reserved bits in TD attributes") {
        return TdxError::TdAttributes("reserved bits set");
    }
    if has("SEPT_VE_DISABLE") {
        return TdxError::TdAttributes("SEPT_VE_DISABLE clear");
    }
    if has("SERVTD_EXT") || has("MR service TD") {
        return TdxError::TdAttributes("service TD");
    }
    if has("decode quote") || has("quote version") || has("attestation key type") || has("TEE type")
    {
        return TdxError::Malformed(ParseError::InvalidValue { field: "quote" });
    }
    TdxError::Other("unclassified dcap-qvl error")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tdx::TdxErrorCategory;

    #[test]
    fn qvl_messages_map_to_their_categories() {
        let cases: [(&[&str], TdxErrorCategory); 14] = [
            (&["No matching TCB level found"], TdxErrorCategory::Tcb),
            (&["TCB status is invalid: Revoked"], TdxErrorCategory::Tcb),
            (&["TCBInfo expired"], TdxErrorCategory::CollateralExpired),
            (
                &["QE Identity expired"],
                TdxErrorCategory::CollateralExpired,
            ),
            (
                &["CrlExpired { time: UnixTime(1), next_update: UnixTime(0) }"],
                TdxErrorCategory::CollateralExpired,
            ),
            (
                &["Signature is invalid for qe_report in quote"],
                TdxErrorCategory::Signature,
            ),
            (
                &["ISV enclave report signature is invalid"],
                TdxErrorCategory::Signature,
            ),
            (&["QE report hash mismatch"], TdxErrorCategory::Signature),
            (
                &["Signature is invalid for tcb_info in quote_collateral"],
                TdxErrorCategory::CollateralInvalid,
            ),
            (&["Fmspc mismatch"], TdxErrorCategory::CollateralInvalid),
            (
                &[
                    "Failed to parse root CA CRL",
                    "InvalidCrlSignatureForPublicKey",
                ],
                TdxErrorCategory::Chain,
            ),
            (
                &["Failed to verify PCK", "UnknownIssuer"],
                TdxErrorCategory::Chain,
            ),
            (&["Debug mode is enabled"], TdxErrorCategory::Policy),
            (&["something new"], TdxErrorCategory::Other),
        ];
        for (chain, want) in cases {
            let mut e = anyhow::anyhow!(chain[chain.len() - 1]);
            for outer in chain.iter().rev().skip(1) {
                e = e.context(*outer);
            }
            assert_eq!(map_qvl_error(&e).category(), want, "{chain:?}");
        }
    }
}
