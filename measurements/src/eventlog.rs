//! TCG2 crypto-agile event logs (TCG PC Client Platform Firmware Profile §10) as firmware writes them for a TPM
//! or, on Intel TDX, into the ACPI CCEL area, and their replay into measurement registers.
//!
//! The log starts with a SHA-1-format `TCG_PCClientPCREvent` whose data is the `Spec ID Event03` structure listing
//! the digest algorithms and sizes; every later event is a `TCG_PCR_EVENT2` carrying one digest per algorithm.
//! On TDX the "PCR index" of an event is the measurement-register index: 0 = MRTD, 1..4 = RTMR0..RTMR3, so an event
//! with index `i` extends `RTMR[i - 1]` with its SHA-384 digest. `EV_NO_ACTION` events are never extended.

use std::collections::BTreeMap;

use sha2::{Digest, Sha384};

use crate::hexbytes::{HexBytes, Sha384Digest};
use crate::reference::extend_sha384;

/// TPM_ALG_SHA1.
pub const ALG_SHA1: u16 = 0x0004;
/// TPM_ALG_SHA256.
pub const ALG_SHA256: u16 = 0x000b;
/// TPM_ALG_SHA384.
pub const ALG_SHA384: u16 = 0x000c;
/// TPM_ALG_SHA512.
pub const ALG_SHA512: u16 = 0x000d;
/// TPM_ALG_SM3_256.
pub const ALG_SM3_256: u16 = 0x0012;

/// EV_NO_ACTION: informational, not extended.
pub const EV_NO_ACTION: u32 = 0x0000_0003;
/// EV_SEPARATOR.
pub const EV_SEPARATOR: u32 = 0x0000_0004;
/// EV_EVENT_TAG.
pub const EV_EVENT_TAG: u32 = 0x0000_0006;
/// EV_PLATFORM_CONFIG_FLAGS (TDVF logs its ACPI tables with it).
pub const EV_PLATFORM_CONFIG_FLAGS: u32 = 0x0000_000a;
/// EV_IPL.
pub const EV_IPL: u32 = 0x0000_000d;
/// EV_EFI_VARIABLE_DRIVER_CONFIG.
pub const EV_EFI_VARIABLE_DRIVER_CONFIG: u32 = 0x8000_0001;
/// EV_EFI_VARIABLE_BOOT.
pub const EV_EFI_VARIABLE_BOOT: u32 = 0x8000_0002;
/// EV_EFI_BOOT_SERVICES_APPLICATION.
pub const EV_EFI_BOOT_SERVICES_APPLICATION: u32 = 0x8000_0003;
/// EV_EFI_BOOT_SERVICES_DRIVER (e.g. a PCI option ROM's UEFI driver).
pub const EV_EFI_BOOT_SERVICES_DRIVER: u32 = 0x8000_0004;
/// EV_EFI_GPT_EVENT (the boot disk's partition table).
pub const EV_EFI_GPT_EVENT: u32 = 0x8000_0006;
/// EV_EFI_ACTION.
pub const EV_EFI_ACTION: u32 = 0x8000_0007;
/// EV_EFI_PLATFORM_FIRMWARE_BLOB2.
pub const EV_EFI_PLATFORM_FIRMWARE_BLOB2: u32 = 0x8000_000a;
/// EV_EFI_HANDOFF_TABLES2.
pub const EV_EFI_HANDOFF_TABLES2: u32 = 0x8000_000b;
/// EV_EFI_VARIABLE_AUTHORITY.
pub const EV_EFI_VARIABLE_AUTHORITY: u32 = 0x8000_00e0;

/// Most events read from one log.
pub const MAX_EVENTS: usize = 1 << 16;
/// Largest event data accepted.
pub const MAX_EVENT_DATA: usize = 16 * 1024 * 1024;
/// Most digest algorithms in the Spec ID event.
pub const MAX_ALGORITHMS: usize = 8;

