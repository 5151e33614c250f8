//! TDX verification against the real evidence set (`verifier/testdata/evidence`, see the `dait-testdata` crate).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use dait_testdata::read;

use dait_verifier::UnixTime;
use dait_verifier::collateral::{PcsFiles, TdxCollateral};
use dait_verifier::tdx::{
    self, INTEL_SGX_ROOT_CA_DER, TcbStatus, TdBodyKind, TdxError, TdxPolicy, TdxQuote, TdxRegister,
    TdxShape, decode_quote_file, verify_quote,
};
use dait_verifier::wire::ParseError;

fn quote(rel: &str) -> Vec<u8> {
    decode_quote_file(&read(rel))
}

fn bundle(rel: &str) -> TdxCollateral {
    TdxCollateral::from_bundle_json(&read(rel)).unwrap()
}

fn at(s: &str) -> UnixTime {
    UnixTime::parse_rfc3339(s).unwrap()
}

/// Accepts any TCB status and advisory: for asserting what the collateral says, not judging it.
fn any_tcb() -> TdxPolicy {
    TdxPolicy {
        accepted_tcb_statuses: TcbStatus::ALL.to_vec(),
        allowed_advisories: ["INTEL-SA-00960", "INTEL-SA-00982", "INTEL-SA-00986"]
            .map(String::from)
            .to_vec(),
        ..TdxPolicy::default()
    }
}

const A4_QUOTE: &str = "tdx/dcap-qvl__v4_b0c06f_quote.bin";
const A4_BUNDLE: &str = "tdx/dcap-qvl__v4_b0c06f_collateral.json";
/// dcap-qvl's tests: min(nextUpdate) - 1 s.
const A4_NOW: u64 = 1_752_919_234;

fn manifest() -> serde_json::Value {
    serde_json::from_slice(&read("manifest.json")).unwrap()
}

fn hexf(v: &serde_json::Value, k: &str) -> Vec<u8> {
    hex::decode(v[k].as_str().unwrap_or_else(|| panic!("no field {k}"))).unwrap()
}

// ---- parsing: every quote of the set against the manifest's extracted fields ------------------------

