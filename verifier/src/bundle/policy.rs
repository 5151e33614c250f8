//! What the verifier accepts: [`Policy`], its per-platform parts, and [`Policy::from_reference`].

use dait_measure::ReferenceMeasurements;

use super::{Platform, VerifyError};
use crate::nvidia::{GpuPolicy, NvidiaRoots};
use crate::snp::{SnpPolicy, SnpShape};
use crate::tdx::{TdxPolicy, TdxShape};

/// What a vTPM quote must show. Default: a quote is optional; when present it must verify and bind
/// `tpm_qualifying_data(report_data)`, and where it covers the runtime PCR (23) the bundle's runtime event log
/// must replay to it; no PCR and no attestation key pinned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TpmPolicy {
    /// Reject bundles without vTPM evidence.
    pub required: bool,
    /// PCR values (SHA-256 bank) the quote must carry: (index, value).
    pub pcrs: Vec<(u8, [u8; 32])>,
    /// The PCR the agent extends the runtime events into (reference files' `runtime.vtpm_pcr`): where the
    /// quote covers it, the bundle's runtime event log must replay to its SHA-256 bank.
    pub runtime_pcr: u8,
    /// The attestation key the quote must be signed by, as its TPM name (`000b` || SHA-256 of its
    /// `TPMT_PUBLIC`, as `tpm2_readpublic` prints it). A reference file cannot know it: each host's TPM has
    /// its own; the tenant pins it (`dait-tenant --tpm-ak-name`).
    pub ak_name: Option<Vec<u8>>,
}

impl Default for TpmPolicy {
    fn default() -> Self {
        Self {
            required: false,
            pcrs: Vec::new(),
            runtime_pcr: dait_chain_client::runtime_log::RUNTIME_VTPM_PCR,
            ak_name: None,
        }
    }
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
    pub(super) simulated_root: Option<[u8; 65]>,
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
    /// MROWNERCONFIG, TD attributes, XFAM; SNP launch measurement and VMPL per shape (the shape's VMPL
    /// replaces the default VMPL 0), HOST_DATA, guest policy; the runtime vTPM PCR when a vTPM quote is
    /// present; the runtime event log's replay for simulated evidence ([`Policy::runtime_rtmr3`]), which
    /// still needs [`Policy::dangerous_allow_simulated`].
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
            // RTMR3 holds only the runtime events the agent extends (all zero when there are none), or nothing
            // when the reference binds them at launch through MRCONFIGID (PROTOCOL.md §10.1).
            policy.tdx.rtmr[3] = Some(if reference.tdx_launch_bound() {
                [0u8; 48]
            } else {
                reference.expected_rtmr3().0
            });
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
            policy.snp.shapes = snp
                .shapes
                .iter()
                .map(|v| SnpShape {
                    measurement: v.measurement.0,
                    vmpl: u32::from(v.vmpl),
                })
                .collect();
            if !policy.snp.shapes.is_empty() {
                // Each shape names the VMPL of its reports (0, or 1 under an SVSM).
                policy.snp.vmpl = None;
            }
            policy.snp.host_data = snp.host_data.iter().map(|d| d.0).collect();
            policy.snp.guest_policy = Some(snp.guest_policy);
        }
        policy.tpm.runtime_pcr = reference.runtime.vtpm_pcr;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_launch_bound_reference_expects_rtmr3_zero() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../measurements/reference/0.0.0-synthetic.json");
        let mut reference = ReferenceMeasurements::load(&path).unwrap();
        let extended = Policy::from_reference(&reference).unwrap();
        assert_eq!(extended.tdx.rtmr[3], Some(reference.expected_rtmr3().0));
        let launch = reference.expected_launch_mrconfigid();
        reference.tdx.as_mut().unwrap().mr_config_id = vec![launch];
        let bound = Policy::from_reference(&reference).unwrap();
        assert_eq!(bound.tdx.rtmr[3], Some([0; 48]));
        assert_eq!(bound.tdx.mr_config_id, vec![launch.0]);
    }

    #[test]
    fn malformed_root_is_refused() {
        assert!(matches!(
            Policy::new().dangerous_allow_simulated(&[4; 65]),
            Err(VerifyError::MalformedKey { .. })
        ));
    }
}
