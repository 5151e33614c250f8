//! AMD SEV-SNP attestation reports (ABI report versions 2 and 3) and their VCEK/VLEK certificate chains.
//!
//! [`SnpReport::parse`] reads the 1184-byte `ATTESTATION_REPORT` (SEV-SNP Firmware ABI Specification,
//! Table "ATTESTATION_REPORT Structure") with the crate's bounds-checked [`Reader`]. [`verify_report`]
//! checks, in this order: the ARK against the pinned AMD roots (Milan, Genoa, Turin); ARK self-signature,
//! ARK → ASK (or ASVK) → VCEK (or VLEK) with the `sev` crate (RSASSA-PSS/SHA-384); every certificate's
//! validity at the injected time; the report signature (ECDSA P-384/SHA-384) with `p384` over the RAW report
//! bytes `0x000..0x2A0` (the `sev` crate re-encodes its parsed struct before hashing, so it is not used for
//! this step); the reported TCB against the VCEK's SPL extensions; CHIP_ID against the hwID extension; then
//! the [`SnpPolicy`].

use p384::ecdsa::signature::Verifier as _;
use sev::certs::snp::{Certificate, Verifiable as _};
use sha2::Digest as _;
use x509_cert::der::Decode as _;

use crate::collateral::UnixTime;
use crate::wire::{ParseError, Reader};

/// Size of an SNP attestation report.
pub const REPORT_LEN: usize = 0x4A0;
/// End of the signed part of the report.
pub const SIGNED_LEN: usize = 0x2A0;
/// Guest policy bit 16: SMT allowed on the host.
pub const POLICY_SMT: u64 = 1 << 16;
/// Guest policy bit 18: association with a migration agent allowed.
pub const POLICY_MIGRATE_MA: u64 = 1 << 18;
/// Guest policy bit 19: debugging allowed.
pub const POLICY_DEBUG: u64 = 1 << 19;

/// SHA-384 of the SubjectPublicKeyInfo (DER) of AMD's ARK-Milan. Provenance: `amd_milan_ark.pem` of the
/// evidence set (AMD KDS `vcek/v1/Milan/cert_chain`, as shipped by virtee/sev `src/certs/snp/builtin/milan`),
/// CN=ARK-Milan, serial 0x010000, valid 2020-10-22..2045-10-22.
pub const ARK_MILAN_SPKI_SHA384: &str = "1249f67f15cf229a4069195e1a9ce537d1765ef706a1f4a123c36be9518786515d25ecc007f366b564d2b3f31c48082e";
/// ARK-Genoa: `amd_genoa_ark.pem` (AMD KDS `vcek/v1/Genoa/cert_chain`), serial 0x020000, valid
/// 2022-01-26..2047-01-26.
pub const ARK_GENOA_SPKI_SHA384: &str = "32ab53a6ce5ec14926207396e5c475ae768a6a9831b7e860b5acf2e1c1dff222bc5a8bfc43eb5e06393189c1f246d880";
/// ARK-Turin: `amd_turin_ark.pem` (AMD KDS `vcek/v1/Turin/cert_chain`), serial 0x030000, valid
/// 2023-05-15..2048-05-15.
pub const ARK_TURIN_SPKI_SHA384: &str = "3475f08a9727f8ac9a1deaea5f2a2097aa59d64d05c2a678c229c873e6359d3a6926287a2a22cd5f88a385e333a2fcc5";

/// EPYC generation, identified by the pinned ARK the chain ends in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum SnpProduct {
    /// EPYC 7xx3 (Zen 3).
    Milan,
    /// EPYC 9xx4 (Zen 4).
    Genoa,
    /// EPYC 9xx5 (Zen 5): TCB_VERSION has an FMC field and a different layout.
    Turin,
}

impl SnpProduct {
    /// Every generation, oldest first: the order AMD's certificates are tried in.
    pub const ALL: [Self; 3] = [Self::Milan, Self::Genoa, Self::Turin];

    /// The product whose pinned ARK key has this SPKI SHA-384, if any.
    pub fn from_ark_spki_sha384(digest: &[u8]) -> Option<Self> {
        let hex = hex::encode(digest);
        [
            (ARK_MILAN_SPKI_SHA384, Self::Milan),
            (ARK_GENOA_SPKI_SHA384, Self::Genoa),
            (ARK_TURIN_SPKI_SHA384, Self::Turin),
        ]
        .into_iter()
        .find(|(pin, _)| *pin == hex)
        .map(|(_, p)| p)
    }
}

