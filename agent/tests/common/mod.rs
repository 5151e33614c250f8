//! Test support: an in-test OpenAI-compatible upstream, a minimal tenant (OHTTP + BHTTP + channel
//! state signing + SPUR-IC receipt checks) and an HTTP/1.1 client over plain TCP or TLS.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::convert::Infallible;
use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use dait_chain_client::WireMessage as _;
use dait_chain_client::{
    B256, CallBinding, ChannelState, Domain, HostVerifyingKey, Keyset, NormalizedResponse,
    ReceiptChain, ReceiptError, SignedChannelState, SignedReceipt, TenantSigner, Usage,
    ciphertext_hash, request_hash,
};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

// ---------------------------------------------------------------- upstream

/// Behaviour of the in-test engine.
#[derive(Clone, Copy, Debug)]
pub struct EngineMode {
    /// Honour `stream_options.include_usage` (like vLLM); otherwise send no usage when streaming
    /// (like llama.cpp's server) and offer `/extras/tokenize/count`.
    pub usage_in_stream: bool,
    /// Number of completion tokens generated (capped by max_tokens).
    pub tokens: u64,
    /// End streams after the first token, without a finish reason or `[DONE]` (an engine that
    /// was interrupted).
    pub cut_streams: bool,
}

/// Counts of what the engine saw.
#[derive(Debug, Default)]
pub struct EngineStats {
    pub calls: AtomicU64,
}

fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

fn prompt_tokens(body: &Value) -> u64 {
    if let Some(msgs) = body.get("messages").and_then(Value::as_array) {
        msgs.iter()
            .map(|m| words(m.get("content").and_then(Value::as_str).unwrap_or("")) + 2)
            .sum()
    } else {
        words(body.get("prompt").and_then(Value::as_str).unwrap_or("")) + 1
    }
}

async fn engine(
    mode: EngineMode,
    stats: Arc<EngineStats>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    stats.calls.fetch_add(1, Ordering::Relaxed);
    let path = req.uri().path().to_owned();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if path == "/extras/tokenize/count" {
        if mode.usage_in_stream {
            return Ok(Response::builder()
                .status(404)
                .body(Full::new(Bytes::new()))
                .unwrap());
        }
        let n = words(v["input"].as_str().unwrap_or(""));
        return Ok(Response::new(Full::new(Bytes::from(
            json!({"count": n}).to_string(),
        ))));
    }
    let chat = path == "/v1/chat/completions";
    if !chat && path != "/v1/completions" {
        return Ok(Response::builder()
            .status(404)
            .body(Full::new(Bytes::new()))
            .unwrap());
    }
    let max = v["max_tokens"].as_u64().unwrap_or(16);
    let k = mode.tokens.min(max);
    let finish = if k < mode.tokens { "length" } else { "stop" };
    let p = prompt_tokens(&v);
    let usage = json!({"prompt_tokens": p, "completion_tokens": k, "total_tokens": p + k});
    let toks: Vec<String> = (0..k).map(|i| format!("tok{i} ")).collect();
    if v["stream"].as_bool() == Some(true) {
        let mut out = String::new();
        if mode.cut_streams {
            let c = json!({"id":"x","choices":[{"index":0,"delta":{"content":"tok0 "},"finish_reason":null}]});
            return Ok(Response::builder()
                .header("content-type", "text/event-stream")
                .body(Full::new(Bytes::from(format!("data: {c}\n\n"))))
                .unwrap());
        }
        for t in &toks {
            let c = if chat {
                json!({"id":"x","object":"chat.completion.chunk","created":1,"choices":[{"index":0,"delta":{"content":t},"finish_reason":null}]})
            } else {
                json!({"id":"x","object":"text_completion","created":1,"choices":[{"index":0,"text":t,"finish_reason":null}]})
            };
            out.push_str(&format!("data: {c}\n\n"));
        }
        let last = if chat {
            json!({"id":"x","choices":[{"index":0,"delta":{},"finish_reason":finish}]})
        } else {
            json!({"id":"x","choices":[{"index":0,"text":"","finish_reason":finish}]})
        };
        out.push_str(&format!("data: {last}\n\n"));
        if mode.usage_in_stream && v["stream_options"]["include_usage"].as_bool() == Some(true) {
            out.push_str(&format!(
                "data: {}\n\n",
                json!({"id":"x","choices":[],"usage":usage})
            ));
        }
        out.push_str("data: [DONE]\n\n");
        return Ok(Response::builder()
            .header("content-type", "text/event-stream")
            .body(Full::new(Bytes::from(out)))
            .unwrap());
    }
    let text: String = toks.concat();
    let resp = if chat {
        json!({"id":"chatcmpl-1","object":"chat.completion","created":2,"choices":[{"index":0,"message":{"role":"assistant","content":text},"finish_reason":finish}],"usage":usage})
    } else {
        json!({"id":"cmpl-1","object":"text_completion","created":2,"choices":[{"index":0,"text":text,"finish_reason":finish}],"usage":usage})
    };
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(resp.to_string())))
        .unwrap())
}

