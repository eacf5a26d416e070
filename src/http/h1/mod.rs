//! Serving one HTTP/1.x client connection, request after request:
//!
//! 1. wait for a request head (`header_read_timeout` for the first; `idle_timeout` between
//!    keep-alive requests, then `header_read_timeout` once a head has begun); an idle
//!    connection holds no buffer, and a drain closes it;
//! 2. parse it ([`wire::parse_head`]) and let the pipeline decide ([`Pipeline::decide`]),
//!    synchronously, on the bytes where they lie: the upstream's request head comes out, or an
//!    answer, or a refusal ([`render`] writes those);
//! 3. forward ([`crate::upstream`]): the request body ([`body`]) is decoded and re-framed for the
//!    upstream, the response head is rewritten for the client as [`response::plan`] says, the
//!    response body streams back (small ones go out with the head in one write);
//! 4. keep the connection for the next request, or close it (`Connection: close`, HTTP/1.0, a
//!    refused or half-sent body, a drain, an upstream that broke off).
//!
//! A `101 Switching Protocols` the pipeline accepted turns the connection into a tunnel. A
//! connection that starts with the HTTP/2 preface is handed to [`super::h2`] (h2c by prior
//! knowledge).
//!
//! An idle keep-alive connection is a task waiting for readiness with no buffer: the rare
//! paths (refusals, failures, tunnels, lingering) run boxed, so that the task is sized for the
//! common one, and buffers are lent by per-thread pools ([`crate::net::buffers`]) only while
//! bytes are in flight.
//!
//! The gateway writes its own framing on both sides and never forwards a client's framing
//! bytes, so a body is never parsed as a request by either side (request smuggling).

mod body;
mod input;
pub mod render;
mod to_h2;

use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::debug;

use body::ClientBody;
use input::Input;
use render::ClientFraming;

use super::Outcome;
use crate::net::Closing;
use crate::net::{buffers, Deadline, IdleIo};
use crate::ops::access::Record;
use crate::pipeline::response::{self, Asked};
use crate::pipeline::upgrade::Offer;
use crate::pipeline::{ClientInfo, LocalResponse, Protocol, Rejection, RequestView};
use crate::policy::Route;
use crate::runtime::{Gateway, Runtime};
use crate::upstream::{self as proxy, Answer, ProxyError, RequestKind, ResponseBody, Upload};
use crate::wire::{self, Framing, HeadError, Version};

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

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A response body up to this size that is already read goes out with the head, in one write.
const COALESCE: usize = 16 * 1024;

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
        out: Vec::new(),
        client_deadline: Deadline::new(),
        upstream_deadline: Deadline::new(),
    };
    async move {
        let ending = conn.run().await;
        let read = conn.input.take_all();
        buffers::give_out(std::mem::take(&mut conn.out));
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

enum Run {
    Closed,
    Http2,
}

/// Waiting on a connection with nothing read: a drain closes it, and so does `timeout`.
fn idle(
    cx: &mut Context<'_>,
    deadline: &mut Deadline,
    closing: Pin<&mut tokio::sync::futures::Notified<'_>>,
    timeout: Duration,
) -> Poll<Wait> {
    if closing.poll(cx).is_ready() {
        return Poll::Ready(Wait::Close);
    }
    deadline.arm_after(timeout);
    match deadline.poll_expired(cx) {
        Poll::Ready(()) => Poll::Ready(Wait::Close),
        Poll::Pending => Poll::Pending,
    }
}

/// The settings a wait for a request head needs (copied, so that the wait holds no config).
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_header_bytes: usize,
    idle_timeout: Duration,
    header_read_timeout: Duration,
}

impl Limits {
    fn of(server: &crate::config::ServerConfig) -> Limits {
        Limits {
            max_header_bytes: server.max_header_bytes,
            idle_timeout: server.idle_timeout,
            header_read_timeout: server.header_read_timeout,
        }
    }
}

/// What waiting for a head gave.
enum Wait {
    /// The buffer may hold a complete head.
    Head,
    /// Close quietly: EOF, timeout, drain, an I/O error.
    Close,
    /// The head is larger than `max_header_bytes`.
    TooLarge,
    /// The HTTP/2 preface.
    Http2,
    /// More empty lines before a request line than a client ever sends.
    Blank,
}

