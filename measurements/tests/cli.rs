//! The `dait-measure` binary end to end: `reference` writes the reference file from artefacts and shapes (and the
//! committed `reference/0.0.0-synthetic.json` is exactly what it writes from the pinned synthetic inputs),
//! `diff` accepts matching values and names each changed field with exit code 1, `replay` checks a real log
//! against its quote.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dait_testdata::evidence_dir;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dait_measure::reported::ReportedValues;
use dait_measure::{ReferenceMeasurements, snp};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dait-measure"))
}

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Writes the synthetic inputs into `dir` and returns the `reference` arguments that use them.
fn synthetic_inputs(dir: &Path) -> Vec<String> {
    let ovmf = dir.join("OVMF-amdsev.fd");
    std::fs::write(
        &ovmf,
        snp::synthetic_ovmf(
            64,
            snp::AMDSEV_SECTIONS,
            Some(snp::AMDSEV_HASHES_TABLE),
            snp::AMDSEV_RESET_EIP,
        ),
    )
    .unwrap();
    let vectors = crate_dir().join("tests/vectors");
    let initrd = dir.join("initrd.img");
    std::fs::write(&initrd, b"synthetic initrd").unwrap();
    [
        "reference",
        "--release",
        "0.0.0-synthetic",
        "--kernel",
        vectors.join("tiny-pe.efi").to_str().unwrap(),
        "--initrd",
        initrd.to_str().unwrap(),
        "--cmdline",
        "console=ttyS0 ro roothash=00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        "--verity-root-hash",
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        "--firmware",
        &format!("ovmf-amdsev={}", ovmf.display()),
        "--firmware",
        &format!("tdvf={}", vectors.join("tdvf-synthetic.fd").display()),
        "--shape",
        "snp-milan-4,snp,4,EPYC-Milan,16384,ovmf-amdsev",
        "--shape",
        "snp-genoa-16,snp,16,EPYC-Genoa,65536,ovmf-amdsev",
        "--shape",
        "tdx-16,tdx,16,host,65536,tdvf",
        "--rtmr0",
        "tdx-16=3fa2f61f395b7f5feefb4ec2df61297f109ad8abcd6410c1b7df60f21f37b19297fc35e544039c7e1edece752afd17f6",
        "--runtime-event",
        "model-weights=aa000000000000000000000000000000000000000000000000000000000000bb",
        "--runtime-event",
        "agent-config=cc000000000000000000000000000000000000000000000000000000000000dd",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

#[test]
fn reference_subcommand_reproduces_the_committed_synthetic_reference() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.json");
    let out = bin()
        .args(synthetic_inputs(dir.path()))
        .arg("--out")
        .arg(&out_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let written = std::fs::read_to_string(&out_path).unwrap();
    // File names are recorded without directories, so the output does not depend on the temporary directory.
    let committed_path = crate_dir().join("reference/0.0.0-synthetic.json");
    if std::env::var_os("DAIT_REGENERATE_REFERENCE").is_some() {
        std::fs::write(&committed_path, &written).unwrap();
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap();
    assert_eq!(
        written, committed,
        "run with DAIT_REGENERATE_REFERENCE=1 to rewrite it"
    );
    let reference = ReferenceMeasurements::from_json(written.as_bytes()).unwrap();
    assert_eq!(reference.shapes.len(), 3);
    let milan = reference.snp_measurement("snp-milan-4").unwrap();
    assert_ne!(milan, reference.snp_measurement("snp-genoa-16").unwrap());
}

#[test]
fn launch_binding_prints_the_pinned_values() {
    // The chain-client's pinned vector: one `model-weights` event of [0x0a; 32].
    let out = bin()
        .args(["launch-binding", "--runtime-event"])
        .arg(format!("model-weights={}", "0a".repeat(32)))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "rtmr3 08ed9e1a8a181b7af2d3c640d87c1a649fc6ba327bf35dec902ed49aee7483323452dd685485a39a0554347da2945d1c\n\
         mrconfigid a077f6425dd29bc33f5b1c6f3bcd036d583026e58037c13ba24f19fae47d84408dfa1a0edd3032776c4c48e173fa2524\n\
         host_data b9addd93119165593e28eeed3a5958814af98e2d7ca41da0097519d29e4dc31b\n"
    );
    let bad = bin()
        .args(["launch-binding", "--runtime-event", "model-weights=zz"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
}

#[test]
fn launch_binding_of_a_reference_is_what_a_launch_bound_reference_pins() {
    let dir = tempfile::tempdir().unwrap();
    let committed_path = crate_dir().join("reference/0.0.0-synthetic.json");
    let committed = ReferenceMeasurements::load(&committed_path).unwrap();
    let out = bin()
        .args(["launch-binding", "--reference"])
        .arg(&committed_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let mrconfigid = committed.expected_launch_mrconfigid();
    let host_data = committed.expected_launch_host_data();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!(
            "rtmr3 {}\nmrconfigid {}\nhost_data {}\n",
            hex::encode(committed.expected_rtmr3().0),
            hex::encode(mrconfigid.0),
            hex::encode(host_data.0)
        )
    );

    // `reference --launch-binding` pins those values, and only them.
    let out_path = dir.path().join("bound.json");
    let out = bin()
        .args(synthetic_inputs(dir.path()))
        .arg("--launch-binding")
        .arg("--out")
        .arg(&out_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let bound = ReferenceMeasurements::load(&out_path).unwrap();
    assert_eq!(bound.tdx.as_ref().unwrap().mr_config_id, vec![mrconfigid]);
    assert_eq!(bound.snp.as_ref().unwrap().host_data, vec![host_data]);
    assert!(bound.tdx_launch_bound());
    assert!(!committed.tdx_launch_bound());
    let mut unbound = bound.clone();
    unbound.tdx = committed.tdx.clone();
    unbound.snp = committed.snp.clone();
    assert_eq!(unbound, committed, "nothing else changes");
}

#[test]
fn reference_subcommand_refuses_a_tdx_shape_without_rtmr0() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = synthetic_inputs(dir.path());
    let at = args.iter().position(|a| a == "--rtmr0").unwrap();
    args.drain(at..at + 2);
    let out = bin().args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("RTMR0"), "{}", text(&out));
}

#[test]
fn reference_subcommand_writes_and_reloads_a_shape_vmpl() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.json");
    let out = bin()
        .args(synthetic_inputs(dir.path()))
        .args(["--vmpl", "snp-genoa-16=1", "--out"])
        .arg(&out_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let written = std::fs::read_to_string(&out_path).unwrap();
    let reference = ReferenceMeasurements::from_json(written.as_bytes()).unwrap();
    assert_eq!(reference.snp_shape("snp-genoa-16").unwrap().vmpl, 1);
    assert_eq!(reference.snp_shape("snp-milan-4").unwrap().vmpl, 0);
    assert_eq!(
        written.matches("\"vmpl\"").count(),
        1,
        "VMPL 0 is not written"
    );
    assert_eq!(reference.to_json_pretty(), written);
    // Without --vmpl the file is the committed one, byte for byte.
    let committed =
        std::fs::read_to_string(crate_dir().join("reference/0.0.0-synthetic.json")).unwrap();
    assert_ne!(written, committed);
    assert_eq!(
        written.replace(",\n        \"vmpl\": 1", ""),
        committed,
        "only the vmpl line differs"
    );
}

#[test]
fn reference_subcommand_refuses_a_bad_vmpl() {
    for spec in [
        "tdx-16=1",
        "snp-unknown=1",
        "snp-milan-4=4",
        "snp-milan-4=x",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = bin()
            .args(synthetic_inputs(dir.path()))
            .args(["--vmpl", spec])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{spec}: {}", text(&out));
    }
}

/// A committed reference file by release, loaded and validated.
fn committed_reference(release: &str) -> (PathBuf, ReferenceMeasurements) {
    let path = crate_dir().join(format!("reference/{release}.json"));
    let reference = ReferenceMeasurements::load(&path).unwrap();
    (path, reference)
}

/// The values a genuine boot on an SNP `shape` of `reference` reports.
fn snp_values(reference: &ReferenceMeasurements, shape: &str) -> ReportedValues {
    let snp = reference.snp.as_ref().unwrap();
    ReportedValues {
        measurement: Some(*reference.snp_measurement(shape).unwrap()),
        host_data: Some(snp.host_data[0]),
        guest_policy: Some(snp.guest_policy),
        ..ReportedValues::new(dait_measure::reference::Platform::Snp)
    }
}

fn run_diff(reference: &Path, shape: &str, values: &ReportedValues) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reported.json");
    std::fs::write(&path, serde_json::to_vec(values).unwrap()).unwrap();
    bin()
        .args(["diff", "--shape", shape, "--reference"])
        .arg(reference)
        .arg("--reported")
        .arg(&path)
        .output()
        .unwrap()
}

/// `diff` accepts the values of a genuine boot on `shape` (exit 0) and names each SNP field changed (exit 1).
fn assert_diff_checks_each_snp_field(path: &Path, reference: &ReferenceMeasurements, shape: &str) {
    let good = snp_values(reference, shape);
    let out = run_diff(path, shape, &good);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("all 4 fields match"), "{}", text(&out));

    let mut measurement = good.clone();
    measurement.measurement.as_mut().unwrap().0[0] ^= 1;
    let mut host_data = good.clone();
    host_data.host_data.as_mut().unwrap().0[31] ^= 1;
    let mut policy = good.clone();
    policy.guest_policy = good.guest_policy.map(|p| p | 1 << 19);
    let vmpl = ReportedValues {
        vmpl: Some(1),
        ..good.clone()
    };
    for (field, values) in [
        ("measurement", measurement),
        ("host_data", host_data),
        ("guest_policy", policy),
        ("vmpl", vmpl),
    ] {
        let out = run_diff(path, shape, &values);
        assert_eq!(out.status.code(), Some(1), "{shape}: {}", text(&out));
        assert!(
            text(&out).contains(&format!("MISMATCH {field}")),
            "{}",
            text(&out)
        );
        assert!(
            text(&out).contains("1 of 4 fields differ"),
            "{}",
            text(&out)
        );
    }
}

#[test]
fn diff_accepts_matching_values_and_names_each_changed_field() {
    let (path, reference) = committed_reference("0.0.0-synthetic");
    assert_diff_checks_each_snp_field(&path, &reference, "snp-genoa-16");
    // The Milan shape's measurement differs from the Genoa one: evidence from one shape fails the other.
    let good = snp_values(&reference, "snp-genoa-16");
    let out = run_diff(&path, "snp-milan-4", &good);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // Unknown shape and wrong platform are usage errors.
    assert_eq!(run_diff(&path, "nope", &good).status.code(), Some(2));
    assert_eq!(run_diff(&path, "tdx-16", &good).status.code(), Some(2));
}

#[test]
fn diff_reads_a_real_quote_and_explains_the_tdx_fields() {
    let (path, _) = committed_reference("0.0.0-synthetic");
    let quote = evidence_dir().join("tdx/go-tdx-guest__gcp-cos113_v4_quote_8000B.bin");
    let out = bin()
        .args(["diff", "--shape", "tdx-16", "--reference"])
        .arg(&path)
        .arg("--tdx-quote")
        .arg(&quote)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = text(&out);
    // The synthetic reference pins the GCP quote's RTMR0 and zero MRCONFIGID/MROWNER, and nothing else of it.
    assert!(report.contains("ok       rtmr0"), "{report}");
    assert!(report.contains("ok       mr_config_id"), "{report}");
    assert!(report.contains("MISMATCH mrtd"), "{report}");
    assert!(report.contains("MISMATCH rtmr1"), "{report}");
    assert!(report.contains("reported dae67181d3d65e07"), "{report}");
}

#[test]
fn replay_checks_the_real_log_against_its_quote() {
    let tdx = evidence_dir().join("tdx");
    let log = tdx.join("go-tdx-guest__gcp-cos113_ccel_data.bin");
    let quote = tdx.join("go-tdx-guest__gcp-cos113_v4_quote_8000B.bin");
    let out = bin()
        .args(["replay", "--events", "--event-log"])
        .arg(&log)
        .arg("--quote")
        .arg(&quote)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("Exit Boot Services Invocation"));
    // Another quote's RTMRs do not match this log.
    let other = tdx.join("dcap-qvl__v4_b0c06f_quote.bin");
    let out = bin()
        .args(["replay", "--event-log"])
        .arg(&log)
        .arg("--quote")
        .arg(&other)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("MISMATCH rtmr0"));
}

