//! Forwarding: the only step of a request that does I/O with the upstream. A pooled keep-alive
//! HTTP/1.1 client; bodies stream both ways; `Upgrade`s (WebSocket) are tunnelled once the
//! upstream answers `101`. Failures map to 502 (refused, reset, garbage, connect timeout) and 504
//! (no response head within `upstream_timeout`).

use std::time::Duration;

use http::{Request, Response, StatusCode, Version};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tracing::{debug, warn};

use crate::body::Body;
use crate::error::GatewayError;
use crate::headers;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio::time::Instant;

/// The upstream client: one connection pool shared by every route of a configuration.
#[derive(Clone, Debug)]
pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, Tracked>,
    timeout: Duration,
}

impl Upstream {
    /// A client that connects within `connect_timeout` (TLS handshake included for `https://`
    /// upstreams, verified with `tls`) and waits `upstream_timeout` for a response head.
    pub fn new(
        connect_timeout: Duration,
        upstream_timeout: Duration,
        tls: Arc<rustls::ClientConfig>,
    ) -> Upstream {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        http.set_keepalive(Some(Duration::from_secs(60)));
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(1024)
            .build(connector);
        Upstream {
            client,
            timeout: upstream_timeout,
        }
    }

    /// Sends `req` (its URI already absolute, its headers already rewritten) and returns the
    /// upstream's response head with a streamed body. When `tunnel` is set and the upstream
    /// switches protocols, the two upgraded connections are joined in a background task that
    /// ends when either side closes or `tunnel` turns true (the drain deadline).
    pub async fn forward(
        &self,
        mut req: Request<Body>,
        tunnel: Option<watch::Receiver<bool>>,
        route: &str,
        max_body: Option<u64>,
    ) -> Result<Response<Body>, GatewayError> {
        let client_upgrade = tunnel.map(|closing| (hyper::upgrade::on(&mut req), closing));
        *req.version_mut() = Version::HTTP_11;
        // upstream_timeout measures the upstream, not the client's upload: it runs from the
        // end of the request body, or from the last moment the upstream took body data while
        // the gateway had some to give (an upstream that stops reading is slow too).
        let timeout = self.timeout;
        // A request without a body (most GETs) needs no progress tracking: the clock starts now.
        let progress = (!http_body::Body::is_end_stream(req.body())).then(|| {
            Arc::new(Mutex::new(Progress {
                done: false,
                waiting_for_client: false,
                last: Instant::now(),
            }))
        });
        let req = req.map(|body| Tracked::new(body, progress.clone(), max_body));
        let deadline = async move {
            let Some(progress) = progress else {
                return tokio::time::sleep(timeout).await;
            };
            loop {
                let (stalled_since, now) = {
                    let p = progress.lock().unwrap_or_else(|e| e.into_inner());
                    let stalled = p.done || !p.waiting_for_client;
                    (stalled.then_some(p.last), Instant::now())
                };
                match stalled_since {
                    Some(since) if now >= since + timeout => return,
                    Some(since) => tokio::time::sleep_until(since + timeout).await,
                    // The client is slow to send: not the upstream's fault; look again later.
                    None => tokio::time::sleep(timeout).await,
                }
            }
        };
        let res = tokio::select! {
            res = self.client.request(req) => Ok(res),
            () = deadline => Err(()),
        };
        let res = match res {
            Err(()) => {
                warn!(
                    route,
                    "upstream sent no response head within upstream_timeout"
                );
                return Err(GatewayError::UpstreamTimeout);
            }
            Ok(Err(e)) if caused_by::<BodyTooLarge>(&e) => {
                debug!(route, "request body over max_body_bytes");
                return Err(GatewayError::PayloadTooLarge);
            }
            Ok(Err(e)) if client_body_failed(&e) => {
                // The client's body broke off or was malformed (a bad chunk): the client's fault.
                debug!(route, error = %error_chain(&e), "request body failed");
                return Err(GatewayError::BadRequest(
                    "malformed or incomplete request body",
                ));
            }
            Ok(Err(e)) => {
                warn!(route, error = %error_chain(&e), connect = e.is_connect(), "upstream request failed");
                return Err(GatewayError::UpstreamUnavailable);
            }
            Ok(Ok(res)) => res,
        };
        let mut res = res;
        let switching = res.status() == StatusCode::SWITCHING_PROTOCOLS;
        let Some((client_upgrade, mut closing)) = client_upgrade.filter(|_| switching) else {
            if switching {
                // The upstream switched protocols the client did not ask the gateway to tunnel.
                warn!(
                    route,
                    "upstream answered 101 to a request that was not an upgrade"
                );
                return Err(GatewayError::UpstreamUnavailable);
            }
            let (mut parts, body) = res.into_parts();
            headers::rewrite_response(&mut parts.headers, false);
            return Ok(Response::from_parts(parts, Body::from(body)));
        };
        let upstream_upgrade = hyper::upgrade::on(&mut res);
        let (mut parts, _empty) = res.into_parts();
        headers::rewrite_response(&mut parts.headers, true);
        let route = route.to_owned();
        tokio::spawn(async move {
            match tokio::try_join!(client_upgrade, upstream_upgrade) {
                Ok((client, upstream)) => {
                    let mut client = TokioIo::new(client);
                    let mut upstream = TokioIo::new(upstream);
                    tokio::select! {
                        r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                            debug!(route, result = ?r.map_err(|e| e.kind()), "tunnel closed");
                        }
                        _ = closing.wait_for(|closing| *closing) => {
                            debug!(route, "tunnel closed by the drain deadline");
                        }
                    }
                }
                Err(e) => debug!(route, error = %e, "upgrade failed"),
            }
        });
        Ok(Response::from_parts(parts, Body::empty()))
    }
}

