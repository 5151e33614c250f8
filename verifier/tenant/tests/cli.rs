//! The `dait-tenant` binary against a small TLS server that serves simulated evidence bundles built here:
//! exit codes (0 verified, 1 rejected, 2 usage or I/O), the TLS key check against the attested SPKI, and
//! `--policy`: the served runtime event log checked against a reference file's runtime events.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use dait_chain_client::Freshness;
use dait_measure::ReferenceMeasurements;
use dait_measure::reference::RuntimeEvent;
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;

mod support;
use dait_verifier::bundle::fixture::{runtime_events, runtime_log};
use support::{key, keyset, simulated_bundle};

/// Writes the synthetic reference with `events` as its runtime events under `dir`; returns its path.
fn reference_file(dir: &Path, name: &str, events: Vec<RuntimeEvent>) -> String {
    let synthetic = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../measurements/reference/0.0.0-synthetic.json");
    let mut reference = ReferenceMeasurements::load(&synthetic).unwrap();
    reference.runtime.events = events;
    let path = dir.join(name);
    std::fs::write(&path, reference.to_json_pretty()).unwrap();
    path.display().to_string()
}

/// A settlement deployment a keyset is bound to: chain id, contract, the host's operator account.
type Binding = (u64, dait_chain_client::Address, dait_chain_client::Address);

/// A simulated bundle for `nonce`, certified by root key 1, whose keyset names `tls_spki` (and `binding`'s
/// chain, contract and operator when given).
fn bundle(nonce: [u8; 32], tls_spki: &[u8], binding: Option<Binding>) -> Vec<u8> {
    let freshness = Freshness::TenantNonce(nonce);
    let mut keyset = keyset(tls_spki);
    if let Some((chain_id, settlement, host_account)) = binding {
        keyset.chain_id = chain_id;
        keyset.settlement = settlement;
        keyset.host_account = host_account;
    }
    simulated_bundle(&keyset, &freshness, &runtime_log(&runtime_events()))
}

/// Serves `GET /v1/attestation?nonce=…` over TLS with a fresh key; the bundles name `attested_spki`, or
/// the serving key's own SPKI when it is `None`.
async fn serve(attested_spki: Option<Vec<u8>>) -> SocketAddr {
    serve_bound(attested_spki, None).await.0
}

/// [`serve`], with the keyset bound to `binding`; also returns the SPKI the keysets name.
async fn serve_bound(
    attested_spki: Option<Vec<u8>>,
    binding: Option<Binding>,
) -> (SocketAddr, Vec<u8>) {
    let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key_pair)
        .unwrap();
    let spki = attested_spki.unwrap_or_else(|| key_pair.public_key_der());
    let served_spki = spki.clone();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key_pair.serialize_der().into()),
        )
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, spki) = (acceptor.clone(), spki.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let spki = spki.clone();
                    async move {
                        if req.uri().path() == "/v1/channel/close" {
                            return Ok::<_, Infallible>(countersign(req, binding).await);
                        }
                        if req.uri().path().starts_with("/v1/receipts/") {
                            // No receipt logged: the tenant is not behind.
                            let mut response = http::Response::new(Full::new(Bytes::new()));
                            *response.status_mut() = http::StatusCode::NOT_FOUND;
                            return Ok(response);
                        }
                        let query = req.uri().query().unwrap_or_default().to_owned();
                        let mut nonce = [0u8; 32];
                        let ok = query
                            .strip_prefix("nonce=")
                            .is_some_and(|h| hex::decode_to_slice(h, &mut nonce).is_ok());
                        let mut response = http::Response::new(Full::new(Bytes::new()));
                        if ok {
                            *response.body_mut() =
                                Full::new(Bytes::from(bundle(nonce, &spki, binding)));
                        } else {
                            *response.status_mut() = http::StatusCode::BAD_REQUEST;
                        }
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, served_spki)
}

