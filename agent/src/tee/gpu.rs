//! NVIDIA GPU evidence (PROTOCOL.md §7): who produces the bundle's `gpus`, and the start-up rule for them.
//!
//! A [`GpuAttester`] enumerates the GPUs (count, confidential-computing mode, ready state) and, per request, gives
//! GPU `i`'s attestation report for `gpu_nonce(report_data, i)` with its certificate chain. The production
//! attester is [`super::nvml::NvmlAttester`]; a test attester lives in the tests only.
//!
//! [`Gpus::open`] is the start-up rule: CC mode on (not in developer-tools mode) and exactly the expected number of
//! GPUs, or the agent refuses to start. [`Gpus::verify_and_set_ready`] then collects evidence for a fresh
//! `report_data`, verifies every GPU with the verifier ([`dait_verifier::nvidia::verify_gpus`]) and only then
//! sets the GPUs' ready state, so no GPU accepts work before its evidence verified. [`Gpus::evidence`] is the
//! per-request path: each GPU's report in index order, the position in `gpus` being the `i` of its nonce.

use dait_chain_client::proto::GpuEvidence;
use dait_verifier::UnixTime;
use dait_verifier::nvidia::{GpuPolicy, GpuSetError, NvidiaRoots, VerifiedGpu};
use dait_verifier::x509::X509Error;

/// Length of the SPDM 1.1 GET_MEASUREMENTS request at the start of an attestation report (DSP0274: 4 header
/// bytes, the 32-byte nonce, the slot id); the MEASUREMENTS response follows it.
pub const SPDM_REQUEST_LEN: usize = 37;

/// Errors of GPU evidence and of the GPU start-up rule.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GpuError {
    /// The attestation report is too short to hold the SPDM request.
    #[error("GPU {index}: the attestation report is {len} bytes, shorter than its SPDM request")]
    BadReport {
        /// GPU index.
        index: u32,
        /// Report length.
        len: usize,
    },
    /// Confidential-computing mode is off.
    #[error(
        "the GPUs' confidential-computing mode is off (enable it on the host: docs/HARDWARE.md)"
    )]
    CcOff,
    /// Confidential-computing mode is on in developer-tools mode, which lets the host debug the GPU.
    #[error("the GPUs' confidential-computing mode is in developer-tools mode (not protected)")]
    CcDevTools,
    /// The device certificate chain the driver returned does not decode.
    #[error("GPU {index}: the device certificate chain does not decode")]
    Chain {
        /// GPU index.
        index: u32,
        /// Why.
        #[source]
        source: X509Error,
    },
    /// A different number of GPUs than configured.
    #[error("found {found} GPUs, configured --gpus {expected}")]
    Count {
        /// GPUs present.
        found: u32,
        /// `--gpus`.
        expected: u32,
    },
    /// An NVML call failed (the library missing, a driver without the confidential-computing calls, a GPU lost).
    #[error("NVML {op}")]
    Nvml {
        /// The operation.
        op: &'static str,
        /// Its error.
        #[source]
        source: nvml_wrapper::error::NvmlError,
    },
    /// The agent's own verification of a GPU's evidence failed: the GPUs were not set ready.
    #[error("the GPU evidence does not verify; the GPUs were not set ready")]
    Verify(#[source] GpuSetError),
}

/// What the attester sees of the GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuInventory {
    /// Number of GPUs.
    pub count: u32,
    /// Confidential-computing mode is on (NVML `ccFeature`).
    pub cc_enabled: bool,
    /// Confidential-computing developer-tools mode is on (NVML `devToolsMode`).
    pub dev_tools: bool,
    /// The GPUs accept work (NVML "GPUs ready state").
    pub ready: bool,
}

/// One GPU's attestation report and certificate chain, as the driver returns them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuReport {
    /// SPDM GET_MEASUREMENTS request (37 bytes, carries the nonce) followed by the signed MEASUREMENTS response.
    pub attestation_report: Vec<u8>,
    /// The device certificate chain, leaf first, as PEM text (what NVML returns).
    pub cert_chain: Vec<u8>,
}

/// A source of GPU evidence.
pub trait GpuAttester: Send + Sync {
    /// The GPUs, their confidential-computing mode and ready state.
    fn inventory(&self) -> Result<GpuInventory, GpuError>;
    /// GPU `index`'s attestation report for `nonce`, and its certificate chain.
    fn report(&self, index: u32, nonce: &[u8; 32]) -> Result<GpuReport, GpuError>;
    /// Let the GPUs accept work (NVML `nvmlSystemSetConfComputeGpusReadyState(ACCEPTING)`).
    fn set_ready(&self) -> Result<(), GpuError>;
}

/// The GPUs the agent attests: an attester whose inventory passed the start-up rule.
pub struct Gpus {
    attester: Box<dyn GpuAttester>,
    count: u32,
}

