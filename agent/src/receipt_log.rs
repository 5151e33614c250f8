//! The append-only receipt log.
//!
//! One record per receipt: `u32be(len) || SHA-256(payload)[..8] || payload`, where the payload is a
//! fixed header ([`RecordHeader`]) followed by the protobuf `SignedReceipt` bytes as served. A record
//! is durable (written and `fdatasync`ed) before [`ReceiptLog::append`] returns; concurrent appends
//! share one sync (group commit). The file's directory is synced when the log is opened (so a newly
//! created log survives a crash) and after a damaged remainder is moved aside.
//!
//! The file is preallocated in [`SEGMENT`]-byte steps by writing zeros and syncing the metadata once
//! per step, so that each commit overwrites blocks that already exist: the per-request `fdatasync`
//! then flushes data only, with no file-size or extent update to journal. Zero bytes after the last
//! record are the unused part of the preallocation (a record never starts with a zero length).
//!
//! # Reading records back
//! The handle keeps an index of where each durable record lies (its byte offset, in log order and per channel's
//! `call_seq`), built by replay and extended by the writer before it acknowledges a batch. [`ReceiptLog::get`]
//! and [`ReceiptLog::range`] read just the records asked for, with positioned reads, and check each one's
//! checksum again; nothing reads the log from its start after replay. The index costs 16 bytes a record.
//!
//! # Replay: a torn tail or corruption
//! On open, records are read from offset 0 while they are intact (length in
//! `RECORD_HEADER_LEN..=MAX_RECORD`, payload inside the file, checksum right). Where that stops, at
//! offset `P`, let `E` be the offset just past the file's last non-zero byte. `E == P` is the clean end
//! of the log. Otherwise the bytes `P..E` are classified, first match wins, into a [`Damage`]:
//! 1. [`Damage::LengthMismatch`]: the payload passes its checksum at another length (up to the next
//!    intact record, or ending at `E`): the length field is damaged.
//! 2. [`Damage::Length`]: the frame header is complete (`E - P >= 12`) and its length is out of range.
//! 3. [`Damage::Checksum`]: the whole declared record lies before `E`, so it is complete (or data
//!    follows it), and its checksum fails.
//! 4. [`Damage::RecordAfter`]: an intact record starts after `P` (within one largest record).
//!
//! What matches none of these is a **torn tail**: the last record's frame header or its end was never
//! written (only zeros, or the end of the file, where its last bytes should be) and no intact record
//! follows. That is what a write cut by a crash leaves (the write lands in zeroed, preallocated
//! blocks), so it is erased (zeroed) and counted in [`Replay::truncated`]. Damage of any kind stops
//! [`ReceiptLog::open`] with [`ReceiptLogError::Corrupt`], naming `P`: records after it may have been
//! acknowledged, so they are never dropped silently. [`ReceiptLog::dangerous_open_truncating_at`]
//! (`dait-host serve --dangerous-truncate-receipt-log-at P`) moves `P..E` aside to
//! `receipts.log.corrupt-at-P` next to the log (synced, with its directory), zeroes it in the log and
//! starts; it refuses any offset other than the one replay reports.
//!
//! Limits of the classification: a final record whose payload is damaged and whose last bytes
//! happen to be zero is taken for a torn tail (its length field says more bytes should follow than
//! the file holds); a power loss that persists a write's blocks out of order can leave a hole before
//! intact records of the same unacknowledged batch, which is reported as damage (the flag recovers
//! it). Records that form a `call_seq` gap stop the start too ([`ReceiptLogError::Gap`]); the same flag,
//! given the gap's offset, moves the log aside from there.
//!
//! # Write failures
//! A batch that fails is acknowledged to none of its callers, and the log's [`LogState`] changes:
//! - Out of space (`ENOSPC` or `EDQUOT`) while extending the preallocation or writing the batch: the
//!   file is cut back (`ftruncate`, then `fsync`) to the end of the last durable record, so nothing of
//!   the failed batch remains, and the log is [`LogState::NoSpace`]. Appends are refused until
//!   [`ReceiptLog::ensure_writable`] (at most once per [`NO_SPACE_PROBE_INTERVAL`]) manages to
//!   preallocate half a segment again; then it is [`LogState::Writable`], without a restart.
//! - Any other write error, any failed `fdatasync`, or a failed cut-back: [`LogState::Failed`] until a
//!   restart. After a failed sync the kernel may have dropped the dirty pages and cleared the error, so
//!   what the file holds past the last durable record is unknown; only a replay of the file settles it.

use std::collections::HashMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

/// File name of the log inside the state directory.
pub const LOG_FILE: &str = "receipts.log";

/// Name prefix of a damaged remainder moved aside by
/// [`ReceiptLog::dangerous_open_truncating_at`]; the byte offset follows it.
pub const MOVED_ASIDE_PREFIX: &str = "receipts.log.corrupt-at-";

/// Largest record payload accepted on replay (bytes).
pub const MAX_RECORD: usize = 1 << 20;

/// Preallocation step of the log file (bytes of zeros written and synced ahead of the records).
pub const SEGMENT: u64 = 1 << 20;

const FRAME_HEADER: usize = 4 + 8;
/// How often, at most, a log that ran out of space probes for space again
/// ([`ReceiptLog::ensure_writable`]).
pub const NO_SPACE_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Size of [`RecordHeader`] when encoded.
pub const RECORD_HEADER_LEN: usize = 32 + 8 + 16 + 32 + 32 + 20;

/// How many zero bytes a final record's payload may end with when replay looks for its real length
/// (a `SignedReceipt` ends with a 64-byte signature, so more is vanishingly unlikely).
const TRAILING_ZEROS: usize = 8;

/// Errors of the receipt log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptLogError {
    /// The log is damaged at `offset` (not a torn final record): records after it may have been
    /// acknowledged, so the log is not opened.
    #[error(
        "receipt log corrupt at byte offset {offset}: {damage}; the bytes from there on are kept \
         (to move them aside and start, losing any receipts in them: \
         serve --dangerous-truncate-receipt-log-at {offset})"
    )]
    Corrupt {
        /// Byte offset of the damaged record.
        offset: u64,
        /// What is wrong with it.
        damage: Damage,
    },
    /// A channel's call_seq in the log is not gapless.
    #[error(
        "receipt log has a call_seq gap at byte offset {offset} (to move the log aside from there and \
         start: serve --dangerous-truncate-receipt-log-at {offset})"
    )]
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
    /// Truncation was asked for at an offset where the log is intact (or only has a torn tail).
    #[error(
        "receipt log is not damaged at byte offset {offset}; refusing to truncate it (remove \
         --dangerous-truncate-receipt-log-at)"
    )]
    NothingToTruncate {
        /// The offset asked for.
        offset: u64,
    },
    /// A record is larger than [`MAX_RECORD`].
    #[error("receipt log record too large")]
    TooLarge,
    /// [`ReceiptLog::range`] was asked for records the log does not hold.
    #[error("receipt log holds {held} records; records {first}..{first}+{count} asked for")]
    OutOfRange {
        /// The first record asked for.
        first: u64,
        /// How many.
        count: u64,
        /// How many the log holds.
        held: u64,
    },
    /// The log refuses appends (module documentation, "Write failures").
    #[error("receipt log is not writable: {0}")]
    Unwritable(LogState),
}

