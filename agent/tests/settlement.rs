//! The agent on the settlement contract (feature `settlement`) on a real anvil: the committed token and
//! settlement deployed, a release published, the host registered through `dait-host register`, its
//! keyset attested for the current epoch through `dait-host attest-epoch` (the contract records the served bundle's
//! hash; the bundle verifies with `Freshness::ChainEpoch`), again in the next epoch, and a keyset bound to
//! another chain refused with the contract's error.
//!
//! Anvil comes from `scripts/install-chain-tools.sh` (or `DAIT_ANVIL`); without it these tests fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Output;

use dait_chain_client::evm::anvil::{Anvil, Hardfork};
use dait_chain_client::evm::{Params, Settlement, Token, account_address, connect_http};
use dait_chain_client::{B256, Freshness, WireMessage as _, bundle_hash, keyset_hash};
use dait_verifier::UnixTime;
use dait_verifier::bundle::{Policy, verify_bundle};

const E18: u128 = 1_000_000_000_000_000_000;
const DAY: u64 = 86_400;
const DEPLOYER: usize = 0;
const OWNER: usize = 2;
const OPERATOR: usize = 1;
const EPOCH_BLOCKS: u64 = 20;
const RELEASE: [u8; 32] = [0x2e; 32];

struct Chain {
    anvil: Anvil,
    settlement: Settlement,
    token: Token,
    dir: tempfile::TempDir,
}

impl Chain {
    fn key_file(&self) -> String {
        let path = self.dir.path().join("operator.key");
        std::fs::write(&path, hex::encode(Anvil::DEV_KEYS[OPERATOR])).unwrap();
        path.to_str().unwrap().to_owned()
    }

    fn state(&self) -> String {
        self.dir.path().join("state").to_str().unwrap().to_owned()
    }
}

/// Token and settlement deployed, the operator funded, a release published and usable.
async fn deploy() -> Chain {
    let anvil = Anvil::start(Hardfork::Osaka).unwrap();
    let deployer = connect_http(anvil.url(), Some(&Anvil::DEV_KEYS[DEPLOYER])).unwrap();
    let token = Token::deploy_test_token(deployer.clone()).await.unwrap();
    let owner = account_address(&Anvil::DEV_KEYS[OWNER]).unwrap();
    let settlement = Settlement::deploy(
        deployer,
        &Params {
            token: token.address(),
            owner,
            stake_per_gpu: 100 * E18,
            unbonding_delay: 7 * DAY,
            challenge_window: DAY,
            release_delay: 3600,
            epoch_nonce_rotation_blocks: EPOCH_BLOCKS,
            commit_reveal_window: 5,
            reveal_window: 64,
            sample_size: 8,
        },
    )
    .await
    .unwrap();
    let operator = account_address(&Anvil::DEV_KEYS[OPERATOR]).unwrap();
    token.mint(operator, 1_000 * E18).await.unwrap();
    let as_owner = Settlement::at(
        settlement.address(),
        connect_http(anvil.url(), Some(&Anvil::DEV_KEYS[OWNER])).unwrap(),
    )
    .await
    .unwrap();
    let t = now(&anvil);
    as_owner
        .publish_release(B256(RELEASE), B256([1; 32]), t - 10, t + 365 * DAY)
        .await
        .unwrap();
    anvil.increase_time(3601).unwrap();
    anvil.mine(1).unwrap();
    settlement.check_release(B256(RELEASE)).await.unwrap();
    Chain {
        anvil,
        settlement,
        token,
        dir: tempfile::tempdir().unwrap(),
    }
}

