//! The decision for one request, the same for every front-end and free of protocol bytes:
//! [`Pipeline::decide`] takes a [`RequestView`] (what any protocol tells about a request head)
//! and returns a [`Decision`]: forward this [`UpstreamRequest`], answer this [`LocalResponse`],
//! or reject with this [`Rejection`]. Its stages, in order, each a call into its own module:
//!
//! 1. [`target::target`]: method, `Host` and request-target checks; the path is normalized
//!    once (see [`crate::wire::uri`]) and that exact path is both routed on and forwarded
//!    (`OPTIONS *` is answered here);
//! 2. `routes.select` picks the route (or 404);
//! 3. [`authenticate`]: `auth::bearer`, `verifier.verify`, the route's `require` (401/403);
//! 4. the route's body limit (413);
//! 5. [`upgrade::negotiate`]: the protocol switch the route tunnels, if one was asked for;
//! 6. [`headers`]: the upstream request, with everything spoofable and hop-by-hop stripped and
//!    the identity injected (written by the upstream client in its protocol).
//!
//! After the upstream answers, [`response`] is the one path every front-end takes (the `101`
//! check, the length to announce, the fields that pass); [`rejection`] is the one mapping of
//! refusals to answers.

pub mod headers;
pub mod rejection;
pub mod response;
pub mod target;
pub mod upgrade;

use std::borrow::Cow;
use std::sync::Arc;

pub use headers::{ClientInfo, FieldSink, HeaderPolicy, MapSink, UpstreamRequest};
pub use rejection::{LocalResponse, Rejection};

use crate::auth::{self, Identity, Verifier};
use tracing::warn;

use crate::auth::assertion::Signer;
use crate::auth::bearer::Source;
use crate::config::{AuthMode, Config};
use crate::ops::access::Record;
use crate::ops::{request_id, trace};
use crate::policy::metadata::Documents;
use crate::policy::routes::{is_scope, RouteCors};
use crate::policy::{Route, RouteTable};
use crate::wire::{Framing, Header};
use target::Target;

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

/// One request head, as any front-end delivers it.
#[derive(Debug)]
pub struct RequestView<'a> {
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
    /// The same fields as a header map, when the head came as one (HTTP/2): an HTTP/2
    /// upstream's head shares them (see [`MapSink`]).
    pub map: Option<&'a http::HeaderMap>,
    /// How the body will be sent upstream: `Length` when its length is known, else `Chunked`.
    pub body: Framing,
    /// Where it came from.
    pub client: &'a ClientInfo,
}

/// What to do with a request.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // lives on the stack for one request, never stored
pub enum Decision<'p, 'a> {
    /// Send it upstream.
    Forward(Forward<'p, 'a>),
    /// Answer it here (not a refusal).
    Respond(LocalResponse),
    /// Refuse it.
    Reject(Rejection),
}

/// A request that goes upstream.
#[derive(Debug)]
pub struct Forward<'p, 'a> {
    /// The route.
    pub route: &'p Route,
    /// What the upstream gets.
    pub request: UpstreamRequest<'p, 'a>,
    /// The protocol switch offered to the upstream, to check its `101` against.
    pub upgrade: Option<upgrade::Offer>,
}

/// The decision-making part of a runtime: routes, verifier, header rules. Built once per
/// (re)load (see `runtime`).
#[derive(Debug)]
pub struct Pipeline {
    routes: RouteTable,
    verifier: Verifier,
    headers: HeaderPolicy,
    /// `auth.max_identity_bytes`.
    max_identity_bytes: usize,
    /// `auth.cookie`.
    cookie: Option<String>,
    /// `server.trusted_proxies`: whose `X-Forwarded-Proto` says the request's own origin.
    trusted: Vec<ipnet::IpNet>,
    /// RFC 9728 documents, by path.
    metadata: Documents,
    /// The signed assertion's signer, when configured.
    signer: Option<Signer>,
}

impl Pipeline {
    /// A pipeline deciding with these parts, for `config`.
    pub fn new(
        routes: RouteTable,
        verifier: Verifier,
        headers: HeaderPolicy,
        signer: Option<Signer>,
        config: &Config,
    ) -> Pipeline {
        Pipeline {
            routes,
            verifier,
            headers,
            max_identity_bytes: config.auth.max_identity_bytes,
            cookie: config.auth.cookie.clone(),
            trusted: config.server.trusted_proxies.clone(),
            metadata: Documents::new(&config.routes),
            signer,
        }
    }

