//! Soak and crash loop: the real `dait-host serve` (simulated TEE, TLS, receipt log on disk) under
//! load for minutes, killed with SIGKILL at a fixed period and restarted on the same state directory.
//!
//! Concurrent tenants, each on its own channel, call back to back, alternating plain and streamed
//! calls, and check every receipt as a tenant does (SPUR-IC). Every period the agent is killed under
//! load; once every tenant has seen its connection fail, the receipt log is read with the agent's own
//! replay reader ([`dait_agent::receipt_log::read_records`]) and checked:
//! - every receipt any tenant acknowledged, in any period so far, is in the log, byte for byte, with
//!   its receipt hash;
//! - per channel, `call_seq` runs from 1 without a gap, in log order;
//! - no channel holds more than one receipt its tenant never received (the call in flight at a kill).
//!
//! The agent then restarts on the same state directory (its own replay refuses a damaged or gapped
//! log), and each tenant re-attests (new OHTTP and receipt keys) and goes on with its channel. A call
//! in flight at the kill gave the tenant no receipt; what its next call must do follows from the log
//! (agent/README.md, "a receipt that was logged but whose response never reached the tenant"):
//! - the log's head for the channel is the tenant's turn (the call was not logged): the next receipt
//!   continues the channel with `call_seq` turn + 1;
//! - the head is turn + 1 (logged, the response lost): the next call is refused as `stale_state`. The
//!   tenant cannot rebuild that receipt, so it leaves the channel (on chain: a dispute or a close at
//!   its last counter-signed state) and opens a new one.
//!
//! The agent's RSS (`VmRSS`) is sampled every few seconds and at the end of each period, just before
//! the kill. The trend check compares the mean end-of-period RSS of the last third of the periods with
//! that of the first third: growth above the tolerance fails the run.
//!
//! Engine: the real engine at `DAIT_ENGINE_URL` when set (`just soak` passes the one that
//! `scripts/engine.sh start` started), else the test harness's in-process fake engine; the bench
//! prints which.
//!
//! Run: `just soak`, or `cargo bench -p dait-agent --features simulated-tee --bench soak`, with these
//! settings from the environment or as flags after `--` (a flag wins):
//! `DAIT_SOAK_SECS` / `--secs` (total run, default 600), `DAIT_SOAK_KILL_EVERY` / `--kill-every`
//! (seconds between kills, 30), `DAIT_SOAK_TENANTS` / `--tenants` (8), `DAIT_SOAK_MAX_TOKENS` /
//! `--max-tokens` (per call, 4), `DAIT_SOAK_SAMPLE_EVERY` / `--sample-every` (RSS sampling, 2 s),
//! `DAIT_SOAK_RSS_TOLERANCE` / `--rss-tolerance` (percent, 10), `DAIT_SOAK_CALL_TIMEOUT` /
//! `--call-timeout` (seconds, 120).
//!
//! Exit status: 0 when every check held, 1 on any violation (each printed as `VIOLATION: …`), 2 on a
//! usage error.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    CHAT, CallResult, Conn, EngineMode, HostInfo, Tenant, VLLM_LIKE, chat_body, host_info,
    init_simulated, rss_kib, serve_command, spawn_listening, start_engine,
};
use dait_chain_client::WireMessage as _;
use dait_chain_client::{B256, ReceiptError};
use tokio::process::Child;
use tokio::sync::{mpsc, watch};

/// One setting: flag name, environment variable, default.
const SETTINGS: [(&str, &str, u64); 7] = [
    ("secs", "DAIT_SOAK_SECS", 600),
    ("kill-every", "DAIT_SOAK_KILL_EVERY", 30),
    ("tenants", "DAIT_SOAK_TENANTS", 8),
    ("max-tokens", "DAIT_SOAK_MAX_TOKENS", 4),
    ("sample-every", "DAIT_SOAK_SAMPLE_EVERY", 2),
    ("rss-tolerance", "DAIT_SOAK_RSS_TOLERANCE", 10),
    ("call-timeout", "DAIT_SOAK_CALL_TIMEOUT", 120),
];

/// How long the agent has to die after SIGKILL, and the tenants to notice it.
const NOTICE_TIMEOUT: Duration = Duration::from_secs(60);

