//! The vTPM (`--tpm <TCTI>`, feature `vtpm`): the runtime events also go into PCR
//! [`runtime_log::RUNTIME_VTPM_PCR`] (SHA-256 bank), and each bundle carries a TPM2_Quote by a deterministic
//! attestation key over that PCR and the boot PCRs, qualified by `tpm_qualifying_data(report_data)`
//! (PROTOCOL.md §7.4).
//!
//! [`VtpmBackend`] wraps the CPU backend: it forwards everything and adds the vTPM. The TSS context is not
//! `Send`, so one worker thread owns it and serves requests over a channel; every reply is awaited with
//! [`TPM_TIMEOUT`].

use std::sync::mpsc;
use std::time::Duration;

use dait_chain_client::proto::{CpuEvidence, PcrValue, TpmEvidence};
use dait_chain_client::runtime_log::{self, EventLog};
use sha2::{Digest as _, Sha256};
use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::handles::{KeyHandle, PcrHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    Data, DigestValues, EccPoint, EccScheme, HashScheme, KeyDerivationFunctionScheme,
    PcrSelectionList, PcrSlot, Public, PublicBuilder, PublicEccParametersBuilder, SignatureScheme,
    SymmetricDefinitionObject,
};
use tss_esapi::traits::Marshall as _;
use tss_esapi::{Context, TctiNameConf};

use super::{LaunchField, Platform, TeeBackend, TeeError};

/// The longest the agent waits for one TPM operation (a quote on a busy TPM takes well under a second).
pub const TPM_TIMEOUT: Duration = Duration::from_secs(30);

/// The boot PCRs quoted with the runtime PCR: firmware and boot loader (0–7) and the UKI's sections (11).
pub const BOOT_PCRS: [u8; 9] = [0, 1, 2, 3, 4, 5, 6, 7, 11];

// The extend names the PCR's handle: it is PCR 23's.
const _: () = assert!(runtime_log::RUNTIME_VTPM_PCR == 23);

/// `TPM_ALG_SHA256`, the bank of every quoted PCR.
const ALG_SHA256: u32 = 0x000b;

/// How often a quote is retaken when a boot PCR moved between the quote and the PCR read.
const QUOTE_ATTEMPTS: usize = 3;

/// The CPU backend with a vTPM beside it.
pub struct VtpmBackend {
    inner: Box<dyn TeeBackend>,
    requests: mpsc::Sender<Request>,
}

impl std::fmt::Debug for VtpmBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VtpmBackend").finish_non_exhaustive()
    }
}

enum Request {
    Extend([u8; 32], mpsc::SyncSender<Result<(), TeeError>>),
    Quote([u8; 32], mpsc::SyncSender<Result<TpmEvidence, TeeError>>),
}

fn tpm_error(what: &'static str) -> impl FnOnce(tss_esapi::Error) -> TeeError {
    move |e| TeeError::Tpm(what, Box::new(e))
}

impl VtpmBackend {
    /// Opens the TPM named by `tcti` (`device:/dev/tpmrm0`, `swtpm:host=127.0.0.1,port=2321`, ...), checks that
    /// the runtime PCR is in its reset state (all zero; [`TeeError::TpmPcrNotReset`] names the value otherwise)
    /// and creates the attestation key; then wraps `inner`.
    pub fn open(inner: Box<dyn TeeBackend>, tcti: &str) -> Result<Self, TeeError> {
        let name_conf: TctiNameConf = tcti.parse().map_err(tpm_error("TCTI"))?;
        let (requests, queue) = mpsc::channel::<Request>();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("vtpm".into())
            .spawn(move || worker(name_conf, &ready_tx, &queue))
            .map_err(|e| TeeError::Io("vTPM worker thread", e))?;
        ready_rx
            .recv_timeout(TPM_TIMEOUT)
            .map_err(|_| TeeError::TpmTimeout)??;
        Ok(Self { inner, requests })
    }

    fn call<T>(
        &self,
        make: impl FnOnce(mpsc::SyncSender<Result<T, TeeError>>) -> Request,
    ) -> Result<T, TeeError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.requests
            .send(make(tx))
            .map_err(|_| TeeError::TpmTimeout)?;
        rx.recv_timeout(TPM_TIMEOUT)
            .map_err(|_| TeeError::TpmTimeout)?
    }
}

