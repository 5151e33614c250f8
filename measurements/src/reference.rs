//! The published reference values of one image release: `measurements/reference/<release>.json`.
//!
//! A [`ReferenceMeasurements`] names the image release, the hashes of the artefacts it was computed from, the VM
//! shapes it was computed for, and per platform the values a genuine boot of that image reports. The verifier builds
//! its policy from it; `dait-measure reference` writes it; `dait-measure diff` compares reported values with it.
//!
//! Every value that depends on the VM shape (TDX MRTD and RTMR0, the SNP launch measurement) is keyed by the shape's
//! name; values that do not (RTMR1/RTMR2, allowed MRCONFIGID/MROWNER, SNP host data and guest policy) are given once.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

use dait_chain_client::runtime_log;
/// `SHA-384(register || digest)`: the TDX RTMR / TPM PCR extend operation, defined by the protocol core.
pub use dait_chain_client::runtime_log::extend_sha384;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::hexbytes::{HexBytes, Sha256Digest, Sha384Digest};
use crate::snp::CpuType;

/// The schema version this crate writes and reads.
pub const SCHEMA_VERSION: u32 = 1;
/// Largest reference file accepted by [`ReferenceMeasurements::load`].
pub const MAX_REFERENCE_LEN: u64 = 4 * 1024 * 1024;
/// Most vCPUs a shape may declare (one VMSA is measured per vCPU on SNP).
pub const MAX_VCPUS: u32 = 512;
/// The vTPM PCR the agent extends with runtime events on platforms without RTMRs (SNP with a vTPM).
pub const DEFAULT_RUNTIME_PCR: u8 = 23;
/// The highest SEV-SNP VMPL (VMPLs 0 to 3; SEV-SNP ABI spec, `VMPL` of the attestation report).
pub const MAX_VMPL: u8 = 3;

/// Reference measurements of one image release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceMeasurements {
    /// Schema version; [`SCHEMA_VERSION`].
    pub schema: u32,
    /// Image release, e.g. `2026.11.0`; also the file name (`reference/<release>.json`).
    pub release: String,
    /// Hashes of the artefacts the values were computed from.
    pub artefacts: Artefacts,
    /// The VM shapes the values were computed for.
    pub shapes: Vec<VmShape>,
    /// Intel TDX expectations; required when a shape's platform is TDX.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tdx: Option<TdxReference>,
    /// AMD SEV-SNP expectations; required when a shape's platform is SNP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snp: Option<SnpReference>,
    /// What the agent measures at run time (TDX RTMR3, or a vTPM PCR).
    #[serde(default)]
    pub runtime: RuntimeReference,
}

/// Hashes of the image artefacts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artefacts {
    /// The unified kernel image, when the image boots one (its PE hash enters TDX RTMR1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uki: Option<FileDigest>,
    /// The kernel the VMM loads for direct boot (its SHA-256 enters the SNP hashes table).
    pub kernel: FileDigest,
    /// The initrd, if any (the verity variant boots without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<FileDigest>,
    /// The kernel command line exactly as the VMM passes it (`-append`), without a terminating NUL.
    pub cmdline: String,
    /// SHA-256 of `cmdline`'s UTF-8 bytes (no NUL), so a reader can check it without re-encoding.
    pub cmdline_sha256: Sha256Digest,
    /// Firmware builds, referenced by name from [`VmShape::firmware`].
    pub firmware: Vec<FirmwareDigest>,
    /// dm-verity root hash of the read-only root, when the image has one (it is in `cmdline` too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verity_root_hash: Option<Sha256Digest>,
    /// SHA-256 of the image's package manifest (the exact package versions it was built from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_manifest_sha256: Option<Sha256Digest>,
    /// The agent binary (`dait-host`) the image ships. Informational: it lies in the verity-protected root, so the
    /// root hash (in `cmdline`) already binds it; recorded so an auditor can match it with a reproducible build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<FileDigest>,
}

/// A file by name, size and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDigest {
    /// File name (no directory), for humans.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the contents.
    pub sha256: Sha256Digest,
}

/// A firmware build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirmwareDigest {
    /// Name shapes refer to, e.g. `ovmf-amdsev`.
    pub name: String,
    /// What kind of build it is.
    pub kind: FirmwareKind,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the contents.
    pub sha256: Sha256Digest,
}

