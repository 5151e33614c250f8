//! The production [`GpuAttester`]: NVIDIA's management library (NVML) through `nvml-wrapper`, which loads
//! `libnvidia-ml.so.1` when the agent starts with `--gpus N` (N > 0); a build or machine without the driver
//! needs nothing.
//!
//! The NVML calls (driver R550 or later; the struct layouts are `nvml-wrapper-sys`'s bindings of `nvml.h`:
//! `nvmlConfComputeGpuAttestationReport_t` with a 32-byte nonce and an 8192-byte report,
//! `nvmlConfComputeGpuCertificate_t` with a 5120-byte attestation chain):
//! - `nvmlDeviceGetCount`; `nvmlSystemGetConfComputeSettings` (CC feature, developer-tools mode) and
//!   `nvmlSystemGetConfComputeGpusReadyState`: [`GpuAttester::inventory`];
//! - `nvmlDeviceGetConfComputeGpuAttestationReport` (the SPDM GET_MEASUREMENTS request with our nonce and the
//!   signed response) and `nvmlDeviceGetConfComputeGpuCertificate` (its `attestationCertChain`, PEM):
//!   [`GpuAttester::report`];
//! - `nvmlSystemSetConfComputeGpusReadyState(ACCEPTING_CLIENT_REQUESTS)`: [`GpuAttester::set_ready`].
//!
//! The CC settings and the ready state are system-wide; NVML reaches them through any device handle (GPU 0).

use nvml_wrapper::Nvml;
use nvml_wrapper::error::NvmlError;

use super::gpu::{GpuAttester, GpuError, GpuInventory, GpuReport};

/// GPUs through NVML.
pub struct NvmlAttester {
    nvml: Nvml,
}

impl std::fmt::Debug for NvmlAttester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmlAttester").finish_non_exhaustive()
    }
}

fn nvml(op: &'static str) -> impl FnOnce(NvmlError) -> GpuError {
    move |source| GpuError::Nvml { op, source }
}

impl NvmlAttester {
    /// Load `libnvidia-ml.so.1` and initialise NVML.
    pub fn open() -> Result<Self, GpuError> {
        Ok(Self {
            nvml: Nvml::init().map_err(nvml("init (is the NVIDIA driver loaded?)"))?,
        })
    }

    /// Every GPU's UUID (`GPU-…`, `nvmlDeviceGetUUID`), by index: the ids the operator registers on chain.
    pub fn uuids(&self) -> Result<Vec<String>, GpuError> {
        let count = self.nvml.device_count().map_err(nvml("device count"))?;
        (0..count)
            .map(|i| {
                self.nvml
                    .device_by_index(i)
                    .and_then(|d| d.uuid())
                    .map_err(nvml("device UUID"))
            })
            .collect()
    }
}

impl GpuAttester for NvmlAttester {
    fn inventory(&self) -> Result<GpuInventory, GpuError> {
        let count = self.nvml.device_count().map_err(nvml("device count"))?;
        if count == 0 {
            return Ok(GpuInventory {
                count,
                cc_enabled: false,
                dev_tools: false,
                ready: false,
            });
        }
        let device = self.nvml.device_by_index(0).map_err(nvml("device 0"))?;
        Ok(GpuInventory {
            count,
            cc_enabled: device
                .is_cc_enabled()
                .map_err(nvml("confidential-computing settings"))?,
            dev_tools: device
                .is_cc_dev_mode_enabled()
                .map_err(nvml("confidential-computing settings"))?,
            ready: device
                .get_confidential_compute_state()
                .map_err(nvml("GPUs ready state"))?,
        })
    }

    fn report(&self, index: u32, nonce: &[u8; 32]) -> Result<GpuReport, GpuError> {
        let device = self
            .nvml
            .device_by_index(index)
            .map_err(nvml("device by index"))?;
        let report = device
            .confidential_compute_gpu_attestation_report(*nonce)
            .map_err(nvml("attestation report"))?;
        let certificate = device
            .confidential_compute_gpu_certificate()
            .map_err(nvml("attestation certificate chain"))?;
        Ok(GpuReport {
            attestation_report: report.attestation_report,
            cert_chain: certificate.attestation_cert_chain,
        })
    }

    fn set_ready(&self) -> Result<(), GpuError> {
        self.nvml
            .device_by_index(0)
            .and_then(|d| d.set_confidential_compute_state(true))
            .map_err(nvml("set GPUs ready state"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn struct_layouts_are_those_of_nvml_h() {
        use nvml_wrapper_sys::bindings::{
            nvmlConfComputeGpuAttestationReport_t as Report,
            nvmlConfComputeGpuCertificate_t as Certificate,
            nvmlSystemConfComputeSettings_v1_t as Settings,
        };
        use std::mem::{offset_of, size_of};
        // nvml.h: three unsigned ints, nonce[NVML_CC_GPU_CEC_NONCE_SIZE = 0x20],
        // attestationReport[NVML_CC_GPU_ATTESTATION_REPORT_SIZE = 0x2000],
        // cecAttestationReport[NVML_CC_GPU_CEC_ATTESTATION_REPORT_SIZE = 0x1000].
        assert_eq!(offset_of!(Report, nonce), 12);
        assert_eq!(offset_of!(Report, attestationReport), 44);
        assert_eq!(offset_of!(Report, cecAttestationReport), 44 + 0x2000);
        assert_eq!(size_of::<Report>(), 44 + 0x2000 + 0x1000);
        // Two unsigned ints, certChain[NVML_GPU_CERT_CHAIN_SIZE = 0x1000],
        // attestationCertChain[NVML_GPU_ATTESTATION_CERT_CHAIN_SIZE = 0x1400].
        assert_eq!(offset_of!(Certificate, certChain), 8);
        assert_eq!(offset_of!(Certificate, attestationCertChain), 8 + 0x1000);
        assert_eq!(size_of::<Certificate>(), 8 + 0x1000 + 0x1400);
        // version, environment, ccFeature, devToolsMode, multiGpuMode.
        assert_eq!(offset_of!(Settings, ccFeature), 8);
        assert_eq!(offset_of!(Settings, devToolsMode), 12);
        assert_eq!(size_of::<Settings>(), 20);
    }

    #[test]
    fn without_the_driver_open_fails_with_an_nvml_error() {
        if std::path::Path::new("/dev/nvidiactl").exists() {
            eprintln!("skipped: an NVIDIA driver is present (this checks its absence)");
            return;
        }
        match NvmlAttester::open() {
            Err(GpuError::Nvml { op, .. }) => assert!(op.starts_with("init"), "{op}"),
            other => panic!("expected an NVML init error, got {other:?}"),
        }
    }
}