    /// The route table.
    pub fn routes(&self) -> &RouteTable {
        &self.routes
    }

    /// The verifier.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// The header rules.
    pub fn header_policy(&self) -> &HeaderPolicy {
        &self.headers
    }

    /// The assertion signer, when configured.
    pub fn signer(&self) -> Option<&Signer> {
        self.signer.as_ref()
    }

    /// Decides what happens to `req` (see the module docs). What it learns along the way goes
    /// into `record`, for the access log and the metrics, also when it refuses the request.
    pub fn decide<'p, 'a>(
        &'p self,
        req: &RequestView<'a>,
        record: &mut Record,
    ) -> Decision<'p, 'a> {
        record.grpc = rejection::is_grpc(req.method, req.headers);
        let incoming = self.identify(req, record);
        match self.forward(req, record, incoming) {
            Ok(Stage::Forward(forward)) => {
                if record.grpc {
                    // The method is the path (`/package.Service/Method`), for the metrics: only
                    // of calls that passed (a refused client must not fill the method labels).
                    record.set_grpc_method(&forward.request.path);
                }
                Decision::Forward(forward)
            }
            Ok(Stage::Respond(local)) => Decision::Respond(local),
            Err(rejection) => Decision::Reject(rejection),
        }
    }

    /// The request's ID (a trusted peer's `X-Request-Id`, or the one [`Record::new`] made up)
    /// and its trace (continuing the client's `traceparent` when it is valid). Returns the
    /// client's trace context, for the upstream when tracing is off.
    fn identify(&self, req: &RequestView<'_>, record: &mut Record) -> trace::Incoming {
        let scan = trace::Scan::of(req.headers);
        if let Some(value) = scan.request_id {
            // Checks come from trusted proxies only (refused before this otherwise).
            let trusted =
                req.client.checks || self.trusted.iter().any(|n| n.contains(&req.client.ip));
            if let Some(id) = request_id::choose(Some(value), trusted) {
                record.decorations.request_id = Some(id);
            }
        }
        let incoming = trace::Incoming::read(req.headers, scan.traceparent, scan.tracestate);
        if let (None, Some(start)) = (&record.trace, record.traced) {
            let protocol = match req.protocol {
                Protocol::Http10 => "1.0",
                Protocol::Http11 => "1.1",
                Protocol::Http2 => "2",
            };
            record.trace = trace::RequestTrace::begin(
                &incoming,
                start,
                req.client.proto,
                req.client.ip,
                protocol,
            );
            if record.trace.as_ref().is_some_and(|t| t.sampled()) {
                record.keep_method(req.method);
            }
        }
        incoming
    }

