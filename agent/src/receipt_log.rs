//! The append-only receipt log.
//!
//! One record per receipt: `u32be(len) || SHA-256(payload)[..8] || payload`, where the payload is a
//! fixed header ([`RecordHeader`]) followed by the protobuf `SignedReceipt` bytes as served. A record
//! is durable (written and `fdatasync`ed) before [`ReceiptLog::append`] returns; concurrent appends
//! share one sync (group commit). On open, the log is replayed: a torn final record (short, or its
//! checksum fails and only zero bytes follow it) is erased; a damaged record followed by more data,
//! or a gap in a channel's `call_seq`, is an error (never silently dropped).
//!
//! The file is preallocated in [`SEGMENT`]-byte steps by writing zeros and syncing the metadata once
//! per step, so that each commit overwrites blocks that already exist: the per-request `fdatasync`
//! then flushes data only, with no file-size or extent update to journal. Zero bytes after the last
//! record are the unused part of the preallocation (a record never starts with a zero length).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

/// File name of the log inside the state directory.
pub const LOG_FILE: &str = "receipts.log";

/// Largest record payload accepted on replay (bytes).
pub const MAX_RECORD: usize = 1 << 20;

/// Preallocation step of the log file (bytes of zeros written and synced ahead of the records).
pub const SEGMENT: u64 = 1 << 20;

const FRAME_HEADER: usize = 4 + 8;
/// Size of [`RecordHeader`] when encoded.
pub const RECORD_HEADER_LEN: usize = 32 + 8 + 16 + 32 + 32 + 20;

/// Errors of the receipt log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptLogError {
    /// A complete record failed its checksum and is followed by more data.
    #[error("receipt log corrupt at offset {offset}")]
    Corrupt {
        /// Byte offset of the damaged record.
        offset: u64,
    },
    /// A channel's call_seq in the log is not gapless.
    #[error("receipt log has a call_seq gap at offset {offset}")]
    Gap {
        /// Byte offset of the record.
        offset: u64,
    },
    /// The log writer has stopped.
    #[error("receipt log writer stopped")]
    Closed,
    /// I/O failure.
    #[error("receipt log i/o")]
    Io(#[from] io::Error),
    /// A record is larger than [`MAX_RECORD`].
    #[error("receipt log record too large")]
    TooLarge,
}

/// The fixed fields of a record that replay needs (no protobuf decoding on start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Channel id.
    pub channel_id: [u8; 32],
    /// The receipt's call_seq.
    pub call_seq: u64,
    /// Cumulative amount after this call.
    pub cumulative: u128,
    /// The receipt hash (EIP-712 digest).
    pub receipt_hash: [u8; 32],
    /// The host key that signed it.
    pub host_key_id: [u8; 32],
    /// The tenant address of the channel.
    pub tenant: [u8; 20],
}

impl RecordHeader {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.channel_id);
        out.extend_from_slice(&self.call_seq.to_be_bytes());
        out.extend_from_slice(&self.cumulative.to_be_bytes());
        out.extend_from_slice(&self.receipt_hash);
        out.extend_from_slice(&self.host_key_id);
        out.extend_from_slice(&self.tenant);
    }

    fn decode(b: &[u8]) -> Option<Self> {
        let (channel_id, b) = b.split_first_chunk::<32>()?;
        let (call_seq, b) = b.split_first_chunk::<8>()?;
        let (cumulative, b) = b.split_first_chunk::<16>()?;
        let (receipt_hash, b) = b.split_first_chunk::<32>()?;
        let (host_key_id, b) = b.split_first_chunk::<32>()?;
        let (tenant, _) = b.split_first_chunk::<20>()?;
        Some(Self {
            channel_id: *channel_id,
            call_seq: u64::from_be_bytes(*call_seq),
            cumulative: u128::from_be_bytes(*cumulative),
            receipt_hash: *receipt_hash,
            host_key_id: *host_key_id,
            tenant: *tenant,
        })
    }
}

/// One replayed record.
#[derive(Debug, Clone)]
pub struct Record {
    /// Fixed fields.
    pub header: RecordHeader,
    /// The protobuf `SignedReceipt` bytes.
    pub signed_receipt: Vec<u8>,
}

/// What replay restored for one channel: its last receipt.
pub type ChannelHeads = HashMap<[u8; 32], RecordHeader>;

/// Result of opening a log.
#[derive(Debug)]
pub struct Replay {
    /// Last record per channel.
    pub heads: ChannelHeads,
    /// Number of complete records.
    pub records: u64,
    /// Bytes cut off a torn final record (0 if none).
    pub truncated: u64,
}