impl TeeBackend for VtpmBackend {
    fn platform(&self) -> Platform {
        self.inner.platform()
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<CpuEvidence, TeeError> {
        self.inner.evidence(report_data)
    }

    /// Extends the CPU backend's register (its [`TeeError::Unsupported`] is passed on, after the vTPM
    /// extend) and the runtime PCR with SHA-256 of the last event's data.
    fn extend_runtime(&self, log: &EventLog) -> Result<(), TeeError> {
        let cpu = self.inner.extend_runtime(log);
        if let Err(e) = &cpu
            && !matches!(e, TeeError::Unsupported(_))
        {
            return cpu;
        }
        let Some(event) = log.events().last() else {
            return cpu;
        };
        let digest: [u8; 32] = Sha256::digest(event.data.as_bytes()).into();
        self.call(|tx| Request::Extend(digest, tx))?;
        cpu
    }

    fn launch_field(&self) -> Result<LaunchField, TeeError> {
        self.inner.launch_field()
    }

    fn tpm_quote(&self, report_data: &[u8; 64]) -> Result<Option<TpmEvidence>, TeeError> {
        let qualifying = dait_chain_client::tpm_qualifying_data(report_data).0;
        self.call(|tx| Request::Quote(qualifying, tx)).map(Some)
    }
}

/// The worker: opens the context, prepares the key, reports readiness on `ready`, then serves `queue` until
/// the backend (the only sender) is dropped.
fn worker(
    name_conf: TctiNameConf,
    ready: &mpsc::SyncSender<Result<(), TeeError>>,
    queue: &mpsc::Receiver<Request>,
) {
    let mut tpm = match Tpm::open(name_conf) {
        Ok(tpm) => {
            // The receiver waits with a timeout; if it gave up, the backend was never built.
            if ready.send(Ok(())).is_err() {
                return;
            }
            tpm
        }
        Err(e) => {
            // Nobody to tell if the receiver gave up; the open already failed for it.
            let _ = ready.send(Err(e));
            return;
        }
    };
    for request in queue {
        // A requester that timed out dropped its receiver: the reply has no one to go to.
        match request {
            Request::Extend(digest, reply) => {
                let _ = reply.send(tpm.extend(digest));
            }
            Request::Quote(qualifying, reply) => {
                let _ = reply.send(tpm.quote(&qualifying));
            }
        }
    }
}

/// The TSS context with the attestation key loaded.
struct Tpm {
    context: Context,
    ak: KeyHandle,
    ak_public: Vec<u8>,
    selection: PcrSelectionList,
}

/// The attestation key's template: a restricted ECDSA P-256 / SHA-256 signing key with no policy and an empty
/// unique field, created as a primary key in the endorsement hierarchy. A primary key is derived from the
/// hierarchy's seed and the template, so the same TPM gives the same AK at every start.
pub fn ak_template() -> Result<Public, tss_esapi::Error> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_restricted(true)
        .with_sign_encrypt(true)
        .build()?;
    let parameters = PublicEccParametersBuilder::new()
        .with_ecc_scheme(EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256)))
        .with_curve(EccCurve::NistP256)
        .with_is_signing_key(true)
        .with_is_decryption_key(false)
        .with_restricted(true)
        .with_key_derivation_function_scheme(KeyDerivationFunctionScheme::Null)
        .with_symmetric(SymmetricDefinitionObject::Null)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(parameters)
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
}

fn pcr_slot(index: u8) -> Result<PcrSlot, TeeError> {
    let bit = 1u32
        .checked_shl(u32::from(index))
        .ok_or(TeeError::Unsupported("PCR index"))?;
    PcrSlot::try_from(bit).map_err(tpm_error("PCR index"))
}

fn sha256_selection(pcrs: &[u8]) -> Result<PcrSelectionList, TeeError> {
    let slots = pcrs
        .iter()
        .map(|p| pcr_slot(*p))
        .collect::<Result<Vec<_>, _>>()?;
    PcrSelectionList::builder()
        .with_selection(HashingAlgorithm::Sha256, &slots)
        .build()
        .map_err(tpm_error("PCR selection"))
}

