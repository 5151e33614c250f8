//! A TPM (PC Client) event log read as TDVF would have measured the same boot into the TDX RTMRs, and compared
//! event by event with a prediction.
//!
//! OVMF with a TPM and TDVF measure the boot with the same code (edk2's Tcg2Dxe / TdTcg2Dxe and
//! DxeTpm2MeasureBootLib) and the same SHA-384 digests; TDVF maps each PCR to a measurement register (PCR 1 and 7 →
//! RTMR0, PCR 2–6 → RTMR1, PCR 8–15 → RTMR2; UEFI 2.10 §38.4.1). So the SHA-384 bank of a TPM log, folded in log
//! order, gives RTMR1 and RTMR2, with these exact differences:
//! - **Separators.** At ReadyToBoot OVMF measures one `EV_SEPARATOR` into each of PCR 0–6 (PCR 7's comes from
//!   the Secure Boot code), TDVF one into each of RTMR0 and RTMR1. Of the run of consecutive separators OVMF
//!   writes, the first in PCR 2–6 is folded into RTMR1 and the others of that run are dropped
//!   ([`TdxFold::dropped_separators`]). A separator outside that run is folded (and then differs from a
//!   prediction).
//! - **`EV_NO_ACTION`** events (the Spec ID event, StartupLocality) are never extended, in either log.
//! - **PCR 0, 1 and 7** are not folded: TDVF's RTMR0 holds the TD HOB, the configuration firmware volume and
//!   QEMU's ACPI tables for a TD, which an OVMF boot does not have, and PCR 0 maps to MRTD, which is not extended.
//! - **PCR 16 and above** have no register on TDX (TDVF refuses to measure into them); an event there is an error.
//!
//! The events both firmwares measure alike, and which this therefore checks: `EV_EFI_ACTION` "Calling EFI
//! Application from Boot Option" (PCR 4), the GPT of the boot disk (`EV_EFI_GPT_EVENT`, PCR 5), the
//! Authenticode digests of the UKI and of the kernel systemd-stub loads (`EV_EFI_BOOT_SERVICES_APPLICATION`,
//! PCR 4), the two Exit Boot Services actions (PCR 5), and everything systemd-stub (PCR 11, 12, 13) and the
//! kernel's EFI stub (PCR 9) measure.

use crate::eventlog::{
    ALG_SHA384, EV_NO_ACTION, EV_SEPARATOR, EventLog, EventLogError, describe, event_type_name,
};
use crate::reference::extend_sha384;
use crate::tdx::PredictedEvent;

/// One TPM-log event folded into an RTMR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoldedEvent {
    /// Position in the log: 0 is the first event after the Spec ID event (as `dait-measure replay --events`
    /// numbers them).
    pub index: usize,
    /// The PCR it was measured into.
    pub pcr: u32,
    /// Event type (`EV_*`).
    pub event_type: u32,
    /// Its SHA-384 digest.
    pub digest: [u8; 48],
    /// The event data as printable text (up to 64 characters), to name the event.
    pub description: String,
}

/// The RTMR1 and RTMR2 events of a TPM log, as TDVF would have measured them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TdxFold {
    /// Events of PCR 2–6, in log order.
    pub rtmr1: Vec<FoldedEvent>,
    /// Events of PCR 8–15, in log order.
    pub rtmr2: Vec<FoldedEvent>,
    /// Log positions of the separators dropped because TDVF measures one per RTMR where OVMF measures one per PCR.
    pub dropped_separators: Vec<usize>,
}

