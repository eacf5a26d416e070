//! Header hygiene, request and response side.
//!
//! On the way in, [`UpstreamRequest::write_fields`] gives the upstream client the fields of the
//! upstream's request, in one pass over the client's and in this order, so that nothing a
//! client sends can survive into what the gateway writes (it knows nothing of the protocol the
//! upstream speaks: a [`FieldSink`] does):
//!
//! 1. every hop-by-hop field (RFC 9110 §7.6.1) and every field the `Connection` header nominates
//!    is dropped, and so are the fields the gateway writes itself (`Host`, framing, `Expect`);
//! 2. every client copy of an identity header (`user_header`, each `claim_headers` value), of
//!    `X-Forwarded-*`, `Forwarded`, `X-Real-IP` and the like, and of routing-override headers
//!    (`X-Original-URL`, ...) is dropped, in any letter case and with `_` in place of `-`
//!    (CGI-style servers fold `X_Auth_User` into `X-Auth-User`); a `_` spelling of any field
//!    named here is dropped too;
//! 3. `X-Forwarded-For` (appended to the client's chain), `X-Forwarded-Proto`,
//!    `X-Forwarded-Host` and the identity headers from the verified token
//!    ([`HeaderPolicy::identity_fields`]) are written by the gateway, exactly once each.
//!
//! What belongs to the protocol the upstream speaks (`Host` or `:authority`, the body's framing,
//! `Connection: upgrade`) is the upstream client's to write, from [`UpstreamRequest::authority`],
//! [`UpstreamRequest::framing`] and [`UpstreamRequest::upgrade`], once it knows that protocol.
//!
//! On the way out, [`response_fields`] drops the upstream's hop-by-hop fields and its framing
//! (each side of the gateway frames its own messages). The hop-by-hop list is the crate's one
//! ([`crate::wire::HOP_BY_HOP`]).

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use http::header::{HeaderName, HeaderValue};
use tracing::debug;

use crate::auth::Identity;
use crate::config::{spoof_key, AuthConfig};
use crate::ops::request_id::{RequestId, X_REQUEST_ID};
use crate::ops::trace::{TRACEPARENT, TRACESTATE};
use crate::wire::{self, is_hop_by_hop, Framing, Header, HOP_BY_HOP};

/// The forwarding fields the gateway writes.
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Headers some upstream frameworks (IIS, Symfony, Laravel, some WAFs) route on instead of the
/// request line; a client must not be able to steer an upstream past the gateway's routing.
const ROUTING_OVERRIDES: &[&str] = &[
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-forwarded-uri",
    "x-forwarded-path",
    "x-forwarded-prefix",
];

/// Client-address and scheme headers that frameworks trust behind a proxy (Spring reads
/// `Forwarded`, Rack `X-Forwarded-Ssl`/`-Scheme`, Werkzeug's ProxyFix `X-Forwarded-Port`, many
/// apps `X-Real-IP`); only the gateway may say where a request came from.
const CLIENT_FACTS: &[&str] = &[
    "forwarded",
    "x-real-ip",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-ssl",
    "x-forwarded-scheme",
    "x-forwarded-server",
    "x-client-ip",
    "true-client-ip",
    "x-cluster-client-ip",
];

/// What a request field is, for the rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Forwarded as sent (unless `Connection` nominates it).
    Plain,
    /// Never forwarded: hop-by-hop, or written by the gateway itself.
    Drop,
    /// `Connection`: hop-by-hop, and nominates more hop-by-hop fields.
    Connection,
    /// A client copy of an identity header (dropped, and the drop is logged).
    Identity,
    /// Spoofable: dropped.
    Spoofable,
    /// `X-Forwarded-For`: dropped, its chain kept and extended.
    ForwardedFor,
    /// `Authorization`: forwarded when `auth.forward_token`.
    Authorization,
    /// `Cookie`: several HTTP/2 fields are joined into one.
    Cookie,
}

/// What the rewrite needs from the config, prepared once per (re)load.
#[derive(Debug, Clone)]
pub struct HeaderPolicy {
    user_header: HeaderName,
    claim_headers: Vec<HeaderName>,
    issuer_header: HeaderName,
    /// `auth.assertion.header`, when an assertion is configured.
    assertion_header: Option<HeaderName>,
    /// Special names by length, in their spoof key form (see [`spoof_key`]).
    by_len: Vec<Vec<(Box<[u8]>, Class)>>,
    forward_token: bool,
    /// The token cookie's name, when it must not be forwarded (`auth.cookie` with
    /// `forward_token = false`).
    strip_cookie: Option<Box<str>>,
}

