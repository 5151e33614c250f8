//! Protobuf wire structs (PROTOCOL.md §8), exactly as they travel.
//!
//! These are the raw `prost` messages: every field is public and nothing is validated. Untrusted bytes
//! should be decoded with the typed views at the crate root ([`crate::Receipt`], [`crate::Keyset`], …) or with
//! [`crate::decode_bundle`], which cap the input size, reject unknown fields and check fixed lengths.
//! The `.proto` text of these messages is in `proto/dait.proto` and in PROTOCOL.md §8.

use alloc::string::String;
use alloc::vec::Vec;

/// Keyset document served by the agent and hashed into `report_data` (PROTOCOL.md §2).
#[derive(Clone, PartialEq, Eq, ::prost::Message)]
pub struct Keyset {
    /// Keyset format version; 1.
    #[prost(uint32, tag = "1")]
    pub version: u32,
    /// Receipt signing key: P-256, SEC1 uncompressed (65 bytes).
    #[prost(bytes = "vec", tag = "2")]
    pub receipt_key: Vec<u8>,
    /// RFC 9458 §3 key configuration of the OHTTP (HPKE X25519) key; one config, no length prefix.
    #[prost(bytes = "vec", tag = "3")]
    pub ohttp_key_config: Vec<u8>,
    /// DER SubjectPublicKeyInfo of the serving TLS key.
    #[prost(bytes = "vec", tag = "4")]
    pub tls_spki: Vec<u8>,
    /// EIP-712 domain: chain id.
    #[prost(uint64, tag = "5")]
    pub chain_id: u64,
    /// EIP-712 domain: settlement contract address (20 bytes).
    #[prost(bytes = "vec", tag = "6")]
    pub settlement: Vec<u8>,
    /// Creation time, unix seconds.
    #[prost(uint64, tag = "7")]
    pub created_at: u64,
    /// 16 random bytes chosen at boot.
    #[prost(bytes = "vec", tag = "8")]
    pub boot_id: Vec<u8>,
    /// Operator's chain account (20 bytes; may be all zero).
    #[prost(bytes = "vec", tag = "9")]
    pub host_account: Vec<u8>,
}

/// Freshness of an attestation (PROTOCOL.md §3).
#[derive(Clone, PartialEq, Eq, ::prost::Message)]
pub struct Freshness {
    /// 1 = tenant nonce, 2 = chain epoch nonce.
    #[prost(uint32, tag = "1")]
    pub kind: u32,
    /// Chain epoch (kind 2); 0 for kind 1.
    #[prost(uint64, tag = "2")]
    pub epoch: u64,
    /// 32-byte nonce.
    #[prost(bytes = "vec", tag = "3")]
    pub nonce: Vec<u8>,
}

/// Receipt for one call (PROTOCOL.md §4). Amounts are 16-byte big-endian unsigned integers.
#[derive(Clone, PartialEq, Eq, ::prost::Message)]
pub struct Receipt {
    /// Receipt format version; 1.
    #[prost(uint32, tag = "1")]
    pub version: u32,
    /// Channel id (32).
    #[prost(bytes = "vec", tag = "2")]
    pub channel_id: Vec<u8>,
    /// Call sequence number, 1-based and gapless.
    #[prost(uint64, tag = "3")]
    pub call_seq: u64,
    /// `H256(receipt_key)` (32).
    #[prost(bytes = "vec", tag = "4")]
    pub host_key_id: Vec<u8>,
    /// Keyset hash (32).
    #[prost(bytes = "vec", tag = "5")]
    pub keyset_hash: Vec<u8>,
    /// Model id as requested (UTF-8, at most 256 bytes).
    #[prost(string, tag = "6")]
    pub model_id: String,
    /// Hash of the model weights (32).
    #[prost(bytes = "vec", tag = "7")]
    pub weight_hash: Vec<u8>,
    /// Plaintext request hash (32).
    #[prost(bytes = "vec", tag = "8")]
    pub request_hash: Vec<u8>,
    /// Normalised response hash (32).
    #[prost(bytes = "vec", tag = "9")]
    pub response_hash: Vec<u8>,
    /// OHTTP request ciphertext hash (32).
    #[prost(bytes = "vec", tag = "10")]
    pub request_ct_hash: Vec<u8>,
    /// OHTTP response ciphertext hash (32).
    #[prost(bytes = "vec", tag = "11")]
    pub response_ct_hash: Vec<u8>,
    /// Prompt tokens.
    #[prost(uint64, tag = "12")]
    pub tokens_in: u64,
    /// Completion tokens.
    #[prost(uint64, tag = "13")]
    pub tokens_out: u64,
    /// Price per prompt token (16, big-endian).
    #[prost(bytes = "vec", tag = "14")]
    pub price_in: Vec<u8>,
    /// Price per completion token (16, big-endian).
    #[prost(bytes = "vec", tag = "15")]
    pub price_out: Vec<u8>,
    /// Amount of this call (16, big-endian).
    #[prost(bytes = "vec", tag = "16")]
    pub amount: Vec<u8>,
    /// Cumulative amount of calls 1..=call_seq (16, big-endian).
    #[prost(bytes = "vec", tag = "17")]
    pub cumulative: Vec<u8>,
    /// Receipt hash of call `call_seq - 1`; zero for call 1 (32).
    #[prost(bytes = "vec", tag = "18")]
    pub prev_receipt_hash: Vec<u8>,
    /// Unix seconds.
    #[prost(uint64, tag = "19")]
    pub timestamp: u64,
    /// Sampling seed.
    #[prost(uint64, tag = "20")]
    pub seed: u64,
    /// Hash of the engine build id (32).
    #[prost(bytes = "vec", tag = "21")]
    pub engine_build: Vec<u8>,
    /// Whether the engine ran in deterministic (replayable) mode.
    #[prost(bool, tag = "22")]
    pub deterministic: bool,
}

