//! The collateral the agent embeds in its evidence bundles so that a tenant verifies them offline, fetched from
//! the vendors' services and cached on disk under `<state dir>/collateral`. This file holds Intel's; [`amd`]
//! the AMD KDS client, [`nvidia`] the NVIDIA RIM and OCSP client; `service` the HTTP(S) exchange they share;
//! [`keep_fresh`] and [`refresh_and_report`] keep a source fresh and tell readiness (`collateral_stale`).
//!
//! Intel TDX collateral comes from a PCS or PCCS (API v4). The agent fetches the TCB Info
//! (`/tdx/certification/v4/tcb?fmspc=…`, chain in `TCB-Info-Issuer-Chain`), the QE Identity
//! (`/tdx/certification/v4/qe/identity`, chain in `SGX-Enclave-Identity-Issuer-Chain`), the PCK CRL
//! (`/sgx/certification/v4/pckcrl?ca=…&encoding=der`, chain in `SGX-PCK-CRL-Issuer-Chain`) and the root CA CRL
//! (`/sgx/certification/v4/rootcacrl`, DER or hex). The issuer chains arrive URL-encoded PEM. Parsing is the
//! verifier's ([`TdxCollateral::from_pcs_files`], [`TdxCollateral::from_pcs_dir`]); the cache is a directory
//! of those same files per FMSPC and PCK CA, so `dait-tenant` and `dait-verify` can read it as it is. A cached
//! set is used while its earliest `nextUpdate` is more than the refresh margin away; otherwise it is fetched
//! again. The collateral is signed by Intel: the transport adds no trust, and [`check_against_quote`] runs
//! the verifier's signature, chain and CRL checks on it.
//!
//! On a TDX guest `dait-host serve` runs [`keep_fresh`] with a [`PcsClient`]: it fetches the collateral for
//! the platform of its own quote (FMSPC and PCK CA from the quote's PCK certificate) into [`CollateralSlot`],
//! which every evidence bundle carries. The PCS is `--pccs-url` / `DAIT_PCCS_URL` (default Intel's public
//! PCS). On an SNP guest it does the same with an [`amd::KdsClient`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use dait_chain_client::proto::{self, Platform, cpu_evidence::Evidence};
use dait_verifier::UnixTime;
use dait_verifier::collateral::{CollateralError, LoadError, PckPlatform, PcsFiles, TdxCollateral};
use dait_verifier::tdx::{TdxCryptoOutcome, TdxError, TdxQuote, verify_crypto};
use futures::future::BoxFuture;

use crate::http::App;
use service::{Reply, Service};

pub mod amd;
pub mod nvidia;
mod service;

