//! The agent's NVIDIA collateral client against a local RIM service and OCSP responder on 127.0.0.1: the
//! evidence set's RIMs by the ids of the 2023 H100 report, verified and cached; a missing, changed, foreign or
//! stale RIM fails with its own error; OCSP requests for the real device chain are RFC 6960 requests, and an
//! answer that is no OCSP response is refused. (The evidence set holds no real OCSP response; the verifier's
//! own tests cover good, revoked and stale responses from a test CA.)
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{LocalServer, bounded, h100_2023_chain, h100_2023_spdm, ocsp_responder, rim_service};
use dait_agent::collateral::nvidia::{NvidiaClient, RimIds};
use dait_agent::collateral::{FetchError, RimFailure};
use dait_chain_client::proto::GpuEvidence;
use dait_verifier::UnixTime;
use dait_verifier::nvidia::ocsp::{self, OcspError};
use dait_verifier::rim::RimError;

/// Inside every RIM signer's validity window (the verifier's pinned time for these RIMs).
const PINNED: UnixTime = UnixTime::from_secs(1_717_200_000);
const DRIVER: &str = "NV_GPU_DRIVER_GH100_545.00";
const VBIOS: &str = "NV_GPU_VBIOS_1010_0200_882_96005E0001";

fn rims() -> Vec<(String, Vec<u8>)> {
    vec![
        (
            DRIVER.to_owned(),
            dait_testdata::read("nvidia/nvtrust__driver_rim_545.00_test_no_gpu.swidtag"),
        ),
        (
            VBIOS.to_owned(),
            dait_testdata::read("nvidia/nvtrust__vbios_rim_96.00.5E.00.01_test_no_gpu.swidtag"),
        ),
    ]
}

fn client(rim: &LocalServer, ocsp: &LocalServer, cache: &Path) -> NvidiaClient {
    NvidiaClient::new(&rim.url(), &ocsp.url(), Path::new("unused-for-http"), cache)
        .unwrap()
        .with_timeout(Duration::from_secs(20))
}

fn rim_failure(e: FetchError) -> RimFailure {
    match e {
        FetchError::RimRejected { reason, .. } => reason,
        other => panic!("not a RIM rejection: {other:?}"),
    }
}

#[test]
fn rim_ids_follow_nvidias_scheme() {
    let ids = RimIds::of_spdm(&h100_2023_spdm()).unwrap();
    assert_eq!(ids.driver, DRIVER);
    assert_eq!(ids.vbios, VBIOS);
}

#[tokio::test]
async fn rims_are_fetched_verified_and_cached() {
    bounded(async {
        let rim = rim_service(rims(), None).await;
        let ocsp = ocsp_responder(Vec::new(), Arc::default()).await;
        let cache = tempfile::tempdir().unwrap();
        let c = client(&rim, &ocsp, cache.path());
        for (id, xml) in rims() {
            assert_eq!(c.rim(&id, PINNED).await.unwrap(), xml);
        }
        assert_eq!(rim.requests(), 2);
        for (id, xml) in rims() {
            assert_eq!(c.rim(&id, PINNED).await.unwrap(), xml);
        }
        assert_eq!(rim.requests(), 2, "cache hits send nothing");

        // Past the signer's validity the cached RIM no longer verifies: fetched again, and refused.
        let late = UnixTime::from_secs(1_795_305_600);
        let e = c.rim(DRIVER, late).await.unwrap_err();
        assert!(
            matches!(rim_failure(e), RimFailure::Verify(RimError::Chain(_))),
            "stale"
        );
        assert_eq!(rim.requests(), 3);
        rim.stop().await;
        ocsp.stop().await;
    })
    .await;
}

#[tokio::test]
async fn missing_changed_and_foreign_rims_fail_each_with_its_error() {
    bounded(async {
        let ocsp = ocsp_responder(Vec::new(), Arc::default()).await;
        let cache = tempfile::tempdir().unwrap();

        let rim = rim_service(rims(), None).await;
        let e = client(&rim, &ocsp, cache.path())
            .rim("NV_GPU_DRIVER_GH100_999.99", PINNED)
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                FetchError::Status {
                    item: "NVIDIA RIM",
                    status: 404
                }
            ),
            "{e:?}"
        );
        rim.stop().await;

        // One golden measurement changed: the signed digest no longer matches.
        let mut changed = rims();
        let xml = &mut changed[0].1;
        let at = xml.windows(7).position(|w| w == b"Hash1=\"").unwrap() + 7;
        xml[at] = if xml[at] == b'0' { b'1' } else { b'0' };
        let rim = rim_service(changed, None).await;
        let e = client(&rim, &ocsp, cache.path())
            .rim(DRIVER, PINNED)
            .await
            .unwrap_err();
        assert!(
            matches!(rim_failure(e), RimFailure::Verify(RimError::DigestMismatch)),
            "changed"
        );
        rim.stop().await;

        // The service's JSON names another RIM than the one asked for.
        let rim = rim_service(rims(), Some(VBIOS.to_owned())).await;
        let e = client(&rim, &ocsp, cache.path())
            .rim(DRIVER, PINNED)
            .await
            .unwrap_err();
        assert!(matches!(rim_failure(e), RimFailure::Json));
        rim.stop().await;
        assert!(
            !cache.path().join("nvidia").exists(),
            "nothing rejected is cached"
        );
        ocsp.stop().await;
    })
    .await;
}

#[tokio::test]
async fn ocsp_requests_are_rfc6960_and_a_bad_answer_is_refused() {
    bounded(async {
        let rim = rim_service(rims(), None).await;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let responder = ocsp_responder(b"not an OCSP response".to_vec(), seen.clone()).await;
        let cache = tempfile::tempdir().unwrap();
        let c = client(&rim, &responder, cache.path());
        let chain = h100_2023_chain();

        let e = c.ocsp(&chain, PINNED).await.unwrap_err();
        assert!(
            matches!(
                e,
                FetchError::OcspRejected {
                    index: 0,
                    source: OcspError::Malformed
                }
            ),
            "{e:?}"
        );
        // The POSTed body is the request for the leaf, issued by the next certificate.
        let certs = dait_verifier::x509::parse_chain(&chain.concat()).unwrap();
        assert_eq!(
            *seen.lock().unwrap(),
            vec![ocsp::encode_request(&certs[0], &certs[1]).unwrap()]
        );

        // For the GPU path: the RIMs named by the report are filled in, then the OCSP answer is refused.
        let spdm = h100_2023_spdm();
        let mut gpu = GpuEvidence {
            spdm_request: spdm[..37].to_vec(),
            spdm_response: spdm[37..].to_vec(),
            cert_chain: chain,
            ..Default::default()
        };
        assert!(matches!(
            c.embed(&mut gpu, PINNED).await,
            Err(FetchError::OcspRejected { index: 0, .. })
        ));
        assert_eq!(gpu.driver_rim, rims()[0].1);
        assert_eq!(gpu.vbios_rim, rims()[1].1);
        rim.stop().await;
        responder.stop().await;

        let responder = LocalServer::start(Arc::new(|_: &http::request::Parts, _: &[u8]| {
            common::not_found()
        }))
        .await;
        let rim = rim_service(vec![], None).await;
        let e = client(&rim, &responder, cache.path())
            .ocsp(&h100_2023_chain(), PINNED)
            .await
            .unwrap_err();
        rim.stop().await;
        assert!(
            matches!(
                e,
                FetchError::Status {
                    item: "NVIDIA OCSP",
                    status: 404
                }
            ),
            "{e:?}"
        );
        responder.stop().await;
    })
    .await;
}
