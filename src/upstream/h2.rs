//! HTTP/2 to upstreams, on hyper's HTTP/2 client: `h2c://` (prior knowledge), and `https://`
//! when the upstream picks `h2` by ALPN. The request head is the one the pipeline decided
//! ([`H2Head`], from [`UpstreamRequest::write_fields`]); bodies and trailers pass through both
//! ways.
//!
//! Each upstream has a pool of multiplexed connections ([`H2Conns`], kept over reloads with the
//! HTTP/1.1 pool): a call takes the first connection with fewer than
//! `server.upstream_max_streams` calls open, and a new connection is made when none has room.
//! Connecting uses the same budget and retries as HTTP/1.1 (`connect.rs`), one connect at a
//! time per upstream.
//!
//! A connection that is closing (the upstream sent GOAWAY, or the connection was lost) takes no
//! new calls. A request it never sent goes to another connection; one it sent fails with 502,
//! unless it has no body and an idempotent method, which is sent once more on another
//! connection (as nginx and Go's client retry HTTP/1.1). Calls in flight on a connection that
//! received GOAWAY finish there. Keep-alive pings go only on connections with calls open (a
//! black-holed upstream is noticed) and never to the client: the client's `idle_timeout` is
//! untouched. A connection without calls for a minute is closed.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::time::Instant;
use tracing::debug;

use super::conn::{Conn, Stream};
use super::{Origin, ProxyError, IDLE_FOR};
use crate::pipeline::{FieldSink, UpstreamRequest};

/// Each stream's receive window (hyper's default).
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
/// The connection's receive window: 64 streams' worth.
const CONNECTION_WINDOW: u32 = 64 * STREAM_WINDOW;
/// Pings on a connection with calls open.
const KEEP_ALIVE: Duration = Duration::from_secs(300);
/// Connections a call may find closing before it gives up (each is another connection).
const UNSENT_TRIES: usize = 4;

/// A request body for an HTTP/2 upstream: the client's, trailers included.
pub type H2Body = http_body_util::combinators::UnsyncBoxBody<
    Bytes,
    Box<dyn std::error::Error + Send + Sync + 'static>,
>;

/// The request head for an HTTP/2 upstream.
#[derive(Debug)]
pub struct H2Head {
    /// The method.
    pub method: Method,
    /// `scheme://authority/path?query` (`:scheme`, `:authority`, `:path`).
    pub uri: Uri,
    /// The fields, as the pipeline's hygiene rules leave them, plus `te: trailers`.
    pub headers: HeaderMap,
}

impl H2Head {
    /// The head of `req` for an HTTP/2 upstream reached with `scheme` (`http` or `https`).
    pub fn of(req: &UpstreamRequest<'_, '_>, scheme: &str) -> Result<H2Head, &'static str> {
        let mut sink = HeaderSink::default();
        req.write_fields(&mut sink);
        let mut headers = sink.map;
        // Connection-specific fields have no place in HTTP/2 (RFC 9113 §8.2.2); gRPC servers
        // require `te: trailers`, which the hop-by-hop rules removed.
        for name in [
            "host",
            "connection",
            "keep-alive",
            "transfer-encoding",
            "upgrade",
            "te",
        ] {
            headers.remove(name);
        }
        headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
        // Never in the connection's HPACK table: one connection carries many users' calls.
        for name in [
            http::header::AUTHORIZATION,
            http::header::PROXY_AUTHORIZATION,
            http::header::COOKIE,
        ] {
            if let http::header::Entry::Occupied(mut e) = headers.entry(name) {
                for v in e.iter_mut() {
                    v.set_sensitive(true);
                }
            }
        }
        let authority = std::str::from_utf8(req.authority()).map_err(|_| "bad authority")?;
        let path = match req.query {
            Some(q) => format!("{}?{q}", req.path),
            None => req.path.to_string(),
        };
        let uri = Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query(path)
            .build()
            .map_err(|_| "request target not valid for HTTP/2")?;
        let method = Method::from_bytes(req.method.as_bytes()).map_err(|_| "bad method")?;
        Ok(H2Head {
            method,
            uri,
            headers,
        })
    }
}

/// Collects fields into a header map (the cookie the pipeline joins comes in parts).
#[derive(Default)]
struct HeaderSink {
    map: HeaderMap,
    name: Vec<u8>,
    value: Vec<u8>,
}