/// Whether the connection carries another request.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    KeepAlive,
    Close,
    /// Close, after letting the client finish sending what it was sending (a refused body).
    Linger,
}

/// The connection's task stays small while it waits for the next request (what an idle
/// keep-alive connection costs): the rare paths (refusals, failures, tunnels, lingering) run
/// boxed, so that the task's future is sized for the common one.
struct Connection<T> {
    io: T,
    gateway: Arc<Gateway>,
    client: ClientInfo,
    closing: Arc<Closing>,
    input: Input,
    /// Heads the gateway writes (to the upstream, then to the client).
    out: Vec<u8>,
    client_deadline: Deadline,
    /// The exchanges' timer (the response head, then a stalled response or tunnel write),
    /// kept between requests: re-arming a timer costs an atomic store, allocating and
    /// registering a new one per request costs a few hundred instructions.
    upstream_deadline: Deadline,
}

/// A parsed, checked request: what the exchange needs after the head's bytes are gone.
struct Planned<'r> {
    outcome: Outcome<'r>,
    record: Record,
    head_len: usize,
    framing: Framing,
    version: Version,
    keep_alive: bool,
    expect_continue: bool,
    kind: RequestKind,
}

#[allow(clippy::large_enum_variant)] // lives on the stack for one request, never boxed
enum Step<'r> {
    /// The head is not complete yet.
    More,
    /// Not a request the gateway can read (400/431); the connection closes.
    Unreadable(Rejection),
    Planned(Planned<'r>),
}