/// Kinds of firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum FirmwareKind {
    /// OVMF built from `OvmfPkg/AmdSev/AmdSevX64.dsc` (SEV metadata with the SNP kernel-hashes section).
    OvmfAmdsev,
    /// TDVF / OVMF built for Intel TDX (`OvmfPkg/IntelTdx/IntelTdxX64.dsc` or `OvmfPkg/OvmfPkgX64.dsc`).
    Tdvf,
}

/// Confidential-computing platforms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Platform {
    /// AMD SEV-SNP.
    Snp,
    /// Intel TDX.
    Tdx,
}

/// Virtual machine monitors whose initial vCPU state is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Vmm {
    /// QEMU/KVM.
    #[default]
    Qemu,
}

/// A VM shape: what the host operator launches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmShape {
    /// Unique name, e.g. `snp-genoa-16`.
    pub name: String,
    /// Platform.
    pub platform: Platform,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// QEMU `-cpu` model. On SNP it fixes the VMSA's CPUID signature: one of [`CpuType::ALL`].
    pub cpu_type: String,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// Name of the firmware in [`Artefacts::firmware`].
    pub firmware: String,
    /// The VMM.
    #[serde(default)]
    pub vmm: Vmm,
}

/// Intel TDX expectations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdxReference {
    /// MRTD and RTMR0 per TDX shape.
    pub shapes: Vec<TdxShapeValues>,
    /// RTMR1: the boot loader / UKI / kernel as the firmware measures it (EFI boot services applications).
    pub rtmr1: Sha384Digest,
    /// RTMR2: kernel command line and initrd as the firmware measures them.
    pub rtmr2: Sha384Digest,
    /// Allowed MRCONFIGID values (all zero when the host sets none).
    pub mr_config_id: Vec<Sha384Digest>,
    /// Allowed MROWNER values.
    pub mr_owner: Vec<Sha384Digest>,
    /// Allowed MROWNERCONFIG values.
    pub mr_owner_config: Vec<Sha384Digest>,
    /// Required TD attributes (8 bytes as in the TD report; the DEBUG bit must be clear).
    pub td_attributes: HexBytes<8>,
    /// Required XFAM, when pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xfam: Option<HexBytes<8>>,
}

/// TDX values that depend on the VM shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdxShapeValues {
    /// Shape name.
    pub shape: String,
    /// MRTD: the firmware pages added and measured at build time.
    pub mrtd: Sha384Digest,
    /// RTMR0: firmware configuration (TD HOB, CFV, ACPI tables, boot variables).
    pub rtmr0: Sha384Digest,
}

/// AMD SEV-SNP expectations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpReference {
    /// Launch measurement per SNP shape.
    pub shapes: Vec<SnpShapeValues>,
    /// Allowed HOST_DATA values (32 bytes; all zero when the host sets none).
    pub host_data: Vec<Sha256Digest>,
    /// Required guest policy (the `POLICY` field of the report; the DEBUG bit 19 must be clear).
    pub guest_policy: u64,
}

/// SNP values that depend on the VM shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpShapeValues {
    /// Shape name.
    pub shape: String,
    /// The launch measurement (`MEASUREMENT` in the attestation report).
    pub measurement: Sha384Digest,
    /// The VMPL the guest's attestation reports come from (`VMPL` in the report, 0 to [`MAX_VMPL`]): 0 for a
    /// guest that runs at VMPL 0, 1 for a guest under an SVSM (which keeps VMPL 0 and hosts the vTPM). A
    /// guest can only request reports for its own VMPL or a less privileged one. Omitted when 0, so files
    /// written before this field existed keep their meaning and their bytes.
    #[serde(default, skip_serializing_if = "is_vmpl_zero")]
    pub vmpl: u8,
}

// serde's `skip_serializing_if` passes a reference.
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_vmpl_zero(vmpl: &u8) -> bool {
    *vmpl == 0
}

/// Runtime measurements the agent makes at boot, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeReference {
    /// vTPM PCR extended with the same events on platforms without RTMRs.
    #[serde(default = "default_runtime_pcr")]
    pub vtpm_pcr: u8,
    /// Events in the order the agent extends them.
    #[serde(default)]
    pub events: Vec<RuntimeEvent>,
}

fn default_runtime_pcr() -> u8 {
    DEFAULT_RUNTIME_PCR
}

impl RuntimeReference {
    /// The RTMR3 value after the agent has extended every event, in order.
    pub fn expected_rtmr3(&self) -> Sha384Digest {
        HexBytes(runtime_log::replay_data(
            self.events
                .iter()
                .map(|e| runtime_event_data(&e.name, &e.sha256)),
        ))
    }
}

