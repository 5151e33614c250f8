//! The real hardware evidence set the workspace's tests and benchmarks read, and the one way to find it.
//!
//! # What it does
//! The set (TDX quotes with Intel collateral, SNP reports with AMD certificates, NVIDIA H100 SPDM reports with
//! certificate chains and RIMs, an Azure vTPM quote) lives beside this crate in `evidence/`, with its provenance
//! (`evidence/README.md`, `evidence/manifest.json`) and licence notes (`evidence/LICENSES.md`), so a clone of the
//! repository runs its tests with nothing beside it. [`evidence_dir`] names that folder; the environment
//! variable `DAIT_EVIDENCE_DIR`, when set, names another copy instead (an updated set, say).
//!
//! The tests that need the real development engine find it with [`engine_url`] and its weights file with
//! [`engine_model`].
//!
//! # Example
//! ```
//! let manifest = dait_testdata::read("manifest.json");
//! assert!(manifest.starts_with(b"{"));
//! assert!(dait_testdata::path("tdx/intel_sgx_root_ca.der").is_file());
//! ```
//!
//! # Feature flags
//! None.
//!
//! # Security
//! Test data only: a development dependency of the other crates, never linked into a binary that ships. The
//! files are public captures; none of them is a secret.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::path::{Path, PathBuf};

mod engine;
pub use engine::{engine_model, engine_url};

/// The environment variable that, when set, names the evidence directory instead of the repository's copy.
pub const ENV_OVERRIDE: &str = "DAIT_EVIDENCE_DIR";

/// The evidence directory: `$DAIT_EVIDENCE_DIR` when set, else the repository's `verifier/testdata/evidence`.
///
/// # Panics
/// When the directory holds no `manifest.json` (a test without its data cannot mean anything).
pub fn evidence_dir() -> PathBuf {
    let dir = match std::env::var_os(ENV_OVERRIDE) {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("evidence"),
    };
    assert!(
        dir.join("manifest.json").is_file(),
        "evidence set not found at {} (no manifest.json; {ENV_OVERRIDE} overrides the location)",
        dir.display()
    );
    dir
}

/// The path of a file of the set, `rel` relative to [`evidence_dir`] (e.g. `"tdx/intel_sgx_root_ca.der"`).
pub fn path(rel: &str) -> PathBuf {
    evidence_dir().join(rel)
}

/// The bytes of a file of the set.
///
/// # Panics
/// When the file cannot be read; the message names it.
pub fn read(rel: &str) -> Vec<u8> {
    let p = path(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// The text of a file of the set.
///
/// # Panics
/// When the file cannot be read or is not UTF-8; the message names it.
pub fn read_to_string(rel: &str) -> String {
    let p = path(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    use sha2::{Digest, Sha256};

    /// Every file the manifest lists is here with the size and SHA-256 it records, and nothing else is: the copy
    /// is whole and unchanged.
    #[test]
    fn manifest_matches_the_files() {
        let manifest: serde_json::Value = serde_json::from_slice(&read("manifest.json")).unwrap();
        let files = manifest["files"].as_array().unwrap();
        for f in files {
            let rel = f["path"].as_str().unwrap();
            let bytes = read(rel);
            assert_eq!(
                bytes.len() as u64,
                f["size"].as_u64().unwrap(),
                "{rel}: size"
            );
            assert_eq!(
                hex::encode(Sha256::digest(&bytes)),
                f["sha256"].as_str().unwrap(),
                "{rel}: sha256"
            );
        }
        let mut on_disk = 0;
        for sub in ["tdx", "snp", "nvidia", "vtpm"] {
            on_disk += std::fs::read_dir(path(sub)).unwrap().count();
        }
        assert_eq!(
            on_disk,
            files.len(),
            "files on disk that the manifest does not list"
        );
    }
}
