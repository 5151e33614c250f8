//! The tenant library (`dait_tenant`) against the real `dait-host` binary (simulated TEE): a tenant whose own
//! process restarts continues its channel from its state directory (`Session::resume_from_store`), catches up
//! with a receipt the host logged but it never received (`GET /v1/receipts/…`), also one logged by the
//! host's previous boot, and refuses a state
//! directory of another channel or a host of another operator account. With the `settlement` feature, the
//! cooperative close's counter-signature (`POST /v1/channel/close`) is obtained and checked
//! (`dait_tenant::close`).
//!
//! Every test bounds its time and stops what it started (child processes are killed on drop).
#![cfg(feature = "simulated-tee")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use common::{CHAT, init_simulated, serve_command_at, spawn_listening};
use dait_chain_client::B256;
use dait_tenant::{DEFAULT_CALL_TIMEOUT, ResumeError, Session, SessionConfig, TenantError, Wallet};
use dait_verifier::bundle::Policy;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// Upper bound on any one test.
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

// ------------------------------------------------------------------------------------------ upstream

/// A non-streaming OpenAI-compatible engine on 127.0.0.1: 5 prompt and 2 completion tokens per call.
async fn start_upstream() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(engine);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, task)
}

async fn engine(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let out = json!({
        "id": "cmpl", "object": "chat.completion", "created": 1, "model": request["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "alpha beta"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    });
    let mut response = Response::new(Full::new(Bytes::from(out.to_string())));
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    Ok(response)
}

// ------------------------------------------------------------------------------------------ dait-host

struct Host {
    url: String,
    root_pub: Vec<u8>,
    dir: tempfile::TempDir,
    upstream: String,
    weights: PathBuf,
    child: tokio::process::Child,
    _stdout: tokio::io::BufReader<tokio::process::ChildStdout>,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl Host {
    /// `dait-host serve` (simulated TEE, fresh state) with its operator key in `operator_key`.
    async fn start(upstream: &str, operator_key: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("host");
        init_simulated(&state);
        let root_hex = std::fs::read_to_string(state.join("sim-root.pub")).unwrap();
        let root_pub = hex::decode(root_hex.trim()).unwrap();
        let weights = dir.path().join("weights.bin");
        std::fs::write(&weights, b"null-upstream weights").unwrap();
        let (child, addr, stdout) = spawn(&state, upstream, &weights, operator_key).await;
        Self {
            url: format!("https://{addr}"),
            root_pub,
            dir,
            upstream: upstream.to_owned(),
            weights,
            child,
            _stdout: stdout,
        }
    }

    /// Stops the host and starts it again on the same state (its receipt log) with `operator_key`: a new
    /// boot key, at a new address.
    async fn restart(&mut self, operator_key: &Path) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
        let state = self.dir.path().join("host");
        let (child, addr, stdout) =
            spawn(&state, &self.upstream, &self.weights, operator_key).await;
        self.child = child;
        self.url = format!("https://{addr}");
        self._stdout = stdout;
    }

    fn allow(&self) -> Policy {
        Policy::new()
            .dangerous_allow_simulated(&self.root_pub)
            .unwrap()
    }
}

async fn spawn(
    state: &Path,
    upstream: &str,
    weights: &Path,
    operator_key: &Path,
) -> (
    tokio::process::Child,
    SocketAddr,
    tokio::io::BufReader<tokio::process::ChildStdout>,
) {
    let mut cmd = serve_command_at(state, upstream, "127.0.0.1:0");
    cmd.args(["--model-id", "test-model"])
        .arg("--model-path")
        .arg(weights)
        .args(["--price-in", "2", "--price-out", "3"])
        .arg("--host-key-path")
        .arg(operator_key)
        .stderr(std::process::Stdio::null());
    spawn_listening(&mut cmd).await
}

// ------------------------------------------------------------------------------------------ tenant

/// A tenant: its wallet file and state directory, which survive its sessions.
struct Tenant {
    dir: tempfile::TempDir,
}

impl Tenant {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The tenant's wallet, the same key every time (as a restarted `dait-tenant` loads it).
    fn wallet(&self) -> Wallet {
        Wallet::load_or_create(&self.dir.path().join("wallet.key")).unwrap()
    }

    fn config(&self, host: &Host) -> SessionConfig {
        SessionConfig {
            host_url: host.url.clone(),
            policy: host.allow(),
            escrow_cap: 1_000_000,
            state_dir: self.state_dir(),
            call_timeout: DEFAULT_CALL_TIMEOUT,
        }
    }

    async fn open(&self, host: &Host) -> Session {
        Session::open(self.config(host), self.wallet())
            .await
            .unwrap()
    }

    async fn resume(&self, host: &Host, channel: &B256) -> Result<Session, TenantError> {
        Session::resume_from_store(self.config(host), self.wallet(), channel).await
    }

    fn channel_dir(&self, channel: &B256) -> PathBuf {
        self.state_dir()
            .join("channels")
            .join(hex::encode(channel.as_bytes()))
    }

    /// The channel's `unchecked.txt` (the receipts accepted without their call), `None` when it does not exist.
    fn unchecked(&self, channel: &B256) -> Option<String> {
        std::fs::read_to_string(self.channel_dir(channel).join("unchecked.txt")).ok()
    }
}

/// The line `unchecked.txt` holds for receipt `call_seq` of hash `hash`.
fn unchecked_line(call_seq: u64, hash: &B256) -> String {
    format!("{call_seq} {}\n", hex::encode(hash.as_bytes()))
}

fn chat_body(content: &str) -> Vec<u8> {
    json!({"model": "test-model", "messages": [{"role": "user", "content": content}],
           "max_tokens": 4, "temperature": 0})
    .to_string()
    .into_bytes()
}

fn operator_keys() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let keys = tempfile::tempdir().unwrap();
    let operator = keys.path().join("operator.key");
    std::fs::write(&operator, "ac".repeat(32)).unwrap();
    let other = keys.path().join("other.key");
    std::fs::write(&other, "bd".repeat(32)).unwrap();
    (keys, operator, other)
}

/// Copies the files of `from` into `to` (one level: the channel directory).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

// ------------------------------------------------------------------------------------------ tests

/// Calls 1–2, the session dropped (the tenant's process ends), a new session from the same state directory
/// and wallet: call 3 has call_seq 3 and chains to receipt 2. Then call 4 is "lost" (the state directory
/// is put back as it was before it, as if the tenant crashed before storing it): the next resume fetches
/// receipt 4 from the host's log, accepts it, and call 5 follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_tenant_continues_its_channel_from_the_state_directory() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (upstream, _engine) = start_upstream().await;
        let (_keys, operator, _) = operator_keys();
        let host = Host::start(&format!("http://{upstream}"), &operator).await;
        let tenant = Tenant::new();

        let mut session = tenant.open(&host).await;
        let channel = *session.channel().id();
        session.call(CHAT, chat_body("one")).await.unwrap();
        let second = session.call(CHAT, chat_body("two")).await.unwrap();
        assert_eq!(second.receipt.receipt().call_seq, 2);
        drop(session);

        let mut session = tenant.resume(&host, &channel).await.unwrap();
        assert_eq!(session.state().state.turn, 2);
        assert!(session.receipts().is_empty(), "nothing to catch up");
        assert_eq!(
            tenant.unchecked(&channel),
            None,
            "every receipt so far came with its call"
        );
        let third = session.call(CHAT, chat_body("three")).await.unwrap();
        let r = third.receipt.receipt();
        assert_eq!(r.call_seq, 3);
        assert_eq!(r.prev_receipt_hash, *second.receipt.hash());
        assert_eq!(r.cumulative, second.receipt.receipt().cumulative + r.amount);

        // Call 4 reaches the host, which logs its receipt, but the tenant "crashes" before storing it.
        let backup = tenant.dir.path().join("backup");
        copy_dir(&tenant.channel_dir(&channel), &backup);
        let fourth = session.call(CHAT, chat_body("four")).await.unwrap();
        drop(session);
        copy_dir(&backup, &tenant.channel_dir(&channel));

        let mut session = tenant.resume(&host, &channel).await.unwrap();
        assert_eq!(session.state().state.turn, 4, "caught up with receipt 4");
        assert_eq!(session.receipts().len(), 1);
        assert_eq!(session.receipts()[0].hash(), fourth.receipt.hash());
        let fifth = session.call(CHAT, chat_body("five")).await.unwrap();
        assert_eq!(fifth.receipt.receipt().call_seq, 5);
        assert_eq!(
            fifth.receipt.receipt().prev_receipt_hash,
            *fourth.receipt.hash()
        );
        let log =
            std::fs::read_to_string(tenant.channel_dir(&channel).join("receipts.b64")).unwrap();
        assert_eq!(log.lines().count(), 5, "receipts 1-3, the fetched 4, and 5");
        assert_eq!(
            tenant.unchecked(&channel),
            Some(unchecked_line(4, fourth.receipt.hash())),
            "receipt 4 alone accepted without its call"
        );
    })
    .await
    .expect("test timed out");
}

