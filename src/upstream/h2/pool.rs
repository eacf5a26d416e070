//! One upstream's HTTP/2 connections ([`H2Conns`], kept over reloads with the HTTP/1.1 pool):
//! each carries at most `server.upstream_max_streams` calls (or fewer, when the upstream's own
//! `SETTINGS_MAX_CONCURRENT_STREAMS` says so), at most [`MAX_CONNECTIONS`] are open at once, and
//! one without calls for [`IDLE_FOR`] is dropped (h2 then closes it). A [`Call`] is a call's
//! place on a connection, held until the call's response ends.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::net::Reserved;
use crate::upstream::IDLE_FOR;

/// Most HTTP/2 connections open at once to one upstream: with the default stream limit, 6,400
/// calls at once. A call that finds every one of them full waits for room (within
/// `connect_timeout`), so that a flood of calls cannot open connections without bound.
pub const MAX_CONNECTIONS: usize = 64;

/// What an `https://` upstream picked by ALPN (an `h2c://` one speaks HTTP/2 from the start).
pub(crate) const UNKNOWN: u8 = 0;
pub(crate) const HTTP1: u8 = 1;
pub(crate) const HTTP2: u8 = 2;

/// One upstream's HTTP/2 connections.
#[derive(Debug, Default)]
pub struct H2Conns {
    conns: Mutex<Vec<Arc<H2Conn>>>,
    /// One connect at a time.
    pub(crate) connecting: tokio::sync::Mutex<()>,
    /// For `https://`: the protocol the upstream picked last.
    pub(crate) picked: AtomicU8,
    /// Told when a call ends (calls waiting for room at [`MAX_CONNECTIONS`]); each connection
    /// holds it too.
    pub(crate) room: Arc<Notify>,
}

impl H2Conns {
    /// The first usable connection with fewer than `max` calls, its place taken.
    pub(crate) fn take(&self, max: usize, now: Instant) -> Option<Call> {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.retain(|c| c.usable(now));
        let conn = conns.iter().find(|c| c.has_room(max))?;
        Some(Call::on(conn.clone()))
    }

    /// True when another connection may be opened.
    pub(crate) fn may_open(&self) -> bool {
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).len() < MAX_CONNECTIONS
    }

    /// Keeps a new connection.
    pub(crate) fn keep(&self, conn: Arc<H2Conn>) {
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
    }

    /// Completes when a call ends (listen before looking, as for [`Notify`]).
    pub(crate) fn room(&self) -> tokio::sync::futures::Notified<'_> {
        self.room.notified()
    }

    /// Drops closed and long-unused connections (the pool's reaper).
    pub(crate) fn prune(&self, now: Instant) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.retain(|c| c.usable(now));
    }

    /// Connections open now (tests, metrics).
    pub fn open(&self) -> usize {
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// One HTTP/2 connection to an upstream.
#[derive(Debug)]
pub(crate) struct H2Conn {
    pub(crate) send: h2::client::SendRequest<Bytes>,
    /// Calls open on it.
    open: AtomicUsize,
    /// Its task ended (closed, lost, or the keep-alive ping went unanswered).
    pub(crate) closed: Arc<AtomicBool>,
    /// Closing: a request came back unsent or unprocessed (a GOAWAY, `REFUSED_STREAM`).
    pub(crate) retired: AtomicBool,
    /// When its last call ended.
    idle_since: Mutex<Instant>,
    /// The pool's [`H2Conns::room`].
    room: Arc<Notify>,
}

impl H2Conn {
    pub(crate) fn new(
        send: h2::client::SendRequest<Bytes>,
        closed: Arc<AtomicBool>,
        conns: &H2Conns,
    ) -> H2Conn {
        H2Conn {
            send,
            open: AtomicUsize::new(0),
            closed,
            retired: AtomicBool::new(false),
            idle_since: Mutex::new(Instant::now()),
            room: conns.room.clone(),
        }
    }

    /// Calls open now.
    pub(crate) fn calls(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    fn has_room(&self, max: usize) -> bool {
        // The upstream's own limit, once its SETTINGS came (h2 starts from "unlimited").
        let theirs = self.send.current_max_send_streams();
        self.calls() < max.min(theirs.max(1))
    }

    fn usable(&self, now: Instant) -> bool {
        if self.closed.load(Ordering::Acquire) || self.retired.load(Ordering::Acquire) {
            return false;
        }
        self.calls() > 0 || {
            let since = *self.idle_since.lock().unwrap_or_else(|e| e.into_inner());
            now.saturating_duration_since(since) < IDLE_FOR
        }
    }
}

/// A call's place on an HTTP/2 connection, freed when dropped (when the call's response ends,
/// or the call fails).
#[derive(Debug)]
pub struct Call {
    pub(crate) conn: Arc<H2Conn>,
    /// The call's receive window, reserved from the budget while the call is open.
    window: Option<Reserved>,
}

impl Call {
    /// A place on `conn` (counted before the connection is shared, for a new one).
    pub(crate) fn on(conn: Arc<H2Conn>) -> Call {
        conn.open.fetch_add(1, Ordering::AcqRel);
        Call { conn, window: None }
    }

    /// The same place, holding `window` from the budget until it is freed.
    pub(crate) fn with_window(mut self, window: Reserved) -> Call {
        self.window = Some(window);
        self
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if self.conn.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self
                .conn
                .idle_since
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Instant::now();
        }
        self.conn.room.notify_waiters();
    }
}