/// Folds the SHA-384 bank of a TPM event log into TDVF's RTMR1 and RTMR2 events (module documentation).
pub fn fold_into_rtmrs(log: &EventLog<'_>) -> Result<TdxFold, EventLogError> {
    let mut fold = TdxFold::default();
    // Whether the previous extended event was a separator of the run that holds RTMR1's separator.
    let mut in_separator_run = false;
    let mut rtmr1_separator = false;
    for (index, event) in log.events.iter().enumerate() {
        if event.event_type == EV_NO_ACTION {
            continue;
        }
        let digest: [u8; 48] = event
            .digest(ALG_SHA384)
            .ok_or(EventLogError::MissingAlgorithm(ALG_SHA384))?
            .try_into()
            .map_err(|_| EventLogError::DigestMismatch {
                index: index.saturating_add(1),
            })?;
        let separator = event.event_type == EV_SEPARATOR;
        let folded = FoldedEvent {
            index,
            pcr: event.register,
            event_type: event.event_type,
            digest,
            description: describe(event.data),
        };
        match event.register {
            0 | 1 | 7 => {}
            2..=6 if separator && rtmr1_separator && in_separator_run => {
                fold.dropped_separators.push(index);
            }
            2..=6 => {
                if separator && !rtmr1_separator {
                    rtmr1_separator = true;
                    in_separator_run = true;
                }
                fold.rtmr1.push(folded);
            }
            8..=15 => fold.rtmr2.push(folded),
            // EventLogError numbers events from 1 (0 is the Spec ID event).
            register => {
                return Err(EventLogError::RegisterOutOfRange {
                    index: index.saturating_add(1),
                    register,
                });
            }
        }
        in_separator_run = in_separator_run && separator;
    }
    Ok(fold)
}

/// An RTMR value from its events, extended from zero.
pub fn replay(events: &[FoldedEvent]) -> [u8; 48] {
    events.iter().fold([0u8; 48], |register, event| {
        extend_sha384(&register, &event.digest)
    })
}

/// Where a folded log and a prediction part, once aligned ([`compare`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventDifference {
    /// The log has an event with another digest than the predicted one at this position.
    Differs {
        /// The log's event.
        log: FoldedEvent,
        /// The prediction's event.
        predicted: PredictedEvent,
    },
    /// The prediction has an event the log does not.
    Missing {
        /// Position in the register's event list (0-based).
        position: usize,
        /// The prediction's event.
        predicted: PredictedEvent,
    },
    /// The log has an event the prediction does not.
    Unexpected {
        /// The log's event.
        log: FoldedEvent,
    },
}

impl core::fmt::Display for EventDifference {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Differs { log, predicted } => write!(
                f,
                "log event {} (PCR {}, {}, {:?}) has {}, predicted {} for {}",
                log.index,
                log.pcr,
                event_type_name(log.event_type),
                log.description,
                hex::encode(log.digest),
                hex::encode(predicted.digest),
                predicted.label
            ),
            Self::Missing {
                position,
                predicted,
            } => write!(
                f,
                "predicted event {position} ({}, {}) is not in the log",
                predicted.label,
                hex::encode(predicted.digest)
            ),
            Self::Unexpected { log } => write!(
                f,
                "log event {} (PCR {}, {}, {:?}, {}) is not predicted",
                log.index,
                log.pcr,
                event_type_name(log.event_type),
                log.description,
                hex::encode(log.digest)
            ),
        }
    }
}

