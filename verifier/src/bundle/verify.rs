//! The orchestration: [`verify_bundle`] runs every check of a bundle in order and builds the
//! [`VerifiedBundle`].

use dait_chain_client::WireMessage as _;
use dait_chain_client::proto::{self, cpu_evidence::Evidence};
use dait_chain_client::runtime_log::EventLog;
use dait_chain_client::{B256, DecodeError, Domain, Freshness, Keyset};

use super::runtime::{AttestedRuntime, LaunchField, check_launch_binding, replay_runtime_log};
use super::simulated::verify_simulated;
use super::{MAX_CLOCK_SKEW_SECS, Platform, Policy, TpmPolicy, UnixTime, VerifyError};
use crate::collateral::TdxCollateral;
use crate::nvidia::{GpuEvidenceInput, GpuPolicy, GpuSetError, NvidiaRoots, VerifiedGpu};
use crate::snp::{SnpPolicy, VerifiedSnpReport};
use crate::tdx::VerifiedTdxQuote;
use crate::tpm::{AkPublic, QuoteSignature, TpmError, TpmQuoteInput, VerifiedTpmQuote, tpm_name};

/// A bundle whose evidence verified under a policy. Only [`verify_bundle`] constructs it.
#[derive(Clone, Debug)]
pub struct VerifiedBundle {
    platform: Platform,
    keyset: Keyset,
    keyset_hash: B256,
    host_key_id: B256,
    freshness: Freshness,
    report_data: [u8; 64],
    tdx: Option<VerifiedTdxQuote>,
    snp: Option<VerifiedSnpReport>,
    gpus: Vec<VerifiedGpu>,
    tpm: Option<VerifiedTpmQuote>,
    runtime: Option<AttestedRuntime>,
}

impl VerifiedBundle {
    /// The verified TDX quote, for a TDX bundle.
    pub fn tdx(&self) -> Option<&VerifiedTdxQuote> {
        self.tdx.as_ref()
    }
    /// The verified SNP report, for an SNP bundle.
    pub fn snp(&self) -> Option<&VerifiedSnpReport> {
        self.snp.as_ref()
    }
    /// The verified GPUs, in bundle order.
    pub fn gpus(&self) -> &[VerifiedGpu] {
        &self.gpus
    }
    /// The verified vTPM quote, when the bundle carries one.
    pub fn tpm(&self) -> Option<&VerifiedTpmQuote> {
        self.tpm.as_ref()
    }
    /// What the bundle's runtime event log attests (model id, weights, engine build), only when the log is
    /// bound to the evidence: TDX, replayed to the quote's RTMR3 or hashed to its MRCONFIGID; SNP, hashed to
    /// its HOST_DATA; simulated, its digest signed into the report. `None` for an SNP bundle whose HOST_DATA
    /// is zero, an empty log, or a log that is not a runtime event log.
    pub fn runtime(&self) -> Option<&AttestedRuntime> {
        self.runtime.as_ref()
    }
    /// The platform the evidence came from.
    pub fn platform(&self) -> Platform {
        self.platform
    }
    /// The attested receipt key (P-256, SEC1 uncompressed).
    pub fn receipt_key(&self) -> &[u8; 65] {
        &self.keyset.receipt_key
    }
    /// The attested OHTTP key configuration (RFC 9458 §3).
    pub fn ohttp_key_config(&self) -> &[u8] {
        &self.keyset.ohttp_key_config
    }
    /// The attested TLS SubjectPublicKeyInfo (DER).
    pub fn tls_spki(&self) -> &[u8] {
        &self.keyset.tls_spki
    }
    /// `keyset_hash` over the keyset bytes as served.
    pub fn keyset_hash(&self) -> &B256 {
        &self.keyset_hash
    }
    /// `host_key_id = H256(receipt_key)`.
    pub fn host_key_id(&self) -> &B256 {
        &self.host_key_id
    }
    /// The EIP-712 domain the host signs under.
    pub fn domain(&self) -> Domain {
        self.keyset.domain()
    }
    /// The decoded keyset.
    pub fn keyset(&self) -> &Keyset {
        &self.keyset
    }
    /// The freshness the evidence is bound to.
    pub fn freshness(&self) -> &Freshness {
        &self.freshness
    }
    /// The verified `report_data`.
    pub fn report_data(&self) -> &[u8; 64] {
        &self.report_data
    }
}