impl HeaderPolicy {
    /// Prepares the policy for `auth`.
    pub fn new(auth: &AuthConfig) -> HeaderPolicy {
        // Every header any issuer writes a claim into: each is stripped from every request.
        let claim_headers: Vec<HeaderName> = auth.claim_header_names();
        let assertion_header = auth.assertion.as_ref().map(|a| a.header.clone());
        // The default assertion header is stripped even when no assertion is configured: a
        // client's replayed copy must not reach an upstream that verifies assertions while a
        // rollout or a config change leaves this replica without one.
        let default_assertion = HeaderName::from_static("x-auth-assertion");
        let identity = std::iter::once(&auth.user_header)
            .chain(&claim_headers)
            .chain([&auth.issuer_header, &default_assertion])
            .chain(assertion_header.as_ref());
        // The first class given to a name wins (`connection` is hop-by-hop too).
        let named: Vec<(String, Class)> = [("connection", Class::Connection)]
            .into_iter()
            .chain(HOP_BY_HOP.iter().map(|n| (*n, Class::Drop)))
            .chain(["host", "content-length", "expect"].map(|n| (n, Class::Drop)))
            // Written by the gateway: its request ID and trace context.
            .chain(["x-request-id", "traceparent", "tracestate"].map(|n| (n, Class::Drop)))
            .chain([
                ("x-forwarded-for", Class::ForwardedFor),
                ("authorization", Class::Authorization),
                ("cookie", Class::Cookie),
            ])
            .map(|(n, c)| (n.to_owned(), c))
            // An identity header's gRPC binary twin (`x-auth-user-bin`) is stripped too:
            // gRPC libraries hand upstreams both kinds of metadata, and one that decodes the
            // `-bin` form under the plain name must not read a client's copy. So is its
            // grpc-gateway spelling (`Grpc-Metadata-X-Auth-User`), which grpc-gateway turns
            // into the plain metadata for the gRPC service behind it.
            .chain(identity.flat_map(|h| {
                [
                    (h.as_str().to_owned(), Class::Identity),
                    (format!("{}-bin", h.as_str()), Class::Identity),
                    (format!("grpc-metadata-{}", h.as_str()), Class::Identity),
                    (format!("grpc-metadata-{}-bin", h.as_str()), Class::Identity),
                ]
            }))
            .chain(
                ROUTING_OVERRIDES
                    .iter()
                    .chain(CLIENT_FACTS)
                    .map(|n| ((*n).to_owned(), Class::Spoofable)),
            )
            .collect();
        let mut by_len: Vec<Vec<(Box<[u8]>, Class)>> = Vec::new();
        for (name, class) in named {
            let key = spoof_key(&name).into_bytes().into_boxed_slice();
            if by_len.len() <= key.len() {
                by_len.resize(key.len() + 1, Vec::new());
            }
            if !by_len[key.len()].iter().any(|(k, _)| *k == key) {
                by_len[key.len()].push((key, class));
            }
        }
        HeaderPolicy {
            user_header: auth.user_header.clone(),
            claim_headers,
            issuer_header: auth.issuer_header.clone(),
            assertion_header,
            by_len,
            forward_token: auth.forward_token,
            strip_cookie: auth
                .cookie
                .as_deref()
                .filter(|_| !auth.forward_token)
                .map(Box::from),
        }
    }

