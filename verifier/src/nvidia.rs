//! NVIDIA GPU evidence (Hopper H100/H200 in confidential-computing mode): SPDM 1.1 signed measurements, the
//! device certificate chain up to the pinned NVIDIA Device Identity root, the FWID binding, OCSP, and the
//! driver and VBIOS reference integrity manifests (RIMs).
//!
//! Entry points: [`verify_gpu`] for one GPU, [`verify_gpus`] for several, each against its own expected nonce
//! ([`gpu_nonce`] derives it from `report_data` as the protocol specifies). Everything is a pure function of its
//! inputs and of `now` (Unix seconds); nothing is fetched.
//!
//! Facts from the format (DSP0274 1.1 and NVIDIA's verifiers): the evidence is the 37-byte GET_MEASUREMENTS
//! request followed by the MEASUREMENTS response; the signature is ECDSA P-384 over SHA-384 of
//! request ‖ response-without-signature, raw r‖s, by the first (leaf, "GSP FMC") certificate of the chain; RIM
//! index `i` holds the golden value of measurement block index `i + 1`. Zero bytes after the signature, as
//! some real H100 evidence carries, are accepted up to a cap and reported ([`VerifiedGpu::padding`]); see
//! [`spdm::parse`] for what NVIDIA's verifiers and trustee do with them.
//!
//! Not covered: the GPU's CC mode and "production vs debug" state are not fields of the signed evidence in the
//! Hopper samples this was built against (NVIDIA's verifiers read CC mode from the driver, unsigned); they are
//! bound only indirectly, through the measurements that the RIMs pin. [`GpuPolicy`] therefore has no such
//! switch; unknown opaque-data types are kept raw in [`opaque::OpaqueData`] for a later policy.

pub mod ocsp;
pub mod opaque;
pub mod spdm;

use sha2::{Digest as _, Sha256};
use x509_cert::Certificate;

use crate::UnixTime;
use crate::rim::{self, RimError, VerifiedRim};
use crate::wire::ParseError;
use crate::x509::{self as x, TrustAnchor, X509Error};

/// SHA-256 of the DER SubjectPublicKeyInfo of "NVIDIA Device Identity CA" (P-384, valid 2021-11-05 to
/// 9999-12-31), the root of every Hopper device certificate chain. Provenance: the root certificate NVIDIA
/// ships with its local GPU verifier (nvtrust `verifier_device_root.pem`), certificate SHA-256
/// 102bf659d5419614c9d8e6aecebc80454eb26b1df6a769ac720b9a690b167b48.
pub const DEVICE_IDENTITY_ROOT_SPKI_SHA256: [u8; 32] =
    hex32(b"a90c4eb5acfd3e3d03a25db6a26b84f720ad0503196c627c21ddd48dd85b06a4");

/// SHA-256 of the DER SubjectPublicKeyInfo of "NVIDIA CoRIM signing Root CA" (P-384, valid 2023-03-16 to
/// 2053-03-08), the root of the RIM signer chains. Provenance: nvtrust `verifier_RIM_root.pem`, certificate
/// SHA-256 12977b5115acb0381179279fffeb5a8c4d264971ebb32298023a465fa41df5d1.
pub const RIM_ROOT_SPKI_SHA256: [u8; 32] =
    hex32(b"dec1dc316477aa851eebdf51327ae9f864bc8d89254657ed1e7eb9168af1e1a3");

/// OID of the TCG DICE FWID-bearing extension NVIDIA puts in the device certificates (2.23.133.5.4.1).
pub const OID_TCG_DICE_FWID: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("2.23.133.5.4.1");

const fn hex32(s: &[u8; 64]) -> [u8; 32] {
    const fn nib(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c.wrapping_sub(b'0'),
            b'a'..=b'f' => c.wrapping_sub(b'a').wrapping_add(10),
            _ => 0xff,
        }
    }
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        #[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)] // const context, i < 32
        {
            out[i] = (nib(s[2 * i]) << 4) | nib(s[2 * i + 1]);
            i += 1;
        }
    }
    out
}