impl FieldSink for HeaderSink {
    fn begin(&mut self, name: &[u8]) {
        self.name.clear();
        self.name.extend_from_slice(name);
        self.value.clear();
    }

    fn value(&mut self, part: &[u8]) {
        self.value.extend_from_slice(part);
    }

    fn end(&mut self) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&self.name),
            HeaderValue::from_bytes(&self.value),
        ) {
            self.map.append(name, value);
        }
    }
}

/// What an `https://` upstream picked by ALPN (an `h2c://` one speaks HTTP/2 from the start).
const UNKNOWN: u8 = 0;
const HTTP1: u8 = 1;
const HTTP2: u8 = 2;

/// One upstream's HTTP/2 connections.
#[derive(Debug, Default)]
pub struct H2Conns {
    conns: Mutex<Vec<Arc<H2Conn>>>,
    /// One connect at a time.
    connecting: tokio::sync::Mutex<()>,
    /// For `https://`: the protocol the upstream picked last.
    picked: AtomicU8,
}

impl H2Conns {
    /// The first open connection with fewer than `max` calls, its count taken.
    fn take(&self, max: usize, now: Instant) -> Option<Call> {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.retain(|c| c.usable(now));
        let conn = conns
            .iter()
            .find(|c| c.open.load(Ordering::Acquire) < max)?;
        Some(Call::on(conn.clone()))
    }

    /// Drops closed and long-unused connections (the pool's reaper).
    pub(super) fn prune(&self, now: Instant) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.retain(|c| c.usable(now));
    }
}

/// One HTTP/2 connection to an upstream.
#[derive(Debug)]
struct H2Conn {
    sender: SendRequest<H2Body>,
    /// Calls open on it.
    open: AtomicUsize,
    /// Closing: a request came back unsent.
    retired: AtomicBool,
    /// When its last call ended.
    idle_since: Mutex<Instant>,
}

impl H2Conn {
    fn usable(&self, now: Instant) -> bool {
        if self.sender.is_closed() || self.retired.load(Ordering::Acquire) {
            return false;
        }
        self.open.load(Ordering::Acquire) > 0 || {
            let since = *self.idle_since.lock().unwrap_or_else(|e| e.into_inner());
            now.saturating_duration_since(since) < IDLE_FOR
        }
    }
}

/// A call open on an HTTP/2 connection; dropped when the response body ends (or is dropped),
/// which frees its place under `server.upstream_max_streams`.
#[derive(Debug)]
pub struct Call {
    conn: Arc<H2Conn>,
}

