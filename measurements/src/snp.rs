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

/// A GUID in its on-disk (little-endian, `bytes_le`) form.
pub type Guid = [u8; 16];

/// A GUID from its text form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (RFC 9562 §4), as [`Guid`] bytes: the first
/// three groups little-endian, the last two as written.
// For the constants of this crate only, evaluated at compile time: a malformed literal fails the build.
#[allow(
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
pub(crate) const fn guid(text: &str) -> Guid {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => panic!("GUID: not a hex digit"),
        }
    }
    // Where each byte's two digits start in the text, in the on-disk (little-endian) byte order.
    const AT: [usize; 16] = [6, 4, 2, 0, 11, 9, 16, 14, 19, 21, 24, 26, 28, 30, 32, 34];
    let text = text.as_bytes();
    assert!(
        text.len() == 36
            && text[8] == b'-'
            && text[13] == b'-'
            && text[18] == b'-'
            && text[23] == b'-',
        "GUID: not xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
    );
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        out[i] = (nibble(text[AT[i]]) << 4) | nibble(text[AT[i] + 1]);
        i += 1;
    }
    out
}

/// The footer of OVMF's GUIDed table (ResetVector).
pub const OVMF_TABLE_FOOTER_GUID: Guid = guid("96b582de-1fb2-45f7-baea-a366c55a082d");
/// GPA and size of the SEV hashes table.
pub const SEV_HASH_TABLE_RV_GUID: Guid = guid("7255371f-3a3b-4b04-927b-1da6efa8d454");
/// The SEV-ES AP reset vector.
pub const SEV_ES_RESET_BLOCK_GUID: Guid = guid("00f771de-1a7e-4fcb-890e-68c77e2fb44e");
/// Offset of the SEV metadata.
pub const OVMF_SEV_METADATA_GUID: Guid = guid("dc886566-984a-4798-a75e-5585a7bf67cc");
/// SEV hashes table header.
pub const SEV_HASH_TABLE_HEADER_GUID: Guid = guid("9438d606-4f22-4cc9-b479-a793d411fd21");
/// Kernel entry of the hashes table.
pub const SEV_KERNEL_ENTRY_GUID: Guid = guid("4de79437-abd2-427f-b835-d5b172d2045b");
/// Initrd entry of the hashes table.
pub const SEV_INITRD_ENTRY_GUID: Guid = guid("44baf731-3a2f-4bd7-9af1-41e29169781d");
/// Command-line entry of the hashes table.
pub const SEV_CMDLINE_ENTRY_GUID: Guid = guid("97d02dd8-bd20-4c94-aa78-e7714d36ab2a");

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

/// SEV metadata section types (`OvmfSevMetadata.asm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SectionType {
    /// Pre-validated memory (measured as zero pages).
    SnpSecMem,
    /// The secrets page.
    SnpSecrets,
    /// The CPUID page.
    Cpuid,
    /// The SVSM calling area (zero pages).
    SvsmCaa,
    /// The page holding the kernel-hashes table.
    SnpKernelHashes,
}

impl SectionType {
    fn from_u32(value: u32) -> Option<Self> {
        Some(match value {
            1 => Self::SnpSecMem,
            2 => Self::SnpSecrets,
            3 => Self::Cpuid,
            4 => Self::SvsmCaa,
            0x10 => Self::SnpKernelHashes,
            _ => return None,
        })
    }
}

/// One SEV metadata section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    /// Guest physical address.
    pub gpa: u32,
    /// Size in bytes.
    pub size: u32,
    /// What it holds.
    pub section_type: SectionType,
}

/// An OVMF image with its SEV footer table parsed.
#[derive(Debug, Clone)]
pub struct Ovmf<'a> {
    data: &'a [u8],
    sections: Vec<Section>,
    hashes_table_gpa: Option<u32>,
    reset_eip: Option<u32>,
}