/// The trust anchors for NVIDIA evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NvidiaRoots {
    /// Root of the GPU device certificate chains.
    pub device_identity: TrustAnchor,
    /// Root of the RIM signer chains.
    pub rim_signing: TrustAnchor,
}

impl NvidiaRoots {
    /// NVIDIA's published roots, pinned in this crate.
    pub const fn pinned() -> Self {
        Self {
            device_identity: TrustAnchor::from_spki_sha256(DEVICE_IDENTITY_ROOT_SPKI_SHA256),
            rim_signing: TrustAnchor::from_spki_sha256(RIM_ROOT_SPKI_SHA256),
        }
    }
}

/// What GPU evidence must show. [`Default`] is the secure setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpuPolicy {
    /// Driver and VBIOS RIMs must be present, valid, match the reported versions, and every measurement they
    /// define must match the report. Default: true.
    pub require_rim_match: bool,
    /// Every non-root certificate of the device chain must have a good, fresh OCSP response. Default: true.
    pub require_ocsp: bool,
    /// When the report's opaque data carries a firmware id, the leaf certificate's FWID must equal it.
    /// Default: true.
    pub require_fwid_match: bool,
}

impl Default for GpuPolicy {
    fn default() -> Self {
        Self {
            require_rim_match: true,
            require_ocsp: true,
            require_fwid_match: true,
        }
    }
}

/// One GPU's evidence as carried in a bundle.
#[derive(Clone, Copy, Debug)]
pub struct GpuEvidenceInput<'a> {
    /// SPDM GET_MEASUREMENTS request ‖ MEASUREMENTS response, raw bytes.
    pub spdm: &'a [u8],
    /// The device certificate chain, leaf first, ending at the Device Identity root: PEM text or concatenated
    /// DER certificates.
    pub cert_chain_pem: &'a [u8],
    /// The driver RIM (SWID XML), if carried.
    pub driver_rim: Option<&'a [u8]>,
    /// The VBIOS RIM (SWID XML), if carried.
    pub vbios_rim: Option<&'a [u8]>,
    /// DER OCSP responses for the chain's certificates, in any order.
    pub ocsp_responses: &'a [&'a [u8]],
}

/// Why GPU evidence was rejected.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NvidiaError {
    /// The device certificate chain is invalid (signature, names, validity at `now`, or root).
    #[error("GPU certificate chain")]
    Chain(#[source] X509Error),
    /// The leaf certificate's FWID extension differs from the firmware id in the report.
    #[error("FWID in the attestation certificate differs from the report's firmware id")]
    FwidMismatch,
    /// The report carries a firmware id but the leaf certificate has no FWID extension.
    #[error("attestation certificate has no FWID extension")]
    FwidMissing,
    /// The leaf key is not an ECDSA P-384 key.
    #[error("attestation key is not ECDSA P-384")]
    LeafKeyUnsupported,
    /// A golden measurement defined by a RIM differs from the report's block.
    #[error("measurement block {block_index} differs from the RIM golden value")]
    MeasurementMismatch {
        /// SPDM block index (1-based).
        block_index: u16,
    },
    /// A RIM defines a golden value for a block the report does not carry.
    #[error("measurement block {block_index} defined by a RIM is missing from the report")]
    MeasurementMissing {
        /// SPDM block index (1-based).
        block_index: u16,
    },
    /// The SPDM request nonce is not the expected one.
    #[error("SPDM nonce differs from the expected nonce")]
    NonceMismatch,
    /// The number of expected nonces differs from the number of GPUs.
    #[error("{gpus} GPU evidences but {nonces} expected nonces")]
    NonceCountMismatch {
        /// Evidences given.
        gpus: usize,
        /// Nonces given.
        nonces: usize,
    },
    /// An OCSP response failed (signature, status, or time window).
    #[error("OCSP for certificate {index}")]
    Ocsp {
        /// Chain position (leaf = 0).
        index: usize,
        /// The failure.
        #[source]
        source: ocsp::OcspError,
    },
    /// The policy requires OCSP and a non-root certificate has no response.
    #[error("no OCSP response for certificate {index}")]
    OcspMissing {
        /// Chain position (leaf = 0).
        index: usize,
    },
    /// The opaque data is malformed.
    #[error("opaque data")]
    Opaque(#[source] ParseError),
    /// The SPDM bytes are malformed.
    #[error("SPDM evidence")]
    Parse(#[source] ParseError),
    /// Both RIMs define a golden value for the same index.
    #[error("driver and VBIOS RIMs both define index {rim_index}")]
    RimConflict {
        /// RIM index (0-based).
        rim_index: u16,
    },
    /// A RIM failed verification.
    #[error("{which} RIM")]
    Rim {
        /// `driver` or `vbios`.
        which: &'static str,
        /// The failure.
        #[source]
        source: RimError,
    },
    /// The policy requires RIMs and one is absent.
    #[error("{which} RIM is required but absent")]
    RimMissing {
        /// `driver` or `vbios`.
        which: &'static str,
    },
    /// A RIM is for a different driver or VBIOS version than the report states.
    #[error("{which} RIM version differs from the report's")]
    RimVersionMismatch {
        /// `driver` or `vbios`.
        which: &'static str,
    },
    /// The ECDSA signature over the SPDM transcript does not verify with the leaf key.
    #[error("SPDM signature does not verify")]
    SignatureMismatch,
}

/// Comparison outcome of one SPDM measurement block index against the RIMs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IndexOutcome {
    /// A RIM defines it and the report's value is one of the alternatives.
    Match,
    /// A RIM defines it and the report's value is none of the alternatives.
    Mismatch,
    /// A RIM defines it but the report has no such block.
    MissingFromReport,
    /// No RIM defines an active golden value for it.
    NotInRim,
}

/// Per-index comparison of a report against its RIMs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeasurementComparison {
    /// (SPDM block index, outcome), ascending.
    pub outcomes: Vec<(u16, IndexOutcome)>,
}

