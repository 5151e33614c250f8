//! The agent's Intel collateral client against a local PCS on 127.0.0.1 serving the real collateral of the
//! evidence set (tdx-A1 as the PCS files, tdx-A4 from its dcap-qvl bundle) with the real paths and headers.
//! Fetched, checked, cached; a missing, wrongly signed or stale item fails with its own error.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{PcsFaults, PcsServer, PcsSet, bounded, simulated_app};
use dait_agent::collateral::{
    FetchError, PckCa, PcsClient, check_against_quote, refresh_and_report, refresh_once,
};
use dait_agent::tee::{CpuEvidence, Platform, TeeBackend, TeeError};
use dait_chain_client::Freshness;
use dait_chain_client::proto::cpu_evidence::Evidence;
use dait_chain_client::runtime_log::EventLog;
use dait_verifier::UnixTime;
use dait_verifier::bundle::{Policy, VerifyError, verify_bundle};
use dait_verifier::collateral::TdxCollateral;
use dait_verifier::tdx::{
    INTEL_SGX_ROOT_CA_DER, TcbStatus, TdxError, TdxPolicy, decode_quote_file, verify_quote,
};

const A1_FMSPC: &str = "50806f000000";
/// go-tdx-guest's pinned time for A1.
const A1_NOW: &str = "2023-07-01T01:00:00Z";
const A4_BUNDLE: &str = "tdx/dcap-qvl__v4_b0c06f_collateral.json";
/// dcap-qvl's pinned time for A4 (min nextUpdate − 1 s), as in the verifier's tests.
const A4_NOW: u64 = 1_752_919_234;

fn at(s: &str) -> UnixTime {
    UnixTime::parse_rfc3339(s).unwrap()
}

fn client(server: &PcsServer, cache: &Path) -> PcsClient {
    PcsClient::new(&server.url(), Path::new("unused-for-http"), cache)
        .unwrap()
        .with_timeout(Duration::from_secs(20))
}

fn a1_quote() -> Vec<u8> {
    let raw = dait_testdata::read("tdx/go-tdx-guest__spr-e4_v4_quote.bin");
    // go-tdx-guest's test suffix after the signature data.
    raw[..raw.len() - 39].to_vec()
}

