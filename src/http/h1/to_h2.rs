//! An HTTP/1.x client's request to an HTTP/2 upstream (`h2c://`, or `https://` that picked
//! `h2`): the request body is decoded from its framing and sent as DATA frames as it comes,
//! the response head is rewritten for the client by the same rules as an HTTP/1.1 upstream's
//! ([`response::plan`], [`render::response_head`]), and the body streams back, re-chunked when
//! the upstream gave no length. An HTTP/1.x client gets no trailers: the upstream's are dropped
//! (as Envoy and nginx's `proxy_pass` do), so a gRPC status reaches only HTTP/2 clients.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body as _, Frame};
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;
use tracing::debug;

use super::body::ClientBody;
use super::render::{self, ClientFraming};
use super::{write_all, Connection, Next, Request, Transport};
use crate::net::buffers;
use crate::pipeline::response::{self, Asked};
use crate::runtime::Runtime;
use crate::upstream::h2::{empty_body, H2Head, Progress};
use crate::upstream::{BodySource, ProxyError, SourceError};
use crate::wire::{self, Framing, ResponseFraming, ResponseHead, Version};

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A frame of the request body on its way to the upstream's stream.
type Item = Result<Frame<Bytes>, BoxError>;

/// The request body hyper sends upstream: what [`Pump`] puts in.
struct Channel(mpsc::Receiver<Item>);

impl http_body::Body for Channel {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        self.get_mut().0.poll_recv(cx)
    }
}

/// Moves the client's body into the [`Channel`], no faster than the upstream takes it.
struct Pump {
    tx: PollSender<Item>,
    /// Body bytes went up since the last look (a long upload keeps the relay's deadline off).
    moved: bool,
}