    /// The identity headers the gateway writes for `id` (with its signed `assertion`, if
    /// any), in order: `user_header`, each `claim_headers` header the token has a value for,
    /// the issuer header when providers are configured, the assertion. What the upstream gets
    /// (inline) comes from here.
    pub fn identity_fields<'s>(
        &'s self,
        id: &'s Identity,
        assertion: Option<&'s HeaderValue>,
    ) -> impl Iterator<Item = (&'s HeaderName, &'s HeaderValue)> {
        self.identity_values(Some(id), assertion)
            .filter_map(|(name, value)| value.map(|v| (name, v)))
    }

    /// Every identity header's name with its value for `id` (`None`: no value, or no
    /// identity): what an auth check answers (forward-auth), every name present.
    pub fn identity_values<'s>(
        &'s self,
        id: Option<&'s Identity>,
        assertion: Option<&'s HeaderValue>,
    ) -> impl Iterator<Item = (&'s HeaderName, Option<&'s HeaderValue>)> {
        let claims = self.claim_headers.iter().enumerate().map(move |(i, name)| {
            let value = id.and_then(|id| id.claim_values.get(i)?.as_ref());
            (name, value)
        });
        std::iter::once((&self.user_header, id.map(|id| &id.user)))
            .chain(claims)
            .chain([(&self.issuer_header, id.and_then(|id| id.issuer.as_ref()))])
            .chain(
                self.assertion_header
                    .as_ref()
                    .map(|name| (name, assertion.filter(|_| id.is_some()))),
            )
    }

    /// The bytes (names and values) the identity headers of `id` take together, for
    /// `auth.max_identity_bytes`.
    pub fn identity_size(&self, id: &Identity, assertion: Option<&HeaderValue>) -> usize {
        self.identity_fields(id, assertion)
            .map(|(n, v)| n.as_str().len() + v.len())
            .sum()
    }

    /// Every identity header's name.
    pub fn identity_names(&self) -> impl Iterator<Item = &HeaderName> {
        self.identity_values(None, None).map(|(name, _)| name)
    }

    /// True for a field named as an identity header in some spelling (any letter case, `_`
    /// for `-`, the gRPC `-bin` twin).
    pub fn is_identity(&self, name: &str) -> bool {
        self.classify(name) == Class::Identity
    }

    /// True for a request trailer's name that may reach the upstream: none the gateway manages
    /// or writes (identity headers above all: trailers arrive after the token was checked).
    pub fn trailer_passes(&self, name: &str) -> bool {
        self.classify(name) == Class::Plain
    }

    fn classify(&self, name: &str) -> Class {
        let name = name.as_bytes();
        let Some(candidates) = self.by_len.get(name.len()) else {
            return Class::Plain;
        };
        let fold = |b: u8| {
            if b == b'_' {
                b'-'
            } else {
                b.to_ascii_lowercase()
            }
        };
        for (key, class) in candidates {
            if key.iter().zip(name).all(|(&k, &n)| k == fold(n)) {
                // A `_` spelling of a special name is never legitimate: drop it, whatever the
                // name does when spelled with `-`.
                return match class {
                    Class::Identity | Class::Spoofable => *class,
                    _ if name.contains(&b'_') => Class::Spoofable,
                    _ => *class,
                };
            }
        }
        Class::Plain
    }
}

/// Facts about the client connection for `X-Forwarded-*`, prepared once per connection.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The peer's address.
    pub ip: IpAddr,
    /// The same, formatted once (not per request), as a field value.
    ip_text: HeaderValue,
    /// `http` or `https`: how the client reached the gateway.
    pub proto: &'static str,
    /// The connection came in on the forward-auth listener: its requests are checks.
    pub checks: bool,
}

impl ClientInfo {
    /// Facts for a connection from `ip` over `proto` (`http` or `https`).
    pub fn new(ip: IpAddr, proto: &'static str) -> ClientInfo {
        let ip = ip.to_canonical();
        ClientInfo {
            ip,
            ip_text: HeaderValue::try_from(ip.to_string()).expect("an address is a valid value"),
            proto,
            checks: false,
        }
    }

    /// The same, for a connection to the forward-auth listener.
    pub fn checking(mut self) -> ClientInfo {
        self.checks = true;
        self
    }
}

/// Where the upstream request's fields go: an HTTP/1.1 head (`upstream::h1`), later an HTTP/2
/// header block. A field is given whole ([`FieldSink::field`]) or in parts (a value the gateway
/// joins: the `X-Forwarded-For` chain, HTTP/2 cookie crumbs).
pub trait FieldSink {
    /// Starts a field named `name` (lower case for the fields the gateway writes, as sent for
    /// the client's).
    fn begin(&mut self, name: &[u8]);
    /// Appends to the current field's value.
    fn value(&mut self, part: &[u8]);
    /// Ends the current field.
    fn end(&mut self);
    /// A whole field.
    fn field(&mut self, name: &[u8], value: &[u8]) {
        self.begin(name);
        self.value(value);
        self.end();
    }
    /// The head's field number `index` (in the order of its `&[Header]`), passed on unchanged.
    /// A sink that holds the head's fields as objects as well ([`MapSink`]) shares them.
    fn pass(&mut self, index: usize, name: &[u8], value: &[u8]) {
        let _ = index;
        self.field(name, value);
    }
    /// A whole field the gateway holds as objects already (identity fields, its own names).
    fn typed(&mut self, name: &HeaderName, value: &HeaderValue) {
        self.field(name.as_str().as_bytes(), value.as_bytes());
    }
}

