//! A client connection's read buffer.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use crate::net::buffers;
use crate::wire;

/// A connection's read buffer: taken from a per-thread pool when bytes arrive, given back when
/// it is empty, so idle connections hold none.
#[derive(Debug, Default)]
pub(super) struct Input {
    buf: Option<Box<[u8]>>,
    pos: usize,
    end: usize,
    /// Bytes of the pending head already searched for its end.
    pub(super) scanned: usize,
}

impl Input {
    pub(super) fn data(&self) -> &[u8] {
        match &self.buf {
            Some(b) => &b[self.pos..self.end],
            None => &[],
        }
    }

    pub(super) fn slice(&self, range: std::ops::Range<usize>) -> &[u8] {
        match &self.buf {
            Some(b) => &b[range],
            None => &[],
        }
    }

    pub(super) fn len(&self) -> usize {
        self.end - self.pos
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pos == self.end
    }

    pub(super) fn consume(&mut self, n: usize) {
        self.pos += n;
    }

    /// Consumes `n` bytes and returns where they are in the buffer (valid until the next read).
    pub(super) fn take(&mut self, n: usize) -> std::ops::Range<usize> {
        let at = self.pos;
        self.pos += n;
        at..at + n
    }

    /// Drops empty lines at the start of a head (see [`wire::skip_empty_lines`]); returns how
    /// many.
    pub(super) fn skip_empty_lines(&mut self) -> usize {
        let (bytes, lines) = wire::skip_empty_lines(self.data());
        if lines > 0 {
            self.pos += bytes;
            self.scanned = 0;
        }
        lines
    }

    pub(super) fn take_all(&mut self) -> Vec<u8> {
        let all = self.data().to_vec();
        self.pos = self.end;
        self.release();
        all
    }

    pub(super) fn release(&mut self) {
        if let Some(buf) = self.buf.take() {
            buffers::give_in(buf);
        }
        self.pos = 0;
        self.end = 0;
    }

    /// Reads more, keeping what is unread, growing the buffer up to `limit` bytes of unread
    /// data (more room than that is not needed to find a head's end).
    pub(super) fn poll_read<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        cx: &mut Context<'_>,
        limit: usize,
    ) -> Poll<io::Result<usize>> {
        let buf = self.buf.get_or_insert_with(buffers::take_in);
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        } else if self.end == buf.len() {
            if self.pos > 0 {
                buf.copy_within(self.pos..self.end, 0);
                self.end -= self.pos;
                self.pos = 0;
            } else if buf.len() < limit.saturating_add(1) {
                let mut bigger =
                    vec![0; (buf.len() * 2).min(limit.saturating_add(1).max(buf.len() + 1))]
                        .into_boxed_slice();
                bigger[..self.end].copy_from_slice(&buf[..self.end]);
                *buf = bigger;
            } else {
                return Poll::Ready(Err(io::Error::other("request head too large")));
            }
        }
        let mut rb = ReadBuf::new(&mut buf[self.end..]);
        ready!(Pin::new(io).poll_read(cx, &mut rb))?;
        let n = rb.filled().len();
        self.end += n;
        Poll::Ready(Ok(n))
    }
}
