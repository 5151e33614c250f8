//! AMD SEV-SNP launch digest for a QEMU guest booted directly (`-kernel/-initrd/-append`) from an OVMF that has
//! the SEV kernel-hashes table.
//!
//! What the PSP measures, in order (SEV-SNP ABI spec, SNP_LAUNCH_UPDATE and §8.17 PAGE_INFO):
//! 1. every 4 KiB page of the OVMF image, mapped so that it ends at 4 GiB, as normal pages;
//! 2. the sections listed in OVMF's SEV metadata (`OvmfSevMetadata.asm`), in order: pre-validated memory as zero
//!    pages, the secrets page, the CPUID page, and the page holding the kernel-hashes table — which QEMU fills with
//!    the SHA-256 of the kernel, initrd and command line (or zero pages without a kernel);
//! 3. one VMSA page per vCPU: the initial register state that QEMU/KVM gives the boot and application processors.
//!
//! Each step folds a 112-byte PAGE_INFO into the running SHA-384 launch digest:
//! `ld = SHA-384(ld || contents || len=0x70 || page_type || is_imi || vmpl perms || gpa)`.

use sha2::{Digest, Sha256, Sha384};

use crate::hexbytes::{HexBytes, Sha384Digest};

/// Page size.
pub const PAGE_SIZE: usize = 4096;
/// The firmware image is mapped so that it ends here.
const FOUR_GIB: u64 = 1 << 32;
/// The VMSA pages are recorded with GPA (u64)-1, page aligned and cut to 52 bits.
const VMSA_GPA: u64 = 0xFFFF_FFFF_F000;
/// Default SEV features in the VMSA (bit 0: SNPActive).
pub const DEFAULT_GUEST_FEATURES: u64 = 0x1;
/// Largest firmware image accepted (flash images are a few MiB).
pub const MAX_FIRMWARE_LEN: usize = 64 * 1024 * 1024;
/// Most vCPUs measured.
pub const MAX_VCPUS: u32 = 512;

mod hashes;
mod ovmf;
mod synthetic;
mod vmsa;

pub use hashes::*;
pub use ovmf::*;
pub use synthetic::*;
pub use vmsa::*;

/// Why a launch digest could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnpError {
    /// A metadata section is not page aligned or its size is not a whole number of pages.
    #[error("SEV metadata section {index} is not page aligned")]
    MisalignedSection {
        /// Section index.
        index: usize,
    },
    /// The firmware size is not a whole number of pages, or is zero, or too large.
    #[error("firmware size {len} is not a positive multiple of 4096 up to the limit")]
    FirmwareSize {
        /// Size in bytes.
        len: usize,
    },
    /// A kernel was given but the firmware has no kernel-hashes section or hashes-table entry.
    #[error("the firmware has no SNP kernel-hashes table (build OvmfPkg/AmdSev/AmdSevX64.dsc)")]
    NoKernelHashesSection,
    /// The SEV metadata block is malformed.
    #[error("malformed SEV metadata: {field}")]
    Metadata {
        /// What is wrong.
        field: &'static str,
    },
    /// The firmware has no GUIDed footer table.
    #[error("the firmware has no OVMF footer table")]
    NoFooterTable,
    /// The firmware has no SEV metadata entry.
    #[error("the firmware has no SEV metadata")]
    NoSevMetadata,
    /// The firmware has no SEV-ES reset block, needed for application processors.
    #[error("the firmware has no SEV-ES AP reset vector")]
    NoResetBlock,
    /// A footer-table entry is malformed.
    #[error("malformed OVMF footer table entry")]
    TableEntry,
    /// A structure extends past the end of the firmware image.
    #[error("{field} is truncated")]
    Truncated {
        /// Which structure.
        field: &'static str,
    },
    /// A metadata section has a type this code does not know.
    #[error("SEV metadata section {index} has unknown type {section_type:#x}")]
    UnknownSectionType {
        /// Section index.
        index: usize,
        /// The type value.
        section_type: u32,
    },
    /// The number of vCPUs is zero or too large.
    #[error("vcpus must be between 1 and {MAX_VCPUS}")]
    Vcpus,
}