/// AMD's ARK certificate (PEM) for a generation, as shipped by the `sev` crate; its key is checked against
/// the pinned fingerprints like any other ARK.
pub fn amd_ark_pem(product: SnpProduct) -> &'static [u8] {
    match product {
        SnpProduct::Milan => sev::certs::snp::builtin::milan::ARK,
        SnpProduct::Genoa => sev::certs::snp::builtin::genoa::ARK,
        SnpProduct::Turin => sev::certs::snp::builtin::turin::ARK,
    }
}

/// AMD's ASK certificate (PEM) for a generation (VCEK chains), as shipped by the `sev` crate.
pub fn amd_ask_pem(product: SnpProduct) -> &'static [u8] {
    match product {
        SnpProduct::Milan => sev::certs::snp::builtin::milan::ASK,
        SnpProduct::Genoa => sev::certs::snp::builtin::genoa::ASK,
        SnpProduct::Turin => sev::certs::snp::builtin::turin::ASK,
    }
}

/// A decoded TCB_VERSION (SEV-SNP ABI "TCB_VERSION Structure"; Turin moved the fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub struct TcbVersion {
    /// FMC SVN (Turin only).
    pub fmc: Option<u8>,
    /// Boot loader SVN.
    pub bootloader: u8,
    /// PSP OS (TEE) SVN.
    pub tee: u8,
    /// SNP firmware SVN.
    pub snp: u8,
    /// Microcode patch level.
    pub microcode: u8,
}

impl TcbVersion {
    /// Decodes the raw u64 for a product generation.
    pub fn decode(raw: u64, product: SnpProduct) -> Self {
        let b = raw.to_le_bytes();
        match product {
            SnpProduct::Milan | SnpProduct::Genoa => Self {
                fmc: None,
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
            },
            SnpProduct::Turin => Self {
                fmc: Some(b[0]),
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
            },
        }
    }

    /// Whether every component is at least `min`'s.
    pub fn at_least(&self, min: &Self) -> bool {
        self.bootloader >= min.bootloader
            && self.tee >= min.tee
            && self.snp >= min.snp
            && self.microcode >= min.microcode
            && self.fmc.unwrap_or(0) >= min.fmc.unwrap_or(0)
    }
}

/// Which key signed the report (`KEY_INFO.SIGNING_KEY`, bits 4:2 at 0x48).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum SigningKey {
    /// Versioned Chip Endorsement Key.
    Vcek,
    /// Versioned Loaded Endorsement Key.
    Vlek,
    /// No key (the report is unsigned).
    None,
}

/// A parsed SNP attestation report borrowing from its bytes. Offsets in the field docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnpReport<'a> {
    /// 0x00 report version (2 or 3).
    pub version: u32,
    /// 0x04 guest SVN.
    pub guest_svn: u32,
    /// 0x08 guest policy.
    pub policy: u64,
    /// 0x10 family ID.
    pub family_id: &'a [u8; 16],
    /// 0x20 image ID.
    pub image_id: &'a [u8; 16],
    /// 0x30 VMPL of the request.
    pub vmpl: u32,
    /// 0x34 signature algorithm (1 = ECDSA P-384 with SHA-384).
    pub signature_algo: u32,
    /// 0x38 current TCB.
    pub current_tcb: u64,
    /// 0x40 platform info.
    pub platform_info: u64,
    /// 0x48 key info (bit 0 author key enabled, bit 1 MASK_CHIP_KEY, bits 4:2 signing key).
    pub key_info: u32,
    /// 0x50 REPORT_DATA chosen by the guest.
    pub report_data: &'a [u8; 64],
    /// 0x90 launch MEASUREMENT.
    pub measurement: &'a [u8; 48],
    /// 0xC0 HOST_DATA chosen by the host at launch.
    pub host_data: &'a [u8; 32],
    /// 0xE0 ID key digest.
    pub id_key_digest: &'a [u8; 48],
    /// 0x110 author key digest.
    pub author_key_digest: &'a [u8; 48],
    /// 0x140 report ID.
    pub report_id: &'a [u8; 32],
    /// 0x160 report ID of the migration agent.
    pub report_id_ma: &'a [u8; 32],
    /// 0x180 reported TCB (the VCEK is derived from it).
    pub reported_tcb: u64,
    /// 0x188 CPUID family, model, stepping (version 3; zero in version 2).
    pub cpuid_fam_mod_step: [u8; 3],
    /// 0x1A0 CHIP_ID.
    pub chip_id: &'a [u8; 64],
    /// 0x1E0 committed TCB.
    pub committed_tcb: u64,
    /// 0x1E8 current build, minor, major.
    pub current_version: [u8; 3],
    /// 0x1EC committed build, minor, major.
    pub committed_version: [u8; 3],
    /// 0x1F0 launch TCB.
    pub launch_tcb: u64,
    /// 0x2A0 signature R (72 bytes little-endian).
    pub signature_r: &'a [u8; 72],
    /// 0x2E8 signature S (72 bytes little-endian).
    pub signature_s: &'a [u8; 72],
    /// The signed bytes 0x000..0x2A0.
    pub signed_bytes: &'a [u8],
}

