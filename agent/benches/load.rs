//! Load generator: the agent's added latency and throughput against a direct call to the same
//! in-process null upstream, in one run; streaming overhead per chunk; the agent's RSS at idle.
//!
//! The agent is the real `dait-host` binary (simulated TEE, TLS, receipt log in a state directory
//! on disk, fsync per group commit). The null upstream and the tenants run in this process; the
//! tenants prepare each request (state signature, OHTTP encapsulation) before the clock starts
//! and open the response after it stops, so the times cover the exchange with the agent only.
//!
//! The throughput phase also reads the CPU time consumed by the agent process and by this process
//! (tenants, TLS client, null upstream) from `/proc/<pid>/task/*/schedstat`, so that the agent's CPU
//! cost per request, and the throughput it would reach with both cores to itself, are reported next
//! to the measured rate (which the two processes share the cores for).
//!
//! Run: `cargo bench -p dait-agent --features simulated-tee --bench load`; with
//! `DAIT_BENCH_MODE=prebuilt`, the throughput of first calls built before the window (see [`prebuilt`]).
//! Environment: `DAIT_BENCH_STATE_DIR` (where the receipt log lives; default a temp dir),
//! `DAIT_BENCH_SECS` (seconds per throughput phase, default 5; 10 in the pre-built mode),
//! `DAIT_BENCH_CONCURRENCY` (default 32), `DAIT_BENCH_REQUESTS` (pre-built mode: requests built, default 60000).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Conn, Tenant, host_info, init_simulated, rss_kib, serve_command, spawn_listening};
use dait_chain_client::WireMessage as _;
use dait_chain_client::{ChannelState, SignedReceipt, ciphertext_hash};
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::net::TcpListener;

const CHAT: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":2,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Paris is the capital of France."},"finish_reason":"stop"}],"usage":{"prompt_tokens":37,"completion_tokens":8,"total_tokens":45}}"#;
const STREAM_CHUNKS: usize = 200;
/// Name of the null upstream's threads in the pre-built mode (at most 15 bytes: the kernel's limit).
const UPSTREAM_THREAD: &str = "null-upstream";

type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

async fn null_upstream(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let stream = memchr_stream(&body);
    if !stream {
        return Ok(Response::new(
            Full::new(Bytes::from_static(CHAT.as_bytes())).boxed_unsync(),
        ));
    }
    // One HTTP chunk per server-sent event, as an engine emits them.
    let mut frames: Vec<Result<Frame<Bytes>, Infallible>> = (0..STREAM_CHUNKS)
        .map(|_| {
            Ok(Frame::data(Bytes::from_static(
                b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":2,\"choices\":[{\"index\":0,\"delta\":{\"content\":\" tok\"},\"finish_reason\":null}]}\n\n",
            )))
        })
        .collect();
    frames.push(Ok(Frame::data(Bytes::from(format!(
        "data: {{\"id\":\"c\",\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"length\"}}]}}\n\ndata: {{\"id\":\"c\",\"choices\":[],\"usage\":{{\"prompt_tokens\":37,\"completion_tokens\":{STREAM_CHUNKS},\"total_tokens\":{}}}}}\n\ndata: [DONE]\n\n",
        37 + STREAM_CHUNKS
    )))));
    let s = futures::stream::iter(frames);
    Ok(Response::builder()
        .header("content-type", "text/event-stream")
        .body(StreamBody::new(s).boxed_unsync())
        .unwrap())
}

fn memchr_stream(body: &[u8]) -> bool {
    body.windows(13).any(|w| w == b"\"stream\":true")
}

async fn start_upstream(on: &tokio::runtime::Handle) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    on.spawn(async move {
        let listener = TcpListener::from_std(listener).unwrap();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(
                        hyper_util::rt::TokioIo::new(tcp),
                        hyper::service::service_fn(null_upstream),
                    )
                    .await;
            });
        }
    });
    addr
}

/// CPU time (ns) consumed so far by all threads of process `pid`.
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e6
}

fn chat_request(stream: bool) -> Vec<u8> {
    format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"What is the capital of France?"}}],"max_tokens":{},"temperature":0,"stream":{stream}}}"#,
        if stream { STREAM_CHUNKS + 8 } else { 16 }
    )
    .into_bytes()
}