impl Call {
    fn on(conn: Arc<H2Conn>) -> Call {
        conn.open.fetch_add(1, Ordering::AcqRel);
        Call { conn }
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
    }
}

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

    /// Sends `req` and waits for the response head (the body and trailers stream after); the
    /// [`Call`] is held until the response body ends.
    ///
    /// A request the upstream did not process (the connection was closing before it went out,
    /// a GOAWAY that excluded its stream, `REFUSED_STREAM`) goes to another connection, its body
    /// replayed from what was kept of it (up to [`REPLAY_LIMIT`]). `replayable` (no body and an
    /// idempotent method): one that failed after it may have been processed goes once more.
    pub async fn send_h2(
        &self,
        head: &H2Head,
        body: H2Body,
        replayable: bool,
    ) -> Result<(Response<Incoming>, Call), ProxyError> {
        let tape = (!http_body::Body::is_end_stream(&body)).then(|| Tape::new(body));
        let mut replayed = false;
        for _ in 0..UNSENT_TRIES {
            // Each connection gets the whole budget (a refusal may come late).
            let call = self.h2_call(Instant::now() + self.connect_timeout).await?;
            let body = match &tape {
                Some(tape) => tape.play(),
                None => empty_body(),
            };
            let mut req = Request::new(body);
            *req.method_mut() = head.method.clone();
            *req.uri_mut() = head.uri.clone();
            *req.headers_mut() = head.headers.clone();
            let error = match call.conn.sender.clone().try_send_request(req).await {
                Ok(res) => {
                    if let Some(tape) = &tape {
                        tape.stop_keeping();
                    }
                    return Ok((res, call));
                }
                Err(mut e) => {
                    let unsent = e.take_message().is_some();
                    let error = e.into_error();
                    // The play that failed gives nothing more (hyper may still poll it).
                    let replayable_body = tape.as_ref().is_none_or(Tape::halt);
                    if unsent || unprocessed(&error) {
                        // The connection was closing, or the upstream refused the stream.
                        call.conn.retired.store(true, Ordering::Release);
                        if replayable_body {
                            debug!(upstream = %self.addr, error = %error, "HTTP/2 request not processed; sending it on another connection");
                            continue;
                        }
                    }
                    error
                }
            };
            if replayable && !replayed {
                debug!(upstream = %self.addr, error = %error, "HTTP/2 request failed; sending it once more");
                replayed = true;
                continue;
            }
            return Err(ProxyError::Closed(io::Error::other(error)));
        }
        Err(ProxyError::Closed(io::Error::other(
            "every HTTP/2 connection to the upstream was closing",
        )))
    }

    /// [`Origin::send_h2`] within `upstream_timeout` of the request body's last progress (as on
    /// the HTTP/1.1 path: a client stream the server answers at its end is not cut).
    pub async fn exchange_h2(
        &self,
        head: &H2Head,
        body: H2Body,
        replayable: bool,
        progress: &Progress,
    ) -> Result<(Response<Incoming>, Call), ProxyError> {
        let send = self.send_h2(head, body, replayable);
        tokio::pin!(send);
        loop {
            tokio::select! {
                r = &mut send => return r,
                () = tokio::time::sleep_until(progress.last() + self.upstream_timeout) => {
                    if progress.last() + self.upstream_timeout <= Instant::now() {
                        return Err(ProxyError::Timeout);
                    }
                }
            }
        }
    }

    /// A place for a call on a connection with room, connecting when none has.
    async fn h2_call(&self, deadline: Instant) -> Result<Call, ProxyError> {
        let conns = &self.pool.h2;
        if let Some(call) = conns.take(self.max_streams, Instant::now()) {
            return Ok(call);
        }
        let _one = tokio::time::timeout_at(deadline, conns.connecting.lock())
            .await
            .map_err(|_| connect_timed_out())?;
        // Another call may have connected meanwhile.
        if let Some(call) = conns.take(self.max_streams, Instant::now()) {
            return Ok(call);
        }
        if self.tls.is_some() && self.pool.h2.picked.load(Ordering::Acquire) == HTTP1 {
            // The upstream picked http/1.1 while this call waited.
            return Err(picked_http1());
        }
        let _slot = tokio::time::timeout_at(deadline, self.connecting.acquire())
            .await
            .map_err(|_| connect_timed_out())?;
        let conn = self.connect_h2(deadline).await?.ok_or_else(picked_http1)?;
        let call = Call::on(conn.clone());
        self.keep_h2(conn);
        Ok(call)
    }

    /// Puts a new connection in the pool (and starts the pool's reaper).
    fn keep_h2(&self, conn: Arc<H2Conn>) {
        self.pool
            .h2
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
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
        let handshake = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            // A client that stops reading holds at most its stream's window; the connection's
            // is large enough that a few such clients cannot stall the calls of everyone else
            // on it.
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            // A black-holed upstream is noticed within minutes, not at the kernel's
            // retransmission limit; pings only while calls are open and no more often than
            // gRPC servers allow (grpc-core refuses pings under 5 minutes apart without data).
            .keep_alive_interval(KEEP_ALIVE)
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(false)
            .handshake::<_, H2Body>(TokioIo::new(stream));
        let (sender, conn) = tokio::time::timeout_at(deadline, handshake)
            .await
            .map_err(|_| connect_timed_out())?
            .map_err(|e| ProxyError::Connect(io::Error::other(e)))?;
        let addr = self.addr.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(upstream = %addr, error = %e, "HTTP/2 upstream connection ended");
            }
        });
        Ok(Some(Arc::new(H2Conn {
            sender,
            open: AtomicUsize::new(0),
            retired: AtomicBool::new(false),
            idle_since: Mutex::new(Instant::now()),
        })))
    }
}

/// True when the upstream did not process the request: a GOAWAY (without error) that excluded
/// its stream or came before it opened, or `REFUSED_STREAM` (RFC 9113 §8.7). A GOAWAY with an
/// error code is not taken as proof: h2 also resets the streams in flight below its last stream
/// id with it when the connection then closes, and those may have been processed.
fn unprocessed(error: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        if let Some(e) = e.downcast_ref::<h2::Error>() {
            return (e.is_go_away() && e.is_remote() && e.reason() == Some(h2::Reason::NO_ERROR))
                || (e.is_reset()
                    && e.is_remote()
                    && e.reason() == Some(h2::Reason::REFUSED_STREAM));
        }
        source = e.source();
    }
    false
}

