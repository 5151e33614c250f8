//! The tenant's state directory: the latest co-signed state per channel, accepted receipts, and the records
//! a dispute needs when a receipt fails its checks.
//!
//! Layout under the state directory:
//! - `channels/<channel id hex>/state.pb`: the latest signed channel state (protobuf `SignedChannelState`);
//! - `channels/<channel id hex>/receipts.b64`: every accepted receipt, one base64url `SignedReceipt` a line;
//! - `disputes/<channel id hex>-<call_seq>-<unix ms>/`: `receipt.b64` (the offending receipt as received),
//!   `state.pb` (the last state both sides agreed on) and `reason.txt` (the failed check);
//! - `channels/<channel id hex>/host_keys.txt`: every receipt key the tenant verified for the channel, one
//!   `<host_key_id hex> <receipt_key hex> <keyset_hash hex>` a line, so that a receipt an earlier boot of the
//!   host logged but never delivered can still be checked after the host restarted;
//! - `channels/<channel id hex>/unchecked.txt`: the receipts accepted from the host's log without the call they
//!   answer ([`crate::Session::catch_up`]: their request and response hashes could not be recomputed, so they are
//!   the host's claim), one `<call_seq> <receipt hash hex>` a line; absent when there are none;
//! - `channels/<channel id hex>/onchain.json`: a channel opened on chain by `dait-tenant channel open`
//!   (feature `chain`, [`crate::chain::ChannelRecord`]): salt, ids, limits and domain.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Where a failed receipt was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisputeRecord {
    /// The record's directory.
    pub dir: PathBuf,
}

/// Writes `bytes` to `path` through a temporary file and a rename, then syncs it.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

fn channel_dir(state_dir: &Path, channel_id: &[u8; 32]) -> PathBuf {
    state_dir.join("channels").join(hex::encode(channel_id))
}

/// Appends `line` and a newline to the channel's file `name`, creating both as needed, and syncs it.
fn append_line(
    state_dir: &Path,
    channel_id: &[u8; 32],
    name: &str,
    line: &[u8],
) -> std::io::Result<PathBuf> {
    let dir = channel_dir(state_dir, channel_id);
    std::fs::create_dir_all(&dir)?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))?;
    file.write_all(line)?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    Ok(dir)
}

/// Records an accepted receipt and the new state of its channel.
pub(crate) fn record_accepted(
    state_dir: &Path,
    channel_id: &[u8; 32],
    receipt_b64: &[u8],
    state: &[u8],
) -> std::io::Result<()> {
    let dir = append_line(state_dir, channel_id, "receipts.b64", receipt_b64)?;
    write_atomic(&dir.join("state.pb"), state)
}

/// Adds a receipt accepted without its call to `unchecked.txt` (module documentation).
pub(crate) fn record_unchecked(
    state_dir: &Path,
    channel_id: &[u8; 32],
    call_seq: u64,
    receipt_hash: &[u8; 32],
) -> std::io::Result<()> {
    let line = format!("{call_seq} {}", hex::encode(receipt_hash));
    append_line(state_dir, channel_id, "unchecked.txt", line.as_bytes()).map(drop)
}

/// Writes the record of a failed receipt check.
pub(crate) fn record_dispute(
    state_dir: &Path,
    channel_id: &[u8; 32],
    call_seq: u64,
    receipt_b64: &[u8],
    last_state: &[u8],
    reason: &str,
) -> std::io::Result<DisputeRecord> {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let dir = state_dir
        .join("disputes")
        .join(format!("{}-{call_seq}-{millis}", hex::encode(channel_id)));
    std::fs::create_dir_all(&dir)?;
    write_atomic(&dir.join("receipt.b64"), receipt_b64)?;
    write_atomic(&dir.join("state.pb"), last_state)?;
    write_atomic(&dir.join("reason.txt"), reason.as_bytes())?;
    Ok(DisputeRecord { dir })
}

/// What the state directory holds for one channel: the latest signed state (`state.pb`, `None` when absent)
/// and the non-empty lines of `receipts.b64` (none when absent).
pub(crate) fn load_channel(
    state_dir: &Path,
    channel_id: &[u8; 32],
) -> std::io::Result<(Option<Vec<u8>>, Vec<String>)> {
    let dir = channel_dir(state_dir, channel_id);
    let state = match std::fs::read(dir.join("state.pb")) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let lines = match std::fs::read_to_string(dir.join("receipts.b64")) {
        Ok(text) => text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    Ok((state, lines))
}

/// Adds a verified receipt key of the channel's host to `host_keys.txt`, unless it is there already.
pub(crate) fn record_host_key(
    state_dir: &Path,
    channel_id: &[u8; 32],
    host_key_id: &[u8; 32],
    receipt_key: &[u8],
    keyset_hash: &[u8; 32],
) -> std::io::Result<()> {
    if host_key(state_dir, channel_id, host_key_id)?.is_some() {
        return Ok(());
    }
    let line = format!(
        "{} {} {}",
        hex::encode(host_key_id),
        hex::encode(receipt_key),
        hex::encode(keyset_hash)
    );
    append_line(state_dir, channel_id, "host_keys.txt", line.as_bytes()).map(drop)
}

/// The receipt key and keyset hash recorded for `host_key_id` on the channel, if any (a malformed line is
/// skipped).
pub(crate) fn host_key(
    state_dir: &Path,
    channel_id: &[u8; 32],
    host_key_id: &[u8; 32],
) -> std::io::Result<Option<(Vec<u8>, [u8; 32])>> {
    let path = channel_dir(state_dir, channel_id).join("host_keys.txt");
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let wanted = hex::encode(host_key_id);
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(id), Some(key), Some(keyset)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if id != wanted {
            continue;
        }
        let mut keyset_hash = [0u8; 32];
        if let (Ok(key), Ok(())) = (
            hex::decode(key),
            hex::decode_to_slice(keyset, &mut keyset_hash),
        ) {
            return Ok(Some((key, keyset_hash)));
        }
    }
    Ok(None)
}
