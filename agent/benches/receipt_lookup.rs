//! Reading receipts back from the receipt log, as `GET /v1/receipts/<channel>/<call_seq>` and the settlement task
//! do: (a) the whole log read and scanned for the record (what both did before the log kept an index, the
//! baseline), (b) `ReceiptLog::get` (the index, then one positioned read), (c) `ReceiptLog::range` of one receipt
//! batch (64 records) at the end of the log. Logs of 1,000, 10,000 and 100,000 records of 400-byte receipts, over
//! 250 channels.
//!
//! Run: `cargo bench -p dait-agent --bench receipt_lookup` (`DAIT_BENCH_STATE_DIR` picks the directory; the
//! default is a temporary directory). The file is in the page cache after it is written, as a busy agent's is.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use dait_agent::receipt_log::{ReceiptLog, RecordHeader, read_records};

const RECEIPT: usize = 400;
const CHANNELS: u64 = 250;

/// Median of `iters` timed runs of `f`, in microseconds (after one warm-up run).
fn time<F: FnMut()>(iters: usize, mut f: F) -> f64 {
    f();
    let mut v: Vec<Duration> = (0..iters)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e6
}

fn header(i: u64) -> RecordHeader {
    let mut channel_id = [0u8; 32];
    channel_id[..8].copy_from_slice(&(i % CHANNELS).to_be_bytes());
    RecordHeader {
        channel_id,
        call_seq: i / CHANNELS + 1,
        cumulative: u128::from(i),
        receipt_hash: [1; 32],
        host_key_id: [2; 32],
        tenant: [3; 20],
    }
}

/// A log of `n` records in `dir` (appended 1,000 at a time, so that they share syncs).
fn fill(rt: &tokio::runtime::Runtime, dir: &Path, n: u64) -> ReceiptLog {
    let (log, _) = ReceiptLog::open(dir).unwrap();
    rt.block_on(async {
        for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
            // One append per channel at a time: a channel's calls are logged in order.
            for wave in chunk.chunks(CHANNELS as usize) {
                let tasks: Vec<_> = wave
                    .iter()
                    .map(|&i| {
                        let log = log.clone();
                        tokio::spawn(async move { log.append(&header(i), &[7u8; RECEIPT]).await })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap().unwrap();
                }
            }
        }
    });
    log
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let base = std::env::var_os("DAIT_BENCH_STATE_DIR");
    println!(
        "receipt log read-back, median per lookup ({RECEIPT}-byte receipts, {CHANNELS} channels)"
    );
    println!(
        "{:>9}  {:>16}  {:>16}  {:>9}  {:>20}",
        "records", "(a) scan, us", "(b) get, us", "(a)/(b)", "(c) range of 64, us"
    );
    for n in [1_000u64, 10_000, 100_000] {
        let dir = match &base {
            Some(b) => tempfile::tempdir_in(b).unwrap(),
            None => tempfile::tempdir().unwrap(),
        };
        let log = fill(&rt, dir.path(), n);
        assert_eq!(log.record_count(), n);
        // The last record of the log: the scan reads everything before it.
        let want = header(n - 1);
        let iters = if n >= 100_000 { 15 } else { 101 };
        let scan = time(iters, || {
            let (records, _) = read_records(log.path()).unwrap();
            black_box(
                records
                    .into_iter()
                    .find(|r| {
                        r.header.channel_id == want.channel_id && r.header.call_seq == want.call_seq
                    })
                    .unwrap(),
            );
        });
        let get = time(1001, || {
            black_box(log.get(&want.channel_id, want.call_seq).unwrap().unwrap());
        });
        let range = time(1001, || {
            black_box(log.range(n - 64, 64).unwrap());
        });
        println!(
            "{n:>9}  {scan:>16.1}  {get:>16.2}  {:>9.0}  {range:>20.1}",
            scan / get
        );
    }
}
