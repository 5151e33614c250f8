//! `dait-verify evidence` end to end on the real evidence set (feature `cli`).
#![cfg(feature = "cli")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use dait_chain_client::WireMessage as _;
use std::path::PathBuf;
use std::process::Command;

fn evidence_dir() -> PathBuf {
    let dir = match std::env::var_os("DAIT_EVIDENCE_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/evidence"),
    };
    assert!(
        dir.join("manifest.json").is_file(),
        "evidence set not found at {} (set DAIT_EVIDENCE_DIR to the directory holding manifest.json)",
        dir.display()
    );
    dir
}

fn ev(rel: &str) -> String {
    evidence_dir().join(rel).display().to_string()
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

#[test]
fn tdx_bundle_verifies_exit_0_with_json() {
    let (code, out, err) = run(&[
        "evidence",
        "--tdx-quote",
        &ev("tdx/dcap-qvl__v4_b0c06f_quote.bin"),
        "--collateral",
        &ev("tdx/dcap-qvl__v4_b0c06f_collateral.json"),
        "--at",
        "2025-07-19T10:00:34Z",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verified"], true);
    assert_eq!(v["at"], 1_752_919_234);
    assert_eq!(v["evidence"][0]["claims"]["tcb_status"], "UpToDate");
    assert_eq!(
        v["evidence"][0]["claims"]["mr_td"],
        "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
    );
}

#[test]
fn tdx_out_of_date_is_rejected_exit_1_unless_accepted() {
    let base = [
        "evidence",
        "--tdx-quote",
        &ev("tdx/dcap-rs__gcp_v4_00806f050000_quote_8000B.bin"),
        "--collateral",
        &ev("tdx/dcap-rs__gcp_collateral_bundle_feb2025.qvl.json"),
        "--at",
        "1739419232",
    ]
    .map(String::from);
    let args: Vec<&str> = base.iter().map(String::as_str).collect();
    let (code, out, _) = run(&args);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("REJECTED") && out.contains("OutOfDate"),
        "{out}"
    );
    let mut more = args.clone();
    more.extend([
        "--accept-tcb",
        "OutOfDate",
        "--allow-advisory",
        "INTEL-SA-00960",
        "--allow-advisory",
        "INTEL-SA-00982",
        "--allow-advisory",
        "INTEL-SA-00986",
    ]);
    let (code, out, _) = run(&more);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("VERIFIED"), "{out}");
}

#[test]
fn tdx_collateral_directory_of_pcs_files() {
    // A directory holding one PCS set (copied from the evidence set into a temporary directory).
    let dir = std::env::temp_dir().join(format!("dait-verify-pcs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in [
        "go-tdx-guest__spr-e4_tcbinfo_50806f000000.json",
        "go-tdx-guest__qe_identity_2023-06.json",
        "go-tdx-guest__pck_platform_crl_2023-06.der",
        "go-tdx-guest__root_ca_crl_2023-04.der",
        "go-tdx-guest__tcb_info_issuer_chain.pem",
        "go-tdx-guest__qe_identity_issuer_chain.pem",
        "go-tdx-guest__pck_crl_issuer_chain.pem",
    ] {
        std::fs::copy(evidence_dir().join("tdx").join(f), dir.join(f)).unwrap();
    }
    // The A1 quote without its non-zero test suffix.
    let q = std::fs::read(evidence_dir().join("tdx/go-tdx-guest__spr-e4_v4_quote.bin")).unwrap();
    let quote = dir.join("quote.bin");
    std::fs::write(&quote, &q[..q.len() - 39]).unwrap();
    let (code, out, err) = run(&[
        "evidence",
        "--tdx-quote",
        quote.to_str().unwrap(),
        "--collateral",
        dir.to_str().unwrap(),
        "--at",
        "2023-07-01T01:00:00Z",
    ]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("no TCB level"), "{out}");
}

#[test]
fn snp_report_with_default_amd_chain() {
    let (code, out, err) = run(&[
        "evidence",
        "--snp-report",
        &ev("snp/dstack__milan_v3_report.bin"),
        "--vcek",
        &ev("snp/dstack__milan_vcek.pem"),
        "--at",
        "2026-11-01T00:00:00Z",
        "--report-data",
        "6174746573742d746573742d666978747572652d3230323600000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["evidence"][0]["claims"]["product"], "Milan");
    // A wrong nonce is a rejection (exit 1), not an error.
    let (code, out, _) = run(&[
        "evidence",
        "--snp-report",
        &ev("snp/dstack__milan_v3_report.bin"),
        "--vcek",
        &ev("snp/dstack__milan_vcek.pem"),
        "--at",
        "2026-11-01T00:00:00Z",
        "--report-data",
        &"00".repeat(64),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("REPORT_DATA"), "{out}");
}

#[test]
fn snp_explicit_chain_files_and_a_wrong_root() {
    let (code, out, _) = run(&[
        "evidence",
        "--snp-report",
        &ev("snp/virtee__milan_report.hex"),
        "--vcek",
        &ev("snp/virtee__milan_vcek.der"),
        "--ask",
        &ev("snp/amd_milan_ask.pem"),
        "--ark",
        &ev("snp/amd_milan_ark.pem"),
        "--at",
        "2025-01-01T00:00:00Z",
    ]);
    assert_eq!(code, 0, "{out}");
    // The Turin ARK does not sign the Milan ASK.
    let (code, out, _) = run(&[
        "evidence",
        "--snp-report",
        &ev("snp/virtee__milan_report.hex"),
        "--vcek",
        &ev("snp/virtee__milan_vcek.der"),
        "--ask",
        &ev("snp/amd_milan_ask.pem"),
        "--ark",
        &ev("snp/amd_turin_ark.pem"),
        "--at",
        "2025-01-01T00:00:00Z",
    ]);
    assert_eq!(code, 1, "{out}");
}

#[test]
fn usage_and_io_errors_exit_2() {
    assert_eq!(run(&["evidence", "--bogus"]).0, 2);
    assert_eq!(run(&["evidence"]).0, 2);
    assert_eq!(
        run(&[
            "evidence",
            "--tdx-quote",
            "/nonexistent/q",
            "--collateral",
            "/nonexistent/c"
        ])
        .0,
        2
    );
    assert_eq!(
        run(&[
            "evidence",
            "--snp-report",
            "x",
            "--vcek",
            "y",
            "--at",
            "yesterday"
        ])
        .0,
        2
    );
}

fn real_samples_reference() -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/reference/real-samples.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn reference_policy_pins_measurements() {
    let dir = std::env::temp_dir().join(format!("dait-verify-ref-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.json");
    let bad = dir.join("bad.json");
    let reference = real_samples_reference();
    let mut changed = reference.clone();
    changed["snp"]["shapes"][0]["measurement"] = "00".repeat(48).into();
    std::fs::write(&good, reference.to_string()).unwrap();
    std::fs::write(&bad, changed.to_string()).unwrap();
    let args = |p: &str| {
        vec![
            "evidence".to_string(),
            "--snp-report".into(),
            ev("snp/dstack__milan_v3_report.bin"),
            "--vcek".into(),
            ev("snp/dstack__milan_vcek.pem"),
            "--at".into(),
            "2026-11-01T00:00:00Z".into(),
            "--policy".into(),
            p.to_string(),
        ]
    };
    let g = args(good.to_str().unwrap());
    let b = args(bad.to_str().unwrap());
    let (code_good, out_good, _) = run(&g.iter().map(String::as_str).collect::<Vec<_>>());
    let (code_bad, out_bad, _) = run(&b.iter().map(String::as_str).collect::<Vec<_>>());
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(code_good, 0, "{out_good}");
    assert_eq!(code_bad, 1, "{out_bad}");
    assert!(out_bad.contains("launch measurement"), "{out_bad}");
}

#[test]
fn a_partial_reference_file_is_a_usage_error() {
    let dir = std::env::temp_dir().join(format!("dait-verify-partial-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let partial = dir.join("partial.json");
    std::fs::write(&partial, r#"{"schema": 1, "release": "x"}"#).unwrap();
    let (code, _, err) = run(&[
        "evidence",
        "--snp-report",
        &ev("snp/dstack__milan_v3_report.bin"),
        "--vcek",
        &ev("snp/dstack__milan_vcek.pem"),
        "--policy",
        partial.to_str().unwrap(),
    ]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(code, 2, "{err}");
}

/// A bundle around the real v4 quote: every check passes up to the keyset binding, which a quote made
/// elsewhere cannot satisfy, so the CLI rejects it (exit 1) naming that check.
#[test]
fn bundle_around_a_real_quote_is_rejected_at_the_keyset_binding() {
    use dait_chain_client::proto::{self, cpu_evidence::Evidence};
    let quote = dait_verifier::tdx::decode_quote_file(
        &std::fs::read(ev("tdx/dcap-qvl__v4_b0c06f_quote.bin")).unwrap(),
    );
    let keyset = dait_chain_client::Keyset {
        receipt_key: dait_chain_client::HostSigningKey::from_bytes(&[3; 32])
            .unwrap()
            .verifying_key()
            .to_sec1(),
        ohttp_key_config: vec![1],
        tls_spki: vec![2],
        chain_id: 1,
        settlement: dait_chain_client::Address([9; 20]),
        created_at: 1_752_919_000,
        boot_id: [1; 16],
        host_account: dait_chain_client::Address::ZERO,
    };
    let nonce = [5u8; 32];
    let bytes = dait_chain_client::encode_bundle(&proto::EvidenceBundle {
        version: 1,
        keyset: keyset.encode(),
        freshness: Some(dait_chain_client::Freshness::TenantNonce(nonce).to_proto()),
        cpu: Some(proto::CpuEvidence {
            evidence: Some(Evidence::TdxQuote(quote)),
        }),
        gpus: vec![],
        tpm: None,
        event_log: vec![],
        collateral: None,
    });
    let dir = std::env::temp_dir().join(format!("dait-verify-bundle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bundle.pb");
    std::fs::write(&file, bytes).unwrap();
    let f = file.to_str().unwrap();
    let hex_nonce = "05".repeat(32);
    let collateral = ev("tdx/dcap-qvl__v4_b0c06f_collateral.json");
    let (code, out, err) = run(&[
        "evidence",
        "--bundle",
        f,
        "--nonce",
        &hex_nonce,
        "--collateral",
        &collateral,
        "--at",
        "1752919234",
        "--json",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verified"], false);
    assert!(
        v["evidence"][0]["error"]
            .as_str()
            .unwrap()
            .contains("report_data does not bind"),
        "{out}"
    );
    // Without collateral (none in the bundle either): rejected, naming it.
    let (code, out, _) = run(&[
        "evidence",
        "--bundle",
        f,
        "--nonce",
        &hex_nonce,
        "--at",
        "1752919234",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no TDX collateral"), "{out}");
    // --bundle without --nonce is a usage error.
    let (code, _, _) = run(&["evidence", "--bundle", f]);
    assert_eq!(code, 2);
    std::fs::remove_dir_all(&dir).unwrap();
}