/// `POST /v1/channel/close` as the agent answers it: the posted final state counter-signed by the keyset's
/// receipt key (key 3) under the keyset's domain, with `x-dait-host-key-id`.
async fn countersign(
    req: http::Request<Incoming>,
    binding: Option<Binding>,
) -> http::Response<Full<Bytes>> {
    use dait_chain_client::{Domain, SignedChannelState, WireMessage as _};
    use http_body_util::BodyExt as _;
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let mut signed =
        SignedChannelState::from_header_value(std::str::from_utf8(&body).unwrap().trim()).unwrap();
    let domain = match binding {
        Some((chain_id, settlement, _)) => Domain {
            chain_id,
            settlement,
        },
        None => keyset(&[]).domain(),
    };
    signed.host_signature = Some(key(3).cosign_state(&signed.state, &domain));
    let mut response = http::Response::new(Full::new(Bytes::from(signed.to_header_value())));
    response.headers_mut().insert(
        "x-dait-host-key-id",
        key(3).verifying_key().key_id().to_string().parse().unwrap(),
    );
    response
}

/// Runs `dait-tenant` off the runtime's threads; returns the exit code, stdout and stderr.
async fn tenant(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_dait-tenant"))
            .args(&args)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

fn root_file(dir: &Path, n: u8) -> String {
    let path = dir.join(format!("root-{n}.pub"));
    std::fs::write(
        &path,
        format!("{}\n", hex::encode(key(n).verifying_key().to_sec1())),
    )
    .unwrap();
    path.display().to_string()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_exit_codes_and_tls_key_check() {
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        let dir = std::env::temp_dir().join(format!("dait-tenant-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good_root = root_file(&dir, 1);
        let other_root = root_file(&dir, 9);

        let honest = format!("https://{}", serve(None).await);
        let (code, stdout, _) = tenant(args(&[
            "verify",
            "--host",
            &honest,
            "--dangerous-allow-simulated",
            &good_root,
        ]))
        .await;
        assert_eq!(code, 0, "{stdout}");
        let out: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(out["platform"], "simulated");
        assert_eq!(out["verified"], true);

        // Collateral given with --collateral (a dcap-qvl JSON bundle here) is loaded; simulated evidence
        // has no use for it. An unreadable one is an I/O error.
        let bundle = format!(
            "{}/../testdata/evidence/tdx/dcap-qvl__v4_b0c06f_collateral.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let (code, stdout, _) = tenant(args(&[
            "verify",
            "--host",
            &honest,
            "--dangerous-allow-simulated",
            &good_root,
            "--collateral",
            &bundle,
        ]))
        .await;
        assert_eq!(code, 0, "{stdout}");
        let missing = dir.join("no-such-collateral").display().to_string();
        let (code, _, stderr) = tenant(args(&[
            "verify",
            "--host",
            &honest,
            "--dangerous-allow-simulated",
            &good_root,
            "--collateral",
            &missing,
        ]))
        .await;
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains("--collateral"), "{stderr}");

        // Simulated evidence under the default policy, and under another root: rejected.
        let (code, _, _) = tenant(args(&["verify", "--host", &honest])).await;
        assert_eq!(code, 1);
        let (code, _, _) = tenant(args(&[
            "verify",
            "--host",
            &honest,
            "--dangerous-allow-simulated",
            &other_root,
        ]))
        .await;
        assert_eq!(code, 1);

        // Evidence that attests another TLS key than the one the server presents: rejected.
        let impostor = format!("https://{}", serve(Some(b"another key".to_vec())).await);
        let (code, _, _) = tenant(args(&[
            "verify",
            "--host",
            &impostor,
            "--dangerous-allow-simulated",
            &good_root,
        ]))
        .await;
        assert_eq!(code, 1);
        let err = dait_tenant::verify_host(
            &impostor,
            &dait_verifier::bundle::Policy::new()
                .dangerous_allow_simulated(&key(1).verifying_key().to_sec1())
                .unwrap(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, dait_tenant::TenantError::TlsSpkiMismatch),
            "{err:?}"
        );

        // Usage and I/O errors: 2.
        let (code, _, _) = tenant(args(&["verify", "--host", "http://127.0.0.1:1"])).await;
        assert_eq!(code, 2, "a non-https URL is a usage error");
        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let (code, _, _) = tenant(args(&["verify", "--host", &format!("https://{closed}")])).await;
        assert_eq!(code, 2, "an unreachable host is an I/O error");
        let (code, _, _) = tenant(args(&["verify"])).await;
        assert_eq!(code, 2, "a missing flag is a usage error");
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_checks_the_runtime_events_against_a_reference() {
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        let dir = std::env::temp_dir().join(format!("dait-tenant-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let root = root_file(&dir, 1);
        let matching = reference_file(&dir, "matching.json", runtime_events());
        let mut events = runtime_events();
        events[1].sha256.0[0] ^= 1;
        let changed = reference_file(&dir, "changed.json", events);
        let host = format!("https://{}", serve(None).await);
        let verify = |reference: &str| {
            args(&[
                "verify",
                "--host",
                &host,
                "--policy",
                reference,
                "--dangerous-allow-simulated",
                &root,
            ])
        };

        // The served runtime events are the reference's: verified, and the output names the release.
        let (code, stdout, stderr) = tenant(verify(&matching)).await;
        assert_eq!(code, 0, "{stdout}{stderr}");
        let out: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(out["verified"], true);
        assert_eq!(out["reference"], "0.0.0-synthetic");
        assert!(
            stderr.contains("reference release 0.0.0-synthetic"),
            "{stderr}"
        );
        // Without --policy the output says no reference was checked.
        let (code, stdout, _) = tenant(args(&[
            "verify",
            "--host",
            &host,
            "--dangerous-allow-simulated",
            &root,
        ]))
        .await;
        assert_eq!(code, 0);
        let out: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert!(out["reference"].is_null(), "{out}");

        // One runtime event changed in the reference: rejected, naming the runtime measurement check.
        let (code, stdout, stderr) = tenant(verify(&changed)).await;
        assert_eq!(code, 1, "{stdout}{stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(stderr.contains("runtime measurements"), "{stderr}");

        // A reference does not allow simulated evidence by itself.
        let (code, _, stderr) =
            tenant(args(&["verify", "--host", &host, "--policy", &matching])).await;
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.contains("simulated evidence is rejected"),
            "{stderr}"
        );

        // A reference that does not load is a usage or I/O error, before any connection.
        let missing = dir.join("missing.json").display().to_string();
        let broken = dir.join("broken.json");
        std::fs::write(&broken, b"{\"schema\": 1").unwrap();
        let broken = broken.display().to_string();
        for reference in [&missing, &broken] {
            let (code, _, stderr) = tenant(verify(reference)).await;
            assert_eq!(code, 2, "{stderr}");
            assert!(
                stderr.contains(&format!("--policy {reference}")),
                "{stderr}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defaults_refuse_unpinned_prompts_and_too_few_gpus() {
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        let dir = std::env::temp_dir().join(format!("dait-tenant-defaults-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let root = root_file(&dir, 1);
        let wallet = dir.join("wallet.key").display().to_string();
        let state = dir.join("state").display().to_string();
        // Nothing listens here: a refusal that names the policy was decided before any connection.
        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let closed = format!("https://{closed}");
        let channel = ["--wallet-key", &wallet, "--state-dir", &state];
        let chat = |extra: &[&str]| {
            let mut a = args(&[
                "chat",
                "--host",
                &closed,
                "--dangerous-allow-simulated",
                &root,
            ]);
            a.extend(args(&channel));
            a.extend(args(extra));
            a.push("hello".to_owned());
            a
        };

        // No --policy: chat and proxy refuse to send a prompt (usage error, 2), naming the way out.
        let (code, stdout, stderr) = tenant(chat(&[])).await;
        assert_eq!(code, 2, "{stdout}{stderr}");
        assert!(stderr.contains("--dangerous-any-measurement"), "{stderr}");
        let mut proxy = args(&["proxy", "--host", &closed, "--listen", "127.0.0.1:0"]);
        proxy.extend(args(&channel));
        let (code, _, stderr) = tenant(proxy).await;
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains("--dangerous-any-measurement"), "{stderr}");
        // Told --dangerous-any-measurement, it goes on to the host (here: unreachable, still 2).
        let (code, _, stderr) = tenant(chat(&["--dangerous-any-measurement"])).await;
        assert_eq!(code, 2, "{stderr}");
        assert!(!stderr.contains("no --policy"), "{stderr}");
        assert!(stderr.contains("not pinned"), "{stderr}");

        // --min-gpus: the simulated host attests no GPU, so requiring one rejects it (1).
        let host = format!("https://{}", serve(None).await);
        let verify = |min_gpus: &str| {
            args(&[
                "verify",
                "--host",
                &host,
                "--dangerous-allow-simulated",
                &root,
                "--min-gpus",
                min_gpus,
            ])
        };
        let (code, stdout, stderr) = tenant(verify("0")).await;
        assert_eq!(code, 0, "{stdout}{stderr}");
        let (code, stdout, stderr) = tenant(verify("1")).await;
        assert_eq!(code, 1, "{stdout}{stderr}");
        assert!(
            stderr.contains("0 GPUs present, the policy requires 1"),
            "{stderr}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
    .expect("test timed out");
}

/// `chat --settlement`: the verified host is checked on chain before any prompt is sent; a keyset bound to
/// another deployment (the simulated host's) is refused (1), naming both domains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_checks_the_host_on_the_settlement_before_sending() {
    use dait_chain_client::B256;
    use dait_chain_client::evm::anvil::{Anvil, Hardfork};
    use dait_chain_client::evm::{
        Params, Settlement, Token, account_address, connect_http, convert,
    };

    let chain = Anvil::start(Hardfork::Osaka).unwrap();
    let token =
        Token::deploy_test_token(connect_http(chain.url(), Some(&Anvil::DEV_KEYS[1])).unwrap())
            .await
            .unwrap();
    let owner = account_address(&Anvil::DEV_KEYS[0]).unwrap();
    let params = Params {
        token: token.address(),
        owner,
        stake_per_gpu: 1,
        unbonding_delay: 1,
        challenge_window: 60,
        release_delay: 0,
        epoch_nonce_rotation_blocks: 100,
        commit_reveal_window: 5,
        reveal_window: 64,
        sample_size: 8,
    };
    let deployment = Settlement::deploy(
        connect_http(chain.url(), Some(&Anvil::DEV_KEYS[0])).unwrap(),
        &params,
    )
    .await
    .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        let dir = std::env::temp_dir().join(format!("dait-tenant-onchain-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let root = root_file(&dir, 1);
        let host = format!("https://{}", serve(None).await);
        let settlement = deployment.address().to_string();
        let wallet = dir.join("wallet.key").display().to_string();
        let state = dir.join("state").display().to_string();
        let (code, stdout, stderr) = tenant(args(&[
            "chat",
            "--host",
            &host,
            "--dangerous-allow-simulated",
            &root,
            "--dangerous-any-measurement",
            "--wallet-key",
            &wallet,
            "--state-dir",
            &state,
            "--settlement",
            &settlement,
            "--rpc-url",
            chain.url(),
            "hello",
        ]))
        .await;
        assert_eq!(code, 1, "{stdout}{stderr}");
        assert!(stderr.contains("not the settlement"), "{stderr}");
        assert!(stdout.is_empty(), "nothing was sent: {stdout}");
        // --settlement without --rpc-url: a usage error.
        let (code, _, stderr) = tenant(args(&[
            "chat",
            "--host",
            &host,
            "--wallet-key",
            &wallet,
            "--state-dir",
            &state,
            "--settlement",
            &settlement,
            "hello",
        ]))
        .await;
        assert_eq!(code, 2, "{stderr}");

        // A host bound to this deployment, registered, attested under a published release: `channel open`, then
        // `chat --channel` checks it, derives the same channel id from the record's salt and uses it (the
        // simulated host serves no chat, so the call itself then fails: 2).
        let operator = account_address(&Anvil::DEV_KEYS[0]).unwrap();
        let domain = deployment.domain();
        let (addr, spki) =
            serve_bound(None, Some((domain.chain_id, domain.settlement, operator))).await;
        let bound = format!("https://{addr}");
        let host_token = Token::at(token.address(), deployment.provider().clone());
        host_token.mint(operator, 10).await.unwrap();
        host_token.approve(domain.settlement, None).await.unwrap();
        deployment.register_host(&[B256([0x9a; 32])]).await.unwrap();
        let release = B256([0x2e; 32]);
        deployment
            .publish_release(release, B256([1; 32]), 0, u64::from(u32::MAX))
            .await
            .unwrap();
        let mut attested = keyset(&spki);
        (
            attested.chain_id,
            attested.settlement,
            attested.host_account,
        ) = (domain.chain_id, domain.settlement, operator);
        let epoch = deployment.current_epoch().await.unwrap();
        deployment
            .submit_attestation(
                &convert::keyset_bytes(&attested),
                key(3).verifying_key().key_id(),
                epoch,
                B256([0xbb; 32]),
                release,
                "https://h/a",
            )
            .await
            .unwrap();
        let tenant_address = dait_tenant::Wallet::load_or_create(Path::new(&wallet))
            .unwrap()
            .address();
        chain.set_balance(tenant_address, 10u128.pow(21)).unwrap();
        token.mint(tenant_address, 1_000_000).await.unwrap();
        let chain_args = [
            "--rpc-url",
            chain.url(),
            "--settlement",
            &settlement,
            "--wallet-key",
            &wallet,
            "--state-dir",
            &state,
        ];
        let mut open = args(&["channel", "open", "--host-account", &operator.to_string()]);
        open.extend(args(&["--escrow", "1000", "--max-per-call", "100"]));
        open.extend(args(&chain_args));
        let (code, stdout, stderr) = tenant(open).await;
        assert_eq!(code, 0, "{stdout}{stderr}");
        let opened: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let id = opened["channel_id"].as_str().unwrap().to_owned();
        let mut chat = args(&[
            "chat",
            "--host",
            &bound,
            "--dangerous-allow-simulated",
            &root,
        ]);
        chat.extend(args(&["--dangerous-any-measurement", "--channel", &id]));
        chat.extend(args(&chain_args));
        chat.push("hello".to_owned());
        let (code, stdout, stderr) = tenant(chat.clone()).await;
        assert!(stderr.contains("attested keyset"), "{stderr}");
        assert!(stderr.contains(&format!("using channel {id}")), "{stderr}");
        assert_eq!(code, 2, "{stdout}{stderr}");
        // A channel id with no record in the state directory: a usage error.
        let mut unknown = chat.clone();
        let at = unknown.iter().position(|a| a == &id).unwrap();
        unknown[at] = B256([7; 32]).to_string();
        let (code, _, stderr) = tenant(unknown).await;
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains("onchain.json"), "{stderr}");

        // `channel close --host-url`: a host of another operator account is refused before anything is
        // sent (1); the channel's host counter-signs the final state, which closes the channel on chain.
        let close = |url: &str| {
            let mut close = args(&["channel", "close", "--channel", &id, "--host-url", url]);
            close.extend(args(&["--dangerous-allow-simulated", &root]));
            close.push("--dangerous-any-measurement".to_owned());
            close.extend(args(&chain_args));
            close
        };
        let (code, stdout, stderr) = tenant(close(&host)).await;
        assert_eq!(code, 1, "{stdout}{stderr}");
        assert!(stderr.contains("not the channel's host"), "{stderr}");
        let (code, stdout, stderr) = tenant(close(&bound)).await;
        assert_eq!(code, 0, "{stdout}{stderr}");
        assert!(
            stderr.contains("counter-signed the final state"),
            "{stderr}"
        );
        let closed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(closed["close"], "cooperative", "{stdout}");
        use dait_chain_client::WireMessage as _;
        let kept = Path::new(&state)
            .join("channels")
            .join(id.trim_start_matches("0x"))
            .join("final.b64");
        let kept = dait_chain_client::SignedChannelState::from_header_value(
            std::fs::read_to_string(kept).unwrap().trim(),
        )
        .unwrap();
        assert!(kept.state.is_final && kept.host_signature.is_some());
        assert_eq!(
            deployment
                .channel(B256::from_hex(&id).unwrap())
                .await
                .unwrap()
                .status,
            dait_chain_client::evm::ChannelStatus::Closed
        );

        // `--settlement` without `--channel`: after the host checks out on chain, the tenant opens a channel to
        // its operator account itself, with `--escrow-cap` as the escrow, records it, and uses it.
        let mut auto = args(&[
            "chat",
            "--host",
            &bound,
            "--dangerous-allow-simulated",
            &root,
        ]);
        auto.extend(args(&[
            "--dangerous-any-measurement",
            "--escrow-cap",
            "700",
        ]));
        auto.extend(args(&chain_args));
        auto.push("hello".to_owned());
        let (code, stdout, stderr) = tenant(auto).await;
        assert_eq!(
            code, 2,
            "the simulated host serves no chat: {stdout}{stderr}"
        );
        let opened = stderr
            .split("opened channel ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no channel opened: {stderr}"))
            .to_owned();
        assert!(
            stderr.contains(&format!("using channel {opened}")),
            "{stderr}"
        );
        let info = deployment
            .channel(B256::from_hex(&opened).unwrap())
            .await
            .unwrap();
        assert_eq!(info.status, dait_chain_client::evm::ChannelStatus::Open);
        assert_eq!(info.escrow, 700);
        assert!(
            Path::new(&state)
                .join("channels")
                .join(opened.trim_start_matches("0x"))
                .join("onchain.json")
                .is_file()
        );
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
    .expect("test timed out");
}
