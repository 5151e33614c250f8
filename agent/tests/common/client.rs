//! An HTTP/1.1 client for the agent, over plain TCP or over TLS that accepts the agent's self-signed
//! certificate (tests check it against the keyset's pin separately).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

type SignatureCheck = Result<HandshakeSignatureValid, rustls::Error>;

/// Accepts any server certificate, but still checks that the server signed the handshake with the
/// certificate's key.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl AcceptAnyCertificate {
    fn algorithms(&self) -> &WebPkiSupportedAlgorithms {
        &self.0.signature_verification_algorithms
    }
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> SignatureCheck {
        rustls::crypto::verify_tls12_signature(m, c, d, self.algorithms())
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> SignatureCheck {
        rustls::crypto::verify_tls13_signature(m, c, d, self.algorithms())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms().supported_schemes()
    }
}

/// A TLS client configuration that accepts any server certificate (tests only: the pin is
/// checked separately against the keyset's `tls_spki`).
pub fn insecure_tls() -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// A TCP connection to `addr` from the local address `from` (port chosen by the system).
pub async fn tcp_from(addr: SocketAddr, from: std::net::IpAddr) -> std::io::Result<TcpStream> {
    let socket = match from {
        std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(addr).await
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// An HTTP/1.1 handshake over `io`; the connection runs in its own task.
async fn handshake<S>(io: S) -> std::io::Result<Sender>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    Ok(sender)
}

/// A connection to the agent (plain TCP or TLS), one HTTP/1.1 connection reused for requests.
pub struct Conn {
    sender: Sender,
    /// The server certificate, when TLS.
    pub peer_cert: Option<Vec<u8>>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr, tls: bool) -> std::io::Result<Self> {
        Self::over(TcpStream::connect(addr).await?, tls).await
    }

    /// [`Conn::connect`] from the local address `from` (another loopback address, to be another
    /// client address to the agent).
    pub async fn connect_from(
        addr: SocketAddr,
        from: std::net::IpAddr,
        tls: bool,
    ) -> std::io::Result<Self> {
        Self::over(tcp_from(addr, from).await?, tls).await
    }

    async fn over(tcp: TcpStream, tls: bool) -> std::io::Result<Self> {
        tcp.set_nodelay(true)?;
        if !tls {
            return Ok(Self {
                sender: handshake(tcp).await?,
                peer_cert: None,
            });
        }
        let name = ServerName::try_from("localhost").unwrap();
        let s = insecure_tls().connect(name, tcp).await?;
        let peer_cert = s
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec());
        Ok(Self {
            sender: handshake(s).await?,
            peer_cert,
        })
    }

    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(u16, Bytes), hyper::Error> {
        self.send_with_headers(method, path, content_type, &[], body)
            .await
    }

    /// [`Conn::send`] with extra request headers.
    pub async fn send_with_headers(
        &mut self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<(u16, Bytes), hyper::Error> {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        if let Some(ct) = content_type {
            b = b.header("content-type", ct);
        }
        for (name, value) in headers {
            b = b.header(*name, *value);
        }
        let req = b.body(Full::new(Bytes::from(body))).unwrap();
        // The connection must be ready again (previous exchange fully processed) before reuse.
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// GET `path` on a fresh connection: status and body.
pub async fn get(addr: SocketAddr, tls: bool, path: &str) -> (u16, Vec<u8>) {
    let mut conn = Conn::connect(addr, tls).await.unwrap();
    let (status, body) = conn.send("GET", path, None, vec![]).await.unwrap();
    (status, body.to_vec())
}

/// `/readyz`: its status and the failing conditions it lists, as `(code, message)`.
pub async fn readyz_failing(addr: SocketAddr, tls: bool) -> (u16, Vec<(String, String)>) {
    let (status, body) = get(addr, tls, "/readyz").await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["ready"].as_bool(), Some(status == 200), "{v}");
    let failing = v["failing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let message = f["message"].as_str().unwrap().to_owned();
            assert!(!message.is_empty());
            (f["code"].as_str().unwrap().to_owned(), message)
        })
        .collect();
    (status, failing)
}

/// `/readyz`: its status and the failing codes it lists.
pub async fn readyz(addr: SocketAddr, tls: bool) -> (u16, Vec<String>) {
    let (status, failing) = readyz_failing(addr, tls).await;
    (status, failing.into_iter().map(|(code, _)| code).collect())
}

/// Polls `/readyz` (every 100 ms, for up to 10 s) until it reports `want` failing codes.
pub async fn await_readyz(addr: SocketAddr, tls: bool, want: &[&str]) {
    let mut last = (0, Vec::new());
    for _ in 0..100 {
        last = readyz(addr, tls).await;
        if last.1 == want {
            assert_eq!(last.0, if want.is_empty() { 200 } else { 503 });
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("/readyz stayed at {last:?}, wanted {want:?}");
}