/// Entries of OVMF's footer GUID table: `(guid, data)`, from the end of the image backwards.
pub fn footer_table(data: &[u8]) -> Result<Vec<(Guid, &[u8])>, SnpError> {
    const HEADER: usize = 18; // u16 size || GUID
    let footer_at = data
        .len()
        .checked_sub(32 + HEADER)
        .ok_or(SnpError::NoFooterTable)?;
    let footer = data
        .get(footer_at..footer_at.saturating_add(HEADER))
        .ok_or(SnpError::NoFooterTable)?;
    let (size, guid) = split_entry_header(footer)?;
    if guid != OVMF_TABLE_FOOTER_GUID {
        return Err(SnpError::NoFooterTable);
    }
    let table_len = usize::from(size)
        .checked_sub(HEADER)
        .ok_or(SnpError::TableEntry)?;
    let table_start = footer_at
        .checked_sub(table_len)
        .ok_or(SnpError::Truncated {
            field: "footer table",
        })?;
    let mut table = data
        .get(table_start..footer_at)
        .ok_or(SnpError::Truncated {
            field: "footer table",
        })?;
    let mut entries = Vec::new();
    while table.len() >= HEADER {
        let header_at = table.len().saturating_sub(HEADER);
        let (head, header) = table
            .split_at_checked(header_at)
            .ok_or(SnpError::TableEntry)?;
        let (size, guid) = split_entry_header(header)?;
        let body_len = usize::from(size)
            .checked_sub(HEADER)
            .ok_or(SnpError::TableEntry)?;
        let body_at = head
            .len()
            .checked_sub(body_len)
            .ok_or(SnpError::TableEntry)?;
        let (rest, body) = head.split_at_checked(body_at).ok_or(SnpError::TableEntry)?;
        entries.push((guid, body));
        table = rest;
    }
    Ok(entries)
}

fn split_entry_header(header: &[u8]) -> Result<(u16, Guid), SnpError> {
    let (size, guid) = header
        .split_first_chunk::<2>()
        .ok_or(SnpError::TableEntry)?;
    let guid: Guid = guid.try_into().map_err(|_| SnpError::TableEntry)?;
    Ok((u16::from_le_bytes(*size), guid))
}

fn le_u32(bytes: &[u8], at: usize, field: &'static str) -> Result<u32, SnpError> {
    let end = at.checked_add(4).ok_or(SnpError::Truncated { field })?;
    let slice = bytes.get(at..end).ok_or(SnpError::Truncated { field })?;
    let array: [u8; 4] = slice
        .try_into()
        .map_err(|_| SnpError::Truncated { field })?;
    Ok(u32::from_le_bytes(array))
}

