//! The RTMR1 and RTMR2 events of booting a unified kernel image (UKI: systemd-stub with the kernel, its command
//! line and its initrd as PE sections), from the UKI alone (and, for a boot from disk, the disk's GPT).
//!
//! Confirmed against the TPM event log of the development image booted under QEMU with OVMF and swtpm
//! (systemd-stub 257, Linux 6.12; `dait-measure check-tpm-log`, docs/MEASUREMENTS.md):
//! - RTMR1 (PCR 2–6): the firmware's `"Calling EFI Application from Boot Option"` and separator, the GPT of the
//!   boot disk when it boots from one (`EV_EFI_GPT_EVENT`), the UKI's Authenticode digest, then the kernel's:
//!   systemd-stub starts the `.linux` section with the firmware's LoadImage, which measures it like any EFI
//!   application. Last the two Exit Boot Services actions.
//! - RTMR2 (PCR 8–15): systemd-stub measures each of the UKI's sections it knows into PCR 11, in its own fixed
//!   order (not the file's): first the section's name with its NUL, then the section as loaded (`VirtualSize`
//!   bytes). Then the kernel's EFI stub measures into PCR 9 the load options systemd-stub passes it (the
//!   `.cmdline` section in UTF-16LE with a NUL) and the initrd it loads through LoadFile2: the `.initrd` section
//!   padded to 4 bytes, followed by the cpio archive systemd-stub makes of the `.osrel` section
//!   (`/.extra/os-release`).
//!
//! The prediction assumes nothing on the ESP beside the UKI (no credentials, system or configuration extensions,
//! add-ons: systemd-stub would add them to the initrd and measure them into PCR 12/13) and refuses a UKI with
//! sections that change what systemd-stub builds (`.ucode`, `.pcrsig`, `.pcrpkey`, `.profile`), which this image
//! does not have.

use sha2::{Digest, Sha384};

use crate::tdx::{self, PeSection, PredictedEvent, TdxError};

/// The sections systemd-stub (257) measures, in the order it measures them (its `UnifiedSection` enum, without
/// `.pcrsig`, which is never measured).
pub const MEASURED_SECTIONS: [&str; 13] = [
    ".linux", ".osrel", ".cmdline", ".initrd", ".ucode", ".splash", ".dtb", ".uname", ".sbat",
    ".pcrpkey", ".profile", ".dtbauto", ".hwids",
];

/// Sections that make systemd-stub add to the initrd or pick a profile, which the prediction does not model.
pub const UNSUPPORTED_SECTIONS: [&str; 4] = [".pcrpkey", ".pcrsig", ".profile", ".ucode"];

/// Why the events of a UKI boot could not be predicted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UkiError {
    /// The UKI lacks a section every UKI has.
    #[error("the UKI has no {0} section")]
    MissingSection(&'static str),
    /// The UKI or its `.linux` section is not a PE image this code reads.
    #[error(transparent)]
    Pe(#[from] TdxError),
    /// The UKI has a section the prediction does not model.
    #[error("the UKI has a {0} section, which the prediction does not model")]
    UnsupportedSection(String),
}

fn sha384(data: &[u8]) -> [u8; 48] {
    Sha384::digest(data).into()
}

fn pad4(buffer: &mut Vec<u8>) {
    let padded = buffer.len().next_multiple_of(4);
    buffer.resize(padded, 0);
}

/// One newc cpio header as systemd-stub writes it (inode, mode, nlink 1, everything else zero but size and
/// name size), followed by the name with its NUL and padding to 4 bytes.
fn cpio_header(buffer: &mut Vec<u8>, inode: u32, mode: u32, size: usize, name: &str) {
    let name_size = name.len().saturating_add(1);
    buffer.extend_from_slice(b"070701");
    for field in [inode, mode, 0, 0, 1, 0] {
        buffer.extend_from_slice(format!("{field:08x}").as_bytes());
    }
    for field in [size, 0, 0, 0, 0, name_size, 0] {
        buffer.extend_from_slice(format!("{field:08x}").as_bytes());
    }
    buffer.extend_from_slice(name.as_bytes());
    buffer.push(0);
    pad4(buffer);
}

/// The cpio archive systemd-stub's `pack_cpio_literal` makes of one file: the directory (mode 0555), the file
/// (mode 0444) with its content, and the trailer.
pub fn cpio_literal(directory: &str, file: &str, content: &[u8]) -> Vec<u8> {
    let mut buffer = Vec::new();
    cpio_header(&mut buffer, 1, 0o040_555, 0, directory);
    cpio_header(
        &mut buffer,
        2,
        0o100_444,
        content.len(),
        &format!("{directory}/{file}"),
    );
    buffer.extend_from_slice(content);
    pad4(&mut buffer);
    buffer.extend_from_slice(b"070701");
    for field in [0u32, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x0b, 0] {
        buffer.extend_from_slice(format!("{field:08X}").as_bytes());
    }
    buffer.extend_from_slice(b"TRAILER!!!\0\0\0\0");
    buffer
}

/// The command line systemd-stub passes the kernel from the `.cmdline` section (its `mangle_stub_cmdline`): up
/// to the first NUL, leading and trailing whitespace and control characters dropped, inner ones made spaces.
pub fn stub_cmdline(section: &[u8]) -> String {
    let text = String::from_utf8_lossy(section);
    let text = text.split('\0').next().unwrap_or_default();
    text.trim_matches(|c: char| c <= ' ')
        .chars()
        .map(|c| if c <= ' ' { ' ' } else { c })
        .collect()
}

/// A UKI with its section table read.
#[derive(Debug, Clone)]
pub struct Uki<'a> {
    image: &'a [u8],
    sections: Vec<PeSection>,
}

