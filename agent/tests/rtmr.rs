//! Binding the runtime configuration on TDX (PROTOCOL.md §10.1) on an emulated guest: the configfs-tsm report tree
//! of `tsm.rs` (its `outblob` the real TDX quote of the evidence set) and the tsm-mr measurement registers of Linux
//! 6.16+ (`/sys/class/misc/tdx_guest/measurements/rtmr3:sha384`, kernel ABI
//! `sysfs-devices-virtual-misc-tdx_guest`: read returns the register, each 48-byte write extends it).
//!
//! Where the attribute exists the agent extends each runtime event into RTMR3: the emulated attribute is a FIFO,
//! so the test sees every write, in order, and checks that they replay to the event log's register. Where it does
//! not, the agent takes the launch-time binding: it reads MRCONFIGID from its own quote and refuses to start when
//! the host left it unset, and starts when it binds the event log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::fs;
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use dait_agent::tee::{Platform, TsmBackend};
use dait_agent::{AgentError, RuntimeEvents, bind_runtime};
use dait_chain_client::runtime_log;

/// The report entry the agent's configfs-tsm backend uses.
const ENTRY: &str = "dait";
/// `report_data` and `MRCONFIGID` in a TDX v4 quote (48-byte header, then the TD report body).
const TDX_REPORT_DATA: std::ops::Range<usize> = 568..632;
const TDX_MR_CONFIG_ID: std::ops::Range<usize> = 232..280;
const RTMR3: &str = "rtmr3:sha384";
/// Upper bound on the whole exchange through the FIFO.
const BOUND: Duration = Duration::from_secs(60);

/// The real TDX quote with `report_data` zero (the agent reads its launch field with zero `report_data`) and
/// `MRCONFIGID` = `mr_config_id`.
fn quote(mr_config_id: &[u8; 48]) -> Vec<u8> {
    let mut q = dait_verifier::tdx::decode_quote_file(&dait_testdata::read(
        "tdx/dcap-qvl__v4_b0c06f_quote.bin",
    ));
    q[TDX_REPORT_DATA].fill(0);
    q[TDX_MR_CONFIG_ID].copy_from_slice(mr_config_id);
    q
}

/// An emulated configfs-tsm tree whose `outblob` is `outblob`, and an empty measurements directory.
fn guest(outblob: &[u8]) -> (tempfile::TempDir, tempfile::TempDir) {
    let root = tempfile::tempdir().unwrap();
    let e = root.path().join(ENTRY);
    fs::create_dir(&e).unwrap();
    fs::write(e.join("provider"), "tdx_guest\n").unwrap();
    fs::write(e.join("generation"), "1\n").unwrap();
    fs::write(e.join("inblob"), []).unwrap();
    fs::write(e.join("outblob"), outblob).unwrap();
    (root, tempfile::tempdir().unwrap())
}

/// The runtime events of the agent's default configuration.
fn events() -> RuntimeEvents {
    let (config, _dir) = common::simulated_config(&[]);
    RuntimeEvents::from_config(&config).unwrap()
}

/// Emulates the kernel's attribute at `path` (a FIFO): answers the agent's first read with a zero register, then
/// collects `n` 48-byte writes.
fn emulate_rtmr3(path: &Path, n: usize) -> mpsc::Receiver<Vec<[u8; 48]>> {
    let (tx, rx) = mpsc::channel();
    let path = path.to_owned();
    std::thread::spawn(move || {
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .write_all(&[0u8; 48])
            .unwrap();
        let mut bytes = Vec::new();
        while bytes.len() < n * 48 {
            fs::File::open(&path)
                .unwrap()
                .read_to_end(&mut bytes)
                .unwrap();
        }
        let writes = bytes
            .chunks(48)
            .map(|c| <[u8; 48]>::try_from(c).unwrap())
            .collect();
        let _ = tx.send(writes);
    });
    rx
}

#[test]
fn with_tsm_mr_each_event_is_extended_into_rtmr3() {
    let (root, measurements) = guest(&quote(&[0; 48]));
    let attr = measurements.path().join(RTMR3);
    match std::process::Command::new("mkfifo").arg(&attr).status() {
        Ok(s) if s.success() => {}
        _ => {
            eprintln!("skipped: no mkfifo");
            return;
        }
    }
    let backend =
        TsmBackend::open_with_measurements(root.path(), Platform::Tdx, measurements.path())
            .unwrap();
    assert!(backend.extends_rtmr3());
    let runtime = events();
    let writes = emulate_rtmr3(&attr, runtime.events.len());

    let (done_tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(bind_runtime(&backend, &runtime).map_err(|e| e.to_string()));
    });
    let log = done
        .recv_timeout(BOUND)
        .expect("binding did not finish")
        .unwrap();
    let writes = writes.recv_timeout(BOUND).expect("no extend writes");

    // One write per event, in order, each the event's SHA-384 digest: they replay to the log's register.
    let digests: Vec<[u8; 48]> = log.events().iter().map(|e| e.digest).collect();
    assert_eq!(writes, digests);
    let replayed = writes
        .iter()
        .fold([0u8; 48], |r, d| runtime_log::extend_sha384(&r, d));
    assert_eq!(replayed, log.register());
    // The launch-binding path was not taken: no report was asked for.
    assert!(
        fs::read(root.path().join(ENTRY).join("inblob"))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn without_tsm_mr_the_launch_binding_is_required() {
    let runtime = events();
    // The host left MRCONFIGID unset: the agent refuses to start.
    let (root, measurements) = guest(&quote(&[0; 48]));
    let backend =
        TsmBackend::open_with_measurements(root.path(), Platform::Tdx, measurements.path())
            .unwrap();
    assert!(!backend.extends_rtmr3());
    match bind_runtime(&backend, &runtime) {
        Err(AgentError::UnboundRuntime {
            field: "MRCONFIGID",
            ..
        }) => {}
        other => panic!("expected an unbound runtime, got {other:?}"),
    }
    // The host launched it with the binding value of the event log: the agent starts.
    let register = runtime_log::replay_data(
        runtime
            .events
            .iter()
            .map(|(kind, sha256)| runtime_log::event_data(kind, sha256)),
    );
    let bound = runtime_log::launch_binding_mrconfigid(&register);
    fs::write(root.path().join(ENTRY).join("outblob"), quote(&bound)).unwrap();
    let log = bind_runtime(&backend, &runtime).unwrap();
    assert_eq!(log.register(), register);
    assert_eq!(fs::read_dir(measurements.path()).unwrap().count(), 0);
}
