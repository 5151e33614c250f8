//! The simulated TEE (feature `simulated-tee`; development and CI only).
//!
//! Two keys, not to be confused:
//! - the **simulated platform root** (`sim-root.key` in the state directory, created by
//!   `dait-host init --tee simulated`; its public key is `sim-root.pub`, which tenants pin with
//!   `dangerous_allow_simulated`). It stands in for the CPU vendor's key and is the only key the
//!   agent ever keeps on disk. It is not a TEE key and protects nothing in production.
//! - a per-boot **attestation key**, generated in memory and certified by the root; it signs each
//!   `SimulatedReport`. The keyset keys (receipt, OHTTP, TLS) are never written anywhere.
//!
//! Measurements: MRTD and RTMR0..2 are fixed values (`SHA-384("dait/simulated/<name>")`); RTMR3
//! is extended with the runtime event log like TDX RTMR3. A guest launched with a `MRCONFIGID`
//! (`--simulated-mrconfigid`) simulates a TDX guest whose kernel cannot extend RTMR3: RTMR3 stays zero,
//! [`TeeBackend::extend_runtime`] is unsupported, and the report carries the `MRCONFIGID` that must bind
//! the runtime configuration at launch (PROTOCOL.md §10.1).

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use dait_chain_client::proto::{SimulatedReport, SimulatedReportBody, cpu_evidence};
use dait_chain_client::{HostSigningKey, simulated_key_digest, simulated_report_digest};
use prost::Message;
use rand::RngCore;
use sha2::{Digest, Sha256, Sha384};
use zeroize::Zeroizing;

use super::{CpuEvidence, LaunchField, Platform, TeeBackend, TeeError};
use dait_chain_client::runtime_log::EventLog;

/// File of the simulated platform root secret (hex, mode 0600).
pub const ROOT_KEY_FILE: &str = "sim-root.key";
/// File of the simulated platform root public key (hex of the SEC1 uncompressed point, 65 bytes).
pub const ROOT_PUB_FILE: &str = "sim-root.pub";

fn fixed_register(name: &str) -> Vec<u8> {
    Sha384::digest(format!("dait/simulated/{name}").as_bytes()).to_vec()
}

fn load_root(state_dir: &Path) -> Result<HostSigningKey, TeeError> {
    let text = Zeroizing::new(
        fs::read_to_string(state_dir.join(ROOT_KEY_FILE)).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                TeeError::RootMissing
            } else {
                TeeError::Io("simulated root key", e)
            }
        })?,
    );
    let mut secret = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), &mut secret[..])
        .map_err(|_| TeeError::BadKeyFile(ROOT_KEY_FILE))?;
    HostSigningKey::from_bytes(&secret).map_err(|_| TeeError::BadKeyFile(ROOT_KEY_FILE))
}

/// Create the simulated platform root in `state_dir` if absent; return its public key (SEC1).
pub fn init_root(state_dir: &Path) -> Result<[u8; 65], TeeError> {
    let key_path = state_dir.join(ROOT_KEY_FILE);
    let root = if key_path.exists() {
        load_root(state_dir)?
    } else {
        let (key, secret) = loop {
            let mut secret = Zeroizing::new([0u8; 32]);
            rand::rngs::OsRng.fill_bytes(&mut secret[..]);
            if let Ok(k) = HostSigningKey::from_bytes(&secret) {
                break (k, secret);
            }
        };
        let text = Zeroizing::new(hex::encode(&secret[..]));
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts
            .open(&key_path)
            .map_err(|e| TeeError::Io("simulated root key", e))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| TeeError::Io("simulated root key", e))?;
        key
    };
    let public = root.verifying_key().to_sec1();
    fs::write(
        state_dir.join(ROOT_PUB_FILE),
        format!("{}\n", hex::encode(public)),
    )
    .map_err(|e| TeeError::Io("simulated root public key", e))?;
    Ok(public)
}

/// The simulated backend.
pub struct SimulatedBackend {
    attestation_key: HostSigningKey,
    attestation_pub: [u8; 65],
    attestation_key_signature: Vec<u8>,
    runtime: Mutex<([u8; 48], [u8; 32])>,
    launch_mrconfigid: Option<[u8; 48]>,
}

impl std::fmt::Debug for SimulatedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedBackend").finish_non_exhaustive()
    }
}

impl SimulatedBackend {
    /// Load the root from `state_dir` and certify a fresh per-boot attestation key.
    pub fn open(state_dir: &Path) -> Result<Self, TeeError> {
        let root = load_root(state_dir)?;
        let attestation_key = HostSigningKey::generate(&mut rand::rngs::OsRng);
        let attestation_pub = attestation_key.verifying_key().to_sec1();
        let attestation_key_signature = root
            .sign_prehash(&simulated_key_digest(&attestation_pub))
            .0
            .to_vec();
        Ok(Self {
            attestation_key,
            attestation_pub,
            attestation_key_signature,
            runtime: Mutex::new((
                [0u8; 48],
                Sha256::digest(EventLog::default().encode()).into(),
            )),
            launch_mrconfigid: None,
        })
    }

    /// Launch the simulated guest with `mrconfigid` (none: no launch-time value, RTMR3 extended).
    pub fn with_launch_mrconfigid(mut self, mrconfigid: Option<[u8; 48]>) -> Self {
        self.launch_mrconfigid = mrconfigid;
        self
    }
}

