//! Forwarding: the only step of a request that does I/O with the upstream. An HTTP/1.1 client
//! with a keep-alive pool per upstream: it sends the head the pipeline wrote, streams the
//! request body (re-framed), reads the response head, and hands out the response body as it
//! arrives; `101 Switching Protocols` hands over the raw connection for a tunnel.
//!
//! Failures map to 502 (refused, reset, garbage, connect timeout) and 504 (no response head
//! within `upstream_timeout` of the request being sent, or of the upstream last taking body
//! bytes while the gateway had some to give: an upstream that stops reading an upload is slow
//! too). An upstream that answers before it has read the whole request body gets no more of it,
//! and its connection is not reused.
//!
//! The pool hands out the most recently used connection first, checks that the upstream has not
//! closed it while it sat idle, and drops connections idle for [`IDLE_FOR`]. A request without
//! a body whose reused connection turns out closed before any response byte arrived is retried
//! once on a new connection, if its method is idempotent (RFC 9110 §9.2.2), as nginx and Go's
//! client do.

use std::collections::HashMap;
use std::future::poll_fn;
use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tracing::{debug, warn};

use crate::pipeline::rejection::GatewayError;

use crate::config::Config;
use crate::net::Deadline;
use crate::policy::routes::Route;
use crate::wire::{self, Chunk, ChunkedDecoder, Framing, ResponseFraming, ResponseHead};

/// Idle connections older than this are not reused.
pub const IDLE_FOR: Duration = Duration::from_secs(60);

/// Most idle connections kept per upstream.
const MAX_IDLE: usize = 1024;

/// Read buffer of an upstream connection (grown for larger response heads).
const BUFFER: usize = 16 * 1024;

/// The upstream pools of one configuration: one per distinct upstream (scheme, authority and
/// TLS settings), shared by the routes that point there.
#[derive(Debug)]
pub struct Upstreams {
    by_route: Vec<Arc<Origin>>,
}

impl Upstreams {
    /// Pools for every route of `config`.
    pub fn new(config: &Config) -> Upstreams {
        let mut origins: HashMap<(String, usize), Arc<Origin>> = HashMap::new();
        let mut by_route: Vec<(usize, Arc<Origin>)> = Vec::new();
        for route in config.routes.iter() {
            let tls = route
                .tls
                .clone()
                .unwrap_or_else(crate::runtime::tls::default_client_config);
            let key = (
                route.upstream.to_string().to_ascii_lowercase(),
                Arc::as_ptr(&tls) as usize,
            );
            let origin = origins
                .entry(key)
                .or_insert_with(|| Arc::new(Origin::new(route, tls, config)))
                .clone();
            by_route.push((route.id, origin));
        }
        // Route ids are the positions 0..n of the routes: sorted, they index the pools.
        by_route.sort_unstable_by_key(|(id, _)| *id);
        Upstreams {
            by_route: by_route.into_iter().map(|(_, origin)| origin).collect(),
        }
    }

    /// The pool of `route`'s upstream.
    pub fn for_route(&self, route: &Route) -> &Arc<Origin> {
        &self.by_route[route.id]
    }
}

