//! Intel TDX: MRTD from the TDVF (OVMF for TDX) metadata, the PE/Authenticode digest the firmware measures for an
//! EFI application, and the RTMR1/RTMR2 event sequences of a QEMU direct boot.
//!
//! # MRTD
//! QEMU adds every TDVF section to the TD before it runs (TDVF design guide §11, "TDVF metadata"): for each page,
//! `TDH.MEM.PAGE.ADD` folds a 128-byte buffer `"MEM.PAGE.ADD" || GPA` into MRTD, and for sections with the
//! MR.EXTEND attribute each 256-byte chunk of the page goes through `TDH.MR.EXTEND` (`"MR.EXTEND" || GPA` buffer,
//! then the chunk). MRTD is the SHA-384 over that whole stream. Sections with the PAGE.AUG attribute are added
//! later by the guest and not measured. Upstream KVM interleaves add and extend per page ([`PageAddOrder::PerPage`]);
//! older QEMU/KVM TDX trees added all pages of a section before extending them ([`PageAddOrder::PerSection`]).
//!
//! # RTMRs (what the firmware measures; CC event log MR index = RTMR index + 1)
//! - RTMR0 (as in the real GCP log): the TD HOB handoff table, the configuration firmware volume
//!   ([`cfv_digest`]), the Secure Boot variables (SecureBoot, PK, KEK, db, dbx), a separator, three ACPI data
//!   blobs, the boot variables (BootOrder, Boot####). The TD HOB and the ACPI tables come from the VMM and depend
//!   on the memory size and device model, so RTMR0 is pinned per VM shape from a boot's event log
//!   (`dait-measure replay`), not predicted.
//! - RTMR1: `"Calling EFI Application from Boot Option"`, the separator, the Authenticode digest of each EFI
//!   application started (the UKI, or the kernel for direct boot), `"Exit Boot Services Invocation"`,
//!   `"Exit Boot Services Returned with Success"`. The firmware part of this sequence is checked against the
//!   real GCP event log in the tests.
//! - RTMR2: the kernel command line (UTF-16LE with NUL, as OVMF passes it to the kernel's EFI stub) and the initrd
//!   (SHA-384 of the file, measured by the kernel's EFI stub when it loads it through LoadFile2).
//! - RTMR3: nothing from the firmware; the agent's runtime events (see [`crate::reference`]).

use sha2::{Digest, Sha256, Sha384};

use crate::hexbytes::{HexBytes, Sha384Digest};
use crate::reference::extend_sha384;
use crate::snp::{self, Guid, PAGE_SIZE};

/// Offset of the TDVF metadata descriptor in the OVMF footer table.
pub const TDX_METADATA_GUID: Guid = snp::guid("e47a6535-984a-4798-865e-4685a7bf8ec2");
/// Section attribute: measure the section's data with TDH.MR.EXTEND.
pub const ATTRIBUTE_MR_EXTEND: u32 = 0x1;
/// Section attribute: pages are added by the guest (TDH.MEM.PAGE.AUG), not measured.
pub const ATTRIBUTE_PAGE_AUG: u32 = 0x2;
/// TDH.MR.EXTEND chunk size.
pub const MR_EXTEND_CHUNK: usize = 256;
/// Most TDVF sections accepted.
pub const MAX_SECTIONS: usize = 64;
/// Largest firmware image accepted.
pub const MAX_FIRMWARE_LEN: usize = 64 * 1024 * 1024;
/// Largest guest memory size of one TDVF section (each page is measured, so this bounds the work).
pub const MAX_SECTION_MEMORY: u64 = 1 << 32;
/// Most bytes a section may extend past its file data when loaded (zero-filled): a file alignment's worth.
pub const MAX_ZERO_FILL: usize = 64 * 1024;
/// Most PE sections accepted.
pub const MAX_PE_SECTIONS: usize = 96;

