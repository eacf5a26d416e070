//! Serving one HTTP/1.x client connection, request after request:
//!
//! 1. wait for a request head (`header_read_timeout` for the first; `idle_timeout` between
//!    keep-alive requests, then `header_read_timeout` once a head has begun); an idle
//!    connection holds no buffer, and a drain closes it;
//! 2. parse it ([`crate::wire::parse_head`]) and let the pipeline decide, on the bytes where they lie
//!    ([`crate::pipeline::Pipeline::decide`]): forward, answer, or refuse (`answer.rs`);
//! 3. forward: the request head is written for the upstream's protocol
//!    ([`crate::upstream::Origin::prepare`]), the read buffer let go, the upstream connection
//!    got ([`crate::upstream::Prepared::connect`]), the request body ([`client`]) is decoded and
//!    re-framed for the upstream, the response head is rewritten for the client as
//!    [`crate::pipeline::response::plan`] says and the rest relayed by the one relay
//!    ([`crate::http::relay`]) into this front-end's writer (`sink.rs`);
//! 4. keep the connection for the next request, or close it (`Connection: close`, HTTP/1.0, a
//!    refused or half-sent body, a drain, an upstream that broke off).
//!
//! A `101 Switching Protocols` the pipeline accepted turns the connection into a tunnel
//! (`tunnel.rs`). A connection that starts with the HTTP/2 preface is handed to [`super::h2`]
//! (h2c by prior knowledge).
//!
//! An idle keep-alive connection is a task waiting for readiness with no buffer: each request
//! and the rare endings run boxed, so that the task is sized for the wait, and buffers are lent
//! by per-thread pools ([`crate::net::buffers`]) only while bytes are in flight.
//!
//! The gateway writes its own framing on both sides and never forwards a client's framing
//! bytes, so a body is never parsed as a request by either side (request smuggling).

mod answer;
mod client;
mod conn;
mod input;
pub mod sink;
mod tunnel;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use std::future::poll_fn;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::net::{Closing, Deadline};
use crate::pipeline::ClientInfo;
use crate::runtime::Gateway;
use crate::upstream::RequestKind;
use crate::wire::{Framing, Version};
use conn::Run;
use input::Input;

pub use answer::write_local;

/// What a client connection can be read from and written to.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Ready when there may be something to read, without a read buffer (an idle connection
    /// holds none). The default says "maybe" at once.
    fn poll_read_ready(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Transport for TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }
}

impl Transport for tokio_rustls::server::TlsStream<TcpStream> {}

/// How a connection ended.
#[derive(Debug)]
pub enum Ending<T> {
    /// Closed (by either side, a timeout, or a drain).
    Closed,
    /// It began with the HTTP/2 preface: serve it as HTTP/2.
    Http2(Handoff<T>),
}

/// A connection that turned out to be HTTP/2, with what was read so far and what serving it
/// needs.
#[derive(Debug)]
pub struct Handoff<T> {
    /// The connection.
    pub io: T,
    /// The bytes read from it so far (the preface, and whatever followed).
    pub read: Vec<u8>,
    /// The gateway, the client and the drain signal, as the HTTP/1 side had them.
    pub gateway: Arc<Gateway>,
    /// See `gateway`.
    pub client: ClientInfo,
    /// See `gateway`.
    pub closing: Arc<Closing>,
}

/// The connection's task stays small while it waits for the next request (what an idle
/// keep-alive connection costs): each request runs boxed, and so do the rare endings, so that
/// the task's future is sized for the wait.
struct Connection<T> {
    io: T,
    gateway: Arc<Gateway>,
    client: ClientInfo,
    closing: Arc<Closing>,
    input: Input,
    client_deadline: Deadline,
    /// The exchanges' timer (the response head, then a stalled response or tunnel write),
    /// kept between requests: re-arming a timer costs an atomic store, allocating and
    /// registering a new one per request costs a few hundred instructions.
    upstream_deadline: Deadline,
}

/// Whether the connection carries another request.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    KeepAlive,
    Close,
    /// Close, after letting the client finish sending what it was sending (a refused body).
    Linger,
}

/// What the connection needs to know about a request once its head's bytes are gone.
#[derive(Debug, Clone, Copy)]
struct Facts {
    head_len: usize,
    framing: Framing,
    version: Version,
    keep_alive: bool,
    expect_continue: bool,
    kind: RequestKind,
}

/// Writes all of `bytes`, failing after `idle` without progress.
async fn write_all<T: AsyncWrite + Unpin>(
    io: &mut T,
    bytes: &[u8],
    deadline: &mut Deadline,
    idle: Duration,
) -> io::Result<()> {
    let mut pos = 0;
    deadline.disarm();
    let result = poll_fn(|cx| {
        while pos < bytes.len() {
            match Pin::new(&mut *io).poll_write(cx, &bytes[pos..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    pos += n;
                    deadline.disarm();
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    deadline.arm_after(idle);
                    ready!(deadline.poll_expired(cx));
                    return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
                }
            }
        }
        match Pin::new(&mut *io).poll_flush(cx) {
            Poll::Pending => {
                deadline.arm_after(idle);
                ready!(deadline.poll_expired(cx));
                Poll::Ready(Err(io::ErrorKind::TimedOut.into()))
            }
            ready => ready,
        }
    })
    .await;
    deadline.disarm();
    result
}

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves `io` until the connection closes (or turns out to be HTTP/2).
///
/// Not an `async fn`: the connection is built first and the future holds it once (an async
/// fn's future keeps its arguments beside the values made of them).
pub fn serve<T: Transport>(
    io: T,
    gateway: Arc<Gateway>,
    client: ClientInfo,
    closing: Arc<Closing>,
) -> impl Future<Output = Ending<T>> + Send {
    let mut conn = Connection {
        io,
        gateway,
        client,
        closing,
        input: Input::default(),
        client_deadline: Deadline::new(),
        upstream_deadline: Deadline::new(),
    };
    async move {
        let ending = conn.run().await;
        let read = conn.input.take_all();
        match ending {
            Run::Closed => Ending::Closed,
            Run::Http2 => Ending::Http2(Handoff {
                io: conn.io,
                read,
                gateway: conn.gateway,
                client: conn.client,
                closing: conn.closing,
            }),
        }
    }
}
