//! Oblivious HTTP (RFC 9458) and chunked OHTTP around Binary HTTP (RFC 9292) messages (PROTOCOL.md §6).

use std::io::Cursor;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bhttp::{Message, Mode};
use bytes::Bytes;
use futures::{AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt, TryStreamExt};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use bhttp::stream::AsyncReadMessage as _;

use crate::TenantError;
use crate::transport::HostClient;

/// Content type of an encapsulated request.
pub(crate) const REQ: &str = "message/ohttp-req";
/// Content type of a chunked encapsulated request.
pub(crate) const CHUNKED_REQ: &str = "message/ohttp-chunked-req";
/// Inner request header carrying the signed channel state.
pub(crate) const STATE_HEADER: &str = "x-dait-state";
/// Inner request header marking a call replayable, with the value `1` (PROTOCOL.md §6).
pub(crate) const REPLAYABLE_HEADER: &str = "x-dait-replayable";
/// Inner response header (or trailer, when streaming) carrying the signed receipt.
pub(crate) const RECEIPT_FIELD: &[u8] = b"x-dait-receipt";
/// The trailer a host sends instead of a receipt when a stream it started failed (PROTOCOL.md §6).
pub(crate) const ERROR_FIELD: &[u8] = b"x-dait-error";
/// Domain tag of ciphertext hashes (PROTOCOL.md §1).
const CIPHERTEXT_TAG: &[u8] = b"dait/v1/ciphertext";
/// Bytes read from the decrypted stream at a time.
const READ_BUF: usize = 16 << 10;

/// `H256("dait/v1/ciphertext" || bytes)`, fed incrementally.
#[derive(Clone, Debug)]
pub(crate) struct CiphertextHasher(Sha256);