/// Verifies an encoded `EvidenceBundle` for `expected` freshness under `policy` at time `now`, with the
/// collateral the bundle carries.
pub fn verify_bundle(
    bundle_bytes: &[u8],
    policy: &Policy,
    expected: &Freshness,
    now: UnixTime,
) -> Result<VerifiedBundle, VerifyError> {
    verify_bundle_with_collateral(bundle_bytes, policy, None, expected, now)
}

/// As [`verify_bundle`], with `collateral` (when given) used instead of the bundle's own.
pub fn verify_bundle_with_collateral(
    bundle_bytes: &[u8],
    policy: &Policy,
    collateral: Option<&proto::Collateral>,
    expected: &Freshness,
    now: UnixTime,
) -> Result<VerifiedBundle, VerifyError> {
    let bundle = dait_chain_client::decode_bundle(bundle_bytes)?;
    let freshness =
        Freshness::from_proto(bundle.freshness.as_ref().ok_or(DecodeError::Missing {
            field: "evidence_bundle.freshness",
        })?)?;
    if freshness != *expected {
        return Err(VerifyError::FreshnessMismatch);
    }
    let keyset = Keyset::decode(&bundle.keyset)?;
    let keyset_hash = dait_chain_client::keyset_hash(&bundle.keyset);
    if keyset.created_at > now.as_secs().saturating_add(MAX_CLOCK_SKEW_SECS) {
        return Err(VerifyError::KeysetFromFuture);
    }
    let expected_report_data = dait_chain_client::report_data(&keyset_hash, expected);
    let collateral = collateral.or(bundle.collateral.as_ref());

    let evidence = bundle
        .cpu
        .as_ref()
        .and_then(|c| c.evidence.as_ref())
        .ok_or(DecodeError::Missing {
            field: "evidence_bundle.cpu",
        })?;
    let claimed = match evidence {
        Evidence::Simulated(_) => Platform::Simulated,
        Evidence::TdxQuote(_) => Platform::Tdx,
        Evidence::Snp(_) => Platform::Snp,
    };
    if policy.refused_platforms.contains(&claimed) {
        return Err(VerifyError::PlatformRefused(claimed));
    }
    let (mut tdx, mut snp, mut runtime) = (None, None, None);
    let platform = match evidence {
        Evidence::Simulated(report) => {
            verify_simulated(report, &bundle, policy, &expected_report_data)?;
            // The log's digest is signed into the report.
            runtime = AttestedRuntime::from_log(&bundle.event_log);
            Platform::Simulated
        }
        Evidence::TdxQuote(quote) => {
            let collateral =
                TdxCollateral::from_proto(collateral.ok_or(VerifyError::TdxCollateralMissing)?)?;
            let verified = crate::tdx::verify_quote(quote, &collateral, &policy.tdx, now)?;
            bind(verified.report_data(), &expected_report_data)?;
            if !bundle.event_log.is_empty() {
                let rtmr3 = verified.rtmr()[3];
                if replay_runtime_log(&bundle.event_log)? != rtmr3 {
                    if rtmr3 != [0u8; 48] {
                        return Err(VerifyError::EventLogMismatch);
                    }
                    // RTMR3 never extended: the launch-time MRCONFIGID must bind the log.
                    check_launch_binding(
                        &bundle.event_log,
                        LaunchField::MrConfigId(verified.mr_config_id()),
                    )?;
                }
                // The log replays to the quote's RTMR3, or hashes to its MRCONFIGID.
                runtime = AttestedRuntime::from_log(&bundle.event_log);
            }
            tdx = Some(verified);
            Platform::Tdx
        }
        Evidence::Snp(evidence) => {
            let verified = verify_snp(evidence, collateral, &policy.snp, now)?;
            bind(verified.report_data(), &expected_report_data)?;
            if !bundle.event_log.is_empty() && *verified.host_data() != [0u8; 32] {
                // A host that set HOST_DATA bound the runtime configuration at launch.
                check_launch_binding(
                    &bundle.event_log,
                    LaunchField::HostData(verified.host_data()),
                )?;
                runtime = AttestedRuntime::from_log(&bundle.event_log);
            }
            snp = Some(verified);
            Platform::Snp
        }
    };

    let gpus = verify_gpus(&bundle.gpus, policy, &expected_report_data, now)?;
    let tpm = match &bundle.tpm {
        Some(evidence) => {
            let verified = verify_tpm(evidence, &policy.tpm, &expected_report_data)?;
            if let Some(pcr) = verified.pcr(policy.tpm.runtime_pcr) {
                let replayed = if bundle.event_log.is_empty() {
                    [0u8; 32]
                } else {
                    EventLog::decode(&bundle.event_log)
                        .map_err(|_| VerifyError::MalformedEventLog)?
                        .vtpm_pcr_sha256()
                };
                if replayed != *pcr {
                    return Err(VerifyError::TpmRuntimeMismatch {
                        pcr: policy.tpm.runtime_pcr,
                    });
                }
                // A pinned attestation key is this host's TPM: the log it replays is attested.
                if policy.tpm.ak_name.is_some() && runtime.is_none() && !bundle.event_log.is_empty()
                {
                    runtime = AttestedRuntime::from_log(&bundle.event_log);
                }
            }
            Some(verified)
        }
        None if policy.tpm.required => return Err(VerifyError::TpmMissing),
        None => None,
    };

    let host_key_id = keyset.host_key_id();
    Ok(VerifiedBundle {
        platform,
        keyset,
        keyset_hash,
        host_key_id,
        freshness,
        report_data: expected_report_data,
        tdx,
        snp,
        gpus,
        tpm,
        runtime,
    })
}

