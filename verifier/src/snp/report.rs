//! The SNP attestation report on the wire: [`SnpReport::parse`] reads the 1184-byte `ATTESTATION_REPORT`
//! (SEV-SNP Firmware ABI Specification, Table "ATTESTATION_REPORT Structure") with the crate's
//! bounds-checked [`Reader`]. No cryptography happens here.

use super::SnpProduct;
use crate::wire::{ParseError, Reader};

/// Size of an SNP attestation report.
pub const REPORT_LEN: usize = 0x4A0;
/// End of the signed part of the report.
pub const SIGNED_LEN: usize = 0x2A0;
/// Guest policy bit 16: SMT allowed on the host.
pub const POLICY_SMT: u64 = 1 << 16;
/// Guest policy bit 18: association with a migration agent allowed.
pub const POLICY_MIGRATE_MA: u64 = 1 << 18;
/// Guest policy bit 19: debugging allowed.
pub const POLICY_DEBUG: u64 = 1 << 19;

/// A decoded TCB_VERSION (SEV-SNP ABI "TCB_VERSION Structure"; Turin moved the fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub struct TcbVersion {
    /// FMC SVN (Turin only).
    pub fmc: Option<u8>,
    /// Boot loader SVN.
    pub bootloader: u8,
    /// PSP OS (TEE) SVN.
    pub tee: u8,
    /// SNP firmware SVN.
    pub snp: u8,
    /// Microcode patch level.
    pub microcode: u8,
}

impl TcbVersion {
    /// Decodes the raw u64 for a product generation.
    pub fn decode(raw: u64, product: SnpProduct) -> Self {
        let b = raw.to_le_bytes();
        match product {
            SnpProduct::Milan | SnpProduct::Genoa => Self {
                fmc: None,
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
            },
            SnpProduct::Turin => Self {
                fmc: Some(b[0]),
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
            },
        }
    }

    /// Whether every component is at least `min`'s.
    pub fn at_least(&self, min: &Self) -> bool {
        self.bootloader >= min.bootloader
            && self.tee >= min.tee
            && self.snp >= min.snp
            && self.microcode >= min.microcode
            && self.fmc.unwrap_or(0) >= min.fmc.unwrap_or(0)
    }
}

/// Which key signed the report (`KEY_INFO.SIGNING_KEY`, bits 4:2 at 0x48).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum SigningKey {
    /// Versioned Chip Endorsement Key.
    Vcek,
    /// Versioned Loaded Endorsement Key.
    Vlek,
    /// No key (the report is unsigned).
    None,
}

/// A parsed SNP attestation report borrowing from its bytes. Offsets in the field docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnpReport<'a> {
    /// 0x00 report version (2 or 3).
    pub version: u32,
    /// 0x04 guest SVN.
    pub guest_svn: u32,
    /// 0x08 guest policy.
    pub policy: u64,
    /// 0x10 family ID.
    pub family_id: &'a [u8; 16],
    /// 0x20 image ID.
    pub image_id: &'a [u8; 16],
    /// 0x30 VMPL of the request.
    pub vmpl: u32,
    /// 0x34 signature algorithm (1 = ECDSA P-384 with SHA-384).
    pub signature_algo: u32,
    /// 0x38 current TCB.
    pub current_tcb: u64,
    /// 0x40 platform info.
    pub platform_info: u64,
    /// 0x48 key info (bit 0 author key enabled, bit 1 MASK_CHIP_KEY, bits 4:2 signing key).
    pub key_info: u32,
    /// 0x50 REPORT_DATA chosen by the guest.
    pub report_data: &'a [u8; 64],
    /// 0x90 launch MEASUREMENT.
    pub measurement: &'a [u8; 48],
    /// 0xC0 HOST_DATA chosen by the host at launch.
    pub host_data: &'a [u8; 32],
    /// 0xE0 ID key digest.
    pub id_key_digest: &'a [u8; 48],
    /// 0x110 author key digest.
    pub author_key_digest: &'a [u8; 48],
    /// 0x140 report ID.
    pub report_id: &'a [u8; 32],
    /// 0x160 report ID of the migration agent.
    pub report_id_ma: &'a [u8; 32],
    /// 0x180 reported TCB (the VCEK is derived from it).
    pub reported_tcb: u64,
    /// 0x188 CPUID family, model, stepping (version 3; zero in version 2).
    pub cpuid_fam_mod_step: [u8; 3],
    /// 0x1A0 CHIP_ID.
    pub chip_id: &'a [u8; 64],
    /// 0x1E0 committed TCB.
    pub committed_tcb: u64,
    /// 0x1E8 current build, minor, major.
    pub current_version: [u8; 3],
    /// 0x1EC committed build, minor, major.
    pub committed_version: [u8; 3],
    /// 0x1F0 launch TCB.
    pub launch_tcb: u64,
    /// 0x2A0 signature R (72 bytes little-endian).
    pub signature_r: &'a [u8; 72],
    /// 0x2E8 signature S (72 bytes little-endian).
    pub signature_s: &'a [u8; 72],
    /// The signed bytes 0x000..0x2A0.
    pub signed_bytes: &'a [u8],
}

