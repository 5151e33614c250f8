//! The real development engine for the tests that need one (`scripts/engine.sh`): its URL and the weights file
//! it serves.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `scripts/engine.sh ARG`'s one line of output, when it succeeds and prints one.
fn engine_script(arg: &str) -> Option<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/engine.sh");
    let out = Command::new(script)
        .arg(arg)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// A non-empty environment variable.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The real engine's base URL (no trailing `/`): `DAIT_ENGINE_URL`, else the one `scripts/engine.sh start`
/// started (`scripts/engine.sh url`). Without either: `None` after printing `skipped: no engine`, so the caller
/// returns.
///
/// # Panics
/// Without an engine when `DAIT_REQUIRE_ENGINE=1` (CI): a test that needs the engine must not skip there.
pub fn engine_url() -> Option<String> {
    let url = env_var("DAIT_ENGINE_URL")
        .or_else(|| engine_script("url").filter(|u| u.starts_with("http://")));
    if url.is_none() {
        assert!(
            std::env::var("DAIT_REQUIRE_ENGINE").as_deref() != Ok("1"),
            "DAIT_REQUIRE_ENGINE=1 but no engine: set DAIT_ENGINE_URL or run scripts/engine.sh start"
        );
        eprintln!("skipped: no engine (DAIT_ENGINE_URL unset, scripts/engine.sh url failed)");
    }
    url.map(|u| u.trim_end_matches('/').to_owned())
}

/// The weights file (GGUF) the real engine serves: `DAIT_ENGINE_MODEL`, else `scripts/engine.sh model`; `None`
/// when neither names one.
pub fn engine_model() -> Option<PathBuf> {
    env_var("DAIT_ENGINE_MODEL")
        .or_else(|| engine_script("model"))
        .map(PathBuf::from)
}