impl<'a> SnpReport<'a> {
    /// Parses exactly one 1184-byte report; trailing bytes are refused.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(bytes);
        let version = r.u32_le("report.version")?;
        if version != 2 && version != 3 {
            return Err(ParseError::UnsupportedVersion {
                structure: "SNP report",
                version,
            });
        }
        let guest_svn = r.u32_le("report.guest_svn")?;
        let policy = r.u64_le("report.policy")?;
        let family_id = r.take_array("report.family_id")?;
        let image_id = r.take_array("report.image_id")?;
        let vmpl = r.u32_le("report.vmpl")?;
        let signature_algo = r.u32_le("report.signature_algo")?;
        let current_tcb = r.u64_le("report.current_tcb")?;
        let platform_info = r.u64_le("report.platform_info")?;
        let key_info = r.u32_le("report.key_info")?;
        r.expect_zero::<4>("report.reserved_4c")?;
        let report_data = r.take_array("report.report_data")?;
        let measurement = r.take_array("report.measurement")?;
        let host_data = r.take_array("report.host_data")?;
        let id_key_digest = r.take_array("report.id_key_digest")?;
        let author_key_digest = r.take_array("report.author_key_digest")?;
        let report_id = r.take_array("report.report_id")?;
        let report_id_ma = r.take_array("report.report_id_ma")?;
        let reported_tcb = r.u64_le("report.reported_tcb")?;
        let cpuid_fam_mod_step = *r.take_array::<3>("report.cpuid")?;
        if version == 2 && cpuid_fam_mod_step != [0; 3] {
            return Err(ParseError::NonZeroReserved {
                field: "report.cpuid",
            });
        }
        r.expect_zero::<21>("report.reserved_18b")?;
        let chip_id = r.take_array("report.chip_id")?;
        let committed_tcb = r.u64_le("report.committed_tcb")?;
        let current_version = *r.take_array::<3>("report.current_version")?;
        r.expect_zero::<1>("report.reserved_1eb")?;
        let committed_version = *r.take_array::<3>("report.committed_version")?;
        r.expect_zero::<1>("report.reserved_1ef")?;
        let launch_tcb = r.u64_le("report.launch_tcb")?;
        r.expect_zero::<168>("report.reserved_1f8")?;
        let signed_bytes = bytes
            .get(..SIGNED_LEN)
            .ok_or(ParseError::Internal("signed length"))?;
        let signature_r = r.take_array("report.signature.r")?;
        let signature_s = r.take_array("report.signature.s")?;
        r.expect_zero::<368>("report.signature.reserved")?;
        r.finish("SNP report")?;
        Ok(Self {
            version,
            guest_svn,
            policy,
            family_id,
            image_id,
            vmpl,
            signature_algo,
            current_tcb,
            platform_info,
            key_info,
            report_data,
            measurement,
            host_data,
            id_key_digest,
            author_key_digest,
            report_id,
            report_id_ma,
            reported_tcb,
            cpuid_fam_mod_step,
            chip_id,
            committed_tcb,
            current_version,
            committed_version,
            launch_tcb,
            signature_r,
            signature_s,
            signed_bytes,
        })
    }

    /// The key that signed the report.
    pub fn signing_key(&self) -> Option<SigningKey> {
        match (self.key_info >> 2) & 0x7 {
            0 => Some(SigningKey::Vcek),
            1 => Some(SigningKey::Vlek),
            7 => Some(SigningKey::None),
            _ => None,
        }
    }

    /// Whether MASK_CHIP_ID was set (CHIP_ID reported as zeros).
    pub fn chip_id_masked(&self) -> bool {
        self.key_info & 0b10 != 0
    }

    /// Guest policy: debugging allowed.
    pub fn debug_allowed(&self) -> bool {
        self.policy & POLICY_DEBUG != 0
    }

    /// Guest policy: migration agent allowed.
    pub fn migrate_ma_allowed(&self) -> bool {
        self.policy & POLICY_MIGRATE_MA != 0
    }

    /// Guest policy: SMT allowed.
    pub fn smt_allowed(&self) -> bool {
        self.policy & POLICY_SMT != 0
    }
}

