//! Evidence-bundle verification: the bundle's CPU evidence, the binding of the keyset and the freshness into
//! `report_data`, and the policy (PROTOCOL.md §2, §3, §7).
//!
//! [`verify_bundle`] is a pure function of the bundle bytes, a [`Policy`], the freshness the caller expects
//! and the current time. It returns a [`VerifiedBundle`], which only it can construct, holding the attested
//! keys a tenant then uses: the receipt key, the OHTTP key configuration, the TLS SPKI.
//!
//! Order of checks, the first failure is the error: decode; freshness; keyset (decode, creation time);
//! the CPU evidence under its platform policy ([`crate::tdx::verify_quote`], [`crate::snp::verify_report`]
//! or the simulated report); the keyset binding (the CPU evidence's REPORTDATA equals `report_data`
//! recomputed from the keyset hash and the expected freshness); the event log (for simulated evidence: its
//! digest, then its replay against [`Policy::runtime_rtmr3`] when the policy has one); every GPU against
//! `gpu_nonce(report_data, i)`; the vTPM quote against `tpm_qualifying_data(report_data)`.
//!
//! Collateral comes from the bundle (`EvidenceBundle.collateral`) or, overriding it, from the caller
//! ([`verify_bundle_with_collateral`]); nothing is fetched.
//!
//! Simulated evidence (development and CI only) is a report signed by a per-boot attestation key, which is
//! certified by a simulated platform root. The default [`Policy`] rejects it whatever its signatures; only
//! [`Policy::dangerous_allow_simulated`], given that root's public key, accepts it.

use dait_chain_client::proto::{self, cpu_evidence::Evidence};
use dait_chain_client::{B256, DecodeError, Domain, Freshness, Keyset};
use dait_measure::ReferenceMeasurements;

use crate::collateral::{CollateralError, TdxCollateral};
use crate::nvidia::{GpuEvidenceInput, GpuPolicy, GpuSetError, NvidiaRoots, VerifiedGpu};
use crate::snp::{SnpCerts, SnpError, SnpPolicy, VerifiedSnpReport};
use crate::tdx::{TdxError, TdxPolicy, TdxShape, VerifiedTdxQuote};
use crate::tpm::{AkPublic, QuoteSignature, TpmError, TpmQuoteInput, VerifiedTpmQuote};
use dait_chain_client::WireMessage as _;
use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use sha2::{Digest as _, Sha256};

/// Keysets created more than this far in the future (host clock ahead) are rejected.
pub const MAX_CLOCK_SKEW_SECS: u64 = 300;

pub use crate::collateral::UnixTime;

/// The CPU TEE platform of a bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Platform {
    /// Simulated evidence (development and CI only).
    Simulated,
    /// AMD SEV-SNP.
    Snp,
    /// Intel TDX.
    Tdx,
}

/// What a vTPM quote must show. Default: a quote is optional; when present it must verify and bind
/// `tpm_qualifying_data(report_data)`; no PCR pinned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TpmPolicy {
    /// Reject bundles without vTPM evidence.
    pub required: bool,
    /// PCR values (SHA-256 bank) the quote must carry: (index, value).
    pub pcrs: Vec<(u8, [u8; 32])>,
}

/// What the verifier accepts: one policy per kind of evidence, separate from the crypto.
///
/// [`Policy::new`] is the secure default: simulated evidence rejected; TDX and SNP debug rejected, TCB
/// `UpToDate` only, VMPL 0, no migration agent; GPUs need matching RIMs, FWID and OCSP; nothing pinned
/// beyond that. [`Policy::from_reference`] adds the published measurements of a release.
///
/// GPU CC mode and production/debug state are not fields of Hopper's signed evidence (see
/// [`crate::nvidia`]); they are bound through the RIM-pinned measurements, which the default requires.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// The simulated platform root accepted by [`Policy::dangerous_allow_simulated`], SEC1 uncompressed.
    simulated_root: Option<[u8; 65]>,
    /// TDX quote policy. Its `report_data` is normally left `None`: the bundle checks the keyset binding.
    pub tdx: TdxPolicy,
    /// SNP report policy. Its `report_data` is normally left `None` (as for TDX).
    pub snp: SnpPolicy,
    /// GPU policy, applied to every GPU of the bundle.
    pub gpu: GpuPolicy,
    /// The NVIDIA trust anchors (pinned by default).
    pub nvidia_roots: NvidiaRootsSetting,
    /// vTPM policy.
    pub tpm: TpmPolicy,
    /// Minimum number of GPUs the bundle must carry.
    pub min_gpus: usize,
    /// Platforms whose evidence is refused: [`Policy::from_reference`] refuses a platform the reference has
    /// no values for, so its measurements can never go unchecked.
    pub refused_platforms: Vec<Platform>,
    /// The runtime measurements expected of simulated evidence: the RTMR3 value the bundle's runtime event
    /// log must replay to (the replay is the TDX one). A simulated report has no runtime register, so
    /// without this only the log's digest is checked. TDX pins RTMR3 through `tdx.rtmr[3]`, SNP the runtime
    /// vTPM PCR through `tpm.pcrs`; [`Policy::from_reference`] sets all three from the same events.
    pub runtime_rtmr3: Option<[u8; 48]>,
}