/// The tenant's proxy is one turn behind the host (another process of the same tenant made call 2 on the
/// channel: the host logged a receipt this session never got): its next call is refused as `stale_state`, so the
/// proxy takes receipt 2 from the host's log (`Session::catch_up`), checks it on top of receipt 1, records it, and
/// sends the call again, which becomes call 3; non-streamed and streamed alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_catches_up_with_a_receipt_it_never_got_and_sends_the_call_again() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        // An engine that streams too.
        let (upstream, _) = common::start_engine(common::VLLM_LIKE).await;
        let (_keys, operator, _) = operator_keys();
        let host = Host::start(&format!("http://{upstream}"), &operator).await;
        let tenant = Tenant::new();

        for streamed in [false, true] {
            let mut behind = tenant.open(&host).await;
            let channel = *behind.channel().id();
            behind.call(CHAT, chat_body("one")).await.unwrap();
            let mut ahead = tenant.resume(&host, &channel).await.unwrap();
            let second = ahead.call(CHAT, chat_body("two")).await.unwrap();
            drop(ahead);

            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let proxy = dait_tenant::proxy::spawn(listener, behind).unwrap();
            let mut conn = common::Conn::connect(proxy.local_addr(), false)
                .await
                .unwrap();
            let mut body: Value = serde_json::from_slice(&chat_body("three")).unwrap();
            body["stream"] = json!(streamed);
            let (status, answer) = conn
                .send(
                    "POST",
                    CHAT,
                    Some("application/json"),
                    body.to_string().into_bytes(),
                )
                .await
                .unwrap();
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
            let (_, receipts) = conn
                .send("GET", "/dait/receipts", None, vec![])
                .await
                .unwrap();
            let receipts: Vec<Value> = serde_json::from_slice(&receipts).unwrap();
            let seqs: Vec<u64> = receipts
                .iter()
                .map(|r| r["call_seq"].as_u64().unwrap())
                .collect();
            assert_eq!(seqs, [2, 3], "streamed {streamed}");
            assert_eq!(
                receipts[0]["receipt_hash"],
                second.receipt.hash().to_string()
            );
            assert_eq!(
                receipts[1]["prev_receipt_hash"],
                receipts[0]["receipt_hash"]
            );
            let (_, state) = conn.send("GET", "/dait/state", None, vec![]).await.unwrap();
            let state: Value = serde_json::from_slice(&state).unwrap();
            assert_eq!(state["turn"], 3);
            // Receipt 2 alone was accepted without its call, and the state directory says so.
            assert_eq!(
                tenant.unchecked(&channel),
                Some(unchecked_line(2, second.receipt.hash()))
            );
            proxy.shutdown().await;
        }
    })
    .await
    .expect("test timed out");
}

