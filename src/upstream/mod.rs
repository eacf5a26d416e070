//! Forwarding: the only step of a request that does I/O with the upstream. It takes the
//! pipeline's decision, writes the request head in the protocol the upstream speaks
//! ([`Origin::prepare`]; only then is it known: an `https://` upstream picks `h2` or `http/1.1`
//! by ALPN on the first connection), so that the client's read buffer can go before any wait,
//! gets a connection for it ([`Prepared::connect`]: an idle HTTP/1.1 connection from the
//! upstream's pool ([`pool`]), a new one ([`connect`]), or a place on an HTTP/2 connection
//! ([`h2`])), sends the
//! head and the body, and reads the response head ([`Exchange::send`]). After the head, every
//! response is the same stream of pieces ([`exchange`]). `101 Switching Protocols` hands over
//! the raw connection for a tunnel.
//!
//! Failures map to 502 (refused, reset, garbage, connect timeout), 503 (the budget of bytes
//! held for slow peers is spent) and 504 (no response head within `upstream_timeout` of the
//! request being sent, or of the upstream last taking body bytes while the gateway had some to
//! give: an upstream that stops reading an upload is slow too). An upstream that answers
//! before it has read the whole request body gets no more of it than it takes while the
//! response is relayed, and its connection is not reused.
//!
//! A request without a body whose reused connection turns out closed before any response byte
//! arrived is retried once on a new connection, if its method is idempotent (RFC 9110 §9.2.2),
//! as nginx and Go's client do.
//!
//! The pools are built per config ([`Upstreams::build`]); a reload keeps the pool (and its idle
//! connections) of every upstream whose address and TLS settings did not change.

pub mod connect;
pub mod exchange;
pub mod h1;
pub mod h2;
pub mod pool;

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Uri};
use rustls_pki_types::ServerName;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tracing::{debug, warn};

pub use exchange::{Exchange, Piece};
pub use h1::{Conn, Stream};
pub use pool::{Pool, IDLE_FOR};

use crate::net::{buffers, Budget, Deadline};
use crate::pipeline::{Rejection, UpstreamRequest};
use crate::wire::Framing;
use h2::H2Head;

/// How an upstream is reached over TLS: the client config, and what tells two TLS setups apart
/// (0 for the default roots; a digest of the CA file otherwise).
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// The rustls client config.
    pub config: Arc<rustls::ClientConfig>,
    /// Equal ids mean interchangeable connections.
    pub id: u64,
}

/// The timeouts and limits every upstream of a config shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Time allowed to get a connection (waiting for one, connecting, retrying, TLS).
    pub connect: Duration,
    /// Time allowed for the response head.
    pub response: Duration,
    /// Most connects to one upstream in flight at once.
    pub max_connecting: usize,
    /// Most calls open at once on one HTTP/2 connection.
    pub max_streams: usize,
}

/// Identifies a pool: the upstream URL (scheme and authority, lower case) and its TLS setup.
type PoolKey = (String, u64);

/// The upstreams of one configuration: one per distinct upstream (scheme, authority and TLS
/// settings), shared by the routes that point there.
#[derive(Debug)]
pub struct Upstreams {
    by_route: Vec<Option<Arc<Origin>>>,
    pools: HashMap<PoolKey, Arc<Pool>>,
}

