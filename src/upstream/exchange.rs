//! One exchange with an upstream, from the connection to the response's end, as one value
//! ([`Exchange`]): made ready by [`crate::upstream::Origin::prepare`] (the request head written
//! for the protocol the upstream speaks) and [`crate::upstream::Prepared::connect`] (a
//! connection), sent ([`Exchange::send`]: the head and the
//! body up, the response head back), then relayed: whatever protocol the upstream speaks, after
//! its response head the exchange gives the same pieces ([`Piece`]: body data, trailers, the
//! end; pingora's `HttpTask` is the model), and goes on sending the rest of the request body
//! meanwhile (an upstream may answer before it has all of it, and a streaming call needs both
//! at once). Each front-end has one writer that takes these pieces in its own syntax.
//!
//! Body data stays in the exchange until the front-end takes it ([`Exchange::data`], then
//! [`Exchange::consume`] or [`Exchange::take`]); only then does an HTTP/2 upstream get that
//! much window back, so a client that does not read stops the upstream instead of filling the
//! gateway. An HTTP/1.1 upstream's bytes stay in the kernel's socket buffer meanwhile.

use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use h2::RecvStream;
use http::HeaderMap;
use tokio::time::Instant;

use super::h1::{Conn, Stream, Upload};
use super::h2::{Call, H2Head, H2Way};
use super::{BodySource, Origin, ProxyError, RequestKind, Sending, Uploading};
use crate::net::{buffers, Deadline};
use crate::wire::{Framing, ResponseFraming, ResponseHead};

/// What comes next in a response.
#[derive(Debug)]
pub enum Piece {
    /// Body bytes: [`Exchange::data`].
    Data,
    /// The trailers (HTTP/2 upstreams; an HTTP/1.1 upstream's chunked trailers are dropped).
    Trailers(HeaderMap),
    /// The end of the response.
    End,
}

/// One exchange (see the module docs).
#[derive(Debug)]
pub struct Exchange {
    origin: Arc<Origin>,
    kind: RequestKind,
    /// How the request body goes.
    framing: Framing,
    way: Way,
    /// The response status (0 until its head came).
    pub status: u16,
    /// Body bytes taken by the front-end so far.
    pub bytes: u64,
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // the HTTP/1.1 way is the common one, kept inline
enum Way {
    H1 {
        conn: Conn,
        /// The request head (a pooled buffer; kept while the body still goes up after it).
        head: Vec<u8>,
        /// The connection may carry another request once the response is read.
        reusable: bool,
        upload: Uploading<Upload>,
    },
    /// Boxed: an HTTP/2 exchange's state is large, and the HTTP/1.1 one is the common case.
    H2(Box<H2Way>),
}

impl Exchange {
    /// An exchange on an HTTP/1.1 connection with its head.
    pub(crate) fn h1(
        origin: Arc<Origin>,
        kind: RequestKind,
        framing: Framing,
        conn: Conn,
        head: Vec<u8>,
    ) -> Exchange {
        Exchange {
            origin,
            kind,
            framing,
            way: Way::H1 {
                conn,
                head,
                reusable: false,
                upload: Uploading::Done,
            },
            status: 0,
            bytes: 0,
        }
    }

    /// An exchange on a place on an HTTP/2 connection, with its head.
    pub(crate) fn h2(
        origin: Arc<Origin>,
        kind: RequestKind,
        framing: Framing,
        call: Call,
        head: H2Head,
    ) -> Exchange {
        Exchange {
            origin,
            kind,
            framing,
            way: Way::H2(Box::new(H2Way {
                call,
                head,
                recv: None,
                chunk: Bytes::new(),
                trailers: false,
                upload: Uploading::Done,
            })),
            status: 0,
            bytes: 0,
        }
    }

    /// True when the request goes over HTTP/2.
    pub fn is_h2(&self) -> bool {
        matches!(self.way, Way::H2(_))
    }