/// Why an event log could not be parsed or replayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventLogError {
    /// An event's digest list does not match the algorithms of the Spec ID event.
    #[error("event {index}: digest list does not match the Spec ID event")]
    DigestMismatch {
        /// Event index (0 is the Spec ID event).
        index: usize,
    },
    /// An event's data size is over [`MAX_EVENT_DATA`].
    #[error("event {index}: data larger than {MAX_EVENT_DATA} bytes")]
    EventTooLarge {
        /// Event index.
        index: usize,
    },
    /// The first event is not a `Spec ID Event03`.
    #[error("the log does not start with a Spec ID Event03")]
    NoSpecIdEvent,
    /// The log needs a digest algorithm it does not carry.
    #[error("the log has no digests for algorithm {0:#06x}")]
    MissingAlgorithm(u16),
    /// More than [`MAX_EVENTS`] events.
    #[error("more than {MAX_EVENTS} events")]
    TooManyEvents,
    /// A structure is cut short.
    #[error("event {index}: {field} truncated")]
    Truncated {
        /// Event index.
        index: usize,
        /// Which field.
        field: &'static str,
    },
    /// An event names a register this replay does not have.
    #[error("event {index}: register index {register} out of range")]
    RegisterOutOfRange {
        /// Event index.
        index: usize,
        /// The index.
        register: u32,
    },
    /// The Spec ID event lists an unknown algorithm or an inconsistent size.
    #[error("Spec ID event: algorithm {algorithm:#06x} with digest size {size}")]
    UnsupportedAlgorithm {
        /// Algorithm id.
        algorithm: u16,
        /// Size declared.
        size: u16,
    },
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    /// PCR index (on TDX: measurement-register index, RTMR `n` is `n + 1`).
    pub register: u32,
    /// Event type (`EV_*`).
    pub event_type: u32,
    /// `(algorithm, digest)` in log order.
    pub digests: Vec<(u16, &'a [u8])>,
    /// Event data.
    pub data: &'a [u8],
}

impl<'a> Event<'a> {
    /// The digest for one algorithm.
    pub fn digest(&self, algorithm: u16) -> Option<&'a [u8]> {
        self.digests
            .iter()
            .find(|(a, _)| *a == algorithm)
            .map(|(_, d)| *d)
    }
}

/// The `EV_*` name of an event type ("other" for types this crate has no constant for).
pub fn event_type_name(event_type: u32) -> &'static str {
    match event_type {
        EV_NO_ACTION => "EV_NO_ACTION",
        EV_SEPARATOR => "EV_SEPARATOR",
        EV_EVENT_TAG => "EV_EVENT_TAG",
        EV_IPL => "EV_IPL",
        EV_PLATFORM_CONFIG_FLAGS => "EV_PLATFORM_CONFIG_FLAGS",
        EV_EFI_VARIABLE_DRIVER_CONFIG => "EV_EFI_VARIABLE_DRIVER_CONFIG",
        EV_EFI_VARIABLE_BOOT => "EV_EFI_VARIABLE_BOOT",
        EV_EFI_BOOT_SERVICES_APPLICATION => "EV_EFI_BOOT_SERVICES_APPLICATION",
        EV_EFI_BOOT_SERVICES_DRIVER => "EV_EFI_BOOT_SERVICES_DRIVER",
        EV_EFI_GPT_EVENT => "EV_EFI_GPT_EVENT",
        EV_EFI_ACTION => "EV_EFI_ACTION",
        EV_EFI_PLATFORM_FIRMWARE_BLOB2 => "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
        EV_EFI_HANDOFF_TABLES2 => "EV_EFI_HANDOFF_TABLES2",
        EV_EFI_VARIABLE_AUTHORITY => "EV_EFI_VARIABLE_AUTHORITY",
        _ => "other",
    }
}

/// The event data as short printable text: UTF-16LE text (the firmware's variable names, systemd-stub's
/// descriptions) or ASCII up to the first NUL, at most 64 characters; for binary data its first 48 bytes with
/// `.` for each that is not printable.
pub fn describe(data: &[u8]) -> String {
    let utf16 = data.len() >= 4
        && data.len().is_multiple_of(2)
        && data.get(1) == Some(&0)
        && data.get(3) == Some(&0);
    let chars: Vec<char> = if utf16 {
        data.chunks_exact(2)
            .filter_map(|pair| <[u8; 2]>::try_from(pair).ok())
            .map(|pair| char::from_u32(u32::from(u16::from_le_bytes(pair))).unwrap_or('\u{fffd}'))
            .collect()
    } else {
        data.iter().map(|b| char::from(*b)).collect()
    };
    let text: String = chars.into_iter().take_while(|c| *c != '\0').collect();
    if text.is_empty() || !text.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
        return data
            .iter()
            .take(48)
            .map(|b| {
                if b.is_ascii_graphic() || *b == b' ' {
                    char::from(*b)
                } else {
                    '.'
                }
            })
            .collect();
    }
    text.chars().take(64).collect()
}

