//! A local EVM chain for tests: the pinned anvil (`scripts/install-chain-tools.sh` installs it into
//! `chain-client/contracts/node_modules`), started on `127.0.0.1` at a free port with a chosen hardfork, waited
//! for at most a bounded time, and killed when the [`Anvil`] is dropped. `DAIT_ANVIL` overrides the binary.
//!
//! A missing binary is an error ([`AnvilError::NotFound`]), never a skipped test: the contract tests are part of
//! the test run.
//!
//! ```no_run
//! use dait_chain_client::evm::anvil::{Anvil, Hardfork};
//!
//! let chain = Anvil::start(Hardfork::Osaka)?;
//! let provider = dait_chain_client::evm::connect_http(chain.url(), Some(&Anvil::DEV_KEYS[0]))?;
//! chain.increase_time(3600)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use crate::Address;

/// The anvil release the tests are pinned to (`chain-client/contracts/package-lock.json`).
pub const ANVIL_VERSION: &str = "1.7.1";

/// How long [`Anvil::start`] waits for the chain to answer.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The chain id anvil is started with (the vectors' domain).
pub const CHAIN_ID: u64 = 31337;

/// Which EVM rules the local chain runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Hardfork {
    /// Osaka: P256VERIFY at `0x100` (EIP-7951).
    Osaka,
    /// Prague: no P256VERIFY, so every host-signature check of the contract fails closed.
    Prague,
}

impl Hardfork {
    fn name(self) -> &'static str {
        match self {
            Self::Osaka => "osaka",
            Self::Prague => "prague",
        }
    }
}

/// Why the local chain is not available.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnvilError {
    /// A JSON-RPC answer is not an HTTP response with a JSON body.
    #[error("anvil JSON-RPC {method}: unreadable answer")]
    Answer {
        /// The method.
        method: &'static str,
        /// The JSON error, when the body did not parse.
        #[source]
        source: Option<serde_json::Error>,
    },
    /// The process exited before it answered.
    #[error("anvil exited at start-up ({0})")]
    Exited(std::process::ExitStatus),
    /// Starting the process or talking to it failed.
    #[error("anvil: {context}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No anvil binary: run `scripts/install-chain-tools.sh`, or set `DAIT_ANVIL`.
    #[error(
        "anvil not found at {0} (run scripts/install-chain-tools.sh, or set DAIT_ANVIL to an anvil binary)"
    )]
    NotFound(PathBuf),
    /// A JSON-RPC call returned an error object.
    #[error("anvil JSON-RPC {method} returned error {code}")]
    Rpc {
        /// The method.
        method: &'static str,
        /// The error's code (0 when it has none).
        code: i64,
    },
    /// It did not answer in time.
    #[error("anvil did not answer within {0:?}")]
    Timeout(Duration),
}

/// A running anvil, killed on drop.
#[derive(Debug)]
pub struct Anvil {
    child: Child,
    addr: SocketAddr,
    url: String,
}

impl Anvil {
    /// The secret keys of the first three of anvil's prefunded development accounts (mnemonic "test test … junk");
    /// `DEV_KEYS[0]` is the deployer whose nonce-0 contract is the vectors' `settlement` address.
    pub const DEV_KEYS: [[u8; 32]; 3] = [
        hex32("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"),
        hex32("59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"),
        hex32("5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"),
    ];

    /// Starts the anvil that [`Anvil::binary`] finds, waiting at most [`START_TIMEOUT`].
    pub fn start(hardfork: Hardfork) -> Result<Self, AnvilError> {
        Self::start_binary(&Self::binary(), hardfork, START_TIMEOUT)
    }

    /// `DAIT_ANVIL` if set, else the pinned binary in `chain-client/contracts/node_modules/.bin`.
    pub fn binary() -> PathBuf {
        match std::env::var_os("DAIT_ANVIL") {
            Some(p) => PathBuf::from(p),
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts/node_modules/.bin/anvil"),
        }
    }

