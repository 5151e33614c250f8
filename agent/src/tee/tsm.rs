//! Intel TDX and AMD SEV-SNP evidence through the Linux configfs-tsm report interface
//! (`/sys/kernel/config/tsm/report`): create a report entry, write `inblob` (the 64-byte
//! `report_data`), read `outblob` (TDX quote or SNP report) and check `generation` did not move
//! in between (another writer would have changed the report).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use dait_chain_client::proto::{SnpEvidence, cpu_evidence};

use super::{CpuEvidence, Platform, TeeBackend, TeeError};

/// Where the kernel exposes configfs-tsm reports.
pub const TSM_REPORT_DIR: &str = "/sys/kernel/config/tsm/report";

/// Name of the report entry the agent uses.
const ENTRY: &str = "dait";

/// Byte range of `report_data` in a TDX v4/v5 quote (48-byte header, then the TD report body
/// whose last 64 bytes are `report_data`, Intel TDX DCAP Quote Generation Library §A.3).
const TDX_REPORT_DATA: std::ops::Range<usize> = 568..632;
/// Byte range of `report_data` in an SNP attestation report (AMD SEV-SNP ABI, Table 22, 0x50).
const SNP_REPORT_DATA: std::ops::Range<usize> = 0x50..0x90;

/// configfs-tsm backend.
#[derive(Debug)]
pub struct TsmBackend {
    root: PathBuf,
    platform: Platform,
    lock: Mutex<()>,
}

impl TsmBackend {
    /// Open the interface at `root` for `platform`; fails if `root` does not exist.
    pub fn open(root: &Path, platform: Platform) -> Result<Self, TeeError> {
        if !root.is_dir() {
            return Err(TeeError::DeviceMissing {
                path: TSM_REPORT_DIR,
            });
        }
        Ok(Self {
            root: root.to_owned(),
            platform,
            lock: Mutex::new(()),
        })
    }

    fn read_generation(entry: &Path) -> Result<u64, TeeError> {
        let s = fs::read_to_string(entry.join("generation"))
            .map_err(|e| TeeError::Io("configfs-tsm generation", e))?;
        s.trim()
            .parse()
            .map_err(|_| TeeError::BadEvidence("generation is not a number"))
    }
}

impl TeeBackend for TsmBackend {
    fn platform(&self) -> Platform {
        self.platform
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<CpuEvidence, TeeError> {
        let _guard = self.lock.lock().map_err(|_| TeeError::Race)?;
        let entry = self.root.join(ENTRY);
        if !entry.is_dir() {
            fs::create_dir(&entry).map_err(|e| TeeError::Io("configfs-tsm entry", e))?;
        }
        let provider = fs::read_to_string(entry.join("provider"))
            .map_err(|e| TeeError::Io("configfs-tsm provider", e))?;
        let expected = match self.platform {
            Platform::Snp => "sev_guest",
            _ => "tdx_guest",
        };
        if provider.trim() != expected {
            return Err(TeeError::BadEvidence(
                "provider does not match the configured TEE",
            ));
        }
        fs::write(entry.join("inblob"), report_data)
            .map_err(|e| TeeError::Io("configfs-tsm inblob", e))?;
        let before = Self::read_generation(&entry)?;
        let out =
            fs::read(entry.join("outblob")).map_err(|e| TeeError::Io("configfs-tsm outblob", e))?;
        let aux = match self.platform {
            Platform::Snp => fs::read(entry.join("auxblob")).ok(),
            _ => None,
        };
        if Self::read_generation(&entry)? != before {
            return Err(TeeError::Race);
        }
        let range = match self.platform {
            Platform::Snp => SNP_REPORT_DATA,
            _ => TDX_REPORT_DATA,
        };
        if out.get(range) != Some(&report_data[..]) {
            return Err(TeeError::BadEvidence(
                "outblob does not carry the requested report_data",
            ));
        }
        let evidence = match self.platform {
            Platform::Snp => cpu_evidence::Evidence::Snp(SnpEvidence {
                report: out,
                cert_chain: aux.map(|a| vec![a]).unwrap_or_default(),
            }),
            _ => cpu_evidence::Evidence::TdxQuote(out),
        };
        Ok(CpuEvidence {
            evidence: Some(evidence),
        })
    }

    fn extend_runtime(
        &self,
        _log: &dait_chain_client::runtime_log::EventLog,
    ) -> Result<(), TeeError> {
        Err(TeeError::Unsupported(
            "runtime register extension through configfs-tsm",
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// An emulated configfs-tsm tree: the entry exists with a provider, generation and an outblob.
    fn tree(provider: &str, outblob: &[u8]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let e = dir.path().join(ENTRY);
        fs::create_dir(&e).unwrap();
        fs::write(e.join("provider"), format!("{provider}\n")).unwrap();
        fs::write(e.join("generation"), "1\n").unwrap();
        fs::write(e.join("outblob"), outblob).unwrap();
        dir
    }

    #[test]
    fn tdx_quote_is_read_and_bound() {
        let rd = [7u8; 64];
        let mut quote = vec![0u8; 700];
        quote[TDX_REPORT_DATA].copy_from_slice(&rd);
        let dir = tree("tdx_guest", &quote);
        let b = TsmBackend::open(dir.path(), Platform::Tdx).unwrap();
        let ev = b.evidence(&rd).unwrap();
        assert_eq!(ev.evidence, Some(cpu_evidence::Evidence::TdxQuote(quote)));
        assert_eq!(fs::read(dir.path().join(ENTRY).join("inblob")).unwrap(), rd);
    }

    #[test]
    fn snp_report_is_read() {
        let rd = [9u8; 64];
        let mut report = vec![0u8; 1184];
        report[SNP_REPORT_DATA].copy_from_slice(&rd);
        let dir = tree("sev_guest", &report);
        let b = TsmBackend::open(dir.path(), Platform::Snp).unwrap();
        assert!(matches!(
            b.evidence(&rd).unwrap().evidence,
            Some(cpu_evidence::Evidence::Snp(_))
        ));
    }

    #[test]
    fn wrong_report_data_is_rejected() {
        let dir = tree("tdx_guest", &[0u8; 700]);
        let b = TsmBackend::open(dir.path(), Platform::Tdx).unwrap();
        assert!(matches!(
            b.evidence(&[1u8; 64]),
            Err(TeeError::BadEvidence(_))
        ));
    }

    #[test]
    fn wrong_provider_is_rejected() {
        let dir = tree("sev_guest", &[0u8; 700]);
        let b = TsmBackend::open(dir.path(), Platform::Tdx).unwrap();
        assert!(matches!(
            b.evidence(&[0u8; 64]),
            Err(TeeError::BadEvidence(_))
        ));
    }

    #[test]
    fn missing_root_is_device_missing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            TsmBackend::open(&dir.path().join("nope"), Platform::Tdx),
            Err(TeeError::DeviceMissing { .. })
        ));
    }
}
