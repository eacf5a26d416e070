//! One call to an HTTP/2 upstream ([`Origin::exchange_h2`]): the head sent on a place the pool
//! gave, the body sent as the upstream's flow control allows ([`H2Upload`]: nothing is sent
//! past the window the upstream granted, so nothing piles up in the gateway), and the response
//! head awaited within `upstream_timeout` of the body's last progress.
//!
//! A request the upstream did not process (the connection was closing before it went out, a
//! GOAWAY that excluded its stream, `REFUSED_STREAM`) goes to another connection, its body sent
//! again from the copy kept of its start ([`Replay`]). A request without a body and with an
//! idempotent method that failed after it may have been processed is sent once more.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use h2::client::ResponseFuture;
use h2::{RecvStream, SendStream};
use tokio::time::Instant;
use tracing::debug;

use super::replay::{Kept, Replay};
use super::H2Way;
use super::{unprocessed, UNSENT_TRIES};
use crate::net::Deadline;
use crate::upstream::Uploading;
use crate::upstream::{BodySource, Origin, ProxyError, Sending};
use crate::wire::{self, Framing, ResponseFraming, ResponseHead, Version};

/// Why waiting for the response failed.
enum Failed {
    /// The stream or connection failed (maybe unprocessed: see [`unprocessed`]).
    Stream(h2::Error),
    /// Anything else (the client's body, a timeout, the client gone).
    Proxy(ProxyError),
}

impl Origin {
    /// Sends a request on `way`'s call (its head, then the body) and waits for the response
    /// head (see [`Sending`]); the response body and the rest of the upload stay in `way`. See
    /// the module docs for what is sent again.
    pub(crate) async fn exchange_h2<S: BodySource, R, F>(
        &self,
        way: &mut H2Way,
        sending: Sending<'_, S, F>,
    ) -> Result<(R, u16), ProxyError>
    where
        F: FnMut(&ResponseHead<'_, '_>, &ResponseFraming) -> Result<R, &'static str>,
    {
        let Sending {
            deadline,
            body,
            framing,
            kind: request,
            sent,
            mut on_head,
        } = sending;
        let has_body = framing != Framing::Empty;
        let mut replay = Some(Replay::new(&self.budget));
        let (mut first, mut unsent, mut resent) = (true, 0, false);
        loop {
            if !std::mem::take(&mut first) {
                // Each connection gets the whole connect budget (a refusal may come late).
                way.call = Box::pin(self.h2_call(Instant::now() + self.connect_timeout)).await?;
            }
            let mut send = way.call.conn.send.clone();
            let opened = match poll_fn(|cx| send.poll_ready(cx)).await {
                Ok(()) => send.send_request(way.head.request(), !has_body),
                Err(e) => Err(e),
            };
            let (response, stream) = match opened {
                Ok(opened) => opened,
                Err(e) => {
                    // Not sent: the connection is closing or gone.
                    way.call.conn.retired.store(true, Ordering::Release);
                    unsent += 1;
                    if unsent >= UNSENT_TRIES {
                        return Err(ProxyError::Closed(io::Error::other(
                            "every HTTP/2 connection to the upstream was closing",
                        )));
                    }
                    debug!(upstream = %self.addr, error = %e, "HTTP/2 request not sent; trying another connection");
                    continue;
                }
            };
            let mut upload = has_body.then(|| {
                let replay = replay.take().unwrap_or_else(|| Replay::new(&self.budget));
                H2Upload::new(stream, replay)
            });
            let answered = self
                .wait_head(response, &mut upload, body, deadline, sent)
                .await;
            let e = match answered {
                Ok(res) => {
                    if let Some(u) = &mut upload {
                        u.stop_keeping();
                    }
                    let (parts, recv) = res.into_parts();
                    let status = parts.status.as_u16();
                    let fields = wire::fields_of(&parts.headers);
                    let declared = parts
                        .headers
                        .get(http::header::CONTENT_LENGTH)
                        .and_then(|v| wire::parse_length(v.as_bytes()));
                    let framing = ResponseFraming {
                        framing: match declared {
                            _ if request.head || status == 204 || status == 304 => Framing::Empty,
                            Some(n) => Framing::length(n),
                            None if recv.is_end_stream() => Framing::Empty,
                            None => Framing::Chunked,
                        },
                        reusable: true,
                        declared,
                    };
                    let response_head = ResponseHead {
                        version: Version::Http11,
                        status,
                        reason: parts.status.canonical_reason().unwrap_or(""),
                        headers: &fields,
                        map: Some(&parts.headers),
                        len: 0,
                    };
                    let head = on_head(&response_head, &framing).map_err(ProxyError::Protocol)?;
                    way.recv = Some(recv);
                    way.upload = match upload {
                        Some(u) if !u.done => Uploading::Sending(u),
                        _ => Uploading::Done,
                    };
                    return Ok((head, status));
                }
                Err(Failed::Proxy(e)) => return Err(e),
                Err(Failed::Stream(e)) => e,
            };
            let replayable_body = upload.as_ref().is_none_or(|u| u.replay.replayable());
            if unprocessed(&e) {
                // The upstream refused the stream, or is going away: another connection.
                way.call.conn.retired.store(true, Ordering::Release);
                if replayable_body {
                    debug!(upstream = %self.addr, error = %e, "HTTP/2 request not processed; sending it on another connection");
                    replay = upload.map(H2Upload::into_replay);
                    continue;
                }
            }
            if request.retryable && !resent {
                debug!(upstream = %self.addr, error = %e, "HTTP/2 request failed; sending it once more");
                resent = true;
                continue;
            }
            return Err(ProxyError::Closed(io::Error::other(e)));
        }
    }