/// The host logs receipt 3 and restarts (a new boot key) before the tenant has it; the tenant restarts too.
/// Resuming fetches receipt 3 and checks it under the earlier boot's key, which the tenant recorded when it
/// verified that boot; without that record the receipt cannot be checked and is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_logged_by_the_hosts_previous_boot_is_caught_up_under_that_boots_key() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (upstream, _engine) = start_upstream().await;
        let (_keys, operator, _) = operator_keys();
        let mut host = Host::start(&format!("http://{upstream}"), &operator).await;
        let tenant = Tenant::new();
        let mut session = tenant.open(&host).await;
        let channel = *session.channel().id();
        let old_key = *session.bundle().host_key_id();
        session.call(CHAT, chat_body("one")).await.unwrap();
        session.call(CHAT, chat_body("two")).await.unwrap();
        let backup = tenant.dir.path().join("backup");
        copy_dir(&tenant.channel_dir(&channel), &backup);
        let third = session.call(CHAT, chat_body("three")).await.unwrap();
        drop(session);
        copy_dir(&backup, &tenant.channel_dir(&channel));
        host.restart(&operator).await;

        // Without the record of the earlier key: refused, nothing accepted.
        let keys = tenant.channel_dir(&channel).join("host_keys.txt");
        let recorded = std::fs::read(&keys).unwrap();
        std::fs::remove_file(&keys).unwrap();
        let err = tenant.resume(&host, &channel).await.unwrap_err();
        assert!(
            matches!(
                err,
                TenantError::Resume(ResumeError::UnseenReceiptKey { call_seq: 3, host_key_id })
                    if host_key_id == old_key
            ),
            "{err:?}"
        );
        std::fs::write(&keys, recorded).unwrap();

        let mut session = tenant.resume(&host, &channel).await.unwrap();
        assert_ne!(*session.bundle().host_key_id(), old_key, "a new boot key");
        assert_eq!(session.state().state.turn, 3);
        assert_eq!(session.receipts()[0].hash(), third.receipt.hash());
        assert_eq!(
            tenant.unchecked(&channel),
            Some(unchecked_line(3, third.receipt.hash()))
        );
        let fourth = session.call(CHAT, chat_body("four")).await.unwrap();
        assert_eq!(fourth.receipt.receipt().call_seq, 4);
        assert_eq!(
            fourth.receipt.receipt().prev_receipt_hash,
            *third.receipt.hash()
        );
        assert_eq!(
            fourth.receipt.receipt().host_key_id,
            *session.bundle().host_key_id()
        );
    })
    .await
    .expect("test timed out");
}