/// One direct request to the upstream; returns its latency.
async fn direct_once(conn: &mut Conn, stream: bool) -> Duration {
    let body = chat_request(stream);
    let t = Instant::now();
    let (status, _) = conn
        .send(
            "POST",
            "/v1/chat/completions",
            Some("application/json"),
            body,
        )
        .await
        .unwrap();
    let e = t.elapsed();
    assert_eq!(status, 200);
    e
}

/// POST an encapsulated request to the agent; returns how long the exchange took and the answer.
async fn timed_ohttp(conn: &mut Conn, content_type: &str, enc: Vec<u8>) -> (Duration, Bytes) {
    let start = Instant::now();
    let (status, resp) = conn
        .send("POST", "/v1/ohttp", Some(content_type), enc)
        .await
        .unwrap();
    let e = start.elapsed();
    assert_eq!(status, 200);
    (e, resp)
}

/// One request through the agent; the clock covers only the exchange. Advances the tenant's state.
async fn agent_once(
    t: &mut Tenant,
    state: &mut ChannelState,
    conn: &mut Conn,
    stream: bool,
) -> Duration {
    let body = chat_request(stream);
    let header = t.signed_state(state.clone()).to_header_value();
    let inner = Tenant::inner("/v1/chat/completions", &header, &body);
    let client = ohttp::ClientRequest::from_encoded_config(&t.key_config).unwrap();
    let (elapsed, pt) = if stream {
        use futures::io::{AsyncReadExt, AsyncWriteExt};
        let sink = common::SharedSink::default();
        let mut w = client.encapsulate_stream(sink.clone()).unwrap();
        w.write_all(&inner).await.unwrap();
        w.close().await.unwrap();
        let enc = sink.take();
        let (e, resp) = timed_ohttp(conn, "message/ohttp-chunked-req", enc).await;
        let mut opened = w.response(futures::io::Cursor::new(resp.to_vec())).unwrap();
        let mut pt = Vec::new();
        opened.read_to_end(&mut pt).await.unwrap();
        (e, pt)
    } else {
        let (enc, opener) = client.encapsulate(&inner).unwrap();
        let _ = ciphertext_hash(&enc);
        let (e, resp) = timed_ohttp(conn, "message/ohttp-req", enc).await;
        (e, opener.decapsulate(&resp).unwrap())
    };
    let msg =
        bhttp::Message::read_bhttp::<_, std::io::Cursor<&[u8]>>(&mut std::io::Cursor::new(&pt[..]))
            .unwrap();
    let field = if stream {
        msg.trailer().get(b"x-dait-receipt")
    } else {
        msg.header().get(b"x-dait-receipt")
    };
    let signed =
        SignedReceipt::from_header_value(std::str::from_utf8(field.expect("receipt")).unwrap())
            .unwrap();
    let r = &signed.receipt;
    assert_eq!(r.call_seq, state.turn + 1);
    state.turn = r.call_seq;
    state.cumulative = r.cumulative;
    state.last_receipt_hash = r.signing_digest(t.chain.domain());
    elapsed
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let prebuilt_mode = std::env::var("DAIT_BENCH_MODE").is_ok_and(|m| m == "prebuilt");
    // In the pre-built mode the null upstream has its own runtime, whose threads are named, so
    // that this process's CPU time splits into load generator and upstream.
    let upstream_rt = prebuilt_mode.then(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(UPSTREAM_THREAD)
            .enable_all()
            .build()
            .unwrap()
    });
    let upstream_handle = upstream_rt
        .as_ref()
        .map_or_else(|| rt.handle().clone(), |r| r.handle().clone());
    rt.block_on(run(upstream_handle, prebuilt_mode));
    drop(upstream_rt);
}