    /// Sends the request (its body from `source`) and waits for the response head, which
    /// `on_head` sees before anything of it reaches the client (an error from it is the
    /// upstream's fault: 502); then the rest of the response is relayed from here. `deadline`
    /// is the caller's upstream deadline (reused across requests); `sent` is when forwarding
    /// began.
    pub async fn send<S: BodySource, R>(
        &mut self,
        deadline: &mut Deadline,
        source: &mut S,
        sent: Instant,
        on_head: impl FnMut(&ResponseHead<'_, '_>, &ResponseFraming) -> Result<R, &'static str>,
    ) -> Result<R, ProxyError> {
        let sending = Sending {
            deadline,
            body: source,
            framing: self.framing,
            kind: self.kind,
            sent,
            on_head,
        };
        match &mut self.way {
            Way::H1 {
                conn,
                head,
                reusable,
                upload,
            } => {
                let answer = self.origin.exchange_h1(conn, head, sending).await?;
                // An upstream that answered before it had the whole body may not read the
                // rest: its connection is never reused, whatever happens to the upload.
                *reusable = answer.framing.reusable && answer.upload.is_none();
                *upload = match answer.upload {
                    Some(u) => Uploading::Sending(u),
                    None => Uploading::Done,
                };
                self.status = answer.status;
                Ok(answer.head)
            }
            Way::H2(h2) => {
                // Boxed: an HTTP/2 exchange's future is large, and would size every request's
                // future, whatever its upstream.
                let (head, status) = Box::pin(self.origin.exchange_h2(h2, sending)).await?;
                self.status = status;
                Ok(head)
            }
        }
    }

    /// Moves the rest of the upload along (from `source`), then polls the next piece of the
    /// response. After [`Piece::Data`], the bytes are in [`Exchange::data`] until taken;
    /// polling again gives the same piece.
    pub fn poll_piece<S: BodySource>(
        &mut self,
        cx: &mut Context<'_>,
        source: &mut S,
    ) -> Poll<Result<Piece, ProxyError>> {
        self.poll_upload(cx, source);
        match &mut self.way {
            Way::H1 { conn, .. } => match ready!(conn.poll_body(cx)) {
                Ok([]) => Poll::Ready(Ok(Piece::End)),
                Ok(_) => Poll::Ready(Ok(Piece::Data)),
                Err(e) => Poll::Ready(Err(e)),
            },
            Way::H2(h2) => {
                if !h2.chunk.is_empty() {
                    return Poll::Ready(Ok(Piece::Data));
                }
                if h2.trailers {
                    return Poll::Ready(Ok(Piece::End));
                }
                let Some(recv) = &mut h2.recv else {
                    return Poll::Ready(Ok(Piece::End));
                };
                loop {
                    match ready!(recv.poll_data(cx)) {
                        Some(Ok(data)) if data.is_empty() => {}
                        Some(Ok(data)) => {
                            h2.chunk = data;
                            return Poll::Ready(Ok(Piece::Data));
                        }
                        Some(Err(e)) => return Poll::Ready(Err(lost(e))),
                        None => break,
                    }
                }
                match ready!(recv.poll_trailers(cx)) {
                    Ok(Some(t)) => {
                        h2.trailers = true;
                        Poll::Ready(Ok(Piece::Trailers(t)))
                    }
                    Ok(None) => Poll::Ready(Ok(Piece::End)),
                    Err(e) => Poll::Ready(Err(lost(e))),
                }
            }
        }
    }

    /// Body bytes received and not yet taken (after [`Piece::Data`]).
    pub fn data(&self) -> &[u8] {
        match &self.way {
            Way::H1 { conn, .. } => conn.data(),
            Way::H2(h2) => &h2.chunk,
        }
    }

    /// True when [`Exchange::data`] is the rest of the response body: no data and no trailers
    /// follow it.
    pub fn data_ends_body(&self) -> bool {
        match &self.way {
            Way::H1 { conn, .. } => conn.data_ends_body(),
            Way::H2(h2) => !h2.trailers && h2.recv.as_ref().is_none_or(|r| r.is_end_stream()),
        }
    }

    /// Marks the first `n` bytes of [`Exchange::data`] as taken.
    pub fn consume(&mut self, n: usize) {
        self.bytes += n as u64;
        match &mut self.way {
            Way::H1 { conn, .. } => conn.consume(n),
            Way::H2(h2) => {
                h2.chunk.advance(n);
                h2.release(n);
            }
        }
    }

