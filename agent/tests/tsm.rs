//! The agent's configfs-tsm backend on an emulated `/sys/kernel/config/tsm/report` tree whose `outblob` is a
//! real TDX quote or SNP report from the evidence set (issue 9, first acceptance check).
//!
//! The tree is laid out as the kernel's configfs-tsm ABI has it (Linux `Documentation/ABI/testing/configfs-tsm-report`): the
//! report entry the agent uses, with `provider`, `generation`, `inblob`, `outblob` and, for SEV-SNP, `auxblob` (the
//! host's GHCB certificate table, built here from the real VCEK, ASK and ARK). An emulation cannot do the one
//! thing hardware does: sign a report over the `report_data` the agent writes to `inblob`. So each platform is
//! checked both ways, and together they show that the verifier accepts everything but that one check:
//! - the real report, untouched: the agent itself refuses it (it carries another `report_data`); the backend,
//!   asked for the `report_data` the report carries, hands it over with its chain; in a bundle with the
//!   agent's keyset and freshness, the verifier passes the chain, the signature, the TCB and the policy and
//!   fails exactly the binding of `report_data` to the keyset and freshness, with its own error;
//! - the real report with the agent's `report_data` written in (what the hardware would sign): the agent's
//!   whole evidence path accepts it and assembles the bundle, and the verifier fails exactly the report
//!   signature.
//!
//! The Intel collateral of the evidence set expired in 2025, before the agent's keyset (created today) existed,
//! so a TDX bundle cannot pass the verifier's keyset time check at the collateral's time; the TDX quote in the
//! agent's bundle goes through the verifier's quote verification at that time instead, with the bundle's
//! `report_data` binding as its policy.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::fs;
use std::path::Path;

use dait_agent::http::{App, assemble_bundle, bundle};
use dait_agent::tee::{Platform, TeeError, TsmBackend};
use dait_chain_client::Freshness;
use dait_chain_client::proto::{SnpEvidence, cpu_evidence::Evidence};
use dait_verifier::UnixTime;
use dait_verifier::bundle::{Policy, VerifyError, verify_bundle, verify_bundle_with_collateral};
use dait_verifier::collateral::TdxCollateral;
use dait_verifier::snp::SnpError;
use dait_verifier::snp::cert_table::{self, CertKind, CertTable, CertTableError};
use dait_verifier::tdx::{TcbStatus, TdxError, TdxPolicy, verify_quote};

/// The report entry the agent creates under the configfs-tsm root (its backend's entry name).
const ENTRY: &str = "dait";

/// `report_data` in a TDX v4 quote (48-byte header, then the TD report whose last 64 bytes it is).
const TDX_REPORT_DATA: std::ops::Range<usize> = 568..632;
/// `report_data` in an SNP attestation report (AMD SEV-SNP ABI, offset 0x50).
const SNP_REPORT_DATA: std::ops::Range<usize> = 0x50..0x90;
/// The SNP report's signature (r, then s), AMD SEV-SNP ABI offset 0x2A0.
const SNP_SIGNATURE: usize = 0x2a0;

/// tdx-A4 of the evidence set (dcap-qvl's v4 quote): UpToDate at dcap-qvl's pinned time.
const TDX_QUOTE: &str = "tdx/dcap-qvl__v4_b0c06f_quote.bin";
const TDX_COLLATERAL: &str = "tdx/dcap-qvl__v4_b0c06f_collateral.json";
/// dcap-qvl's tests: min(nextUpdate of the collateral) - 1 s.
const TDX_NOW: u64 = 1_752_919_234;

const NONCE: Freshness = Freshness::TenantNonce([0x5a; 32]);

/// An emulated configfs-tsm tree: the agent's entry with `provider`, `generation`, an empty `inblob`, `outblob`
/// and (SNP) `auxblob`.
fn emulated_tree(provider: &str, outblob: &[u8], auxblob: Option<&[u8]>) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let e = root.path().join(ENTRY);
    fs::create_dir(&e).unwrap();
    fs::write(e.join("provider"), format!("{provider}\n")).unwrap();
    fs::write(e.join("generation"), "1\n").unwrap();
    fs::write(e.join("inblob"), []).unwrap();
    fs::write(e.join("outblob"), outblob).unwrap();
    if let Some(a) = auxblob {
        fs::write(e.join("auxblob"), a).unwrap();
    }
    root
}

