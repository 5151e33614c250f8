//! The real TPM event log of the development image (0.1.1) booted by `scripts/boot.sh` (QEMU TCG, Debian's OVMF
//! 2022.11, swtpm with the SHA-256 and SHA-384 banks): parsed, replayed per PCR, folded into the RTMR1/RTMR2 TDVF
//! would measure, and compared with the UKI's predicted events. The UKI (56 MB) is not committed, so the events
//! that hash its contents are pinned from the boot (where `dait-measure check-tpm-log` matched them against the
//! UKI); the rest are recomputed here. The replayed values were also computed with an independent Python replay
//! (tests/vectors/README.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dait_measure::eventlog::{self, ALG_SHA256, ALG_SHA384, EV_EFI_GPT_EVENT, EventLogError};
use dait_measure::gpt;
use dait_measure::tdx::{self, PredictedEvent};
use dait_measure::tpmlog::{self, EventDifference};
use sha2::{Digest, Sha384};

const LOG: &[u8] = include_bytes!("vectors/tpm-eventlog-ovmf-uki.bin");

/// The command line in the UKI's .cmdline section (scripts/image.sh writes it next to the UKI).
const CMDLINE: &str = "roothash=f3e123da7088c472e8717d6ea61dd857ccf10f4e72c1dac9dfa9e6c75c682ad1 console=ttyS0 \
                       systemd.getty_auto=0 systemd.volatile=state systemd.firstboot=no audit=0";

const RTMR1: &str = "0f5ed8137095eb3898c745ff8fb21452057926ca95a840339689db9bd96b0ec96e8b7cd150e7da6ba9b3ed249344fc51";
const RTMR2: &str = "65bc1aa6f9618eeae78e126b7207494e5640743a9f3f754e5a5761f268108c750be92bc781a868bc7de1561ad7c1e90c";

fn sha384(data: &[u8]) -> [u8; 48] {
    Sha384::digest(data).into()
}

fn pinned(label: &str, hex: &str) -> PredictedEvent {
    PredictedEvent {
        label: label.into(),
        digest: hex::decode(hex).unwrap().try_into().unwrap(),
    }
}

fn computed(label: &str, digest: [u8; 48]) -> PredictedEvent {
    PredictedEvent {
        label: label.into(),
        digest,
    }
}

/// RTMR1 as predicted for the booted UKI: the firmware's events recomputed, the GPT from the log's own event
/// data (checked below), the UKI's and the kernel's Authenticode digests pinned.
fn rtmr1_prediction(gpt: [u8; 48]) -> Vec<PredictedEvent> {
    vec![
        computed(
            "action",
            sha384(b"Calling EFI Application from Boot Option"),
        ),
        computed("separator", sha384(&[0; 4])),
        computed("gpt", gpt),
        pinned(
            "uki",
            "13d69a7b3e93ae53d88584c2ac1a406fc7142d670604ba4512a468b5956a548ddd3efdb6b017888268626ea354565ad9",
        ),
        pinned(
            "kernel",
            "d7c1bbc8d84625eb43877d89431db1a70a0a0e90f438aaac32127fe4e506deddf1837c748c430dacaf5161f69b51ecbe",
        ),
        computed("exit", sha384(b"Exit Boot Services Invocation")),
        computed(
            "exited",
            sha384(b"Exit Boot Services Returned with Success"),
        ),
    ]
}

