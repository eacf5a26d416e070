//! The request pipeline, top to bottom in [`Gateway::pipeline`]:
//!
//! 1. [`target`]: method, Host and path checks; the path is normalized once (see
//!    [`crate::path`]) and that exact path is both routed on and forwarded;
//! 2. `routes.select` picks the route (or 404);
//! 3. [`authenticate`]: `auth::bearer`, `verifier.verify`, the route's `require` (401/403);
//! 4. `headers::rewrite_request`: strip everything spoofable and hop-by-hop, then inject;
//! 5. `upstream.forward`: the only step that does I/O (502/504).
//!
//! Each request runs on the [`Runtime`] (config, verifier, header policy, upstream pool) that was
//! current when it arrived; a reload swaps in a new one for the requests after it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use http::header::{HeaderValue, CONNECTION, HOST};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Method, Request, Response, Uri, Version};
use hyper::body::Incoming;
use tokio::sync::watch;
use tracing::info;

use crate::auth::{self, Identity, Verifier};
use crate::body::Body;
use crate::config::Config;
use crate::error::GatewayError;
use crate::headers::{self, ClientInfo, HeaderPolicy};
use crate::keys::Keys;
use crate::metrics::{Metrics, ReasonLabels, RequestLabels, RouteLabels};
use crate::path;
use crate::proxy::Upstream;
use crate::route::{normalize_host, AuthMode, Route};

/// Everything built from one config + key set.
#[derive(Debug)]
pub struct Runtime {
    /// The validated configuration.
    pub config: Config,
    /// The key files the keys came from (watched for changes).
    pub key_files: Vec<std::path::PathBuf>,
    verifier: Verifier,
    policy: HeaderPolicy,
    /// The pool for routes that trust the default roots.
    upstream: Upstream,
    /// Pools for routes with their own `ca_file`, by route name.
    custom: std::collections::HashMap<Arc<str>, Upstream>,
}

impl Runtime {
    /// Builds the verifier, header policy and upstream pool for `config` and `keys`.
    pub fn new(config: Config, keys: &Keys) -> Runtime {
        let (connect, timeout) = (
            config.server.connect_timeout,
            config.server.upstream_timeout,
        );
        let upstream = Upstream::new(connect, timeout, crate::tls::default_client_config());
        let custom = config
            .routes
            .iter()
            .filter_map(|r| {
                Some((
                    r.name.clone(),
                    Upstream::new(connect, timeout, r.tls.clone()?),
                ))
            })
            .collect();
        Runtime {
            verifier: Verifier::new(&config.auth, keys),
            policy: HeaderPolicy::new(&config.auth),
            upstream,
            custom,
            key_files: keys.files.clone(),
            config,
        }
    }

    fn upstream_for(&self, route: &Route) -> &Upstream {
        match route.tls {
            Some(_) => self.custom.get(&route.name).unwrap_or(&self.upstream),
            None => &self.upstream,
        }
    }

    /// Files whose change should trigger a reload besides the config file: key files, the
    /// listener's certificate and key, and route CA files.
    pub fn watched_files(&self) -> Vec<std::path::PathBuf> {
        let mut files = self.key_files.clone();
        if let Some(tls) = &self.config.server.tls {
            files.push(tls.cert.clone());
            files.push(tls.key.clone());
        }
        files.extend(self.config.routes.iter().filter_map(|r| r.ca_file.clone()));
        files
    }
}

/// The gateway's shared state: the current runtime (swappable on reload), metrics, readiness,
/// and the tunnels (upgraded connections) that a drain must close at its deadline.
#[derive(Debug)]
pub struct Gateway {
    runtime: ArcSwap<Runtime>,
    /// Process-wide metrics.
    pub metrics: Metrics,
    ready: AtomicBool,
    tunnels: watch::Sender<bool>,
}

/// What the access log says about a request; logged when the response body is done (or
/// dropped), so that `bytes` and `total_ms` cover the whole exchange.
#[derive(Debug)]
struct AccessRecord {
    start: Instant,
    method: Method,
    path: String,
    route: Arc<str>,
    status: u16,
    user: Option<HeaderValue>,
    auth: &'static str,
    upstream_ms: Option<f64>,
}

