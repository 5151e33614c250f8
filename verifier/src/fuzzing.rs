//! Entry points for the fuzz targets under `verifier/fuzz/` (one per parser). Not a stable API.

/// Parses bytes as a TDX quote; must never panic.
pub fn tdx_quote(data: &[u8]) {
    if let Ok(q) = crate::tdx::TdxQuote::parse(data) {
        let _ = q.pck_chain_pem();
        let _ = q.body.is_debug();
    }
}

/// Parses bytes as an SNP report; must never panic.
pub fn snp_report(data: &[u8]) {
    if let Ok(r) = crate::snp::SnpReport::parse(data) {
        let _ = r.signing_key();
        let _ = crate::snp::TcbVersion::decode(r.reported_tcb, crate::snp::SnpProduct::Turin);
    }
}