    /// The stages.
    fn forward<'p, 'a>(
        &'p self,
        req: &RequestView<'a>,
        record: &mut Record,
        incoming: trace::Incoming,
    ) -> Result<Stage<'p, 'a>, Rejection> {
        // Until the path is normalized, the log shows an origin-form path as sent (never the
        // query, nor an absolute-form target, which may carry credentials).
        if req.target.starts_with('/') || req.target == "*" {
            record.set_path(req.target.split('?').next().unwrap_or(""));
        }
        let Some(target) = target::target(req, self.routes.has_host_routes())? else {
            return match req.method {
                "OPTIONS" => Ok(Stage::Respond(LocalResponse::options())),
                _ => Err(Rejection::BadRequest("asterisk-form request target")),
            };
        };
        record.set_path(&target.path);
        // RFC 9728 metadata: public, answered here, before routing (its path is outside any
        // route's prefix).
        if let Some(doc) = self
            .metadata
            .get(&target.path)
            .filter(|_| !req.client.checks)
        {
            return match req.method {
                "GET" | "HEAD" => Ok(Stage::Respond(LocalResponse::json(200, doc))),
                _ => Err(Rejection::MethodNotAllowed),
            };
        }
        let route = self
            .routes
            .select(target.host.as_deref(), &target.path)
            .ok_or(Rejection::NoRoute)?;
        // A route without an upstream is only for forward-auth checks: inline, it is a 404
        // (never a fall-through to a shorter route, which may ask less).
        if route.upstream.is_none() && !req.client.checks {
            return Err(Rejection::NoRoute);
        }
        record.route = route.name.clone();
        if let (Some(name), Some(query)) = (&route.query_token, target.query) {
            if auth::bearer::smuggled(query, name) {
                return Err(Rejection::BadRequest(
                    "the query token parameter after ';' cannot be removed with certainty",
                ));
            }
        }
        if let Some(url) = &route.resource_metadata {
            record.decorations.resource_metadata = Some(url.clone());
        }
        let preflight = match route.cors {
            Some(_) => Preflight::of(req),
            None => None,
        };
        let identity = match (&route.cors, preflight) {
            (Some(RouteCors::Gateway(cors)), preflight) => {
                let metadata = record.decorations.resource_metadata.take();
                let id = record.decorations.request_id.take();
                record.decorations = cors.decorations(single(req.headers, "origin"));
                record.decorations.resource_metadata = metadata;
                record.decorations.request_id = id;
                if let Some(p) = preflight {
                    // Answered here, without a token; nothing is forwarded either way.
                    if cors.preflight_allowed(p.origin, p.method, &p.headers) {
                        record.auth = "preflight";
                        return Ok(Stage::Respond(LocalResponse::preflight(
                            cors.preflight_fields(),
                        )));
                    }
                    record.decorations.fields.truncate(1);
                    return Err(Rejection::PreflightRefused);
                }
                self.authenticate(route, req, &target)?
            }
            // The upstream answers CORS: its preflights go there without a token.
            (Some(RouteCors::Upstream), Some(_)) => None,
            _ => self.authenticate(route, req, &target)?,
        };
        let mut assertion = None;
        if let Some(id) = &identity {
            for (claim, why) in &id.left_out {
                warn!(route = %route.name, user = ?id.user, claim = %claim, reason = why, "claim left out of the identity headers: its value cannot be passed without ambiguity");
            }
            if let Some(signer) = &self.signer {
                let aud = audience(route, req, &target);
                assertion = signer.assertion(id, route.id, &aud, auth::now());
            }
            // Checked before anything is sent: an upstream must never answer 431 because of
            // what the gateway added.
            if self.headers.identity_size(id, assertion.as_ref()) > self.max_identity_bytes {
                record.user = Some(id.user.clone());
                return Err(Rejection::IdentityTooLarge);
            }
        }
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
                return Err(Rejection::PayloadTooLarge);
            }
        }
        // The upstream's parent span is the gateway's when tracing is on; otherwise the
        // client's valid context passes on as it came.
        let trace = match &mut record.trace {
            Some(t) => {
                t.upstream = route.upstream.clone();
                Some(Box::new((t.traceparent(), t.tracestate().cloned())))
            }
            None => incoming
                .passed_on()
                .map(|parent| Box::new((parent, incoming.tracestate))),
        };
        // Only HTTP/1.1 switches protocols (HTTP/2 has no Upgrade; RFC 9113 §8.6), and only a
        // request without a body: a tunnel would open before the body was sent.
        let (upgrade_value, offer) = match (req.protocol, req.body) {
            (Protocol::Http11, Framing::Empty) => {
                upgrade::negotiate(req.headers, &route.upgrades).unzip()
            }
            _ => (None, None),
        };
        Ok(Stage::Forward(Forward {
            route,
            request: UpstreamRequest {
                method: req.method,
                query: match (&route.query_token, target.query) {
                    // A token in the query never reaches the upstream, used or not.
                    (Some(name), Some(q)) => auth::bearer::without_param(q, name),
                    (_, q) => q.map(Cow::Borrowed),
                },
                path: target.path,
                host: target.host_header,
                upstream_host: route
                    .upstream
                    .as_ref()
                    .and_then(|u| u.authority())
                    .map_or("", |a| a.as_str()),
                headers: req.headers,
                map: req.map,
                identity,
                assertion,
                upgrade: upgrade_value,
                framing: req.body,
                join_cookies: req.protocol == Protocol::Http2,
                policy: &self.headers,
                client: req.client,
                request_id: record.decorations.request_id.clone(),
                trace,
            },
            upgrade: offer,
        }))
    }
}