impl Upstreams {
    /// The upstreams of routes `0..n`, each given as its URL and TLS setup (for `https://`;
    /// `None` for a route without an upstream), keeping `previous`'s pool of every upstream
    /// that did not change.
    pub fn build(
        routes: &[Option<(Uri, Option<UpstreamTls>)>],
        timeouts: Timeouts,
        budget: &Arc<Budget>,
        previous: Option<&Upstreams>,
    ) -> Upstreams {
        let mut origins: HashMap<PoolKey, Arc<Origin>> = HashMap::new();
        let mut pools = HashMap::new();
        let by_route = routes
            .iter()
            .map(|route| {
                let (uri, tls) = route.as_ref()?;
                let key = (
                    uri.to_string().to_ascii_lowercase(),
                    tls.as_ref().map_or(0, |t| t.id),
                );
                origins
                    .entry(key.clone())
                    .or_insert_with(|| {
                        let pool = previous
                            .and_then(|p| p.pools.get(&key))
                            .cloned()
                            .unwrap_or_default();
                        pools.insert(key, pool.clone());
                        Arc::new(Origin::new(uri, tls.as_ref(), timeouts, pool, budget))
                    })
                    .clone()
                    .into()
            })
            .collect();
        Upstreams { by_route, pools }
    }

    /// The upstream of route `id` (`None` for a route without one).
    pub fn for_route(&self, id: usize) -> Option<&Arc<Origin>> {
        self.by_route.get(id)?.as_ref()
    }
}

/// One upstream: where to connect, how, and its pool of idle connections.
pub struct Origin {
    /// `host:port`, resolved at each connect.
    addr: Box<str>,
    /// For `https://`: the connector and the name to verify (see [`Origin::new`]).
    tls: Option<(Option<TlsConnector>, Option<ServerName<'static>>)>,
    /// For `https://`: the connector that offers `h2` and `http/1.1` by ALPN.
    tls_h2: Option<TlsConnector>,
    /// `h2c://`: HTTP/2 by prior knowledge.
    h2c: bool,
    /// Most calls open at once on one HTTP/2 connection.
    max_streams: usize,
    connect_timeout: Duration,
    /// Time allowed for the response head.
    pub upstream_timeout: Duration,
    pool: Arc<Pool>,
    /// Connects in flight (`server.max_connecting`).
    connecting: tokio::sync::Semaphore,
    /// What HTTP/2 calls reserve their windows and replay copies from.
    budget: Arc<Budget>,
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Origin")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Origin {
    fn new(
        uri: &Uri,
        tls: Option<&UpstreamTls>,
        timeouts: Timeouts,
        pool: Arc<Pool>,
        budget: &Arc<Budget>,
    ) -> Origin {
        let https = uri.scheme_str() == Some("https");
        let h2c = uri.scheme_str() == Some("h2c");
        let authority = uri.authority().map_or("", |a| a.as_str());
        let host = uri.host().unwrap_or("");
        let addr = match uri.port_u16() {
            Some(_) => authority.to_owned(),
            None => format!("{authority}:{}", if https { 443 } else { 80 }),
        };
        // HTTP/2 connections offer `h2` first; HTTP/1.1 ones (and upgrades) only `http/1.1`.
        let tls_h2 = https.then_some(tls).flatten().map(|t| {
            let mut config = (*t.config).clone();
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            TlsConnector::from(Arc::new(config))
        });
        // An https upstream without a TLS setup, or with a host rustls cannot verify, has no
        // connector or no name: connecting fails rather than fall back to plain TCP (the runtime
        // gives every https route a setup, and validation refuses such hosts).
        let tls = https.then(|| {
            (
                tls.map(|t| TlsConnector::from(t.config.clone())),
                server_name(host),
            )
        });
        Origin {
            tls,
            tls_h2,
            h2c,
            max_streams: timeouts.max_streams.max(1),
            connect_timeout: timeouts.connect,
            upstream_timeout: timeouts.response,
            pool,
            connecting: tokio::sync::Semaphore::new(timeouts.max_connecting.max(1)),
            addr: addr.into_boxed_str(),
            budget: budget.clone(),
        }
    }

    /// Writes `req`'s head for the protocol this upstream speaks (see the module docs), so that
    /// the caller can let go of the request's bytes before waiting for a connection. An
    /// `https://` upstream whose protocol is not known yet is connected to first (it may pick
    /// `h2`).
    pub async fn prepare(
        self: &Arc<Self>,
        req: &UpstreamRequest<'_, '_>,
    ) -> Result<Prepared, ProxyError> {
        let upgrade = req.upgrade.is_some();
        if !upgrade && !self.knows_protocol() {
            Box::pin(self.learn_protocol()).await?;
        }
        let head = if self.h2_for(upgrade) {
            Head::H2(H2Head::of(req, self.h2_scheme()).map_err(ProxyError::Unsendable)?)
        } else {
            let mut head = buffers::take_out();
            head.clear();
            h1::write_request(req, &mut head);
            Head::H1(head)
        };
        Ok(Prepared {
            origin: self.clone(),
            kind: RequestKind::new(req.method, req.framing),
            framing: req.framing,
            head,
        })
    }

    /// Returns a connection whose exchange ended cleanly to the pool.
    pub fn release(&self, conn: Conn) {
        self.pool.release(conn);
    }

    /// The pool (tests, metrics).
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
}

/// A request whose upstream head is written, waiting for its connection.
pub struct Prepared {
    origin: Arc<Origin>,
    kind: RequestKind,
    framing: Framing,
    head: Head,
}

enum Head {
    H1(Vec<u8>),
    H2(H2Head),
}

impl Prepared {
    /// Gets a connection for the request: an idle pooled one (or a place on a pooled HTTP/2
    /// connection) at once when there is one, else within `connect_timeout` of `sent`.
    pub async fn connect(self, sent: Instant) -> Result<Exchange, ProxyError> {
        let Prepared {
            origin,
            kind,
            framing,
            head,
        } = self;
        match head {
            Head::H2(head) => {
                let call = match origin.h2_call_now(sent) {
                    Some(call) => call,
                    // Boxed: waiting for room or connecting is rare, and large.
                    None => Box::pin(origin.h2_call(sent + origin.connect_timeout)).await?,
                };
                Ok(Exchange::h2(origin, kind, framing, call, head))
            }
            Head::H1(head) => {
                let conn = match origin.pool.take(sent) {
                    Some(conn) => conn,
                    // Boxed: a TLS handshake's state is large, and new connections are rare.
                    None => match Box::pin(origin.checkout(sent + origin.connect_timeout)).await {
                        Ok(conn) => conn,
                        Err(e) => {
                            buffers::give_out(head);
                            return Err(e);
                        }
                    },
                };
                Ok(Exchange::h1(origin, kind, framing, conn, head))
            }
        }
    }
}

/// The name an `https://` upstream's certificate is verified against: its URL's host (an IPv6
/// literal without brackets). `None` when rustls cannot use it.
pub fn server_name(host: &str) -> Option<ServerName<'static>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).ok()
}

