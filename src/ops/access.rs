//! The access log: one line per request (target `jwtgate::access`, level info): method, path,
//! route, status, user, auth outcome, upstream and total latency, body bytes. A [`Record`] is
//! filled in as the request goes, and written when its response is done (or the client went
//! away: 499). Never a token, a key, a query string or an absolute-form target's authority.
//!
//! As JSON (the production format) the line is formatted here, straight into a per-thread
//! buffer, and queued for the log writer: a copy and a few hundred instructions, against about
//! a microsecond through `tracing-subscriber`'s JSON formatter (which builds it through
//! `serde_json` and formats the floats and the timestamp each time). The fields and their order
//! are those that formatter writes for the same event. As text (a terminal) it goes through
//! `tracing` like every other line.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::header::{HeaderName, HeaderValue};
use tracing::info;

use crate::ops::request_id::{RequestId, X_REQUEST_ID};
use crate::ops::trace::RequestTrace;

/// What one request did, for the access log and the metrics. Filled in as the request goes.
#[derive(Debug)]
pub struct Record {
    /// When the request head was read; set only while the access log is on.
    start: Option<Instant>,
    method: String,
    path: String,
    /// The route's name, `-` until one matched.
    pub route: Arc<str>,
    /// The verified caller.
    pub user: Option<HeaderValue>,
    /// `ok`, `public`, `anonymous`, or why the token was refused.
    pub auth: &'static str,
    /// `inline` (a request to forward) or `forward_auth` (a check another proxy asked).
    pub mode: &'static str,
    /// From forwarding to the upstream's response head.
    pub upstream: Option<Duration>,
    /// The status sent (0 until then).
    pub status: u16,
    /// A gRPC call (`content-type: application/grpc*`): refusals are answered in gRPC form.
    pub grpc: bool,
    /// A gRPC call that passed the checks: its method (`/package.Service/Method`, the path
    /// it is forwarded to) is in `path`, and names it in the metrics.
    pub grpc_passed: bool,
    /// A gRPC call's `grpc-status`, once known.
    pub grpc_status: Option<u8>,
    /// What the route adds to every answer to this request.
    pub decorations: Decorations,
    /// The request's trace, when tracing is on (see [`crate::ops::trace`]).
    pub trace: Option<Box<RequestTrace>>,
    /// When the head was in, while tracing is on (the trace starts at `decide`).
    pub traced: Option<SystemTime>,
}

/// What a route adds to every answer to a request, the gateway's own and the upstream's: its
/// CORS fields, and the RFC 9728 metadata URL for the challenge of a 401. Empty (no allocation)
/// on routes that have neither.
#[derive(Debug, Default, Clone)]
pub struct Decorations {
    /// Fields added to every answer (`Vary: Origin`, `Access-Control-Allow-Origin`, ...).
    pub fields: Vec<(HeaderName, HeaderValue)>,
    /// The gateway answers CORS on this route: the upstream's own `Access-Control-*` fields
    /// are removed.
    pub owns_cors: bool,
    /// The route's RFC 9728 metadata URL: a 401's `WWW-Authenticate` names it
    /// (`resource_metadata="..."`).
    pub resource_metadata: Option<Arc<str>>,
    /// The request ID (`X-Request-Id`), returned on every answer and in JSON error bodies.
    pub request_id: Option<RequestId>,
}

impl Decorations {
    /// The value to send for a gateway answer's field `name` = `value` with `status`: a 401's
    /// challenge gains `resource_metadata` when the route has one.
    pub fn value<'v>(&self, status: u16, name: &str, value: &'v str) -> Cow<'v, str> {
        match &self.resource_metadata {
            Some(url) if status == 401 && name == "www-authenticate" => {
                Cow::Owned(format!(r#"{value}, resource_metadata="{url}""#))
            }
            _ => Cow::Borrowed(value),
        }
    }

    /// True for an upstream response field the client must not get (`Access-Control-*` when
    /// the gateway answers CORS; the upstream's own `X-Request-Id`: the gateway's goes back).
    pub fn hides(&self, name: &str) -> bool {
        match name.len() {
            12 => self.request_id.is_some() && name.eq_ignore_ascii_case("x-request-id"),
            16.. => {
                self.owns_cors && name.as_bytes()[..15].eq_ignore_ascii_case(b"access-control-")
            }
            _ => false,
        }
    }

    /// The `X-Request-Id` field every answer gets after the route's fields, as (name, value).
    pub fn request_id_field(&self) -> Option<(&'static [u8], &[u8])> {
        self.request_id
            .as_ref()
            .map(|id| (X_REQUEST_ID.as_str().as_bytes(), id.as_bytes()))
    }

    /// The body of a gateway answer: a JSON error body (`{"error": ...}`) gains the request
    /// ID as `request_id`; any other body is sent as it is.
    pub fn body<'b>(&self, body: &'b [u8]) -> Cow<'b, [u8]> {
        match &self.request_id {
            Some(id) if body.starts_with(b"{\"error\":") && body.ends_with(b"}") => {
                let mut out = Vec::with_capacity(body.len() + id.as_bytes().len() + 20);
                out.extend_from_slice(&body[..body.len() - 1]);
                out.extend_from_slice(b",\"request_id\":");
                json_str(&mut out, id.as_str());
                out.push(b'}');
                Cow::Owned(out)
            }
            _ => Cow::Borrowed(body),
        }
    }
}