impl<T: Transport> Connection<T> {
    /// Request after request. Only the wait for a head runs inline: it is what an idle
    /// connection's task holds. A request, once its head is in, runs boxed (the box lives as
    /// long as the exchange), and so do the endings.
    async fn run(&mut self) -> Run {
        let mut first = true;
        'requests: loop {
            // While waiting, only the limits of the config current now are needed; the request
            // itself runs on the config current when its head is in (a reload during a long
            // keep-alive wait applies to the next request).
            let limits = Limits::of(&self.gateway.current().config.server);
            let refusal = match self.wait_head(first, limits).await {
                Wait::Head => None,
                Wait::Close => return Run::Closed,
                Wait::Http2 => return Run::Http2,
                Wait::TooLarge => Some(Rejection::HeadersTooLarge),
                Wait::Blank => Some(Rejection::BadRequest("empty lines instead of a request")),
            };
            if let Some(e) = refusal {
                Box::pin(self.refuse(e, Record::new("-"))).await;
                return Run::Closed;
            }
            if self.out.capacity() == 0 {
                self.out = buffers::take_out();
            }
            self.out.clear();
            let rt = self.gateway.current();
            let (mut waited, mut learned) = (false, false);
            let planned = loop {
                let pause = match plan(&rt, self.input.data(), &self.client, &mut self.out) {
                    Step::More => {
                        self.input.scanned = self.input.len();
                        continue 'requests;
                    }
                    Step::Unreadable(e) => {
                        Box::pin(self.refuse(e, Record::new("-"))).await;
                        return Run::Closed;
                    }
                    Step::Planned(p) => {
                        let route = &p.record.route;
                        match super::pause_for(&rt, &p.outcome, route, &mut waited, &mut learned) {
                            Some(pause) => pause,
                            None => break p,
                        }
                    }
                };
                // An unknown `kid` while its provider's keys are being fetched, or an https://
                // upstream not yet connected to (it may pick h2): decide again once the keys
                // are in or the protocol is known. Only the boxed wait is held across it (the
                // largest of this task's waits sets the size of every idle connection).
                let go_on = Box::pin(super::pause(rt.clone(), pause)).await;
                self.out.clear();
                if !go_on {
                    // The upstream could not be reached: the request's answer.
                    let Step::Planned(mut p) =
                        plan(&rt, self.input.data(), &self.client, &mut self.out)
                    else {
                        return Run::Closed;
                    };
                    p.outcome = Outcome::Refuse(Rejection::UpstreamUnavailable);
                    break p;
                }
            };
            first = false;
            if !Box::pin(self.exchange(&rt, planned)).await {
                return Run::Closed;
            }
        }
    }

    /// Carries out what the pipeline decided for a request whose head is in; true when the
    /// connection waits for another request.
    async fn exchange(&mut self, rt: &Runtime, planned: Planned<'_>) -> bool {
        self.input.consume(planned.head_len);
        self.input.scanned = 0;
        if self.input.is_empty() {
            // Nothing after the head yet: the exchange holds no read buffer while it waits for
            // the upstream (a body takes one when it arrives).
            self.input.release();
        }
        self.client_deadline.disarm();
        let Planned {
            outcome,
            mut record,
            head_len: _,
            framing,
            version,
            keep_alive,
            expect_continue,
            kind,
        } = planned;
        let next = match outcome {
            Outcome::Forward { route, upgrade, h2 } => {
                let request = Request {
                    route,
                    upgrade,
                    record,
                    framing,
                    version,
                    keep_alive,
                    expect_continue,
                    kind,
                };
                match h2 {
                    Some(head) => Box::pin(self.forward_h2(rt, request, *head)).await,
                    None => self.forward(rt, request).await,
                }
            }
            Outcome::Refuse(e) => {
                self.gateway.count_refusal(&e, &mut record);
                self.answer_here(
                    &e.response_to(record.grpc),
                    record,
                    framing,
                    keep_alive,
                    kind,
                )
                .await
            }
            Outcome::Answer(local) => {
                self.answer_here(&local, record, framing, keep_alive, kind)
                    .await
            }
        };
        match next {
            Next::KeepAlive if !self.closing.is_set() => {
                if self.input.is_empty() {
                    // Idle until the next request: hold no buffers.
                    self.input.release();
                    buffers::give_out(std::mem::take(&mut self.out));
                }
                true
            }
            Next::KeepAlive | Next::Close => {
                self.shutdown().await;
                false
            }
            Next::Linger => {
                self.linger().await;
                false
            }
        }
    }

    /// Waits until the buffer may hold a complete head.
    async fn wait_head(&mut self, first: bool, limits: Limits) -> Wait {
        let (idle_timeout, head_timeout) = (limits.idle_timeout, limits.header_read_timeout);
        let limit = limits.max_header_bytes;
        let mut closing = pin!(self.closing.notified());
        // Empty lines left after the last request (an old client's CRLF after a body) do not
        // start a head.
        let mut blank = self.input.skip_empty_lines();
        if blank > wire::MAX_EMPTY_LINES {
            return Wait::Blank;
        }
        if self.input.is_empty() {
            self.input.release();
        }
        let mut head_started = !self.input.is_empty();
        // Waiting with nothing read: header_read_timeout for a new connection, idle_timeout
        // between requests.
        let wait_idle = if first { head_timeout } else { idle_timeout };
        poll_fn(|cx| loop {
            if !self.input.is_empty() {
                if first
                    && PREFACE
                        .starts_with(&self.input.data()[..self.input.len().min(PREFACE.len())])
                {
                    if self.input.len() >= PREFACE.len() {
                        return Poll::Ready(Wait::Http2);
                    }
                } else if wire::may_be_complete(self.input.data(), self.input.scanned) {
                    return Poll::Ready(Wait::Head);
                } else {
                    // Searched: the next search starts here (it looks back two bytes).
                    self.input.scanned = self.input.len();
                }
                if self.input.len() >= limit {
                    return Poll::Ready(Wait::TooLarge);
                }
            } else {
                // Idle: a drain closes the connection; nothing is buffered while waiting.
                if self.closing.is_set() {
                    return Poll::Ready(Wait::Close);
                }
                match self.io.poll_read_ready(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(_)) => return Poll::Ready(Wait::Close),
                    Poll::Pending => {
                        return idle(cx, &mut self.client_deadline, closing.as_mut(), wait_idle)
                    }
                }
            }
            match self.input.poll_read(&mut self.io, cx, limit) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Wait::Close),
                Poll::Ready(Ok(_)) => {
                    blank += self.input.skip_empty_lines();
                    if blank > wire::MAX_EMPTY_LINES {
                        return Poll::Ready(Wait::Blank);
                    }
                    if !head_started && !first {
                        // A head began: from now on it has header_read_timeout to complete.
                        head_started = true;
                        self.client_deadline.disarm();
                    }
                }
                Poll::Pending if self.input.is_empty() => {
                    self.input.release();
                    return idle(cx, &mut self.client_deadline, closing.as_mut(), wait_idle);
                }
                Poll::Pending => {
                    self.client_deadline.arm_after(head_timeout);
                    return match self.client_deadline.poll_expired(cx) {
                        Poll::Ready(()) => Poll::Ready(Wait::Close),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        })
        .await
    }

    /// Answers a request the gateway cannot read (400/431) and closes.
    async fn refuse(&mut self, e: Rejection, mut record: Record) {
        self.gateway.count_refusal(&e, &mut record);
        self.respond(&e.response(), record, true, false).await;
        self.linger().await;
    }

    /// Writes the gateway's own answer (its head only, for a `HEAD` request).
    async fn respond(
        &mut self,
        local: &LocalResponse,
        mut record: Record,
        close: bool,
        head: bool,
    ) {
        // A refusal in gRPC form is a 200 on the wire, counted as the refusal it is.
        let status = local.reported;
        record.status = status;
        self.gateway.count(&record, status);
        let mut out = buffers::take_out();
        let body = render::write_local(&mut out, local, close, head);
        let idle = self.gateway.current().config.server.idle_timeout;
        let written = write_all(&mut self.io, &out, &mut self.client_deadline, idle).await;
        buffers::give_out(out);
        record.log(body as u64, written.is_ok());
    }

    /// Answers a request the gateway does not forward, and says what becomes of the connection:
    /// a request's unread body must never be parsed as the next request.
    async fn answer_here(
        &mut self,
        local: &LocalResponse,
        record: Record,
        framing: Framing,
        keep_alive: bool,
        kind: RequestKind,
    ) -> Next {
        let close = framing != Framing::Empty || !keep_alive;
        self.respond(local, record, close, kind.head).await;
        match (framing, close) {
            (Framing::Empty, false) => Next::KeepAlive,
            (Framing::Empty, true) => Next::Close,
            _ => Next::Linger,
        }
    }

    /// Closes the write side (a TLS close_notify), giving up on a peer that does not read.
    async fn shutdown(&mut self) {
        let _ = tokio::time::timeout(LINGER_TIME, self.io.shutdown()).await;
    }

    /// After a refusal with a body still coming: stop writing, then read and drop what the
    /// client still sends for a moment, so that it sees the answer instead of a reset (as
    /// nginx's lingering close).
    async fn linger(&mut self) {
        self.shutdown().await;
        // A pooled buffer: a 4 KiB array here would make every connection's task that big.
        let mut sink = buffers::take_in();
        let drained = async {
            let mut total = 0usize;
            while total < LINGER_BYTES {
                match tokio::io::AsyncReadExt::read(&mut self.io, &mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
        };
        let _ = tokio::time::timeout(LINGER_TIME, drained).await;
        buffers::give_in(sink);
    }

    async fn forward(&mut self, rt: &Runtime, req: Request<'_>) -> Next {
        let server = &rt.config.server;
        let mut source = ClientBody::new(
            &mut self.io,
            &mut self.input,
            &mut self.client_deadline,
            &req,
            server,
        );
        let Request {
            route,
            upgrade,
            mut record,
            framing,
            version,
            keep_alive,
            expect_continue: _,
            kind,
        } = req;
        let origin = rt.origin(route);
        let sent = Instant::now();
        // The upstream's head is in `out`; the client's head is written into `reply`.
        let mut reply = buffers::take_out();
        let asked = Asked {
            head: kind.head,
            upgrade: upgrade.as_ref(),
        };
        let answer = origin
            .exchange(
                &mut self.upstream_deadline,
                &self.out,
                &mut source,
                framing,
                kind,
                sent,
                |head, framing| {
                    let plan = response::plan(head, framing, asked)?;
                    Ok(render::response_head(&mut reply, head, &plan, version))
                },
            )
            .await;
        let body_read = source.is_done();
        // No `100 Continue` after the final response; the rest of one begun goes out first.
        let continue_rest = source.end_continue();
        source.deadline.disarm();
        // The upstream's deadline is done with; the client's writes get their own.
        self.upstream_deadline.disarm();
        let Answer {
            mut conn,
            head: client_framing,
            framing: upstream_framing,
            mut upload,
            status,
        } = match answer {
            Ok(a) => a,
            Err(e) => {
                buffers::give_out(reply);
                let idle = server.idle_timeout;
                if write_all(&mut self.io, continue_rest, &mut self.client_deadline, idle)
                    .await
                    .is_err()
                {
                    return Next::Close;
                }
                let reusable = keep_alive && body_read;
                return Box::pin(self.forward_failed(e, record, route, kind, reusable)).await;
            }
        };
        reply.splice(0..0, continue_rest.iter().copied());
        record.upstream = Some(sent.elapsed());
        let reusable = proxy::reusable(&upstream_framing, upload.is_some());
        record.status = status;
        self.gateway.count(&record, status);

        let keep = finish_head(
            &mut reply,
            keep_alive && upload.is_none() && !self.closing.is_set(),
            client_framing,
            version,
        );
        let idle = server.idle_timeout;

        if client_framing == ClientFraming::Tunnel {
            let written = write_all(source.io, &reply, &mut self.upstream_deadline, idle).await;
            buffers::give_out(reply);
            record.log(0, written.is_ok());
            if written.is_ok() {
                Box::pin(self.tunnel(conn, idle, &route.name)).await;
            }
            return Next::Close;
        }

        // What is already read of the body goes out with the head.
        let chunked = client_framing == ClientFraming::Chunked;
        let mut bytes = 0u64;
        let mut broken = false;
        loop {
            match conn.buffered_body() {
                Ok(Some([])) => {
                    if chunked {
                        reply.extend_from_slice(wire::LAST_CHUNK);
                    }
                    break;
                }
                Ok(Some(data)) if reply.len() + data.len() <= COALESCE => {
                    let n = data.len();
                    if chunked {
                        wire::push_chunk(&mut reply, data);
                    } else {
                        reply.extend_from_slice(data);
                    }
                    conn.consume(n);
                    bytes += n as u64;
                }
                Ok(_) => break,
                Err(_) => {
                    broken = true;
                    break;
                }
            }
        }
        let written = write_all(&mut *source.io, &reply, &mut self.upstream_deadline, idle).await;
        buffers::give_out(reply);
        broken |= written.is_err();
        if !broken && !conn.body_done() {
            // The rest of the response streams as it comes, while the rest of the request body
            // (if the upstream answered early) keeps going up.
            let mut relay = Upload::new(if chunked {
                Framing::Chunked
            } else {
                Framing::UntilClose
            });
            let mut progress = (0, 0);
            let deadline = &mut self.upstream_deadline;
            let head = &self.out;
            let streamed = poll_fn(|cx| {
                if let Some(u) = &mut upload {
                    match conn.poll_upload(cx, u, head, &mut source) {
                        Poll::Ready(Ok(())) => upload = None,
                        // The upstream stopped taking the body (or the client broke it off):
                        // the response still goes out; the connections close afterwards.
                        Poll::Ready(Err(_)) => broken_upload(&mut upload),
                        Poll::Pending => {}
                    }
                }
                let polled = relay.poll(cx, &mut *source.io, &[], &mut ResponseBody(&mut conn));
                if polled.is_pending() {
                    let now = (relay.written, upload.as_ref().map_or(0, |u| u.written));
                    if now != progress {
                        progress = now;
                        deadline.disarm();
                    }
                    deadline.arm_after(idle);
                    if deadline.poll_expired(cx).is_ready() {
                        return Poll::Ready(Err(ProxyError::Timeout));
                    }
                }
                polled
            })
            .await;
            self.upstream_deadline.disarm();
            bytes += relay.written;
            if let Err(e) = streamed {
                debug!(route = %route.name, error = %e, "response body not completed");
                broken = true;
            }
        }
        record.log(bytes, !broken);
        if broken {
            // A response cut short can only be signalled by closing.
            return Next::Close;
        }
        if upload.is_some() {
            // The upstream answered without reading the whole body: the rest is unread.
            return Next::Linger;
        }
        if reusable {
            origin.release(conn);
        }
        if keep {
            Next::KeepAlive
        } else {
            Next::Close
        }
    }

    /// Answers 502/504/400/413 for a failed exchange, or logs a client that went away.
    async fn forward_failed(
        &mut self,
        e: ProxyError,
        record: Record,
        route: &Route,
        kind: RequestKind,
        reusable: bool,
    ) -> Next {
        let client_side = matches!(e, ProxyError::Client(_));
        let Some(error) = e.into_rejection(&route.name) else {
            // 499: counted and logged, nobody to answer.
            self.gateway.count(&record, 499);
            record.log(0, false);
            return Next::Close;
        };
        // A request whose body was not all read cannot be followed by another one.
        let reusable = reusable && !client_side;
        self.respond(
            &error.response_to(record.grpc),
            record,
            !reusable,
            kind.head,
        )
        .await;
        if reusable {
            Next::KeepAlive
        } else {
            Next::Linger
        }
    }

    /// Joins the client and the upstream after `101 Switching Protocols`, until either side
    /// closes, nothing moves for `idle_timeout`, or the drain deadline passes.
    async fn tunnel(&mut self, conn: proxy::Conn, idle: Duration, route: &str) {
        let (upstream, early) = conn.into_tunnel();
        let mut closing = self.gateway.tunnel_handle();
        let pending = self.input.take_all();
        let mut client = IdleIo::new(&mut self.io, idle);
        let mut upstream = IdleIo::new(upstream, idle);
        let result = async {
            upstream.write_all(&pending).await?;
            upstream.flush().await?;
            client.write_all(&early).await?;
            client.flush().await?;
            tokio::io::copy_bidirectional(&mut client, &mut upstream).await
        };
        tokio::select! {
            r = result => debug!(route, result = ?r.map_err(|e| e.kind()), "tunnel closed"),
            _ = closing.wait_for(|closing| *closing) => debug!(route, "tunnel closed by the drain deadline"),
        }
    }
}

/// Ends the client's head of a forwarded response and says whether the connection carries
/// another request: `may_keep` (the client asked for keep-alive, its whole body was read and
/// no drain is under way: an answer that came before the whole request body closes the
/// connection, RFC 9112 §9.6, since the rest of the body may never be read) and a response
/// whose end the client can tell. `connection: close` unless kept, `connection: keep-alive` for
/// an HTTP/1.0 client whose connection is kept; a tunnel's `101` has its own.
fn finish_head(
    reply: &mut Vec<u8>,
    may_keep: bool,
    framing: ClientFraming,
    version: Version,
) -> bool {
    let keep = may_keep && framing != ClientFraming::UntilClose;
    match framing {
        ClientFraming::Tunnel => {}
        _ if !keep => reply.extend_from_slice(b"connection: close\r\n"),
        _ if version == Version::Http10 => reply.extend_from_slice(b"connection: keep-alive\r\n"),
        _ => {}
    }
    reply.extend_from_slice(b"\r\n");
    keep
}

/// Marks an upload that failed while the response was relayed: it stays `Some` (the request
/// was not all sent) but is never polled again.
fn broken_upload(upload: &mut Option<Upload>) {
    if let Some(u) = upload {
        u.stop();
    }
}

const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1024 * 1024;

/// What the exchange needs about a checked request.
struct Request<'r> {
    route: &'r Route,
    upgrade: Option<Offer>,
    record: Record,
    framing: Framing,
    version: Version,
    keep_alive: bool,
    expect_continue: bool,
    kind: RequestKind,
}

