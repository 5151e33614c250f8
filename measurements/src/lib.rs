//! Expected TDX and SEV-SNP measurements of a dait guest image, and the reference values published per release.
//!
//! # What it does
//! - [`mod@reference`]: the reference file type, [`ReferenceMeasurements`]
//!   (`measurements/reference/<release>.json`), with [`ReferenceMeasurements::load`] and
//!   [`ReferenceMeasurements::validate`]. The verifier builds its policy from it.
//! - [`snp`]: the SEV-SNP launch digest of a QEMU guest booted directly from an OVMF with the kernel-hashes
//!   table (checked against `sev-snp-measure`).
//! - [`tdx`]: TDX MRTD from the TDVF metadata, the Authenticode digest of an EFI application, and the RTMR1/RTMR2
//!   events of a direct boot.
//! - [`eventlog`]: TCG2 crypto-agile / CCEL event logs and their replay into RTMRs or PCRs.
//! - [`uki`] and [`gpt`]: the RTMR1/RTMR2 events of booting a UKI (systemd-stub's and the kernel's), from the UKI
//!   and the boot disk's partition table.
//! - [`tpmlog`]: a TPM event log folded into the RTMR1/RTMR2 events TDVF would measure, compared with a
//!   prediction event by event.
//! - [`reported`] and [`diff`]: values read from a quote, a report or JSON, compared with a reference field by
//!   field.
//! - `cli` (feature `cli`): the `dait-measure` command line.
//!
//! ```
//! use dait_measure::snp::{self, CpuType, Ovmf, SevHashes, SnpLaunch};
//!
//! let firmware = snp::synthetic_ovmf(16, snp::AMDSEV_SECTIONS, Some(snp::AMDSEV_HASHES_TABLE), snp::AMDSEV_RESET_EIP);
//! let ovmf = Ovmf::parse(&firmware)?;
//! let hashes = SevHashes::new(b"kernel bytes", None, Some("console=ttyS0"));
//! let cpu = CpuType::from_name("EPYC-v4").ok_or(snp::SnpError::Vcpus)?;
//! let launch = SnpLaunch { hashes: Some(&hashes), vcpus: 4, cpu, guest_features: snp::DEFAULT_GUEST_FEATURES };
//! let digest = snp::launch_digest(&ovmf, &launch)?;
//! assert_eq!(digest.to_hex().len(), 96);
//! # Ok::<(), snp::SnpError>(())
//! ```
//!
//! # Feature flags
//! | feature | default | what it adds |
//! |---|---|---|
//! | `cli` | yes | the `dait-measure` binary (clap, anyhow); library users turn default features off |
//!
//! # Security
//! Computing expected values is only as good as its inputs: the artefacts must be the ones the image build
//! produced (their hashes are recorded in the reference file), and the VM shape must be the one the host launches.
//! The parsers here read firmware images and event logs that may be attacker-supplied; they never panic and cap
//! every length they read.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

#[cfg(feature = "cli")]
pub mod cli;
pub mod diff;
pub mod eventlog;
pub mod gpt;
pub mod hexbytes;
pub mod reference;
pub mod reported;
pub mod snp;
pub mod tdx;
pub mod tpmlog;
pub mod uki;

pub use hexbytes::{HexBytes, Sha256Digest, Sha384Digest};
pub use reference::{ReferenceError, ReferenceMeasurements};