/// A channel the state directory does not hold, a state directory of another channel, and a host of another
/// operator account: each refused with its own error, before any call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_refuses_another_channels_state_and_another_host_account() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (upstream, _engine) = start_upstream().await;
        let (_keys, operator, other) = operator_keys();
        let mut host = Host::start(&format!("http://{upstream}"), &operator).await;
        let tenant = Tenant::new();
        let mut session = tenant.open(&host).await;
        let channel = *session.channel().id();
        session.call(CHAT, chat_body("one")).await.unwrap();
        drop(session);

        let unknown = B256([0x5a; 32]);
        let err = tenant.resume(&host, &unknown).await.unwrap_err();
        assert!(
            matches!(err, TenantError::Resume(ResumeError::NoState { channel }) if channel == unknown),
            "{err:?}"
        );

        // The channel's files put under another channel's directory.
        copy_dir(&tenant.channel_dir(&channel), &tenant.channel_dir(&unknown));
        let err = tenant.resume(&host, &unknown).await.unwrap_err();
        assert!(
            matches!(
                err,
                TenantError::Resume(ResumeError::OtherChannel { asked, stored })
                    if asked == unknown && stored == channel
            ),
            "{err:?}"
        );

        // Another wallet with this state directory.
        let err = Session::resume_from_store(tenant.config(&host), Wallet::generate(), &channel)
            .await
            .unwrap_err();
        assert!(
            matches!(err, TenantError::Resume(ResumeError::WrongTenant { .. })),
            "{err:?}"
        );

        // The host comes back under another operator account.
        host.restart(&other).await;
        let err = tenant.resume(&host, &channel).await.unwrap_err();
        assert!(
            matches!(err, TenantError::Resume(ResumeError::WrongHost { .. })),
            "{err:?}"
        );
        // Its own account again: the channel goes on.
        host.restart(&operator).await;
        let mut session = tenant.resume(&host, &channel).await.unwrap();
        let second = session.call(CHAT, chat_body("two")).await.unwrap();
        assert_eq!(second.receipt.receipt().call_seq, 2);
    })
    .await
    .expect("test timed out");
}

/// The cooperative close's counter-signature: the verified host counter-signs the tenant's final state
/// with its attested key; a stale final state is refused with the host's code.
#[cfg(feature = "settlement")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_counter_signs_the_final_state_and_the_tenant_checks_it() {
    use dait_chain_client::HostVerifyingKey;
    use dait_tenant::HostErrorCode;
    use dait_tenant::close::{CloseError, request_countersignature};

    tokio::time::timeout(TEST_TIMEOUT, async {
        let (upstream, _engine) = start_upstream().await;
        let (_keys, operator, _) = operator_keys();
        let host = Host::start(&format!("http://{upstream}"), &operator).await;
        let tenant = Tenant::new();
        let mut session = tenant.open(&host).await;
        let first = session.call(CHAT, chat_body("one")).await.unwrap();
        session.call(CHAT, chat_body("two")).await.unwrap();
        // The wallet's key, as `dait-tenant` stores it (hex), to sign a state the session would not.
        let secret = std::fs::read_to_string(tenant.dir.path().join("wallet.key")).unwrap();
        let secret: [u8; 32] = hex::decode(secret.trim()).unwrap().try_into().unwrap();
        let signer = dait_chain_client::TenantSigner::from_bytes(&secret).unwrap();

        // A final state one turn behind the host: refused as stale.
        let mut stale = first.state.clone();
        stale.state.is_final = true;
        stale.tenant_signature = signer.sign_state(&stale.state, session.channel().domain());
        let err = request_countersignature(&host.url, &host.allow(), &stale)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                CloseError::HostRefused {
                    code: HostErrorCode::StaleState,
                    status: 409
                }
            ),
            "{err:?}"
        );

        let final_state = session.final_state();
        let signed = request_countersignature(&host.url, &host.allow(), &final_state)
            .await
            .unwrap();
        assert_eq!(signed.host_key_id, *session.bundle().host_key_id());
        assert_eq!(signed.state.state, final_state.state);
        let key = HostVerifyingKey::from_sec1(session.bundle().receipt_key()).unwrap();
        assert!(
            signed
                .state
                .verify_host(&key, session.channel().domain())
                .unwrap()
        );
        // The channel is closed for calls now.
        let err = session.call(CHAT, chat_body("three")).await.unwrap_err();
        assert!(
            matches!(
                err,
                TenantError::Host {
                    code: HostErrorCode::ChannelFinal,
                    ..
                }
            ),
            "{err:?}"
        );
    })
    .await
    .expect("test timed out");
}