/// The keyset binding: the CPU evidence's REPORTDATA must be the recomputed `report_data`.
fn bind(reported: &[u8; 64], expected: &[u8; 64]) -> Result<(), VerifyError> {
    if reported == expected {
        Ok(())
    } else {
        Err(VerifyError::KeysetBinding)
    }
}

/// SNP: the VCEK/VLEK from the evidence; ASK and ARK from the evidence, else the collateral's
/// `amd_chain` (ARK, ASK), else AMD's pinned certificates of each product generation in turn; then the
/// collateral's `amd_crl`, if any.
fn verify_snp(
    evidence: &proto::SnpEvidence,
    collateral: Option<&proto::Collateral>,
    policy: &SnpPolicy,
    now: UnixTime,
) -> Result<VerifiedSnpReport, VerifyError> {
    let vek = evidence
        .cert_chain
        .first()
        .ok_or(VerifyError::SnpChainMissing { field: "VCEK/VLEK" })?;
    let amd = collateral.map(|c| c.amd_chain.as_slice()).unwrap_or(&[]);
    let ask = evidence.cert_chain.get(1).or(amd.get(1));
    let ark = evidence.cert_chain.get(2).or(amd.first());
    if ask.is_some() != ark.is_some() {
        return Err(VerifyError::SnpChainMissing { field: "ASK/ARK" });
    }
    let verified = crate::snp::verify_report_with_amd_certs(
        &evidence.report,
        vek,
        ask.map(Vec::as_slice),
        ark.map(Vec::as_slice),
        policy,
        now,
    )?;
    // AMD's CRL, when the collateral carries one: signed by the ARK of the report's generation, current,
    // and listing neither the ASK nor the VCEK/VLEK.
    if let Some(c) = collateral.filter(|c| !c.amd_crl.is_empty()) {
        use crate::snp::{SnpCert, amd_ark_pem, amd_ask_pem, crl};
        let product = verified.product();
        let crl = crl::verify_crl(&c.amd_crl, amd_ark_pem(product), now)?;
        let ask = ask.map_or(amd_ask_pem(product), Vec::as_slice);
        crl::check_not_revoked(&crl, ask, SnpCert::Ask)?;
        crl::check_not_revoked(&crl, vek, SnpCert::Vek)?;
    }
    Ok(verified)
}