/// Most request-body bytes kept to send again when the upstream did not process a request
/// (payload, trailers, and [`FRAME_COST`] a frame); a larger body that meets a GOAWAY fails
/// with 502.
pub const REPLAY_LIMIT: usize = 64 * 1024;

/// A request body that can be sent again from its start while what was sent of it is at most
/// [`REPLAY_LIMIT`]: each [`Tape::play`] is a body that gives the kept frames, then the rest.
#[derive(Clone)]
struct Tape(Arc<Mutex<Reel>>);

struct Reel {
    inner: H2Body,
    /// Frames given out so far (data and trailers), while they fit.
    kept: Vec<Kept>,
    /// What `kept` costs: payload plus [`FRAME_COST`] a frame.
    kept_bytes: usize,
    /// More was given out than is kept: no replay.
    lost: bool,
    /// The response came: frames are no longer kept (those kept are still given to the play
    /// under way, which may be replaying them).
    keeping: bool,
    /// The current play; older ones give nothing more.
    play: u32,
}

/// What keeping a frame costs besides its payload (the entry and its share of the vector), so
/// that a body of many tiny frames is bounded too.
const FRAME_COST: usize = 128;

#[derive(Clone)]
enum Kept {
    Data(Bytes),
    Trailers(HeaderMap),
}

impl Tape {
    fn new(inner: H2Body) -> Tape {
        Tape(Arc::new(Mutex::new(Reel {
            inner,
            kept: Vec::new(),
            kept_bytes: 0,
            lost: false,
            keeping: true,
            play: 0,
        })))
    }

    fn reel(&self) -> std::sync::MutexGuard<'_, Reel> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A body from the start.
    fn play(&self) -> H2Body {
        use http_body_util::BodyExt;
        let play = {
            let mut reel = self.reel();
            reel.play += 1;
            reel.play
        };
        Playing {
            tape: self.clone(),
            play,
            at: 0,
        }
        .boxed_unsync()
    }

    /// Ends the current play (it gives nothing more); true when the body can be played again
    /// from the start.
    fn halt(&self) -> bool {
        let mut reel = self.reel();
        reel.play += 1;
        !reel.lost
    }

    /// The response came: no more frames are kept.
    fn stop_keeping(&self) {
        self.reel().keeping = false;
    }
}

/// One play of a [`Tape`].
struct Playing {
    tape: Tape,
    play: u32,
    /// The next kept frame to give.
    at: usize,
}

impl http_body::Body for Playing {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync + 'static>;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        let this = &mut *self;
        let mut reel = this.tape.reel();
        if reel.play != this.play {
            return Poll::Ready(Some(Err("request body replayed elsewhere".into())));
        }
        // A replay gives the kept frames first (they are a prefix of the body: nothing is read
        // from the client past them until they are all given again).
        if let Some(kept) = reel.kept.get(this.at).cloned() {
            this.at += 1;
            return Poll::Ready(Some(Ok(match kept {
                Kept::Data(d) => http_body::Frame::data(d),
                Kept::Trailers(t) => http_body::Frame::trailers(t),
            })));
        }
        if !reel.keeping && !reel.kept.is_empty() {
            // The response came and every kept frame went out again: nothing more to keep.
            reel.kept = Vec::new();
            this.at = 0;
        }
        let polled = std::task::ready!(std::pin::Pin::new(&mut reel.inner).poll_frame(cx));
        match &polled {
            Some(Ok(frame)) if reel.keeping && !reel.lost => {
                // Copied: a slice of the connection's read buffer would keep all of it.
                let kept = match (frame.data_ref(), frame.trailers_ref()) {
                    (Some(d), _) => Some((Kept::Data(Bytes::copy_from_slice(d)), d.len())),
                    (_, Some(t)) => {
                        let len = t.iter().map(|(n, v)| n.as_str().len() + v.len()).sum();
                        Some((Kept::Trailers(t.clone()), len))
                    }
                    _ => None,
                };
                if let Some((kept, len)) = kept {
                    if reel.kept_bytes + len + FRAME_COST <= REPLAY_LIMIT {
                        reel.kept_bytes += len + FRAME_COST;
                        reel.kept.push(kept);
                        this.at = reel.kept.len();
                    } else {
                        reel.lost = true;
                        reel.kept = Vec::new();
                        this.at = 0;
                    }
                }
            }
            // The client's body failed (cut short, over the limit): never played again, as the
            // body after the failure would not be the client's.
            Some(Err(_)) => {
                reel.lost = true;
                reel.kept = Vec::new();
                this.at = 0;
            }
            _ => {}
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        let reel = self.tape.reel();
        reel.play == self.play && self.at >= reel.kept.len() && reel.inner.is_end_stream()
    }
}