#[test]
fn diff_reads_real_snp_reports_raw_and_hex() {
    let (path, _) = committed_reference("0.0.0-synthetic");
    let snp = evidence_dir().join("snp");
    for (file, measurement, policy) in [
        (
            "virtee__milan_report.hex",
            "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f",
            "0x30000",
        ),
        (
            "go-sev-guest__milan_attestation.bin",
            "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01",
            "0xb0000",
        ),
    ] {
        let out = bin()
            .args(["diff", "--shape", "snp-milan-4", "--reference"])
            .arg(&path)
            .arg("--snp-report")
            .arg(snp.join(file))
            .output()
            .unwrap();
        let report = text(&out);
        assert_eq!(out.status.code(), Some(1), "{report}");
        // Values as listed by the evidence manifest's independent extraction.
        assert!(
            report.contains(&format!("reported {measurement}")),
            "{report}"
        );
        assert!(report.contains("ok       host_data"), "{report}");
        if policy == "0x30000" {
            assert!(report.contains("ok       guest_policy"), "{report}");
        } else {
            assert!(report.contains(&format!("reported {policy}")), "{report}");
        }
    }
}

// ---- the release references measurements/reference/<release>.json (written by scripts/reference.sh) --------

/// An SNP ATTESTATION_REPORT (version 2, VMPL 0, unsigned) carrying a boot's measurement, HOST_DATA and policy at
/// their offsets (SEV-SNP ABI spec, table 22).
fn snp_report(values: &ReportedValues) -> Vec<u8> {
    let mut report = vec![0u8; dait_measure::reported::SNP_REPORT_LEN];
    report[0..4].copy_from_slice(&2u32.to_le_bytes());
    report[0x08..0x10].copy_from_slice(&values.guest_policy.unwrap().to_le_bytes());
    report[0x90..0xc0].copy_from_slice(&values.measurement.unwrap().0);
    report[0xc0..0xe0].copy_from_slice(&values.host_data.unwrap().0);
    report
}

