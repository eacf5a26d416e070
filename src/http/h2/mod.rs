//! HTTP/2 (h2 by ALPN over TLS, h2c by prior knowledge), on the `h2` crate. One task per
//! connection drives the connection and all of its streams ([`serve`]): no task per request,
//! and each stream's request is decided by the same pipeline as HTTP/1, forwarded over the same
//! upstream pools, and relayed by the same relay ([`crate::http::relay`]); only the rendering
//! into HTTP/2 frames is this front-end's own ([`client`]).
//!
//! **Memory.** A client may open at most [`MAX_STREAMS`] streams at once. What it uploads waits
//! in a window of [`STREAM_WINDOW`] per stream and [`CONNECTION_WINDOW`] for the connection,
//! given back only as the bytes go upstream; what the gateway sends it is sent only as its
//! window allows (nothing piles up in the gateway for a client that does not read: the
//! upstream is told to wait instead). A stream on which nothing moves for `idle_timeout` is
//! reset. No keep-alive pings to clients: a client's `idle_timeout` is never held open by the
//! gateway.

mod client;
mod stream;

use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::config::ServerConfig;
use crate::net::{Closing, IdleIo};
use crate::pipeline::ClientInfo;
use crate::runtime::Gateway;

pub use client::local_response;

/// Most streams a client may have open at once on one connection (as HAProxy's and nginx's
/// defaults).
pub const MAX_STREAMS: u32 = 100;
/// A request stream's receive window: what a client may send ahead of the upstream taking it.
/// A 4 MiB gRPC message through a 256 KiB window went 25 % slower (`benches/h2_throughput.py`).
pub const STREAM_WINDOW: u32 = 1024 * 1024;
/// The connection's receive window, shared by its streams: what one client connection can make
/// the gateway hold of request bodies.
pub const CONNECTION_WINDOW: u32 = 2 * 1024 * 1024;
/// What the gateway queues for a client's stream beyond what it has written.
pub const SEND_BUFFER: usize = 256 * 1024;

/// The HTTP/2 settings of a listener, made once.
#[derive(Debug)]
pub struct Settings {
    builder: h2::server::Builder,
}

/// The HTTP/2 settings for `server`.
pub fn settings(server: &ServerConfig) -> Settings {
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(MAX_STREAMS)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_header_list_size(u32::try_from(server.max_header_bytes).unwrap_or(u32::MAX))
        // What the gateway queues for a client beyond its window (it sends only what the
        // window allows, so this is a ceiling, not a target).
        .max_send_buffer_size(SEND_BUFFER);
    Settings { builder }
}

/// Serves one HTTP/2 connection until it closes; a drain sends GOAWAY and lets open streams
/// finish.
pub async fn serve<I>(
    io: I,
    gateway: Arc<Gateway>,
    client: ClientInfo,
    closing: Arc<Closing>,
    settings: &Settings,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let idle = gateway.current().config.server.idle_timeout;
    let handshake = settings
        .builder
        .handshake::<_, Bytes>(IdleIo::new(io, idle));
    let mut conn = match handshake.await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::debug!(error = %e, "HTTP/2 handshake failed");
            return;
        }
    };
    let mut streams = FuturesUnordered::new();
    let mut drain = pin!(closing.notified());
    let mut draining = false;
    let ended = poll_fn(|cx| {
        if !draining && (closing.is_set() || drain.as_mut().poll(cx).is_ready()) {
            draining = true;
            conn.graceful_shutdown();
        }
        loop {
            match conn.poll_accept(cx) {
                Poll::Ready(Some(Ok((req, respond)))) => {
                    // Boxed: a stream's future (about 3 KB) is then moved as a pointer.
                    streams.push(Box::pin(stream::serve(&gateway, &client, req, respond)));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => break,
            }
        }
        while let Poll::Ready(Some(())) = streams.poll_next_unpin(cx) {}
        Poll::Pending
    })
    .await;
    if let Err(e) = ended {
        tracing::debug!(error = %e, "HTTP/2 connection ended with an error");
    }
}

/// Bytes already read (the preface sniffed on a plain connection), then the connection.
#[derive(Debug)]
pub struct Rewind<T> {
    read: Bytes,
    inner: T,
}

impl<T> Rewind<T> {
    /// `inner`, with `read` put back in front of it.
    pub fn new(read: Vec<u8>, inner: T) -> Rewind<T> {
        Rewind {
            read: Bytes::from(read),
            inner,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.read.is_empty() {
            let n = self.read.len().min(buf.remaining());
            buf.put_slice(&self.read[..n]);
            self.read.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