impl std::fmt::Debug for Gpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpus")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl Gpus {
    /// The start-up rule: CC mode on, not in developer-tools mode, and exactly `expected` GPUs.
    pub fn open(attester: Box<dyn GpuAttester>, expected: u32) -> Result<Self, GpuError> {
        let inventory = attester.inventory()?;
        if inventory.count != expected {
            return Err(GpuError::Count {
                found: inventory.count,
                expected,
            });
        }
        if !inventory.cc_enabled {
            return Err(GpuError::CcOff);
        }
        if inventory.dev_tools {
            return Err(GpuError::CcDevTools);
        }
        Ok(Self {
            attester,
            count: expected,
        })
    }

    /// Number of GPUs.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The bundle's `gpus` for `report_data`: GPU `i`'s report for `gpu_nonce(report_data, i)`, in index order.
    /// RIMs and OCSP responses are left empty here (collateral).
    pub fn evidence(&self, report_data: &[u8; 64]) -> Result<Vec<GpuEvidence>, GpuError> {
        (0..self.count)
            .map(|index| {
                let nonce = dait_chain_client::gpu_nonce(report_data, index).0;
                let report = self.attester.report(index, &nonce)?;
                to_proto(index, report)
            })
            .collect()
    }

    /// The agent's own check before the GPUs take work: evidence for a fresh `report_data`, verified at `now`
    /// with [`self_check_policy`] against NVIDIA's pinned roots; only when every GPU passes are the GPUs set
    /// ready. Returns what was verified.
    pub fn verify_and_set_ready(&self, now: UnixTime) -> Result<Vec<VerifiedGpu>, GpuError> {
        let mut report_data = [0u8; 64];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut report_data);
        let verified = verify(&self.evidence(&report_data)?, &report_data, now)?;
        self.attester.set_ready()?;
        Ok(verified)
    }
}

/// What the agent checks of its own GPUs before setting them ready: the nonce, the device chain to NVIDIA's
/// pinned root, the SPDM signature and the FWID. RIMs and OCSP need NVIDIA's collateral; tenants check them.
pub fn self_check_policy() -> GpuPolicy {
    GpuPolicy {
        require_rim_match: false,
        require_ocsp: false,
        require_fwid_match: true,
    }
}

/// Verifies `gpus` (a bundle's, in order) against the nonces of `report_data` under [`self_check_policy`] and
/// NVIDIA's pinned roots.
pub fn verify(
    gpus: &[GpuEvidence],
    report_data: &[u8; 64],
    now: UnixTime,
) -> Result<Vec<VerifiedGpu>, GpuError> {
    dait_verifier::bundle::verify_bundle_gpus(
        gpus,
        &self_check_policy(),
        &NvidiaRoots::pinned(),
        report_data,
        now,
    )
    .map_err(GpuError::Verify)
}

/// The DER certificates of a PEM chain, each checked to decode.
fn pem_chain(pem: &[u8]) -> Result<Vec<Vec<u8>>, X509Error> {
    let chain = dait_verifier::x509::pem_to_der(pem)?;
    for (i, der) in chain.iter().enumerate() {
        dait_verifier::x509::parse_der(der, i)?;
    }
    Ok(chain)
}

/// A driver report as the bundle carries it: the SPDM request and response apart, the chain as DER certificates.
fn to_proto(index: u32, report: GpuReport) -> Result<GpuEvidence, GpuError> {
    let mut spdm_request = report.attestation_report;
    if spdm_request.len() < SPDM_REQUEST_LEN {
        return Err(GpuError::BadReport {
            index,
            len: spdm_request.len(),
        });
    }
    let spdm_response = spdm_request.split_off(SPDM_REQUEST_LEN);
    let cert_chain =
        pem_chain(&report.cert_chain).map_err(|source| GpuError::Chain { index, source })?;
    Ok(GpuEvidence {
        spdm_request,
        spdm_response,
        cert_chain,
        driver_rim: Vec::new(),
        vbios_rim: Vec::new(),
        ocsp_responses: Vec::new(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// The real 2025 H100 report of the evidence set.
    fn h100() -> GpuReport {
        let hex_text = dait_testdata::read("nvidia/nvtrust__h100_2025_report.hex");
        GpuReport {
            attestation_report: hex::decode(String::from_utf8(hex_text).unwrap().trim()).unwrap(),
            cert_chain: dait_testdata::read("nvidia/nvtrust__h100_2025_cert_chain.pem"),
        }
    }

    #[test]
    fn report_splits_into_request_and_response_and_the_chain_into_der() {
        let r = h100();
        let p = to_proto(0, r.clone()).unwrap();
        assert_eq!(p.spdm_request.len(), SPDM_REQUEST_LEN);
        assert_eq!(
            [p.spdm_request.clone(), p.spdm_response].concat(),
            r.attestation_report
        );
        assert_eq!(
            p.cert_chain,
            dait_verifier::x509::pem_to_der(&r.cert_chain).unwrap()
        );
        assert_eq!(p.cert_chain.len(), 5);
    }

    #[test]
    fn short_report_and_bad_chain_are_errors() {
        let mut r = h100();
        r.attestation_report.truncate(36);
        assert!(matches!(
            to_proto(3, r),
            Err(GpuError::BadReport { index: 3, len: 36 })
        ));
        let mut r = h100();
        r.cert_chain = b"not a chain".to_vec();
        assert!(matches!(
            to_proto(1, r),
            Err(GpuError::Chain { index: 1, .. })
        ));
    }

    #[test]
    fn self_check_is_strict_where_no_collateral_is_needed() {
        let p = self_check_policy();
        assert!(p.require_fwid_match);
        assert!(!p.require_rim_match && !p.require_ocsp);
    }
}