impl MeasurementComparison {
    /// SPDM block indices with the given outcome.
    pub fn indices(&self, outcome: IndexOutcome) -> Vec<u16> {
        self.outcomes
            .iter()
            .filter(|(_, o)| *o == outcome)
            .map(|(i, _)| *i)
            .collect()
    }
}

/// Compares every measurement block with the active golden values of the RIMs (RIM index i ↔ block i + 1).
pub fn compare_measurements(
    blocks: &[spdm::MeasurementBlock<'_>],
    rims: &[&[rim::GoldenMeasurement]],
) -> Result<MeasurementComparison, NvidiaError> {
    use std::collections::BTreeMap;
    let mut golden: BTreeMap<u16, &rim::GoldenMeasurement> = BTreeMap::new();
    for set in rims {
        for g in set.iter().filter(|g| g.active) {
            let block_index = g
                .index
                .checked_add(1)
                .ok_or(NvidiaError::RimConflict { rim_index: g.index })?;
            if golden.insert(block_index, g).is_some() {
                return Err(NvidiaError::RimConflict { rim_index: g.index });
            }
        }
    }
    let mut outcomes: BTreeMap<u16, IndexOutcome> = BTreeMap::new();
    for b in blocks {
        let idx = u16::from(b.index);
        let outcome = match golden.get(&idx) {
            None => IndexOutcome::NotInRim,
            Some(g) if g.alternatives.iter().any(|a| a.as_slice() == b.value) => {
                IndexOutcome::Match
            }
            Some(_) => IndexOutcome::Mismatch,
        };
        outcomes.insert(idx, outcome);
    }
    for idx in golden.keys() {
        outcomes
            .entry(*idx)
            .or_insert(IndexOutcome::MissingFromReport);
    }
    Ok(MeasurementComparison {
        outcomes: outcomes.into_iter().collect(),
    })
}

/// A GPU whose evidence verified. Only [`verify_gpu`] constructs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedGpu {
    nonce: [u8; 32],
    measurements: Vec<(u8, Vec<u8>)>,
    driver_version: Option<String>,
    vbios_version: Option<String>,
    fwid: Option<Vec<u8>>,
    fwid_checked: bool,
    comparison: Option<MeasurementComparison>,
    ocsp_checked: usize,
    leaf_spki_sha256: [u8; 32],
    padding: usize,
}

