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
    /// `inline` or `forward_auth` (checks answered for another proxy).
    pub mode: &'static str,
}

/// Labels of `jwtgate_grpc_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcLabels {
    /// Route name.
    pub route: Arc<str>,
    /// The gRPC method (`/package.Service/Method`), or `other` past [`GRPC_METHODS`].
    pub method: Arc<str>,
    /// HTTP status of the response.
    pub status: u16,
    /// The call's `grpc-status`, `-` when it ended without one (reset, cut short).
    pub grpc_status: Arc<str>,
}

/// Most distinct gRPC methods labelled; calls to others count as `other` (a client chooses
/// the path, and must not grow the metrics without bound).
pub const GRPC_METHODS: usize = 1000;

/// Longest gRPC method labelled (`/package.Service/Method`); a longer path counts as `other`.
pub const GRPC_METHOD_BYTES: usize = 128;

/// True when a call to `method` that ended with HTTP `status` and `grpc_status` earns the
/// method a label of its own: a method the upstream knows (it answered, and not
/// `UNIMPLEMENTED`), of bounded length, in the characters of a protobuf name. A client sending
/// made-up or oversized paths only ever adds to `other`, and cannot use up the labels that
/// real methods need.
fn labels_method(method: &str, status: u16, grpc_status: Option<u8>) -> bool {
    // `-`: a call the gateway refused (its method is not taken from the client).
    method == "-"
        || status == 200
            && matches!(grpc_status, Some(code) if code != 12)
            && method.len() <= GRPC_METHOD_BYTES
            && method.starts_with('/')
            && method
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'))
}

/// The `grpc_status` label: the code (0 to 16), `-` for none, `other` for a number gRPC does
/// not define (an upstream could otherwise make 256 series per method).
fn grpc_status_label(code: Option<u8>) -> Arc<str> {
    match code {
        Some(c @ 0..=16) => itoa::Buffer::new().format(c).into(),
        Some(_) => "other".into(),
        None => "-".into(),
    }
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

/// Labels with a provider (its issuer).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    /// The provider's issuer.
    pub provider: String,
}

/// Labels with a provider and a result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderResultLabels {
    /// The provider's issuer.
    pub provider: String,
    /// `ok` or `error`.
    pub result: &'static str,
}

/// The metrics identity providers' key fetches are counted in (`auth::provider`).
#[derive(Clone, Debug)]
pub struct FetchMetrics {
    /// `jwtgate_jwks_fetches_total{provider,result}`.
    pub fetches: Family<ProviderResultLabels, Counter>,
    /// `jwtgate_jwks_keys{provider}`.
    pub keys: Family<ProviderLabels, Gauge>,
    /// `jwtgate_jwks_kid_waits_total{provider,result}`: requests with an unknown `kid` that
    /// waited for the next fetch (`fetched`, or `timeout` after 6 s).
    pub kid_waits: Family<ProviderResultLabels, Counter>,
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
    /// gRPC calls by route, method, HTTP status and `grpc-status`.
    pub grpc_requests: Family<GrpcLabels, Counter>,
    /// The gRPC methods labelled so far (at most [`GRPC_METHODS`]).
    grpc_methods: std::sync::Mutex<std::collections::HashSet<Arc<str>>>,
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
    /// `server.max_connections` in effect (set at start: a change needs a restart).
    pub max_connections: Gauge,
    /// Bytes reserved now from `server.max_buffered_bytes` (read when rendered).
    pub buffered_bytes: Gauge,
    /// Identity providers' key fetches and keys (see `auth::provider`).
    pub providers: FetchMetrics,
    /// Log lines dropped because standard output did not take them (see `ops::logs`).
    log_lines_dropped: Counter,
    /// How many of those the counter has been told about.
    log_lines_reported: AtomicU64,
    /// Spans dropped (`queue_full`, `export_failed`; see `ops::trace`), read when rendered.
    trace_spans_dropped: Family<ReasonLabels, Counter>,
    /// Spans the collector took, read when rendered.
    trace_spans_exported: Counter,
    /// How much of each tracer count (queue full, export failed, exported) the counters have
    /// been told about: two renders at once must not both add the same difference.
    trace_reported: [AtomicU64; 3],
    /// Tells this instance's handles apart in the per-thread cache.
    id: u64,
}

