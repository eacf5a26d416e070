//! OTLP, written by hand: the spans of one request encoded straight into protobuf bytes (the
//! `opentelemetry.proto.trace.v1.Span` message of the official definitions) when it ends, and
//! batches of them wrapped into an `ExportTraceServiceRequest` and sent over HTTP (protobuf) or
//! gRPC.
//!
//! Why not `opentelemetry-otlp` (the first version of tracing used it): its exporter takes the
//! SDK's `SpanData`, converts every attribute into the generated types and lets `prost` encode
//! them, measuring nested lengths again at each level. At 100 % sampling that was 36,000
//! instructions and 1.43× the CPU of a request without tracing (`benches/tracing.py`, see
//! benches/README.md); encoding here costs a few thousand. The tests decode every byte with the
//! official definitions (the `opentelemetry-proto` crate).

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// `SpanKind`.
pub const SERVER: u64 = 2;
/// `SpanKind`.
pub const CLIENT: u64 = 3;

/// A field's key: a varint (two bytes from field 16 on).
fn tag(out: &mut Vec<u8>, field: u8, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn bytes_field(out: &mut Vec<u8>, field: u8, b: &[u8]) {
    tag(out, field, LEN);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A message field whose body `body` writes: the body goes after a one-byte length
/// placeholder, which is fixed up (moving the body when its length needs more bytes).
fn message(out: &mut Vec<u8>, field: u8, body: impl FnOnce(&mut Vec<u8>)) {
    tag(out, field, LEN);
    let at = out.len();
    out.push(0);
    body(out);
    let len = out.len() - at - 1;
    let n = varint_len(len as u64);
    if n > 1 {
        out.splice(at + 1..at + 1, std::iter::repeat_n(0, n - 1));
    }
    let mut prefix = Vec::with_capacity(n);
    varint(&mut prefix, len as u64);
    out[at..at + n].copy_from_slice(&prefix);
}

/// An attribute value.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    /// `string_value`.
    Str(&'a str),
    /// `int_value`.
    Int(i64),
}

/// A `KeyValue` in field `field` (9 in a span, 1 in a resource).
pub fn attribute(out: &mut Vec<u8>, field: u8, key: &str, value: Value<'_>) {
    message(out, field, |out| {
        bytes_field(out, 1, key.as_bytes());
        message(out, 2, |out| match value {
            Value::Str(s) => bytes_field(out, 1, s.as_bytes()),
            Value::Int(i) => {
                tag(out, 3, VARINT);
                varint(out, i as u64);
            }
        });
    });
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// What one span says, besides its attributes.
#[derive(Debug)]
pub struct SpanHead<'a> {
    /// 16 bytes.
    pub trace_id: [u8; 16],
    /// 8 bytes.
    pub span_id: [u8; 8],
    /// The parent's id, if any, and whether the parent is remote.
    pub parent: Option<([u8; 8], bool)>,
    /// The W3C `tracestate`.
    pub trace_state: &'a str,
    /// The span's name.
    pub name: &'a str,
    /// [`SERVER`] or [`CLIENT`].
    pub kind: u64,
    /// Start and end.
    pub start: SystemTime,
    /// Start and end.
    pub end: SystemTime,
    /// Status code 2 (Error).
    pub error: bool,
}

/// Appends one span to `out` as a `spans` entry of a `ScopeSpans` (field 2), its attributes
/// written by `attributes` (call [`attribute`] with field 9).
pub fn span(out: &mut Vec<u8>, head: &SpanHead<'_>, attributes: impl FnOnce(&mut Vec<u8>)) {
    message(out, 2, |out| {
        bytes_field(out, 1, &head.trace_id);
        bytes_field(out, 2, &head.span_id);
        if !head.trace_state.is_empty() {
            bytes_field(out, 3, head.trace_state.as_bytes());
        }
        if let Some((parent, _)) = &head.parent {
            bytes_field(out, 4, parent);
        }
        bytes_field(out, 5, head.name.as_bytes());
        tag(out, 6, VARINT);
        varint(out, head.kind);
        tag(out, 7, FIXED64);
        out.extend_from_slice(&nanos(head.start).to_le_bytes());
        tag(out, 8, FIXED64);
        out.extend_from_slice(&nanos(head.end).to_le_bytes());
        attributes(out);
        if head.error {
            message(out, 15, |out| {
                tag(out, 3, VARINT);
                varint(out, 2);
            });
        }
        // Sampled, and whether the parent is remote (the span flags of OTLP 1.1+).
        let remote = match head.parent {
            Some((_, true)) => 0x300,
            _ => 0x100,
        };
        tag(out, 16, FIXED32);
        out.extend_from_slice(&(0x01u32 | remote).to_le_bytes());
    });
}

/// The part of every export request that is the same: the resource (`service.name`,
/// `service.version`) and the instrumentation scope, as the fields of a `ResourceSpans` before
/// its spans, and the `ScopeSpans` head.
#[derive(Debug, Clone)]
pub struct Envelope {
    resource: Vec<u8>,
    scope: Vec<u8>,
}

impl Envelope {
    /// The envelope for `service_name`.
    pub fn new(service_name: &str) -> Envelope {
        let mut resource = Vec::new();
        message(&mut resource, 1, |out| {
            attribute(out, 1, "service.name", Value::Str(service_name));
            attribute(
                out,
                1,
                "service.version",
                Value::Str(env!("CARGO_PKG_VERSION")),
            );
            attribute(out, 1, "telemetry.sdk.language", Value::Str("rust"));
        });
        let mut scope = Vec::new();
        message(&mut scope, 1, |out| {
            bytes_field(out, 1, b"jwtgate");
            bytes_field(out, 2, env!("CARGO_PKG_VERSION").as_bytes());
        });
        Envelope { resource, scope }
    }

    /// An `ExportTraceServiceRequest` holding `spans` (each as [`span`] wrote it).
    pub fn request(&self, spans: &[Vec<u8>]) -> Bytes {
        let spans_len: usize = spans.iter().map(Vec::len).sum();
        let scope_spans_len = self.scope.len() + spans_len;
        let resource_spans_len =
            self.resource.len() + 1 + varint_len(scope_spans_len as u64) + scope_spans_len;
        let mut out =
            Vec::with_capacity(resource_spans_len + 2 * varint_len(resource_spans_len as u64) + 2);
        tag(&mut out, 1, LEN);
        varint(&mut out, resource_spans_len as u64);
        out.extend_from_slice(&self.resource);
        tag(&mut out, 2, LEN);
        varint(&mut out, scope_spans_len as u64);
        out.extend_from_slice(&self.scope);
        for s in spans {
            out.extend_from_slice(s);
        }
        Bytes::from(out)
    }
}

/// The text of `ip`, without allocating.
pub fn ip_text(ip: IpAddr, buf: &mut [u8; 46]) -> &str {
    use std::io::Write;
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cursor, "{ip}");
    let n = cursor.position() as usize;
    std::str::from_utf8(&buf[..n]).unwrap_or("")
}

/// Headers for the collector from `OTEL_EXPORTER_OTLP_TRACES_HEADERS` or
/// `OTEL_EXPORTER_OTLP_HEADERS` (`key=value,key=value`, values percent-decoded); a malformed
/// entry is a problem.
pub fn headers(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, String> {
    let Some((name, text)) = [
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        "OTEL_EXPORTER_OTLP_HEADERS",
    ]
    .into_iter()
    .find_map(|n| env(n).filter(|v| !v.trim().is_empty()).map(|v| (n, v))) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (i, entry) in text
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .enumerate()
    {
        let parsed = entry.split_once('=').and_then(|(k, v)| {
            let key = http::HeaderName::from_bytes(k.trim().as_bytes()).ok()?;
            // Fields the exporter writes itself, or that HTTP/2 forbids.
            const OWN: [&str; 9] = [
                "host",
                "content-type",
                "content-length",
                "te",
                "connection",
                "keep-alive",
                "transfer-encoding",
                "upgrade",
                "proxy-connection",
            ];
            if OWN.contains(&key.as_str()) {
                return None;
            }
            let mut value = http::HeaderValue::from_bytes(&percent_decode(v.trim())).ok()?;
            value.set_sensitive(true);
            Some((key, value))
        });
        match parsed {
            Some(kv) => out.push(kv),
            // The entry may hold a credential: only its place is named.
            None => {
                return Err(format!(
                    "{name}: entry {} is not key=value with a valid header name and value (and not a field the exporter writes itself)",
                    i + 1
                ))
            }
        }
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, ..) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Where batches go.
#[derive(Debug)]
pub struct Transport(Link);

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per process
enum Link {
    /// OTLP/HTTP: `POST` of the protobuf body.
    Http {
        client: hyper_util::client::legacy::Client<
            hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
            http_body_util::Full<Bytes>,
        >,
        url: http::Uri,
        headers: Vec<(http::HeaderName, http::HeaderValue)>,
    },
    /// OTLP/gRPC over h2c (one connection, made again after a failure).
    Grpc {
        url: http::Uri,
        headers: Vec<(http::HeaderName, http::HeaderValue)>,
        conn: Option<h2::client::SendRequest<Bytes>>,
    },
}

/// Longest one gRPC export may take (within the exporter's own bound).
const GRPC_TIMEOUT: Duration = Duration::from_secs(8);

/// The gRPC method.
const EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

impl Transport {
    /// A transport to `url`.
    pub fn new(
        url: &str,
        grpc: bool,
        headers: Vec<(http::HeaderName, http::HeaderValue)>,
    ) -> Result<Transport, String> {
        let url: http::Uri = url.parse().map_err(|_| "not a URL".to_owned())?;
        if grpc {
            return Ok(Transport(Link::Grpc {
                url,
                headers,
                conn: None,
            }));
        }
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| format!("TLS for the collector: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector);
        Ok(Transport(Link::Http {
            client,
            url,
            headers,
        }))
    }

    /// Sends one export request; `Err` says why it was not taken.
    pub async fn send(&mut self, body: Bytes) -> Result<(), String> {
        match &mut self.0 {
            Link::Http {
                client,
                url,
                headers,
            } => {
                let mut req = http::Request::post(url.clone())
                    .header(http::header::CONTENT_TYPE, "application/x-protobuf")
                    .body(http_body_util::Full::new(body))
                    .map_err(|e| e.to_string())?;
                for (k, v) in headers.iter() {
                    req.headers_mut().insert(k.clone(), v.clone());
                }
                let res = client.request(req).await.map_err(|e| e.to_string())?;
                let status = res.status();
                // The answer's body is read (bounded) so that the connection is reused.
                let _ = http_body_util::BodyExt::collect(http_body_util::Limited::new(
                    res.into_body(),
                    64 * 1024,
                ))
                .await;
                match status.is_success() {
                    true => Ok(()),
                    false => Err(format!("the collector answered {status}")),
                }
            }
            Link::Grpc { url, headers, conn } => {
                // The connection is kept only after an export it carried: one that failed or
                // took too long (a silently dead connection) is made again next time.
                let result =
                    tokio::time::timeout(GRPC_TIMEOUT, grpc_export(url, headers, conn, body))
                        .await
                        .unwrap_or_else(|_| Err(format!("no answer within {GRPC_TIMEOUT:?}")));
                if result.is_err() {
                    *conn = None;
                }
                result
            }
        }
    }
}

async fn grpc_export(
    url: &http::Uri,
    headers: &[(http::HeaderName, http::HeaderValue)],
    conn: &mut Option<h2::client::SendRequest<Bytes>>,
    body: Bytes,
) -> Result<(), String> {
    if conn.is_none() {
        // An IPv6 literal keeps its brackets in a URI's host.
        let host = url
            .host()
            .unwrap_or("localhost")
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = url.port_u16().unwrap_or(4317);
        let tcp = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let (send, connection) = h2::client::handshake(tcp)
            .await
            .map_err(|e| format!("HTTP/2: {e}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        *conn = Some(send);
    }
    let Some(send) = conn.as_mut() else {
        return Err("no connection".into());
    };
    let mut ready = send.clone().ready().await.map_err(|e| e.to_string())?;
    let authority = url.authority().map_or("localhost", |a| a.as_str());
    let mut req = http::Request::post(format!("http://{authority}{EXPORT}"))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .body(())
        .map_err(|e| e.to_string())?;
    for (k, v) in headers {
        req.headers_mut().insert(k.clone(), v.clone());
    }
    let (response, mut stream) = ready.send_request(req, false).map_err(|e| e.to_string())?;
    let mut framed = Vec::with_capacity(5 + body.len());
    framed.push(0);
    framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
    framed.extend_from_slice(&body);
    stream
        .send_data(Bytes::from(framed), true)
        .map_err(|e| e.to_string())?;
    let response = response.await.map_err(|e| e.to_string())?;
    let (parts, mut body) = response.into_parts();
    let mut status = parts.headers.get("grpc-status").cloned();
    let mut read = 0usize;
    while let Some(data) = body.data().await {
        let data = data.map_err(|e| e.to_string())?;
        read += data.len();
        let _ = body.flow_control().release_capacity(data.len());
        if read > 64 * 1024 {
            return Err("the collector's answer is too long".into());
        }
    }
    if status.is_none() {
        status = body
            .trailers()
            .await
            .map_err(|e| e.to_string())?
            .and_then(|t| t.get("grpc-status").cloned());
    }
    match status.as_ref().map(|s| s.as_bytes()) {
        Some(b"0") => Ok(()),
        Some(code) => Err(format!(
            "the collector answered grpc-status {}",
            String::from_utf8_lossy(code)
        )),
        None => Err(format!(
            "the collector answered {} without grpc-status",
            parts.status
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;

    #[test]
    fn what_is_written_is_what_the_official_definitions_read() {
        let envelope = Envelope::new("edge");
        let mut one = Vec::new();
        let long = "x".repeat(300);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        span(
            &mut one,
            &SpanHead {
                trace_id: [1; 16],
                span_id: [2; 8],
                parent: Some(([3; 8], true)),
                trace_state: "a=1",
                name: "GET /api",
                kind: SERVER,
                start: t0,
                end: t0 + Duration::from_micros(5),
                error: true,
            },
            |out| {
                attribute(out, 9, "url.path", Value::Str(&long));
                attribute(out, 9, "http.response.status_code", Value::Int(502));
            },
        );
        let mut two = Vec::new();
        span(
            &mut two,
            &SpanHead {
                trace_id: [1; 16],
                span_id: [4; 8],
                parent: Some(([2; 8], false)),
                trace_state: "",
                name: "GET",
                kind: CLIENT,
                start: t0,
                end: t0,
                error: false,
            },
            |_| {},
        );
        let req = ExportTraceServiceRequest::decode(envelope.request(&[one, two])).unwrap();
        assert_eq!(req.resource_spans.len(), 1);
        let rs = &req.resource_spans[0];
        let resource = rs.resource.as_ref().unwrap();
        assert_eq!(resource.attributes[0].key, "service.name");
        let ss = &rs.scope_spans[0];
        assert_eq!(ss.scope.as_ref().unwrap().name, "jwtgate");
        assert_eq!(ss.spans.len(), 2);
        let s = &ss.spans[0];
        assert_eq!(s.trace_id, vec![1; 16]);
        assert_eq!(s.span_id, vec![2; 8]);
        assert_eq!(s.parent_span_id, vec![3; 8]);
        assert_eq!(s.trace_state, "a=1");
        assert_eq!(s.name, "GET /api");
        assert_eq!(s.kind, 2);
        assert_eq!(s.start_time_unix_nano, 1_700_000_000_123_456_789);
        assert_eq!(s.end_time_unix_nano, 1_700_000_000_123_461_789);
        assert_eq!(s.status.as_ref().unwrap().code, 2);
        assert_eq!(s.flags, 0x301);
        assert_eq!(s.attributes.len(), 2);
        assert_eq!(s.attributes[0].key, "url.path");
        use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
        assert_eq!(
            s.attributes[0].value.as_ref().unwrap().value,
            Some(V::StringValue(long.clone()))
        );
        assert_eq!(
            s.attributes[1].value.as_ref().unwrap().value,
            Some(V::IntValue(502))
        );
        let c = &ss.spans[1];
        assert_eq!((c.kind, c.status.is_none(), c.flags), (3, true, 0x101));
    }

    #[test]
    fn collector_headers_from_the_environment() {
        let env = |name: &str| {
            (name == "OTEL_EXPORTER_OTLP_HEADERS")
                .then(|| "api-key=a%20b, x-team = edge".to_owned())
        };
        let got = headers(&env).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1, "a b");
        assert_eq!(got[1].0, "x-team");
        let bad = |_: &str| Some("a=b,Authorization Bearer secret".to_owned());
        let err = headers(&bad).unwrap_err();
        assert!(!err.contains("secret") && err.contains("entry 2"), "{err}");
    }

    #[test]
    fn varint_lengths() {
        for v in [0u64, 1, 127, 128, 16383, 16384, u64::MAX] {
            let mut out = Vec::new();
            varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
        }
    }
}
