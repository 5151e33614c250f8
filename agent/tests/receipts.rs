//! `GET /v1/receipts/<channel_id>/<call_seq>`: a logged receipt again, for the channel's tenant only (the agent
//! served in-process with the simulated TEE, in front of the in-test engine).
//!
//! - the receipt of call 1, byte for byte as the call delivered it, for a state signed by the channel's tenant
//!   (of any turn);
//! - refused, each with its own status: no `x-dait-state` or a malformed one (400), a malformed path or call_seq 0
//!   (400), a state of another channel (403), a state whose signature does not verify (403), a state of this
//!   channel signed by another wallet (404, the same answer as a receipt that does not exist, which call 2 is).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::{CHAT, Tenant, VLLM_LIKE, chat_body, connected_agent};
use dait_chain_client::{ChannelState, WireMessage as _};

#[tokio::test]
async fn a_logged_receipt_is_served_again_to_its_tenant_only() {
    let (_agent, mut conn, info) = connected_agent(VLLM_LIKE, false).await;
    let mut tenant = Tenant::new(&info, 1_000_000, 7);
    let opening = tenant.state_header();
    let r = tenant
        .call(&mut conn, CHAT, &chat_body("fetch me again", 3, false))
        .await;
    assert_eq!(r.status, 200);
    tenant.accept(&r, false).unwrap();
    let delivered = r.receipt.as_ref().unwrap().encode();
    let channel = hex::encode(tenant.chain.state().channel_id.0);
    let path = format!("/v1/receipts/{channel}/1");

    let mut get = async |path: &str, state: Option<&str>| {
        let headers: Vec<(&str, &str)> = state.map(|s| ("x-dait-state", s)).into_iter().collect();
        conn.send_with_headers("GET", path, None, &headers, vec![])
            .await
            .unwrap()
    };

    // The current state and the opening one (turn 0) both prove the tenant.
    for state in [tenant.state_header(), opening] {
        let (status, body) = get(&path, Some(&state)).await;
        assert_eq!(status, 200);
        assert_eq!(body.as_ref(), delivered.as_slice());
    }
    let with_0x = format!("/v1/receipts/0x{channel}/1");
    assert_eq!(get(&with_0x, Some(&tenant.state_header())).await.0, 200);

    // No state, a malformed one, a malformed path, call_seq 0: 400.
    assert_eq!(get(&path, None).await.0, 400);
    assert_eq!(get(&path, Some("not base64!")).await.0, 400);
    let state = tenant.state_header();
    for bad in [
        format!("/v1/receipts/{channel}"),
        format!("/v1/receipts/{}/1", &channel[2..]),
        format!("/v1/receipts/{channel}/x"),
        format!("/v1/receipts/{channel}/0"),
    ] {
        assert_eq!(get(&bad, Some(&state)).await.0, 400, "{bad}");
    }

    // A state of another channel: 403.
    let other = Tenant::new(&info, 1_000_000, 8);
    assert_eq!(get(&path, Some(&other.state_header())).await.0, 403);

    // A state of this channel whose signature does not verify (its turn changed after signing): 403.
    let mut forged = tenant.signed_state(tenant.chain.state().clone());
    forged.state.turn += 1;
    assert_eq!(get(&path, Some(&forged.to_header_value())).await.0, 403);

    // A state of this channel signed, validly, by another wallet naming itself the tenant: 404, as for call 2,
    // which does not exist.
    let stranger = Tenant::new(&info, 1_000_000, 7);
    let claimed = ChannelState {
        tenant: stranger.signer.address(),
        ..tenant.chain.state().clone()
    };
    let claimed = stranger.signed_state(claimed).to_header_value();
    assert_eq!(get(&path, Some(&claimed)).await.0, 404);
    let second = format!("/v1/receipts/{channel}/2");
    assert_eq!(get(&second, Some(&tenant.state_header())).await.0, 404);
}