/// A certificate of the AMD chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum SnpCert {
    /// AMD Root Key.
    Ark,
    /// AMD SEV Key (or the ASVK for a VLEK).
    Ask,
    /// VCEK or VLEK.
    Vek,
}

/// Why an SNP report was not accepted.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnpError {
    /// A certificate is not valid X.509 (PEM or DER).
    #[error("{0:?} certificate cannot be parsed")]
    CertParse(SnpCert),
    /// A certificate signature in the chain does not verify.
    #[error("{0:?} certificate signature does not verify")]
    ChainSignature(SnpCert),
    /// CHIP_ID differs from the VCEK's hwID extension.
    #[error("CHIP_ID does not match the VCEK hwID")]
    ChipIdMismatch,
    /// The report masks CHIP_ID and the policy requires it.
    #[error("CHIP_ID is masked")]
    ChipIdMasked,
    /// The guest policy allows debugging.
    #[error("the guest policy allows debugging")]
    Debug,
    /// A certificate is outside its validity window at the given time.
    #[error("{0:?} certificate is not valid at the given time")]
    Expired(SnpCert),
    /// The guest policy differs from the required value.
    #[error("guest policy does not match the required value")]
    GuestPolicyMismatch,
    /// HOST_DATA differs from the expected value.
    #[error("HOST_DATA does not match the expected value")]
    HostDataMismatch,
    /// The report could not be parsed.
    #[error("malformed report")]
    Malformed(#[from] ParseError),
    /// MEASUREMENT differs from the expected value.
    #[error("launch measurement does not match the expected value")]
    MeasurementMismatch,
    /// The guest policy allows a migration agent.
    #[error("the guest policy allows a migration agent")]
    MigrationAgent,
    /// A VCEK/VLEK extension is missing or malformed.
    #[error("VEK extension {0} is missing or malformed")]
    MissingExtension(&'static str),
    /// REPORT_DATA differs from the expected value (wrong nonce or key binding).
    #[error("REPORT_DATA does not match the expected value")]
    ReportDataMismatch,
    /// The report signature does not verify with the VCEK/VLEK.
    #[error("report signature does not verify")]
    Signature,
    /// The report's signing key (VCEK/VLEK) does not match the certificate given.
    #[error("the report's signing key does not match the certificate")]
    SigningKeyMismatch,
    /// The guest policy allows SMT and the policy forbids it.
    #[error("the guest policy allows SMT")]
    Smt,
    /// The reported TCB is below the policy minimum.
    #[error("reported TCB is below the minimum")]
    TcbBelowMinimum,
    /// The reported TCB differs from the VCEK's SPL extensions.
    #[error("reported TCB {component} does not match the VCEK")]
    TcbMismatch {
        /// The TCB component.
        component: &'static str,
    },
    /// The signature algorithm is not ECDSA P-384/SHA-384.
    #[error("unsupported signature algorithm {0}")]
    UnsupportedSignatureAlgorithm(u32),
    /// The ARK is not one of the pinned AMD roots.
    #[error("the ARK is not a pinned AMD root")]
    UntrustedRoot,
    /// The report was requested from a VMPL the policy does not accept.
    #[error("VMPL {0} is not accepted")]
    Vmpl(u32),
}

/// What an SNP report must satisfy beyond its signatures. Defaults: debug and migration agent rejected,
/// VMPL 0 required, CHIP_ID must not be masked; SMT is allowed (every production host enables it; set
/// `allow_smt: false` where the fleet runs without); no measurement pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpPolicy {
    /// Accept a guest policy with DEBUG set (never in production).
    pub dangerous_allow_debug: bool,
    /// Accept a guest policy with MIGRATE_MA set.
    pub allow_migration_agent: bool,
    /// Accept a guest policy with SMT set.
    pub allow_smt: bool,
    /// Accept a report with MASK_CHIP_ID (CHIP_ID not bound to the VCEK).
    pub allow_masked_chip_id: bool,
    /// Required VMPL (None: any).
    pub vmpl: Option<u32>,
    /// Minimum reported TCB.
    pub minimum_tcb: Option<TcbVersion>,
    /// Allowed launch measurements (one per VM shape; empty = not pinned).
    pub measurements: Vec<[u8; 48]>,
    /// Allowed HOST_DATA values (empty = not pinned).
    pub host_data: Vec<[u8; 32]>,
    /// Required guest policy value (exact), when pinned.
    pub guest_policy: Option<u64>,
    /// Expected REPORT_DATA.
    pub report_data: Option<[u8; 64]>,
}