/// Compares a register's folded events with its predicted events; empty when they agree (and then the two
/// replay to the same value). The two lists are aligned on their longest common subsequence of digests, so an
/// extra or a missing event is named alone; between two aligned events, a log event and a predicted event at
/// the same place are reported as one that differs.
pub fn compare(log: &[FoldedEvent], predicted: &[PredictedEvent]) -> Vec<EventDifference> {
    // lcs[i][j]: length of the longest common subsequence of log[i..] and predicted[j..].
    let mut lcs =
        vec![vec![0usize; predicted.len().saturating_add(1)]; log.len().saturating_add(1)];
    for (i, log_event) in log.iter().enumerate().rev() {
        for (j, predicted_event) in predicted.iter().enumerate().rev() {
            let next =
                |a: usize, b: usize| lcs.get(a).and_then(|row| row.get(b)).copied().unwrap_or(0);
            let value = if log_event.digest == predicted_event.digest {
                next(i.saturating_add(1), j.saturating_add(1)).saturating_add(1)
            } else {
                next(i.saturating_add(1), j).max(next(i, j.saturating_add(1)))
            };
            if let Some(cell) = lcs.get_mut(i).and_then(|row| row.get_mut(j)) {
                *cell = value;
            }
        }
    }
    let at = |a: usize, b: usize| lcs.get(a).and_then(|row| row.get(b)).copied().unwrap_or(0);
    let mut differences = Vec::new();
    let (mut unmatched_log, mut unmatched_predicted) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    loop {
        match (log.get(i), predicted.get(j)) {
            (Some(l), Some(p)) if l.digest == p.digest => {
                flush(
                    &mut differences,
                    &mut unmatched_log,
                    &mut unmatched_predicted,
                );
                i = i.saturating_add(1);
                j = j.saturating_add(1);
            }
            (Some(l), Some(_)) if at(i.saturating_add(1), j) >= at(i, j.saturating_add(1)) => {
                unmatched_log.push(l.clone());
                i = i.saturating_add(1);
            }
            (Some(_), Some(p)) => {
                unmatched_predicted.push((j, p.clone()));
                j = j.saturating_add(1);
            }
            (Some(l), None) => {
                unmatched_log.push(l.clone());
                i = i.saturating_add(1);
            }
            (None, Some(p)) => {
                unmatched_predicted.push((j, p.clone()));
                j = j.saturating_add(1);
            }
            (None, None) => break,
        }
    }
    flush(
        &mut differences,
        &mut unmatched_log,
        &mut unmatched_predicted,
    );
    differences
}