/// A parsed log: the algorithms from the Spec ID event, and the events after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLog<'a> {
    /// `(algorithm, digest size)` from the Spec ID event.
    pub algorithms: Vec<(u16, u16)>,
    /// The events after the Spec ID event, in order.
    pub events: Vec<Event<'a>>,
}

fn digest_size(algorithm: u16) -> Option<u16> {
    Some(match algorithm {
        ALG_SHA1 => 20,
        ALG_SHA256 | ALG_SM3_256 => 32,
        ALG_SHA384 => 48,
        ALG_SHA512 => 64,
        _ => return None,
    })
}

struct Cursor<'a> {
    rest: &'a [u8],
    index: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], EventLogError> {
        let (head, rest) = self
            .rest
            .split_at_checked(n)
            .ok_or(EventLogError::Truncated {
                index: self.index,
                field,
            })?;
        self.rest = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], EventLogError> {
        let bytes = self.take(N, field)?;
        bytes.try_into().map_err(|_| EventLogError::Truncated {
            index: self.index,
            field,
        })
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, EventLogError> {
        self.array(field).map(u32::from_le_bytes)
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, EventLogError> {
        self.array(field).map(u16::from_le_bytes)
    }

    fn data(&mut self, field: &'static str) -> Result<&'a [u8], EventLogError> {
        let size = usize::try_from(self.u32(field)?).unwrap_or(usize::MAX);
        if size > MAX_EVENT_DATA {
            return Err(EventLogError::EventTooLarge { index: self.index });
        }
        self.take(size, field)
    }

    /// The log ends at the first header that is all 0x00 or all 0xff (an erased or zero-filled area), or at the
    /// end of the bytes.
    fn at_end(&self) -> bool {
        match self.rest.get(..8) {
            None => self.rest.iter().all(|b| *b == 0 || *b == 0xff),
            Some(header) => header.iter().all(|b| *b == 0) || header.iter().all(|b| *b == 0xff),
        }
    }
}

/// Parses a crypto-agile event log. Trailing zero or 0xff fill (the rest of a CCEL area) is accepted.
pub fn parse(bytes: &[u8]) -> Result<EventLog<'_>, EventLogError> {
    let mut cursor = Cursor {
        rest: bytes,
        index: 0,
    };
    // TCG_PCClientPCREvent: pcrIndex, eventType, SHA-1 digest, eventSize, event.
    let _register = cursor.u32("spec id pcr index")?;
    let event_type = cursor.u32("spec id event type")?;
    cursor.take(20, "spec id digest")?;
    let spec = cursor.data("spec id event")?;
    if event_type != EV_NO_ACTION {
        return Err(EventLogError::NoSpecIdEvent);
    }
    let mut spec_cursor = Cursor {
        rest: spec,
        index: 0,
    };
    if spec_cursor.take(16, "spec id signature")? != b"Spec ID Event03\0" {
        return Err(EventLogError::NoSpecIdEvent);
    }
    // platformClass u32, specVersionMinor/Major, specErrata, uintnSize (u8 each), numberOfAlgorithms u32.
    spec_cursor.take(8, "spec id header")?;
    let count = usize::try_from(spec_cursor.u32("spec id algorithm count")?).unwrap_or(usize::MAX);
    if count == 0 || count > MAX_ALGORITHMS {
        return Err(EventLogError::NoSpecIdEvent);
    }
    let mut algorithms = Vec::with_capacity(count);
    for _ in 0..count {
        let algorithm = spec_cursor.u16("spec id algorithm")?;
        let size = spec_cursor.u16("spec id digest size")?;
        if digest_size(algorithm) != Some(size) {
            return Err(EventLogError::UnsupportedAlgorithm { algorithm, size });
        }
        algorithms.push((algorithm, size));
    }

    let mut events = Vec::new();
    while !cursor.at_end() {
        if events.len() >= MAX_EVENTS {
            return Err(EventLogError::TooManyEvents);
        }
        cursor.index = events.len().saturating_add(1);
        let register = cursor.u32("pcr index")?;
        let event_type = cursor.u32("event type")?;
        let digest_count = usize::try_from(cursor.u32("digest count")?).unwrap_or(usize::MAX);
        if digest_count != algorithms.len() {
            return Err(EventLogError::DigestMismatch {
                index: cursor.index,
            });
        }
        let mut digests = Vec::with_capacity(digest_count);
        for _ in 0..digest_count {
            let algorithm = cursor.u16("digest algorithm")?;
            let size = algorithms
                .iter()
                .find(|(a, _)| *a == algorithm)
                .map(|(_, s)| *s)
                .ok_or(EventLogError::DigestMismatch {
                    index: cursor.index,
                })?;
            digests.push((algorithm, cursor.take(usize::from(size), "digest")?));
        }
        let data = cursor.data("event data")?;
        events.push(Event {
            register,
            event_type,
            digests,
            data,
        });
    }
    Ok(EventLog { algorithms, events })
}

/// The four TDX RTMRs.
pub type Rtmrs = [Sha384Digest; 4];

impl EventLog<'_> {
    /// Replays the log into RTMR0..RTMR3 (TDX CCEL: index `i` extends `RTMR[i - 1]` with the SHA-384 digest;
    /// index 0, MRTD, is skipped: MRTD is built by TDH.MEM.PAGE.ADD, not extended).
    pub fn replay_rtmrs(&self) -> Result<Rtmrs, EventLogError> {
        let mut rtmrs = [[0u8; 48]; 4];
        for (position, event) in self.events.iter().enumerate() {
            let index = position.saturating_add(1);
            if event.event_type == EV_NO_ACTION || event.register == 0 {
                continue;
            }
            let slot = usize::try_from(event.register.saturating_sub(1)).unwrap_or(usize::MAX);
            let rtmr = rtmrs
                .get_mut(slot)
                .ok_or(EventLogError::RegisterOutOfRange {
                    index,
                    register: event.register,
                })?;
            let digest = event
                .digest(ALG_SHA384)
                .ok_or(EventLogError::MissingAlgorithm(ALG_SHA384))?;
            let digest: &[u8; 48] = digest
                .try_into()
                .map_err(|_| EventLogError::DigestMismatch { index })?;
            *rtmr = extend_sha384(rtmr, digest);
        }
        Ok(rtmrs.map(HexBytes))
    }

    /// Replays the log into PCRs for one digest bank (`ALG_SHA256`, `ALG_SHA384`, …): `PCR = H(PCR || digest)`
    /// from zero. Only PCRs that the log touches are returned.
    pub fn replay_pcrs(&self, algorithm: u16) -> Result<BTreeMap<u32, Vec<u8>>, EventLogError> {
        let size = usize::from(
            self.algorithms
                .iter()
                .find(|(a, _)| *a == algorithm)
                .map(|(_, s)| *s)
                .ok_or(EventLogError::MissingAlgorithm(algorithm))?,
        );
        let mut pcrs: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
        for event in self.events.iter().filter(|e| e.event_type != EV_NO_ACTION) {
            let digest = event
                .digest(algorithm)
                .ok_or(EventLogError::MissingAlgorithm(algorithm))?;
            let pcr = pcrs
                .entry(event.register)
                .or_insert_with(|| vec![0u8; size]);
            *pcr = hash_pair(algorithm, pcr, digest)
                .ok_or(EventLogError::MissingAlgorithm(algorithm))?;
        }
        Ok(pcrs)
    }

    /// Checks every SHA-384 digest of an event whose digest is defined as the hash of its data (EV_SEPARATOR,
    /// EV_EFI_ACTION, EV_IPL, EV_EVENT_TAG … as in the firmware), returning the indexes of events that differ.
    /// Events whose digest covers something else (a PE image, a firmware blob) are not checked.
    pub fn data_digest_mismatches(&self) -> Vec<usize> {
        self.events
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e.event_type, EV_SEPARATOR | EV_EFI_ACTION))
            .filter(|(_, e)| {
                e.digest(ALG_SHA384)
                    .is_some_and(|d| d != &Sha384::digest(e.data)[..])
            })
            .map(|(i, _)| i)
            .collect()
    }
}

