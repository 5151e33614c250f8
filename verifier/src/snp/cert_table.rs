//! The SEV-SNP certificate table: the certificates a host hands its guest with an extended attestation
//! report (GHCB specification, "SNP Extended Guest Request", MSG_REPORT_REQ certificate data; what Linux's
//! configfs-tsm returns as `auxblob` for an SEV-SNP report).
//!
//! Layout: a sequence of 24-byte entries `{ guid: [u8; 16], offset: u32 LE, length: u32 LE }` ended by an
//! all-zero entry; `offset` counts from the first byte of the table; each entry's bytes are one DER
//! certificate (or CRL). The GUID bytes are in the order of their string form (RFC 4122 big-endian, as
//! virtee/sev `Uuid::as_bytes` and go-sev-guest `uuid.UUID` lay them out): the VCEK GUID
//! `63da758d-e664-4564-adc5-f4b93be8accd` is the bytes `63 da 75 8d e6 64 45 64 ad c5 f4 b9 3b e8 ac cd`.
//! The host sizes the buffer in pages, so zero bytes (or anything not referenced) may follow the last
//! certificate; they are ignored.
//!
//! [`CertTable::parse`] is pure and does no X.509 parsing: it checks the structure (every entry inside the
//! table and after its terminator, no two entries overlapping, each kind at most once, the total length
//! capped) and rejects a GUID it does not know ([`CertKind`]), so a table with surprises never reaches the
//! evidence bundle. The certificates themselves are checked where the chain is verified ([`super::verify_chain`]).

use super::SigningKey;
use crate::wire::{ParseError, Reader};

/// Size of one table entry: GUID (16), offset (4), length (4).
pub const ENTRY_LEN: usize = 24;

/// The longest table accepted (64 KiB). Linux gives the host 16 KiB (`SEV_FW_BLOB_MAX_SIZE`) for the
/// certificate data; this leaves room for larger hosts while bounding what is read.
pub const MAX_TABLE_LEN: usize = 0x1_0000;

/// What an entry holds, named by its GUID (GHCB specification, MSG_REPORT_REQ certificate table; the same
/// values as virtee/sev `CertType` and go-sev-guest `abi`). Listed alphabetically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertKind {
    /// AMD Root Key: `c0b406a4-a803-4952-9743-3fb6014cd0ae`.
    Ark,
    /// AMD SEV Key, or the ASVK that signs a VLEK (the table uses the one GUID for both):
    /// `4ab7b379-bbac-4fe4-a02f-05aef327c782`.
    Ask,
    /// AMD's certificate revocation list: `92f81bc3-5811-4d3d-97ff-d19f88dc67ea`.
    Crl,
    /// Versioned Chip Endorsement Key: `63da758d-e664-4564-adc5-f4b93be8accd`.
    Vcek,
    /// Versioned Loaded Endorsement Key: `a8074bc2-a25a-483e-aae6-39c045a0b8a1`.
    Vlek,
}

impl CertKind {
    /// Every kind, alphabetically.
    pub const ALL: [CertKind; 5] = [Self::Ark, Self::Ask, Self::Crl, Self::Vcek, Self::Vlek];

    /// The GUID bytes as they appear in a table entry.
    pub const fn guid(self) -> [u8; 16] {
        match self {
            Self::Ark => [
                0xc0, 0xb4, 0x06, 0xa4, 0xa8, 0x03, 0x49, 0x52, 0x97, 0x43, 0x3f, 0xb6, 0x01, 0x4c,
                0xd0, 0xae,
            ],
            Self::Ask => [
                0x4a, 0xb7, 0xb3, 0x79, 0xbb, 0xac, 0x4f, 0xe4, 0xa0, 0x2f, 0x05, 0xae, 0xf3, 0x27,
                0xc7, 0x82,
            ],
            Self::Crl => [
                0x92, 0xf8, 0x1b, 0xc3, 0x58, 0x11, 0x4d, 0x3d, 0x97, 0xff, 0xd1, 0x9f, 0x88, 0xdc,
                0x67, 0xea,
            ],
            Self::Vcek => [
                0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8,
                0xac, 0xcd,
            ],
            Self::Vlek => [
                0xa8, 0x07, 0x4b, 0xc2, 0xa2, 0x5a, 0x48, 0x3e, 0xaa, 0xe6, 0x39, 0xc0, 0x45, 0xa0,
                0xb8, 0xa1,
            ],
        }
    }