impl<'a> SnpReport<'a> {
    /// Parses exactly one 1184-byte report; trailing bytes are refused.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(bytes);
        let version = r.u32_le("report.version")?;
        if version != 2 && version != 3 {
            return Err(ParseError::UnsupportedVersion {
                structure: "SNP report",
                version,
            });
        }
        let guest_svn = r.u32_le("report.guest_svn")?;
        let policy = r.u64_le("report.policy")?;
        let family_id = r.take_array("report.family_id")?;
        let image_id = r.take_array("report.image_id")?;
        let vmpl = r.u32_le("report.vmpl")?;
        let signature_algo = r.u32_le("report.signature_algo")?;
        let current_tcb = r.u64_le("report.current_tcb")?;
        let platform_info = r.u64_le("report.platform_info")?;
        let key_info = r.u32_le("report.key_info")?;
        r.expect_zero::<4>("report.reserved_4c")?;
        let report_data = r.take_array("report.report_data")?;
        let measurement = r.take_array("report.measurement")?;
        let host_data = r.take_array("report.host_data")?;
        let id_key_digest = r.take_array("report.id_key_digest")?;
        let author_key_digest = r.take_array("report.author_key_digest")?;
        let report_id = r.take_array("report.report_id")?;
        let report_id_ma = r.take_array("report.report_id_ma")?;
        let reported_tcb = r.u64_le("report.reported_tcb")?;
        let cpuid_fam_mod_step = *r.take_array::<3>("report.cpuid")?;
        if version == 2 && cpuid_fam_mod_step != [0; 3] {
            return Err(ParseError::NonZeroReserved {
                field: "report.cpuid",
            });
        }
        r.expect_zero::<21>("report.reserved_18b")?;
        let chip_id = r.take_array("report.chip_id")?;
        let committed_tcb = r.u64_le("report.committed_tcb")?;
        let current_version = *r.take_array::<3>("report.current_version")?;
        r.expect_zero::<1>("report.reserved_1eb")?;
        let committed_version = *r.take_array::<3>("report.committed_version")?;
        r.expect_zero::<1>("report.reserved_1ef")?;
        let launch_tcb = r.u64_le("report.launch_tcb")?;
        r.expect_zero::<168>("report.reserved_1f8")?;
        let signed_bytes = bytes
            .get(..SIGNED_LEN)
            .ok_or(ParseError::Internal("signed length"))?;
        let signature_r = r.take_array("report.signature.r")?;
        let signature_s = r.take_array("report.signature.s")?;
        r.expect_zero::<368>("report.signature.reserved")?;
        r.finish("SNP report")?;
        Ok(Self {
            version,
            guest_svn,
            policy,
            family_id,
            image_id,
            vmpl,
            signature_algo,
            current_tcb,
            platform_info,
            key_info,
            report_data,
            measurement,
            host_data,
            id_key_digest,
            author_key_digest,
            report_id,
            report_id_ma,
            reported_tcb,
            cpuid_fam_mod_step,
            chip_id,
            committed_tcb,
            current_version,
            committed_version,
            launch_tcb,
            signature_r,
            signature_s,
            signed_bytes,
        })
    }

    /// The key that signed the report.
    pub fn signing_key(&self) -> Option<SigningKey> {
        match (self.key_info >> 2) & 0x7 {
            0 => Some(SigningKey::Vcek),
            1 => Some(SigningKey::Vlek),
            7 => Some(SigningKey::None),
            _ => None,
        }
    }

    /// Whether MASK_CHIP_ID was set (CHIP_ID reported as zeros).
    pub fn chip_id_masked(&self) -> bool {
        self.key_info & 0b10 != 0
    }

    /// Guest policy: debugging allowed.
    pub fn debug_allowed(&self) -> bool {
        self.policy & POLICY_DEBUG != 0
    }

    /// Guest policy: migration agent allowed.
    pub fn migrate_ma_allowed(&self) -> bool {
        self.policy & POLICY_MIGRATE_MA != 0
    }

    /// Guest policy: SMT allowed.
    pub fn smt_allowed(&self) -> bool {
        self.policy & POLICY_SMT != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcb_layouts_differ_by_generation() {
        let raw = 0xd517_0000_0000_0004_u64;
        assert_eq!(
            TcbVersion::decode(raw, SnpProduct::Milan),
            TcbVersion {
                fmc: None,
                bootloader: 4,
                tee: 0,
                snp: 0x17,
                microcode: 0xd5
            }
        );
        let t = TcbVersion::decode(0x4800_0000_1b01_0403, SnpProduct::Turin);
        assert_eq!(
            t,
            TcbVersion {
                fmc: Some(3),
                bootloader: 4,
                tee: 1,
                snp: 0x1b,
                microcode: 0x48
            }
        );
    }
}