/// Every GPU `i` against `gpu_nonce(report_data, i)`, after the policy's GPU count.
fn verify_gpus(
    gpus: &[proto::GpuEvidence],
    policy: &Policy,
    report_data: &[u8; 64],
    now: UnixTime,
) -> Result<Vec<VerifiedGpu>, VerifyError> {
    if gpus.len() < policy.min_gpus {
        return Err(VerifyError::GpuCount {
            present: gpus.len(),
            required: policy.min_gpus,
        });
    }
    Ok(verify_bundle_gpus(
        gpus,
        &policy.gpu,
        &policy.nvidia_roots.0,
        report_data,
        now,
    )?)
}

/// A bundle's `gpus`, GPU `i` against `gpu_nonce(report_data, i)` under `policy` and `roots`, with the RIMs and
/// OCSP responses each carries: the GPU step of [`verify_bundle`], and the agent's check of its own GPUs.
pub fn verify_bundle_gpus(
    gpus: &[proto::GpuEvidence],
    policy: &GpuPolicy,
    roots: &NvidiaRoots,
    report_data: &[u8; 64],
    now: UnixTime,
) -> Result<Vec<VerifiedGpu>, GpuSetError> {
    let spdm: Vec<Vec<u8>> = gpus
        .iter()
        .map(|g| [g.spdm_request.as_slice(), g.spdm_response.as_slice()].concat())
        .collect();
    let chains: Vec<Vec<u8>> = gpus.iter().map(|g| g.cert_chain.concat()).collect();
    let ocsp: Vec<Vec<&[u8]>> = gpus
        .iter()
        .map(|g| g.ocsp_responses.iter().map(Vec::as_slice).collect())
        .collect();
    let inputs: Vec<GpuEvidenceInput<'_>> = gpus
        .iter()
        .zip(spdm.iter().zip(chains.iter().zip(ocsp.iter())))
        .map(|(g, (spdm, (chain, ocsp)))| GpuEvidenceInput {
            spdm,
            cert_chain_pem: chain,
            driver_rim: (!g.driver_rim.is_empty()).then_some(g.driver_rim.as_slice()),
            vbios_rim: (!g.vbios_rim.is_empty()).then_some(g.vbios_rim.as_slice()),
            ocsp_responses: ocsp,
        })
        .collect();
    let nonces: Vec<[u8; 32]> = (0..gpus.len())
        .map(|i| {
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            dait_chain_client::gpu_nonce(report_data, index).0
        })
        .collect();
    crate::nvidia::verify_gpus(&inputs, &nonces, policy, roots, now)
}

