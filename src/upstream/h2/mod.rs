//! HTTP/2 to upstreams, on the `h2` crate: `h2c://` (prior knowledge), and `https://` when the
//! upstream picks `h2` by ALPN. A call's place on a connection comes from the pool ([`pool`]);
//! its head is written once the connection is in hand ([`head`]); its body goes up with flow
//! control ([`send`]), a copy of its start kept to send again ([`replay`]).
//!
//! **Memory.** What an upstream can send the gateway for one call is bounded by the call's
//! receive window ([`STREAM_WINDOW`]), reserved from the process-wide budget
//! (`server.max_buffered_bytes`, [`crate::net::Budget`]) for as long as the call is open, and
//! the gateway gives window back only as the client takes the bytes: a client that stops
//! reading stops the upstream, and holds no more than that window. A connection's window is its
//! calls' windows together, so that stalled calls never stall the others on it.
//!
//! **Connections.** A connection that is closing (the upstream sent GOAWAY, or it was lost)
//! takes no new calls. A request it never sent goes to another connection; one it sent fails
//! with 502, unless it has no body and an idempotent method, which is sent once more on another
//! connection (as nginx and Go's client retry HTTP/1.1). Calls in flight on a connection that
//! received GOAWAY finish there. Keep-alive pings go only on connections with calls open (a
//! black-holed upstream is noticed) and never to the client: the client's `idle_timeout` is
//! untouched.

pub mod head;
pub mod pool;
pub mod replay;
pub mod send;

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use h2::RecvStream;
use tokio::time::Instant;
use tracing::debug;

pub use head::H2Head;
pub use pool::{Call, H2Conns, MAX_CONNECTIONS};

use super::h1::{Conn, Stream};
use super::{Origin, ProxyError, Uploading};
use pool::{H2Conn, HTTP1, HTTP2, UNKNOWN};
use send::H2Upload;

/// An exchange with an HTTP/2 upstream.
#[derive(Debug)]
pub(crate) struct H2Way {
    /// The call's place on its connection, freed with the exchange.
    pub(crate) call: Call,
    pub(crate) head: H2Head,
    /// The response body, once the head came.
    pub(crate) recv: Option<RecvStream>,
    /// Bytes received and not yet taken (their window not yet given back).
    pub(crate) chunk: Bytes,
    /// The trailers were given: the end comes next.
    pub(crate) trailers: bool,
    pub(crate) upload: Uploading<H2Upload>,
}

impl H2Way {
    pub(crate) fn release(&mut self, n: usize) {
        if let Some(recv) = &mut self.recv {
            let _ = recv.flow_control().release_capacity(n);
        }
    }
}

/// Each call's receive window: what an upstream may send for a call before the client has
/// taken it (and what the call reserves from the budget).
pub const STREAM_WINDOW: u32 = 256 * 1024;
/// Pings on a connection with calls open.
const KEEP_ALIVE: Duration = Duration::from_secs(300);
/// An unanswered keep-alive ping closes the connection after this long.
const PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Connections a call may find closing before it gives up (each is another connection).
const UNSENT_TRIES: usize = 4;

impl Origin {
    /// True when requests go to this upstream over HTTP/2: `h2c://`, or an `https://`
    /// upstream that picked `h2`.
    fn speaks_h2(&self) -> bool {
        match &self.tls {
            None => self.h2c,
            Some(_) => self.pool.h2.picked.load(Ordering::Acquire) == HTTP2,
        }
    }

    /// True when a request goes over HTTP/2; `upgrade`: it offers a protocol switch, which
    /// needs HTTP/1.1 where the upstream has it (an `h2c://` one has not).
    pub fn h2_for(&self, upgrade: bool) -> bool {
        self.speaks_h2() && !(upgrade && self.tls.is_some())
    }

    /// The scheme of HTTP/2 requests to this upstream.
    pub fn h2_scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// False for an `https://` upstream whose protocol is not known yet (no connection made):
    /// [`Origin::learn_protocol`] first.
    pub fn knows_protocol(&self) -> bool {
        self.tls.is_none() || self.pool.h2.picked.load(Ordering::Acquire) != UNKNOWN
    }

