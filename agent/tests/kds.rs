//! The agent's AMD KDS client against a local KDS on 127.0.0.1 serving the real Milan VCEK, ASK and ARK of the
//! evidence set with the real paths and content types: fetched, checked, cached; a missing, wrongly signed,
//! foreign or stale item fails with its own error.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{KdsSet, LocalServer, bounded, milan_report};
use dait_agent::collateral::FetchError;
use dait_agent::collateral::amd::{KdsClient, cached_vcek};
use dait_verifier::UnixTime;
use dait_verifier::snp::{SnpCert, SnpError, SnpProduct};

fn client(server: &LocalServer, cache: &Path) -> KdsClient {
    KdsClient::new(&server.url(), Path::new("unused-for-http"), cache)
        .unwrap()
        .with_timeout(Duration::from_secs(20))
}

fn vcek_not_after() -> u64 {
    let der = dait_testdata::read("snp/virtee__milan_vcek.der");
    dait_verifier::x509::parse_der(&der, 0)
        .unwrap()
        .tbs_certificate
        .validity
        .not_after
        .to_unix_duration()
        .as_secs()
}

fn rejected(e: &FetchError) -> (&'static str, SnpError) {
    match e {
        FetchError::AmdRejected { item, source } => (item, source.clone()),
        other => panic!("not a rejection: {other:?}"),
    }
}

#[tokio::test]
async fn vcek_is_fetched_checked_and_cached() {
    bounded(async {
        let server = KdsSet::milan().serve().await;
        let cache = tempfile::tempdir().unwrap();
        let c = client(&server, cache.path());
        let report = milan_report();
        let now = UnixTime::now();
        assert_eq!(cached_vcek(cache.path(), &report), None);

        let v = c.vcek(&report, now).await.unwrap();
        assert_eq!(v.product, SnpProduct::Milan);
        assert_eq!(v.der, dait_testdata::read("snp/virtee__milan_vcek.der"));
        assert_eq!(
            server.requests(),
            1,
            "one request: the VCEK at the report's TCB"
        );
        assert_eq!(cached_vcek(cache.path(), &report), Some(v.der.clone()));

        // A cache hit sends nothing.
        assert_eq!(c.vcek(&report, now).await.unwrap(), v);
        assert_eq!(server.requests(), 1);

        // The ASK and ARK verify under the pinned ARK and sign the VCEK; the evidence set has no AMD CRL, so
        // the local KDS has none: its absence is an error of its own.
        let e = c.collateral(&v, now).await.unwrap_err();
        assert!(
            matches!(
                e,
                FetchError::Status {
                    item: "AMD CRL",
                    status: 404
                }
            ),
            "{e:?}"
        );
        assert_eq!(server.requests(), 3);
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn missing_foreign_wrongly_signed_and_stale_vceks_fail_each_with_its_error() {
    bounded(async {
        let report = milan_report();
        let now = UnixTime::now();

        // Missing: every generation answers 404 (the v2 report names no CPUID, so each is asked).
        let mut set = KdsSet::milan();
        set.vcek = None;
        let server = set.serve().await;
        let cache = tempfile::tempdir().unwrap();
        let e = client(&server, cache.path())
            .vcek(&report, now)
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                FetchError::Status {
                    item: "AMD VCEK",
                    status: 404
                }
            ),
            "{e:?}"
        );
        assert_eq!(server.requests(), 3, "Milan, Genoa, Turin");
        server.stop().await;

        // Another chip's VCEK (go-sev-guest's Milan sample): signed by AMD, but for another chip at another
        // TCB; the first binding check (the SPLs) refuses it.
        let mut set = KdsSet::milan();
        let query = set.vcek.as_ref().unwrap().0.clone();
        set.vcek = Some((
            query.clone(),
            dait_testdata::read("snp/go-sev-guest__milan_vcek.der"),
        ));
        let server = set.serve().await;
        let e = client(&server, cache.path())
            .vcek(&report, now)
            .await
            .unwrap_err();
        assert_eq!(
            rejected(&e),
            (
                "VCEK",
                SnpError::TcbMismatch {
                    component: "bootloader"
                }
            )
        );
        server.stop().await;

        // A VCEK not signed by the Milan ASK (virtee's Turin VCEK served as Milan's).
        let mut set = KdsSet::milan();
        set.vcek = Some((query, dait_testdata::read("snp/virtee__turin_vcek.der")));
        let server = set.serve().await;
        let e = client(&server, cache.path())
            .vcek(&report, now)
            .await
            .unwrap_err();
        assert_eq!(
            rejected(&e),
            ("VCEK", SnpError::ChainSignature(SnpCert::Vek))
        );
        assert_eq!(
            cached_vcek(cache.path(), &report),
            None,
            "nothing rejected is cached"
        );
        server.stop().await;

        // Stale: a second past the VCEK's notAfter, fetched or cached, it is refused.
        let server = KdsSet::milan().serve().await;
        let c = client(&server, cache.path());
        c.vcek(&report, now).await.unwrap();
        let late = UnixTime::from_secs(vcek_not_after() + 1);
        let e = c.vcek(&report, late).await.unwrap_err();
        assert_eq!(rejected(&e), ("VCEK", SnpError::Expired(SnpCert::Vek)));
        assert_eq!(
            server.requests(),
            2,
            "the stale cached VCEK is fetched again"
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn foreign_chain_wrong_type_and_unsigned_crl_fail_each_with_its_error() {
    bounded(async {
        let report = milan_report();
        let now = UnixTime::now();
        let cache = tempfile::tempdir().unwrap();
        let server = KdsSet::milan().serve().await;
        let vcek = client(&server, cache.path()).vcek(&report, now).await.unwrap();
        server.stop().await;

        // Genoa's ASK and ARK served for Milan: they do not sign the Milan VCEK.
        let mut set = KdsSet::milan();
        set.cert_chain_pem = Some(dait_testdata::read("snp/go-sev-guest__ask_ark_genoa.pem"));
        let server = set.serve().await;
        let e = client(&server, cache.path())
            .collateral(&vcek, now)
            .await
            .unwrap_err();
        assert_eq!(
            rejected(&e),
            ("AMD ASK/ARK", SnpError::ChainSignature(SnpCert::Vek))
        );
        server.stop().await;

        // The chain as another content type than the KDS's.
        let mut set = KdsSet::milan();
        set.chain_type = "text/html";
        let server = set.serve().await;
        let e = client(&server, cache.path())
            .collateral(&vcek, now)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, FetchError::ContentType { item: "AMD ASK/ARK", got } if got == "text/html"),
            "{e:?}"
        );
        server.stop().await;

        // A real CRL that AMD's ARK did not sign (Intel's SGX root CA CRL), and bytes that are no CRL.
        let intel = dait_verifier::collateral::TdxCollateral::from_bundle_json(&dait_testdata::read(
            "tdx/dcap-qvl__v4_b0c06f_collateral.json",
        ))
        .unwrap()
        .to_proto()
        .root_ca_crl;
        for (crl, expected) in [
            (intel, SnpError::CrlSignature),
            (b"<html>".to_vec(), SnpError::CrlMalformed),
        ] {
            let mut set = KdsSet::milan();
            set.crl_der = Some(crl);
            let server = set.serve().await;
            let e = client(&server, cache.path())
                .collateral(&vcek, now)
                .await
                .unwrap_err();
            assert_eq!(rejected(&e), ("AMD CRL", expected));
            server.stop().await;
        }
    })
    .await;
}