/// Fields into a header map (an HTTP/2 head). Fields passed on unchanged from a head that came
/// as a header map too (an HTTP/2 client's request, an HTTP/2 upstream's response: `source`)
/// share its names and values, which are reference-counted, instead of being parsed and copied
/// again; every other field is parsed, and one not valid in a header map is left out.
/// Credentials (`Authorization`, `Proxy-Authorization`, `Cookie`) are marked never to enter an
/// HPACK table: one upstream connection carries many users' calls.
pub struct MapSink<'s> {
    /// The fields written.
    pub map: http::HeaderMap,
    /// The source's fields not yet passed over, and the index of the next.
    source: Option<(http::header::Iter<'s, HeaderValue>, usize)>,
    name: Vec<u8>,
    value: Vec<u8>,
}

impl<'s> MapSink<'s> {
    /// A sink for about `fields` fields whose head came as `source`, if it did.
    pub fn new(fields: usize, source: Option<&'s http::HeaderMap>) -> MapSink<'s> {
        MapSink {
            map: http::HeaderMap::with_capacity(fields),
            source: source.map(|m| (m.iter(), 0)),
            name: Vec::new(),
            value: Vec::new(),
        }
    }

    fn push(&mut self, name: HeaderName, mut value: HeaderValue) {
        use http::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION};
        if name == AUTHORIZATION || name == COOKIE || name == PROXY_AUTHORIZATION {
            value.set_sensitive(true);
        }
        self.map.append(name, value);
    }
}

impl FieldSink for MapSink<'_> {
    fn begin(&mut self, name: &[u8]) {
        self.name.clear();
        self.name.extend_from_slice(name);
        self.value.clear();
    }

    fn value(&mut self, part: &[u8]) {
        self.value.extend_from_slice(part);
    }

    fn end(&mut self) {
        let (name, value) = (
            std::mem::take(&mut self.name),
            std::mem::take(&mut self.value),
        );
        self.field(&name, &value);
        (self.name, self.value) = (name, value);
    }

    fn field(&mut self, name: &[u8], value: &[u8]) {
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            self.push(name, value);
        }
    }

    fn typed(&mut self, name: &HeaderName, value: &HeaderValue) {
        self.push(name.clone(), value.clone());
    }

    fn pass(&mut self, index: usize, name: &[u8], value: &[u8]) {
        if let Some((fields, next)) = &mut self.source {
            // Indices only grow: skip to this one.
            let shared = index
                .checked_sub(*next)
                .and_then(|skip| fields.nth(skip))
                .filter(|(n, v)| n.as_str().as_bytes() == name && v.as_bytes() == value);
            *next = index + 1;
            if let Some((n, v)) = shared {
                self.push(n.clone(), v.clone());
                return;
            }
        }
        self.field(name, value);
    }
}

/// The request the upstream gets, decided by the pipeline and written by the upstream client
/// in its protocol: method, path, the authority, and the fields that survive the hygiene rules
/// plus the ones the gateway writes ([`UpstreamRequest::write_fields`]).
#[derive(Debug)]
pub struct UpstreamRequest<'p, 'a> {
    /// The method, as the client sent it.
    pub method: &'a str,
    /// The normalized path (see [`crate::wire::uri`]).
    pub path: Cow<'a, str>,
    /// The query, as the client sent it, without the route's `query_token` parameter.
    pub query: Option<Cow<'a, str>>,
    /// The authority the client asked for: the upstream's `Host` and `X-Forwarded-Host`.
    pub host: Option<&'a [u8]>,
    /// The upstream's own authority: its `Host` when the client sent none (HTTP/1.0).
    pub upstream_host: &'p str,
    /// The client's header fields.
    pub headers: &'a [Header<'a>],
    /// The same fields as a header map, when the client's head came as one (HTTP/2).
    pub map: Option<&'a http::HeaderMap>,
    /// The verified caller, if any.
    pub identity: Option<Arc<Identity>>,
    /// The signed assertion for the caller on this route, if configured.
    pub assertion: Option<HeaderValue>,
    /// The `Upgrade` value to send, for a tunnelled upgrade (see [`super::upgrade`]); the
    /// HTTP/1.1 upstream client writes it with `Connection: upgrade`.
    pub upgrade: Option<Cow<'a, [u8]>>,
    /// How the body goes to the upstream (the upstream client writes the framing).
    pub framing: Framing,
    /// Join several `Cookie` fields into one (HTTP/2 clients split them; RFC 9113 §8.2.3).
    pub join_cookies: bool,
    /// The hygiene rules.
    pub policy: &'p HeaderPolicy,
    /// Where the request came from.
    pub client: &'a ClientInfo,
    /// The request ID (`X-Request-Id`).
    pub request_id: Option<RequestId>,
    /// The trace context the upstream gets (`traceparent`, and `tracestate` if any); boxed,
    /// as most requests have none while tracing is off.
    pub trace: Option<Box<(crate::ops::trace::TraceParent, Option<HeaderValue>)>>,
}