/// The published releases (`reference/<release>.json`, written by scripts/reference.sh); the synthetic
/// reference is not one.
const RELEASES: [&str; 4] = ["0.1.0", "0.1.1", "0.2.0", "0.3.0"];

#[test]
fn each_release_loads_and_describes_a_direct_boot_of_the_uki() {
    for release in RELEASES {
        release_describes_a_direct_boot_of_the_uki(release);
    }
}

fn release_describes_a_direct_boot_of_the_uki(release: &str) {
    let (path, reference) = committed_reference(release);
    assert_eq!(path.file_stem().unwrap(), reference.release.as_str());
    // The file is what the reference type writes (canonical form), so a regeneration compares byte for byte.
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        reference.to_json_pretty()
    );
    let artefacts = &reference.artefacts;
    // Direct boot of the UKI: it is the -kernel, no separate initrd, its own command line as -append.
    assert_eq!(artefacts.uki.as_ref(), Some(&artefacts.kernel));
    assert!(artefacts.initrd.is_none());
    let roothash = artefacts.verity_root_hash.unwrap();
    assert!(
        artefacts
            .cmdline
            .split(' ')
            .any(|arg| arg == format!("roothash={roothash}"))
    );
    assert!(artefacts.package_manifest_sha256.is_some());
    assert!(artefacts.agent.is_some());
    // Each SNP shape boots the AmdSev build (kernel-hashes table), recognised as such although that build
    // carries TDX metadata too.
    for shape in &reference.shapes {
        let firmware = artefacts
            .firmware
            .iter()
            .find(|f| f.name == shape.firmware)
            .unwrap();
        assert_eq!(
            firmware.kind,
            dait_measure::reference::FirmwareKind::OvmfAmdsev
        );
    }
    // SNP only: at least two shapes of different CPU generations and vCPU counts, each with its own digest.
    // TDX is absent until RTMR0 comes from a replayed boot (docs/MEASUREMENTS.md), so the verifier refuses TDX.
    assert!(reference.tdx.is_none());
    let snp_shapes: Vec<_> = reference
        .shapes
        .iter()
        .filter(|s| s.platform == dait_measure::reference::Platform::Snp)
        .collect();
    assert!(snp_shapes.len() >= 2);
    assert_eq!(snp_shapes.len(), reference.shapes.len());
    let cpus: std::collections::BTreeSet<_> = snp_shapes.iter().map(|s| &s.cpu_type).collect();
    let vcpus: std::collections::BTreeSet<_> = snp_shapes.iter().map(|s| s.vcpus).collect();
    assert!(cpus.len() >= 2 && vcpus.len() >= 2);
    let digests: std::collections::BTreeSet<_> = snp_shapes
        .iter()
        .map(|s| reference.snp_measurement(&s.name).unwrap())
        .collect();
    assert_eq!(digests.len(), snp_shapes.len());
    let snp = reference.snp.as_ref().unwrap();
    assert_eq!(snp.guest_policy & (1 << 19), 0, "debug off");
    // The runtime events the image's agent extends, in its order.
    let names: Vec<&str> = reference
        .runtime
        .events
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["model-id", "model-weights", "engine-build", "agent-config"]
    );
}

