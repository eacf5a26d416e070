//! The request pipeline, top to bottom in [`Runtime::prepare`], the same for HTTP/1 and HTTP/2:
//!
//! 1. [`target`]: method, Host and path checks; the path is normalized once (see
//!    [`crate::policy::path`]) and that exact path is both routed on and forwarded;
//! 2. `routes.select` picks the route (or 404);
//! 3. [`authenticate`]: `auth::bearer`, `verifier.verify`, the route's `require` (401/403);
//! 4. the route's body limit (413);
//! 5. `headers::rewrite_request`: strip everything spoofable and hop-by-hop, inject, and write
//!    the upstream's request head.
//!
//! The protocol front-ends (`http1.rs`, `http2.rs`) then hand that head to `proxy.rs`, the only
//! step that does I/O with the upstream (502/504), and stream the answer back.
//!
//! Each request runs on the [`Runtime`] (config, verifier, header policy, upstream pools) that
//! was current when it arrived; a reload swaps in a new one for the requests after it.

pub mod headers;
pub mod rejection;

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::header::HeaderValue;
use tokio::sync::watch;
use tracing::info;

use crate::auth::keys::Keys;
use crate::auth::{self, Identity, Verifier};
use crate::config::Config;
use crate::ops::metrics::{Metrics, ReasonLabels, RequestLabels, RouteLabels};
use crate::pipeline::headers::{ClientInfo, HeaderPolicy, Outgoing};
use crate::pipeline::rejection::GatewayError;
use crate::policy::path;
use crate::policy::routes::{normalize_host, AuthMode, Route};
use crate::upstream::{Origin, Upstreams};
use crate::wire::{Framing, Header};

/// Everything built from one config + key set.
#[derive(Debug)]
pub struct Runtime {
    /// The validated configuration.
    pub config: Config,
    /// The key files the keys came from (watched for changes).
    pub key_files: Vec<std::path::PathBuf>,
    verifier: Verifier,
    policy: HeaderPolicy,
    upstreams: Upstreams,
}

impl Runtime {
    /// Builds the verifier, header policy and upstream pools for `config` and `keys`.
    pub fn new(config: Config, keys: &Keys) -> Runtime {
        Runtime {
            verifier: Verifier::new(&config.auth, keys),
            policy: HeaderPolicy::new(&config.auth),
            upstreams: Upstreams::new(&config),
            key_files: keys.files.clone(),
            config,
        }
    }

    /// The connection pool of `route`'s upstream.
    pub fn origin(&self, route: &Route) -> &Arc<Origin> {
        self.upstreams.for_route(route)
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

    /// The pipeline for one request head: checks, route, authentication, limits, and the
    /// upstream's request head appended to `out`. What it learns along the way goes into
    /// `record`, for the access log and the metrics, also when it refuses the request.
    pub fn prepare<'r>(
        &'r self,
        req: &Inbound<'_>,
        client: &ClientInfo,
        out: &mut Vec<u8>,
        record: &mut Record,
    ) -> Result<Forward<'r>, GatewayError> {
        // Until the path is normalized, the log shows an origin-form path as sent (never the
        // query, nor an absolute-form target, which may carry credentials).
        if req.target.starts_with('/') {
            record.set_path(req.target.split('?').next().unwrap_or(""));
        }
        let target = target(req, self.config.routes.has_host_routes())?;
        record.set_path(&target.path);
        let route = self
            .config
            .routes
            .select(target.host.as_deref(), &target.path)
            .ok_or(GatewayError::NoRoute)?;
        record.route = route.name.clone();
        let identity = authenticate(&self.verifier, route, req.headers)?;
        record.auth = match (&identity, route.auth) {
            (Some(_), _) => "ok",
            (None, AuthMode::Public) => "public",
            (None, _) => "anonymous",
        };
        record.user = identity.as_ref().map(|id| id.user.clone());
        // A declared length over the limit is refused before anything is sent; a chunked body
        // is counted as it streams.
        if let (Framing::Length(n), Some(limit)) = (req.body, route.max_body) {
            if n > limit {
                return Err(GatewayError::PayloadTooLarge);
            }
        }
        let upgrade = match req.protocol {
            Protocol::Http11 => headers::upgrade_request(req.headers),
            Protocol::Http10 | Protocol::Http2 => None,
        };
        headers::rewrite_request(
            out,
            &self.policy,
            client,
            &Outgoing {
                method: req.method,
                path: &target.path,
                query: target.query,
                host: target.host_header,
                upstream_host: route.upstream.authority().map_or("", |a| a.as_str()),
                headers: req.headers,
                identity: identity.as_deref(),
                upgrade,
                framing: req.body,
                join_cookies: req.protocol == Protocol::Http2,
            },
        );
        Ok(Forward {
            route,
            tunnel: upgrade.is_some(),
        })
    }
}

/// The protocol a request arrived over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.0.
    Http10,
    /// HTTP/1.1.
    Http11,
    /// HTTP/2 (h2 or h2c).
    Http2,
}

