//! The SEV-SNP certificate table (configfs-tsm `auxblob`) built from the real certificates of the evidence set
//! (`verifier/testdata/evidence`, see the `dait-testdata` crate): it parses to the exact DER bytes, its chain
//! verifies the real report, and every structural fault is refused with its own variant.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    missing_docs
)]

use dait_testdata::read;
use dait_verifier::UnixTime;
use dait_verifier::snp::cert_table::{self, CertKind, CertTable, CertTableError, ENTRY_LEN};
use dait_verifier::snp::{
    SigningKey, SnpPolicy, SnpProduct, SnpReport, decode_report_file, verify_report_with_amd_certs,
};
use dait_verifier::wire::ParseError;
use dait_verifier::x509::pem_to_der;

/// The virtee/sev Milan sample: report, VCEK (DER), and AMD's Milan ASK and ARK (PEM in the set, DER here).
struct Milan {
    report: Vec<u8>,
    vcek: Vec<u8>,
    ask: Vec<u8>,
    ark: Vec<u8>,
}

fn milan() -> Milan {
    let one = |name: &str| {
        let mut ders = pem_to_der(&read(name)).unwrap();
        assert_eq!(ders.len(), 1, "{name}");
        ders.pop().unwrap()
    };
    Milan {
        report: decode_report_file(&read("snp/virtee__milan_report.hex")),
        vcek: read("snp/virtee__milan_vcek.der"),
        ask: one("snp/amd_milan_ask.pem"),
        ark: one("snp/amd_milan_ark.pem"),
    }
}

/// The table a host would load: VCEK, ASK, ARK, then zero padding to a whole page.
fn auxblob(m: &Milan) -> Vec<u8> {
    let mut t = cert_table::encode(&[
        (CertKind::Vcek.guid(), &m.vcek),
        (CertKind::Ask.guid(), &m.ask),
        (CertKind::Ark.guid(), &m.ark),
    ])
    .unwrap();
    t.resize(t.len().next_multiple_of(4096), 0);
    t
}

#[test]
fn real_certificates_parse_to_their_der_bytes() {
    let m = milan();
    let blob = auxblob(&m);
    let table = CertTable::parse(&blob).unwrap();
    let kinds: Vec<CertKind> = table.entries().iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [CertKind::Vcek, CertKind::Ask, CertKind::Ark]);
    assert_eq!(table.get(CertKind::Vcek), Some(&m.vcek[..]));
    assert_eq!(table.get(CertKind::Ask), Some(&m.ask[..]));
    assert_eq!(table.get(CertKind::Ark), Some(&m.ark[..]));
    assert_eq!(table.get(CertKind::Vlek), None);
    assert_eq!(table.entries()[0].offset, 4 * ENTRY_LEN);
}

/// The chain taken from the table is the one the verifier reads (VEK, ASK, ARK) and verifies the real report.
#[test]
fn bundle_chain_verifies_the_real_report() {
    let m = milan();
    let blob = auxblob(&m);
    let key = SnpReport::parse(&m.report).unwrap().signing_key().unwrap();
    assert_eq!(key, SigningKey::Vcek);
    let chain = CertTable::parse(&blob).unwrap().bundle_chain(key).unwrap();
    assert_eq!(chain, [&m.vcek[..], &m.ask[..], &m.ark[..]]);
    let v = verify_report_with_amd_certs(
        &m.report,
        chain[0],
        Some(chain[1]),
        Some(chain[2]),
        &SnpPolicy::default(),
        UnixTime::parse_rfc3339("2025-01-01T00:00:00Z").unwrap(),
    )
    .unwrap();
    assert_eq!(v.product(), SnpProduct::Milan);
}

