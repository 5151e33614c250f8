//! No prompt, completion or decrypted body reaches the logs, even at `trace` level (its own test
//! binary, so that no other test shares the process-wide tracing state).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::Arc;

use common::*;
use dait_chain_client::WireMessage as _;

/// A writer that keeps everything logged, to check that no plaintext reaches the logs.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_plaintext_in_logs_even_at_trace() {
    let captured = Captured::default();
    let c2 = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || c2.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let (_agent, mut conn, info) = connected_agent(LLAMA_LIKE, false).await;
    let mut t = Tenant::new(&info, 1_000_000, 12);
    let secret_prompt = "zebra-quartz-prompt-7731";
    let r = t
        .call(&mut conn, CHAT, &chat_body(secret_prompt, 3, false))
        .await;
    t.accept(&r, false).unwrap();
    let r = t
        .stream(&mut conn, CHAT, &chat_body(secret_prompt, 3, true))
        .await;
    t.accept(&r, true).unwrap();
    // A flipped bit and a rejected state are logged, without content.
    let _ = t
        .call_with(
            &mut conn,
            CHAT,
            &t.state_header(),
            &chat_body(secret_prompt, 3, false),
            |e| {
                let n = e.len() - 1;
                e[n] ^= 1;
            },
        )
        .await;
    let stale = t.signed_state(dait_chain_client::ChannelState {
        turn: 0,
        ..t.chain.state().clone()
    });
    let _ = t
        .call_with(
            &mut conn,
            CHAT,
            &stale.to_header_value(),
            &chat_body(secret_prompt, 3, false),
            |_| {},
        )
        .await;
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("decapsulation failed"),
        "the failure is logged: {logs}"
    );
    assert!(logs.contains("call rejected"));
    for needle in [secret_prompt, "tok0", "tok1"] {
        assert!(!logs.contains(needle), "log contains plaintext {needle:?}");
    }
}
