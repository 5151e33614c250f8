//! Intel TDX and AMD SEV-SNP evidence through the Linux configfs-tsm report interface
//! (`/sys/kernel/config/tsm/report`): create a report entry, write `inblob` (the 64-byte
//! `report_data`), read `outblob` (TDX quote or SNP report) and check `generation` did not move
//! in between (another writer would have changed the report).
//!
//! For SEV-SNP the kernel also returns the host's certificate table as `auxblob` (GHCB extended report
//! certificates; format in `dait_verifier::snp::cert_table`). It becomes the bundle's `cert_chain`: the
//! VCEK or VLEK that signed the report, then ASK and ARK when the host gave both. A failed read, a malformed
//! table and a missing endorsement certificate are errors; evidence is never served without its chain.
//!
//! TDX runtime measurements: where the guest kernel exposes the tsm-mr measurement registers (Linux 6.16+,
//! `Documentation/ABI/testing/sysfs-devices-virtual-misc-tdx_guest`: `rtmr3:sha384` under [`TDX_MEASUREMENTS_DIR`],
//! read returns the register, a 48-byte write at offset 0 extends it), [`TeeBackend::extend_runtime`] writes each
//! event's SHA-384 digest there, so the quote's RTMR3 is the replay of the agent's event log. Without the
//! attribute (older kernels, SEV-SNP) it answers [`TeeError::Unsupported`] and the agent takes the launch-time
//! binding (PROTOCOL.md §10.1).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use dait_chain_client::proto::{SnpEvidence, cpu_evidence};
use dait_verifier::snp::cert_table::CertTable;
use dait_verifier::snp::{SigningKey, SnpReport};

use super::{CpuEvidence, LaunchField, Platform, TeeBackend, TeeError};

/// Where the kernel exposes configfs-tsm reports.
pub const TSM_REPORT_DIR: &str = "/sys/kernel/config/tsm/report";

/// Where Linux 6.16+ exposes the TDX guest's measurement registers (tsm-mr).
pub const TDX_MEASUREMENTS_DIR: &str = "/sys/class/misc/tdx_guest/measurements";

/// The RTMR3 attribute in [`TDX_MEASUREMENTS_DIR`] (SHA-384 bank).
const RTMR3: &str = "rtmr3:sha384";

/// Name of the report entry the agent uses.
const ENTRY: &str = "dait";

/// Byte range of `report_data` in a TDX v4/v5 quote (48-byte header, then the TD report body
/// whose last 64 bytes are `report_data`, Intel TDX DCAP Quote Generation Library §A.3).
const TDX_REPORT_DATA: std::ops::Range<usize> = 568..632;
/// Byte range of `report_data` in an SNP attestation report (AMD SEV-SNP ABI, Table 22, 0x50).
const SNP_REPORT_DATA: std::ops::Range<usize> = 0x50..0x90;
/// Byte range of `MRCONFIGID` in a TDX v4/v5 quote (48-byte header, then the TD report body: TEE_TCB_SVN 16,
/// MRSEAM 48, MRSIGNERSEAM 48, SEAMATTRIBUTES 8, TDATTRIBUTES 8, XFAM 8, MRTD 48, then MRCONFIGID 48).
const TDX_MR_CONFIG_ID: std::ops::Range<usize> = 232..280;
/// Byte range of `HOST_DATA` in an SNP attestation report (AMD SEV-SNP ABI, Table 22, 0xC0).
const SNP_HOST_DATA: std::ops::Range<usize> = 0xC0..0xE0;

/// configfs-tsm backend.
#[derive(Debug)]
pub struct TsmBackend {
    root: PathBuf,
    platform: Platform,
    lock: Mutex<()>,
    /// The TDX RTMR3 attribute, where the kernel exposes it.
    rtmr3: Option<PathBuf>,
}

impl TsmBackend {
    /// Open the interface at `root` for `platform`, with the TDX measurement registers at
    /// [`TDX_MEASUREMENTS_DIR`] where they exist; fails if `root` does not exist.
    pub fn open(root: &Path, platform: Platform) -> Result<Self, TeeError> {
        Self::open_with_measurements(root, platform, Path::new(TDX_MEASUREMENTS_DIR))
    }