/// One upstream: where to connect, how, and its idle connections.
pub struct Origin {
    /// `host:port`, resolved at each connect.
    addr: Box<str>,
    /// For `https://`: the connector and the name to verify (`None`: not a valid server name,
    /// which config validation refuses; connecting fails rather than fall back to plain TCP).
    tls: Option<(TlsConnector, Option<ServerName<'static>>)>,
    connect_timeout: Duration,
    /// Time allowed for the response head.
    pub upstream_timeout: Duration,
    idle: Mutex<Vec<Idle>>,
    reaper: std::sync::Once,
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Origin")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// Why forwarding failed.
#[derive(Debug)]
pub enum ProxyError {
    /// No connection: refused, unreachable, connect timeout, TLS handshake (502).
    Connect(io::Error),
    /// The connection closed or failed before any response byte (502; a reused connection
    /// may be retried).
    Closed(io::Error),
    /// The upstream broke off or sent something that is not HTTP/1.1 (502).
    Protocol(&'static str),
    /// No response head in time (504).
    Timeout,
    /// The client's request body failed.
    Client(SourceError),
    /// The client went away while the gateway waited for the upstream.
    Abandoned,
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyError::Connect(e) => write!(f, "connect failed: {e}"),
            ProxyError::Closed(e) => write!(f, "connection closed: {e}"),
            ProxyError::Protocol(why) => f.write_str(why),
            ProxyError::Timeout => f.write_str("no response head within upstream_timeout"),
            ProxyError::Client(e) => write!(f, "request body: {e:?}"),
            ProxyError::Abandoned => f.write_str("client went away"),
        }
    }
}

impl ProxyError {
    /// The answer for this failure (logged here, with the route); `None` when the client went
    /// away and there is nobody to answer.
    pub fn into_gateway_error(self, route: &str) -> Option<GatewayError> {
        Some(match self {
            ProxyError::Abandoned | ProxyError::Client(SourceError::Broken) => {
                debug!(route, "client went away");
                return None;
            }
            ProxyError::Timeout => {
                warn!(
                    route,
                    "upstream sent no response head within upstream_timeout"
                );
                GatewayError::UpstreamTimeout
            }
            ProxyError::Client(SourceError::TooLarge) => {
                debug!(route, "request body over max_body_bytes");
                GatewayError::PayloadTooLarge
            }
            ProxyError::Client(SourceError::Malformed(why)) => {
                debug!(route, why, "request body failed");
                GatewayError::BadRequest("malformed or incomplete request body")
            }
            e @ (ProxyError::Connect(_) | ProxyError::Closed(_) | ProxyError::Protocol(_)) => {
                warn!(route, error = %e, "upstream request failed");
                GatewayError::UpstreamUnavailable
            }
        })
    }
}

/// Why a request body from the client could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceError {
    /// Malformed (a bad chunk) or cut short: the client's fault (400).
    Malformed(&'static str),
    /// Over the route's `max_body_bytes` (413).
    TooLarge,
    /// The client stopped sending for `idle_timeout`, or its connection failed.
    Broken,
}

/// A request body the gateway sends upstream: buffered bytes, given out and then consumed,
/// like `AsyncBufRead`.
pub trait BodySource {
    /// Polls for body bytes: an empty slice once the body is complete.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<&[u8], SourceError>>;
    /// Marks the first `n` bytes of the last fill as sent.
    fn consume(&mut self, n: usize);
    /// While waiting for the response: ready when the client has gone away.
    fn poll_abandoned(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

/// A request without a body.
#[derive(Debug)]
pub struct NoBody;

impl BodySource for NoBody {
    fn poll_fill(&mut self, _cx: &mut Context<'_>) -> Poll<Result<&[u8], SourceError>> {
        Poll::Ready(Ok(&[]))
    }

    fn consume(&mut self, _n: usize) {}
}

/// The upstream's answer to [`Origin::exchange`].
#[derive(Debug)]
pub struct Answer<R> {
    /// The connection, positioned at the response body.
    pub conn: Conn,
    /// What `on_head` made of the response head.
    pub head: R,
    /// The response's framing.
    pub framing: ResponseFraming,
    /// The rest of the request body, when the upstream answered before it was all sent: the
    /// caller goes on sending it (with the same head and source) while it relays the response;
    /// an upstream that streams its answer to a streamed request needs both at once.
    pub upload: Option<Upload>,
    /// The response status.
    pub status: u16,
}

impl Origin {
    fn new(route: &Route, tls: Arc<rustls::ClientConfig>, config: &Config) -> Origin {
        let https = route.upstream.scheme_str() == Some("https");
        let authority = route.upstream.authority().map_or("", |a| a.as_str());
        let host = route.upstream.host().unwrap_or("");
        let addr = match route.upstream.port_u16() {
            Some(_) => authority.to_owned(),
            None => format!("{authority}:{}", if https { 443 } else { 80 }),
        };
        let tls = https.then(|| (TlsConnector::from(tls), server_name(host)));
        Origin {
            addr: addr.into_boxed_str(),
            tls,
            connect_timeout: config.server.connect_timeout,
            upstream_timeout: config.server.upstream_timeout,
            idle: Mutex::default(),
            reaper: std::sync::Once::new(),
        }
    }

    /// Sends a request (`head`, then the body from `body`, framed as `framing`) and waits for
    /// the response head, which `on_head` sees before its bytes are consumed. `deadline` is
    /// the caller's upstream deadline, reused across requests; `sent` is when forwarding began.
    #[allow(clippy::too_many_arguments)]
    pub async fn exchange<S: BodySource, R>(
        self: &Arc<Self>,
        deadline: &mut Deadline,
        request_head: &[u8],
        body: &mut S,
        framing: Framing,
        request: RequestKind,
        sent: Instant,
        mut on_head: impl FnMut(&ResponseHead<'_, '_>, &ResponseFraming) -> R,
    ) -> Result<Answer<R>, ProxyError> {
        let mut conn = match self.take_idle(sent) {
            Some(conn) => conn,
            // Boxed: a TLS handshake's state is large, and new connections are rare.
            None => Box::pin(self.connect()).await?,
        };
        loop {
            let sent_on = self
                .send(
                    &mut conn,
                    deadline,
                    request_head,
                    body,
                    framing,
                    request,
                    sent,
                    &mut on_head,
                )
                .await;
            let answered = match sent_on {
                // Once, on a new connection (which is not `reused`, so not a second time).
                Err(ProxyError::Closed(e)) if conn.reused && request.retryable => {
                    debug!(upstream = %self.addr, error = %e, "reused connection was closed; retrying");
                    conn = Box::pin(self.connect()).await?;
                    continue;
                }
                other => other?,
            };
            let (head, response_framing, status, upload) = answered;
            return Ok(Answer {
                conn,
                head,
                framing: response_framing,
                upload,
                status,
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn send<S: BodySource, R>(
        &self,
        conn: &mut Conn,
        deadline: &mut Deadline,
        head: &[u8],
        body: &mut S,
        framing: Framing,
        request: RequestKind,
        sent: Instant,
        on_head: &mut impl FnMut(&ResponseHead<'_, '_>, &ResponseFraming) -> R,
    ) -> Result<(R, ResponseFraming, u16, Option<Upload>), ProxyError> {
        conn.responded = false;
        let mut upload = Some(Upload::new(framing));
        deadline.disarm();
        let timeout = self.upstream_timeout;
        let mut progress = 0;
        poll_fn(|cx| {
            if let Some(u) = &mut upload {
                let polled = u.poll(cx, &mut conn.io, head, body);
                if u.progress() != progress {
                    // The upstream took bytes: its upstream_timeout starts again.
                    progress = u.progress();
                    deadline.disarm();
                }
                match polled {
                    Poll::Ready(Ok(())) => {
                        upload = None;
                        deadline.disarm();
                        if framing != Framing::Empty {
                            // upstream_timeout runs from the end of the body.
                            deadline.arm_after(timeout);
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending if u.writer_blocked => deadline.arm_after(timeout),
                    // Waiting for the client: not the upstream's time.
                    Poll::Pending => deadline.disarm(),
                }
            }
            // An answer (even an early one) ends the exchange.
            if let Poll::Ready(r) = conn.poll_head(cx, request.head, on_head) {
                return Poll::Ready(r.map(|(h, f, s)| (h, f, s, upload.take())));
            }
            if upload.is_none() {
                if body.poll_abandoned(cx).is_ready() {
                    return Poll::Ready(Err(ProxyError::Abandoned));
                }
                if !deadline.is_armed() {
                    // No body: upstream_timeout runs from when the request was forwarded.
                    deadline.arm(sent + timeout);
                }
            }
            match deadline.poll_expired(cx) {
                Poll::Ready(()) => Poll::Ready(Err(ProxyError::Timeout)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    fn take_idle(&self, now: Instant) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(Idle { mut conn, since }) = idle.pop() {
            if now.saturating_duration_since(since) < IDLE_FOR && conn.is_usable() {
                return Some(conn);
            }
        }
        None
    }

    /// Returns a connection whose exchange ended cleanly to the pool.
    pub fn release(self: &Arc<Self>, mut conn: Conn) {
        if conn.pos != conn.end || !conn.body_done() {
            // Bytes after the response: not a connection to trust with another request.
            return;
        }
        conn.reused = true;
        self.reaper.call_once(|| {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(reap(Arc::downgrade(self)));
            }
        });
        let since = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(Idle { conn, since });
        }
    }

    async fn connect(&self) -> Result<Conn, ProxyError> {
        let connect = async {
            let tcp = TcpStream::connect(&*self.addr).await?;
            tcp.set_nodelay(true)?;
            let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(60));
            socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive)?;
            Ok::<_, io::Error>(match &self.tls {
                None => Stream::Tcp(tcp),
                Some((connector, Some(name))) => {
                    Stream::Tls(Box::new(connector.connect(name.clone(), tcp).await?))
                }
                Some((_, None)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "upstream host is not a valid TLS server name",
                    ))
                }
            })
        };
        match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(io)) => Ok(Conn::new(io)),
            Ok(Err(e)) => Err(ProxyError::Connect(e)),
            Err(_) => Err(ProxyError::Connect(io::Error::new(
                io::ErrorKind::TimedOut,
                "connect_timeout",
            ))),
        }
    }
}

/// The name an `https://` upstream's certificate is verified against: its URL's host (an IPv6
/// literal without brackets). `None` when rustls cannot use it.
pub fn server_name(host: &str) -> Option<ServerName<'static>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).ok()
}

/// Drops expired and closed idle connections every few seconds, so that an upstream's closed
/// connections do not linger while no request comes; ends with its configuration.
async fn reap(origin: Weak<Origin>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let Some(origin) = origin.upgrade() else {
            return;
        };
        let now = Instant::now();
        let mut idle = origin.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain_mut(|i| {
            now.saturating_duration_since(i.since) < IDLE_FOR && i.conn.is_usable()
        });
    }
}

/// What the upstream needs to know about the request to read its answer and to retry it.
#[derive(Debug, Clone, Copy)]
pub struct RequestKind {
    /// A `HEAD` request (its response has no body, whatever it declares).
    pub head: bool,
    /// No body and an idempotent method: safe to send again on a new connection.
    pub retryable: bool,
}

impl RequestKind {
    /// The kind of a request with `method` and a body framed as `framing`.
    pub fn new(method: &str, framing: Framing) -> RequestKind {
        RequestKind {
            head: method == "HEAD",
            retryable: framing == Framing::Empty
                && matches!(
                    method,
                    "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
                ),
        }
    }
}

/// Writes a body from a [`BodySource`] to `W`, chunk-framed or as it is: the request body to
/// the upstream, and the response body to an HTTP/1 client.
#[derive(Debug)]
pub struct Upload {
    chunked: bool,
    /// The declared length, enforced: the source may give neither more nor less.
    length: Option<u64>,
    /// Bytes of the prefix (the request head) written.
    prefix_pos: usize,
    /// Framing bytes to write before anything else (a chunk header, a CRLF, the last chunk).
    frame: [u8; 18],
    frame_len: u8,
    frame_pos: u8,
    /// Bytes of the current piece still to write.
    left: usize,
    finished: bool,
    /// Body bytes written so far.
    pub written: u64,
    stopped: bool,
    /// The last `Pending` was the writer not taking bytes (rather than the source not having
    /// any).
    pub writer_blocked: bool,
}

impl Upload {
    /// Writes the body chunk-framed (`Framing::Chunked`), as it is (`Length`, `UntilClose`),
    /// or not at all (`Empty`).
    pub fn new(framing: Framing) -> Upload {
        Upload {
            chunked: framing == Framing::Chunked,
            length: match framing {
                Framing::Length(n) => Some(n),
                _ => None,
            },
            prefix_pos: 0,
            frame: [0; 18],
            frame_len: 0,
            frame_pos: 0,
            left: 0,
            finished: framing == Framing::Empty,
            written: 0,
            stopped: false,
            writer_blocked: false,
        }
    }

    /// Bytes written so far, head and framing included.
    pub fn progress(&self) -> u64 {
        self.prefix_pos as u64 + self.written + u64::from(self.frame_pos)
    }

    /// Stops the upload for good: every later poll stays pending.
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    fn set_frame(&mut self, bytes: &[u8]) {
        self.frame[..bytes.len()].copy_from_slice(bytes);
        self.frame_len = bytes.len() as u8;
        self.frame_pos = 0;
    }

    /// Polls the copy forward: ready once `prefix` (a request head, or nothing) and the whole
    /// body are written and flushed.
    pub fn poll<S: BodySource, W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut W,
        prefix: &[u8],
        body: &mut S,
    ) -> Poll<Result<(), ProxyError>> {
        let write_failed = ProxyError::Closed;
        if self.stopped {
            return Poll::Pending;
        }
        loop {
            if self.prefix_pos < prefix.len() {
                // The source is asked first: a body refused at once (over the limit, malformed)
                // leaves the upstream with nothing, and body bytes already there go out with
                // the head in one write.
                let first = if self.finished {
                    None
                } else {
                    match body.poll_fill(cx) {
                        Poll::Ready(Ok(data)) => Some(data),
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(ProxyError::Client(e))),
                        Poll::Pending => None,
                    }
                };
                let rest = &prefix[self.prefix_pos..];
                self.writer_blocked = true;
                let n = match first {
                    Some(data)
                        if !data.is_empty()
                            && !self.chunked
                            && self.length.is_none_or(|n| data.len() as u64 <= n) =>
                    {
                        let bufs = [io::IoSlice::new(rest), io::IoSlice::new(data)];
                        ready!(Pin::new(&mut *io).poll_write_vectored(cx, &bufs))
                            .map_err(write_failed)?
                    }
                    _ => ready!(Pin::new(&mut *io).poll_write(cx, rest)).map_err(write_failed)?,
                };
                if n == 0 {
                    return Poll::Ready(Err(ProxyError::Closed(io::ErrorKind::WriteZero.into())));
                }
                let from_prefix = n.min(rest.len());
                self.prefix_pos += from_prefix;
                if n > from_prefix {
                    body.consume(n - from_prefix);
                    self.written += (n - from_prefix) as u64;
                }
                continue;
            }
            if self.frame_pos < self.frame_len {
                let bytes = &self.frame[usize::from(self.frame_pos)..usize::from(self.frame_len)];
                self.writer_blocked = true;
                let n = ready!(Pin::new(&mut *io).poll_write(cx, bytes)).map_err(write_failed)?;
                if n == 0 {
                    return Poll::Ready(Err(ProxyError::Closed(io::ErrorKind::WriteZero.into())));
                }
                self.frame_pos += n as u8;
                continue;
            }
            if self.finished {
                self.writer_blocked = true;
                ready!(Pin::new(&mut *io).poll_flush(cx)).map_err(write_failed)?;
                return Poll::Ready(Ok(()));
            }
            self.writer_blocked = false;
            let data = match body.poll_fill(cx) {
                Poll::Ready(Ok(data)) => data,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(ProxyError::Client(e))),
                Poll::Pending => {
                    // Push out what was written while the source is slow.
                    self.writer_blocked = true;
                    ready!(Pin::new(&mut *io).poll_flush(cx)).map_err(write_failed)?;
                    self.writer_blocked = false;
                    return Poll::Pending;
                }
            };
            if self
                .length
                .is_some_and(|n| self.written + data.len() as u64 > n)
            {
                return Poll::Ready(Err(ProxyError::Client(SourceError::Malformed(
                    "body longer than its Content-Length",
                ))));
            }
            if self.left == 0 {
                if data.is_empty() {
                    if self.length.is_some_and(|n| self.written != n) {
                        return Poll::Ready(Err(ProxyError::Client(SourceError::Malformed(
                            "body shorter than its Content-Length",
                        ))));
                    }
                    self.finished = true;
                    if self.chunked {
                        self.set_frame(wire::LAST_CHUNK);
                    }
                    continue;
                }
                self.left = data.len();
                if self.chunked {
                    let mut header = [0u8; 18];
                    self.set_frame(wire::chunk_header(data.len(), &mut header));
                    continue;
                }
            }
            let data = &data[..self.left.min(data.len())];
            self.writer_blocked = true;
            let n = ready!(Pin::new(&mut *io).poll_write(cx, data)).map_err(write_failed)?;
            if n == 0 {
                return Poll::Ready(Err(ProxyError::Closed(io::ErrorKind::WriteZero.into())));
            }
            body.consume(n);
            self.left -= n;
            self.written += n as u64;
            if self.left == 0 && self.chunked {
                self.set_frame(b"\r\n");
            }
        }
    }
}

