//! Intel TDX collateral fetched from a PCS or PCCS (API v4) and cached on disk.
//!
//! The agent fetches the TCB Info (`/tdx/certification/v4/tcb?fmspc=…`, chain in `TCB-Info-Issuer-Chain`),
//! the QE Identity (`/tdx/certification/v4/qe/identity`, chain in `SGX-Enclave-Identity-Issuer-Chain`), the
//! PCK CRL (`/sgx/certification/v4/pckcrl?ca=…&encoding=der`, chain in `SGX-PCK-CRL-Issuer-Chain`) and the
//! root CA CRL (`/sgx/certification/v4/rootcacrl`, DER or hex). The issuer chains arrive URL-encoded PEM.
//! Parsing is the verifier's ([`TdxCollateral::from_pcs_files`], [`TdxCollateral::from_pcs_dir`]); the
//! cache is a directory of those same files per FMSPC and PCK CA, so `dait-tenant` and `dait-verify` can
//! read it as it is. A cached set is used while its earliest `nextUpdate` is more than the refresh margin
//! away; otherwise it is fetched again. The collateral is signed by Intel: the transport adds no trust,
//! and [`check_against_quote`] runs the verifier's signature, chain and CRL checks on it.
//!
//! On a TDX guest `dait-host serve` runs [`keep_fresh`]: it fetches the collateral for the platform of its
//! own quote (FMSPC and PCK CA from the quote's PCK certificate) into [`CollateralSlot`], which every
//! evidence bundle carries, so a tenant verifies offline. The PCS is `DAIT_PCCS_URL` (default Intel's
//! public PCS); the cache is `<state dir>/collateral`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use dait_chain_client::proto::{self, Platform, cpu_evidence::Evidence};
use dait_verifier::UnixTime;
use dait_verifier::collateral::{CollateralError, LoadError, PckPlatform, PcsFiles, TdxCollateral};
use dait_verifier::tdx::{TdxCryptoOutcome, TdxError, TdxQuote, verify_crypto};
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::http::App;

/// Environment variable naming the PCS or PCCS base URL.
pub const PCCS_URL_ENV: &str = "DAIT_PCCS_URL";
/// Intel's public Provisioning Certification Service.
pub const DEFAULT_PCCS_URL: &str = "https://api.trustedservices.intel.com";
/// Environment variable naming a PEM file of the TLS roots for an `https` PCS (default: the system bundle).
pub const PCCS_CA_FILE_ENV: &str = "DAIT_PCCS_CA_FILE";
/// The system's PEM bundle of TLS roots (Debian layout), used when no roots are named.
pub const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Largest response body accepted for one item.
const MAX_BODY: usize = 1 << 20;

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

/// A PCS or PCCS client with an on-disk cache.
#[derive(Clone)]
pub struct PcsClient {
    authority: String,
    host: String,
    prefix: String,
    tls: Option<tokio_rustls::TlsConnector>,
    cache_dir: PathBuf,
    timeout: Duration,
    refresh_before: Duration,
    requests: Arc<AtomicU64>,
}

impl std::fmt::Debug for PcsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcsClient")
            .field("authority", &self.authority)
            .field("prefix", &self.prefix)
            .field("cache_dir", &self.cache_dir)
            .finish_non_exhaustive()
    }
}