/// What sending a request needs besides its connection and head: where its body comes from
/// and how it is framed, what kind of request it is, the caller's upstream deadline (reused
/// across requests), when forwarding began (`upstream_timeout` runs from there without a body),
/// and what to make of the response head (`on_head`: it sees the head before any of it reaches
/// the client; an error from it is the upstream's fault, 502).
pub(crate) struct Sending<'a, S, F> {
    pub(crate) deadline: &'a mut Deadline,
    pub(crate) body: &'a mut S,
    pub(crate) framing: Framing,
    pub(crate) kind: RequestKind,
    pub(crate) sent: Instant,
    pub(crate) on_head: F,
}

/// The rest of the request body, after the response head.
#[derive(Debug)]
pub(crate) enum Uploading<U> {
    /// All sent (or none to send).
    Done,
    /// Still going.
    Sending(U),
    /// The upstream stopped taking it, or the client broke it off: the response still goes
    /// out; the connections are not reused.
    Failed,
}

/// Why forwarding failed.
#[derive(Debug)]
pub enum ProxyError {
    /// No connection: refused, unreachable, connect timeout, TLS handshake (502).
    Connect(io::Error),
    /// The connection closed or failed before any response byte (502; a reused connection
    /// may be retried).
    Closed(io::Error),
    /// The upstream broke off or sent something that is not HTTP (502).
    Protocol(&'static str),
    /// No response head in time (504).
    Timeout,
    /// The budget of bytes held for slow peers stayed spent for `connect_timeout` (503).
    Overloaded,
    /// The request cannot be sent in the upstream's protocol (400).
    Unsendable(&'static str),
    /// The client's request body failed.
    Client(SourceError),
    /// The client went away while the gateway waited for the upstream.
    Abandoned,
    /// The route has no upstream: only forward-auth checks reach it (404).
    NoUpstream,
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyError::Connect(e) => write!(f, "connect failed: {e}"),
            ProxyError::Closed(e) => write!(f, "connection closed: {e}"),
            ProxyError::Protocol(why) => f.write_str(why),
            ProxyError::Timeout => f.write_str("no response head within upstream_timeout"),
            ProxyError::Overloaded => f.write_str("the buffer budget is spent"),
            ProxyError::Unsendable(why) => f.write_str(why),
            ProxyError::Client(e) => write!(f, "request body: {e:?}"),
            ProxyError::Abandoned => f.write_str("client went away"),
            ProxyError::NoUpstream => f.write_str("the route has no upstream"),
        }
    }
}

