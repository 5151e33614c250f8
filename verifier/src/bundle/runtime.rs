//! The runtime event log a TDX or simulated bundle carries, and its replay into RTMR3.

use sha2::{Digest as _, Sha384};

use super::VerifyError;

/// One event of the runtime event log the agent serves (`event_log` of a TDX or simulated bundle): a JSON
/// array of `{"imr": 3, "kind": "...", "data": "...", "digest": "<hex SHA-384(data)>"}`.
#[derive(serde::Deserialize)]
struct RuntimeLogEvent {
    imr: u8,
    data: String,
    digest: String,
}

/// Replays the runtime event log into RTMR3: `R_0 = 0^48`, `R_i = SHA-384(R_{i-1} || SHA-384(data_i))`;
/// each stated digest must be the digest of its data.
pub(crate) fn replay_runtime_log(log: &[u8]) -> Result<[u8; 48], VerifyError> {
    let events: Vec<RuntimeLogEvent> =
        serde_json::from_slice(log).map_err(|_| VerifyError::MalformedEventLog)?;
    let mut register = [0u8; 48];
    for e in &events {
        let digest: [u8; 48] = Sha384::digest(e.data.as_bytes()).into();
        if e.imr != 3 || hex::decode(&e.digest).ok().as_deref() != Some(digest.as_slice()) {
            return Err(VerifyError::MalformedEventLog);
        }
        register = dait_measure::reference::extend_sha384(&register, &digest);
    }
    Ok(register)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_log_replays_and_rejects_a_wrong_digest() {
        let data = "model-weights:aa";
        let digest: [u8; 48] = Sha384::digest(data.as_bytes()).into();
        let log = format!(
            r#"[{{"imr":3,"kind":"dait.model-weights","data":"{data}","digest":"{}"}}]"#,
            hex::encode(digest)
        );
        let mut h = Sha384::new();
        h.update([0u8; 48]);
        h.update(digest);
        let want: [u8; 48] = h.finalize().into();
        assert_eq!(replay_runtime_log(log.as_bytes()).unwrap(), want);
        assert_eq!(replay_runtime_log(b"[]").unwrap(), [0u8; 48]);
        let wrong = log.replace("model-weights:aa", "model-weights:ab");
        assert!(matches!(
            replay_runtime_log(wrong.as_bytes()),
            Err(VerifyError::MalformedEventLog)
        ));
        assert!(matches!(
            replay_runtime_log(b"not json"),
            Err(VerifyError::MalformedEventLog)
        ));
    }
}