/// A receipt with the host's P-256 signature over its EIP-712 digest.
#[derive(Clone, PartialEq, Eq, ::prost::Message)]
pub struct SignedReceipt {
    /// The receipt.
    #[prost(message, optional, tag = "1")]
    pub receipt: Option<Receipt>,
    /// `r || s` (64), low-s.
    #[prost(bytes = "vec", tag = "2")]
    pub host_signature: Vec<u8>,
}

/// Channel state (PROTOCOL.md §4).
#[derive(Clone, PartialEq, Eq, ::prost::Message)]
pub struct ChannelState {
    /// Channel id (32).
    #[prost(bytes = "vec", tag = "1")]
    pub channel_id: Vec<u8>,
    /// call_seq of the last accepted receipt; 0 at open.
    #[prost(uint64, tag = "2")]
    pub turn: u64,
    /// Spent up to `turn` (16, big-endian).
    #[prost(bytes = "vec", tag = "3")]
    pub cumulative: Vec<u8>,
    /// The most the channel may spend (16, big-endian).
    #[prost(bytes = "vec", tag = "4")]
    pub escrow_cap: Vec<u8>,
    /// Receipt hash of `turn`; zero at open (32).
    #[prost(bytes = "vec", tag = "5")]
    pub last_receipt_hash: Vec<u8>,
    /// Tenant address (20).
    #[prost(bytes = "vec", tag = "6")]
    pub tenant: Vec<u8>,
    /// The host's operator account, the keyset's `host_account` (20).
    #[prost(bytes = "vec", tag = "7")]
    pub host: Vec<u8>,
    /// Set only in the state of a cooperative close.
    #[prost(bool, tag = "8")]
    pub is_final: bool,
}

/// A channel state with the tenant's signature and optionally the host's counter-signature.
#[derive(Clone, PartialEq, Eq, ::prost::Message)]
pub struct SignedChannelState {
    /// The state.
    #[prost(message, optional, tag = "1")]
    pub state: Option<ChannelState>,
    /// secp256k1 `r || s || v` (65), low-s, v in {27, 28}.
    #[prost(bytes = "vec", tag = "2")]
    pub tenant_signature: Vec<u8>,
    /// P-256 `r || s` (64) by the host, or empty.
    #[prost(bytes = "vec", tag = "3")]
    pub host_signature: Vec<u8>,
}

/// TEE platform of the CPU evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
#[repr(i32)]
pub enum Platform {
    /// Not set; always rejected.
    Unspecified = 0,
    /// Intel TDX.
    Tdx = 1,
    /// AMD SEV-SNP.
    Snp = 2,
    /// Simulated (development and CI only).
    Simulated = 3,
}