fn frame(header: &RecordHeader, signed_receipt: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(RECORD_HEADER_LEN + signed_receipt.len());
    header.encode(&mut payload);
    payload.extend_from_slice(signed_receipt);
    let digest = Sha256::digest(&payload);
    let mut out = Vec::with_capacity(FRAME_HEADER + payload.len());
    // INVARIANT: payload length is bounded by MAX_RECORD (checked by the caller) which fits in u32.
    out.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(digest.get(..8).unwrap_or_default());
    out.extend_from_slice(&payload);
    out
}

/// Read every complete record of a log file (no sequencing checks beyond framing). Returns the
/// records and the offset where the next record goes; stops at the zero-filled preallocated tail and
/// at a torn final record (one that is short or fails its checksum with only zeros after it).
pub fn read_records(path: &Path) -> Result<(Vec<Record>, u64), ReceiptLogError> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let mut out = Vec::new();
    let mut pos = 0usize;
    loop {
        let rest = data.get(pos..).unwrap_or_default();
        let Some((len, after)) = rest.split_first_chunk::<4>() else {
            return Ok((out, pos as u64));
        };
        let len = u32::from_be_bytes(*len) as usize;
        let Some((sum, after)) = after.split_first_chunk::<8>() else {
            return Ok((out, pos as u64));
        };
        let record = if len == 0 || len > MAX_RECORD {
            None
        } else {
            after.get(..len).and_then(|payload| {
                let header = RecordHeader::decode(payload)?;
                (Sha256::digest(payload).get(..8) == Some(&sum[..])).then_some((header, payload))
            })
        };
        match record {
            Some((header, payload)) => {
                out.push(Record {
                    header,
                    signed_receipt: payload
                        .get(RECORD_HEADER_LEN..)
                        .unwrap_or_default()
                        .to_vec(),
                });
                pos += FRAME_HEADER + len;
            }
            None => {
                // Unused preallocation, or a torn final write: the record is short, or only zeros
                // follow it (or follow its frame header, when the length is zero or implausible).
                let end = if len == 0 {
                    zeros(after)
                } else if len > MAX_RECORD {
                    after.len() < MAX_RECORD || zeros(after)
                } else {
                    after.get(len..).is_none_or(zeros)
                };
                if end {
                    return Ok((out, pos as u64));
                }
                return Err(ReceiptLogError::Corrupt { offset: pos as u64 });
            }
        }
    }
}

fn zeros(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

/// Offset just past the last non-zero byte at or after `from` (`from` when there is none).
fn garbage_end(path: &Path, from: u64) -> io::Result<u64> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let from = usize::try_from(from).unwrap_or(usize::MAX);
    let end = data
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i + 1)
        .max(from);
    Ok(end as u64)
}

/// Make sure the file holds written (zeroed) blocks up to at least `need`, extending it by whole
/// segments and syncing its metadata; `allocated` is the current file length.
fn preallocate(file: &File, allocated: &mut u64, need: u64) -> io::Result<()> {
    if need <= *allocated {
        return Ok(());
    }
    let new_len = need.div_ceil(SEGMENT).saturating_mul(SEGMENT);
    let chunk = vec![0u8; 64 * 1024];
    let mut at = *allocated;
    while at < new_len {
        let n = usize::try_from(new_len - at)
            .unwrap_or(usize::MAX)
            .min(chunk.len());
        file.write_all_at(chunk.get(..n).unwrap_or_default(), at)?;
        at += n as u64;
    }
    file.sync_all()?;
    *allocated = new_len;
    Ok(())
}

/// Told how each batch's write and `fdatasync` went (metrics, readiness): see [`ReceiptLog::open_observed`].
pub trait SyncObserver: Send + 'static {
    /// One batch: how long its write and sync took, and whether both succeeded.
    fn synced(&self, elapsed: Duration, ok: bool);
}

impl SyncObserver for () {
    fn synced(&self, _: Duration, _: bool) {}
}

struct Job {
    bytes: Vec<u8>,
    done: oneshot::Sender<Result<(), io::ErrorKind>>,
}

/// Handle to the log writer (cheap to clone).
#[derive(Clone, Debug)]
pub struct ReceiptLog {
    tx: mpsc::UnboundedSender<Job>,
    path: PathBuf,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").finish_non_exhaustive()
    }
}

impl ReceiptLog {
    /// Open (creating if needed) the log in `state_dir`, replay it, truncate a torn final record,
    /// and start the writer thread.
    pub fn open(state_dir: &Path) -> Result<(Self, Replay), ReceiptLogError> {
        Self::open_observed(state_dir, Box::new(()))
    }

