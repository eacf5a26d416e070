//! The one response stream: whatever protocol the upstream speaks, after its response head a
//! [`Relay`] gives the same pieces ([`Piece`]: body data, trailers, the end; pingora's
//! `HttpTask` is the model), and goes on sending the rest of the request body meanwhile (an
//! upstream may answer before it has all of it, and a streaming call needs both at once).
//! Each front-end has one writer that takes these pieces in its own syntax.
//!
//! Body data stays in the relay until the front-end takes it ([`Relay::data`], then
//! [`Relay::consume`] or [`Relay::take`]); only then does an HTTP/2 upstream get that much
//! window back, so a client that does not read stops the upstream instead of filling the
//! gateway. An HTTP/1.1 upstream's bytes stay in the kernel's socket buffer meanwhile.

use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use h2::RecvStream;
use http::HeaderMap;

use super::h1::{Conn, Stream, Upload};
use super::h2::send::H2Upload;
use super::h2::Call;
use super::{BodySource, Origin, ProxyError};
use crate::net::buffers;

/// What comes next in a response.
#[derive(Debug)]
pub enum Piece {
    /// Body bytes: [`Relay::data`].
    Data,
    /// The trailers (HTTP/2 upstreams; an HTTP/1.1 upstream's chunked trailers are dropped).
    Trailers(HeaderMap),
    /// The end of the response.
    End,
}

/// A response after its head (see the module docs).
#[derive(Debug)]
pub struct Relay {
    body: Body,
    upload: Uploading,
    origin: Arc<Origin>,
    /// The response status.
    pub status: u16,
    /// Body bytes taken by the front-end so far.
    pub bytes: u64,
}

#[derive(Debug)]
enum Body {
    H1 {
        conn: Conn,
        /// The connection may carry another request once the body is read.
        reusable: bool,
    },
    H2 {
        recv: RecvStream,
        /// Bytes received and not yet taken (their window not yet given back).
        chunk: Bytes,
        /// The trailers were given: the end comes next.
        trailers: bool,
        /// The call's place on its connection, freed with the relay.
        _call: Call,
    },
}

/// The rest of the request body.
#[derive(Debug)]
enum Uploading {
    /// All sent (or none to send).
    Done,
    /// To an HTTP/1.1 upstream: the writer and the head it follows.
    H1 { upload: Upload, head: Vec<u8> },
    /// To an HTTP/2 upstream.
    H2(H2Upload),
    /// The upstream stopped taking it, or the client broke it off: the response still goes
    /// out; the connections are not reused.
    Failed,
}

impl Relay {
    /// The body of an HTTP/1.1 response on `conn`, with the rest of the upload (and its head,
    /// a pooled buffer) when there is one.
    pub(crate) fn h1(
        origin: Arc<Origin>,
        conn: Conn,
        reusable: bool,
        upload: Option<(Upload, Vec<u8>)>,
        status: u16,
    ) -> Relay {
        let upload = match upload {
            Some((upload, head)) => Uploading::H1 { upload, head },
            None => Uploading::Done,
        };
        Relay {
            body: Body::H1 { conn, reusable },
            upload,
            origin,
            status,
            bytes: 0,
        }
    }

    /// The body of an HTTP/2 response on `call`, with the rest of the upload.
    pub(crate) fn h2(
        origin: Arc<Origin>,
        recv: RecvStream,
        call: Call,
        upload: Option<H2Upload>,
        status: u16,
    ) -> Relay {
        Relay {
            body: Body::H2 {
                recv,
                chunk: Bytes::new(),
                trailers: false,
                _call: call,
            },
            upload: upload.map_or(Uploading::Done, Uploading::H2),
            origin,
            status,
            bytes: 0,
        }
    }

