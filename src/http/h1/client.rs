//! The client's side of a forwarded request ([`Client`]): its request body, decoded from its
//! framing, as the [`BodySource`] the upstream exchange reads (it answers `Expect:
//! 100-continue` when the exchange first asks for body bytes, that is once the request passed
//! every check and the upstream connection is ready; counts the route's body limit; and once
//! the body is sent watches for the client going away), and the response written back to it
//! (`sink.rs`): one socket does both.

use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;

use super::input::Input;
use super::Transport;
use crate::net::Deadline;
use crate::upstream::{BodySource, SourceError};
use crate::wire::{BodyDecoder, Framing, Piece, Version};

/// A forwarded request's client (see the module docs).
pub(super) struct Client<'a, T> {
    pub(super) io: &'a mut T,
    pub(super) input: &'a mut Input,
    reading: BodyDecoder,
    /// Decoded bytes given out and not yet consumed: `input` buffer positions.
    data: std::ops::Range<usize>,
    limit: Option<u64>,
    received: u64,
    /// The client's deadline: a body that stops coming for `idle_timeout` fails.
    deadline: &'a mut Deadline,
    idle_timeout: Duration,
    /// `Some(n)`: `100 Continue` is owed, `n` bytes of it written.
    continue_at: Option<usize>,
    /// Pipelined bytes read while waiting stop here.
    max_pipelined: usize,
    /// What goes to the client next: the response head, then body bytes coalesced after it (a
    /// pooled buffer), written from `pos`.
    pub(super) out: Vec<u8>,
    pub(super) pos: usize,
    /// How the response body is framed for the client.
    pub(super) framing: ClientFraming,
    /// Bytes of a large piece still to write straight from the upstream's buffer.
    pub(super) left: usize,
    /// The last chunk was written.
    pub(super) ended: bool,
}

/// How the response body goes to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFraming {
    /// No body, or a body of known length: the bytes as they are.
    Plain,
    /// Re-chunked (length unknown, HTTP/1.1 client).
    Chunked,
    /// Until the gateway closes the connection (length unknown, HTTP/1.0 client).
    UntilClose,
    /// `101`: the connection becomes a tunnel.
    Tunnel,
}

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// What [`Client::new`] needs to know about the request.
#[derive(Debug, Clone, Copy)]
pub(super) struct BodyFacts {
    pub(super) framing: Framing,
    pub(super) version: Version,
    pub(super) expect_continue: bool,
    pub(super) limit: Option<u64>,
}

impl<'a, T: Transport> Client<'a, T> {
    /// The client on `io` (bytes already read in `input`), its body read within `deadline`;
    /// `out` is the buffer its response is written into.
    pub(super) fn new(
        io: &'a mut T,
        input: &'a mut Input,
        deadline: &'a mut Deadline,
        body: BodyFacts,
        server: &crate::config::ServerConfig,
        out: Vec<u8>,
    ) -> Self {
        Client {
            io,
            input,
            reading: BodyDecoder::new(body.framing),
            data: 0..0,
            limit: body.limit,
            received: 0,
            deadline,
            idle_timeout: server.idle_timeout,
            continue_at: (body.expect_continue
                && body.framing != Framing::Empty
                && body.version == Version::Http11)
                .then_some(0),
            max_pipelined: server.max_header_bytes,
            out,
            pos: 0,
            framing: ClientFraming::Plain,
            left: 0,
            ended: false,
        }
    }

    /// True once the whole body was read and passed on.
    pub(super) fn is_done(&self) -> bool {
        self.data.is_empty() && self.reading.is_done()
    }

    /// Decodes buffered bytes into `data`; false when more must be read.
    fn decode(&mut self) -> Result<bool, SourceError> {
        let (used, piece) = self
            .reading
            .decode(self.input.data())
            .map_err(|e| SourceError::Malformed(e.0))?;
        let taken = self.input.take(used);
        match piece {
            Piece::Data(r) => self.data = taken.start + r.start..taken.start + r.end,
            Piece::End => return Ok(true),
            Piece::More => return Ok(false),
        }
        self.received += self.data.len() as u64;
        if self.limit.is_some_and(|limit| self.received > limit) {
            return Err(SourceError::TooLarge);
        }
        Ok(true)
    }

    /// Stops reading the body's deadline (the exchange's own waits take over).
    pub(super) fn disarm(&mut self) {
        self.deadline.disarm();
    }
}

impl<T> Client<'_, T> {
    /// The upstream answered: no `100 Continue` may follow the final response. What is left to
    /// write of one already begun goes out before the response.
    pub(super) fn end_continue(&mut self) -> &'static [u8] {
        match self.continue_at.take() {
            Some(at) if at > 0 => &CONTINUE[at..],
            _ => &[],
        }
    }
}