    /// Connects to an `https://` upstream offering `h2` and `http/1.1`, and keeps the
    /// connection for what it picked (an HTTP/1.1 one goes to the pool of idle connections).
    pub async fn learn_protocol(&self) -> Result<(), ProxyError> {
        let deadline = Instant::now() + self.connect_timeout;
        // Within `server.max_connecting`, like any connect; a connection made while another
        // request learned the protocol is kept all the same.
        let _slot = tokio::time::timeout_at(deadline, self.connecting.acquire())
            .await
            .map_err(|_| connect_timed_out())?;
        if self.knows_protocol() {
            return Ok(());
        }
        if let Some(conn) = self.connect_h2(deadline).await? {
            self.keep_h2(conn);
        }
        Ok(())
    }

    /// A place for a call at once, if the budget and a connection have room.
    pub(crate) fn h2_call_now(&self, now: Instant) -> Option<Call> {
        let window = self.budget.try_reserve(STREAM_WINDOW as usize)?;
        let call = self.pool.h2.take(self.max_streams, now)?;
        Some(call.with_window(window))
    }

    /// A place for a call, before `deadline`: the call's window from the budget, then a
    /// connection with room (a new one when none has, up to [`MAX_CONNECTIONS`], else waiting
    /// for a call to end).
    pub(crate) async fn h2_call(&self, deadline: Instant) -> Result<Call, ProxyError> {
        let window = match self.budget.try_reserve(STREAM_WINDOW as usize) {
            Some(w) => w,
            None => self
                .budget
                .reserve(STREAM_WINDOW as usize, deadline)
                .await
                .ok_or(ProxyError::Overloaded)?,
        };
        let conns = &self.pool.h2;
        loop {
            let room = conns.room();
            tokio::pin!(room);
            room.as_mut().enable();
            if let Some(call) = conns.take(self.max_streams, Instant::now()) {
                return Ok(call.with_window(window));
            }
            if !conns.may_open() {
                // Every connection is full: wait for a call to end.
                tokio::time::timeout_at(deadline, room)
                    .await
                    .map_err(|_| connect_timed_out())?;
                continue;
            }
            let _one = tokio::time::timeout_at(deadline, conns.connecting.lock())
                .await
                .map_err(|_| connect_timed_out())?;
            // Another call may have connected meanwhile.
            if let Some(call) = conns.take(self.max_streams, Instant::now()) {
                return Ok(call.with_window(window));
            }
            if !conns.may_open() {
                continue;
            }
            if self.tls.is_some() && conns.picked.load(Ordering::Acquire) == HTTP1 {
                // The upstream picked http/1.1 while this call waited.
                return Err(picked_http1());
            }
            let _slot = tokio::time::timeout_at(deadline, self.connecting.acquire())
                .await
                .map_err(|_| connect_timed_out())?;
            let conn = self.connect_h2(deadline).await?.ok_or_else(picked_http1)?;
            let call = Call::on(conn.clone());
            self.keep_h2(conn);
            return Ok(call.with_window(window));
        }
    }

    /// Puts a new connection in the pool (and starts the pool's reaper).
    fn keep_h2(&self, conn: Arc<H2Conn>) {
        self.pool.h2.keep(conn);
        self.pool.start_reaper();
    }