/// Environment variable naming the PCS or PCCS base URL.
pub const PCCS_URL_ENV: &str = "DAIT_PCCS_URL";
/// Intel's public Provisioning Certification Service.
pub const DEFAULT_PCCS_URL: &str = "https://api.trustedservices.intel.com";
/// Environment variable naming a PEM file of the TLS roots for `https` collateral services (default: the
/// system bundle).
pub const PCCS_CA_FILE_ENV: &str = "DAIT_PCCS_CA_FILE";
/// The collateral cache, under the state directory.
pub const CACHE_DIR: &str = "collateral";
/// The system's PEM bundle of TLS roots (Debian layout), used when no roots are named.
pub const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Why collateral could not be fetched, cached or accepted. Each failing item is named.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The PCS URL is not `http(s)://host[:port][/prefix]`.
    #[error("PCS URL {0:?} is not http(s)://host[:port][/prefix]")]
    BadUrl(String),
    /// The TLS roots for an `https` PCS could not be loaded.
    #[error("TLS roots from {}", path.display())]
    Roots {
        /// The PEM file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The connection or the exchange for an item failed.
    #[error("fetching {item}: {reason}")]
    Transport {
        /// The collateral item.
        item: &'static str,
        /// Why (I/O, TLS or HTTP).
        reason: String,
    },
    /// The PCS did not answer an item within the timeout.
    #[error("fetching {item}: no answer within {timeout:?}")]
    Timeout {
        /// The collateral item.
        item: &'static str,
        /// The bound.
        timeout: Duration,
    },
    /// The PCS answered an item with a status other than 200 (404: the PCS has no such item).
    #[error("fetching {item}: HTTP status {status}")]
    Status {
        /// The collateral item.
        item: &'static str,
        /// The status.
        status: u16,
    },
    /// A response lacks its issuer-chain header, or the header is not URL-encoded text.
    #[error("fetching {item}: header {header} missing or malformed")]
    Header {
        /// The collateral item.
        item: &'static str,
        /// The header.
        header: &'static str,
    },
    /// The root CA CRL is neither DER nor hex-encoded DER.
    #[error("root CA CRL is neither DER nor hex")]
    RootCrlEncoding,
    /// The quote's PCK certificate does not say which collateral to fetch.
    #[error("reading the FMSPC and PCK CA of the quote")]
    Quote(#[source] CollateralError),
    /// The TEE gave no quote to fetch collateral for.
    #[error("the TEE's quote")]
    Evidence(#[source] crate::tee::TeeError),
    /// The fetched files are not valid collateral.
    #[error("fetched collateral is not valid")]
    Invalid(#[source] CollateralError),
    /// The cache directory could not be written or read back.
    #[error("collateral cache {}", path.display())]
    Cache {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The cached files are not valid collateral.
    #[error("collateral cache")]
    CacheInvalid(#[source] LoadError),
    /// The collateral's earliest `nextUpdate` is not after the time asked for.
    #[error("collateral is stale: nextUpdate {next_update:?} is not after {now:?}")]
    Stale {
        /// The earliest `nextUpdate` of the TCB Info and QE Identity.
        next_update: UnixTime,
        /// The time of the check.
        now: UnixTime,
    },
    /// The collateral carries no parseable `nextUpdate`.
    #[error("collateral carries no nextUpdate")]
    NoNextUpdate,
    /// The verifier rejects the collateral for a quote (bad signature, chain, CRL or validity).
    #[error("collateral rejected for the quote")]
    Rejected(#[source] TdxError),
    /// A response's `Content-Type` is not the one the service serves the item as.
    #[error("fetching {item}: unexpected content type {got:?}")]
    ContentType {
        /// The collateral item.
        item: &'static str,
        /// The content type received (empty when absent).
        got: String,
    },
    /// An AMD item (VCEK, ASK/ARK, CRL) does not verify: signature, pinned root, validity, binding to the
    /// report, revocation.
    #[error("{item} rejected")]
    AmdRejected {
        /// The collateral item.
        item: &'static str,
        /// The verifier's finding.
        #[source]
        source: dait_verifier::snp::SnpError,
    },
    /// An NVIDIA RIM is not the service's JSON, or its RIM does not verify.
    #[error("NVIDIA RIM {id}: {reason}")]
    RimRejected {
        /// The RIM id asked for.
        id: String,
        /// Why.
        reason: RimFailure,
    },
    /// An OCSP response for certificate `index` of a GPU chain does not verify.
    #[error("OCSP response for certificate {index} of the GPU chain rejected")]
    OcspRejected {
        /// Position in the chain (0 = leaf).
        index: usize,
        /// The verifier's finding.
        #[source]
        source: dait_verifier::nvidia::ocsp::OcspError,
    },
}

/// Why an NVIDIA RIM was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RimFailure {
    /// The body is not `{"id":…,"rim":"<base64>",…}` or its `id` is another RIM's.
    #[error("the service's JSON is malformed")]
    Json,
    /// The GPU's SPDM report does not name its driver and VBIOS versions, project and SKUs.
    #[error("the SPDM report does not name the RIMs")]
    NoIds,
    /// The RIM's signature, chain or content does not verify.
    #[error("the RIM does not verify")]
    Verify(#[source] dait_verifier::rim::RimError),
}

/// Which PCK CA issued the platform's PCK certificate (its CRL is fetched).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PckCa {
    /// `Intel SGX PCK Platform CA`.
    Platform,
    /// `Intel SGX PCK Processor CA`.
    Processor,
}

impl PckCa {
    fn as_str(self) -> &'static str {
        match self {
            PckCa::Platform => "platform",
            PckCa::Processor => "processor",
        }
    }
}

/// The files of a cached set, named so that [`TdxCollateral::from_pcs_dir`] recognises each role.
const TCB_INFO_FILE: &str = "tcb_info.json";
const QE_IDENTITY_FILE: &str = "qe_identity.json";
const PCK_CRL_FILE: &str = "pck_crl.der";
const ROOT_CRL_FILE: &str = "root_crl.der";
const TCB_CHAIN_FILE: &str = "tcb_info_issuer_chain.pem";
const QE_CHAIN_FILE: &str = "qe_identity_issuer_chain.pem";
const CRL_CHAIN_FILE: &str = "pck_crl_issuer_chain.pem";

/// The TLS roots for `https` collateral services: `DAIT_PCCS_CA_FILE`, default [`SYSTEM_CA_FILE`].
pub fn ca_file() -> PathBuf {
    std::env::var_os(PCCS_CA_FILE_ENV).map_or_else(|| PathBuf::from(SYSTEM_CA_FILE), PathBuf::from)
}

/// A PCS or PCCS client with an on-disk cache.
#[derive(Clone, Debug)]
pub struct PcsClient {
    service: Service,
    cache_dir: PathBuf,
    refresh_before: Duration,
}

impl PcsClient {
    /// A client for `url` (`http://…` or `https://…`, optionally with a path prefix) caching under
    /// `cache_dir`. An `https` PCS is trusted through the roots in `ca_file` (PEM). Each item must arrive
    /// within 30 s; a cached set is refreshed one day before its `nextUpdate`.
    pub fn new(url: &str, ca_file: &Path, cache_dir: &Path) -> Result<Self, FetchError> {
        Ok(Self {
            service: Service::new(url, ca_file)?,
            cache_dir: cache_dir.to_owned(),
            refresh_before: Duration::from_secs(24 * 3600),
        })
    }

    /// A client for `DAIT_PCCS_URL` (default [`DEFAULT_PCCS_URL`]) with the roots of [`ca_file`].
    pub fn from_env(cache_dir: &Path) -> Result<Self, FetchError> {
        let url = std::env::var(PCCS_URL_ENV).unwrap_or_else(|_| DEFAULT_PCCS_URL.to_owned());
        Self::new(&url, &ca_file(), cache_dir)
    }

    /// Bounds the time each item may take.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.service.timeout = timeout;
        self
    }

    /// How long before the collateral's `nextUpdate` a cached set is fetched again.
    pub fn with_refresh_before(mut self, margin: Duration) -> Self {
        self.refresh_before = margin;
        self
    }

    /// How many HTTP requests this client (and its clones) has sent.
    pub fn requests(&self) -> u64 {
        self.service.requests()
    }

    /// The cache directory of one FMSPC and PCK CA (a PCS directory [`TdxCollateral::from_pcs_dir`] reads).
    pub fn cache_path(&self, fmspc: &str, ca: PckCa) -> PathBuf {
        self.cache_dir
            .join("tdx")
            .join(format!("{}-{}", fmspc.to_ascii_lowercase(), ca.as_str()))
    }

    /// The collateral for `fmspc` (12 hex digits) and `ca`, valid at `now`: from the cache while its
    /// `nextUpdate` is more than the refresh margin after `now`, else fetched, checked and cached.
    pub async fn collateral(
        &self,
        fmspc: &str,
        ca: PckCa,
        now: UnixTime,
    ) -> Result<TdxCollateral, FetchError> {
        if fmspc.len() != 12 || !fmspc.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(FetchError::BadUrl(format!("fmspc={fmspc}")));
        }
        let dir = self.cache_path(fmspc, ca);
        let refresh_at =
            UnixTime::from_secs(now.as_secs().saturating_add(self.refresh_before.as_secs()));
        if dir.join(TCB_INFO_FILE).is_file()
            && let Ok(cached) = TdxCollateral::from_pcs_dir(&dir)
            && cached.next_update().is_some_and(|n| n > refresh_at)
        {
            return Ok(cached);
        }
        let fetched = self.fetch(fmspc, ca).await?;
        let collateral =
            TdxCollateral::from_pcs_files(&fetched.files()).map_err(FetchError::Invalid)?;
        check_fresh(&collateral, now)?;
        fetched.store(&dir)?;
        Ok(collateral)
    }

    /// The collateral for the platform of `quote` (FMSPC and PCK CA from its PCK leaf certificate), as
    /// [`PcsClient::collateral`].
    pub async fn collateral_for_quote(
        &self,
        quote: &[u8],
        now: UnixTime,
    ) -> Result<TdxCollateral, FetchError> {
        let p = PckPlatform::of_quote(quote).map_err(FetchError::Quote)?;
        let ca = if p.platform_ca {
            PckCa::Platform
        } else {
            PckCa::Processor
        };
        self.collateral(&hex::encode(p.fmspc), ca, now).await
    }

    /// Fetches the four items from the PCS, without the cache.
    pub async fn fetch(&self, fmspc: &str, ca: PckCa) -> Result<Fetched, FetchError> {
        let tcb = self
            .get(
                "TCB Info",
                &format!(
                    "/tdx/certification/v4/tcb?fmspc={}",
                    fmspc.to_ascii_uppercase()
                ),
            )
            .await?;
        let tcb_chain = chain(
            &tcb,
            "TCB Info",
            &["TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"],
        )?;
        let qe = self
            .get("QE Identity", "/tdx/certification/v4/qe/identity")
            .await?;
        let qe_chain = chain(&qe, "QE Identity", &["SGX-Enclave-Identity-Issuer-Chain"])?;
        let crl = self
            .get(
                "PCK CRL",
                &format!(
                    "/sgx/certification/v4/pckcrl?ca={}&encoding=der",
                    ca.as_str()
                ),
            )
            .await?;
        let crl_chain = chain(&crl, "PCK CRL", &["SGX-PCK-CRL-Issuer-Chain"])?;
        let root = self
            .get("root CA CRL", "/sgx/certification/v4/rootcacrl")
            .await?;
        Ok(Fetched {
            tcb_info_json: tcb.body.to_vec(),
            qe_identity_json: qe.body.to_vec(),
            pck_crl_der: crl.body.to_vec(),
            root_ca_crl_der: der_or_hex(&root.body)?,
            tcb_info_issuer_chain_pem: tcb_chain,
            qe_identity_issuer_chain_pem: qe_chain,
            pck_crl_issuer_chain_pem: crl_chain,
        })
    }

    async fn get(&self, item: &'static str, path_and_query: &str) -> Result<Reply, FetchError> {
        self.service.get(item, path_and_query, "*/*").await
    }
}

/// The raw files of one fetched collateral set, as the PCS served them (issuer chains URL-decoded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// TCB Info JSON.
    pub tcb_info_json: Vec<u8>,
    /// QE Identity JSON.
    pub qe_identity_json: Vec<u8>,
    /// PCK CRL (DER).
    pub pck_crl_der: Vec<u8>,
    /// Root CA CRL (DER).
    pub root_ca_crl_der: Vec<u8>,
    /// TCB Info issuer chain (PEM).
    pub tcb_info_issuer_chain_pem: Vec<u8>,
    /// QE Identity issuer chain (PEM).
    pub qe_identity_issuer_chain_pem: Vec<u8>,
    /// PCK CRL issuer chain (PEM).
    pub pck_crl_issuer_chain_pem: Vec<u8>,
}

impl Fetched {
    /// The files, borrowed in the verifier's layout.
    pub fn files(&self) -> PcsFiles<'_> {
        PcsFiles {
            tcb_info_json: &self.tcb_info_json,
            qe_identity_json: &self.qe_identity_json,
            pck_crl_der: &self.pck_crl_der,
            root_ca_crl_der: &self.root_ca_crl_der,
            tcb_info_issuer_chain_pem: &self.tcb_info_issuer_chain_pem,
            qe_identity_issuer_chain_pem: &self.qe_identity_issuer_chain_pem,
            pck_crl_issuer_chain_pem: &self.pck_crl_issuer_chain_pem,
        }
    }

    /// Writes the set into `dir` (each file through a temporary name and a rename).
    fn store(&self, dir: &Path) -> Result<(), FetchError> {
        for (name, bytes) in [
            (TCB_INFO_FILE, &self.tcb_info_json),
            (QE_IDENTITY_FILE, &self.qe_identity_json),
            (PCK_CRL_FILE, &self.pck_crl_der),
            (ROOT_CRL_FILE, &self.root_ca_crl_der),
            (TCB_CHAIN_FILE, &self.tcb_info_issuer_chain_pem),
            (QE_CHAIN_FILE, &self.qe_identity_issuer_chain_pem),
            (CRL_CHAIN_FILE, &self.pck_crl_issuer_chain_pem),
        ] {
            store_file(&dir.join(name), bytes)?;
        }
        Ok(())
    }
}