/// Whether the log takes appends (module documentation, "Write failures").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogState {
    /// A write or an `fdatasync` failed (other than for space): refused until a restart.
    Failed,
    /// A write ran out of space and was rolled back: refused until space is found again.
    NoSpace,
    /// Appends are taken.
    Writable,
}

impl LogState {
    /// For an atomic.
    pub(crate) fn to_u8(self) -> u8 {
        match self {
            Self::Writable => 0,
            Self::NoSpace => 1,
            Self::Failed => 2,
        }
    }

    /// From [`Self::to_u8`].
    pub(crate) fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Writable,
            1 => Self::NoSpace,
            _ => Self::Failed,
        }
    }
}

impl fmt::Display for LogState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Failed => {
                "a write or fdatasync failed; no receipt is made durable until a restart"
            }
            Self::NoSpace => {
                "no space left on its device; no receipt is made durable until space is freed"
            }
            Self::Writable => "writable",
        })
    }
}

/// What is wrong with a damaged record (see the module documentation for the order of the checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Damage {
    /// The record fails its checksum, and it is complete or more data follows it.
    Checksum,
    /// The length field is zero or outside `RECORD_HEADER_LEN..=MAX_RECORD`.
    Length {
        /// The length field.
        len: u32,
    },
    /// The length field is damaged: the payload passes its checksum with `actual` bytes.
    LengthMismatch {
        /// The length field.
        len: u32,
        /// The payload length that passes the checksum.
        actual: u32,
    },
    /// The record fails its checksum and runs past the data, but an intact record starts at `next`.
    RecordAfter {
        /// Byte offset of the intact record.
        next: u64,
    },
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Checksum => write!(f, "checksum mismatch with data after the record"),
            Self::Length { len } => write!(f, "length field {len} out of range"),
            Self::LengthMismatch { len, actual } => write!(
                f,
                "length field {len} is damaged (the payload checks with length {actual})"
            ),
            Self::RecordAfter { next } => write!(
                f,
                "checksum mismatch, and an intact record follows at byte offset {next}"
            ),
        }
    }
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
    /// Bytes of a torn final record that were erased (0 if none).
    pub truncated: u64,
    /// The damaged remainder moved aside by [`ReceiptLog::dangerous_open_truncating_at`].
    pub moved_aside: Option<MovedAside>,
}

/// A damaged remainder of the log, moved to a file next to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedAside {
    /// The file that holds the bytes.
    pub path: PathBuf,
    /// The log offset they came from.
    pub offset: u64,
    /// How many bytes (up to the log's last non-zero byte).
    pub bytes: u64,
}

fn checksum(payload: &[u8]) -> [u8; 8] {
    let digest = Sha256::digest(payload);
    let mut out = [0u8; 8];
    out.copy_from_slice(digest.get(..8).unwrap_or_default());
    out
}

fn frame(header: &RecordHeader, signed_receipt: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(RECORD_HEADER_LEN + signed_receipt.len());
    header.encode(&mut payload);
    payload.extend_from_slice(signed_receipt);
    let mut out = Vec::with_capacity(FRAME_HEADER + payload.len());
    // INVARIANT: payload length is bounded by MAX_RECORD (checked by the caller) which fits in u32.
    out.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(&checksum(&payload));
    out.extend_from_slice(&payload);
    out
}

/// The frame header at `at`: the length field and the checksum.
fn frame_header(data: &[u8], at: usize) -> Option<(u32, [u8; 8])> {
    let (len, rest) = data.get(at..)?.split_first_chunk::<4>()?;
    let (sum, _) = rest.split_first_chunk::<8>()?;
    Some((u32::from_be_bytes(*len), *sum))
}

/// Whether the payload of `len` bytes after the frame header at `at` lies in `data` and passes `sum`.
fn payload_checks(data: &[u8], at: usize, len: usize, sum: &[u8; 8]) -> bool {
    (RECORD_HEADER_LEN..=MAX_RECORD).contains(&len)
        && data
            .get(at + FRAME_HEADER..)
            .and_then(|p| p.get(..len))
            .is_some_and(|p| checksum(p) == *sum)
}

/// An intact record, borrowed from the log's bytes: replay keeps no copy of each receipt (one heap
/// block per record, freed after replay, would stay in the process's resident memory).
#[derive(Debug)]
struct RecordRef<'a> {
    header: RecordHeader,
    signed_receipt: &'a [u8],
}

impl RecordRef<'_> {
    fn to_record(&self) -> Record {
        Record {
            header: self.header,
            signed_receipt: self.signed_receipt.to_vec(),
        }
    }
}

/// The intact record at `at`, if there is one.
fn record_at(data: &[u8], at: usize) -> Option<RecordRef<'_>> {
    let (len, sum) = frame_header(data, at)?;
    let len = len as usize;
    if !payload_checks(data, at, len, &sum) {
        return None;
    }
    let payload = data.get(at + FRAME_HEADER..)?.get(..len)?;
    Some(RecordRef {
        header: RecordHeader::decode(payload)?,
        signed_receipt: payload.get(RECORD_HEADER_LEN..)?,
    })
}

/// What follows the intact records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tail {
    /// Nothing, or only zeros.
    Clean,
    /// A damaged record.
    Corrupt(Damage),
    /// A torn final record.
    Torn,
}

/// A log file's contents, read.
#[derive(Debug)]
struct Scan<'a> {
    records: Vec<RecordRef<'a>>,
    /// Offset just past the last intact record.
    good: usize,
    /// Offset just past the last non-zero byte (at least `good`).
    end: usize,
    tail: Tail,
}

fn scan(data: &[u8]) -> Scan<'_> {
    let mut records = Vec::new();
    let mut good = 0usize;
    while let Some(r) = record_at(data, good) {
        good += FRAME_HEADER + RECORD_HEADER_LEN + r.signed_receipt.len();
        records.push(r);
    }
    let end = data
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i + 1)
        .max(good);
    Scan {
        records,
        good,
        end,
        tail: classify(data, good, end),
    }
}