/// Page types of PAGE_INFO (SEV-SNP ABI spec, SNP_LAUNCH_UPDATE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum PageType {
    Normal = 1,
    Vmsa = 2,
    Zero = 3,
    Secrets = 5,
    Cpuid = 6,
}

/// The running launch digest (the PSP's guest context).
#[derive(Debug, Clone)]
pub struct LaunchDigest {
    ld: [u8; 48],
}

impl Default for LaunchDigest {
    fn default() -> Self {
        Self { ld: [0u8; 48] }
    }
}

impl LaunchDigest {
    fn update(&mut self, page_type: PageType, gpa: u64, contents: &[u8; 48]) {
        let mut hasher = Sha384::new();
        hasher.update(self.ld);
        hasher.update(contents);
        hasher.update(0x70u16.to_le_bytes()); // PAGE_INFO length
        hasher.update([page_type as u8, 0]); // page type, IS_IMI
        hasher.update([0u8; 4]); // VMPL3/2/1 permissions, reserved
        hasher.update(gpa.to_le_bytes());
        self.ld = hasher.finalize().into();
    }

    /// Measures `data` as normal pages from `gpa` on.
    fn normal_pages(&mut self, gpa: u64, data: &[u8]) {
        let mut page_gpa = gpa;
        for page in data.chunks(PAGE_SIZE) {
            let digest: [u8; 48] = Sha384::digest(page).into();
            self.update(PageType::Normal, page_gpa, &digest);
            page_gpa = page_gpa.saturating_add(PAGE_SIZE as u64);
        }
    }

    fn zero_pages(&mut self, gpa: u64, len: u64) {
        let mut offset = 0u64;
        while offset < len {
            self.update(PageType::Zero, gpa.saturating_add(offset), &[0u8; 48]);
            offset = offset.saturating_add(PAGE_SIZE as u64);
        }
    }

    /// The digest so far.
    pub fn value(&self) -> Sha384Digest {
        HexBytes(self.ld)
    }
}

/// Everything that determines the launch digest besides the firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnpLaunch<'a> {
    /// Kernel hashes for direct boot, or `None` to boot the firmware alone.
    pub hashes: Option<&'a SevHashes>,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// vCPU model.
    pub cpu: CpuType,
    /// SEV features in the VMSA ([`DEFAULT_GUEST_FEATURES`] unless the VMM enables more).
    pub guest_features: u64,
}

