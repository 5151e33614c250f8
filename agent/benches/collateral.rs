//! Collateral figures, from local services on 127.0.0.1 serving the evidence set's real files with the real
//! paths and headers; no network beyond the loopback:
//! - fetch time, cold (requests, checks, cache write) and from the cache, for Intel (tdx-A1 from a local PCS),
//!   AMD (the Milan VCEK from a local KDS) and NVIDIA (the driver and VBIOS RIMs from a local RIM service);
//! - evidence bundle sizes without and with the collateral that makes them verifiable offline (TDX, SNP, one
//!   GPU);
//! - agent start (keyset, runtime event log, first evidence) to the first bundle: simulated TEE; and an SNP
//!   guest without a certificate table (emulated configfs-tsm), whose VCEK comes cold from the local KDS.
//!
//! Run: `cargo bench -p dait-agent --features simulated-tee --bench collateral`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    KdsSet, PcsFaults, PcsServer, PcsSet, h100_2023_chain, h100_2023_spdm, milan_report,
    ocsp_responder, rim_service, simulated_config,
};
use dait_agent::collateral::amd::KdsClient;
use dait_agent::collateral::nvidia::{NvidiaClient, RimIds};
use dait_agent::collateral::{PckCa, PcsClient};
use dait_chain_client::proto::{self, cpu_evidence::Evidence};
use dait_chain_client::{Freshness, encode_bundle};
use dait_verifier::UnixTime;

const RUNS: usize = 200;

fn report(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let p50 = us(v[v.len() / 2]);
    let p99 = us(v[v.len() * 99 / 100]);
    println!(
        "{name:<48} p50 {p50:>9.1} us   p99 {p99:>9.1} us   ({} runs)",
        v.len()
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let server = PcsServer::start(PcsSet::go_tdx_guest_a1(), PcsFaults::default()).await;
        let now = UnixTime::parse_rfc3339("2023-07-01T01:00:00Z").unwrap();
        let cache = tempfile::tempdir().unwrap();
        let client = PcsClient::new(&server.url(), Path::new("unused"), cache.path()).unwrap();
        let dir = client.cache_path("50806f000000", PckCa::Platform);
        println!("Intel TDX collateral (tdx-A1, FMSPC 50806f000000) from a local PCS on 127.0.0.1");
        let mut cold = Vec::with_capacity(RUNS);
        for i in 0..RUNS + RUNS / 10 {
            std::fs::remove_dir_all(&dir).ok();
            let t = Instant::now();
            client
                .collateral("50806f000000", PckCa::Platform, now)
                .await
                .unwrap();
            if i >= RUNS / 10 {
                cold.push(t.elapsed());
            }
        }
        report("cold: 4 requests + parse + cache write", cold);
        let before = server.requests();
        let mut warm = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let t = Instant::now();
            client
                .collateral("50806f000000", PckCa::Platform, now)
                .await
                .unwrap();
            warm.push(t.elapsed());
        }
        assert_eq!(server.requests(), before, "a cache hit sends no request");
        report("cache hit: read + parse the PCS directory", warm);
        server.stop().await;

        amd_fetch().await;
        nvidia_fetch().await;
        bundle_sizes();
        start_to_first_evidence().await;
    });
}

/// Cold (delete the cache, fetch, check, store) and cached runs of `f`, reported as `what`.
async fn cold_and_cached<F, Fut>(what: &str, cache: &Path, requests: impl Fn() -> u64, f: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut cold = Vec::with_capacity(RUNS);
    for i in 0..RUNS + RUNS / 10 {
        std::fs::remove_dir_all(cache).ok();
        let t = Instant::now();
        f().await;
        if i >= RUNS / 10 {
            cold.push(t.elapsed());
        }
    }
    report(&format!("{what}: cold"), cold);
    let before = requests();
    let mut warm = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t = Instant::now();
        f().await;
        warm.push(t.elapsed());
    }
    assert_eq!(requests(), before, "a cache hit sends no request");
    report(&format!("{what}: cache hit"), warm);
}