    /// Moves the rest of the upload along (from `source`), then polls the next piece of the
    /// response. After [`Piece::Data`], the bytes are in [`Relay::data`] until taken; polling
    /// again gives the same piece.
    pub fn poll_piece<S: BodySource>(
        &mut self,
        cx: &mut Context<'_>,
        source: &mut S,
    ) -> Poll<Result<Piece, ProxyError>> {
        self.poll_upload(cx, source);
        match &mut self.body {
            Body::H1 { conn, .. } => match ready!(conn.poll_body(cx)) {
                Ok([]) => Poll::Ready(Ok(Piece::End)),
                Ok(_) => Poll::Ready(Ok(Piece::Data)),
                Err(e) => Poll::Ready(Err(e)),
            },
            Body::H2 {
                recv,
                chunk,
                trailers,
                ..
            } => {
                if !chunk.is_empty() {
                    return Poll::Ready(Ok(Piece::Data));
                }
                if *trailers {
                    return Poll::Ready(Ok(Piece::End));
                }
                loop {
                    match ready!(recv.poll_data(cx)) {
                        Some(Ok(data)) if data.is_empty() => {}
                        Some(Ok(data)) => {
                            *chunk = data;
                            return Poll::Ready(Ok(Piece::Data));
                        }
                        Some(Err(e)) => return Poll::Ready(Err(lost(e))),
                        None => break,
                    }
                }
                match ready!(recv.poll_trailers(cx)) {
                    Ok(Some(t)) => {
                        *trailers = true;
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
        match &self.body {
            Body::H1 { conn, .. } => conn.data(),
            Body::H2 { chunk, .. } => chunk,
        }
    }

    /// Marks the first `n` bytes of [`Relay::data`] as taken.
    pub fn consume(&mut self, n: usize) {
        self.bytes += n as u64;
        match &mut self.body {
            Body::H1 { conn, .. } => conn.consume(n),
            Body::H2 { recv, chunk, .. } => {
                chunk.advance(n);
                let _ = recv.flow_control().release_capacity(n);
            }
        }
    }

    /// Takes the first `n` bytes of [`Relay::data`] (without a copy from an HTTP/2 upstream).
    pub fn take(&mut self, n: usize) -> Bytes {
        self.bytes += n as u64;
        match &mut self.body {
            Body::H1 { conn, .. } => {
                let bytes = Bytes::copy_from_slice(&conn.data()[..n]);
                conn.consume(n);
                bytes
            }
            Body::H2 { recv, chunk, .. } => {
                let bytes = chunk.split_to(n);
                let _ = recv.flow_control().release_capacity(n);
                bytes
            }
        }
    }

    /// Request body bytes sent so far while relaying (progress, for the caller's deadline).
    pub fn upload_progress(&self) -> u64 {
        match &self.upload {
            Uploading::H1 { upload, .. } => upload.written,
            Uploading::H2(upload) => upload.sent,
            Uploading::Done | Uploading::Failed => 0,
        }
    }

    /// True while some of the request body was not sent (the upstream answered early, or the
    /// upload failed): the client's connection cannot carry another request.
    pub fn upload_unfinished(&self) -> bool {
        !matches!(self.upload, Uploading::Done)
    }

    /// Moves the rest of the upload along (also while the client is not taking the response).
    pub fn poll_upload<S: BodySource>(&mut self, cx: &mut Context<'_>, source: &mut S) {
        let done = match (&mut self.upload, &mut self.body) {
            (Uploading::H1 { upload, head }, Body::H1 { conn, .. }) => {
                match conn.poll_upload(cx, upload, head, source) {
                    Poll::Ready(Ok(())) => Some(true),
                    Poll::Ready(Err(_)) => Some(false),
                    Poll::Pending => None,
                }
            }
            (Uploading::H2(upload), _) => match upload.poll(cx, source) {
                Poll::Ready(Ok(())) => Some(true),
                Poll::Ready(Err(_)) => {
                    upload.cancel();
                    Some(false)
                }
                Poll::Pending => None,
            },
            _ => None,
        };
        match done {
            Some(true) => self.end_upload(Uploading::Done),
            Some(false) => self.end_upload(Uploading::Failed),
            None => {}
        }
    }

    fn end_upload(&mut self, to: Uploading) {
        if let Uploading::H1 { head, .. } = std::mem::replace(&mut self.upload, to) {
            buffers::give_out(head);
        }
    }

    /// True once the whole response went to the front-end.
    pub fn is_done(&self) -> bool {
        match &self.body {
            Body::H1 { conn, .. } => conn.body_done(),
            Body::H2 {
                recv,
                chunk,
                trailers,
                ..
            } => chunk.is_empty() && (*trailers || recv.is_end_stream()),
        }
    }

    /// The end of the exchange: an HTTP/1.1 connection that can carry another request goes back
    /// to its pool (the whole response read, the whole request sent); an HTTP/2 call frees its
    /// place.
    pub fn finish(mut self) {
        let complete = self.is_done() && !self.upload_unfinished();
        self.end_upload(Uploading::Done);
        if let Body::H1 { conn, reusable } = self.body {
            if complete && reusable {
                self.origin.release(conn);
            }
        }
    }

    /// The connection of a `101 Switching Protocols` for a tunnel, and what the upstream sent
    /// after its head; `None` from an HTTP/2 upstream (which never switches).
    pub fn into_tunnel(mut self) -> Option<(Stream, Vec<u8>)> {
        self.end_upload(Uploading::Done);
        match self.body {
            Body::H1 { conn, .. } => Some(conn.into_tunnel()),
            Body::H2 { .. } => None,
        }
    }
}

/// An HTTP/2 upstream's stream or connection failed mid-response.
fn lost(e: h2::Error) -> ProxyError {
    ProxyError::Closed(std::io::Error::other(e))
}