#[test]
fn each_release_diff_accepts_each_shape_and_names_each_changed_field() {
    for release in RELEASES {
        release_diff_accepts_each_shape(release);
    }
}

fn release_diff_accepts_each_shape(release: &str) {
    let (path, reference) = committed_reference(release);
    let shapes: Vec<String> = reference.shapes.iter().map(|s| s.name.clone()).collect();
    for shape in &shapes {
        assert_diff_checks_each_snp_field(&path, &reference, shape);
        // The same values as an SNP report read at its offsets.
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("report.bin");
        std::fs::write(&report, snp_report(&snp_values(&reference, shape))).unwrap();
        let out = bin()
            .args(["diff", "--shape", shape, "--reference"])
            .arg(&path)
            .arg("--snp-report")
            .arg(&report)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        // Evidence from one shape does not pass as another.
        for other in shapes.iter().filter(|o| *o != shape) {
            let out = run_diff(&path, other, &snp_values(&reference, shape));
            assert_eq!(out.status.code(), Some(1), "{}", text(&out));
            assert!(text(&out).contains("MISMATCH measurement"));
        }
    }
    // No TDX shape: TDX values cannot be compared (usage error), never accepted.
    let tdx = ReportedValues {
        platform: dait_measure::reference::Platform::Tdx,
        ..snp_values(&reference, &shapes[0])
    };
    assert_eq!(run_diff(&path, "tdx-16", &tdx).status.code(), Some(2));
}
