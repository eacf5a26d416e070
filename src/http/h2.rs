//! HTTP/2 (h2 by ALPN over TLS, h2c by prior knowledge), served by hyper. Each request runs the
//! same pipeline as HTTP/1 (`gateway.rs`) and is forwarded over the same upstream pools
//! (`proxy.rs`) as HTTP/1.1; the response body streams back as the upstream sends it.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH};
use http::{Request, Response, StatusCode};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::config::ServerConfig;
use crate::http::body::{Body, IncomingBody, UpstreamBody};
use crate::net::{Deadline, IdleIo};
use crate::pipeline::headers::{self, ClientInfo};
use crate::pipeline::rejection::GatewayError;
use crate::pipeline::{Gateway, Inbound, Protocol, Record};
use crate::server::Closing;
use crate::upstream::RequestKind;
use crate::wire::{self, Framing, Header, ResponseFraming, ResponseHead};

/// hyper's HTTP/2 connection builder, set up once per listener.
pub type Builder = hyper::server::conn::http2::Builder<TokioExecutor>;

/// The HTTP/2 settings for `server`.
pub fn builder(server: &ServerConfig) -> Builder {
    let mut b = Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .max_concurrent_streams(256)
        // No server-initiated keep-alive pings: they would count as activity and keep idle
        // connections open past idle_timeout.
        .max_header_list_size(u32::try_from(server.max_header_bytes).unwrap_or(u32::MAX));
    b
}

/// Serves one HTTP/2 connection until it closes; a drain sends GOAWAY and lets open streams
/// finish.
pub async fn serve<I>(
    io: I,
    gateway: Arc<Gateway>,
    client: ClientInfo,
    closing: Arc<Closing>,
    builder: &Builder,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let idle = gateway.current().config.server.idle_timeout;
    let service = service_fn(move |req| {
        let gw = gateway.clone();
        let client = client.clone();
        Box::pin(async move { Ok::<_, Infallible>(handle(gw, req, client).await) })
    });
    let conn = builder.serve_connection(TokioIo::new(IdleIo::new(io, idle)), service);
    tokio::pin!(conn);
    let drain = closing.notified();
    tokio::pin!(drain);
    let result = if closing.is_set() {
        conn.as_mut().graceful_shutdown();
        conn.await
    } else {
        tokio::select! {
            r = conn.as_mut() => r,
            () = &mut drain => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "HTTP/2 connection ended with an error");
    }
}

/// Counts and logs a request whose handler was dropped before it answered (the client reset
/// the stream or went away): 499.
struct Unanswered<'a> {
    gateway: &'a Gateway,
    record: Option<Record>,
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if let Some(record) = self.record.take() {
            self.gateway.count(&record, 499);
            record.log(0, false);
        }
    }
}

