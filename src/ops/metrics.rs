//! Prometheus metrics (the `prometheus-client` crate), served as text on the admin listener.
//! They live for the whole process: a reload swaps the config, not the counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of `jwtgate_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Route name (host + path prefix), or `-` when none matched.
    pub route: Arc<str>,
    /// Response status code.
    pub status: u16,
}

/// Labels with just a route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Route name.
    pub route: Arc<str>,
}

/// Labels with just a reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why (an auth failure reason, or a reload result).
    pub reason: &'static str,
}

/// Labels with a result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok` or `error`.
    pub result: &'static str,
}

fn upstream_histogram() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Every metric the gateway exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests by route and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Refused requests by auth failure reason (`missing`, `expired`, `bad_signature`,
    /// `forbidden`, ...).
    pub auth_failures: Family<ReasonLabels, Counter>,
    /// Time from sending a request upstream to its response head, by route.
    pub upstream_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Client connections open now.
    pub open_connections: Gauge,
    /// Config/key reloads by result.
    pub reloads: Family<ResultLabels, Counter>,
    /// Unix time of the last successful key load.
    pub keys_loaded: Gauge<f64, AtomicU64>,
    /// 1 while ready (config loaded, listener up, not draining).
    pub ready: Gauge,
    /// Log lines dropped because standard output did not take them (see `ops::logs`).
    log_lines_dropped: Counter,
    /// How many of those the counter has been told about.
    log_lines_reported: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("jwtgate");
        let requests = Family::<RequestLabels, Counter>::default();
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        let upstream_seconds =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                upstream_histogram,
            );
        let open_connections = Gauge::default();
        let reloads = Family::<ResultLabels, Counter>::default();
        let keys_loaded = Gauge::<f64, AtomicU64>::default();
        let ready = Gauge::default();
        let log_lines_dropped = Counter::default();
        registry.register(
            "requests",
            "Requests by route and response status",
            requests.clone(),
        );
        registry.register(
            "auth_failures",
            "Requests refused by authentication or authorization, by reason",
            auth_failures.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Time from forwarding a request to the upstream's response head",
            upstream_seconds.clone(),
        );
        registry.register(
            "open_connections",
            "Client connections open on the public listener",
            open_connections.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration and key reloads, by result",
            reloads.clone(),
        );
        registry.register(
            "keys_loaded_timestamp_seconds",
            "Unix time of the last successful key load",
            keys_loaded.clone(),
        );
        registry.register(
            "ready",
            "1 when the gateway is ready to serve, 0 before start and while draining",
            ready.clone(),
        );
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because standard output was not taking them",
            log_lines_dropped.clone(),
        );
        Metrics {
            registry,
            requests,
            auth_failures,
            upstream_seconds,
            open_connections,
            reloads,
            keys_loaded,
            ready,
            log_lines_dropped,
            log_lines_reported: AtomicU64::new(0),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let dropped = crate::ops::logs::dropped_lines();
        let reported = self
            .log_lines_reported
            .fetch_max(dropped, Ordering::Relaxed);
        if dropped > reported {
            self.log_lines_dropped.inc_by(dropped - reported);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