/// Writes one cache file (its directory created if needed) through a temporary name and a rename, so a
/// reader sees the old file or the new one, never a part.
pub(crate) fn store_file(path: &Path, bytes: &[u8]) -> Result<(), FetchError> {
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| FetchError::Cache { path, source }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err(dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).map_err(err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(err(path))?;
    Ok(())
}

/// The collateral the agent embeds in every bundle it serves (PROTOCOL.md §8), replaced when refreshed.
#[derive(Debug, Default)]
pub struct CollateralSlot(RwLock<Option<proto::Collateral>>);

impl CollateralSlot {
    /// The current collateral, if any.
    pub fn get(&self) -> Option<proto::Collateral> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the collateral.
    pub fn set(&self, collateral: Option<proto::Collateral>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = collateral;
    }
}

/// Fetches (or takes from the cache) the collateral for the platform of the TEE's own quote and puts it
/// in `app.collateral`. Returns its earliest `nextUpdate`; `None` when the TEE is not TDX.
pub async fn refresh_once(
    app: &Arc<App>,
    client: &PcsClient,
    now: UnixTime,
) -> Result<Option<UnixTime>, FetchError> {
    if app.tee.platform() != Platform::Tdx {
        return Ok(None);
    }
    let tee_app = Arc::clone(app);
    let evidence = tokio::task::spawn_blocking(move || tee_app.tee.evidence(&[0; 64]))
        .await
        .map_err(|e| FetchError::Transport {
            item: "TDX quote",
            reason: e.to_string(),
        })?
        .map_err(FetchError::Evidence)?;
    let Some(Evidence::TdxQuote(quote)) = evidence.evidence else {
        return Ok(None);
    };
    let collateral = client.collateral_for_quote(&quote, now).await?;
    app.collateral.set(Some(collateral.to_proto()));
    Ok(collateral.next_update())
}

/// A collateral source the agent keeps fresh: the Intel PCS ([`PcsClient`]) on TDX, the AMD KDS
/// ([`amd::KdsClient`]) on SNP.
pub trait Refresh: Send + Sync + 'static {
    /// Fetches (or takes from the cache) the collateral for the TEE's own evidence and puts it in
    /// `app.collateral`. Returns its earliest `nextUpdate`; `None` when there is none to keep on this
    /// platform.
    fn refresh<'a>(
        &'a self,
        app: &'a Arc<App>,
        now: UnixTime,
    ) -> BoxFuture<'a, Result<Option<UnixTime>, FetchError>>;

    /// How long before `nextUpdate` the collateral is fetched again.
    fn margin(&self) -> Duration;

    /// Whether a bundle cannot be verified without this collateral (TDX: yes; SNP: no, the verifier falls
    /// back to AMD's pinned ASK and ARK), so that never having fetched it counts as stale.
    fn required(&self) -> bool;
}