    /// [`Self::open`], telling `observer` of every batch the writer makes durable or fails to.
    pub fn open_observed(
        state_dir: &Path,
        observer: Box<dyn SyncObserver>,
    ) -> Result<(Self, Replay), ReceiptLogError> {
        let path = state_dir.join(LOG_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)?;
        let (records, good_len) = read_records(&path)?;
        let truncated = garbage_end(&path, good_len)? - good_len;
        if truncated > 0 {
            // Erase the torn record so that the next append starts on zeros.
            let n = usize::try_from(truncated).map_err(|_| ReceiptLogError::TooLarge)?;
            file.write_all_at(&vec![0u8; n], good_len)?;
            file.sync_all()?;
        }
        let mut allocated = file.metadata()?.len();
        preallocate(&file, &mut allocated, good_len + SEGMENT / 2)?;
        let mut heads = ChannelHeads::new();
        let mut offset = 0u64;
        for r in &records {
            let expected = heads.get(&r.header.channel_id).map_or(0, |h| h.call_seq) + 1;
            if r.header.call_seq != expected {
                return Err(ReceiptLogError::Gap { offset });
            }
            heads.insert(r.header.channel_id, r.header);
            offset += (FRAME_HEADER + RECORD_HEADER_LEN + r.signed_receipt.len()) as u64;
        }
        let replay = Replay {
            heads,
            records: records.len() as u64,
            truncated,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        thread::Builder::new()
            .name("receipt-log".into())
            .spawn(move || writer(file, good_len, allocated, rx, observer))?;
        Ok((Self { tx, path }, replay))
    }

    /// Path of the log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one record; returns once it is durable.
    pub async fn append(
        &self,
        header: &RecordHeader,
        signed_receipt: &[u8],
    ) -> Result<(), ReceiptLogError> {
        if RECORD_HEADER_LEN + signed_receipt.len() > MAX_RECORD {
            return Err(ReceiptLogError::TooLarge);
        }
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Job {
                bytes: frame(header, signed_receipt),
                done,
            })
            .map_err(|_| ReceiptLogError::Closed)?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(kind)) => Err(ReceiptLogError::Io(kind.into())),
            Err(_) => Err(ReceiptLogError::Closed),
        }
    }
}