/// Why a TDX value could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TdxError {
    /// The firmware size is zero, not page aligned, or too large.
    #[error("firmware size {len} is not a positive multiple of 4096 up to the limit")]
    FirmwareSize {
        /// Size in bytes.
        len: usize,
    },
    /// A TDVF section is not page aligned, or its data lies outside the image.
    #[error("TDVF section {index}: {field}")]
    InvalidSection {
        /// Section index.
        index: usize,
        /// What is wrong.
        field: &'static str,
    },
    /// The image has no TDVF metadata.
    #[error("the firmware has no TDVF metadata")]
    NoMetadata,
    /// Not a PE image, or an unsupported optional header.
    #[error("not a PE/COFF image: {field}")]
    NotPe {
        /// What is wrong.
        field: &'static str,
    },
    /// A structure is cut short.
    #[error("{field} truncated")]
    Truncated {
        /// Which structure.
        field: &'static str,
    },
    /// The descriptor version is not 1, or the section count is out of range.
    #[error("unsupported TDVF descriptor: {field}")]
    UnsupportedDescriptor {
        /// What is wrong.
        field: &'static str,
    },
    /// A section type this code does not know.
    #[error("TDVF section {index} has unknown type {section_type}")]
    UnknownSectionType {
        /// Section index.
        index: usize,
        /// The type value.
        section_type: u32,
    },
}

/// TDVF section types (TDVF design guide, table "TDVF_SECTION").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TdvfSectionType {
    /// Boot firmware volume (code).
    Bfv,
    /// Configuration firmware volume (variables).
    Cfv,
    /// The TD HOB page(s), filled by the VMM.
    TdHob,
    /// Temporary memory used by the firmware before memory is accepted.
    TempMem,
    /// Permanent memory.
    PermMem,
    /// A payload (e.g. a kernel) in the image.
    Payload,
    /// Payload parameters.
    PayloadParam,
}

impl TdvfSectionType {
    fn from_u32(value: u32) -> Option<Self> {
        Some(match value {
            0 => Self::Bfv,
            1 => Self::Cfv,
            2 => Self::TdHob,
            3 => Self::TempMem,
            4 => Self::PermMem,
            5 => Self::Payload,
            6 => Self::PayloadParam,
            _ => return None,
        })
    }
}

/// One TDVF section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TdvfSection {
    /// Offset of the section's data in the image.
    pub data_offset: u32,
    /// Size of that data.
    pub raw_data_size: u32,
    /// Guest physical address.
    pub memory_address: u64,
    /// Size in guest memory (whole pages).
    pub memory_data_size: u64,
    /// Section type.
    pub section_type: TdvfSectionType,
    /// Attributes ([`ATTRIBUTE_MR_EXTEND`], [`ATTRIBUTE_PAGE_AUG`]).
    pub attributes: u32,
}

/// A TDVF image with its metadata parsed.
#[derive(Debug, Clone)]
pub struct Tdvf<'a> {
    data: &'a [u8],
    sections: Vec<TdvfSection>,
}

fn le<const N: usize>(bytes: &[u8], at: usize, field: &'static str) -> Result<[u8; N], TdxError> {
    bytes
        .get(at..at.saturating_add(N))
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or(TdxError::Truncated { field })
}

fn le_u16(bytes: &[u8], at: usize, field: &'static str) -> Result<u16, TdxError> {
    le::<2>(bytes, at, field).map(u16::from_le_bytes)
}

fn le_u32(bytes: &[u8], at: usize, field: &'static str) -> Result<u32, TdxError> {
    le::<4>(bytes, at, field).map(u32::from_le_bytes)
}

fn le_u64(bytes: &[u8], at: usize, field: &'static str) -> Result<u64, TdxError> {
    le::<8>(bytes, at, field).map(u64::from_le_bytes)
}

fn to_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