impl TeeBackend for SimulatedBackend {
    fn platform(&self) -> Platform {
        Platform::Simulated
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<CpuEvidence, TeeError> {
        let (rtmr3, log_digest) = *self.runtime.lock().map_err(|_| TeeError::Race)?;
        let body = SimulatedReportBody {
            platform: Platform::Simulated as i32,
            report_data: report_data.to_vec(),
            measurements: vec![
                fixed_register("mrtd"),
                fixed_register("rtmr0"),
                fixed_register("rtmr1"),
                fixed_register("rtmr2"),
                rtmr3.to_vec(),
            ],
            event_log_digest: log_digest.to_vec(),
            mr_config_id: self
                .launch_mrconfigid
                .map(|v| v.to_vec())
                .unwrap_or_default(),
        }
        .encode_to_vec();
        let signature = self
            .attestation_key
            .sign_prehash(&simulated_report_digest(&body))
            .0
            .to_vec();
        Ok(CpuEvidence {
            evidence: Some(cpu_evidence::Evidence::Simulated(SimulatedReport {
                body,
                signature,
                attestation_key: self.attestation_pub.to_vec(),
                attestation_key_signature: self.attestation_key_signature.clone(),
            })),
        })
    }

    fn extend_runtime(&self, log: &EventLog) -> Result<(), TeeError> {
        let mut r = self.runtime.lock().map_err(|_| TeeError::Race)?;
        if self.launch_mrconfigid.is_some() {
            // The served log is still signed into the report (its digest); RTMR3 stays zero.
            r.1 = Sha256::digest(log.encode()).into();
            return Err(TeeError::Unsupported(
                "runtime register extension (simulated guest launched with MRCONFIGID)",
            ));
        }
        *r = (log.register(), Sha256::digest(log.encode()).into());
        Ok(())
    }

    fn launch_field(&self) -> Result<LaunchField, TeeError> {
        Ok(LaunchField::MrConfigId(
            self.launch_mrconfigid.unwrap_or([0; 48]),
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use dait_chain_client::HostVerifyingKey;

    #[test]
    fn evidence_chain_verifies() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            SimulatedBackend::open(dir.path()),
            Err(TeeError::RootMissing)
        ));
        let root_pub = init_root(dir.path()).unwrap();
        // A second init keeps the same root.
        assert_eq!(init_root(dir.path()).unwrap(), root_pub);
        let pub_text = fs::read_to_string(dir.path().join(ROOT_PUB_FILE)).unwrap();
        assert_eq!(pub_text.trim(), hex::encode(root_pub));

        let b = SimulatedBackend::open(dir.path()).unwrap();
        let mut log = EventLog::default();
        log.record("dait.model-id", "m");
        b.extend_runtime(&log).unwrap();
        let ev = b.evidence(&[5u8; 64]).unwrap();
        let Some(cpu_evidence::Evidence::Simulated(r)) = ev.evidence else {
            panic!("not simulated")
        };
        let root = HostVerifyingKey::from_sec1(&root_pub).unwrap();
        let ak: [u8; 65] = r.attestation_key.clone().try_into().unwrap();
        root.verify_prehash(
            &simulated_key_digest(&ak),
            &dait_chain_client::HostSignature(
                r.attestation_key_signature.clone().try_into().unwrap(),
            ),
        )
        .unwrap();
        let akv = HostVerifyingKey::from_sec1(&ak).unwrap();
        akv.verify_prehash(
            &simulated_report_digest(&r.body),
            &dait_chain_client::HostSignature(r.signature.clone().try_into().unwrap()),
        )
        .unwrap();
        let body = SimulatedReportBody::decode(&r.body[..]).unwrap();
        assert_eq!(body.platform, Platform::Simulated as i32);
        assert_eq!(body.report_data, vec![5u8; 64]);
        assert_eq!(body.measurements[4], log.register().to_vec());
        assert_eq!(body.event_log_digest, Sha256::digest(log.encode()).to_vec());
    }

    #[test]
    fn launch_mrconfigid_is_reported_and_rtmr3_stays_zero() {
        let dir = tempfile::tempdir().unwrap();
        init_root(dir.path()).unwrap();
        let plain = SimulatedBackend::open(dir.path()).unwrap();
        assert_eq!(
            plain.launch_field().unwrap(),
            LaunchField::MrConfigId([0; 48])
        );
        let b = SimulatedBackend::open(dir.path())
            .unwrap()
            .with_launch_mrconfigid(Some([9; 48]));
        assert_eq!(b.launch_field().unwrap(), LaunchField::MrConfigId([9; 48]));
        let mut log = EventLog::default();
        log.record("model-id", "m");
        assert!(matches!(
            b.extend_runtime(&log),
            Err(TeeError::Unsupported(_))
        ));
        let Some(cpu_evidence::Evidence::Simulated(r)) = b.evidence(&[1; 64]).unwrap().evidence
        else {
            panic!("not simulated")
        };
        let body = SimulatedReportBody::decode(&r.body[..]).unwrap();
        assert_eq!(body.mr_config_id, vec![9u8; 48]);
        assert_eq!(body.measurements[4], vec![0u8; 48]);
        assert_eq!(body.event_log_digest, Sha256::digest(log.encode()).to_vec());
    }

    #[test]
    fn malformed_root_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(ROOT_KEY_FILE), "nothex").unwrap();
        assert!(matches!(
            SimulatedBackend::open(dir.path()),
            Err(TeeError::BadKeyFile(_))
        ));
    }
}
