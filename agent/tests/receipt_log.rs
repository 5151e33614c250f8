//! A damaged receipt log, seen from `dait-host serve`: it refuses to start, naming the byte offset,
//! until `--dangerous-truncate-receipt-log-at` names exactly that offset; then the damaged remainder
//! is moved aside, byte for byte, and the agent starts with the records before it. Regression for
//! issue 11 ("never silently erases committed records").
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::path::Path;
use std::process::Output;

use common::*;
use dait_agent::receipt_log::{
    LOG_FILE, MOVED_ASIDE_PREFIX, ReceiptLog, RecordHeader, read_records,
};

fn header(call_seq: u64) -> RecordHeader {
    RecordHeader {
        channel_id: [1; 32],
        call_seq,
        cumulative: u128::from(call_seq),
        receipt_hash: [2; 32],
        host_key_id: [3; 32],
        tenant: [4; 20],
    }
}

/// `dait-host serve` with `flags`, which must exit at once: its output.
async fn serve_fails(state: &Path, flags: &[String]) -> Output {
    let out = serve_command(state, "http://127.0.0.1:9")
        .args(flags)
        .env("DAIT_LOG", "error")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    out
}

/// `dait-host serve` with `flags` starts listening; then it is stopped.
async fn serve_starts(state: &Path, flags: &[String]) {
    let mut cmd = serve_command(state, "http://127.0.0.1:9");
    cmd.args(flags).env("DAIT_LOG", "error");
    let (mut child, _, _) = spawn_listening(&mut cmd).await;
    child.kill().await.unwrap();
}

#[tokio::test]
async fn damaged_log_stops_serve_until_the_dangerous_flag_moves_it_aside() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    init_simulated(&state);
    let path = state.join(LOG_FILE);

    // Three receipts of one channel; `at` is where the second one starts.
    let (log, _) = ReceiptLog::open(&state).unwrap();
    log.append(&header(1), b"first").await.unwrap();
    drop(log);
    let (_, at) = read_records(&path).unwrap();
    let (log, _) = ReceiptLog::open(&state).unwrap();
    log.append(&header(2), b"second").await.unwrap();
    log.append(&header(3), b"third").await.unwrap();
    drop(log);

    // One flipped bit in the second record's length field (u32be, first in the frame).
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[at as usize + 2] ^= 0x04;
    std::fs::write(&path, &bytes).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;

    // Refused, naming the offset and the flag; the log is untouched.
    let out = serve_fails(&state, &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("corrupt at byte offset {at}")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("--dangerous-truncate-receipt-log-at {at}")),
        "{stderr}"
    );
    // Any other offset is refused too.
    let wrong = [
        "--dangerous-truncate-receipt-log-at".into(),
        (at + 1).to_string(),
    ];
    let out = serve_fails(&state, &wrong).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("offset {at}")));
    assert_eq!(std::fs::read(&path).unwrap(), bytes);

    // The exact offset: the remainder is moved aside and the agent starts with the first record.
    let flag = ["--dangerous-truncate-receipt-log-at".into(), at.to_string()];
    serve_starts(&state, &flag).await;
    let aside = state.join(format!("{MOVED_ASIDE_PREFIX}{at}"));
    assert_eq!(std::fs::read(&aside).unwrap(), &bytes[at as usize..end]);
    let (records, next) = read_records(&path).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].header, header(1));
    assert_eq!(next, at);

    // The log is sound again: it starts without the flag, and the flag is now refused.
    serve_starts(&state, &[]).await;
    let out = serve_fails(&state, &flag).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("not damaged"));
}