async fn amd_fetch() {
    println!("AMD VCEK (virtee Milan sample) from a local KDS on 127.0.0.1");
    let server = KdsSet::milan().serve().await;
    let cache = tempfile::tempdir().unwrap();
    let client = KdsClient::new(&server.url(), Path::new("unused"), cache.path()).unwrap();
    let report_bytes = milan_report();
    let now = UnixTime::now();
    cold_and_cached(
        "VCEK (1 request, chain + binding checks)",
        &cache.path().join("amd"),
        || server.requests(),
        || async {
            client.vcek(&report_bytes, now).await.unwrap();
        },
    )
    .await;
    server.stop().await;
}

async fn nvidia_fetch() {
    println!("NVIDIA driver + VBIOS RIMs (2023 H100 sample) from a local RIM service on 127.0.0.1");
    let ids = RimIds::of_spdm(&h100_2023_spdm()).unwrap();
    let rims = vec![
        (
            ids.driver.clone(),
            dait_testdata::read("nvidia/nvtrust__driver_rim_545.00_test_no_gpu.swidtag"),
        ),
        (
            ids.vbios.clone(),
            dait_testdata::read("nvidia/nvtrust__vbios_rim_96.00.5E.00.01_test_no_gpu.swidtag"),
        ),
    ];
    let rim = rim_service(rims, None).await;
    let ocsp = ocsp_responder(Vec::new(), Default::default()).await;
    let cache = tempfile::tempdir().unwrap();
    let client =
        NvidiaClient::new(&rim.url(), &ocsp.url(), Path::new("unused"), cache.path()).unwrap();
    // Inside the RIM signers' validity window.
    let now = UnixTime::from_secs(1_717_200_000);
    cold_and_cached(
        "2 RIMs (2 requests, XML-DSig + chain)",
        &cache.path().join("nvidia"),
        || rim.requests(),
        || async {
            client.rim(&ids.driver, now).await.unwrap();
            client.rim(&ids.vbios, now).await.unwrap();
        },
    )
    .await;
    rim.stop().await;
    ocsp.stop().await;
}

fn bundle_sizes() {
    println!("Evidence bundle size (bytes), simulated keyset and runtime event log");
    let (config, _dir) = simulated_config(&[]);
    let app = dait_agent::build_app(&config, dait_agent::Mode::Attest).unwrap();
    let freshness = Freshness::TenantNonce([7; 32]);
    let size =
        |cpu: Evidence, gpus: Vec<proto::GpuEvidence>, collateral: Option<proto::Collateral>| {
            encode_bundle(&proto::EvidenceBundle {
                version: dait_chain_client::PROTOCOL_VERSION,
                keyset: app.keys.keyset_bytes.clone(),
                freshness: Some(freshness.to_proto()),
                cpu: Some(proto::CpuEvidence {
                    evidence: Some(cpu),
                }),
                gpus,
                tpm: None,
                event_log: app.event_log.clone(),
                collateral,
            })
            .len()
        };
    let line = |what: &str, without: usize, with: usize| {
        println!(
            "{what:<48} without {without:>6}   with {with:>6}   (+{})",
            with - without
        );
    };
    let quote = dait_verifier::tdx::decode_quote_file(&dait_testdata::read(
        "tdx/dcap-qvl__v4_b0c06f_quote.bin",
    ));
    let intel = dait_verifier::collateral::TdxCollateral::from_bundle_json(&dait_testdata::read(
        "tdx/dcap-qvl__v4_b0c06f_collateral.json",
    ))
    .unwrap()
    .to_proto();
    let tdx = Evidence::TdxQuote(quote);
    line(
        "TDX (tdx-A4 quote; Intel PCS collateral)",
        size(tdx.clone(), vec![], None),
        size(tdx, vec![], Some(intel)),
    );
    let chain =
        dait_verifier::x509::pem_to_der(&dait_testdata::read("snp/virtee__milan_cert_chain.pem"))
            .unwrap();
    let snp = Evidence::Snp(proto::SnpEvidence {
        report: milan_report(),
        cert_chain: vec![dait_testdata::read("snp/virtee__milan_vcek.der")],
    });
    let amd = proto::Collateral {
        amd_chain: vec![chain[1].clone(), chain[0].clone()],
        ..Default::default()
    };
    line(
        "SNP (Milan report + VCEK; AMD ARK + ASK)",
        size(snp.clone(), vec![], None),
        size(snp.clone(), vec![], Some(amd.clone())),
    );
    let spdm = h100_2023_spdm();
    let bare_gpu = proto::GpuEvidence {
        spdm_request: spdm[..37].to_vec(),
        spdm_response: spdm[37..].to_vec(),
        cert_chain: h100_2023_chain(),
        ..Default::default()
    };
    let gpu = proto::GpuEvidence {
        driver_rim: dait_testdata::read("nvidia/nvtrust__driver_rim_545.00_test_no_gpu.swidtag"),
        vbios_rim: dait_testdata::read(
            "nvidia/nvtrust__vbios_rim_96.00.5E.00.01_test_no_gpu.swidtag",
        ),
        ..bare_gpu.clone()
    };
    line(
        "SNP + 1 GPU (H100 SPDM + chain; + 2 RIMs)",
        size(snp.clone(), vec![bare_gpu], Some(amd.clone())),
        size(snp, vec![gpu], Some(amd)),
    );
}