impl Default for SnpPolicy {
    fn default() -> Self {
        Self {
            dangerous_allow_debug: false,
            allow_migration_agent: false,
            allow_smt: true,
            allow_masked_chip_id: false,
            vmpl: Some(0),
            minimum_tcb: None,
            measurements: Vec::new(),
            host_data: Vec::new(),
            guest_policy: None,
            report_data: None,
        }
    }
}

/// The AMD certificates a report is checked against, PEM or DER each.
#[derive(Debug, Clone, Copy)]
pub struct SnpCerts<'a> {
    /// ARK (must be one of the pinned roots).
    pub ark: &'a [u8],
    /// ASK, or ASVK for a VLEK.
    pub ask: &'a [u8],
    /// VCEK or VLEK.
    pub vek: &'a [u8],
}

/// A report that verified under a policy. Only [`verify_report`] constructs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSnpReport {
    product: SnpProduct,
    version: u32,
    signing_key: SigningKey,
    measurement: [u8; 48],
    host_data: [u8; 32],
    report_data: [u8; 64],
    chip_id: [u8; 64],
    reported_tcb: TcbVersion,
    policy: u64,
    vmpl: u32,
}

impl VerifiedSnpReport {
    /// EPYC generation (from the pinned root).
    pub fn product(&self) -> SnpProduct {
        self.product
    }
    /// Report version.
    pub fn version(&self) -> u32 {
        self.version
    }
    /// VCEK or VLEK.
    pub fn signing_key(&self) -> SigningKey {
        self.signing_key
    }
    /// Launch measurement.
    pub fn measurement(&self) -> &[u8; 48] {
        &self.measurement
    }
    /// HOST_DATA.
    pub fn host_data(&self) -> &[u8; 32] {
        &self.host_data
    }
    /// REPORT_DATA.
    pub fn report_data(&self) -> &[u8; 64] {
        &self.report_data
    }
    /// CHIP_ID.
    pub fn chip_id(&self) -> &[u8; 64] {
        &self.chip_id
    }
    /// Reported TCB (equal to the VCEK's).
    pub fn reported_tcb(&self) -> TcbVersion {
        self.reported_tcb
    }
    /// Guest policy.
    pub fn guest_policy(&self) -> u64 {
        self.policy
    }
    /// VMPL.
    pub fn vmpl(&self) -> u32 {
        self.vmpl
    }
}

/// Splits PEM text into certificate DER-or-PEM blobs (each `BEGIN..END CERTIFICATE` block).
pub fn split_pem_certs(pem: &[u8]) -> Vec<&[u8]> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = find(rest, BEGIN) {
        let Some(tail) = rest.get(start..) else { break };
        let Some(end) = find(tail, END) else { break };
        let stop = end.saturating_add(END.len());
        if let Some(block) = tail.get(..stop) {
            out.push(block);
        }
        rest = tail.get(stop..).unwrap_or(&[]);
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn load_cert(
    bytes: &[u8],
    which: SnpCert,
) -> Result<(Certificate, x509_cert::Certificate), SnpError> {
    let sev_cert = if find(bytes, b"-----BEGIN").is_some() {
        Certificate::from_pem(bytes)
    } else {
        Certificate::from_der(bytes)
    }
    .map_err(|_| SnpError::CertParse(which))?;
    let der = sev_cert.to_der().map_err(|_| SnpError::CertParse(which))?;
    let x = x509_cert::Certificate::from_der(&der).map_err(|_| SnpError::CertParse(which))?;
    Ok((sev_cert, x))
}

fn check_validity(
    cert: &x509_cert::Certificate,
    which: SnpCert,
    now: UnixTime,
) -> Result<(), SnpError> {
    let v = &cert.tbs_certificate.validity;
    let nb = v.not_before.to_unix_duration().as_secs();
    let na = v.not_after.to_unix_duration().as_secs();
    if now.as_secs() < nb || now.as_secs() > na {
        return Err(SnpError::Expired(which));
    }
    Ok(())
}

fn spki_sha384(cert: &x509_cert::Certificate) -> Result<Vec<u8>, SnpError> {
    use x509_cert::der::Encode as _;
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|_| SnpError::CertParse(SnpCert::Ark))?;
    Ok(sha2::Sha384::digest(&spki).to_vec())
}