async fn handle(
    gateway: Arc<Gateway>,
    req: Request<Incoming>,
    client: ClientInfo,
) -> Response<Body> {
    let rt = gateway.current();
    let (parts, body) = req.into_parts();
    let mut guard = Unanswered {
        gateway: &gateway,
        record: Some(Record::new(parts.method.as_str())),
    };
    let record = guard.record.as_mut().expect("set just above");
    let framing = match declared_length(&parts.headers) {
        _ if parts.headers.len() > rt.config.server.max_headers => {
            Err(GatewayError::HeadersTooLarge)
        }
        _ if body.is_end_stream() => Ok(Framing::Empty),
        Ok(Some(n)) => Ok(Framing::length(n)),
        Ok(None) => Ok(Framing::Chunked),
        Err(e) => Err(e),
    };
    let fields: Vec<Header<'_>> = parts
        .headers
        .iter()
        .map(|(name, value)| Header {
            name: name.as_str(),
            value: value.as_bytes(),
        })
        .collect();
    let method = parts.method.as_str();
    let kind = RequestKind::new(method, *framing.as_ref().unwrap_or(&Framing::Empty));
    let mut out = Vec::with_capacity(1024);
    let prepared = framing.and_then(|framing| {
        let inbound = Inbound {
            method,
            target: parts.uri.path_and_query().map_or("/", |pq| pq.as_str()),
            authority: parts.uri.authority().map(|a| a.as_str()),
            protocol: Protocol::Http2,
            headers: &fields,
            body: framing,
        };
        rt.prepare(&inbound, &client, &mut out, record)
            .map(|forward| (forward, framing))
    });
    drop(fields);
    let (forward, framing) = match prepared {
        Ok(p) => p,
        Err(e) => {
            gateway.count_refusal(&e, record);
            return refuse(&gateway, e, guard.record.take(), kind.head);
        }
    };
    let origin = rt.origin(forward.route).clone();
    let mut source = IncomingBody::new(body, forward.route.max_body);
    let mut deadline = Deadline::new();
    let sent = Instant::now();
    let answer = origin
        .exchange(
            &mut deadline,
            &out,
            &mut source,
            framing,
            kind,
            sent,
            |head, framing| response_head(head, framing, kind),
        )
        .await;
    let answer = match answer {
        Ok(a) if a.status == 101 => {
            tracing::warn!(route = %forward.route.name, "upstream answered 101 to an HTTP/2 request");
            Err(crate::upstream::ProxyError::Protocol("unexpected 101"))
        }
        other => other,
    };
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) => {
            return match e.into_gateway_error(&forward.route.name) {
                Some(error) => refuse(&gateway, error, guard.record.take(), kind.head),
                // The client went away: the guard counts and logs it.
                None => Response::new(Body::empty()),
            };
        }
    };
    let mut record = guard.record.take().expect("taken only here");
    record.upstream = Some(sent.elapsed());
    record.status = answer.status;
    gateway.count(&record, answer.status);
    let idle = rt.config.server.idle_timeout;
    // An upstream that answered before it had the whole body may not have read it: never reused.
    let reusable = answer.framing.reusable && answer.upload.is_none();
    let upload = answer.upload.map(|u| (u, out, source));
    let body = UpstreamBody::new(answer.conn, origin, reusable, upload, idle, record);
    let mut res = answer.head;
    *res.body_mut() = Body::Upstream(Box::new(body));
    res
}

/// The response for a refused request, counted and logged (without a body for `HEAD`).
fn refuse(
    gateway: &Gateway,
    error: GatewayError,
    record: Option<Record>,
    head: bool,
) -> Response<Body> {
    let res = error.into_response(head);
    if let Some(mut record) = record {
        record.status = res.status().as_u16();
        gateway.count(&record, record.status);
        record.log(0, true);
    }
    res
}

/// `Content-Length`: `Ok(None)` when absent, an error when invalid or repeated.
fn declared_length(headers: &http::HeaderMap) -> Result<Option<u64>, GatewayError> {
    let mut values = headers.get_all(CONTENT_LENGTH).iter();
    let Some(v) = values.next() else {
        return Ok(None);
    };
    match (wire::parse_length(v.as_bytes()), values.next()) {
        (Some(n), None) => Ok(Some(n)),
        _ => Err(GatewayError::BadRequest("invalid Content-Length")),
    }
}

/// The client's response head (a `Response` with an empty body for now).
fn response_head(
    head: &ResponseHead<'_, '_>,
    framing: &ResponseFraming,
    kind: RequestKind,
) -> Response<Body> {
    let mut res = Response::new(Body::empty());
    *res.status_mut() = StatusCode::from_u16(head.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let h = res.headers_mut();
    for f in headers::response_fields(head.headers, false) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(f.name.as_bytes()),
            HeaderValue::from_bytes(f.value),
        ) {
            h.append(name, value);
        }
    }
    let length = match framing.framing {
        Framing::Length(n) => Some(n),
        Framing::Empty if kind.head || head.status == 304 => framing.declared,
        _ => None,
    };
    if let Some(n) = length {
        h.insert(CONTENT_LENGTH, HeaderValue::from(n));
    }
    res
}

/// Bytes already read (the preface sniffed on a plain connection), then the connection.
#[derive(Debug)]
pub struct Rewind<T> {
    read: Bytes,
    inner: T,
}

impl<T> Rewind<T> {
    /// `inner`, with `read` put back in front of it.
    pub fn new(read: Vec<u8>, inner: T) -> Rewind<T> {
        Rewind {
            read: Bytes::from(read),
            inner,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.read.is_empty() {
            let n = self.read.len().min(buf.remaining());
            buf.put_slice(&self.read[..n]);
            self.read.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