    /// [`TsmBackend::open`] with the tsm-mr measurement registers looked for in `measurements` (TDX only).
    pub fn open_with_measurements(
        root: &Path,
        platform: Platform,
        measurements: &Path,
    ) -> Result<Self, TeeError> {
        if !root.is_dir() {
            return Err(TeeError::DeviceMissing {
                path: TSM_REPORT_DIR,
            });
        }
        let rtmr3 = measurements.join(RTMR3);
        Ok(Self {
            root: root.to_owned(),
            platform,
            lock: Mutex::new(()),
            rtmr3: (platform == Platform::Tdx && rtmr3.exists()).then_some(rtmr3),
        })
    }

    /// Whether the runtime events are extended into RTMR3 (the kernel exposes it) rather than bound at launch.
    pub fn extends_rtmr3(&self) -> bool {
        self.rtmr3.is_some()
    }

    fn read_generation(entry: &Path) -> Result<u64, TeeError> {
        let s = fs::read_to_string(entry.join("generation"))
            .map_err(|e| TeeError::Io("configfs-tsm generation", e))?;
        s.trim()
            .parse()
            .map_err(|_| TeeError::BadEvidence("generation is not a number"))
    }

    /// One report for `report_data`: `outblob` (checked to carry it) and, for SNP, `auxblob`.
    fn read_report(&self, report_data: &[u8; 64]) -> Result<(Vec<u8>, Option<Vec<u8>>), TeeError> {
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
            Platform::Snp => Some(
                fs::read(entry.join("auxblob"))
                    .map_err(|e| TeeError::Io("configfs-tsm auxblob", e))?,
            ),
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
        Ok((out, aux))
    }
}

impl TeeBackend for TsmBackend {
    fn platform(&self) -> Platform {
        self.platform
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<CpuEvidence, TeeError> {
        let (out, aux) = self.read_report(report_data)?;
        let evidence = match self.platform {
            Platform::Snp => cpu_evidence::Evidence::Snp(SnpEvidence {
                cert_chain: snp_cert_chain(&out, aux.as_deref().unwrap_or_default())?,
                report: out,
            }),
            _ => cpu_evidence::Evidence::TdxQuote(out),
        };
        Ok(CpuEvidence {
            evidence: Some(evidence),
        })
    }

    fn extend_runtime(
        &self,
        log: &dait_chain_client::runtime_log::EventLog,
    ) -> Result<(), TeeError> {
        let Some(path) = &self.rtmr3 else {
            return Err(TeeError::Unsupported(
                "runtime register extension (no tsm-mr rtmr3:sha384 attribute)",
            ));
        };
        let Some(event) = log.events().last() else {
            return Ok(());
        };
        if log.events().len() == 1 {
            // The log replays from zero: RTMR3 must still be zero (nothing extended it in this boot).
            let current = fs::read(path).map_err(|e| TeeError::Io("tsm-mr rtmr3", e))?;
            if current.len() != 48 {
                return Err(TeeError::BadEvidence("rtmr3:sha384 is not 48 bytes"));
            }
            if current.iter().any(|b| *b != 0) {
                return Err(TeeError::RuntimeRegisterInUse);
            }
        }
        // One 48-byte write at offset 0 extends the register (a partial write is EINVAL).
        let mut file = fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| TeeError::Io("tsm-mr rtmr3", e))?;
        std::io::Write::write_all(&mut file, &event.digest)
            .map_err(|e| TeeError::Io("tsm-mr rtmr3 extend", e))
    }

    fn launch_field(&self) -> Result<LaunchField, TeeError> {
        let (out, _) = self.read_report(&[0; 64])?;
        let field = match self.platform {
            Platform::Snp => out
                .get(SNP_HOST_DATA)
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .map(LaunchField::HostData),
            _ => out
                .get(TDX_MR_CONFIG_ID)
                .and_then(|b| <[u8; 48]>::try_from(b).ok())
                .map(LaunchField::MrConfigId),
        };
        field.ok_or(TeeError::BadEvidence(
            "outblob is too short for its launch-time field",
        ))
    }
}

