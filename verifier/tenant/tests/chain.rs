//! `dait-tenant channel …` and the `chain` module against the committed settlement contract on a local anvil
//! started here (`dait_chain_client::evm::anvil`; without anvil these tests fail: run
//! `scripts/install-chain-tools.sh`):
//!
//! - deploy token and settlement, register a host, publish a release, attest the vectors' keyset;
//! - `channel check` and [`check_host`]: the attested host passes; an unregistered host, a keyset not
//!   attested for the epoch, a revoked release, an epoch without attestation and an unbonding host are each
//!   refused with their own error; `chat --settlement` runs the same check (tests/cli.rs);
//! - `open` → `status` → a cooperative `close` with a host-counter-signed final state, balances to the unit;
//!   `close` again fails with the contract's `ChannelClosed` (exit 1);
//! - `final-state` → the host counter-signs it → `close --final-state` (refused while not counter-signed);
//! - HTTPS to the node through a TLS proxy, trusting only `--rpc-ca-file`;
//! - `close` without a final state (`startClose`) → `withdraw` too early (`WindowNotOver`, exit 1) →
//!   `challenge` with a higher turn → nothing more to challenge → `withdraw` after the window, the refund to
//!   the unit.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;
use std::process::Command;

use dait_chain_client::evm::anvil::{Anvil, Hardfork};
use dait_chain_client::evm::{Params, Settlement, Token, account_address, connect_http, convert};
use dait_chain_client::{
    Address, B256, ChannelState, Domain, HostSigningKey, Keyset, Receipt, SignedChannelState,
    TenantSigner, WireMessage,
};
use dait_tenant::chain::{CheckError, check_host};
use serde_json::Value;

const E18: u128 = 1_000_000_000_000_000_000;
const DAY: u64 = 86_400;
const TENANT_SECRET: [u8; 32] = [0x22; 32];
const HOST_OP: usize = 0;
const TOKEN_DEPLOYER: usize = 1;
const OWNER: usize = 2;

fn vectors() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../chain-client/tests/vectors/keyset.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn unhex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap().trim_start_matches("0x")).unwrap()
}

struct Setup {
    chain: Anvil,
    settlement: Settlement,
    token: Token,
    owner: Settlement,
    host: Address,
    host_key: HostSigningKey,
    keyset_hash: B256,
    release: B256,
    dir: tempfile_dir::Dir,
}

