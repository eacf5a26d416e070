//! HTTP/2 (h2 by ALPN over TLS, h2c by prior knowledge), served by hyper. Each request is
//! decided by the same pipeline as HTTP/1 ([`super::decide`]), forwarded over the same upstream
//! pools, and answered through the same after-the-upstream path ([`response::plan`]); only the
//! rendering into hyper's types is HTTP/2's own. The response body streams back as the upstream
//! sends it.

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

use super::body::{Body, IncomingBody, UpstreamBody};
use super::{decide, pause, pause_for, Outcome};
use crate::config::ServerConfig;
use crate::net::Closing;
use crate::net::{Deadline, IdleIo};
use crate::ops::access::Record;
use crate::pipeline::response::{self, Asked, Plan};
use crate::pipeline::{ClientInfo, FieldSink, LocalResponse, Protocol, Rejection, RequestView};
use crate::runtime::Gateway;
use crate::upstream::h2::{H2Head, Progress};
use crate::upstream::RequestKind;
use crate::wire::{self, Framing, ResponseHead};

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
        _ if parts.headers.len() > rt.config.server.max_headers => Err(Rejection::HeadersTooLarge),
        _ if body.is_end_stream() => Ok(Framing::Empty),
        Ok(Some(n)) => Ok(Framing::length(n)),
        Ok(None) => Ok(Framing::Chunked),
        Err(e) => Err(e),
    };
    let fields = super::fields_of(&parts.headers);
    let method = parts.method.as_str();
    let body_framing = *framing.as_ref().unwrap_or(&Framing::Empty);
    let kind = RequestKind::new(method, body_framing);
    let mut out = Vec::with_capacity(1024);
    let outcome = match framing {
        Ok(framing) => {
            let view = RequestView {
                method,
                target: parts.uri.path_and_query().map_or("/", |pq| pq.as_str()),
                authority: parts.uri.authority().map(|a| a.as_str()),
                protocol: Protocol::Http2,
                headers: &fields,
                body: framing,
                client: &client,
            };
            let mut outcome = decide(&rt, &view, record, &mut out);
            let (mut waited, mut learned) = (false, false);
            while let Some(p) = pause_for(&rt, &outcome, &record.route, &mut waited, &mut learned) {
                if !pause(rt.clone(), p).await {
                    outcome = Outcome::Refuse(Rejection::UpstreamUnavailable);
                    break;
                }
                *record = Record::new(method);
                out.clear();
                outcome = decide(&rt, &view, record, &mut out);
            }
            outcome
        }
        Err(rejection) => Outcome::Refuse(rejection),
    };
    drop(fields);
    let route = match outcome {
        Outcome::Forward {
            route,
            h2: Some(head),
            ..
        } => return forward_h2(&mut guard, &gateway, &rt, route, *head, body).await,
        Outcome::Forward { route, .. } => route,
        Outcome::Answer(local) => return answer(&gateway, &local, guard.record.take(), kind.head),
        Outcome::Refuse(rejection) => {
            gateway.count_refusal(&rejection, record);
            let local = rejection.response_to(record.grpc);
            return answer(&gateway, &local, guard.record.take(), kind.head);
        }
    };
    let framing = body_framing;
    let origin = rt.origin(route).clone();
    let mut source = IncomingBody::new(body, route.max_body);
    let mut deadline = Deadline::new();
    let sent = Instant::now();
    // HTTP/2 requests never switch protocols: a 101 is the upstream's error (502).
    let asked = Asked {
        head: kind.head,
        upgrade: None,
    };
    let answer = origin
        .exchange(
            &mut deadline,
            &out,
            &mut source,
            framing,
            kind,
            sent,
            |head, framing| {
                let plan = response::plan(head, framing, asked)?;
                Ok(response_head(head, &plan))
            },
        )
        .await;
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) => {
            return match e.into_rejection(&route.name) {
                Some(rejection) => {
                    let grpc = guard.record.as_ref().is_some_and(|r| r.grpc);
                    self::answer(
                        &gateway,
                        &rejection.response_to(grpc),
                        guard.record.take(),
                        kind.head,
                    )
                }
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
    let reusable = answer.reusable();
    let upload = answer.upload.map(|u| (u, out, source));
    let body = UpstreamBody::new(answer.conn, origin, reusable, upload, idle, record);
    let mut res = answer.head;
    *res.body_mut() = Body::Upstream(Box::new(body));
    res
}

/// Forwards to an HTTP/2 upstream: the client's body and trailers go as they come, the
/// upstream's response head, body and trailers come back the same way.
async fn forward_h2(
    guard: &mut Unanswered<'_>,
    gateway_arc: &Arc<Gateway>,
    rt: &Arc<crate::runtime::Runtime>,
    route: &crate::policy::Route,
    head: H2Head,
    body: Incoming,
) -> Response<Body> {
    use http_body_util::BodyExt;
    let gateway = guard.gateway;
    let grpc = guard.record.as_ref().is_some_and(|r| r.grpc);
    let head_only = head.method == http::Method::HEAD;
    let replayable =
        RequestKind::new(head.method.as_str(), Framing::Empty).retryable && body.is_end_stream();
    let origin = rt.origin(route).clone();
    let exceeded = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let progress = Arc::new(Progress::now());
    let relayed = RequestBody {
        inner: body,
        left: route.max_body,
        exceeded: exceeded.clone(),
        progress: progress.clone(),
        rt: rt.clone(),
    };
    let sent = origin
        .exchange_h2(&head, relayed.boxed_unsync(), replayable, &progress)
        .await;
    let (res, call) = match sent {
        Ok(answer) => answer,
        Err(e) => {
            let rejection = match e {
                _ if exceeded.load(std::sync::atomic::Ordering::Acquire) => {
                    Some(Rejection::PayloadTooLarge)
                }
                e => e.into_rejection(&route.name),
            };
            return match rejection {
                Some(r) => answer(
                    gateway,
                    &r.response_to(grpc),
                    guard.record.take(),
                    head_only,
                ),
                // The client went away: the guard counts and logs it.
                None => Response::new(Body::empty()),
            };
        }
    };
    let (parts, body) = res.into_parts();
    let mut record = guard.record.take().expect("taken only here");
    record.upstream = Some(progress.sent().elapsed());
    record.status = parts.status.as_u16();
    // A Trailers-Only answer has its grpc-status in the head.
    record.grpc_status_from(&parts.headers);
    gateway.count(&record, record.status);
    let relay = super::body::Relay::new(body, call, gateway_arc.clone(), record);
    let mut out = Response::new(Body::Relay(Box::new(relay)));
    *out.status_mut() = parts.status;
    for (name, value) in &parts.headers {
        if !crate::pipeline::headers::is_hop_by_hop(name.as_str()) {
            out.headers_mut().append(name.clone(), value.clone());
        }
    }
    out
}

/// A client's request body on its way to an HTTP/2 upstream: at most the route's
/// `max_body_bytes` (beyond, an error that resets the upstream's stream, and a 413 when no
/// response has come), and trailers without any field the gateway manages (an identity header
/// in a trailer would arrive after the token was checked).
struct RequestBody {
    inner: Incoming,
    left: Option<u64>,
    exceeded: Arc<std::sync::atomic::AtomicBool>,
    progress: Arc<Progress>,
    rt: Arc<crate::runtime::Runtime>,
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync + 'static>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        this.progress.touch();
        let frame = match polled {
            None => return Poll::Ready(None),
            Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
            Some(Ok(frame)) => frame,
        };
        let frame = match frame.into_data() {
            Ok(data) => {
                if let Some(left) = &mut this.left {
                    match left.checked_sub(data.len() as u64) {
                        Some(l) => *left = l,
                        None => {
                            this.exceeded
                                .store(true, std::sync::atomic::Ordering::Release);
                            return Poll::Ready(Some(Err(
                                "request body over max_body_bytes".into()
                            )));
                        }
                    }
                }
                http_body::Frame::data(data)
            }
            Err(frame) => match frame.into_trailers() {
                Ok(trailers) => {
                    let policy = this.rt.pipeline().header_policy();
                    let mut kept = http::HeaderMap::new();
                    for (name, value) in &trailers {
                        if policy.trailer_passes(name.as_str()) {
                            kept.append(name.clone(), value.clone());
                        }
                    }
                    http_body::Frame::trailers(kept)
                }
                Err(_) => return Poll::Ready(None),
            },
        };
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

/// The gateway's own answer, counted and logged (without a body for `HEAD`).
fn answer(
    gateway: &Gateway,
    local: &LocalResponse,
    record: Option<Record>,
    head_only: bool,
) -> Response<Body> {
    let res = local_response(local, head_only);
    if let Some(mut record) = record {
        // A refusal in gRPC form is a 200 on the wire, counted as the refusal it is.
        record.status = local.reported;
        gateway.count(&record, record.status);
        if record.grpc {
            record.grpc_status_from(res.headers());
            gateway.count_grpc(&record, record.status);
        }
        record.log(0, true);
    }
    res
}

/// `local` as hyper's response; `head_only` (the answer to `HEAD`) leaves out the body, not its
/// length.
pub fn local_response(local: &LocalResponse, head_only: bool) -> Response<Body> {
    let mut res = Response::new(match head_only {
        true => Body::empty(),
        false => Body::full(Bytes::copy_from_slice(&local.body)),
    });
    *res.status_mut() =
        StatusCode::from_u16(local.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut fields = Fields(res.headers_mut());
    for (name, value) in &local.fields {
        fields.field(name.as_bytes(), value.as_bytes());
    }
    res.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(local.body.len()));
    res
}

/// `Content-Length`: `Ok(None)` when absent, an error when invalid or repeated.
fn declared_length(headers: &http::HeaderMap) -> Result<Option<u64>, Rejection> {
    let mut values = headers.get_all(CONTENT_LENGTH).iter();
    let Some(v) = values.next() else {
        return Ok(None);
    };
    match (wire::parse_length(v.as_bytes()), values.next()) {
        (Some(n), None) => Ok(Some(n)),
        _ => Err(Rejection::BadRequest("invalid Content-Length")),
    }
}

/// Puts fields into a header map (a field that is not valid in HTTP/2 is left out).
struct Fields<'h>(&'h mut http::HeaderMap);

impl FieldSink for Fields<'_> {
    fn begin(&mut self, _name: &[u8]) {
        // Every field here is given whole.
    }

    fn value(&mut self, _part: &[u8]) {}

    fn end(&mut self) {}

    fn field(&mut self, name: &[u8], value: &[u8]) {
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            self.0.append(name, value);
        }
    }
}

/// The client's response head as `plan` says (a `Response` with an empty body for now).
fn response_head(head: &ResponseHead<'_, '_>, plan: &Plan) -> Response<Body> {
    let mut res = Response::new(Body::empty());
    *res.status_mut() = StatusCode::from_u16(head.status).unwrap_or(StatusCode::BAD_GATEWAY);
    response::write_fields(head.headers, plan, &mut Fields(res.headers_mut()));
    if let Some(n) = plan.length {
        res.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(n));
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