impl<'a> Ovmf<'a> {
    /// Parses the footer table and SEV metadata of an OVMF image.
    pub fn parse(data: &'a [u8]) -> Result<Self, SnpError> {
        if data.is_empty() || !data.len().is_multiple_of(PAGE_SIZE) || data.len() > MAX_FIRMWARE_LEN
        {
            return Err(SnpError::FirmwareSize { len: data.len() });
        }
        let table = footer_table(data)?;
        let find = |wanted: Guid| {
            table
                .iter()
                .find(|(g, _)| *g == wanted)
                .map(|(_, body)| *body)
        };

        let metadata = find(OVMF_SEV_METADATA_GUID).ok_or(SnpError::NoSevMetadata)?;
        let offset_from_end = le_u32(metadata, 0, "SEV metadata offset")?;
        let start = usize::try_from(offset_from_end)
            .ok()
            .and_then(|o| data.len().checked_sub(o))
            .ok_or(SnpError::Truncated {
                field: "SEV metadata",
            })?;
        let header = data.get(start..).ok_or(SnpError::Truncated {
            field: "SEV metadata",
        })?;
        if header.get(..4) != Some(b"ASEV".as_slice()) {
            return Err(SnpError::Metadata { field: "signature" });
        }
        let total = usize::try_from(le_u32(header, 4, "SEV metadata size")?).unwrap_or(usize::MAX);
        if le_u32(header, 8, "SEV metadata version")? != 1 {
            return Err(SnpError::Metadata { field: "version" });
        }
        let count =
            usize::try_from(le_u32(header, 12, "SEV metadata count")?).unwrap_or(usize::MAX);
        let items = header.get(16..total).ok_or(SnpError::Truncated {
            field: "SEV metadata sections",
        })?;
        if count.checked_mul(12).is_none_or(|need| need > items.len()) {
            return Err(SnpError::Truncated {
                field: "SEV metadata sections",
            });
        }
        let mut sections = Vec::with_capacity(count);
        for (index, item) in items.chunks_exact(12).take(count).enumerate() {
            let gpa = le_u32(item, 0, "section gpa")?;
            let size = le_u32(item, 4, "section size")?;
            let raw_type = le_u32(item, 8, "section type")?;
            let section_type =
                SectionType::from_u32(raw_type).ok_or(SnpError::UnknownSectionType {
                    index,
                    section_type: raw_type,
                })?;
            // Ranges are measured page by page; the secrets and CPUID sections are one page at `gpa`.
            let page = u32::try_from(PAGE_SIZE).unwrap_or(u32::MAX);
            let single = matches!(section_type, SectionType::SnpSecrets | SectionType::Cpuid);
            if !gpa.is_multiple_of(page) || (!single && !size.is_multiple_of(page)) {
                return Err(SnpError::MisalignedSection { index });
            }
            sections.push(Section {
                gpa,
                size,
                section_type,
            });
        }

        let hashes_table_gpa = match find(SEV_HASH_TABLE_RV_GUID) {
            Some(body) => Some(le_u32(body, 0, "SEV hashes table entry")?).filter(|gpa| *gpa != 0),
            None => None,
        };
        let reset_eip = match find(SEV_ES_RESET_BLOCK_GUID) {
            Some(body) => Some(le_u32(body, 0, "SEV-ES reset block")?),
            None => None,
        };
        Ok(Self {
            data,
            sections,
            hashes_table_gpa,
            reset_eip,
        })
    }

    /// The image bytes.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Guest physical address of the first byte (the image ends at 4 GiB).
    pub fn gpa(&self) -> u64 {
        FOUR_GIB.saturating_sub(u64::try_from(self.data.len()).unwrap_or(u64::MAX))
    }

    /// The SEV metadata sections, in measurement order.
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// GPA of the SEV hashes table, when the image has one.
    pub fn hashes_table_gpa(&self) -> Option<u32> {
        self.hashes_table_gpa
    }

    /// The AP reset EIP from the SEV-ES reset block.
    pub fn reset_eip(&self) -> Option<u32> {
        self.reset_eip
    }

    /// Whether direct boot with kernel hashes can be measured with this image.
    pub fn supports_kernel_hashes(&self) -> bool {
        self.hashes_table_gpa.is_some()
            && self
                .sections
                .iter()
                .any(|s| s.section_type == SectionType::SnpKernelHashes)
    }
}

/// SHA-256 of the kernel, initrd and command line, as QEMU writes them into the SEV hashes table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SevHashes {
    /// SHA-256 of the kernel file.
    pub kernel: [u8; 32],
    /// SHA-256 of the initrd file (of the empty string without one).
    pub initrd: [u8; 32],
    /// SHA-256 of the command line with its terminating NUL (just `"\0"` without one).
    pub cmdline: [u8; 32],
}

/// Size of the SEV hashes table: header (GUID, u16 length) and three entries (GUID, u16 length, SHA-256).
pub const SEV_HASH_TABLE_LEN: usize = 18 + 3 * 50;

impl SevHashes {
    /// Hashes the artefacts as QEMU does: the command line is hashed with a terminating NUL.
    pub fn new(kernel: &[u8], initrd: Option<&[u8]>, cmdline: Option<&str>) -> Self {
        let mut cmd = Sha256::new();
        cmd.update(cmdline.unwrap_or("").as_bytes());
        cmd.update([0u8]);
        Self {
            kernel: Sha256::digest(kernel).into(),
            initrd: Sha256::digest(initrd.unwrap_or(&[])).into(),
            cmdline: cmd.finalize().into(),
        }
    }