mod tempfile_dir {
    /// A directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Token from anvil's second account, settlement from its first at nonce 0 (the address the vectors' keyset
/// is bound to); the first account is also the host operator, registered with one GPU, and attests the
/// vectors' keyset under a published release. The tenant gets ether and tokens and its key file.
async fn setup(name: &str) -> Setup {
    let chain = Anvil::start(Hardfork::Osaka).unwrap();
    let provider = |i: usize| connect_http(chain.url(), Some(&Anvil::DEV_KEYS[i])).unwrap();
    let token = Token::deploy_test_token(provider(TOKEN_DEPLOYER))
        .await
        .unwrap();
    let owner_address = account_address(&Anvil::DEV_KEYS[OWNER]).unwrap();
    let params = Params {
        token: token.address(),
        owner: owner_address,
        stake_per_gpu: 100 * E18,
        unbonding_delay: 7 * DAY,
        challenge_window: DAY,
        release_delay: 3600,
        epoch_nonce_rotation_blocks: 100,
        commit_reveal_window: 5,
        reveal_window: 64,
        sample_size: 8,
    };
    let settlement = Settlement::deploy(provider(HOST_OP), &params)
        .await
        .unwrap();
    let owner = Settlement::at(settlement.address(), provider(OWNER))
        .await
        .unwrap();
    let host = account_address(&Anvil::DEV_KEYS[HOST_OP]).unwrap();
    let host_token = Token::at(token.address(), provider(HOST_OP));
    host_token.mint(host, 1_000 * E18).await.unwrap();
    host_token
        .approve(settlement.address(), None)
        .await
        .unwrap();
    settlement.register_host(&[B256([0x9a; 32])]).await.unwrap();

    let latest = chain
        .rpc("eth_getBlockByNumber", r#"["latest", false]"#)
        .unwrap();
    let latest: Value = serde_json::from_str(&latest).unwrap();
    let t = u64::from_str_radix(
        latest["timestamp"]
            .as_str()
            .unwrap()
            .trim_start_matches("0x"),
        16,
    )
    .unwrap();
    let release = B256([0x2e; 32]);
    owner
        .publish_release(release, B256([1; 32]), t - 10, t + 365 * DAY)
        .await
        .unwrap();
    chain.increase_time(3601).unwrap();

    let kv = vectors();
    let host_key =
        HostSigningKey::from_bytes(&<[u8; 32]>::try_from(unhex(&kv["host_secret"])).unwrap())
            .unwrap();
    let keyset_hash = B256::from_slice(&unhex(&kv["keyset_hash"])).unwrap();
    let epoch = settlement.current_epoch().await.unwrap();
    settlement
        .submit_attestation(
            &convert::keyset_bytes(&Keyset::decode(&unhex(&kv["encoded"])).unwrap()),
            host_key.verifying_key().key_id(),
            epoch,
            B256([0xbb; 32]),
            release,
            "https://h/a",
        )
        .await
        .unwrap();

    let tenant = TenantSigner::from_bytes(&TENANT_SECRET).unwrap().address();
    chain.set_balance(tenant, 1000 * E18).unwrap();
    token.mint(tenant, 1_000 * E18).await.unwrap();
    let dir = std::env::temp_dir().join(format!("dait-tenant-chain-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("wallet.key"), hex::encode(TENANT_SECRET)).unwrap();
    Setup {
        chain,
        settlement,
        token,
        owner,
        host,
        host_key,
        keyset_hash,
        release,
        dir: tempfile_dir::Dir(dir),
    }
}

impl Setup {
    fn state_dir(&self) -> PathBuf {
        self.dir.0.join("state")
    }

    /// Runs `dait-tenant channel <args> --rpc-url … --settlement … --wallet-key … --state-dir …`.
    fn tenant(&self, args: &[&str]) -> (i32, Value, String) {
        self.tenant_via(self.chain.url(), args)
    }

    /// [`Self::tenant`] through the RPC URL `url`.
    fn tenant_via(&self, url: &str, args: &[&str]) -> (i32, Value, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_dait-tenant"))
            .arg("channel")
            .args(args)
            .args(["--rpc-url", url])
            .args(["--settlement", &self.settlement.address().to_string()])
            .args([
                "--wallet-key",
                &self.dir.0.join("wallet.key").display().to_string(),
            ])
            .args(["--state-dir", &self.state_dir().display().to_string()])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
        (out.status.code().unwrap_or(-1), json, stderr)
    }

    fn domain(&self) -> Domain {
        self.settlement.domain()
    }

    /// Writes `state` signed by the tenant (and counter-signed by the host when `cosign`) as the session's
    /// `channels/<id>/state.pb`.
    fn store_state(&self, state: &ChannelState, cosign: bool) {
        let tenant = TenantSigner::from_bytes(&TENANT_SECRET).unwrap();
        let signed = SignedChannelState {
            state: state.clone(),
            tenant_signature: tenant.sign_state(state, &self.domain()),
            host_signature: cosign.then(|| self.host_key.cosign_state(state, &self.domain())),
        };
        let dir = self
            .state_dir()
            .join("channels")
            .join(hex::encode(state.channel_id.as_bytes()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("state.pb"), signed.encode()).unwrap();
    }
}

fn balance(report: &Value, who: &str) -> (u128, u128) {
    let b = report["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["who"] == who)
        .unwrap_or_else(|| panic!("no {who} balance in {report}"));
    (
        b["before"].as_str().unwrap().parse().unwrap(),
        b["after"].as_str().unwrap().parse().unwrap(),
    )
}

fn tx_names(report: &Value) -> Vec<String> {
    report["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert!(t["tx_hash"].as_str().unwrap().len() == 66, "{t}");
            t["name"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn open(s: &Setup, escrow: u128, max_per_call: u128) -> (B256, Value) {
    let (code, out, err) = s.tenant(&[
        "open",
        "--host-account",
        &s.host.to_string(),
        "--escrow",
        &escrow.to_string(),
        "--max-calls",
        "10",
        "--max-per-call",
        &max_per_call.to_string(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(tx_names(&out), ["approve", "openChannel"]);
    let (before, after) = balance(&out, "tenant");
    assert_eq!(before - after, escrow);
    let (before, after) = balance(&out, "settlement");
    assert_eq!(after - before, escrow);
    let id = B256::from_hex(out["channel_id"].as_str().unwrap()).unwrap();
    assert!(
        s.state_dir()
            .join("channels")
            .join(hex::encode(id.as_bytes()))
            .join("onchain.json")
            .is_file()
    );
    (id, out)
}

/// A receipt of call `call_seq` signed by the vectors' host key, ending at `cumulative`.
fn receipt(s: &Setup, channel: B256, call_seq: u64, cumulative: u128) -> Receipt {
    Receipt {
        version: 1,
        channel_id: channel,
        call_seq,
        host_key_id: s.host_key.verifying_key().key_id(),
        keyset_hash: s.keyset_hash,
        model_id: "m".into(),
        weight_hash: B256([0xa1; 32]),
        request_hash: B256([1; 32]),
        response_hash: B256([2; 32]),
        request_ct_hash: B256([3; 32]),
        response_ct_hash: B256([4; 32]),
        tokens_in: 1,
        tokens_out: 1,
        price_in: 1,
        price_out: 1,
        amount: 2,
        cumulative,
        prev_receipt_hash: B256::ZERO,
        timestamp: 1_767_225_600,
        seed: 0,
        engine_build: B256([0xeb; 32]),
        deterministic: true,
    }
}

fn channel_state(s: &Setup, id: B256, escrow: u128, turn: u64, cumulative: u128) -> ChannelState {
    let tenant = TenantSigner::from_bytes(&TENANT_SECRET).unwrap().address();
    let mut state = ChannelState::open(id, escrow, tenant, s.host);
    state.turn = turn;
    state.cumulative = cumulative;
    state.last_receipt_hash = B256([turn as u8; 32]);
    state
}

#[tokio::test]
async fn check_accepts_the_attested_host_and_refuses_the_others() {
    let s = setup("check").await;
    let attested = check_host(&s.settlement, s.host, s.keyset_hash)
        .await
        .unwrap();
    assert_eq!(attested.release_id, s.release);
    assert_eq!(attested.keyset_hash, s.keyset_hash);
    let (code, out, err) = s.tenant(&[
        "check",
        "--host-account",
        &s.host.to_string(),
        "--keyset-hash",
        &s.keyset_hash.to_string(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["release_id"], s.release.to_string());

    // An operator nobody registered.
    let stranger = Address([0x77; 20]);
    assert!(matches!(
        check_host(&s.settlement, stranger, s.keyset_hash).await,
        Err(CheckError::HostNotRegistered { operator }) if operator == stranger
    ));
    let (code, _, err) = s.tenant(&[
        "check",
        "--host-account",
        &stranger.to_string(),
        "--keyset-hash",
        &s.keyset_hash.to_string(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is not registered"), "{err}");

    // A keyset the host did not attest for this epoch.
    let other = B256([0x44; 32]);
    assert!(matches!(
        check_host(&s.settlement, s.host, other).await,
        Err(CheckError::KeysetNotAttested { attested, verified, .. })
            if attested == s.keyset_hash && verified == other
    ));

    // The attestation's release revoked.
    s.owner.revoke_release(s.release).await.unwrap();
    assert!(matches!(
        check_host(&s.settlement, s.host, s.keyset_hash).await,
        Err(CheckError::ReleaseRevoked { release }) if release == s.release
    ));

    // The next epoch, before the host attests again: no attestation at all.
    let epoch = s.settlement.current_epoch().await.unwrap();
    s.chain.mine(100).unwrap();
    assert!(matches!(
        check_host(&s.settlement, s.host, s.keyset_hash).await,
        Err(CheckError::NotAttested { operator, epoch: e }) if operator == s.host && e == epoch + 1
    ));

    // An operator that started unbonding.
    s.settlement.begin_unbonding().await.unwrap();
    assert!(matches!(
        check_host(&s.settlement, s.host, s.keyset_hash).await,
        Err(CheckError::HostUnbonding { operator, .. }) if operator == s.host
    ));
}

#[tokio::test]
async fn open_status_and_a_cooperative_close() {
    let s = setup("coop").await;
    let escrow = 5 * E18;
    let (id, _) = open(&s, escrow, E18);

    // The session's latest state: turn 2, final, counter-signed by the host's attested receipt key.
    let spent = 1_234_567_890_123_456_789;
    let mut state = channel_state(&s, id, escrow, 2, spent);
    state.is_final = true;
    s.store_state(&state, true);

    let (code, out, err) = s.tenant(&["status", "--channel", &id.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["onchain"]["phase"], "Open");
    assert_eq!(out["onchain"]["escrow"], escrow.to_string());
    assert_eq!(out["onchain"]["paid"], "0");
    assert!(out["onchain"]["deadline"].as_u64().unwrap() > 0, "{out}");
    assert!(out["onchain"]["window_end"].is_null(), "{out}");
    assert_eq!(out["local"]["state"]["turn"], 2, "{out}");
    assert_eq!(out["local"]["is_final"], true);
    assert_eq!(out["local"]["host_counter_signed"], true);

    // Without --host-key-id the key comes from the last recorded receipt; none was recorded here.
    let (code, _, err) = s.tenant(&["close", "--channel", &id.to_string()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no host key id"), "{err}");

    // With the session's receipt log, the key comes from its last receipt.
    let key_id = s.host_key.verifying_key().key_id().to_string();
    let last = s
        .host_key
        .sign_receipt(receipt(&s, id, 2, spent), &s.domain());
    std::fs::write(
        s.state_dir()
            .join("channels")
            .join(hex::encode(id.as_bytes()))
            .join("receipts.b64"),
        format!("{}\n", last.to_header_value()),
    )
    .unwrap();
    let (code, out, err) = s.tenant(&["close", "--channel", &id.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["close"], "cooperative");
    assert_eq!(tx_names(&out), ["closeChannel"]);
    let (before, after) = balance(&out, "tenant");
    assert_eq!(after - before, escrow - spent);
    let (before, after) = balance(&out, "host");
    assert_eq!(after - before, spent);
    let (before, after) = balance(&out, "settlement");
    assert_eq!(before - after, escrow);
    assert_eq!(s.settlement.channel(id).await.unwrap().paid, spent);

    // Closing a closed channel: the contract's error name, exit 1.
    let (code, _, err) = s.tenant(&[
        "close",
        "--channel",
        &id.to_string(),
        "--host-key-id",
        &key_id,
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("revert: ChannelClosed"), "{err}");
}

#[tokio::test]
async fn unilateral_close_challenge_and_withdraw() {
    let s = setup("unilateral").await;
    let escrow = 3 * E18;
    let (id, _) = open(&s, escrow, E18);

    // No final state: startClose, and the window's end is reported.
    let (code, out, err) = s.tenant(&["close", "--channel", &id.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["close"], "unilateral");
    assert_eq!(tx_names(&out), ["startClose"]);
    let window_end = out["window_end"].as_u64().unwrap();
    assert_eq!(s.settlement.channel(id).await.unwrap().time, window_end);
    let (code, out, err) = s.tenant(&["status", "--channel", &id.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["onchain"]["phase"], "Closing");
    assert_eq!(out["onchain"]["window_end"], window_end);
    assert!(out["local"].is_null(), "{out}");

    // Too early to withdraw: the contract's WindowNotOver.
    let (code, _, err) = s.tenant(&["withdraw", "--channel", &id.to_string()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("revert: WindowNotOver"), "{err}");

    // The chain holds turn 0; the tenant's co-signed state is at turn 3: challenge pays the host up to it.
    let spent = 2 * E18 + 17;
    s.store_state(&channel_state(&s, id, escrow, 3, spent), false);
    let (code, out, err) = s.tenant(&["challenge", "--channel", &id.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(tx_names(&out), ["claim"]);
    let (before, after) = balance(&out, "host");
    assert_eq!(after - before, spent);
    assert_eq!(s.settlement.channel(id).await.unwrap().turn, 3);

    // Nothing higher to submit now.
    let (code, _, err) = s.tenant(&["challenge", "--channel", &id.to_string()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("nothing higher to submit"), "{err}");

    // After the window: finalize refunds the rest.
    s.chain.increase_time(DAY + 1).unwrap();
    let (code, out, err) = s.tenant(&["withdraw", "--channel", &id.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(tx_names(&out), ["finalize"]);
    assert_eq!(out["refund"], (escrow - spent).to_string());
    let (before, after) = balance(&out, "tenant");
    assert_eq!(after - before, escrow - spent);
    assert_eq!(
        s.token
            .balance_of(s.settlement.address())
            .await
            .unwrap()
            .to_string(),
        (100 * E18).to_string(),
        "only the host's stake is left in the contract"
    );
}

#[tokio::test]
async fn the_final_state_the_host_counter_signs_closes_the_channel() {
    let s = setup("final").await;
    let escrow = 2 * E18;
    let (id, _) = open(&s, escrow, E18);
    let spent = 123_456;
    s.store_state(&channel_state(&s, id, escrow, 4, spent), false);

    // The tenant's final state: the local state with is_final, signed by the tenant only.
    let (code, out, err) = s.tenant(&["final-state", "--channel", &id.to_string()]);
    assert_eq!(code, 0, "{err}");
    let header = out["state"]["signed_state"].as_str().unwrap();
    let mut signed = SignedChannelState::from_header_value(header).unwrap();
    assert!(signed.state.is_final);
    assert_eq!((signed.state.turn, signed.state.cumulative), (4, spent));
    assert_eq!(
        out["digest"],
        signed.state.signing_digest(&s.domain()).to_string()
    );
    let file = s.dir.0.join("final.b64");

    // Not yet counter-signed: refused before anything is sent.
    std::fs::write(&file, signed.to_header_value()).unwrap();
    let close = [
        "close",
        "--channel",
        &id.to_string(),
        "--final-state",
        &file.display().to_string(),
        "--host-key-id",
        &s.host_key.verifying_key().key_id().to_string(),
    ];
    let (code, _, err) = s.tenant(&close);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no host counter-signature"), "{err}");

    // The host counter-signs it: a cooperative close, balances to the unit.
    signed.host_signature = Some(s.host_key.cosign_state(&signed.state, &s.domain()));
    std::fs::write(&file, signed.to_header_value()).unwrap();
    let (code, out, err) = s.tenant(&close);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["close"], "cooperative");
    let (before, after) = balance(&out, "tenant");
    assert_eq!(after - before, escrow - spent);
    let (before, after) = balance(&out, "host");
    assert_eq!(after - before, spent);
}

/// A TLS proxy on 127.0.0.1 in front of the chain's node, with a fresh self-signed certificate: the
/// proxy's `https://` URL and the certificate (PEM).
async fn tls_proxy(chain: &Anvil) -> (String, String) {
    use std::sync::Arc;
    let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .self_signed(&key_pair)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key_pair.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let upstream = chain.url().trim_start_matches("http://").to_owned();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut node) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut node).await;
            });
        }
    });
    (format!("https://{addr}"), cert.pem())
}

/// HTTPS to the node: the CA file's certificate is the only root; another CA is an RPC error (2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_rpc_trusts_only_the_ca_file() {
    let s = setup("https").await;
    let (url, pem) = tls_proxy(&s.chain).await;
    let (ca, other) = (s.dir.0.join("ca.pem"), s.dir.0.join("other.pem"));
    std::fs::write(&ca, pem).unwrap();
    let other_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let other_cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .self_signed(&other_key)
        .unwrap();
    std::fs::write(&other, other_cert.pem()).unwrap();
    let check = |ca: &std::path::Path| {
        let (url, ca, host, keyset) = (
            url.clone(),
            ca.display().to_string(),
            s.host.to_string(),
            s.keyset_hash.to_string(),
        );
        let args = [
            "check",
            "--host-account",
            &host,
            "--keyset-hash",
            &keyset,
            "--rpc-ca-file",
            &ca,
        ];
        s.tenant_via(&url, &args)
    };
    let (code, out, err) = tokio::task::block_in_place(|| check(&ca));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["release_id"], s.release.to_string());
    let (code, _, err) = tokio::task::block_in_place(|| check(&other));
    assert_eq!(code, 2, "{err}");
}
