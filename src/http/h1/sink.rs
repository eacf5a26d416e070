//! A forwarded response as HTTP/1.1 bytes for the client: its head as the pipeline planned it
//! ([`response_head`]), then its body in the client's framing (the [`Sink`] of the one relay):
//! small pieces are gathered after the head and go out in one write, a large piece goes
//! straight from the upstream's buffer, a body of unknown length is re-chunked (or, for an
//! HTTP/1.0 client, sent until the connection closes). An HTTP/1.x client gets no trailers: an
//! HTTP/2 upstream's are dropped (as Envoy and nginx's `proxy_pass` do).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::HeaderMap;

use super::client::{Client, ClientFraming};
use super::Transport;
use crate::http::relay::Sink;
use crate::ops::access::Decorations;
use crate::pipeline::response::{self, Body, Plan};
use crate::upstream::h1::Head;
use crate::upstream::Exchange;
use crate::wire::{self, ResponseHead, Version};

/// A body's pieces up to this size gather before one write (after the head, the first ones).
const COALESCE: usize = 16 * 1024;

/// The status line.
pub(super) fn status_line(out: &mut Vec<u8>, status: u16, reason: &str) {
    out.extend_from_slice(b"HTTP/1.1 ");
    wire::push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `content-length: n`.
pub(super) fn content_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"content-length: ");
    wire::push_decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

/// Writes the client's response head for the upstream's `head` as `plan` says into `out`, all
/// but the `Connection` field and the final empty line (the connection loop knows those), and
/// says how the body goes to a client speaking `version`.
pub fn response_head(
    out: &mut Vec<u8>,
    head: &ResponseHead<'_, '_>,
    plan: &Plan,
    version: Version,
    deco: &Decorations,
) -> ClientFraming {
    status_line(out, head.status, head.reason);
    response::write_fields(head.headers, plan, deco, &mut Head(out));
    if let Some(n) = plan.length {
        content_length(out, n);
    }
    match plan.body {
        Body::Tunnel => {
            out.extend_from_slice(b"connection: upgrade\r\n");
            ClientFraming::Tunnel
        }
        Body::None | Body::Length(_) => ClientFraming::Plain,
        Body::Stream if version == Version::Http11 => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
            ClientFraming::Chunked
        }
        Body::Stream => ClientFraming::UntilClose,
    }
}

impl<T: Transport> Client<'_, T> {
    /// Writes what is gathered in `out`.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.pos < self.out.len() {
            let n = ready!(Pin::new(&mut *self.io).poll_write(cx, &self.out[self.pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pos += n;
        }
        self.out.clear();
        self.pos = 0;
        Poll::Ready(Ok(()))
    }

    fn chunked(&self) -> bool {
        self.framing == ClientFraming::Chunked
    }
}

impl<T: Transport> Sink for Client<'_, T> {
    fn poll_data(&mut self, cx: &mut Context<'_>, relay: &mut Exchange) -> Poll<io::Result<()>> {
        loop {
            if self.left > 0 {
                // A large piece, straight from the upstream's buffer, after what is gathered
                // (its chunk header).
                ready!(self.poll_drain(cx))?;
                let data = relay.data();
                let data = &data[..self.left.min(data.len())];
                let n = ready!(Pin::new(&mut *self.io).poll_write(cx, data))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                relay.consume(n);
                self.left -= n;
                if self.left == 0 && self.chunked() {
                    self.out.extend_from_slice(b"\r\n");
                }
                return Poll::Ready(Ok(()));
            }
            let data = relay.data();
            let n = data.len();
            // A chunk's framing is at most 20 bytes.
            if self.out.len() - self.pos + n + 20 <= COALESCE {
                if self.chunked() {
                    wire::push_chunk(&mut self.out, data);
                } else {
                    self.out.extend_from_slice(data);
                }
                relay.consume(n);
                return Poll::Ready(Ok(()));
            }
            if self.pos < self.out.len() {
                ready!(self.poll_drain(cx))?;
                continue;
            }
            if self.chunked() {
                let mut header = [0u8; 18];
                self.out
                    .extend_from_slice(wire::chunk_header(n, &mut header));
            }
            self.left = n;
        }
    }

    fn trailers(&mut self, _trailers: HeaderMap) -> io::Result<()> {
        // HTTP/1.x clients get no trailers (see the module docs).
        Ok(())
    }

    fn poll_end(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.ended {
            self.ended = true;
            if self.chunked() {
                self.out.extend_from_slice(wire::LAST_CHUNK);
            }
        }
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut *self.io).poll_flush(cx)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut *self.io).poll_flush(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::response::{plan, Asked};
    use crate::wire::{header_slots, parse_response, response_framing};

    /// The client's head for the upstream's `raw` head, and how its body goes.
    fn head_for(raw: &str, head_request: bool, version: Version) -> (String, ClientFraming) {
        let mut slots = header_slots();
        let head = parse_response(raw.as_bytes(), &mut slots[..64])
            .unwrap()
            .unwrap();
        let framing = response_framing(&head, head_request).unwrap();
        let asked = Asked {
            head: head_request,
            upgrade: None,
        };
        let plan = plan(&head, &framing, asked).unwrap();
        let mut out = Vec::new();
        let framing = response_head(&mut out, &head, &plan, version, &Decorations::default());
        (String::from_utf8(out).unwrap(), framing)
    }

    #[test]
    fn the_clients_head_and_framing() {
        let (h, f) = head_for(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive, x-hop\r\nX-Hop: 1\r\nX-App: a\r\n\r\n",
            false,
            Version::Http11,
        );
        assert_eq!(f, ClientFraming::Plain);
        assert!(h.starts_with("HTTP/1.1 200 OK\r\n"), "{h}");
        assert!(
            h.contains("X-App: a\r\n") && h.contains("content-length: 5\r\n"),
            "{h}"
        );
        assert!(!h.contains("X-Hop") && !h.contains("Connection"), "{h}");
        // A body of unknown length: re-chunked for HTTP/1.1, until the close for HTTP/1.0.
        let raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let (h, f) = head_for(raw, false, Version::Http11);
        assert_eq!(f, ClientFraming::Chunked);
        assert!(h.contains("transfer-encoding: chunked\r\n"), "{h}");
        let (h, f) = head_for(raw, false, Version::Http10);
        assert_eq!(f, ClientFraming::UntilClose);
        assert!(!h.contains("transfer-encoding"), "{h}");
        // HEAD keeps the declared length, with no body.
        let (h, f) = head_for(
            "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
            true,
            Version::Http11,
        );
        assert_eq!(f, ClientFraming::Plain);
        assert!(h.contains("content-length: 9\r\n"), "{h}");
    }
}