/// Evidence bundle served at `/v1/attestation` (PROTOCOL.md §7).
#[derive(Clone, PartialEq, Eq, ::prost::Message)]
pub struct EvidenceBundle {
    /// Bundle format version; 1.
    #[prost(uint32, tag = "1")]
    pub version: u32,
    /// The exact keyset bytes whose hash is bound into `report_data`.
    #[prost(bytes = "vec", tag = "2")]
    pub keyset: Vec<u8>,
    /// Freshness bound into `report_data`.
    #[prost(message, optional, tag = "3")]
    pub freshness: Option<Freshness>,
    /// CPU TEE evidence.
    #[prost(message, optional, tag = "4")]
    pub cpu: Option<CpuEvidence>,
    /// Per-GPU evidence; the position is the GPU index `i` of `gpu_nonce`.
    #[prost(message, repeated, tag = "5")]
    pub gpus: Vec<GpuEvidence>,
    /// vTPM evidence, if the platform has one.
    #[prost(message, optional, tag = "6")]
    pub tpm: Option<TpmEvidence>,
    /// Runtime event log (what was measured into RTMR3 / the vTPM PCR).
    #[prost(bytes = "vec", tag = "7")]
    pub event_log: Vec<u8>,
    /// Collateral for offline verification.
    #[prost(message, optional, tag = "8")]
    pub collateral: Option<Collateral>,
}

/// CPU TEE evidence: one of TDX, SNP or simulated.
#[derive(Clone, PartialEq, Eq, ::prost::Message)]
pub struct CpuEvidence {
    /// The evidence.
    #[prost(oneof = "cpu_evidence::Evidence", tags = "1, 2, 3")]
    pub evidence: Option<cpu_evidence::Evidence>,
}

/// Oneof of [`CpuEvidence`].
pub mod cpu_evidence {
    use alloc::vec::Vec;

    /// The CPU evidence variants.
    #[derive(Clone, PartialEq, Eq, ::prost::Oneof)]
    pub enum Evidence {
        /// A TDX quote (v4 or v5), as produced by the quoting enclave.
        #[prost(bytes = "vec", tag = "1")]
        TdxQuote(Vec<u8>),
        /// An SNP attestation report with its certificate chain.
        #[prost(message, tag = "2")]
        Snp(super::SnpEvidence),
        /// Simulated evidence (development and CI only).
        #[prost(message, tag = "3")]
        Simulated(super::SimulatedReport),
    }
}

/// SEV-SNP evidence.
#[derive(Clone, PartialEq, Eq, ::prost::Message)]
pub struct SnpEvidence {
    /// The 1184-byte attestation report.
    #[prost(bytes = "vec", tag = "1")]
    pub report: Vec<u8>,
    /// VCEK or VLEK certificate (DER), then ASK/ASVK and ARK if present.
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub cert_chain: Vec<Vec<u8>>,
}

/// Simulated CPU evidence: a signed [`SimulatedReportBody`] and its certified attestation key (PROTOCOL.md §7).
#[derive(Clone, PartialEq, Eq, ::prost::Message)]
pub struct SimulatedReport {
    /// Encoded [`SimulatedReportBody`]: the signed bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub body: Vec<u8>,
    /// P-256 `r || s` by the attestation key over `simulated_report_digest(body)`.
    #[prost(bytes = "vec", tag = "2")]
    pub signature: Vec<u8>,
    /// Per-boot attestation key, SEC1 uncompressed (65).
    #[prost(bytes = "vec", tag = "3")]
    pub attestation_key: Vec<u8>,
    /// P-256 `r || s` by the simulated platform root over `simulated_key_digest(attestation_key)`.
    #[prost(bytes = "vec", tag = "4")]
    pub attestation_key_signature: Vec<u8>,
}

/// The signed content of a [`SimulatedReport`].
#[derive(Clone, PartialEq, Eq, ::prost::Message)]
pub struct SimulatedReportBody {
    /// Always [`Platform::Simulated`].
    #[prost(enumeration = "Platform", tag = "1")]
    pub platform: i32,
    /// `report_data` (64).
    #[prost(bytes = "vec", tag = "2")]
    pub report_data: Vec<u8>,
    /// Simulated measurement registers (48 bytes each: MRTD, RTMR0..3).
    #[prost(bytes = "vec", repeated, tag = "3")]
    pub measurements: Vec<Vec<u8>>,
    /// SHA-256 of the runtime event log (32).
    #[prost(bytes = "vec", tag = "4")]
    pub event_log_digest: Vec<u8>,
    /// The simulated launch-time `MRCONFIGID` (48), as a TDX host sets it (PROTOCOL.md §10.1); empty when the
    /// simulated guest was launched without one.
    #[prost(bytes = "vec", tag = "5")]
    pub mr_config_id: Vec<u8>,
}

