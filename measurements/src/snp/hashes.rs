//! The SEV kernel-hashes table QEMU writes into the guest: SHA-256 of kernel, initrd and command line.

use super::*;

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
