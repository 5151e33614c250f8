//! HTTPS to the host's public endpoints (PROTOCOL.md §6), over a pinned TLS connection.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::TenantError;
use crate::tls::SpkiVerifier;

/// Most bytes accepted for an evidence bundle or a non-streamed response.
pub(crate) const MAX_BODY: usize = 16 << 20;
/// Time allowed to connect and finish the TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The host's base address, split for connecting.
#[derive(Clone, Debug)]
struct Endpoint {
    /// `host:port`, as written in the URL.
    authority: String,
    /// The name sent in SNI (or the IP address).
    server_name: ServerName<'static>,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Self, TenantError> {
        let uri: http::Uri = url.parse().map_err(|_| TenantError::BadHostUrl)?;
        if uri.scheme_str() != Some("https") {
            return Err(TenantError::BadHostUrl);
        }
        let host = uri.host().ok_or(TenantError::BadHostUrl)?;
        let port = uri.port_u16().unwrap_or(443);
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let server_name =
            ServerName::try_from(bare.to_owned()).map_err(|_| TenantError::BadHostUrl)?;
        Ok(Self {
            authority: format!("{host}:{port}"),
            server_name,
        })
    }
}

/// A client for one host: every connection is TLS with the SPKI pin.
#[derive(Clone)]
pub struct HostClient {
    endpoint: Endpoint,
    verifier: Arc<SpkiVerifier>,
    connector: TlsConnector,
}

impl std::fmt::Debug for HostClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostClient")
            .field("endpoint", &self.endpoint)
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

impl HostClient {
    /// A client for `url` (`https://host:port`) that has not yet pinned a key: the first connection
    /// records the key the host presents.
    pub fn new(url: &str) -> Result<Self, TenantError> {
        Self::with_verifier(Endpoint::parse(url)?, SpkiVerifier::recording())
    }

    /// A client for `url` that accepts only the DER SubjectPublicKeyInfo `spki`.
    pub fn pinned(url: &str, spki: &[u8]) -> Result<Self, TenantError> {
        Self::with_verifier(Endpoint::parse(url)?, SpkiVerifier::pinned(spki.to_vec()))
    }

    fn with_verifier(endpoint: Endpoint, verifier: Arc<SpkiVerifier>) -> Result<Self, TenantError> {
        let config = verifier.client_config().map_err(TenantError::TlsConfig)?;
        Ok(Self {
            endpoint,
            verifier,
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// The same host, now pinned to `spki`.
    pub(crate) fn pin(&self, spki: &[u8]) -> Result<Self, TenantError> {
        Self::with_verifier(self.endpoint.clone(), SpkiVerifier::pinned(spki.to_vec()))
    }

    /// The SPKI the host presented (recorded on the first connection), or the pinned one.
    pub(crate) fn presented_spki(&self) -> Option<Vec<u8>> {
        self.verifier.recorded()
    }

    /// Sends one request on a fresh connection and returns the response head with its streaming body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Response<Incoming>, TenantError> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let tcp = TcpStream::connect(&self.endpoint.authority)
                .await
                .map_err(TenantError::Connect)?;
            tcp.set_nodelay(true).map_err(TenantError::Connect)?;
            self.connector
                .connect(self.endpoint.server_name.clone(), tcp)
                .await
                .map_err(TenantError::TlsHandshake)
        })
        .await
        .map_err(|_| TenantError::Timeout)??;

        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(TenantError::Http)?;
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%error, "host connection ended with an error");
            }
        });

        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.endpoint.authority.as_str())
            .header(header::CONNECTION, "close");
        if let Some(content_type) = content_type {
            builder = builder.header(header::CONTENT_TYPE, content_type);
        }
        let request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| TenantError::BadHostUrl)?;
        sender
            .send_request(request)
            .await
            .map_err(TenantError::Http)
    }

    /// `GET /v1/attestation?nonce=…`: the evidence bundle bytes.
    pub async fn fetch_bundle(&self, nonce: &[u8; 32]) -> Result<Vec<u8>, TenantError> {
        let path = format!("/v1/attestation?nonce={}", hex::encode(nonce));
        let response = self.send(Method::GET, &path, None, Vec::new()).await?;
        let response = expect_ok(response)?;
        read_body(response.into_body(), MAX_BODY).await
    }

    /// `POST /v1/ohttp` with an encapsulated request; the response is returned unread.
    pub async fn post_ohttp(
        &self,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Response<Incoming>, TenantError> {
        let response = self
            .send(Method::POST, "/v1/ohttp", Some(content_type), body)
            .await?;
        expect_ok(response)
    }
}

/// Turns any status but 200 into [`TenantError::HostStatus`].
fn expect_ok(response: Response<Incoming>) -> Result<Response<Incoming>, TenantError> {
    if response.status() == StatusCode::OK {
        Ok(response)
    } else {
        Err(TenantError::HostStatus {
            status: response.status().as_u16(),
        })
    }
}

/// Reads a whole body, refusing more than `limit` bytes.
pub(crate) async fn read_body(body: Incoming, limit: usize) -> Result<Vec<u8>, TenantError> {
    let limited = http_body_util::Limited::new(body, limit);
    let collected = limited.collect().await.map_err(|_| TenantError::BodyRead)?;
    Ok(collected.to_bytes().to_vec())
}