/// Evidence of one NVIDIA GPU in CC mode.
#[derive(Clone, PartialEq, Eq, ::prost::Message)]
pub struct GpuEvidence {
    /// SPDM GET_MEASUREMENTS request (carries `gpu_nonce_i`).
    #[prost(bytes = "vec", tag = "1")]
    pub spdm_request: Vec<u8>,
    /// SPDM MEASUREMENTS response, signed by the device attestation key.
    #[prost(bytes = "vec", tag = "2")]
    pub spdm_response: Vec<u8>,
    /// Device certificate chain, DER, leaf first.
    #[prost(bytes = "vec", repeated, tag = "3")]
    pub cert_chain: Vec<Vec<u8>>,
    /// Driver reference integrity manifest (SWID XML).
    #[prost(bytes = "vec", tag = "4")]
    pub driver_rim: Vec<u8>,
    /// VBIOS reference integrity manifest (SWID XML).
    #[prost(bytes = "vec", tag = "5")]
    pub vbios_rim: Vec<u8>,
    /// OCSP responses (DER) for the device chain and the RIM signing chains.
    #[prost(bytes = "vec", repeated, tag = "6")]
    pub ocsp_responses: Vec<Vec<u8>>,
}

/// One PCR value of a vTPM quote.
#[derive(Clone, PartialEq, Eq, ::prost::Message)]
pub struct PcrValue {
    /// PCR index.
    #[prost(uint32, tag = "1")]
    pub index: u32,
    /// PCR digest.
    #[prost(bytes = "vec", tag = "2")]
    pub digest: Vec<u8>,
}

/// vTPM quote evidence.
#[derive(Clone, PartialEq, Eq, ::prost::Message)]
pub struct TpmEvidence {
    /// Marshalled `TPMS_ATTEST` (its `extraData` is `tpm_qualifying_data`).
    #[prost(bytes = "vec", tag = "1")]
    pub attest: Vec<u8>,
    /// Marshalled `TPMT_SIGNATURE` over `attest`.
    #[prost(bytes = "vec", tag = "2")]
    pub signature: Vec<u8>,
    /// Marshalled `TPMT_PUBLIC` of the attestation key.
    #[prost(bytes = "vec", tag = "3")]
    pub ak_public: Vec<u8>,
    /// AK certificate chain, DER, leaf first (may be empty).
    #[prost(bytes = "vec", repeated, tag = "4")]
    pub ak_cert_chain: Vec<Vec<u8>>,
    /// PCR values covered by the quote.
    #[prost(message, repeated, tag = "5")]
    pub pcrs: Vec<PcrValue>,
    /// `TPM_ALG_ID` of the PCR bank (0x000B = SHA-256).
    #[prost(uint32, tag = "6")]
    pub pcr_hash_alg: u32,
}

/// Collateral an offline verifier needs. Intel fields follow the PCS v4 API (the same set as dcap-qvl's
/// `QuoteCollateralV3`).
#[derive(Clone, PartialEq, Eq, ::prost::Message)]
pub struct Collateral {
    /// PCK CRL issuer chain (PEM).
    #[prost(string, tag = "1")]
    pub pck_crl_issuer_chain: String,
    /// Intel root CA CRL (DER).
    #[prost(bytes = "vec", tag = "2")]
    pub root_ca_crl: Vec<u8>,
    /// PCK CRL (DER).
    #[prost(bytes = "vec", tag = "3")]
    pub pck_crl: Vec<u8>,
    /// TCB info issuer chain (PEM).
    #[prost(string, tag = "4")]
    pub tcb_info_issuer_chain: String,
    /// TCB info JSON (the `tcbInfo` object as signed).
    #[prost(string, tag = "5")]
    pub tcb_info: String,
    /// TCB info signature.
    #[prost(bytes = "vec", tag = "6")]
    pub tcb_info_signature: Vec<u8>,
    /// QE identity issuer chain (PEM).
    #[prost(string, tag = "7")]
    pub qe_identity_issuer_chain: String,
    /// QE identity JSON (the `enclaveIdentity` object as signed).
    #[prost(string, tag = "8")]
    pub qe_identity: String,
    /// QE identity signature.
    #[prost(bytes = "vec", tag = "9")]
    pub qe_identity_signature: Vec<u8>,
    /// PCK certificate chain (PEM), when not embedded in the quote.
    #[prost(string, tag = "10")]
    pub pck_certificate_chain: String,
    /// AMD ARK and ASK (or ASVK) certificates, DER.
    #[prost(bytes = "vec", repeated, tag = "11")]
    pub amd_chain: Vec<Vec<u8>>,
    /// AMD CRL for the chain (DER), if fetched.
    #[prost(bytes = "vec", tag = "12")]
    pub amd_crl: Vec<u8>,
}
