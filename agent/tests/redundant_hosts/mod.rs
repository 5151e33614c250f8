//! Support for the redundant-mode test and bench: real `dait-host` agents that declare their engine
//! deterministic, the tenant's proxy over one or several of them, and a plain HTTP client for it.

// The test and the bench each use a part of it.
#![allow(dead_code)]
use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use dait_tenant::proxy::{self, ProxyHandle};
use dait_tenant::redundant::{Redundant, host_state_dir};
use dait_tenant::{DEFAULT_CALL_TIMEOUT, Session, SessionConfig, Wallet};
use dait_verifier::bundle::Policy;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};

use crate::common::{init_simulated, serve_command, spawn_listening};

/// A `dait-host serve --engine-deterministic` child process with the simulated TEE; killed on drop.
pub struct Host {
    pub url: String,
    /// Its simulated platform root (what the tenant's policy pins).
    pub root_pub: Vec<u8>,
    _dir: tempfile::TempDir,
    _child: tokio::process::Child,
    _stdout: tokio::io::BufReader<tokio::process::ChildStdout>,
}

impl Host {
    /// The tenant's session configuration for this host, its state under `state_dir`.
    pub fn config(&self, state_dir: &Path) -> SessionConfig {
        SessionConfig {
            host_url: self.url.clone(),
            policy: Policy::new()
                .dangerous_allow_simulated(&self.root_pub)
                .unwrap(),
            escrow_cap: u128::MAX / 4,
            state_dir: host_state_dir(state_dir, &self.url),
            call_timeout: DEFAULT_CALL_TIMEOUT,
        }
    }
}

/// Starts `dait-host` in front of the engine at `upstream` (`http://host:port`) with `model_id`.
pub async fn start_host(upstream: &str, model_id: &str) -> Host {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("host");
    init_simulated(&state);
    let root_pub = hex::decode(
        std::fs::read_to_string(state.join("sim-root.pub"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let weights = dir.path().join("weights.bin");
    std::fs::write(&weights, b"weights").unwrap();
    let mut cmd = serve_command(&state, upstream);
    cmd.args([
        "--model-id",
        model_id,
        "--price-in",
        "2",
        "--price-out",
        "3",
    ])
    .arg("--model-path")
    .arg(&weights)
    .arg("--engine-deterministic")
    .env("DAIT_LOG", "warn");
    let (child, addr, stdout) = spawn_listening(&mut cmd).await;
    Host {
        url: format!("https://{addr}"),
        root_pub,
        _dir: dir,
        _child: child,
        _stdout: stdout,
    }
}

/// The tenant's proxy in redundant mode over `hosts` (the first `n` that verify), state in `state_dir`.
pub async fn redundant_proxy(hosts: &[&Host], n: usize, state_dir: &Path) -> ProxyHandle {
    let configs = hosts
        .iter()
        .map(|h| (h.config(state_dir), Wallet::generate()))
        .collect();
    let redundant = Redundant::open(configs, n, state_dir.to_path_buf())
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    proxy::spawn_redundant(listener, redundant).await.unwrap()
}

/// The tenant's proxy over `host` alone, state in `state_dir`.
pub async fn single_proxy(host: &Host, state_dir: &Path) -> ProxyHandle {
    let session = Session::open(host.config(state_dir), Wallet::generate())
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    proxy::spawn(listener, session).unwrap()
}

/// One request to the proxy on a fresh connection: the status, headers and body.
pub async fn request(
    addr: SocketAddr,
    method: http::Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, http::HeaderMap, Vec<u8>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(bytes)))
        .unwrap();
    let (parts, body) = sender.send_request(req).await.unwrap().into_parts();
    let body = body.collect().await.unwrap().to_bytes().to_vec();
    (parts.status.as_u16(), parts.headers, body)
}