/// Computes the launch digest a QEMU SNP guest with this firmware and launch configuration reports.
pub fn launch_digest(ovmf: &Ovmf<'_>, launch: &SnpLaunch<'_>) -> Result<Sha384Digest, SnpError> {
    if launch.vcpus == 0 || launch.vcpus > MAX_VCPUS {
        return Err(SnpError::Vcpus);
    }
    if launch.hashes.is_some() && !ovmf.supports_kernel_hashes() {
        return Err(SnpError::NoKernelHashesSection);
    }
    let ap_eip = if launch.vcpus > 1 {
        Some(ovmf.reset_eip().ok_or(SnpError::NoResetBlock)?)
    } else {
        None
    };

    let mut ld = LaunchDigest::default();
    ld.normal_pages(ovmf.gpa(), ovmf.data());
    for (index, section) in ovmf.sections().iter().enumerate() {
        let gpa = u64::from(section.gpa);
        let size = u64::from(section.size);
        match section.section_type {
            SectionType::SnpSecMem | SectionType::SvsmCaa => ld.zero_pages(gpa, size),
            SectionType::SnpSecrets => ld.update(PageType::Secrets, gpa, &[0u8; 48]),
            SectionType::Cpuid => ld.update(PageType::Cpuid, gpa, &[0u8; 48]),
            SectionType::SnpKernelHashes => match (launch.hashes, ovmf.hashes_table_gpa()) {
                (Some(hashes), Some(table_gpa)) => {
                    if size != PAGE_SIZE as u64 {
                        return Err(SnpError::MisalignedSection { index });
                    }
                    let offset = usize::try_from(table_gpa & 0xfff).unwrap_or(PAGE_SIZE);
                    ld.normal_pages(gpa, &hashes.page(offset)?);
                }
                _ => ld.zero_pages(gpa, size),
            },
        }
    }
    let bsp = vmsa_page(BSP_EIP, launch.cpu, launch.guest_features);
    let bsp_digest: [u8; 48] = Sha384::digest(&bsp).into();
    ld.update(PageType::Vmsa, VMSA_GPA, &bsp_digest);
    if let Some(eip) = ap_eip {
        let ap = vmsa_page(eip, launch.cpu, launch.guest_features);
        let ap_digest: [u8; 48] = Sha384::digest(&ap).into();
        for _ in 1..launch.vcpus {
            ld.update(PageType::Vmsa, VMSA_GPA, &ap_digest);
        }
    }
    Ok(ld.value())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn synthetic() -> Vec<u8> {
        synthetic_ovmf(
            16,
            AMDSEV_SECTIONS,
            Some(AMDSEV_HASHES_TABLE),
            AMDSEV_RESET_EIP,
        )
    }

    fn launch(hashes: Option<&SevHashes>, vcpus: u32) -> SnpLaunch<'_> {
        SnpLaunch {
            hashes,
            vcpus,
            cpu: CpuType::from_name("EPYC-v4").unwrap(),
            guest_features: DEFAULT_GUEST_FEATURES,
        }
    }

    #[test]
    #[should_panic(expected = "GUID")]
    fn malformed_guid_text_panics() {
        let _ = guid("96b582de-1fb2-45f7-baea_a366c55a082d");
    }

    #[test]
    fn guids_encode_little_endian() {
        assert_eq!(
            hex::encode(OVMF_TABLE_FOOTER_GUID),
            "de82b596b21ff745baeaa366c55a082d"
        );
        assert_eq!(
            guid("00F771DE-1A7E-4FCB-890E-68C77E2FB44E"),
            SEV_ES_RESET_BLOCK_GUID
        );
    }

    #[test]
    fn cpu_signatures_match_cpuid_encoding() {
        assert_eq!(
            CpuType::from_name("EPYC-v4").unwrap().signature,
            0x0080_0f12
        );
        assert_eq!(
            CpuType::from_name("EPYC-Milan").unwrap().signature,
            0x00a0_0f11
        );
        assert_eq!(
            CpuType::from_name("EPYC-Genoa").unwrap().signature,
            0x00a1_0f10
        );
        assert_eq!(
            CpuType::from_name("EPYC-Turin").unwrap().signature,
            0x00b0_0f00
        );
        assert!(CpuType::from_name("epyc").is_none());
    }

    #[test]
    fn parses_the_synthetic_firmware() {
        let image = synthetic();
        let ovmf = Ovmf::parse(&image).unwrap();
        assert_eq!(ovmf.sections().len(), 7);
        assert_eq!(ovmf.hashes_table_gpa(), Some(0x0081_0c00));
        assert_eq!(ovmf.reset_eip(), Some(AMDSEV_RESET_EIP));
        assert!(ovmf.supports_kernel_hashes());
        assert_eq!(ovmf.gpa(), FOUR_GIB - 16 * 4096);
    }

    #[test]
    fn hashes_table_layout() {
        let hashes = SevHashes::new(b"kernel", None, Some("console=ttyS0"));
        let table = hashes.table();
        assert_eq!(table.len(), 176);
        assert_eq!(&table[16..18], &168u16.to_le_bytes());
        assert_eq!(
            hashes.cmdline,
            <[u8; 32]>::from(Sha256::digest(b"console=ttyS0\0"))
        );
        assert_eq!(hashes.initrd, <[u8; 32]>::from(Sha256::digest(b"")));
        let page = hashes.page(0x400).unwrap();
        assert_eq!(&page[0x400..0x400 + 176], table.as_slice());
        assert!(matches!(hashes.page(4000), Err(SnpError::Metadata { .. })));
    }

    #[test]
    fn one_byte_changes_change_the_digest() {
        let image = synthetic();
        let ovmf = Ovmf::parse(&image).unwrap();
        let base = SevHashes::new(b"kernel", Some(b"initrd"), Some("ro"));
        let digest = launch_digest(&ovmf, &launch(Some(&base), 2)).unwrap();
        for other in [
            SevHashes::new(b"kernem", Some(b"initrd"), Some("ro")),
            SevHashes::new(b"kernel", Some(b"initre"), Some("ro")),
            SevHashes::new(b"kernel", Some(b"initrd"), Some("rw")),
            SevHashes::new(b"kernel", None, Some("ro")),
        ] {
            assert_ne!(
                launch_digest(&ovmf, &launch(Some(&other), 2)).unwrap(),
                digest
            );
        }
        assert_ne!(
            launch_digest(&ovmf, &launch(Some(&base), 3)).unwrap(),
            digest
        );
        assert_ne!(launch_digest(&ovmf, &launch(None, 2)).unwrap(), digest);
        let mut flipped = image.clone();
        flipped[100] ^= 1;
        let ovmf2 = Ovmf::parse(&flipped).unwrap();
        assert_ne!(
            launch_digest(&ovmf2, &launch(Some(&base), 2)).unwrap(),
            digest
        );
    }

    #[test]
    fn malformed_firmware_is_rejected_with_its_own_error() {
        assert!(matches!(
            Ovmf::parse(&[0u8; 100]),
            Err(SnpError::FirmwareSize { len: 100 })
        ));
        assert!(matches!(
            Ovmf::parse(&[0u8; 4096]),
            Err(SnpError::NoFooterTable)
        ));
        let no_hashes = synthetic_ovmf(16, &AMDSEV_SECTIONS[..6], None, AMDSEV_RESET_EIP);
        let ovmf = Ovmf::parse(&no_hashes).unwrap();
        let hashes = SevHashes::new(b"k", None, None);
        assert!(matches!(
            launch_digest(&ovmf, &launch(Some(&hashes), 1)),
            Err(SnpError::NoKernelHashesSection)
        ));
        assert!(matches!(
            launch_digest(&ovmf, &launch(None, 0)),
            Err(SnpError::Vcpus)
        ));
        let unknown = synthetic_ovmf(16, &[(0x80_0000, 0x1000, 7)], None, 0);
        assert!(matches!(
            Ovmf::parse(&unknown),
            Err(SnpError::UnknownSectionType {
                index: 0,
                section_type: 7
            })
        ));
        let misaligned = synthetic_ovmf(16, &[(0x80_0010, 0x1000, 1)], None, 0);
        assert!(matches!(
            Ovmf::parse(&misaligned),
            Err(SnpError::MisalignedSection { index: 0 })
        ));
        let mut bad_sig = synthetic();
        let at = bad_sig.len() - 4096 + 64;
        bad_sig[at] = b'X';
        assert!(matches!(
            Ovmf::parse(&bad_sig),
            Err(SnpError::Metadata { field: "signature" })
        ));
        let mut bad_entry = synthetic();
        let footer = bad_entry.len() - 32 - 18;
        bad_entry[footer..footer + 2].copy_from_slice(&5u16.to_le_bytes());
        assert!(matches!(Ovmf::parse(&bad_entry), Err(SnpError::TableEntry)));
        let mut huge_table = synthetic();
        huge_table[footer..footer + 2].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(Ovmf::parse(&huge_table).is_err());
    }

    #[test]
    fn parsing_arbitrary_tails_never_panics() {
        let image = synthetic();
        for cut in (0..image.len()).step_by(4096) {
            let _ = Ovmf::parse(&image[cut..]);
        }
        let mut state = 0x1234_5678u32;
        for _ in 0..64 {
            let mut mutated = image.clone();
            for _ in 0..8 {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let at = image.len() - 1 - (state as usize % 200);
                mutated[at] = (state >> 16) as u8;
            }
            let _ = Ovmf::parse(&mutated);
        }
    }
}