async fn run(upstream_on: tokio::runtime::Handle, prebuilt_mode: bool) {
    let secs = env_u64("DAIT_BENCH_SECS", if prebuilt_mode { 10 } else { 5 });
    let conc = env_u64("DAIT_BENCH_CONCURRENCY", 32) as usize;
    let upstream = start_upstream(&upstream_on).await;
    let tmp = tempfile::tempdir().unwrap();
    let state_dir = std::env::var("DAIT_BENCH_STATE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| tmp.path().join("state"));
    let _ = std::fs::remove_dir_all(&state_dir);
    init_simulated(&state_dir);
    let mut cmd = serve_command(&state_dir, &format!("http://{upstream}"));
    cmd.args(["--price-in", "1", "--price-out", "2"]).env(
        "DAIT_LOG",
        std::env::var("DAIT_BENCH_AGENT_LOG").unwrap_or_else(|_| "warn".into()),
    );
    let (mut child, agent, _) = spawn_listening(&mut cmd).await;
    let pid = child.id().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_rss = rss_kib(pid);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {} cores, load average before the run: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.trim()
    );
    println!("agent idle RSS: {:.1} MiB", idle_rss as f64 / 1024.0);

    if prebuilt_mode {
        let mut aconn = Conn::connect(agent, true).await.unwrap();
        let info = host_info(&mut aconn).await;
        drop(aconn);
        prebuilt::run(agent, pid, upstream, info, secs, conc).await;
        let _ = child.start_kill();
        let _ = child.wait().await;
        return;
    }

    // Latency at concurrency 1: direct and through the agent, interleaved in the same run.
    let mut dconn = Conn::connect(upstream, false).await.unwrap();
    let mut aconn = Conn::connect(agent, true).await.unwrap();
    let info = host_info(&mut aconn).await;
    let mut tenant = Tenant::new(&info, u128::MAX / 2, 0);
    let mut st = tenant.chain.state().clone();
    let (mut d, mut a) = (Vec::new(), Vec::new());
    for i in 0..3000 {
        let dd = direct_once(&mut dconn, false).await;
        let aa = agent_once(&mut tenant, &mut st, &mut aconn, false).await;
        if i >= 300 {
            d.push(dd);
            a.push(aa);
        }
    }
    let (d50, d99, a50, a99) = (
        pct(&mut d, 0.5),
        pct(&mut d, 0.99),
        pct(&mut a, 0.5),
        pct(&mut a, 0.99),
    );
    println!(
        "latency, concurrency 1, {} requests each (after 300 warm-up):",
        d.len()
    );
    println!("  direct to upstream   p50 {d50:>8.1} us   p99 {d99:>8.1} us");
    println!("  through the agent    p50 {a50:>8.1} us   p99 {a99:>8.1} us");
    println!(
        "  added by the agent   p50 {:>8.1} us   p99 {:>8.1} us",
        a50 - d50,
        a99 - d99
    );

    // Throughput: `conc` closed-loop clients for `secs` seconds each, direct then through the agent.
    let me = std::process::id();
    let (direct_rps, direct_cpu) = {
        let cpu0 = cpu_ns(me);
        let stop = Instant::now() + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for _ in 0..conc {
            tasks.push(tokio::spawn(async move {
                let mut c = Conn::connect(upstream, false).await.unwrap();
                let mut n = 0u64;
                while Instant::now() < stop {
                    direct_once(&mut c, false).await;
                    n += 1;
                }
                n
            }));
        }
        let t = Instant::now();
        let mut n = 0;
        for task in tasks {
            n += task.await.unwrap();
        }
        (
            n as f64 / t.elapsed().as_secs_f64(),
            (cpu_ns(me) - cpu0) as f64 / 1e3 / n as f64,
        )
    };
    let info = Arc::new(info);
    let (agent_rps, mut lat, agent_cpu, gen_cpu) = {
        let (a0, g0) = (cpu_ns(pid), cpu_ns(me));
        let stop = Instant::now() + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for i in 0..conc {
            let info = info.clone();
            tasks.push(tokio::spawn(async move {
                let mut t = Tenant::new(&info, u128::MAX / 2, (i + 1) as u8);
                let mut st = t.chain.state().clone();
                let mut c = Conn::connect(agent, true).await.unwrap();
                let mut lat = Vec::new();
                while Instant::now() < stop {
                    lat.push(agent_once(&mut t, &mut st, &mut c, false).await);
                }
                lat
            }));
        }
        let t = Instant::now();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        let n = all.len() as f64;
        (
            n / t.elapsed().as_secs_f64(),
            all,
            (cpu_ns(pid) - a0) as f64 / 1e3 / n,
            (cpu_ns(me) - g0) as f64 / 1e3 / n,
        )
    };
    println!(
        "throughput, {conc} closed-loop clients, {secs} s each (clients share the 2 cores with the agent):"
    );
    println!("  direct to upstream   {direct_rps:>8.0} req/s");
    println!(
        "  through the agent    {agent_rps:>8.0} req/s   (latency under load p50 {:.0} us, p99 {:.0} us)",
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99)
    );
    println!(
        "  CPU per request: agent {agent_cpu:.0} us, load generator {gen_cpu:.0} us (direct phase: {direct_cpu:.0} us)"
    );
    println!(
        "  CPU split: agent {:.0}% / load generator {:.0}%; agent alone on 2 cores: {:.0} req/s (2 s of CPU per s / agent CPU per request)",
        100.0 * agent_cpu / (agent_cpu + gen_cpu),
        100.0 * gen_cpu / (agent_cpu + gen_cpu),
        2e6 / agent_cpu
    );
    println!(
        "agent RSS after load: {:.1} MiB",
        rss_kib(pid) as f64 / 1024.0
    );

    // Streaming: STREAM_CHUNKS events per response, direct vs through the agent.
    let (mut ds, mut as_) = (Vec::new(), Vec::new());
    for i in 0..220 {
        let dd = direct_once(&mut dconn, true).await;
        let aa = agent_once(&mut tenant, &mut st, &mut aconn, true).await;
        if i >= 20 {
            ds.push(dd);
            as_.push(aa);
        }
    }
    let (d50, a50) = (pct(&mut ds, 0.5), pct(&mut as_, 0.5));
    println!(
        "streaming, {STREAM_CHUNKS} chunks per response, {} responses each:",
        ds.len()
    );
    println!("  direct p50 {d50:.0} us, through the agent p50 {a50:.0} us");
    println!(
        "  added per chunk: {:.2} us",
        (a50 - d50) / STREAM_CHUNKS as f64
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "agent RSS at idle after the run: {:.1} MiB",
        rss_kib(pid) as f64 / 1024.0
    );
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// `DAIT_BENCH_MODE=prebuilt`: the agent's throughput with the tenants' cryptography outside the
/// measured window.
///
/// A channel's first call (turn 0, cumulative 0, zero last-receipt hash) depends on no earlier
/// receipt, so the opening requests of `DAIT_BENCH_REQUESTS` distinct channels (each with its own
/// tenant key, turn-0 state signature and OHTTP encapsulation) are built before the window. In the
/// window, `conc` client tasks only send them over keep-alive TLS connections and read each
/// response to its end; each request is sent once. After the window a sample of the responses is
/// opened and its receipts checked as a tenant does (signature, binding to the request and the
/// response, channel state), which shows that the responses were real receipts. The first call
/// does the per-request work of any call (decapsulation, state signature recovery and checks,
/// upstream, receipt signing, durable log append, encapsulation) plus opening the channel's entry.
mod prebuilt {
    use super::*;
    use common::CallResult;
    use dait_chain_client::request_hash;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// One in this many requests keeps its tenant and response opener for the check after the window.
    const SAMPLE_EVERY: usize = 97;

