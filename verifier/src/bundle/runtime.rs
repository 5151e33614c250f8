//! The runtime event log a TDX or simulated bundle carries, and its replay into RTMR3.

use super::VerifyError;

/// Replays the runtime event log into RTMR3 by the protocol core's one definition of the log and its rule
/// ([`dait_chain_client::runtime_log::replay`], `docs/PROTOCOL.md` §10): `R_0 = 0^48`,
/// `R_i = SHA-384(R_{i-1} || SHA-384(data_i))`, each stated digest checked against its data.
pub(crate) fn replay_runtime_log(log: &[u8]) -> Result<[u8; 48], VerifyError> {
    dait_chain_client::runtime_log::replay(log).map_err(|_| VerifyError::MalformedEventLog)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest as _, Sha384};

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