impl Tpm {
    fn open(name_conf: TctiNameConf) -> Result<Self, TeeError> {
        let mut context = Context::new(name_conf).map_err(tpm_error("open"))?;
        let runtime = Self::read(&mut context, &[runtime_log::RUNTIME_VTPM_PCR])?;
        if let Some((_, value)) = runtime.first()
            && *value != [0u8; 32]
        {
            return Err(TeeError::TpmPcrNotReset {
                pcr: runtime_log::RUNTIME_VTPM_PCR,
                value: hex::encode(value),
            });
        }
        let template = ak_template().map_err(tpm_error("attestation key template"))?;
        let created = context
            .execute_with_session(Some(AuthSession::Password), |c| {
                c.create_primary(Hierarchy::Endorsement, template, None, None, None, None)
            })
            .map_err(tpm_error("create the attestation key"))?;
        let ak_public = created
            .out_public
            .marshall()
            .map_err(tpm_error("attestation key public area"))?;
        let mut pcrs = BOOT_PCRS.to_vec();
        pcrs.push(runtime_log::RUNTIME_VTPM_PCR);
        Ok(Self {
            context,
            ak: created.key_handle,
            ak_public,
            selection: sha256_selection(&pcrs)?,
        })
    }

    /// (index, value) of `pcrs` in the SHA-256 bank, ascending.
    fn read(context: &mut Context, pcrs: &[u8]) -> Result<Vec<(u8, [u8; 32])>, TeeError> {
        Self::read_selection(context, sha256_selection(pcrs)?, pcrs)
    }

    fn read_selection(
        context: &mut Context,
        selection: PcrSelectionList,
        pcrs: &[u8],
    ) -> Result<Vec<(u8, [u8; 32])>, TeeError> {
        let data = tss_esapi::abstraction::pcr::read_all(context, selection)
            .map_err(tpm_error("PCR read"))?;
        let bank = data
            .pcr_bank(HashingAlgorithm::Sha256)
            .ok_or(TeeError::Unsupported("a TPM without a SHA-256 PCR bank"))?;
        let mut sorted = pcrs.to_vec();
        sorted.sort_unstable();
        sorted
            .into_iter()
            .map(|index| {
                let digest = bank
                    .get_digest(pcr_slot(index)?)
                    .ok_or(TeeError::BadEvidence("the TPM left out a selected PCR"))?;
                let value = <[u8; 32]>::try_from(digest.value())
                    .map_err(|_| TeeError::BadEvidence("a SHA-256 PCR value is not 32 bytes"))?;
                Ok((index, value))
            })
            .collect()
    }

    fn extend(&mut self, digest: [u8; 32]) -> Result<(), TeeError> {
        let mut values = DigestValues::new();
        values.set(
            HashingAlgorithm::Sha256,
            digest
                .to_vec()
                .try_into()
                .map_err(tpm_error("PCR digest"))?,
        );
        self.context
            .execute_with_session(Some(AuthSession::Password), |c| {
                c.pcr_extend(PcrHandle::Pcr23, values)
            })
            .map_err(tpm_error("PCR extend"))
    }

    /// TPM2_Quote, then the quoted PCRs' values; retaken when a PCR moved in between (the PCR digest of the
    /// quote is checked against the values read).
    fn quote(&mut self, qualifying: &[u8; 32]) -> Result<TpmEvidence, TeeError> {
        let mut pcrs = BOOT_PCRS.to_vec();
        pcrs.push(runtime_log::RUNTIME_VTPM_PCR);
        for _ in 0..QUOTE_ATTEMPTS {
            let data = Data::try_from(qualifying.to_vec()).map_err(tpm_error("qualifying data"))?;
            let selection = self.selection.clone();
            let ak = self.ak;
            let (attest, signature) = self
                .context
                .execute_with_session(Some(AuthSession::Password), |c| {
                    c.quote(ak, data, SignatureScheme::Null, selection)
                })
                .map_err(tpm_error("quote"))?;
            let attest = attest.marshall().map_err(tpm_error("quote attest"))?;
            let signature = signature.marshall().map_err(tpm_error("quote signature"))?;
            let values = Self::read_selection(&mut self.context, self.selection.clone(), &pcrs)?;
            let quoted = dait_verifier::tpm::parse_attest(&attest)
                .map_err(|_| TeeError::BadEvidence("the TPM's quote does not parse"))?;
            let mut h = Sha256::new();
            for (_, value) in &values {
                h.update(value);
            }
            let digest: [u8; 32] = h.finalize().into();
            if digest.as_slice() != quoted.pcr_digest {
                continue;
            }
            return Ok(TpmEvidence {
                attest,
                signature,
                ak_public: self.ak_public.clone(),
                ak_cert_chain: Vec::new(),
                pcrs: values
                    .into_iter()
                    .map(|(index, value)| PcrValue {
                        index: u32::from(index),
                        digest: value.to_vec(),
                    })
                    .collect(),
                pcr_hash_alg: ALG_SHA256,
            });
        }
        Err(TeeError::BadEvidence(
            "the quoted PCRs kept changing between the quote and the PCR read",
        ))
    }
}