/// The NVIDIA trust anchors of a [`Policy`]; the pinned roots unless replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NvidiaRootsSetting(pub NvidiaRoots);

impl Default for NvidiaRootsSetting {
    fn default() -> Self {
        Self(NvidiaRoots::pinned())
    }
}

/// A field of a reference file that cannot become a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceError {
    /// The reference file's TD attributes allow debugging.
    #[error("the reference's TD attributes set DEBUG")]
    DebugTdAttributes,
    /// The reference file's SNP guest policy allows debugging.
    #[error("the reference's SNP guest policy sets DEBUG")]
    DebugGuestPolicy,
}

impl Policy {
    /// The secure default: real hardware evidence only.
    pub fn new() -> Self {
        Self::default()
    }

    /// The default policy plus the values of a published reference file: TDX MRTD/RTMR0 per shape, RTMR1,
    /// RTMR2, RTMR3 (the replay of the runtime events: model and config hashes), MRCONFIGID, MROWNER,
    /// MROWNERCONFIG, TD attributes, XFAM; SNP launch measurement per shape, HOST_DATA, guest policy; the
    /// runtime vTPM PCR when a vTPM quote is present; the runtime event log's replay for simulated evidence
    /// ([`Policy::runtime_rtmr3`]), which still needs [`Policy::dangerous_allow_simulated`].
    pub fn from_reference(reference: &ReferenceMeasurements) -> Result<Self, ReferenceError> {
        let mut policy = Self {
            runtime_rtmr3: Some(reference.expected_rtmr3().0),
            ..Self::default()
        };
        if reference.tdx.is_none() {
            policy.refused_platforms.push(Platform::Tdx);
        }
        if reference.snp.is_none() {
            policy.refused_platforms.push(Platform::Snp);
        }
        if let Some(tdx) = &reference.tdx {
            let td_attributes = u64::from_le_bytes(tdx.td_attributes.0);
            if td_attributes & crate::tdx::TD_ATTR_DEBUG != 0 {
                return Err(ReferenceError::DebugTdAttributes);
            }
            policy.tdx.shapes = tdx
                .shapes
                .iter()
                .map(|v| TdxShape {
                    mr_td: v.mrtd.0,
                    rtmr0: Some(v.rtmr0.0),
                })
                .collect();
            policy.tdx.rtmr[1] = Some(tdx.rtmr1.0);
            policy.tdx.rtmr[2] = Some(tdx.rtmr2.0);
            // RTMR3 holds only the runtime events the agent extends (all zero when there are none).
            policy.tdx.rtmr[3] = Some(reference.expected_rtmr3().0);
            policy.tdx.mr_config_id = tdx.mr_config_id.iter().map(|d| d.0).collect();
            policy.tdx.mr_owner = tdx.mr_owner.iter().map(|d| d.0).collect();
            policy.tdx.mr_owner_config = tdx.mr_owner_config.iter().map(|d| d.0).collect();
            policy.tdx.td_attributes = Some(td_attributes);
            policy.tdx.xfam = tdx.xfam.as_ref().map(|x| u64::from_le_bytes(x.0));
        }
        if let Some(snp) = &reference.snp {
            if snp.guest_policy & crate::snp::POLICY_DEBUG != 0 {
                return Err(ReferenceError::DebugGuestPolicy);
            }
            policy.snp.measurements = snp.shapes.iter().map(|v| v.measurement.0).collect();
            policy.snp.host_data = snp.host_data.iter().map(|d| d.0).collect();
            policy.snp.guest_policy = Some(snp.guest_policy);
        }
        if !reference.runtime.events.is_empty() {
            policy.tpm.pcrs = vec![(
                reference.runtime.vtpm_pcr,
                reference.expected_runtime_pcr_sha256().0,
            )];
        }
        Ok(policy)
    }

