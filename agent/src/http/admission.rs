//! Admission: the bounds on open connections and on calls in flight, and the fast `503` with
//! `Retry-After` that whatever is over a bound gets instead of waiting.

use std::sync::Arc;

use http::{HeaderValue, StatusCode, header};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Body;
use super::routes::empty;
use crate::config::Limits;

/// Connections over `--max-connections` that are still answered (a `503` on the connection, after
/// the TLS handshake); past these, a connection over the limit is closed at once.
pub const OVERFLOW_CONNECTIONS: usize = 64;

/// The semaphores of the agent's bounds, shared by every connection.
#[derive(Debug)]
pub struct Gates {
    connections: Arc<Semaphore>,
    overflow: Arc<Semaphore>,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    retry_after: HeaderValue,
}

/// What an accepted connection may do.
#[derive(Debug)]
pub(super) enum Admission {
    /// Served; the permit is released when the connection ends.
    Serve(OwnedSemaphorePermit),
    /// Over the limit: answered with a `503` and closed.
    Refuse(OwnedSemaphorePermit),
    /// Over the limit and over the overflow: closed at once.
    Drop,
}

impl Gates {
    /// The gates of `limits`.
    pub fn new(limits: &Limits) -> Self {
        Self {
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            overflow: Arc::new(Semaphore::new(OVERFLOW_CONNECTIONS)),
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
            max_in_flight: limits.max_in_flight,
            retry_after: HeaderValue::from(limits.retry_after_secs),
        }
    }

    /// Admit one accepted connection, never waiting.
    pub(super) fn connection(&self) -> Admission {
        if let Ok(p) = Arc::clone(&self.connections).try_acquire_owned() {
            return Admission::Serve(p);
        }
        match Arc::clone(&self.overflow).try_acquire_owned() {
            Ok(p) => Admission::Refuse(p),
            Err(_) => Admission::Drop,
        }
    }

    /// Admit one call, never waiting; `None` when the in-flight bound is reached.
    pub(super) fn call(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.in_flight).try_acquire_owned().ok()
    }

    /// Wait until no call is in flight, taking every slot so that none starts after it
    /// (for a graceful shutdown).
    pub(super) async fn calls_finished(&self) {
        let all = u32::try_from(self.max_in_flight).unwrap_or(u32::MAX);
        if let Ok(permits) = self.in_flight.acquire_many(all).await {
            permits.forget();
        }
    }

    /// The `503` with `Retry-After` for whatever is over a bound.
    pub(super) fn overloaded(&self) -> http::Response<Body> {
        let mut r = empty(StatusCode::SERVICE_UNAVAILABLE);
        r.headers_mut()
            .insert(header::RETRY_AFTER, self.retry_after.clone());
        r
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_not_exceeded() {
        let limits = Limits {
            max_connections: 1,
            max_in_flight: 1,
            retry_after_secs: 7,
            ..Limits::DEFAULT
        };
        let g = Gates::new(&limits);
        let first = g.connection();
        assert!(matches!(first, Admission::Serve(_)));
        let refused: Vec<_> = (0..OVERFLOW_CONNECTIONS).map(|_| g.connection()).collect();
        assert!(refused.iter().all(|a| matches!(a, Admission::Refuse(_))));
        assert!(matches!(g.connection(), Admission::Drop));
        drop(first);
        assert!(matches!(g.connection(), Admission::Serve(_)));
        let call = g.call().unwrap();
        assert!(g.call().is_none());
        drop(call);
        assert!(g.call().is_some());
        let r = g.overloaded();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "7");
    }
}