/// Start the in-test engine on 127.0.0.1:0; it stops when the runtime ends.
pub async fn start_engine(mode: EngineMode) -> (SocketAddr, Arc<EngineStats>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(EngineStats::default());
    let st = stats.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let _ = tcp.set_nodelay(true);
            let st = st.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |r| engine(mode, st.clone(), r));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (addr, stats)
}

// ---------------------------------------------------------------- client

/// A TLS client configuration that accepts any server certificate (tests only: the pin is
/// checked separately against the keyset's `tls_spki`).
pub fn insecure_tls() -> tokio_rustls::TlsConnector {
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    #[derive(Debug)]
    struct AcceptAll(Arc<rustls::crypto::CryptoProvider>);
    impl ServerCertVerifier for AcceptAll {
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
            d: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAll(provider)))
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// A connection to the agent (plain TCP or TLS), one HTTP/1.1 connection reused for requests.
pub struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    /// The server certificate, when TLS.
    pub peer_cert: Option<Vec<u8>>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr, tls: bool) -> std::io::Result<Self> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        if tls {
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let s = insecure_tls().connect(name, tcp).await?;
            let peer_cert = s
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.to_vec());
            let (sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s))
                    .await
                    .map_err(std::io::Error::other)?;
            tokio::spawn(conn);
            Ok(Self { sender, peer_cert })
        } else {
            let (sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                    .await
                    .map_err(std::io::Error::other)?;
            tokio::spawn(conn);
            Ok(Self {
                sender,
                peer_cert: None,
            })
        }
    }

    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(u16, Bytes), hyper::Error> {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        if let Some(ct) = content_type {
            b = b.header("content-type", ct);
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

// ---------------------------------------------------------------- tenant

/// What the tenant learned from the attestation endpoint.
pub struct HostInfo {
    pub keyset: Keyset,
    pub keyset_hash: B256,
    pub host_key: HostVerifyingKey,
    pub domain: Domain,
}

pub async fn host_info(conn: &mut Conn) -> HostInfo {
    let nonce = [0x42u8; 32];
    let (status, body) = conn
        .send(
            "GET",
            &format!("/v1/attestation?nonce={}", hex::encode(nonce)),
            None,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    let bundle = dait_chain_client::decode_bundle(&body).unwrap();
    let keyset = Keyset::decode(&bundle.keyset).unwrap();
    HostInfo {
        keyset_hash: dait_chain_client::keyset_hash(&bundle.keyset),
        host_key: HostVerifyingKey::from_sec1(&keyset.receipt_key).unwrap(),
        domain: keyset.domain(),
        keyset,
    }
}

/// One tenant with one channel.
pub struct Tenant {
    pub signer: TenantSigner,
    pub chain: ReceiptChain,
    pub key_config: Vec<u8>,
}

/// The outcome of one call.
pub struct CallResult {
    pub status: u16,
    pub body: Vec<u8>,
    pub receipt: Option<SignedReceipt>,
    pub request_ct_hash: B256,
    pub request_hash: B256,
    pub trailer_error: Option<Vec<u8>>,
}

impl Tenant {
    pub fn new(info: &HostInfo, escrow_cap: u128, salt: u8) -> Self {
        let signer = TenantSigner::generate(&mut rand::rngs::OsRng);
        let host_key_id = info.keyset.host_key_id();
        let channel_id = dait_chain_client::channel_id(
            &info.domain,
            &signer.address(),
            &host_key_id,
            &B256([salt; 32]),
        );
        let state = ChannelState::open(channel_id, escrow_cap, signer.address(), host_key_id);
        Self {
            chain: ReceiptChain::new(info.domain, info.host_key, info.keyset_hash, state),
            signer,
            key_config: info.keyset.ohttp_key_config.clone(),
        }
    }

    /// The signed current state, as the header value.
    pub fn state_header(&self) -> String {
        self.signed_state(self.chain.state().clone())
            .to_header_value()
    }

    pub fn signed_state(&self, state: ChannelState) -> SignedChannelState {
        let sig = self.signer.sign_state(&state, self.chain.domain());
        SignedChannelState {
            state,
            tenant_signature: sig,
            host_signature: None,
        }
    }

    /// The inner BHTTP request.
    pub fn inner(path: &str, state_header: &str, body: &[u8]) -> Vec<u8> {
        let mut m = bhttp::Message::request(
            b"POST".to_vec(),
            b"https".to_vec(),
            b"dait".to_vec(),
            path.as_bytes().to_vec(),
        );
        m.put_header("content-type", "application/json");
        m.put_header("x-dait-state", state_header);
        m.write_content(body);
        let mut out = Vec::new();
        m.write_bhttp(bhttp::Mode::KnownLength, &mut out).unwrap();
        out
    }

    /// A non-streamed call; `tamper` may alter the encapsulated request.
    pub async fn call_with(
        &self,
        conn: &mut Conn,
        path: &str,
        state_header: &str,
        body: &[u8],
        tamper: impl FnOnce(&mut Vec<u8>),
    ) -> Result<CallResult, (u16, Bytes)> {
        let inner = Self::inner(path, state_header, body);
        let client = ohttp::ClientRequest::from_encoded_config(&self.key_config).unwrap();
        let (mut enc, opener) = client.encapsulate(&inner).unwrap();
        tamper(&mut enc);
        let request_ct_hash = ciphertext_hash(&enc);
        // A failed connection is status 0.
        let (status, resp) = conn
            .send("POST", "/v1/ohttp", Some("message/ohttp-req"), enc)
            .await
            .map_err(|_| (0u16, Bytes::new()))?;
        if status != 200 {
            return Err((status, resp));
        }
        let pt = opener.decapsulate(&resp).unwrap();
        let msg =
            bhttp::Message::read_bhttp::<_, Cursor<&[u8]>>(&mut Cursor::new(&pt[..])).unwrap();
        let receipt = msg
            .header()
            .get(b"x-dait-receipt")
            .map(|r| SignedReceipt::from_header_value(std::str::from_utf8(r).unwrap()).unwrap());
        Ok(CallResult {
            status: msg.control().status().unwrap().code(),
            body: msg.content().to_vec(),
            receipt,
            request_ct_hash,
            request_hash: request_hash(body),
            trailer_error: None,
        })
    }

    /// A streamed call (chunked OHTTP); returns the decrypted SSE body and the trailer receipt.
    /// `cut` drops that many bytes from the end of the encrypted response before opening it.
    pub async fn stream_with(
        &self,
        conn: &mut Conn,
        path: &str,
        state_header: &str,
        body: &[u8],
        cut: usize,
    ) -> Result<CallResult, String> {
        let inner = Self::inner(path, state_header, body);
        let client = ohttp::ClientRequest::from_encoded_config(&self.key_config).unwrap();
        let sink = SharedSink::default();
        let mut w = client.encapsulate_stream(sink.clone()).unwrap();
        w.write_all(&inner).await.unwrap();
        w.close().await.unwrap();
        let enc = sink.take();
        let request_ct_hash = ciphertext_hash(&enc);
        let (status, resp) = conn
            .send("POST", "/v1/ohttp", Some("message/ohttp-chunked-req"), enc)
            .await
            .unwrap();
        if status != 200 {
            return Err(format!("outer status {status}"));
        }
        let resp = resp.get(..resp.len() - cut).unwrap().to_vec();
        let mut opened = w.response(futures::io::Cursor::new(resp)).unwrap();
        let mut pt = Vec::new();
        opened
            .read_to_end(&mut pt)
            .await
            .map_err(|e| format!("stream: {e}"))?;
        let msg = bhttp::Message::read_bhttp::<_, Cursor<&[u8]>>(&mut Cursor::new(&pt[..]))
            .map_err(|e| format!("bhttp: {e}"))?;
        let receipt = msg
            .trailer()
            .get(b"x-dait-receipt")
            .map(|r| SignedReceipt::from_header_value(std::str::from_utf8(r).unwrap()).unwrap());
        Ok(CallResult {
            status: msg.control().status().unwrap().code(),
            body: msg.content().to_vec(),
            receipt,
            request_ct_hash,
            request_hash: request_hash(body),
            trailer_error: msg.trailer().get(b"x-dait-error").map(<[u8]>::to_vec),
        })
    }

    /// Run the SPUR-IC checks on a call's receipt and advance the channel.
    pub fn accept(&mut self, r: &CallResult, streamed: bool) -> Result<B256, ReceiptError> {
        let signed = r.receipt.as_ref().expect("receipt");
        let normalised = if streamed {
            let mut n = dait_chain_client::StreamNormalizer::new();
            n.push(&r.body).unwrap();
            n.finish().unwrap()
        } else {
            NormalizedResponse::from_body(&r.body).unwrap()
        };
        let usage = Usage {
            prompt_tokens: signed.receipt.tokens_in,
            completion_tokens: signed.receipt.tokens_out,
        };
        let binding = CallBinding {
            request_hash: r.request_hash,
            response_hash: normalised.response_hash(usage).unwrap(),
            request_ct_hash: r.request_ct_hash,
            response_ct_hash: B256::ZERO,
        };
        self.chain.apply_call(signed, &binding)
    }
}

/// An in-memory AsyncWrite sink shared with the caller.
#[derive(Clone, Default)]
pub struct SharedSink(Arc<std::sync::Mutex<Vec<u8>>>);

impl SharedSink {
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl futures::io::AsyncWrite for SharedSink {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.lock().unwrap().extend_from_slice(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

pub fn chat_body(prompt: &str, max_tokens: u64, stream: bool) -> Vec<u8> {
    json!({"model": "m", "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "temperature": 0, "stream": stream})
        .to_string()
        .into_bytes()
}

/// The agent's router served in-process (simulated TEE, the in-test engine as upstream), with its state dir.
pub struct Agent {
    pub addr: SocketAddr,
    pub app: Arc<dait_agent::http::App>,
    _dir: tempfile::TempDir,
}

/// Starts the agent in-process, over TLS or (for tests that read raw bytes) plaintext.
pub async fn agent(mode: EngineMode, tls: bool) -> Agent {
    use clap::Parser as _;
    use dait_agent::config::{Cli, Command};
    let (engine, _) = start_engine(mode).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap().to_owned();
    let upstream = format!("http://{engine}");
    let args = [
        "dait-host",
        "serve",
        "--tee",
        "simulated",
        "--state-dir",
        &state,
        "--upstream",
        &upstream,
        "--price-in",
        "2",
        "--price-out",
        "3",
        "--model-id",
        "test-model",
    ];
    let Command::Serve { raw } = Cli::try_parse_from(args).unwrap().command else {
        unreachable!()
    };
    let config = raw.validate().unwrap();
    dait_agent::tee::init(config.tee, &config.state_dir).unwrap();
    let app = dait_agent::build_app(&config, dait_agent::Mode::Serve).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    if tls {
        tokio::spawn(dait_agent::http::serve_tls(app.clone(), listener));
    } else {
        tokio::spawn(dait_agent::http::dangerous_serve_plaintext(
            app.clone(),
            listener,
        ));
    }
    Agent {
        addr,
        app,
        _dir: dir,
    }
}
