//! A connection to an upstream: reading the response head and then its body by its framing, and
//! handing the raw stream over for a tunnel (connecting is `upstream::connect`; HTTP/2 runs on
//! the same [`Stream`]s).

use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::Upload;
use crate::net::buffers;
use crate::upstream::{BodySource, ProxyError};
use crate::wire::{self, BodyDecoder, Piece, ResponseFraming, ResponseHead};

/// A connection to an upstream, with what was read from it and not yet used.
#[derive(Debug)]
pub struct Conn {
    pub(crate) io: Stream,
    /// Taken from the per-thread pool when a response is read, given back when the connection
    /// goes back to the pool (empty while idle).
    buf: Box<[u8]>,
    /// Unread bytes are `buf[pos..end]`.
    pos: usize,
    end: usize,
    /// Body bytes given out and not yet consumed: `buf[data]`.
    data: Range<usize>,
    reading: BodyDecoder,
    /// It came from the pool.
    pub(crate) reused: bool,
    /// Some response byte arrived for the current request.
    pub(crate) responded: bool,
}

impl Conn {
    pub(crate) fn new(io: Stream) -> Conn {
        Conn {
            io,
            buf: Box::default(),
            pos: 0,
            end: 0,
            data: 0..0,
            reading: BodyDecoder::Done,
            reused: false,
            responded: false,
        }
    }