impl UpstreamRequest<'_, '_> {
    /// The authority the upstream is told (`Host`, or `:authority`).
    pub fn authority(&self) -> &[u8] {
        self.host.unwrap_or(self.upstream_host.as_bytes())
    }

    /// Gives `sink` every field the upstream gets besides those of its protocol (`Host`,
    /// framing, `Connection`: see the module docs for what is dropped and what is written).
    pub fn write_fields(&self, sink: &mut impl FieldSink) -> Written {
        let policy = self.policy;
        let headers = self.headers;
        // Classes of the first fields, kept for the second pass (more are classified again).
        let mut classes = [Class::Plain; 64];
        for (h, class) in headers.iter().zip(classes.iter_mut()) {
            *class = policy.classify(h.name);
        }
        let class_of = |i: usize, h: &Header<'_>| match classes.get(i) {
            Some(c) => *c,
            None => policy.classify(h.name),
        };
        let nominating = nominates(headers);
        let dropped = |h: &Header<'_>| nominating && nominated(headers, h.name);
        let mut forwarded_for = false;
        let mut cookies = 0;
        let mut declared_length = false;
        for (i, h) in headers.iter().enumerate() {
            let class = class_of(i, h);
            declared_length |=
                class == Class::Drop && h.name.eq_ignore_ascii_case("content-length");
            match class {
                Class::Plain if !dropped(h) => sink.pass(i, h.name.as_bytes(), h.value),
                Class::Authorization if policy.forward_token && !dropped(h) => {
                    sink.pass(i, h.name.as_bytes(), h.value);
                }
                Class::Cookie if self.join_cookies || policy.strip_cookie.is_some() => {
                    cookies += usize::from(!dropped(h))
                }
                Class::Cookie if !dropped(h) => sink.pass(i, h.name.as_bytes(), h.value),
                Class::ForwardedFor => forwarded_for = true,
                Class::Identity => {
                    debug!(header = h.name, "removed client-sent identity header");
                }
                _ => {}
            }
        }
        if cookies > 0 {
            let values = headers
                .iter()
                .enumerate()
                .filter(|(i, h)| class_of(*i, h) == Class::Cookie && !dropped(h))
                .map(|(_, h)| h.value);
            match policy.strip_cookie.as_deref() {
                None => {
                    sink.begin(b"cookie");
                    for (i, v) in values.enumerate() {
                        if i > 0 {
                            sink.value(b"; ");
                        }
                        sink.value(v);
                    }
                    sink.end();
                }
                // The token cookie stays with the gateway; the others go on, in one field.
                Some(token) => {
                    let mut kept = values
                        .flat_map(|v| v.split(|&b| b == b';'))
                        .map(<[u8]>::trim_ascii)
                        .filter(|pair| {
                            let name = pair.split(|&b| b == b'=').next().unwrap_or(b"");
                            !pair.is_empty() && name.trim_ascii() != token.as_bytes()
                        })
                        .peekable();
                    if kept.peek().is_some() {
                        sink.begin(b"cookie");
                        for (i, pair) in kept.enumerate() {
                            if i > 0 {
                                sink.value(b"; ");
                            }
                            sink.value(pair);
                        }
                        sink.end();
                    }
                }
            }
        }

