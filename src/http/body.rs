//! The one body type the gateway answers HTTP/2 and the admin listener with: a small body the
//! gateway wrote itself, or a response body streamed from the upstream as it arrives (never
//! buffered whole). An enum rather than a boxed trait object.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

use crate::net::Deadline;
use crate::ops::access::Record;
use crate::runtime::Gateway;
use crate::upstream::h2::Call;
use crate::upstream::{BodySource, Conn, Origin, SourceError, Upload};

/// A response body.
#[derive(Debug)]
pub enum Body {
    /// A body the gateway wrote (error JSON, probes, the demo); `None` once sent.
    Full(Option<Bytes>),
    /// A body streamed from the upstream.
    Upstream(Box<UpstreamBody>),
    /// A body (and trailers) from an HTTP/2 upstream, passed on as it comes.
    Relay(Box<Relay>),
}

/// An HTTP/2 upstream's response body on its way to the client. For a gRPC call, an upstream
/// lost before the trailers ends the call with `grpc-status: 14` (UNAVAILABLE) trailers rather
/// than a reset stream, so the client sees a precise error.
#[derive(Debug)]
pub struct Relay {
    inner: hyper::body::Incoming,
    grpc: bool,
    ended: bool,
    /// The call's place on its upstream connection, freed when the body ends.
    call: Option<Call>,
    /// The gateway and the request's record: the access log line (and a gRPC call's count,
    /// with its `grpc-status`) are written when the body ends.
    done: Option<(Arc<Gateway>, Record)>,
    bytes: u64,
}

impl Relay {
    /// Relays `inner`, the body of `call`, logged in `record` when it ends.
    pub fn new(
        inner: hyper::body::Incoming,
        call: Call,
        gateway: Arc<Gateway>,
        record: Record,
    ) -> Relay {
        Relay {
            inner,
            grpc: record.grpc,
            ended: false,
            call: Some(call),
            done: Some((gateway, record)),
            bytes: 0,
        }
    }

    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match std::task::ready!(http_body::Body::poll_frame(Pin::new(&mut self.inner), cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
                if let Some(trailers) = frame.trailers_ref() {
                    if let Some((_, record)) = &mut self.done {
                        record.grpc_status_from(trailers);
                    }
                    self.end(true);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) if self.grpc => {
                tracing::warn!(error = %e, "HTTP/2 upstream lost mid-call; ending it with grpc-status 14");
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", http::HeaderValue::from_static("14"));
                trailers.insert(
                    "grpc-message",
                    http::HeaderValue::from_static("upstream unavailable"),
                );
                if let Some((_, record)) = &mut self.done {
                    record.grpc_status_from(&trailers);
                }
                self.end(false);
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
            Some(Err(e)) => {
                self.end(false);
                Poll::Ready(Some(Err(io::Error::other(e))))
            }
            None => {
                self.end(true);
                Poll::Ready(None)
            }
        }
    }

    /// The body ended (`complete`: all of it went out): frees the call, counts and logs.
    fn end(&mut self, complete: bool) {
        self.ended = true;
        self.call = None;
        if let Some((gateway, record)) = self.done.take() {
            gateway.count_grpc(&record, record.status);
            record.log(self.bytes, complete);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // A body hyper never polled (it was empty), or one the client reset.
        let complete = http_body::Body::is_end_stream(&self.inner);
        self.end(complete);
    }
}

impl Body {
    /// A body of these bytes.
    pub fn full(bytes: impl Into<Bytes>) -> Body {
        let b = bytes.into();
        Body::Full(if b.is_empty() { None } else { Some(b) })
    }

    /// An empty body.
    pub fn empty() -> Body {
        Body::Full(None)
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Upstream(b) => b.poll_data(cx).map(|r| r.map(|d| d.map(Frame::data))),
            Body::Relay(b) => b.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(b) => b.is_none(),
            Body::Upstream(b) => b.is_done(),
            Body::Relay(b) => b.ended || http_body::Body::is_end_stream(&b.inner),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Upstream(_) => SizeHint::default(),
            Body::Relay(b) => http_body::Body::size_hint(&b.inner),
        }
    }
}

/// A response body read from an upstream connection. When it ends, the connection goes back to
/// its pool (if it can carry another request) and the access log line is written; an upstream
/// silent for `idle_timeout` mid-body ends it with an error.
#[derive(Debug)]
pub struct UpstreamBody {
    conn: Option<Conn>,
    origin: Arc<Origin>,
    reusable: bool,
    /// The rest of a request body the upstream answered early: it goes on being sent while the
    /// response streams (with the request head it follows).
    upload: Option<(Upload, Vec<u8>, IncomingBody)>,
    idle: Duration,
    deadline: Option<Deadline>,
    record: Option<Record>,
    bytes: u64,
}

impl UpstreamBody {
    /// The body on `conn`, from `origin`; `record` is logged when it ends.
    pub fn new(
        conn: Conn,
        origin: Arc<Origin>,
        reusable: bool,
        upload: Option<(Upload, Vec<u8>, IncomingBody)>,
        idle: Duration,
        record: Record,
    ) -> UpstreamBody {
        UpstreamBody {
            conn: Some(conn),
            origin,
            reusable,
            upload,
            idle,
            deadline: None,
            record: Some(record),
            bytes: 0,
        }
    }

