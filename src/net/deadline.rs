//! Timeouts for waits on a peer.
//!
//! * [`Deadline`]: one reusable timer for whichever wait is current (a connection's: a request
//!   head, an idle keep-alive connection, a stalled body; an exchange's: the upstream's response
//!   head, a stalled response). It is armed lazily, only when an I/O call is about to wait, so
//!   requests whose bytes are already there never read the clock for it, and moving it later is
//!   an atomic store in Tokio's timer wheel, not a re-registration. Its timer is allocated the
//!   first time it is armed.
//! * [`IdleIo`]: an I/O wrapper that fails a connection on which nothing was read or written for
//!   `server.idle_timeout` while someone was waiting on it (HTTP/2 connections, which hyper
//!   drives).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A lazily armed deadline (see the module docs).
#[derive(Debug)]
pub struct Deadline {
    sleep: Option<Pin<Box<Sleep>>>,
    armed: Option<Instant>,
}

impl Default for Deadline {
    fn default() -> Self {
        Deadline::new()
    }
}

impl Deadline {
    /// A disarmed deadline (no timer yet).
    pub const fn new() -> Deadline {
        Deadline {
            sleep: None,
            armed: None,
        }
    }

    /// Arms the deadline at `at` (unless it already is).
    pub fn arm(&mut self, at: Instant) {
        if self.armed != Some(at) {
            match &mut self.sleep {
                Some(sleep) => sleep.as_mut().reset(at),
                None => self.sleep = Some(Box::pin(tokio::time::sleep_until(at))),
            }
            self.armed = Some(at);
        }
    }

    /// Arms the deadline `after` from now, unless it is armed already.
    pub fn arm_after(&mut self, after: Duration) {
        if self.armed.is_none() {
            self.arm(Instant::now() + after);
        }
    }

    /// Disarms it: the next wait starts a new deadline.
    pub fn disarm(&mut self) {
        self.armed = None;
    }

    /// True when armed.
    pub fn is_armed(&self) -> bool {
        self.armed.is_some()
    }

    /// Ready once the armed deadline has passed; never while disarmed.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match (self.armed, &mut self.sleep) {
            (Some(_), Some(sleep)) => sleep.as_mut().poll(cx),
            _ => Poll::Pending,
        }
    }
}

/// `T` with an idle timeout.
#[derive(Debug)]
pub struct IdleIo<T> {
    inner: T,
    timeout: Duration,
    last: Instant,
    timer: Pin<Box<Sleep>>,
}

impl<T> IdleIo<T> {
    /// Wraps `inner`; it fails with `TimedOut` after `timeout` without I/O.
    pub fn new(inner: T, timeout: Duration) -> IdleIo<T> {
        let last = Instant::now();
        IdleIo {
            inner,
            timeout,
            last,
            timer: Box::pin(tokio::time::sleep_until(last + timeout)),
        }
    }

    fn active(&mut self) {
        self.last = Instant::now();
    }

    /// Called when the inner I/O is not ready: has the connection been idle too long?
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            let due = self.last + self.timeout;
            if self.timer.deadline() != due {
                self.timer.as_mut().reset(due);
            }
            match self.timer.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) if Instant::now() >= self.last + self.timeout => {
                    return Poll::Ready(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "connection idle for longer than idle_timeout",
                    ))
                }
                // Activity since the timer was armed: re-arm and poll again.
                Poll::Ready(()) => continue,
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.active();
                }
                Poll::Ready(r)
            }
            Poll::Pending => self.poll_idle(cx).map(Err),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                if matches!(r, Ok(n) if n > 0) {
                    self.active();
                }
                Poll::Ready(r)
            }
            Poll::Pending => self.poll_idle(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                if matches!(r, Ok(n) if n > 0) {
                    self.active();
                }
                Poll::Ready(r)
            }
            Poll::Pending => self.poll_idle(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.poll_idle(cx).map(Err),
            ready => ready,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