impl Pump {
    /// Ready when the whole body is in the channel (or the upstream's stream is gone: nothing
    /// more is wanted), or with the client's error (the stream is reset).
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        source: &mut impl BodySource,
        progress: &Progress,
    ) -> Poll<Result<(), SourceError>> {
        loop {
            if ready!(self.tx.poll_reserve(cx)).is_err() {
                return Poll::Ready(Ok(()));
            }
            let data = match ready!(source.poll_fill(cx)) {
                Ok(data) => data,
                Err(e) => {
                    let _ = self
                        .tx
                        .send_item(Err(format!("request body: {e:?}").into()));
                    return Poll::Ready(Err(e));
                }
            };
            progress.touch();
            if data.is_empty() {
                self.tx.abort_send();
                self.tx.close();
                return Poll::Ready(Ok(()));
            }
            let chunk = Bytes::copy_from_slice(data);
            source.consume(chunk.len());
            self.moved = true;
            if self.tx.send_item(Ok(Frame::data(chunk))).is_err() {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<T: Transport> Connection<T> {
    /// Forwards a request to an HTTP/2 upstream (see the module docs).
    pub(super) async fn forward_h2(
        &mut self,
        rt: &Runtime,
        req: Request<'_>,
        head: H2Head,
    ) -> Next {
        let server = &rt.config.server;
        let mut source = ClientBody::new(
            &mut self.io,
            &mut self.input,
            &mut self.client_deadline,
            &req,
            server,
        );
        let Request {
            route,
            mut record,
            framing,
            version,
            keep_alive,
            kind,
            ..
        } = req;
        let idle = server.idle_timeout;
        let origin = rt.origin(route).clone();
        let progress = Progress::now();
        let (body, mut pump) = match framing {
            Framing::Empty => (empty_body(), None),
            _ => {
                let (tx, rx) = mpsc::channel(2);
                let pump = Pump {
                    tx: PollSender::new(tx),
                    moved: false,
                };
                (Channel(rx).boxed_unsync(), Some(pump))
            }
        };
        let mut exchange = pin!(origin.exchange_h2(&head, body, kind.retryable, &progress));
        let answer = poll_fn(|cx| {
            if let Some(p) = &mut pump {
                match p.poll(cx, &mut source, &progress) {
                    Poll::Ready(Ok(())) => pump = None,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(ProxyError::Client(e))),
                    Poll::Pending => {}
                }
            }
            if let Poll::Ready(r) = exchange.as_mut().poll(cx) {
                return Poll::Ready(r);
            }
            if pump.is_none() && source.poll_abandoned(cx).is_ready() {
                return Poll::Ready(Err(ProxyError::Abandoned));
            }
            Poll::Pending
        })
        .await;
        // No `100 Continue` after the final response; the rest of one begun goes out first.
        let continue_rest = source.end_continue();
        source.deadline.disarm();
        let (res, call) = match answer {
            Ok(answer) => answer,
            Err(e) => {
                let body_read = source.is_done();
                if write_all(&mut self.io, continue_rest, &mut self.client_deadline, idle)
                    .await
                    .is_err()
                {
                    return Next::Close;
                }
                let reusable = keep_alive && body_read;
                return Box::pin(self.forward_failed(e, record, route, kind, reusable)).await;
            }
        };
        let (parts, mut body) = res.into_parts();
        let status = parts.status.as_u16();
        let fields = super::super::fields_of(&parts.headers);
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| wire::parse_length(v.as_bytes()));
        let framing = ResponseFraming {
            framing: match declared {
                _ if kind.head || status == 204 || status == 304 => Framing::Empty,
                Some(n) => Framing::length(n),
                None if body.is_end_stream() => Framing::Empty,
                None => Framing::Chunked,
            },
            reusable: true,
            declared,
        };
        let head = ResponseHead {
            version: Version::Http11,
            status,
            reason: parts.status.canonical_reason().unwrap_or(""),
            headers: &fields,
            len: 0,
        };
        let asked = Asked {
            head: kind.head,
            upgrade: None,
        };
        // An HTTP/2 response has no `101`, the one status `plan` refuses.
        let Ok(plan) = response::plan(&head, &framing, asked) else {
            let e = ProxyError::Protocol("unexpected response from the HTTP/2 upstream");
            return Box::pin(self.forward_failed(e, record, route, kind, false)).await;
        };
        let mut reply = buffers::take_out();
        reply.extend_from_slice(continue_rest);
        let client_framing = render::response_head(&mut reply, &head, &plan, version);
        drop(fields);
        record.upstream = Some(progress.sent().elapsed());
        record.status = status;
        self.gateway.count(&record, status);
        // The whole body read, not the pump ended: it also ends when the upstream stops taking
        // the body.
        let keep = super::finish_head(
            &mut reply,
            keep_alive && source.is_done() && !self.closing.is_set(),
            client_framing,
            version,
        );

        // The body (trailers are dropped), while the rest of the request body goes up.
        let chunked = client_framing == ClientFraming::Chunked;
        let mut finished = !matches!(
            plan.body,
            response::Body::Length(_) | response::Body::Stream
        );
        let (mut bytes, mut pos, mut upload_failed) = (0u64, 0usize, false);
        let deadline = &mut self.upstream_deadline;
        let relayed = poll_fn(|cx| loop {
            if let Some(p) = &mut pump {
                let polled = p.poll(cx, &mut source, &progress);
                if std::mem::take(&mut p.moved) {
                    deadline.disarm();
                }
                if let Poll::Ready(r) = polled {
                    upload_failed = r.is_err();
                    pump = None;
                }
            }
            let io = Pin::new(&mut *source.io);
            let written = match pos < reply.len() {
                true => io.poll_write(cx, &reply[pos..]),
                false if finished => return io.poll_flush(cx).map(|r| r.map(|()| true)),
                false => Poll::Ready(Ok(0)),
            };
            match written {
                Poll::Ready(Ok(0)) if pos < reply.len() => {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()))
                }
                Poll::Ready(Ok(n)) if n > 0 => {
                    pos += n;
                    deadline.disarm();
                    continue;
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return stalled(cx, deadline, idle),
            }
            reply.clear();
            pos = 0;
            match Pin::new(&mut body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    deadline.disarm();
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            bytes += data.len() as u64;
                            if chunked {
                                wire::push_chunk(&mut reply, &data);
                            } else {
                                reply.extend_from_slice(&data);
                            }
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(io::Error::other(e))),
                Poll::Ready(None) => {
                    if chunked {
                        reply.extend_from_slice(wire::LAST_CHUNK);
                    }
                    finished = true;
                }
                Poll::Pending => {
                    // Written bytes go out while the upstream is quiet.
                    if let Poll::Ready(Err(e)) = Pin::new(&mut *source.io).poll_flush(cx) {
                        return Poll::Ready(Err(e));
                    }
                    return stalled(cx, deadline, idle);
                }
            }
        })
        .await;
        self.upstream_deadline.disarm();
        buffers::give_out(reply);
        drop(body);
        drop(call);
        let complete = relayed.is_ok();
        if let Err(e) = &relayed {
            debug!(route = %route.name, error = %e, "response body not completed");
        }
        record.log(bytes, complete);
        match () {
            _ if !complete => Next::Close,
            // The upstream answered without taking the whole body: the rest is unread.
            _ if !source.is_done() || upload_failed => Next::Linger,
            _ if keep => Next::KeepAlive,
            _ => Next::Close,
        }
    }
}

/// Nothing moved: pending until `idle` passes without progress, then a timeout.
fn stalled(
    cx: &mut Context<'_>,
    deadline: &mut crate::net::Deadline,
    idle: std::time::Duration,
) -> Poll<io::Result<bool>> {
    deadline.arm_after(idle);
    ready!(deadline.poll_expired(cx));
    Poll::Ready(Err(io::ErrorKind::TimedOut.into()))
}