    struct Sample {
        tenant: Tenant,
        opener: ohttp::ClientResponse,
        request_ct_hash: dait_chain_client::B256,
    }

    struct Built {
        enc: Vec<Vec<u8>>,
        samples: Vec<(usize, Sample)>,
    }

    /// Build requests `lo..hi` (every `SAMPLE_EVERY`-th keeps what opening its response needs).
    fn build(info: &common::HostInfo, lo: usize, hi: usize) -> Built {
        let body = chat_request(false);
        let mut out = Built {
            enc: Vec::with_capacity(hi - lo),
            samples: Vec::new(),
        };
        for i in lo..hi {
            let tenant = Tenant::new(info, u128::MAX / 2, 0);
            let state = tenant.chain.state().clone();
            assert_eq!(state.turn, 0);
            let header = tenant.signed_state(state).to_header_value();
            let inner = Tenant::inner("/v1/chat/completions", &header, &body);
            let client = ohttp::ClientRequest::from_encoded_config(&tenant.key_config).unwrap();
            let (enc, opener) = client.encapsulate(&inner).unwrap();
            if i % SAMPLE_EVERY == 0 {
                let request_ct_hash = ciphertext_hash(&enc);
                out.samples.push((
                    i,
                    Sample {
                        tenant,
                        opener,
                        request_ct_hash,
                    },
                ));
            }
            out.enc.push(enc);
        }
        out
    }

