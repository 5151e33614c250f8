//! The agent's Prometheus metrics: one registry and a handle to each metric, encoded in the
//! OpenMetrics text format for the separate metrics listener (`--metrics-listen`).
//!
//! Every label value is a `&'static str` chosen by the agent (a route, an outcome code, a call mode,
//! a token direction), so no prompt, completion, channel id or client address can reach a label.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of `dait_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    outcome: &'static str,
}

/// Labels of `dait_call_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    mode: &'static str,
}

/// Labels of `dait_metered_tokens_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    direction: &'static str,
}

/// How a call was answered, the `mode` label of the call latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallMode {
    /// `message/ohttp-req`, answered in one piece.
    Plain,
    /// `message/ohttp-chunked-req`, streamed.
    Stream,
}

impl CallMode {
    fn label(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Stream => "stream",
        }
    }
}

/// The registry and the handles the request path records into. Cheap to share (`Arc<App>`).
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    call_duration: Family<CallLabels, Histogram>,
    metered_tokens: Family<TokenLabels, Counter>,
    receipt_log_sync: Histogram,
    open_channels: Gauge,
    evidence_duration: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered, all at zero.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "dait_requests",
            "Requests answered, by route and outcome (ok, or the error code)",
            requests.clone(),
        );
        // 5 ms .. 41 s: a call is an inference.
        let call_duration =
            Family::<CallLabels, Histogram>::new_with_constructor(|| -> Histogram {
                Histogram::new(exponential_buckets(0.005, 2.0, 14))
            });
        registry.register(
            "dait_call_duration_seconds",
            "Time from receiving an OHTTP call to its last response byte, by mode (plain, stream)",
            call_duration.clone(),
        );
        let metered_tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "dait_metered_tokens",
            "Tokens put into signed receipts, by direction (in: prompt, out: completion)",
            metered_tokens.clone(),
        );
        // 50 us .. 0.8 s: one write and fdatasync.
        let receipt_log_sync = Histogram::new(exponential_buckets(0.000_05, 2.0, 15));
        registry.register(
            "dait_receipt_log_sync_duration_seconds",
            "Time to write and fdatasync one group-commit batch of the receipt log",
            receipt_log_sync.clone(),
        );
        let open_channels = Gauge::default();
        registry.register(
            "dait_open_channels",
            "Channels the agent holds state for",
            open_channels.clone(),
        );
        // 1 ms .. 16 s: a TEE report (configfs-tsm can take seconds).
        let evidence_duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        registry.register(
            "dait_evidence_duration_seconds",
            "Time to generate CPU evidence (TEE report)",
            evidence_duration.clone(),
        );
        Self {
            registry,
            requests,
            call_duration,
            metered_tokens,
            receipt_log_sync,
            open_channels,
            evidence_duration,
        }
    }

    /// Count one answered request. `route` and `outcome` are the agent's own static names.
    pub fn request(&self, route: &'static str, outcome: &'static str) {
        self.requests
            .get_or_create(&RequestLabels { route, outcome })
            .inc();
    }

    /// Record one call's latency.
    pub fn call(&self, mode: CallMode, elapsed: Duration) {
        self.call_duration
            .get_or_create(&CallLabels { mode: mode.label() })
            .observe(elapsed.as_secs_f64());
    }

    /// Count the tokens of one signed receipt.
    pub fn metered(&self, tokens_in: u64, tokens_out: u64) {
        self.metered_tokens
            .get_or_create(&TokenLabels { direction: "in" })
            .inc_by(tokens_in);
        self.metered_tokens
            .get_or_create(&TokenLabels { direction: "out" })
            .inc_by(tokens_out);
    }

    /// Record one receipt-log batch's write and sync.
    pub fn receipt_log_sync(&self, elapsed: Duration) {
        self.receipt_log_sync.observe(elapsed.as_secs_f64());
    }

    /// Record one evidence generation.
    pub fn evidence(&self, elapsed: Duration) {
        self.evidence_duration.observe(elapsed.as_secs_f64());
    }

    /// Set the number of channels the agent holds state for.
    pub fn set_open_channels(&self, n: usize) {
        self.open_channels.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The OpenMetrics text exposition of every metric ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // INVARIANT: writing to a String cannot fail; on a failure the scrape is empty.
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn encodes_every_metric_with_static_labels() {
        let m = Metrics::new();
        m.request("ohttp", "ok");
        m.request("ohttp", "ok");
        m.call(CallMode::Stream, Duration::from_millis(20));
        m.metered(7, 3);
        m.receipt_log_sync(Duration::from_micros(300));
        m.set_open_channels(4);
        m.evidence(Duration::from_millis(2));
        let text = m.encode();
        for line in [
            "dait_requests_total{route=\"ohttp\",outcome=\"ok\"} 2",
            "dait_call_duration_seconds_count{mode=\"stream\"} 1",
            "dait_metered_tokens_total{direction=\"in\"} 7",
            "dait_metered_tokens_total{direction=\"out\"} 3",
            "dait_receipt_log_sync_duration_seconds_count 1",
            "dait_open_channels 4",
            "dait_evidence_duration_seconds_count 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