impl AccessRecord {
    fn log(&self, bytes: u64, complete: bool) {
        info!(
            target: "jwtgate::access",
            method = %self.method,
            path = %self.path,
            route = %self.route,
            status = self.status,
            user = self.user.as_ref().and_then(|u| u.to_str().ok()).unwrap_or("-"),
            auth = self.auth,
            upstream_ms = self.upstream_ms,
            total_ms = self.start.elapsed().as_secs_f64() * 1000.0,
            bytes,
            complete,
        );
    }
}

/// A response body that writes the access log line when it ends or is dropped.
#[derive(Debug)]
pub struct Logged {
    inner: Body,
    record: Option<AccessRecord>,
    bytes: u64,
    complete: bool,
}

impl http_body::Body for Logged {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            std::task::Poll::Ready(Some(Ok(frame))) => {
                this.bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
                if this.inner.is_end_stream() {
                    this.complete = true;
                }
            }
            std::task::Poll::Ready(None) => this.complete = true,
            _ => {}
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

impl Drop for Logged {
    fn drop(&mut self) {
        if let Some(record) = self.record.take() {
            let complete = self.complete || http_body::Body::is_end_stream(&self.inner);
            record.log(self.bytes, complete);
        }
    }
}

/// Logs and counts a request whose handler was dropped before it answered (status 499, as
/// nginx calls it).
struct Unanswered<'a> {
    gateway: &'a Gateway,
    start: Instant,
    method: Method,
    path: String,
    out: Outcome,
    armed: bool,
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        const CLIENT_CLOSED: u16 = 499;
        self.gateway
            .metrics
            .requests
            .get_or_create(&RequestLabels {
                route: self.out.route.clone(),
                status: CLIENT_CLOSED,
            })
            .inc();
        AccessRecord {
            start: self.start,
            method: self.method.clone(),
            path: std::mem::take(&mut self.path),
            route: self.out.route.clone(),
            status: CLIENT_CLOSED,
            user: self.out.user.take(),
            auth: self.out.auth,
            upstream_ms: self
                .out
                .upstream
                .map(|t| t.elapsed().as_secs_f64() * 1000.0),
        }
        .log(0, false);
    }
}

/// What the pipeline learned, for the log and the metrics.
struct Outcome {
    route: Arc<str>,
    user: Option<HeaderValue>,
    auth: &'static str,
    upstream: Option<Instant>,
}

impl Gateway {
    /// A gateway serving `runtime`. Not ready until a listener is up ([`Gateway::set_ready`]).
    pub fn new(runtime: Runtime) -> Gateway {
        let metrics = Metrics::new();
        metrics.keys_loaded.set(auth::now());
        Gateway {
            runtime: ArcSwap::from_pointee(runtime),
            metrics,
            ready: AtomicBool::new(false),
            tunnels: watch::channel(false).0,
        }
    }

    /// The runtime new requests get.
    pub fn current(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Makes `runtime` the one new requests get; in-flight requests keep theirs.
    pub fn swap(&self, runtime: Runtime) {
        self.runtime.store(Arc::new(runtime));
        self.metrics.keys_loaded.set(auth::now());
    }

    /// True while ready to serve (`/readyz`).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Marks the gateway ready (listener up) or not (draining).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
        self.metrics.ready.set(i64::from(ready));
    }

    /// Tunnels open now (upgraded connections, e.g. WebSockets).
    pub fn open_tunnels(&self) -> usize {
        self.tunnels.receiver_count()
    }

    /// Tells every open tunnel to close (the drain deadline has passed).
    pub fn close_tunnels(&self) {
        self.tunnels.send_replace(true);
    }