    /// Sends the body while waiting for the response head, within `upstream_timeout` of the
    /// body's last progress (from `sent` without a body).
    async fn wait_head<S: BodySource>(
        &self,
        mut response: ResponseFuture,
        upload: &mut Option<H2Upload>,
        body: &mut S,
        deadline: &mut Deadline,
        sent: Instant,
    ) -> Result<http::Response<RecvStream>, Failed> {
        let timeout = self.upstream_timeout;
        deadline.disarm();
        let mut progress = 0;
        poll_fn(|cx| {
            if let Some(u) = upload.as_mut().filter(|u| !u.done) {
                let polled = u.poll(cx, body);
                if u.sent != progress {
                    // The upstream took bytes: its upstream_timeout starts again.
                    progress = u.sent;
                    deadline.disarm();
                }
                match polled {
                    Poll::Ready(Ok(())) => {
                        deadline.disarm();
                        // upstream_timeout runs from the end of the body.
                        deadline.arm_after(timeout);
                    }
                    Poll::Ready(Err(UploadError::Proxy(e))) => {
                        return Poll::Ready(Err(Failed::Proxy(e)));
                    }
                    Poll::Ready(Err(e)) => {
                        // An upstream that answered may reset the rest of the upload (RFC 9113
                        // §8.1: `RST_STREAM` with `NO_ERROR` after a complete response): its
                        // answer stands; the upload stays unfinished.
                        if let Poll::Ready(Ok(res)) = Pin::new(&mut response).poll(cx) {
                            return Poll::Ready(Ok(res));
                        }
                        return Poll::Ready(Err(match e {
                            UploadError::Stream(e) => Failed::Stream(e),
                            _ => Failed::Proxy(ProxyError::from(e)),
                        }));
                    }
                    Poll::Pending if u.blocked => deadline.arm_after(timeout),
                    // Waiting for the client: not the upstream's time.
                    Poll::Pending => deadline.disarm(),
                }
            }
            if let Poll::Ready(r) = Pin::new(&mut response).poll(cx) {
                return Poll::Ready(r.map_err(Failed::Stream));
            }
            if upload.as_ref().is_none_or(|u| u.done) {
                if body.poll_abandoned(cx).is_ready() {
                    return Poll::Ready(Err(Failed::Proxy(ProxyError::Abandoned)));
                }
                if !deadline.is_armed() {
                    // No body: upstream_timeout runs from when the request was forwarded.
                    deadline.arm(sent + timeout);
                }
            }
            match deadline.poll_expired(cx) {
                Poll::Ready(()) => Poll::Ready(Err(Failed::Proxy(ProxyError::Timeout))),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }
}

/// Why sending the body failed.
pub(crate) enum UploadError {
    /// The stream or connection failed.
    Stream(h2::Error),
    /// The upstream closed the stream.
    Closed,
    /// The client's body failed.
    Proxy(ProxyError),
}

impl From<UploadError> for ProxyError {
    fn from(e: UploadError) -> ProxyError {
        match e {
            UploadError::Stream(e) => ProxyError::Closed(io::Error::other(e)),
            UploadError::Closed => {
                ProxyError::Closed(io::Error::other("the upstream closed the stream"))
            }
            UploadError::Proxy(e) => e,
        }
    }
}

/// A request body going up an HTTP/2 stream as its flow control allows, sending again first
/// what a [`Replay`] kept of it.
#[derive(Debug)]
pub(crate) struct H2Upload {
    stream: SendStream<Bytes>,
    replay: Replay,
    /// The next kept piece to send again, and how much of it went.
    at: usize,
    offset: usize,
    /// All of it went, the end of the stream included.
    pub(crate) done: bool,
    /// Body bytes sent.
    pub(crate) sent: u64,
    /// The last `Pending` was the upstream's flow control (not the client).
    pub(crate) blocked: bool,
}

impl H2Upload {
    fn new(stream: SendStream<Bytes>, replay: Replay) -> H2Upload {
        H2Upload {
            stream,
            replay,
            at: 0,
            offset: 0,
            done: false,
            sent: 0,
            blocked: false,
        }
    }

    /// The kept pieces, to send again from the start.
    fn into_replay(self) -> Replay {
        self.replay
    }

    /// The response head came: what was kept is freed once it is sent again.
    pub(crate) fn stop_keeping(&mut self) {
        self.replay.keeping = false;
        self.free_sent();
    }

    fn free_sent(&mut self) {
        if !self.replay.keeping && self.at >= self.replay.kept.len() && !self.replay.kept.is_empty()
        {
            self.replay.kept = Vec::new();
            self.replay.reserved.clear();
            self.at = 0;
        }
    }

    /// Stops sending: the upstream's stream is reset (the client's body failed, or the call is
    /// being abandoned).
    pub(crate) fn cancel(&mut self) {
        if !self.done {
            self.stream.send_reset(h2::Reason::CANCEL);
            self.done = true;
        }
    }

    /// Sends what can be sent: ready once the whole body (and the client's trailers) went.
    pub(crate) fn poll<S: BodySource>(
        &mut self,
        cx: &mut Context<'_>,
        source: &mut S,
    ) -> Poll<Result<(), UploadError>> {
        loop {
            if self.done {
                return Poll::Ready(Ok(()));
            }
            if let Some(kept) = self.replay.kept.get(self.at) {
                match kept {
                    Kept::Data(data) => {
                        let data = data.clone();
                        let rest = data.len() - self.offset;
                        let n = ready!(self.poll_capacity(cx, rest))?;
                        let piece = data.slice(self.offset..self.offset + n);
                        self.stream
                            .send_data(piece, false)
                            .map_err(UploadError::Stream)?;
                        self.offset += n;
                        if self.offset == data.len() {
                            self.at += 1;
                            self.offset = 0;
                        }
                    }
                    Kept::Trailers(trailers) => {
                        let trailers = trailers.clone();
                        self.stream
                            .send_trailers(trailers)
                            .map_err(UploadError::Stream)?;
                        self.at += 1;
                        self.done = true;
                    }
                }
                self.free_sent();
                continue;
            }
            self.blocked = false;
            let want = match source.poll_fill(cx) {
                Poll::Ready(Ok(data)) => data.len(),
                Poll::Ready(Err(e)) => {
                    // Never played again: the body after the failure would not be the client's.
                    self.replay.lose();
                    self.cancel();
                    return Poll::Ready(Err(UploadError::Proxy(ProxyError::Client(e))));
                }
                Poll::Pending => return Poll::Pending,
            };
            if want == 0 {
                let trailers = match source.poll_trailers(cx) {
                    Poll::Ready(Ok(t)) => t,
                    Poll::Ready(Err(e)) => {
                        self.replay.lose();
                        self.cancel();
                        return Poll::Ready(Err(UploadError::Proxy(ProxyError::Client(e))));
                    }
                    Poll::Pending => return Poll::Pending,
                };
                match trailers {
                    Some(t) => {
                        let len = t.iter().map(|(n, v)| n.as_str().len() + v.len()).sum();
                        self.replay.keep(Kept::Trailers(t.clone()), len);
                        self.stream.send_trailers(t).map_err(UploadError::Stream)?;
                    }
                    None => self
                        .stream
                        .send_data(Bytes::new(), true)
                        .map_err(UploadError::Stream)?,
                }
                self.at = self.replay.kept.len();
                self.done = true;
                self.free_sent();
                continue;
            }
            let n = ready!(self.poll_capacity(cx, want))?;
            let bytes = source.take(n);
            // The last piece ends the stream itself (one frame fewer than an empty one after).
            let end = source.at_end();
            // Copied: a slice of the client connection's read buffer would keep all of it.
            self.replay
                .keep(Kept::Data(Bytes::copy_from_slice(&bytes)), bytes.len());
            self.at = self.replay.kept.len();
            self.stream
                .send_data(bytes, end)
                .map_err(UploadError::Stream)?;
            self.sent += n as u64;
            if end {
                self.done = true;
                self.free_sent();
            }
        }
    }

    /// Up to `want` bytes of the upstream's window, once it has some.
    fn poll_capacity(
        &mut self,
        cx: &mut Context<'_>,
        want: usize,
    ) -> Poll<Result<usize, UploadError>> {
        self.stream.reserve_capacity(want);
        loop {
            let capacity = self.stream.capacity();
            if capacity > 0 {
                return Poll::Ready(Ok(capacity.min(want)));
            }
            self.blocked = true;
            match ready!(self.stream.poll_capacity(cx)) {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(UploadError::Stream(e))),
                None => return Poll::Ready(Err(UploadError::Closed)),
            }
        }
    }
}