fn write_outblob(root: &Path, outblob: &[u8]) {
    fs::write(root.join(ENTRY).join("outblob"), outblob).unwrap();
}

fn inblob(root: &Path) -> Vec<u8> {
    fs::read(root.join(ENTRY).join("inblob")).unwrap()
}

/// The agent as `dait-host attest` builds it (fresh keyset, runtime event log), its TEE the configfs-tsm
/// backend opened on the emulated tree at `root` for `platform`.
fn agent(root: &Path, platform: Platform) -> (App, tempfile::TempDir) {
    let (mut app, state) = common::simulated_app(&[], dait_agent::Mode::Attest);
    app.tee = Box::new(TsmBackend::open(root, platform).unwrap());
    (app, state)
}

/// The agent refuses a report that does not carry the `report_data` it wrote to `inblob`.
fn assert_agent_refuses_foreign_report(app: &App, root: &Path) {
    let ours = app.keys.report_data(&NONCE);
    assert!(matches!(
        bundle(app, &NONCE),
        Err(TeeError::BadEvidence(
            "outblob does not carry the requested report_data"
        ))
    ));
    assert_eq!(inblob(root), ours, "the agent writes its report_data");
}

/// `report_data` that the verifier recomputes from a bundle's keyset and `NONCE`.
fn expected_report_data(bundle_bytes: &[u8]) -> [u8; 64] {
    let b = dait_chain_client::decode_bundle(bundle_bytes).unwrap();
    dait_chain_client::report_data(&dait_chain_client::keyset_hash(&b.keyset), &NONCE)
}

fn bundle_evidence(bundle_bytes: &[u8]) -> Evidence {
    dait_chain_client::decode_bundle(bundle_bytes)
        .unwrap()
        .cpu
        .unwrap()
        .evidence
        .unwrap()
}

// ---- TDX --------------------------------------------------------------------------------------------

fn tdx_quote() -> Vec<u8> {
    dait_verifier::tdx::decode_quote_file(&dait_testdata::read(TDX_QUOTE))
}

fn tdx_collateral() -> TdxCollateral {
    TdxCollateral::from_bundle_json(&dait_testdata::read(TDX_COLLATERAL)).unwrap()
}

fn tdx_quote_of(bundle_bytes: &[u8]) -> Vec<u8> {
    match bundle_evidence(bundle_bytes) {
        Evidence::TdxQuote(q) => q,
        other => panic!("not a TDX quote: {other:?}"),
    }
}

#[test]
fn tdx_real_quote_verifies_up_to_the_report_data_binding() {
    let quote = tdx_quote();
    let carried: [u8; 64] = quote[TDX_REPORT_DATA].try_into().unwrap();
    let root = emulated_tree("tdx_guest", &quote, None);
    let (app, _state) = agent(root.path(), Platform::Tdx);
    assert_agent_refuses_foreign_report(&app, root.path());

    let cpu = app.tee.evidence(&carried).unwrap();
    let bytes = assemble_bundle(&app, &NONCE, cpu);
    assert_eq!(tdx_quote_of(&bytes), quote);
    let expected = expected_report_data(&bytes);
    assert_eq!(expected, app.keys.report_data(&NONCE));
    let collateral = tdx_collateral();
    let now = UnixTime::from_secs(TDX_NOW);

    // PCK chain, QE report, quote signature, collateral, TCB level and the default policy: all pass.
    let verified = verify_quote(&quote, &collateral, &Policy::new().tdx, now).unwrap();
    assert_eq!(verified.tcb_status(), TcbStatus::UpToDate);
    assert_eq!(verified.report_data(), &carried);
    // With the binding to the bundle's keyset and freshness, that check alone fails.
    let bound = TdxPolicy {
        report_data: Some(expected),
        ..Policy::new().tdx
    };
    assert_eq!(
        verify_quote(&quote, &collateral, &bound, now).unwrap_err(),
        TdxError::ReportDataMismatch
    );
    // The whole bundle cannot be checked at the collateral's time: the keyset is from today.
    assert!(matches!(
        verify_bundle_with_collateral(
            &bytes,
            &Policy::new(),
            Some(&collateral.to_proto()),
            &NONCE,
            now
        ),
        Err(VerifyError::KeysetFromFuture)
    ));
}

