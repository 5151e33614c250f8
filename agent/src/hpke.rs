//! Oblivious HTTP (RFC 9458) server side: the per-boot X25519 HPKE key and single-use response sealers.
//!
//! Shape follows the `ohttp` crate: [`HpkeKey::decapsulate`] returns the plaintext request and a
//! [`ResponseSealer`] whose [`ResponseSealer::seal`] consumes it, so one response key is used once.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures::io::{AsyncReadExt, AsyncWrite};
use ohttp::hpke::{Aead, Kdf, Kem};
use ohttp::{KeyConfig, Server, SymmetricSuite};
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;
use zeroize::Zeroizing;

/// Key id of the single key configuration.
pub const KEY_ID: u8 = 1;

/// Default largest encapsulated request accepted (bytes); `--max-request-bytes` sets it.
pub const MAX_REQUEST: usize = 4 << 20;

/// Errors of the OHTTP layer. All of them map to the same opaque HTTP 400.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HpkeError {
    /// The message could not be decapsulated or decrypted.
    #[error("decapsulation failed")]
    Decapsulate(#[source] ohttp::Error),
    /// The chunked message could not be read.
    #[error("chunked decapsulation failed")]
    DecapsulateChunked(#[source] io::Error),
    /// Key generation or encoding failed.
    #[error("ohttp key error")]
    Key(#[source] ohttp::Error),
    /// Sealing a response failed.
    #[error("response encapsulation failed")]
    Seal(#[source] ohttp::Error),
    /// The request exceeded [`MAX_REQUEST`].
    #[error("request too large")]
    TooLarge,
}

/// The per-boot HPKE key (X25519, HKDF-SHA256, AES-128-GCM and ChaCha20-Poly1305). Memory only.
pub struct HpkeKey {
    server: Server,
    config_bytes: Vec<u8>,
    config_list: Vec<u8>,
}

impl std::fmt::Debug for HpkeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HpkeKey").finish_non_exhaustive()
    }
}

impl HpkeKey {
    /// Generate a fresh key.
    pub fn generate() -> Result<Self, HpkeError> {
        ohttp::init();
        let config = KeyConfig::new(
            KEY_ID,
            Kem::X25519Sha256,
            vec![
                SymmetricSuite::new(Kdf::HkdfSha256, Aead::Aes128Gcm),
                SymmetricSuite::new(Kdf::HkdfSha256, Aead::ChaCha20Poly1305),
            ],
        )
        .map_err(HpkeError::Key)?;
        let config_bytes = config.encode().map_err(HpkeError::Key)?;
        let config_list = KeyConfig::encode_list(&[&config]).map_err(HpkeError::Key)?;
        let server = Server::new(config).map_err(HpkeError::Key)?;
        Ok(Self {
            server,
            config_bytes,
            config_list,
        })
    }

    /// RFC 9458 §3 key configuration, one config, no length prefix (the keyset's `ohttp_key_config`).
    pub fn config(&self) -> &[u8] {
        &self.config_bytes
    }

    /// `application/ohttp-keys` body (RFC 9458 §3: length-prefixed list with one config).
    pub fn config_list(&self) -> &[u8] {
        &self.config_list
    }

    /// Decapsulate a `message/ohttp-req`.
    pub fn decapsulate(&self, msg: &[u8]) -> Result<(Plaintext, ResponseSealer), HpkeError> {
        let (pt, resp) = self
            .server
            .decapsulate(msg)
            .map_err(HpkeError::Decapsulate)?;
        Ok((Plaintext(Zeroizing::new(pt)), ResponseSealer(resp)))
    }

    /// Decapsulate a whole `message/ohttp-chunked-req`; returns the plaintext and a streaming sealer
    /// whose encrypted output arrives on the returned receiver.
    pub async fn decapsulate_chunked(
        &self,
        msg: &[u8],
    ) -> Result<(Plaintext, ChunkedSealer), HpkeError> {
        let mut req = self
            .server
            .clone()
            .decapsulate_stream(futures::io::Cursor::new(msg));
        let mut pt = Zeroizing::new(Vec::new());
        req.read_to_end(&mut pt)
            .await
            .map_err(HpkeError::DecapsulateChunked)?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let gone = Arc::new(AtomicBool::new(false));
        let tenant = tx.clone();
        let writer = req
            .response(ChannelWriter {
                tx: PollSender::new(tx),
                gone: Arc::clone(&gone),
            })
            .map_err(HpkeError::Seal)?;
        Ok((
            Plaintext(pt),
            ChunkedSealer {
                writer: Box::pin(writer),
                gone,
                tenant,
                rx,
            },
        ))
    }
}

/// A decrypted message. Zeroized on drop; no `Debug`.
pub struct Plaintext(Zeroizing<Vec<u8>>);

impl Plaintext {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Seals exactly one response.
pub struct ResponseSealer(ohttp::ServerResponse);

impl ResponseSealer {
    /// Encrypt the response (`message/ohttp-res`). Consumes the sealer.
    pub fn seal(self, response: &[u8]) -> Result<Vec<u8>, HpkeError> {
        self.0.encapsulate(response).map_err(HpkeError::Seal)
    }
}

/// Encrypted pieces a stream may queue before the writer waits for the tenant to read
/// (backpressure: a slow reader slows the stream instead of growing memory).
pub const STREAM_BUFFER: usize = 64;

/// Writer that forwards every write (one encrypted chunk, or the response nonce) to a bounded
/// channel; it returns `Pending` while the channel is full.
///
/// Once the receiver is gone (the tenant's connection ended) it discards what it is given and
/// raises `gone`, instead of failing: the `ohttp` stream writer panics when its destination fails
/// after having been `Pending` (its `poll_write` maps that error through `unreachable!`), which a
/// tenant that stops reading and then disconnects would otherwise trigger.
pub struct ChannelWriter {
    tx: PollSender<Vec<u8>>,
    gone: Arc<AtomicBool>,
}

impl ChannelWriter {
    fn discard(&self, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.gone.store(true, Ordering::Relaxed);
        Poll::Ready(Ok(buf.len()))
    }
}

impl AsyncWrite for ChannelWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.tx.poll_reserve(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(_)) => self.discard(buf),
            Poll::Ready(Ok(())) => match self.tx.send_item(buf.to_vec()) {
                Ok(()) => Poll::Ready(Ok(buf.len())),
                Err(_) => self.discard(buf),
            },
        }
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Streaming response sealer for chunked OHTTP: each [`ChunkWriter::write`] becomes one
/// encrypted chunk; [`ChunkWriter::finish`] writes the authenticated final chunk.
pub struct ChunkedSealer {
    writer: BoxedWriter,
    gone: Arc<AtomicBool>,
    tenant: mpsc::Sender<Vec<u8>>,
    rx: mpsc::Receiver<Vec<u8>>,
}

impl ChunkedSealer {
    /// Split into the writer half and the receiver of encrypted bytes.
    pub fn split(self) -> (ChunkWriter, mpsc::Receiver<Vec<u8>>) {
        (
            ChunkWriter {
                writer: self.writer,
                tenant: Tenant {
                    gone: self.gone,
                    receiver: self.tenant,
                },
            },
            self.rx,
        )
    }
}

/// Writer half of a [`ChunkedSealer`].
pub struct ChunkWriter {
    writer: BoxedWriter,
    tenant: Tenant,
}

/// Whether the tenant of a stream is still there to read it; apart from the writer, so that it
/// can be held across an `await`.
#[derive(Clone)]
pub struct Tenant {
    gone: Arc<AtomicBool>,
    /// Never sends; tells whether the receiver (the tenant's response body) is still there.
    receiver: mpsc::Sender<Vec<u8>>,
}

impl Tenant {
    /// Whether the tenant's response body was dropped (its connection ended): nothing written
    /// now reaches it.
    pub fn gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed) || self.receiver.is_closed()
    }
}

/// The `ohttp` crate's streaming response type is unnameable; hold it boxed.
type BoxedWriter = Pin<Box<dyn AsyncWrite + Send>>;

impl ChunkWriter {
    /// Encrypt `data` as one or more non-final chunks (at most 16 KiB of plaintext each).
    /// Fails with `BrokenPipe` once the tenant is gone.
    pub async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        use futures::io::AsyncWriteExt;
        if self.tenant.gone() {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        self.writer.write_all(data).await?;
        if self.tenant.gone() {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        Ok(())
    }

    /// The stream's tenant, to ask whether it is still there.
    pub fn tenant(&self) -> Tenant {
        self.tenant.clone()
    }

    /// Write the final chunk; the stream is complete only once this ran.
    pub async fn finish(mut self) -> io::Result<()> {
        use futures::io::AsyncWriteExt;
        self.writer.close().await
    }
}