fn now(anvil: &Anvil) -> u64 {
    let block = anvil
        .rpc("eth_getBlockByNumber", r#"["latest", false]"#)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&block).unwrap();
    let ts = v["timestamp"].as_str().unwrap();
    u64::from_str_radix(ts.trim_start_matches("0x"), 16).unwrap()
}

fn host(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_dait-host"))
        .args(args)
        .env_remove("DAIT_CHAIN_RPC")
        .env_remove("DAIT_SETTLEMENT")
        .env_remove("DAIT_HOST_KEY_PATH")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn field<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(name).map(str::trim))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

fn b256(text: &str) -> B256 {
    let mut b = [0u8; 32];
    hex::decode_to_slice(text.trim_start_matches("0x"), &mut b).unwrap();
    B256(b)
}

fn attest_epoch(c: &Chain, out: &Path, extra: &[&str]) -> Output {
    let settlement = c.settlement.address().to_string();
    let key = c.key_file();
    let state = c.state();
    let release = hex::encode(RELEASE);
    let mut args = vec![
        "attest-epoch",
        "--tee",
        "simulated",
        "--state-dir",
        &state,
        "--chain-rpc",
        c.anvil.url(),
        "--settlement",
        &settlement,
        "--host-key-path",
        &key,
        "--release-id",
        &release,
        "--bundle-uri",
        "https://host.example/attestation",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    host(&args)
}

fn register(c: &Chain, gpus: &[&str]) -> Output {
    let settlement = c.settlement.address().to_string();
    let key = c.key_file();
    let mut args = vec![
        "register",
        "--rpc-url",
        c.anvil.url(),
        "--settlement",
        &settlement,
        "--host-key-path",
        &key,
    ];
    for g in gpus {
        args.extend_from_slice(&["--gpu-id", g]);
    }
    host(&args)
}

/// Checks one `attest-epoch` run against the chain and the verifier; returns its epoch.
async fn check_attestation(c: &Chain, text: &str, bundle_path: &Path, policy: &Policy) -> u64 {
    let operator = account_address(&Anvil::DEV_KEYS[OPERATOR]).unwrap();
    let epoch: u64 = field(text, "epoch ").parse().unwrap();
    assert_eq!(epoch, c.settlement.current_epoch().await.unwrap());
    let nonce = c.settlement.epoch_nonce(epoch).await.unwrap();
    assert!(nonce.recorded, "attest-epoch records the epoch nonce");
    assert_eq!(b256(field(text, "epoch_nonce ")), nonce.nonce);

    let bytes = std::fs::read(bundle_path).unwrap();
    let hash = bundle_hash(&bytes);
    assert_eq!(b256(field(text, "bundle_hash ")), hash);
    let recorded = c
        .settlement
        .instance()
        .attestations(operator.into(), epoch)
        .call()
        .await
        .unwrap();
    assert_eq!(
        B256(recorded.bundleHash.0),
        hash,
        "the served bundle's hash is on chain"
    );
    assert_eq!(B256(recorded.releaseId.0), B256(RELEASE));

    let bundle = dait_chain_client::decode_bundle(&bytes).unwrap();
    let keyset = dait_chain_client::Keyset::decode(&bundle.keyset).unwrap();
    assert_eq!(keyset.host_account, operator);
    assert_eq!(B256(recorded.keysetHash.0), keyset_hash(&bundle.keyset));
    let freshness = Freshness::ChainEpoch {
        epoch,
        nonce: nonce.nonce.0,
    };
    verify_bundle(&bytes, policy, &freshness, UnixTime::now()).unwrap();
    // Bound to this epoch's nonce: any other freshness fails.
    assert!(
        verify_bundle(
            &bytes,
            policy,
            &Freshness::TenantNonce(nonce.nonce.0),
            UnixTime::now()
        )
        .is_err()
    );
    epoch
}

#[tokio::test(flavor = "multi_thread")]
async fn register_then_attest_each_epoch() {
    let c = deploy().await;
    let operator = account_address(&Anvil::DEV_KEYS[OPERATOR]).unwrap();
    let balance = c.token.balance_of(operator).await.unwrap();

    // Register two GPUs: the stake is approved and locked, the GPU ids are the core's hashes.
    let out = register(&c, &["GPU-5a1c0000-0000-0000-0000-000000000001", "GPU-2"]);
    let text = stdout(&out);
    assert!(text.contains("registerHost 0x"), "{text}");
    assert!(text.contains("status success"), "{text}");
    let info = c.settlement.host(operator).await.unwrap();
    assert_eq!(info.stake, 200 * E18);
    assert_eq!(info.gpu_count, 2);
    let after = c.token.balance_of(operator).await.unwrap();
    assert_eq!((balance - after).to_string(), (200 * E18).to_string());

    // Without --gpu-id the ids come from NVML: on a machine without the NVIDIA driver that fails, by name, exit 1,
    // before anything is sent.
    if Path::new("/dev/nvidiactl").exists() {
        eprintln!(
            "skipped: register without --gpu-id failing cleanly (an NVIDIA driver is present; just test-hw covers it)"
        );
    } else {
        let none = register(&c, &[]);
        assert_eq!(none.status.code(), Some(1));
        let err = String::from_utf8_lossy(&none.stderr);
        assert!(
            err.contains("NVML") || err.contains("NVIDIA driver"),
            "{err}"
        );
    }

    // Registering again: the contract's error by name, exit 1.
    let again = register(&c, &["GPU-3"]);
    assert_eq!(again.status.code(), Some(1));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("HostAlreadyRegistered"), "{err}");

    // Attest for the current epoch.
    stdout(&host(&[
        "init",
        "--tee",
        "simulated",
        "--state-dir",
        &c.state(),
    ]));
    let root = std::fs::read_to_string(c.dir.path().join("state/sim-root.pub")).unwrap();
    let policy = Policy::new()
        .dangerous_allow_simulated(&hex::decode(root.trim()).unwrap())
        .unwrap();
    let first = c.dir.path().join("epoch-1.bin");
    let text = stdout(&attest_epoch(&c, &first, &[]));
    let e1 = check_attestation(&c, &text, &first, &policy).await;

    // The next epoch: mined into, attested again with a new nonce.
    c.anvil.mine(EPOCH_BLOCKS).unwrap();
    let second = c.dir.path().join("epoch-2.bin");
    let text = stdout(&attest_epoch(&c, &second, &[]));
    let e2 = check_attestation(&c, &text, &second, &policy).await;
    assert_eq!(e2, e1 + 1);
    assert_ne!(
        c.settlement.epoch_nonce(e1).await.unwrap().nonce,
        c.settlement.epoch_nonce(e2).await.unwrap().nonce
    );

    // A keyset bound to another chain: refused by the contract, by name.
    let other = c.dir.path().join("other-chain.bin");
    let out = attest_epoch(&c, &other, &["--chain-id", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("KeysetChainIdMismatch"), "{err}");
}

/// The cooperative close: the agent counter-signs the tenant's final state when it matches its channel head
/// (after one call of 41 units) and `closeChannel` accepts the counter-signature and pays to the unit; a final
/// state that does not match the head is refused.
#[tokio::test(flavor = "multi_thread")]
async fn countersigned_final_state_closes_the_channel_on_chain() {
    use clap::Parser as _;
    use dait_agent::config::{Cli, Command};
    use dait_agent::receipt::CallFacts;
    use dait_agent::settlement::close::{CloseError, countersign};
    use dait_chain_client::evm::OnchainChannelState;
    use dait_chain_client::{ChannelState, SignedChannelState, StateError, TenantSigner};

    let c = deploy().await;
    stdout(&register(&c, &["GPU-1"]));
    stdout(&host(&[
        "init",
        "--tee",
        "simulated",
        "--state-dir",
        &c.state(),
    ]));
    let settlement = c.settlement.address().to_string();
    let key = c.key_file();
    let state = c.state();
    let Command::Serve { raw } = Cli::try_parse_from([
        "dait-host",
        "serve",
        "--tee",
        "simulated",
        "--state-dir",
        &state,
        "--chain-rpc",
        c.anvil.url(),
        "--settlement",
        &settlement,
        "--host-key-path",
        &key,
        "--price-in",
        "2",
        "--price-out",
        "7",
    ])
    .unwrap()
    .command
    else {
        panic!("not serve")
    };
    let config = raw.validate().unwrap();
    let app = dait_agent::build_app(&config, dait_agent::Mode::Attest).unwrap();
    let operator = account_address(&Anvil::DEV_KEYS[OPERATOR]).unwrap();
    assert_eq!(app.keys.host_account, operator);
    let secret = dait_agent::settlement::read_operator_key(Path::new(&key)).unwrap();
    let as_operator =
        dait_agent::settlement::connect(c.anvil.url(), c.settlement.address(), &secret)
            .await
            .unwrap();
    dait_agent::settlement::attest_epoch(&app, &as_operator, B256(RELEASE), "https://h/a")
        .await
        .unwrap();

    // The tenant opens a channel to the operator account.
    let tenant_secret = Anvil::DEV_KEYS[OWNER];
    let tenant = account_address(&tenant_secret).unwrap();
    let tenant_provider = connect_http(c.anvil.url(), Some(&tenant_secret)).unwrap();
    let tenant_client = Settlement::at(c.settlement.address(), tenant_provider.clone())
        .await
        .unwrap();
    let tenant_token = Token::at(c.token.address(), tenant_provider);
    c.token.mint(tenant, 1_000).await.unwrap();
    tenant_token
        .approve(c.settlement.address(), None)
        .await
        .unwrap();
    let salt = B256([0x5a; 32]);
    let escrow = 1_000u128;
    let deadline = now(&c.anvil) + 30 * DAY;
    let (id, _) = tenant_client
        .open_channel(operator, salt, escrow, 10, 100, deadline)
        .await
        .unwrap();
    let domain = app.keys.domain;
    let signer = TenantSigner::from_bytes(&tenant_secret).unwrap();
    let sign = |s: ChannelState| SignedChannelState {
        tenant_signature: signer.sign_state(&s, &domain),
        state: s,
        host_signature: None,
    };

    // One call through the agent's channel head: 3 tokens in at 2, 5 out at 7 = 41.
    let open = sign(ChannelState::open(id, escrow, tenant, operator));
    let log_dir = tempfile::tempdir().unwrap();
    let (log, _) = dait_agent::receipt_log::ReceiptLog::open(log_dir.path()).unwrap();
    let lease = app.channels.begin(&open, &domain, operator, 100).unwrap();
    let facts = CallFacts {
        request_hash: B256([5; 32]),
        response_hash: B256([6; 32]),
        request_ct_hash: B256([7; 32]),
        response_ct_hash: B256::ZERO,
        tokens_in: 3,
        tokens_out: 5,
        timestamp: now(&c.anvil),
        replay_seed: None,
    };
    let receipt = lease
        .commit(&facts, &app.params, &app.keys.receipt, &domain, &log)
        .await
        .unwrap();
    assert_eq!(receipt.receipt.cumulative, 41);
    let mut last = open.state.clone();
    last.turn = 1;
    last.cumulative = 41;
    last.last_receipt_hash = receipt.receipt.signing_digest(&domain);
    last.is_final = true;

    // States that do not match the head are refused, and leave the channel open.
    let mut wrong = last.clone();
    wrong.cumulative = 40;
    let e = countersign(&app, &sign(wrong).to_header_value()).unwrap_err();
    assert!(
        matches!(e, CloseError::State(StateError::CumulativeMismatch)),
        "{e:?}"
    );
    let mut ahead = last.clone();
    ahead.turn = 2;
    let e = countersign(&app, &sign(ahead).to_header_value()).unwrap_err();
    assert!(
        matches!(e, CloseError::State(StateError::Unknown { .. })),
        "{e:?}"
    );
    let mut not_final = last.clone();
    not_final.is_final = false;
    let e = countersign(&app, &sign(not_final).to_header_value()).unwrap_err();
    assert!(matches!(e, CloseError::NotFinal), "{e:?}");
    let mut forged = sign(last.clone());
    forged.tenant_signature = TenantSigner::from_bytes(&[0x33; 32])
        .unwrap()
        .sign_state(&last, &domain);
    let e = countersign(&app, &forged.to_header_value()).unwrap_err();
    assert!(
        matches!(e, CloseError::State(StateError::TenantSignature(_))),
        "{e:?}"
    );
    assert!(matches!(
        countersign(&app, "not base64!"),
        Err(CloseError::Malformed)
    ));

    // The matching final state: counter-signed, then closed on chain with the host key's signature.
    let fin = sign(last.clone());
    let signed = countersign(&app, &fin.to_header_value()).unwrap();
    let host_sig = signed.host_signature.unwrap();
    let tenant_before = c.token.balance_of(tenant).await.unwrap();
    let host_before = c.token.balance_of(operator).await.unwrap();
    tenant_client
        .close_channel(
            salt,
            &OnchainChannelState::from(&signed.state),
            &signed.tenant_signature,
            app.keys.host_key_id,
            Some(&host_sig),
        )
        .await
        .unwrap();
    let tenant_after = c.token.balance_of(tenant).await.unwrap();
    let host_after = c.token.balance_of(operator).await.unwrap();
    assert_eq!((tenant_after - tenant_before).to_string(), "959");
    assert_eq!((host_after - host_before).to_string(), "41");
}