#[test]
fn tdx_quote_over_our_report_data_fails_only_its_signature() {
    let root = emulated_tree("tdx_guest", &[], None);
    let (app, _state) = agent(root.path(), Platform::Tdx);
    let ours = app.keys.report_data(&NONCE);
    let mut quote = tdx_quote();
    quote[TDX_REPORT_DATA].copy_from_slice(&ours);
    write_outblob(root.path(), &quote);

    // The agent's whole evidence path accepts it.
    let bytes = bundle(&app, &NONCE).unwrap();
    assert_eq!(tdx_quote_of(&bytes), quote);
    let bound = TdxPolicy {
        report_data: Some(expected_report_data(&bytes)),
        ..Policy::new().tdx
    };
    assert_eq!(
        verify_quote(
            &quote,
            &tdx_collateral(),
            &bound,
            UnixTime::from_secs(TDX_NOW)
        )
        .unwrap_err(),
        TdxError::Signature("quote")
    );
}

// ---- SEV-SNP ----------------------------------------------------------------------------------------

/// The real virtee/sev Milan sample as its host would hand it over: the report, and the chain in the bundle's
/// order (its VCEK, then the ASK and ARK of the same sample's certificate chain, DER).
fn milan() -> (Vec<u8>, [Vec<u8>; 3]) {
    let read = dait_testdata::read;
    let [ask, ark]: [Vec<u8>; 2] =
        dait_verifier::x509::pem_to_der(&read("snp/virtee__milan_cert_chain.pem"))
            .unwrap()
            .try_into()
            .expect("the chain is ASK, ARK");
    let report = dait_verifier::snp::decode_report_file(&read("snp/virtee__milan_report.hex"));
    (report, [read("snp/virtee__milan_vcek.der"), ask, ark])
}

/// The host's certificate table (GHCB) with the real certificates, zero-padded to a page as the kernel
/// returns it.
fn auxblob([vcek, ask, ark]: &[Vec<u8>; 3]) -> Vec<u8> {
    let mut t = cert_table::encode(&[
        (CertKind::Ark.guid(), &ark[..]),
        (CertKind::Vcek.guid(), &vcek[..]),
        (CertKind::Ask.guid(), &ask[..]),
    ])
    .unwrap();
    t.resize(t.len().next_multiple_of(4096), 0);
    t
}

fn snp_evidence_of(bundle_bytes: &[u8]) -> SnpEvidence {
    match bundle_evidence(bundle_bytes) {
        Evidence::Snp(e) => e,
        other => panic!("not SNP evidence: {other:?}"),
    }
}

#[test]
fn snp_auxblob_of_the_real_certificates_parses() {
    let (report, chain) = milan();
    let aux = auxblob(&chain);
    let table = CertTable::parse(&aux).unwrap();
    assert_eq!(table.entries().len(), 3);
    // The report names the VCEK as its signer; the table gives it, then ASK and ARK.
    let key = dait_verifier::snp::SnpReport::parse(&report)
        .unwrap()
        .signing_key()
        .unwrap();
    assert_eq!(key, dait_verifier::snp::SigningKey::Vcek);
    assert_eq!(
        table.bundle_chain(key).unwrap(),
        chain.each_ref().map(Vec::as_slice)
    );
}