/// Cut at every field boundary of every entry (and inside the certificates): always refused, with the
/// variant that names what is missing.
#[test]
fn truncation_at_every_boundary_is_refused() {
    let m = milan();
    let blob = auxblob(&m);
    let header = 4 * ENTRY_LEN;
    for entry in 0..4 {
        let base = entry * ENTRY_LEN;
        assert_eq!(
            CertTable::parse(&blob[..base]),
            Err(CertTableError::MissingTerminator),
            "cut before entry {entry}"
        );
        for (cut, field, need) in [
            (base + 8, "cert_table.entry.guid", 16),
            (base + 16, "cert_table.entry.offset", 4),
            (base + 18, "cert_table.entry.offset", 4),
            (base + 20, "cert_table.entry.length", 4),
            (base + 23, "cert_table.entry.length", 4),
        ] {
            let err = CertTable::parse(&blob[..cut]).unwrap_err();
            assert!(
                matches!(err, CertTableError::Malformed(ParseError::Truncated { field: f, need: n, .. }) if f == field && n == need),
                "cut at {cut}: {err:?}"
            );
        }
    }
    // Cut inside the certificate data: the entry whose bytes are cut points past the end.
    for (cut, kind) in [
        (header, CertKind::Vcek),
        (header + m.vcek.len() - 1, CertKind::Vcek),
        (header + m.vcek.len() + 1, CertKind::Ask),
        (
            header + m.vcek.len() + m.ask.len() + m.ark.len() - 1,
            CertKind::Ark,
        ),
    ] {
        let err = CertTable::parse(&blob[..cut]).unwrap_err();
        assert!(
            matches!(err, CertTableError::EntryOutOfBounds { kind: k, table_len, .. } if k == kind && table_len == cut),
            "cut at {cut}: {err:?}"
        );
    }
    // Exactly up to the end of the last certificate: complete.
    let end = header + m.vcek.len() + m.ask.len() + m.ark.len();
    assert_eq!(CertTable::parse(&blob[..end]).unwrap().entries().len(), 3);
}

#[test]
fn unknown_guid_is_refused() {
    let m = milan();
    // go-sev-guest's ExtraPlatformInfo GUID: real software writes it, the table format does not define it.
    let extra = [
        0xec, 0xae, 0x0c, 0x0f, 0x95, 0x02, 0x43, 0xb1, 0xaf, 0xa2, 0x0a, 0xe2, 0xe0, 0xd5, 0x65,
        0xb6,
    ];
    let t = cert_table::encode(&[(CertKind::Vcek.guid(), &m.vcek), (extra, b"extra")]).unwrap();
    assert_eq!(
        CertTable::parse(&t),
        Err(CertTableError::UnknownGuid(extra))
    );
    // The VCEK GUID in mixed-endian (Microsoft GUID) byte order is not the VCEK GUID.
    let mut mixed = CertKind::Vcek.guid();
    mixed[..4].reverse();
    mixed[4..6].reverse();
    mixed[6..8].reverse();
    let t = cert_table::encode(&[(mixed, &m.vcek)]).unwrap();
    assert_eq!(
        CertTable::parse(&t),
        Err(CertTableError::UnknownGuid(mixed))
    );
}

#[test]
fn missing_terminator_is_refused() {
    let m = milan();
    let blob = auxblob(&m);
    // The three entries with no terminator and nothing after them.
    assert_eq!(
        CertTable::parse(&blob[..3 * ENTRY_LEN]),
        Err(CertTableError::MissingTerminator)
    );
    // The terminator overwritten by another entry: parsing runs into the certificates' bytes.
    let mut t = blob.clone();
    t[3 * ENTRY_LEN..4 * ENTRY_LEN].copy_from_slice(&blob[..ENTRY_LEN]);
    assert_eq!(
        CertTable::parse(&t),
        Err(CertTableError::DuplicateEntry(CertKind::Vcek))
    );
}

#[test]
fn entry_past_the_end_is_refused() {
    let m = milan();
    let mut blob = auxblob(&m);
    let len = blob.len();
    // The ARK's length made to run one byte past the end of the page.
    let ark_offset = u32::from_le_bytes(
        blob[2 * ENTRY_LEN + 16..2 * ENTRY_LEN + 20]
            .try_into()
            .unwrap(),
    );
    let too_long = u32::try_from(len).unwrap() - ark_offset + 1;
    blob[2 * ENTRY_LEN + 20..2 * ENTRY_LEN + 24].copy_from_slice(&too_long.to_le_bytes());
    assert!(matches!(
        CertTable::parse(&blob),
        Err(CertTableError::EntryOutOfBounds { kind: CertKind::Ark, table_len, .. }) if table_len == len
    ));
    // An ASK entry that reaches into the ARK.
    let mut blob = auxblob(&m);
    let ask_len = u32::try_from(m.ask.len() + 1).unwrap();
    blob[ENTRY_LEN + 20..ENTRY_LEN + 24].copy_from_slice(&ask_len.to_le_bytes());
    assert_eq!(
        CertTable::parse(&blob),
        Err(CertTableError::Overlap {
            first: CertKind::Ask,
            second: CertKind::Ark
        })
    );
}

/// Parsing arbitrary prefixes and single-byte changes of a real table never panics.
#[test]
fn every_prefix_and_bit_flip_is_handled() {
    let m = milan();
    let blob = auxblob(&m);
    for cut in 0..blob.len().min(6000) {
        let _ = CertTable::parse(&blob[..cut]);
    }
    for i in 0..4 * ENTRY_LEN {
        let mut t = blob.clone();
        t[i] ^= 0x80;
        let _ = CertTable::parse(&t);
    }
}