#[test]
fn every_tdx_quote_parses_to_the_manifest_fields() {
    let m = manifest();
    let mut seen = 0;
    for s in m["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "tdx")
    {
        let id = s["id"].as_str().unwrap();
        let file = s["files"]["quote"].as_str().unwrap();
        let f = &s["extracted_fields"];
        let raw = quote(file);
        assert_eq!(
            raw.len() as u64,
            f["quote_length"].as_u64().unwrap(),
            "{id} length"
        );
        // The go-tdx-guest SPR quote carries a non-zero test suffix ("extra bytes(only for testing
        // purpose)"): the strict parser refuses it; parse the structure without it.
        let trailing = f["trailing_bytes_after_sigdata"].as_u64().unwrap() as usize;
        let q = match TdxQuote::parse(&raw) {
            Ok(q) => {
                assert_eq!(q.padding, trailing, "{id} padding");
                q
            }
            Err(ParseError::TrailingBytes { extra, .. }) => {
                assert_eq!(
                    id, "tdx-A1-go-tdx-guest-spr-e4-v4",
                    "only the A1 test suffix is non-zero"
                );
                assert_eq!(extra, trailing);
                TdxQuote::parse(&raw[..raw.len() - trailing]).unwrap()
            }
            Err(e) => panic!("{id}: {e:?}"),
        };
        assert_eq!(
            u64::from(q.header.version),
            f["version"].as_u64().unwrap(),
            "{id}"
        );
        let b = &q.body;
        assert_eq!(&b.tee_tcb_svn[..], &hexf(f, "tee_tcb_svn")[..], "{id}");
        assert_eq!(&b.mr_seam[..], &hexf(f, "mr_seam")[..], "{id}");
        assert_eq!(
            &b.mr_signer_seam[..],
            &hexf(f, "mr_signer_seam")[..],
            "{id}"
        );
        assert_eq!(&b.td_attributes[..], &hexf(f, "td_attributes")[..], "{id}");
        assert_eq!(
            b.is_debug(),
            f["td_attributes_debug_bit"].as_str() == Some("True"),
            "{id}"
        );
        assert_eq!(&b.xfam[..], &hexf(f, "xfam")[..], "{id}");
        assert_eq!(&b.mr_td[..], &hexf(f, "mr_td")[..], "{id}");
        assert_eq!(&b.mr_config_id[..], &hexf(f, "mr_config_id")[..], "{id}");
        assert_eq!(&b.mr_owner[..], &hexf(f, "mr_owner")[..], "{id}");
        assert_eq!(
            &b.mr_owner_config[..],
            &hexf(f, "mr_owner_config")[..],
            "{id}"
        );
        for i in 0..4 {
            assert_eq!(
                &b.rtmr[i][..],
                &hexf(f, &format!("rtmr{i}"))[..],
                "{id} rtmr{i}"
            );
        }
        assert_eq!(&b.report_data[..], &hexf(f, "report_data")[..], "{id}");
        if q.header.version == 5 {
            assert_eq!(
                u64::from(q.body_type.unwrap()),
                f["body_type"].as_u64().unwrap(),
                "{id}"
            );
            assert_eq!(b.kind, TdBodyKind::Td15);
            assert_eq!(
                &b.tee_tcb_svn2.unwrap()[..],
                &hexf(f, "tee_tcb_svn2")[..],
                "{id}"
            );
            assert_eq!(
                &b.mr_service_td.unwrap()[..],
                &hexf(f, "mr_servicetd")[..],
                "{id}"
            );
        }
        let pem = q.pck_chain_pem();
        assert!(
            pem.starts_with(b"-----BEGIN CERTIFICATE-----") && pem.ends_with(b"-----\n"),
            "{id}"
        );
        seen += 1;
    }
    assert_eq!(seen, 10, "every TDX sample of the manifest was checked");
}

#[test]
fn pinned_root_equals_the_evidence_set_copy() {
    assert_eq!(
        INTEL_SGX_ROOT_CA_DER,
        &read("tdx/intel_sgx_root_ca.der")[..]
    );
}

// ---- manifest outcomes at the pinned times --------------------------------------------------------

/// tdx-A4 (dcap-qvl could_parse_tdx_quote): UpToDate, no advisories, at min(nextUpdate) - 1 s.
#[test]
fn tdx_a4_dcap_qvl_v4_is_up_to_date() {
    let v = verify_quote(
        &quote(A4_QUOTE),
        &bundle(A4_BUNDLE),
        &TdxPolicy::default(),
        UnixTime::from_secs(A4_NOW),
    )
    .unwrap();
    assert_eq!(v.tcb_status(), TcbStatus::UpToDate);
    assert!(v.advisory_ids().is_empty());
    assert_eq!(v.version(), 4);
    // TCB Info / QE Identity nextUpdate is after the CRL-bound A4_NOW + 1 that dcap-qvl's tests use.
    assert!(bundle(A4_BUNDLE).next_update().unwrap() > UnixTime::from_secs(A4_NOW));
}

/// tdx-A6 (dcap-qvl NEAR gas test, block time 2025-09-10T00:00:00Z): verifies (status not asserted by the
/// source; dcap-qvl says UpToDate).
#[test]
fn tdx_a6_near_v4_verifies_at_pinned_time() {
    let v = verify_quote(
        &quote("tdx/dcap-qvl__near_v4_20a06f_quote.hex"),
        &bundle("tdx/dcap-qvl__near_v4_20a06f_collateral.json"),
        &TdxPolicy::default(),
        at("2025-09-10T00:00:00Z"),
    )
    .unwrap();
    assert_eq!(v.tcb_status(), TcbStatus::UpToDate);
    assert_eq!(v.mr_config_id()[0], 0x01);
}

/// tdx-A1 (go-tdx-guest TestNegativeRawQuoteVerifyWithCollateral at 2023-07-01T01:00:00Z): "no matching
/// TCB level found"; at 2053-07-01 the collateral has expired ("tcbInfo has expired").
#[test]
fn tdx_a1_go_tdx_guest_spr_no_matching_tcb_level() {
    let raw = quote("tdx/go-tdx-guest__spr-e4_v4_quote.bin");
    let raw = &raw[..raw.len() - 39];
    let c = bundle("tdx/go-tdx-guest__spr-e4_collateral_bundle.qvl.json");
    let policy = any_tcb();
    assert_eq!(
        verify_quote(raw, &c, &policy, at("2023-07-01T01:00:00Z")).unwrap_err(),
        TdxError::TcbNotSupported
    );
    // dcap-qvl checks the CRLs first, so the first expired item it names is a CRL.
    assert!(matches!(
        verify_quote(raw, &c, &policy, at("2053-07-01T01:00:00Z")).unwrap_err(),
        TdxError::CollateralExpired(_)
    ));
}

/// The raw PCS files of A1 load to the same collateral as its bundle, and give the same outcome.
#[test]
fn tdx_a1_pcs_files_equal_the_bundle() {
    let tcb = read("tdx/go-tdx-guest__spr-e4_tcbinfo_50806f000000.json");
    let qe = read("tdx/go-tdx-guest__qe_identity_2023-06.json");
    let pck_crl = read("tdx/go-tdx-guest__pck_platform_crl_2023-06.der");
    let root_crl = read("tdx/go-tdx-guest__root_ca_crl_2023-04.der");
    let tcb_chain = read("tdx/go-tdx-guest__tcb_info_issuer_chain.pem");
    let qe_chain = read("tdx/go-tdx-guest__qe_identity_issuer_chain.pem");
    let crl_chain = read("tdx/go-tdx-guest__pck_crl_issuer_chain.pem");
    let files = PcsFiles {
        tcb_info_json: &tcb,
        qe_identity_json: &qe,
        pck_crl_der: &pck_crl,
        root_ca_crl_der: &root_crl,
        tcb_info_issuer_chain_pem: &tcb_chain,
        qe_identity_issuer_chain_pem: &qe_chain,
        pck_crl_issuer_chain_pem: &crl_chain,
    };
    let from_files = TdxCollateral::from_pcs_files(&files).unwrap();
    assert_eq!(
        from_files,
        bundle("tdx/go-tdx-guest__spr-e4_collateral_bundle.qvl.json")
    );
    let raw = quote("tdx/go-tdx-guest__spr-e4_v4_quote.bin");
    let raw = &raw[..raw.len() - 39];
    assert_eq!(
        verify_quote(raw, &from_files, &any_tcb(), at("2023-07-01T01:00:00Z")).unwrap_err(),
        TdxError::TcbNotSupported
    );
}

/// tdx-A1 go-tdx-guest TestNegativeVerification mutations (on the quote without its test suffix).
#[test]
fn tdx_a1_go_tdx_guest_mutations() {
    let raw = quote("tdx/go-tdx-guest__spr-e4_v4_quote.bin");
    let base = raw[..raw.len() - 39].to_vec();
    let c = bundle("tdx/go-tdx-guest__spr-e4_collateral_bundle.qvl.json");
    let now = at("2023-07-01T01:00:00Z");
    let with = |off: usize, val: u8| {
        let mut q = base.clone();
        q[off] = val;
        verify_quote(&q, &c, &any_tcb(), now)
    };
    // 0x00 = 3: quote format not supported.
    assert!(matches!(
        with(0x00, 3),
        Err(TdxError::Malformed(ParseError::UnsupportedVersion {
            structure: "TDX quote",
            version: 3
        }))
    ));
    // 0x278 = 0x10: certification data size no longer matches.
    assert!(matches!(with(0x278, 0x10), Err(TdxError::Malformed(_))));
    // Inside the PCK CA and leaf certificates of the PEM chain: the chain no longer verifies.
    for off in [0xF5Fusize, 0xB77] {
        let e = with(off, 0x32).unwrap_err();
        assert!(matches!(e, TdxError::Chain(_)), "offset {off:#x}: {e:?}");
    }
    // 0x1329 is inside the quote's own copy of the root certificate and 0x1343 is the newline after it:
    // go-tdx-guest checks that copy, this verifier does not use it (the anchor is the pinned root), so the
    // outcome is the unmodified quote's.
    for off in [0x1329usize, 0x1343] {
        assert_eq!(
            with(off, 0x32).unwrap_err(),
            TdxError::TcbNotSupported,
            "offset {off:#x}"
        );
    }
    // Header / body bytes: the quote signature fails.
    for off in [0x1Eusize, 0x3C] {
        assert_eq!(
            with(off, 0x32).unwrap_err(),
            TdxError::Signature("quote"),
            "offset {off:#x}"
        );
    }
}

/// tdx-A2 (go-tdx-guest v5 TDX 1.5): the derived Feb-2026 bundle gives UpToDate inside its window (collector
/// check; the source verifies the signatures without collateral) and expired after it.
#[test]
fn tdx_a2_v5_tdx15_with_feb2026_bundle() {
    let raw = quote("tdx/go-tdx-guest__v5_tdx15_quote.bin");
    let c = bundle("tdx/go-tdx-guest__v5_collateral_bundle_feb2026.qvl.json");
    let v = verify_quote(&raw, &c, &TdxPolicy::default(), at("2026-02-19T11:20:00Z")).unwrap();
    assert_eq!(v.tcb_status(), TcbStatus::UpToDate);
    assert_eq!(v.version(), 5);
    assert_eq!(v.body_kind(), TdBodyKind::Td15);
    assert!(v.tee_tcb_svn2().is_some());
    assert!(matches!(
        verify_quote(&raw, &c, &TdxPolicy::default(), at("2026-03-03T15:00:00Z")),
        Err(TdxError::CollateralExpired(_))
    ));
}

/// go-tdx-guest abi_test parser errors for v5: truncated, body type 1, body size 999, type 2 with size 648.
#[test]
fn tdx_a2_v5_descriptor_errors() {
    let raw = quote("tdx/go-tdx-guest__v5_tdx15_quote.bin");
    assert!(matches!(
        TdxQuote::parse(&raw[..100]),
        Err(ParseError::Truncated { .. })
    ));
    let mut t1 = raw.clone();
    t1[48] = 1;
    assert!(matches!(
        TdxQuote::parse(&t1),
        Err(ParseError::UnsupportedVersion {
            structure: "TD quote body type",
            version: 1
        })
    ));
    let mut s999 = raw.clone();
    s999[50..54].copy_from_slice(&999u32.to_le_bytes());
    assert_eq!(
        TdxQuote::parse(&s999),
        Err(ParseError::InvalidValue {
            field: "body_descriptor.size"
        })
    );
    let mut t2 = raw.clone();
    t2[48] = 2;
    assert_eq!(
        TdxQuote::parse(&t2),
        Err(ParseError::InvalidValue {
            field: "body_descriptor.size"
        })
    );
}

/// tdx-A5 (dcap-qvl verify_tcb_override fixture): the source asserts UpToDate only after overriding the
/// TCB Info (a danger feature this crate does not enable); plain verification gives "no matching TCB
/// level" for the whole window, as the collector found.
#[test]
fn tdx_a5_v5_outdated_has_no_matching_tcb_level() {
    let err = verify_quote(
        &quote("tdx/dcap-qvl__v5_outdated_quote.bin"),
        &bundle("tdx/dcap-qvl__v5_outdated_collateral.json"),
        &any_tcb(),
        UnixTime::from_secs(1_774_003_274),
    )
    .unwrap_err();
    assert_eq!(err, TdxError::TcbNotSupported);
}

/// tdx-A8 (dcap-rs test_verifyv4 at PINNED_TIME 1739419232): verifies; OutOfDate with three advisories
/// (status printed by the source, asserted by the collector's dcap-qvl run). Both collateral forms agree.
#[test]
fn tdx_a8_dcap_rs_gcp_is_out_of_date() {
    let raw = quote("tdx/dcap-rs__gcp_v4_00806f050000_quote_8000B.bin");
    let now = UnixTime::from_secs(1_739_419_232);
    let c = bundle("tdx/dcap-rs__gcp_collateral_bundle_feb2025.qvl.json");
    let v = verify_quote(&raw, &c, &any_tcb(), now).unwrap();
    assert_eq!(v.tcb_status(), TcbStatus::OutOfDate);
    assert_eq!(
        v.advisory_ids(),
        ["INTEL-SA-00960", "INTEL-SA-00982", "INTEL-SA-00986"]
    );
    // Default policy: OutOfDate is not accepted.
    assert_eq!(
        verify_quote(&raw, &c, &TdxPolicy::default(), now).unwrap_err(),
        TdxError::TcbNotAccepted(TcbStatus::OutOfDate)
    );
    // OutOfDate accepted but no advisory allowed.
    let no_adv = TdxPolicy {
        allowed_advisories: vec![],
        ..any_tcb()
    };
    assert_eq!(
        verify_quote(&raw, &c, &no_adv, now).unwrap_err(),
        TdxError::AdvisoryNotAllowed("INTEL-SA-00960".into())
    );
    // The raw PCS files (TCB Info, QE Identity, CRLs, signing chain) give the same result.
    let tcb = read("tdx/dcap-rs__tcbinfo_00806f050000_feb2025.json");
    let qe = read("tdx/dcap-rs__qe_identity_feb2025.json");
    let pck_crl = read("tdx/dcap-rs__pck_platform_crl_feb2025.der");
    let root_crl = read("tdx/dcap-rs__root_ca_crl_2024.der");
    let chain = read("tdx/dcap-rs__tcb_signing_chain.pem");
    let pck_chain = read("tdx/dcap-rs__pck_certchain_sample.pem");
    let files = PcsFiles {
        tcb_info_json: &tcb,
        qe_identity_json: &qe,
        pck_crl_der: &pck_crl,
        root_ca_crl_der: &root_crl,
        tcb_info_issuer_chain_pem: &chain,
        qe_identity_issuer_chain_pem: &chain,
        pck_crl_issuer_chain_pem: &pck_chain,
    };
    let from_files = TdxCollateral::from_pcs_files(&files).unwrap();
    let v2 = verify_quote(&raw, &from_files, &any_tcb(), now).unwrap();
    assert_eq!(
        (v2.tcb_status(), v2.advisory_ids()),
        (v.tcb_status(), v.advisory_ids())
    );
}

/// tdx-A3 (go-tdx-guest TestReplayCcelWithTdQuote): REPORTDATA equals nonce.dat. The source does not test
/// TCB status; with the same-FMSPC collateral of the set (dcap-rs, 2025-02-13T04:00:32Z) dcap-qvl 0.7 grades
/// it UpToDate: PCK SGX components 7,7,2,2,3,1,0,3 / PCESVN 11 meet the first level, TEE_TCB_SVN[1] > 0 so the
/// TDX components are compared from index 2 (7 >= 7) and the TDX_01 module level isvsvn 4 is UpToDate. (The
/// collector's note says OutOfDate, from another dcap-qvl build; A8, whose PCK SGX components are 6,6,..., is
/// the OutOfDate one.)
#[test]
fn tdx_a3_gcp_cos113_report_data_is_the_nonce() {
    let raw = quote("tdx/go-tdx-guest__gcp-cos113_v4_quote_8000B.bin");
    let nonce: [u8; 64] = read("tdx/go-tdx-guest__gcp-cos113_nonce.bin")
        .try_into()
        .unwrap();
    let c = bundle("tdx/dcap-rs__gcp_collateral_bundle_feb2025.qvl.json");
    let now = UnixTime::from_secs(1_739_419_232);
    let policy = TdxPolicy {
        report_data: Some(nonce),
        ..any_tcb()
    };
    let v = verify_quote(&raw, &c, &policy, now).unwrap();
    assert_eq!(v.tcb_status(), TcbStatus::UpToDate);
    assert!(v.advisory_ids().is_empty());
    assert_eq!(v.report_data(), &nonce);
    // A wrong nonce is refused with its own variant.
    let mut other = nonce;
    other[0] ^= 1;
    let wrong = TdxPolicy {
        report_data: Some(other),
        ..any_tcb()
    };
    assert_eq!(
        verify_quote(&raw, &c, &wrong, now).unwrap_err(),
        TdxError::ReportDataMismatch
    );
}

/// tdx-A7 / tdx-A10 (parse-only in their sources): with the b0c06f collateral of the set, dcap-qvl finds no
/// matching TCB level (as the collector recorded).
#[test]
fn tdx_a7_a10_parse_and_have_no_matching_level_under_a4_collateral() {
    for f in [
        "tdx/dcap-qvl__tappd_v4_quote.hex",
        "tdx/dcap-qvl__tdx-quote_v4_0x.hex",
        "tdx/dstack__ra-tls_v4_quote.bin",
    ] {
        let raw = quote(f);
        assert_eq!(TdxQuote::parse(&raw).unwrap().padding, 70, "{f}");
        let err = verify_quote(
            &raw,
            &bundle(A4_BUNDLE),
            &any_tcb(),
            UnixTime::from_secs(A4_NOW),
        )
        .unwrap_err();
        assert_eq!(err, TdxError::TcbNotSupported, "{f}");
    }
}

// ---- negative tests on A4 (UpToDate baseline) ---------------------------------------------------

fn a4(q: &[u8], policy: &TdxPolicy) -> Result<tdx::VerifiedTdxQuote, TdxError> {
    verify_quote(q, &bundle(A4_BUNDLE), policy, UnixTime::from_secs(A4_NOW))
}

const BODY: usize = 48;
const MR_TD: usize = BODY + 16 + 48 + 48 + 8 + 8 + 8;
const REPORT_DATA: usize = BODY + 520;
const SIG: usize = BODY + 584 + 4;

#[test]
fn tdx_flipped_bit_in_signature_measurement_and_report_data() {
    let raw = quote(A4_QUOTE);
    for (off, what) in [
        (SIG, "signature"),
        (MR_TD, "mr_td"),
        (REPORT_DATA, "report_data"),
        (MR_TD + 48 * 4, "rtmr0"),
    ] {
        let mut q = raw.clone();
        q[off] ^= 0x01;
        assert_eq!(
            a4(&q, &TdxPolicy::default()).unwrap_err(),
            TdxError::Signature("quote"),
            "{what}"
        );
    }
    // QE report (inside the signature data) -> QE report signature.
    let mut q = raw.clone();
    q[SIG + 64 + 64 + 6 + 10] ^= 0x01;
    assert_eq!(
        a4(&q, &TdxPolicy::default()).unwrap_err(),
        TdxError::Signature("QE report")
    );
    // Attestation key -> the QE report no longer binds it.
    let mut q = raw.clone();
    q[SIG + 64 + 5] ^= 0x01;
    assert!(matches!(
        a4(&q, &TdxPolicy::default()).unwrap_err(),
        TdxError::Signature(_)
    ));
}

#[test]
fn tdx_truncation_at_every_boundary_and_everywhere() {
    let raw = quote(A4_QUOTE);
    let q = TdxQuote::parse(&raw).unwrap();
    let end = q.bytes.len();
    let named: [(usize, &str); 12] = [
        (0, "header.version"),
        (2, "header.attestation_key_type"),
        (4, "header.tee_type"),
        (8, "header.qe_svn"),
        (10, "header.pce_svn"),
        (12, "header.qe_vendor_id"),
        (28, "header.user_data"),
        (48, "td_report"),
        (BODY + 584, "signature_data_len"),
        (SIG, "signature_data"),
        (SIG + 100, "signature_data"),
        (end - 1, "signature_data"),
    ];
    for (off, name) in named {
        match TdxQuote::parse(&raw[..off]) {
            Err(ParseError::Truncated { field, .. }) => assert_eq!(field, name, "at {off}"),
            other => panic!("at {off}: {other:?}"),
        }
    }
    for len in 0..end {
        assert!(
            matches!(
                TdxQuote::parse(&raw[..len]),
                Err(ParseError::Truncated { .. })
            ),
            "len {len}"
        );
    }
    // Inner boundaries: shrink the declared signature-data length so the inner structures run out.
    let sig_len = u32::from_le_bytes(raw[BODY + 584..SIG].try_into().unwrap()) as usize;
    let inner: [(usize, &str); 5] = [
        (0, "signature_data.quote_signature"),
        (64, "signature_data.attestation_key"),
        (128, "signature_data.cert_data_type"),
        (130, "signature_data.cert_data_size"),
        (134, "signature_data.cert_data"),
    ];
    for (cut, name) in inner {
        let mut q = raw[..SIG + cut].to_vec();
        q[BODY + 584..SIG].copy_from_slice(&(cut as u32).to_le_bytes());
        match TdxQuote::parse(&q) {
            Err(ParseError::Truncated { field, .. }) => assert_eq!(field, name, "inner {cut}"),
            other => panic!("inner {cut} of {sig_len}: {other:?}"),
        }
    }
}

#[test]
fn tdx_trailing_bytes_zero_padding_is_accepted_nonzero_is_not() {
    let mut raw = quote(A4_QUOTE);
    raw.push(0);
    assert_eq!(TdxQuote::parse(&raw).unwrap().padding, 71);
    assert!(a4(&raw, &TdxPolicy::default()).is_ok());
    raw.push(1);
    assert!(matches!(
        a4(&raw, &TdxPolicy::default()),
        Err(TdxError::Malformed(ParseError::TrailingBytes {
            structure: "TDX quote",
            extra: 72
        }))
    ));
}

#[test]
fn tdx_expired_collateral_and_not_yet_valid() {
    let raw = quote(A4_QUOTE);
    let c = bundle(A4_BUNDLE);
    let p = TdxPolicy::default();
    assert!(matches!(
        verify_quote(&raw, &c, &p, UnixTime::from_secs(A4_NOW + 2)),
        Err(TdxError::CollateralExpired(_))
    ));
    assert!(matches!(
        verify_quote(&raw, &c, &p, at("2025-01-01T00:00:00Z")),
        Err(TdxError::CollateralExpired(_) | TdxError::Chain(_))
    ));
}

#[test]
fn tdx_tampered_collateral_is_invalid() {
    let raw = quote(A4_QUOTE);
    let mut json: serde_json::Value = serde_json::from_slice(&read(A4_BUNDLE)).unwrap();
    let tcb = json["tcb_info"].as_str().unwrap().replacen(
        "\"tcbEvaluationDataNumber\":",
        "\"tcbEvaluationDataNumber\": ",
        1,
    );
    json["tcb_info"] = serde_json::Value::String(tcb);
    let c = TdxCollateral::from_bundle_json(&serde_json::to_vec(&json).unwrap()).unwrap();
    assert_eq!(
        verify_quote(&raw, &c, &TdxPolicy::default(), UnixTime::from_secs(A4_NOW)).unwrap_err(),
        TdxError::CollateralInvalid("TCB Info signature")
    );
    // The QE Identity body, one character changed (whitespace, so it still parses).
    let mut json: serde_json::Value = serde_json::from_slice(&read(A4_BUNDLE)).unwrap();
    let qe = json["qe_identity"]
        .as_str()
        .unwrap()
        .replacen("\"version\":", "\"version\": ", 1);
    json["qe_identity"] = serde_json::Value::String(qe);
    let c = TdxCollateral::from_bundle_json(&serde_json::to_vec(&json).unwrap()).unwrap();
    assert_eq!(
        verify_quote(&raw, &c, &TdxPolicy::default(), UnixTime::from_secs(A4_NOW)).unwrap_err(),
        TdxError::CollateralInvalid("QE Identity signature")
    );
    // A hex field that is not hex is a load error, not a verification result.
    let mut json: serde_json::Value = serde_json::from_slice(&read(A4_BUNDLE)).unwrap();
    json["pck_crl"] = serde_json::Value::String("zz".into());
    assert!(TdxCollateral::from_bundle_json(&serde_json::to_vec(&json).unwrap()).is_err());
}

#[test]
fn tdx_wrong_root_is_refused() {
    let raw = quote(A4_QUOTE);
    // The TCB signing certificate is a real Intel P-256 certificate, but not the root of the PCK chain.
    let pem = read("tdx/dcap-rs__tcb_signing_cert_old.pem");
    let der = sev::certs::snp::Certificate::from_pem(&pem)
        .unwrap()
        .to_der()
        .unwrap();
    let policy = TdxPolicy {
        root_ca_der: der,
        ..TdxPolicy::default()
    };
    assert!(matches!(a4(&raw, &policy).unwrap_err(), TdxError::Chain(_)));
}

#[test]
fn tdx_debug_td_is_refused() {
    let raw = quote(A4_QUOTE);
    // A real debug quote would verify; flipping the bit on a real quote breaks its signature first.
    let mut q = raw.clone();
    q[BODY + 16 + 48 + 48 + 8] |= 0x01;
    assert_eq!(
        a4(&q, &TdxPolicy::default()).unwrap_err(),
        TdxError::Signature("quote")
    );
    // The policy check itself, on the parsed debug body with a verified outcome.
    let parsed = TdxQuote::parse(&q).unwrap();
    assert!(parsed.body.is_debug());
    let outcome = tdx::TdxCryptoOutcome {
        tcb_status: TcbStatus::UpToDate,
        advisory_ids: vec![],
    };
    assert_eq!(
        tdx::check_policy(&parsed, &outcome, &TdxPolicy::default()),
        Err(TdxError::Debug)
    );
    let allow = TdxPolicy {
        dangerous_allow_debug: true,
        ..TdxPolicy::default()
    };
    assert_eq!(tdx::check_policy(&parsed, &outcome, &allow), Ok(()));
}

#[test]
fn tdx_measurement_pins_and_wrong_nonce() {
    let raw = quote(A4_QUOTE);
    let q = TdxQuote::parse(&raw).unwrap();
    let exact = TdxPolicy {
        shapes: vec![
            TdxShape {
                mr_td: [9; 48],
                rtmr0: None,
            },
            TdxShape {
                mr_td: *q.body.mr_td,
                rtmr0: Some(*q.body.rtmr[0]),
            },
        ],
        rtmr: [None, Some(*q.body.rtmr[1]), Some(*q.body.rtmr[2]), None],
        mr_config_id: vec![[1; 48], [0; 48]],
        td_attributes: Some(q.body.td_attributes_u64()),
        xfam: Some(q.body.xfam_u64()),
        report_data: Some(*q.body.report_data),
        ..TdxPolicy::default()
    };
    let v = a4(&raw, &exact).unwrap();
    assert_eq!(v.mr_td(), q.body.mr_td);
    let mut bad = exact.clone();
    bad.shapes[1].mr_td[0] ^= 1;
    assert_eq!(
        a4(&raw, &bad).unwrap_err(),
        TdxError::MeasurementMismatch {
            register: TdxRegister::MrTd
        }
    );
    let mut bad = exact.clone();
    bad.shapes[1].rtmr0.as_mut().unwrap()[0] ^= 1;
    assert_eq!(
        a4(&raw, &bad).unwrap_err(),
        TdxError::MeasurementMismatch {
            register: TdxRegister::Rtmr(0)
        }
    );
    let bad = TdxPolicy {
        mr_config_id: vec![[1; 48]],
        ..exact.clone()
    };
    assert_eq!(
        a4(&raw, &bad).unwrap_err(),
        TdxError::MeasurementMismatch {
            register: TdxRegister::MrConfigId
        }
    );
    let bad = TdxPolicy {
        td_attributes: Some(0),
        ..exact.clone()
    };
    assert!(matches!(
        a4(&raw, &bad).unwrap_err(),
        TdxError::TdAttributes(_)
    ));
    let mut bad = exact.clone();
    bad.rtmr[2].as_mut().unwrap()[47] ^= 1;
    assert_eq!(
        a4(&raw, &bad).unwrap_err(),
        TdxError::MeasurementMismatch {
            register: TdxRegister::Rtmr(2)
        }
    );
    let bad = TdxPolicy {
        xfam: Some(0),
        ..exact.clone()
    };
    assert_eq!(a4(&raw, &bad).unwrap_err(), TdxError::XfamMismatch);
    let mut bad = exact;
    bad.report_data.as_mut().unwrap()[63] ^= 1;
    assert_eq!(a4(&raw, &bad).unwrap_err(), TdxError::ReportDataMismatch);
}

/// A v5 quote with a TDX 1.0 body (descriptor type 2, 584 bytes) parses as `Td10` (no such sample exists:
/// built from the A4 v4 quote; the signature no longer covers it, so it is refused as a signature failure).
#[test]
fn tdx_v5_with_td10_body_parses() {
    let v4 = quote(A4_QUOTE);
    let mut v5 = Vec::new();
    v5.extend_from_slice(&5u16.to_le_bytes());
    v5.extend_from_slice(&v4[2..48]);
    v5.extend_from_slice(&2u16.to_le_bytes());
    v5.extend_from_slice(&584u32.to_le_bytes());
    v5.extend_from_slice(&v4[48..]);
    let q = TdxQuote::parse(&v5).unwrap();
    assert_eq!(
        (q.header.version, q.body_type, q.body.kind),
        (5, Some(2), TdBodyKind::Td10)
    );
    assert_eq!(q.body.mr_td, TdxQuote::parse(&v4).unwrap().body.mr_td);
    assert!(q.body.tee_tcb_svn2.is_none());
    assert_eq!(
        a4(&v5, &TdxPolicy::default()).unwrap_err(),
        TdxError::Signature("quote")
    );
}