    /// Accepts simulated evidence certified by `root_public_key` (P-256, SEC1 uncompressed or compressed).
    /// Simulated evidence proves nothing about the host: use this only in development and tests.
    pub fn dangerous_allow_simulated(
        mut self,
        root_public_key: &[u8],
    ) -> Result<Self, VerifyError> {
        let key = p256::PublicKey::from_sec1_bytes(root_public_key).map_err(|_| {
            VerifyError::MalformedKey {
                field: "policy.simulated_root",
            }
        })?;
        let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&key, false);
        let bytes =
            <[u8; 65]>::try_from(point.as_bytes()).map_err(|_| VerifyError::MalformedKey {
                field: "policy.simulated_root",
            })?;
        self.simulated_root = Some(bytes);
        Ok(self)
    }

    /// Whether this policy accepts simulated evidence.
    pub fn allows_simulated(&self) -> bool {
        self.simulated_root.is_some()
    }
}

/// Why a bundle was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The simulated attestation key is not certified by the allowed simulated root (another root, or a
    /// bad certification signature).
    #[error("the simulated attestation key is not certified by the allowed root")]
    AttestationKeyNotCertified,
    /// The collateral (carried or given) is malformed or incomplete.
    #[error("collateral: {0}")]
    Collateral(#[from] CollateralError),
    /// The bundle or its keyset did not decode.
    #[error("the evidence bundle is malformed")]
    Decode(#[from] DecodeError),
    /// `SHA-256(event_log)` differs from the digest in the signed (simulated) report, or the runtime event
    /// log does not replay to the quote's RTMR3.
    #[error("the event log does not match the report")]
    EventLogMismatch,
    /// The bundle was made for another freshness (another nonce or epoch) than the one requested.
    #[error("the evidence is for another nonce or epoch")]
    FreshnessMismatch,
    /// The runtime event log is not the agent's JSON array, or an event's digest is not its data's.
    #[error("the runtime event log is malformed")]
    MalformedEventLog,
    /// A GPU's evidence failed (the index names the GPU).
    #[error("GPU evidence: {0}")]
    Gpu(#[from] GpuSetError),
    /// The bundle carries fewer GPUs than the policy requires.
    #[error("{present} GPUs present, the policy requires {required}")]
    GpuCount {
        /// GPUs in the bundle.
        present: usize,
        /// The policy's minimum.
        required: usize,
    },
    /// `report_data` in the signed report is not the one recomputed from the keyset and the freshness.
    #[error("report_data does not bind this keyset and freshness")]
    KeysetBinding,
    /// The keyset claims a creation time after `now` (plus the allowed skew).
    #[error("the keyset was created in the future")]
    KeysetFromFuture,
    /// A public key in the evidence is not a valid point.
    #[error("{field}: not a valid P-256 public key")]
    MalformedKey {
        /// The field.
        field: &'static str,
    },
    /// The signed report is malformed (wrong platform tag or field length).
    #[error("the simulated report is malformed: {field}")]
    MalformedReport {
        /// The field.
        field: &'static str,
    },
    /// A vTPM PCR differs from the policy's value, or the quote does not carry it.
    #[error("vTPM PCR {index} does not match the policy")]
    PcrMismatch {
        /// The PCR index.
        index: u8,
    },
    /// The report's signature by the attestation key does not verify.
    #[error("the report signature does not verify")]
    ReportSignature,
    /// The runtime event log (model, engine and agent configuration) of simulated evidence does not replay
    /// to the policy's runtime measurements ([`Policy::runtime_rtmr3`]): an event changed, missing, extra
    /// or out of order.
    #[error("runtime measurements: the event log does not replay to the reference's RTMR3")]
    RuntimeMeasurementMismatch,
    /// The evidence is simulated and the policy does not allow simulated evidence.
    #[error("simulated evidence is rejected by this policy")]
    SimulatedEvidence,
    /// The SNP report or its AMD chain failed.
    #[error("SNP evidence: {0}")]
    Snp(#[from] SnpError),
    /// The SNP certificate chain is incomplete (no VCEK/VLEK in the evidence, or no ASK/ARK in the
    /// evidence, the collateral or the pinned roots).
    #[error("SNP certificate chain: {field} missing")]
    SnpChainMissing {
        /// What is missing.
        field: &'static str,
    },
    /// The policy refuses evidence of this platform (no reference values for it).
    #[error("{0:?} evidence is refused by this policy")]
    PlatformRefused(Platform),
    /// The TDX quote failed.
    #[error("TDX evidence: {0}")]
    Tdx(#[from] TdxError),
    /// The TDX quote came without collateral (neither in the bundle nor given).
    #[error("no TDX collateral in the bundle or given")]
    TdxCollateralMissing,
    /// The vTPM quote failed.
    #[error("vTPM evidence: {0}")]
    Tpm(#[from] TpmError),
    /// The policy requires vTPM evidence and the bundle has none.
    #[error("the policy requires vTPM evidence")]
    TpmMissing,
}

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
    let (mut tdx, mut snp) = (None, None);
    let platform = match evidence {
        Evidence::Simulated(report) => {
            verify_simulated(report, &bundle, policy, &expected_report_data)?;
            Platform::Simulated
        }
        Evidence::TdxQuote(quote) => {
            let collateral =
                TdxCollateral::from_proto(collateral.ok_or(VerifyError::TdxCollateralMissing)?)?;
            let verified = crate::tdx::verify_quote(quote, &collateral, &policy.tdx, now)?;
            bind(verified.report_data(), &expected_report_data)?;
            if !bundle.event_log.is_empty()
                && replay_runtime_log(&bundle.event_log)? != verified.rtmr()[3]
            {
                return Err(VerifyError::EventLogMismatch);
            }
            tdx = Some(verified);
            Platform::Tdx
        }
        Evidence::Snp(evidence) => {
            let verified = verify_snp(evidence, collateral, &policy.snp, now)?;
            bind(verified.report_data(), &expected_report_data)?;
            snp = Some(verified);
            Platform::Snp
        }
    };

    let gpus = verify_gpus(&bundle.gpus, policy, &expected_report_data, now)?;
    let tpm = match &bundle.tpm {
        Some(evidence) => Some(verify_tpm(evidence, &policy.tpm, &expected_report_data)?),
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
    })
}

/// One event of the runtime event log the agent serves (`event_log` of a TDX or simulated bundle): a JSON
/// array of `{"imr": 3, "kind": "...", "data": "...", "digest": "<hex SHA-384(data)>"}`.
#[derive(serde::Deserialize)]
struct RuntimeLogEvent {
    imr: u8,
    data: String,
    digest: String,
}

/// Replays the runtime event log into RTMR3: `R_0 = 0^48`, `R_i = SHA-384(R_{i-1} || SHA-384(data_i))`;
/// each stated digest must be the digest of its data.
fn replay_runtime_log(log: &[u8]) -> Result<[u8; 48], VerifyError> {
    use sha2::Sha384;
    let events: Vec<RuntimeLogEvent> =
        serde_json::from_slice(log).map_err(|_| VerifyError::MalformedEventLog)?;
    let mut register = [0u8; 48];
    for e in &events {
        let digest: [u8; 48] = Sha384::digest(e.data.as_bytes()).into();
        if e.imr != 3 || hex::decode(&e.digest).ok().as_deref() != Some(digest.as_slice()) {
            return Err(VerifyError::MalformedEventLog);
        }
        register = dait_measure::reference::extend_sha384(&register, &digest);
    }
    Ok(register)
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
/// `amd_chain` (ARK, ASK), else AMD's pinned certificates of each product generation in turn.
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
    if let (Some(ask), Some(ark)) = (ask, ark) {
        let certs = SnpCerts { ark, ask, vek };
        return Ok(crate::snp::verify_report(
            &evidence.report,
            &certs,
            policy,
            now,
        )?);
    }
    if ask.is_some() || ark.is_some() {
        return Err(VerifyError::SnpChainMissing { field: "ASK/ARK" });
    }
    let mut first_error = None;
    for product in [
        crate::snp::SnpProduct::Milan,
        crate::snp::SnpProduct::Genoa,
        crate::snp::SnpProduct::Turin,
    ] {
        let certs = SnpCerts {
            ark: crate::snp::amd_ark_pem(product),
            ask: crate::snp::amd_ask_pem(product),
            vek,
        };
        match crate::snp::verify_report(&evidence.report, &certs, policy, now) {
            Ok(v) => return Ok(v),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.map_or(
        VerifyError::SnpChainMissing { field: "ASK/ARK" },
        VerifyError::Snp,
    ))
}

/// Every GPU `i` against `gpu_nonce(report_data, i)`.
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
    Ok(crate::nvidia::verify_gpus(
        &inputs,
        &nonces,
        &policy.gpu,
        &policy.nvidia_roots.0,
        now,
    )?)
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

/// Simulated evidence: policy first (so it is rejected whatever its signatures), then the chain
/// root → attestation key → report, then the report's content.
fn verify_simulated(
    report: &proto::SimulatedReport,
    bundle: &proto::EvidenceBundle,
    policy: &Policy,
    expected_report_data: &[u8; 64],
) -> Result<(), VerifyError> {
    let root = policy
        .simulated_root
        .as_ref()
        .ok_or(VerifyError::SimulatedEvidence)?;
    let attestation_key =
        <[u8; 65]>::try_from(report.attestation_key.as_slice()).map_err(|_| {
            VerifyError::MalformedKey {
                field: "simulated_report.attestation_key",
            }
        })?;
    p256_verify(
        root,
        &dait_chain_client::simulated_key_digest(&attestation_key),
        &report.attestation_key_signature,
    )
    .map_err(|e| e.unwrap_or(VerifyError::AttestationKeyNotCertified))?;
    p256_verify(
        &attestation_key,
        &dait_chain_client::simulated_report_digest(&report.body),
        &report.signature,
    )
    .map_err(|e| e.unwrap_or(VerifyError::ReportSignature))?;

    let body: proto::SimulatedReportBody = prost_decode(&report.body)?;
    if body.platform != proto::Platform::Simulated as i32 {
        return Err(VerifyError::MalformedReport {
            field: "simulated_report_body.platform",
        });
    }
    if body.report_data.as_slice() != expected_report_data.as_slice() {
        return Err(VerifyError::KeysetBinding);
    }
    let digest: [u8; 32] = Sha256::digest(&bundle.event_log).into();
    if body.event_log_digest.as_slice() != digest.as_slice() {
        return Err(VerifyError::EventLogMismatch);
    }
    if let Some(expected) = &policy.runtime_rtmr3 {
        // An empty log is a log without events (the TDX path skips it; its RTMR3 is pinned in the quote).
        let replayed = if bundle.event_log.is_empty() {
            [0u8; 48]
        } else {
            replay_runtime_log(&bundle.event_log)?
        };
        if replayed != *expected {
            return Err(VerifyError::RuntimeMeasurementMismatch);
        }
    }
    Ok(())
}

fn prost_decode(bytes: &[u8]) -> Result<proto::SimulatedReportBody, VerifyError> {
    <proto::SimulatedReportBody as prost::Message>::decode(bytes).map_err(|_| {
        VerifyError::MalformedReport {
            field: "simulated_report.body",
        }
    })
}

/// Checks a prehashed P-256 `r || s` signature (low-s) over `digest` by `key`. `Err(Some(_))` is a
/// malformed key; `Err(None)` a signature that does not verify.
fn p256_verify(key: &[u8; 65], digest: &B256, signature: &[u8]) -> Result<(), Option<VerifyError>> {
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(key).map_err(|_| {
        Some(VerifyError::MalformedKey {
            field: "p256 public key",
        })
    })?;
    let signature = p256::ecdsa::Signature::from_slice(signature).map_err(|_| None)?;
    if signature.normalize_s().is_some() {
        return Err(None);
    }
    key.verify_prehash(digest.as_bytes(), &signature)
        .map_err(|_| None)
}

/// A simulated bundle built in memory, for tests of this crate.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod fixture {
    use dait_chain_client::WireMessage as _;
    use dait_chain_client::proto::{self, cpu_evidence::Evidence};
    use dait_chain_client::{Address, Freshness, HostSigningKey, Keyset, keyset_hash, report_data};
    use prost::Message as _;
    use sha2::{Digest as _, Sha256};

    /// The pieces of a simulated bundle; tests change one and encode.
    pub(crate) struct Fixture {
        pub root: HostSigningKey,
        pub attestation: HostSigningKey,
        pub receipt_key: HostSigningKey,
        pub keyset: Keyset,
        pub freshness: Freshness,
        /// Keyset hash bound into report_data (defaults to the real one).
        pub bound_keyset_hash: Option<dait_chain_client::B256>,
        pub event_log: Vec<u8>,
        pub platform: proto::Platform,
        pub flip_report_signature: bool,
    }

    pub(crate) const NOW: u64 = 1_750_000_000;

    impl Fixture {
        pub(crate) fn new() -> Self {
            let receipt_key = key(3);
            Self {
                root: key(1),
                attestation: key(2),
                keyset: Keyset {
                    receipt_key: receipt_key.verifying_key().to_sec1(),
                    ohttp_key_config: vec![1, 2, 3],
                    tls_spki: vec![4, 5, 6],
                    chain_id: 31337,
                    settlement: Address([9; 20]),
                    created_at: NOW - 10,
                    boot_id: [1; 16],
                    host_account: Address::ZERO,
                },
                receipt_key,
                freshness: Freshness::TenantNonce([5; 32]),
                bound_keyset_hash: None,
                event_log: b"simulated event log".to_vec(),
                platform: proto::Platform::Simulated,
                flip_report_signature: false,
            }
        }

        pub(crate) fn root_public(&self) -> [u8; 65] {
            self.root.verifying_key().to_sec1()
        }

        pub(crate) fn encode(&self) -> Vec<u8> {
            let keyset_bytes = self.keyset.encode();
            let bound = self
                .bound_keyset_hash
                .unwrap_or_else(|| keyset_hash(&keyset_bytes));
            let body = proto::SimulatedReportBody {
                platform: self.platform as i32,
                report_data: report_data(&bound, &self.freshness).to_vec(),
                measurements: vec![vec![0; 48]; 5],
                event_log_digest: Sha256::digest(&self.event_log).to_vec(),
            }
            .encode_to_vec();
            let attestation_key = self.attestation.verifying_key().to_sec1();
            let mut signature = self
                .attestation
                .sign_prehash(&dait_chain_client::simulated_report_digest(&body))
                .to_bytes()
                .to_vec();
            if self.flip_report_signature {
                signature[40] ^= 1;
            }
            let report = proto::SimulatedReport {
                body,
                signature,
                attestation_key: attestation_key.to_vec(),
                attestation_key_signature: self
                    .root
                    .sign_prehash(&dait_chain_client::simulated_key_digest(&attestation_key))
                    .to_bytes()
                    .to_vec(),
            };
            dait_chain_client::encode_bundle(&proto::EvidenceBundle {
                version: 1,
                keyset: keyset_bytes,
                freshness: Some(self.freshness.to_proto()),
                cpu: Some(proto::CpuEvidence {
                    evidence: Some(Evidence::Simulated(report)),
                }),
                gpus: vec![],
                tpm: None,
                event_log: self.event_log.clone(),
                collateral: None,
            })
        }
    }

    pub(crate) fn key(n: u8) -> HostSigningKey {
        HostSigningKey::from_bytes(&[n; 32]).unwrap()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::fixture::{Fixture, NOW, key};
    use super::*;

    fn allow(f: &Fixture) -> Policy {
        Policy::new()
            .dangerous_allow_simulated(&f.root_public())
            .unwrap()
    }

    fn verify(f: &Fixture, policy: &Policy) -> Result<VerifiedBundle, VerifyError> {
        verify_bundle(&f.encode(), policy, &f.freshness, UnixTime::from_secs(NOW))
    }

    #[test]
    fn simulated_bundle_verifies_with_its_root() {
        let f = Fixture::new();
        let v = verify(&f, &allow(&f)).unwrap();
        assert_eq!(v.platform(), Platform::Simulated);
        assert_eq!(v.receipt_key(), &f.keyset.receipt_key);
        assert_eq!(v.tls_spki(), f.keyset.tls_spki.as_slice());
        assert_eq!(v.ohttp_key_config(), f.keyset.ohttp_key_config.as_slice());
        assert_eq!(
            v.keyset_hash(),
            &dait_chain_client::keyset_hash(&f.keyset.encode())
        );
        assert_eq!(v.host_key_id(), &f.keyset.host_key_id());
        assert_eq!(v.domain().chain_id, 31337);
    }

    #[test]
    fn default_policy_rejects_simulated() {
        let f = Fixture::new();
        assert!(matches!(
            verify(&f, &Policy::new()),
            Err(VerifyError::SimulatedEvidence)
        ));
    }

    #[test]
    fn another_root_is_rejected() {
        let f = Fixture::new();
        let other = Policy::new()
            .dangerous_allow_simulated(&key(42).verifying_key().to_sec1())
            .unwrap();
        assert!(matches!(
            verify(&f, &other),
            Err(VerifyError::AttestationKeyNotCertified)
        ));
    }

    #[test]
    fn evidence_for_another_nonce_is_rejected() {
        let f = Fixture::new();
        let r = verify_bundle(
            &f.encode(),
            &allow(&f),
            &Freshness::TenantNonce([6; 32]),
            UnixTime::from_secs(NOW),
        );
        assert!(matches!(r, Err(VerifyError::FreshnessMismatch)));
    }

    #[test]
    fn report_data_for_another_keyset_is_rejected() {
        let mut f = Fixture::new();
        f.bound_keyset_hash = Some(B256([0xee; 32]));
        assert!(matches!(
            verify(&f, &allow(&f)),
            Err(VerifyError::KeysetBinding)
        ));
    }

    #[test]
    fn flipped_report_signature_is_rejected() {
        let mut f = Fixture::new();
        f.flip_report_signature = true;
        assert!(matches!(
            verify(&f, &allow(&f)),
            Err(VerifyError::ReportSignature)
        ));
    }

    #[test]
    fn altered_event_log_is_rejected() {
        let f = Fixture::new();
        let mut bundle = dait_chain_client::decode_bundle(&f.encode()).unwrap();
        bundle.event_log.push(b'x');
        let bytes = dait_chain_client::encode_bundle(&bundle);
        let r = verify_bundle(&bytes, &allow(&f), &f.freshness, UnixTime::from_secs(NOW));
        assert!(matches!(r, Err(VerifyError::EventLogMismatch)));
    }

    #[test]
    fn keyset_from_the_future_is_rejected() {
        let mut f = Fixture::new();
        f.keyset.created_at = NOW + MAX_CLOCK_SKEW_SECS + 1;
        assert!(matches!(
            verify(&f, &allow(&f)),
            Err(VerifyError::KeysetFromFuture)
        ));
    }

    #[test]
    fn wrong_platform_tag_is_rejected() {
        let mut f = Fixture::new();
        f.platform = proto::Platform::Tdx;
        assert!(matches!(
            verify(&f, &allow(&f)),
            Err(VerifyError::MalformedReport { .. })
        ));
    }

    fn with_cpu(f: &Fixture, evidence: Evidence, collateral: Option<proto::Collateral>) -> Vec<u8> {
        let mut bundle = dait_chain_client::decode_bundle(&f.encode()).unwrap();
        bundle.cpu = Some(proto::CpuEvidence {
            evidence: Some(evidence),
        });
        bundle.collateral = collateral;
        dait_chain_client::encode_bundle(&bundle)
    }

    #[test]
    fn tdx_bundle_without_collateral_is_rejected() {
        let f = Fixture::new();
        let bytes = with_cpu(&f, Evidence::TdxQuote(vec![1, 2, 3]), None);
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
        let bytes = with_cpu(
            &f,
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
        let bytes = with_cpu(
            &f,
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
        let mut policy = allow(&f);
        policy.min_gpus = 1;
        assert!(matches!(
            verify(&f, &policy),
            Err(VerifyError::GpuCount {
                present: 0,
                required: 1
            })
        ));
    }

    #[test]
    fn missing_vtpm_is_rejected_when_required() {
        let f = Fixture::new();
        let mut policy = allow(&f);
        policy.tpm.required = true;
        assert!(matches!(verify(&f, &policy), Err(VerifyError::TpmMissing)));
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
        let r = verify_bundle(&bytes, &allow(&f), &f.freshness, UnixTime::from_secs(NOW));
        assert!(matches!(r, Err(VerifyError::Tpm(_))));
    }

    #[test]
    fn trailing_byte_and_truncation_are_malformed() {
        let f = Fixture::new();
        let mut bytes = f.encode();
        let policy = allow(&f);
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

    #[test]
    fn runtime_log_replays_and_rejects_a_wrong_digest() {
        let data = "model-weights:aa";
        let digest: [u8; 48] = sha2::Sha384::digest(data.as_bytes()).into();
        let log = format!(
            r#"[{{"imr":3,"kind":"dait.model-weights","data":"{data}","digest":"{}"}}]"#,
            hex::encode(digest)
        );
        let mut h = sha2::Sha384::new();
        h.update([0u8; 48]);
        h.update(digest);
        let want: [u8; 48] = h.finalize().into();
        assert_eq!(replay_runtime_log(log.as_bytes()).unwrap(), want);
        assert_eq!(replay_runtime_log(b"[]").unwrap(), [0u8; 48]);
        let wrong = log.replace("model-weights:aa", "model-weights:ab");
        assert!(matches!(
            replay_runtime_log(wrong.as_bytes()),
            Err(VerifyError::MalformedEventLog)
        ));
        assert!(matches!(
            replay_runtime_log(b"not json"),
            Err(VerifyError::MalformedEventLog)
        ));
    }

    // ---- simulated evidence against a reference's runtime events ----------------------------------------

    use dait_measure::reference::RuntimeEvent;

    /// The agent's default runtime events, in the order it extends them.
    fn events() -> Vec<RuntimeEvent> {
        ["model-id", "model-weights", "engine-build", "agent-config"]
            .iter()
            .zip(1u8..)
            .map(|(name, n)| RuntimeEvent {
                name: (*name).to_owned(),
                sha256: dait_measure::HexBytes([n; 32]),
            })
            .collect()
    }

    /// The event log the agent serves for `events` (its JSON encoding, one SHA-384 digest per event).
    fn runtime_log(events: &[RuntimeEvent]) -> Vec<u8> {
        let entries: Vec<serde_json::Value> = events
            .iter()
            .map(|e| {
                let data = dait_measure::reference::runtime_event_data(&e.name, &e.sha256);
                serde_json::json!({
                    "imr": 3,
                    "kind": e.name,
                    "data": String::from_utf8(data.clone()).unwrap(),
                    "digest": hex::encode(sha2::Sha384::digest(&data)),
                })
            })
            .collect();
        serde_json::to_vec(&entries).unwrap()
    }

    /// The synthetic reference with `events` as its runtime events.
    fn reference(events: Vec<RuntimeEvent>) -> ReferenceMeasurements {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../measurements/reference/0.0.0-synthetic.json");
        let mut r = ReferenceMeasurements::load(&path).unwrap();
        r.runtime.events = events;
        r
    }

    fn allow_with_reference(f: &Fixture, events: Vec<RuntimeEvent>) -> Policy {
        Policy::from_reference(&reference(events))
            .unwrap()
            .dangerous_allow_simulated(&f.root_public())
            .unwrap()
    }

    /// A simulated bundle whose log records `served` (signed into the report) under a reference of the
    /// agent's default events.
    fn verify_served(served: &[RuntimeEvent]) -> Result<VerifiedBundle, VerifyError> {
        let mut f = Fixture::new();
        f.event_log = runtime_log(served);
        verify(&f, &allow_with_reference(&f, events()))
    }

    #[test]
    fn simulated_runtime_log_matching_the_reference_verifies() {
        let v = verify_served(&events()).unwrap();
        assert_eq!(v.platform(), Platform::Simulated);
        let policy = Policy::from_reference(&reference(events())).unwrap();
        assert_eq!(
            policy.runtime_rtmr3,
            Some(replay_runtime_log(&runtime_log(&events())).unwrap())
        );
        // No runtime events in the reference: an empty log (or `[]`) matches.
        for log in [Vec::new(), b"[]".to_vec()] {
            let mut f = Fixture::new();
            f.event_log = log;
            verify(&f, &allow_with_reference(&f, Vec::new())).unwrap();
        }
    }

    #[test]
    fn simulated_runtime_log_unlike_the_reference_is_rejected() {
        let mut changed = events();
        changed[1].sha256.0[31] ^= 1;
        let mut missing = events();
        missing.remove(3);
        let mut extra = events();
        extra.push(RuntimeEvent {
            name: "model-weights".to_owned(),
            sha256: dait_measure::HexBytes([9; 32]),
        });
        let mut reordered = events();
        reordered.swap(1, 2);
        for (case, served) in [
            ("changed", changed),
            ("missing", missing),
            ("extra", extra),
            ("reordered", reordered),
            ("none", Vec::new()),
        ] {
            let r = verify_served(&served);
            assert!(
                matches!(r, Err(VerifyError::RuntimeMeasurementMismatch)),
                "{case}: {r:?}"
            );
        }
    }

    #[test]
    fn simulated_runtime_log_under_a_reference_must_be_well_formed() {
        let mut f = Fixture::new();
        f.event_log = b"simulated event log".to_vec();
        assert!(matches!(
            verify(&f, &allow_with_reference(&f, events())),
            Err(VerifyError::MalformedEventLog)
        ));
        // A stated digest that is not its data's.
        let log = String::from_utf8(runtime_log(&events())).unwrap();
        let data = String::from_utf8(dait_measure::reference::runtime_event_data(
            "model-id",
            &dait_measure::HexBytes([1; 32]),
        ))
        .unwrap();
        f.event_log = log
            .replacen(&data, &data.replace(":01", ":02"), 1)
            .into_bytes();
        assert!(matches!(
            verify(&f, &allow_with_reference(&f, events())),
            Err(VerifyError::MalformedEventLog)
        ));
    }

    #[test]
    fn simulated_evidence_under_a_reference_still_needs_the_dangerous_opt_in() {
        let mut f = Fixture::new();
        f.event_log = runtime_log(&events());
        let policy = Policy::from_reference(&reference(events())).unwrap();
        assert!(!policy.allows_simulated());
        assert!(matches!(
            verify(&f, &policy),
            Err(VerifyError::SimulatedEvidence)
        ));
    }

    #[test]
    fn malformed_root_is_refused() {
        assert!(matches!(
            Policy::new().dangerous_allow_simulated(&[4; 65]),
            Err(VerifyError::MalformedKey { .. })
        ));
    }
}
