//! A minimal tenant: attestation, OHTTP + BHTTP calls (plain and streamed), channel-state signing and
//! the SPUR-IC receipt checks.

use dait_chain_client::WireMessage as _;
use std::io::Cursor;
use std::sync::Arc;

use bytes::Bytes;
use dait_chain_client::{
    B256, CallBinding, ChannelState, Domain, HostVerifyingKey, Keyset, NormalizedResponse,
    ReceiptChain, ReceiptError, SignedChannelState, SignedReceipt, TenantSigner, Usage,
    ciphertext_hash, proto, request_hash,
};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use serde_json::{Value, json};

use super::Conn;

/// The chat completions path.
pub const CHAT: &str = "/v1/chat/completions";

/// `GET /v1/attestation?nonce=`: the decoded evidence bundle.
pub async fn fetch_bundle(conn: &mut Conn, nonce: [u8; 32]) -> proto::EvidenceBundle {
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
    dait_chain_client::decode_bundle(&body).unwrap()
}

/// What the tenant learned from the attestation endpoint.
pub struct HostInfo {
    pub keyset: Keyset,
    pub keyset_hash: B256,
    pub host_key: HostVerifyingKey,
    pub domain: Domain,
}

pub async fn host_info(conn: &mut Conn) -> HostInfo {
    let bundle = fetch_bundle(conn, [0x42; 32]).await;
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
    /// Mark its calls replayable (`x-dait-replayable: 1`).
    pub replayable: bool,
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

impl CallResult {
    /// The decrypted inner response of the request `body`; the receipt is in the trailer when
    /// `streamed`, else in the header.
    pub fn read(
        pt: &[u8],
        streamed: bool,
        request_ct_hash: B256,
        body: &[u8],
    ) -> Result<Self, String> {
        let msg = bhttp::Message::read_bhttp::<_, Cursor<&[u8]>>(&mut Cursor::new(pt))
            .map_err(|e| format!("bhttp: {e}"))?;
        let fields = if streamed {
            msg.trailer()
        } else {
            msg.header()
        };
        let receipt = fields
            .get(b"x-dait-receipt")
            .map(|r| SignedReceipt::from_header_value(std::str::from_utf8(r).unwrap()).unwrap());
        Ok(Self {
            status: msg.control().status().unwrap().code(),
            body: msg.content().to_vec(),
            receipt,
            request_ct_hash,
            request_hash: request_hash(body),
            trailer_error: msg.trailer().get(b"x-dait-error").map(<[u8]>::to_vec),
        })
    }

    /// The `error.code` of an error body.
    pub fn error_code(&self) -> String {
        let v: Value = serde_json::from_slice(&self.body).unwrap();
        v["error"]["code"].as_str().unwrap().to_owned()
    }

    /// Asserts an encrypted error answer: the inner status and the PROTOCOL.md §6 code, no receipt.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!((self.status, self.error_code().as_str()), (status, code));
        assert!(self.receipt.is_none());
    }
}