impl<T: Transport> BodySource for Client<'_, T> {
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<&[u8], SourceError>> {
        if let Some(at) = self.continue_at {
            // Once begun, a `100 Continue` is finished before anything else; it is not begun when
            // the client sends its body anyway.
            if at > 0 || self.input.is_empty() {
                let mut at = at;
                while at < CONTINUE.len() {
                    match Pin::new(&mut *self.io).poll_write(cx, &CONTINUE[at..]) {
                        Poll::Ready(Ok(n)) if n > 0 => at += n,
                        Poll::Ready(_) => return Poll::Ready(Err(SourceError::Broken)),
                        Poll::Pending => {
                            self.continue_at = Some(at);
                            return Poll::Pending;
                        }
                    }
                }
                self.continue_at = Some(at);
                if ready!(Pin::new(&mut *self.io).poll_flush(cx)).is_err() {
                    return Poll::Ready(Err(SourceError::Broken));
                }
            }
            self.continue_at = None;
        }
        loop {
            if !self.data.is_empty() || self.decode()? {
                return Poll::Ready(Ok(self.input.slice(self.data.clone())));
            }
            match self.input.poll_read(&mut *self.io, cx, usize::MAX) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(SourceError::Malformed("request body cut short")))
                }
                Poll::Ready(Ok(_)) => self.deadline.disarm(),
                Poll::Ready(Err(_)) => return Poll::Ready(Err(SourceError::Broken)),
                Poll::Pending => {
                    self.deadline.arm_after(self.idle_timeout);
                    ready!(self.deadline.poll_expired(cx));
                    return Poll::Ready(Err(SourceError::Broken));
                }
            }
        }
    }

    fn consume(&mut self, n: usize) {
        self.data.start += n;
    }

    fn take(&mut self, n: usize) -> Bytes {
        let bytes = Bytes::copy_from_slice(&self.input.slice(self.data.clone())[..n]);
        self.data.start += n;
        bytes
    }

    fn poll_abandoned(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Reads ahead (pipelined requests are kept) to see an EOF, the way a client says it
        // has gone.
        loop {
            if self.input.len() >= self.max_pipelined {
                return Poll::Pending;
            }
            if self.input.is_empty() && self.io.poll_read_ready(cx).is_pending() {
                return Poll::Pending;
            }
            match self.input.poll_read(&mut *self.io, cx, self.max_pipelined) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Ready(Ok(_)) => {}
                Poll::Pending => {
                    if self.input.is_empty() {
                        self.input.release();
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    impl Transport for DuplexStream {}

    fn server() -> crate::config::ServerConfig {
        crate::config::Config::from_toml("[[route]]\npath=\"/\"\nupstream=\"http://127.0.0.1:1\"")
            .unwrap()
            .server
    }

    /// Everything `client` gives as body bytes, or its error.
    async fn drain<T: Transport>(client: &mut Client<'_, T>) -> Result<Vec<u8>, SourceError> {
        let mut body = Vec::new();
        loop {
            let data = poll_fn(|cx| client.poll_fill(cx).map(|r| r.map(<[u8]>::to_vec))).await?;
            body.extend_from_slice(&data);
            let n = data.len();
            if n == 0 {
                return Ok(body);
            }
            client.consume(n);
        }
    }

    fn facts(framing: Framing, expect: bool, limit: Option<u64>) -> BodyFacts {
        BodyFacts {
            framing,
            version: Version::Http11,
            expect_continue: expect,
            limit,
        }
    }

    #[tokio::test]
    async fn a_chunked_body_is_decoded_and_a_pipelined_request_left_alone() {
        let (mut io, mut peer) = tokio::io::duplex(1024);
        peer.write_all(b"5\r\nhello\r\n6;x=1\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n")
            .await
            .unwrap();
        let (mut input, mut deadline) = (Input::default(), Deadline::new());
        let server = server();
        let mut client = Client::new(
            &mut io,
            &mut input,
            &mut deadline,
            facts(Framing::Chunked, false, None),
            &server,
            Vec::new(),
        );
        assert_eq!(drain(&mut client).await.unwrap(), b"hello world");
        assert!(client.is_done());
        drop(client);
        assert_eq!(input.data(), b"GET / HTTP/1.1\r\n");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_or_cut_short_fails() {
        let server = server();
        let (mut io, mut peer) = tokio::io::duplex(1024);
        peer.write_all(b"0123456789").await.unwrap();
        let (mut input, mut deadline) = (Input::default(), Deadline::new());
        let mut client = Client::new(
            &mut io,
            &mut input,
            &mut deadline,
            facts(Framing::Length(10), false, Some(9)),
            &server,
            Vec::new(),
        );
        assert_eq!(drain(&mut client).await, Err(SourceError::TooLarge));
        let (mut io, mut peer) = tokio::io::duplex(1024);
        peer.write_all(b"01234").await.unwrap();
        drop(peer);
        let (mut input, mut deadline) = (Input::default(), Deadline::new());
        let mut client = Client::new(
            &mut io,
            &mut input,
            &mut deadline,
            facts(Framing::Length(10), false, None),
            &server,
            Vec::new(),
        );
        assert!(matches!(
            drain(&mut client).await,
            Err(SourceError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn expect_continue_is_answered_when_the_body_is_first_wanted() {
        let server = server();
        let (mut io, mut peer) = tokio::io::duplex(1024);
        let (mut input, mut deadline) = (Input::default(), Deadline::new());
        let mut client = Client::new(
            &mut io,
            &mut input,
            &mut deadline,
            facts(Framing::Length(3), true, None),
            &server,
            Vec::new(),
        );
        // Nothing is written before the body is asked for.
        let mut got = [0u8; 64];
        assert!(
            tokio::time::timeout(std::time::Duration::ZERO, peer.read(&mut got))
                .await
                .is_err()
        );
        let client_side = async {
            let mut seen = Vec::new();
            while !seen.ends_with(b"\r\n\r\n") {
                let n = peer.read(&mut got).await.unwrap();
                seen.extend_from_slice(&got[..n]);
            }
            peer.write_all(b"abc").await.unwrap();
            seen
        };
        let (body, seen) = tokio::join!(drain(&mut client), client_side);
        assert_eq!(seen, b"HTTP/1.1 100 Continue\r\n\r\n");
        assert_eq!(body.unwrap(), b"abc");
        // Once the final response came, no 100 Continue is owed.
        assert_eq!(client.end_continue(), b"");
    }
}