impl PcsClient {
    /// A client for `url` (`http://…` or `https://…`, optionally with a path prefix) caching under
    /// `cache_dir`. An `https` PCS is trusted through the roots in `ca_file` (PEM). Each item must arrive
    /// within 30 s; a cached set is refreshed one day before its `nextUpdate`.
    pub fn new(url: &str, ca_file: &Path, cache_dir: &Path) -> Result<Self, FetchError> {
        let bad = || FetchError::BadUrl(url.to_owned());
        let uri: Uri = url.trim_end_matches('/').parse().map_err(|_| bad())?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad()),
        };
        let host = uri.host().ok_or_else(bad)?.to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let roots = load_roots(ca_file)?;
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| FetchError::Transport {
                item: "TLS configuration",
                reason: e.to_string(),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
            Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
        } else {
            None
        };
        Ok(Self {
            authority: format!("{host}:{port}"),
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            prefix: uri.path().trim_end_matches('/').to_owned(),
            tls,
            cache_dir: cache_dir.to_owned(),
            timeout: Duration::from_secs(30),
            refresh_before: Duration::from_secs(24 * 3600),
            requests: Arc::new(AtomicU64::new(0)),
        })
    }

    /// A client for `DAIT_PCCS_URL` (default [`DEFAULT_PCCS_URL`]) with the roots of `DAIT_PCCS_CA_FILE`
    /// (default [`SYSTEM_CA_FILE`]).
    pub fn from_env(cache_dir: &Path) -> Result<Self, FetchError> {
        let url = std::env::var(PCCS_URL_ENV).unwrap_or_else(|_| DEFAULT_PCCS_URL.to_owned());
        let ca = std::env::var_os(PCCS_CA_FILE_ENV)
            .map_or_else(|| PathBuf::from(SYSTEM_CA_FILE), PathBuf::from);
        Self::new(&url, &ca, cache_dir)
    }

    /// Bounds the time each item may take.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long before the collateral's `nextUpdate` a cached set is fetched again.
    pub fn with_refresh_before(mut self, margin: Duration) -> Self {
        self.refresh_before = margin;
        self
    }

    /// How many HTTP requests this client (and its clones) has sent.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
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
        let p = &self.prefix;
        let tcb = self
            .get(
                "TCB Info",
                &format!(
                    "{p}/tdx/certification/v4/tcb?fmspc={}",
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
            .get(
                "QE Identity",
                &format!("{p}/tdx/certification/v4/qe/identity"),
            )
            .await?;
        let qe_chain = chain(&qe, "QE Identity", &["SGX-Enclave-Identity-Issuer-Chain"])?;
        let crl = self
            .get(
                "PCK CRL",
                &format!(
                    "{p}/sgx/certification/v4/pckcrl?ca={}&encoding=der",
                    ca.as_str()
                ),
            )
            .await?;
        let crl_chain = chain(&crl, "PCK CRL", &["SGX-PCK-CRL-Issuer-Chain"])?;
        let root = self
            .get(
                "root CA CRL",
                &format!("{p}/sgx/certification/v4/rootcacrl"),
            )
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
        self.requests.fetch_add(1, Ordering::Relaxed);
        let exchange = async {
            let tcp = TcpStream::connect(&self.authority)
                .await
                .map_err(|e| transport(item, &e))?;
            tcp.set_nodelay(true).map_err(|e| transport(item, &e))?;
            match &self.tls {
                Some(tls) => {
                    let name = ServerName::try_from(self.host.clone())
                        .map_err(|_| FetchError::BadUrl(self.host.clone()))?;
                    let stream = tls
                        .connect(name, tcp)
                        .await
                        .map_err(|e| transport(item, &e))?;
                    self.exchange(item, stream, path_and_query).await
                }
                None => self.exchange(item, tcp, path_and_query).await,
            }
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| FetchError::Timeout {
                item,
                timeout: self.timeout,
            })?
    }

    async fn exchange<S>(
        &self,
        item: &'static str,
        stream: S,
        path_and_query: &str,
    ) -> Result<Reply, FetchError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| transport(item, &e))?;
        let driver = tokio::spawn(conn);
        let request = Request::get(path_and_query)
            .header(header::HOST, &self.authority)
            .header(header::ACCEPT, "*/*")
            .body(Empty::<Bytes>::new())
            .map_err(|e| transport(item, &e))?;
        let result = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| transport(item, &e))?;
            if response.status() != StatusCode::OK {
                return Err(FetchError::Status {
                    item,
                    status: response.status().as_u16(),
                });
            }
            let (head, body) = response.into_parts();
            let body = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|e| transport(item, &*e))?
                .to_bytes();
            Ok(Reply {
                headers: head.headers,
                body,
            })
        }
        .await;
        driver.abort();
        result
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
        let err = |path: &Path| {
            let path = path.to_owned();
            move |source| FetchError::Cache { path, source }
        };
        std::fs::create_dir_all(dir).map_err(err(dir))?;
        for (name, bytes) in [
            (TCB_INFO_FILE, &self.tcb_info_json),
            (QE_IDENTITY_FILE, &self.qe_identity_json),
            (PCK_CRL_FILE, &self.pck_crl_der),
            (ROOT_CRL_FILE, &self.root_ca_crl_der),
            (TCB_CHAIN_FILE, &self.tcb_info_issuer_chain_pem),
            (QE_CHAIN_FILE, &self.qe_identity_issuer_chain_pem),
            (CRL_CHAIN_FILE, &self.pck_crl_issuer_chain_pem),
        ] {
            let path = dir.join(name);
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, bytes).map_err(err(&tmp))?;
            std::fs::rename(&tmp, &path).map_err(err(&path))?;
        }
        Ok(())
    }
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

/// Keeps `app.collateral` fresh for as long as the agent runs: refreshed the client's margin before each
/// `nextUpdate` (at least a minute and at most a day apart), retried every five minutes after a failure.
pub async fn keep_fresh(app: Arc<App>, client: PcsClient) {
    loop {
        let now = UnixTime::now();
        let wait = match refresh_once(&app, &client, now).await {
            Ok(None) => return,
            Ok(Some(next)) => Duration::from_secs(
                next.as_secs()
                    .saturating_sub(now.as_secs())
                    .saturating_sub(client.refresh_before.as_secs())
                    .clamp(60, 24 * 3600),
            ),
            Err(e) => {
                tracing::warn!(error = %e, "TDX collateral not refreshed; retrying in 5 minutes");
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

struct Reply {
    headers: http::HeaderMap,
    body: Bytes,
}

fn transport(item: &'static str, e: &dyn std::fmt::Display) -> FetchError {
    FetchError::Transport {
        item,
        reason: e.to_string(),
    }
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

fn load_roots(path: &Path) -> Result<rustls::RootCertStore, FetchError> {
    let err = |source| FetchError::Roots {
        path: path.to_owned(),
        source,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(path).map_err(err)? {
        // A bundle may hold certificates rustls cannot use as anchors; those are skipped.
        let _ = roots.add(cert.map_err(err)?);
    }
    Ok(roots)
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
        assert_eq!(c.prefix, "/prefix");
        assert_eq!(
            c.cache_path("50806F000000", PckCa::Platform),
            dir.join("tdx").join("50806f000000-platform")
        );
    }
}