/// Classify the non-zero bytes `p..e` that follow the intact records (module documentation, "Replay").
fn classify(data: &[u8], p: usize, e: usize) -> Tail {
    if e == p {
        return Tail::Clean;
    }
    // An intact record after `p` that matters here starts within one largest record of it.
    let window = e.min(p + FRAME_HEADER + MAX_RECORD + 1);
    let next = (p + 1..window).find(|&q| record_at(data, q).is_some());
    if let Some((len, sum)) = frame_header(data, p).filter(|_| e - p >= FRAME_HEADER) {
        // Where the payload would end if the length field were wrong: before the next intact
        // record, or at the last non-zero byte (allowing for a few zero bytes at its end).
        let ends = next
            .into_iter()
            .chain((e..e + TRAILING_ZEROS).filter(|&t| t <= data.len()));
        for t in ends {
            let actual = t.saturating_sub(p + FRAME_HEADER);
            if actual != len as usize && payload_checks(data, p, actual, &sum) {
                return Tail::Corrupt(Damage::LengthMismatch {
                    len,
                    actual: u32::try_from(actual).unwrap_or(u32::MAX),
                });
            }
        }
        if !(RECORD_HEADER_LEN..=MAX_RECORD).contains(&(len as usize)) {
            return Tail::Corrupt(Damage::Length { len });
        }
        if p + FRAME_HEADER + len as usize <= e {
            return Tail::Corrupt(Damage::Checksum);
        }
    }
    match next {
        Some(next) => Tail::Corrupt(Damage::RecordAfter { next: next as u64 }),
        None => Tail::Torn,
    }
}

/// Read every intact record of a log file (no sequencing checks beyond framing). Returns the records
/// and the offset where the next record goes; a torn final record is not returned (and not an error),
/// damage is [`ReceiptLogError::Corrupt`].
pub fn read_records(path: &Path) -> Result<(Vec<Record>, u64), ReceiptLogError> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let s = scan(&data);
    match s.tail {
        Tail::Corrupt(damage) => Err(ReceiptLogError::Corrupt {
            offset: s.good as u64,
            damage,
        }),
        Tail::Clean | Tail::Torn => Ok((
            s.records.iter().map(RecordRef::to_record).collect(),
            s.good as u64,
        )),
    }
}

/// Sync a directory, so that the entries created in it are durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Copy `bytes` (the log's contents from `offset`) into a new file next to the log and make it
/// durable; then zero them in the log. Returns the new file's path.
fn move_aside(state_dir: &Path, log: &File, bytes: &[u8], offset: u64) -> io::Result<PathBuf> {
    let base = state_dir.join(format!("{MOVED_ASIDE_PREFIX}{offset}"));
    let mut n = 0u32;
    let (mut out, path) = loop {
        let path = if n == 0 {
            base.clone()
        } else {
            PathBuf::from(format!("{}.{n}", base.display()))
        };
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => break (f, path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
            Err(e) => return Err(e),
        }
    };
    out.write_all(bytes)?;
    out.sync_all()?;
    sync_dir(state_dir)?;
    log.write_all_at(&vec![0u8; bytes.len()], offset)?;
    log.sync_all()?;
    Ok(path)
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

    /// The log's [`LogState`] changed (told before the callers of the batch that changed it).
    fn state(&self, state: LogState) {
        let _ = state;
    }
}

impl SyncObserver for () {
    fn synced(&self, _: Duration, _: bool) {}
}

/// A record's call: `(channel_id, call_seq)`.
type CallKey = ([u8; 32], u64);

/// Where the writer answers an append: `Err` with the state that refused it.
type AppendDone = oneshot::Sender<Result<(), LogState>>;

enum Job {
    /// One framed record to make durable, of call `call_seq` of channel `channel_id`.
    Append {
        bytes: Vec<u8>,
        channel_id: [u8; 32],
        call_seq: u64,
        done: AppendDone,
    },
    /// Look for space again (in [`LogState::NoSpace`]); answers the state after the attempt.
    Probe { done: oneshot::Sender<LogState> },
}

/// What the writer shares with the handles.
#[derive(Debug)]
struct Shared {
    /// [`LogState`], as `LogState::to_u8`.
    state: AtomicU8,
    /// When the last probe for space was asked for.
    last_probe: Mutex<Option<Instant>>,
    /// Where the durable records lie.
    index: RwLock<Index>,
    /// The log file, for positioned reads of records.
    reader: File,
}

/// Where each durable record lies in the file (module documentation, "Reading records back").
#[derive(Debug, Default)]
struct Index {
    /// Byte offset of each record, in log order.
    offsets: Vec<u64>,
    /// Byte offset just past the last record.
    end: u64,
    /// Per channel, the byte offset of each call's record: call `n` at `[n - 1]` (a channel's `call_seq`s in the
    /// log are gapless from 1; replay refuses a log where they are not).
    calls: HashMap<[u8; 32], Vec<u64>>,
}

impl Index {
    /// Adds the record of `len` bytes that follows the last one.
    fn push(&mut self, channel_id: [u8; 32], call_seq: u64, len: u64) {
        let at = self.end;
        let calls = self.calls.entry(channel_id).or_default();
        if calls.len() as u64 + 1 == call_seq {
            calls.push(at);
        } else {
            // The channel's calls are sequenced before they are logged; a record out of order would stop the
            // next start with `Gap` (replay), so it stays out of the index rather than shift the others.
            tracing::error!(
                call_seq,
                "receipt log record out of call_seq order; not indexed"
            );
        }
        self.offsets.push(at);
        self.end = at + len;
    }

    fn call(&self, channel_id: &[u8; 32], call_seq: u64) -> Option<u64> {
        let i = usize::try_from(call_seq.checked_sub(1)?).ok()?;
        self.calls.get(channel_id)?.get(i).copied()
    }
}

/// Handle to the log writer (cheap to clone).
#[derive(Clone, Debug)]
pub struct ReceiptLog {
    tx: mpsc::UnboundedSender<Job>,
    path: PathBuf,
    shared: Arc<Shared>,
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job").finish_non_exhaustive()
    }
}

impl ReceiptLog {
    /// Open (creating if needed) the log in `state_dir`, replay it, erase a torn final record, and
    /// start the writer thread. Damage anywhere is [`ReceiptLogError::Corrupt`] (module documentation).
    pub fn open(state_dir: &Path) -> Result<(Self, Replay), ReceiptLogError> {
        Self::open_with(state_dir, None, Box::new(()))
    }