        if forwarded_for {
            // The client's chain, then the address the gateway saw (as nginx's
            // $proxy_add_x_forwarded_for): only the last entry is the gateway's own observation.
            sink.begin(X_FORWARDED_FOR.as_str().as_bytes());
            let chain = headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
                .filter(|h| h.value.iter().all(|b| (0x20..0x7f).contains(b)));
            for h in chain {
                sink.value(h.value);
                sink.value(b", ");
            }
            sink.value(self.client.ip_text.as_bytes());
            sink.end();
        } else {
            sink.typed(&X_FORWARDED_FOR, &self.client.ip_text);
        }
        sink.typed(
            &X_FORWARDED_PROTO,
            &HeaderValue::from_static(self.client.proto),
        );
        if let Some(host) = self.host {
            sink.field(X_FORWARDED_HOST.as_str().as_bytes(), host);
        }
        if let Some(id) = &self.request_id {
            sink.field(X_REQUEST_ID.as_str().as_bytes(), id.as_bytes());
        }
        if let Some((parent, state)) = self.trace.as_deref() {
            sink.field(TRACEPARENT.as_str().as_bytes(), parent);
            if let Some(state) = state {
                sink.typed(&TRACESTATE, state);
            }
        }
        if let Some(id) = &self.identity {
            for (name, value) in policy.identity_fields(id, self.assertion.as_ref()) {
                sink.typed(name, value);
            }
        }
        Written {
            // RFC 9110 §8.6: a request whose method gives content a meaning says it has none
            // (some servers answer 411 otherwise), as does one whose client said so.
            says_empty: self.framing == Framing::Empty
                && (declared_length || matches!(self.method, "POST" | "PUT" | "PATCH")),
        }
    }
}

/// What [`UpstreamRequest::write_fields`] found out for the upstream client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// The request has no body and should say so (`content-length: 0` in HTTP/1.1).
    pub says_empty: bool,
}

/// The upstream response's fields that reach the client: without hop-by-hop fields, the ones
/// `Connection` nominates, and `Content-Length` (the gateway frames each side's message itself).
/// A `101 Switching Protocols` keeps its `Upgrade`; the caller writes `Connection: upgrade`.
pub fn response_fields<'a, 'h>(
    headers: &'h [Header<'a>],
    switching: bool,
) -> impl Iterator<Item = (usize, &'h Header<'a>)> {
    let nominating = nominates(headers);
    headers.iter().enumerate().filter(move |(_, h)| {
        if switching && h.name.eq_ignore_ascii_case("upgrade") {
            return true;
        }
        let hop = match h.name.len() {
            14 => h.name.eq_ignore_ascii_case("content-length"),
            _ => is_hop_by_hop(h.name),
        };
        !(hop || nominating && nominated(headers, h.name))
    })
}