fn extension<'c>(cert: &'c x509_cert::Certificate, oid: &str) -> Option<&'c [u8]> {
    cert.tbs_certificate
        .extensions
        .as_ref()?
        .iter()
        .find(|e| e.extn_id.to_string() == oid)
        .map(|e| e.extn_value.as_bytes())
}

/// Reads an SPL extension: a DER INTEGER 0..=255.
fn spl(cert: &x509_cert::Certificate, oid: &'static str) -> Result<u8, SnpError> {
    let raw = extension(cert, oid).ok_or(SnpError::MissingExtension(oid))?;
    let bad = SnpError::MissingExtension(oid);
    let (tag, rest) = raw.split_first().ok_or(bad.clone())?;
    let (len, body) = rest.split_first().ok_or(bad.clone())?;
    if *tag != 0x02 || usize::from(*len) != body.len() {
        return Err(bad);
    }
    match body {
        [v] if *v < 0x80 => Ok(*v),
        [0, v] if *v >= 0x80 => Ok(*v),
        _ => Err(bad),
    }
}

fn hw_id(cert: &x509_cert::Certificate) -> Result<&[u8], SnpError> {
    const OID: &str = "1.3.6.1.4.1.3704.1.4";
    let raw = extension(cert, OID).ok_or(SnpError::MissingExtension(OID))?;
    // Either the raw bytes, or a DER OCTET STRING around them.
    match raw {
        [0x04, len, body @ ..] if usize::from(*len) == body.len() && body.len() != 64 => Ok(body),
        _ => Ok(raw),
    }
}

fn subject_cn_contains(cert: &x509_cert::Certificate, needle: &str) -> bool {
    cert.tbs_certificate.subject.to_string().contains(needle)
}

fn le72_to_be48(field: &[u8; 72]) -> Option<[u8; 48]> {
    let (low, high) = field.split_at(48);
    if high.iter().any(|b| *b != 0) {
        return None;
    }
    let mut out = [0u8; 48];
    for (o, i) in out.iter_mut().zip(low.iter().rev()) {
        *o = *i;
    }
    Some(out)
}

/// Checks the report signature over the raw bytes 0x000..0x2A0 with a P-384 public key (SEC1 bytes).
pub fn verify_report_signature(report: &SnpReport<'_>, vek_sec1: &[u8]) -> Result<(), SnpError> {
    if report.signature_algo != 1 {
        return Err(SnpError::UnsupportedSignatureAlgorithm(
            report.signature_algo,
        ));
    }
    let r = le72_to_be48(report.signature_r).ok_or(SnpError::Signature)?;
    let s = le72_to_be48(report.signature_s).ok_or(SnpError::Signature)?;
    let sig = p384::ecdsa::Signature::from_scalars(r, s).map_err(|_| SnpError::Signature)?;
    let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(vek_sec1)
        .map_err(|_| SnpError::CertParse(SnpCert::Vek))?;
    key.verify(report.signed_bytes, &sig)
        .map_err(|_| SnpError::Signature)
}

/// Applies the policy to a report whose signature and chain verified.
pub fn check_policy(
    report: &SnpReport<'_>,
    product: SnpProduct,
    policy: &SnpPolicy,
) -> Result<(), SnpError> {
    if report.debug_allowed() && !policy.dangerous_allow_debug {
        return Err(SnpError::Debug);
    }
    if report.migrate_ma_allowed() && !policy.allow_migration_agent {
        return Err(SnpError::MigrationAgent);
    }
    if report.smt_allowed() && !policy.allow_smt {
        return Err(SnpError::Smt);
    }
    if policy.vmpl.is_some_and(|v| v != report.vmpl) {
        return Err(SnpError::Vmpl(report.vmpl));
    }
    if let Some(min) = &policy.minimum_tcb
        && !TcbVersion::decode(report.reported_tcb, product).at_least(min)
    {
        return Err(SnpError::TcbBelowMinimum);
    }
    if policy.guest_policy.is_some_and(|p| p != report.policy) {
        return Err(SnpError::GuestPolicyMismatch);
    }
    if !policy.measurements.is_empty()
        && !policy.measurements.iter().any(|m| m == report.measurement)
    {
        return Err(SnpError::MeasurementMismatch);
    }
    if !policy.host_data.is_empty() && !policy.host_data.iter().any(|h| h == report.host_data) {
        return Err(SnpError::HostDataMismatch);
    }
    if policy
        .report_data
        .as_ref()
        .is_some_and(|d| d != report.report_data)
    {
        return Err(SnpError::ReportDataMismatch);
    }
    Ok(())
}

