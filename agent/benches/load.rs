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
//! Run: `cargo bench -p dait-agent --features simulated-tee --bench load`
//! Environment: `DAIT_BENCH_STATE_DIR` (where the receipt log lives; default a temp dir),
//! `DAIT_BENCH_SECS` (seconds per throughput phase, default 5), `DAIT_BENCH_CONCURRENCY` (default 32).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Conn, Tenant, host_info};
use dait_chain_client::{ChannelState, SignedReceipt, ciphertext_hash};
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;

const CHAT: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":2,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Paris is the capital of France."},"finish_reason":"stop"}],"usage":{"prompt_tokens":37,"completion_tokens":8,"total_tokens":45}}"#;
const STREAM_CHUNKS: usize = 200;

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

async fn start_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
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

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
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
        let start = Instant::now();
        let (status, resp) = conn
            .send("POST", "/v1/ohttp", Some("message/ohttp-chunked-req"), enc)
            .await
            .unwrap();
        let e = start.elapsed();
        assert_eq!(status, 200);
        let mut opened = w.response(futures::io::Cursor::new(resp.to_vec())).unwrap();
        let mut pt = Vec::new();
        opened.read_to_end(&mut pt).await.unwrap();
        (e, pt)
    } else {
        let (enc, opener) = client.encapsulate(&inner).unwrap();
        let _ = ciphertext_hash(&enc);
        let start = Instant::now();
        let (status, resp) = conn
            .send("POST", "/v1/ohttp", Some("message/ohttp-req"), enc)
            .await
            .unwrap();
        let e = start.elapsed();
        assert_eq!(status, 200);
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
    rt.block_on(run());
}

async fn run() {
    let secs = env_u64("DAIT_BENCH_SECS", 5);
    let conc = env_u64("DAIT_BENCH_CONCURRENCY", 32) as usize;
    let upstream = start_upstream().await;
    let tmp = tempfile::tempdir().unwrap();
    let state_dir = std::env::var("DAIT_BENCH_STATE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| tmp.path().join("state"));
    let _ = std::fs::remove_dir_all(&state_dir);
    let bin = env!("CARGO_BIN_EXE_dait-host");
    let ok = std::process::Command::new(bin)
        .args(["init", "--tee", "simulated", "--state-dir"])
        .arg(&state_dir)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    let mut child = tokio::process::Command::new(bin)
        .args([
            "serve",
            "--tee",
            "simulated",
            "--listen",
            "127.0.0.1:0",
            "--price-in",
            "1",
            "--price-out",
            "2",
        ])
        .arg("--state-dir")
        .arg(&state_dir)
        .arg("--upstream")
        .arg(format!("http://{upstream}"))
        .env(
            "DAIT_LOG",
            std::env::var("DAIT_BENCH_AGENT_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let line = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .next_line()
        .await
        .unwrap()
        .unwrap();
    let agent: SocketAddr = line
        .strip_prefix("listening https://")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_rss = rss_kib(pid);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {} cores, load average before the run: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.trim()
    );
    println!("agent idle RSS: {:.1} MiB", idle_rss as f64 / 1024.0);

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