/// True when a `Connection` field names a field beyond the ones every message handles anyway
/// (`close`, `keep-alive`, `upgrade`): only then must each field be checked against it.
fn nominates(headers: &[Header<'_>]) -> bool {
    headers
        .iter()
        .filter(|h| h.name.len() == 10 && h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| wire::tokens(h.value))
        .any(|t| {
            !(t.eq_ignore_ascii_case(b"close")
                || t.eq_ignore_ascii_case(b"keep-alive")
                || t.eq_ignore_ascii_case(b"upgrade"))
        })
}

/// True when a `Connection` field of `headers` names `name`.
fn nominated(headers: &[Header<'_>], name: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .any(|c| wire::has_token(c.value, name.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use http::header::HeaderValue;

    fn policy(auth: &str) -> HeaderPolicy {
        let c = Config::from_toml(&format!(
            "[auth]\n{auth}\n[[route]]\npath=\"/\"\nupstream=\"http://127.0.0.1:1\""
        ))
        .unwrap();
        HeaderPolicy::new(&c.auth)
    }

    fn identity(user: &'static str, role: Option<&'static str>) -> Identity {
        Identity {
            user: HeaderValue::from_static(user),
            claim_values: vec![role.map(HeaderValue::from_static)],
            issuer: None,
            left_out: vec![],
            claims: Default::default(),
            assertions: Default::default(),
            exp: 0.0,
        }
    }

    fn client() -> ClientInfo {
        ClientInfo::new("10.1.2.3".parse().unwrap(), "http")
    }

    /// Collects fields as (lower-case name, value) pairs.
    #[derive(Default)]
    struct Fields(Vec<(String, String)>);

    impl FieldSink for Fields {
        fn begin(&mut self, name: &[u8]) {
            let name = String::from_utf8(name.to_vec())
                .unwrap()
                .to_ascii_lowercase();
            self.0.push((name, String::new()));
        }
        fn value(&mut self, part: &[u8]) {
            self.0.last_mut().unwrap().1 += std::str::from_utf8(part).unwrap();
        }
        fn end(&mut self) {}
    }

    /// The fields the upstream gets for `pairs` besides its protocol's own, as (lower-case
    /// name, value) pairs, with `Host`.
    fn rewrite(
        policy: &HeaderPolicy,
        pairs: &[(&str, &str)],
        identity: Option<&Identity>,
        upgrade: Option<&[u8]>,
    ) -> Vec<(String, String)> {
        rewritten(policy, pairs, identity, upgrade).0
    }

    fn rewritten(
        policy: &HeaderPolicy,
        pairs: &[(&str, &str)],
        identity: Option<&Identity>,
        upgrade: Option<&[u8]>,
    ) -> (Vec<(String, String)>, Written) {
        let headers: Vec<Header> = pairs
            .iter()
            .map(|(n, v)| Header {
                name: n,
                value: v.as_bytes(),
            })
            .collect();
        let client = client();
        let req = UpstreamRequest {
            method: "GET",
            path: "/p".into(),
            query: Some("q=1".into()),
            host: Some(b"app.example"),
            upstream_host: "10.0.0.1:8000",
            headers: &headers,
            map: None,
            identity: identity.cloned().map(Arc::new),
            assertion: None,
            upgrade: upgrade.map(Cow::Borrowed),
            framing: Framing::Empty,
            join_cookies: false,
            policy,
            client: &client,
            request_id: None,
            trace: None,
        };
        assert_eq!(req.authority(), b"app.example");
        let mut fields = Fields::default();
        let written = req.write_fields(&mut fields);
        fields.0.push(("host".into(), "app.example".into()));
        (fields.0, written)
    }

    fn all<'a>(fields: &'a [(String, String)], name: &str) -> Vec<&'a str> {
        fields
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    #[test]
    fn spoofed_identity_is_replaced_exactly_once() {
        let p = policy("claim_headers = { role = \"X-Auth-Role\" }");
        let f = rewrite(
            &p,
            &[
                ("x-auth-user", "mallory"),
                ("X-AUTH-USER", "eve"),
                ("x_auth_user", "trudy"),
                ("X_Auth_Role", "admin"),
                ("connection", "x-auth-user, keep-alive"),
                ("keep-alive", "timeout=5"),
                ("x-original-url", "/admin"),
                ("x-forwarded-for", "1.1.1.1"),
                ("x_forwarded_for", "6.6.6.6"),
                ("x-forwarded-host", "evil"),
                ("Transfer_Encoding", "chunked"),
                ("authorization", "Bearer t"),
            ],
            Some(&identity("alice", None)),
            None,
        );
        assert_eq!(all(&f, "x-auth-user"), vec!["alice"]);
        assert!(all(&f, "x_auth_user").is_empty());
        assert!(all(&f, "x-auth-role").is_empty() && all(&f, "x_auth_role").is_empty());
        assert!(all(&f, "connection").is_empty() && all(&f, "keep-alive").is_empty());
        assert!(all(&f, "x-original-url").is_empty() && all(&f, "x_forwarded_for").is_empty());
        assert!(all(&f, "transfer_encoding").is_empty());
        assert_eq!(all(&f, "x-forwarded-for"), vec!["1.1.1.1, 10.1.2.3"]);
        assert_eq!(all(&f, "x-forwarded-host"), vec!["app.example"]);
        assert_eq!(all(&f, "x-forwarded-proto"), vec!["http"]);
        assert_eq!(all(&f, "host"), vec!["app.example"]);
        assert_eq!(all(&f, "authorization"), vec!["Bearer t"]);
    }

    #[test]
    fn grpc_binary_twins_of_identity_headers_are_stripped() {
        let p = policy("claim_headers = { role = \"X-Auth-Role\" }");
        let f = rewrite(
            &p,
            &[
                ("x-auth-user-bin", "bWFsbG9yeQ"),
                ("X-Auth-Role-Bin", "YWRtaW4"),
                ("x_auth_user_bin", "ZXZl"),
                ("x-auth-user-binary", "kept"),
            ],
            Some(&identity("alice", Some("user"))),
            None,
        );
        assert_eq!(all(&f, "x-auth-user"), vec!["alice"]);
        assert_eq!(all(&f, "x-auth-role"), vec!["user"]);
        assert!(all(&f, "x-auth-user-bin").is_empty());
        assert!(all(&f, "x-auth-role-bin").is_empty());
        assert!(all(&f, "x_auth_user_bin").is_empty());
        assert_eq!(all(&f, "x-auth-user-binary"), vec!["kept"]);
    }

    #[test]
    fn anonymous_requests_carry_no_identity() {
        let p = policy("forward_token = false");
        let f = rewrite(
            &p,
            &[("x-auth-user", "mallory"), ("authorization", "Bearer t")],
            None,
            None,
        );
        assert!(all(&f, "x-auth-user").is_empty());
        assert!(all(&f, "authorization").is_empty());
    }

    #[test]
    fn framing_fields_are_the_gateways() {
        let p = policy("");
        let (f, written) = rewritten(
            &p,
            &[
                ("connection", "content-length, host, x-private"),
                ("content-length", "3"),
                ("host", "other"),
                ("x-private", "1"),
                ("x-public", "2"),
                ("expect", "100-continue"),
            ],
            None,
            None,
        );
        // The client's "3" is never passed on: the upstream client writes the length it frames
        // (here none, said as 0 since the client declared one).
        assert!(all(&f, "content-length").is_empty());
        assert!(written.says_empty);
        assert!(all(&f, "expect").is_empty());
        assert!(all(&f, "x-private").is_empty());
        assert_eq!(all(&f, "x-public"), vec!["2"]);
        assert_eq!(all(&f, "host"), vec!["app.example"]);
    }

    #[test]
    fn upgrade_and_connection_are_left_to_the_upstream_client() {
        let f = rewrite(
            &policy(""),
            &[
                ("connection", "keep-alive, Upgrade"),
                ("upgrade", "websocket"),
            ],
            None,
            Some(b"websocket"),
        );
        assert!(all(&f, "connection").is_empty());
        assert!(all(&f, "upgrade").is_empty());
    }

    #[test]
    fn identity_fields_are_the_user_then_each_claim_with_a_value() {
        let p = policy("claim_headers = { role = \"X-Auth-Role\", team = \"X-Auth-Team\" }");
        let mut id = identity("alice", Some("admin"));
        id.claim_values.push(None);
        let got: Vec<(&str, &[u8])> = p
            .identity_fields(&id, None)
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        assert_eq!(
            got,
            [
                ("x-auth-user", &b"alice"[..]),
                ("x-auth-role", &b"admin"[..])
            ]
        );
    }

    #[test]
    fn response_hop_by_hop_is_dropped() {
        let headers = [
            Header {
                name: "Connection",
                value: b"close, x-internal",
            },
            Header {
                name: "X-Internal",
                value: b"1",
            },
            Header {
                name: "keep-alive",
                value: b"5",
            },
            Header {
                name: "Content-Length",
                value: b"5",
            },
            Header {
                name: "X-App",
                value: b"ok",
            },
        ];
        let kept: Vec<&str> = response_fields(&headers, false)
            .map(|(_, h)| h.name)
            .collect();
        assert_eq!(kept, vec!["X-App"]);
    }

    /// Credentials written into a header map never enter an HPACK table, however they came:
    /// shared from the source map, parsed, or typed; other fields may.
    #[test]
    fn a_map_sink_marks_credentials_never_indexed() {
        let mut source = http::HeaderMap::new();
        source.append("authorization", HeaderValue::from_static("Bearer a.b.c"));
        source.append("x-app", HeaderValue::from_static("1"));
        let mut sink = MapSink::new(8, Some(&source));
        sink.pass(0, b"authorization", b"Bearer a.b.c");
        sink.pass(1, b"x-app", b"1");
        sink.field(b"Cookie", b"session=1");
        sink.typed(
            &http::header::PROXY_AUTHORIZATION,
            &HeaderValue::from_static("Basic x"),
        );
        sink.field(b"x-user", b"alice");
        let map = sink.map;
        for name in ["authorization", "cookie", "proxy-authorization"] {
            assert!(map[name].is_sensitive(), "{name} is not marked sensitive");
        }
        assert!(!map["x-app"].is_sensitive());
        assert!(!map["x-user"].is_sensitive());
    }
}
