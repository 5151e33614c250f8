//! The agent under test: its router served in this process, or the real `dait-host` binary as a
//! child process.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStdout};

use super::{Conn, EngineMode, HostInfo, host_info, start_engine};

/// The `dait-host` binary Cargo built for this test or bench.
pub const BIN: &str = env!("CARGO_BIN_EXE_dait-host");

/// The agent's router served in-process (simulated TEE), with its state dir.
pub struct Agent {
    pub addr: SocketAddr,
    pub app: Arc<dait_agent::http::App>,
    _dir: tempfile::TempDir,
}

/// The validated `dait-host serve` configuration for `flags` after `--tee simulated --state-dir` a
/// fresh temporary directory (returned: it must outlive the agent), the simulated TEE initialised
/// there.
pub fn simulated_config(flags: &[&str]) -> (dait_agent::config::Config, tempfile::TempDir) {
    use clap::Parser as _;
    use dait_agent::config::{Cli, Command};
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    let mut args = vec![
        "dait-host",
        "serve",
        "--tee",
        "simulated",
        "--state-dir",
        state,
    ];
    args.extend_from_slice(flags);
    let Command::Serve { raw } = Cli::try_parse_from(args).unwrap().command else {
        unreachable!()
    };
    let config = raw.validate().unwrap();
    dait_agent::tee::init(config.tee, &config.state_dir).unwrap();
    (config, dir)
}

/// The agent's app for [`simulated_config`]`(flags)`, built in `mode` and owned, so that a test can
/// replace a part (its TEE backend, say) before serving it.
pub fn simulated_app(
    flags: &[&str],
    mode: dait_agent::Mode,
) -> (dait_agent::http::App, tempfile::TempDir) {
    let (config, dir) = simulated_config(flags);
    let app = dait_agent::build_app(&config, mode).unwrap();
    (Arc::try_unwrap(app).unwrap(), dir)
}

/// Builds the agent from `dait-host serve` flags ([`simulated_config`]) and serves its router
/// in-process, over TLS or (for tests that read raw bytes) plaintext.
pub async fn serve_in_process(flags: &[&str], tls: bool) -> Agent {
    let (config, dir) = simulated_config(flags);
    let app = dait_agent::build_app(&config, dait_agent::Mode::Serve).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    if tls {
        tokio::spawn(dait_agent::http::serve_tls(app.clone(), listener));
    } else {
        tokio::spawn(dait_agent::http::dangerous_serve_plaintext(
            app.clone(),
            listener,
        ));
    }
    Agent {
        addr,
        app,
        _dir: dir,
    }
}

/// The agent in-process in front of the in-test engine (prices 2 and 3, model `test-model`).
pub async fn agent(mode: EngineMode, tls: bool) -> Agent {
    let (engine, _) = start_engine(mode).await;
    agent_at(engine, tls, &[]).await
}

/// The agent in-process in front of the engine at `engine` (prices 2 and 3, model `test-model`),
/// with `extra` flags.
pub async fn agent_at(engine: SocketAddr, tls: bool, extra: &[&str]) -> Agent {
    let upstream = format!("http://{engine}");
    let mut flags = vec![
        "--upstream",
        &upstream,
        "--price-in",
        "2",
        "--price-out",
        "3",
        "--model-id",
        "test-model",
    ];
    flags.extend_from_slice(extra);
    serve_in_process(&flags, tls).await
}

/// [`agent`], a connection to it, and what its attestation endpoint says.
pub async fn connected_agent(mode: EngineMode, tls: bool) -> (Agent, Conn, HostInfo) {
    let a = agent(mode, tls).await;
    let mut conn = Conn::connect(a.addr, tls).await.unwrap();
    let info = host_info(&mut conn).await;
    (a, conn, info)
}

/// `dait-host init --tee simulated`: the state directory and its simulated platform root.
pub fn init_simulated(state: &Path) {
    let out = std::process::Command::new(BIN)
        .args(["init", "--tee", "simulated", "--state-dir"])
        .arg(state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dait-host init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `dait-host serve` with the simulated TEE, listening on 127.0.0.1:0 in front of the engine at
/// `upstream` (a base URL), its stdout piped (it prints where it listens), killed on drop. Callers
/// add prices, logging and other flags.
pub fn serve_command(state: &Path, upstream: &str) -> tokio::process::Command {
    serve_command_at(state, upstream, "127.0.0.1:0")
}

/// [`serve_command`] listening on `listen`.
pub fn serve_command_at(state: &Path, upstream: &str, listen: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(["serve", "--tee", "simulated", "--listen", listen])
        .arg("--state-dir")
        .arg(state)
        .args(["--upstream", upstream])
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Spawns a [`serve_command`] and reads, within 30 s, the line where it listens. Returns the child,
/// that address, and its stdout (dropping it closes the pipe).
pub async fn spawn_listening(
    cmd: &mut tokio::process::Command,
) -> (Child, SocketAddr, BufReader<ChildStdout>) {
    let (child, line, stdout) = spawn_listening_line(cmd).await;
    (child, listening_addr(&line), stdout)
}

/// Spawns a [`serve_command`] and reads, within 30 s, the line where it listens. Returns the child,
/// that line, and its stdout.
pub async fn spawn_listening_line(
    cmd: &mut tokio::process::Command,
) -> (Child, String, BufReader<ChildStdout>) {
    let mut child = cmd.spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(30), stdout.read_line(&mut line))
        .await
        .expect("dait-host did not start in time")
        .unwrap();
    (child, line, stdout)
}

/// The TLS address in `dait-host serve`'s listening line.
pub fn listening_addr(line: &str) -> SocketAddr {
    line.strip_prefix("listening https://")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line from dait-host: {line:?}"))
        .parse()
        .unwrap()
}

/// The resident set size of process `pid` in KiB (`VmRSS` in `/proc/<pid>/status`); 0 when it is
/// not readable (the process is gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}
