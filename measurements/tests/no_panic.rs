//! Parsers never panic on arbitrary or mutated input (each returns its error instead).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dait_measure::{eventlog, gpt, reported, snp, tdx, tpmlog, uki};

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn mutate(rng: &mut XorShift, base: &[u8], window: usize) -> Vec<u8> {
    let mut bytes = base.to_vec();
    for _ in 0..(rng.next() % 8 + 1) {
        let len = bytes.len();
        let at = len - 1 - (rng.next() as usize % window.min(len));
        bytes[at] = rng.next() as u8;
    }
    if rng.next().is_multiple_of(4) {
        let cut = rng.next() as usize % bytes.len();
        bytes.truncate(cut);
    }
    bytes
}

fn parse_all(bytes: &[u8]) {
    let _ = eventlog::parse(bytes).map(|log| {
        (
            log.replay_rtmrs(),
            log.replay_pcrs(eventlog::ALG_SHA256),
            tpmlog::fold_into_rtmrs(&log),
        )
    });
    let _ = uki::Uki::parse(bytes).map(|u| (u.rtmr1_events(None), u.rtmr2_events()));
    let _ = gpt::gpt_event_data(bytes, 512);
    let _ = snp::Ovmf::parse(bytes);
    let _ = tdx::Tdvf::parse(bytes).map(|t| tdx::mrtd(&t, tdx::PageAddOrder::PerPage));
    let _ = tdx::authenticode_sha384(bytes);
    let _ = reported::tdx_quote_fields(bytes);
    let _ = reported::snp_report_fields(bytes);
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for len in [0usize, 1, 7, 64, 100, 1184, 4096, 8192] {
        for _ in 0..20 {
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            parse_all(&bytes);
        }
    }
}

#[test]
fn mutated_valid_inputs_never_panic() {
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let tdvf = include_bytes!("vectors/tdvf-synthetic.fd");
    let pe = include_bytes!("vectors/tiny-pe.efi");
    let ovmf = snp::synthetic_ovmf(
        16,
        snp::AMDSEV_SECTIONS,
        Some(snp::AMDSEV_HASHES_TABLE),
        snp::AMDSEV_RESET_EIP,
    );
    let log = eventlog::encode_sha384_log(&[
        (2, eventlog::EV_EFI_ACTION, [1; 48], b"action"),
        (3, 0xd, [2; 48], b"x"),
    ]);
    let uki = uki::synthetic_uki(&[
        (".linux", pe.as_slice()),
        (".osrel", b"ID=debian\n"),
        (".cmdline", b"console=ttyS0"),
        (".initrd", b"initrd"),
    ]);
    for _ in 0..300 {
        parse_all(&mutate(&mut rng, &uki, uki.len()));
        parse_all(&mutate(&mut rng, tdvf, 4096));
        parse_all(&mutate(&mut rng, pe, pe.len()));
        parse_all(&mutate(&mut rng, &ovmf, 512));
        let mut mutated_log = log.clone();
        let at = rng.next() as usize % mutated_log.len();
        mutated_log[at] = rng.next() as u8;
        parse_all(&mutated_log);
    }
}
