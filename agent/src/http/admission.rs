//! Admission: the bounds on open connections (in all, and per client address) and on calls in
//! flight, and the fast `503` with `Retry-After` that whatever is over a bound gets instead of
//! waiting.
//!
//! The per-address bound keeps one client address from holding every connection slot (slowloris,
//! idle connections): a connection from an address already holding `--max-connections-per-address`
//! is closed at once, before its TLS handshake. Its table holds one entry per address with a
//! connection open, so it is never larger than the connections open. It does not defend against a
//! client with many source addresses (a botnet, an IPv6 prefix): those are bounded only by
//! `--max-connections` and the timeouts.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

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
    per_address: Arc<PerAddress>,
    overflow: Arc<Semaphore>,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    retry_after: HeaderValue,
}

/// What an accepted connection may do.
#[derive(Debug)]
pub(super) enum Admission {
    /// Served; the permit is released when the connection ends.
    Serve(ConnectionPermit),
    /// Over the limit: answered with a `503` and closed.
    Refuse(ConnectionPermit),
    /// Over the limit and over the overflow: closed at once.
    Drop,
    /// Its client address already holds `--max-connections-per-address`: closed at once.
    AddressLimit,
}

/// A connection's slots: one of the connection (or overflow) bound, one of its address's count.
/// Both are released on drop.
#[derive(Debug)]
pub(super) struct ConnectionPermit {
    _slot: OwnedSemaphorePermit,
    _address: AddressSlot,
}

/// The open connections of each client address that has any.
#[derive(Debug)]
struct PerAddress {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerAddress {
    /// One more connection of `ip`, unless it has `max` already.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            table: Arc::clone(self),
            ip,
        })
    }

    /// Addresses with a connection open.
    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// One connection counted for its address; the address's entry goes when its count reaches 0.
#[derive(Debug)]
struct AddressSlot {
    table: Arc<PerAddress>,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self
            .table
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Entry::Occupied(mut e) = open.entry(self.ip) {
            *e.get_mut() = e.get().saturating_sub(1);
            if *e.get() == 0 {
                e.remove();
            }
        }
    }
}

impl Gates {
    /// The gates of `limits`.
    pub fn new(limits: &Limits) -> Self {
        Self {
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            per_address: Arc::new(PerAddress {
                max: limits.max_connections_per_address,
                open: Mutex::new(HashMap::new()),
            }),
            overflow: Arc::new(Semaphore::new(OVERFLOW_CONNECTIONS)),
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
            max_in_flight: limits.max_in_flight,
            retry_after: HeaderValue::from(limits.retry_after_secs),
        }
    }

    /// Admit one accepted connection from `ip`, never waiting. An IPv4 address mapped into IPv6
    /// counts as the IPv4 address.
    pub(super) fn connection(&self, ip: IpAddr) -> Admission {
        let Some(address) = self.per_address.take(ip.to_canonical()) else {
            return Admission::AddressLimit;
        };
        let permit = |slot| ConnectionPermit {
            _slot: slot,
            _address: address,
        };
        if let Ok(p) = Arc::clone(&self.connections).try_acquire_owned() {
            return Admission::Serve(permit(p));
        }
        match Arc::clone(&self.overflow).try_acquire_owned() {
            Ok(p) => Admission::Refuse(permit(p)),
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

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    #[test]
    fn bounds_are_not_exceeded() {
        let limits = Limits {
            max_connections: 1,
            max_in_flight: 1,
            retry_after_secs: 7,
            ..Limits::DEFAULT
        };
        let g = Gates::new(&limits);
        // Each connection from its own address, so that only the global bound acts.
        let ip = |i: u32| IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        let first = g.connection(ip(0));
        assert!(matches!(first, Admission::Serve(_)));
        let refused: Vec<_> = (1..=OVERFLOW_CONNECTIONS as u32)
            .map(|i| g.connection(ip(i)))
            .collect();
        assert!(refused.iter().all(|a| matches!(a, Admission::Refuse(_))));
        assert!(matches!(g.connection(ip(1000)), Admission::Drop));
        drop(first);
        assert!(matches!(g.connection(ip(1001)), Admission::Serve(_)));
        let call = g.call().unwrap();
        assert!(g.call().is_none());
        drop(call);
        assert!(g.call().is_some());
        let r = g.overloaded();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "7");
    }

    #[test]
    fn one_address_cannot_take_every_connection() {
        let limits = Limits {
            max_connections: 10,
            max_connections_per_address: 3,
            ..Limits::DEFAULT
        };
        let g = Gates::new(&limits);
        let held: Vec<_> = (0..3).map(|_| g.connection(A)).collect();
        assert!(held.iter().all(|a| matches!(a, Admission::Serve(_))));
        assert!(matches!(g.connection(A), Admission::AddressLimit));
        // The same address written as IPv4-mapped IPv6 is the same client.
        let mapped = IpAddr::V6(std::net::Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        assert!(matches!(g.connection(mapped), Admission::AddressLimit));
        // Another address is served, and refused (not closed) only by the global bound.
        let b = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));
        let other = g.connection(b);
        assert!(matches!(other, Admission::Serve(_)));
        assert_eq!(g.per_address.addresses(), 2);
        // A refused connection counts for its address too, until it is closed.
        let full: Vec<_> = (4..10)
            .map(|i| g.connection(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, i))))
            .collect();
        assert!(matches!(full.last(), Some(Admission::Serve(_))));
        let c = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 3));
        let refused: Vec<_> = (0..3).map(|_| g.connection(c)).collect();
        assert!(refused.iter().all(|a| matches!(a, Admission::Refuse(_))));
        assert!(matches!(g.connection(c), Admission::AddressLimit));
        // Closing one connection frees one place of its address; closing all removes the entry.
        let mut held = held;
        held.pop();
        assert!(matches!(g.connection(A), Admission::Serve(_)));
        drop(held);
        drop(refused);
        drop(full);
        assert_eq!(g.per_address.addresses(), 1);
        let a = g.connection(A);
        assert!(matches!(a, Admission::Serve(_)));
    }
}
