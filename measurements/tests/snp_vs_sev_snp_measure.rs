//! Differential test: our SEV-SNP launch digest against `sev-snp-measure` (the reference implementation, PyPI),
//! on the same firmware, kernel, initrd and command line, for several VM shapes and both boot variants
//! (initrd; verity: no initrd, root hash on the command line).
//!
//! `measurements/scripts/sev-snp-measure.sh` installs the pinned sev-snp-measure into the project venv `.dait/`.
//! The tests that need the real AmdSev OVMF (built by `scripts/ovmf.sh`) are ignored by default; run them with
//! `DAIT_OVMF_AMDSEV=$(scripts/ovmf.sh) cargo test -p dait-measure -- --ignored`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use dait_measure::snp::{self, CpuType, Ovmf, SevHashes, SnpLaunch};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Installs (once per test process: the tests run in parallel threads) and locates sev-snp-measure.
fn reference_tool() -> PathBuf {
    static TOOL: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    TOOL.get_or_init(|| {
        let out = Command::new(repo_root().join("measurements/scripts/sev-snp-measure.sh"))
            .output()
            .expect("run measurements/scripts/sev-snp-measure.sh");
        assert!(
            out.status.success(),
            "installing sev-snp-measure failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
    .clone()
}

struct Case<'a> {
    vcpus: u32,
    cpu: &'a str,
    kernel: &'a Path,
    initrd: Option<&'a Path>,
    cmdline: &'a str,
}

fn reference_digest(tool: &Path, ovmf: &Path, case: &Case<'_>) -> String {
    let mut cmd = Command::new(tool);
    cmd.args(["--mode", "snp", "--output-format", "hex"])
        .arg("--vcpus")
        .arg(case.vcpus.to_string())
        .arg("--vcpu-type")
        .arg(case.cpu)
        .arg("--ovmf")
        .arg(ovmf)
        .arg("--kernel")
        .arg(case.kernel)
        .arg("--append")
        .arg(case.cmdline);
    if let Some(initrd) = case.initrd {
        cmd.arg("--initrd").arg(initrd);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "sev-snp-measure: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn our_digest(ovmf: &Path, case: &Case<'_>) -> String {
    let firmware = std::fs::read(ovmf).unwrap();
    let ovmf = Ovmf::parse(&firmware).unwrap();
    let kernel = std::fs::read(case.kernel).unwrap();
    let initrd = case.initrd.map(|p| std::fs::read(p).unwrap());
    let hashes = SevHashes::new(&kernel, initrd.as_deref(), Some(case.cmdline));
    let launch = SnpLaunch {
        hashes: Some(&hashes),
        vcpus: case.vcpus,
        cpu: CpuType::from_name(case.cpu).unwrap(),
        guest_features: snp::DEFAULT_GUEST_FEATURES,
    };
    snp::launch_digest(&ovmf, &launch).unwrap().to_hex()
}

/// Writes a kernel, an initrd and one-byte variants of both.
fn artefacts(dir: &Path) -> [PathBuf; 4] {
    let kernel: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let initrd: Vec<u8> = (0..120_000u32)
        .map(|i| (i.wrapping_mul(40_503) >> 8) as u8)
        .collect();
    let paths = ["vmlinuz", "initrd.img", "vmlinuz.1", "initrd.img.1"].map(|n| dir.join(n));
    std::fs::write(&paths[0], &kernel).unwrap();
    std::fs::write(&paths[1], &initrd).unwrap();
    let mut k1 = kernel.clone();
    k1[123_456] ^= 0x01;
    std::fs::write(&paths[2], &k1).unwrap();
    let mut i1 = initrd.clone();
    i1[7] ^= 0x80;
    std::fs::write(&paths[3], &i1).unwrap();
    paths
}

const CMDLINE: &str = "console=ttyS0 ro quiet";
const VERITY_CMDLINE: &str = "console=ttyS0 ro roothash=3f1e0c7a52e4d8a2b39f04d9e8c1a6b5f2d7e0c3a9b8f1e6d4c2a0b7e5f3d1c9 \
                              systemd.verity=yes";

fn differential(ovmf: &Path) {
    let tool = reference_tool();
    let dir = tempfile::tempdir().unwrap();
    let [kernel, initrd, kernel1, initrd1] = artefacts(dir.path());
    let shapes = [(1, "EPYC-v4"), (4, "EPYC-Milan"), (16, "EPYC-Genoa")];
    let mut seen = std::collections::BTreeSet::new();
    for (vcpus, cpu) in shapes {
        let initrd_case = Case {
            vcpus,
            cpu,
            kernel: &kernel,
            initrd: Some(&initrd),
            cmdline: CMDLINE,
        };
        let verity_case = Case {
            vcpus,
            cpu,
            kernel: &kernel,
            initrd: None,
            cmdline: VERITY_CMDLINE,
        };
        for case in [&initrd_case, &verity_case] {
            let ours = our_digest(ovmf, case);
            assert_eq!(
                ours,
                reference_digest(&tool, ovmf, case),
                "{vcpus} x {cpu}, initrd {:?}",
                case.initrd
            );
            assert!(seen.insert(ours), "digests of different inputs must differ");
        }
    }
    // One-byte changes in kernel, initrd and command line change the digest, in both implementations alike.
    let base = Case {
        vcpus: 4,
        cpu: "EPYC-Milan",
        kernel: &kernel,
        initrd: Some(&initrd),
        cmdline: CMDLINE,
    };
    let base_digest = our_digest(ovmf, &base);
    for changed in [
        Case {
            kernel: &kernel1,
            ..base
        },
        Case {
            initrd: Some(&initrd1),
            ..base
        },
        Case {
            cmdline: "console=ttyS0 ro quieT",
            ..base
        },
    ] {
        let ours = our_digest(ovmf, &changed);
        assert_ne!(ours, base_digest);
        assert_eq!(ours, reference_digest(&tool, ovmf, &changed));
    }
}

#[test]
fn synthetic_ovmf_matches_sev_snp_measure() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("OVMF.fd");
    let image = snp::synthetic_ovmf(
        64,
        snp::AMDSEV_SECTIONS,
        Some(snp::AMDSEV_HASHES_TABLE),
        snp::AMDSEV_RESET_EIP,
    );
    std::fs::write(&path, image).unwrap();
    differential(&path);
}

#[test]
fn vmsa_pages_match_sev_snp_measure() {
    let tool = reference_tool();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("OVMF.fd");
    let image = snp::synthetic_ovmf(
        16,
        snp::AMDSEV_SECTIONS,
        Some(snp::AMDSEV_HASHES_TABLE),
        snp::AMDSEV_RESET_EIP,
    );
    std::fs::write(&path, image).unwrap();
    let out = Command::new(&tool)
        .current_dir(dir.path())
        .args([
            "--mode",
            "snp",
            "--vcpus",
            "2",
            "--vcpu-type",
            "EPYC-Genoa",
            "--dump-vmsa",
            "--ovmf",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cpu = CpuType::from_name("EPYC-Genoa").unwrap();
    let bsp = std::fs::read(dir.path().join("vmsa0.bin")).unwrap();
    let ap = std::fs::read(dir.path().join("vmsa1.bin")).unwrap();
    assert_eq!(
        bsp,
        snp::vmsa_page(0xffff_fff0, cpu, snp::DEFAULT_GUEST_FEATURES)
    );
    assert_eq!(
        ap,
        snp::vmsa_page(snp::AMDSEV_RESET_EIP, cpu, snp::DEFAULT_GUEST_FEATURES)
    );
}

fn real_ovmf() -> PathBuf {
    let path = std::env::var_os("DAIT_OVMF_AMDSEV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
            cache.join("dait/ovmf-trixie/OVMF-amdsev.fd")
        });
    assert!(
        path.is_file(),
        "{} missing: run scripts/ovmf.sh",
        path.display()
    );
    path
}

#[test]
#[ignore = "needs the AmdSev OVMF built by scripts/ovmf.sh"]
fn real_amdsev_ovmf_matches_sev_snp_measure() {
    let path = real_ovmf();
    let image = std::fs::read(&path).unwrap();
    let ovmf = Ovmf::parse(&image).unwrap();
    assert!(ovmf.supports_kernel_hashes());
    differential(&path);
}