/// The route name of a request no route matched.
fn no_route() -> Arc<str> {
    static NAME: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
    NAME.get_or_init(|| Arc::from("-")).clone()
}

/// True while the access log is on (`RUST_LOG` lets `jwtgate::access` at info through).
pub fn access_log_enabled() -> bool {
    tracing::enabled!(target: "jwtgate::access", tracing::Level::INFO)
}

static JSON_LINES: AtomicBool = AtomicBool::new(false);

/// Logs are JSON lines: access lines are formatted here and queued for standard output (set
/// once at startup, with the subscriber).
pub fn set_json_lines(on: bool) {
    JSON_LINES.store(on, Ordering::Relaxed);
}

impl Record {
    /// A record for a request with `method`.
    pub fn new(method: &str) -> Record {
        let log = access_log_enabled();
        let traced = crate::ops::trace::enabled().then(SystemTime::now);
        Record {
            start: log.then(Instant::now),
            method: if log {
                method.to_owned()
            } else {
                String::new()
            },
            path: String::new(),
            route: no_route(),
            user: None,
            auth: "-",
            mode: "inline",
            upstream: None,
            status: 0,
            grpc: false,
            grpc_passed: false,
            grpc_status: None,
            decorations: Decorations {
                request_id: Some(RequestId::generate()),
                ..Decorations::default()
            },
            trace: None,
            traced,
        }
    }

    /// The request ID.
    pub fn request_id(&self) -> Option<&str> {
        self.decorations.request_id.as_ref().map(RequestId::as_str)
    }

    /// Keeps `method` for a sampled trace (the access log keeps it from the start).
    pub fn keep_method(&mut self, method: &str) {
        if self.method.is_empty() || self.method == "-" {
            method.clone_into(&mut self.method);
        }
    }

    /// True when the method and path are kept: for the access log or a sampled trace.
    fn keeps(&self) -> bool {
        self.start.is_some() || self.trace.as_ref().is_some_and(|t| t.sampled())
    }

    /// The method, as far as it is kept (the access log or tracing is on).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The path, as far as it is kept (the access log or tracing is on).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// A gRPC call to `method` passed the checks (the method is kept whether or not the access
    /// log is on: the metrics name it).
    pub fn set_grpc_method(&mut self, method: &str) {
        method.clone_into(&mut self.path);
        self.grpc_passed = true;
    }

    /// The method of a gRPC call that passed the checks.
    pub fn grpc_method(&self) -> Option<&str> {
        self.grpc_passed.then_some(self.path.as_str())
    }

    /// The request is a forward-auth check of an original request with `method` (the check's
    /// own method is not what is logged).
    pub fn set_check(&mut self, method: &str) {
        self.mode = "forward_auth";
        if self.keeps() {
            method.clone_into(&mut self.method);
        }
    }

    /// Sets the path logged (only while the access log is on).
    pub fn set_path(&mut self, path: &str) {
        if self.keeps() {
            path.clone_into(&mut self.path);
        }
    }

    /// Writes the access log line (when it is on): `bytes` of body sent, `complete` when the
    /// whole response went out. A request that never got an answer is logged as 499 (the
    /// client went away, as nginx calls it).
    pub fn log(&self, bytes: u64, complete: bool) {
        let Some(start) = self.start else {
            return;
        };
        const CLIENT_CLOSED: u16 = 499;
        let status = if self.status == 0 {
            CLIENT_CLOSED
        } else {
            self.status
        };
        let user = self
            .user
            .as_ref()
            .and_then(|u| u.to_str().ok())
            .unwrap_or("-");
        if JSON_LINES.load(Ordering::Relaxed) {
            thread_local! {
                static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
            }
            LINE.with_borrow_mut(|line| {
                line.clear();
                let fields = Fields {
                    record: self,
                    status,
                    user,
                    total: start.elapsed(),
                    bytes,
                    complete,
                };
                fields.json(line, SystemTime::now());
                crate::ops::logs::write_lines(line, 1);
            });
            return;
        }
        info!(
            target: "jwtgate::access",
            method = %self.method,
            path = %self.path,
            route = %self.route,
            status,
            user,
            auth = self.auth,
            mode = self.mode,
            upstream_ms = self.upstream.map(|d| d.as_secs_f64() * 1000.0),
            total_ms = start.elapsed().as_secs_f64() * 1000.0,
            bytes,
            complete,
            grpc_status = self.grpc_status,
            request_id = self.request_id(),
            trace_id = self.trace.as_ref().and_then(|t| t.trace_id()),
        );
    }