    /// The table bytes, padded to a multiple of 16.
    pub fn table(&self) -> Vec<u8> {
        let mut table = Vec::with_capacity(SEV_HASH_TABLE_LEN.next_multiple_of(16));
        table.extend_from_slice(&SEV_HASH_TABLE_HEADER_GUID);
        table.extend_from_slice(
            &u16::try_from(SEV_HASH_TABLE_LEN)
                .unwrap_or(u16::MAX)
                .to_le_bytes(),
        );
        for (entry_guid, hash) in [
            (SEV_CMDLINE_ENTRY_GUID, &self.cmdline),
            (SEV_INITRD_ENTRY_GUID, &self.initrd),
            (SEV_KERNEL_ENTRY_GUID, &self.kernel),
        ] {
            table.extend_from_slice(&entry_guid);
            table.extend_from_slice(&50u16.to_le_bytes());
            table.extend_from_slice(hash);
        }
        table.resize(SEV_HASH_TABLE_LEN.next_multiple_of(16), 0);
        table
    }

    /// The page QEMU measures: the table at `offset` within an otherwise zero page.
    pub fn page(&self, offset: usize) -> Result<Vec<u8>, SnpError> {
        let table = self.table();
        let end = offset
            .checked_add(table.len())
            .filter(|end| *end <= PAGE_SIZE);
        let end = end.ok_or(SnpError::Metadata {
            field: "hashes table crosses its page",
        })?;
        let mut page = vec![0u8; PAGE_SIZE];
        page.get_mut(offset..end)
            .ok_or(SnpError::Metadata {
                field: "hashes table offset",
            })?
            .copy_from_slice(&table);
        Ok(page)
    }
}

/// A QEMU `-cpu` model and the CPUID signature (family/model/stepping) QEMU puts in RDX at reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuType {
    /// QEMU model name.
    pub name: &'static str,
    /// CPUID Fn0000_0001_EAX signature.
    pub signature: u32,
}

/// CPUID Fn0000_0001_EAX from family, model and stepping (AMD CPUID specification #25481).
pub const fn cpu_signature(family: u32, model: u32, stepping: u32) -> u32 {
    let (family_low, family_high) = if family > 0xf {
        (0xf, family.saturating_sub(0xf) & 0xff)
    } else {
        (family, 0)
    };
    (family_high << 20)
        | (((model >> 4) & 0xf) << 16)
        | (family_low << 8)
        | ((model & 0xf) << 4)
        | (stepping & 0xf)
}

impl CpuType {
    /// The AMD models in QEMU's built-in x86 CPU definitions.
    pub const ALL: &'static [CpuType] = &[
        Self::new("EPYC", 23, 1, 2),
        Self::new("EPYC-v1", 23, 1, 2),
        Self::new("EPYC-v2", 23, 1, 2),
        Self::new("EPYC-IBPB", 23, 1, 2),
        Self::new("EPYC-v3", 23, 1, 2),
        Self::new("EPYC-v4", 23, 1, 2),
        Self::new("EPYC-Rome", 23, 49, 0),
        Self::new("EPYC-Rome-v1", 23, 49, 0),
        Self::new("EPYC-Rome-v2", 23, 49, 0),
        Self::new("EPYC-Rome-v3", 23, 49, 0),
        Self::new("EPYC-Milan", 25, 1, 1),
        Self::new("EPYC-Milan-v1", 25, 1, 1),
        Self::new("EPYC-Milan-v2", 25, 1, 1),
        Self::new("EPYC-Genoa", 25, 17, 0),
        Self::new("EPYC-Genoa-v1", 25, 17, 0),
        Self::new("EPYC-Turin", 26, 0, 0),
    ];

    const fn new(name: &'static str, family: u32, model: u32, stepping: u32) -> Self {
        Self {
            name,
            signature: cpu_signature(family, model, stepping),
        }
    }

    /// Looks a model up by its QEMU name (case-sensitive, as QEMU's `-cpu`).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.name == name)
    }
}