impl Pipeline {
    /// Token checks for `route`: `None` for an anonymous request the route lets through.
    fn authenticate(
        &self,
        route: &Route,
        req: &RequestView<'_>,
        target: &Target<'_>,
    ) -> Result<Option<Arc<Identity>>, Rejection> {
        if route.auth == AuthMode::Public {
            return Ok(None);
        }
        let Some((token, source)) = self.token(route, req.headers, target.query)? else {
            // An anonymous request cannot meet a `require`, so an optional route that has one
            // asks for a token like a required route does.
            return match route.auth {
                AuthMode::Optional if route.require.is_empty() => Ok(None),
                _ => Err(Rejection::MissingToken),
            };
        };
        // A cookie rides along with any request the browser makes, whichever site asked for
        // it: from another site, it proves nothing (CSRF, cross-site WebSocket hijacking).
        if source == Source::Cookie && self.cross_site(route, req, target) {
            return Err(Rejection::CrossSite);
        }
        let identity = self
            .verifier
            .verify(&token)
            .map_err(Rejection::InvalidToken)?;
        if let Some(unmet) = route.unmet_requirement(&identity.claims) {
            let scope = is_scope(&unmet.claim).then(|| {
                let words: Vec<String> = unmet.values.iter().map(ToString::to_string).collect();
                Arc::from(words.join(" "))
            });
            return Err(Rejection::Forbidden {
                claim: unmet.claim.text().clone(),
                scope,
            });
        }
        Ok(Some(identity))
    }

    /// The request's token and where it came from, the first found of: `Authorization:
    /// Bearer`, the `auth.cookie` cookie, the route's `query_token` parameter.
    fn token<'a>(
        &self,
        route: &Route,
        headers: &[Header<'a>],
        query: Option<&'a str>,
    ) -> Result<Option<(Cow<'a, str>, Source)>, Rejection> {
        let refused = Rejection::InvalidToken;
        if let Some(t) = auth::bearer(headers).map_err(refused)? {
            return Ok(Some((Cow::Borrowed(t), Source::Header)));
        }
        if let Some(name) = &self.cookie {
            if let Some(t) = auth::bearer::cookie(headers, name).map_err(refused)? {
                return Ok(Some((Cow::Borrowed(t), Source::Cookie)));
            }
        }
        if let (Some(name), Some(query)) = (&route.query_token, query) {
            if let Some(t) = auth::bearer::query(query, name).map_err(refused)? {
                return Ok(Some((t, Source::Query)));
            }
        }
        Ok(None)
    }

    /// True when the request carries an `Origin` other than its own (scheme and `Host`; the
    /// scheme from `X-Forwarded-Proto` when the peer is a trusted proxy), or more than one.
    fn cross_site(&self, route: &Route, req: &RequestView<'_>, target: &Target<'_>) -> bool {
        let mut origins = req
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("origin"));
        let Some(origin) = origins.next() else {
            return false;
        };
        if origins.next().is_some() {
            return true;
        }
        // An origin the route's CORS names (never `*`) is trusted with the cookie.
        if let Some(RouteCors::Gateway(cors)) = &route.cors {
            if cors.listed(origin.value) {
                return false;
            }
        }
        let trusted = req.client.checks || self.trusted.iter().any(|n| n.contains(&req.client.ip));
        let forwarded = trusted.then(|| forwarded_proto(req)).flatten();
        let scheme = forwarded.unwrap_or(req.client.proto);
        let Some(host) = target.host_header else {
            return true;
        };
        !same_origin(origin.value, scheme, host)
    }
}

/// The assertion's `aud`: the route's upstream origin (`scheme://authority`); for a route
/// only checks reach, the original request's origin as the proxy names it.
fn audience(route: &Route, req: &RequestView<'_>, target: &Target<'_>) -> String {
    if let Some(u) = &route.upstream {
        let scheme = match u.scheme_str() {
            Some("h2c") => "http",
            Some(s) => s,
            None => "http",
        };
        return format!("{scheme}://{}", u.authority().map_or("", |a| a.as_str()));
    }
    let host = target
        .host_header
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    // Checks come from trusted proxies only: their X-Forwarded-Proto says the scheme.
    format!(
        "{}://{host}",
        forwarded_proto(req).unwrap_or(req.client.proto)
    )
}

/// The first `X-Forwarded-Proto` value, when it is `http` or `https`.
fn forwarded_proto(req: &RequestView<'_>) -> Option<&'static str> {
    let h = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("x-forwarded-proto"))?;
    let first = h.value.split(|&b| b == b',').next()?;
    match first.trim_ascii() {
        p if p.eq_ignore_ascii_case(b"https") => Some("https"),
        p if p.eq_ignore_ascii_case(b"http") => Some("http"),
        _ => None,
    }
}