impl VerifiedGpu {
    /// The SPDM nonce the report is bound to.
    pub fn nonce(&self) -> &[u8; 32] {
        &self.nonce
    }
    /// (block index, measurement value) for every block, in report order.
    pub fn measurements(&self) -> &[(u8, Vec<u8>)] {
        &self.measurements
    }
    /// Driver version from the report's opaque data.
    pub fn driver_version(&self) -> Option<&str> {
        self.driver_version.as_deref()
    }
    /// VBIOS version from the report's opaque data (NVIDIA's printed form).
    pub fn vbios_version(&self) -> Option<&str> {
        self.vbios_version.as_deref()
    }
    /// The firmware id from the opaque data, when present.
    pub fn fwid(&self) -> Option<&[u8]> {
        self.fwid.as_deref()
    }
    /// Whether the firmware id was compared with the certificate's FWID (and matched).
    pub fn fwid_checked(&self) -> bool {
        self.fwid_checked
    }
    /// The RIM comparison, when RIMs were given.
    pub fn comparison(&self) -> Option<&MeasurementComparison> {
        self.comparison.as_ref()
    }
    /// How many certificates had a good OCSP response.
    pub fn ocsp_checked(&self) -> usize {
        self.ocsp_checked
    }
    /// SHA-256 of the attestation (leaf) key's SubjectPublicKeyInfo.
    pub fn leaf_spki_sha256(&self) -> &[u8; 32] {
        &self.leaf_spki_sha256
    }
    /// How many zero bytes followed the SPDM signature (0 for exact evidence; unsigned, so informational).
    pub fn padding(&self) -> usize {
        self.padding
    }
}

/// The SPDM nonce for GPU `index` of a bundle: `H256("dait/v1/gpu-nonce" || report_data || u32be(index))`
/// (the protocol document, section 3), as the protocol core defines it.
pub fn gpu_nonce(report_data: &[u8; 64], index: u32) -> [u8; 32] {
    dait_chain_client::gpu_nonce(report_data, index).0
}

fn verify_spdm_signature(
    ev: &spdm::SpdmEvidence<'_>,
    leaf: &Certificate,
) -> Result<(), NvidiaError> {
    let (curve, point) = x::ec_key(&leaf.tbs_certificate.subject_public_key_info)
        .map_err(|_| NvidiaError::LeafKeyUnsupported)?;
    match x::verify_ecdsa(
        &curve,
        point,
        ev.signed,
        x::EcdsaHash::Sha384,
        x::EcdsaSig::Raw(ev.response.signature),
    ) {
        Ok(()) => Ok(()),
        Err(X509Error::BadPublicKey) => Err(NvidiaError::LeafKeyUnsupported),
        Err(_) => Err(NvidiaError::SignatureMismatch),
    }
}

/// Checks that `leaf`'s FWID extension (2.23.133.5.4.1) carries `fwid`.
pub fn check_fwid(leaf: &Certificate, fwid: &[u8]) -> Result<(), NvidiaError> {
    let ext = x::extension(leaf, &OID_TCG_DICE_FWID).ok_or(NvidiaError::FwidMissing)?;
    let fwids = x::find_fwids(ext);
    if fwids.is_empty() {
        return Err(NvidiaError::FwidMissing);
    }
    if fwids.iter().any(|(_, d)| d.as_slice() == fwid) {
        Ok(())
    } else {
        Err(NvidiaError::FwidMismatch)
    }
}

fn check_ocsp(
    chain: &[Certificate],
    responses: &[&[u8]],
    require: bool,
    now: u64,
) -> Result<usize, NvidiaError> {
    let mut checked = 0usize;
    for (index, pair) in chain.windows(2).enumerate() {
        let [cert, issuer] = pair else { continue };
        let mut outcome: Option<Result<ocsp::OcspGood, ocsp::OcspError>> = None;
        for r in responses {
            match ocsp::verify(r, cert, issuer, UnixTime::from_secs(now)) {
                Err(ocsp::OcspError::NoMatchingResponse) => {}
                // A malformed or foreign response is judged only if nothing better covers this certificate.
                Err(ocsp::OcspError::Malformed | ocsp::OcspError::BadSignature(_))
                    if outcome.is_some() => {}
                other => {
                    let done = other.is_ok();
                    outcome = Some(other);
                    if done {
                        break;
                    }
                }
            }
        }
        match outcome {
            Some(Ok(_)) => checked = checked.saturating_add(1),
            Some(Err(source)) => return Err(NvidiaError::Ocsp { index, source }),
            None if require => return Err(NvidiaError::OcspMissing { index }),
            None => {}
        }
    }
    Ok(checked)
}