/// The bundle's `cert_chain` for an SNP `report` from the host's certificate table `auxblob`: the VCEK or
/// VLEK (whichever the report names as its signer), then ASK and ARK when the table has both (with one of
/// them only, neither: the verifier then takes AMD's pinned pair).
///
/// An empty `auxblob` means the host loaded no certificate table. That is an error for now: the verifier
/// needs the VCEK, and the agent serves no evidence that cannot verify.
/// TODO(issue 9 item 5): take the VCEK (by CHIP_ID and reported TCB) and the ASK/ARK from the collateral
/// cache when the host gives no table, instead of failing.
fn snp_cert_chain(report: &[u8], auxblob: &[u8]) -> Result<Vec<Vec<u8>>, TeeError> {
    let report = SnpReport::parse(report).map_err(TeeError::SnpReport)?;
    let (key, name) = match report.signing_key() {
        Some(SigningKey::Vcek) => (SigningKey::Vcek, "VCEK"),
        Some(SigningKey::Vlek) => (SigningKey::Vlek, "VLEK"),
        Some(SigningKey::None) => return Err(TeeError::BadEvidence("the SNP report is unsigned")),
        None => {
            return Err(TeeError::BadEvidence(
                "the SNP report names an unknown signing key",
            ));
        }
    };
    if auxblob.is_empty() {
        return Err(TeeError::SnpCertMissing(name));
    }
    let table = CertTable::parse(auxblob).map_err(TeeError::SnpCertTable)?;
    let chain = table
        .bundle_chain(key)
        .ok_or(TeeError::SnpCertMissing(name))?;
    Ok(chain.into_iter().map(<[u8]>::to_vec).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use dait_verifier::snp::cert_table::{self, CertKind, CertTableError};

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
    fn rtmr3_is_extended_through_tsm_mr_where_the_attribute_exists() {
        let dir = tree("tdx_guest", &[0u8; 700]);
        let mr = tempfile::tempdir().unwrap();
        // Without the attribute: unsupported (the launch-binding path), for TDX and SNP alike.
        let b = TsmBackend::open_with_measurements(dir.path(), Platform::Tdx, mr.path()).unwrap();
        assert!(!b.extends_rtmr3());
        let mut log = dait_chain_client::runtime_log::EventLog::default();
        log.record("model-id", "model-id:00");
        assert!(matches!(
            b.extend_runtime(&log),
            Err(TeeError::Unsupported(_))
        ));
        // With it (zero, as at boot): each extend writes the last event's digest.
        let attr = mr.path().join(RTMR3);
        fs::write(&attr, [0u8; 48]).unwrap();
        let snp = TsmBackend::open_with_measurements(dir.path(), Platform::Snp, mr.path()).unwrap();
        assert!(!snp.extends_rtmr3());
        let b = TsmBackend::open_with_measurements(dir.path(), Platform::Tdx, mr.path()).unwrap();
        assert!(b.extends_rtmr3());
        b.extend_runtime(&log).unwrap();
        assert_eq!(fs::read(&attr).unwrap(), log.events()[0].digest);
        log.record("engine-build", "engine-build:01");
        b.extend_runtime(&log).unwrap();
        assert_eq!(fs::read(&attr).unwrap(), log.events()[1].digest);
        // A register already extended in this boot cannot be replayed by a fresh log.
        let mut fresh = dait_chain_client::runtime_log::EventLog::default();
        fresh.record("model-id", "model-id:00");
        assert!(matches!(
            b.extend_runtime(&fresh),
            Err(TeeError::RuntimeRegisterInUse)
        ));
    }

    #[test]
    fn launch_fields_are_read_at_their_offsets() {
        // TDX: MRCONFIGID right after MRTD in the TD report body.
        let mut quote = vec![0u8; 700];
        quote[TDX_MR_CONFIG_ID].copy_from_slice(&[0xc5; 48]);
        let dir = tree("tdx_guest", &quote);
        let b = TsmBackend::open(dir.path(), Platform::Tdx).unwrap();
        assert_eq!(
            b.launch_field().unwrap(),
            LaunchField::MrConfigId([0xc5; 48])
        );
        // SNP: HOST_DATA at 0xC0 of an (unsigned, zeroed) 1184-byte report.
        let mut report = vec![0u8; 1184];
        report[SNP_HOST_DATA].copy_from_slice(&[0x5c; 32]);
        let dir = tree("sev_guest", &report);
        fs::write(dir.path().join(ENTRY).join("auxblob"), b"").unwrap();
        let b = TsmBackend::open(dir.path(), Platform::Snp).unwrap();
        assert_eq!(b.launch_field().unwrap(), LaunchField::HostData([0x5c; 32]));
        // A report too short to carry its report_data (and so the field) is malformed, not unset.
        let dir = tree("tdx_guest", &[0u8; 200]);
        let b = TsmBackend::open(dir.path(), Platform::Tdx).unwrap();
        assert!(matches!(b.launch_field(), Err(TeeError::BadEvidence(_))));
    }

    #[test]
    fn launch_field_offsets_match_the_verifier_parsers() {
        // The real evidence set: the offsets must read what the verifier's parsers read.
        let m = milan();
        let parsed = SnpReport::parse(&m.report).unwrap();
        assert_eq!(&m.report[SNP_HOST_DATA], parsed.host_data.as_slice());
        let quote = dait_testdata::read("tdx/dcap-qvl__v4_b0c06f_quote.bin");
        let parsed = dait_verifier::tdx::TdxQuote::parse(&quote).unwrap();
        assert_eq!(
            &quote[TDX_MR_CONFIG_ID],
            parsed.body.mr_config_id.as_slice()
        );
        assert_eq!(&quote[TDX_REPORT_DATA], parsed.body.report_data.as_slice());
    }

    /// The real virtee/sev Milan report and its VCEK, AMD's Milan ASK and ARK (DER), from the evidence set.
    struct Milan {
        report: Vec<u8>,
        vcek: Vec<u8>,
        ask: Vec<u8>,
        ark: Vec<u8>,
    }

    fn milan() -> Milan {
        let der = |name: &str| {
            let mut d = dait_verifier::x509::pem_to_der(&dait_testdata::read(name)).unwrap();
            assert_eq!(d.len(), 1);
            d.pop().unwrap()
        };
        Milan {
            report: dait_verifier::snp::decode_report_file(&dait_testdata::read(
                "snp/virtee__milan_report.hex",
            )),
            vcek: dait_testdata::read("snp/virtee__milan_vcek.der"),
            ask: der("snp/amd_milan_ask.pem"),
            ark: der("snp/amd_milan_ark.pem"),
        }
    }

    /// A host's certificate table with `entries`, zero-padded to a page as the kernel returns it.
    fn auxblob(entries: &[(CertKind, &[u8])]) -> Vec<u8> {
        let e: Vec<([u8; 16], &[u8])> = entries.iter().map(|(k, c)| (k.guid(), *c)).collect();
        let mut t = cert_table::encode(&e).unwrap();
        t.resize(t.len().next_multiple_of(4096), 0);
        t
    }

    /// An emulated SNP guest whose `outblob` is the real report and whose `auxblob` is `aux` (absent: no file).
    fn snp_tree(report: &[u8], aux: Option<&[u8]>) -> (tempfile::TempDir, [u8; 64]) {
        let dir = tree("sev_guest", report);
        if let Some(a) = aux {
            fs::write(dir.path().join(ENTRY).join("auxblob"), a).unwrap();
        }
        let rd: [u8; 64] = report[SNP_REPORT_DATA].try_into().unwrap();
        (dir, rd)
    }

    fn snp_chain(report: &[u8], aux: Option<&[u8]>) -> Result<Vec<Vec<u8>>, TeeError> {
        let (dir, rd) = snp_tree(report, aux);
        let b = TsmBackend::open(dir.path(), Platform::Snp).unwrap();
        match b.evidence(&rd)?.evidence {
            Some(cpu_evidence::Evidence::Snp(e)) => {
                assert_eq!(e.report, report);
                Ok(e.cert_chain)
            }
            other => panic!("not SNP evidence: {other:?}"),
        }
    }

    #[test]
    fn snp_report_is_read_with_its_chain() {
        let m = milan();
        let aux = auxblob(&[
            (CertKind::Ark, &m.ark),
            (CertKind::Vcek, &m.vcek),
            (CertKind::Ask, &m.ask),
        ]);
        let chain = snp_chain(&m.report, Some(&aux)).unwrap();
        assert_eq!(chain, [m.vcek.clone(), m.ask.clone(), m.ark.clone()]);
        // The chain is in the verifier's order: it verifies the real report.
        let v = dait_verifier::snp::verify_report_with_amd_certs(
            &m.report,
            &chain[0],
            Some(&chain[1]),
            Some(&chain[2]),
            &dait_verifier::snp::SnpPolicy::default(),
            dait_verifier::UnixTime::parse_rfc3339("2025-01-01T00:00:00Z").unwrap(),
        )
        .unwrap();
        assert_eq!(v.report_data(), &m.report[SNP_REPORT_DATA]);
    }

    #[test]
    fn snp_table_without_ask_and_ark_gives_the_vcek_alone() {
        let m = milan();
        let aux = auxblob(&[(CertKind::Vcek, &m.vcek), (CertKind::Ark, &m.ark)]);
        assert_eq!(snp_chain(&m.report, Some(&aux)).unwrap(), [m.vcek]);
    }

    #[test]
    fn snp_empty_auxblob_is_missing_certificates() {
        let m = milan();
        assert!(matches!(
            snp_chain(&m.report, Some(&[])),
            Err(TeeError::SnpCertMissing("VCEK"))
        ));
        // A table of zeros (the terminator only) holds no VCEK either.
        assert!(matches!(
            snp_chain(&m.report, Some(&[0u8; 4096])),
            Err(TeeError::SnpCertMissing("VCEK"))
        ));
    }

    #[test]
    fn snp_table_without_the_signing_key_is_missing_certificates() {
        let m = milan();
        // The report says VLEK (KEY_INFO bits 4:2 = 1, offset 0x48); the table has the VCEK only.
        let mut report = m.report.clone();
        report[0x48] = (report[0x48] & !0x1c) | (1 << 2);
        let aux = auxblob(&[(CertKind::Vcek, &m.vcek)]);
        assert!(matches!(
            snp_chain(&report, Some(&aux)),
            Err(TeeError::SnpCertMissing("VLEK"))
        ));
        // An unsigned report (SIGNING_KEY 7) has no chain to carry.
        report[0x48] |= 0x1c;
        assert!(matches!(
            snp_chain(&report, Some(&aux)),
            Err(TeeError::BadEvidence(_))
        ));
    }

    #[test]
    fn snp_malformed_auxblob_is_refused() {
        let m = milan();
        let aux = auxblob(&[(CertKind::Vcek, &m.vcek)]);
        assert!(matches!(
            snp_chain(&m.report, Some(&aux[..30])),
            Err(TeeError::SnpCertTable(CertTableError::Malformed(_)))
        ));
        let mut unknown = aux.clone();
        unknown[0] ^= 1;
        assert!(matches!(
            snp_chain(&m.report, Some(&unknown)),
            Err(TeeError::SnpCertTable(CertTableError::UnknownGuid(_)))
        ));
    }

    #[test]
    fn snp_unreadable_auxblob_is_an_io_error() {
        let m = milan();
        assert!(matches!(
            snp_chain(&m.report, None),
            Err(TeeError::Io("configfs-tsm auxblob", _))
        ));
    }

    #[test]
    fn snp_malformed_report_is_refused() {
        let rd = [9u8; 64];
        let mut report = vec![0u8; 1184];
        report[SNP_REPORT_DATA].copy_from_slice(&rd);
        let dir = tree("sev_guest", &report);
        fs::write(dir.path().join(ENTRY).join("auxblob"), [0u8; 4096]).unwrap();
        let b = TsmBackend::open(dir.path(), Platform::Snp).unwrap();
        assert!(matches!(b.evidence(&rd), Err(TeeError::SnpReport(_))));
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