/// True when `E` is somewhere in `e`'s chain of sources.
fn caused_by<E: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<E>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// True when sending failed because the request body (from the client) failed.
fn client_body_failed(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = e.source();
    while let Some(src) = cur {
        if let Some(h) = src.downcast_ref::<hyper::Error>() {
            if h.is_user() {
                return true;
            }
        }
        cur = src.source();
    }
    false
}

/// An error with its sources, for the log (never contains request data).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        s.push_str(": ");
        s.push_str(&src.to_string());
        cur = src.source();
    }
    s
}

/// How far the request body has gone, for `upstream_timeout`.
#[derive(Debug)]
struct Progress {
    /// The body has been sent in full (or failed).
    done: bool,
    /// The upstream asked for more body and the client has not sent it yet.
    waiting_for_client: bool,
    /// When `done` or the last body frame was handed over.
    last: Instant,
}

/// A request body that records its progress (see [`Progress`]).
#[derive(Debug)]
pub struct Tracked {
    inner: Body,
    progress: Option<Arc<Mutex<Progress>>>,
    limit: Option<u64>,
    received: u64,
}

impl Tracked {
    fn new(inner: Body, progress: Option<Arc<Mutex<Progress>>>, limit: Option<u64>) -> Tracked {
        let t = Tracked {
            inner,
            progress,
            limit,
            received: 0,
        };
        if http_body::Body::is_end_stream(&t.inner) {
            t.update(true, false);
        }
        t
    }

    fn update(&self, done: bool, waiting_for_client: bool) {
        let Some(progress) = &self.progress else {
            return;
        };
        let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
        if !p.done {
            p.done = done;
            p.waiting_for_client = waiting_for_client;
            p.last = Instant::now();
        }
    }
}

/// The request body went over the route's `max_body_bytes`.
#[derive(Debug)]
pub struct BodyTooLarge;

impl std::fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body over max_body_bytes")
    }
}

impl std::error::Error for BodyTooLarge {}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, BoxError>>> {
        use std::task::Poll;
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        match polled {
            Poll::Ready(None) => {
                self.update(true, false);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                self.update(true, false);
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(Some(Ok(frame))) => {
                self.received += frame.data_ref().map_or(0, |d| d.len() as u64);
                if self.limit.is_some_and(|limit| self.received > limit) {
                    self.update(true, false);
                    return Poll::Ready(Some(Err(BodyTooLarge.into())));
                }
                let done = http_body::Body::is_end_stream(&self.inner);
                self.update(done, false);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                self.update(false, true);
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
