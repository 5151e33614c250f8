//! Why an SNP report was not accepted.

use crate::wire::ParseError;

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
    /// The AMD CRL is not a DER X.509 CRL (or is over [`super::crl::MAX_CRL_LEN`]).
    #[error("AMD CRL cannot be parsed")]
    CrlMalformed,
    /// The AMD CRL is not issued and signed (RSASSA-PSS/SHA-384) by the ARK.
    #[error("AMD CRL is not signed by the ARK")]
    CrlSignature,
    /// The time is outside the AMD CRL's `thisUpdate..nextUpdate` (or it has no `nextUpdate`).
    #[error("AMD CRL is not current at the given time")]
    CrlStale,
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
    /// The AMD CRL lists the certificate.
    #[error("{0:?} certificate is revoked by AMD's CRL")]
    Revoked(SnpCert),
    /// The signature algorithm is not ECDSA P-384/SHA-384.
    #[error("unsupported signature algorithm {0}")]
    UnsupportedSignatureAlgorithm(u32),
    /// The ARK is not one of the pinned AMD roots.
    #[error("the ARK is not a pinned AMD root")]
    UntrustedRoot,
    /// The report was requested from another VMPL than the policy (or the matching shape) names.
    #[error("report from VMPL {found}, but VMPL {expected} is required")]
    VmplMismatch {
        /// The VMPL the policy or the shape requires.
        expected: u32,
        /// The report's VMPL.
        found: u32,
    },
}