    /// Takes the first `n` bytes of [`Exchange::data`] (without a copy from an HTTP/2
    /// upstream).
    pub fn take(&mut self, n: usize) -> Bytes {
        self.bytes += n as u64;
        match &mut self.way {
            Way::H1 { conn, .. } => {
                let bytes = Bytes::copy_from_slice(&conn.data()[..n]);
                conn.consume(n);
                bytes
            }
            Way::H2(h2) => {
                let bytes = h2.chunk.split_to(n);
                h2.release(n);
                bytes
            }
        }
    }

    /// Request body bytes sent while relaying (progress, for the caller's deadline).
    pub fn upload_progress(&self) -> u64 {
        match &self.way {
            Way::H1 {
                upload: Uploading::Sending(u),
                ..
            } => u.written,
            Way::H2(h2) => match &h2.upload {
                Uploading::Sending(u) => u.sent,
                _ => 0,
            },
            _ => 0,
        }
    }

    /// True while some of the request body was not sent (the upstream answered early, or the
    /// upload failed): the client's connection cannot carry another request.
    pub fn upload_unfinished(&self) -> bool {
        match &self.way {
            Way::H1 { upload, .. } => !matches!(upload, Uploading::Done),
            Way::H2(h2) => !matches!(h2.upload, Uploading::Done),
        }
    }

    /// Moves the rest of the upload along (also while the client is not taking the response).
    pub fn poll_upload<S: BodySource>(&mut self, cx: &mut Context<'_>, source: &mut S) {
        match &mut self.way {
            Way::H1 {
                conn, head, upload, ..
            } => {
                if let Uploading::Sending(u) = upload {
                    match conn.poll_upload(cx, u, head, source) {
                        Poll::Ready(Ok(())) => *upload = Uploading::Done,
                        Poll::Ready(Err(_)) => *upload = Uploading::Failed,
                        Poll::Pending => {}
                    }
                }
            }
            Way::H2(h2) => {
                if let Uploading::Sending(u) = &mut h2.upload {
                    match u.poll(cx, source) {
                        Poll::Ready(Ok(())) => h2.upload = Uploading::Done,
                        Poll::Ready(Err(_)) => {
                            u.cancel();
                            h2.upload = Uploading::Failed;
                        }
                        Poll::Pending => {}
                    }
                }
            }
        }
    }

    /// True once the whole response went to the front-end.
    pub fn is_done(&self) -> bool {
        match &self.way {
            Way::H1 { conn, .. } => conn.body_done(),
            Way::H2(h2) => {
                h2.chunk.is_empty()
                    && (h2.trailers || h2.recv.as_ref().is_none_or(RecvStream::is_end_stream))
            }
        }
    }

    /// The end of the exchange: an HTTP/1.1 connection that can carry another request goes back
    /// to its pool (the whole response read, the whole request sent); an HTTP/2 call frees its
    /// place.
    pub fn finish(self) {
        let complete = self.is_done() && !self.upload_unfinished();
        if let Way::H1 {
            conn,
            head,
            reusable,
            ..
        } = self.way
        {
            buffers::give_out(head);
            if complete && reusable {
                self.origin.release(conn);
            }
        }
    }

    /// Gives up on the exchange before its response: the HTTP/1.1 head's buffer goes back to
    /// the pool, and nothing is reused.
    pub fn abandon(self) {
        if let Way::H1 { head, .. } = self.way {
            buffers::give_out(head);
        }
    }

    /// The connection of a `101 Switching Protocols` for a tunnel, and what the upstream sent
    /// after its head; `None` from an HTTP/2 upstream (which never switches).
    pub fn into_tunnel(self) -> Option<(Stream, Vec<u8>)> {
        match self.way {
            Way::H1 { conn, head, .. } => {
                buffers::give_out(head);
                Some(conn.into_tunnel())
            }
            Way::H2(_) => None,
        }
    }
}

/// An HTTP/2 upstream's stream or connection failed mid-response.
fn lost(e: h2::Error) -> ProxyError {
    ProxyError::Closed(std::io::Error::other(e))
}