    /// Serves one request: the pipeline, then the error mapping, metrics and access log.
    pub async fn handle(&self, req: Request<Incoming>, client: ClientInfo) -> Response<Logged> {
        let start = Instant::now();
        let rt = self.runtime.load_full();
        let method = req.method().clone();
        let version = req.version();
        let body_pending = !http_body::Body::is_end_stream(req.body());
        // If this future is dropped before it answers (the client went away, an HTTP/2 stream
        // was reset, the drain deadline passed), the guard still logs and counts the request.
        let mut guard = Unanswered {
            gateway: self,
            start,
            method: method.clone(),
            path: req.uri().path().to_owned(),
            out: Outcome {
                route: Arc::from("-"),
                user: None,
                auth: "-",
                upstream: None,
            },
            armed: true,
        };
        let result = self
            .pipeline(&rt, req, client, &mut guard.out, &mut guard.path)
            .await;
        guard.armed = false;
        let path = std::mem::take(&mut guard.path);
        let mut out = std::mem::replace(
            &mut guard.out,
            Outcome {
                route: Arc::from("-"),
                user: None,
                auth: "-",
                upstream: None,
            },
        );
        let res = match result {
            Ok(res) => res,
            Err(e) => {
                if let GatewayError::MissingToken
                | GatewayError::InvalidToken(_)
                | GatewayError::Forbidden(_) = e
                {
                    out.auth = e.outcome();
                    self.metrics
                        .auth_failures
                        .get_or_create(&ReasonLabels { reason: out.auth })
                        .inc();
                }
                let mut res = e.into_response();
                // A refused request's unread body must never be parsed as the next request.
                if body_pending && version <= Version::HTTP_11 {
                    res.headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
                res
            }
        };
        let upstream_ms = out.upstream.map(|sent| {
            let secs = sent.elapsed().as_secs_f64();
            self.metrics
                .upstream_seconds
                .get_or_create(&RouteLabels {
                    route: out.route.clone(),
                })
                .observe(secs);
            secs * 1000.0
        });
        let status = res.status().as_u16();
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                route: out.route.clone(),
                status,
            })
            .inc();
        let record = AccessRecord {
            start,
            method,
            path,
            route: out.route,
            status,
            user: out.user,
            auth: out.auth,
            upstream_ms,
        };
        res.map(|inner| Logged {
            inner,
            record: Some(record),
            bytes: 0,
            complete: false,
        })
    }

    async fn pipeline(
        &self,
        rt: &Runtime,
        req: Request<Incoming>,
        client: ClientInfo,
        out: &mut Outcome,
        logged_path: &mut String,
    ) -> Result<Response<Body>, GatewayError> {
        let (mut parts, body) = req.into_parts();
        let target = target(&parts, rt.config.routes.has_host_routes())?;
        logged_path.clone_from(&target.path);
        let route = rt
            .config
            .routes
            .select(target.host.as_deref(), &target.path)
            .ok_or(GatewayError::NoRoute)?;
        out.route = route.name.clone();
        let identity = authenticate(&rt.verifier, route, &parts)?;
        out.auth = match (&identity, route.auth) {
            (Some(_), _) => "ok",
            (None, AuthMode::Public) => "public",
            (None, _) => "anonymous",
        };
        out.user = identity.as_ref().map(|id| id.user.clone());
        // A declared length over the limit is refused before anything is sent; a chunked body
        // is counted as it streams (proxy.rs).
        if let Some(limit) = route.max_body {
            let declared = parts
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            if declared.is_some_and(|n| n > limit) {
                return Err(GatewayError::PayloadTooLarge);
            }
        }
        let upgrade = match parts.version {
            Version::HTTP_11 => headers::upgrade_request(&parts.headers),
            _ => None,
        };
        headers::rewrite_request(
            &mut parts.headers,
            &rt.policy,
            identity.as_deref(),
            &client,
            target.host_header.as_ref(),
            upgrade.clone(),
        );
        if let Some(host) = target.host_header {
            parts.headers.insert(HOST, host);
        }
        if parts.version == Version::HTTP_2 {
            headers::join_cookies(&mut parts.headers);
        }
        parts.uri = upstream_uri(route, &target.path, &parts.uri)?;
        out.upstream = Some(Instant::now());
        let tunnel = upgrade.map(|_| self.tunnels.subscribe());
        rt.upstream_for(route)
            .forward(
                Request::from_parts(parts, Body::from(body)),
                tunnel,
                &route.name,
                route.max_body,
            )
            .await
    }
}

