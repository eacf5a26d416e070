//! One upstream's idle connections: handed out most recently used first, checked before reuse
//! (an upstream may have closed one while it sat idle), dropped after [`IDLE_FOR`], at most
//! [`MAX_IDLE`] kept. A pool outlives reloads that leave its upstream unchanged.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::h1::Conn;

/// Idle connections older than this are not reused.
pub const IDLE_FOR: Duration = Duration::from_secs(60);

/// Most idle connections kept per upstream.
const MAX_IDLE: usize = 1024;

/// The idle connections of one upstream.
#[derive(Debug)]
pub struct Pool {
    idle: Mutex<Vec<Idle>>,
    /// The HTTP/2 connections (`h2c://`, or `https://` when the upstream picks `h2`).
    pub(super) h2: super::h2::H2Conns,
    reaper: std::sync::Once,
    /// Told when a connection comes back (requests waiting for one, see `connect.rs`).
    released: Notify,
}

impl Default for Pool {
    fn default() -> Pool {
        Pool {
            idle: Mutex::default(),
            h2: super::h2::H2Conns::default(),
            reaper: std::sync::Once::new(),
            released: Notify::new(),
        }
    }
}

#[derive(Debug)]
struct Idle {
    conn: Conn,
    since: Instant,
}

impl Pool {
    /// The most recently used connection that is still usable at `now`.
    pub fn take(&self, now: Instant) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(Idle { mut conn, since }) = idle.pop() {
            if now.saturating_duration_since(since) < IDLE_FOR && conn.is_usable() {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps a connection whose exchange ended cleanly.
    pub fn release(self: &Arc<Self>, mut conn: Conn) {
        self.start_reaper();
        if !conn.is_clean() {
            // Bytes after the response: not a connection to trust with another request.
            return;
        }
        conn.reused = true;
        conn.shed();
        let since = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(Idle { conn, since });
            drop(idle);
            self.released.notify_one();
        }
    }

    /// Starts the task that drops expired and closed connections (once per pool).
    pub(super) fn start_reaper(self: &Arc<Self>) {
        self.reaper.call_once(|| {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(reap(Arc::downgrade(self)));
            }
        });
    }

    /// Completes when a connection comes back to the pool (or came back since the last one
    /// was taken without a waiter).
    pub fn released(&self) -> Notified<'_> {
        self.released.notified()
    }

    /// Idle connections now.
    pub fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Drops expired and closed idle connections every few seconds, so that an upstream's closed
/// connections do not linger while no request comes; ends with the pool.
async fn reap(pool: Weak<Pool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        let now = Instant::now();
        let mut idle = pool.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain_mut(|i| {
            now.saturating_duration_since(i.since) < IDLE_FOR && i.conn.is_usable()
        });
        drop(idle);
        pool.h2.prune(now);
    }
}
