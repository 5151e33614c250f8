//! Cost of NVIDIA GPU evidence and vTPM quote verification on the real samples.
//!
//! Run: `cargo bench -p dait-verifier --bench nvidia_tpm` (evidence from the
//! `dait-testdata` crate).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use dait_testdata::read;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use dait_verifier::UnixTime;
use dait_verifier::nvidia::{self, GpuEvidenceInput, GpuPolicy, NvidiaRoots};
use dait_verifier::{rim, tpm};

fn bench(c: &mut Criterion) {
    let spdm = hex::decode(
        String::from_utf8(read("nvidia/nvtrust__h100_2023_report.hex"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let chain = read("nvidia/nvtrust__h100_2023_cert_chain.pem");
    let driver = read("nvidia/nvtrust__driver_rim_545.00_test_no_gpu.swidtag");
    let vbios = read("nvidia/nvtrust__vbios_rim_96.00.5E.00.01_test_no_gpu.swidtag");
    let nonce: [u8; 32] =
        hex::decode("4cff7f5380ead8fad8ec2c531c110aca4302a88f603792801a8ca29ee151af2e")
            .unwrap()
            .try_into()
            .unwrap();
    let now = UnixTime::from_secs(1_717_200_000);
    let roots = NvidiaRoots::pinned();
    let with_rims = GpuPolicy {
        require_ocsp: false,
        ..GpuPolicy::default()
    };
    let no_rims = GpuPolicy {
        require_ocsp: false,
        require_rim_match: false,
        ..GpuPolicy::default()
    };
    let input = GpuEvidenceInput {
        spdm: &spdm,
        cert_chain_pem: &chain,
        driver_rim: Some(&driver),
        vbios_rim: Some(&vbios),
        ocsp_responses: &[],
    };
    let bare = GpuEvidenceInput {
        driver_rim: None,
        vbios_rim: None,
        ..input
    };
    let inputs = [input; 8];
    let nonces = [nonce; 8];

    let mut g = c.benchmark_group("nvidia");
    g.bench_function("spdm_parse", |b| {
        b.iter(|| nvidia::spdm::parse(black_box(&spdm)).unwrap())
    });
    g.bench_function("gpu_without_rims", |b| {
        b.iter(|| nvidia::verify_gpu(black_box(&bare), &nonce, &no_rims, &roots, now).unwrap())
    });
    g.bench_function("rim_verify_driver", |b| {
        b.iter(|| rim::verify_rim(black_box(&driver), &roots.rim_signing, now).unwrap())
    });
    g.bench_function("gpu_with_2_rims", |b| {
        b.iter(|| nvidia::verify_gpu(black_box(&input), &nonce, &with_rims, &roots, now).unwrap())
    });
    g.bench_function("gpus_x8_with_rims_shared", |b| {
        b.iter(|| {
            nvidia::verify_gpus(black_box(&inputs), &nonces, &with_rims, &roots, now).unwrap()
        })
    });
    g.finish();

    let quote = read("vtpm/kinvolk__azure_tpm_quote.bincode.bin");
    let ak = tpm::AkPublic::from_spki_pem(
        &String::from_utf8(read("vtpm/kinvolk__azure_ak_pub.pem")).unwrap(),
    )
    .unwrap();
    let q = tpm::parse_azure_quote(&quote).unwrap();
    c.bench_function("tpm/verify_quote", |b| {
        b.iter(|| tpm::verify_quote(black_box(&q.input()), &ak, b"challenge").unwrap())
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