impl<'a> Tdvf<'a> {
    /// Parses the TDVF metadata of a firmware image (found through the OVMF footer table, or at the legacy fixed
    /// pointer 0x20 bytes before the end of the image).
    pub fn parse(data: &'a [u8]) -> Result<Self, TdxError> {
        if data.is_empty() || !data.len().is_multiple_of(PAGE_SIZE) || data.len() > MAX_FIRMWARE_LEN
        {
            return Err(TdxError::FirmwareSize { len: data.len() });
        }
        let from_table = snp::footer_table(data)
            .ok()
            .and_then(|entries| {
                entries
                    .into_iter()
                    .find(|(g, _)| *g == TDX_METADATA_GUID)
                    .map(|(_, body)| body)
            })
            .map(|body| le_u32(body, 0, "TDX metadata entry"))
            .transpose()?;
        let offset_from_end = match from_table {
            Some(offset) => offset,
            None => le_u32(
                data,
                data.len().saturating_sub(0x20),
                "TDVF descriptor pointer",
            )?,
        };
        let start = data
            .len()
            .checked_sub(to_usize(u64::from(offset_from_end)))
            .ok_or(TdxError::NoMetadata)?;
        let descriptor = data.get(start..).ok_or(TdxError::NoMetadata)?;
        if descriptor.get(..4) != Some(b"TDVF".as_slice()) {
            return Err(TdxError::NoMetadata);
        }
        if le_u32(descriptor, 8, "TDVF descriptor version")? != 1 {
            return Err(TdxError::UnsupportedDescriptor { field: "version" });
        }
        let count = to_usize(u64::from(le_u32(descriptor, 12, "TDVF section count")?));
        if count == 0 || count > MAX_SECTIONS {
            return Err(TdxError::UnsupportedDescriptor {
                field: "section count",
            });
        }
        let mut sections = Vec::with_capacity(count);
        for index in 0..count {
            let at = index.saturating_mul(32).saturating_add(16);
            let raw_type = le_u32(descriptor, at.saturating_add(24), "TDVF section")?;
            let section = TdvfSection {
                data_offset: le_u32(descriptor, at, "TDVF section")?,
                raw_data_size: le_u32(descriptor, at.saturating_add(4), "TDVF section")?,
                memory_address: le_u64(descriptor, at.saturating_add(8), "TDVF section")?,
                memory_data_size: le_u64(descriptor, at.saturating_add(16), "TDVF section")?,
                section_type: TdvfSectionType::from_u32(raw_type).ok_or(
                    TdxError::UnknownSectionType {
                        index,
                        section_type: raw_type,
                    },
                )?,
                attributes: le_u32(descriptor, at.saturating_add(28), "TDVF section")?,
            };
            let page = PAGE_SIZE as u64;
            if !section.memory_address.is_multiple_of(page)
                || !section.memory_data_size.is_multiple_of(page)
            {
                return Err(TdxError::InvalidSection {
                    index,
                    field: "not page aligned",
                });
            }
            if section.memory_data_size > MAX_SECTION_MEMORY {
                return Err(TdxError::InvalidSection {
                    index,
                    field: "memory size over 4 GiB",
                });
            }
            if u64::from(section.raw_data_size) > section.memory_data_size {
                return Err(TdxError::InvalidSection {
                    index,
                    field: "raw data larger than memory",
                });
            }
            if section.attributes & ATTRIBUTE_MR_EXTEND != 0 {
                // Extended sections are measured page by page from the image: the whole range must be there.
                let end = u64::from(section.data_offset).saturating_add(section.memory_data_size);
                if end > u64::try_from(data.len()).unwrap_or(u64::MAX) {
                    return Err(TdxError::InvalidSection {
                        index,
                        field: "data outside the image",
                    });
                }
            }
            sections.push(section);
        }
        Ok(Self { data, sections })
    }

    /// The sections, in the order QEMU adds them.
    pub fn sections(&self) -> &[TdvfSection] {
        &self.sections
    }
}

/// Order of TDH.MEM.PAGE.ADD and TDH.MR.EXTEND within a section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PageAddOrder {
    /// Add a page, then extend its chunks (upstream KVM `KVM_TDX_INIT_MEM_REGION`).
    #[default]
    PerPage,
    /// Add every page of a section, then extend them (older QEMU/KVM TDX trees).
    PerSection,
}

fn page_add(hasher: &mut Sha384, section: &TdvfSection, page: u64) {
    if section.attributes & ATTRIBUTE_PAGE_AUG != 0 {
        return;
    }
    let mut buffer = [0u8; 128];
    let gpa = section
        .memory_address
        .saturating_add(page.saturating_mul(PAGE_SIZE as u64));
    if let Some(tag) = buffer.get_mut(..12) {
        tag.copy_from_slice(b"MEM.PAGE.ADD");
    }
    if let Some(slot) = buffer.get_mut(16..24) {
        slot.copy_from_slice(&gpa.to_le_bytes());
    }
    hasher.update(buffer);
}