impl Refresh for PcsClient {
    fn refresh<'a>(
        &'a self,
        app: &'a Arc<App>,
        now: UnixTime,
    ) -> BoxFuture<'a, Result<Option<UnixTime>, FetchError>> {
        Box::pin(refresh_once(app, self, now))
    }

    fn margin(&self) -> Duration {
        self.refresh_before
    }

    fn required(&self) -> bool {
        true
    }
}

impl Refresh for amd::KdsClient {
    fn refresh<'a>(
        &'a self,
        app: &'a Arc<App>,
        now: UnixTime,
    ) -> BoxFuture<'a, Result<Option<UnixTime>, FetchError>> {
        Box::pin(amd::refresh_once(app, self, now))
    }

    fn margin(&self) -> Duration {
        self.refresh_before()
    }

    fn required(&self) -> bool {
        false
    }
}

/// One refresh from `source` at `now`, and readiness told (`collateral_stale`, see [`crate::ready`]): a
/// success clears it unless the fetched collateral is already past its `nextUpdate`; a failure sets it
/// when the collateral in the bundles is within the refresh margin of its `nextUpdate` (or past it), or
/// when there is none and the bundles need it ([`Refresh::required`]).
pub async fn refresh_and_report<R: Refresh + ?Sized>(
    app: &Arc<App>,
    source: &R,
    now: UnixTime,
) -> Result<Option<UnixTime>, FetchError> {
    let result = source.refresh(app, now).await;
    match &result {
        Ok(Some(next)) => app
            .readiness
            .set_collateral(Some(next.as_secs()), *next <= now),
        Ok(None) => {}
        Err(_) => {
            let next = app.readiness.collateral_next_update();
            let close = now.as_secs().saturating_add(source.margin().as_secs());
            let stale = next.map_or(source.required(), |n| n <= close);
            app.readiness.set_collateral(next, stale);
        }
    }
    result
}

