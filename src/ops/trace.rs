//! OpenTelemetry traces: a `SERVER` span per request and per forward-auth check, a `CLIENT`
//! child span for the upstream exchange, W3C Trace Context (`traceparent`, `tracestate`) in
//! and out, exported over OTLP (HTTP/protobuf or gRPC) by the `opentelemetry-otlp` crate.
//!
//! The spans are the SDK's own data ([`SpanData`]), built once when a request ends (in
//! `http::RequestEnd`'s drop, the one place every request ends) from what its
//! [`crate::ops::access::Record`] holds: no span object lives through the request, and a
//! request that is not sampled costs two ids and a field. Finished spans go into a bounded
//! queue ([`QUEUE`]) with `try_send`: a full queue drops the span and counts it
//! (`jwtgate_trace_spans_dropped_total`), so a collector that is down or slow never holds a
//! request. One task takes batches from the queue and exports them, one at a time, each within
//! [`EXPORT_TIMEOUT`].
//!
//! Sampling is parent-based (a client's sampled `traceparent` is followed, an unsampled one is
//! not), with the SDK's trace-id ratio sampler for new traces. A `traceparent` that breaks the
//! W3C rules is ignored (a new trace starts) and never passed on as sent.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use http::header::{HeaderName, HeaderValue};
use http::Uri;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, ShouldSample, SpanData, SpanEvents,
    SpanLinks,
};
use opentelemetry_sdk::Resource;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::config::{otlp_endpoint_problem, otlp_protocol, OtlpProtocol, TelemetryConfig};
use crate::wire::Header;