impl CiphertextHasher {
    pub(crate) fn new() -> Self {
        let mut h = Sha256::new();
        h.update(CIPHERTEXT_TAG);
        Self(h)
    }
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    pub(crate) fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// Encodes the inner Binary HTTP request: `POST path` with a JSON body and the channel state header,
/// and `x-dait-replayable: 1` when `replayable`.
pub(crate) fn encode_inner_request(
    path: &str,
    body: &[u8],
    state_b64: &str,
    replayable: bool,
) -> Result<Vec<u8>, TenantError> {
    let mut message = Message::request(
        b"POST".to_vec(),
        b"https".to_vec(),
        b"dait".to_vec(),
        path.as_bytes().to_vec(),
    );
    message.put_header("content-type", "application/json");
    message.put_header(STATE_HEADER, state_b64);
    if replayable {
        message.put_header(REPLAYABLE_HEADER, "1");
    }
    message.write_content(body);
    let mut out = Vec::with_capacity(body.len().saturating_add(512));
    message
        .write_bhttp(Mode::KnownLength, &mut out)
        .map_err(TenantError::Bhttp)?;
    Ok(out)
}

/// A decrypted, decoded inner response.
pub(crate) struct InnerResponse {
    /// The inner HTTP status.
    pub(crate) status: u16,
    /// The response body (JSON, or server-sent events when streamed).
    pub(crate) body: Vec<u8>,
    /// The `x-dait-receipt` field (header, or trailer when streamed), base64url.
    pub(crate) receipt: Option<Vec<u8>>,
}

/// Decodes a known-length (or any) Binary HTTP response held in memory.
pub(crate) fn decode_inner_response(bytes: &[u8]) -> Result<InnerResponse, TenantError> {
    let message = Message::read_bhttp(&mut Cursor::new(bytes)).map_err(TenantError::Bhttp)?;
    let status = message
        .control()
        .status()
        .ok_or(TenantError::UnexpectedInnerMessage)?
        .code();
    let receipt = message
        .header()
        .get(RECEIPT_FIELD)
        .or_else(|| message.trailer().get(RECEIPT_FIELD))
        .map(<[u8]>::to_vec);
    Ok(InnerResponse {
        status,
        body: message.content().to_vec(),
        receipt,
    })
}

/// A non-streamed request, sealed and ready to post.
pub(crate) struct SealedRequest {
    /// The `message/ohttp-req` bytes.
    pub(crate) bytes: Vec<u8>,
    /// Opens the matching response (single use).
    pub(crate) opener: ohttp::ClientResponse,
}

/// Seals `inner` to the host's key configuration (RFC 9458 §4.3).
pub(crate) fn seal(key_config: &[u8], inner: &[u8]) -> Result<SealedRequest, TenantError> {
    let client =
        ohttp::ClientRequest::from_encoded_config(key_config).map_err(TenantError::Ohttp)?;
    let (bytes, opener) = client.encapsulate(inner).map_err(TenantError::Ohttp)?;
    Ok(SealedRequest { bytes, opener })
}

/// An in-memory `AsyncWrite` sink whose bytes stay reachable after the writer is moved.
#[derive(Clone, Default)]
struct SharedSink(Arc<Mutex<Vec<u8>>>);

impl AsyncWrite for SharedSink {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.0.lock() {
            Ok(mut sink) => {
                sink.extend_from_slice(buf);
                Poll::Ready(Ok(buf.len()))
            }
            Err(_) => Poll::Ready(Err(std::io::Error::other("sink lock poisoned"))),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// One event from a streamed call, in order.
#[derive(Debug)]
pub(crate) enum StreamEvent {
    /// The request was sent: the chunked request message as sent.
    Sent(Vec<u8>),
    /// The inner status (always before any body).
    Status(u16),
    /// Decrypted body bytes, as they arrived.
    Body(Bytes),
    /// The stream ended with its authenticated final chunk.
    End {
        /// The `x-dait-receipt` trailer, base64url, if present.
        receipt: Option<Vec<u8>>,
        /// The `x-dait-error` trailer (a §6 error code), if present.
        error: Option<Vec<u8>>,
        /// `response_ct_hash` over the whole chunked response as received.
        ct_hash: [u8; 32],
    },
}

/// Sends `inner` as a chunked OHTTP request (draft-ietf-ohai-chunked-ohttp) and opens the response in a
/// task; events arrive on the returned channel. An error is sent once, last; a stream cut before its
/// authenticated final chunk yields [`TenantError::StreamTruncated`].
pub(crate) fn stream_call(
    client: HostClient,
    key_config: Vec<u8>,
    inner: Vec<u8>,
) -> mpsc::Receiver<Result<StreamEvent, TenantError>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        if let Err(error) = run_stream(client, &key_config, &inner, &tx).await {
            let _ = tx.send(Err(error)).await;
        }
    });
    rx
}

/// Marks an error that came from the outer HTTP body, not from decryption.
#[derive(Debug, thiserror::Error)]
#[error("host connection failed while streaming")]
struct TransportCut;