/// Byte offsets in the VMSA (AMD APM vol. 2, table B-4, "VMSA layout, state save area").
mod vmsa_offset {
    pub const ES: usize = 0x000;
    pub const CS: usize = 0x010;
    pub const SS: usize = 0x020;
    pub const DS: usize = 0x030;
    pub const FS: usize = 0x040;
    pub const GS: usize = 0x050;
    pub const GDTR: usize = 0x060;
    pub const LDTR: usize = 0x070;
    pub const IDTR: usize = 0x080;
    pub const TR: usize = 0x090;
    pub const EFER: usize = 0x0d0;
    pub const CR4: usize = 0x148;
    pub const CR0: usize = 0x158;
    pub const DR7: usize = 0x160;
    pub const DR6: usize = 0x168;
    pub const RFLAGS: usize = 0x170;
    pub const RIP: usize = 0x178;
    pub const G_PAT: usize = 0x268;
    pub const RDX: usize = 0x310;
    pub const SEV_FEATURES: usize = 0x3b0;
    pub const XCR0: usize = 0x3e8;
    pub const MXCSR: usize = 0x408;
    pub const X87_FCW: usize = 0x410;
}

/// Boot processor reset EIP.
const BSP_EIP: u32 = 0xffff_fff0;

/// The VMSA page QEMU/KVM gives a vCPU starting at `eip` (segments at reset, CR0.ET, EFER.SVME, CR4.MCE, PAT, x87
/// and SSE defaults, RDX = CPUID signature).
pub fn vmsa_page(eip: u32, cpu: CpuType, guest_features: u64) -> Vec<u8> {
    use vmsa_offset::*;
    let mut page = vec![0u8; PAGE_SIZE];
    let mut put = |at: usize, bytes: &[u8]| {
        if let Some(dst) = page.get_mut(at..at.saturating_add(bytes.len())) {
            dst.copy_from_slice(bytes);
        }
    };
    let mut segment = |at: usize, selector: u16, attrib: u16, limit: u32, base: u64| {
        put(at, &selector.to_le_bytes());
        put(at.saturating_add(2), &attrib.to_le_bytes());
        put(at.saturating_add(4), &limit.to_le_bytes());
        put(at.saturating_add(8), &base.to_le_bytes());
    };
    segment(ES, 0, 0x93, 0xffff, 0);
    segment(CS, 0xf000, 0x9b, 0xffff, u64::from(eip & 0xffff_0000));
    segment(SS, 0, 0x93, 0xffff, 0);
    segment(DS, 0, 0x93, 0xffff, 0);
    segment(FS, 0, 0x93, 0xffff, 0);
    segment(GS, 0, 0x93, 0xffff, 0);
    segment(GDTR, 0, 0, 0xffff, 0);
    segment(LDTR, 0, 0x82, 0xffff, 0);
    segment(IDTR, 0, 0, 0xffff, 0);
    segment(TR, 0, 0x8b, 0xffff, 0);
    put(EFER, &0x1000u64.to_le_bytes());
    put(CR4, &0x40u64.to_le_bytes());
    put(CR0, &0x10u64.to_le_bytes());
    put(DR7, &0x400u64.to_le_bytes());
    put(DR6, &0xffff_0ff0u64.to_le_bytes());
    put(RFLAGS, &0x2u64.to_le_bytes());
    put(RIP, &u64::from(eip & 0xffff).to_le_bytes());
    put(G_PAT, &0x0007_0406_0007_0406u64.to_le_bytes());
    put(RDX, &u64::from(cpu.signature).to_le_bytes());
    put(SEV_FEATURES, &guest_features.to_le_bytes());
    put(XCR0, &0x1u64.to_le_bytes());
    put(MXCSR, &0x1f80u32.to_le_bytes());
    put(X87_FCW, &0x37fu16.to_le_bytes());
    page
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

/// Builds a minimal firmware image with a footer table and SEV metadata: enough for the measurement (which only
/// reads the table, the metadata, and hashes every page). Used by tests and `dait-measure snp --synthetic-ovmf`
/// to compare with other implementations without an edk2 build.
pub fn synthetic_ovmf(
    pages: usize,
    sections: &[(u32, u32, u32)],
    hashes_table: Option<(u32, u32)>,
    reset_eip: u32,
) -> Vec<u8> {
    let len = pages.max(1).saturating_mul(PAGE_SIZE);
    let mut image: Vec<u8> = (0..len)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 12)) as u8)
        .collect();
    // SEV metadata block near the start of the last page.
    let mut metadata = Vec::new();
    metadata.extend_from_slice(b"ASEV");
    let meta_len = 16usize.saturating_add(sections.len().saturating_mul(12));
    metadata.extend_from_slice(&u32::try_from(meta_len).unwrap_or(u32::MAX).to_le_bytes());
    metadata.extend_from_slice(&1u32.to_le_bytes());
    metadata.extend_from_slice(
        &u32::try_from(sections.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    for (gpa, size, kind) in sections {
        metadata.extend_from_slice(&gpa.to_le_bytes());
        metadata.extend_from_slice(&size.to_le_bytes());
        metadata.extend_from_slice(&kind.to_le_bytes());
    }
    let meta_at = len.saturating_sub(PAGE_SIZE).saturating_add(64);
    if let Some(dst) = image.get_mut(meta_at..meta_at.saturating_add(metadata.len())) {
        dst.copy_from_slice(&metadata);
    }
    // Footer table: entries, then the footer entry, ending 32 bytes before the end of the image.
    let mut table = Vec::new();
    let mut entry = |guid: Guid, body: &[u8]| {
        table.extend_from_slice(body);
        table.extend_from_slice(
            &u16::try_from(body.len().saturating_add(18))
                .unwrap_or(u16::MAX)
                .to_le_bytes(),
        );
        table.extend_from_slice(&guid);
    };
    let offset_from_end = u32::try_from(len.saturating_sub(meta_at)).unwrap_or(u32::MAX);
    entry(OVMF_SEV_METADATA_GUID, &offset_from_end.to_le_bytes());
    if let Some((gpa, size)) = hashes_table {
        let mut body = gpa.to_le_bytes().to_vec();
        body.extend_from_slice(&size.to_le_bytes());
        entry(SEV_HASH_TABLE_RV_GUID, &body);
    }
    entry(SEV_ES_RESET_BLOCK_GUID, &reset_eip.to_le_bytes());
    let table_len = table.len();
    table.extend_from_slice(
        &u16::try_from(table_len.saturating_add(18))
            .unwrap_or(u16::MAX)
            .to_le_bytes(),
    );
    table.extend_from_slice(&OVMF_TABLE_FOOTER_GUID);
    let table_at = len.saturating_sub(32).saturating_sub(table.len());
    if let Some(dst) = image.get_mut(table_at..table_at.saturating_add(table.len())) {
        dst.copy_from_slice(&table);
    }
    image
}

/// The SEV metadata sections of edk2 2025.02's `AmdSevX64` build (as `scripts/ovmf.sh` builds it), in its order:
/// SEC memory, SEC memory, secrets, CPUID, SVSM calling area, SEC memory, kernel hashes. Used with
/// [`synthetic_ovmf`] so that tests measure the same layout as the real firmware.
pub const AMDSEV_SECTIONS: &[(u32, u32, u32)] = &[
    (0x0080_0000, 0x9000, 1),
    (0x0080_a000, 0x3000, 1),
    (0x0080_d000, 0x1000, 2),
    (0x0080_e000, 0x1000, 3),
    (0x0080_f000, 0x1000, 4),
    (0x0081_1000, 0xf000, 1),
    (0x0081_0000, 0x1000, 0x10),
];
/// Where that build places the hashes table (GPA, size): inside the kernel-hashes page, at offset 0xc00.
pub const AMDSEV_HASHES_TABLE: (u32, u32) = (0x0081_0c00, 0x400);
/// That build's SEV-ES AP reset vector.
pub const AMDSEV_RESET_EIP: u32 = 0x0080_b004;

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
