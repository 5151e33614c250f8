//! The cooperative close with the host (PROTOCOL.md §4): the tenant sends its tenant-signed final state to
//! the verified host (`POST /v1/channel/close` over the pinned TLS connection), and checks the host's
//! counter-signature before the state goes on chain (`closeChannel`, `dait-tenant channel close --host-url`).
//!
//! [`request_countersignature`] verifies the host afresh under a policy, requires its keyset to name the
//! state's host account and domain, sends the state and checks the answer with [`check_countersigned`]: the
//! `x-dait-host-key-id` is the verified bundle's key, the returned state is byte for byte the one sent apart
//! from `host_signature`, and that signature verifies under the attested receipt key over the state's EIP-712
//! digest. Each failure has its own [`CloseError`] variant.

use dait_chain_client::{
    B256, HostVerifyingKey, SignatureError, SignedChannelState, WireMessage as _,
};
use dait_verifier::bundle::{Policy, VerifiedBundle};

use crate::transport::CloseAnswer;
use crate::{HostErrorCode, TenantError, verify_host};

/// Why the host's counter-signature of a final state was not obtained or not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CloseError {
    /// The returned counter-signature does not verify under the attested receipt key over the state's
    /// EIP-712 digest, or the host returned none.
    #[error("the host's counter-signature does not verify under its attested receipt key")]
    BadCounterSignature(#[source] Option<SignatureError>),
    /// The verified host's keyset is bound to another chain or settlement contract than the state (the
    /// tenant's signature does not recover the state's tenant under its domain).
    #[error("the verified host's keyset names another chain or settlement contract than the state")]
    DomainMismatch,
    /// Fetching or verifying the host's evidence, or the HTTP exchange, failed.
    #[error("talking to the host failed")]
    Host(#[source] TenantError),
    /// The host's `x-dait-host-key-id` is missing, malformed, or not the verified bundle's key.
    #[error("the host key id {answered:?} is not the verified bundle's ({attested})")]
    HostKeyId {
        /// The field as answered (`None`: absent).
        answered: Option<String>,
        /// The verified bundle's host key id.
        attested: B256,
    },
    /// The host refused to counter-sign (its JSON `{"error": code}`).
    #[error("the host refused to counter-sign: {code:?} (HTTP {status})")]
    HostRefused {
        /// The error code (`Other` for one this client does not know).
        code: HostErrorCode,
        /// The HTTP status.
        status: u16,
    },
    /// The answer is not a base64url `SignedChannelState`.
    #[error("the host's answer is not a signed channel state")]
    Malformed,
    /// The state to send is not final (caller misuse).
    #[error("the state to close with is not final")]
    NotFinal,
    /// The returned state differs from the one sent (apart from `host_signature`).
    #[error("the host returned another state than the one sent")]
    StateChanged,
    /// The verified host belongs to another operator account than the state's `host`.
    #[error("the verified host's account is not the channel's host")]
    WrongHost,
}

/// A final state counter-signed by the verified host.
#[derive(Clone, Debug)]
pub struct CounterSigned {
    /// The state as sent, with the host's `host_signature`.
    pub state: SignedChannelState,
    /// The receipt key that counter-signed (the verified bundle's `host_key_id`), for `closeChannel`.
    pub host_key_id: B256,
}

/// Checks the host's answer to `POST /v1/channel/close` for `sent`, against the host's verified `bundle`:
/// a 200 with `x-dait-host-key-id` equal to the bundle's key, a body that decodes to `sent` with only
/// `host_signature` added, and that signature valid under the attested receipt key over the state's EIP-712
/// digest (the bundle's domain). Another status is [`CloseError::HostRefused`] with the host's code.
pub fn check_countersigned(
    sent: &SignedChannelState,
    answer: &CloseAnswer,
    bundle: &VerifiedBundle,
) -> Result<CounterSigned, CloseError> {
    if answer.status != 200 {
        #[derive(serde::Deserialize)]
        struct Refusal {
            error: String,
        }
        let code = serde_json::from_slice::<Refusal>(&answer.body)
            .map(|r| HostErrorCode::from_code(&r.error))
            .unwrap_or(HostErrorCode::Other);
        return Err(CloseError::HostRefused {
            code,
            status: answer.status,
        });
    }
    let attested = *bundle.host_key_id();
    let key_id = answer
        .host_key_id
        .as_deref()
        .and_then(|text| B256::from_hex(text.trim()));
    if key_id != Some(attested) {
        return Err(CloseError::HostKeyId {
            answered: answer.host_key_id.clone(),
            attested,
        });
    }
    let text = std::str::from_utf8(&answer.body).map_err(|_| CloseError::Malformed)?;
    let returned =
        SignedChannelState::from_header_value(text.trim()).map_err(|_| CloseError::Malformed)?;
    let Some(host_signature) = returned.host_signature else {
        return Err(CloseError::BadCounterSignature(None));
    };
    let stripped = SignedChannelState {
        host_signature: None,
        ..returned.clone()
    };
    let unsigned = SignedChannelState {
        host_signature: None,
        ..sent.clone()
    };
    if stripped.encode() != unsigned.encode() {
        return Err(CloseError::StateChanged);
    }
    let key = HostVerifyingKey::from_sec1(bundle.receipt_key())
        .map_err(|e| CloseError::BadCounterSignature(Some(e)))?;
    key.verify_prehash(
        &sent.state.signing_digest(&bundle.domain()),
        &host_signature,
    )
    .map_err(|e| CloseError::BadCounterSignature(Some(e)))?;
    Ok(CounterSigned {
        state: returned,
        host_key_id: attested,
    })
}

/// Verifies the host at `host_url` for a fresh nonce under `policy`, requires its keyset to name `final_state`'s
/// host account and domain, sends the tenant-signed `final_state` to `POST /v1/channel/close` over the TLS
/// connection pinned to the attested key, and checks the answer ([`check_countersigned`]).
pub async fn request_countersignature(
    host_url: &str,
    policy: &Policy,
    final_state: &SignedChannelState,
) -> Result<CounterSigned, CloseError> {
    if !final_state.state.is_final {
        return Err(CloseError::NotFinal);
    }
    let (client, bundle) = verify_host(host_url, policy)
        .await
        .map_err(CloseError::Host)?;
    if bundle.keyset().host_account != final_state.state.host {
        return Err(CloseError::WrongHost);
    }
    if final_state.verify_tenant(&bundle.domain()).ok() != Some(final_state.state.tenant) {
        return Err(CloseError::DomainMismatch);
    }
    let answer = client
        .post_close(&final_state.to_header_value())
        .await
        .map_err(CloseError::Host)?;
    check_countersigned(final_state, &answer, &bundle)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use dait_chain_client::{ChannelState, Freshness};
    use dait_verifier::bundle::{UnixTime, verify_bundle};

    use super::*;
    use crate::Wallet;
    use crate::support::{key, keyset, simulated_bundle};

    /// A verified simulated bundle whose receipt key is key 3.
    fn bundle() -> VerifiedBundle {
        let freshness = Freshness::TenantNonce([5; 32]);
        let policy = Policy::new()
            .dangerous_allow_simulated(&key(1).verifying_key().to_sec1())
            .unwrap();
        verify_bundle(
            &simulated_bundle(&keyset(&[4, 5, 6]), &freshness, &[]),
            &policy,
            &freshness,
            UnixTime::from_secs(1_750_000_000),
        )
        .unwrap()
    }

    /// A tenant-signed final state at turn 2 under the bundle's domain.
    fn final_state(bundle: &VerifiedBundle) -> SignedChannelState {
        let wallet = Wallet::generate();
        let state = ChannelState {
            channel_id: B256([7; 32]),
            turn: 2,
            cumulative: 40,
            escrow_cap: 1_000,
            last_receipt_hash: B256([9; 32]),
            tenant: wallet.address(),
            host: bundle.keyset().host_account,
            is_final: true,
        };
        SignedChannelState {
            tenant_signature: wallet.signer().sign_state(&state, &bundle.domain()),
            state,
            host_signature: None,
        }
    }

    /// The host's 200 answer: `state` counter-signed by `signer`, with key id `key_id`.
    fn answer(
        state: &SignedChannelState,
        signer: u8,
        bundle: &VerifiedBundle,
        key_id: &B256,
    ) -> CloseAnswer {
        let signed = SignedChannelState {
            host_signature: Some(key(signer).cosign_state(&state.state, &bundle.domain())),
            ..state.clone()
        };
        CloseAnswer {
            status: 200,
            host_key_id: Some(key_id.to_string()),
            body: signed.to_header_value().into_bytes(),
        }
    }

    #[test]
    fn a_counter_signature_by_the_attested_key_over_the_same_state_is_accepted() {
        let bundle = bundle();
        let sent = final_state(&bundle);
        let got = check_countersigned(
            &sent,
            &answer(&sent, 3, &bundle, bundle.host_key_id()),
            &bundle,
        )
        .unwrap();
        assert_eq!(got.host_key_id, *bundle.host_key_id());
        assert_eq!(got.state.state, sent.state);
        assert_eq!(got.state.tenant_signature, sent.tenant_signature);
        assert!(
            got.state
                .verify_host(
                    &HostVerifyingKey::from_sec1(bundle.receipt_key()).unwrap(),
                    &bundle.domain()
                )
                .unwrap()
        );
    }

    #[test]
    fn a_counter_signature_by_another_key_is_refused() {
        let bundle = bundle();
        let sent = final_state(&bundle);
        let err = check_countersigned(
            &sent,
            &answer(&sent, 4, &bundle, bundle.host_key_id()),
            &bundle,
        )
        .unwrap_err();
        assert!(
            matches!(err, CloseError::BadCounterSignature(Some(_))),
            "{err:?}"
        );
        // No counter-signature at all.
        let bare = CloseAnswer {
            status: 200,
            host_key_id: Some(bundle.host_key_id().to_string()),
            body: sent.to_header_value().into_bytes(),
        };
        let err = check_countersigned(&sent, &bare, &bundle).unwrap_err();
        assert!(
            matches!(err, CloseError::BadCounterSignature(None)),
            "{err:?}"
        );
    }

    #[test]
    fn another_key_id_than_the_bundles_is_refused() {
        let bundle = bundle();
        let sent = final_state(&bundle);
        let other = key(4).verifying_key().key_id();
        let err =
            check_countersigned(&sent, &answer(&sent, 3, &bundle, &other), &bundle).unwrap_err();
        assert!(matches!(err, CloseError::HostKeyId { .. }), "{err:?}");
        let mut missing = answer(&sent, 3, &bundle, bundle.host_key_id());
        missing.host_key_id = None;
        let err = check_countersigned(&sent, &missing, &bundle).unwrap_err();
        assert!(
            matches!(err, CloseError::HostKeyId { answered: None, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn a_returned_state_other_than_the_one_sent_is_refused() {
        let bundle = bundle();
        let sent = final_state(&bundle);
        // The host counter-signs (validly) a state with a higher cumulative than the tenant signed.
        let mut altered = sent.clone();
        altered.state.cumulative += 1;
        let err = check_countersigned(
            &sent,
            &answer(&altered, 3, &bundle, bundle.host_key_id()),
            &bundle,
        )
        .unwrap_err();
        assert!(matches!(err, CloseError::StateChanged), "{err:?}");
        let garbage = CloseAnswer {
            status: 200,
            host_key_id: Some(bundle.host_key_id().to_string()),
            body: b"not a state".to_vec(),
        };
        let err = check_countersigned(&sent, &garbage, &bundle).unwrap_err();
        assert!(matches!(err, CloseError::Malformed), "{err:?}");
    }

    #[test]
    fn a_refusal_carries_the_hosts_code() {
        let bundle = bundle();
        let sent = final_state(&bundle);
        for (status, body, code) in [
            (
                409,
                &br#"{"error":"stale_state"}"#[..],
                HostErrorCode::StaleState,
            ),
            (400, br#"{"error":"not_final"}"#, HostErrorCode::NotFinal),
            (
                401,
                br#"{"error":"bad_state_signature"}"#,
                HostErrorCode::BadStateSignature,
            ),
            (500, b"", HostErrorCode::Other),
        ] {
            let refusal = CloseAnswer {
                status,
                host_key_id: None,
                body: body.to_vec(),
            };
            let err = check_countersigned(&sent, &refusal, &bundle).unwrap_err();
            assert!(
                matches!(err, CloseError::HostRefused { code: c, status: s } if c == code && s == status),
                "{err:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_state_that_is_not_final_is_not_sent() {
        let bundle = bundle();
        let mut sent = final_state(&bundle);
        sent.state.is_final = false;
        let err = request_countersignature("https://127.0.0.1:9", &Policy::new(), &sent)
            .await
            .unwrap_err();
        assert!(matches!(err, CloseError::NotFinal), "{err:?}");
    }
}