/// The vTPM quote: AK signature, PCR digest over the carried PCR values, qualifying data, pinned PCRs.
fn verify_tpm(
    evidence: &proto::TpmEvidence,
    policy: &TpmPolicy,
    report_data: &[u8; 64],
) -> Result<VerifiedTpmQuote, VerifyError> {
    // The bundle carries the TPMT_PUBLIC; the parser takes it as a TPM2B (u16 size prefix).
    let size = u16::try_from(evidence.ak_public.len()).map_err(|_| TpmError::BadAkPublic)?;
    let tpm2b = [size.to_be_bytes().as_slice(), &evidence.ak_public].concat();
    let ak = AkPublic::from_tpm2b_public(&tpm2b)?;
    if let Some(pinned) = &policy.ak_name
        && tpm_name(&evidence.ak_public) != *pinned
    {
        return Err(VerifyError::TpmAkMismatch);
    }
    let pcrs = evidence
        .pcrs
        .iter()
        .map(|p| <[u8; 32]>::try_from(p.digest.as_slice()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TpmError::PcrDigestMismatch)?;
    let input = TpmQuoteInput {
        attest: &evidence.attest,
        signature: QuoteSignature::Tpmt(&evidence.signature),
        pcrs: &pcrs,
    };
    let qualifying = dait_chain_client::tpm_qualifying_data(report_data);
    let verified = crate::tpm::verify_quote(&input, &ak, qualifying.as_bytes())?;
    for (index, value) in &policy.pcrs {
        if verified.pcr(*index) != Some(value) {
            return Err(VerifyError::PcrMismatch { index: *index });
        }
    }
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::fixture::{Fixture, NOW};
    use crate::collateral::CollateralError;

    #[test]
    fn evidence_for_another_nonce_is_rejected() {
        let f = Fixture::new();
        let r = verify_bundle(
            &f.encode(),
            &f.allow(),
            &Freshness::TenantNonce([6; 32]),
            UnixTime::from_secs(NOW),
        );
        assert!(matches!(r, Err(VerifyError::FreshnessMismatch)));
    }

    #[test]
    fn keyset_from_the_future_is_rejected() {
        let mut f = Fixture::new();
        f.keyset.created_at = NOW + MAX_CLOCK_SKEW_SECS + 1;
        assert!(matches!(
            f.verify(&f.allow()),
            Err(VerifyError::KeysetFromFuture)
        ));
    }

    #[test]
    fn tdx_bundle_without_collateral_is_rejected() {
        let f = Fixture::new();
        let bytes = f.encode_with_cpu(Evidence::TdxQuote(vec![1, 2, 3]), None);
        let r = verify_bundle(
            &bytes,
            &Policy::new(),
            &f.freshness,
            UnixTime::from_secs(NOW),
        );
        assert!(matches!(r, Err(VerifyError::TdxCollateralMissing)));
    }

    #[test]
    fn tdx_bundle_with_incomplete_collateral_is_rejected() {
        let f = Fixture::new();
        let bytes = f.encode_with_cpu(
            Evidence::TdxQuote(vec![1, 2, 3]),
            Some(proto::Collateral::default()),
        );
        let r = verify_bundle(
            &bytes,
            &Policy::new(),
            &f.freshness,
            UnixTime::from_secs(NOW),
        );
        assert!(matches!(
            r,
            Err(VerifyError::Collateral(CollateralError::Missing { .. }))
        ));
    }

    #[test]
    fn snp_bundle_without_vcek_is_rejected() {
        let f = Fixture::new();
        let bytes = f.encode_with_cpu(
            Evidence::Snp(proto::SnpEvidence {
                report: vec![0; crate::snp::REPORT_LEN],
                cert_chain: vec![],
            }),
            None,
        );
        let r = verify_bundle(
            &bytes,
            &Policy::new(),
            &f.freshness,
            UnixTime::from_secs(NOW),
        );
        assert!(matches!(r, Err(VerifyError::SnpChainMissing { .. })));
    }

    #[test]
    fn missing_gpus_are_rejected() {
        let f = Fixture::new();
        let mut policy = f.allow();
        policy.min_gpus = 1;
        assert!(matches!(
            f.verify(&policy),
            Err(VerifyError::GpuCount {
                present: 0,
                required: 1
            })
        ));
    }

    #[test]
    fn missing_vtpm_is_rejected_when_required() {
        let f = Fixture::new();
        let mut policy = f.allow();
        policy.tpm.required = true;
        assert!(matches!(f.verify(&policy), Err(VerifyError::TpmMissing)));
    }

    #[test]
    fn malformed_vtpm_quote_is_rejected() {
        let f = Fixture::new();
        let mut bundle = dait_chain_client::decode_bundle(&f.encode()).unwrap();
        bundle.tpm = Some(proto::TpmEvidence {
            attest: vec![1],
            signature: vec![2],
            ak_public: vec![3],
            ak_cert_chain: vec![],
            pcrs: vec![],
            pcr_hash_alg: 0x000b,
        });
        let bytes = dait_chain_client::encode_bundle(&bundle);
        let r = verify_bundle(&bytes, &f.allow(), &f.freshness, UnixTime::from_secs(NOW));
        assert!(matches!(r, Err(VerifyError::Tpm(_))));
    }

    #[test]
    fn trailing_byte_and_truncation_are_malformed() {
        let f = Fixture::new();
        let mut bytes = f.encode();
        let policy = f.allow();
        for cut in 0..bytes.len() {
            let r = verify_bundle(
                &bytes[..cut],
                &policy,
                &f.freshness,
                UnixTime::from_secs(NOW),
            );
            assert!(r.is_err(), "truncated at {cut} accepted");
        }
        bytes.push(0);
        let r = verify_bundle(&bytes, &policy, &f.freshness, UnixTime::from_secs(NOW));
        assert!(matches!(r, Err(VerifyError::Decode(_))));
    }
}