/// The request's routing facts, after every check.
struct Target {
    /// Normalized host for routing.
    host: Option<String>,
    /// The host as the client sent it (for `Host` and `X-Forwarded-Host` upstream).
    host_header: Option<HeaderValue>,
    /// The normalized path: routed on and forwarded.
    path: String,
}

fn target(parts: &Parts, has_host_routes: bool) -> Result<Target, GatewayError> {
    if parts.method == Method::CONNECT {
        return Err(GatewayError::MethodNotAllowed);
    }
    let mut hosts = parts.headers.get_all(HOST).iter();
    let host_field = hosts.next();
    if hosts.next().is_some() {
        return Err(GatewayError::BadRequest("more than one Host header"));
    }
    let authority = parts.uri.authority();
    if authority.is_some_and(|a| a.as_str().contains('@')) {
        return Err(GatewayError::BadRequest("userinfo in request target"));
    }
    let host_header = match (authority, host_field) {
        (Some(a), Some(h)) if !a.as_str().eq_ignore_ascii_case(h.to_str().unwrap_or("")) => {
            return Err(GatewayError::BadRequest(
                "Host header does not match the request target",
            ))
        }
        (Some(a), _) => HeaderValue::from_str(a.as_str()).ok(),
        (None, Some(h)) => Some(h.clone()),
        (None, None) if parts.version == Version::HTTP_11 => {
            return Err(GatewayError::BadRequest("missing Host header"))
        }
        (None, None) => None,
    };
    let host = match &host_header {
        Some(h) => {
            let h = h
                .to_str()
                .map_err(|_| GatewayError::BadRequest("invalid Host header"))?;
            if h.is_empty() || h.contains(['/', '\\', '@', ' ']) {
                return Err(GatewayError::BadRequest("invalid Host header"));
            }
            // Without host routes the host is never looked up: skip normalizing it.
            has_host_routes.then(|| normalize_host(h))
        }
        None => None,
    };
    let path = path::normalize(parts.uri.path())
        .map_err(GatewayError::BadRequest)?
        .into_owned();
    Ok(Target {
        host,
        host_header,
        path,
    })
}

/// Token checks for `route`: `None` for an anonymous request the route lets through.
fn authenticate(
    verifier: &Verifier,
    route: &Route,
    parts: &Parts,
) -> Result<Option<Arc<Identity>>, GatewayError> {
    if route.auth == AuthMode::Public {
        return Ok(None);
    }
    let token = auth::bearer(&parts.headers).map_err(GatewayError::InvalidToken)?;
    let Some(token) = token else {
        // An anonymous request cannot meet a `require`, so an optional route that has one
        // asks for a token like a required route does.
        return match route.auth {
            AuthMode::Optional if route.require.is_empty() => Ok(None),
            _ => Err(GatewayError::MissingToken),
        };
    };
    let identity = verifier.verify(token).map_err(GatewayError::InvalidToken)?;
    if let Some(claim) = route.unmet_requirement(&identity.claims) {
        return Err(GatewayError::Forbidden(claim.to_owned()));
    }
    Ok(Some(identity))
}

/// The upstream's URI: its scheme and authority, the normalized path, the client's query.
fn upstream_uri(route: &Route, path: &str, client: &Uri) -> Result<Uri, GatewayError> {
    let pq = match client.path_and_query() {
        // Unchanged by normalization (the common case): reuse it, no copy, no re-parse.
        Some(pq) if pq.path() == path => Ok(pq.clone()),
        _ => match client.query() {
            Some(q) => PathAndQuery::try_from(format!("{path}?{q}")),
            None => PathAndQuery::try_from(path),
        },
    }
    .map_err(|_| GatewayError::BadRequest("invalid request target"))?;
    let mut parts = route.upstream.clone().into_parts();
    parts.path_and_query = Some(pq);
    Uri::from_parts(parts).map_err(|_| GatewayError::BadRequest("invalid request target"))
}
