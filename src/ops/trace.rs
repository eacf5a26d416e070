//! OpenTelemetry traces: a `SERVER` span per request and per forward-auth check, a `CLIENT`
//! child span for the upstream exchange, W3C Trace Context (`traceparent`, `tracestate`) in
//! and out, exported over OTLP (HTTP/protobuf or gRPC) by [`crate::ops::otlp`].
//!
//! A request's spans are encoded once, when it ends (in `http::RequestEnd`'s drop, the one
//! place every request ends), from what its [`crate::ops::access::Record`] holds: no span
//! object lives through the request, and a request that is not sampled costs a few ids and a
//! field. Encoded spans go into a bounded queue ([`QUEUE`] entries, [`MAX_QUEUED_BYTES`]) with
//! `try_send`: a full queue drops them and counts them (`jwtgate_trace_spans_dropped_total`), so
//! a collector that is down or slow never holds a request. One task takes batches from the
//! queue and exports them, one at a time, each within [`EXPORT_TIMEOUT`].
//!
//! Sampling is parent-based (a client's `traceparent` decides: sampled, recorded; not sampled,
//! not recorded), with the SDK's trace-id ratio sampler for new traces. A `traceparent` that
//! breaks the W3C rules is ignored (a new trace starts) and never passed on as sent.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use http::header::{HeaderName, HeaderValue};
use http::Uri;
use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, ShouldSample,
};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::config::{otlp_endpoint_problem, otlp_protocol, OtlpProtocol, TelemetryConfig};
use crate::ops::otlp;
use crate::wire::Header;

