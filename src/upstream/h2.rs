//! HTTP/2 to upstreams (`h2c://`, prior knowledge), on hyper's HTTP/2 client: the request head
//! as the pipeline decided it ([`H2Head`], from [`UpstreamRequest::write_fields`]), bodies and
//! trailers passed through both ways. One multiplexed connection per upstream, made again when
//! it closes (a GOAWAY, a reset, the upstream restarting).
//!
//! First part of issue 13: HTTP/2 clients only; the pool with a stream limit, several
//! connections, retries of unsent requests and ALPN `h2` on `https://` come next.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tracing::debug;

use super::ProxyError;
use crate::pipeline::{FieldSink, UpstreamRequest};

/// Each stream's receive window (hyper's default).
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
/// The connection's receive window: 64 streams' worth.
const CONNECTION_WINDOW: u32 = 64 * STREAM_WINDOW;
/// Pings on a connection with calls open.
const KEEP_ALIVE: Duration = Duration::from_secs(300);

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
    /// `http://authority/path?query` (`:scheme`, `:authority`, `:path`).
    pub uri: Uri,
    /// The fields, as the pipeline's hygiene rules leave them, plus `te: trailers`.
    pub headers: HeaderMap,
}

impl H2Head {
    /// The head of `req` for an HTTP/2 upstream.
    pub fn of(req: &UpstreamRequest<'_, '_>) -> Result<H2Head, &'static str> {
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
        let authority = std::str::from_utf8(req.authority()).map_err(|_| "bad authority")?;
        let path = match req.query {
            Some(q) => format!("{}?{q}", req.path),
            None => req.path.to_string(),
        };
        let uri = Uri::builder()
            .scheme("http")
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

/// One upstream's HTTP/2 connection, made when first needed and again after it closes.
#[derive(Debug)]
pub struct H2Client {
    addr: Box<str>,
    connect_timeout: Duration,
    sender: Mutex<Option<SendRequest<H2Body>>>,
}

impl H2Client {
    /// A client for `addr` (`host:port`).
    pub fn new(addr: &str, connect_timeout: Duration) -> H2Client {
        H2Client {
            addr: addr.into(),
            connect_timeout,
            sender: Mutex::new(None),
        }
    }

    /// Sends `req` and waits for the response head (the body and trailers stream after).
    pub async fn send(&self, req: Request<H2Body>) -> Result<Response<Incoming>, ProxyError> {
        let mut sender = self.ready_sender().await?;
        sender
            .send_request(req)
            .await
            .map_err(|e| ProxyError::Closed(io::Error::other(e)))
    }

    /// An open connection's sender, connecting when there is none.
    async fn ready_sender(&self) -> Result<SendRequest<H2Body>, ProxyError> {
        let mut slot = self.sender.lock().await;
        if let Some(s) = slot.as_ref() {
            if !s.is_closed() {
                return Ok(s.clone());
            }
        }
        let connect = async {
            let tcp = TcpStream::connect(&*self.addr).await?;
            let _ = tcp.set_nodelay(true);
            hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                // A client that stops reading holds at most its stream's window; the
                // connection's is large enough that a few such clients cannot stall the calls
                // of everyone else on it.
                .initial_stream_window_size(STREAM_WINDOW)
                .initial_connection_window_size(CONNECTION_WINDOW)
                // A black-holed upstream is noticed within minutes, not at the kernel's
                // retransmission limit; pings only while calls are open and no more often
                // than gRPC servers allow (grpc-core refuses pings under 5 minutes apart
                // without data).
                .keep_alive_interval(KEEP_ALIVE)
                .keep_alive_timeout(Duration::from_secs(20))
                .keep_alive_while_idle(false)
                .handshake::<_, H2Body>(TokioIo::new(tcp))
                .await
                .map_err(io::Error::other)
        };
        let (sender, conn) = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| ProxyError::Connect(io::ErrorKind::TimedOut.into()))?
            .map_err(ProxyError::Connect)?;
        let addr = self.addr.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(upstream = %addr, error = %e, "HTTP/2 upstream connection ended");
            }
        });
        *slot = Some(sender.clone());
        Ok(sender)
    }
}