/// Handles of the per-request metrics each thread found before, so that counting a request is a
/// short scan instead of hashing its labels into a family (a family hands out handles to the
/// same counter every time).
struct Handles {
    counters: Vec<(u64, Arc<str>, u16, &'static str, Counter)>,
    histograms: Vec<(u64, Arc<str>, Histogram)>,
    grpc: Vec<GrpcHandle>,
}

/// A gRPC call counter, by instance, route, method, HTTP status and gRPC status.
struct GrpcHandle {
    id: u64,
    route: Arc<str>,
    method: Arc<str>,
    status: u16,
    grpc_status: Option<u8>,
    counter: Counter,
}

/// Most handles of each kind a thread keeps (routes times statuses seen); beyond, the family.
const HANDLES: usize = 64;

thread_local! {
    static CACHED: std::cell::RefCell<Handles> = const {
        std::cell::RefCell::new(Handles {
            counters: Vec::new(),
            histograms: Vec::new(),
            grpc: Vec::new(),
        })
    };
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
        let grpc_requests = Family::<GrpcLabels, Counter>::default();
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        let upstream_seconds =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                upstream_histogram,
            );
        let open_connections = Gauge::default();
        let reloads = Family::<ResultLabels, Counter>::default();
        let keys_loaded = Gauge::<f64, AtomicU64>::default();
        let ready = Gauge::default();
        let buffered_bytes = Gauge::default();
        let log_lines_dropped = Counter::default();
        let providers = FetchMetrics {
            fetches: Family::default(),
            keys: Family::default(),
            kid_waits: Family::default(),
        };
        registry.register(
            "jwks_kid_waits",
            "Requests with an unknown key id that waited for the provider's next key fetch, by provider and result (fetched, timeout)",
            providers.kid_waits.clone(),
        );
        registry.register(
            "jwks_fetches",
            "Identity provider key fetches (JWKS, discovery), by provider and result",
            providers.fetches.clone(),
        );
        registry.register(
            "jwks_keys",
            "Usable keys of each identity provider, as last fetched",
            providers.keys.clone(),
        );
        registry.register(
            "requests",
            "Requests by route and response status",
            requests.clone(),
        );
        registry.register(
            "grpc_requests",
            "gRPC calls by route, method, HTTP status and grpc-status",
            grpc_requests.clone(),
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
            "buffered_bytes",
            "Bytes reserved now from server.max_buffered_bytes: HTTP/2 upstream call windows and request-body replay copies",
            buffered_bytes.clone(),
        );
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because standard output was not taking them",
            log_lines_dropped.clone(),
        );
        let trace_spans_dropped = Family::<ReasonLabels, Counter>::default();
        for reason in ["queue_full", "export_failed"] {
            let _ = trace_spans_dropped.get_or_create(&ReasonLabels { reason });
        }
        registry.register(
            "trace_spans_dropped",
            "Trace spans dropped: the export queue was full (queue_full) or their export failed or timed out (export_failed)",
            trace_spans_dropped.clone(),
        );
        let trace_spans_exported = Counter::default();
        registry.register(
            "trace_spans_exported",
            "Trace spans the OTLP collector accepted",
            trace_spans_exported.clone(),
        );
        let max_connections = Gauge::default();
        registry.register(
            "max_connections",
            "The connection cap in effect (server.max_connections): open_connections / max_connections is how full it is",
            max_connections.clone(),
        );
        Metrics {
            max_connections,
            trace_spans_dropped,
            trace_spans_exported,
            trace_reported: Default::default(),
            registry,
            requests,
            grpc_requests,
            grpc_methods: Default::default(),
            auth_failures,
            upstream_seconds,
            open_connections,
            reloads,
            keys_loaded,
            ready,
            buffered_bytes,
            providers,
            log_lines_dropped,
            log_lines_reported: AtomicU64::new(0),
            id: {
                static NEXT: AtomicU64 = AtomicU64::new(0);
                NEXT.fetch_add(1, Ordering::Relaxed)
            },
        }
    }

    /// Counts a request (`mode`: `inline` or `forward_auth`) answered with `status` on
    /// `route`.
    pub fn count_request(&self, route: &Arc<str>, status: u16, mode: &'static str) {
        let id = self.id;
        let hit = CACHED.with(|c| {
            let c = c.borrow();
            c.counters
                .iter()
                .find(|(i, r, s, m, _)| {
                    *i == id && *s == status && *m == mode && Arc::ptr_eq(r, route)
                })
                .map(|(.., counter)| counter.inc())
                .is_some()
        });
        if hit {
            return;
        }
        let counter = self
            .requests
            .get_or_create(&RequestLabels {
                route: route.clone(),
                status,
                mode,
            })
            .clone();
        counter.inc();
        CACHED.with(|c| {
            let mut c = c.borrow_mut();
            if c.counters.len() < HANDLES {
                c.counters.push((id, route.clone(), status, mode, counter));
            }
        });
    }

    /// Counts a gRPC call to `method` on `route` that ended with `status` and `grpc_status`.
    pub fn count_grpc(&self, route: &Arc<str>, method: &str, status: u16, grpc_status: Option<u8>) {
        let (id, asked) = (self.id, method);
        let hit = CACHED.with(|c| {
            let c = c.borrow();
            c.grpc
                .iter()
                .find(|h| {
                    h.id == id
                        && h.status == status
                        && h.grpc_status == grpc_status
                        && Arc::ptr_eq(&h.route, route)
                        && *h.method == *method
                })
                .map(|h| h.counter.inc())
                .is_some()
        });
        if hit {
            return;
        }
        let method: Arc<str> = {
            let mut known = self.grpc_methods.lock().unwrap_or_else(|e| e.into_inner());
            match known.get(method) {
                Some(m) => m.clone(),
                None if known.len() < GRPC_METHODS
                    && labels_method(method, status, grpc_status) =>
                {
                    let m: Arc<str> = method.into();
                    known.insert(m.clone());
                    m
                }
                None => Arc::from("other"),
            }
        };
        let grpc_label = grpc_status_label(grpc_status);
        let counter = self
            .grpc_requests
            .get_or_create(&GrpcLabels {
                route: route.clone(),
                method: method.clone(),
                status,
                grpc_status: grpc_label,
            })
            .clone();
        counter.inc();
        CACHED.with(|c| {
            let mut c = c.borrow_mut();
            // Only a method counted under its own name ("other" stands for many).
            if c.grpc.len() < HANDLES && *method == *asked {
                c.grpc.push(GrpcHandle {
                    id,
                    route: route.clone(),
                    method,
                    status,
                    grpc_status,
                    counter,
                });
            }
        });
    }

    /// Observes an upstream's time to its response head on `route`.
    pub fn observe_upstream(&self, route: &Arc<str>, seconds: f64) {
        let id = self.id;
        let hit = CACHED.with(|c| {
            let c = c.borrow();
            c.histograms
                .iter()
                .find(|(i, r, _)| *i == id && Arc::ptr_eq(r, route))
                .map(|(.., h)| h.observe(seconds))
                .is_some()
        });
        if hit {
            return;
        }
        let histogram = self
            .upstream_seconds
            .get_or_create(&RouteLabels {
                route: route.clone(),
            })
            .clone();
        histogram.observe(seconds);
        CACHED.with(|c| {
            let mut c = c.borrow_mut();
            if c.histograms.len() < HANDLES {
                c.histograms.push((id, route.clone(), histogram));
            }
        });
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        // Log lines and trace spans are counted by the process; each registry catches up
        // with them, each difference added once (`fetch_max` tells the render that moved the
        // mark, when two renders run at once).
        let catch_up = |counter: &Counter, reported: &AtomicU64, total: u64| {
            let before = reported.fetch_max(total, Ordering::Relaxed);
            if total > before {
                counter.inc_by(total - before);
            }
        };
        catch_up(
            &self.log_lines_dropped,
            &self.log_lines_reported,
            crate::ops::logs::dropped_lines(),
        );
        let (full, failed) = crate::ops::trace::dropped_spans();
        for (i, (reason, total)) in [("queue_full", full), ("export_failed", failed)]
            .into_iter()
            .enumerate()
        {
            catch_up(
                &self
                    .trace_spans_dropped
                    .get_or_create(&ReasonLabels { reason }),
                &self.trace_reported[i],
                total,
            );
        }
        catch_up(
            &self.trace_spans_exported,
            &self.trace_reported[2],
            crate::ops::trace::exported_spans(),
        );
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
