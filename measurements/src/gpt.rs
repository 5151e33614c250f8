//! The `EV_EFI_GPT_EVENT` the firmware measures (PCR 5; RTMR1 on TDX) when it boots from a GPT disk: the
//! `UEFI_GPT_DATA` structure of edk2's `Tcg2MeasureGptTable` (the 92-byte partition table header, the number of
//! partitions as a UINT64, then every partition entry whose type GUID is not zero, in table order).

use sha2::{Digest, Sha384};

/// Size of `EFI_PARTITION_TABLE_HEADER` as edk2 measures it.
pub const HEADER_SIZE: usize = 92;
/// Most partition entries accepted.
pub const MAX_ENTRIES: u32 = 1024;
/// Largest partition entry accepted.
pub const MAX_ENTRY_SIZE: u32 = 1024;

/// Why a disk's GPT could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GptError {
    /// No `EFI PART` header at LBA 1.
    #[error("no GPT header at LBA 1 (sector size {sector_size})")]
    NoHeader {
        /// The sector size assumed.
        sector_size: usize,
    },
    /// The entry count or size is out of range.
    #[error("GPT header: {field} out of range")]
    OutOfRange {
        /// Which field.
        field: &'static str,
    },
    /// The bytes end before the partition entries do.
    #[error("GPT truncated: {field}")]
    Truncated {
        /// Which structure.
        field: &'static str,
    },
}

fn le<const N: usize>(bytes: &[u8], at: usize, field: &'static str) -> Result<[u8; N], GptError> {
    bytes
        .get(at..at.saturating_add(N))
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or(GptError::Truncated { field })
}

/// The measured `UEFI_GPT_DATA` of a disk, from its first sectors (at least through the partition entries).
pub fn gpt_event_data(disk: &[u8], sector_size: usize) -> Result<Vec<u8>, GptError> {
    let header = disk
        .get(sector_size..sector_size.saturating_add(HEADER_SIZE))
        .filter(|h| h.starts_with(b"EFI PART"))
        .ok_or(GptError::NoHeader { sector_size })?;
    let entries_lba = u64::from_le_bytes(le::<8>(header, 72, "header")?);
    let count = u32::from_le_bytes(le::<4>(header, 80, "header")?);
    let entry_size = u32::from_le_bytes(le::<4>(header, 84, "header")?);
    if count > MAX_ENTRIES {
        return Err(GptError::OutOfRange {
            field: "NumberOfPartitionEntries",
        });
    }
    if !(128..=MAX_ENTRY_SIZE).contains(&entry_size) {
        return Err(GptError::OutOfRange {
            field: "SizeOfPartitionEntry",
        });
    }
    let entry_size = usize::try_from(entry_size).map_err(|_| GptError::OutOfRange {
        field: "SizeOfPartitionEntry",
    })?;
    let start = usize::try_from(entries_lba)
        .ok()
        .and_then(|lba| lba.checked_mul(sector_size))
        .ok_or(GptError::OutOfRange {
            field: "PartitionEntryLBA",
        })?;
    let mut used = Vec::new();
    for index in 0..usize::try_from(count).unwrap_or(0) {
        let at = start.saturating_add(index.saturating_mul(entry_size));
        let entry = disk
            .get(at..at.saturating_add(entry_size))
            .ok_or(GptError::Truncated {
                field: "partition entries",
            })?;
        if entry
            .get(..16)
            .is_some_and(|guid| guid.iter().any(|b| *b != 0))
        {
            used.push(entry);
        }
    }
    let mut data = header.to_vec();
    data.extend_from_slice(&u64::try_from(used.len()).unwrap_or(u64::MAX).to_le_bytes());
    for entry in used {
        data.extend_from_slice(entry);
    }
    Ok(data)
}

/// The SHA-384 digest of the GPT event (what RTMR1 is extended with).
pub fn gpt_event_digest(disk: &[u8], sector_size: usize) -> Result<[u8; 48], GptError> {
    gpt_event_data(disk, sector_size).map(|data| Sha384::digest(data).into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// A disk with a GPT of `count` 128-byte entries at LBA 2, the given ones used.
    fn disk(sector: usize, count: u32, used: &[usize]) -> Vec<u8> {
        let mut disk = vec![0u8; sector * 2 + count as usize * 128];
        let header = &mut disk[sector..sector + HEADER_SIZE];
        header[..8].copy_from_slice(b"EFI PART");
        header[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        header[12..16].copy_from_slice(&92u32.to_le_bytes());
        header[72..80].copy_from_slice(&2u64.to_le_bytes());
        header[80..84].copy_from_slice(&count.to_le_bytes());
        header[84..88].copy_from_slice(&128u32.to_le_bytes());
        for index in used {
            let at = sector * 2 + index * 128;
            disk[at..at + 16].copy_from_slice(&[*index as u8 + 1; 16]);
            disk[at + 56] = b'p';
        }
        disk
    }

    #[test]
    fn event_data_is_the_header_the_count_and_the_used_entries() {
        let bytes = disk(512, 128, &[0, 3]);
        let data = gpt_event_data(&bytes, 512).unwrap();
        assert_eq!(data.len(), HEADER_SIZE + 8 + 2 * 128);
        assert_eq!(&data[..HEADER_SIZE], &bytes[512..512 + HEADER_SIZE]);
        assert_eq!(u64::from_le_bytes(data[92..100].try_into().unwrap()), 2);
        assert_eq!(&data[100..228], &bytes[1024..1152]);
        assert_eq!(&data[228..], &bytes[1024 + 3 * 128..1024 + 4 * 128]);
        assert_eq!(
            gpt_event_digest(&bytes, 512).unwrap(),
            <[u8; 48]>::from(Sha384::digest(&data))
        );
        // 4096-byte sectors put the header and the entries elsewhere.
        let big = disk(4096, 4, &[1]);
        assert_eq!(
            gpt_event_data(&big, 4096).unwrap().len(),
            HEADER_SIZE + 8 + 128
        );
        assert_eq!(
            gpt_event_data(&big, 512).unwrap_err(),
            GptError::NoHeader { sector_size: 512 }
        );
    }

    #[test]
    fn malformed_tables_fail_with_their_own_error() {
        let good = disk(512, 128, &[0]);
        assert!(matches!(
            gpt_event_data(&good[..600], 512),
            Err(GptError::NoHeader { .. })
        ));
        assert_eq!(
            gpt_event_data(&good[..2000], 512).unwrap_err(),
            GptError::Truncated {
                field: "partition entries"
            }
        );
        let mut many = good.clone();
        many[512 + 80..512 + 84].copy_from_slice(&(MAX_ENTRIES + 1).to_le_bytes());
        assert_eq!(
            gpt_event_data(&many, 512).unwrap_err(),
            GptError::OutOfRange {
                field: "NumberOfPartitionEntries"
            }
        );
        let mut small = good.clone();
        small[512 + 84..512 + 88].copy_from_slice(&64u32.to_le_bytes());
        assert_eq!(
            gpt_event_data(&small, 512).unwrap_err(),
            GptError::OutOfRange {
                field: "SizeOfPartitionEntry"
            }
        );
        let mut far = good.clone();
        far[512 + 72..512 + 80].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(gpt_event_data(&far, 512).is_err());
    }
}
