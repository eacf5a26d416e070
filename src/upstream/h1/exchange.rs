//! One HTTP/1.1 exchange with an upstream: send the request head and stream the body
//! (re-framed), read the response head, and hand back the connection positioned at the response
//! body. [`Upload`] writes a body from a [`BodySource`] with the gateway's own framing.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::AsyncWrite;
use tokio::time::Instant;
use tracing::debug;

use super::conn::Conn;
use crate::upstream::{BodySource, Origin, ProxyError, Sending, SourceError};
use crate::wire::{self, Framing, ResponseFraming, ResponseHead};

/// The upstream's answer to [`Origin::exchange_h1`] (the connection is left positioned at the
/// response body).
#[derive(Debug)]
pub(crate) struct Answer<R> {
    /// What `on_head` made of the response head.
    pub head: R,
    /// The response's framing.
    pub framing: ResponseFraming,
    /// The rest of the request body, when the upstream answered before it was all sent: it
    /// goes on being sent while the response is relayed (an upstream that streams its answer
    /// to a streamed request needs both at once).
    pub upload: Option<Upload>,
    /// The response status.
    pub status: u16,
}

impl Origin {
    /// Sends a request on `conn` (`head`, then the body) and waits for the response head (see
    /// [`Sending`]). A reused connection found closed before any response byte is replaced once
    /// by a new one for a request that can be sent again.
    pub(crate) async fn exchange_h1<S: BodySource, R, F>(
        &self,
        conn: &mut Conn,
        head: &[u8],
        mut sending: Sending<'_, S, F>,
    ) -> Result<Answer<R>, ProxyError>
    where
        F: FnMut(&ResponseHead<'_, '_>, &ResponseFraming) -> Result<R, &'static str>,
    {
        loop {
            let answered = match self.send(conn, head, &mut sending).await {
                // Once, on a new connection (which is not `reused`, so not a second time).
                Err(ProxyError::Closed(e)) if conn.reused && sending.kind.retryable => {
                    debug!(upstream = %self.addr, error = %e, "reused connection was closed; retrying");
                    *conn = Box::pin(self.fresh(Instant::now() + self.connect_timeout)).await?;
                    continue;
                }
                other => other?,
            };
            let (head, response_framing, status, upload) = answered;
            return Ok(Answer {
                head,
                framing: response_framing,
                upload,
                status,
            });
        }
    }

