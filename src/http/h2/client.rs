//! The client's side of one HTTP/2 stream ([`H2Client`]): its request body as the
//! [`BodySource`] the upstream exchange reads (window given back to the client only as bytes go
//! upstream; at most the route's `max_body_bytes`; trailers without any field the gateway
//! manages), and the response written back as HTTP/2 frames (the [`Sink`] of the one relay:
//! data only as the client's window allows, trailers as they come). Also the gateway's own
//! answers as HTTP/2 ([`local_response`]).

use std::io;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::header::{HeaderValue, CONTENT_LENGTH};
use http::{HeaderMap, Response, StatusCode};

use crate::http::relay::Sink;
use crate::ops::access::{grpc_status_of, Decorations};
use crate::pipeline::response::{self, Plan};
use crate::pipeline::{FieldSink, HeaderPolicy, LocalResponse, MapSink};
use crate::upstream::{BodySource, Exchange, SourceError};
use crate::wire::ResponseHead;

/// One stream's client (see the module docs).
pub(super) struct H2Client<'p> {
    recv: RecvStream,
    /// Bytes received and not yet sent upstream (their window not yet given back).
    chunk: Bytes,
    limit: Option<u64>,
    received: u64,
    /// The body went over the route's limit (413).
    pub(super) exceeded: bool,
    policy: &'p HeaderPolicy,
    /// Where the response head goes.
    pub(super) respond: SendResponse<Bytes>,
    /// Where the response body goes, once the head went.
    pub(super) send: Option<SendStream<Bytes>>,
    /// The response's stream was ended (by its last data or the upstream's trailers).
    ended: bool,
    /// The `grpc-status` the trailers carried.
    pub(super) grpc_status: Option<u8>,
}

impl<'p> H2Client<'p> {
    pub(super) fn new(
        recv: RecvStream,
        limit: Option<u64>,
        policy: &'p HeaderPolicy,
        respond: SendResponse<Bytes>,
    ) -> H2Client<'p> {
        H2Client {
            recv,
            chunk: Bytes::new(),
            limit,
            received: 0,
            exceeded: false,
            policy,
            respond,
            send: None,
            ended: false,
            grpc_status: None,
        }
    }

    fn release(&mut self, n: usize) {
        let _ = self.recv.flow_control().release_capacity(n);
    }
}

impl BodySource for H2Client<'_> {
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<&[u8], SourceError>> {
        while self.chunk.is_empty() {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    self.received += data.len() as u64;
                    if self.limit.is_some_and(|limit| self.received > limit) {
                        self.exceeded = true;
                        return Poll::Ready(Err(SourceError::TooLarge));
                    }
                    self.chunk = data;
                }
                // The client reset its stream, or the connection failed.
                Some(Err(_)) => return Poll::Ready(Err(SourceError::Broken)),
                None => return Poll::Ready(Ok(&[])),
            }
        }
        Poll::Ready(Ok(&self.chunk))
    }

    fn consume(&mut self, n: usize) {
        self.chunk.advance(n);
        self.release(n);
    }

    fn take(&mut self, n: usize) -> Bytes {
        let bytes = self.chunk.split_to(n);
        self.release(n);
        bytes
    }

    fn at_end(&self) -> bool {
        // The stream's end came with its last DATA frame: nothing is pending behind it.
        self.chunk.is_empty() && self.recv.is_end_stream()
    }

    fn poll_trailers(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<HeaderMap>, SourceError>> {
        match ready!(self.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => {
                // Nothing the gateway manages: an identity header in a trailer would arrive
                // after the token was checked.
                let mut kept = HeaderMap::new();
                for (name, value) in &trailers {
                    if self.policy.trailer_passes(name.as_str()) {
                        kept.append(name.clone(), value.clone());
                    }
                }
                Poll::Ready(Ok(Some(kept)))
            }
            Ok(None) => Poll::Ready(Ok(None)),
            Err(_) => Poll::Ready(Err(SourceError::Broken)),
        }
    }

    fn poll_abandoned(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.respond.poll_reset(cx).map(|_| ())
    }
}

impl Sink for H2Client<'_> {
    fn poll_data(&mut self, cx: &mut Context<'_>, relay: &mut Exchange) -> Poll<io::Result<()>> {
        let Some(send) = &mut self.send else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        let want = relay.data().len();
        send.reserve_capacity(want);
        let capacity = loop {
            let capacity = send.capacity();
            if capacity > 0 {
                break capacity;
            }
            match ready!(send.poll_capacity(cx)) {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
                None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            }
        };
        let n = capacity.min(want);
        // The body's last bytes end the stream themselves (no empty frame after them).
        let end = n == want && relay.data_ends_body();
        let data = relay.take(n);
        send.send_data(data, end).map_err(io::Error::other)?;
        self.ended |= end;
        Poll::Ready(Ok(()))
    }

    fn trailers(&mut self, trailers: HeaderMap) -> io::Result<()> {
        self.grpc_status = grpc_status_of(&trailers);
        self.ended = true;
        match &mut self.send {
            Some(send) => send.send_trailers(trailers).map_err(io::Error::other),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn poll_end(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.ended {
            self.ended = true;
            if let Some(send) = &mut self.send {
                send.send_data(Bytes::new(), true)
                    .map_err(io::Error::other)?;
            }
        }
        Poll::Ready(Ok(()))
    }

    fn poll_flush(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The connection's task writes what the streams send.
        Poll::Ready(Ok(()))
    }

    fn poll_gone(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.send {
            Some(send) => send.poll_reset(cx).map(|_| ()),
            None => Poll::Pending,
        }
    }
}

/// The client's response head for the upstream's `head`, as `plan` says.
pub(super) fn response_head(
    head: &ResponseHead<'_, '_>,
    plan: &Plan,
    deco: &Decorations,
) -> Response<()> {
    let mut res = Response::new(());
    *res.status_mut() = StatusCode::from_u16(head.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut fields = MapSink::new(head.headers.len() + 2, head.map);
    response::write_fields(head.headers, plan, deco, &mut fields);
    *res.headers_mut() = fields.map;
    if let Some(n) = plan.length {
        res.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(n));
    }
    res
}

/// `local` as an HTTP/2 response head, and its body (none for `HEAD`: `head_only`; its length
/// stays).
pub fn local_response(
    local: &LocalResponse,
    head_only: bool,
    deco: &Decorations,
) -> (Response<()>, Bytes) {
    let mut res = Response::new(());
    *res.status_mut() =
        StatusCode::from_u16(local.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut fields = MapSink::new(local.fields.len() + deco.fields.len() + 2, None);
    for (name, value) in &local.fields {
        fields.field(
            name.as_bytes(),
            deco.value(local.status, name, value).as_bytes(),
        );
    }
    for (name, value) in &deco.fields {
        fields.typed(name, value);
    }
    if let Some((name, value)) = deco.request_id_field() {
        fields.field(name, value);
    }
    *res.headers_mut() = fields.map;
    if let Ok(date) = HeaderValue::from_bytes(&crate::wire::http_date()) {
        res.headers_mut().insert(http::header::DATE, date);
    }
    let full = deco.body(&local.body);
    res.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(full.len()));
    let body = match head_only {
        true => Bytes::new(),
        false => Bytes::copy_from_slice(&full),
    };
    (res, body)
}
