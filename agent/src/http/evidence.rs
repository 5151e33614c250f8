//! What bounds `/v1/attestation`'s TEE calls: a cache of recent bundles by freshness, and a token
//! bucket per client address for the bundles that must be generated fresh.
//!
//! A bundle depends only on its freshness (the keyset and event log are fixed for the boot), so a
//! repeated freshness (the chain epoch's nonce every tenant uses, or a tenant asking again with its
//! own nonce) is answered from the cache for `--attestation-cache-window`. A freshness not in the
//! cache costs one TEE call and one token of the client address's bucket; an empty bucket gets `429`
//! with `Retry-After`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dait_chain_client::Freshness;

use crate::config::Limits;

/// Most bundles cached at once; past it the oldest is dropped.
pub const CACHED_BUNDLES: usize = 256;

tokio::task_local! {
    /// The client address of the connection being served (set by the accept loops).
    pub(super) static CLIENT_IP: IpAddr;
}

/// The client address of the request being handled, if the accept loop set it.
pub(super) fn client_ip() -> Option<IpAddr> {
    CLIENT_IP.try_with(|ip| *ip).ok()
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The attestation cache and the per-address limit on fresh evidence.
#[derive(Debug)]
pub struct EvidenceGate {
    window: Duration,
    rate: f64,
    burst: f64,
    max_clients: usize,
    cache: Mutex<HashMap<Freshness, (Bytes, Instant)>>,
    /// The bundle attested on chain for the current epoch: served for its freshness until replaced.
    pinned: Mutex<Option<(Freshness, Bytes)>>,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl EvidenceGate {
    /// A gate with the limits' cache window, rate, burst and address table size.
    pub fn new(limits: &Limits) -> Self {
        Self {
            window: limits.attestation_cache_window,
            rate: f64::from(limits.attestation_rate),
            burst: f64::from(limits.attestation_burst),
            max_clients: limits.attestation_clients,
            cache: Mutex::new(HashMap::new()),
            pinned: Mutex::new(None),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The cached bundle for `freshness`, if generated within the window.
    pub fn cached(&self, freshness: &Freshness) -> Option<Bytes> {
        if let Ok(pinned) = self.pinned.lock()
            && let Some((f, b)) = pinned.as_ref()
            && f == freshness
        {
            return Some(b.clone());
        }
        let cache = self.cache.lock().ok()?;
        cache
            .get(freshness)
            .filter(|(_, at)| at.elapsed() < self.window)
            .map(|(b, _)| b.clone())
    }

    /// Serve `bundle` for `freshness` until the next pin: the bundle whose hash the chain recorded for an epoch
    /// (a fresh one would differ, its signatures being randomised), so every tenant gets exactly that one.
    pub fn pin(&self, freshness: Freshness, bundle: Bytes) {
        if let Ok(mut pinned) = self.pinned.lock() {
            *pinned = Some((freshness, bundle));
        }
    }

    /// Keep `bundle` for `freshness`, dropping expired entries (and the oldest past
    /// [`CACHED_BUNDLES`]).
    pub fn store(&self, freshness: Freshness, bundle: Bytes) {
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        let window = self.window;
        cache.retain(|_, (_, at)| at.elapsed() < window);
        while cache.len() >= CACHED_BUNDLES {
            let Some(oldest) = cache.iter().min_by_key(|(_, (_, at))| *at).map(|(k, _)| *k) else {
                break;
            };
            cache.remove(&oldest);
        }
        cache.insert(freshness, (bundle, Instant::now()));
    }

    /// Take one token of `ip`'s bucket for a fresh bundle; `Err` with the seconds to wait when
    /// none is left. When the address table is full, addresses whose bucket has refilled are
    /// forgotten; if none has, a new address is refused until one does.
    pub fn admit(&self, ip: IpAddr) -> Result<(), u64> {
        let retry = (1.0 / self.rate).ceil().max(1.0) as u64;
        let Ok(mut buckets) = self.buckets.lock() else {
            return Err(retry);
        };
        let now = Instant::now();
        let refill = |b: &Bucket| {
            (b.tokens + now.duration_since(b.at).as_secs_f64() * self.rate).min(self.burst)
        };
        if !buckets.contains_key(&ip) && buckets.len() >= self.max_clients {
            let burst = self.burst;
            buckets.retain(|_, b| refill(b) < burst);
            if buckets.len() >= self.max_clients {
                return Err(retry);
            }
        }
        let b = buckets.entry(ip).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        b.tokens = refill(b);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(retry)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn gate(rate: u32, burst: u32, clients: usize) -> EvidenceGate {
        EvidenceGate::new(&Limits {
            attestation_rate: rate,
            attestation_burst: burst,
            attestation_clients: clients,
            attestation_cache_window: Duration::from_secs(60),
            ..Limits::DEFAULT
        })
    }

    #[test]
    fn bucket_allows_its_burst_then_refuses() {
        let g = gate(1, 3, 10);
        let a: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..3 {
            g.admit(a).unwrap();
        }
        assert_eq!(g.admit(a), Err(1));
        // Another address has its own bucket.
        g.admit([10, 0, 0, 2].into()).unwrap();
    }

    #[test]
    fn full_address_table_forgets_refilled_buckets_only() {
        let g = gate(1, 2, 1);
        let a: IpAddr = [10, 0, 0, 1].into();
        g.admit(a).unwrap();
        // `a`'s bucket is not full: a new address is refused rather than evicting it.
        assert!(g.admit([10, 0, 0, 2].into()).is_err());
    }

    #[test]
    fn cache_answers_the_same_freshness() {
        let g = gate(1, 1, 1);
        let f = Freshness::TenantNonce([1; 32]);
        assert!(g.cached(&f).is_none());
        g.store(f, Bytes::from_static(b"bundle"));
        assert_eq!(g.cached(&f).unwrap(), Bytes::from_static(b"bundle"));
        assert!(g.cached(&Freshness::TenantNonce([2; 32])).is_none());
    }
}