    /// An idle connection is usable when the upstream has neither closed it nor sent anything
    /// (an idle HTTP/1.1 connection has nothing to say). Uses the readiness the reactor already
    /// has; reads only when it says something might be there.
    pub(crate) fn is_usable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match &mut self.io {
            Stream::Tcp(tcp) => match tcp.poll_read_ready(&mut cx) {
                Poll::Pending => true,
                Poll::Ready(Err(_)) => false,
                Poll::Ready(Ok(())) => {
                    matches!(tcp.try_read(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
                }
            },
            // Through TLS: what rustls holds counts too (plaintext, a close_notify).
            Stream::Tls(tls) => {
                let mut byte = [0u8; 1];
                Pin::new(tls)
                    .poll_read(&mut cx, &mut ReadBuf::new(&mut byte))
                    .is_pending()
            }
        }
    }

    /// Reads more into the buffer; `Ok(0)` at EOF.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.is_empty() {
            self.buf = buffers::take_upstream();
        }
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.pos > 0 {
                self.buf.copy_within(self.pos..self.end, 0);
                self.end -= self.pos;
                self.pos = 0;
            } else {
                let mut bigger = vec![0; self.buf.len() * 2].into_boxed_slice();
                bigger[..self.end].copy_from_slice(&self.buf[..self.end]);
                self.buf = bigger;
            }
        }
        let mut rb = ReadBuf::new(&mut self.buf[self.end..]);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut rb))?;
        let n = rb.filled().len();
        self.end += n;
        Poll::Ready(Ok(n))
    }

    pub(crate) fn poll_head<R>(
        &mut self,
        cx: &mut Context<'_>,
        head_request: bool,
        on_head: &mut impl FnMut(&ResponseHead<'_, '_>, &ResponseFraming) -> Result<R, &'static str>,
    ) -> Poll<Result<(R, ResponseFraming, u16), ProxyError>> {
        loop {
            if self.pos < self.end {
                let mut slots = wire::header_slots();
                let slots = &mut slots[..wire::MAX_RESPONSE_FIELDS];
                match wire::parse_response(&self.buf[self.pos..self.end], slots) {
                    Ok(Some(head)) if head.status < 200 && head.status != 101 => {
                        // Interim responses (100 Continue, 103 Early Hints) are not relayed:
                        // the gateway answers `Expect` itself.
                        self.pos += head.len;
                        continue;
                    }
                    Ok(Some(head)) => {
                        let framing = wire::response_framing(&head, head_request)
                            .map_err(ProxyError::Protocol)?;
                        let out = on_head(&head, &framing).map_err(ProxyError::Protocol)?;
                        let status = head.status;
                        self.pos += head.len;
                        self.reading = BodyDecoder::new(framing.framing);
                        return Poll::Ready(Ok((out, framing, status)));
                    }
                    Ok(None) => {}
                    Err(why) => return Poll::Ready(Err(ProxyError::Protocol(why))),
                }
            }
            match ready!(self.poll_fill(cx)) {
                Ok(0) if !self.responded => {
                    return Poll::Ready(Err(ProxyError::Closed(
                        io::ErrorKind::UnexpectedEof.into(),
                    )))
                }
                Ok(0) => return Poll::Ready(Err(ProxyError::Protocol("response head cut short"))),
                Ok(_) => self.responded = true,
                Err(e) if !self.responded => return Poll::Ready(Err(ProxyError::Closed(e))),
                Err(_) => return Poll::Ready(Err(ProxyError::Protocol("response head cut short"))),
            }
        }
    }

    /// Goes on with a request body the upstream answered early (see [`super::exchange::Answer::upload`]).
    pub fn poll_upload<S: BodySource>(
        &mut self,
        cx: &mut Context<'_>,
        upload: &mut Upload,
        head: &[u8],
        body: &mut S,
    ) -> Poll<Result<(), ProxyError>> {
        upload.poll(cx, &mut self.io, head, body)
    }

    /// Body bytes already read, without I/O: `None` when more must be read first.
    pub fn buffered_body(&mut self) -> Result<Option<&[u8]>, ProxyError> {
        if self.data.is_empty() && !self.decode()? {
            return Ok(None);
        }
        Ok(Some(&self.buf[self.data.clone()]))
    }

    /// Decodes the next body bytes from the buffer into `data`; false when more must be read.
    /// At the end of the body, `data` stays empty and this returns true.
    fn decode(&mut self) -> Result<bool, ProxyError> {
        let (used, piece) = self
            .reading
            .decode(&self.buf[self.pos..self.end])
            .map_err(|e| ProxyError::Protocol(e.0))?;
        let at = self.pos;
        self.pos += used;
        Ok(match piece {
            Piece::Data(r) => {
                self.data = at + r.start..at + r.end;
                true
            }
            Piece::End => true,
            Piece::More => false,
        })
    }

    /// Polls the next response body bytes: an empty slice at the end of the body. They stay
    /// given out until [`Conn::consume`].
    pub fn poll_body(&mut self, cx: &mut Context<'_>) -> Poll<Result<&[u8], ProxyError>> {
        loop {
            if !self.data.is_empty() || self.decode()? {
                return Poll::Ready(Ok(&self.buf[self.data.clone()]));
            }
            match ready!(self.poll_fill(cx)) {
                Ok(0) => {
                    if self.reading.eof().is_err() {
                        return Poll::Ready(Err(ProxyError::Protocol("response body cut short")));
                    }
                }
                Ok(_) => {}
                Err(_) => return Poll::Ready(Err(ProxyError::Protocol("response body cut short"))),
            }
        }
    }

    /// The body bytes given out and not yet consumed.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.data.clone()]
    }

    /// True when the body bytes given out are the last of the body.
    pub fn data_ends_body(&self) -> bool {
        self.reading.is_done()
    }

    /// Marks `n` body bytes as passed on.
    pub fn consume(&mut self, n: usize) {
        self.data.start += n;
    }

    /// True once the whole response body was read and passed on.
    pub fn body_done(&self) -> bool {
        self.data.is_empty() && self.reading.is_done()
    }

    /// True when the response was read whole and nothing follows it.
    pub(crate) fn is_clean(&self) -> bool {
        self.pos == self.end && self.body_done()
    }

    /// Gives the read buffer back to the per-thread pool (a connection going idle, with
    /// nothing unread).
    pub(crate) fn shed(&mut self) {
        debug_assert!(self.pos == self.end && self.data.is_empty());
        self.pos = 0;
        self.end = 0;
        self.data = 0..0;
        buffers::give_upstream(std::mem::take(&mut self.buf));
    }

    /// The connection for a tunnel, and what the upstream sent after its `101` head.
    pub fn into_tunnel(self) -> (Stream, Vec<u8>) {
        (self.io, self.buf[self.pos..self.end].to_vec())
    }
}

/// A connection to an upstream: plain TCP or TLS.
#[derive(Debug)]
pub enum Stream {
    /// `http://`.
    Tcp(TcpStream),
    /// `https://`.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