    /// The kind a GUID names, if it is one of [`CertKind::ALL`].
    pub fn from_guid(guid: &[u8; 16]) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.guid() == *guid)
    }
}

/// One entry: its kind and the bytes it points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertEntry<'a> {
    /// What the entry holds.
    pub kind: CertKind,
    /// Offset of `bytes` from the start of the table.
    pub offset: usize,
    /// The certificate (or CRL), DER.
    pub bytes: &'a [u8],
}

/// A parsed certificate table borrowing from its bytes; entries in table order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertTable<'a> {
    entries: Vec<CertEntry<'a>>,
}

/// Why a certificate table was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertTableError {
    /// Two entries name the same kind.
    #[error("the certificate table has two {0:?} entries")]
    DuplicateEntry(CertKind),
    /// An entry has length zero.
    #[error("the {0:?} entry of the certificate table is empty")]
    EmptyEntry(CertKind),
    /// An entry points outside the table, or into the entries themselves.
    #[error(
        "the {kind:?} entry ({offset}+{len}) lies outside the certificate data {data_start}..{table_len}"
    )]
    EntryOutOfBounds {
        /// The entry's kind.
        kind: CertKind,
        /// Its offset.
        offset: u32,
        /// Its length.
        len: u32,
        /// Where the certificate data may start (after the terminator).
        data_start: usize,
        /// The table's length.
        table_len: usize,
    },
    /// The entries are not all present or one is cut (`Truncated` names the field).
    #[error("malformed certificate table")]
    Malformed(#[from] ParseError),
    /// The input ended on an entry boundary without the all-zero entry that ends the table.
    #[error("the certificate table has no terminating all-zero entry")]
    MissingTerminator,
    /// Two entries share bytes.
    #[error("the {first:?} and {second:?} entries of the certificate table overlap")]
    Overlap {
        /// The entry that comes first in the data.
        first: CertKind,
        /// The entry that overlaps it.
        second: CertKind,
    },
    /// The table is longer than [`MAX_TABLE_LEN`].
    #[error("certificate table of {len} bytes is above the limit {max}")]
    TooLong {
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// An entry's GUID is none of [`CertKind::ALL`] (the terminator's GUID and offset and length are all zero).
    #[error("unknown GUID {} in the certificate table", hex::encode(.0))]
    UnknownGuid([u8; 16]),
}

impl<'a> CertTable<'a> {
    /// Parses a table. No X.509 parsing and no crypto; see the module documentation for what is checked.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, CertTableError> {
        if bytes.len() > MAX_TABLE_LEN {
            return Err(CertTableError::TooLong {
                len: bytes.len(),
                max: MAX_TABLE_LEN,
            });
        }
        let mut r = Reader::new(bytes);
        let mut raw: Vec<(CertKind, u32, u32)> = Vec::new();
        loop {
            if r.remaining() == 0 {
                return Err(CertTableError::MissingTerminator);
            }
            let guid = r.take_array::<16>("cert_table.entry.guid")?;
            let offset = r.u32_le("cert_table.entry.offset")?;
            let len = r.u32_le("cert_table.entry.length")?;
            if guid.iter().all(|b| *b == 0) && offset == 0 && len == 0 {
                break;
            }
            let kind = CertKind::from_guid(guid).ok_or(CertTableError::UnknownGuid(*guid))?;
            if raw.iter().any(|(k, _, _)| *k == kind) {
                return Err(CertTableError::DuplicateEntry(kind));
            }
            raw.push((kind, offset, len));
        }
        let data_start = r.offset();
        let mut entries = Vec::with_capacity(raw.len());
        for (kind, offset, len) in raw {
            let out_of_bounds = CertTableError::EntryOutOfBounds {
                kind,
                offset,
                len,
                data_start,
                table_len: bytes.len(),
            };
            if len == 0 {
                return Err(CertTableError::EmptyEntry(kind));
            }
            let start = usize::try_from(offset).map_err(|_| out_of_bounds.clone())?;
            let end = usize::try_from(len)
                .ok()
                .and_then(|l| start.checked_add(l))
                .ok_or_else(|| out_of_bounds.clone())?;
            if start < data_start {
                return Err(out_of_bounds);
            }
            let cert = bytes.get(start..end).ok_or(out_of_bounds)?;
            entries.push(CertEntry {
                kind,
                offset: start,
                bytes: cert,
            });
        }
        let mut by_offset: Vec<&CertEntry<'_>> = entries.iter().collect();
        by_offset.sort_by_key(|e| e.offset);
        for pair in by_offset.windows(2) {
            if let [a, b] = pair
                && a.offset.saturating_add(a.bytes.len()) > b.offset
            {
                return Err(CertTableError::Overlap {
                    first: a.kind,
                    second: b.kind,
                });
            }
        }
        Ok(Self { entries })
    }

    /// The entries, in table order.
    pub fn entries(&self) -> &[CertEntry<'a>] {
        &self.entries
    }

    /// The bytes of the `kind` entry, if the table has one.
    pub fn get(&self, kind: CertKind) -> Option<&'a [u8]> {
        self.entries
            .iter()
            .find(|e| e.kind == kind)
            .map(|e| e.bytes)
    }

    /// True when the table has no entry (only its terminator).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The certificates for an evidence bundle's `cert_chain` (PROTOCOL.md §8 `SnpEvidence`), in the order
    /// the verifier reads them: the endorsement key that signed the report (VCEK or VLEK, by `key`), then ASK
    /// (or ASVK) and ARK when the table has both; with only one of them, neither is included and the
    /// verifier takes AMD's pinned pair. `None` when the table has no certificate for `key` (or `key` is
    /// [`SigningKey::None`]).
    pub fn bundle_chain(&self, key: SigningKey) -> Option<Vec<&'a [u8]>> {
        let vek = match key {
            SigningKey::Vcek => self.get(CertKind::Vcek)?,
            SigningKey::Vlek => self.get(CertKind::Vlek)?,
            SigningKey::None => return None,
        };
        let mut chain = vec![vek];
        if let (Some(ask), Some(ark)) = (self.get(CertKind::Ask), self.get(CertKind::Ark)) {
            chain.push(ask);
            chain.push(ark);
        }
        Some(chain)
    }
}