    /// [`Self::open`], telling `observer` of every batch the writer makes durable or fails to.
    pub fn open_observed(
        state_dir: &Path,
        observer: Box<dyn SyncObserver>,
    ) -> Result<(Self, Replay), ReceiptLogError> {
        Self::open_with(state_dir, None, observer)
    }

    /// [`ReceiptLog::open_observed`] a log that replay reports damaged (or with a `call_seq` gap) at exactly
    /// `offset`: move the log's bytes from `offset` to its last non-zero byte into
    /// `receipts.log.corrupt-at-<offset>` next to it (never deleting them), zero them in the log, and
    /// start with the records before `offset`. Receipts in the moved bytes are no longer known to the
    /// agent. Any other offset, or a log that is not damaged there, is refused.
    pub fn dangerous_open_truncating_at(
        state_dir: &Path,
        offset: u64,
        observer: Box<dyn SyncObserver>,
    ) -> Result<(Self, Replay), ReceiptLogError> {
        Self::open_with(state_dir, Some(offset), observer)
    }

    fn open_with(
        state_dir: &Path,
        truncate_at: Option<u64>,
        observer: Box<dyn SyncObserver>,
    ) -> Result<(Self, Replay), ReceiptLogError> {
        let path = state_dir.join(LOG_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)?;
        // The file's directory entry must be durable before any record in it is acknowledged.
        sync_dir(state_dir)?;
        let mut data = Vec::new();
        (&file).read_to_end(&mut data)?;
        let Scan {
            mut records,
            mut good,
            end,
            tail,
        } = scan(&data);

        // The first problem: a call_seq gap among the intact records, or else damage after them.
        let mut heads = ChannelHeads::new();
        let mut at_record = 0usize;
        let mut gap = None;
        for (i, r) in records.iter().enumerate() {
            let expected = heads.get(&r.header.channel_id).map_or(0, |h| h.call_seq) + 1;
            if r.header.call_seq != expected {
                gap = Some((i, at_record));
                break;
            }
            heads.insert(r.header.channel_id, r.header);
            at_record += FRAME_HEADER + RECORD_HEADER_LEN + r.signed_receipt.len();
        }
        let problem = match (gap, tail) {
            (Some((_, offset)), _) => Some(ReceiptLogError::Gap {
                offset: offset as u64,
            }),
            (None, Tail::Corrupt(damage)) => Some(ReceiptLogError::Corrupt {
                offset: good as u64,
                damage,
            }),
            (None, Tail::Clean | Tail::Torn) => None,
        };
        // Where the problem starts (`good` when there is none).
        let first_bad = gap.map_or(good, |(_, offset)| offset);

        let mut truncated = 0u64;
        let mut moved_aside = None;
        match (problem, truncate_at) {
            (Some(problem), None) => return Err(problem),
            (Some(problem), Some(at)) if at != first_bad as u64 => return Err(problem),
            (Some(_), Some(at)) => {
                if let Some((i, _)) = gap {
                    records.truncate(i);
                }
                good = first_bad;
                let bytes = data.get(good..end).unwrap_or_default();
                let aside = move_aside(state_dir, &file, bytes, at)?;
                tracing::warn!(
                    offset = at,
                    bytes = bytes.len(),
                    moved_to = %aside.display(),
                    "receipt log damaged: its remainder was moved aside, as asked"
                );
                moved_aside = Some(MovedAside {
                    path: aside,
                    offset: at,
                    bytes: bytes.len() as u64,
                });
            }
            (None, Some(at)) => return Err(ReceiptLogError::NothingToTruncate { offset: at }),
            (None, None) => {
                if tail == Tail::Torn {
                    // Erase the torn record so that the next append starts on zeros.
                    file.write_all_at(&vec![0u8; end - good], good as u64)?;
                    file.sync_all()?;
                    truncated = (end - good) as u64;
                }
            }
        }
        let mut index = Index::default();
        for r in &records {
            let len = (FRAME_HEADER + RECORD_HEADER_LEN + r.signed_receipt.len()) as u64;
            index.push(r.header.channel_id, r.header.call_seq, len);
        }
        let records = records.len() as u64;
        drop(data);
        let good = good as u64;
        debug_assert_eq!(index.end, good);
        let mut allocated = file.metadata()?.len();
        preallocate(&file, &mut allocated, good + SEGMENT / 2)?;
        let replay = Replay {
            heads,
            records,
            truncated,
            moved_aside,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            state: AtomicU8::new(LogState::Writable.to_u8()),
            last_probe: Mutex::new(None),
            index: RwLock::new(index),
            reader: file.try_clone()?,
        });
        let writer_shared = Arc::clone(&shared);
        thread::Builder::new()
            .name("receipt-log".into())
            .spawn(move || {
                Writer {
                    file,
                    pos: good,
                    allocated,
                    state: LogState::Writable,
                    observer,
                    shared: writer_shared,
                }
                .run(rx);
            })?;
        Ok((Self { tx, path, shared }, replay))
    }

    /// Path of the log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many durable records the log holds.
    pub fn record_count(&self) -> u64 {
        self.shared
            .index
            .read()
            .map_or(0, |i| i.offsets.len() as u64)
    }

    /// The record of call `call_seq` of channel `channel_id`, read from its place in the file; `Ok(None)` when the
    /// log holds none. Blocking I/O (call it from a blocking task). A record whose bytes no longer pass their
    /// checksum is [`ReceiptLogError::Corrupt`].
    pub fn get(
        &self,
        channel_id: &[u8; 32],
        call_seq: u64,
    ) -> Result<Option<Record>, ReceiptLogError> {
        let at = {
            let index = self
                .shared
                .index
                .read()
                .map_err(|_| ReceiptLogError::Closed)?;
            let Some(at) = index.call(channel_id, call_seq) else {
                return Ok(None);
            };
            at
        };
        let mut frame = [0u8; FRAME_HEADER];
        self.shared.reader.read_exact_at(&mut frame, at)?;
        let len = frame_header(&frame, 0).map_or(0, |(len, _)| len as usize);
        if !(RECORD_HEADER_LEN..=MAX_RECORD).contains(&len) {
            return Err(ReceiptLogError::Corrupt {
                offset: at,
                damage: Damage::Length {
                    len: u32::try_from(len).unwrap_or(u32::MAX),
                },
            });
        }
        let mut data = vec![0u8; FRAME_HEADER + len];
        self.shared.reader.read_exact_at(&mut data, at)?;
        let record = record_at(&data, 0)
            .filter(|r| r.header.channel_id == *channel_id && r.header.call_seq == call_seq)
            .ok_or(ReceiptLogError::Corrupt {
                offset: at,
                damage: Damage::Checksum,
            })?;
        Ok(Some(record.to_record()))
    }

    /// The records `first..first + count` in log order, read from the file in one positioned read. Blocking I/O.
    /// A range past the durable records is [`ReceiptLogError::OutOfRange`]; a record whose bytes no longer pass
    /// their checksum is [`ReceiptLogError::Corrupt`].
    pub fn range(&self, first: u64, count: u64) -> Result<Vec<Record>, ReceiptLogError> {
        let (start, stop) = {
            let index = self
                .shared
                .index
                .read()
                .map_err(|_| ReceiptLogError::Closed)?;
            let held = index.offsets.len() as u64;
            let end = first
                .checked_add(count)
                .filter(|e| *e <= held)
                .ok_or(ReceiptLogError::OutOfRange { first, count, held })?;
            let offset = |i: u64| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| index.offsets.get(i).copied())
                    .unwrap_or(index.end)
            };
            (offset(first), offset(end))
        };
        let len = usize::try_from(stop - start).map_err(|_| ReceiptLogError::TooLarge)?;
        let mut data = vec![0u8; len];
        self.shared.reader.read_exact_at(&mut data, start)?;
        let mut out = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        let mut at = 0usize;
        while at < data.len() {
            let r = record_at(&data, at).ok_or(ReceiptLogError::Corrupt {
                offset: start + at as u64,
                damage: Damage::Checksum,
            })?;
            at += FRAME_HEADER + RECORD_HEADER_LEN + r.signed_receipt.len();
            out.push(r.to_record());
        }
        Ok(out)
    }

    /// Whether the log takes appends now.
    pub fn state(&self) -> LogState {
        LogState::from_u8(self.shared.state.load(Ordering::Acquire))
    }

    /// `Ok` when the log takes appends. Out of space, it probes for space again (at most once per
    /// [`NO_SPACE_PROBE_INTERVAL`] across all callers; in between it answers at once), and becomes
    /// writable when the probe can preallocate half a segment.
    pub async fn ensure_writable(&self) -> Result<(), ReceiptLogError> {
        match self.state() {
            LogState::Writable => return Ok(()),
            LogState::Failed => return Err(ReceiptLogError::Unwritable(LogState::Failed)),
            LogState::NoSpace => {}
        }
        let due = self.shared.last_probe.lock().is_ok_and(|mut last| {
            let due = last.is_none_or(|at| at.elapsed() >= NO_SPACE_PROBE_INTERVAL);
            if due {
                *last = Some(Instant::now());
            }
            due
        });
        if !due {
            return Err(ReceiptLogError::Unwritable(LogState::NoSpace));
        }
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Job::Probe { done })
            .map_err(|_| ReceiptLogError::Closed)?;
        match wait.await {
            Ok(LogState::Writable) => Ok(()),
            Ok(state) => Err(ReceiptLogError::Unwritable(state)),
            Err(_) => Err(ReceiptLogError::Closed),
        }
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
            .send(Job::Append {
                bytes: frame(header, signed_receipt),
                channel_id: header.channel_id,
                call_seq: header.call_seq,
                done,
            })
            .map_err(|_| ReceiptLogError::Closed)?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(state)) => Err(ReceiptLogError::Unwritable(state)),
            Err(_) => Err(ReceiptLogError::Closed),
        }
    }
}

