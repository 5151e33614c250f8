//! A real software TPM for the vTPM tests and bench: `swtpm socket --tpm2` on 127.0.0.1 with a temporary
//! state directory, started and initialised (`--flags not-need-init,startup-clear`), killed on drop.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a started swtpm may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `swtpm socket --tpm2`.
pub struct Swtpm {
    child: Child,
    port: u16,
    state: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

/// Whether `swtpm` can be run here; when not, prints `skipped: no swtpm`, or fails the test when
/// `DAIT_REQUIRE_SWTPM=1` (as `scripts/test.sh` sets it, so CI never passes without the vTPM tests).
pub fn swtpm_available() -> bool {
    let found = Command::new("swtpm")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("DAIT_REQUIRE_SWTPM").as_deref() != Ok("1"),
            "DAIT_REQUIRE_SWTPM=1 but swtpm is not found (scripts/install-tools.sh installs it)"
        );
        eprintln!("skipped: no swtpm (install swtpm swtpm-tools libtss2-dev)");
    }
    found
}

/// Two consecutive free ports on 127.0.0.1 (the TPM port and its control port, as the `swtpm` TCTI expects).
fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let first = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = first.local_addr().unwrap().port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no two consecutive free ports on 127.0.0.1");
}

impl Swtpm {
    /// A fresh TPM (new state directory: its own endorsement seed, so its own attestation key).
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().to_path_buf();
        let mut tpm = Self::start_in(&state);
        tpm._dir = Some(dir);
        tpm
    }

    /// The TPM whose state is in `state` (the same seeds, so the same attestation key), freshly started: its
    /// PCRs are in their reset state.
    pub fn start_in(state: &Path) -> Self {
        let mut last = String::new();
        // A port taken between the probe and swtpm's bind makes swtpm exit: try again on others.
        for _ in 0..5 {
            let port = free_port_pair();
            let mut child = Command::new("swtpm")
                .args(["socket", "--tpm2"])
                .arg("--server")
                .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
                .arg("--ctrl")
                .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
                .arg("--tpmstate")
                .arg(format!("dir={}", state.display()))
                .args(["--flags", "not-need-init,startup-clear"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawning swtpm");
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    let mut stderr = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        use std::io::Read as _;
                        let _ = e.read_to_string(&mut stderr);
                    }
                    last = format!("swtpm exited with {status}: {stderr}");
                    break;
                }
                // The control port answers once the TPM is initialised; probing the TPM port would take
                // swtpm's single client slot.
                let ctrl = SocketAddr::from(([127, 0, 0, 1], port + 1));
                if TcpStream::connect_timeout(&ctrl, Duration::from_millis(200)).is_ok() {
                    return Self {
                        child,
                        port,
                        state: state.to_path_buf(),
                        _dir: None,
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("swtpm did not listen within {START_TIMEOUT:?}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("swtpm did not start: {last}");
    }

    /// The TSS TCTI of this TPM, the agent's `--tpm` value.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// The state directory (to start the same TPM again with [`Swtpm::start_in`]).
    pub fn state(&self) -> &Path {
        &self.state
    }

    /// Stops this TPM and starts it again on the same state: same keys, PCRs reset. The state directory
    /// stays owned by the returned value.
    pub fn restart(mut self) -> Self {
        self.stop();
        let dir = self._dir.take();
        let mut tpm = Self::start_in(&self.state);
        tpm._dir = dir;
        tpm
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        self.stop();
    }
}