fn mr_extend(hasher: &mut Sha384, data: &[u8], section: &TdvfSection, page: u64) {
    if section.attributes & ATTRIBUTE_MR_EXTEND == 0 {
        return;
    }
    let page_offset = page.saturating_mul(PAGE_SIZE as u64);
    for chunk in 0..(PAGE_SIZE / MR_EXTEND_CHUNK) as u64 {
        let offset = page_offset.saturating_add(chunk.saturating_mul(MR_EXTEND_CHUNK as u64));
        let mut buffer = [0u8; 128];
        if let Some(tag) = buffer.get_mut(..9) {
            tag.copy_from_slice(b"MR.EXTEND");
        }
        if let Some(slot) = buffer.get_mut(16..24) {
            slot.copy_from_slice(&section.memory_address.saturating_add(offset).to_le_bytes());
        }
        hasher.update(buffer);
        // Parse checked that data_offset + memory_data_size is inside the image.
        let start = to_usize(u64::from(section.data_offset).saturating_add(offset));
        hasher.update(
            data.get(start..start.saturating_add(MR_EXTEND_CHUNK))
                .unwrap_or(&[0u8; MR_EXTEND_CHUNK]),
        );
    }
}

/// MRTD of a TD booted from this firmware.
pub fn mrtd(tdvf: &Tdvf<'_>, order: PageAddOrder) -> Sha384Digest {
    let mut hasher = Sha384::new();
    for section in &tdvf.sections {
        let pages = section
            .memory_data_size
            .checked_div(PAGE_SIZE as u64)
            .unwrap_or(0);
        match order {
            PageAddOrder::PerPage => {
                for page in 0..pages {
                    page_add(&mut hasher, section, page);
                    mr_extend(&mut hasher, tdvf.data, section, page);
                }
            }
            PageAddOrder::PerSection => {
                for page in 0..pages {
                    page_add(&mut hasher, section, page);
                }
                for page in 0..pages {
                    mr_extend(&mut hasher, tdvf.data, section, page);
                }
            }
        }
    }
    HexBytes(hasher.finalize().into())
}

/// The offset of the COFF file header of a PE image, after checking the MZ and PE signatures.
fn coff_header(image: &[u8]) -> Result<usize, TdxError> {
    if image.get(..2) != Some(b"MZ".as_slice()) {
        return Err(TdxError::NotPe {
            field: "MZ signature",
        });
    }
    let pe = to_usize(u64::from(le_u32(image, 0x3c, "e_lfanew")?));
    if image.get(pe..pe.saturating_add(4)) != Some(b"PE\0\0".as_slice()) {
        return Err(TdxError::NotPe {
            field: "PE signature",
        });
    }
    let coff = pe.saturating_add(4);
    Ok(coff)
}