/// Work shared by the GPUs of one verification: certificate signatures and RIMs already verified (for the
/// same roots and time). Only successes are remembered.
#[derive(Debug, Default)]
struct Shared {
    signatures: x::SignatureCache,
    rims: std::collections::HashMap<[u8; 32], VerifiedRim>,
}

fn verify_rim_for(
    which: &'static str,
    xml: Option<&[u8]>,
    roots: &NvidiaRoots,
    now: u64,
    require: bool,
    shared: &mut Shared,
) -> Result<Option<VerifiedRim>, NvidiaError> {
    match xml {
        Some(x) => {
            let key: [u8; 32] = Sha256::digest(x).into();
            if let Some(v) = shared.rims.get(&key) {
                return Ok(Some(v.clone()));
            }
            let v = rim::verify_rim_cached(
                x,
                &roots.rim_signing,
                UnixTime::from_secs(now),
                &mut shared.signatures,
            )
            .map_err(|source| NvidiaError::Rim { which, source })?;
            shared.rims.insert(key, v.clone());
            Ok(Some(v))
        }
        None if require => Err(NvidiaError::RimMissing { which }),
        None => Ok(None),
    }
}

/// Verifies one GPU's evidence against `expected_nonce` under `policy` at `now` (Unix seconds).
///
/// Order of checks (the first failure is returned): SPDM parse; nonce; device chain to the pinned root at
/// `now`; SPDM signature by the leaf; opaque data; FWID; OCSP; RIMs (signature, chain, validity), their
/// versions against the report, and every golden measurement.
pub fn verify_gpu(
    input: &GpuEvidenceInput<'_>,
    expected_nonce: &[u8; 32],
    policy: &GpuPolicy,
    roots: &NvidiaRoots,
    now: UnixTime,
) -> Result<VerifiedGpu, NvidiaError> {
    verify_gpu_shared(
        input,
        expected_nonce,
        policy,
        roots,
        now,
        &mut Shared::default(),
    )
}