/// Builds a table from `(GUID, bytes)` pairs in the layout [`CertTable::parse`] reads (entries, the
/// all-zero terminator, then the certificates back to back). For tests and emulated hosts; `None` if a
/// length does not fit in a `u32`.
pub fn encode(entries: &[([u8; 16], &[u8])]) -> Option<Vec<u8>> {
    let header = entries.len().checked_add(1)?.checked_mul(ENTRY_LEN)?;
    let mut table = Vec::new();
    let mut data = Vec::new();
    for (guid, cert) in entries {
        let offset = u32::try_from(header.checked_add(data.len())?).ok()?;
        table.extend_from_slice(guid);
        table.extend_from_slice(&offset.to_le_bytes());
        table.extend_from_slice(&u32::try_from(cert.len()).ok()?.to_le_bytes());
        data.extend_from_slice(cert);
    }
    table.extend_from_slice(&[0u8; ENTRY_LEN]);
    table.extend_from_slice(&data);
    Some(table)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn guids_match_their_strings(kind: CertKind, s: &str) {
        let hex: String = s.chars().filter(|c| *c != '-').collect();
        assert_eq!(hex::decode(hex).unwrap(), kind.guid(), "{kind:?}");
    }

    #[test]
    fn guids_are_the_string_order_bytes() {
        guids_match_their_strings(CertKind::Ark, "c0b406a4-a803-4952-9743-3fb6014cd0ae");
        guids_match_their_strings(CertKind::Ask, "4ab7b379-bbac-4fe4-a02f-05aef327c782");
        guids_match_their_strings(CertKind::Crl, "92f81bc3-5811-4d3d-97ff-d19f88dc67ea");
        guids_match_their_strings(CertKind::Vcek, "63da758d-e664-4564-adc5-f4b93be8accd");
        guids_match_their_strings(CertKind::Vlek, "a8074bc2-a25a-483e-aae6-39c045a0b8a1");
        for k in CertKind::ALL {
            assert_eq!(CertKind::from_guid(&k.guid()), Some(k));
        }
    }

    #[test]
    fn small_table_round_trips_with_page_padding() {
        let mut t = encode(&[
            (CertKind::Vcek.guid(), b"vcek"),
            (CertKind::Ask.guid(), b"ask"),
            (CertKind::Ark.guid(), b"ark!"),
        ])
        .unwrap();
        t.resize(4096, 0);
        let p = CertTable::parse(&t).unwrap();
        assert_eq!(p.entries().len(), 3);
        assert_eq!(p.get(CertKind::Vcek), Some(&b"vcek"[..]));
        assert_eq!(
            p.bundle_chain(SigningKey::Vcek).unwrap(),
            vec![&b"vcek"[..], b"ask", b"ark!"]
        );
        assert_eq!(p.bundle_chain(SigningKey::Vlek), None);
        assert_eq!(p.bundle_chain(SigningKey::None), None);
    }

    #[test]
    fn lone_ask_is_left_to_the_verifier() {
        let t = encode(&[
            (CertKind::Vlek.guid(), b"vlek"),
            (CertKind::Ask.guid(), b"asvk"),
        ])
        .unwrap();
        let p = CertTable::parse(&t).unwrap();
        assert_eq!(
            p.bundle_chain(SigningKey::Vlek).unwrap(),
            vec![&b"vlek"[..]]
        );
    }

    #[test]
    fn zero_table_is_empty() {
        let p = CertTable::parse(&[0u8; 4096]).unwrap();
        assert!(p.is_empty());
        assert_eq!(p.bundle_chain(SigningKey::Vcek), None);
    }

    #[test]
    fn structural_errors_have_their_variants() {
        let entry = |guid: [u8; 16], off: u32, len: u32| {
            let mut e = guid.to_vec();
            e.extend_from_slice(&off.to_le_bytes());
            e.extend_from_slice(&len.to_le_bytes());
            e
        };
        let vcek = CertKind::Vcek.guid();
        let ask = CertKind::Ask.guid();
        // Overlap: both entries cover byte 72.
        let mut t = [entry(vcek, 72, 8), entry(ask, 76, 8), vec![0; 24]].concat();
        t.resize(96, 1);
        assert_eq!(
            CertTable::parse(&t),
            Err(CertTableError::Overlap {
                first: CertKind::Vcek,
                second: CertKind::Ask
            })
        );
        // Duplicate kind.
        let t = [entry(vcek, 72, 4), entry(vcek, 76, 4), vec![0; 32]].concat();
        assert_eq!(
            CertTable::parse(&t),
            Err(CertTableError::DuplicateEntry(CertKind::Vcek))
        );
        // Empty entry.
        let t = [entry(vcek, 48, 0), vec![0; 24]].concat();
        assert_eq!(
            CertTable::parse(&t),
            Err(CertTableError::EmptyEntry(CertKind::Vcek))
        );
        // Pointing into the entries.
        let t = [entry(vcek, 0, 4), vec![0; 24], vec![1; 8]].concat();
        assert!(matches!(
            CertTable::parse(&t),
            Err(CertTableError::EntryOutOfBounds { data_start: 48, .. })
        ));
        // Offset + length overflowing u32 and usize arithmetic stays an out-of-bounds error.
        let t = [entry(vcek, u32::MAX, u32::MAX), vec![0; 24]].concat();
        assert!(matches!(
            CertTable::parse(&t),
            Err(CertTableError::EntryOutOfBounds { .. })
        ));
        // A non-zero offset with a zero GUID is not a terminator: unknown GUID.
        let t = [entry([0; 16], 1, 0), vec![0; 24]].concat();
        assert_eq!(
            CertTable::parse(&t),
            Err(CertTableError::UnknownGuid([0; 16]))
        );
        // Too long.
        assert!(matches!(
            CertTable::parse(&vec![0u8; MAX_TABLE_LEN + 1]),
            Err(CertTableError::TooLong { .. })
        ));
        // Nothing at all.
        assert_eq!(
            CertTable::parse(&[]),
            Err(CertTableError::MissingTerminator)
        );
    }
}
