//! A minimal synthetic OVMF image (footer table and SEV metadata only), for tests and for comparing with other
//! implementations without an edk2 build; the section layout of the AmdSev build.

use super::*;

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