/// Whether an I/O error means the device (or the quota) has no space left.
fn is_no_space(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// Which step of a commit failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Extending the preallocation or writing the batch.
    Write,
    /// `fdatasync`.
    Sync,
}

/// The writer thread's state: the file, where the next record goes, how far the file is
/// preallocated, and whether it takes appends.
struct Writer {
    file: File,
    pos: u64,
    allocated: u64,
    state: LogState,
    observer: Box<dyn SyncObserver>,
    shared: Arc<Shared>,
}

impl Writer {
    /// Take every job queued: probe for space if asked (and out of space), write the appends with
    /// one positioned write at `pos`, sync the data once, publish the state, answer all; then extend
    /// the preallocation when less than half a segment is left.
    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Job>) {
        let mut appends: Vec<(Vec<u8>, CallKey, AppendDone)> = Vec::new();
        let mut probes: Vec<oneshot::Sender<LogState>> = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            let mut next = Some(first);
            while let Some(job) = next.take().or_else(|| rx.try_recv().ok()) {
                match job {
                    Job::Append {
                        bytes,
                        channel_id,
                        call_seq,
                        done,
                    } => appends.push((bytes, (channel_id, call_seq), done)),
                    Job::Probe { done } => probes.push(done),
                }
            }
            if !probes.is_empty() && self.state == LogState::NoSpace {
                self.probe();
            }
            let result = if appends.is_empty() {
                Ok(())
            } else {
                buf.clear();
                for (bytes, _, _) in &appends {
                    buf.extend_from_slice(bytes);
                }
                self.commit(&buf)
            };
            if result.is_ok() && !appends.is_empty() {
                // Indexed before anyone hears it is durable: an acknowledged receipt can be read back at once.
                if let Ok(mut index) = self.shared.index.write() {
                    for (bytes, (channel_id, call_seq), _) in &appends {
                        index.push(*channel_id, *call_seq, bytes.len() as u64);
                    }
                }
            }
            let published = self.shared.state.swap(self.state.to_u8(), Ordering::AcqRel);
            if published != self.state.to_u8() {
                self.observer.state(self.state);
            }
            for (_, _, done) in appends.drain(..) {
                // The requester may have gone away; the record is durable (or not) either way.
                let _ = done.send(result);
            }
            for done in probes.drain(..) {
                let _ = done.send(self.state);
            }
            if self.state == LogState::Writable {
                // On failure the next batch retries (and fails itself only if it does not fit).
                let need = self.pos + SEGMENT / 2;
                if let Err(e) = preallocate(&self.file, &mut self.allocated, need) {
                    tracing::warn!(error = %e, "receipt log preallocation failed");
                }
            }
        }
    }

    /// Make `buf` durable at `pos` if the log takes appends; on failure change the state
    /// (module documentation, "Write failures").
    fn commit(&mut self, buf: &[u8]) -> Result<(), LogState> {
        if self.state != LogState::Writable {
            return Err(self.state);
        }
        let end = self.pos + buf.len() as u64;
        let started = Instant::now();
        let r = preallocate(&self.file, &mut self.allocated, end)
            .and_then(|()| self.file.write_all_at(buf, self.pos))
            .map_err(|e| (Step::Write, e))
            .and_then(|()| self.file.sync_data().map_err(|e| (Step::Sync, e)));
        self.observer.synced(started.elapsed(), r.is_ok());
        match r {
            Ok(()) => {
                self.pos = end;
                Ok(())
            }
            Err((Step::Write, e)) if is_no_space(&e) => {
                tracing::error!(error = %e, "receipt log out of space; refusing receipts until space is freed");
                self.roll_back();
                Err(self.state)
            }
            Err((step, e)) => {
                tracing::error!(error = %e, ?step, "receipt log write failed; refusing receipts until a restart");
                self.state = LogState::Failed;
                Err(self.state)
            }
        }
    }

    /// Out of space: cut the file back to the end of the last durable record (dropping whatever
    /// of a failed write or preallocation reached it) and make that durable. The log is then
    /// [`LogState::NoSpace`], or [`LogState::Failed`] if the cut-back failed.
    fn roll_back(&mut self) {
        let r = self.file.set_len(self.pos).and_then(|()| {
            self.allocated = self.pos;
            self.file.sync_all()
        });
        self.state = match r {
            Ok(()) => LogState::NoSpace,
            Err(e) => {
                tracing::error!(error = %e, "receipt log roll-back failed; refusing receipts until a restart");
                LogState::Failed
            }
        };
    }

    /// Out of space: try to preallocate half a segment again.
    fn probe(&mut self) {
        match preallocate(&self.file, &mut self.allocated, self.pos + SEGMENT / 2) {
            Ok(()) => {
                tracing::info!("receipt log has space again; taking receipts");
                self.state = LogState::Writable;
            }
            Err(e) if is_no_space(&e) => self.roll_back(),
            Err(e) => {
                tracing::error!(error = %e, "receipt log probe failed; refusing receipts until a restart");
                self.state = LogState::Failed;
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

    fn body(ch: u8, seq: u64) -> Vec<u8> {
        format!("receipt {ch}-{seq}").into_bytes()
    }

    /// Every record, one at a time and in ranges, equals what replay reads from the start.
    fn reads_back(log: &ReceiptLog, held: u64) {
        let all = read_records(log.path()).unwrap().0;
        assert_eq!(log.record_count(), held);
        assert_eq!(all.len() as u64, held);
        for r in &all {
            let got = log
                .get(&r.header.channel_id, r.header.call_seq)
                .unwrap()
                .unwrap();
            assert_eq!(got.header, r.header);
            assert_eq!(got.signed_receipt, r.signed_receipt);
        }
        let (first, count) = (4, 7);
        let some = log.range(first, count).unwrap();
        let want = &all[first as usize..(first + count) as usize];
        assert_eq!(
            some.iter()
                .map(|r| (r.header, &r.signed_receipt))
                .collect::<Vec<_>>(),
            want.iter()
                .map(|r| (r.header, &r.signed_receipt))
                .collect::<Vec<_>>()
        );
        assert_eq!(log.range(0, held).unwrap().len() as u64, held);
        assert!(log.range(held, 0).unwrap().is_empty());
        assert!(matches!(
            log.range(held - 1, 2),
            Err(ReceiptLogError::OutOfRange { first, count: 2, held: h }) if first == held - 1 && h == held
        ));
        assert!(matches!(
            log.range(u64::MAX, 2),
            Err(ReceiptLogError::OutOfRange { .. })
        ));
        // Calls that were never logged.
        assert!(log.get(&[1; 32], 0).unwrap().is_none());
        assert!(log.get(&[1; 32], 1000).unwrap().is_none());
        assert!(log.get(&[200; 32], 1).unwrap().is_none());
    }

    #[tokio::test]
    async fn records_are_read_back_by_call_and_by_range_before_and_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = ReceiptLog::open(dir.path()).unwrap();
        for seq in 1..=5u64 {
            for ch in 1..=3u8 {
                log.append(&hdr(ch, seq), &body(ch, seq)).await.unwrap();
            }
        }
        reads_back(&log, 15);
        assert_eq!(
            log.get(&[2; 32], 4).unwrap().unwrap().signed_receipt,
            body(2, 4)
        );
        drop(log);
        // The index replay builds is the same.
        let (log, _) = ReceiptLog::open(dir.path()).unwrap();
        reads_back(&log, 15);
        // And a record appended after the restart is found as soon as it is acknowledged.
        log.append(&hdr(1, 6), &body(1, 6)).await.unwrap();
        assert_eq!(
            log.get(&[1; 32], 6).unwrap().unwrap().signed_receipt,
            body(1, 6)
        );
        reads_back(&log, 16);
    }

    #[tokio::test]
    async fn a_record_damaged_after_replay_is_refused_when_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = ReceiptLog::open(dir.path()).unwrap();
        for seq in 1..=3u64 {
            log.append(&hdr(1, seq), &body(1, seq)).await.unwrap();
        }
        // Where the second record starts, and a file handle to damage it with while the log is open.
        let at = (FRAME_HEADER + RECORD_HEADER_LEN + body(1, 1).len()) as u64;
        let file = OpenOptions::new().write(true).open(log.path()).unwrap();
        let flip = |offset: u64, bit: u8| {
            let mut b = [0u8; 1];
            File::open(log.path())
                .unwrap()
                .read_exact_at(&mut b, offset)
                .unwrap();
            file.write_all_at(&[b[0] ^ bit], offset).unwrap();
        };

        // A flipped bit in its receipt: that record and any range over it fail, the others still read.
        let last = at + (FRAME_HEADER + RECORD_HEADER_LEN) as u64 + 3;
        flip(last, 0x10);
        assert!(matches!(
            log.get(&[1; 32], 2),
            Err(ReceiptLogError::Corrupt { offset, damage: Damage::Checksum }) if offset == at
        ));
        assert!(matches!(
            log.range(0, 3),
            Err(ReceiptLogError::Corrupt { offset, damage: Damage::Checksum }) if offset == at
        ));
        assert_eq!(
            log.get(&[1; 32], 1).unwrap().unwrap().signed_receipt,
            body(1, 1)
        );
        assert_eq!(
            log.get(&[1; 32], 3).unwrap().unwrap().signed_receipt,
            body(1, 3)
        );
        assert_eq!(log.range(0, 1).unwrap().len(), 1);
        flip(last, 0x10);
        assert_eq!(
            log.get(&[1; 32], 2).unwrap().unwrap().signed_receipt,
            body(1, 2)
        );

        // Its length field out of range: its own error.
        flip(at, 0x80);
        assert!(matches!(
            log.get(&[1; 32], 2),
            Err(ReceiptLogError::Corrupt { offset, damage: Damage::Length { .. } }) if offset == at
        ));
        // The file cut short under the record: an I/O error (an unexpected end), not a wrong record.
        flip(at, 0x80);
        file.set_len(at + 5).unwrap();
        assert!(matches!(
            log.get(&[1; 32], 2),
            Err(ReceiptLogError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof
        ));
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
            Err(ReceiptLogError::Corrupt { offset, damage: Damage::Length { len: 0 } })
                if offset == a.len() as u64
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
            Err(ReceiptLogError::Corrupt {
                offset: 0,
                damage: Damage::Checksum
            })
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

    /// Three records of channel 1 (call_seq 1, 2, 3), and the file: them, then `zeros` zero bytes
    /// (the preallocation a real log has after its records).
    fn three(zeros: usize) -> ([Vec<u8>; 3], Vec<u8>) {
        let recs = [
            frame(&hdr(1, 1), b"one"),
            frame(&hdr(1, 2), b"two, a little longer"),
            frame(&hdr(1, 3), b"three"),
        ];
        let mut file = recs.concat();
        file.resize(file.len() + zeros, 0);
        (recs, file)
    }

    fn len_field(record: &[u8]) -> u32 {
        u32::from_be_bytes(record[..4].try_into().unwrap())
    }

    fn open_err(dir: &Path) -> ReceiptLogError {
        ReceiptLog::open(dir).map(|_| ()).unwrap_err()
    }

    #[test]
    fn empty_file_opens_clean() {
        let dir = tempfile::tempdir().unwrap();
        write_raw(dir.path(), &[]);
        let (_log, replay) = ReceiptLog::open(dir.path()).unwrap();
        assert_eq!((replay.records, replay.truncated), (0, 0));
        assert!(replay.heads.is_empty() && replay.moved_aside.is_none());
        let len = std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len();
        assert_eq!(len, SEGMENT);
    }

    #[test]
    fn preallocation_only_opens_clean() {
        let dir = tempfile::tempdir().unwrap();
        write_raw(dir.path(), &[vec![0; SEGMENT as usize]]);
        let (_log, replay) = ReceiptLog::open(dir.path()).unwrap();
        assert_eq!((replay.records, replay.truncated), (0, 0));
        assert!(replay.moved_aside.is_none());
    }

    #[test]
    fn only_a_frame_header_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let header = frame(&hdr(1, 1), b"one")[..FRAME_HEADER].to_vec();
        assert_ne!(
            header[FRAME_HEADER - 1],
            0,
            "fixture: the checksum ends non-zero"
        );
        write_raw(dir.path(), &[header, vec![0; 4096]]);
        let (_log, replay) = ReceiptLog::open(dir.path()).unwrap();
        assert_eq!(replay.records, 0);
        assert_eq!(replay.truncated, FRAME_HEADER as u64);
        let data = std::fs::read(dir.path().join(LOG_FILE)).unwrap();
        assert!(data.iter().all(|&b| b == 0));
    }

    #[tokio::test]
    async fn torn_tail_of_a_preallocated_log_is_truncated_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = ReceiptLog::open(dir.path()).unwrap();
        for seq in 1..=3 {
            log.append(&hdr(4, seq), b"body").await.unwrap();
        }
        drop(log);
        let path = dir.path().join(LOG_FILE);
        let (_, next) = read_records(&path).unwrap();
        // A fourth record cut after its frame header and part of its payload.
        let torn = frame(&hdr(4, 4), b"body");
        let cut = &torn[..FRAME_HEADER + 100];
        assert_ne!(cut[cut.len() - 1], 0, "fixture: the cut ends non-zero");
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(cut, next).unwrap();
        drop(f);
        let (_log, replay) = ReceiptLog::open(dir.path()).unwrap();
        assert_eq!(replay.records, 3);
        assert_eq!(replay.truncated, cut.len() as u64);
        assert_eq!(replay.heads[&[4; 32]].call_seq, 3);
        let data = std::fs::read(&path).unwrap();
        assert!(data[next as usize..].iter().all(|&b| b == 0));
    }

    /// Regression for issue 11: a damaged length field in the middle of the log used to make
    /// replay erase every record after it.
    #[test]
    fn flipped_bit_in_a_middle_length_refuses_with_the_offset() {
        for zeros in [0, 4096] {
            for bit in 0..32 {
                let dir = tempfile::tempdir().unwrap();
                let ([a, b, _], mut file) = three(zeros);
                let len = len_field(&b);
                let flipped = len ^ (1 << bit);
                file[a.len()..a.len() + 4].copy_from_slice(&flipped.to_be_bytes());
                write_raw(dir.path(), std::slice::from_ref(&file));
                let e = open_err(dir.path());
                assert!(
                    matches!(
                        e,
                        ReceiptLogError::Corrupt {
                            offset,
                            damage: Damage::LengthMismatch { len: l, actual },
                        } if offset == a.len() as u64 && l == flipped && actual == len
                    ),
                    "bit {bit}, {zeros} zeros: {e:?}"
                );
                // Nothing was changed.
                assert_eq!(std::fs::read(dir.path().join(LOG_FILE)).unwrap(), file);
            }
        }
    }

    #[test]
    fn flipped_bit_in_a_middle_checksum_refuses_with_the_offset() {
        for bit in 0..64 {
            let dir = tempfile::tempdir().unwrap();
            let ([a, _, _], mut file) = three(4096);
            file[a.len() + 4 + bit / 8] ^= 1 << (bit % 8);
            write_raw(dir.path(), &[file]);
            let e = open_err(dir.path());
            assert!(
                matches!(
                    e,
                    ReceiptLogError::Corrupt { offset, damage: Damage::Checksum }
                        if offset == a.len() as u64
                ),
                "bit {bit}: {e:?}"
            );
        }
    }

    #[test]
    fn damaged_final_record_is_not_a_torn_tail() {
        let ([a, b, c], file) = three(4096);
        let at = a.len() + b.len();
        // Its length field grown: the payload still checks at the real length.
        let dir = tempfile::tempdir().unwrap();
        let mut grown = file.clone();
        let len = len_field(&c);
        grown[at + 2] ^= 0x04;
        write_raw(dir.path(), &[grown]);
        assert!(matches!(
            open_err(dir.path()),
            ReceiptLogError::Corrupt { offset, damage: Damage::LengthMismatch { len: l, actual } }
                if offset == at as u64 && l == len + 1024 && actual == len
        ));
        // A flipped payload bit in a complete final record.
        let dir = tempfile::tempdir().unwrap();
        let mut flipped = file;
        flipped[at + FRAME_HEADER + 40] ^= 0x10;
        write_raw(dir.path(), &[flipped]);
        assert!(matches!(
            open_err(dir.path()),
            ReceiptLogError::Corrupt { offset, damage: Damage::Checksum } if offset == at as u64
        ));
    }

    #[test]
    fn out_of_range_length_before_a_damaged_record_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let ([a, _, _], mut file) = three(4096);
        // The middle record's length and payload both damaged: no length makes it check.
        file[a.len()] = 0x80;
        file[a.len() + FRAME_HEADER + 3] ^= 1;
        write_raw(dir.path(), &[file]);
        let len = 0x8000_0000 | len_field(&three(0).0[1]);
        assert!(matches!(
            open_err(dir.path()),
            ReceiptLogError::Corrupt { offset, damage: Damage::Length { len: l } }
                if offset == a.len() as u64 && l == len
        ));
    }

    #[test]
    fn length_running_past_the_data_over_an_intact_record_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let ([a, b, _], mut file) = three(4096);
        // The middle record's length grown past the end of the data, and its payload damaged.
        let grown = len_field(&b) + 4096;
        file[a.len()..a.len() + 4].copy_from_slice(&grown.to_be_bytes());
        file[a.len() + FRAME_HEADER + 3] ^= 1;
        write_raw(dir.path(), &[file]);
        let next = (a.len() + b.len()) as u64;
        assert!(matches!(
            open_err(dir.path()),
            ReceiptLogError::Corrupt { offset, damage: Damage::RecordAfter { next: n } }
                if offset == a.len() as u64 && n == next
        ));
    }

    #[tokio::test]
    async fn dangerous_truncation_moves_the_remainder_aside_and_starts() {
        let dir = tempfile::tempdir().unwrap();
        let ([a, b, c], mut file) = three(4096);
        file[a.len() + 2] ^= 0x04;
        write_raw(dir.path(), std::slice::from_ref(&file));
        let at = a.len() as u64;
        let (log, replay) =
            ReceiptLog::dangerous_open_truncating_at(dir.path(), at, Box::new(())).unwrap();
        assert_eq!((replay.records, replay.truncated), (1, 0));
        assert_eq!(replay.heads[&[1; 32]].call_seq, 1);
        let moved = replay.moved_aside.unwrap();
        assert_eq!(moved.offset, at);
        assert_eq!(moved.bytes, (b.len() + c.len()) as u64);
        assert_eq!(
            moved.path,
            dir.path().join(format!("{MOVED_ASIDE_PREFIX}{at}"))
        );
        // The moved-aside file holds exactly the bytes from the offset on (the damaged one included).
        assert_eq!(
            std::fs::read(&moved.path).unwrap(),
            &file[a.len()..a.len() + b.len() + c.len()]
        );
        // The log keeps every record before the offset, then zeros; appends go on from there.
        let data = std::fs::read(dir.path().join(LOG_FILE)).unwrap();
        assert_eq!(&data[..a.len()], &a[..]);
        assert!(data[a.len()..].iter().all(|&x| x == 0));
        log.append(&hdr(1, 2), b"again").await.unwrap();
        drop(log);
        let (_log, replay) = ReceiptLog::open(dir.path()).unwrap();
        assert_eq!((replay.records, replay.truncated), (2, 0));
        assert!(replay.moved_aside.is_none());
    }

    #[test]
    fn dangerous_truncation_needs_the_exact_offset() {
        let dir = tempfile::tempdir().unwrap();
        let ([a, _, _], mut file) = three(4096);
        file[a.len() + 2] ^= 0x04;
        write_raw(dir.path(), std::slice::from_ref(&file));
        for wrong in [0, a.len() as u64 - 1, a.len() as u64 + 1] {
            let e = ReceiptLog::dangerous_open_truncating_at(dir.path(), wrong, Box::new(()))
                .unwrap_err();
            assert!(
                matches!(e, ReceiptLogError::Corrupt { offset, .. } if offset == a.len() as u64),
                "{e:?}"
            );
        }
        assert_eq!(std::fs::read(dir.path().join(LOG_FILE)).unwrap(), file);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn dangerous_truncation_of_a_sound_log_is_refused() {
        // An intact log, and one with only a torn tail.
        let (recs, file) = three(4096);
        let end = recs.iter().map(Vec::len).sum::<usize>() as u64;
        let mut torn = recs.concat();
        torn.extend_from_slice(&frame(&hdr(1, 4), b"four")[..30]);
        for (bytes, at) in [(file, end), (torn, end)] {
            let dir = tempfile::tempdir().unwrap();
            write_raw(dir.path(), std::slice::from_ref(&bytes));
            assert!(matches!(
                ReceiptLog::dangerous_open_truncating_at(dir.path(), at, Box::new(())).unwrap_err(),
                ReceiptLogError::NothingToTruncate { offset } if offset == at
            ));
            assert_eq!(std::fs::read(dir.path().join(LOG_FILE)).unwrap(), bytes);
        }
    }

    #[test]
    fn dangerous_truncation_at_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let a = frame(&hdr(1, 1), b"x");
        let b = frame(&hdr(1, 3), b"y");
        write_raw(dir.path(), &[a.clone(), b.clone()]);
        let at = a.len() as u64;
        assert!(matches!(
            open_err(dir.path()),
            ReceiptLogError::Gap { offset } if offset == at
        ));
        let (_log, replay) =
            ReceiptLog::dangerous_open_truncating_at(dir.path(), at, Box::new(())).unwrap();
        assert_eq!(replay.records, 1);
        assert_eq!(std::fs::read(replay.moved_aside.unwrap().path).unwrap(), b);
    }

    #[test]
    fn a_second_move_aside_at_the_same_offset_gets_its_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let ([a, _, _], mut file) = three(0);
        file[a.len() + 2] ^= 0x04;
        let at = a.len() as u64;
        let first = dir.path().join(format!("{MOVED_ASIDE_PREFIX}{at}"));
        std::fs::write(&first, b"earlier").unwrap();
        write_raw(dir.path(), &[file]);
        let (_log, replay) =
            ReceiptLog::dangerous_open_truncating_at(dir.path(), at, Box::new(())).unwrap();
        assert_eq!(
            replay.moved_aside.unwrap().path,
            PathBuf::from(format!("{}.1", first.display()))
        );
        assert_eq!(std::fs::read(&first).unwrap(), b"earlier");
    }

    #[test]
    fn read_records_reports_damage() {
        let dir = tempfile::tempdir().unwrap();
        let ([a, _, _], mut file) = three(4096);
        file[a.len() + 4] ^= 1;
        write_raw(dir.path(), &[file]);
        assert!(matches!(
            read_records(&dir.path().join(LOG_FILE)),
            Err(ReceiptLogError::Corrupt { offset, damage: Damage::Checksum })
                if offset == a.len() as u64
        ));
    }
}