/// A response body, read from the upstream connection, as a [`BodySource`].
#[derive(Debug)]
pub struct ResponseBody<'a>(pub &'a mut Conn);

impl BodySource for ResponseBody<'_> {
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<&[u8], SourceError>> {
        self.0.poll_body(cx).map_err(|_| SourceError::Broken)
    }

    fn consume(&mut self, n: usize) {
        self.0.consume(n);
    }
}

/// A connection to an upstream, with what was read from it and not yet used.
#[derive(Debug)]
pub struct Conn {
    io: Stream,
    buf: Box<[u8]>,
    /// Unread bytes are `buf[pos..end]`.
    pos: usize,
    end: usize,
    /// Body bytes given out and not yet consumed: `buf[data]`.
    data: Range<usize>,
    reading: Reading,
    /// It came from the pool.
    reused: bool,
    /// Some response byte arrived for the current request.
    responded: bool,
}

#[derive(Debug)]
enum Reading {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
    Done,
}

impl Conn {
    fn new(io: Stream) -> Conn {
        Conn {
            io,
            buf: vec![0; BUFFER].into_boxed_slice(),
            pos: 0,
            end: 0,
            data: 0..0,
            reading: Reading::Done,
            reused: false,
            responded: false,
        }
    }

    /// An idle connection is usable when the upstream has neither closed it nor sent anything
    /// (an idle HTTP/1.1 connection has nothing to say). Uses the readiness the reactor already
    /// has; reads only when it says something might be there.
    fn is_usable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match &mut self.io {
            Stream::Tcp(tcp) => match tcp.poll_read_ready(&mut cx) {
                Poll::Pending => true,
                Poll::Ready(Err(_)) => false,
                Poll::Ready(Ok(())) => {
                    matches!(tcp.try_read(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
                }
            },
            // Through TLS: what rustls holds counts too (plaintext, a close_notify).
            Stream::Tls(tls) => {
                let mut byte = [0u8; 1];
                Pin::new(tls)
                    .poll_read(&mut cx, &mut ReadBuf::new(&mut byte))
                    .is_pending()
            }
        }
    }

    /// Reads more into the buffer; `Ok(0)` at EOF.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.pos > 0 {
                self.buf.copy_within(self.pos..self.end, 0);
                self.end -= self.pos;
                self.pos = 0;
            } else {
                let mut bigger = vec![0; self.buf.len() * 2].into_boxed_slice();
                bigger[..self.end].copy_from_slice(&self.buf[..self.end]);
                self.buf = bigger;
            }
        }
        let mut rb = ReadBuf::new(&mut self.buf[self.end..]);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut rb))?;
        let n = rb.filled().len();
        self.end += n;
        Poll::Ready(Ok(n))
    }

    fn poll_head<R>(
        &mut self,
        cx: &mut Context<'_>,
        head_request: bool,
        on_head: &mut impl FnMut(&ResponseHead<'_, '_>, &ResponseFraming) -> R,
    ) -> Poll<Result<(R, ResponseFraming, u16), ProxyError>> {
        loop {
            if self.pos < self.end {
                let mut slots = wire::header_slots();
                match wire::parse_response(&self.buf[self.pos..self.end], &mut slots) {
                    Ok(Some(head)) if head.status < 200 && head.status != 101 => {
                        // Interim responses (100 Continue, 103 Early Hints) are not relayed:
                        // the gateway answers `Expect` itself.
                        self.pos += head.len;
                        continue;
                    }
                    Ok(Some(head)) => {
                        let framing = wire::response_framing(&head, head_request)
                            .map_err(ProxyError::Protocol)?;
                        let out = on_head(&head, &framing);
                        let status = head.status;
                        self.pos += head.len;
                        self.reading = match framing.framing {
                            Framing::Empty => Reading::Done,
                            Framing::Length(n) => Reading::Length(n),
                            Framing::Chunked => Reading::Chunked(ChunkedDecoder::new()),
                            Framing::UntilClose => Reading::UntilClose,
                        };
                        return Poll::Ready(Ok((out, framing, status)));
                    }
                    Ok(None) => {}
                    Err(why) => return Poll::Ready(Err(ProxyError::Protocol(why))),
                }
            }
            match ready!(self.poll_fill(cx)) {
                Ok(0) if !self.responded => {
                    return Poll::Ready(Err(ProxyError::Closed(
                        io::ErrorKind::UnexpectedEof.into(),
                    )))
                }
                Ok(0) => return Poll::Ready(Err(ProxyError::Protocol("response head cut short"))),
                Ok(_) => self.responded = true,
                Err(e) if !self.responded => return Poll::Ready(Err(ProxyError::Closed(e))),
                Err(_) => return Poll::Ready(Err(ProxyError::Protocol("response head cut short"))),
            }
        }
    }

    /// Goes on with a request body the upstream answered early (see [`Answer::upload`]).
    pub fn poll_upload<S: BodySource>(
        &mut self,
        cx: &mut Context<'_>,
        upload: &mut Upload,
        head: &[u8],
        body: &mut S,
    ) -> Poll<Result<(), ProxyError>> {
        upload.poll(cx, &mut self.io, head, body)
    }

    /// Body bytes already read, without I/O: `None` when more must be read first.
    pub fn buffered_body(&mut self) -> Result<Option<&[u8]>, ProxyError> {
        if self.data.is_empty() && !self.decode()? {
            return Ok(None);
        }
        Ok(Some(&self.buf[self.data.clone()]))
    }

    /// Decodes the next body bytes from the buffer into `data`; false when more must be read.
    /// At the end of the body, `data` stays empty and this returns true.
    fn decode(&mut self) -> Result<bool, ProxyError> {
        let avail = self.end - self.pos;
        match &mut self.reading {
            Reading::Done => return Ok(true),
            Reading::Length(left) => {
                if avail == 0 {
                    return Ok(false);
                }
                let n = avail.min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= n as u64;
                if *left == 0 {
                    self.reading = Reading::Done;
                }
                self.data = self.pos..self.pos + n;
                self.pos += n;
            }
            Reading::Chunked(dec) => loop {
                if self.pos == self.end {
                    return Ok(false);
                }
                let (used, chunk) = dec
                    .decode(&self.buf[self.pos..self.end])
                    .map_err(|e| ProxyError::Protocol(e.0))?;
                let at = self.pos;
                self.pos += used;
                match chunk {
                    Chunk::Data(r) => {
                        self.data = at + r.start..at + r.end;
                        break;
                    }
                    Chunk::End => {
                        self.reading = Reading::Done;
                        return Ok(true);
                    }
                    Chunk::More => {}
                }
            },
            Reading::UntilClose => {
                if avail == 0 {
                    return Ok(false);
                }
                self.data = self.pos..self.end;
                self.pos = self.end;
            }
        }
        Ok(true)
    }

    /// Polls the next response body bytes: an empty slice at the end of the body. They stay
    /// given out until [`Conn::consume`].
    pub fn poll_body(&mut self, cx: &mut Context<'_>) -> Poll<Result<&[u8], ProxyError>> {
        loop {
            if !self.data.is_empty() || self.decode()? {
                return Poll::Ready(Ok(&self.buf[self.data.clone()]));
            }
            match ready!(self.poll_fill(cx)) {
                Ok(0) if matches!(self.reading, Reading::UntilClose) => {
                    self.reading = Reading::Done
                }
                Ok(0) => return Poll::Ready(Err(ProxyError::Protocol("response body cut short"))),
                Ok(_) => {}
                Err(_) => return Poll::Ready(Err(ProxyError::Protocol("response body cut short"))),
            }
        }
    }

    /// Marks `n` body bytes as passed on.
    pub fn consume(&mut self, n: usize) {
        self.data.start += n;
    }

    /// True once the whole response body was read and passed on.
    pub fn body_done(&self) -> bool {
        self.data.is_empty() && matches!(self.reading, Reading::Done)
    }

    /// The connection for a tunnel, and what the upstream sent after its `101` head.
    pub fn into_tunnel(self) -> (Stream, Vec<u8>) {
        (self.io, self.buf[self.pos..self.end].to_vec())
    }
}

/// A connection to an upstream: plain TCP or TLS.
#[derive(Debug)]
pub enum Stream {
    /// `http://`.
    Tcp(TcpStream),
    /// `https://`.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