/// RTMR2 as predicted for the booted UKI: section names and the load options recomputed, section contents and
/// the initrd pinned.
fn rtmr2_prediction() -> Vec<PredictedEvent> {
    let contents = [
        (
            ".linux",
            "c412d57b86b3a0e93409c571b3b3a3f464fd09547c3c595383b32b3d7f8e16962e3fa9003fd896d83242e879f7e34a38",
        ),
        (
            ".osrel",
            "a0ff73b91be36208e7f929c945f73f63643c8946a1447bb200fa87ce154fd82618f5ecee79cecf93cd3cb3ae49f389ae",
        ),
        (
            ".cmdline",
            "ecab46bfa317387bed85787cf13bc7532bef0f1a93ac6b2f9296494e37fa80873b4c2f2e47f63ec8e4d550cf288b7a8f",
        ),
        (
            ".initrd",
            "05114d17f82ed6f84ae8dcdd6f1756cceb46f3826098a6428a704fd876c966dd58b1a6cc0980f39f638d3ae1442bdde0",
        ),
        (
            ".uname",
            "3b8f26b902ad7235a0a8bca0f32fb1f799d4cf5f0bd91330c5416c88006c20db5a2e12b96347457807524e6a124edca4",
        ),
        (
            ".sbat",
            "054191c566aee049752ee67c7622bcc835369c18b3a2387a2c4aa043bf189417d25391a5ac239878b4b1b05ed7d18437",
        ),
    ];
    let mut events = Vec::new();
    for (name, content) in contents {
        events.push(computed(
            &format!("{name} name"),
            sha384(format!("{name}\0").as_bytes()),
        ));
        events.push(pinned(&format!("{name} section"), content));
    }
    // The .cmdline section is the command line with a trailing NUL: its digest and the load options'.
    events.push(computed("load options", tdx::cmdline_digest(CMDLINE)));
    events.push(pinned(
        "initrd",
        "7ad15ea6d26b06d7ec1770ddd7a96cd2599b61cfb931376a2e07101577217e3f5943106127445becdda91f622374e0c6",
    ));
    events
}

#[test]
fn the_real_log_parses_and_replays_per_bank() {
    let log = eventlog::parse(LOG).unwrap();
    assert_eq!(log.algorithms, [(ALG_SHA256, 32), (ALG_SHA384, 48)]);
    assert_eq!(log.events.len(), 44);
    let sha384 = log.replay_pcrs(ALG_SHA384).unwrap();
    let sha256 = log.replay_pcrs(ALG_SHA256).unwrap();
    let touched: Vec<u32> = sha384.keys().copied().collect();
    assert_eq!(touched, [0, 1, 2, 3, 4, 5, 6, 7, 9, 11]);
    assert_eq!(
        hex::encode(&sha384[&4]),
        "9494bb86cc04aeec2e5cfb68e70ce9efae2c87a0e2516c26adebe24b7e6e1f53cdba9e3bcee72cd0b1648cf2a567251a"
    );
    assert_eq!(
        hex::encode(&sha384[&9]),
        "0432462703a68b006298352644bae64848b5401752ba8b19f29ab9b9d487d7e32e0d11c83ef70c37c5600fbc6d457594"
    );
    assert_eq!(
        hex::encode(&sha384[&11]),
        "88b1734321ab7d3ca84b34031d9216099cbbc913dee669d81c88ba3faa41d28bf267174d99ae651d1aab5d8408775eb2"
    );
    assert_eq!(
        hex::encode(&sha256[&4]),
        "3fc556997882ca07b6e91d3c2708182a0cd9a5b47501fa7e690eb37e1b582c49"
    );
    // Separators and EFI actions hash exactly their data.
    assert!(log.data_digest_mismatches().is_empty());
}

fn gpt_event(log: &eventlog::EventLog<'_>) -> (Vec<u8>, [u8; 48]) {
    let event = log
        .events
        .iter()
        .find(|e| e.event_type == EV_EFI_GPT_EVENT)
        .unwrap();
    (
        event.data.to_vec(),
        event.digest(ALG_SHA384).unwrap().try_into().unwrap(),
    )
}

#[test]
fn the_gpt_event_is_what_gpt_event_data_reads_from_the_disk() {
    let log = eventlog::parse(LOG).unwrap();
    let (data, digest) = gpt_event(&log);
    assert_eq!(sha384(&data), digest);
    // Put the logged header at LBA 1 and its two used entries at the header's PartitionEntryLBA of a disk
    // with 512-byte sectors, among unused entries: reading the disk gives the logged event back.
    let header = &data[..gpt::HEADER_SIZE];
    assert_eq!(&header[..8], b"EFI PART");
    let entries_lba = u64::from_le_bytes(header[72..80].try_into().unwrap()) as usize;
    let count = u32::from_le_bytes(header[80..84].try_into().unwrap()) as usize;
    let used = u64::from_le_bytes(data[92..100].try_into().unwrap()) as usize;
    assert_eq!((entries_lba, count, used), (2, 128, 3));
    let mut disk = vec![0u8; 512 * entries_lba + count * 128];
    disk[512..512 + gpt::HEADER_SIZE].copy_from_slice(header);
    let start = 512 * entries_lba;
    disk[start..start + used * 128].copy_from_slice(&data[100..]);
    assert_eq!(gpt::gpt_event_data(&disk, 512).unwrap(), data);
    assert_eq!(gpt::gpt_event_digest(&disk, 512).unwrap(), digest);
}

