//! Protocol test vectors (PROTOCOL.md §9), checked in both directions.
//!
//! `tests/vectors/*.json` are produced by [`generate`] from fixed keys; signatures are deterministic (RFC 6979),
//! so regenerating gives the same files. `DAIT_WRITE_VECTORS=1 cargo test -p dait-chain-client --test vectors`
//! rewrites them. The checks then read the files *only*: typed values built from the JSON fields must encode to
//! the recorded bytes, and the recorded bytes must decode back to those fields, hash to the recorded digests and
//! carry signatures that verify.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use dait_chain_client::WireMessage as _;
use dait_chain_client::batch::{BatchError, SumNode, SumProof, SumTree, batch_key, sample_indices};
use dait_chain_client::runtime_log::{EventLog, RuntimeLogError};
use dait_chain_client::{
    Address, B256, ChannelHead, ChannelState, DecodeError, Domain, Freshness, HostSignature,
    HostSigningKey, HostVerifyingKey, Keyset, NormalizedResponse, Receipt, ReceiptChain,
    ReceiptError, SignatureError, SignedChannelState, SignedReceipt, StateError, StreamNormalizer,
    TenantSignature, TenantSigner, Usage, bundle_hash, channel_id, decode_bundle, encode_bundle,
    gpu_id_hash, gpu_nonce, keyset_hash, proto, recover_tenant, report_data, runtime_log,
    simulated_key_digest, simulated_report_digest, tagged_sha256, tpm_qualifying_data,
};
use prost::Message as _;
use serde_json::{Value, json};

// ---------- hex and JSON field access ----------