    /// Takes a gRPC call's status from `grpc-status` in `fields` (see [`grpc_status_of`]),
    /// when there is one.
    pub fn grpc_status_from(&mut self, fields: &http::HeaderMap) {
        if let Some(code) = grpc_status_of(fields) {
            self.grpc_status = Some(code);
        }
    }
}

/// A gRPC call's status from `grpc-status` in `fields` (the response head of a Trailers-Only
/// answer, or trailers). A code gRPC does not define (over 16, or not a number) is 2,
/// UNKNOWN, as gRPC clients take it.
pub fn grpc_status_of(fields: &http::HeaderMap) -> Option<u8> {
    let v = fields.get("grpc-status")?;
    let code = std::str::from_utf8(v.as_bytes())
        .ok()
        .and_then(|v| v.parse::<u8>().ok());
    Some(code.filter(|c| *c <= 16).unwrap_or(2))
}

/// One access line's values.
struct Fields<'a> {
    record: &'a Record,
    status: u16,
    user: &'a str,
    total: Duration,
    bytes: u64,
    complete: bool,
}

impl Fields<'_> {
    /// The line as JSON, newline included, as `tracing-subscriber`'s flattened JSON format
    /// writes it (milliseconds with microsecond precision).
    fn json(&self, out: &mut Vec<u8>, now: SystemTime) {
        let r = self.record;
        out.extend_from_slice(b"{\"timestamp\":\"");
        timestamp(out, now);
        out.extend_from_slice(b"\",\"level\":\"INFO\",\"method\":");
        json_str(out, &r.method);
        out.extend_from_slice(b",\"path\":");
        json_str(out, &r.path);
        out.extend_from_slice(b",\"route\":");
        json_str(out, &r.route);
        out.extend_from_slice(b",\"status\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.status).as_bytes());
        out.extend_from_slice(b",\"user\":");
        json_str(out, self.user);
        out.extend_from_slice(b",\"auth\":");
        json_str(out, r.auth);
        out.extend_from_slice(b",\"mode\":");
        json_str(out, r.mode);
        if let Some(upstream) = r.upstream {
            out.extend_from_slice(b",\"upstream_ms\":");
            millis(out, upstream);
        }
        out.extend_from_slice(b",\"total_ms\":");
        millis(out, self.total);
        out.extend_from_slice(b",\"bytes\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.bytes).as_bytes());
        out.extend_from_slice(if self.complete {
            b",\"complete\":true"
        } else {
            b",\"complete\":false"
        });
        if let Some(code) = r.grpc_status {
            out.extend_from_slice(b",\"grpc_status\":");
            out.extend_from_slice(itoa::Buffer::new().format(code).as_bytes());
        }
        if let Some(id) = r.request_id() {
            out.extend_from_slice(b",\"request_id\":");
            json_str(out, id);
        }
        if let Some(trace_id) = r.trace.as_ref().and_then(|t| t.trace_id()) {
            out.extend_from_slice(b",\"trace_id\":\"");
            out.extend_from_slice(trace_id.as_bytes());
            out.push(b'"');
        }
        out.extend_from_slice(b",\"target\":\"jwtgate::access\"}\n");
    }
}

/// `s` as a JSON string: quotes, backslashes and control characters escaped.
fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut plain = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        out.extend_from_slice(&bytes[plain..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
        plain = i + 1;
    }
    out.extend_from_slice(&bytes[plain..]);
    out.push(b'"');
}

/// `d` in milliseconds with three decimals (microseconds): `0.325`, `1530.002`.
fn millis(out: &mut Vec<u8>, d: Duration) {
    let micros = d.as_micros();
    out.extend_from_slice(itoa::Buffer::new().format(micros / 1000).as_bytes());
    let frac = (micros % 1000) as u16;
    out.extend_from_slice(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

/// `now` as RFC 3339 in UTC with microseconds, `2026-11-29T23:27:48.653646Z`. The part up to
/// the second is formatted once a second per thread.
fn timestamp(out: &mut Vec<u8>, now: SystemTime) {
    thread_local! {
        static SECOND: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
    }
    let since = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (cached, mut text) = SECOND.get();
    if cached != secs {
        text = civil(secs);
        SECOND.set((secs, text));
    }
    out.extend_from_slice(&text);
    let mut micros = since.subsec_micros();
    let mut fraction = *b".000000Z";
    for digit in fraction[1..7].iter_mut().rev() {
        *digit = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    out.extend_from_slice(&fraction);
}

/// `YYYY-MM-DDTHH:MM:SS` for `secs` since the Unix epoch (UTC; days to a civil date after
/// Howard Hinnant's `civil_from_days`).
fn civil(secs: u64) -> [u8; 19] {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut text = [0u8; 19];
    let mut put = |at: usize, value: i64, width: usize| {
        let mut v = value;
        for i in (0..width).rev() {
            text[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year, 4);
    put(5, month, 2);
    put(8, day, 2);
    put(11, (rem / 3600) as i64, 2);
    put(14, (rem / 60 % 60) as i64, 2);
    put(17, (rem % 60) as i64, 2);
    for (at, c) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')] {
        text[at] = c;
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(record: &Record, user: &str, now: SystemTime) -> serde_json::Value {
        let mut out = Vec::new();
        Fields {
            record,
            status: 200,
            user,
            total: Duration::from_micros(1_530_002),
            bytes: 353,
            complete: true,
        }
        .json(&mut out, now);
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn the_json_line_has_tracings_fields_in_its_order() {
        let mut r = Record::new("GET");
        r.method = "GET".into();
        r.path = "/hello".into();
        r.route = Arc::from("api");
        r.auth = "ok";
        r.upstream = Some(Duration::from_micros(263));
        let now = SystemTime::UNIX_EPOCH + Duration::from_micros(1_796_001_234_567_890);
        let v = line(&r, "demo", now);
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            [
                "auth",
                "bytes",
                "complete",
                "level",
                "method",
                "mode",
                "path",
                "request_id",
                "route",
                "status",
                "target",
                "timestamp",
                "total_ms",
                "upstream_ms",
                "user"
            ]
        );
        assert_eq!(v["timestamp"], "2026-11-30T01:13:54.567890Z");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["target"], "jwtgate::access");
        assert_eq!(
            (v["method"].as_str(), v["path"].as_str()),
            (Some("GET"), Some("/hello"))
        );
        assert_eq!(
            (v["route"].as_str(), v["user"].as_str()),
            (Some("api"), Some("demo"))
        );
        assert_eq!(v["status"], 200);
        assert_eq!(v["auth"], "ok");
        assert_eq!(v["mode"], "inline");
        assert_eq!(v["upstream_ms"].as_f64(), Some(0.263));
        assert_eq!(v["total_ms"].as_f64(), Some(1530.002));
        assert_eq!(v["bytes"], 353);
        assert_eq!(v["complete"], true);
        // Without an upstream answer there is no upstream_ms, as tracing omits a None.
        r.upstream = None;
        assert!(line(&r, "-", now).get("upstream_ms").is_none());
        // A gRPC call's status, when it has one.
        assert!(v.get("grpc_status").is_none());
        r.grpc_status = Some(5);
        assert_eq!(line(&r, "-", now)["grpc_status"], 5);
        // One gRPC does not define is UNKNOWN (2), as clients take it.
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("99"));
        r.grpc_status_from(&trailers);
        assert_eq!(r.grpc_status, Some(2));
        for odd in ["", "x", "99999999", "-1"] {
            r.grpc_status = None;
            trailers.insert("grpc-status", http::HeaderValue::from_static(odd));
            r.grpc_status_from(&trailers);
            assert_eq!(r.grpc_status, Some(2), "{odd:?}");
        }
    }

    #[test]
    fn strings_are_escaped() {
        let mut r = Record::new("GET");
        let odd = "a\"b\\c\nd\re\tf\u{1}g\u{1f}h\u{7f}i é ✓";
        r.path = odd.into();
        r.route = Arc::from(odd);
        let v = line(&r, odd, SystemTime::UNIX_EPOCH);
        assert_eq!(v["path"], odd);
        assert_eq!(v["route"], odd);
        assert_eq!(v["user"], odd);
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn civil_dates_match_a_calendar() {
        // Leap days, century rules, the ends of years and months.
        let cases = [
            (0, "1970-01-01T00:00:00"),
            (951_782_400, "2000-02-29T00:00:00"),
            (1_709_164_799, "2024-02-28T23:59:59"),
            (1_709_251_199, "2024-02-29T23:59:59"),
            (1_735_689_599, "2024-12-31T23:59:59"),
            (4_107_542_400, "2100-03-01T00:00:00"),
            (253_402_300_799, "9999-12-31T23:59:59"),
        ];
        for (secs, text) in cases {
            assert_eq!(std::str::from_utf8(&civil(secs)).unwrap(), text, "{secs}");
        }
        // Every day across four centuries against a day-by-day count.
        let (mut y, mut m, mut d) = (1970i64, 1i64, 1i64);
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        for day in 0..146_097u64 {
            let expected = format!("{y:04}-{m:02}-{d:02}T00:00:00");
            assert_eq!(std::str::from_utf8(&civil(day * 86_400)).unwrap(), expected);
            let len = match m {
                2 if leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }
}
