//! The one relay: after the upstream's response head, [`relay`] moves every piece of the
//! response ([`Piece`]) into the front-end's [`Sink`], and the rest of the request body up from
//! the same front-end (its [`BodySource`]: one client connection or stream does both), whatever
//! the protocols on either side, under one idle deadline: nothing moving either way for
//! `idle_timeout` ends it (a client that stops reading holds nothing past that).

use std::future::poll_fn;
use std::io;
use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderMap;

use crate::net::Deadline;
use crate::upstream::{BodySource, Exchange, Piece, ProxyError};

/// Where a front-end writes a forwarded response's pieces, in its own syntax (HTTP/1.1 bytes on
/// a socket, HTTP/2 frames on a stream).
pub trait Sink {
    /// Takes some of `relay.data()` (it is not empty): ready once some was taken, pending
    /// while the client cannot take more.
    fn poll_data(&mut self, cx: &mut Context<'_>, relay: &mut Exchange) -> Poll<io::Result<()>>;
    /// The upstream's trailers.
    fn trailers(&mut self, trailers: HeaderMap) -> io::Result<()>;
    /// Ends the response (and pushes everything out).
    fn poll_end(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Pushes out what was written, while the upstream has nothing more yet.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Ready when the client is gone (an HTTP/2 stream it reset).
    fn poll_gone(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

/// Why a relay ended early.
#[derive(Debug)]
pub enum Cut {
    /// The upstream broke off mid-response.
    Upstream(ProxyError),
    /// Writing to the client failed.
    Client(io::Error),
    /// Nothing moved for `idle_timeout`.
    Idle,
    /// The client is gone.
    Gone,
}

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cut::Upstream(e) => write!(f, "upstream: {e}"),
            Cut::Client(e) => write!(f, "client: {e}"),
            Cut::Idle => f.write_str("nothing moved for idle_timeout"),
            Cut::Gone => f.write_str("client went away"),
        }
    }
}

/// Relays the rest of the response from `relay` into the client (and the rest of the request
/// body from it): ok once the response ended at the client.
pub async fn relay<C: Sink + BodySource>(
    relay: &mut Exchange,
    client: &mut C,
    deadline: &mut Deadline,
    idle: Duration,
) -> Result<(), Cut> {
    deadline.disarm();
    let mut moved = (relay.bytes, relay.upload_progress());
    let mut ended = false;
    let result = poll_fn(|cx| loop {
        if client.poll_gone(cx).is_ready() {
            return Poll::Ready(Err(Cut::Gone));
        }
        if ended {
            if let Poll::Ready(r) = client.poll_end(cx) {
                return Poll::Ready(r.map_err(Cut::Client));
            }
        } else if !relay.data().is_empty() {
            match client.poll_data(cx, relay) {
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Cut::Client(e))),
                // The client is not taking more: the upload may still move.
                Poll::Pending => relay.poll_upload(cx, client),
            }
        } else {
            match relay.poll_piece(cx, client) {
                Poll::Ready(Ok(Piece::Data)) => continue,
                Poll::Ready(Ok(Piece::Trailers(t))) => {
                    if let Err(e) = client.trailers(t) {
                        return Poll::Ready(Err(Cut::Client(e)));
                    }
                    continue;
                }
                Poll::Ready(Ok(Piece::End)) => {
                    ended = true;
                    continue;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Cut::Upstream(e))),
                Poll::Pending => {
                    // What was written goes out while the upstream is quiet.
                    if let Poll::Ready(Err(e)) = client.poll_flush(cx) {
                        return Poll::Ready(Err(Cut::Client(e)));
                    }
                }
            }
        }
        // Waiting on the client or the upstream.
        let now = (relay.bytes, relay.upload_progress());
        if now != moved {
            moved = now;
            deadline.disarm();
        }
        deadline.arm_after(idle);
        return match deadline.poll_expired(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Cut::Idle)),
            Poll::Pending => Poll::Pending,
        };
    })
    .await;
    deadline.disarm();
    result
}