async fn run_stream(
    client: HostClient,
    key_config: &[u8],
    inner: &[u8],
    tx: &mpsc::Sender<Result<StreamEvent, TenantError>>,
) -> Result<(), TenantError> {
    let ohttp_client =
        ohttp::ClientRequest::from_encoded_config(key_config).map_err(TenantError::Ohttp)?;
    let sink = SharedSink::default();
    let mut request = ohttp_client
        .encapsulate_stream(sink.clone())
        .map_err(TenantError::Ohttp)?;
    request.write_all(inner).await.map_err(TenantError::Seal)?;
    request.close().await.map_err(TenantError::Seal)?;
    let sealed = sink
        .0
        .lock()
        .map(|mut b| std::mem::take(&mut *b))
        .map_err(|_| TenantError::Internal("sink lock poisoned"))?;
    let response = client.post_ohttp(CHUNKED_REQ, sealed.clone()).await?;
    if tx.send(Ok(StreamEvent::Sent(sealed))).await.is_err() {
        return Ok(());
    }

    let hasher = Arc::new(Mutex::new(CiphertextHasher::new()));
    let tee = hasher.clone();
    // Set once the transport delivered its last byte: a failure after that concerns the final chunk,
    // which is then missing or cut.
    let ended = Arc::new(AtomicBool::new(false));
    let end_flag = ended.clone();
    let frames = response
        .into_body()
        .into_data_stream()
        .map_err(|_| std::io::Error::other(TransportCut))
        .map_ok(move |chunk: Bytes| {
            if let Ok(mut h) = tee.lock() {
                h.update(&chunk);
            }
            chunk
        })
        .chain(
            futures::stream::once(async move {
                end_flag.store(true, Ordering::SeqCst);
                None
            })
            .filter_map(|end: Option<Result<Bytes, std::io::Error>>| async move { end }),
        );
    let src = frames.boxed().into_async_read();
    let classify = |error: std::io::Error| io_stream_error(error, ended.load(Ordering::SeqCst));
    let classify_bhttp = |error: bhttp::Error| match error {
        bhttp::Error::Io(io) => classify(io),
        bhttp::Error::Truncated => TenantError::StreamTruncated,
        other => TenantError::Bhttp(other),
    };
    let mut opened = request.response(src).map_err(TenantError::Ohttp)?;

    let mut message = Message::async_read(&mut opened);
    let header = message.header().await.map_err(classify_bhttp)?;
    let status = header
        .control()
        .status()
        .ok_or(TenantError::UnexpectedInnerMessage)?
        .code();
    if tx.send(Ok(StreamEvent::Status(status))).await.is_err() {
        return Ok(());
    }
    let mut buf = vec![0u8; READ_BUF];
    {
        let mut body = message.body().map_err(TenantError::Bhttp)?;
        loop {
            let n = body.read(&mut buf).await.map_err(classify)?;
            if n == 0 {
                break;
            }
            let chunk = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
            if tx.send(Ok(StreamEvent::Body(chunk))).await.is_err() {
                return Ok(());
            }
        }
    }
    let trailer = message.trailer().await.map_err(classify_bhttp)?;
    drop(message);
    let receipt = trailer.get(RECEIPT_FIELD).map(<[u8]>::to_vec);
    let error = trailer.get(ERROR_FIELD).map(<[u8]>::to_vec);
    // The trailer may sit in a chunk before the final one: read on until the authenticated final chunk
    // (ohttp reports a missing one as truncation).
    let mut rest = Vec::new();
    opened.read_to_end(&mut rest).await.map_err(classify)?;
    let ct_hash = hasher
        .lock()
        .map_err(|_| TenantError::Internal("hasher lock poisoned"))?
        .clone()
        .finish();
    let _ = tx
        .send(Ok(StreamEvent::End {
            receipt,
            error,
            ct_hash,
        }))
        .await;
    Ok(())
}

/// An I/O error while reading the decrypted stream. A cut connection, a missing final chunk, or any
/// failure once the transport has ended (the final chunk is opened only at the end, so a cut or altered
/// final chunk fails then) is truncation: the stream lacks its authenticated end. A failure while data
/// still flows is a decryption failure.
fn io_stream_error(error: std::io::Error, transport_ended: bool) -> TenantError {
    // The causes nest (ohttp and bhttp wrap the source's I/O error in their own), so walk down.
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(cause) = current {
        if cause.is::<TransportCut>()
            || matches!(
                cause.downcast_ref::<ohttp::Error>(),
                Some(ohttp::Error::Truncated)
            )
            || matches!(
                cause.downcast_ref::<bhttp::Error>(),
                Some(bhttp::Error::Truncated)
            )
        {
            return TenantError::StreamTruncated;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::UnexpectedEof {
                return TenantError::StreamTruncated;
            }
            current = io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static));
        } else {
            current = cause.source();
        }
    }
    if transport_ended {
        return TenantError::StreamTruncated;
    }
    TenantError::ResponseDecrypt
}