    /// CPU time (ns) of process `pid`: all threads, and the threads whose name starts with `prefix`.
    fn cpu_split_ns(pid: u32, prefix: &str) -> (u64, u64) {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return (0, 0);
        };
        let (mut all, mut named) = (0, 0);
        for t in tasks.filter_map(Result::ok) {
            let Some(ns) = std::fs::read_to_string(t.path().join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            else {
                continue;
            };
            all += ns;
            if std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix)) {
                named += ns;
            }
        }
        (all, named)
    }

    pub(super) async fn run(
        agent: SocketAddr,
        pid: u32,
        upstream: SocketAddr,
        info: common::HostInfo,
        secs: u64,
        conc: usize,
    ) {
        let n = env_u64("DAIT_BENCH_REQUESTS", 60_000) as usize;
        let me = std::process::id();

        // Direct to the null upstream, same clients and window length, in the same run.
        let (direct_rps, mut dlat, direct_gen, direct_up) = {
            let (c0, u0) = cpu_split_ns(me, UPSTREAM_THREAD);
            let stop = Instant::now() + Duration::from_secs(secs);
            let mut tasks = Vec::new();
            for _ in 0..conc {
                tasks.push(tokio::spawn(async move {
                    let mut c = Conn::connect(upstream, false).await.unwrap();
                    let mut lat = Vec::new();
                    while Instant::now() < stop {
                        lat.push(direct_once(&mut c, false).await);
                    }
                    lat
                }));
            }
            let t = Instant::now();
            let mut all = Vec::new();
            for task in tasks {
                all.extend(task.await.unwrap());
            }
            let el = t.elapsed().as_secs_f64();
            let (c1, u1) = cpu_split_ns(me, UPSTREAM_THREAD);
            let k = all.len() as f64;
            (
                k / el,
                all,
                ((c1 - c0) - (u1 - u0)) as f64 / 1e3 / k,
                (u1 - u0) as f64 / 1e3 / k,
            )
        };

        // Build the opening requests of `n` channels before the window, on both cores.
        let t = Instant::now();
        let info = Arc::new(info);
        let workers = std::thread::available_parallelism().map_or(2, |p| p.get());
        let built: Vec<Built> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..workers)
                .map(|w| {
                    let info = &info;
                    s.spawn(move || build(info, w * n / workers, (w + 1) * n / workers))
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let build_s = t.elapsed().as_secs_f64();
        let mut enc = Vec::with_capacity(n);
        let mut samples = std::collections::BTreeMap::new();
        for b in built {
            enc.extend(b.enc);
            samples.extend(b.samples);
        }
        let req_bytes = enc.first().map_or(0, Vec::len);
        println!(
            "pre-built: {n} first-turn requests of {n} distinct channels ({req_bytes} bytes each) in {build_s:.1} s ({:.0} us per request on {workers} threads)",
            build_s * 1e6 * workers as f64 / n as f64
        );

        // Deal the requests to the clients: request i goes to client i % conc.
        let mut queues: Vec<Vec<(usize, Vec<u8>)>> = (0..conc).map(|_| Vec::new()).collect();
        for (i, e) in enc.into_iter().enumerate().rev() {
            queues[i % conc].push((i, e));
        }
        let sampled: Arc<std::collections::BTreeSet<usize>> =
            Arc::new(samples.keys().copied().collect());
        let mut conns = Vec::with_capacity(conc);
        for _ in 0..conc {
            conns.push(Conn::connect(agent, true).await.unwrap());
        }
        let exhausted = Arc::new(AtomicBool::new(false));
        let rss0 = rss_kib(pid);
        let (a0, (g0, u0)) = (cpu_ns(pid), cpu_split_ns(me, UPSTREAM_THREAD));
        let start = Instant::now();
        let stop = start + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for (mut q, mut c) in queues.into_iter().zip(conns) {
            let sampled = sampled.clone();
            let exhausted = exhausted.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut kept = Vec::new();
                let mut bad = 0u64;
                while Instant::now() < stop {
                    let Some((i, e)) = q.pop() else {
                        exhausted.store(true, Ordering::Relaxed);
                        break;
                    };
                    let t = Instant::now();
                    let (status, resp) = c
                        .send("POST", "/v1/ohttp", Some("message/ohttp-req"), e)
                        .await
                        .unwrap();
                    lat.push(t.elapsed());
                    if status != 200 || resp.is_empty() {
                        bad += 1;
                    }
                    if sampled.contains(&i) {
                        kept.push((i, status, resp));
                    }
                }
                (lat, kept, bad, Instant::now())
            }));
        }
        let mut lat = Vec::new();
        let mut kept = Vec::new();
        let mut bad = 0;
        let mut end = start;
        for task in tasks {
            let (l, k, b, e) = task.await.unwrap();
            lat.extend(l);
            kept.extend(k);
            bad += b;
            end = end.max(e);
        }
        let window = (end - start).as_secs_f64();
        let (a1, (g1, u1)) = (cpu_ns(pid), cpu_split_ns(me, UPSTREAM_THREAD));
        let sent = lat.len();
        let agent_cpu = (a1 - a0) as f64 / 1e3 / sent as f64;
        let gen_cpu = ((g1 - g0) - (u1 - u0)) as f64 / 1e3 / sent as f64;
        let up_cpu = (u1 - u0) as f64 / 1e3 / sent as f64;
        let agent_rps = sent as f64 / window;

        // After the window: open the sampled responses and check their receipts as a tenant does.
        let body = chat_request(false);
        let mut checked = 0;
        for (i, status, resp) in kept {
            assert_eq!(status, 200, "request {i}");
            let mut s = samples.remove(&i).unwrap();
            let pt = s.opener.decapsulate(&resp).unwrap();
            let msg = bhttp::Message::read_bhttp::<_, std::io::Cursor<&[u8]>>(
                &mut std::io::Cursor::new(&pt[..]),
            )
            .unwrap();
            let receipt = msg.header().get(b"x-dait-receipt").map(|r| {
                SignedReceipt::from_header_value(std::str::from_utf8(r).unwrap()).unwrap()
            });
            let r = CallResult {
                status: msg.control().status().unwrap().code(),
                body: msg.content().to_vec(),
                receipt,
                request_ct_hash: s.request_ct_hash,
                request_hash: request_hash(&body),
                trailer_error: None,
            };
            assert_eq!(r.status, 200, "request {i}: inner status");
            s.tenant.accept(&r, false).unwrap();
            let rc = &r.receipt.as_ref().unwrap().receipt;
            assert_eq!((rc.call_seq, rc.tokens_in, rc.tokens_out), (1, 37, 8));
            checked += 1;
        }
        assert_eq!(bad, 0, "responses other than 200 in the window");
        assert!(checked > 0, "no sampled response to check");

        println!(
            "throughput, {conc} clients on keep-alive TLS connections, window {window:.2} s{}:",
            if exhausted.load(Ordering::Relaxed) {
                " (ended when the pre-built requests ran out)"
            } else {
                ""
            }
        );
        println!(
            "  direct to upstream   {direct_rps:>8.0} req/s   (latency p50 {:.0} us, p99 {:.0} us)",
            pct(&mut dlat, 0.5),
            pct(&mut dlat, 0.99)
        );
        println!(
            "  through the agent    {agent_rps:>8.0} req/s   (latency p50 {:.0} us, p99 {:.0} us), {sent} requests, all 200",
            pct(&mut lat, 0.5),
            pct(&mut lat, 0.99)
        );
        println!(
            "  ratio through the agent / direct: {:.3} of the direct rate",
            agent_rps / direct_rps
        );
        println!(
            "  CPU per request through the agent: agent {agent_cpu:.0} us, clients {gen_cpu:.0} us, null upstream {up_cpu:.0} us"
        );
        println!(
            "  CPU seconds in the window: agent {:.2} s, clients {:.2} s, null upstream {:.2} s (of {:.2} core-seconds)",
            (a1 - a0) as f64 / 1e9,
            ((g1 - g0) - (u1 - u0)) as f64 / 1e9,
            (u1 - u0) as f64 / 1e9,
            window * workers as f64
        );
        println!(
            "  CPU per request direct: clients {direct_gen:.1} us, null upstream {direct_up:.1} us"
        );
        println!(
            "  receipts checked after the window: {checked} of {sent} responses (every {SAMPLE_EVERY}th request), all valid first-call receipts"
        );
        println!(
            "agent RSS before / after the window: {:.1} / {:.1} MiB",
            rss0 as f64 / 1024.0,
            rss_kib(pid) as f64 / 1024.0
        );
    }
}