/// `traceparent`.
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate`.
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Entries (a request's spans) waiting for export, at most (and [`MAX_QUEUED_BYTES`]).
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
    /// Headers for the collector (`OTEL_EXPORTER_OTLP_HEADERS`); values may be credentials.
    pub headers: Vec<(HeaderName, HeaderValue)>,
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
        // No endpoint anywhere: tracing is off, and the other variables (a platform may set
        // them for other programs) are not looked at.
        let configured = config.otlp_endpoint.is_some()
            || var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
            || var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some();
        if !configured {
            return Ok(None);
        }
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
        if let (Some(url), OtlpProtocol::Grpc) = (&endpoint, protocol) {
            if url.starts_with("https://") {
                problems.push(
                    "OTLP over gRPC to an https:// collector is not supported: use protocol \"http\" (OTLP/HTTP over TLS), or a plain-text gRPC endpoint such as a collector on the same node".to_owned(),
                );
            }
        }
        let headers = otlp::headers(env).unwrap_or_else(|why| {
            problems.push(why);
            Vec::new()
        });
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(endpoint.map(|endpoint| Settings {
            headers,
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
    queue: mpsc::Sender<Encoded>,
}

/// The spans of one request, encoded ([`otlp::span`]), on their way to the exporter.
#[derive(Debug)]
struct Encoded {
    bytes: Vec<u8>,
    spans: u64,
}

static TRACER: OnceLock<Tracer> = OnceLock::new();
/// Spans dropped because the queue was full (or gone: after shutdown).
static DROPPED_FULL: AtomicU64 = AtomicU64::new(0);
/// Spans dropped because their export failed or timed out.
static DROPPED_EXPORT: AtomicU64 = AtomicU64::new(0);
/// Spans the collector took.
static EXPORTED: AtomicU64 = AtomicU64::new(0);
/// Bytes of encoded spans in the queue.
static QUEUED_BYTES: AtomicUsize = AtomicUsize::new(0);
/// Most bytes of encoded spans held in the queue (besides the batch being sent).
pub const MAX_QUEUED_BYTES: usize = 8 << 20;

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
    let transport = otlp::Transport::new(
        &settings.endpoint,
        settings.protocol == OtlpProtocol::Grpc,
        settings.headers.clone(),
    )?;
    let envelope = otlp::Envelope::new(&settings.service_name);
    let (queue, rx) = mpsc::channel(QUEUE);
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
    };
    TRACER
        .set(tracer)
        .map_err(|_| "tracing is installed already".to_owned())?;
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let done = tokio::spawn(export(transport, envelope, rx, stopped));
    Ok(Exporting { stop, done })
}

/// The export loop: batches from `rx`, one export at a time; on `stop`, what is queued goes in
/// one last export.
async fn export(
    mut transport: otlp::Transport,
    envelope: otlp::Envelope,
    mut rx: mpsc::Receiver<Encoded>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut failing = false;
    let mut stopping = false;
    let mut items: Vec<Encoded> = Vec::with_capacity(BATCH);
    let spans = |items: &[Encoded]| items.iter().map(|e| e.spans).sum::<u64>() as usize;
    loop {
        items.clear();
        if stopping {
            // What is queued goes out in batches of at most BATCH spans, then the loop ends
            // (the sender lives as long as the process: the channel never closes).
            while spans(&items) < BATCH {
                match rx.try_recv() {
                    Ok(e) => items.push(e),
                    Err(_) => break,
                }
            }
            if items.is_empty() {
                return;
            }
        } else {
            tokio::select! {
                biased;
                _ = &mut stop => { stopping = true; continue }
                n = rx.recv_many(&mut items, BATCH) => if n == 0 { return },
            }
            let delay = tokio::time::sleep(BATCH_DELAY);
            tokio::pin!(delay);
            while spans(&items) < BATCH {
                let room = BATCH.saturating_sub(spans(&items)).max(1);
                tokio::select! {
                    biased;
                    _ = &mut stop => { stopping = true; break }
                    n = rx.recv_many(&mut items, room) => if n == 0 { break },
                    _ = &mut delay => break,
                }
            }
        }
        let n = spans(&items) as u64;
        let held: usize = items.iter().map(|e| e.bytes.len()).sum();
        QUEUED_BYTES.fetch_sub(held, Ordering::Relaxed);
        let bodies: Vec<Vec<u8>> = items.drain(..).map(|e| e.bytes).collect();
        let request = envelope.request(&bodies);
        drop(bodies);
        let sent = tokio::time::timeout(EXPORT_TIMEOUT, transport.send(request));
        // A stop during an export (a slow collector) cuts it short: what is queued gets the
        // rest of the shutdown's time instead.
        let outcome = if stopping {
            sent.await
        } else {
            tokio::select! {
                outcome = sent => outcome,
                _ = &mut stop => {
                    stopping = true;
                    DROPPED_EXPORT.fetch_add(n, Ordering::Relaxed);
                    continue;
                }
            }
        };
        match outcome {
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
                        Ok(Err(e)) => e,
                        _ => format!("no answer within {EXPORT_TIMEOUT:?}"),
                    };
                    warn!(spans = n, error = %error, "trace export failed; spans are dropped (jwtgate_trace_spans_dropped_total) until it works again");
                    failing = true;
                }
            }
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
    /// Its `tracestate`, when it may be passed on.
    pub tracestate: Option<HeaderValue>,
}

/// A `traceparent` value (version 00: 55 bytes), held inline.
pub type TraceParent = [u8; 55];

/// The `traceparent` (version 00) for `trace`, `span`, `sampled`.
pub fn traceparent(trace: TraceId, span: SpanId, sampled: bool) -> TraceParent {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
    for (i, b) in trace.to_bytes().iter().enumerate() {
        out[3 + 2 * i] = HEX[usize::from(b >> 4)];
        out[4 + 2 * i] = HEX[usize::from(b & 0xf)];
    }
    for (i, b) in span.to_bytes().iter().enumerate() {
        out[36 + 2 * i] = HEX[usize::from(b >> 4)];
        out[37 + 2 * i] = HEX[usize::from(b & 0xf)];
    }
    if sampled {
        out[54] = b'1';
    }
    out
}

impl Incoming {
    /// Reads the client's context: `traceparent` is its one `traceparent` field (`None` when
    /// it sent none or several), `tracestate` says whether it sent any `tracestate` (read from
    /// `headers` only then).
    pub fn read(headers: &[Header<'_>], traceparent: Option<&[u8]>, tracestate: bool) -> Incoming {
        let Some(parent) = traceparent.and_then(parse_traceparent) else {
            return Incoming::default();
        };
        if !tracestate {
            return Incoming {
                parent: Some(parent),
                tracestate: None,
            };
        }
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
            tracestate,
        }
    }

    /// The client's context as the upstream gets it when tracing is off (version 00).
    pub fn passed_on(&self) -> Option<TraceParent> {
        self.parent
            .map(|(trace, span, sampled)| traceparent(trace, span, sampled))
    }
}

/// One pass over a request's fields for what the gateway reads of them besides the token: its
/// one `X-Request-Id`, its one `traceparent`, and whether it has a `tracestate`.
#[derive(Debug, Default)]
pub struct Scan<'h> {
    /// The `X-Request-Id` value, when there is exactly one.
    pub request_id: Option<&'h [u8]>,
    /// The `traceparent` value, when there is exactly one.
    pub traceparent: Option<&'h [u8]>,
    /// Some `tracestate` field is there.
    pub tracestate: bool,
}

impl<'h> Scan<'h> {
    /// Scans `headers`.
    pub fn of(headers: &[Header<'h>]) -> Scan<'h> {
        let (mut scan, mut ids, mut parents) = (Scan::default(), 0, 0);
        for h in headers {
            match h.name.len() {
                12 if h.name.eq_ignore_ascii_case("x-request-id") => {
                    ids += 1;
                    scan.request_id = Some(h.value);
                }
                11 if h.name.eq_ignore_ascii_case("traceparent") => {
                    parents += 1;
                    scan.traceparent = Some(h.value);
                }
                10 if h.name.eq_ignore_ascii_case("tracestate") => scan.tracestate = true,
                _ => {}
            }
        }
        if ids > 1 {
            scan.request_id = None;
        }
        if parents > 1 {
            scan.traceparent = None;
        }
        scan
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

    /// The trace id, as 32 hex digits (for the access line), when the request is sampled
    /// (an unsampled request's trace is in no backend).
    pub fn trace_id(&self) -> Option<String> {
        self.sampled.then(|| self.trace_id.to_string())
    }

    /// The `traceparent` the upstream gets: its parent is the `CLIENT` span.
    pub fn traceparent(&self) -> TraceParent {
        traceparent(self.trace_id, self.client, self.sampled)
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

/// Longest `url.path` on a span: a span's size is bounded whatever the client sends (the
/// queue holds at most [`QUEUE`] spans).
pub const MAX_SPAN_PATH: usize = 1024;

/// The path as a span names it: without path parameters (`;jsessionid=...` may be a session
/// credential), at most [`MAX_SPAN_PATH`] bytes (cut on a character boundary).
fn span_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len().min(MAX_SPAN_PATH));
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(segment.split(';').next().unwrap_or(""));
        if out.len() > MAX_SPAN_PATH {
            let mut cut = MAX_SPAN_PATH;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            break;
        }
    }
    out
}

/// Ends `trace`'s spans with `outcome`: encoded and queued for export when sampled, dropped
/// (and counted) when the queue is full.
pub fn finish(trace: Box<RequestTrace>, outcome: &Outcome<'_>) {
    use otlp::{attribute, Value};
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
        .unwrap_or("");
    let routed = outcome.route != "-";
    let mut name_buf = String::new();
    let name = match routed {
        true => {
            name_buf.reserve(method.len() + 1 + outcome.route.len());
            name_buf.push_str(method);
            name_buf.push(' ');
            name_buf.push_str(outcome.route);
            name_buf.as_str()
        }
        false => method,
    };
    let path = span_path(outcome.path);
    let mut ip = [0u8; 46];
    let client_address = otlp::ip_text(trace.client_address, &mut ip);
    let mut out = Vec::with_capacity(768 + path.len());
    let server = otlp::SpanHead {
        trace_id: trace.trace_id.to_bytes(),
        span_id: trace.server.to_bytes(),
        parent: trace.parent.map(|p| (p.to_bytes(), true)),
        trace_state: state,
        name,
        kind: otlp::SERVER,
        start: trace.start,
        end,
        error: outcome.status >= 500,
    };
    otlp::span(&mut out, &server, |out| {
        attribute(out, 9, "http.request.method", Value::Str(method));
        if method == "_OTHER" && !outcome.method.is_empty() && outcome.method != "-" {
            // Methods are tokens (ASCII), but a span is never where a slice may panic.
            let mut cut = outcome.method.len().min(32);
            while !outcome.method.is_char_boundary(cut) {
                cut -= 1;
            }
            let original = &outcome.method[..cut];
            attribute(out, 9, "http.request.method_original", Value::Str(original));
        }
        attribute(out, 9, "url.path", Value::Str(&path));
        attribute(out, 9, "url.scheme", Value::Str(trace.scheme));
        if routed {
            attribute(out, 9, "http.route", Value::Str(outcome.route));
        }
        attribute(
            out,
            9,
            "http.response.status_code",
            Value::Int(i64::from(outcome.status)),
        );
        attribute(out, 9, "client.address", Value::Str(client_address));
        attribute(out, 9, "network.protocol.name", Value::Str("http"));
        if !trace.protocol.is_empty() {
            attribute(
                out,
                9,
                "network.protocol.version",
                Value::Str(trace.protocol),
            );
        }
        attribute(
            out,
            9,
            "jwtgate.auth.result",
            Value::Str(outcome.auth_result),
        );
        if let Some(reason) = outcome.auth_reason {
            attribute(out, 9, "jwtgate.auth.reason", Value::Str(reason));
        }
        attribute(out, 9, "jwtgate.mode", Value::Str(outcome.mode));
        if let Some(id) = outcome.request_id {
            attribute(out, 9, "http.request.header.x-request-id", Value::Str(id));
        }
        if let Some(code) = outcome.grpc_status {
            attribute(out, 9, "rpc.grpc.status_code", Value::Int(i64::from(code)));
        }
        if let (true, Some(user)) = (tracer.settings.record_user, outcome.user) {
            // A user name is printable ASCII, but as long as the token allows: cut.
            attribute(
                out,
                9,
                "enduser.id",
                Value::Str(&user[..user.len().min(256)]),
            );
        }
    });
    let mut spans = 1;
    if let (Some(upstream), Some(start)) = (&trace.upstream, trace.upstream_start) {
        spans += 1;
        let client = otlp::SpanHead {
            trace_id: trace.trace_id.to_bytes(),
            span_id: trace.client.to_bytes(),
            parent: Some((trace.server.to_bytes(), false)),
            trace_state: state,
            name: method,
            kind: otlp::CLIENT,
            start,
            end: trace.upstream_end.unwrap_or(end),
            // Error: the upstream failed (no answer, or 5xx); not a client that went away.
            error: match outcome.upstream_status {
                Some(s) => s >= 500,
                None => outcome.status != 499,
            },
        };
        otlp::span(&mut out, &client, |out| {
            attribute(out, 9, "http.request.method", Value::Str(method));
            attribute(
                out,
                9,
                "server.address",
                Value::Str(upstream.host().unwrap_or("")),
            );
            let port = upstream.port_u16().unwrap_or(match upstream.scheme_str() {
                Some("https" | "h2") => 443,
                _ => 80,
            });
            attribute(out, 9, "server.port", Value::Int(i64::from(port)));
            if let Some(status) = outcome.upstream_status {
                attribute(
                    out,
                    9,
                    "http.response.status_code",
                    Value::Int(i64::from(status)),
                );
            }
        });
    }
    let len = out.len();
    if QUEUED_BYTES.fetch_add(len, Ordering::Relaxed) + len > MAX_QUEUED_BYTES {
        QUEUED_BYTES.fetch_sub(len, Ordering::Relaxed);
        DROPPED_FULL.fetch_add(spans, Ordering::Relaxed);
        return;
    }
    if tracer
        .queue
        .try_send(Encoded { bytes: out, spans })
        .is_err()
    {
        QUEUED_BYTES.fetch_sub(len, Ordering::Relaxed);
        DROPPED_FULL.fetch_add(spans, Ordering::Relaxed);
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
        let read = |headers: &[Header<'static>]| {
            let scan = Scan::of(headers);
            Incoming::read(headers, scan.traceparent, scan.tracestate)
        };
        let got = read(&[
            h("traceparent", tp),
            h("tracestate", b"a=1"),
            h("TraceState", b"b=2"),
        ]);
        assert!(got.parent.is_some());
        assert_eq!(got.tracestate.unwrap(), "a=1,b=2");
        assert_eq!(&read(&[h("traceparent", tp)]).passed_on().unwrap(), tp);
        // Two traceparents: neither is believed, and tracestate goes with them.
        let got = read(&[
            h("traceparent", tp),
            h("Traceparent", tp),
            h("tracestate", b"a=1"),
        ]);
        assert!(got.parent.is_none() && got.tracestate.is_none());
        let got = read(&[h("tracestate", b"a=1")]);
        assert!(got.parent.is_none() && got.tracestate.is_none());
        let long = Box::leak(vec![b'a'; 600].into_boxed_slice());
        let got = read(&[h("traceparent", tp), h("tracestate", long)]);
        assert!(got.parent.is_some() && got.tracestate.is_none());
        // A later version is passed on as version 00.
        let later = b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more";
        assert_eq!(&read(&[h("traceparent", later)]).passed_on().unwrap(), tp);
        // One pass finds the request ID, and only a single one.
        assert_eq!(
            Scan::of(&[h("X-Request-Id", b"a")]).request_id,
            Some(&b"a"[..])
        );
        assert_eq!(
            Scan::of(&[h("x-request-id", b"a"), h("x-request-id", b"b")]).request_id,
            None
        );
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
    fn what_tracing_refuses_and_ignores() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        // No endpoint: variables meant for other programs are not looked at.
        assert_eq!(
            Settings::resolve(
                &TelemetryConfig::default(),
                &env(&[
                    ("OTEL_TRACES_SAMPLER", "xray"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
                ])
            ),
            Ok(None)
        );
        // A credential in the URL: refused, and never echoed.
        let problems = Settings::resolve(
            &TelemetryConfig::default(),
            &env(&[(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "http://user:s3cret@collector:4318",
            )]),
        )
        .unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(!problems[0].contains("s3cret"), "{problems:?}");
        let problems = Settings::resolve(
            &TelemetryConfig::default(),
            &env(&[(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "http://collector:4318/?api_key=s3cret",
            )]),
        )
        .unwrap_err();
        assert!(!problems[0].contains("s3cret"), "{problems:?}");
        let problems = Settings::resolve(
            &TelemetryConfig::default(),
            &env(&[(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "http://user:s3c#ret@collector:4318",
            )]),
        )
        .unwrap_err();
        assert!(!problems[0].contains("s3c"), "{problems:?}");
        // A header the exporter writes itself.
        let problems = Settings::resolve(
            &TelemetryConfig::default(),
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "te=gzip"),
            ]),
        )
        .unwrap_err();
        assert!(problems[0].contains("entry 1"), "{problems:?}");
        // gRPC over TLS is not built in: said at start, not at the first export.
        let problems = Settings::resolve(
            &TelemetryConfig::default(),
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ]),
        )
        .unwrap_err();
        assert!(problems[0].contains("https"), "{problems:?}");
    }

    #[test]
    fn span_paths_are_bounded_and_lose_their_parameters() {
        assert_eq!(span_path("/a/b;jsessionid=x/c;v=1"), "/a/b/c");
        assert_eq!(span_path("/plain"), "/plain");
        let long = format!("/{}", "\u{e9}".repeat(2000));
        let cut = span_path(&long);
        assert!(cut.len() <= MAX_SPAN_PATH && long.starts_with(&cut));
    }

    #[test]
    fn unknown_methods_do_not_name_spans() {
        assert_eq!(method_name("GET"), "GET");
        assert_eq!(method_name("PROPFIND"), "_OTHER");
        assert_eq!(method_name("get"), "_OTHER");
    }
}
