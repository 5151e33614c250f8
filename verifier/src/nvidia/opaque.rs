//! NVIDIA opaque data in the SPDM MEASUREMENTS response: a list of (type u16 LE, length u16 LE, value).
//! Type numbers as NVIDIA's verifiers decode them; unknown types are kept raw, never rejected.

use crate::wire::{ParseError, Reader};

/// The most entries accepted.
pub const MAX_ENTRIES: usize = 64;

/// Driver version string (NUL-terminated ASCII).
pub const TYPE_DRIVER_VERSION: u16 = 3;
/// GPU info.
pub const TYPE_GPU_INFO: u16 = 4;
/// VBIOS version (8 bytes, little-endian packed).
pub const TYPE_VBIOS_VERSION: u16 = 6;
/// NVDEC0 status (0x55 / 0xAA).
pub const TYPE_NVDEC0_STATUS: u16 = 11;
/// Measurement counts (u32 LE per index).
pub const TYPE_MSRSCNT: u16 = 12;
/// CPR info.
pub const TYPE_CPR_INFO: u16 = 13;
/// Board id.
pub const TYPE_BOARD_ID: u16 = 14;
/// Chip SKU (NUL-terminated ASCII).
pub const TYPE_CHIP_SKU: u16 = 15;
/// Chip SKU modifier.
pub const TYPE_CHIP_SKU_MOD: u16 = 16;
/// Project (NUL-terminated ASCII).
pub const TYPE_PROJECT: u16 = 17;
/// Project SKU (NUL-terminated ASCII).
pub const TYPE_PROJECT_SKU: u16 = 18;
/// Project SKU modifier.
pub const TYPE_PROJECT_SKU_MOD: u16 = 19;
/// Firmware id: SHA-384 that the attestation certificate's FWID extension also carries.
pub const TYPE_FWID: u16 = 20;
/// Protected PCIe status.
pub const TYPE_PROTECTED_PCIE_STATUS: u16 = 21;

/// One opaque-data entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpaqueEntry<'a> {
    /// DataType.
    pub kind: u16,
    /// Data.
    pub value: &'a [u8],
}

/// Parsed opaque data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpaqueData<'a> {
    /// All entries in wire order.
    pub entries: Vec<OpaqueEntry<'a>>,
}

impl<'a> OpaqueData<'a> {
    /// The value of the first entry of `kind`.
    pub fn get(&self, kind: u16) -> Option<&'a [u8]> {
        self.entries
            .iter()
            .find(|e| e.kind == kind)
            .map(|e| e.value)
    }

    /// Driver version, e.g. `550.90.07`.
    pub fn driver_version(&self) -> Option<String> {
        self.get(TYPE_DRIVER_VERSION).map(c_string)
    }

    /// VBIOS version as NVIDIA prints it, e.g. `96.00.9F.00.01`.
    pub fn vbios_version(&self) -> Option<String> {
        let v: &[u8; 8] = self.get(TYPE_VBIOS_VERSION)?.try_into().ok()?;
        let [b0, b1, b2, b3, b4, ..] = *v;
        Some(format!("{b3:02X}.{b2:02X}.{b1:02X}.{b0:02X}.{b4:02X}"))
    }

    /// Firmware id (48 bytes), when present.
    pub fn fwid(&self) -> Option<&'a [u8]> {
        self.get(TYPE_FWID)
    }

    /// Project, e.g. `1010`.
    pub fn project(&self) -> Option<String> {
        self.get(TYPE_PROJECT).map(c_string)
    }

    /// Project SKU, e.g. `0200`.
    pub fn project_sku(&self) -> Option<String> {
        self.get(TYPE_PROJECT_SKU).map(c_string)
    }

    /// Chip SKU, e.g. `882`.
    pub fn chip_sku(&self) -> Option<String> {
        self.get(TYPE_CHIP_SKU).map(c_string)
    }
}

fn c_string(v: &[u8]) -> String {
    let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
    String::from_utf8_lossy(v.get(..end).unwrap_or_default()).into_owned()
}

/// Parses the opaque data; every byte must belong to an entry.
pub fn parse(bytes: &[u8]) -> Result<OpaqueData<'_>, ParseError> {
    let mut r = Reader::new(bytes);
    let mut entries = Vec::new();
    while r.remaining() > 0 {
        if entries.len() >= MAX_ENTRIES {
            return Err(ParseError::TooLong {
                field: "opaque.entries",
                len: entries.len(),
                max: MAX_ENTRIES,
            });
        }
        let kind = r.u16_le("opaque.data_type")?;
        let len = usize::from(r.u16_le("opaque.data_size")?);
        let value = r.take("opaque.data", len)?;
        entries.push(OpaqueEntry { kind, value });
    }
    r.finish("opaque")?;
    Ok(OpaqueData { entries })
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn vbios_version_is_formatted_like_nvidia() {
        let bytes = [6, 0, 8, 0, 0x00, 0x9f, 0x00, 0x96, 0x01, 0, 0, 0];
        let o = parse(&bytes).expect("parse");
        assert_eq!(o.vbios_version().as_deref(), Some("96.00.9F.00.01"));
    }

    #[test]
    fn truncated_entry_is_rejected() {
        assert!(matches!(
            parse(&[3, 0, 5, 0, b'a']),
            Err(ParseError::Truncated {
                field: "opaque.data",
                ..
            })
        ));
    }
}