    /// A new HTTP/2 connection; `None` when an `https://` upstream picked `http/1.1` (that
    /// connection goes to the pool of idle HTTP/1.1 connections).
    async fn connect_h2(&self, deadline: Instant) -> Result<Option<Arc<H2Conn>>, ProxyError> {
        let stream = self.connect_stream(deadline, true).await?;
        if let Stream::Tls(tls) = &stream {
            let picked = match tls.get_ref().1.alpn_protocol() {
                Some(b"h2") => HTTP2,
                _ => HTTP1,
            };
            self.pool.h2.picked.store(picked, Ordering::Release);
            if picked == HTTP1 {
                debug!(upstream = %self.addr, "upstream picked http/1.1");
                self.pool.release(Conn::new(stream));
                return Ok(None);
            }
        }
        let calls = u32::try_from(self.max_streams).unwrap_or(u32::MAX);
        let handshake = h2::client::Builder::new()
            .enable_push(false)
            .initial_window_size(STREAM_WINDOW)
            // Every call's window together: stalled calls never stall the others.
            .initial_connection_window_size(
                STREAM_WINDOW.saturating_mul(calls).min(i32::MAX as u32),
            )
            .max_header_list_size(crate::wire::MAX_RESPONSE_HEAD as u32)
            .max_send_buffer_size(STREAM_WINDOW as usize)
            .handshake::<_, Bytes>(stream);
        let (send, conn) = tokio::time::timeout_at(deadline, handshake)
            .await
            .map_err(|_| connect_timed_out())?
            .map_err(|e| ProxyError::Connect(io::Error::other(e)))?;
        let closed = Arc::new(AtomicBool::new(false));
        let h2 = Arc::new(H2Conn::new(send, closed.clone(), &self.pool.h2));
        tokio::spawn(drive(conn, Arc::downgrade(&h2), closed, self.addr.clone()));
        Ok(Some(h2))
    }
}

/// Runs a connection until it ends: its frames, and a keep-alive ping every [`KEEP_ALIVE`]
/// while calls are open (no answer within [`PING_TIMEOUT`] closes it). Marks it closed at the
/// end, so that no new call takes it.
async fn drive(
    mut conn: h2::client::Connection<Stream, Bytes>,
    state: Weak<H2Conn>,
    closed: Arc<AtomicBool>,
    addr: Box<str>,
) {
    let mut pings = conn.ping_pong();
    let mut tick = tokio::time::interval_at(Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    let mut waiting: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let ended = poll_fn(|cx| {
        if let Poll::Ready(r) = Pin::new(&mut conn).poll(cx) {
            return Poll::Ready(r.map_err(|e| e.to_string()));
        }
        let Some(pings) = &mut pings else {
            return Poll::Pending;
        };
        if let Some(timeout) = &mut waiting {
            match pings.poll_pong(cx) {
                Poll::Ready(Ok(_)) => waiting = None,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.to_string())),
                Poll::Pending => {
                    if timeout.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err("keep-alive ping unanswered".to_owned()));
                    }
                }
            }
        }
        while tick.poll_tick(cx).is_ready() {
            let busy = state.upgrade().is_some_and(|c| c.calls() > 0);
            if busy && waiting.is_none() && pings.send_ping(h2::Ping::opaque()).is_ok() {
                waiting = Some(Box::pin(tokio::time::sleep(PING_TIMEOUT)));
                // Poll the pong (and the timer) once, so that they wake this task.
                cx.waker().wake_by_ref();
            }
        }
        Poll::Pending
    })
    .await;
    closed.store(true, Ordering::Release);
    if let Err(e) = ended {
        debug!(upstream = %addr, error = %e, "HTTP/2 upstream connection ended");
    }
}

/// True when the upstream did not process the request: a GOAWAY (without error) that excluded
/// its stream or came before it opened, or `REFUSED_STREAM` (RFC 9113 §8.7). A GOAWAY with an
/// error code is not taken as proof: h2 also resets the streams in flight below its last stream
/// id with it when the connection then closes, and those may have been processed.
pub(crate) fn unprocessed(e: &h2::Error) -> bool {
    (e.is_go_away() && e.is_remote() && e.reason() == Some(h2::Reason::NO_ERROR))
        || (e.is_reset() && e.is_remote() && e.reason() == Some(h2::Reason::REFUSED_STREAM))
}

fn picked_http1() -> ProxyError {
    ProxyError::Connect(io::Error::other(
        "the upstream picked http/1.1 instead of h2; requests go over HTTP/1.1 from now on",
    ))
}

fn connect_timed_out() -> ProxyError {
    ProxyError::Connect(io::Error::new(
        io::ErrorKind::TimedOut,
        "no HTTP/2 connection within connect_timeout",
    ))
}