/// Keeps `app.collateral` fresh for as long as the agent runs: refreshed the source's margin before each
/// `nextUpdate` (at least a minute and at most a day apart), retried every five minutes after a failure.
pub async fn keep_fresh<R: Refresh>(app: Arc<App>, source: R) {
    loop {
        let now = UnixTime::now();
        let wait = match refresh_and_report(&app, &source, now).await {
            Ok(None) => return,
            Ok(Some(next)) => Duration::from_secs(
                next.as_secs()
                    .saturating_sub(now.as_secs())
                    .saturating_sub(source.margin().as_secs())
                    .clamp(60, 24 * 3600),
            ),
            Err(e) => {
                tracing::warn!(error = %e, "collateral not refreshed; retrying in 5 minutes");
                Duration::from_secs(300)
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Whether `collateral` is still valid at `now` by its own `nextUpdate`.
pub fn check_fresh(collateral: &TdxCollateral, now: UnixTime) -> Result<(), FetchError> {
    let next_update = collateral.next_update().ok_or(FetchError::NoNextUpdate)?;
    if next_update <= now {
        return Err(FetchError::Stale { next_update, now });
    }
    Ok(())
}

/// Runs the verifier's cryptographic checks of `quote` against `collateral` at `now` (TCB Info and QE
/// Identity signatures, issuer chains, CRLs, validity). A quote whose TCB has no matching level passed every
/// check of the collateral before that finding, so [`TdxError::TcbNotSupported`] is returned as it is.
pub fn check_against_quote(
    collateral: &TdxCollateral,
    quote: &[u8],
    root_ca_der: &[u8],
    now: UnixTime,
) -> Result<TdxCryptoOutcome, FetchError> {
    let parsed = TdxQuote::parse(quote).map_err(|e| FetchError::Rejected(e.into()))?;
    verify_crypto(&parsed, collateral, root_ca_der, now).map_err(FetchError::Rejected)
}

/// The first of `names` present in `reply`, URL-decoded.
fn chain(reply: &Reply, item: &'static str, names: &[&'static str]) -> Result<Vec<u8>, FetchError> {
    let bad = FetchError::Header {
        item,
        header: names[0],
    };
    let Some(value) = names.iter().find_map(|n| reply.headers.get(*n)) else {
        return Err(bad);
    };
    percent_decode(value.as_bytes()).ok_or(bad)
}

/// Decodes `%XX` escapes (and nothing else: `+` stays, as in Intel's headers).
fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        if b == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            let text = core::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(text, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(out)
}

/// A CRL served as DER (starts with a SEQUENCE tag) or as hex text (a PCCS).
fn der_or_hex(body: &[u8]) -> Result<Vec<u8>, FetchError> {
    if body.first() == Some(&0x30) {
        return Ok(body.to_vec());
    }
    let text = core::str::from_utf8(body).map_err(|_| FetchError::RootCrlEncoding)?;
    hex::decode(text.trim()).map_err(|_| FetchError::RootCrlEncoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_follows_intel_headers() {
        assert_eq!(
            percent_decode(b"-----BEGIN%20CERTIFICATE-----%0AMIIC+a%2F").unwrap(),
            b"-----BEGIN CERTIFICATE-----\nMIIC+a/".to_vec()
        );
        assert_eq!(percent_decode(b"%4"), None);
        assert_eq!(percent_decode(b"%zz"), None);
    }

    #[test]
    fn root_crl_is_der_or_hex() {
        assert_eq!(der_or_hex(&[0x30, 1, 0]).unwrap(), vec![0x30, 1, 0]);
        assert_eq!(der_or_hex(b"300100\n").unwrap(), vec![0x30, 1, 0]);
        assert!(matches!(
            der_or_hex(b"zz"),
            Err(FetchError::RootCrlEncoding)
        ));
    }

    #[test]
    fn urls_and_fmspc_are_checked() {
        let dir = std::env::temp_dir();
        for bad in ["ftp://x", "not a url", "http://"] {
            assert!(
                matches!(
                    PcsClient::new(bad, Path::new("/nonexistent"), &dir),
                    Err(FetchError::BadUrl(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            PcsClient::new("https://pcs.test", Path::new("/nonexistent"), &dir),
            Err(FetchError::Roots { .. })
        ));
        let c = PcsClient::new(
            "http://127.0.0.1:9/prefix/",
            Path::new("/nonexistent"),
            &dir,
        )
        .unwrap();
        assert_eq!(c.service.prefix, "/prefix");
        assert_eq!(
            c.cache_path("50806F000000", PckCa::Platform),
            dir.join("tdx").join("50806f000000-platform")
        );
    }
}