#[test]
fn snp_real_report_verifies_up_to_the_report_data_binding() {
    let (report, chain) = milan();
    let carried: [u8; 64] = report[SNP_REPORT_DATA].try_into().unwrap();
    let root = emulated_tree("sev_guest", &report, Some(&auxblob(&chain)));
    let (app, _state) = agent(root.path(), Platform::Snp);
    assert_agent_refuses_foreign_report(&app, root.path());

    let bytes = assemble_bundle(&app, &NONCE, app.tee.evidence(&carried).unwrap());
    let e = snp_evidence_of(&bytes);
    assert_eq!(e.report, report);
    assert_eq!(e.cert_chain, chain);
    // Chain (pinned ARK, ASK, VCEK), report signature, TCB and chip id against the VCEK, the default policy:
    // all pass; the binding to the agent's keyset and freshness is the first check that fails.
    assert!(matches!(
        verify_bundle(&bytes, &Policy::new(), &NONCE, UnixTime::now()),
        Err(VerifyError::KeysetBinding)
    ));

    // The checks before it are made: one flipped bit of the signature is caught there.
    let mut tampered = report.clone();
    tampered[SNP_SIGNATURE] ^= 1;
    write_outblob(root.path(), &tampered);
    let bytes = assemble_bundle(&app, &NONCE, app.tee.evidence(&carried).unwrap());
    assert!(matches!(
        verify_bundle(&bytes, &Policy::new(), &NONCE, UnixTime::now()),
        Err(VerifyError::Snp(SnpError::Signature))
    ));
}

#[test]
fn snp_report_over_our_report_data_fails_only_its_signature() {
    let (report, chain) = milan();
    let root = emulated_tree("sev_guest", &[], Some(&auxblob(&chain)));
    let (app, _state) = agent(root.path(), Platform::Snp);
    let mut report = report.clone();
    report[SNP_REPORT_DATA].copy_from_slice(&app.keys.report_data(&NONCE));
    write_outblob(root.path(), &report);

    let bytes = bundle(&app, &NONCE).unwrap();
    assert_eq!(snp_evidence_of(&bytes).report, report);
    assert!(matches!(
        verify_bundle(&bytes, &Policy::new(), &NONCE, UnixTime::now()),
        Err(VerifyError::Snp(SnpError::Signature))
    ));
}

#[test]
fn snp_truncated_or_unknown_guid_auxblob_is_rejected() {
    let (report, chain) = milan();
    let aux = auxblob(&chain);
    let root = emulated_tree("sev_guest", &[], Some(&aux));
    let (app, _state) = agent(root.path(), Platform::Snp);
    let mut report = report.clone();
    report[SNP_REPORT_DATA].copy_from_slice(&app.keys.report_data(&NONCE));
    write_outblob(root.path(), &report);
    let with_aux = |a: &[u8]| {
        fs::write(root.path().join(ENTRY).join("auxblob"), a).unwrap();
        bundle(&app, &NONCE)
    };
    assert!(with_aux(&aux).is_ok());

    // Cut inside the entries: the table itself is truncated.
    assert!(matches!(
        with_aux(&aux[..30]),
        Err(TeeError::SnpCertTable(CertTableError::Malformed(_)))
    ));
    // Cut inside the certificates: the last entry points past the end.
    let unpadded = CertTable::parse(&aux).unwrap();
    let end = unpadded
        .entries()
        .iter()
        .map(|e| e.offset + e.bytes.len())
        .max()
        .unwrap();
    assert!(matches!(
        with_aux(&aux[..end - 1]),
        Err(TeeError::SnpCertTable(
            CertTableError::EntryOutOfBounds { .. }
        ))
    ));
    // A GUID the table format does not define (the first entry's, one bit changed).
    let mut unknown = aux.clone();
    unknown[0] ^= 1;
    assert!(matches!(
        with_aux(&unknown),
        Err(TeeError::SnpCertTable(CertTableError::UnknownGuid(_)))
    ));
}