    /// True once the whole body was read.
    pub fn is_done(&self) -> bool {
        self.conn.as_ref().is_none_or(Conn::body_done)
    }

    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, io::Error>>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(None);
        };
        if let Some((upload, head, source)) = &mut self.upload {
            match conn.poll_upload(cx, upload, head, source) {
                Poll::Ready(Ok(())) => self.upload = None,
                // The upstream stopped taking the body: the response still comes; the
                // connection is not reused.
                Poll::Ready(Err(_)) => upload.stop(),
                Poll::Pending => {}
            }
        }
        match conn.poll_body(cx) {
            Poll::Ready(Ok([])) => Poll::Ready(None),
            Poll::Ready(Ok(data)) => {
                let bytes = Bytes::copy_from_slice(data);
                conn.consume(bytes.len());
                self.bytes += bytes.len() as u64;
                if let Some(d) = &mut self.deadline {
                    d.disarm();
                }
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(Err(e)) => {
                self.conn = None;
                Poll::Ready(Some(Err(io::Error::other(e.to_string()))))
            }
            Poll::Pending => {
                let deadline = self.deadline.get_or_insert_with(Deadline::new);
                deadline.arm_after(self.idle);
                match deadline.poll_expired(cx) {
                    Poll::Ready(()) => {
                        self.conn = None;
                        Poll::Ready(Some(Err(io::ErrorKind::TimedOut.into())))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        let complete = self.conn.as_ref().is_some_and(Conn::body_done);
        if let Some(record) = self.record.take() {
            record.log(self.bytes, complete);
        }
        if let Some(conn) = self.conn.take() {
            if complete && self.reusable {
                self.origin.release(conn);
            }
        }
    }
}

/// An HTTP/2 client's request body (hyper's stream of DATA frames) as a [`BodySource`],
/// counted against the route's `max_body_bytes`.
#[derive(Debug)]
pub struct IncomingBody {
    body: Incoming,
    chunk: Bytes,
    limit: Option<u64>,
    received: u64,
    done: bool,
}

impl IncomingBody {
    /// `body`, limited to `limit` bytes.
    pub fn new(body: Incoming, limit: Option<u64>) -> IncomingBody {
        IncomingBody {
            body,
            chunk: Bytes::new(),
            limit,
            received: 0,
            done: false,
        }
    }
}

impl BodySource for IncomingBody {
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<&[u8], SourceError>> {
        loop {
            if !self.chunk.is_empty() || self.done {
                return Poll::Ready(Ok(&self.chunk));
            }
            match http_body::Body::poll_frame(Pin::new(&mut self.body), cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers are not forwarded.
                    if let Ok(data) = frame.into_data() {
                        self.received += data.len() as u64;
                        if self.limit.is_some_and(|limit| self.received > limit) {
                            return Poll::Ready(Err(SourceError::TooLarge));
                        }
                        self.chunk = data;
                    }
                }
                Poll::Ready(Some(Err(_))) => {
                    return Poll::Ready(Err(SourceError::Malformed("request body failed")))
                }
                Poll::Ready(None) => self.done = true,
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn consume(&mut self, n: usize) {
        self.chunk.advance(n);
    }
}
