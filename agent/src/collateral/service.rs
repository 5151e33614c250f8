//! One HTTP(S) collateral service (Intel PCS, AMD KDS, NVIDIA RIM service, NVIDIA OCSP): its base URL, TLS
//! roots, a bound per exchange, and a request counter. One connection per item (hyper client over
//! rustls); the collateral is signed by its vendor, so the transport adds no trust.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::FetchError;

/// Largest response body accepted for one item.
const MAX_BODY: usize = 1 << 20;

/// A service at a base URL.
#[derive(Clone)]
pub(crate) struct Service {
    authority: String,
    host: String,
    pub(crate) prefix: String,
    tls: Option<tokio_rustls::TlsConnector>,
    pub(crate) timeout: Duration,
    requests: Arc<AtomicU64>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("authority", &self.authority)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// One answer: its headers and body.
pub(crate) struct Reply {
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: Bytes,
}

impl Reply {
    /// Fails unless the `Content-Type` (parameters ignored) is one of `expected`.
    pub(crate) fn expect_type(
        &self,
        item: &'static str,
        expected: &[&'static str],
    ) -> Result<(), FetchError> {
        let got = self
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if expected.contains(&got.as_str()) {
            Ok(())
        } else {
            Err(FetchError::ContentType { item, got })
        }
    }
}

impl Service {
    /// A service at `url` (`http://…` or `https://…`, optionally with a path prefix); an `https` one is
    /// trusted through the roots in `ca_file` (PEM). Each item must arrive within 30 s.
    pub(crate) fn new(url: &str, ca_file: &Path) -> Result<Self, FetchError> {
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
            timeout: Duration::from_secs(30),
            requests: Arc::new(AtomicU64::new(0)),
        })
    }

    /// How many HTTP requests this service (and its clones) has been sent.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// `GET {prefix}{path_and_query}`, accepting `accept`; a status other than 200 is an error.
    pub(crate) async fn get(
        &self,
        item: &'static str,
        path_and_query: &str,
        accept: &str,
    ) -> Result<Reply, FetchError> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(format!("{}{path_and_query}", self.prefix))
            .header(header::ACCEPT, accept)
            .body(Full::new(Bytes::new()))
            .map_err(|e| transport(item, &e))?;
        self.send(item, request).await
    }

    /// `POST {prefix}{path}` of `body` as `content_type`, accepting `accept`.
    pub(crate) async fn post(
        &self,
        item: &'static str,
        path: &str,
        content_type: &str,
        accept: &str,
        body: Vec<u8>,
    ) -> Result<Reply, FetchError> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("{}{path}", self.prefix))
            .header(header::CONTENT_TYPE, content_type)
            .header(header::ACCEPT, accept)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| transport(item, &e))?;
        self.send(item, request).await
    }

    async fn send(
        &self,
        item: &'static str,
        mut request: Request<Full<Bytes>>,
    ) -> Result<Reply, FetchError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let host = http::HeaderValue::from_str(&self.authority)
            .map_err(|_| FetchError::BadUrl(self.authority.clone()))?;
        request.headers_mut().insert(header::HOST, host);
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
                    exchange(item, stream, request).await
                }
                None => exchange(item, tcp, request).await,
            }
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| FetchError::Timeout {
                item,
                timeout: self.timeout,
            })?
    }
}

async fn exchange<S>(
    item: &'static str,
    stream: S,
    request: Request<Full<Bytes>>,
) -> Result<Reply, FetchError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| transport(item, &e))?;
    let driver = tokio::spawn(conn);
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

pub(crate) fn transport(item: &'static str, e: &dyn std::fmt::Display) -> FetchError {
    FetchError::Transport {
        item,
        reason: e.to_string(),
    }
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