/// One request head, as either protocol delivers it.
#[derive(Debug)]
pub struct Inbound<'a> {
    /// The method.
    pub method: &'a str,
    /// HTTP/1: the request target as sent (origin-form or absolute-form); HTTP/2: `:path`.
    pub target: &'a str,
    /// HTTP/2: `:authority`.
    pub authority: Option<&'a str>,
    /// The protocol.
    pub protocol: Protocol,
    /// The header fields, in order.
    pub headers: &'a [Header<'a>],
    /// How the body will be sent upstream: `Length` when its length is known, else `Chunked`.
    pub body: Framing,
}

/// What [`Runtime::prepare`] decided for a request that goes upstream.
#[derive(Debug)]
pub struct Forward<'r> {
    /// The route.
    pub route: &'r Route,
    /// The request asks for a protocol switch (WebSocket) that the gateway will tunnel.
    pub tunnel: bool,
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

    /// A handle a tunnel holds while it is open; it turns true when the drain deadline passes.
    pub fn tunnel_handle(&self) -> watch::Receiver<bool> {
        self.tunnels.subscribe()
    }

    /// Tells every open tunnel to close (the drain deadline has passed).
    pub fn close_tunnels(&self) {
        self.tunnels.send_replace(true);
    }

    /// Counts a response about to be sent: requests by route and status, the upstream's
    /// latency, and the reason of a refusal.
    pub fn count(&self, record: &Record, status: u16) {
        if let Some(upstream) = record.upstream {
            self.metrics
                .upstream_seconds
                .get_or_create(&RouteLabels {
                    route: record.route.clone(),
                })
                .observe(upstream.as_secs_f64());
        }
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                route: record.route.clone(),
                status,
            })
            .inc();
    }

    /// Counts a refusal by authentication or authorization, by reason.
    pub fn count_refusal(&self, error: &GatewayError, record: &mut Record) {
        if let GatewayError::MissingToken
        | GatewayError::InvalidToken(_)
        | GatewayError::Forbidden(_) = error
        {
            record.auth = error.outcome();
            self.metrics
                .auth_failures
                .get_or_create(&ReasonLabels {
                    reason: record.auth,
                })
                .inc();
        }
    }
}

/// What one request did, for the access log and the metrics. Filled in as the request goes.
#[derive(Debug)]
pub struct Record {
    /// When the request head was read; set only while the access log is on.
    start: Option<Instant>,
    method: String,
    path: String,
    /// The route's name, `-` until one matched.
    pub route: Arc<str>,
    /// The verified caller.
    pub user: Option<HeaderValue>,
    /// `ok`, `public`, `anonymous`, or why the token was refused.
    pub auth: &'static str,
    /// From forwarding to the upstream's response head.
    pub upstream: Option<Duration>,
    /// The status sent (0 until then).
    pub status: u16,
}

/// The route name of a request no route matched.
fn no_route() -> Arc<str> {
    static NAME: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
    NAME.get_or_init(|| Arc::from("-")).clone()
}

/// True while the access log is on (`RUST_LOG` lets `jwtgate::access` at info through).
pub fn access_log_enabled() -> bool {
    tracing::enabled!(target: "jwtgate::access", tracing::Level::INFO)
}

impl Record {
    /// A record for a request with `method`.
    pub fn new(method: &str) -> Record {
        let log = access_log_enabled();
        Record {
            start: log.then(Instant::now),
            method: if log {
                method.to_owned()
            } else {
                String::new()
            },
            path: String::new(),
            route: no_route(),
            user: None,
            auth: "-",
            upstream: None,
            status: 0,
        }
    }

    fn set_path(&mut self, path: &str) {
        if self.start.is_some() {
            path.clone_into(&mut self.path);
        }
    }

    /// Writes the access log line (when it is on): `bytes` of body sent, `complete` when the
    /// whole response went out. A request that never got an answer is logged as 499 (the
    /// client went away, as nginx calls it).
    pub fn log(&self, bytes: u64, complete: bool) {
        let Some(start) = self.start else {
            return;
        };
        const CLIENT_CLOSED: u16 = 499;
        info!(
            target: "jwtgate::access",
            method = %self.method,
            path = %self.path,
            route = %self.route,
            status = if self.status == 0 { CLIENT_CLOSED } else { self.status },
            user = self.user.as_ref().and_then(|u| u.to_str().ok()).unwrap_or("-"),
            auth = self.auth,
            upstream_ms = self.upstream.map(|d| d.as_secs_f64() * 1000.0),
            total_ms = start.elapsed().as_secs_f64() * 1000.0,
            bytes,
            complete,
        );
    }
}

/// The request's routing facts, after every check.
#[derive(Debug)]
struct Target<'a> {
    /// Normalized host for routing (only when some route has a host).
    host: Option<String>,
    /// The authority as the client sent it (for `Host` and `X-Forwarded-Host` upstream).
    host_header: Option<&'a [u8]>,
    /// The normalized path: routed on and forwarded.
    path: Cow<'a, str>,
    /// The query, as sent.
    query: Option<&'a str>,
}