impl Default for RuntimeReference {
    fn default() -> Self {
        Self {
            vtpm_pcr: DEFAULT_RUNTIME_PCR,
            events: Vec::new(),
        }
    }
}

/// One runtime measurement: a named content hash (model weights, engine config, agent config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeEvent {
    /// Event name, e.g. `model-weights`, `agent-config` (ASCII, no `:`).
    pub name: String,
    /// SHA-256 of the measured content.
    pub sha256: Sha256Digest,
}

/// Why a reference file was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceError {
    /// Two entries share a name.
    #[error("duplicate {field} at index {index}")]
    Duplicate {
        /// Which list.
        field: &'static str,
        /// Index of the second occurrence.
        index: usize,
    },
    /// A required text field or list is empty.
    #[error("{field} is empty")]
    Empty {
        /// Which field.
        field: &'static str,
    },
    /// The file is larger than [`MAX_REFERENCE_LEN`].
    #[error("reference file is larger than {max} bytes")]
    TooLarge {
        /// The limit.
        max: u64,
    },
    /// `cmdline_sha256` is not the SHA-256 of `cmdline`.
    #[error("artefacts.cmdline_sha256 does not match artefacts.cmdline")]
    CmdlineHashMismatch,
    /// A name has characters outside `[A-Za-z0-9._-]` or is too long.
    #[error("{field} at index {index} is not a valid name ([A-Za-z0-9._-], 1 to 64 characters)")]
    InvalidName {
        /// Which field.
        field: &'static str,
        /// Index in its list (0 for a single field).
        index: usize,
    },
    /// A shape's numbers are out of range.
    #[error("shape {index}: {field} is out of range")]
    InvalidShape {
        /// Which field.
        field: &'static str,
        /// Shape index.
        index: usize,
    },
    /// Reading the file failed.
    #[error("cannot read the reference file")]
    Io(#[source] std::io::Error),
    /// The JSON does not match the schema.
    #[error("reference JSON does not match the schema")]
    Json(#[source] serde_json::Error),
    /// A TDX shape has no TDX values, or an SNP shape no SNP values.
    #[error("shape {index} has no entry in {field}")]
    MissingShapeValues {
        /// Which list lacks it.
        field: &'static str,
        /// Shape index.
        index: usize,
    },
    /// A shape's platform has no section (`tdx` or `snp`).
    #[error("shape {index} is on {platform:?} but the reference has no section for it")]
    MissingPlatformSection {
        /// The platform.
        platform: Platform,
        /// Shape index.
        index: usize,
    },
    /// Measurements were computed with debug enabled.
    #[error("{field} allows debugging")]
    DebugAllowed {
        /// Which field.
        field: &'static str,
    },
    /// The reference has no shapes with values at all.
    #[error("the reference has neither tdx nor snp values")]
    NoPlatform,
    /// A shape's CPU type is not one whose SNP VMSA is known.
    #[error("shape {index}: unknown SNP cpu_type")]
    UnknownCpuType {
        /// Shape index.
        index: usize,
    },
    /// A shape names a firmware not listed in the artefacts.
    #[error("shape {index} names a firmware not in artefacts.firmware")]
    UnknownFirmware {
        /// Shape index.
        index: usize,
    },
    /// A value is given for a shape that is not declared, or is of another platform.
    #[error("{field} entry {index} names no {field} shape")]
    UnknownShape {
        /// Which list.
        field: &'static str,
        /// Entry index.
        index: usize,
    },
    /// The schema version is not [`SCHEMA_VERSION`].
    #[error("unsupported reference schema version {0}")]
    UnsupportedSchema(u32),
}

/// TDX TD attribute bit 0: DEBUG.
const TD_ATTRIBUTES_DEBUG: u8 = 0x01;
/// SNP guest policy bit 19: DEBUG allowed.
const SNP_POLICY_DEBUG: u64 = 1 << 19;

impl ReferenceMeasurements {
    /// Reads, parses and validates a reference file.
    pub fn load(path: &Path) -> Result<Self, ReferenceError> {
        let file = std::fs::File::open(path).map_err(ReferenceError::Io)?;
        let mut bytes = Vec::new();
        file.take(MAX_REFERENCE_LEN.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(ReferenceError::Io)?;
        if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_REFERENCE_LEN {
            return Err(ReferenceError::TooLarge {
                max: MAX_REFERENCE_LEN,
            });
        }
        Self::from_json(&bytes)
    }

    /// Parses and validates reference JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ReferenceError> {
        if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_REFERENCE_LEN {
            return Err(ReferenceError::TooLarge {
                max: MAX_REFERENCE_LEN,
            });
        }
        let reference: Self = serde_json::from_slice(bytes).map_err(ReferenceError::Json)?;
        reference.validate()?;
        Ok(reference)
    }

    /// The canonical file text: pretty JSON, two-space indent, trailing newline.
    pub fn to_json_pretty(&self) -> String {
        // INVARIANT: every field serialises (strings, integers, hex strings, no maps with non-string keys).
        #[allow(clippy::expect_used)]
        let mut text = serde_json::to_string_pretty(self).expect("reference serialises");
        text.push('\n');
        text
    }

    /// Checks internal consistency: schema, names, shapes, that every shape has values for its platform and
    /// every value names a shape of that platform, non-empty allow lists, debug off, the command-line hash.
    pub fn validate(&self) -> Result<(), ReferenceError> {
        if self.schema != SCHEMA_VERSION {
            return Err(ReferenceError::UnsupportedSchema(self.schema));
        }
        check_name(&self.release, "release", 0)?;
        self.artefacts.validate()?;
        if self.shapes.is_empty() {
            return Err(ReferenceError::Empty { field: "shapes" });
        }
        let mut names = BTreeSet::new();
        for (index, shape) in self.shapes.iter().enumerate() {
            check_name(&shape.name, "shapes.name", index)?;
            if !names.insert(shape.name.as_str()) {
                return Err(ReferenceError::Duplicate {
                    field: "shapes.name",
                    index,
                });
            }
            if shape.vcpus == 0 || shape.vcpus > MAX_VCPUS {
                return Err(ReferenceError::InvalidShape {
                    field: "vcpus",
                    index,
                });
            }
            if shape.memory_mib == 0 {
                return Err(ReferenceError::InvalidShape {
                    field: "memory_mib",
                    index,
                });
            }
            if shape.cpu_type.is_empty() {
                return Err(ReferenceError::InvalidShape {
                    field: "cpu_type",
                    index,
                });
            }
            if !self
                .artefacts
                .firmware
                .iter()
                .any(|f| f.name == shape.firmware)
            {
                return Err(ReferenceError::UnknownFirmware { index });
            }
            match shape.platform {
                Platform::Snp => {
                    if CpuType::from_name(&shape.cpu_type).is_none() {
                        return Err(ReferenceError::UnknownCpuType { index });
                    }
                    let Some(snp) = &self.snp else {
                        return Err(ReferenceError::MissingPlatformSection {
                            platform: Platform::Snp,
                            index,
                        });
                    };
                    if !snp.shapes.iter().any(|v| v.shape == shape.name) {
                        return Err(ReferenceError::MissingShapeValues {
                            field: "snp.shapes",
                            index,
                        });
                    }
                }
                Platform::Tdx => {
                    let Some(tdx) = &self.tdx else {
                        return Err(ReferenceError::MissingPlatformSection {
                            platform: Platform::Tdx,
                            index,
                        });
                    };
                    if !tdx.shapes.iter().any(|v| v.shape == shape.name) {
                        return Err(ReferenceError::MissingShapeValues {
                            field: "tdx.shapes",
                            index,
                        });
                    }
                }
            }
        }
        if self.tdx.is_none() && self.snp.is_none() {
            return Err(ReferenceError::NoPlatform);
        }
        if let Some(tdx) = &self.tdx {
            check_shape_keys(
                self,
                Platform::Tdx,
                tdx.shapes.iter().map(|v| v.shape.as_str()),
                "tdx",
            )?;
            non_empty(&tdx.mr_config_id, "tdx.mr_config_id")?;
            non_empty(&tdx.mr_owner, "tdx.mr_owner")?;
            non_empty(&tdx.mr_owner_config, "tdx.mr_owner_config")?;
            if tdx
                .td_attributes
                .0
                .first()
                .is_some_and(|b| b & TD_ATTRIBUTES_DEBUG != 0)
            {
                return Err(ReferenceError::DebugAllowed {
                    field: "tdx.td_attributes",
                });
            }
        }
        if let Some(snp) = &self.snp {
            check_shape_keys(
                self,
                Platform::Snp,
                snp.shapes.iter().map(|v| v.shape.as_str()),
                "snp",
            )?;
            if let Some(index) = snp.shapes.iter().position(|v| v.vmpl > MAX_VMPL) {
                return Err(ReferenceError::InvalidShape {
                    field: "snp.shapes.vmpl",
                    index,
                });
            }
            non_empty(&snp.host_data, "snp.host_data")?;
            if snp.guest_policy & SNP_POLICY_DEBUG != 0 {
                return Err(ReferenceError::DebugAllowed {
                    field: "snp.guest_policy",
                });
            }
        }
        let mut events = BTreeSet::new();
        for (index, event) in self.runtime.events.iter().enumerate() {
            check_name(&event.name, "runtime.events.name", index)?;
            if !events.insert(event.name.as_str()) {
                return Err(ReferenceError::Duplicate {
                    field: "runtime.events.name",
                    index,
                });
            }
        }
        Ok(())
    }

    /// The shape with this name.
    pub fn shape(&self, name: &str) -> Option<&VmShape> {
        self.shapes.iter().find(|s| s.name == name)
    }

    /// TDX MRTD and RTMR0 of a shape.
    pub fn tdx_shape(&self, name: &str) -> Option<&TdxShapeValues> {
        self.tdx.as_ref()?.shapes.iter().find(|v| v.shape == name)
    }

    /// The SNP values (launch measurement, VMPL) of a shape.
    pub fn snp_shape(&self, name: &str) -> Option<&SnpShapeValues> {
        self.snp.as_ref()?.shapes.iter().find(|v| v.shape == name)
    }

    /// The SNP launch measurement of a shape.
    pub fn snp_measurement(&self, name: &str) -> Option<&Sha384Digest> {
        self.snp_shape(name).map(|v| &v.measurement)
    }

    /// The RTMR3 value after the agent has extended every runtime event, in order.
    pub fn expected_rtmr3(&self) -> Sha384Digest {
        self.runtime.expected_rtmr3()
    }

    /// The TDX `MRCONFIGID` a host launches the TD with to bind the runtime events at launch instead of in
    /// RTMR3 ([`runtime_log::launch_binding_mrconfigid`] of [`ReferenceMeasurements::expected_rtmr3`]).
    pub fn expected_launch_mrconfigid(&self) -> Sha384Digest {
        HexBytes(runtime_log::launch_binding_mrconfigid(
            &self.expected_rtmr3().0,
        ))
    }

    /// The SEV-SNP `HOST_DATA` a host launches the guest with to bind the runtime events at launch
    /// ([`runtime_log::launch_binding_host_data`] of [`ReferenceMeasurements::expected_rtmr3`]).
    pub fn expected_launch_host_data(&self) -> Sha256Digest {
        HexBytes(runtime_log::launch_binding_host_data(
            &self.expected_rtmr3().0,
        ))
    }

    /// Whether the reference describes the launch-binding path: its TDX `MRCONFIGID` list is exactly
    /// [`ReferenceMeasurements::expected_launch_mrconfigid`] (RTMR3 then stays zero).
    pub fn tdx_launch_bound(&self) -> bool {
        self.tdx
            .as_ref()
            .is_some_and(|t| t.mr_config_id == [self.expected_launch_mrconfigid()])
    }

    /// The SHA-256 bank value of the runtime vTPM PCR after the agent has extended every runtime event.
    pub fn expected_runtime_pcr_sha256(&self) -> Sha256Digest {
        let mut register = [0u8; 32];
        for event in &self.runtime.events {
            let digest: [u8; 32] =
                Sha256::digest(runtime_event_data(&event.name, &event.sha256)).into();
            register = runtime_log::extend_sha256(&register, &digest);
        }
        HexBytes(register)
    }
}

impl Artefacts {
    fn validate(&self) -> Result<(), ReferenceError> {
        if self.cmdline.is_empty() {
            return Err(ReferenceError::Empty {
                field: "artefacts.cmdline",
            });
        }
        let digest: [u8; 32] = Sha256::digest(self.cmdline.as_bytes()).into();
        if digest != self.cmdline_sha256.0 {
            return Err(ReferenceError::CmdlineHashMismatch);
        }
        if self.firmware.is_empty() {
            return Err(ReferenceError::Empty {
                field: "artefacts.firmware",
            });
        }
        let mut names = BTreeSet::new();
        for (index, firmware) in self.firmware.iter().enumerate() {
            check_name(&firmware.name, "artefacts.firmware.name", index)?;
            if !names.insert(firmware.name.as_str()) {
                return Err(ReferenceError::Duplicate {
                    field: "artefacts.firmware.name",
                    index,
                });
            }
        }
        Ok(())
    }
}

/// The bytes the agent measures for a runtime event ([`runtime_log::event_data`]: `name || ":" || hex(sha256)`).
/// RTMR3 is extended with SHA-384 of these bytes; the vTPM PCR's SHA-256 bank with SHA-256 of them.
pub fn runtime_event_data(name: &str, sha256: &Sha256Digest) -> Vec<u8> {
    runtime_log::event_data(name, &sha256.0).into_bytes()
}

fn check_name(name: &str, field: &'static str, index: usize) -> Result<(), ReferenceError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ReferenceError::InvalidName { field, index })
    }
}