/// `traceparent`.
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate`.
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Spans waiting for export, at most (about 2 MB at 1 KB a span).
pub const QUEUE: usize = 2048;
/// Spans sent in one export, at most.
const BATCH: usize = 512;
/// How long a batch waits for more spans before it is sent anyway.
const BATCH_DELAY: Duration = Duration::from_secs(1);
/// Longest one export may take (the collector's answer included); its spans are dropped then.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest `tracestate` passed on (W3C: at least 512 characters should be propagated).
const MAX_TRACESTATE: usize = 512;

/// The resolved tracing settings: `[telemetry]`, then the `OTEL_*` variables, then defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Where spans go: the full URL (for HTTP, with `/v1/traces`).
    pub endpoint: String,
    /// OTLP over HTTP (protobuf) or gRPC.
    pub protocol: OtlpProtocol,
    /// A client's `traceparent` decides whether its request is sampled.
    pub parent_based: bool,
    /// Share of new traces sampled (0 to 1).
    pub ratio: f64,
    /// `service.name`.
    pub service_name: String,
    /// The user as `enduser.id`.
    pub record_user: bool,
}

impl Settings {
    /// The settings for `config` and the environment (`env` reads one variable): `None` when
    /// tracing is off (no endpoint anywhere, `OTEL_SDK_DISABLED=true` or
    /// `OTEL_TRACES_EXPORTER=none`), or every problem found. `[telemetry]` keys win over
    /// variables.
    pub fn resolve(
        config: &TelemetryConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Settings>, Vec<String>> {
        let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let mut problems = Vec::new();
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        match var("OTEL_TRACES_EXPORTER").as_deref().map(str::trim) {
            None | Some("otlp") => {}
            Some("none") => return Ok(None),
            Some(other) => problems.push(format!(
                "OTEL_TRACES_EXPORTER={other:?}: only \"otlp\" (or \"none\") is supported"
            )),
        }
        let protocol = match config.protocol {
            Some(p) => p,
            None => match var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                .map(|v| ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", v))
                .or_else(|| {
                    var("OTEL_EXPORTER_OTLP_PROTOCOL").map(|v| ("OTEL_EXPORTER_OTLP_PROTOCOL", v))
                }) {
                None => OtlpProtocol::Http,
                Some((name, v)) => otlp_protocol(v.trim()).unwrap_or_else(|why| {
                    problems.push(format!("{name}: {why}"));
                    OtlpProtocol::Http
                }),
            },
        };
        let base = |url: &str| match protocol {
            OtlpProtocol::Http => format!("{}/v1/traces", url.trim_end_matches('/')),
            OtlpProtocol::Grpc => url.to_owned(),
        };
        let endpoint = match &config.otlp_endpoint {
            Some(url) => Some(base(url)),
            None => [
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", false),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", true),
            ]
            .into_iter()
            .find_map(|(name, is_base)| Some((name, var(name)?, is_base)))
            .and_then(|(name, url, is_base)| {
                let url = url.trim().to_owned();
                match otlp_endpoint_problem(&url) {
                    Some(why) => {
                        problems.push(format!("{name}: {why}"));
                        None
                    }
                    None if is_base => Some(base(&url)),
                    None => Some(url),
                }
            }),
        };
        let (parent_based, ratio) = match config.sample_ratio {
            Some(r) => (true, r),
            None => {
                let mut arg = || -> f64 {
                    match var("OTEL_TRACES_SAMPLER_ARG") {
                        None => 1.0,
                        Some(v) => match v.trim().parse::<f64>() {
                            Ok(r) if (0.0..=1.0).contains(&r) => r,
                            _ => {
                                problems.push(format!(
                                    "OTEL_TRACES_SAMPLER_ARG={v:?}: not a ratio between 0 and 1"
                                ));
                                1.0
                            }
                        },
                    }
                };
                match var("OTEL_TRACES_SAMPLER").as_deref().map(str::trim) {
                    None | Some("parentbased_always_on") => (true, 1.0),
                    Some("parentbased_always_off") => (true, 0.0),
                    Some("parentbased_traceidratio") => (true, arg()),
                    Some("always_on") => (false, 1.0),
                    Some("always_off") => (false, 0.0),
                    Some("traceidratio") => (false, arg()),
                    Some(other) => {
                        problems.push(format!(
                            "OTEL_TRACES_SAMPLER={other:?}: not one of always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio"
                        ));
                        (true, 1.0)
                    }
                }
            }
        };
        let service_name = config
            .service_name
            .clone()
            .or_else(|| var("OTEL_SERVICE_NAME").map(|v| v.trim().to_owned()))
            .unwrap_or_else(|| "jwtgate".to_owned());
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(endpoint.map(|endpoint| Settings {
            endpoint,
            protocol,
            parent_based,
            ratio,
            service_name,
            record_user: config.record_user,
        }))
    }
}

/// The process's tracer, once tracing is installed.
struct Tracer {
    settings: Settings,
    root: Sampler,
    ids: RandomIdGenerator,
    queue: mpsc::Sender<SpanData>,
    scope: InstrumentationScope,
}

static TRACER: OnceLock<Tracer> = OnceLock::new();
/// Spans dropped because the queue was full.
static DROPPED_FULL: AtomicU64 = AtomicU64::new(0);
/// Spans dropped because their export failed or timed out.
static DROPPED_EXPORT: AtomicU64 = AtomicU64::new(0);
/// Spans the collector took.
static EXPORTED: AtomicU64 = AtomicU64::new(0);

/// Spans dropped so far: (queue full, export failed).
pub fn dropped_spans() -> (u64, u64) {
    (
        DROPPED_FULL.load(Ordering::Relaxed),
        DROPPED_EXPORT.load(Ordering::Relaxed),
    )
}

/// Spans exported so far.
pub fn exported_spans() -> u64 {
    EXPORTED.load(Ordering::Relaxed)
}

/// True once tracing is installed.
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// What stops the exporter: [`Exporting::shutdown`] sends what is queued (within a bound).
#[derive(Debug)]
pub struct Exporting {
    stop: tokio::sync::oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

impl Exporting {
    /// Exports what is queued, within `within`, and stops.
    pub async fn shutdown(self, within: Duration) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(within, self.done).await;
    }
}

/// Installs tracing with `settings` (once per process; on a Tokio runtime, whose tasks export).
pub fn install(settings: Settings) -> Result<Exporting, String> {
    let exporter = exporter(&settings)?;
    let (queue, rx) = mpsc::channel(QUEUE);
    let scope = InstrumentationScope::builder("jwtgate")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    info!(
        endpoint = %settings.endpoint,
        protocol = ?settings.protocol,
        ratio = settings.ratio,
        parent_based = settings.parent_based,
        "tracing on"
    );
    let tracer = Tracer {
        root: Sampler::TraceIdRatioBased(settings.ratio),
        settings,
        ids: RandomIdGenerator::default(),
        queue,
        scope,
    };
    TRACER
        .set(tracer)
        .map_err(|_| "tracing is installed already".to_owned())?;
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let done = tokio::spawn(export(exporter, rx, stopped));
    Ok(Exporting { stop, done })
}

/// The OTLP exporter for `settings`.
fn exporter(settings: &Settings) -> Result<opentelemetry_otlp::SpanExporter, String> {
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    let built = match settings.protocol {
        OtlpProtocol::Http => {
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
                .map_err(|e| format!("TLS for the collector: {e}"))?
                .https_or_http()
                .enable_http1()
                .enable_http2()
                .build();
            let client =
                opentelemetry_http::hyper::HyperClient::new(connector, EXPORT_TIMEOUT, None);
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(client)
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(settings.endpoint.clone())
                .with_timeout(EXPORT_TIMEOUT)
                .build()
        }
        OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(settings.endpoint.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .build(),
    };
    let mut exporter = built.map_err(|e| format!("the OTLP exporter: {e}"))?;
    use opentelemetry_sdk::trace::SpanExporter as _;
    exporter.set_resource(
        &Resource::builder_empty()
            .with_service_name(settings.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build(),
    );
    Ok(exporter)
}

/// The export loop: batches from `rx`, one export at a time; on `stop`, what is queued goes in
/// one last export.
async fn export(
    exporter: opentelemetry_otlp::SpanExporter,
    mut rx: mpsc::Receiver<SpanData>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    use opentelemetry_sdk::trace::SpanExporter as _;
    let mut failing = false;
    let mut stopping = false;
    loop {
        let mut batch = Vec::with_capacity(BATCH);
        tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => if n == 0 { return },
            _ = &mut stop, if !stopping => stopping = true,
        }
        if !stopping && batch.len() < BATCH {
            let delay = tokio::time::sleep(BATCH_DELAY);
            tokio::pin!(delay);
            while batch.len() < BATCH {
                let room = BATCH - batch.len();
                tokio::select! {
                    n = rx.recv_many(&mut batch, room) => if n == 0 { break },
                    _ = &mut delay => break,
                    _ = &mut stop, if !stopping => { stopping = true; break }
                }
            }
        }
        if stopping {
            while batch.len() < QUEUE {
                match rx.try_recv() {
                    Ok(span) => batch.push(span),
                    Err(_) => break,
                }
            }
        }
        if !batch.is_empty() {
            let n = batch.len() as u64;
            match tokio::time::timeout(EXPORT_TIMEOUT, exporter.export(batch)).await {
                Ok(Ok(())) => {
                    EXPORTED.fetch_add(n, Ordering::Relaxed);
                    if failing {
                        info!("trace export works again");
                        failing = false;
                    }
                }
                outcome => {
                    DROPPED_EXPORT.fetch_add(n, Ordering::Relaxed);
                    if !failing {
                        let error = match outcome {
                            Ok(Err(e)) => e.to_string(),
                            _ => format!("no answer within {EXPORT_TIMEOUT:?}"),
                        };
                        warn!(spans = n, error = %error, "trace export failed; spans are dropped (jwtgate_trace_spans_dropped_total) until it works again");
                        failing = true;
                    }
                }
            }
        }
        if stopping {
            return;
        }
    }
}

/// A client's W3C trace context, when valid: (trace id, parent span id, sampled).
pub fn parse_traceparent(value: &[u8]) -> Option<(TraceId, SpanId, bool)> {
    // version "-" trace-id "-" parent-id "-" flags, all lower-case hex; a later version may
    // append "-" and more, which is ignored (W3C Trace Context §4.3).
    if value.len() < 55 || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let hex = |s: &[u8]| s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let (version, trace, parent, flags) =
        (&value[..2], &value[3..35], &value[36..52], &value[53..55]);
    if !(hex(version) && hex(trace) && hex(parent) && hex(flags)) || version == b"ff" {
        return None;
    }
    if version == b"00" && value.len() != 55 || value.len() > 55 && value[55] != b'-' {
        return None;
    }
    fn text(s: &[u8]) -> Option<&str> {
        std::str::from_utf8(s).ok()
    }
    let trace = TraceId::from_hex(text(trace)?).ok()?;
    let parent = SpanId::from_hex(text(parent)?).ok()?;
    if trace == TraceId::INVALID || parent == SpanId::INVALID {
        return None;
    }
    let flags = u8::from_str_radix(text(flags)?, 16).ok()?;
    Some((trace, parent, flags & 1 == 1))
}

/// The client's trace context, read once per request: its `traceparent` (exactly one, valid)
/// and its `tracestate` (passed on only with a valid `traceparent`, at most
/// [`MAX_TRACESTATE`] bytes).
#[derive(Debug, Clone, Default)]
pub struct Incoming {
    /// Trace id, parent span id, sampled.
    pub parent: Option<(TraceId, SpanId, bool)>,
    /// The parent's `traceparent` as sent (valid).
    pub traceparent: Option<HeaderValue>,
    /// Its `tracestate`, when it may be passed on.
    pub tracestate: Option<HeaderValue>,
}

impl Incoming {
    /// Reads `headers`.
    pub fn read(headers: &[Header<'_>]) -> Incoming {
        let mut parents = headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("traceparent"));
        let (Some(first), None) = (parents.next(), parents.next()) else {
            return Incoming::default();
        };
        let Some(parent) = parse_traceparent(first.value) else {
            return Incoming::default();
        };
        let mut state: Vec<u8> = Vec::new();
        for h in headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("tracestate"))
        {
            let v = h.value.trim_ascii();
            if v.is_empty() {
                continue;
            }
            if !state.is_empty() {
                state.push(b',');
            }
            state.extend_from_slice(v);
        }
        let tracestate = (!state.is_empty()
            && state.len() <= MAX_TRACESTATE
            && state.iter().all(|b| (0x20..0x7f).contains(b)))
        .then(|| HeaderValue::from_bytes(&state).ok())
        .flatten();
        Incoming {
            parent: Some(parent),
            traceparent: HeaderValue::from_bytes(first.value).ok(),
            tracestate,
        }
    }
}

/// One request's trace: its ids, whether it is sampled, and what its spans will say.
#[derive(Debug)]
pub struct RequestTrace {
    trace_id: TraceId,
    /// The client's span (remote).
    parent: Option<SpanId>,
    /// The `SERVER` span.
    server: SpanId,
    /// The `CLIENT` span of the upstream exchange: the upstream's parent.
    client: SpanId,
    sampled: bool,
    tracestate: Option<HeaderValue>,
    /// When the request's head was in.
    pub start: SystemTime,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The peer.
    pub client_address: IpAddr,
    /// `1.0`, `1.1` or `2`.
    pub protocol: &'static str,
    /// The upstream, once the request is forwarded.
    pub upstream: Option<Uri>,
    /// When the upstream exchange started, and when its response head came.
    pub upstream_start: Option<SystemTime>,
    /// When the upstream's response head came.
    pub upstream_end: Option<SystemTime>,
}

impl RequestTrace {
    /// A trace for a request that started at `start`, continuing `incoming`'s when it has one;
    /// `None` when tracing is off.
    pub fn begin(
        incoming: &Incoming,
        start: SystemTime,
        scheme: &'static str,
        client_address: IpAddr,
        protocol: &'static str,
    ) -> Option<Box<RequestTrace>> {
        let tracer = TRACER.get()?;
        let (trace_id, parent, sampled) = match incoming.parent {
            Some((trace, parent, sampled)) if tracer.settings.parent_based => {
                (trace, Some(parent), sampled)
            }
            Some((trace, parent, _)) => (trace, Some(parent), tracer.root_sampled(trace)),
            None => {
                let trace = tracer.ids.new_trace_id();
                (trace, None, tracer.root_sampled(trace))
            }
        };
        Some(Box::new(RequestTrace {
            trace_id,
            parent,
            server: tracer.ids.new_span_id(),
            client: tracer.ids.new_span_id(),
            sampled,
            tracestate: incoming.tracestate.clone(),
            start,
            scheme,
            client_address,
            protocol,
            upstream: None,
            upstream_start: None,
            upstream_end: None,
        }))
    }

    /// True when this request's spans are recorded and exported.
    pub fn sampled(&self) -> bool {
        self.sampled
    }

    /// The trace id, as 32 hex digits (for the access line).
    pub fn trace_id(&self) -> String {
        self.trace_id.to_string()
    }

    /// The `traceparent` the upstream gets: its parent is the `CLIENT` span.
    pub fn traceparent(&self) -> HeaderValue {
        let text = format!(
            "00-{}-{}-{:02x}",
            self.trace_id,
            self.client,
            u8::from(self.sampled)
        );
        HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""))
    }

    /// The client's `tracestate`, passed on.
    pub fn tracestate(&self) -> Option<&HeaderValue> {
        self.tracestate.as_ref()
    }
}

impl Tracer {
    fn root_sampled(&self, trace: TraceId) -> bool {
        let result = self
            .root
            .should_sample(None, trace, "", &SpanKind::Server, &[], &[]);
        result.decision == SamplingDecision::RecordAndSample
    }
}

/// What a finished request says about itself, for its spans.
#[derive(Debug)]
pub struct Outcome<'r> {
    /// The method (or `_OTHER`).
    pub method: &'r str,
    /// The normalized path (never the query).
    pub path: &'r str,
    /// The route's name (`-`: none matched).
    pub route: &'r str,
    /// The status sent (or counted: 499 for a client gone).
    pub status: u16,
    /// `ok`, `refused` or `none`.
    pub auth_result: &'static str,
    /// Why it was refused.
    pub auth_reason: Option<&'static str>,
    /// `inline` or `forward_auth`.
    pub mode: &'static str,
    /// The verified user.
    pub user: Option<&'r str>,
    /// The request ID.
    pub request_id: Option<&'r str>,
    /// The upstream's status, when it answered.
    pub upstream_status: Option<u16>,
    /// A gRPC call's status.
    pub grpc_status: Option<u8>,
}

/// The standard methods a span names as they are; any other is `_OTHER` (semantic conventions:
/// a client must not choose span names).
fn method_name(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    KNOWN.into_iter().find(|m| *m == method).unwrap_or("_OTHER")
}

/// Ends `trace`'s spans with `outcome`: queued for export when sampled, dropped (and counted)
/// when the queue is full.
pub fn finish(trace: Box<RequestTrace>, outcome: &Outcome<'_>) {
    if !trace.sampled {
        return;
    }
    let Some(tracer) = TRACER.get() else {
        return;
    };
    let end = SystemTime::now();
    let method = method_name(outcome.method);
    let state = trace
        .tracestate
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<TraceState>().ok())
        .unwrap_or_default();
    let context = |span: SpanId| {
        SpanContext::new(
            trace.trace_id,
            span,
            TraceFlags::SAMPLED,
            false,
            state.clone(),
        )
    };
    let routed = outcome.route != "-";
    let mut attributes = Vec::with_capacity(16);
    attributes.push(KeyValue::new("http.request.method", method));
    if method == "_OTHER" {
        attributes.push(KeyValue::new(
            "http.request.method_original",
            outcome.method.chars().take(32).collect::<String>(),
        ));
    }
    attributes.push(KeyValue::new("url.path", outcome.path.to_owned()));
    attributes.push(KeyValue::new("url.scheme", trace.scheme));
    if routed {
        attributes.push(KeyValue::new("http.route", outcome.route.to_owned()));
    }
    attributes.push(KeyValue::new(
        "http.response.status_code",
        i64::from(outcome.status),
    ));
    attributes.push(KeyValue::new(
        "client.address",
        trace.client_address.to_string(),
    ));
    attributes.push(KeyValue::new("network.protocol.name", "http"));
    attributes.push(KeyValue::new("network.protocol.version", trace.protocol));
    attributes.push(KeyValue::new("jwtgate.auth.result", outcome.auth_result));
    if let Some(reason) = outcome.auth_reason {
        attributes.push(KeyValue::new("jwtgate.auth.reason", reason));
    }
    attributes.push(KeyValue::new("jwtgate.mode", outcome.mode));
    if let Some(id) = outcome.request_id {
        attributes.push(KeyValue::new(
            "http.request.header.x-request-id",
            id.to_owned(),
        ));
    }
    if let Some(code) = outcome.grpc_status {
        attributes.push(KeyValue::new("rpc.grpc.status_code", i64::from(code)));
    }
    if let (true, Some(user)) = (tracer.settings.record_user, outcome.user) {
        attributes.push(KeyValue::new("enduser.id", user.to_owned()));
    }
    let error = |yes: bool| match yes {
        true => Status::error(""),
        false => Status::Unset,
    };
    let name = match routed {
        true => format!("{method} {}", outcome.route),
        false => method.to_owned(),
    };
    let server = SpanData {
        span_context: context(trace.server),
        parent_span_id: trace.parent.unwrap_or(SpanId::INVALID),
        parent_span_is_remote: trace.parent.is_some(),
        span_kind: SpanKind::Server,
        name: Cow::Owned(name),
        start_time: trace.start,
        end_time: end,
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: error(outcome.status >= 500),
        instrumentation_scope: tracer.scope.clone(),
    };
    let mut spans = vec![server];
    if let (Some(upstream), Some(start)) = (&trace.upstream, trace.upstream_start) {
        let mut attributes = Vec::with_capacity(6);
        attributes.push(KeyValue::new("http.request.method", method));
        attributes.push(KeyValue::new(
            "server.address",
            upstream.host().unwrap_or("").to_owned(),
        ));
        let port = upstream.port_u16().unwrap_or(match upstream.scheme_str() {
            Some("https" | "h2") => 443,
            _ => 80,
        });
        attributes.push(KeyValue::new("server.port", i64::from(port)));
        if let Some(status) = outcome.upstream_status {
            attributes.push(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        spans.push(SpanData {
            span_context: context(trace.client),
            parent_span_id: trace.server,
            parent_span_is_remote: false,
            span_kind: SpanKind::Client,
            name: Cow::Borrowed(method),
            start_time: start,
            end_time: trace.upstream_end.unwrap_or(end),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: error(outcome.upstream_status.is_none_or(|s| s >= 500)),
            instrumentation_scope: tracer.scope.clone(),
        });
    }
    for span in spans {
        if tracer.queue.try_send(span).is_err() {
            DROPPED_FULL.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_by_the_w3c_rules() {
        let ok = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (trace, parent, sampled) = parse_traceparent(ok).unwrap();
        assert_eq!(trace.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parent.to_string(), "00f067aa0ba902b7");
        assert!(sampled);
        assert!(
            !parse_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
                .unwrap()
                .2
        );
        // A later version may carry more after a dash.
        assert!(parse_traceparent(
            b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"
        )
        .is_some());
        for bad in [
            // upper-case hex
            &b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"[..],
            // all-zero trace id, all-zero parent
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // version ff
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // version 00 with more after it
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            // short, long fields, wrong separators
            b"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            b"00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            b"0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"",
        ] {
            assert_eq!(
                parse_traceparent(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn incoming_context_needs_exactly_one_valid_traceparent() {
        let tp = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let h = |name: &'static str, value: &'static [u8]| Header { name, value };
        let got = Incoming::read(&[
            h("traceparent", tp),
            h("tracestate", b"a=1"),
            h("TraceState", b"b=2"),
        ]);
        assert!(got.parent.is_some());
        assert_eq!(got.tracestate.unwrap(), "a=1,b=2");
        // Two traceparents: neither is believed, and tracestate goes with them.
        let got = Incoming::read(&[
            h("traceparent", tp),
            h("traceparent", tp),
            h("tracestate", b"a=1"),
        ]);
        assert!(got.parent.is_none() && got.tracestate.is_none());
        let got = Incoming::read(&[h("tracestate", b"a=1")]);
        assert!(got.parent.is_none() && got.tracestate.is_none());
        let long = Box::leak(vec![b'a'; 600].into_boxed_slice());
        let got = Incoming::read(&[h("traceparent", tp), h("tracestate", long)]);
        assert!(got.parent.is_some() && got.tracestate.is_none());
    }

    #[test]
    fn settings_from_the_table_and_the_environment() {
        let none = |_: &str| None;
        assert_eq!(
            Settings::resolve(&TelemetryConfig::default(), &none),
            Ok(None)
        );
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        // An endpoint variable alone turns tracing on; the base gets /v1/traces over HTTP.
        let s = Settings::resolve(
            &TelemetryConfig::default(),
            &env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(
            (s.protocol, s.parent_based, s.ratio),
            (OtlpProtocol::Http, true, 1.0)
        );
        assert_eq!(s.service_name, "jwtgate");
        // The signal's own endpoint is used as it is; gRPC takes the base as it is.
        let s = Settings::resolve(
            &TelemetryConfig::default(),
            &env(&[
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/custom"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4318"),
                ("OTEL_SERVICE_NAME", "edge"),
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.endpoint, "http://c:4318/custom");
        assert_eq!((s.ratio, s.service_name.as_str()), (0.25, "edge"));
        // The table wins over the variables.
        let table = TelemetryConfig {
            otlp_endpoint: Some("http://table:4317".into()),
            protocol: Some(OtlpProtocol::Grpc),
            sample_ratio: Some(0.5),
            service_name: Some("gw".into()),
            record_user: true,
        };
        let s = Settings::resolve(
            &table,
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_TRACES_SAMPLER", "always_off"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.endpoint, "http://table:4317");
        assert_eq!(
            (s.protocol, s.parent_based, s.ratio),
            (OtlpProtocol::Grpc, true, 0.5)
        );
        // Switched off.
        for off in [
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_SDK_DISABLED", "true"),
            ][..],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_TRACES_EXPORTER", "none"),
            ],
        ] {
            assert_eq!(
                Settings::resolve(&TelemetryConfig::default(), &env(off)),
                Ok(None)
            );
        }
        // Every problem at once.
        let problems = Settings::resolve(
            &TelemetryConfig::default(),
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
                ("OTEL_TRACES_SAMPLER", "jaeger_remote"),
                ("OTEL_TRACES_EXPORTER", "zipkin"),
            ]),
        )
        .unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
    }

    #[test]
    fn unknown_methods_do_not_name_spans() {
        assert_eq!(method_name("GET"), "GET");
        assert_eq!(method_name("PROPFIND"), "_OTHER");
        assert_eq!(method_name("get"), "_OTHER");
    }
}
