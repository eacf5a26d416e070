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

use std::sync::Arc;

pub use headers::{ClientInfo, FieldSink, HeaderPolicy, UpstreamRequest};
pub use rejection::{LocalResponse, Rejection};

use crate::auth::{self, Identity, Verifier};
use crate::config::AuthMode;
use crate::ops::access::Record;
use crate::policy::{Route, RouteTable};
use crate::wire::{Framing, Header};

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
}

impl Pipeline {
    /// A pipeline deciding with these parts.
    pub fn new(routes: RouteTable, verifier: Verifier, headers: HeaderPolicy) -> Pipeline {
        Pipeline {
            routes,
            verifier,
            headers,
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

    /// Decides what happens to `req` (see the module docs). What it learns along the way goes
    /// into `record`, for the access log and the metrics, also when it refuses the request.
    pub fn decide<'p, 'a>(
        &'p self,
        req: &RequestView<'a>,
        record: &mut Record,
    ) -> Decision<'p, 'a> {
        record.grpc = rejection::is_grpc(req.method, req.headers);
        match self.forward(req, record) {
            Ok(Some(forward)) => {
                if record.grpc {
                    // The method is the path (`/package.Service/Method`), for the metrics: only
                    // of calls that passed (a refused client must not fill the method labels).
                    record.set_grpc_method(&forward.request.path);
                }
                Decision::Forward(forward)
            }
            Ok(None) => Decision::Respond(LocalResponse::options()),
            Err(rejection) => Decision::Reject(rejection),
        }
    }

    /// The stages; `Ok(None)` for `OPTIONS *`.
    fn forward<'p, 'a>(
        &'p self,
        req: &RequestView<'a>,
        record: &mut Record,
    ) -> Result<Option<Forward<'p, 'a>>, Rejection> {
        // Until the path is normalized, the log shows an origin-form path as sent (never the
        // query, nor an absolute-form target, which may carry credentials).
        if req.target.starts_with('/') || req.target == "*" {
            record.set_path(req.target.split('?').next().unwrap_or(""));
        }
        let Some(target) = target::target(req, self.routes.has_host_routes())? else {
            return match req.method {
                "OPTIONS" => Ok(None),
                _ => Err(Rejection::BadRequest("asterisk-form request target")),
            };
        };
        record.set_path(&target.path);
        let route = self
            .routes
            .select(target.host.as_deref(), &target.path)
            .ok_or(Rejection::NoRoute)?;
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
                return Err(Rejection::PayloadTooLarge);
            }
        }
        // Only HTTP/1.1 switches protocols (HTTP/2 has no Upgrade; RFC 9113 §8.6), and only a
        // request without a body: a tunnel would open before the body was sent.
        let (upgrade_value, offer) = match (req.protocol, req.body) {
            (Protocol::Http11, Framing::Empty) => {
                upgrade::negotiate(req.headers, &route.upgrades).unzip()
            }
            _ => (None, None),
        };
        Ok(Some(Forward {
            route,
            request: UpstreamRequest {
                method: req.method,
                path: target.path,
                query: target.query,
                host: target.host_header,
                upstream_host: route.upstream.authority().map_or("", |a| a.as_str()),
                headers: req.headers,
                identity,
                upgrade: upgrade_value,
                framing: req.body,
                join_cookies: req.protocol == Protocol::Http2,
                policy: &self.headers,
                client: req.client,
            },
            upgrade: offer,
        }))
    }
}

/// Token checks for `route`: `None` for an anonymous request the route lets through.
fn authenticate(
    verifier: &Verifier,
    route: &Route,
    headers: &[Header<'_>],
) -> Result<Option<Arc<Identity>>, Rejection> {
    if route.auth == AuthMode::Public {
        return Ok(None);
    }
    let token = auth::bearer(headers).map_err(Rejection::InvalidToken)?;
    let Some(token) = token else {
        // An anonymous request cannot meet a `require`, so an optional route that has one
        // asks for a token like a required route does.
        return match route.auth {
            AuthMode::Optional if route.require.is_empty() => Ok(None),
            _ => Err(Rejection::MissingToken),
        };
    };
    let identity = verifier.verify(token).map_err(Rejection::InvalidToken)?;
    if let Some(claim) = route.unmet_requirement(&identity.claims) {
        return Err(Rejection::Forbidden(claim.to_owned()));
    }
    Ok(Some(identity))
}
