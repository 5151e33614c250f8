//! `dait-verify evidence --gpu-report / --tpm-quote` on the real evidence set (feature `cli`).
#![cfg(feature = "cli")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::process::Command;

fn ev(rel: &str) -> String {
    dait_testdata::path(rel).display().to_string()
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dait-verify"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

const NONCE_2023: &str = "4cff7f5380ead8fad8ec2c531c110aca4302a88f603792801a8ca29ee151af2e";

fn gpu_args(at: &str, nonce: &str) -> Vec<String> {
    [
        "evidence",
        "--gpu-report",
        &ev("nvidia/nvtrust__h100_2023_report.hex"),
        "--gpu-chain",
        &ev("nvidia/nvtrust__h100_2023_cert_chain.pem"),
        "--driver-rim",
        &ev("nvidia/nvtrust__driver_rim_545.00_test_no_gpu.swidtag"),
        "--vbios-rim",
        &ev("nvidia/nvtrust__vbios_rim_96.00.5E.00.01_test_no_gpu.swidtag"),
        "--gpu-nonce",
        nonce,
        "--at",
        at,
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn gpu_report_with_rims_verifies_when_ocsp_is_waived() {
    let mut a = gpu_args("2024-06-01T00:00:00Z", NONCE_2023);
    a.push("--dangerous-skip-gpu-ocsp".into());
    let args: Vec<&str> = a.iter().map(String::as_str).collect();
    let (code, out, err) = run(&args);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let gpu = &v["evidence"][0];
    assert_eq!(gpu["kind"], "nvidia-gpu");
    assert_eq!(gpu["claims"]["driver_version"], "545.00");
    assert_eq!(gpu["claims"]["padding"], 0);
    assert_eq!(
        gpu["claims"]["rim_matched_indices"]
            .as_array()
            .unwrap()
            .len(),
        33
    );
}

#[test]
fn gpu_report_is_rejected_without_ocsp_by_default_and_with_a_wrong_nonce() {
    let a = gpu_args("2024-06-01T00:00:00Z", NONCE_2023);
    let args: Vec<&str> = a.iter().map(String::as_str).collect();
    let (code, out, _) = run(&args);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("OCSP"), "{out}");
    let mut a = gpu_args("2024-06-01T00:00:00Z", &"00".repeat(32));
    a.push("--dangerous-skip-gpu-ocsp".into());
    let args: Vec<&str> = a.iter().map(String::as_str).collect();
    let (code, out, _) = run(&args);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("nonce"), "{out}");
}

#[test]
fn gpu_report_without_a_nonce_is_a_usage_error() {
    let (code, _, err) = run(&[
        "evidence",
        "--gpu-report",
        &ev("nvidia/nvtrust__h100_2023_report.hex"),
        "--gpu-chain",
        &ev("nvidia/nvtrust__h100_2023_cert_chain.pem"),
    ]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn tpm_quote_verifies_and_a_wrong_nonce_is_rejected() {
    let challenge = hex::encode(b"challenge");
    let base = [
        "evidence",
        "--tpm-quote",
        &ev("vtpm/kinvolk__azure_tpm_quote.bincode.bin"),
        "--ak-pub",
        &ev("vtpm/kinvolk__azure_ak_pub.pem"),
        "--json",
        "--tpm-qualifying-data",
    ]
    .map(str::to_owned);
    let mut a: Vec<&str> = base.iter().map(String::as_str).collect();
    a.push(&challenge);
    let (code, out, err) = run(&a);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["evidence"][0]["claims"]["pcrs"]
            .as_object()
            .unwrap()
            .len(),
        24
    );
    let mut a: Vec<&str> = base.iter().map(String::as_str).collect();
    a.push("01020304");
    let (code, out, _) = run(&a);
    assert_eq!(code, 1, "{out}");
    // The sample's HCL report binds another AK: rejected.
    let hcl = ev("snp/kinvolk__azure_hcl_report_snp.bin");
    let mut a: Vec<&str> = base.iter().map(String::as_str).collect();
    a.extend([challenge.as_str(), "--hcl-report", &hcl]);
    let (code, out, _) = run(&a);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("attestation key"), "{out}");
}
