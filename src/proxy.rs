//! Forwarding: the only step of a request that does I/O with the upstream. A pooled keep-alive
//! HTTP/1.1 client; bodies stream both ways; `Upgrade`s (WebSocket) are tunnelled once the
//! upstream answers `101`. Failures map to 502 (refused, reset, garbage, connect timeout) and 504
//! (no response head within `upstream_timeout`).

use std::time::Duration;

use http::{Request, Response, StatusCode, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tracing::{debug, warn};

use crate::body::Body;
use crate::error::GatewayError;
use crate::headers;
use tokio::sync::{oneshot, watch};

/// The upstream client: one connection pool shared by every route of a configuration.
#[derive(Clone, Debug)]
pub struct Upstream {
    client: Client<HttpConnector, Tracked>,
    timeout: Duration,
}

impl Upstream {
    /// A client that connects within `connect_timeout` and waits `upstream_timeout` for a
    /// response head.
    pub fn new(connect_timeout: Duration, upstream_timeout: Duration) -> Upstream {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
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
    ) -> Result<Response<Body>, GatewayError> {
        let client_upgrade = tunnel.map(|closing| (hyper::upgrade::on(&mut req), closing));
        *req.version_mut() = Version::HTTP_11;
        // upstream_timeout measures the upstream, not the client's upload: it starts once the
        // request body has been sent in full.
        let (sent, body_sent) = oneshot::channel();
        let req = req.map(|body| Tracked::new(body, sent));
        let timeout = self.timeout;
        let deadline = async move {
            let _ = body_sent.await;
            tokio::time::sleep(timeout).await;
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

/// A request body that reports when it has been sent in full (or has failed).
#[derive(Debug)]
pub struct Tracked {
    inner: Body,
    sent: Option<oneshot::Sender<()>>,
}

impl Tracked {
    fn new(inner: Body, sent: oneshot::Sender<()>) -> Tracked {
        let mut t = Tracked {
            inner,
            sent: Some(sent),
        };
        t.check_end();
        t
    }

    fn check_end(&mut self) {
        if http_body::Body::is_end_stream(&self.inner) {
            self.fire();
        }
    }

    fn fire(&mut self) {
        if let Some(tx) = self.sent.take() {
            let _ = tx.send(());
        }
    }
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            std::task::Poll::Ready(None | Some(Err(_))) => this.fire(),
            std::task::Poll::Ready(Some(Ok(_))) => this.check_end(),
            std::task::Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