/// A host that gives no certificate table (`auxblob` empty): the VCEK comes from the collateral cache that the
/// AMD KDS client filled (a local KDS serving the evidence set's VCEK, ASK and ARK), and the bundle carries the
/// KDS's ARK and ASK as collateral. Offline, the verifier passes the chain, the signature, the TCB and the
/// policy, and fails exactly the `report_data` binding; with the agent's `report_data` written in, exactly the
/// signature.
#[tokio::test]
async fn snp_without_certificate_table_takes_the_vcek_from_the_kds_cache() {
    let (report, [vcek, ask, ark]) = milan();
    let carried: [u8; 64] = report[SNP_REPORT_DATA].try_into().unwrap();
    let root = emulated_tree("sev_guest", &report, Some(&[]));
    let cache = tempfile::tempdir().unwrap();
    let (mut app, _state) = agent(root.path(), Platform::Snp);
    assert!(matches!(
        app.tee.evidence(&carried),
        Err(TeeError::SnpCertMissing("VCEK"))
    ));
    app.tee = Box::new(
        TsmBackend::open(root.path(), Platform::Snp)
            .unwrap()
            .with_vcek_cache(cache.path()),
    );
    // Nothing cached yet: still no evidence that could not verify.
    assert!(matches!(
        app.tee.evidence(&carried),
        Err(TeeError::SnpCertMissing("VCEK"))
    ));

    let server = common::KdsSet::milan().serve().await;
    let kds = dait_agent::collateral::amd::KdsClient::new(
        &server.url(),
        Path::new("unused"),
        cache.path(),
    )
    .unwrap();
    let fetched = kds.vcek(&report, UnixTime::now()).await.unwrap();
    server.stop().await;
    app.collateral
        .set(Some(dait_chain_client::proto::Collateral {
            amd_chain: vec![ark, ask],
            ..Default::default()
        }));

    let bytes = assemble_bundle(&app, &NONCE, app.tee.evidence(&carried).unwrap());
    let e = snp_evidence_of(&bytes);
    assert_eq!(e.cert_chain, vec![vcek.clone()]);
    assert_eq!(fetched.der, vcek);
    assert!(matches!(
        verify_bundle(&bytes, &Policy::new(), &NONCE, UnixTime::now()),
        Err(VerifyError::KeysetBinding)
    ));

    let mut ours = report.clone();
    ours[SNP_REPORT_DATA].copy_from_slice(&app.keys.report_data(&NONCE));
    write_outblob(root.path(), &ours);
    let bytes = bundle(&app, &NONCE).unwrap();
    assert!(matches!(
        verify_bundle(&bytes, &Policy::new(), &NONCE, UnixTime::now()),
        Err(VerifyError::Snp(SnpError::Signature))
    ));
}

/// The SNP collateral refresh takes the VCEK from the evidence (here the host's table: no KDS request for it)
/// and fetches the ASK/ARK and CRL; with no CRL at the KDS (the evidence set has no AMD CRL) it fails with that
/// item's error, and `/readyz` stays ready: SNP bundles verify without collateral (AMD's pinned ASK and ARK).
#[tokio::test]
async fn snp_collateral_refresh_names_the_missing_crl_and_stays_ready() {
    let (report, chain) = milan();
    let mut with_zero = report.clone();
    with_zero[SNP_REPORT_DATA].fill(0);
    let root = emulated_tree("sev_guest", &with_zero, Some(&auxblob(&chain)));
    let (app, _state) = agent(root.path(), Platform::Snp);
    let app = std::sync::Arc::new(app);
    let server = common::KdsSet::milan().serve().await;
    let cache = tempfile::tempdir().unwrap();
    let kds = dait_agent::collateral::amd::KdsClient::new(
        &server.url(),
        Path::new("unused"),
        cache.path(),
    )
    .unwrap();
    let r = dait_agent::collateral::refresh_and_report(&app, &kds, UnixTime::now()).await;
    assert!(
        matches!(
            r,
            Err(dait_agent::collateral::FetchError::Status {
                item: "AMD CRL",
                status: 404
            })
        ),
        "{r:?}"
    );
    assert_eq!(
        server.requests(),
        2,
        "the ASK/ARK and the CRL; the VCEK came with the report"
    );
    assert!(
        app.collateral.get().is_none(),
        "nothing unverified is embedded"
    );
    assert!(
        !app.readiness
            .failures()
            .await
            .iter()
            .any(|f| f.code == "collateral_stale")
    );
    server.stop().await;
}