/// The Authenticode (PE image) digest as EDK2 measures an EFI application (`Tcg2MeasurePeImage`): the headers
/// without the checksum and the certificate-table directory entry, the sections in file order, then any data
/// after the last section up to the certificate table.
pub fn authenticode_digest<D: Digest>(image: &[u8]) -> Result<Vec<u8>, TdxError> {
    let coff = coff_header(image)?;
    let section_count = usize::from(le_u16(image, coff.saturating_add(2), "COFF header")?);
    let optional_size = usize::from(le_u16(image, coff.saturating_add(16), "COFF header")?);
    let optional = coff.saturating_add(20);
    let magic = le_u16(image, optional, "optional header magic")?;
    let (rva_count_at, directories_at) = match magic {
        0x10b => (optional.saturating_add(92), optional.saturating_add(96)),
        0x20b => (optional.saturating_add(108), optional.saturating_add(112)),
        _ => {
            return Err(TdxError::NotPe {
                field: "optional header magic",
            });
        }
    };
    let checksum_at = optional.saturating_add(64);
    let headers_size = to_usize(u64::from(le_u32(
        image,
        optional.saturating_add(60),
        "SizeOfHeaders",
    )?));
    let rva_count = le_u32(image, rva_count_at, "NumberOfRvaAndSizes")?;
    if headers_size > image.len() || checksum_at.saturating_add(4) > headers_size {
        return Err(TdxError::NotPe {
            field: "SizeOfHeaders",
        });
    }
    if section_count > MAX_PE_SECTIONS {
        return Err(TdxError::NotPe {
            field: "section count",
        });
    }

    let part = |from: usize, to: usize| {
        image.get(from..to).ok_or(TdxError::Truncated {
            field: "PE headers",
        })
    };
    let mut hasher = D::new();
    hasher.update(part(0, checksum_at)?);
    let cert_size = if rva_count > 4 {
        let entry = directories_at.saturating_add(4 * 8);
        hasher.update(part(checksum_at.saturating_add(4), entry)?);
        hasher.update(part(entry.saturating_add(8), headers_size)?);
        to_usize(u64::from(le_u32(
            image,
            entry.saturating_add(4),
            "certificate directory size",
        )?))
    } else {
        hasher.update(part(checksum_at.saturating_add(4), headers_size)?);
        0
    };

    let mut sections: Vec<(usize, usize)> =
        section_table(image, optional.saturating_add(optional_size), section_count)?
            .iter()
            .filter(|section| section.raw_size > 0)
            .map(|section| (section.raw_offset, section.raw_size))
            .collect();
    sections.sort_unstable();
    let mut hashed = headers_size;
    for (ptr, size) in sections {
        let end = ptr.checked_add(size).ok_or(TdxError::Truncated {
            field: "section data",
        })?;
        hasher.update(image.get(ptr..end).ok_or(TdxError::Truncated {
            field: "section data",
        })?);
        hashed = hashed.saturating_add(size);
    }
    if image.len() > hashed {
        let end = image.len().saturating_sub(cert_size);
        if end > hashed {
            hasher.update(image.get(hashed..end).ok_or(TdxError::Truncated {
                field: "trailing data",
            })?);
        }
    }
    Ok(hasher.finalize().to_vec())
}

/// One entry of a PE image's section table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeSection {
    /// The name, without its NUL padding (`.linux`, `.cmdline`, …).
    pub name: String,
    /// Size in memory (`VirtualSize`).
    pub virtual_size: usize,
    /// Offset of the data in the file (`PointerToRawData`).
    pub raw_offset: usize,
    /// Size of the data in the file (`SizeOfRawData`, file-aligned).
    pub raw_size: usize,
}

impl PeSection {
    /// The section as loaded into memory: `VirtualSize` bytes, the file's data followed by zeros where
    /// `VirtualSize` is larger than `SizeOfRawData` (what systemd-stub measures from the loaded image).
    /// Fails when the data lies outside the image or the zero fill would be over [`MAX_ZERO_FILL`] bytes.
    pub fn loaded<'a>(&self, image: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>, TdxError> {
        let from_file = self.virtual_size.min(self.raw_size);
        if self.virtual_size.saturating_sub(from_file) > MAX_ZERO_FILL {
            return Err(TdxError::NotPe {
                field: "section VirtualSize",
            });
        }
        let end = self
            .raw_offset
            .checked_add(from_file)
            .ok_or(TdxError::Truncated {
                field: "section data",
            })?;
        let data = image.get(self.raw_offset..end).ok_or(TdxError::Truncated {
            field: "section data",
        })?;
        if from_file == self.virtual_size {
            return Ok(std::borrow::Cow::Borrowed(data));
        }
        let mut loaded = data.to_vec();
        loaded.resize(self.virtual_size, 0);
        Ok(std::borrow::Cow::Owned(loaded))
    }
}

fn section_table(image: &[u8], table: usize, count: usize) -> Result<Vec<PeSection>, TdxError> {
    let mut sections = Vec::with_capacity(count);
    for index in 0..count {
        let at = table.saturating_add(index.saturating_mul(40));
        let name = le::<8>(image, at, "section header")?;
        let field = |offset: usize| {
            le_u32(image, at.saturating_add(offset), "section header")
                .map(|v| to_usize(u64::from(v)))
        };
        sections.push(PeSection {
            name: String::from_utf8_lossy(&name)
                .trim_end_matches('\0')
                .to_owned(),
            virtual_size: field(8)?,
            raw_size: field(16)?,
            raw_offset: field(20)?,
        });
    }
    Ok(sections)
}