impl Tenant {
    pub fn new(info: &HostInfo, escrow_cap: u128, salt: u8) -> Self {
        let signer = TenantSigner::generate(&mut rand::rngs::OsRng);
        let host = info.keyset.host_account;
        let channel_id = dait_chain_client::channel_id(
            &info.domain,
            &signer.address(),
            &host,
            &B256([salt; 32]),
        );
        let state = ChannelState::open(channel_id, escrow_cap, signer.address(), host);
        Self {
            chain: ReceiptChain::new(info.domain, info.host_key, info.keyset_hash, state),
            signer,
            key_config: info.keyset.ohttp_key_config.clone(),
            replayable: false,
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
        Self::inner_marked(path, state_header, body, false)
    }

    /// The inner BHTTP request, with `x-dait-replayable: 1` when `replayable`.
    pub fn inner_marked(path: &str, state_header: &str, body: &[u8], replayable: bool) -> Vec<u8> {
        let mut m = bhttp::Message::request(
            b"POST".to_vec(),
            b"https".to_vec(),
            b"dait".to_vec(),
            path.as_bytes().to_vec(),
        );
        m.put_header("content-type", "application/json");
        m.put_header("x-dait-state", state_header);
        if replayable {
            m.put_header("x-dait-replayable", "1");
        }
        m.write_content(body);
        let mut out = Vec::new();
        m.write_bhttp(bhttp::Mode::KnownLength, &mut out).unwrap();
        out
    }

    /// A non-streamed call with the current state.
    pub async fn try_call(
        &self,
        conn: &mut Conn,
        path: &str,
        body: &[u8],
    ) -> Result<CallResult, (u16, Bytes)> {
        self.call_with(conn, path, &self.state_header(), body, |_| {})
            .await
    }

    /// A non-streamed call with the current state that must reach the agent.
    pub async fn call(&self, conn: &mut Conn, path: &str, body: &[u8]) -> CallResult {
        self.try_call(conn, path, body).await.unwrap()
    }

    /// A non-streamed call with the given state header that must reach the agent.
    pub async fn call_as(
        &self,
        conn: &mut Conn,
        path: &str,
        state_header: &str,
        body: &[u8],
    ) -> CallResult {
        self.call_with(conn, path, state_header, body, |_| {})
            .await
            .unwrap()
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
        let inner = Self::inner_marked(path, state_header, body, self.replayable);
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
        Ok(CallResult::read(&pt, false, request_ct_hash, body).unwrap())
    }

    /// A streamed call with the current state that must complete.
    pub async fn stream(&self, conn: &mut Conn, path: &str, body: &[u8]) -> CallResult {
        self.stream_with(conn, path, &self.state_header(), body, 0)
            .await
            .unwrap()
    }

    /// A streamed call (chunked OHTTP); returns the decrypted SSE body and the trailer receipt, or
    /// why it failed (`send: …` when the connection failed, `outer status N`, `stream: …`). `cut`
    /// drops that many bytes from the end of the encrypted response before opening it.
    pub async fn stream_with(
        &self,
        conn: &mut Conn,
        path: &str,
        state_header: &str,
        body: &[u8],
        cut: usize,
    ) -> Result<CallResult, String> {
        let inner = Self::inner_marked(path, state_header, body, self.replayable);
        let client = ohttp::ClientRequest::from_encoded_config(&self.key_config).unwrap();
        let sink = SharedSink::default();
        let mut w = client.encapsulate_stream(sink.clone()).unwrap();
        w.write_all(&inner).await.unwrap();
        w.close().await.unwrap();
        let enc = sink.take();
        let request_ct_hash = ciphertext_hash(&enc);
        // A connection that fails (the agent died) is an error, as for a non-streamed call.
        let (status, resp) = conn
            .send("POST", "/v1/ohttp", Some("message/ohttp-chunked-req"), enc)
            .await
            .map_err(|e| format!("send: {e}"))?;
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
        CallResult::read(&pt, true, request_ct_hash, body)
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

/// A new tenant (channel `salt`) calls `CHAT` on its own connection until the agent refuses a call
/// because its receipt log cannot make the receipt durable (an encrypted `503`
/// `receipt_log_unwritable`, no receipt); returns the tenant and the receipts it accepted before.
pub async fn call_until_refused(
    addr: std::net::SocketAddr,
    info: Arc<HostInfo>,
    salt: u8,
) -> (Tenant, Vec<SignedReceipt>) {
    let mut conn = Conn::connect(addr, true).await.unwrap();
    let mut t = Tenant::new(&info, u128::MAX / 2, salt);
    let mut acknowledged = Vec::new();
    for _ in 0..10_000 {
        let r = t.call(&mut conn, CHAT, &chat_body("hello", 1, false)).await;
        if r.status != 200 {
            r.assert_error(503, "receipt_log_unwritable");
            return (t, acknowledged);
        }
        t.accept(&r, false).unwrap();
        acknowledged.push(r.receipt.unwrap());
    }
    panic!("the receipt log never refused a record");
}