fn target<'a>(req: &Inbound<'a>, has_host_routes: bool) -> Result<Target<'a>, GatewayError> {
    if req.method == "CONNECT" {
        return Err(GatewayError::MethodNotAllowed);
    }
    let mut hosts = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"));
    let host_field = hosts.next().map(|h| h.value);
    if hosts.next().is_some() {
        return Err(GatewayError::BadRequest("more than one Host header"));
    }
    let (authority, path_and_query) = split_target(req)?;
    if authority.is_some_and(|a| a.contains('@')) {
        return Err(GatewayError::BadRequest("userinfo in request target"));
    }
    let host_header = match (authority, host_field) {
        (Some(a), Some(h)) if !a.as_bytes().eq_ignore_ascii_case(h) => {
            return Err(GatewayError::BadRequest(
                "Host header does not match the request target",
            ))
        }
        (Some(a), _) => Some(a.as_bytes()),
        (None, Some(h)) => Some(h),
        (None, None) if req.protocol == Protocol::Http11 => {
            return Err(GatewayError::BadRequest("missing Host header"))
        }
        (None, None) => None,
    };
    let host = match host_header {
        Some(h) => {
            let valid = !h.is_empty()
                && h.iter()
                    .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b'\\' | b'@'));
            if !valid {
                return Err(GatewayError::BadRequest("invalid Host header"));
            }
            // Without host routes the host is never looked up: skip normalizing it.
            has_host_routes.then(|| normalize_host(&String::from_utf8_lossy(h)))
        }
        None => None,
    };
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let path = path::normalize(path).map_err(GatewayError::BadRequest)?;
    Ok(Target {
        host,
        host_header,
        path,
        query,
    })
}

/// The authority (absolute-form or HTTP/2) and the path-and-query of a request target.
fn split_target<'a>(req: &Inbound<'a>) -> Result<(Option<&'a str>, &'a str), GatewayError> {
    let t = req.target;
    if t.starts_with('/') {
        return Ok((req.authority, t));
    }
    if t == "*" {
        return Err(GatewayError::BadRequest("asterisk-form request target"));
    }
    // absolute-form (RFC 9112 §3.2.2): what a client talking to a proxy sends.
    let rest = ["http://", "https://"]
        .iter()
        .find_map(|scheme| {
            t.get(..scheme.len())
                .filter(|s| s.eq_ignore_ascii_case(scheme))
                .map(|s| &t[s.len()..])
        })
        .ok_or(GatewayError::BadRequest(
            "request target must be an absolute path",
        ))?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() {
        return Err(GatewayError::BadRequest("request target without a host"));
    }
    match path {
        "" => Ok((Some(authority), "/")),
        p if p.starts_with('?') => Err(GatewayError::BadRequest(
            "request target must be an absolute path",
        )),
        p => Ok((Some(authority), p)),
    }
}

/// Token checks for `route`: `None` for an anonymous request the route lets through.
fn authenticate(
    verifier: &Verifier,
    route: &Route,
    headers: &[Header<'_>],
) -> Result<Option<Arc<Identity>>, GatewayError> {
    if route.auth == AuthMode::Public {
        return Ok(None);
    }
    let token = auth::bearer(headers).map_err(GatewayError::InvalidToken)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn inbound<'a>(target: &'a str, headers: &'a [Header<'a>]) -> Inbound<'a> {
        Inbound {
            method: "GET",
            target,
            authority: None,
            protocol: Protocol::Http11,
            headers,
            body: Framing::Empty,
        }
    }

    #[test]
    fn request_targets() {
        let host = [Header {
            name: "Host",
            value: b"app.example",
        }];
        let t = target(&inbound("/a/./b?x=1", &host), false).unwrap();
        assert_eq!((t.path.as_ref(), t.query), ("/a/b", Some("x=1")));
        assert_eq!(t.host_header, Some(&b"app.example"[..]));
        let t = target(&inbound("http://APP.example/p?q", &host), false).unwrap();
        assert_eq!((t.path.as_ref(), t.query), ("/p", Some("q")));
        let t = target(&inbound("http://app.example", &host), false).unwrap();
        assert_eq!(t.path, "/");
        for bad in [
            "*",
            "app.example:80",
            "p/x",
            "http://other.example/p",
            "http://u@app.example/p",
            "http:///p",
            "ftp://app.example/p",
            "http://app.example?q",
        ] {
            assert!(target(&inbound(bad, &host), false).is_err(), "{bad}");
        }
        assert!(
            target(&inbound("/", &[]), false).is_err(),
            "HTTP/1.1 needs Host"
        );
        let two = [host[0], host[0]];
        assert!(target(&inbound("/", &two), false).is_err());
        for h in ["a/b", "u@a", "a b", ""] {
            let bad = [Header {
                name: "host",
                value: h.as_bytes(),
            }];
            assert!(target(&inbound("/", &bad), false).is_err(), "{h:?}");
        }
    }
}