/// What the stages end in.
#[allow(clippy::large_enum_variant)] // lives on the stack for one request, never stored
enum Stage<'p, 'a> {
    Forward(Forward<'p, 'a>),
    Respond(LocalResponse),
}

/// A CORS preflight: `OPTIONS` with one `Origin` and `Access-Control-Request-Method`, no body
/// and no `Upgrade` (it passes without a token: it must not carry anything to the upstream).
struct Preflight<'h> {
    origin: &'h [u8],
    method: &'h [u8],
    /// Every `Access-Control-Request-Headers` value.
    headers: Vec<&'h [u8]>,
}

impl<'h> Preflight<'h> {
    fn of(req: &RequestView<'h>) -> Option<Preflight<'h>> {
        if req.method != "OPTIONS"
            || req.body != Framing::Empty
            || req
                .headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case("upgrade"))
        {
            return None;
        }
        Some(Preflight {
            origin: single(req.headers, "origin")?,
            method: single(req.headers, "access-control-request-method")?,
            headers: req
                .headers
                .iter()
                .filter(|h| {
                    h.name
                        .eq_ignore_ascii_case("access-control-request-headers")
                })
                .map(|h| h.value)
                .collect(),
        })
    }
}

/// The value of the one field named `name`; `None` when absent or repeated.
fn single<'h>(headers: &[Header<'h>], name: &str) -> Option<&'h [u8]> {
    let mut found = headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name));
    match (found.next(), found.next()) {
        (Some(h), None) => Some(h.value),
        _ => None,
    }
}

/// True when `origin` (an `Origin` field value) is `scheme://host`, letter case and the
/// scheme's default port aside.
fn same_origin(origin: &[u8], scheme: &str, host: &[u8]) -> bool {
    let Some(authority) = origin
        .get(..scheme.len() + 3)
        .filter(|p| {
            p[..scheme.len()].eq_ignore_ascii_case(scheme.as_bytes()) && p.ends_with(b"://")
        })
        .map(|p| &origin[p.len()..])
    else {
        return false;
    };
    let default = match scheme {
        "https" => &b":443"[..],
        _ => &b":80"[..],
    };
    let bare = |a: &'_ [u8]| -> Vec<u8> {
        let a = a.strip_suffix(default).unwrap_or(a);
        a.to_ascii_lowercase()
    };
    !authority.is_empty() && bare(authority) == bare(host)
}

#[cfg(test)]
mod tests {
    //! `decide` as a table: request heads in, decisions out, no sockets.

    use super::*;
    use crate::auth::keys::Keys;
    use crate::config::Config;

    const KEY: &str = "decide-table-key-0123456789abcdef01234567";

    const CONFIG: &str = r#"
[server]
max_body_bytes = 1000
[auth]
leeway = "0s"
claim_headers = { role = "X-Auth-Role" }
[[route]]
path = "/"
upstream = "http://127.0.0.1:1"
[[route]]
path = "/public"
upstream = "http://127.0.0.1:1"
auth = "public"
[[route]]
path = "/maybe"
upstream = "http://127.0.0.1:1"
auth = "optional"
[[route]]
path = "/maybe-admin"
upstream = "http://127.0.0.1:1"
auth = "optional"
require = { role = "admin" }
[[route]]
path = "/admin"
upstream = "http://127.0.0.1:1"
require = { role = "admin" }
[[route]]
path = "/ws"
upstream = "http://127.0.0.1:1"
auth = "public"
[[route]]
host = "api.example"
path = "/"
upstream = "http://127.0.0.1:2"
auth = "public"
"#;

    fn pipeline() -> Pipeline {
        let config = Config::from_toml(CONFIG).unwrap();
        let keys = Keys::from_secrets(KEY, None);
        Pipeline::new(
            RouteTable::build(&config.routes),
            Verifier::build(&config.auth, &keys, &[], None),
            HeaderPolicy::new(&config.auth),
            None,
            &config,
        )
    }