    async fn send<S: BodySource, R, F>(
        &self,
        conn: &mut Conn,
        head: &[u8],
        sending: &mut Sending<'_, S, F>,
    ) -> Result<(R, ResponseFraming, u16, Option<Upload>), ProxyError>
    where
        F: FnMut(&ResponseHead<'_, '_>, &ResponseFraming) -> Result<R, &'static str>,
    {
        let Sending {
            deadline,
            body,
            framing,
            kind,
            sent,
            on_head,
        } = sending;
        let (framing, kind, sent) = (*framing, *kind, *sent);
        conn.responded = false;
        let mut upload = Some(Upload::new(framing));
        deadline.disarm();
        let timeout = self.upstream_timeout;
        let mut progress = 0;
        poll_fn(|cx| {
            if let Some(u) = &mut upload {
                let polled = u.poll(cx, &mut conn.io, head, *body);
                if u.progress() != progress {
                    // The upstream took bytes: its upstream_timeout starts again.
                    progress = u.progress();
                    deadline.disarm();
                }
                match polled {
                    Poll::Ready(Ok(())) => {
                        upload = None;
                        deadline.disarm();
                        if framing != Framing::Empty {
                            // upstream_timeout runs from the end of the body.
                            deadline.arm_after(timeout);
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending if u.writer_blocked => deadline.arm_after(timeout),
                    // Waiting for the client: not the upstream's time.
                    Poll::Pending => deadline.disarm(),
                }
            }
            // An answer (even an early one) ends the exchange.
            if let Poll::Ready(r) = conn.poll_head(cx, kind.head, on_head) {
                return Poll::Ready(r.map(|(h, f, s)| (h, f, s, upload.take())));
            }
            if upload.is_none() {
                if body.poll_abandoned(cx).is_ready() {
                    return Poll::Ready(Err(ProxyError::Abandoned));
                }
                if !deadline.is_armed() {
                    // No body: upstream_timeout runs from when the request was forwarded.
                    deadline.arm(sent + timeout);
                }
            }
            match deadline.poll_expired(cx) {
                Poll::Ready(()) => Poll::Ready(Err(ProxyError::Timeout)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }
}

/// Writes a body from a [`BodySource`] to `W`, chunk-framed or as it is: the request body to
/// the upstream, and the response body to an HTTP/1 client.
#[derive(Debug)]
pub struct Upload {
    chunked: bool,
    /// The declared length, enforced: the source may give neither more nor less.
    length: Option<u64>,
    /// Bytes of the prefix (the request head) written.
    prefix_pos: usize,
    /// Framing bytes to write before anything else (a chunk header, a CRLF, the last chunk).
    frame: [u8; 18],
    frame_len: u8,
    frame_pos: u8,
    /// Bytes of the current piece still to write.
    left: usize,
    finished: bool,
    /// Body bytes written so far.
    pub written: u64,
    stopped: bool,
    /// The last `Pending` was the writer not taking bytes (rather than the source not having
    /// any).
    pub writer_blocked: bool,
}

impl Upload {
    /// Writes the body chunk-framed (`Framing::Chunked`), as it is (`Length`, `UntilClose`),
    /// or not at all (`Empty`).
    pub fn new(framing: Framing) -> Upload {
        Upload {
            chunked: framing == Framing::Chunked,
            length: match framing {
                Framing::Length(n) => Some(n),
                _ => None,
            },
            prefix_pos: 0,
            frame: [0; 18],
            frame_len: 0,
            frame_pos: 0,
            left: 0,
            finished: framing == Framing::Empty,
            written: 0,
            stopped: false,
            writer_blocked: false,
        }
    }

    /// Bytes written so far, head and framing included.
    pub fn progress(&self) -> u64 {
        self.prefix_pos as u64 + self.written + u64::from(self.frame_pos)
    }

    /// Stops the upload for good: every later poll stays pending.
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    fn set_frame(&mut self, bytes: &[u8]) {
        self.frame[..bytes.len()].copy_from_slice(bytes);
        self.frame_len = bytes.len() as u8;
        self.frame_pos = 0;
    }

    /// Polls the copy forward: ready once `prefix` (a request head, or nothing) and the whole
    /// body are written and flushed.
    pub fn poll<S: BodySource, W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut W,
        prefix: &[u8],
        body: &mut S,
    ) -> Poll<Result<(), ProxyError>> {
        let write_failed = ProxyError::Closed;
        if self.stopped {
            return Poll::Pending;
        }
        loop {
            if self.prefix_pos < prefix.len() {
                // The source is asked first: a body refused at once (over the limit, malformed)
                // leaves the upstream with nothing, and body bytes already there go out with
                // the head in one write.
                let first = if self.finished {
                    None
                } else {
                    match body.poll_fill(cx) {
                        Poll::Ready(Ok(data)) => Some(data),
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(ProxyError::Client(e))),
                        Poll::Pending => None,
                    }
                };
                let rest = &prefix[self.prefix_pos..];
                self.writer_blocked = true;
                let n = match first {
                    Some(data)
                        if !data.is_empty()
                            && !self.chunked
                            && self.length.is_none_or(|n| data.len() as u64 <= n) =>
                    {
                        let bufs = [io::IoSlice::new(rest), io::IoSlice::new(data)];
                        ready!(Pin::new(&mut *io).poll_write_vectored(cx, &bufs))
                            .map_err(write_failed)?
                    }
                    _ => ready!(Pin::new(&mut *io).poll_write(cx, rest)).map_err(write_failed)?,
                };
                if n == 0 {
                    return Poll::Ready(Err(ProxyError::Closed(io::ErrorKind::WriteZero.into())));
                }
                let from_prefix = n.min(rest.len());
                self.prefix_pos += from_prefix;
                if n > from_prefix {
                    body.consume(n - from_prefix);
                    self.written += (n - from_prefix) as u64;
                }
                continue;
            }
            if self.frame_pos < self.frame_len {
                let bytes = &self.frame[usize::from(self.frame_pos)..usize::from(self.frame_len)];
                self.writer_blocked = true;
                let n = ready!(Pin::new(&mut *io).poll_write(cx, bytes)).map_err(write_failed)?;
                if n == 0 {
                    return Poll::Ready(Err(ProxyError::Closed(io::ErrorKind::WriteZero.into())));
                }
                self.frame_pos += n as u8;
                continue;
            }
            if self.finished {
                self.writer_blocked = true;
                ready!(Pin::new(&mut *io).poll_flush(cx)).map_err(write_failed)?;
                return Poll::Ready(Ok(()));
            }
            self.writer_blocked = false;
            let data = match body.poll_fill(cx) {
                Poll::Ready(Ok(data)) => data,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(ProxyError::Client(e))),
                Poll::Pending => {
                    // Push out what was written while the source is slow.
                    self.writer_blocked = true;
                    ready!(Pin::new(&mut *io).poll_flush(cx)).map_err(write_failed)?;
                    self.writer_blocked = false;
                    return Poll::Pending;
                }
            };
            if self
                .length
                .is_some_and(|n| self.written + data.len() as u64 > n)
            {
                return Poll::Ready(Err(ProxyError::Client(SourceError::Malformed(
                    "body longer than its Content-Length",
                ))));
            }
            if self.left == 0 {
                if data.is_empty() {
                    if self.length.is_some_and(|n| self.written != n) {
                        return Poll::Ready(Err(ProxyError::Client(SourceError::Malformed(
                            "body shorter than its Content-Length",
                        ))));
                    }
                    self.finished = true;
                    if self.chunked {
                        self.set_frame(wire::LAST_CHUNK);
                    }
                    continue;
                }
                self.left = data.len();
                if self.chunked {
                    let mut header = [0u8; 18];
                    self.set_frame(wire::chunk_header(data.len(), &mut header));
                    continue;
                }
            }
            let data = &data[..self.left.min(data.len())];
            self.writer_blocked = true;
            let n = ready!(Pin::new(&mut *io).poll_write(cx, data)).map_err(write_failed)?;
            if n == 0 {
                return Poll::Ready(Err(ProxyError::Closed(io::ErrorKind::WriteZero.into())));
            }
            body.consume(n);
            self.left -= n;
            self.written += n as u64;
            if self.left == 0 && self.chunked {
                self.set_frame(b"\r\n");
            }
        }
    }
}