/// Reports the unmatched events between two aligned ones: pairs as [`EventDifference::Differs`], the rest as
/// unexpected or missing.
fn flush(
    differences: &mut Vec<EventDifference>,
    log: &mut Vec<FoldedEvent>,
    predicted: &mut Vec<(usize, PredictedEvent)>,
) {
    let mut log = std::mem::take(log).into_iter();
    let mut predicted = std::mem::take(predicted).into_iter();
    loop {
        match (log.next(), predicted.next()) {
            (Some(log), Some((_, predicted))) => {
                differences.push(EventDifference::Differs { log, predicted });
            }
            (Some(log), None) => differences.push(EventDifference::Unexpected { log }),
            (None, Some((position, predicted))) => {
                differences.push(EventDifference::Missing {
                    position,
                    predicted,
                });
            }
            (None, None) => break,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use sha2::{Digest, Sha384};

    use super::*;
    use crate::eventlog::{
        EV_EFI_ACTION, EV_EFI_BOOT_SERVICES_APPLICATION, EV_EFI_VARIABLE_BOOT, EV_IPL,
        encode_sha384_log, parse,
    };

    fn sha384(data: &[u8]) -> [u8; 48] {
        Sha384::digest(data).into()
    }

    /// The shape of an OVMF boot with a TPM: variables, the boot-option action, the separators of PCR 0–6 in
    /// one run, the application, a stub event, a late separator.
    fn ovmf_like(late_separator: u32) -> Vec<u8> {
        let separator = sha384(&[0; 4]);
        let mut events: Vec<(u32, u32, [u8; 48], &[u8])> = vec![
            (1, EV_EFI_VARIABLE_BOOT, sha384(b"BootOrder"), b"BootOrder"),
            (
                4,
                EV_EFI_ACTION,
                sha384(b"Calling EFI Application from Boot Option"),
                b"Calling EFI Application from Boot Option",
            ),
        ];
        for pcr in 0..7 {
            events.push((pcr, EV_SEPARATOR, separator, &[0; 4]));
        }
        events.extend([
            (
                4,
                EV_EFI_BOOT_SERVICES_APPLICATION,
                [0xaa; 48],
                b"\x01\x02" as &[u8],
            ),
            (11, EV_IPL, sha384(b".linux\0"), b".linux\0"),
            (3, EV_NO_ACTION, [0x55; 48], b"not extended"),
            (late_separator, EV_SEPARATOR, separator, &[0; 4]),
        ]);
        encode_sha384_log(&events)
    }

    #[test]
    fn folds_like_tdvf_one_separator_for_rtmr1() {
        let bytes = ovmf_like(5);
        let log = parse(&bytes).unwrap();
        let fold = fold_into_rtmrs(&log).unwrap();
        let rtmr1: Vec<(usize, u32)> = fold.rtmr1.iter().map(|e| (e.index, e.pcr)).collect();
        // The action, PCR 2's separator, the application, and the late separator (not part of the run).
        assert_eq!(rtmr1, [(1, 4), (4, 2), (9, 4), (12, 5)]);
        assert_eq!(fold.dropped_separators, [5, 6, 7, 8]);
        assert_eq!(fold.rtmr2.len(), 1);
        assert_eq!(fold.rtmr2[0].description, ".linux");
        assert_eq!(
            fold.rtmr1[0].description,
            "Calling EFI Application from Boot Option"
        );
        assert_eq!(fold.rtmr1[2].description, "..");
        // RTMR0's events (PCR 0, 1, 7) are not folded, and PCR 16 has no register.
        assert!(
            fold.rtmr1
                .iter()
                .chain(&fold.rtmr2)
                .all(|e| !matches!(e.pcr, 0 | 1 | 7))
        );
        let high = ovmf_like(16);
        assert_eq!(
            fold_into_rtmrs(&parse(&high).unwrap()).unwrap_err(),
            EventLogError::RegisterOutOfRange {
                index: 13,
                register: 16
            }
        );
        // The replay is the extend chain over the folded digests.
        let expected = fold.rtmr2.iter().fold([0u8; 48], |r, e| {
            Sha384::new()
                .chain_update(r)
                .chain_update(e.digest)
                .finalize()
                .into()
        });
        assert_eq!(replay(&fold.rtmr2), expected);
        assert_eq!(replay(&[]), [0; 48]);
    }

    fn predicted(events: &[FoldedEvent]) -> Vec<PredictedEvent> {
        events
            .iter()
            .map(|e| PredictedEvent {
                label: format!("event {}", e.index),
                digest: e.digest,
            })
            .collect()
    }

    #[test]
    fn compare_names_exactly_the_events_that_differ() {
        let bytes = ovmf_like(5);
        let fold = fold_into_rtmrs(&parse(&bytes).unwrap()).unwrap();
        let log = &fold.rtmr1;
        let same = predicted(log);
        assert!(compare(log, &same).is_empty());

        let mut flipped = same.clone();
        flipped[2].digest[0] ^= 1;
        let differences = compare(log, &flipped);
        assert_eq!(differences.len(), 1);
        let EventDifference::Differs {
            log: event,
            predicted,
        } = &differences[0]
        else {
            panic!("{differences:?}");
        };
        assert_eq!((event.index, predicted.label.as_str()), (9, "event 9"));
        assert!(
            differences[0]
                .to_string()
                .starts_with("log event 9 (PCR 4, EV_EFI_BOOT_SERVICES_APPLICATION")
        );

        let mut missing = same.clone();
        missing.remove(1);
        assert!(matches!(
            compare(log, &missing).as_slice(),
            [EventDifference::Unexpected { log }] if log.index == 4
        ));
        let mut extra = same.clone();
        extra.insert(
            3,
            PredictedEvent {
                label: "kernel".into(),
                digest: [1; 48],
            },
        );
        let differences = compare(log, &extra);
        assert!(matches!(
            differences.as_slice(),
            [EventDifference::Missing { position: 3, predicted }] if predicted.label == "kernel"
        ));
        assert!(differences[0].to_string().contains("is not in the log"));
        assert_eq!(compare(&[], &same).len(), same.len());
        assert_eq!(compare(log, &[]).len(), log.len());
    }
}