#[test]
fn the_real_log_folds_to_the_predicted_rtmrs() {
    let log = eventlog::parse(LOG).unwrap();
    let fold = tpmlog::fold_into_rtmrs(&log).unwrap();
    assert_eq!(fold.dropped_separators, [21, 22, 23, 24]);
    let rtmr1: Vec<usize> = fold.rtmr1.iter().map(|e| e.index).collect();
    let rtmr2: Vec<usize> = fold.rtmr2.iter().map(|e| e.index).collect();
    assert_eq!(rtmr1, [17, 20, 25, 26, 39, 42, 43]);
    assert_eq!(
        rtmr2,
        [27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 40, 41]
    );
    assert_eq!(hex::encode(tpmlog::replay(&fold.rtmr1)), RTMR1);
    assert_eq!(hex::encode(tpmlog::replay(&fold.rtmr2)), RTMR2);

    let (_, gpt) = gpt_event(&log);
    let rtmr1_predicted = rtmr1_prediction(gpt);
    let rtmr2_predicted = rtmr2_prediction();
    assert!(tpmlog::compare(&fold.rtmr1, &rtmr1_predicted).is_empty());
    assert!(tpmlog::compare(&fold.rtmr2, &rtmr2_predicted).is_empty());
    assert_eq!(tdx::replay(&rtmr1_predicted).to_hex(), RTMR1);
    assert_eq!(tdx::replay(&rtmr2_predicted).to_hex(), RTMR2);
    // The pinned .cmdline content is the command line with its NUL, as systemd-stub measures it.
    assert_eq!(
        rtmr2_predicted[5].digest,
        sha384(format!("{CMDLINE}\0").as_bytes())
    );
}

#[test]
fn a_flipped_digest_is_named_and_changes_the_rtmr() {
    let initrd_section = rtmr2_prediction()[7].digest;
    let at = LOG
        .windows(48)
        .position(|w| w == initrd_section)
        .expect("the .initrd section's digest is in the log");
    let mut flipped = LOG.to_vec();
    flipped[at + 5] ^= 0x01;
    let log = eventlog::parse(&flipped).unwrap();
    let fold = tpmlog::fold_into_rtmrs(&log).unwrap();
    assert_ne!(hex::encode(tpmlog::replay(&fold.rtmr2)), RTMR2);
    let differences = tpmlog::compare(&fold.rtmr2, &rtmr2_prediction());
    let [EventDifference::Differs { log, predicted }] = differences.as_slice() else {
        panic!("{differences:?}");
    };
    assert_eq!(
        (log.index, log.pcr, predicted.label.as_str()),
        (34, 11, ".initrd section")
    );
    // RTMR1 is untouched.
    let (_, gpt) = gpt_event(&log_of(LOG));
    assert!(tpmlog::compare(&fold.rtmr1, &rtmr1_prediction(gpt)).is_empty());
}

fn log_of(bytes: &[u8]) -> eventlog::EventLog<'_> {
    eventlog::parse(bytes).unwrap()
}