struct CheckedChain {
    product: SnpProduct,
    vek: Certificate,
    vek_x: x509_cert::Certificate,
}

fn check_chain(certs: &SnpCerts<'_>, now: UnixTime) -> Result<CheckedChain, SnpError> {
    let (ark, ark_x) = load_cert(certs.ark, SnpCert::Ark)?;
    let (ask, ask_x) = load_cert(certs.ask, SnpCert::Ask)?;
    let (vek, vek_x) = load_cert(certs.vek, SnpCert::Vek)?;
    // The root is pinned, not merely self-signed.
    let product =
        SnpProduct::from_ark_spki_sha384(&spki_sha384(&ark_x)?).ok_or(SnpError::UntrustedRoot)?;
    // Signatures down the chain (sev: RSASSA-PSS SHA-384).
    (&ark, &ark)
        .verify()
        .map_err(|_| SnpError::ChainSignature(SnpCert::Ark))?;
    (&ark, &ask)
        .verify()
        .map_err(|_| SnpError::ChainSignature(SnpCert::Ask))?;
    (&ask, &vek)
        .verify()
        .map_err(|_| SnpError::ChainSignature(SnpCert::Vek))?;
    // Validity at `now`.
    check_validity(&ark_x, SnpCert::Ark, now)?;
    check_validity(&ask_x, SnpCert::Ask, now)?;
    check_validity(&vek_x, SnpCert::Vek, now)?;
    Ok(CheckedChain {
        product,
        vek,
        vek_x,
    })
}

/// Verifies the chain alone: the ARK is a pinned AMD root, ARK → ASK/ASVK → VCEK/VLEK signatures hold and
/// every certificate is valid at `now`. Returns the product generation of the root.
pub fn verify_chain(certs: &SnpCerts<'_>, now: UnixTime) -> Result<SnpProduct, SnpError> {
    check_chain(certs, now).map(|c| c.product)
}

/// Checks that the report belongs to the VCEK/VLEK certificate `vek` (PEM or DER): the certificate kind
/// matches the report's signing key, the reported TCB equals the SPL extensions, and (VCEK) CHIP_ID equals
/// the hwID extension. No signature is checked here.
pub fn check_vek_binding(
    report: &SnpReport<'_>,
    vek: &[u8],
    product: SnpProduct,
    policy: &SnpPolicy,
) -> Result<TcbVersion, SnpError> {
    let (_, vek_x) = load_cert(vek, SnpCert::Vek)?;
    binding(report, &vek_x, product, policy)
}

fn binding(
    report: &SnpReport<'_>,
    vek_x: &x509_cert::Certificate,
    product: SnpProduct,
    policy: &SnpPolicy,
) -> Result<TcbVersion, SnpError> {
    let signing_key = report.signing_key().ok_or(SnpError::SigningKeyMismatch)?;
    let kind_ok = match signing_key {
        SigningKey::Vcek => subject_cn_contains(vek_x, "SEV-VCEK"),
        SigningKey::Vlek => subject_cn_contains(vek_x, "SEV-VLEK"),
        SigningKey::None => false,
    };
    if !kind_ok {
        return Err(SnpError::SigningKeyMismatch);
    }
    let tcb = TcbVersion::decode(report.reported_tcb, product);
    let pairs: [(&'static str, &'static str, u8); 4] = [
        ("bootloader", "1.3.6.1.4.1.3704.1.3.1", tcb.bootloader),
        ("tee", "1.3.6.1.4.1.3704.1.3.2", tcb.tee),
        ("snp", "1.3.6.1.4.1.3704.1.3.3", tcb.snp),
        ("microcode", "1.3.6.1.4.1.3704.1.3.8", tcb.microcode),
    ];
    for (component, oid, got) in pairs {
        if spl(vek_x, oid)? != got {
            return Err(SnpError::TcbMismatch { component });
        }
    }
    if let Some(fmc) = tcb.fmc
        && spl(vek_x, "1.3.6.1.4.1.3704.1.3.9")? != fmc
    {
        return Err(SnpError::TcbMismatch { component: "fmc" });
    }
    // CHIP_ID == hwID (VCEK only; a VLEK is not chip-bound).
    if signing_key == SigningKey::Vcek {
        if report.chip_id_masked() {
            if !policy.allow_masked_chip_id {
                return Err(SnpError::ChipIdMasked);
            }
        } else {
            // Milan/Genoa: hwID is the 64-byte CHIP_ID. Turin: hwID is 8 bytes, the leading bytes of CHIP_ID.
            let hw = hw_id(vek_x)?;
            if hw.is_empty() || report.chip_id.get(..hw.len()) != Some(hw) {
                return Err(SnpError::ChipIdMismatch);
            }
        }
    }
    Ok(tcb)
}