/// The section table of a PE image (a UKI's `.linux`, `.cmdline`, `.initrd`, … sections), in table order.
pub fn pe_sections(image: &[u8]) -> Result<Vec<PeSection>, TdxError> {
    let coff = coff_header(image)?;
    let count = usize::from(le_u16(image, coff.saturating_add(2), "COFF header")?);
    let optional_size = usize::from(le_u16(image, coff.saturating_add(16), "COFF header")?);
    if count > MAX_PE_SECTIONS {
        return Err(TdxError::NotPe {
            field: "section count",
        });
    }
    section_table(
        image,
        coff.saturating_add(20).saturating_add(optional_size),
        count,
    )
}

/// The RTMR0 digest of the configuration firmware volume (the `EV_EFI_PLATFORM_FIRMWARE_BLOB2` event TDVF logs
/// for its CFV): SHA-384 of the CFV section's raw data. `None` when the image has no CFV section.
pub fn cfv_digest(tdvf: &Tdvf<'_>) -> Result<Option<Sha384Digest>, TdxError> {
    let Some(cfv) = tdvf
        .sections
        .iter()
        .find(|s| s.section_type == TdvfSectionType::Cfv)
    else {
        return Ok(None);
    };
    let start = to_usize(u64::from(cfv.data_offset));
    let end = start.saturating_add(to_usize(u64::from(cfv.raw_data_size)));
    let data = tdvf.data.get(start..end).ok_or(TdxError::InvalidSection {
        index: 1,
        field: "CFV outside the image",
    })?;
    Ok(Some(HexBytes(Sha384::digest(data).into())))
}

/// SHA-384 Authenticode digest (the RTMR1 event digest of an EFI application).
pub fn authenticode_sha384(image: &[u8]) -> Result<Sha384Digest, TdxError> {
    let digest = authenticode_digest::<Sha384>(image)?;
    HexBytes::from_slice(&digest).ok_or(TdxError::Truncated { field: "digest" })
}

/// SHA-256 Authenticode digest (the PCR 4 event digest on a TPM's SHA-256 bank).
pub fn authenticode_sha256(image: &[u8]) -> Result<HexBytes<32>, TdxError> {
    let digest = authenticode_digest::<Sha256>(image)?;
    HexBytes::from_slice(&digest).ok_or(TdxError::Truncated { field: "digest" })
}

/// The digest of the kernel command line as measured for RTMR2: SHA-384 of its UTF-16LE encoding with a NUL.
pub fn cmdline_digest(cmdline: &str) -> [u8; 48] {
    let mut hasher = Sha384::new();
    for unit in cmdline.encode_utf16().chain(core::iter::once(0)) {
        hasher.update(unit.to_le_bytes());
    }
    hasher.finalize().into()
}

/// One predicted event: what it is, and the SHA-384 digest extended into the RTMR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PredictedEvent {
    /// What the event measures.
    pub label: String,
    /// The digest.
    pub digest: [u8; 48],
}

fn sha384(data: &[u8]) -> [u8; 48] {
    Sha384::digest(data).into()
}

/// RTMR1 events of a direct boot: the firmware's boot-option and exit-boot-services events around the
/// Authenticode digest of the EFI application it starts (the UKI, or the kernel).
pub fn rtmr1_events(application: &Sha384Digest) -> Vec<PredictedEvent> {
    vec![
        PredictedEvent {
            label: "EV_EFI_ACTION Calling EFI Application from Boot Option".into(),
            digest: sha384(b"Calling EFI Application from Boot Option"),
        },
        PredictedEvent {
            label: "EV_SEPARATOR".into(),
            digest: sha384(&[0u8; 4]),
        },
        PredictedEvent {
            label: "EV_EFI_BOOT_SERVICES_APPLICATION".into(),
            digest: application.0,
        },
        PredictedEvent {
            label: "EV_EFI_ACTION Exit Boot Services Invocation".into(),
            digest: sha384(b"Exit Boot Services Invocation"),
        },
        PredictedEvent {
            label: "EV_EFI_ACTION Exit Boot Services Returned with Success".into(),
            digest: sha384(b"Exit Boot Services Returned with Success"),
        },
    ]
}

/// RTMR2 events of a direct boot: the command line, then the initrd when there is one.
pub fn rtmr2_events(cmdline: &str, initrd: Option<&[u8]>) -> Vec<PredictedEvent> {
    let mut events = vec![PredictedEvent {
        label: "kernel command line (UTF-16LE)".into(),
        digest: cmdline_digest(cmdline),
    }];
    if let Some(initrd) = initrd {
        events.push(PredictedEvent {
            label: "initrd".into(),
            digest: sha384(initrd),
        });
    }
    events
}

