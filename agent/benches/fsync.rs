//! Durability latency of the receipt log's disk: one ~400-byte record written and `fdatasync`ed per
//! commit, with the file (a) growing at its end, (b) extended with `set_len` (sparse, blocks not yet
//! allocated), (c) preallocated by writing zeros and syncing once (what `ReceiptLog` does), and
//! (d) `ReceiptLog::append` itself at concurrency 1.
//!
//! Run: `cargo bench -p dait-agent --bench fsync` (`DAIT_BENCH_STATE_DIR` picks the directory; the
//! default is a temporary directory, i.e. the disk under the system temp dir).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use dait_agent::receipt_log::{ReceiptLog, RecordHeader};

const RECORD: usize = 400;
const N: usize = 2000;

fn report(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let us = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6;
    println!(
        "{name:<44} p50 {:>8.0} us   p90 {:>8.0} us   p99 {:>8.0} us   max {:>8.0} us   ({} commits)",
        us(0.5),
        us(0.9),
        us(0.99),
        us(1.0),
        v.len()
    );
}

fn open(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
}

fn commits(file: &File) -> Vec<Duration> {
    let rec = [0x5au8; RECORD];
    (0..N)
        .map(|i| {
            let t = Instant::now();
            file.write_all_at(&rec, (i * RECORD) as u64).unwrap();
            file.sync_data().unwrap();
            t.elapsed()
        })
        .collect()
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::env::var("DAIT_BENCH_STATE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir).unwrap();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average before the run: {}", load.trim());

    let path = dir.join("fsync-bench.dat");
    let f = open(&path);
    report("(a) append at end + fdatasync", commits(&f));

    let f = open(&path);
    f.set_len((N * RECORD) as u64).unwrap();
    f.sync_all().unwrap();
    report("(b) set_len (sparse) + overwrite + fdatasync", commits(&f));

    let f = open(&path);
    let mut w = &f;
    w.write_all(&vec![0u8; N * RECORD]).unwrap();
    f.sync_all().unwrap();
    report("(c) zero-filled + overwrite + fdatasync", commits(&f));
    drop(f);
    std::fs::remove_file(&path).unwrap();

    let log_dir = dir.join("fsync-bench-log");
    let _ = std::fs::remove_dir_all(&log_dir);
    std::fs::create_dir_all(&log_dir).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let v = rt.block_on(async {
        let (log, _) = ReceiptLog::open(&log_dir).unwrap();
        let body = vec![0x5au8; RECORD - 152];
        let mut v = Vec::with_capacity(N);
        for seq in 1..=N as u64 {
            let h = RecordHeader {
                channel_id: [1; 32],
                call_seq: seq,
                cumulative: u128::from(seq),
                receipt_hash: [2; 32],
                host_key_id: [3; 32],
                tenant: [4; 20],
            };
            let t = Instant::now();
            log.append(&h, &body).await.unwrap();
            v.push(t.elapsed());
        }
        v
    });
    report("(d) ReceiptLog::append (preallocated)", v);
    std::fs::remove_dir_all(&log_dir).unwrap();
}