async fn start_to_first_evidence() {
    const STARTS: usize = 20;
    println!("Agent start (keyset, event log, first evidence) to the first bundle, in-process");
    let freshness = Freshness::TenantNonce([7; 32]);
    let mut simulated = Vec::with_capacity(STARTS);
    for _ in 0..STARTS {
        let (config, _dir) = simulated_config(&[]);
        let t = Instant::now();
        let app = dait_agent::build_app(&config, dait_agent::Mode::Serve).unwrap();
        dait_agent::http::bundle(&app, &freshness).unwrap();
        simulated.push(t.elapsed());
    }
    report("simulated TEE", simulated);

    // An SNP guest whose host gives no certificate table: the report of the emulated configfs-tsm tree (the
    // agent's report_data written in), its VCEK cold from the local KDS, then the first bundle.
    let server = KdsSet::milan().serve().await;
    let mut snp = Vec::with_capacity(STARTS);
    for _ in 0..STARTS {
        let (config, dir) = simulated_config(&[]);
        let tsm = tempfile::tempdir().unwrap();
        let t = Instant::now();
        let app = dait_agent::build_app(&config, dait_agent::Mode::Serve).unwrap();
        let mut app = std::sync::Arc::try_unwrap(app).ok().unwrap();
        let mut report_bytes = milan_report();
        report_bytes[0x50..0x90].copy_from_slice(&app.keys.report_data(&freshness));
        let entry = tsm.path().join("dait");
        std::fs::create_dir(&entry).unwrap();
        for (name, bytes) in [
            ("provider", &b"sev_guest\n"[..]),
            ("generation", b"1\n"),
            ("inblob", b""),
            ("outblob", &report_bytes),
            ("auxblob", b""),
        ] {
            std::fs::write(entry.join(name), bytes).unwrap();
        }
        let cache = dir.path().join("collateral");
        KdsClient::new(&server.url(), Path::new("unused"), &cache)
            .unwrap()
            .vcek(&report_bytes, UnixTime::now())
            .await
            .unwrap();
        app.tee = Box::new(
            dait_agent::tee::TsmBackend::open(tsm.path(), dait_agent::tee::Platform::Snp)
                .unwrap()
                .with_vcek_cache(&cache),
        );
        dait_agent::http::bundle(&app, &freshness).unwrap();
        snp.push(t.elapsed());
    }
    report("SNP without cert table, VCEK from local KDS", snp);
    server.stop().await;
}
