//! Replays the real CCEL event log of a Google Cloud TDX guest (COS 113) and checks it against the RTMRs of the
//! quote captured in the same boot (evidence sample tdx-A3 of the evidence set in `verifier/testdata`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dait_measure::eventlog::{self, EV_EFI_ACTION, EV_SEPARATOR};
use dait_measure::reported;

fn read(name: &str) -> Vec<u8> {
    dait_testdata::read(&format!("tdx/{name}"))
}

#[test]
fn gcp_ccel_log_replays_to_the_quote_rtmrs() {
    let table = read("go-tdx-guest__gcp-cos113_ccel_table.bin");
    let data = read("go-tdx-guest__gcp-cos113_ccel_data.bin");
    let quote = read("go-tdx-guest__gcp-cos113_v4_quote_8000B.bin");

    // ACPI CCEL table: signature, then LAML (log area minimum length) at offset 40.
    assert_eq!(&table[..4], b"CCEL");
    let laml = u64::from_le_bytes(table[40..48].try_into().unwrap());
    assert_eq!(laml, data.len() as u64);

    let log = eventlog::parse(&data).unwrap();
    assert_eq!(log.algorithms, vec![(eventlog::ALG_SHA384, 48)]);
    assert!(log.events.len() > 20, "{} events", log.events.len());
    let replayed = log.replay_rtmrs().unwrap();

    let reported = reported::tdx_quote_fields(&quote).unwrap();
    let rtmr = reported.rtmr.unwrap();
    assert_eq!(replayed, rtmr);
    // The same values as the evidence manifest's independent extraction.
    assert_eq!(
        rtmr[0].to_hex(),
        "3fa2f61f395b7f5feefb4ec2df61297f109ad8abcd6410c1b7df60f21f37b19297fc35e544039c7e1edece752afd17f6"
    );
    assert_eq!(
        rtmr[1].to_hex(),
        "f62dbc072bd5d3f3438b7b35c39a727f5aea2ffc2473f43723953f530daf62504f0a7944aa62c41a86e8a878c2b122c1"
    );
    assert_eq!(
        rtmr[2].to_hex(),
        "4969684dc87381fc3b3134176c8d8806eaf0a901859f5f70cfae8d17714b46c10a8de219048c9fc09f11f381a6fbe7c1"
    );
    assert!(rtmr[3].is_zero());
    assert_eq!(
        reported.mrtd.unwrap().to_hex(),
        "dae67181d3d65e073ad8f95b7907d5e927bfe9761c9ff3e9b89734a45d8954dba41394c7717cb2735396c1d04231f94a"
    );

    // The firmware's separator and EFI action events hash exactly their data (what the RTMR1/RTMR2 prediction
    // relies on).
    let checked = log
        .events
        .iter()
        .filter(|e| matches!(e.event_type, EV_SEPARATOR | EV_EFI_ACTION))
        .count();
    assert!(checked >= 4, "{checked} separator/action events");
    assert_eq!(log.data_digest_mismatches(), Vec::<usize>::new());
}

#[test]
fn one_changed_digest_in_the_log_changes_the_replay() {
    let data = read("go-tdx-guest__gcp-cos113_ccel_data.bin");
    let quote = read("go-tdx-guest__gcp-cos113_v4_quote_8000B.bin");
    let rtmr = reported::tdx_quote_fields(&quote).unwrap().rtmr.unwrap();
    let log = eventlog::parse(&data).unwrap();
    // Find the last event extended into RTMR1 (MR index 2) and flip a bit of its digest in the raw bytes.
    let target = log.events.iter().rev().find(|e| e.register == 2).unwrap();
    let digest = target.digest(eventlog::ALG_SHA384).unwrap();
    let offset = digest.as_ptr() as usize - data.as_ptr() as usize;
    let mut mutated = data.clone();
    mutated[offset] ^= 1;
    let replayed = eventlog::parse(&mutated).unwrap().replay_rtmrs().unwrap();
    assert_eq!(replayed[0], rtmr[0]);
    assert_ne!(replayed[1], rtmr[1]);
    assert_eq!(replayed[2], rtmr[2]);
}

#[test]
fn predicted_rtmr1_firmware_events_match_the_real_log() {
    use dait_measure::tdx;
    let data = read("go-tdx-guest__gcp-cos113_ccel_data.bin");
    let log = eventlog::parse(&data).unwrap();
    let rtmr1: Vec<[u8; 48]> = log
        .events
        .iter()
        .filter(|e| e.register == 2 && e.event_type != eventlog::EV_NO_ACTION)
        .map(|e| e.digest(eventlog::ALG_SHA384).unwrap().try_into().unwrap())
        .collect();
    // The prediction for a direct boot: boot-option action, separator, the application, two exit-boot-services
    // actions. The real (shim + grub, disk) boot has the same firmware events around its GPT and image events.
    let predicted = tdx::rtmr1_events(&dait_measure::HexBytes([0; 48]));
    assert_eq!(rtmr1[0], predicted[0].digest);
    assert_eq!(rtmr1[1], predicted[1].digest);
    assert_eq!(rtmr1[rtmr1.len() - 2], predicted[3].digest);
    assert_eq!(rtmr1[rtmr1.len() - 1], predicted[4].digest);
    // Replaying the real digests with the prediction's fold gives the quote's RTMR1.
    let folded = rtmr1.iter().fold([0u8; 48], |r, d| {
        dait_measure::reference::extend_sha384(&r, d)
    });
    let quote = read("go-tdx-guest__gcp-cos113_v4_quote_8000B.bin");
    assert_eq!(
        folded,
        reported::tdx_quote_fields(&quote).unwrap().rtmr.unwrap()[1].0
    );
}