struct Settings {
    secs: u64,
    kill_every: u64,
    tenants: usize,
    max_tokens: u64,
    sample_every: u64,
    rss_tolerance: u64,
    call_timeout: Duration,
}

/// The settings from the environment, then the command line (`--name value` or `--name=value`;
/// `--bench`, which `cargo bench` passes, is ignored).
fn settings() -> Result<Settings, String> {
    let mut v: HashMap<&str, u64> = HashMap::new();
    for (flag, env, default) in SETTINGS {
        let value = match std::env::var(env) {
            Ok(s) if !s.is_empty() => s.parse().map_err(|_| format!("{env}={s}: not a number"))?,
            _ => default,
        };
        v.insert(flag, value);
    }
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--bench" {
            continue;
        }
        let Some(rest) = arg.strip_prefix("--") else {
            return Err(format!("unexpected argument {arg:?}"));
        };
        let (name, value) = match rest.split_once('=') {
            Some((n, val)) => (n.to_owned(), val.to_owned()),
            None => (
                rest.to_owned(),
                args.next().ok_or(format!("--{rest} needs a value"))?,
            ),
        };
        let Some((flag, _, _)) = SETTINGS.iter().find(|(f, _, _)| *f == name) else {
            return Err(format!("unknown flag --{name}"));
        };
        let n = value
            .parse()
            .map_err(|_| format!("--{name} {value}: not a number"))?;
        v.insert(flag, n);
    }
    if v["tenants"] == 0 || v["kill-every"] == 0 || v["sample-every"] == 0 {
        return Err("--tenants, --kill-every and --sample-every must be at least 1".into());
    }
    Ok(Settings {
        secs: v["secs"],
        kill_every: v["kill-every"],
        tenants: v["tenants"] as usize,
        max_tokens: v["max-tokens"],
        sample_every: v["sample-every"],
        rss_tolerance: v["rss-tolerance"],
        call_timeout: Duration::from_secs(v["call-timeout"]),
    })
}