fn verify_gpu_shared(
    input: &GpuEvidenceInput<'_>,
    expected_nonce: &[u8; 32],
    policy: &GpuPolicy,
    roots: &NvidiaRoots,
    now: UnixTime,
    shared: &mut Shared,
) -> Result<VerifiedGpu, NvidiaError> {
    let now = now.as_secs();
    let ev = spdm::parse(input.spdm).map_err(NvidiaError::Parse)?;
    if ev.request.nonce != expected_nonce {
        return Err(NvidiaError::NonceMismatch);
    }
    let chain = x::parse_chain(input.cert_chain_pem).map_err(NvidiaError::Chain)?;
    x::verify_chain_cached(&chain, &roots.device_identity, now, &mut shared.signatures)
        .map_err(NvidiaError::Chain)?;
    let leaf = chain
        .first()
        .ok_or(NvidiaError::Chain(X509Error::EmptyChain))?;
    verify_spdm_signature(&ev, leaf)?;

    let opaque = opaque::parse(ev.response.opaque).map_err(NvidiaError::Opaque)?;
    let fwid = opaque.fwid();
    let mut fwid_checked = false;
    if let Some(f) = fwid
        && policy.require_fwid_match
    {
        check_fwid(leaf, f)?;
        fwid_checked = true;
    }

    let ocsp_checked = check_ocsp(&chain, input.ocsp_responses, policy.require_ocsp, now)?;

    let driver_version = opaque.driver_version();
    let vbios_version = opaque.vbios_version();
    let driver = verify_rim_for(
        "driver",
        input.driver_rim,
        roots,
        now,
        policy.require_rim_match,
        shared,
    )?;
    let vbios = verify_rim_for(
        "vbios",
        input.vbios_rim,
        roots,
        now,
        policy.require_rim_match,
        shared,
    )?;
    let mut sets: Vec<&[rim::GoldenMeasurement]> = Vec::new();
    if let Some(d) = &driver {
        if !versions_equal(d.version(), driver_version.as_deref()) {
            return Err(NvidiaError::RimVersionMismatch { which: "driver" });
        }
        sets.push(d.measurements());
    }
    if let Some(v) = &vbios {
        if !versions_equal(v.version(), vbios_version.as_deref()) {
            return Err(NvidiaError::RimVersionMismatch { which: "vbios" });
        }
        sets.push(v.measurements());
    }
    let comparison = if sets.is_empty() {
        None
    } else {
        let c = compare_measurements(&ev.response.blocks, &sets)?;
        if policy.require_rim_match {
            for (block_index, o) in &c.outcomes {
                match o {
                    IndexOutcome::Mismatch => {
                        return Err(NvidiaError::MeasurementMismatch {
                            block_index: *block_index,
                        });
                    }
                    IndexOutcome::MissingFromReport => {
                        return Err(NvidiaError::MeasurementMissing {
                            block_index: *block_index,
                        });
                    }
                    _ => {}
                }
            }
        }
        Some(c)
    };

    Ok(VerifiedGpu {
        nonce: *ev.request.nonce,
        measurements: ev
            .response
            .blocks
            .iter()
            .map(|b| (b.index, b.value.to_vec()))
            .collect(),
        driver_version,
        vbios_version,
        fwid: fwid.map(<[u8]>::to_vec),
        fwid_checked,
        comparison,
        ocsp_checked,
        leaf_spki_sha256: x::spki_sha256(leaf).map_err(NvidiaError::Chain)?,
        padding: ev.padding,
    })
}

fn versions_equal(rim: &str, report: Option<&str>) -> bool {
    report.is_some_and(|r| r.eq_ignore_ascii_case(rim))
}

/// A failure of one GPU among several.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("GPU {index}")]
pub struct GpuSetError {
    /// Position of the failing GPU.
    pub index: usize,
    /// Its failure.
    #[source]
    pub source: NvidiaError,
}

/// Verifies N GPU evidences, the i-th against `expected_nonces[i]`; the first failure names its GPU.
/// Certificate signatures and RIMs common to several GPUs are verified once.
pub fn verify_gpus(
    inputs: &[GpuEvidenceInput<'_>],
    expected_nonces: &[[u8; 32]],
    policy: &GpuPolicy,
    roots: &NvidiaRoots,
    now: UnixTime,
) -> Result<Vec<VerifiedGpu>, GpuSetError> {
    if inputs.len() != expected_nonces.len() {
        return Err(GpuSetError {
            index: 0,
            source: NvidiaError::NonceCountMismatch {
                gpus: inputs.len(),
                nonces: expected_nonces.len(),
            },
        });
    }
    let mut shared = Shared::default();
    inputs
        .iter()
        .zip(expected_nonces)
        .enumerate()
        .map(|(index, (input, nonce))| {
            verify_gpu_shared(input, nonce, policy, roots, now, &mut shared)
                .map_err(|source| GpuSetError { index, source })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn pinned_hashes_decode() {
        assert_eq!(DEVICE_IDENTITY_ROOT_SPKI_SHA256[0], 0xa9);
        assert_eq!(DEVICE_IDENTITY_ROOT_SPKI_SHA256[31], 0xa4);
        assert_eq!(RIM_ROOT_SPKI_SHA256[0], 0xde);
        assert_eq!(RIM_ROOT_SPKI_SHA256[31], 0xa3);
    }

    #[test]
    fn gpu_nonces_differ_per_index() {
        let rd = [7u8; 64];
        assert_ne!(gpu_nonce(&rd, 0), gpu_nonce(&rd, 1));
    }

    #[test]
    fn default_policy_is_strict() {
        let p = GpuPolicy::default();
        assert!(p.require_rim_match && p.require_ocsp && p.require_fwid_match);
    }
}