fn hex(bytes: impl AsRef<[u8]>) -> String {
    bytes.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn arr<const N: usize>(v: &Value) -> [u8; N] {
    unhex(v.as_str().unwrap()).try_into().unwrap()
}

fn b256(v: &Value) -> B256 {
    B256(arr(v))
}

fn addr(v: &Value) -> Address {
    Address(arr(v))
}

fn int<T: std::str::FromStr>(v: &Value) -> T
where
    T::Err: std::fmt::Debug,
{
    v.as_str().unwrap().parse().unwrap()
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn load(name: &str) -> Value {
    let text = std::fs::read_to_string(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_str(&text).unwrap()
}

// ---------- fixed inputs ----------

const HOST_SECRET: [u8; 32] = [0x11; 32];
const TENANT_SECRET: [u8; 32] = [0x22; 32];
const ATTESTATION_SECRET: [u8; 32] = [0x33; 32];
const PLATFORM_ROOT_SECRET: [u8; 32] = [0x44; 32];
const SALT: [u8; 32] = [0x5a; 32];
const BATCH_SEED: [u8; 32] = [0x9e; 32];
const BATCH_SAMPLE_SIZE: u32 = 3;
const GPU_UUIDS: [&str; 2] = [
    "GPU-5a1c0b2e-7f3d-4c8a-9b6e-1d2f3a4b5c6d",
    "GPU-00000000-0000-0000-0000-000000000000",
];

fn domain() -> Domain {
    Domain {
        chain_id: 31337,
        settlement: Address::from_hex("0x5FbDB2315678afecb367f032d93F642f64180aa3").unwrap(),
    }
}

fn keyset() -> Keyset {
    let host = HostSigningKey::from_bytes(&HOST_SECRET).unwrap();
    Keyset {
        receipt_key: host.verifying_key().to_sec1(),
        // RFC 9458 §3: key id 1, X25519 (0x0020), a 32-byte public key, one (HKDF-SHA256, AES-128-GCM) suite.
        ohttp_key_config: [
            &[0x01, 0x00, 0x20][..],
            &[0x7e; 32],
            &[0x00, 0x04, 0x00, 0x01, 0x00, 0x01],
        ]
        .concat(),
        tls_spki: unhex(
            "3059301306072a8648ce3d020106082a8648ce3d03010703420004\
             6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296\
             4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5",
        ),
        chain_id: domain().chain_id,
        settlement: domain().settlement,
        created_at: 1_767_225_600,
        boot_id: [0xb0; 16],
        host_account: Address::from_hex("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266").unwrap(),
    }
}

fn receipt_fields(r: &Receipt) -> Value {
    json!({
        "version": r.version,
        "channel_id": hex(r.channel_id), "call_seq": r.call_seq.to_string(),
        "host_key_id": hex(r.host_key_id), "keyset_hash": hex(r.keyset_hash), "model_id": r.model_id,
        "weight_hash": hex(r.weight_hash), "request_hash": hex(r.request_hash), "response_hash": hex(r.response_hash),
        "request_ct_hash": hex(r.request_ct_hash), "response_ct_hash": hex(r.response_ct_hash),
        "tokens_in": r.tokens_in.to_string(), "tokens_out": r.tokens_out.to_string(),
        "price_in": r.price_in.to_string(), "price_out": r.price_out.to_string(),
        "amount": r.amount.to_string(), "cumulative": r.cumulative.to_string(),
        "prev_receipt_hash": hex(r.prev_receipt_hash), "timestamp": r.timestamp.to_string(),
        "seed": r.seed.to_string(), "engine_build": hex(r.engine_build), "deterministic": r.deterministic,
    })
}

fn receipt_from(v: &Value) -> Receipt {
    Receipt {
        version: u32::try_from(v["version"].as_u64().unwrap()).unwrap(),
        channel_id: b256(&v["channel_id"]),
        call_seq: int(&v["call_seq"]),
        host_key_id: b256(&v["host_key_id"]),
        keyset_hash: b256(&v["keyset_hash"]),
        model_id: v["model_id"].as_str().unwrap().into(),
        weight_hash: b256(&v["weight_hash"]),
        request_hash: b256(&v["request_hash"]),
        response_hash: b256(&v["response_hash"]),
        request_ct_hash: b256(&v["request_ct_hash"]),
        response_ct_hash: b256(&v["response_ct_hash"]),
        tokens_in: int(&v["tokens_in"]),
        tokens_out: int(&v["tokens_out"]),
        price_in: int(&v["price_in"]),
        price_out: int(&v["price_out"]),
        amount: int(&v["amount"]),
        cumulative: int(&v["cumulative"]),
        prev_receipt_hash: b256(&v["prev_receipt_hash"]),
        timestamp: int(&v["timestamp"]),
        seed: int(&v["seed"]),
        engine_build: b256(&v["engine_build"]),
        deterministic: v["deterministic"].as_bool().unwrap(),
    }
}

fn state_fields(s: &ChannelState) -> Value {
    json!({
        "channel_id": hex(s.channel_id), "turn": s.turn.to_string(), "cumulative": s.cumulative.to_string(),
        "escrow_cap": s.escrow_cap.to_string(), "last_receipt_hash": hex(s.last_receipt_hash),
        "tenant": hex(s.tenant), "host": hex(s.host), "is_final": s.is_final,
    })
}

fn state_from(v: &Value) -> ChannelState {
    ChannelState {
        channel_id: b256(&v["channel_id"]),
        turn: int(&v["turn"]),
        cumulative: int(&v["cumulative"]),
        escrow_cap: int(&v["escrow_cap"]),
        last_receipt_hash: b256(&v["last_receipt_hash"]),
        tenant: addr(&v["tenant"]),
        host: addr(&v["host"]),
        is_final: v["is_final"].as_bool().unwrap(),
    }
}

/// P-256 group order.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// `n - s` for 32-byte big-endian values.
fn negate_mod_n(s: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(P256_N[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        out[i] = (d + 256 * borrow) as u8;
    }
    out
}

// ---------- the generator ----------

fn response_cases() -> Vec<(&'static str, &'static str, String, Usage)> {
    let chat_body = r#"{"id":"chatcmpl-7","object":"chat.completion","created":1767225601,"model":"smollm2-135m","choices":[{"index":0,"message":{"role":"assistant","content":"Paris is the capital of France.\n\"Ça va?\" — ok 😀"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":9,"total_tokens":21},"system_fingerprint":"b4000"}"#;
    let chunk = |delta: &str, finish: &str| {
        format!(
            "data: {{\"id\":\"chatcmpl-8\",\"object\":\"chat.completion.chunk\",\"created\":1767225602,\"model\":\"smollm2-135m\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}]}}\n\n"
        )
    };
    let chat_sse = [
        chunk(r#"{"role":"assistant","content":null}"#, "null"),
        chunk(r#"{"content":"Paris is the capital"}"#, "null"),
        chunk(r#"{"content":" of France.\n\"Ça va?\""}"#, "null"),
        chunk(r#"{"content":" — ok 😀"}"#, "null"),
        chunk("{}", r#""stop""#),
        "data: [DONE]\n\n".to_string(),
    ]
    .concat();
    let completion_body = r#"{"id":"cmpl-1","object":"text_completion","created":1767225603,"model":"smollm2-135m","choices":[{"index":0,"text":" 4","logprobs":null,"finish_reason":"length"},{"index":1,"text":" four","logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":6,"completion_tokens":3,"total_tokens":9}}"#;
    let completion_sse = "data: {\"id\":\"cmpl-2\",\"choices\":[{\"index\":1,\"text\":\" fo\",\"finish_reason\":null}]}\n\n\
         data: {\"id\":\"cmpl-2\",\"choices\":[{\"index\":0,\"text\":\" 4\",\"finish_reason\":\"length\"}]}\n\n\
         data: {\"id\":\"cmpl-2\",\"choices\":[{\"index\":1,\"text\":\"ur\",\"finish_reason\":\"stop\"}]}\n\n\
         data: {\"id\":\"cmpl-2\",\"choices\":[],\"usage\":{\"prompt_tokens\":6,\"completion_tokens\":3,\"total_tokens\":9}}\n\n\
         data: [DONE]\n\n"
        .to_string();
    let chat_usage = Usage {
        prompt_tokens: 12,
        completion_tokens: 9,
    };
    let completion_usage = Usage {
        prompt_tokens: 6,
        completion_tokens: 3,
    };
    vec![
        ("chat-body", "body", chat_body.to_string(), chat_usage),
        ("chat-sse", "sse", chat_sse, chat_usage),
        (
            "completion-body-two-choices",
            "body",
            completion_body.to_string(),
            completion_usage,
        ),
        (
            "completion-sse-interleaved",
            "sse",
            completion_sse,
            completion_usage,
        ),
    ]
}

fn normalise(kind: &str, input: &str) -> NormalizedResponse {
    match kind {
        "body" => NormalizedResponse::from_body(input.as_bytes()).unwrap(),
        "sse" => {
            let mut s = StreamNormalizer::new();
            s.push(input.as_bytes()).unwrap();
            s.finish().unwrap()
        }
        other => panic!("unknown kind {other}"),
    }
}

fn generate() -> BTreeMap<&'static str, Value> {
    let mut files = BTreeMap::new();
    let d = domain();
    let host = HostSigningKey::from_bytes(&HOST_SECRET).unwrap();
    let tenant = TenantSigner::from_bytes(&TENANT_SECRET).unwrap();
    let ks = keyset();
    let ks_bytes = ks.encode();
    let ks_hash = keyset_hash(&ks_bytes);
    let host_key_id = host.verifying_key().key_id();

    files.insert(
        "keyset.json",
        json!({
            "description": "Keyset document (PROTOCOL.md §2): encoded = protobuf Keyset; keyset_hash = SHA-256(\"dait/v1/keyset\" || encoded); host_key_id = SHA-256(receipt_key). gpu_ids: gpu_id_hash = SHA-256(\"dait/v1/gpu-id\" || uuid) (PROTOCOL.md §11).",
            "host_secret": hex(HOST_SECRET),
            "keyset": {
                "version": 1, "receipt_key": hex(ks.receipt_key), "ohttp_key_config": hex(&ks.ohttp_key_config),
                "tls_spki": hex(&ks.tls_spki), "chain_id": ks.chain_id.to_string(), "settlement": hex(ks.settlement),
                "created_at": ks.created_at.to_string(), "boot_id": hex(ks.boot_id), "host_account": hex(ks.host_account),
            },
            "encoded": hex(&ks_bytes),
            "keyset_hash": hex(ks_hash),
            "host_key_id": hex(host_key_id),
            "gpu_ids": GPU_UUIDS.iter().map(|u| json!({"uuid": u, "gpu_id_hash": hex(gpu_id_hash(u))})).collect::<Vec<_>>(),
        }),
    );

    let freshness = [
        Freshness::TenantNonce(*b"tenant-nonce-0123456789abcdefghi"),
        Freshness::ChainEpoch {
            epoch: 42,
            nonce: [0xe7; 32],
        },
    ];
    let cases: Vec<Value> = freshness
        .iter()
        .map(|f| {
            let rd = report_data(&ks_hash, f);
            let gpu: Vec<Value> =
                [0u32, 1, 7].iter().map(|i| json!({"index": i, "nonce": hex(gpu_nonce(&rd, *i))})).collect();
            json!({
                "keyset_hash": hex(ks_hash),
                "freshness": {"kind": f.kind(), "epoch": f.epoch().to_string(), "nonce": hex(f.nonce())},
                "freshness_encoded": hex(f.to_proto().encode_to_vec()),
                "report_data": hex(rd),
                "gpu_nonces": gpu,
                "tpm_qualifying_data": hex(tpm_qualifying_data(&rd)),
            })
        })
        .collect();
    files.insert(
        "report_data.json",
        json!({
            "description": "report_data = SHA-512(\"dait/v1/report-data\" || keyset_hash || kind || u64be(epoch) || nonce); gpu nonce i = SHA-256(\"dait/v1/gpu-nonce\" || report_data || u32be(i)); tpm = SHA-256(\"dait/v1/tpm-qualifying-data\" || report_data) (PROTOCOL.md §3).",
            "cases": cases,
        }),
    );

    // Two chained receipts.
    let cid = channel_id(&d, &tenant.address(), &ks.host_account, &B256(SALT));
    let open = ChannelState::open(
        cid,
        1_000_000_000_000_000_000,
        tenant.address(),
        ks.host_account,
    );
    let (chat_body_hash, chat_usage) = {
        let (_, kind, input, usage) = &response_cases()[0];
        (
            normalise(kind, input).response_hash(*usage).unwrap(),
            *usage,
        )
    };
    let mut r1 = Receipt {
        version: 1,
        channel_id: cid,
        call_seq: 1,
        host_key_id,
        keyset_hash: ks_hash,
        model_id: "smollm2-135m-instruct-q4_1".into(),
        weight_hash: tagged_sha256(b"weights", b"smollm2"),
        request_hash: dait_chain_client::request_hash(
            br#"{"model":"smollm2-135m","messages":[{"role":"user","content":"Capital of France?"}],"temperature":0,"seed":7}"#,
        ),
        response_hash: chat_body_hash,
        request_ct_hash: dait_chain_client::ciphertext_hash(b"ohttp request bytes"),
        response_ct_hash: dait_chain_client::ciphertext_hash(b"ohttp response bytes"),
        tokens_in: chat_usage.prompt_tokens,
        tokens_out: chat_usage.completion_tokens,
        price_in: 1_000_000_000,
        price_out: 3_000_000_000,
        amount: 0,
        cumulative: 0,
        prev_receipt_hash: B256::ZERO,
        timestamp: 1_767_225_601,
        seed: 7,
        engine_build: tagged_sha256(b"engine", b"llama-cpp-python 0.3.36"),
        deterministic: true,
    };
    r1.amount =
        dait_chain_client::amount(r1.tokens_in, r1.price_in, r1.tokens_out, r1.price_out).unwrap();
    r1.cumulative = r1.amount;
    let s1 = host.sign_receipt(r1.clone(), &d);
    let h1 = r1.signing_digest(&d);
    let mut r2 = Receipt {
        call_seq: 2,
        tokens_in: 20,
        tokens_out: 64,
        deterministic: false,
        seed: 0,
        prev_receipt_hash: h1,
        timestamp: 1_767_225_700,
        ..r1.clone()
    };
    r2.amount =
        dait_chain_client::amount(r2.tokens_in, r2.price_in, r2.tokens_out, r2.price_out).unwrap();
    r2.cumulative = r1.cumulative + r2.amount;
    let s2 = host.sign_receipt(r2.clone(), &d);
    let receipts: Vec<Value> = [&s1, &s2]
        .iter()
        .map(|s| {
            json!({
                "receipt": receipt_fields(&s.receipt),
                "encoded": hex(s.receipt.encode()),
                "struct_hash": hex(s.receipt.struct_hash()),
                "receipt_hash": hex(s.receipt.signing_digest(&d)),
                "host_signature": hex(s.host_signature.0),
                "signed_encoded": hex(s.encode()),
                "header_value": s.to_header_value(),
            })
        })
        .collect();
    // Invalid variants of receipt 1 for other implementations' negative tests.
    let mut flipped = s1.clone();
    flipped.host_signature.0[63] ^= 1;
    let mut high_s = s1.clone();
    let neg = negate_mod_n(&s1.host_signature.0[32..]);
    high_s.host_signature.0[32..].copy_from_slice(&neg);
    let s1_bytes = s1.encode();
    let mut unknown_field = s1_bytes.clone();
    unknown_field.extend_from_slice(&[0xf8, 0x06, 0x01]);
    files.insert(
        "receipt.json",
        json!({
            "description": "Receipts (PROTOCOL.md §4, §5, §8): encoded = protobuf Receipt; struct_hash = EIP-712 hashStruct; receipt_hash = keccak(0x1901 || domain_separator || struct_hash), signed by the host key (P-256, RFC 6979, low-s); header_value = base64url(no pad) of SignedReceipt. Amounts and 64-bit integers are decimal strings.",
            "domain": {"name": "dait", "version": "1", "chain_id": d.chain_id.to_string(), "settlement": hex(d.settlement)},
            "domain_separator": hex(d.separator()),
            "receipt_type": dait_chain_client::RECEIPT_TYPE,
            "receipt_type_hash": hex(dait_chain_client::type_hash(dait_chain_client::RECEIPT_TYPE)),
            "host_secret": hex(HOST_SECRET),
            "host_public": hex(host.verifying_key().to_sec1()),
            "receipts": receipts,
            "invalid": [
                {"name": "flipped-signature-bit", "signed_encoded": hex(flipped.encode()), "error": "signature mismatch"},
                {"name": "high-s", "signed_encoded": hex(high_s.encode()), "error": "high s"},
                {"name": "wrong-domain-chain-id-1", "signed_encoded": hex(host.sign_receipt(r1.clone(), &Domain { chain_id: 1, ..d }).encode()), "error": "signature mismatch"},
                {"name": "truncated", "signed_encoded": hex(&s1_bytes[..s1_bytes.len() - 1]), "error": "decode"},
                {"name": "unknown-field", "signed_encoded": hex(&unknown_field), "error": "decode"},
            ],
        }),
    );

    let after1 = ChannelState {
        turn: 1,
        cumulative: r1.cumulative,
        last_receipt_hash: h1,
        ..open.clone()
    };
    // The cooperative close after receipt 2: final, counter-signed by the host.
    let final2 = ChannelState {
        turn: 2,
        cumulative: r2.cumulative,
        last_receipt_hash: r2.signing_digest(&d),
        is_final: true,
        ..open.clone()
    };
    let states: Vec<Value> = [(&open, false), (&after1, true), (&final2, true)]
        .iter()
        .map(|(st, cosign)| {
            let signed = SignedChannelState {
                state: (*st).clone(),
                tenant_signature: tenant.sign_state(st, &d),
                host_signature: cosign.then(|| host.cosign_state(st, &d)),
            };
            json!({
                "state": state_fields(st),
                "encoded": hex(st.encode()),
                "struct_hash": hex(st.struct_hash()),
                "digest": hex(st.signing_digest(&d)),
                "tenant_signature": hex(signed.tenant_signature.0),
                "host_signature": signed.host_signature.map(|s| hex(s.0)),
                "signed_encoded": hex(signed.encode()),
                "header_value": signed.to_header_value(),
            })
        })
        .collect();
    files.insert(
        "channel_state.json",
        json!({
            "description": "Channel states, protocol version 2 (PROTOCOL.md §4, §5, §8): channel_id = keccak(word(chain_id) || word(settlement) || word(tenant) || word(host) || salt), host = the keyset's host_account; digest = EIP-712 digest, signed by the tenant (secp256k1, r||s||v, v in {27,28}) and optionally counter-signed by the host (P-256). States: at open, after receipt 1 (counter-signed), and the final state of a cooperative close after receipt 2.",
            "domain": {"name": "dait", "version": "1", "chain_id": d.chain_id.to_string(), "settlement": hex(d.settlement)},
            "channel_state_type": dait_chain_client::CHANNEL_STATE_TYPE,
            "channel_state_type_hash": hex(dait_chain_client::type_hash(dait_chain_client::CHANNEL_STATE_TYPE)),
            "tenant_secret": hex(TENANT_SECRET),
            "tenant_address": hex(tenant.address()),
            "host_public": hex(host.verifying_key().to_sec1()),
            "host_account": hex(ks.host_account),
            "salt": hex(SALT),
            "channel_id": hex(cid),
            "states": states,
        }),
    );

    files.insert(
        "batch.json",
        batch_vector_file(&d, &host, &ks, &[s1.clone(), s2.clone()]),
    );

    // A simulated evidence bundle.
    let ak = HostSigningKey::from_bytes(&ATTESTATION_SECRET).unwrap();
    let root = HostSigningKey::from_bytes(&PLATFORM_ROOT_SECRET).unwrap();
    let rd = report_data(&ks_hash, &freshness[0]);
    let event_log = b"rtmr3 model sha256:...\nrtmr3 engine llama-cpp-python 0.3.36\n".to_vec();
    let body = proto::SimulatedReportBody {
        platform: proto::Platform::Simulated as i32,
        report_data: rd.to_vec(),
        measurements: (0u8..5).map(|i| vec![i; 48]).collect(),
        event_log_digest: tagged_sha256(b"", &event_log).0.to_vec(),
        mr_config_id: Vec::new(),
    }
    .encode_to_vec();
    let ak_pub = ak.verifying_key().to_sec1();
    let bundle = proto::EvidenceBundle {
        version: 1,
        keyset: ks_bytes.clone(),
        freshness: Some(freshness[0].to_proto()),
        cpu: Some(proto::CpuEvidence {
            evidence: Some(proto::cpu_evidence::Evidence::Simulated(
                proto::SimulatedReport {
                    signature: ak.sign_prehash(&simulated_report_digest(&body)).0.to_vec(),
                    body,
                    attestation_key: ak_pub.to_vec(),
                    attestation_key_signature: root
                        .sign_prehash(&simulated_key_digest(&ak_pub))
                        .0
                        .to_vec(),
                },
            )),
        }),
        gpus: vec![],
        tpm: None,
        event_log,
        collateral: None,
    };
    let bundle_bytes = encode_bundle(&bundle);
    files.insert(
        "bundle.json",
        json!({
            "description": "Simulated evidence bundle (PROTOCOL.md §7, §8): bundle_hash = SHA-256(\"dait/v1/bundle\" || encoded). The report signature is by the attestation key over SHA-256(\"dait/v1/simulated-report\" || body); the key is certified by the platform root over SHA-256(\"dait/v1/simulated-key\" || attestation_key).",
            "attestation_secret": hex(ATTESTATION_SECRET),
            "platform_root_secret": hex(PLATFORM_ROOT_SECRET),
            "platform_root_public": hex(root.verifying_key().to_sec1()),
            "keyset_hash": hex(ks_hash),
            "report_data": hex(rd),
            "encoded": hex(&bundle_bytes),
            "bundle_hash": hex(bundle_hash(&bundle_bytes)),
        }),
    );

    let cases: Vec<Value> = response_cases()
        .into_iter()
        .map(|(name, kind, input, usage)| {
            let n = normalise(kind, &input);
            let canonical = String::from_utf8(n.canonical_json(usage).unwrap()).unwrap();
            json!({
                "name": name, "kind": kind, "input": input,
                "usage": {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens},
                "canonical_json": canonical,
                "response_hash": hex(n.response_hash(usage).unwrap()),
            })
        })
        .collect();
    files.insert("runtime_log.json", runtime_log_vector());
    files.insert(
        "response.json",
        json!({
            "description": "Response normalisation (PROTOCOL.md §4): canonical_json = RFC 8785 JSON of the normalised response; response_hash = SHA-256(\"dait/v1/response\" || canonical_json). A body and the SSE stream of the same text hash the same.",
            "cases": cases,
        }),
    );
    files
}

/// The agent's runtime events for fixed contents (`None`: no weights file, 32 zero bytes).
fn runtime_contents() -> [(&'static str, Option<&'static str>); 4] {
    [
        (runtime_log::MODEL_ID, Some("smollm2-135m-instruct-q4_1")),
        (runtime_log::MODEL_WEIGHTS, None),
        (runtime_log::ENGINE_BUILD, Some("llama-cpp-python 0.3.36")),
        (
            runtime_log::AGENT_CONFIG,
            Some(
                "price_in=3 price_out=5 chain_id=31337 settlement=0x5fbdb2315678afecb367f032d93f642f64180aa3 seed=0",
            ),
        ),
    ]
}

fn runtime_log_vector() -> Value {
    let mut log = EventLog::default();
    let events: Vec<Value> = runtime_contents()
        .iter()
        .map(|(name, content)| {
            let sha256 = content.map_or([0; 32], |c| tagged_sha256(b"", c.as_bytes()).0);
            let data = runtime_log::event_data(name, &sha256);
            let digest = log.record(name, &data);
            json!({
                "name": name, "content": content, "sha256": hex(sha256), "data": data,
                "digest": hex(digest), "register": hex(log.register()),
            })
        })
        .collect();
    let encoded = String::from_utf8(log.encode()).unwrap();
    let invalid: Vec<Value> = [
        (
            "changed-data",
            encoded.replacen("model-id:", "model-id:0", 1),
        ),
        (
            "register-2",
            encoded.replacen(r#""imr":3"#, r#""imr":2"#, 1),
        ),
        (
            "unknown-member",
            encoded.replacen(r#""imr":3,"#, r#""imr":3,"pcr":23,"#, 1),
        ),
        (
            "missing-kind",
            encoded.replacen(r#""kind":"model-id","#, "", 1),
        ),
    ]
    .into_iter()
    .map(|(name, encoded)| json!({"name": name, "encoded": encoded}))
    .collect();
    json!({
        "description": "Runtime event log (PROTOCOL.md §10): data = name || \":\" || hex(sha256); digest = SHA-384(data); register_i = SHA-384(register_{i-1} || digest_i) from 48 zero bytes; encoded = the JSON log the agent serves as the bundle's event_log.",
        "events": events,
        "encoded": encoded,
        "register": hex(log.register()),
        "invalid": invalid,
    })
}

/// Hex words of a proof, as the contract takes them.
fn proof_words(p: &SumProof) -> Vec<String> {
    p.to_words().iter().map(hex).collect()
}

/// `batch.json`: five receipts of the vectors' channel (the two of `receipt.json`, then three more), their
/// Merkle sum tree, every leaf's proof, a sample for a fixed seed, and invalid proofs.
fn batch_vector_file(
    d: &Domain,
    host: &HostSigningKey,
    ks: &Keyset,
    first: &[SignedReceipt],
) -> Value {
    let mut batch = first.to_vec();
    for (tokens_in, tokens_out) in [(7u64, 30u64), (3, 1), (50, 200)] {
        let prev = batch.last().unwrap().receipt.clone();
        let mut r = Receipt {
            call_seq: prev.call_seq + 1,
            tokens_in,
            tokens_out,
            prev_receipt_hash: prev.signing_digest(d),
            timestamp: prev.timestamp + 100,
            deterministic: false,
            seed: 0,
            ..prev.clone()
        };
        r.amount =
            dait_chain_client::amount(r.tokens_in, r.price_in, r.tokens_out, r.price_out).unwrap();
        r.cumulative = prev.cumulative + r.amount;
        batch.push(host.sign_receipt(r, d));
    }
    let leaves: Vec<SumNode> = batch
        .iter()
        .map(|s| SumNode::of_receipt(&s.receipt, d))
        .collect();
    let tree = SumTree::build(&leaves).unwrap();
    let seed = B256(BATCH_SEED);
    let samples = sample_indices(
        &seed,
        &ks.host_account,
        &tree.root(),
        tree.count(),
        BATCH_SAMPLE_SIZE,
    )
    .unwrap();
    let leaf_values: Vec<Value> = batch
        .iter()
        .zip(&leaves)
        .zip(0u32..)
        .map(|((s, leaf), i)| {
            json!({
                "index": i,
                "receipt": receipt_fields(&s.receipt),
                "receipt_hash": hex(s.receipt.signing_digest(d)),
                "host_signature": hex(s.host_signature.0),
                "amount": leaf.sum.to_string(),
                "leaf_hash": hex(leaf.hash),
                "proof": proof_words(&tree.proof(i).unwrap()),
            })
        })
        .collect();
    let mut flipped = tree.proof(1).unwrap();
    flipped.siblings[1].hash.0[31] ^= 1;
    let mut padding = tree.proof(4).unwrap();
    padding.siblings[0] = SumNode::leaf(&B256([0x99; 32]), 1);
    json!({
        "description": "Receipt batch (PROTOCOL.md §11): leaf = (keccak(0x00 || receipt_hash), amount); node = (keccak(0x01 || left.hash || right.hash || u128be(left.sum) || u128be(right.sum)), left.sum + right.sum); a subtree at or after count is (0, 0); depth = ceil(log2(count)). proof = 2 x depth words, leaf to root: sibling hash, sibling sum (uint256). Sample j = 0 is count - 1, j >= 1 is keccak(abi.encode(seed, host, root, j)) mod count, k = min(sample_size, count). batch_key = keccak(abi.encode(host, root)). Receipts are signed by receipt.json's host key under its domain.",
        "domain": {"name": "dait", "version": "1", "chain_id": d.chain_id.to_string(), "settlement": hex(d.settlement)},
        "host": hex(ks.host_account),
        "count": tree.count(),
        "depth": tree.depth(),
        "root": hex(tree.root()),
        "total": tree.total().to_string(),
        "batch_key": hex(batch_key(&ks.host_account, &tree.root())),
        "leaves": leaf_values,
        "seed": hex(seed),
        "sample_size": BATCH_SAMPLE_SIZE,
        "sample_indices": samples,
        "invalid": [
            {"name": "flipped-sibling-bit", "index": 1, "proof": proof_words(&flipped), "total": tree.total().to_string(), "error": "RootMismatch", "contract_error": "BadProof"},
            {"name": "proof-of-another-index", "index": 2, "proof": proof_words(&tree.proof(1).unwrap()), "total": tree.total().to_string(), "error": "RootMismatch", "contract_error": "BadProof"},
            {"name": "non-zero-padding", "index": 4, "proof": proof_words(&padding), "total": tree.total().to_string(), "error": "NonZeroPadding", "contract_error": "BadProof"},
            {"name": "wrong-total", "index": 0, "proof": proof_words(&tree.proof(0).unwrap()), "total": (tree.total() + 1).to_string(), "error": "TotalMismatch", "contract_error": "TotalMismatch"},
        ],
    })
}

// ---------- tests ----------

/// The value with every object's keys in sorted order, so the files are the same bytes whether or not
/// another crate of the build turns on serde_json's `preserve_order` (dcap-qvl does).
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[test]
fn files_equal_the_generator() {
    let generated = generate();
    let write = std::env::var_os("DAIT_WRITE_VECTORS").is_some();
    for (name, value) in &generated {
        let path = dir().join(name);
        let text = serde_json::to_string_pretty(&sorted(value)).unwrap() + "\n";
        if write {
            std::fs::write(&path, &text).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{name}: {e} (set DAIT_WRITE_VECTORS=1)"));
        assert!(
            on_disk == text,
            "{name} differs from the generator; regenerate with DAIT_WRITE_VECTORS=1 and review"
        );
    }
}

#[test]
fn keyset_vector() {
    let v = load("keyset.json");
    let k = &v["keyset"];
    let ks = Keyset {
        receipt_key: arr(&k["receipt_key"]),
        ohttp_key_config: unhex(k["ohttp_key_config"].as_str().unwrap()),
        tls_spki: unhex(k["tls_spki"].as_str().unwrap()),
        chain_id: int(&k["chain_id"]),
        settlement: addr(&k["settlement"]),
        created_at: int(&k["created_at"]),
        boot_id: arr(&k["boot_id"]),
        host_account: addr(&k["host_account"]),
    };
    let encoded = unhex(v["encoded"].as_str().unwrap());
    assert_eq!(ks.encode(), encoded, "encode direction");
    assert_eq!(Keyset::decode(&encoded).unwrap(), ks, "decode direction");
    assert_eq!(keyset_hash(&encoded), b256(&v["keyset_hash"]));
    assert_eq!(ks.host_key_id(), b256(&v["host_key_id"]));
    for g in v["gpu_ids"].as_array().unwrap() {
        assert_eq!(
            gpu_id_hash(g["uuid"].as_str().unwrap()),
            b256(&g["gpu_id_hash"])
        );
    }
    let host = HostSigningKey::from_bytes(&arr(&v["host_secret"])).unwrap();
    assert_eq!(host.verifying_key().to_sec1(), ks.receipt_key);
}

#[test]
fn report_data_vector() {
    let v = load("report_data.json");
    for c in v["cases"].as_array().unwrap() {
        let f = &c["freshness"];
        let p = proto::Freshness {
            kind: u32::try_from(f["kind"].as_u64().unwrap()).unwrap(),
            epoch: int(&f["epoch"]),
            nonce: unhex(f["nonce"].as_str().unwrap()),
        };
        let fresh = Freshness::from_proto(&p).unwrap();
        assert_eq!(
            hex(p.encode_to_vec()),
            c["freshness_encoded"].as_str().unwrap()
        );
        let rd = report_data(&b256(&c["keyset_hash"]), &fresh);
        assert_eq!(rd, arr::<64>(&c["report_data"]));
        for g in c["gpu_nonces"].as_array().unwrap() {
            let i = u32::try_from(g["index"].as_u64().unwrap()).unwrap();
            assert_eq!(gpu_nonce(&rd, i), b256(&g["nonce"]));
        }
        assert_eq!(tpm_qualifying_data(&rd), b256(&c["tpm_qualifying_data"]));
    }
}

fn domain_from(v: &Value) -> Domain {
    assert_eq!(v["name"], "dait");
    assert_eq!(v["version"], "1");
    Domain {
        chain_id: int(&v["chain_id"]),
        settlement: addr(&v["settlement"]),
    }
}

#[test]
fn receipt_vector() {
    let v = load("receipt.json");
    let d = domain_from(&v["domain"]);
    assert_eq!(d.separator(), b256(&v["domain_separator"]));
    assert_eq!(
        v["receipt_type"].as_str().unwrap(),
        dait_chain_client::RECEIPT_TYPE
    );
    let key = HostVerifyingKey::from_sec1(&unhex(v["host_public"].as_str().unwrap())).unwrap();
    let first = receipt_from(&v["receipts"][0]["receipt"]);
    let open = ChannelState::open(
        first.channel_id,
        1_000_000_000_000_000_000,
        Address::ZERO,
        Address::ZERO,
    );
    let mut chain = ReceiptChain::new(d, key, first.keyset_hash, open);
    for r in v["receipts"].as_array().unwrap() {
        let receipt = receipt_from(&r["receipt"]);
        // Encode direction.
        assert_eq!(hex(receipt.encode()), r["encoded"].as_str().unwrap());
        assert_eq!(receipt.struct_hash(), b256(&r["struct_hash"]));
        let signed = SignedReceipt {
            receipt: receipt.clone(),
            host_signature: HostSignature(arr(&r["host_signature"])),
        };
        assert_eq!(hex(signed.encode()), r["signed_encoded"].as_str().unwrap());
        assert_eq!(
            signed.to_header_value(),
            r["header_value"].as_str().unwrap()
        );
        // Decode direction: bytes -> decode -> digest -> signature verifies -> SPUR-IC accepts.
        let decoded = SignedReceipt::decode(&unhex(r["signed_encoded"].as_str().unwrap())).unwrap();
        assert_eq!(decoded, signed);
        assert_eq!(
            SignedReceipt::from_header_value(r["header_value"].as_str().unwrap()).unwrap(),
            signed
        );
        assert_eq!(decoded.verify(&key, &d).unwrap(), b256(&r["receipt_hash"]));
        assert_eq!(chain.apply(&decoded).unwrap(), b256(&r["receipt_hash"]));
        // RFC 6979: re-signing with the recorded secret reproduces the recorded signature.
        let host = HostSigningKey::from_bytes(&arr(&v["host_secret"])).unwrap();
        assert_eq!(
            host.sign_receipt(receipt, &d).host_signature,
            signed.host_signature
        );
    }
    for bad in v["invalid"].as_array().unwrap() {
        let bytes = unhex(bad["signed_encoded"].as_str().unwrap());
        let name = bad["name"].as_str().unwrap();
        match name {
            "truncated" => assert!(matches!(
                SignedReceipt::decode(&bytes),
                Err(DecodeError::Protobuf { .. })
            )),
            "unknown-field" => assert!(matches!(
                SignedReceipt::decode(&bytes),
                Err(DecodeError::NonCanonical { .. })
            )),
            "high-s" => {
                let s = SignedReceipt::decode(&bytes).unwrap();
                assert!(matches!(s.verify(&key, &d), Err(SignatureError::HighS)));
            }
            "flipped-signature-bit" | "wrong-domain-chain-id-1" => {
                let s = SignedReceipt::decode(&bytes).unwrap();
                assert!(
                    matches!(s.verify(&key, &d), Err(SignatureError::Mismatch)),
                    "{name}"
                );
                let fresh = ReceiptChain::new(
                    d,
                    key,
                    s.receipt.keyset_hash,
                    ChannelState::open(
                        s.receipt.channel_id,
                        u128::MAX,
                        Address::ZERO,
                        Address::ZERO,
                    ),
                );
                assert!(matches!(
                    fresh.check(&s),
                    Err(ReceiptError::HostSignature(SignatureError::Mismatch))
                ));
            }
            other => panic!("unknown invalid case {other}"),
        }
    }
}

#[test]
fn channel_state_vector() {
    let v = load("channel_state.json");
    let d = domain_from(&v["domain"]);
    let tenant = TenantSigner::from_bytes(&arr(&v["tenant_secret"])).unwrap();
    assert_eq!(tenant.address(), addr(&v["tenant_address"]));
    let host = HostVerifyingKey::from_sec1(&unhex(v["host_public"].as_str().unwrap())).unwrap();
    let host_account = addr(&v["host_account"]);
    assert_eq!(
        channel_id(
            &d,
            &addr(&v["tenant_address"]),
            &host_account,
            &b256(&v["salt"])
        ),
        b256(&v["channel_id"])
    );
    for s in v["states"].as_array().unwrap() {
        let state = state_from(&s["state"]);
        assert_eq!(state.host, host_account);
        assert_eq!(hex(state.encode()), s["encoded"].as_str().unwrap());
        assert_eq!(state.struct_hash(), b256(&s["struct_hash"]));
        assert_eq!(state.signing_digest(&d), b256(&s["digest"]));
        let signed = SignedChannelState {
            state: state.clone(),
            tenant_signature: TenantSignature(arr(&s["tenant_signature"])),
            host_signature: s["host_signature"]
                .as_str()
                .map(|h| HostSignature(unhex(h).try_into().unwrap())),
        };
        assert_eq!(hex(signed.encode()), s["signed_encoded"].as_str().unwrap());
        let decoded =
            SignedChannelState::from_header_value(s["header_value"].as_str().unwrap()).unwrap();
        assert_eq!(decoded, signed);
        assert_eq!(
            recover_tenant(&b256(&s["digest"]), &decoded.tenant_signature).unwrap(),
            tenant.address()
        );
        assert_eq!(decoded.verify_tenant(&d).unwrap(), tenant.address());
        assert_eq!(
            decoded.verify_host(&host, &d).unwrap(),
            decoded.host_signature.is_some()
        );
        assert_eq!(tenant.sign_state(&state, &d), decoded.tenant_signature);
        // The agent accepts the state when its head is at that turn, unless it is final.
        let head = ChannelHead {
            channel_id: state.channel_id,
            host: host_account,
            last_call_seq: state.turn,
            last_receipt_hash: state.last_receipt_hash,
            cumulative: state.cumulative,
        };
        if state.is_final {
            assert!(matches!(
                head.check_state(&decoded, &d, 0),
                Err(StateError::Final)
            ));
        } else {
            assert_eq!(
                head.check_state(&decoded, &d, 0).unwrap().next_call_seq,
                state.turn + 1
            );
        }
    }
}

fn words(v: &Value) -> Vec<[u8; 32]> {
    v.as_array().unwrap().iter().map(arr::<32>).collect()
}

#[test]
fn batch_vector() {
    let v = load("batch.json");
    let d = domain_from(&v["domain"]);
    let key = HostVerifyingKey::from_sec1(&unhex(
        load("receipt.json")["host_public"].as_str().unwrap(),
    ))
    .unwrap();
    let count: u32 = u32::try_from(v["count"].as_u64().unwrap()).unwrap();
    let root = b256(&v["root"]);
    let total: u128 = int(&v["total"]);
    let host = addr(&v["host"]);
    let mut leaves = Vec::new();
    for (l, i) in v["leaves"].as_array().unwrap().iter().zip(0u32..) {
        assert_eq!(l["index"].as_u64().unwrap(), u64::from(i));
        // Leaf from the receipt's fields: its hash, its signature, its amount.
        let receipt = receipt_from(&l["receipt"]);
        let signed = SignedReceipt {
            receipt: receipt.clone(),
            host_signature: HostSignature(arr(&l["host_signature"])),
        };
        assert_eq!(signed.verify(&key, &d).unwrap(), b256(&l["receipt_hash"]));
        let leaf = SumNode::of_receipt(&receipt, &d);
        assert_eq!(leaf.hash, b256(&l["leaf_hash"]));
        assert_eq!(leaf.sum, int::<u128>(&l["amount"]));
        // The recorded proof verifies.
        let proof = SumProof::from_words(i, &words(&l["proof"])).unwrap();
        proof.verify(&leaf, &root, count, total).unwrap();
        leaves.push(leaf);
    }
    // The tree built from the leaves gives the recorded root, total and proofs.
    let tree = SumTree::build(&leaves).unwrap();
    assert_eq!(tree.count(), count);
    assert_eq!(u64::from(tree.depth()), v["depth"].as_u64().unwrap());
    assert_eq!(tree.root(), root);
    assert_eq!(tree.total(), total);
    for (l, i) in v["leaves"].as_array().unwrap().iter().zip(0u32..) {
        assert_eq!(tree.proof(i).unwrap().to_words(), words(&l["proof"]));
    }
    assert_eq!(batch_key(&host, &root), b256(&v["batch_key"]));
    let sample: Vec<u32> = v["sample_indices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| u32::try_from(x.as_u64().unwrap()).unwrap())
        .collect();
    let size = u32::try_from(v["sample_size"].as_u64().unwrap()).unwrap();
    assert_eq!(
        sample_indices(&b256(&v["seed"]), &host, &root, count, size).unwrap(),
        sample
    );
    for bad in v["invalid"].as_array().unwrap() {
        let i = u32::try_from(bad["index"].as_u64().unwrap()).unwrap();
        let proof = SumProof::from_words(i, &words(&bad["proof"])).unwrap();
        let err = proof
            .verify(&leaves[i as usize], &root, count, int(&bad["total"]))
            .unwrap_err();
        let expected = match bad["error"].as_str().unwrap() {
            "RootMismatch" => matches!(err, BatchError::RootMismatch),
            "NonZeroPadding" => matches!(err, BatchError::NonZeroPadding { .. }),
            "TotalMismatch" => matches!(err, BatchError::TotalMismatch),
            other => panic!("unknown error {other}"),
        };
        assert!(expected, "{}: {err:?}", bad["name"]);
    }
}

#[test]
fn bundle_vector() {
    let v = load("bundle.json");
    let bytes = unhex(v["encoded"].as_str().unwrap());
    assert_eq!(bundle_hash(&bytes), b256(&v["bundle_hash"]));
    let b = decode_bundle(&bytes).unwrap();
    assert_eq!(encode_bundle(&b), bytes);
    assert_eq!(keyset_hash(&b.keyset), b256(&v["keyset_hash"]));
    let fresh = Freshness::from_proto(b.freshness.as_ref().unwrap()).unwrap();
    let rd = report_data(&keyset_hash(&b.keyset), &fresh);
    assert_eq!(rd, arr::<64>(&v["report_data"]));
    let Some(proto::cpu_evidence::Evidence::Simulated(sim)) = b.cpu.and_then(|c| c.evidence) else {
        panic!("simulated evidence expected")
    };
    let body = proto::SimulatedReportBody::decode(sim.body.as_slice()).unwrap();
    assert_eq!(body.platform, proto::Platform::Simulated as i32);
    assert_eq!(body.report_data, rd.to_vec());
    let ak_pub: [u8; 65] = sim.attestation_key.clone().try_into().unwrap();
    let ak = HostVerifyingKey::from_sec1(&ak_pub).unwrap();
    ak.verify_prehash(
        &simulated_report_digest(&sim.body),
        &HostSignature(sim.signature.try_into().unwrap()),
    )
    .unwrap();
    let root =
        HostVerifyingKey::from_sec1(&unhex(v["platform_root_public"].as_str().unwrap())).unwrap();
    root.verify_prehash(
        &simulated_key_digest(&ak_pub),
        &HostSignature(sim.attestation_key_signature.try_into().unwrap()),
    )
    .unwrap();
}

#[test]
fn response_vector() {
    let v = load("response.json");
    let mut by_text = BTreeMap::new();
    for c in v["cases"].as_array().unwrap() {
        let usage = Usage {
            prompt_tokens: c["usage"]["prompt_tokens"].as_u64().unwrap(),
            completion_tokens: c["usage"]["completion_tokens"].as_u64().unwrap(),
        };
        let n = normalise(c["kind"].as_str().unwrap(), c["input"].as_str().unwrap());
        assert_eq!(
            String::from_utf8(n.canonical_json(usage).unwrap()).unwrap(),
            c["canonical_json"].as_str().unwrap()
        );
        let h = n.response_hash(usage).unwrap();
        assert_eq!(h, b256(&c["response_hash"]));
        assert_eq!(
            h,
            dait_chain_client::response_hash_of_canonical(
                c["canonical_json"].as_str().unwrap().as_bytes()
            )
        );
        by_text
            .entry(c["canonical_json"].as_str().unwrap().to_string())
            .or_insert_with(Vec::new)
            .push(h);
    }
    // Body and stream of the same text: two texts, two cases each, one hash each.
    assert_eq!(by_text.len(), 2);
    assert!(by_text.values().all(|hs| hs.len() == 2 && hs[0] == hs[1]));
}

#[test]
fn runtime_log_vector_checks() {
    let v = load("runtime_log.json");
    let mut log = EventLog::default();
    let events = v["events"].as_array().unwrap();
    assert_eq!(events.len(), runtime_log::EVENT_NAMES.len());
    for (e, name) in events.iter().zip(runtime_log::EVENT_NAMES) {
        assert_eq!(e["name"], name, "the agent's order");
        let sha256: [u8; 32] = arr(&e["sha256"]);
        match e["content"].as_str() {
            Some(c) => assert_eq!(tagged_sha256(b"", c.as_bytes()).0, sha256),
            None => assert_eq!(sha256, [0; 32]),
        }
        // Encode direction: fields -> data -> digest -> register.
        let data = runtime_log::event_data(name, &sha256);
        assert_eq!(data, e["data"].as_str().unwrap());
        assert_eq!(log.record(name, &data), arr::<48>(&e["digest"]));
        assert_eq!(log.register(), arr::<48>(&e["register"]));
    }
    let encoded = v["encoded"].as_str().unwrap();
    assert_eq!(log.encode(), encoded.as_bytes());
    // Decode direction: bytes -> events -> register.
    let decoded = EventLog::decode(encoded.as_bytes()).unwrap();
    assert_eq!(decoded, log);
    assert_eq!(
        runtime_log::replay(encoded.as_bytes()).unwrap(),
        arr::<48>(&v["register"])
    );
    assert_eq!(
        runtime_log::replay_data(events.iter().map(|e| e["data"].as_str().unwrap())),
        arr::<48>(&v["register"])
    );
    for bad in v["invalid"].as_array().unwrap() {
        let r = runtime_log::replay(bad["encoded"].as_str().unwrap().as_bytes());
        match bad["name"].as_str().unwrap() {
            "changed-data" => assert_eq!(r, Err(RuntimeLogError::DigestMismatch { index: 0 })),
            "register-2" => assert_eq!(
                r,
                Err(RuntimeLogError::UnsupportedRegister { index: 0, imr: 2 })
            ),
            "unknown-member" | "missing-kind" => {
                assert!(matches!(r, Err(RuntimeLogError::Malformed { .. })), "{r:?}");
            }
            other => panic!("unknown invalid case {other}"),
        }
    }
}