fn non_empty<T>(list: &[T], field: &'static str) -> Result<(), ReferenceError> {
    if list.is_empty() {
        Err(ReferenceError::Empty { field })
    } else {
        Ok(())
    }
}

fn check_shape_keys<'a>(
    reference: &ReferenceMeasurements,
    platform: Platform,
    keys: impl Iterator<Item = &'a str>,
    field: &'static str,
) -> Result<(), ReferenceError> {
    let mut seen = BTreeSet::new();
    for (index, key) in keys.enumerate() {
        if !reference
            .shapes
            .iter()
            .any(|s| s.name == key && s.platform == platform)
        {
            return Err(ReferenceError::UnknownShape { field, index });
        }
        if !seen.insert(key) {
            return Err(ReferenceError::Duplicate { field, index });
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> ReferenceMeasurements {
        let cmdline = "console=ttyS0 root=/dev/mapper/root ro".to_owned();
        ReferenceMeasurements {
            schema: SCHEMA_VERSION,
            release: "2026.11.0".into(),
            artefacts: Artefacts {
                uki: None,
                kernel: FileDigest {
                    name: "vmlinuz".into(),
                    size: 3,
                    sha256: HexBytes([1; 32]),
                },
                initrd: None,
                cmdline_sha256: HexBytes(Sha256::digest(cmdline.as_bytes()).into()),
                cmdline,
                firmware: vec![
                    FirmwareDigest {
                        name: "ovmf-amdsev".into(),
                        kind: FirmwareKind::OvmfAmdsev,
                        size: 4,
                        sha256: HexBytes([2; 32]),
                    },
                    FirmwareDigest {
                        name: "tdvf".into(),
                        kind: FirmwareKind::Tdvf,
                        size: 4,
                        sha256: HexBytes([3; 32]),
                    },
                ],
                verity_root_hash: Some(HexBytes([4; 32])),
                package_manifest_sha256: None,
                agent: None,
            },
            shapes: vec![
                VmShape {
                    name: "snp-4".into(),
                    platform: Platform::Snp,
                    vcpus: 4,
                    cpu_type: "EPYC-v4".into(),
                    memory_mib: 8192,
                    firmware: "ovmf-amdsev".into(),
                    vmm: Vmm::Qemu,
                },
                VmShape {
                    name: "tdx-4".into(),
                    platform: Platform::Tdx,
                    vcpus: 4,
                    cpu_type: "host".into(),
                    memory_mib: 8192,
                    firmware: "tdvf".into(),
                    vmm: Vmm::Qemu,
                },
            ],
            tdx: Some(TdxReference {
                shapes: vec![TdxShapeValues {
                    shape: "tdx-4".into(),
                    mrtd: HexBytes([5; 48]),
                    rtmr0: HexBytes([6; 48]),
                }],
                rtmr1: HexBytes([7; 48]),
                rtmr2: HexBytes([8; 48]),
                mr_config_id: vec![HexBytes::ZERO],
                mr_owner: vec![HexBytes::ZERO],
                mr_owner_config: vec![HexBytes::ZERO],
                td_attributes: HexBytes([0, 0, 0, 0x10, 0, 0, 0, 0]),
                xfam: None,
            }),
            snp: Some(SnpReference {
                shapes: vec![SnpShapeValues {
                    shape: "snp-4".into(),
                    measurement: HexBytes([9; 48]),
                    vmpl: 0,
                }],
                host_data: vec![HexBytes::ZERO],
                guest_policy: 0x30000,
            }),
            runtime: RuntimeReference {
                vtpm_pcr: DEFAULT_RUNTIME_PCR,
                events: vec![RuntimeEvent {
                    name: "model-weights".into(),
                    sha256: HexBytes([10; 32]),
                }],
            },
        }
    }

    #[test]
    fn sample_validates_and_round_trips() {
        let reference = sample();
        reference.validate().unwrap();
        let text = reference.to_json_pretty();
        let back = ReferenceMeasurements::from_json(text.as_bytes()).unwrap();
        assert_eq!(back, reference);
        assert!(text.contains("\"measurement\": \"0909"));
    }

    #[test]
    fn the_agent_artefact_is_optional_and_round_trips() {
        let mut reference = sample();
        assert!(!reference.to_json_pretty().contains("\"agent\""));
        reference.artefacts.agent = Some(FileDigest {
            name: "dait-host".into(),
            size: 5,
            sha256: HexBytes([12; 32]),
        });
        let text = reference.to_json_pretty();
        assert!(text.contains("\"agent\""));
        assert_eq!(
            ReferenceMeasurements::from_json(text.as_bytes()).unwrap(),
            reference
        );
    }

    #[test]
    fn load_reads_a_file_and_rejects_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        std::fs::write(&path, sample().to_json_pretty()).unwrap();
        assert_eq!(ReferenceMeasurements::load(&path).unwrap(), sample());
        assert!(matches!(
            ReferenceMeasurements::load(&dir.path().join("none.json")),
            Err(ReferenceError::Io(_))
        ));
    }

    #[test]
    fn unknown_json_fields_are_rejected() {
        let mut value: serde_json::Value =
            serde_json::from_str(&sample().to_json_pretty()).unwrap();
        value["surprise"] = serde_json::Value::Bool(true);
        let err = ReferenceMeasurements::from_json(value.to_string().as_bytes()).unwrap_err();
        assert!(matches!(err, ReferenceError::Json(_)));
    }

    #[test]
    fn each_inconsistency_has_its_own_error() {
        let check = |edit: &dyn Fn(&mut ReferenceMeasurements)| {
            let mut r = sample();
            edit(&mut r);
            r.validate().unwrap_err()
        };
        assert!(matches!(
            check(&|r| r.schema = 2),
            ReferenceError::UnsupportedSchema(2)
        ));
        assert!(matches!(
            check(&|r| r.release = "../x".into()),
            ReferenceError::InvalidName {
                field: "release",
                ..
            }
        ));
        assert!(matches!(
            check(&|r| r.artefacts.cmdline.push(' ')),
            ReferenceError::CmdlineHashMismatch
        ));
        assert!(matches!(
            check(&|r| r.shapes.clear()),
            ReferenceError::Empty { field: "shapes" }
        ));
        assert!(matches!(
            check(&|r| r.artefacts.firmware.clear()),
            ReferenceError::Empty {
                field: "artefacts.firmware"
            }
        ));
        assert!(matches!(
            check(&|r| {
                let s = r.shapes[0].clone();
                r.shapes.push(s)
            }),
            ReferenceError::Duplicate {
                field: "shapes.name",
                index: 2
            }
        ));
        assert!(matches!(
            check(&|r| r.shapes[0].vcpus = 0),
            ReferenceError::InvalidShape {
                field: "vcpus",
                index: 0
            }
        ));
        assert!(matches!(
            check(&|r| r.shapes[1].memory_mib = 0),
            ReferenceError::InvalidShape {
                field: "memory_mib",
                index: 1
            }
        ));
        assert!(matches!(
            check(&|r| r.shapes[0].cpu_type = "Pentium".into()),
            ReferenceError::UnknownCpuType { index: 0 }
        ));
        assert!(matches!(
            check(&|r| r.shapes[0].firmware = "other".into()),
            ReferenceError::UnknownFirmware { index: 0 }
        ));
        assert!(matches!(
            check(&|r| r.snp = None),
            ReferenceError::MissingPlatformSection {
                platform: Platform::Snp,
                index: 0
            }
        ));
        assert!(matches!(
            check(&|r| r.tdx.as_mut().unwrap().shapes.clear()),
            ReferenceError::MissingShapeValues {
                field: "tdx.shapes",
                index: 1
            }
        ));
        assert!(matches!(
            check(&|r| r.snp.as_mut().unwrap().shapes[0].shape = "tdx-4".into()),
            ReferenceError::MissingShapeValues {
                field: "snp.shapes",
                index: 0
            }
        ));
        assert!(matches!(
            check(&|r| {
                let extra = SnpShapeValues {
                    shape: "tdx-4".into(),
                    measurement: HexBytes::ZERO,
                    vmpl: 0,
                };
                r.snp.as_mut().unwrap().shapes.push(extra)
            }),
            ReferenceError::UnknownShape {
                field: "snp",
                index: 1
            }
        ));
        assert!(matches!(
            check(&|r| r.snp.as_mut().unwrap().shapes[0].vmpl = MAX_VMPL + 1),
            ReferenceError::InvalidShape {
                field: "snp.shapes.vmpl",
                index: 0
            }
        ));
        assert!(matches!(
            check(&|r| r.tdx.as_mut().unwrap().mr_owner.clear()),
            ReferenceError::Empty {
                field: "tdx.mr_owner"
            }
        ));
        assert!(matches!(
            check(&|r| r.snp.as_mut().unwrap().host_data.clear()),
            ReferenceError::Empty {
                field: "snp.host_data"
            }
        ));
        assert!(matches!(
            check(&|r| r.tdx.as_mut().unwrap().td_attributes.0[0] = 1),
            ReferenceError::DebugAllowed {
                field: "tdx.td_attributes"
            }
        ));
        assert!(matches!(
            check(&|r| r.snp.as_mut().unwrap().guest_policy |= 1 << 19),
            ReferenceError::DebugAllowed {
                field: "snp.guest_policy"
            }
        ));
        assert!(matches!(
            check(&|r| {
                let e = r.runtime.events[0].clone();
                r.runtime.events.push(e)
            }),
            ReferenceError::Duplicate {
                field: "runtime.events.name",
                index: 1
            }
        ));
        assert!(matches!(
            check(&|r| {
                r.shapes.clear();
                r.shapes.push(sample().shapes[0].clone());
                r.tdx = None;
                r.snp = None;
            }),
            ReferenceError::MissingPlatformSection { .. }
        ));
    }

    #[test]
    fn snp_vmpl_defaults_to_zero_and_round_trips() {
        let mut r = sample();
        let text = r.to_json_pretty();
        assert!(!text.contains("vmpl"), "VMPL 0 is not written");
        let back = ReferenceMeasurements::from_json(text.as_bytes()).unwrap();
        assert_eq!(back.snp_shape("snp-4").unwrap().vmpl, 0);
        r.snp.as_mut().unwrap().shapes[0].vmpl = 1;
        let text = r.to_json_pretty();
        assert!(text.contains("\"vmpl\": 1"), "{text}");
        let back = ReferenceMeasurements::from_json(text.as_bytes()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.to_json_pretty(), text);
    }

    #[test]
    fn oversized_input_is_rejected() {
        let big = vec![b' '; usize::try_from(MAX_REFERENCE_LEN).unwrap() + 1];
        assert!(matches!(
            ReferenceMeasurements::from_json(&big),
            Err(ReferenceError::TooLarge { .. })
        ));
    }

    #[test]
    fn runtime_registers_replay_the_events_in_order() {
        let mut reference = sample();
        // Pinned: SHA-384(0^48 || SHA-384("model-weights:0a0a…0a")) and the SHA-256 analogue, from Python's hashlib.
        let data = runtime_event_data("model-weights", &HexBytes([10; 32]));
        assert_eq!(data.len(), "model-weights:".len() + 64);
        let one = reference.expected_rtmr3();
        assert_eq!(
            one.to_hex(),
            "08ed9e1a8a181b7af2d3c640d87c1a649fc6ba327bf35dec902ed49aee7483323452dd685485a39a0554347da2945d1c"
        );
        assert_eq!(
            reference.expected_runtime_pcr_sha256().to_hex(),
            "ce46bea5dc5e69ecc45bd3bcc439a5c40bb5859854e41c392e921c017963ed0b"
        );
        reference.runtime.events.push(RuntimeEvent {
            name: "agent-config".into(),
            sha256: HexBytes([11; 32]),
        });
        let two = reference.expected_rtmr3();
        assert_ne!(one, two);
        reference.runtime.events.swap(0, 1);
        assert_ne!(reference.expected_rtmr3(), two, "order matters");
        reference.runtime.events.clear();
        assert_eq!(reference.expected_rtmr3(), HexBytes::ZERO);
        assert_eq!(reference.expected_runtime_pcr_sha256(), HexBytes::ZERO);
    }
}
