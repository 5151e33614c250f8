//! Content hashes and derivations with domain tags (PROTOCOL.md §1–4).

use sha2::{Digest as _, Sha256, Sha512};

use crate::eip712::{Domain, keccak, word_address, word_u128};
use crate::types::{Address, B256};
use crate::wire::Freshness;

/// Domain tags (PROTOCOL.md §1). ASCII, no terminator.
pub mod tag {
    /// Keyset hash.
    pub const KEYSET: &[u8] = b"dait/v1/keyset";
    /// CPU `report_data`.
    pub const REPORT_DATA: &[u8] = b"dait/v1/report-data";
    /// Per-GPU SPDM nonce.
    pub const GPU_NONCE: &[u8] = b"dait/v1/gpu-nonce";
    /// GPU id hash (host registration on chain).
    pub const GPU_ID: &[u8] = b"dait/v1/gpu-id";
    /// vTPM qualifying data.
    pub const TPM_QUALIFYING_DATA: &[u8] = b"dait/v1/tpm-qualifying-data";
    /// Plaintext request hash.
    pub const REQUEST: &[u8] = b"dait/v1/request";
    /// Normalised response hash.
    pub const RESPONSE: &[u8] = b"dait/v1/response";
    /// Ciphertext hashes.
    pub const CIPHERTEXT: &[u8] = b"dait/v1/ciphertext";
    /// Model id hash.
    pub const MODEL_ID: &[u8] = b"dait/v1/model-id";
    /// Evidence bundle hash.
    pub const BUNDLE: &[u8] = b"dait/v1/bundle";
    /// Simulated report signature digest.
    pub const SIMULATED_REPORT: &[u8] = b"dait/v1/simulated-report";
    /// Simulated attestation-key certification digest.
    pub const SIMULATED_KEY: &[u8] = b"dait/v1/simulated-key";
}

/// `H256(tag || bytes)`.
pub fn tagged_sha256(tag: &[u8], bytes: &[u8]) -> B256 {
    let mut h = Sha256::new();
    h.update(tag);
    h.update(bytes);
    B256(h.finalize().into())
}

/// `keyset_hash = H256("dait/v1/keyset" || keyset_bytes)`, over the exact bytes served.
pub fn keyset_hash(keyset_bytes: &[u8]) -> B256 {
    tagged_sha256(tag::KEYSET, keyset_bytes)
}

/// `host_key_id = H256(receipt_key)` over the 65-byte SEC1 uncompressed key (no tag).
pub fn host_key_id(receipt_key: &[u8; 65]) -> B256 {
    B256(Sha256::digest(receipt_key).into())
}

/// `report_data = H512("dait/v1/report-data" || keyset_hash || kind || u64be(epoch or 0) || nonce)`.
pub fn report_data(keyset_hash: &B256, freshness: &Freshness) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(tag::REPORT_DATA);
    h.update(keyset_hash.0);
    h.update([freshness.kind()]);
    h.update(freshness.epoch().to_be_bytes());
    h.update(freshness.nonce());
    h.finalize().into()
}

/// `gpu_nonce_i = H256("dait/v1/gpu-nonce" || report_data || u32be(i))`, `i` the 0-based GPU index.
pub fn gpu_nonce(report_data: &[u8; 64], index: u32) -> B256 {
    let mut h = Sha256::new();
    h.update(tag::GPU_NONCE);
    h.update(report_data);
    h.update(index.to_be_bytes());
    B256(h.finalize().into())
}

/// `gpu_id_hash = H256("dait/v1/gpu-id" || uuid)`, the GPU UUID as NVML prints it (ASCII, e.g.
/// `GPU-5a1c…`): what an operator registers on chain for each GPU it stakes (PROTOCOL.md §11).
pub fn gpu_id_hash(uuid: &str) -> B256 {
    tagged_sha256(tag::GPU_ID, uuid.as_bytes())
}

/// `qualifying_data = H256("dait/v1/tpm-qualifying-data" || report_data)`.
pub fn tpm_qualifying_data(report_data: &[u8; 64]) -> B256 {
    tagged_sha256(tag::TPM_QUALIFYING_DATA, report_data)
}

/// `request_hash = H256("dait/v1/request" || body)`, the request body exactly as sent inside OHTTP.
pub fn request_hash(body: &[u8]) -> B256 {
    tagged_sha256(tag::REQUEST, body)
}

/// `H256("dait/v1/response" || canonical_json)` over already-canonical JSON bytes. Prefer
/// `NormalizedResponse::response_hash` (feature `json`), which builds the canonical JSON.
pub fn response_hash_of_canonical(canonical_json: &[u8]) -> B256 {
    tagged_sha256(tag::RESPONSE, canonical_json)
}

/// `H256("dait/v1/ciphertext" || message)` over an OHTTP message as sent (chunked: the whole message).
pub fn ciphertext_hash(message: &[u8]) -> B256 {
    tagged_sha256(tag::CIPHERTEXT, message)
}

/// `H256("dait/v1/model-id" || utf8(model_id))`.
pub fn model_id_hash(model_id: &str) -> B256 {
    tagged_sha256(tag::MODEL_ID, model_id.as_bytes())
}

/// `bundle_hash = H256("dait/v1/bundle" || bundle bytes)`.
pub fn bundle_hash(bundle_bytes: &[u8]) -> B256 {
    tagged_sha256(tag::BUNDLE, bundle_bytes)
}

/// `channel_id = keccak(word(chain_id) || word(settlement) || word(tenant) || word(host) || salt)`, `host` the
/// host's operator account (PROTOCOL.md §4; the contract's `channelId(tenant, host, salt)`).
pub fn channel_id(domain: &Domain, tenant: &Address, host: &Address, salt: &B256) -> B256 {
    keccak(&[
        &word_u128(u128::from(domain.chain_id)),
        &word_address(&domain.settlement),
        &word_address(tenant),
        &word_address(host),
        &salt.0,
    ])
}

/// Digest the simulated attestation key signs: `H256("dait/v1/simulated-report" || body)` (PROTOCOL.md §7).
pub fn simulated_report_digest(body: &[u8]) -> B256 {
    tagged_sha256(tag::SIMULATED_REPORT, body)
}

/// Digest the simulated platform root signs to certify an attestation key:
/// `H256("dait/v1/simulated-key" || attestation_key)` (PROTOCOL.md §7).
pub fn simulated_key_digest(attestation_key: &[u8; 65]) -> B256 {
    tagged_sha256(tag::SIMULATED_KEY, attestation_key)
}

/// `tokens_in*price_in + tokens_out*price_out`, or `None` on overflow.
pub fn amount(tokens_in: u64, price_in: u128, tokens_out: u64, price_out: u128) -> Option<u128> {
    u128::from(tokens_in)
        .checked_mul(price_in)?
        .checked_add(u128::from(tokens_out).checked_mul(price_out)?)
}