fn main() {
    let s = settings().unwrap_or_else(|e| {
        eprintln!("soak: {e}");
        std::process::exit(2)
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let violations = rt.block_on(run(s));
    drop(rt);
    if violations > 0 {
        std::process::exit(1);
    }
}

/// One life of the agent, as the tenants see it.
struct Boot {
    /// 1 for the first start, + 1 per restart.
    n: u64,
    addr: SocketAddr,
    info: HostInfo,
    /// Each channel's last logged `call_seq`, read from the log before this start.
    heads: HashMap<[u8; 32], u64>,
}

/// What the tenants publish to the controller and to each other.
#[derive(Default)]
struct Shared {
    /// Every receipt a tenant acknowledged (checked and accepted).
    acks: Mutex<Vec<Ack>>,
    /// The last boot that was killed (0: none yet); set before the SIGKILL is sent.
    killed: AtomicU64,
    /// Requests and channel events by kind.
    counts: Mutex<BTreeMap<String, u64>>,
    violations: Mutex<Vec<String>>,
}

impl Shared {
    fn count(&self, what: impl Into<String>) {
        *self.counts.lock().unwrap().entry(what.into()).or_default() += 1;
    }

    fn violation(&self, what: String) {
        eprintln!("VIOLATION: {what}");
        self.violations.lock().unwrap().push(what);
    }
}

/// A receipt a tenant acknowledged: its channel, `call_seq`, receipt hash and the encoded
/// `SignedReceipt` it received, and the boot that issued it.
struct Ack {
    channel: [u8; 32],
    call_seq: u64,
    hash: B256,
    bytes: Vec<u8>,
    boot: u64,
}

/// A tenant's channel; it belongs to the operator account, whichever boot serves it.
struct Channel {
    t: Tenant,
    /// What the first call after a restart must do.
    expect: Expect,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Nothing particular (no restart since the last answer).
    Any,
    /// The log's head is the tenant's turn: a receipt with `call_seq` turn + 1.
    Continue,
    /// The log holds one receipt the tenant never received: `stale_state`.
    Stale,
}

impl Channel {
    fn open(boot: &Boot, salt: u8) -> Self {
        Self {
            t: Tenant::new(&boot.info, u128::MAX / 2, salt),
            expect: Expect::Any,
        }
    }

    fn id(&self) -> [u8; 32] {
        self.t.chain.state().channel_id.0
    }

    /// The SPUR-IC checks of a receipt issued by `boot`, and the channel advanced. After a restart the
    /// agent signs with (and names) the new boot's receipt key; the channel belongs to the operator
    /// account, so the tenant continues it with the boot's verified key (PROTOCOL.md §4).
    fn accept(
        &mut self,
        r: &CallResult,
        streamed: bool,
        boot: &Boot,
    ) -> Result<B256, ReceiptError> {
        let info = &boot.info;
        self.t
            .chain
            .resume_with_key(&info.keyset.host_account, info.host_key, info.keyset_hash)?;
        self.t.accept(r, streamed)
    }
}

/// How a call ended, from the tenant's side.
enum Answer {
    /// An encrypted answer with a receipt.
    Receipt(Box<CallResult>),
    /// An encrypted error answer (its PROTOCOL.md §6 code), or a stream that ended with `x-dait-error`.
    Refused(String),
    /// An unencrypted answer other than 200 (a limit's 503, …).
    Outer(u16),
    /// The connection failed (refused, reset, cut mid-answer).
    Lost,
    /// An answer that could not be opened.
    Broken(String),
}

async fn call(t: &Tenant, conn: &mut Conn, body: &[u8], streamed: bool) -> Answer {
    let r = if streamed {
        match t.stream_with(conn, CHAT, &t.state_header(), body, 0).await {
            Ok(r) => r,
            Err(e) if e.starts_with("send: ") => return Answer::Lost,
            Err(e) => {
                return match e.strip_prefix("outer status ").and_then(|s| s.parse().ok()) {
                    Some(status) => Answer::Outer(status),
                    None => Answer::Broken(e),
                };
            }
        }
    } else {
        match t.try_call(conn, CHAT, body).await {
            Ok(r) => r,
            Err((0, _)) => return Answer::Lost,
            Err((status, _)) => return Answer::Outer(status),
        }
    };
    if let Some(e) = &r.trailer_error {
        return Answer::Refused(format!("stream error {}", String::from_utf8_lossy(e)));
    }
    match (r.status, &r.receipt) {
        (200, Some(_)) => Answer::Receipt(Box::new(r)),
        (200, None) => Answer::Broken("an answer without a receipt".into()),
        _ => Answer::Refused(r.error_code()),
    }
}

/// One tenant: calls back to back on its channel until the controller publishes no further boot.
async fn tenant(
    i: usize,
    s: Arc<Settings>,
    shared: Arc<Shared>,
    mut boots: watch::Receiver<Option<Arc<Boot>>>,
    parked: mpsc::UnboundedSender<(usize, u64)>,
) {
    let salt = i as u8;
    let Some(mut boot) = boots.borrow_and_update().clone() else {
        return;
    };
    let mut ch = Channel::open(&boot, salt);
    shared.count("channels opened");
    let mut conn: Option<Conn> = None;
    let mut calls = 0u64;
    loop {
        let lost = 'call: {
            if conn.is_none() {
                let connect = Conn::connect(boot.addr, true);
                match tokio::time::timeout(Duration::from_secs(10), connect).await {
                    Ok(Ok(c)) => conn = Some(c),
                    _ => break 'call true,
                }
            }
            let c = conn.as_mut().expect("connected above");
            calls += 1;
            let streamed = calls.is_multiple_of(2);
            let body = chat_body(
                &format!("tenant {i} call {calls}: say hello"),
                s.max_tokens,
                streamed,
            );
            let answer =
                match tokio::time::timeout(s.call_timeout, call(&ch.t, c, &body, streamed)).await {
                    Ok(a) => a,
                    Err(_) => {
                        // The call may still be logged: leave the channel.
                        shared.count("failed: call timeout (channel left)");
                        conn = None;
                        ch = Channel::open(&boot, salt);
                        shared.count("channels opened");
                        break 'call false;
                    }
                };
            let killed = shared.killed.load(Ordering::SeqCst) >= boot.n;
            match answer {
                Answer::Receipt(r) => {
                    if ch.expect == Expect::Stale {
                        shared.violation(format!(
                            "tenant {i}: a receipt after restart {} although the log held one it never received",
                            boot.n - 1
                        ));
                    }
                    let turn = ch.t.chain.state().turn;
                    let signed = r.receipt.clone().expect("receipt");
                    match ch.accept(&r, streamed, &boot) {
                        Ok(hash) => {
                            if ch.expect == Expect::Continue {
                                shared.count("channels continued after a restart");
                            }
                            ch.expect = Expect::Any;
                            shared.count(if streamed {
                                "ok: streamed"
                            } else {
                                "ok: plain"
                            });
                            shared.acks.lock().unwrap().push(Ack {
                                channel: ch.id(),
                                call_seq: signed.receipt.call_seq,
                                hash,
                                bytes: signed.encode(),
                                boot: boot.n,
                            });
                        }
                        Err(e) => {
                            shared.violation(format!(
                                "tenant {i}: receipt rejected at turn {turn} (call_seq {}): {e}",
                                signed.receipt.call_seq
                            ));
                            ch = Channel::open(&boot, salt);
                            shared.count("channels opened");
                        }
                    }
                }
                Answer::Refused(code) if code == "stale_state" && ch.expect == Expect::Stale => {
                    shared.count("refused: stale_state after a restart (logged, never received)");
                    ch = Channel::open(&boot, salt);
                    shared.count("channels opened");
                }
                Answer::Refused(code) if code == "stale_state" => {
                    shared.violation(format!(
                        "tenant {i}: stale_state at turn {} on boot {} with nothing logged ahead of it",
                        ch.t.chain.state().turn,
                        boot.n
                    ));
                    ch = Channel::open(&boot, salt);
                    shared.count("channels opened");
                }
                Answer::Refused(code) => shared.count(format!("refused: {code}")),
                Answer::Outer(status) => {
                    shared.count(format!("failed: HTTP {status}"));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Answer::Lost => break 'call true,
                Answer::Broken(_) if killed => break 'call true,
                Answer::Broken(e) => {
                    shared.violation(format!("tenant {i}: an answer that does not open: {e}"));
                    conn = None;
                    ch = Channel::open(&boot, salt);
                    shared.count("channels opened");
                }
            }
            false
        };
        if !lost {
            continue;
        }
        conn = None;
        if shared.killed.load(Ordering::SeqCst) < boot.n {
            // Not a kill: the call may still have been logged, so leave the channel.
            shared.count("failed: connection, agent running (channel left)");
            ch = Channel::open(&boot, salt);
            shared.count("channels opened");
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        // The agent was killed: report, and wait for the next boot (or the end).
        shared.count("failed: connection, agent killed");
        let _ = parked.send((i, boot.n));
        let next = loop {
            let changed = tokio::time::timeout(NOTICE_TIMEOUT * 5, boots.changed()).await;
            if !matches!(changed, Ok(Ok(()))) {
                shared.violation(format!("tenant {i}: no boot after boot {}", boot.n));
                return;
            }
            match boots.borrow_and_update().clone() {
                None => return,
                Some(b) if b.n > boot.n => break b,
                Some(_) => {}
            }
        };
        boot = next;
        ch.t.key_config = boot.info.keyset.ohttp_key_config.clone();
        let turn = ch.t.chain.state().turn;
        let head = boot.heads.get(&ch.id()).copied().unwrap_or(0);
        ch.expect = if head == turn {
            Expect::Continue
        } else if head == turn + 1 {
            Expect::Stale
        } else {
            shared.violation(format!(
                "tenant {i}: log head {head} for a channel at turn {turn} before boot {}",
                boot.n
            ));
            ch = Channel::open(&boot, salt);
            shared.count("channels opened");
            Expect::Any
        };
    }
}

/// What one check of the log found.
struct LogCheck {
    records: usize,
    heads: HashMap<[u8; 32], u64>,
    /// Records no tenant acknowledged.
    unacknowledged: usize,
}

/// Reads the log with the agent's replay reader and checks it against every acknowledged receipt.
fn check_log(log: &Path, acks: &[Ack], violation: &mut impl FnMut(String)) -> LogCheck {
    let (records, _) = match dait_agent::receipt_log::read_records(log) {
        Ok(r) => r,
        Err(e) => {
            violation(format!("the receipt log does not replay: {e:#}"));
            return LogCheck {
                records: 0,
                heads: HashMap::new(),
                unacknowledged: 0,
            };
        }
    };
    let mut heads: HashMap<[u8; 32], u64> = HashMap::new();
    for (at, r) in records.iter().enumerate() {
        let h = &r.header;
        let prev = heads.insert(h.channel_id, h.call_seq).unwrap_or(0);
        if h.call_seq != prev + 1 {
            violation(format!(
                "record {at}: call_seq {} after {prev} on channel {}",
                h.call_seq,
                hex::encode(&h.channel_id[..8])
            ));
        }
    }
    let logged: HashMap<([u8; 32], u64), &dait_agent::receipt_log::Record> = records
        .iter()
        .map(|r| ((r.header.channel_id, r.header.call_seq), r))
        .collect();
    let mut acked: HashMap<[u8; 32], u64> = HashMap::new();
    for a in acks {
        let head = acked.entry(a.channel).or_default();
        *head = (*head).max(a.call_seq);
        match logged.get(&(a.channel, a.call_seq)) {
            None => violation(format!(
                "acknowledged receipt missing: channel {} call_seq {} (boot {})",
                hex::encode(&a.channel[..8]),
                a.call_seq,
                a.boot
            )),
            Some(r) if r.signed_receipt != a.bytes || r.header.receipt_hash != a.hash.0 => {
                violation(format!(
                    "acknowledged receipt differs in the log: channel {} call_seq {}",
                    hex::encode(&a.channel[..8]),
                    a.call_seq
                ))
            }
            Some(_) => {}
        }
    }
    for (channel, head) in &heads {
        let acked = acked.get(channel).copied().unwrap_or(0);
        if *head > acked + 1 {
            violation(format!(
                "channel {}: {} receipts logged beyond the last acknowledged ({acked})",
                hex::encode(&channel[..8]),
                head - acked
            ));
        }
    }
    LogCheck {
        unacknowledged: records.len().saturating_sub(acks.len()),
        records: records.len(),
        heads,
    }
}

/// One period of the run: one boot of the agent, from its start to its kill.
struct Period {
    boot: u64,
    secs: f64,
    restart_secs: f64,
    rss_start: u64,
    rss_max: u64,
    rss_end: u64,
    acks: usize,
}

/// The agent started on `state` and what the tenants need of it.
async fn start_agent(
    state: &Path,
    upstream: &str,
    n: u64,
    heads: HashMap<[u8; 32], u64>,
) -> (Child, Boot) {
    let mut cmd = serve_command(state, upstream);
    cmd.args(["--price-in", "1", "--price-out", "2"])
        .env("DAIT_LOG", "warn");
    let (child, addr, _) = spawn_listening(&mut cmd).await;
    let mut conn = Conn::connect(addr, true).await.unwrap();
    let info = host_info(&mut conn).await;
    (
        child,
        Boot {
            n,
            addr,
            info,
            heads,
        },
    )
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Runs the soak; returns the number of violations.
async fn run(s: Settings) -> usize {
    let s = Arc::new(s);
    let (upstream, engine) = match std::env::var("DAIT_ENGINE_URL") {
        Ok(url) if !url.is_empty() => {
            let url = url.trim_end_matches('/').to_owned();
            (
                url.clone(),
                format!("the real engine at {url} (DAIT_ENGINE_URL)"),
            )
        }
        _ => {
            let (addr, _) = start_engine(EngineMode {
                tokens: 3,
                ..VLLM_LIKE
            })
            .await;
            (
                format!("http://{addr}"),
                "the harness's in-process fake engine (DAIT_ENGINE_URL unset)".to_owned(),
            )
        }
    };
    println!("soak: engine: {engine}");
    println!(
        "soak: {} s, kill -9 every {} s, {} tenants (plain and streamed calls alternate), max_tokens {}, RSS sampled every {} s, tolerance {}%",
        s.secs, s.kill_every, s.tenants, s.max_tokens, s.sample_every, s.rss_tolerance
    );
    println!(
        "soak: machine: {} cores, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );

    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    init_simulated(&state);
    let log = state.join(dait_agent::receipt_log::LOG_FILE);

    let shared = Arc::new(Shared::default());
    let t0 = Instant::now();
    let (mut child, first) = start_agent(&state, &upstream, 1, HashMap::new()).await;
    let (boots_tx, boots_rx) = watch::channel(Some(Arc::new(first)));
    let (parked_tx, mut parked_rx) = mpsc::unbounded_channel();
    let mut tenants = Vec::new();
    for i in 0..s.tenants {
        tenants.push(tokio::spawn(tenant(
            i,
            s.clone(),
            shared.clone(),
            boots_rx.clone(),
            parked_tx.clone(),
        )));
    }
    drop(parked_tx);

    // The RSS sampler: (seconds since the start, boot, KiB) of the live agent.
    let pid = Arc::new(AtomicU32::new(0));
    let boot_now = Arc::new(AtomicU64::new(1));
    let samples: Arc<Mutex<Vec<(f64, u64, u64)>>> = Arc::default();
    let sampler = {
        let (pid, boot_now, samples) = (pid.clone(), boot_now.clone(), samples.clone());
        let every = Duration::from_secs(s.sample_every);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let p = pid.load(Ordering::SeqCst);
                let kib = if p == 0 { 0 } else { rss_kib(p) };
                if kib > 0 {
                    let n = boot_now.load(Ordering::SeqCst);
                    samples
                        .lock()
                        .unwrap()
                        .push((t0.elapsed().as_secs_f64(), n, kib));
                }
            }
        })
    };

    let mut periods: Vec<Period> = Vec::new();
    let mut checks = 0usize;
    let mut restart_secs = 0.0;
    let mut n = 1u64;
    let last = loop {
        let p = child.id().unwrap();
        pid.store(p, Ordering::SeqCst);
        boot_now.store(n, Ordering::SeqCst);
        let started = Instant::now();
        let rss_start = rss_kib(p);
        tokio::time::sleep_until((started + Duration::from_secs(s.kill_every)).into()).await;
        let rss_end = rss_kib(p);

        // kill -9 under load; then wait until every tenant has seen it.
        shared.killed.store(n, Ordering::SeqCst);
        pid.store(0, Ordering::SeqCst);
        child.start_kill().unwrap();
        let status = tokio::time::timeout(NOTICE_TIMEOUT, child.wait())
            .await
            .expect("the agent did not die after SIGKILL")
            .unwrap();
        assert!(!status.success(), "the agent exited by itself: {status}");
        let secs = started.elapsed().as_secs_f64();
        let mut noticed = HashSet::new();
        let deadline = tokio::time::Instant::now() + NOTICE_TIMEOUT;
        while noticed.len() < s.tenants {
            match tokio::time::timeout_at(deadline, parked_rx.recv()).await {
                Ok(Some((i, b))) if b == n => {
                    noticed.insert(i);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    shared.violation(format!(
                        "only {} of {} tenants saw kill {n} within {NOTICE_TIMEOUT:?}",
                        noticed.len(),
                        s.tenants
                    ));
                    break;
                }
            }
        }

        // The log against every receipt acknowledged so far.
        let (check, acks_now, acks_all, problems) = {
            let acks = shared.acks.lock().unwrap();
            let mut found = Vec::new();
            let check = check_log(&log, &acks, &mut |v| found.push(v));
            let problems = found.len();
            for v in found {
                shared.violation(format!("after kill {n}: {v}"));
            }
            let now = acks.iter().filter(|a| a.boot == n).count();
            checks += acks.len();
            (check, now, acks.len(), problems)
        };
        if acks_now == 0 {
            shared.violation(format!("no receipt acknowledged during boot {n}"));
        }
        let rss_max = samples
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, b, _)| *b == n)
            .map(|(_, _, k)| *k)
            .chain([rss_start, rss_end])
            .max()
            .unwrap_or(0);
        let period = Period {
            boot: n,
            secs,
            restart_secs,
            rss_start,
            rss_max,
            rss_end,
            acks: acks_now,
        };
        println!(
            "boot {n:>3}: {secs:5.1} s, {acks_now:>6} receipts acknowledged, RSS start {:.1} / max {:.1} / end {:.1} MiB; after kill -9: log {} records, {acks_all} acknowledged receipts checked, {problems} problems, {} unacknowledged",
            mib(rss_start),
            mib(rss_max),
            mib(rss_end),
            check.records,
            check.unacknowledged,
        );
        periods.push(period);
        if t0.elapsed() >= Duration::from_secs(s.secs) {
            break check;
        }

        // Restart on the same state directory.
        n += 1;
        let r0 = Instant::now();
        let (c, boot) = start_agent(&state, &upstream, n, check.heads).await;
        restart_secs = r0.elapsed().as_secs_f64();
        child = c;
        boots_tx.send_replace(Some(Arc::new(boot)));
    };
    let elapsed = t0.elapsed().as_secs_f64();
    boots_tx.send_replace(None);
    for t in tenants {
        if tokio::time::timeout(NOTICE_TIMEOUT, t).await.is_err() {
            shared.violation("a tenant did not stop".into());
        }
    }
    sampler.abort();

    // RSS trend: the last third of the periods against the first third (end-of-period RSS).
    let k = periods.len() / 3;
    let trend = if k == 0 {
        println!(
            "RSS trend: not checked: {} periods, at least 3 are needed",
            periods.len()
        );
        None
    } else {
        let mean = |p: &[Period]| p.iter().map(|p| p.rss_end as f64).sum::<f64>() / p.len() as f64;
        let first = mean(&periods[..k]);
        let last = mean(&periods[periods.len() - k..]);
        Some((first, last, (last - first) / first * 100.0))
    };
    if let Some((first, last, growth)) = trend
        && growth > s.rss_tolerance as f64
    {
        shared.violation(format!(
            "RSS grew {growth:.1}% (end of period, mean of the first {k} periods {:.1} MiB, of the last {k} {:.1} MiB), tolerance {}%",
            first / 1024.0,
            last / 1024.0,
            s.rss_tolerance
        ));
    }

    // Summary.
    let counts = shared.counts.lock().unwrap().clone();
    let acks = shared.acks.lock().unwrap();
    let ok: u64 = counts
        .iter()
        .filter(|(k, _)| k.starts_with("ok: "))
        .map(|(_, v)| v)
        .sum();
    let failed: u64 = counts
        .iter()
        .filter(|(k, _)| k.starts_with("failed: ") || k.starts_with("refused: "))
        .map(|(_, v)| v)
        .sum();
    let restarts = periods.len().saturating_sub(1);
    println!();
    println!("== soak summary");
    println!("engine: {engine}");
    println!(
        "duration {elapsed:.1} s, {} tenants, {} kill -9 ({restarts} restarts), every {} s",
        s.tenants,
        periods.len(),
        s.kill_every
    );
    println!("requests: {ok} ok, {failed} failed or refused");
    for (what, v) in &counts {
        println!("  {what:<64} {v:>8}");
    }
    println!(
        "receipts: {} acknowledged, each checked against the log after every later kill ({checks} checks in all); log {} records, {} never acknowledged (in flight at a kill)",
        acks.len(),
        last.records,
        last.unacknowledged
    );
    println!(
        "throughput: {:.1} acknowledged receipts per second over the run (2 shared cores: indicative)",
        acks.len() as f64 / elapsed
    );
    println!(
        "restart (kill to serving, log replay included): mean {:.2} s, max {:.2} s",
        periods.iter().skip(1).map(|p| p.restart_secs).sum::<f64>() / restarts.max(1) as f64,
        periods.iter().map(|p| p.restart_secs).fold(0.0, f64::max)
    );
    println!("RSS per boot (MiB):");
    println!("  boot   secs  receipts   start     max     end");
    for p in &periods {
        println!(
            "  {:>4} {:>6.1} {:>9} {:>7.1} {:>7.1} {:>7.1}",
            p.boot,
            p.secs,
            p.acks,
            mib(p.rss_start),
            mib(p.rss_max),
            mib(p.rss_end)
        );
    }
    if let Some((first, last, growth)) = trend {
        println!(
            "RSS trend: end-of-period mean of the first {k} boots {:.1} MiB, of the last {k} {:.1} MiB: {growth:+.1}% (tolerance {}%)",
            first / 1024.0,
            last / 1024.0,
            s.rss_tolerance
        );
    }
    let violations = shared.violations.lock().unwrap();
    if violations.is_empty() {
        println!("result: PASS (no violation)");
    } else {
        println!("result: FAIL, {} violations:", violations.len());
        for v in violations.iter().take(20) {
            println!("  {v}");
        }
    }
    violations.len()
}