/// Folds events into a register from zero.
pub fn replay(events: &[PredictedEvent]) -> Sha384Digest {
    HexBytes(events.iter().fold([0u8; 48], |register, event| {
        extend_sha384(&register, &event.digest)
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const TDVF: &[u8] = include_bytes!("../tests/vectors/tdvf-synthetic.fd");
    const TINY_PE: &[u8] = include_bytes!("../tests/vectors/tiny-pe.efi");

    #[test]
    fn mrtd_matches_the_pinned_vectors() {
        let tdvf = Tdvf::parse(TDVF).unwrap();
        assert_eq!(tdvf.sections().len(), 4);
        assert_eq!(tdvf.sections()[2].section_type, TdvfSectionType::TdHob);
        // tests/vectors/README.md: computed by make_vectors.py.
        assert_eq!(
            mrtd(&tdvf, PageAddOrder::PerPage).to_hex(),
            "56d632b16e55bd9cdd7a25f33d9eb9d2c20fff331de86336680ff6dc2ceb665803cd203614c795989f50d7773580ffa3"
        );
        assert_eq!(
            mrtd(&tdvf, PageAddOrder::PerSection).to_hex(),
            "bf6ed0adfe21b730765d8f436c3ed5bc1a535ea3c864304fe6febda3f13a8f134b88cad3258078e30f81c6ddb4781907"
        );
    }

    #[test]
    fn cfv_digest_is_pinned() {
        // tests/vectors/README.md: SHA-384 of bytes 0..0x2000 of the synthetic image (its CFV section).
        let cfv = cfv_digest(&Tdvf::parse(TDVF).unwrap()).unwrap().unwrap();
        assert_eq!(
            cfv.to_hex(),
            "0717a90d9e732d4d975774764eed4e3987411f351ba7aa7f171405b78f93c4625691786bad4d635743be7b35ab6d3038"
        );
    }

    #[test]
    fn mrtd_changes_with_a_measured_byte_only() {
        let base = mrtd(&Tdvf::parse(TDVF).unwrap(), PageAddOrder::PerPage);
        let mut measured = TDVF.to_vec();
        measured[0x2000 + 5] ^= 1; // in the BFV (MR.EXTEND)
        assert_ne!(
            mrtd(&Tdvf::parse(&measured).unwrap(), PageAddOrder::PerPage),
            base
        );
        let mut unmeasured = TDVF.to_vec();
        unmeasured[5] ^= 1; // in the CFV (added, not extended)
        assert_eq!(
            mrtd(&Tdvf::parse(&unmeasured).unwrap(), PageAddOrder::PerPage),
            base
        );
    }

    #[test]
    fn malformed_tdvf_fails_with_its_own_error() {
        assert!(matches!(
            Tdvf::parse(&[0u8; 10]),
            Err(TdxError::FirmwareSize { len: 10 })
        ));
        assert!(matches!(
            Tdvf::parse(&[0u8; 4096]),
            Err(TdxError::NoMetadata)
        ));
        let desc = 3 * 4096 + 0x100;
        let mut bad_version = TDVF.to_vec();
        bad_version[desc + 8] = 2;
        assert!(matches!(
            Tdvf::parse(&bad_version),
            Err(TdxError::UnsupportedDescriptor { field: "version" })
        ));
        let mut bad_count = TDVF.to_vec();
        bad_count[desc + 12..desc + 16].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(
            Tdvf::parse(&bad_count),
            Err(TdxError::UnsupportedDescriptor {
                field: "section count"
            })
        ));
        let mut bad_type = TDVF.to_vec();
        bad_type[desc + 16 + 24] = 9;
        assert!(matches!(
            Tdvf::parse(&bad_type),
            Err(TdxError::UnknownSectionType {
                index: 0,
                section_type: 9
            })
        ));
        let mut misaligned = TDVF.to_vec();
        misaligned[desc + 16 + 8] = 0x10;
        assert!(matches!(
            Tdvf::parse(&misaligned),
            Err(TdxError::InvalidSection { index: 0, .. })
        ));
        let mut huge = TDVF.to_vec();
        huge[desc + 16 + 16..desc + 16 + 24].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(matches!(
            Tdvf::parse(&huge),
            Err(TdxError::InvalidSection {
                field: "memory size over 4 GiB",
                ..
            })
        ));
        let mut outside = TDVF.to_vec();
        outside[desc + 16..desc + 20].copy_from_slice(&0x3000u32.to_le_bytes());
        assert!(matches!(
            Tdvf::parse(&outside),
            Err(TdxError::InvalidSection {
                field: "data outside the image",
                ..
            })
        ));
        let mut truncated = TDVF.to_vec();
        truncated[desc + 12..desc + 16].copy_from_slice(&63u32.to_le_bytes());
        assert!(Tdvf::parse(&truncated).is_err());
    }

    #[test]
    fn authenticode_matches_signify() {
        // tests/vectors/README.md: digests from signify 0.9.3.
        assert_eq!(
            authenticode_sha384(TINY_PE).unwrap().to_hex(),
            "b0fc1841880be82abc03d13a88bc68ade1f15efd485b272cff5937c7338fba0e59e565cb5445390d07b9116f4dedac40"
        );
        assert_eq!(
            authenticode_sha256(TINY_PE).unwrap().to_hex(),
            "71fd180e53ec2a6eadffffc9a719cccf3d482565c1e81548639a79b392f2a154"
        );
    }

    #[test]
    fn authenticode_ignores_checksum_and_signature_but_not_code() {
        let base = authenticode_sha384(TINY_PE).unwrap();
        let checksum_at = 0x40 + 4 + 20 + 64;
        let mut checksum = TINY_PE.to_vec();
        checksum[checksum_at] ^= 0xff;
        assert_eq!(authenticode_sha384(&checksum).unwrap(), base);
        let mut signature = TINY_PE.to_vec();
        let last = signature.len() - 1;
        signature[last] ^= 0xff;
        assert_eq!(authenticode_sha384(&signature).unwrap(), base);
        let mut code = TINY_PE.to_vec();
        code[0x200 + 3] ^= 1;
        assert_ne!(authenticode_sha384(&code).unwrap(), base);
    }

    #[test]
    fn malformed_pe_fails_with_its_own_error() {
        assert!(matches!(
            authenticode_sha384(b"NOPE"),
            Err(TdxError::NotPe {
                field: "MZ signature"
            })
        ));
        let mut no_pe = TINY_PE.to_vec();
        no_pe[0x40] = b'X';
        assert!(matches!(
            authenticode_sha384(&no_pe),
            Err(TdxError::NotPe {
                field: "PE signature"
            })
        ));
        let mut magic = TINY_PE.to_vec();
        magic[0x40 + 24] = 0;
        assert!(matches!(
            authenticode_sha384(&magic),
            Err(TdxError::NotPe {
                field: "optional header magic"
            })
        ));
        for cut in [0x30, 0x50, 0x150, 0x300] {
            assert!(authenticode_sha384(&TINY_PE[..cut]).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn rtmr_predictions_are_pinned() {
        // extend over the five RTMR1 events with an all-0x11 application digest, and the RTMR2 pair; pinned with
        // Python hashlib (UTF-16LE command line with NUL).
        let rtmr1 = replay(&rtmr1_events(&HexBytes([0x11; 48])));
        let rtmr2 = replay(&rtmr2_events("console=ttyS0", Some(b"initrd")));
        assert_eq!(rtmr1.to_hex(), RTMR1_PINNED);
        assert_eq!(rtmr2.to_hex(), RTMR2_PINNED);
        assert_ne!(replay(&rtmr2_events("console=ttyS0", None)), rtmr2);
        assert_ne!(
            replay(&rtmr2_events("console=ttyS1", Some(b"initrd"))),
            rtmr2
        );
    }

    const RTMR1_PINNED: &str = "338f57774c7aab0626d956c85dc783ec4b46f05f08133f8e68d8e73a8e86ed951d1c09b020c73b04ccc61710830b2dfa";
    const RTMR2_PINNED: &str = "65c7075860c3437a49c2c220f481410ef5b090b9bae9d7ccf557334ceab1ad5355da0e67670b21d01d2dd4146a156a23";
}