/// Writer thread: take every job queued, write them with one positioned write at `pos`, sync the data
/// once, acknowledge all; then extend the preallocation when less than half a segment is left.
fn writer(
    file: File,
    mut pos: u64,
    mut allocated: u64,
    mut rx: mpsc::UnboundedReceiver<Job>,
    observer: Box<dyn SyncObserver>,
) {
    let mut batch: Vec<Job> = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut failed: Option<io::ErrorKind> = None;
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let result = match failed {
            Some(kind) => Err(kind),
            None => {
                buf.clear();
                for j in &batch {
                    buf.extend_from_slice(&j.bytes);
                }
                let end = pos + buf.len() as u64;
                let started = Instant::now();
                let r = preallocate(&file, &mut allocated, end)
                    .and_then(|()| file.write_all_at(&buf, pos))
                    .and_then(|()| file.sync_data());
                observer.synced(started.elapsed(), r.is_ok());
                if r.is_ok() {
                    pos = end;
                }
                if let Err(e) = &r {
                    // After a failed write or sync the file's state is unknown: refuse all further appends.
                    failed = Some(e.kind());
                    tracing::error!(error = %e, "receipt log write failed; refusing further receipts");
                }
                r.map_err(|e| e.kind())
            }
        };
        for j in batch.drain(..) {
            // The requester may have gone away; the record is durable either way.
            let _ = j.done.send(result);
        }
        if failed.is_none() {
            // On failure the next batch retries (and fails itself only if it does not fit).
            if let Err(e) = preallocate(&file, &mut allocated, pos + SEGMENT / 2) {
                tracing::warn!(error = %e, "receipt log preallocation failed");
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::io::Write;

    fn hdr(ch: u8, seq: u64) -> RecordHeader {
        RecordHeader {
            channel_id: [ch; 32],
            call_seq: seq,
            cumulative: u128::from(seq) * 10,
            receipt_hash: [seq as u8; 32],
            host_key_id: [7; 32],
            tenant: [9; 20],
        }
    }

    #[tokio::test]
    async fn append_replay_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let (log, replay) = ReceiptLog::open(dir.path()).unwrap();
        assert_eq!(replay.records, 0);
        let mut handles = Vec::new();
        for seq in 1..=20u64 {
            // Appends for different channels run concurrently and share syncs.
            let log = log.clone();
            handles.push(tokio::spawn(async move {
                log.append(&hdr((seq % 2) as u8, seq.div_ceil(2)), b"receipt")
                    .await
            }));
        }
        for h in handles {
            h.await.unwrap().unwrap();
        }
        drop(log);
        let (records, _) = read_records(&dir.path().join(LOG_FILE)).unwrap();
        assert_eq!(records.len(), 20);
        assert_eq!(records[0].signed_receipt, b"receipt");
    }

    fn write_raw(dir: &Path, frames: &[Vec<u8>]) {
        let mut f = File::create(dir.join(LOG_FILE)).unwrap();
        for fr in frames {
            f.write_all(fr).unwrap();
        }
    }

    #[test]
    fn torn_final_record_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let a = frame(&hdr(1, 1), b"one");
        let b = frame(&hdr(1, 2), b"two");
        let torn = b.get(..b.len() - 3).unwrap().to_vec();
        write_raw(dir.path(), &[a.clone(), torn]);
        let (_log, replay) = ReceiptLog::open(dir.path()).unwrap();
        assert_eq!(replay.records, 1);
        assert_eq!(replay.truncated, (b.len() - 3) as u64);
        assert_eq!(replay.heads[&[1; 32]].call_seq, 1);
        // The torn bytes are erased (zeros) and the file is preallocated past the good prefix.
        let data = std::fs::read(dir.path().join(LOG_FILE)).unwrap();
        assert!((data.len() as u64).is_multiple_of(SEGMENT));
        assert_eq!(&data[..a.len()], &a[..]);
        assert!(data[a.len()..].iter().all(|&x| x == 0));
    }

    #[tokio::test]
    async fn append_after_torn_record_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let a = frame(&hdr(1, 1), b"one");
        let b = frame(&hdr(1, 2), b"two");
        write_raw(dir.path(), &[a, b.get(..b.len() - 3).unwrap().to_vec()]);
        let (log, _) = ReceiptLog::open(dir.path()).unwrap();
        log.append(&hdr(1, 2), b"again").await.unwrap();
        drop(log);
        let (_log, replay) = ReceiptLog::open(dir.path()).unwrap();
        assert_eq!(replay.records, 2);
        assert_eq!(replay.truncated, 0);
        assert_eq!(replay.heads[&[1; 32]].call_seq, 2);
    }

    #[tokio::test]
    async fn preallocated_log_replays_and_grows_by_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = ReceiptLog::open(dir.path()).unwrap();
        let path = dir.path().join(LOG_FILE);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), SEGMENT);
        // Enough records to cross into a second segment.
        let body = vec![0xabu8; 4000];
        let n = SEGMENT / 4000 + 10;
        for seq in 1..=n {
            log.append(&hdr(3, seq), &body).await.unwrap();
        }
        drop(log);
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(len >= 2 * SEGMENT && len.is_multiple_of(SEGMENT), "{len}");
        let (records, next) = read_records(&path).unwrap();
        assert_eq!(records.len() as u64, n);
        assert!(next < len);
        let (_log, replay) = ReceiptLog::open(dir.path()).unwrap();
        assert_eq!(replay.records, n);
        assert_eq!(replay.truncated, 0);
    }

    #[test]
    fn data_after_zero_padding_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let a = frame(&hdr(1, 1), b"one");
        write_raw(dir.path(), &[a.clone(), vec![0; 100], vec![1]]);
        assert!(matches!(
            ReceiptLog::open(dir.path()),
            Err(ReceiptLogError::Corrupt { offset }) if offset == a.len() as u64
        ));
    }

    #[test]
    fn torn_header_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let a = frame(&hdr(1, 1), b"one");
        write_raw(dir.path(), &[a, vec![0, 1]]);
        let (_log, replay) = ReceiptLog::open(dir.path()).unwrap();
        assert_eq!(replay.records, 1);
        assert_eq!(replay.truncated, 2);
    }

    #[test]
    fn damaged_middle_record_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = frame(&hdr(1, 1), b"one");
        let last = a.len() - 1;
        a[last] ^= 1;
        let b = frame(&hdr(1, 2), b"two");
        write_raw(dir.path(), &[a, b]);
        assert!(matches!(
            ReceiptLog::open(dir.path()),
            Err(ReceiptLogError::Corrupt { offset: 0 })
        ));
    }

    #[test]
    fn complete_final_record_is_kept_even_if_last() {
        let dir = tempfile::tempdir().unwrap();
        let a = frame(&hdr(1, 1), b"one");
        let b = frame(&hdr(1, 2), b"two");
        write_raw(dir.path(), &[a, b]);
        let (_log, replay) = ReceiptLog::open(dir.path()).unwrap();
        assert_eq!(replay.records, 2);
        assert_eq!(replay.truncated, 0);
        assert_eq!(replay.heads[&[1; 32]].cumulative, 20);
    }

    #[test]
    fn gap_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        write_raw(
            dir.path(),
            &[frame(&hdr(1, 1), b"x"), frame(&hdr(1, 3), b"y")],
        );
        assert!(matches!(
            ReceiptLog::open(dir.path()),
            Err(ReceiptLogError::Gap { .. })
        ));
    }
}
