//! HTTPS to the host's public endpoints (PROTOCOL.md §6), over a pinned TLS connection; and plain HTTP to an
//! OpenAI-compatible engine that the caller runs itself (an auditor's replay engine).

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
    /// An `https://host[:port]` URL.
    fn parse(url: &str) -> Result<Self, TenantError> {
        Self::parse_scheme(url, "https", 443)
    }

    /// A `<scheme>://host[:port]` URL, `default_port` when it names none.
    fn parse_scheme(url: &str, scheme: &str, default_port: u16) -> Result<Self, TenantError> {
        let uri: http::Uri = url.parse().map_err(|_| TenantError::BadHostUrl)?;
        if uri.scheme_str() != Some(scheme) {
            return Err(TenantError::BadHostUrl);
        }
        let host = uri.host().ok_or(TenantError::BadHostUrl)?;
        let port = uri.port_u16().unwrap_or(default_port);
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
        self.send_with_headers(method, path, content_type, &[], body)
            .await
    }

    /// [`Self::send`] with extra request header fields.
    pub async fn send_with_headers(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        headers: &[(&'static str, &str)],
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
        exchange(
            stream,
            &self.endpoint.authority,
            method,
            path,
            content_type,
            headers,
            body,
        )
        .await
    }

    /// `GET /v1/receipts/<channel_id>/<call_seq>` with `x-dait-state` = `state_header` (a tenant-signed
    /// state of the channel): the receipt as the host logged it (protobuf `SignedReceipt`), `None` when the
    /// host has none (404). Any other status is [`TenantError::HostStatus`].
    pub async fn fetch_receipt(
        &self,
        channel_id: &[u8; 32],
        call_seq: u64,
        state_header: &str,
    ) -> Result<Option<Vec<u8>>, TenantError> {
        let path = format!("/v1/receipts/{}/{call_seq}", hex::encode(channel_id));
        let response = self
            .send_with_headers(
                Method::GET,
                &path,
                None,
                &[("x-dait-state", state_header)],
                Vec::new(),
            )
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = expect_ok(response)?;
        read_body(response.into_body(), MAX_BODY).await.map(Some)
    }

    /// `POST /v1/channel/close` with a tenant-signed final state (its base64url header value): the status,
    /// the `x-dait-host-key-id` field if any, and the body (the counter-signed state on 200, a JSON error
    /// otherwise).
    pub async fn post_close(&self, state_header: &str) -> Result<CloseAnswer, TenantError> {
        let response = self
            .send(
                Method::POST,
                "/v1/channel/close",
                Some("text/plain"),
                state_header.as_bytes().to_vec(),
            )
            .await?;
        let status = response.status().as_u16();
        let host_key_id = response
            .headers()
            .get("x-dait-host-key-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = read_body(response.into_body(), CLOSE_BODY_LIMIT).await?;
        Ok(CloseAnswer {
            status,
            host_key_id,
            body,
        })
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

/// The most taken from `POST /v1/channel/close` (a signed state is a few hundred bytes).
const CLOSE_BODY_LIMIT: usize = 64 << 10;

/// The host's answer to `POST /v1/channel/close` ([`HostClient::post_close`]), unchecked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseAnswer {
    /// The HTTP status.
    pub status: u16,
    /// `x-dait-host-key-id`, when present.
    pub host_key_id: Option<String>,
    /// The body: the counter-signed state (base64url) on 200, `{"error": code}` otherwise.
    pub body: Vec<u8>,
}

/// A plain-HTTP client for an OpenAI-compatible engine that the caller runs and trusts itself (an auditor's
/// replay engine, `http://127.0.0.1:port`). No TLS and no attestation: never use it to reach a dait host.
#[derive(Clone, Debug)]
pub struct EngineClient {
    endpoint: Endpoint,
}

impl EngineClient {
    /// A client for `url` (`http://host[:port]`).
    pub fn new(url: &str) -> Result<Self, TenantError> {
        Ok(Self {
            endpoint: Endpoint::parse_scheme(url.trim_end_matches('/'), "http", 80)?,
        })
    }

    /// Sends one request on a fresh connection; any status but 200 is [`TenantError::HostStatus`]. Returns
    /// the whole body (at most 16 MiB). The caller bounds the time the answer may take.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        json_body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, TenantError> {
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect(&self.endpoint.authority),
        )
        .await
        .map_err(|_| TenantError::Timeout)?
        .map_err(TenantError::Connect)?;
        tcp.set_nodelay(true).map_err(TenantError::Connect)?;
        let content_type = json_body.as_ref().map(|_| "application/json");
        let response = exchange(
            tcp,
            &self.endpoint.authority,
            method,
            path,
            content_type,
            &[],
            json_body.unwrap_or_default(),
        )
        .await?;
        read_body(expect_ok(response)?.into_body(), MAX_BODY).await
    }
}

/// Sends one HTTP/1.1 request on `io` (a connection of its own, closed after the response).
async fn exchange<Io>(
    io: Io,
    authority: &str,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    headers: &[(&'static str, &str)],
    body: Vec<u8>,
) -> Result<Response<Incoming>, TenantError>
where
    Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(TenantError::Http)?;
    tokio::spawn(async move {
        if let Err(error) = conn.await {
            tracing::debug!(%error, "connection ended with an error");
        }
    });

    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, authority)
        .header(header::CONNECTION, "close");
    if let Some(content_type) = content_type {
        builder = builder.header(header::CONTENT_TYPE, content_type);
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(Full::new(Bytes::from(body)))
        .map_err(|_| TenantError::BadHostUrl)?;
    sender
        .send_request(request)
        .await
        .map_err(TenantError::Http)
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// Answers one connection on 127.0.0.1 with `response`, and returns what it was sent.
    async fn one_shot(response: &'static str) -> (String, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let served = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).await.unwrap();
                seen.extend_from_slice(&buf[..n]);
            }
            conn.write_all(response.as_bytes()).await.unwrap();
            seen
        });
        (url, served)
    }

    #[test]
    fn engine_client_takes_http_urls_only() {
        assert!(EngineClient::new("http://127.0.0.1:8000").is_ok());
        assert!(EngineClient::new("http://localhost/").is_ok());
        assert!(matches!(
            EngineClient::new("https://127.0.0.1:8000"),
            Err(TenantError::BadHostUrl)
        ));
        assert!(matches!(
            HostClient::new("http://127.0.0.1:8000"),
            Err(TenantError::BadHostUrl)
        ));
    }

    #[tokio::test]
    async fn engine_client_reads_the_body_and_refuses_other_statuses() {
        let (url, served) = one_shot(
            "HTTP/1.1 200 OK\r\ncontent-length: 11\r\nconnection: close\r\n\r\n{\"data\":[]}",
        )
        .await;
        let client = EngineClient::new(&url).unwrap();
        let body = client
            .request(Method::GET, "/v1/models", None)
            .await
            .unwrap();
        assert_eq!(body, b"{\"data\":[]}");
        let seen = String::from_utf8(served.await.unwrap()).unwrap();
        assert!(seen.starts_with("GET /v1/models HTTP/1.1\r\n"), "{seen}");

        let (url, served) =
            one_shot("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
        let client = EngineClient::new(&url).unwrap();
        let got = client
            .request(Method::POST, "/v1/completions", Some(b"{}".to_vec()))
            .await;
        assert!(matches!(got, Err(TenantError::HostStatus { status: 404 })));
        let seen = String::from_utf8(served.await.unwrap()).unwrap();
        assert!(
            seen.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{seen}"
        );
    }
}