    fn token(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(KEY.as_bytes()),
        )
        .unwrap()
    }

    fn exp() -> u64 {
        crate::auth::now() as u64 + 600
    }

    /// What a decision comes to, for the table.
    #[derive(Debug, PartialEq, Eq)]
    enum Got {
        /// Forwarded: route, path?query, user, upgrade offered.
        Forward(String, String, Option<String>, bool),
        /// Answered here with this status.
        Respond(u16),
        /// Refused: status and reason.
        Reject(u16, &'static str),
    }

    fn decide(
        method: &str,
        target: &str,
        protocol: Protocol,
        authority: Option<&str>,
        fields: &[(&str, &str)],
        body: Framing,
    ) -> (Got, Record) {
        let p = pipeline();
        let client = ClientInfo::new("10.0.0.9".parse().unwrap(), "http");
        let headers: Vec<Header> = fields
            .iter()
            .map(|(n, v)| Header {
                name: n,
                value: v.as_bytes(),
            })
            .collect();
        let view = RequestView {
            method,
            target,
            authority,
            protocol,
            headers: &headers,
            map: None,
            body,
            client: &client,
        };
        let mut record = Record::new(method);
        let got = match p.decide(&view, &mut record) {
            Decision::Forward(f) => Got::Forward(
                f.route.name.to_string(),
                match f.request.query {
                    Some(q) => format!("{}?{q}", f.request.path),
                    None => f.request.path.to_string(),
                },
                f.request
                    .identity
                    .as_ref()
                    .map(|id| id.user.to_str().unwrap().to_owned()),
                f.upgrade.is_some(),
            ),
            Decision::Respond(local) => Got::Respond(local.status),
            Decision::Reject(r) => Got::Reject(r.status(), r.outcome()),
        };
        (got, record)
    }

    fn h1(method: &str, target: &str, fields: &[(&str, &str)]) -> Got {
        decide(
            method,
            target,
            Protocol::Http11,
            None,
            fields,
            Framing::Empty,
        )
        .0
    }

    #[test]
    fn the_decision_table() {
        let alice = token(serde_json::json!({"sub": "alice", "exp": exp(), "role": "user"}));
        let root = token(serde_json::json!({"sub": "root", "exp": exp(), "role": "admin"}));
        let expired = token(serde_json::json!({"sub": "alice", "exp": 1000}));
        let bearer = |t: &str| format!("Bearer {t}");
        let (a, r, x) = (bearer(&alice), bearer(&root), bearer(&expired));
        let host = ("host", "gw");
        let fwd = |route: &str, path: &str, user: Option<&str>| {
            Got::Forward(route.into(), path.into(), user.map(Into::into), false)
        };
        let table: Vec<(&str, Got, Got)> = vec![
            (
                "a valid token on a required route",
                h1("GET", "/orders?page=2", &[host, ("authorization", &a)]),
                fwd("/", "/orders?page=2", Some("alice")),
            ),
            (
                "no token on a required route",
                h1("GET", "/orders", &[host]),
                Got::Reject(401, "missing"),
            ),
            (
                "an expired token",
                h1("GET", "/", &[host, ("authorization", &x)]),
                Got::Reject(401, "expired"),
            ),
            (
                "a token that is not a JWT",
                h1("GET", "/", &[host, ("authorization", "Bearer abc")]),
                Got::Reject(401, "malformed"),
            ),
            (
                "two Authorization fields",
                h1(
                    "GET",
                    "/",
                    &[host, ("authorization", &a), ("authorization", &a)],
                ),
                Got::Reject(401, "bad_credentials"),
            ),
            (
                "a public route checks no token",
                h1("GET", "/public/x", &[host, ("authorization", "Bearer abc")]),
                fwd("/public", "/public/x", None),
            ),
            (
                "an optional route without a token",
                h1("GET", "/maybe", &[host]),
                fwd("/maybe", "/maybe", None),
            ),
            (
                "an optional route with an invalid token",
                h1("GET", "/maybe", &[host, ("authorization", &x)]),
                Got::Reject(401, "expired"),
            ),
            (
                "an optional route with a requirement asks for a token",
                h1("GET", "/maybe-admin", &[host]),
                Got::Reject(401, "missing"),
            ),
            (
                "a requirement not met",
                h1("GET", "/admin/users", &[host, ("authorization", &a)]),
                Got::Reject(403, "forbidden"),
            ),
            (
                "a requirement met",
                h1("GET", "/admin/users", &[host, ("authorization", &r)]),
                fwd("/admin", "/admin/users", Some("root")),
            ),
            (
                "routes match whole segments",
                h1("GET", "/adminx", &[host, ("authorization", &a)]),
                fwd("/", "/adminx", Some("alice")),
            ),
            (
                "the path is normalized before routing, and forwarded so",
                h1(
                    "GET",
                    "/public/../admin/users",
                    &[host, ("authorization", &a)],
                ),
                Got::Reject(403, "forbidden"),
            ),
            (
                "an encoded slash is refused",
                h1("GET", "/public%2F..%2Fadmin", &[host]),
                Got::Reject(400, "bad_request"),
            ),
            (
                "a host route",
                h1("GET", "/x", &[("host", "API.example:80")]),
                fwd("api.example/", "/x", None),
            ),
            (
                "two Host fields",
                h1("GET", "/", &[host, ("host", "other")]),
                Got::Reject(400, "bad_request"),
            ),
            (
                "no Host on HTTP/1.1",
                h1("GET", "/public", &[]),
                Got::Reject(400, "bad_request"),
            ),
            (
                "CONNECT",
                h1("CONNECT", "gw:443", &[host]),
                Got::Reject(405, "method_not_allowed"),
            ),
            (
                "TRACE",
                h1("TRACE", "/", &[host]),
                Got::Reject(405, "method_not_allowed"),
            ),
            ("OPTIONS *", h1("OPTIONS", "*", &[host]), Got::Respond(200)),
            (
                "* with another method",
                h1("GET", "*", &[host]),
                Got::Reject(400, "bad_request"),
            ),
            (
                "a WebSocket upgrade on a route that tunnels it",
                h1(
                    "GET",
                    "/ws",
                    &[host, ("connection", "Upgrade"), ("upgrade", "websocket")],
                ),
                Got::Forward("/ws".into(), "/ws".into(), None, true),
            ),
            (
                "an h2c upgrade is never offered",
                h1(
                    "GET",
                    "/ws",
                    &[host, ("connection", "Upgrade"), ("upgrade", "h2c")],
                ),
                fwd("/ws", "/ws", None),
            ),
            (
                "HTTP/2 routes on :authority",
                decide(
                    "GET",
                    "/x",
                    Protocol::Http2,
                    Some("api.example"),
                    &[],
                    Framing::Empty,
                )
                .0,
                fwd("api.example/", "/x", None),
            ),
            (
                "a declared body over the route's limit",
                decide(
                    "POST",
                    "/public",
                    Protocol::Http11,
                    None,
                    &[host],
                    Framing::Length(1001),
                )
                .0,
                Got::Reject(413, "payload_too_large"),
            ),
            (
                "no upgrade for a request with a body",
                decide(
                    "POST",
                    "/ws",
                    Protocol::Http11,
                    None,
                    &[host, ("connection", "Upgrade"), ("upgrade", "websocket")],
                    Framing::Length(3),
                )
                .0,
                fwd("/ws", "/ws", None),
            ),
        ];
        for (case, got, want) in table {
            assert_eq!(got, want, "{case}");
        }
    }

    #[test]
    fn what_the_record_learns() {
        let alice = token(serde_json::json!({"sub": "alice", "exp": exp()}));
        let a = format!("Bearer {alice}");
        let (_, r) = decide(
            "POST",
            "/svc.Echo/Call?q=secret",
            Protocol::Http2,
            Some("gw"),
            &[("authorization", &a), ("content-type", "application/grpc")],
            Framing::Chunked,
        );
        assert!(r.grpc && r.grpc_passed);
        assert_eq!(r.grpc_method(), Some("/svc.Echo/Call"));
        assert_eq!((&*r.route, r.auth), ("/", "ok"));
        assert_eq!(r.user.as_ref().unwrap(), "alice");
        // A refused gRPC client names no method.
        let (_, r) = decide(
            "POST",
            "/svc.Echo/Call",
            Protocol::Http2,
            Some("gw"),
            &[("content-type", "application/grpc")],
            Framing::Chunked,
        );
        assert!(r.grpc && !r.grpc_passed);
        // Not a gRPC call: a GET, or another content type.
        let (_, r) = decide(
            "GET",
            "/public",
            Protocol::Http11,
            None,
            &[("host", "gw"), ("content-type", "application/grpc")],
            Framing::Empty,
        );
        assert!(!r.grpc);
        assert_eq!(r.auth, "public");
    }
}