impl<'a> Uki<'a> {
    /// Reads the section table and refuses sections the prediction does not model.
    pub fn parse(image: &'a [u8]) -> Result<Self, UkiError> {
        let sections = tdx::pe_sections(image)?;
        if let Some(unsupported) = sections
            .iter()
            .find(|s| UNSUPPORTED_SECTIONS.contains(&s.name.as_str()))
        {
            return Err(UkiError::UnsupportedSection(unsupported.name.clone()));
        }
        let uki = Self { image, sections };
        uki.section(".linux")?;
        Ok(uki)
    }

    fn find(&self, name: &str) -> Option<&PeSection> {
        self.sections
            .iter()
            .find(|s| s.name == name && s.virtual_size > 0)
    }

    fn section(&self, name: &'static str) -> Result<std::borrow::Cow<'a, [u8]>, UkiError> {
        let section = self.find(name).ok_or(UkiError::MissingSection(name))?;
        Ok(section.loaded(self.image)?)
    }

    /// The initrd the kernel loads: `.initrd` padded to 4 bytes, then the `/.extra/os-release` cpio of `.osrel`
    /// (each part only when its section is there).
    pub fn initrd(&self) -> Result<Option<Vec<u8>>, UkiError> {
        let mut parts = Vec::new();
        if self.find(".initrd").is_some() {
            parts.push(self.section(".initrd")?.into_owned());
        }
        if self.find(".osrel").is_some() {
            parts.push(cpio_literal(
                ".extra",
                "os-release",
                &self.section(".osrel")?,
            ));
        }
        if parts.len() <= 1 {
            return Ok(parts.pop());
        }
        let mut combined = Vec::new();
        for part in parts {
            combined.extend_from_slice(&part);
            pad4(&mut combined);
        }
        Ok(Some(combined))
    }

    /// RTMR1 events of booting the UKI, with the boot disk's GPT event digest
    /// ([`crate::gpt::gpt_event_digest`]) when it boots from a disk.
    pub fn rtmr1_events(&self, gpt: Option<[u8; 48]>) -> Result<Vec<PredictedEvent>, UkiError> {
        let uki = tdx::authenticode_sha384(self.image)?;
        let kernel = tdx::authenticode_sha384(&self.section(".linux")?)?;
        let mut events = tdx::rtmr1_events(&uki);
        // tdx::rtmr1_events lists the action, the separator, the application, then the two exit actions.
        let mut tail = events.split_off(3);
        if let Some(gpt) = gpt {
            events.insert(
                2,
                PredictedEvent {
                    label: "EV_EFI_GPT_EVENT (boot disk)".into(),
                    digest: gpt,
                },
            );
        }
        if let Some(application) = events.last_mut() {
            application.label = "EV_EFI_BOOT_SERVICES_APPLICATION (the UKI)".into();
        }
        events.push(PredictedEvent {
            label: "EV_EFI_BOOT_SERVICES_APPLICATION (.linux, loaded by systemd-stub)".into(),
            digest: kernel.0,
        });
        events.append(&mut tail);
        Ok(events)
    }

    /// RTMR2 events of booting the UKI: systemd-stub's section events (PCR 11), then the kernel's EFI stub's
    /// load options and initrd (PCR 9).
    pub fn rtmr2_events(&self) -> Result<Vec<PredictedEvent>, UkiError> {
        let mut events = Vec::new();
        for name in MEASURED_SECTIONS {
            let Some(section) = self.find(name) else {
                continue;
            };
            let mut with_nul = name.as_bytes().to_vec();
            with_nul.push(0);
            events.push(PredictedEvent {
                label: format!("systemd-stub {name} name"),
                digest: sha384(&with_nul),
            });
            events.push(PredictedEvent {
                label: format!("systemd-stub {name} section"),
                digest: sha384(&section.loaded(self.image)?),
            });
        }
        if self.find(".cmdline").is_some() {
            let cmdline = self.section(".cmdline")?;
            events.push(PredictedEvent {
                label: "kernel EFI stub load options (.cmdline, UTF-16LE)".into(),
                digest: tdx::cmdline_digest(&stub_cmdline(&cmdline)),
            });
        }
        if let Some(initrd) = self.initrd()? {
            events.push(PredictedEvent {
                label: "kernel EFI stub initrd (.initrd and the .osrel cpio)".into(),
                digest: sha384(&initrd),
            });
        }
        Ok(events)
    }
}

/// A minimal PE32+ image with the given sections (each at a 512-byte aligned file offset, `VirtualSize` its
/// length): a UKI for tests, with `.linux` any PE image.
pub fn synthetic_uki(sections: &[(&str, &[u8])]) -> Vec<u8> {
    const ALIGN: usize = 0x200;
    const OPTIONAL_SIZE: u16 = 240;
    let table = 0x58 + usize::from(OPTIONAL_SIZE);
    let headers = table
        .saturating_add(sections.len().saturating_mul(40))
        .next_multiple_of(ALIGN);
    let mut image = vec![0u8; headers];
    let put = |image: &mut Vec<u8>, at: usize, bytes: &[u8]| {
        if let Some(slot) = image.get_mut(at..at.saturating_add(bytes.len())) {
            slot.copy_from_slice(bytes);
        }
    };
    put(&mut image, 0, b"MZ");
    put(&mut image, 0x3c, &0x40u32.to_le_bytes());
    put(&mut image, 0x40, b"PE\0\0");
    put(&mut image, 0x44, &0x8664u16.to_le_bytes());
    let count = u16::try_from(sections.len()).unwrap_or(u16::MAX);
    put(&mut image, 0x46, &count.to_le_bytes());
    put(&mut image, 0x54, &OPTIONAL_SIZE.to_le_bytes());
    put(&mut image, 0x58, &0x20bu16.to_le_bytes());
    let headers_u32 = u32::try_from(headers).unwrap_or(u32::MAX);
    put(&mut image, 0x58 + 60, &headers_u32.to_le_bytes());
    put(&mut image, 0x58 + 108, &16u32.to_le_bytes());
    for (index, (name, data)) in sections.iter().enumerate() {
        let offset = image.len();
        let raw_size = data.len().next_multiple_of(ALIGN);
        let at = table.saturating_add(index.saturating_mul(40));
        let mut name_field = [0u8; 8];
        for (slot, byte) in name_field.iter_mut().zip(name.bytes()) {
            *slot = byte;
        }
        put(&mut image, at, &name_field);
        for (field, value) in [(8, data.len()), (12, offset), (16, raw_size), (20, offset)] {
            let value = u32::try_from(value).unwrap_or(u32::MAX);
            put(&mut image, at.saturating_add(field), &value.to_le_bytes());
        }
        image.extend_from_slice(data);
        image.resize(offset.saturating_add(raw_size), 0);
    }
    image
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const TINY_PE: &[u8] = include_bytes!("../tests/vectors/tiny-pe.efi");
    const OSREL: &[u8] = b"ID=debian\n";

    fn sample() -> Vec<u8> {
        // In file order unlike systemd-stub's measuring order, and .initrd not a multiple of 4 bytes long.
        synthetic_uki(&[
            (".sbat", b"sbat,1\n"),
            (".osrel", OSREL),
            (".cmdline", b" console=ttyS0\nro \0"),
            (".uname", b"6.12.0"),
            (".linux", TINY_PE),
            (".initrd", b"initrd bytes!"),
        ])
    }

    #[test]
    fn cpio_literal_is_systemd_stubs_format() {
        // Pinned with an independent Python copy of systemd's pack_cpio_literal, which reproduced the initrd
        // digest of the real boot log (tests/tpm_log.rs).
        let cpio = cpio_literal(".extra", "os-release", OSREL);
        assert_eq!(cpio.len(), 384);
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&cpio)),
            "8cc6f75462463b43f4a4aff2333016ed65df71fc66216f476c19a15571db525f"
        );
        assert!(cpio.ends_with(b"TRAILER!!!\0\0\0\0"));
    }

    #[test]
    fn stub_cmdline_mangles_like_systemd_stub() {
        assert_eq!(
            stub_cmdline(b" console=ttyS0\nro \0junk"),
            "console=ttyS0 ro"
        );
        assert_eq!(stub_cmdline(b"a=1"), "a=1");
        assert_eq!(stub_cmdline(b""), "");
    }

    #[test]
    fn sections_are_read_as_loaded() {
        let image = sample();
        let sections = tdx::pe_sections(&image).unwrap();
        let names: Vec<&str> = sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [".sbat", ".osrel", ".cmdline", ".uname", ".linux", ".initrd"]
        );
        let linux = sections.iter().find(|s| s.name == ".linux").unwrap();
        assert_eq!(linux.loaded(&image).unwrap().as_ref(), TINY_PE);
        assert_eq!(linux.raw_size % 0x200, 0);
        // A VirtualSize past the file's data is zero-filled, as in memory.
        let mut longer = linux.clone();
        longer.virtual_size = longer.raw_size + 3;
        let loaded = longer.loaded(&image).unwrap();
        assert_eq!(loaded.len(), longer.raw_size + 3);
        assert!(loaded.ends_with(&[0, 0, 0]));
        let mut outside = linux.clone();
        outside.raw_offset = image.len();
        assert!(outside.loaded(&image).is_err());
    }

    #[test]
    fn rtmr2_follows_systemd_stubs_order_then_the_kernels_events() {
        let image = sample();
        let events = Uki::parse(&image).unwrap().rtmr2_events().unwrap();
        let labels: Vec<&str> = events.iter().map(|e| e.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "systemd-stub .linux name",
                "systemd-stub .linux section",
                "systemd-stub .osrel name",
                "systemd-stub .osrel section",
                "systemd-stub .cmdline name",
                "systemd-stub .cmdline section",
                "systemd-stub .initrd name",
                "systemd-stub .initrd section",
                "systemd-stub .uname name",
                "systemd-stub .uname section",
                "systemd-stub .sbat name",
                "systemd-stub .sbat section",
                "kernel EFI stub load options (.cmdline, UTF-16LE)",
                "kernel EFI stub initrd (.initrd and the .osrel cpio)",
            ]
        );
        assert_eq!(events[0].digest, sha384(b".linux\0"));
        assert_eq!(events[1].digest, sha384(TINY_PE));
        assert_eq!(events[12].digest, tdx::cmdline_digest("console=ttyS0 ro"));
        let mut initrd = b"initrd bytes!\0\0\0".to_vec();
        initrd.extend_from_slice(&cpio_literal(".extra", "os-release", OSREL));
        assert_eq!(events[13].digest, sha384(&initrd));
    }

    #[test]
    fn rtmr1_has_the_gpt_the_uki_and_the_kernel() {
        let image = sample();
        let uki = Uki::parse(&image).unwrap();
        let events = uki.rtmr1_events(Some([7; 48])).unwrap();
        let digests: Vec<[u8; 48]> = events.iter().map(|e| e.digest).collect();
        assert_eq!(events.len(), 7);
        assert_eq!(
            digests[0],
            sha384(b"Calling EFI Application from Boot Option")
        );
        assert_eq!(digests[1], sha384(&[0; 4]));
        assert_eq!(digests[2], [7; 48]);
        assert_eq!(digests[3], tdx::authenticode_sha384(&image).unwrap().0);
        assert_eq!(digests[4], tdx::authenticode_sha384(TINY_PE).unwrap().0);
        assert_eq!(digests[5], sha384(b"Exit Boot Services Invocation"));
        assert_eq!(
            digests[6],
            sha384(b"Exit Boot Services Returned with Success")
        );
        let direct = uki.rtmr1_events(None).unwrap();
        assert_eq!(direct.len(), 6);
        assert_eq!(direct[2].digest, digests[3]);
    }

    #[test]
    fn a_uki_the_prediction_does_not_model_is_refused() {
        for section in UNSUPPORTED_SECTIONS {
            let image = synthetic_uki(&[(".linux", TINY_PE), (section, b"x")]);
            assert_eq!(
                Uki::parse(&image).unwrap_err(),
                UkiError::UnsupportedSection(section.to_owned())
            );
        }
        let no_kernel = synthetic_uki(&[(".cmdline", b"x")]);
        assert_eq!(
            Uki::parse(&no_kernel).unwrap_err(),
            UkiError::MissingSection(".linux")
        );
        assert!(matches!(
            Uki::parse(b"not a PE"),
            Err(UkiError::Pe(TdxError::NotPe { .. }))
        ));
        // .linux must itself be a PE image (the firmware measures it as one).
        let bad_kernel = synthetic_uki(&[(".linux", b"not a PE")]);
        let uki = Uki::parse(&bad_kernel).unwrap();
        assert!(matches!(uki.rtmr1_events(None), Err(UkiError::Pe(_))));
    }
}