#[tokio::test]
async fn fetched_collateral_is_the_served_set_and_is_cached() {
    bounded(async {
        let server = PcsServer::start(PcsSet::go_tdx_guest_a1(), PcsFaults::default()).await;
        let cache = tempfile::tempdir().unwrap();
        let c = client(&server, cache.path());
        let now = at(A1_NOW);

        let got = c.collateral(A1_FMSPC, PckCa::Platform, now).await.unwrap();
        assert_eq!(
            server.requests(),
            4,
            "TCB Info, QE Identity, PCK CRL, root CA CRL"
        );
        // Byte for byte the collateral of the sample's bundle.
        let bundle = TdxCollateral::from_bundle_json(&dait_testdata::read(
            "tdx/go-tdx-guest__spr-e4_collateral_bundle.qvl.json",
        ))
        .unwrap();
        assert_eq!(got, bundle);
        // The verifier's checks pass every signature, chain and CRL; the quote's TCB then has no
        // matching level (go-tdx-guest's own expected outcome for this quote).
        assert!(matches!(
            check_against_quote(&got, &a1_quote(), INTEL_SGX_ROOT_CA_DER, now),
            Err(FetchError::Rejected(TdxError::TcbNotSupported))
        ));

        // Fresh in the cache: no request.
        let again = c.collateral(A1_FMSPC, PckCa::Platform, now).await.unwrap();
        assert_eq!(again, got);
        assert_eq!(server.requests(), 4);
        // The cache is a PCS directory the verifier loads as it is.
        let dir = c.cache_path(A1_FMSPC, PckCa::Platform);
        assert_eq!(TdxCollateral::from_pcs_dir(&dir).unwrap(), got);

        // Within the refresh margin of nextUpdate (2023-07-08): fetched again.
        let c = c.with_refresh_before(Duration::from_secs(30 * 24 * 3600));
        c.collateral(A1_FMSPC, PckCa::Platform, now).await.unwrap();
        assert_eq!(server.requests(), 8);
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn up_to_date_collateral_for_the_quotes_platform_verifies_it() {
    bounded(async {
        let server = PcsServer::start(PcsSet::from_bundle(A4_BUNDLE), PcsFaults::default()).await;
        let cache = tempfile::tempdir().unwrap();
        let now = UnixTime::from_secs(A4_NOW);
        let quote = decode_quote_file(&dait_testdata::read("tdx/dcap-qvl__v4_b0c06f_quote.bin"));
        // FMSPC b0c06f000000 and the PCK Platform CA, from the quote's own PCK certificate.
        let got = client(&server, cache.path())
            .collateral_for_quote(&quote, now)
            .await
            .unwrap();
        let bundle = TdxCollateral::from_bundle_json(&dait_testdata::read(A4_BUNDLE)).unwrap();
        assert_eq!(got, bundle);
        let outcome = check_against_quote(&got, &quote, INTEL_SGX_ROOT_CA_DER, now).unwrap();
        assert_eq!(outcome.tcb_status, TcbStatus::UpToDate);
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_missing_item_is_named_with_its_status() {
    bounded(async {
        for (path, item) in [
            ("/tdx/certification/v4/tcb", "TCB Info"),
            ("/tdx/certification/v4/qe/identity", "QE Identity"),
            ("/sgx/certification/v4/pckcrl", "PCK CRL"),
            ("/sgx/certification/v4/rootcacrl", "root CA CRL"),
        ] {
            let faults = PcsFaults {
                missing: Some(path),
            };
            let server = PcsServer::start(PcsSet::go_tdx_guest_a1(), faults).await;
            let cache = tempfile::tempdir().unwrap();
            let c = client(&server, cache.path());
            let e = c
                .collateral(A1_FMSPC, PckCa::Platform, at(A1_NOW))
                .await
                .unwrap_err();
            assert!(
                matches!(e, FetchError::Status { item: i, status: 404 } if i == item),
                "{path}: {e:?}"
            );
            assert!(!c.cache_path(A1_FMSPC, PckCa::Platform).exists());
            server.stop().await;
        }
        // An FMSPC the PCS does not know: 404 on the TCB Info.
        let server = PcsServer::start(PcsSet::go_tdx_guest_a1(), PcsFaults::default()).await;
        let cache = tempfile::tempdir().unwrap();
        let c = client(&server, cache.path());
        let e = c
            .collateral("00906ed50000", PckCa::Platform, at(A1_NOW))
            .await
            .unwrap_err();
        assert!(matches!(
            e,
            FetchError::Status {
                item: "TCB Info",
                status: 404
            }
        ));
        // Not a quote: no FMSPC to ask for, and no request.
        let before = server.requests();
        assert!(matches!(
            c.collateral_for_quote(&[0u8; 64], at(A1_NOW)).await,
            Err(FetchError::Quote(_))
        ));
        assert_eq!(server.requests(), before);
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_wrongly_signed_tcb_info_is_rejected() {
    bounded(async {
        let set = PcsSet::go_tdx_guest_a1().with_bad_tcb_signature();
        let server = PcsServer::start(set, PcsFaults::default()).await;
        let cache = tempfile::tempdir().unwrap();
        let now = at(A1_NOW);
        let got = client(&server, cache.path())
            .collateral(A1_FMSPC, PckCa::Platform, now)
            .await
            .unwrap();
        let e = check_against_quote(&got, &a1_quote(), INTEL_SGX_ROOT_CA_DER, now).unwrap_err();
        assert!(
            matches!(
                e,
                FetchError::Rejected(TdxError::CollateralInvalid("TCB Info signature"))
            ),
            "{e:?}"
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn stale_collateral_is_refused_and_not_cached() {
    bounded(async {
        let server = PcsServer::start(PcsSet::go_tdx_guest_a1(), PcsFaults::default()).await;
        let cache = tempfile::tempdir().unwrap();
        let c = client(&server, cache.path());
        // After the TCB Info / QE Identity nextUpdate (2023-07-18 / 2023-07-08).
        let later = at("2023-08-01T00:00:00Z");
        let e = c
            .collateral(A1_FMSPC, PckCa::Platform, later)
            .await
            .unwrap_err();
        assert!(
            matches!(e, FetchError::Stale { next_update, now } if now == later && next_update == at("2023-07-08T07:24:59Z")),
            "{e:?}"
        );
        assert!(!c.cache_path(A1_FMSPC, PckCa::Platform).exists());
        // The verifier, too, refuses the set after nextUpdate.
        let fresh = c.collateral(A1_FMSPC, PckCa::Platform, at(A1_NOW)).await.unwrap();
        assert!(matches!(
            check_against_quote(&fresh, &a1_quote(), INTEL_SGX_ROOT_CA_DER, later),
            Err(FetchError::Rejected(TdxError::CollateralExpired(_)))
        ));
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_unanswered_request_times_out() {
    bounded(async {
        // A listener that accepts and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((tcp, _)) = listener.accept().await {
                held.push(tcp);
            }
        });
        let cache = tempfile::tempdir().unwrap();
        let c = PcsClient::new(&format!("http://{addr}"), Path::new("unused"), cache.path())
            .unwrap()
            .with_timeout(Duration::from_millis(300));
        let e = c
            .collateral(A1_FMSPC, PckCa::Platform, at(A1_NOW))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                FetchError::Timeout {
                    item: "TCB Info",
                    ..
                }
            ),
            "{e:?}"
        );
        hold.abort();
        let _ = hold.await;
    })
    .await;
}

/// A TDX backend that returns tdx-A4's real quote (whatever REPORTDATA is asked for).
struct A4Tee(Vec<u8>);

impl TeeBackend for A4Tee {
    fn platform(&self) -> Platform {
        Platform::Tdx
    }
    fn evidence(&self, _report_data: &[u8; 64]) -> Result<CpuEvidence, TeeError> {
        Ok(CpuEvidence {
            evidence: Some(Evidence::TdxQuote(self.0.clone())),
        })
    }
    fn extend_runtime(&self, _log: &EventLog) -> Result<(), TeeError> {
        Ok(())
    }
    /// The quote's MRCONFIGID (TD report body offset 184, so quote bytes 232..280).
    fn launch_field(&self) -> Result<dait_agent::tee::LaunchField, TeeError> {
        Ok(dait_agent::tee::LaunchField::MrConfigId(
            self.0[232..280].try_into().unwrap(),
        ))
    }
}

/// The agent fetches the collateral for its own quote's platform and embeds it in the bundles it serves;
/// the verifier, offline, takes it from the bundle: valid at the collateral's time, expired after
/// `nextUpdate`.
#[tokio::test]
async fn the_agent_embeds_fetched_collateral_in_its_bundle() {
    bounded(async {
        let (built, dir) = simulated_app(&[], dait_agent::Mode::Attest);
        let quote = decode_quote_file(&dait_testdata::read("tdx/dcap-qvl__v4_b0c06f_quote.bin"));
        let app = Arc::new(dait_agent::http::App {
            tee: Box::new(A4Tee(quote)),
            ..built
        });
        let freshness = Freshness::TenantNonce([7; 32]);
        let policy = Policy::default();
        let now = UnixTime::from_secs(A4_NOW);

        // Before any fetch the bundle carries none.
        let bare = dait_agent::http::bundle(&app, &freshness).unwrap();
        // The keyset is created today, so whole bundles are verified at today's time.
        let today = UnixTime::now();
        assert!(matches!(
            verify_bundle(&bare, &policy, &freshness, today),
            Err(VerifyError::TdxCollateralMissing)
        ));

        let server = PcsServer::start(PcsSet::from_bundle(A4_BUNDLE), PcsFaults::default()).await;
        let c = client(&server, &dir.path().join("collateral"));
        let next = refresh_once(&app, &c, now).await.unwrap().unwrap();
        assert_eq!(server.requests(), 4);
        server.stop().await;

        let bytes = dait_agent::http::bundle(&app, &freshness).unwrap();
        let carried = dait_chain_client::decode_bundle(&bytes)
            .unwrap()
            .collateral
            .unwrap();
        let expected = TdxCollateral::from_bundle_json(&dait_testdata::read(A4_BUNDLE)).unwrap();
        assert_eq!(TdxCollateral::from_proto(&carried).unwrap(), expected);
        // From the bundle alone: its quote verifies against its collateral at the collateral's time and
        // not a second after nextUpdate.
        let decoded = dait_chain_client::decode_bundle(&bytes).unwrap();
        let Some(Evidence::TdxQuote(q)) = decoded.cpu.and_then(|c| c.evidence) else {
            panic!("no TDX quote in the bundle")
        };
        let carried = TdxCollateral::from_proto(&carried).unwrap();
        let v = verify_quote(&q, &carried, &TdxPolicy::default(), now).unwrap();
        assert_eq!(v.tcb_status(), TcbStatus::UpToDate);
        assert!(matches!(
            verify_quote(
                &q,
                &carried,
                &TdxPolicy::default(),
                UnixTime::from_secs(next.as_secs() + 1)
            ),
            Err(TdxError::CollateralExpired(_))
        ));
        // The whole bundle today: the verifier takes the carried collateral, which has expired since.
        let e = verify_bundle(&bytes, &policy, &freshness, today).unwrap_err();
        assert!(
            matches!(e, VerifyError::Tdx(TdxError::CollateralExpired(_))),
            "{e:?}"
        );
    })
    .await;
}

/// `/readyz`'s `collateral_stale`: clear after a successful refresh, set when a refresh fails past the
/// embedded collateral's `nextUpdate` (the PCS is gone), clear again once a refresh succeeds.
#[tokio::test]
async fn readiness_turns_collateral_stale_and_back() {
    bounded(async {
        let (built, dir) = simulated_app(&[], dait_agent::Mode::Attest);
        let quote = decode_quote_file(&dait_testdata::read("tdx/dcap-qvl__v4_b0c06f_quote.bin"));
        let app = Arc::new(dait_agent::http::App {
            tee: Box::new(A4Tee(quote)),
            ..built
        });
        let stale = |codes: Vec<dait_agent::ready::Failure>| {
            codes.iter().any(|f| f.code == "collateral_stale")
        };
        let now = UnixTime::from_secs(A4_NOW);
        let cache = dir.path().join("collateral");

        let server = PcsServer::start(PcsSet::from_bundle(A4_BUNDLE), PcsFaults::default()).await;
        let c = client(&server, &cache);
        let next = refresh_and_report(&app, &c, now).await.unwrap().unwrap();
        assert!(!stale(app.readiness.failures().await));
        server.stop().await;

        // Past nextUpdate the cached set is stale and the PCS does not answer: unready.
        let late = UnixTime::from_secs(next.as_secs() + 1);
        assert!(matches!(
            refresh_and_report(&app, &c, late).await,
            Err(FetchError::Transport { .. })
        ));
        assert!(stale(app.readiness.failures().await));

        // A PCS again, and a refresh at a time the collateral is valid: ready again.
        let server = PcsServer::start(PcsSet::from_bundle(A4_BUNDLE), PcsFaults::default()).await;
        let c = client(&server, &cache);
        refresh_and_report(&app, &c, now).await.unwrap();
        assert!(!stale(app.readiness.failures().await));
        server.stop().await;
    })
    .await;
}