#[test]
fn a_truncated_log_is_refused_or_misses_the_last_events() {
    // Cut inside the last event: a parse error naming the event.
    let cut = &LOG[..LOG.len() - 10];
    assert!(matches!(
        eventlog::parse(cut),
        Err(EventLogError::Truncated { index: 44, .. })
    ));
    // Cut at an event boundary (the last two exit actions gone): the comparison names both as missing.
    let log = log_of(LOG);
    let last_two: usize = log.events[42..]
        .iter()
        .map(|e| 12 + 2 * 2 + 32 + 48 + 4 + e.data.len())
        .sum();
    let short = log_of(&LOG[..LOG.len() - last_two]);
    assert_eq!(short.events.len(), 42);
    let fold = tpmlog::fold_into_rtmrs(&short).unwrap();
    let (_, gpt) = gpt_event(&log);
    let differences = tpmlog::compare(&fold.rtmr1, &rtmr1_prediction(gpt));
    let missing: Vec<&str> = differences
        .iter()
        .map(|d| match d {
            EventDifference::Missing { predicted, .. } => predicted.label.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(missing, ["exit", "exited"]);
}

/// `dait-measure check-tpm-log` on a synthetic UKI and a log made of its own prediction (exit 0), then on the
/// same log with a UKI whose initrd changed (exit 1, the changed events named).
#[cfg(feature = "cli")]
#[test]
fn check_tpm_log_command_exit_codes() {
    use dait_measure::uki;
    const TINY_PE: &[u8] = include_bytes!("vectors/tiny-pe.efi");
    let dir = tempfile::tempdir().unwrap();
    let make_uki = |initrd: &[u8]| {
        uki::synthetic_uki(&[
            (".linux", TINY_PE),
            (".osrel", b"ID=debian\n"),
            (".cmdline", b"console=ttyS0"),
            (".initrd", initrd),
        ])
    };
    let image = make_uki(b"initrd");
    let boot = uki::Uki::parse(&image).unwrap();
    let rtmr1 = boot.rtmr1_events(None).unwrap();
    let rtmr2 = boot.rtmr2_events().unwrap();
    // PCR numbers as OVMF, systemd-stub and the kernel use them; the separators of PCR 0-6 in one run.
    let separator = sha384(&[0; 4]);
    let mut events: Vec<(u32, u32, [u8; 48], &[u8])> = vec![(4, 0x8000_0007, rtmr1[0].digest, b"")];
    for pcr in 0..7 {
        events.push((pcr, 4, separator, &[0; 4]));
    }
    events.push((4, 0x8000_0003, rtmr1[2].digest, b""));
    for event in &rtmr2[..rtmr2.len() - 2] {
        events.push((11, 0xd, event.digest, b""));
    }
    events.push((4, 0x8000_0003, rtmr1[3].digest, b""));
    for event in &rtmr2[rtmr2.len() - 2..] {
        events.push((9, 6, event.digest, b""));
    }
    events.push((5, 0x8000_0007, rtmr1[4].digest, b""));
    events.push((5, 0x8000_0007, rtmr1[5].digest, b""));
    let log_path = dir.path().join("log.bin");
    std::fs::write(&log_path, eventlog::encode_sha384_log(&events)).unwrap();
    let uki_path = dir.path().join("uki.efi");
    let run = |uki: &[u8]| {
        std::fs::write(&uki_path, uki).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_dait-measure"))
            .args(["check-tpm-log", "--event-log"])
            .arg(&log_path)
            .arg("--uki")
            .arg(&uki_path)
            .output()
            .unwrap()
    };
    let out = run(&image);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("ok       rtmr1") && text.contains("ok       rtmr2"),
        "{text}"
    );
    assert!(text.contains("sha256: not in the log"), "{text}");

    let out = run(&make_uki(b"INITRD"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    // The UKI's own digest covers the initrd too, so RTMR1 names the UKI's event, and RTMR2 the two initrd
    // events; nothing else.
    assert!(
        text.contains("MISMATCH rtmr1") && text.contains("MISMATCH rtmr2"),
        "{text}"
    );
    let named: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("  log event"))
        .collect();
    assert_eq!(named.len(), 3, "{text}");
    assert!(
        named[0].contains("EV_EFI_BOOT_SERVICES_APPLICATION (the UKI)"),
        "{text}"
    );
    assert!(named[1].contains("systemd-stub .initrd section"), "{text}");
    assert!(named[2].contains("kernel EFI stub initrd"), "{text}");

    // Not a PE image: a usage/input error (2).
    let out = run(b"not a UKI");
    assert_eq!(out.status.code(), Some(2));
}