    /// Starts `binary` on `127.0.0.1` with chain id [`CHAIN_ID`] at a port the system picks (`--port 0`; the
    /// address is read from anvil's "Listening on" line, so two chains never race for a port), and waits until
    /// it answers `eth_chainId`, at most `timeout`.
    pub fn start_binary(
        binary: &Path,
        hardfork: Hardfork,
        timeout: Duration,
    ) -> Result<Self, AnvilError> {
        if !binary.is_file() {
            return Err(AnvilError::NotFound(binary.to_owned()));
        }
        let deadline = Instant::now() + timeout;
        let mut child = Command::new(binary)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--hardfork",
                hardfork.name(),
            ])
            .args(["--chain-id", &CHAIN_ID.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| AnvilError::Io {
                context: "spawn",
                source,
            })?;
        // anvil logs every request to stdout: a thread reads it to the end (the child's exit), passing on the
        // address of the "Listening on" line.
        let (tx, rx) = std::sync::mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(addr) = line.trim().strip_prefix("Listening on ") {
                        let _ = tx.send(addr.parse::<SocketAddr>());
                    }
                }
            });
        }
        let addr = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Ok(addr)) => addr,
            waited => {
                let _ = child.kill();
                let status = child.wait().map_err(|source| AnvilError::Io {
                    context: "wait",
                    source,
                })?;
                return Err(match waited {
                    Err(RecvTimeoutError::Timeout) => AnvilError::Timeout(timeout),
                    // The output ended (the process exited) or named no socket address.
                    _ => AnvilError::Exited(status),
                });
            }
        };
        // From here on, drop kills the child whatever happens.
        let mut anvil = Self {
            child,
            addr,
            url: format!("http://{addr}"),
        };
        loop {
            if let Some(status) = anvil.child.try_wait().map_err(|source| AnvilError::Io {
                context: "wait",
                source,
            })? {
                return Err(AnvilError::Exited(status));
            }
            if anvil.rpc("eth_chainId", "[]").is_ok() {
                return Ok(anvil);
            }
            if Instant::now() > deadline {
                return Err(AnvilError::Timeout(timeout));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The JSON-RPC endpoint, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A blocking JSON-RPC call (`params` a JSON array); returns the `result` as JSON text.
    pub fn rpc(&self, method: &'static str, params: &str) -> Result<String, AnvilError> {
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}"#);
        let io = |context| move |source| AnvilError::Io { context, source };
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))
            .map_err(io("connect"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(io("set timeout"))?;
        write!(
            stream,
            "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .map_err(io("send"))?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).map_err(io("receive"))?;
        let unreadable = |source| AnvilError::Answer { method, source };
        let json = answer
            .split_once("\r\n\r\n")
            .and_then(|(_, b)| b.get(b.find('{')?..=b.rfind('}')?))
            .ok_or_else(|| unreadable(None))?;
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| unreadable(Some(e)))?;
        if let Some(e) = value.get("error") {
            let code = e
                .get("code")
                .and_then(serde_json::Value::as_i64)
                .unwrap_or_default();
            return Err(AnvilError::Rpc { method, code });
        }
        Ok(value
            .get("result")
            .map(ToString::to_string)
            .unwrap_or_default())
    }

    /// `evm_increaseTime` then `evm_mine`: the next block is `seconds` later.
    pub fn increase_time(&self, seconds: u64) -> Result<(), AnvilError> {
        self.rpc("evm_increaseTime", &format!("[{seconds}]"))?;
        self.rpc("evm_mine", "[]")?;
        Ok(())
    }

    /// `anvil_mine`: mines `blocks` empty blocks.
    pub fn mine(&self, blocks: u64) -> Result<(), AnvilError> {
        self.rpc("anvil_mine", &format!(r#"["0x{blocks:x}"]"#))?;
        Ok(())
    }

    /// `anvil_setBalance`: gives `account` `wei` of the native coin (for gas).
    pub fn set_balance(&self, account: Address, wei: u128) -> Result<(), AnvilError> {
        self.rpc("anvil_setBalance", &format!(r#"["{account}","0x{wei:x}"]"#))?;
        Ok(())
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        // The process may be gone already; nothing else to do about a failure here.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const fn hex32(s: &str) -> [u8; 32] {
    let s = s.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nibble(s[2 * i]) << 4) | nibble(s[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("not a lowercase hex digit"),
    }
}