/// Verifies an SNP report with its AMD chain at `now` and applies `policy`.
///
/// Order: parse; chain (pinned ARK, signatures, validity); report signature over the raw bytes; VEK binding
/// (key kind, reported TCB == SPL extensions, CHIP_ID == hwID); policy.
pub fn verify_report(
    report: &[u8],
    certs: &SnpCerts<'_>,
    policy: &SnpPolicy,
    now: UnixTime,
) -> Result<VerifiedSnpReport, SnpError> {
    let parsed = SnpReport::parse(report)?;
    let chain = check_chain(certs, now)?;
    verify_report_signature(&parsed, chain.vek.public_key_sec1())?;
    let tcb = binding(&parsed, &chain.vek_x, chain.product, policy)?;
    check_policy(&parsed, chain.product, policy)?;
    Ok(VerifiedSnpReport {
        product: chain.product,
        version: parsed.version,
        signing_key: parsed.signing_key().ok_or(SnpError::SigningKeyMismatch)?,
        measurement: *parsed.measurement,
        host_data: *parsed.host_data,
        report_data: *parsed.report_data,
        chip_id: *parsed.chip_id,
        reported_tcb: tcb,
        policy: parsed.policy,
        vmpl: parsed.vmpl,
    })
}

/// Verifies an SNP report as [`verify_report`] does, taking a missing ASK or ARK from AMD's certificates
/// ([`amd_ask_pem`], [`amd_ark_pem`]) of each generation in turn ([`SnpProduct::ALL`]). The first
/// generation whose chain signs the VEK gives the verdict; when none does, the first one's error is
/// returned. With both `ask` and `ark` given, this is [`verify_report`].
pub fn verify_report_with_amd_certs(
    report: &[u8],
    vek: &[u8],
    ask: Option<&[u8]>,
    ark: Option<&[u8]>,
    policy: &SnpPolicy,
    now: UnixTime,
) -> Result<VerifiedSnpReport, SnpError> {
    let mut first_error = None;
    for product in SnpProduct::ALL {
        let certs = SnpCerts {
            ark: ark.unwrap_or(amd_ark_pem(product)),
            ask: ask.unwrap_or(amd_ask_pem(product)),
            vek,
        };
        match verify_report(report, &certs, policy, now) {
            Err(e @ SnpError::ChainSignature(_)) if ask.is_none() || ark.is_none() => {
                first_error.get_or_insert(e);
            }
            verdict => return verdict,
        }
    }
    Err(first_error.unwrap_or(SnpError::ChainSignature(SnpCert::Vek)))
}

/// Decodes a report file: raw 1184 bytes, or ASCII hex.
pub fn decode_report_file(bytes: &[u8]) -> Vec<u8> {
    crate::tdx::decode_quote_file(bytes)
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn tcb_layouts_differ_by_generation() {
        let raw = 0xd517_0000_0000_0004_u64;
        assert_eq!(
            TcbVersion::decode(raw, SnpProduct::Milan),
            TcbVersion {
                fmc: None,
                bootloader: 4,
                tee: 0,
                snp: 0x17,
                microcode: 0xd5
            }
        );
        let t = TcbVersion::decode(0x4800_0000_1b01_0403, SnpProduct::Turin);
        assert_eq!(
            t,
            TcbVersion {
                fmc: Some(3),
                bootloader: 4,
                tee: 1,
                snp: 0x1b,
                microcode: 0x48
            }
        );
    }

    #[test]
    fn signature_fields_are_little_endian_with_zero_tail() {
        let mut f = [0u8; 72];
        f[0] = 1;
        let be = le72_to_be48(&f).expect("zero tail");
        assert_eq!(be[47], 1);
        f[60] = 1;
        assert!(le72_to_be48(&f).is_none());
    }

    #[test]
    fn unknown_roots_are_not_products() {
        assert_eq!(SnpProduct::from_ark_spki_sha384(&[0u8; 48]), None);
    }
}
