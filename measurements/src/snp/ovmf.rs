//! The OVMF image as the measurement reads it: the footer GUID table, the SEV metadata sections, the
//! kernel-hashes table's place and the reset vector.

use super::*;

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
