//! The runtime event log a TDX or simulated bundle carries, its replay into RTMR3, and the runtime values
//! ([`AttestedRuntime`]) a bound log attests.

use dait_chain_client::B256;
use dait_chain_client::runtime_log::{self, EventLog};

use super::VerifyError;

/// What a bound runtime event log attests about the served model (`docs/PROTOCOL.md` §10): the SHA-256
/// contents of its `model-id`, `model-weights` and `engine-build` events. A field is `None` when the log has
/// no such event, more than one, or one whose data is not `name ":" hex(sha256)`.
///
/// A receipt's `model_id` must hash to [`AttestedRuntime::model_id_sha256`], its `weight_hash` equal
/// [`AttestedRuntime::weight_hash`] and its `engine_build` equal [`AttestedRuntime::engine_build`]
/// ([`crate::receipt::Channel::check`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttestedRuntime {
    /// SHA-256 of the served model id (the `model-id` event).
    pub model_id_sha256: Option<[u8; 32]>,
    /// SHA-256 of the model weights file (the `model-weights` event; zero without one).
    pub weight_hash: Option<B256>,
    /// SHA-256 of the engine build identifier (the `engine-build` event).
    pub engine_build: Option<B256>,
}

impl AttestedRuntime {
    /// The values of an encoded runtime event log; `None` when it does not decode as one. Call it only on a
    /// log bound to the evidence (replayed to the attested register, or signed into the simulated report).
    pub(crate) fn from_log(log: &[u8]) -> Option<Self> {
        let log = EventLog::decode(log).ok()?;
        Some(Self {
            model_id_sha256: event_value(&log, runtime_log::MODEL_ID),
            weight_hash: event_value(&log, runtime_log::MODEL_WEIGHTS).map(B256),
            engine_build: event_value(&log, runtime_log::ENGINE_BUILD).map(B256),
        })
    }
}

/// The SHA-256 an event of `kind` measures: exactly one such event, whose data is `kind ":" hex(sha256)`.
fn event_value(log: &EventLog, kind: &str) -> Option<[u8; 32]> {
    let mut events = log.events().iter().filter(|e| e.kind == kind);
    let event = events.next()?;
    if events.next().is_some() {
        return None;
    }
    let hex_digits = event.data.strip_prefix(kind)?.strip_prefix(':')?;
    let mut value = [0u8; 32];
    hex::decode_to_slice(hex_digits, &mut value).ok()?;
    (runtime_log::event_data(kind, &value) == event.data).then_some(value)
}

/// Which launch-time field binds a runtime event log (PROTOCOL.md §10.1).
#[derive(Clone, Copy, Debug)]
pub(crate) enum LaunchField<'a> {
    /// SEV-SNP `HOST_DATA`: `SHA-256("dait/v1/launch-binding" || register)`.
    HostData(&'a [u8; 32]),
    /// TDX (and simulated) `MRCONFIGID`: `SHA-384("dait/v1/launch-binding" || register)`.
    MrConfigId(&'a [u8; 48]),
}

/// The launch-binding check: the register the log replays to (an empty log: no events, all zero) must hash
/// to the launch-time field, else [`VerifyError::LaunchBindingMismatch`].
pub(crate) fn check_launch_binding(log: &[u8], field: LaunchField<'_>) -> Result<(), VerifyError> {
    let register = if log.is_empty() {
        [0u8; 48]
    } else {
        replay_runtime_log(log)?
    };
    let (bound, name) = match field {
        LaunchField::HostData(v) => (
            runtime_log::launch_binding_host_data(&register) == *v,
            "HOST_DATA",
        ),
        LaunchField::MrConfigId(v) => (
            runtime_log::launch_binding_mrconfigid(&register) == *v,
            "MRCONFIGID",
        ),
    };
    if bound {
        Ok(())
    } else {
        Err(VerifyError::LaunchBindingMismatch { field: name })
    }
}

/// Replays the runtime event log into RTMR3 by the protocol core's one definition of the log and its rule
/// ([`dait_chain_client::runtime_log::replay`], `docs/PROTOCOL.md` §10): `R_0 = 0^48`,
/// `R_i = SHA-384(R_{i-1} || SHA-384(data_i))`, each stated digest checked against its data.
pub(crate) fn replay_runtime_log(log: &[u8]) -> Result<[u8; 48], VerifyError> {
    runtime_log::replay(log).map_err(|_| VerifyError::MalformedEventLog)
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

    #[test]
    fn launch_binding_needs_the_log_to_hash_to_the_field() {
        let log = crate::bundle::fixture::runtime_log(&crate::bundle::fixture::runtime_events());
        let register = replay_runtime_log(&log).unwrap();
        let mrconfigid = runtime_log::launch_binding_mrconfigid(&register);
        let host_data = runtime_log::launch_binding_host_data(&register);
        check_launch_binding(&log, LaunchField::MrConfigId(&mrconfigid)).unwrap();
        check_launch_binding(&log, LaunchField::HostData(&host_data)).unwrap();
        // The register value itself, a zero field, another log: each its own error.
        let mut other = register;
        other[0] ^= 1;
        for field in [
            register,
            [0; 48],
            runtime_log::launch_binding_mrconfigid(&other),
        ] {
            assert!(matches!(
                check_launch_binding(&log, LaunchField::MrConfigId(&field)),
                Err(VerifyError::LaunchBindingMismatch {
                    field: "MRCONFIGID"
                })
            ));
        }
        assert!(matches!(
            check_launch_binding(&log, LaunchField::HostData(&[0; 32])),
            Err(VerifyError::LaunchBindingMismatch { field: "HOST_DATA" })
        ));
        // The empty log binds the zero register.
        let empty = runtime_log::launch_binding_host_data(&[0; 48]);
        check_launch_binding(b"", LaunchField::HostData(&empty)).unwrap();
        assert!(matches!(
            check_launch_binding(b"not json", LaunchField::HostData(&empty)),
            Err(VerifyError::MalformedEventLog)
        ));
    }

    #[test]
    fn attested_runtime_reads_each_event_once() {
        let events = crate::bundle::fixture::runtime_events();
        let log = crate::bundle::fixture::runtime_log(&events);
        let runtime = AttestedRuntime::from_log(&log).unwrap();
        assert_eq!(runtime.model_id_sha256, Some([1; 32]));
        assert_eq!(runtime.weight_hash, Some(B256([2; 32])));
        assert_eq!(runtime.engine_build, Some(B256([3; 32])));
        // A duplicated event is ambiguous: not attested.
        let mut twice = events.clone();
        twice.push(events[0].clone());
        let runtime = AttestedRuntime::from_log(&crate::bundle::fixture::runtime_log(&twice));
        assert_eq!(runtime.unwrap().model_id_sha256, None);
        // Upper-case hex is not the agent's encoding: not attested.
        let mut upper = EventLog::default();
        upper.record("engine-build", &format!("engine-build:{}", "AB".repeat(32)));
        let runtime = AttestedRuntime::from_log(&upper.encode()).unwrap();
        assert_eq!(runtime.engine_build, None);
        assert_eq!(AttestedRuntime::from_log(b"not a runtime log"), None);
    }
}