/// Parses the head at the start of `data` and lets the pipeline decide, writing the upstream's
/// request head into `out` for a request that goes there.
fn plan<'r>(rt: &'r Runtime, data: &[u8], client: &ClientInfo, out: &mut Vec<u8>) -> Step<'r> {
    let mut slots = wire::header_slots();
    let head = match wire::parse_head(data, &mut slots, rt.head_limits()) {
        Ok(Some(head)) => head,
        Ok(None) => return Step::More,
        Err(HeadError::TooLarge) => return Step::Unreadable(Rejection::HeadersTooLarge),
        Err(HeadError::Malformed(why)) => return Step::Unreadable(Rejection::BadRequest(why)),
    };
    let mut record = Record::new(head.method);
    let view = RequestView {
        method: head.method,
        target: head.target,
        authority: None,
        protocol: match head.version {
            Version::Http10 => Protocol::Http10,
            Version::Http11 => Protocol::Http11,
        },
        headers: head.headers,
        body: head.framing,
        client,
    };
    let outcome = super::decide(rt, &view, &mut record, out);
    Step::Planned(Planned {
        outcome,
        record,
        head_len: head.len,
        framing: head.framing,
        version: head.version,
        keep_alive: head.keep_alive,
        expect_continue: head.expect_continue,
        kind: RequestKind::new(head.method, head.framing),
    })
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