impl ProxyError {
    /// The answer for this failure (logged here, with the route); `None` when the client went
    /// away and there is nobody to answer.
    pub fn into_rejection(self, route: &str) -> Option<Rejection> {
        Some(match self {
            ProxyError::Abandoned | ProxyError::Client(SourceError::Broken) => {
                debug!(route, "client went away");
                return None;
            }
            ProxyError::NoUpstream => Rejection::NoRoute,
            ProxyError::Timeout => {
                warn!(
                    route,
                    "upstream sent no response head within upstream_timeout"
                );
                Rejection::UpstreamTimeout
            }
            ProxyError::Overloaded => {
                warn!(
                    route,
                    "server.max_buffered_bytes is spent; request refused with 503"
                );
                Rejection::Overloaded
            }
            ProxyError::Unsendable(why) => {
                debug!(route, why, "request cannot be sent to the upstream");
                Rejection::BadRequest(why)
            }
            ProxyError::Client(SourceError::TooLarge) => {
                debug!(route, "request body over max_body_bytes");
                Rejection::PayloadTooLarge
            }
            ProxyError::Client(SourceError::Malformed(why)) => {
                debug!(route, why, "request body failed");
                Rejection::BadRequest("malformed or incomplete request body")
            }
            e @ (ProxyError::Connect(_) | ProxyError::Closed(_) | ProxyError::Protocol(_)) => {
                warn!(route, error = %e, "upstream request failed");
                Rejection::UpstreamUnavailable
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
/// like `AsyncBufRead`, then (HTTP/2 clients) trailers.
pub trait BodySource {
    /// Polls for body bytes: an empty slice once the body's data is complete.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<&[u8], SourceError>>;
    /// Marks the first `n` bytes of the last fill as sent.
    fn consume(&mut self, n: usize);
    /// Takes the first `n` bytes of the last fill (without a copy where the source holds
    /// them as `Bytes`).
    fn take(&mut self, n: usize) -> Bytes;
    /// True when what was taken is the whole rest of the body: no data and no trailers follow,
    /// so the last piece can end the upstream's stream itself. A source that cannot tell yet
    /// says false (an empty piece ends the stream then).
    fn at_end(&self) -> bool {
        false
    }
    /// After the data: the trailers to send on, if any (only between HTTP/2 peers).
    fn poll_trailers(
        &mut self,
        _cx: &mut Context<'_>,
    ) -> Poll<Result<Option<HeaderMap>, SourceError>> {
        Poll::Ready(Ok(None))
    }
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

    fn take(&mut self, _n: usize) -> Bytes {
        Bytes::new()
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
