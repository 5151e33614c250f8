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

/// Parses bytes as an SNP certificate table (configfs-tsm `auxblob`); must never panic.
pub fn snp_cert_table(data: &[u8]) {
    if let Ok(t) = crate::snp::cert_table::CertTable::parse(data) {
        let _ = t.bundle_chain(crate::snp::SigningKey::Vcek);
        let _ = t.bundle_chain(crate::snp::SigningKey::Vlek);
    }
}

/// Parses bytes as NVIDIA SPDM evidence (request ‖ response) and its opaque data; must never panic.
pub fn nvidia_evidence(data: &[u8]) {
    if let Ok(ev) = crate::nvidia::spdm::parse(data)
        && let Ok(o) = crate::nvidia::opaque::parse(ev.response.opaque)
    {
        let _ = o.driver_version();
        let _ = o.vbios_version();
    }
    let _ = crate::nvidia::opaque::parse(data);
}

/// Parses bytes as a RIM (SWID XML), canonicalises it, and runs signature verification against the pinned
/// root at a fixed time; must never panic.
pub fn rim_xml(data: &[u8]) {
    let _ = crate::rim::parse_rim(data);
    let _ = crate::rim::canonical_content(data);
    let _ = crate::rim::verify_rim(
        data,
        &crate::nvidia::NvidiaRoots::pinned().rim_signing,
        crate::UnixTime::from_secs(1_717_200_000),
    );
}

/// Parses bytes as a vTPM quote (Azure container, TPMS_ATTEST, TPMT_SIGNATURE, TPM2B_PUBLIC); must never panic.
pub fn tpm_quote(data: &[u8]) {
    if let Ok(q) = crate::tpm::parse_azure_quote(data) {
        let _ = crate::tpm::parse_attest(q.message);
    }
    let _ = crate::tpm::parse_attest(data);
    let _ = crate::tpm::parse_signature(data);
    let _ = crate::tpm::AkPublic::from_tpm2b_public(data);
}

/// Decodes bytes as an evidence bundle (checking the protocol core's canonical re-encoding) and runs the whole
/// bundle verification under the default policy at a fixed time; must never panic.
pub fn bundle(data: &[u8]) {
    dait_chain_client::fuzzing::bundle(data);
    let _ = crate::bundle::verify_bundle(
        data,
        &crate::bundle::Policy::new(),
        &dait_chain_client::Freshness::TenantNonce([7; 32]),
        crate::UnixTime::from_secs(1_717_200_000),
    );
}

/// Decodes bytes as a signed receipt, channel state or keyset (canonical re-encoding), and as an engine response
/// body or SSE stream for the response hash; must never panic.
pub fn receipt(data: &[u8]) {
    dait_chain_client::fuzzing::receipt(data);
    dait_chain_client::fuzzing::response(data);
}
