//! Bundle verification cost: one TDX quote with its collateral plus 8 GPU reports, next to dcap-qvl's quote
//! verification alone, measured in the same run.
//!
//! Run: `cargo bench -p dait-verifier --bench bundle` (one thread; the evidence set comes from the
//! `dait-testdata` crate).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use dait_testdata::read;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use dait_verifier::UnixTime;
use dait_verifier::collateral::TdxCollateral;
use dait_verifier::nvidia::{self, GpuEvidenceInput, GpuPolicy, NvidiaRoots};
use dait_verifier::snp;
use dait_verifier::tdx::{self, INTEL_SGX_ROOT_CA_DER, TcbStatus, TdxPolicy};

/// dcap-qvl's own collateral type, built from the same JSON bundle (hex fields decoded).
fn qvl_collateral(json: &[u8]) -> dcap_qvl::QuoteCollateralV3 {
    let v: serde_json::Value = serde_json::from_slice(json).unwrap();
    let s = |k: &str| v[k].as_str().unwrap().to_owned();
    let h = |k: &str| hex::decode(v[k].as_str().unwrap()).unwrap();
    dcap_qvl::QuoteCollateralV3 {
        pck_crl_issuer_chain: s("pck_crl_issuer_chain"),
        root_ca_crl: h("root_ca_crl"),
        pck_crl: h("pck_crl"),
        tcb_info_issuer_chain: s("tcb_info_issuer_chain"),
        tcb_info: s("tcb_info"),
        tcb_info_signature: h("tcb_info_signature"),
        qe_identity_issuer_chain: s("qe_identity_issuer_chain"),
        qe_identity: s("qe_identity"),
        qe_identity_signature: h("qe_identity_signature"),
        pck_certificate_chain: None,
    }
}

fn bench(c: &mut Criterion) {
    // TDX: dcap-qvl sample (UpToDate at min(nextUpdate) - 1 s).
    let quote = read("tdx/dcap-qvl__v4_b0c06f_quote.bin");
    let collateral_json = read("tdx/dcap-qvl__v4_b0c06f_collateral.json");
    let tdx_now = UnixTime::from_secs(1_752_919_234);
    let policy = TdxPolicy::default();

    // GPUs: the 2023 H100 report with its driver and VBIOS RIMs, 8 times (no OCSP response exists in the
    // evidence set, so OCSP is not required here); inside the RIM signers' validity.
    let spdm = hex::decode(
        String::from_utf8(read("nvidia/nvtrust__h100_2023_report.hex"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let chain = read("nvidia/nvtrust__h100_2023_cert_chain.pem");
    let driver = read("nvidia/nvtrust__driver_rim_545.00_test_no_gpu.swidtag");
    let vbios = read("nvidia/nvtrust__vbios_rim_96.00.5E.00.01_test_no_gpu.swidtag");
    let gpu_nonce: [u8; 32] =
        hex::decode("4cff7f5380ead8fad8ec2c531c110aca4302a88f603792801a8ca29ee151af2e")
            .unwrap()
            .try_into()
            .unwrap();
    let gpu_now = UnixTime::from_secs(1_717_200_000);
    let gpu_policy = GpuPolicy {
        require_ocsp: false,
        ..GpuPolicy::default()
    };
    let roots = NvidiaRoots::pinned();
    let input = GpuEvidenceInput {
        spdm: &spdm,
        cert_chain_pem: &chain,
        driver_rim: Some(&driver),
        vbios_rim: Some(&vbios),
        ocsp_responses: &[],
    };
    let inputs = [input; 8];
    let nonces = [gpu_nonce; 8];

    // Sanity: everything verifies before it is timed.
    let collateral = TdxCollateral::from_bundle_json(&collateral_json).unwrap();
    assert_eq!(
        tdx::verify_quote(&quote, &collateral, &policy, tdx_now)
            .unwrap()
            .tcb_status(),
        TcbStatus::UpToDate
    );
    assert_eq!(
        nvidia::verify_gpus(&inputs, &nonces, &gpu_policy, &roots, gpu_now)
            .unwrap()
            .len(),
        8
    );
    let qvl = qvl_collateral(&collateral_json);
    let qvl_verifier = dcap_qvl::verify::QuoteVerifier::new(INTEL_SGX_ROOT_CA_DER.to_vec());
    assert_eq!(
        qvl_verifier
            .verify(&quote, &qvl, tdx_now.as_secs())
            .unwrap()
            .status,
        TcbStatus::UpToDate.as_str()
    );

    let mut g = c.benchmark_group("bundle");
    g.bench_function("dcap_qvl_verify_alone", |b| {
        b.iter(|| {
            qvl_verifier
                .verify(black_box(&quote), black_box(&qvl), tdx_now.as_secs())
                .unwrap()
        })
    });
    g.bench_function("tdx_quote_with_collateral_json", |b| {
        b.iter(|| {
            let c = TdxCollateral::from_bundle_json(black_box(&collateral_json)).unwrap();
            tdx::verify_quote(black_box(&quote), &c, &policy, tdx_now).unwrap()
        })
    });
    g.bench_function("gpu_report_x1", |b| {
        b.iter(|| {
            nvidia::verify_gpus(
                black_box(&inputs[..1]),
                &nonces[..1],
                &gpu_policy,
                &roots,
                gpu_now,
            )
            .unwrap()
        })
    });
    g.bench_function("gpu_reports_x8", |b| {
        b.iter(|| {
            nvidia::verify_gpus(black_box(&inputs), &nonces, &gpu_policy, &roots, gpu_now).unwrap()
        })
    });
    g.bench_function("tdx_plus_8_gpus", |b| {
        b.iter(|| {
            let c = TdxCollateral::from_bundle_json(black_box(&collateral_json)).unwrap();
            let t = tdx::verify_quote(black_box(&quote), &c, &policy, tdx_now).unwrap();
            let g = nvidia::verify_gpus(black_box(&inputs), &nonces, &gpu_policy, &roots, gpu_now)
                .unwrap();
            (t, g)
        })
    });
    // SNP: the dstack Milan v3 report with its VCEK, AMD's ASK and ARK.
    let snp_report = read("snp/dstack__milan_v3_report.bin");
    let (vcek, ask, ark) = (
        read("snp/dstack__milan_vcek.pem"),
        read("snp/dstack__milan_ask.pem"),
        read("snp/amd_milan_ark.pem"),
    );
    let certs = snp::SnpCerts {
        ark: &ark,
        ask: &ask,
        vek: &vcek,
    };
    let snp_now = UnixTime::from_secs(1_793_491_200);
    let snp_policy = snp::SnpPolicy::default();
    assert!(snp::verify_report(&snp_report, &certs, &snp_policy, snp_now).is_ok());
    g.bench_function("snp_report_with_chain", |b| {
        b.iter(|| snp::verify_report(black_box(&snp_report), &certs, &snp_policy, snp_now).unwrap())
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