fn hash_pair(algorithm: u16, a: &[u8], b: &[u8]) -> Option<Vec<u8>> {
    use sha2::{Sha256, Sha512};
    Some(match algorithm {
        ALG_SHA256 => Sha256::new()
            .chain_update(a)
            .chain_update(b)
            .finalize()
            .to_vec(),
        ALG_SHA384 => Sha384::new()
            .chain_update(a)
            .chain_update(b)
            .finalize()
            .to_vec(),
        ALG_SHA512 => Sha512::new()
            .chain_update(a)
            .chain_update(b)
            .finalize()
            .to_vec(),
        _ => return None,
    })
}

/// Writes a log with the given SHA-384 events (for tests and for predicting a boot's log).
pub fn encode_sha384_log(events: &[(u32, u32, [u8; 48], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut spec = Vec::new();
    spec.extend_from_slice(b"Spec ID Event03\0");
    spec.extend_from_slice(&0u32.to_le_bytes());
    spec.extend_from_slice(&[0, 2, 0, 2]);
    spec.extend_from_slice(&1u32.to_le_bytes());
    spec.extend_from_slice(&ALG_SHA384.to_le_bytes());
    spec.extend_from_slice(&48u16.to_le_bytes());
    spec.push(0);
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&EV_NO_ACTION.to_le_bytes());
    out.extend_from_slice(&[0u8; 20]);
    out.extend_from_slice(&u32::try_from(spec.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&spec);
    for (register, event_type, digest, data) in events {
        out.extend_from_slice(&register.to_le_bytes());
        out.extend_from_slice(&event_type.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&ALG_SHA384.to_le_bytes());
        out.extend_from_slice(digest);
        out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(data);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn sha384(data: &[u8]) -> [u8; 48] {
        Sha384::digest(data).into()
    }

    #[test]
    fn replays_a_small_log_to_pinned_values() {
        let log = encode_sha384_log(&[
            (
                2,
                EV_EFI_ACTION,
                sha384(b"Calling EFI Application from Boot Option"),
                b"Calling EFI Application from Boot Option",
            ),
            (2, EV_SEPARATOR, sha384(&[0; 4]), &[0; 4]),
            (4, EV_IPL, sha384(b"x"), b"x"),
            (1, EV_NO_ACTION, [7; 48], b"ignored"),
        ]);
        let mut padded = log.clone();
        padded.resize(log.len() + 4096, 0);
        let parsed = parse(&padded).unwrap();
        assert_eq!(parsed.events.len(), 4);
        let rtmrs = parsed.replay_rtmrs().unwrap();
        assert!(rtmrs[0].is_zero() && rtmrs[2].is_zero());
        // Pinned with Python hashlib: extend(extend(0, H(action)), H(00000000)), and extend(0, H("x")).
        assert_eq!(
            rtmrs[1].to_hex(),
            "70bc457e087464760a8927d6312248dc117663410914ff8b1e42fd5dc91e16f5fe3f15ca64372d3e47af8b4c53b01df9"
        );
        assert_eq!(
            rtmrs[3].to_hex(),
            "9bfada7cdb440f4902cabc003f0c6dbf520470ce548d23c184669fed92f745e619119c28150878edaf1ae36f85de5638"
        );
        assert!(parsed.data_digest_mismatches().is_empty());
    }

    #[test]
    fn malformed_logs_fail_with_their_own_error() {
        assert!(matches!(
            parse(&[]),
            Err(EventLogError::Truncated { index: 0, .. })
        ));
        let good = encode_sha384_log(&[(2, EV_IPL, sha384(b"x"), b"x")]);
        let mut not_spec = good.clone();
        not_spec[32] = b'X';
        assert!(matches!(
            parse(&not_spec),
            Err(EventLogError::NoSpecIdEvent)
        ));
        for cut in 1..good.len() {
            let result = parse(&good[..cut]);
            assert!(
                result.is_err() || result.unwrap().events.is_empty(),
                "cut {cut}"
            );
        }
        let mut wrong_count = good.clone();
        let at = good.len() - (4 + 1 + 48 + 2 + 4);
        wrong_count[at..at + 4].copy_from_slice(&2u32.to_le_bytes());
        assert!(matches!(
            parse(&wrong_count),
            Err(EventLogError::DigestMismatch { index: 1 })
        ));
        let mut huge = good.clone();
        let at = good.len() - 5;
        huge[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            parse(&huge),
            Err(EventLogError::EventTooLarge { index: 1 })
        ));
        let bad_reg = encode_sha384_log(&[(9, EV_IPL, sha384(b"x"), b"x")]);
        assert!(matches!(
            parse(&bad_reg).unwrap().replay_rtmrs(),
            Err(EventLogError::RegisterOutOfRange {
                index: 1,
                register: 9
            })
        ));
        assert!(matches!(
            parse(&good).unwrap().replay_pcrs(ALG_SHA256),
            Err(EventLogError::MissingAlgorithm(ALG_SHA256))
        ));
        let mut bad_alg = good.clone();
        let at = 32 + 16 + 8 + 4; // spec id data: signature, header, count, then the first algorithm id
        bad_alg[at] = 0x99;
        assert!(matches!(
            parse(&bad_alg),
            Err(EventLogError::UnsupportedAlgorithm {
                algorithm: 0x99,
                size: 48
            })
        ));
    }
}