/// When a request body last moved: the start of `upstream_timeout`.
#[derive(Debug)]
pub struct Progress {
    sent: Instant,
    /// Milliseconds after `sent`.
    ms: std::sync::atomic::AtomicU64,
}

impl Progress {
    /// Progress of a request sent now.
    pub fn now() -> Progress {
        Progress {
            sent: Instant::now(),
            ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The body moved.
    pub fn touch(&self) {
        let ms = u64::try_from(self.sent.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.ms.store(ms, Ordering::Release);
    }

    /// When the request was sent.
    pub fn sent(&self) -> Instant {
        self.sent
    }

    fn last(&self) -> Instant {
        self.sent + Duration::from_millis(self.ms.load(Ordering::Acquire))
    }
}

/// A request body of nothing.
pub fn empty_body() -> H2Body {
    use http_body_util::BodyExt;
    http_body_util::Empty::new()
        .map_err(|never: std::convert::Infallible| match never {})
        .boxed_unsync()
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A body of these frames (`None`: an error), then its end.
    struct Frames(std::collections::VecDeque<Option<http_body::Frame<Bytes>>>);

    impl http_body::Body for Frames {
        type Data = Bytes;
        type Error = Box<dyn std::error::Error + Send + Sync + 'static>;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            std::task::Poll::Ready(match self.0.pop_front() {
                Some(Some(frame)) => Some(Ok(frame)),
                Some(None) => Some(Err("client body failed".into())),
                None => None,
            })
        }
    }

    fn tape(frames: Vec<Option<http_body::Frame<Bytes>>>) -> Tape {
        Tape::new(Frames(frames.into()).boxed_unsync())
    }

    async fn data(body: &mut H2Body, n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..n {
            let frame = body.frame().await.unwrap().unwrap();
            out.extend_from_slice(&frame.into_data().unwrap());
        }
        out
    }

    #[tokio::test]
    async fn a_replay_gives_the_kept_frames_then_the_rest_even_after_the_response() {
        let frames = (0..4u8).map(|i| Some(http_body::Frame::data(Bytes::from(vec![i; 3]))));
        let t = tape(frames.collect());
        let mut first = t.play();
        assert_eq!(data(&mut first, 2).await, [0, 0, 0, 1, 1, 1]);
        assert!(t.halt(), "two small frames are replayable");
        // The old play gives nothing more.
        assert!(first.frame().await.unwrap().is_err());
        let mut again = t.play();
        assert_eq!(data(&mut again, 1).await, [0, 0, 0]);
        // The response came mid-replay: the kept frames still go out, then the rest.
        t.stop_keeping();
        assert_eq!(data(&mut again, 3).await, [1, 1, 1, 2, 2, 2, 3, 3, 3]);
        assert!(again.frame().await.is_none());
        assert!(
            t.reel().kept.is_empty(),
            "kept frames freed once given again"
        );
    }

    #[tokio::test]
    async fn a_body_past_the_limit_or_failed_is_not_replayed() {
        let big = Bytes::from(vec![7u8; REPLAY_LIMIT]);
        let t = tape(vec![Some(http_body::Frame::data(big))]);
        let mut play = t.play();
        play.frame().await.unwrap().unwrap();
        assert!(!t.halt());
        // 512 one-byte frames cost 128 bytes each besides their byte: past the limit.
        let tiny = (0..512).map(|_| Some(http_body::Frame::data(Bytes::from_static(b"x"))));
        let t = tape(tiny.collect());
        let mut play = t.play();
        data(&mut play, 512).await;
        assert!(!t.halt());
        let t = tape(vec![
            Some(http_body::Frame::data(Bytes::from_static(b"ok"))),
            None,
        ]);
        let mut play = t.play();
        data(&mut play, 1).await;
        assert!(play.frame().await.unwrap().is_err());
        assert!(!t.halt(), "a body whose client failed is not played again");
    }
}
