//! Forward-auth mode: the answers to other proxies' auth checks (nginx `auth_request`,
//! ingress-nginx `auth-url`, Traefik ForwardAuth, Caddy `forward_auth`, Envoy `ext_authz` over
//! HTTP here and over gRPC in [`grpc`]). A front-end that answers instead of forwarding: each
//! check is turned back into the original request it names, which then gets exactly the
//! inline decision ([`crate::http::decide`]), and the decision becomes the answer.
//!
//! In order ([`answer`]):
//!
//! 1. a check from a peer outside `server.trusted_proxies` is refused (403): its headers
//!    naming the original cannot be believed;
//! 2. [`original`]: the original request, named only by the configured dialect's headers
//!    ([`Dialect`]), and refused (400) when one of its own headers is missing, when another
//!    dialect's naming header names a different method, host or target (a proxy passes a
//!    client's own copies of the headers it does not set), or when the original carries an
//!    identity header spelled with `_` (the proxy could not replace it);
//! 3. the inline decision on it: same normalization, routing, token rules and refusals;
//! 4. allowed: 200 with every identity header, empty when there is no value, and
//!    `x-envoy-auth-headers-to-remove` naming the empty ones ([`allowed`]); refused: the
//!    inline refusal, never in gRPC form (a gRPC-shaped 200 reads as "allowed").

pub mod grpc;
pub mod proto;

use std::borrow::Cow;
use std::sync::Arc;

use crate::auth::Identity;
use crate::config::Dialect;
use crate::http::end::RequestEnd;
use crate::pipeline::{
    ClientInfo, Decision, HeaderPolicy, LocalResponse, Protocol, Rejection, RequestView,
};
use crate::runtime::Runtime;
use crate::wire::request::{valid_method, valid_target, INVALID_TARGET};
use crate::wire::Framing;

/// What a header that names the original request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Method,
    Host,
    Target,
    /// A whole URL: host and target.
    Url,
    /// The scheme: never a reason to refuse.
    Scheme,
}

/// Every header that names the original request, in any dialect.
const NAMING: [(&str, Part); 7] = [
    ("x-original-method", Part::Method),
    ("x-original-uri", Part::Target),
    ("x-original-url", Part::Url),
    ("x-forwarded-method", Part::Method),
    ("x-forwarded-host", Part::Host),
    ("x-forwarded-uri", Part::Target),
    ("x-forwarded-proto", Part::Scheme),
];

/// The headers a dialect names the original with (each required), as indexes into [`NAMING`].
fn own(dialect: Dialect) -> &'static [usize] {
    match dialect {
        Dialect::Nginx => &[0, 1, 4],
        Dialect::IngressNginx => &[0, 2],
        Dialect::Traefik | Dialect::Caddy => &[3, 4, 5],
        Dialect::Envoy => &[],
    }
}

/// The refusal for a dialect's own naming header that is missing.
fn missing(index: usize) -> Rejection {
    Rejection::BadRequest(match index {
        0 => "forward-auth check without X-Original-Method",
        1 => "forward-auth check without X-Original-URI",
        2 => "forward-auth check without X-Original-URL",
        3 => "forward-auth check without X-Forwarded-Method",
        4 => "forward-auth check without X-Forwarded-Host",
        _ => "forward-auth check without X-Forwarded-Uri",
    })
}

/// The original request a check names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Original<'a> {
    /// Its method.
    pub method: &'a str,
    /// Its host (`None`: the check's own `Host`, for Envoy over HTTP/1.1).
    pub host: Option<&'a str>,
    /// Its request target, as sent.
    pub target: &'a str,
}

/// The original request `check` names in `dialect` (see the module docs, step 2). `prefix`:
/// Envoy's `path_prefix`; a check outside it is a 404.
pub fn original<'a>(
    dialect: Dialect,
    prefix: Option<&str>,
    check: &RequestView<'a>,
    policy: &HeaderPolicy,
) -> Result<Original<'a>, Rejection> {
    let mut found: [Option<&'a str>; NAMING.len()] = [None; NAMING.len()];
    for h in check.headers {
        if let Some(i) = NAMING
            .iter()
            .position(|(name, _)| h.name.eq_ignore_ascii_case(name))
        {
            let value = std::str::from_utf8(h.value)
                .map_err(|_| Rejection::BadRequest("forward-auth naming header is not text"))?;
            if found[i].replace(value).is_some() {
                return Err(Rejection::BadRequest(
                    "forward-auth naming header sent more than once",
                ));
            }
        } else if policy.is_identity(h.name)
            && !policy
                .identity_names()
                .any(|n| n.as_str().eq_ignore_ascii_case(h.name))
        {
            // `X_Auth_User`, `x-auth-user-bin`: the proxy replaces the identity headers by
            // their names, never these, and an upstream may read them as the real one.
            return Err(Rejection::BadRequest(
                "identity header in another spelling ('_' or '-bin'): the proxy cannot replace it",
            ));
        }
    }
    let mut named = match dialect {
        Dialect::Envoy => Original {
            method: check.method,
            host: check.authority,
            target: without_prefix(check.target, prefix).ok_or(Rejection::NoRoute)?,
        },
        _ => {
            let mut named = Original {
                method: "",
                host: None,
                target: "",
            };
            for &i in own(dialect) {
                let value = found[i].ok_or_else(|| missing(i))?;
                name(&mut named, NAMING[i].1, value)?;
            }
            named
        }
    };
    if dialect == Dialect::Envoy && named.host.is_none() {
        // Over HTTP/1.1, the check's own Host is the original's.
        let host = check
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("host"));
        named.host = host.and_then(|h| std::str::from_utf8(h.value).ok());
    }
    // What the request line would have carried is checked as the request line is.
    if !valid_method(named.method) {
        return Err(Rejection::BadRequest("malformed request line"));
    }
    if !valid_target(named.target) {
        return Err(Rejection::BadRequest(INVALID_TARGET));
    }
    // Every other naming header present must name the same request.
    let scheme = found[6];
    for (i, value) in found.iter().enumerate() {
        let Some(value) = value else { continue };
        if own(dialect).contains(&i) {
            continue;
        }
        let mut other = named;
        name(&mut other, NAMING[i].1, value)?;
        let agrees = other.method == named.method
            && other.target == named.target
            && match (other.host, named.host) {
                (Some(a), Some(b)) => same_host(a, b, scheme),
                (a, b) => a == b,
            };
        if !agrees {
            return Err(Rejection::BadRequest(
                "forward-auth naming headers disagree about the original request",
            ));
        }
    }
    Ok(named)
}

/// Sets what a naming header of `part` says on `named`.
fn name<'a>(named: &mut Original<'a>, part: Part, value: &'a str) -> Result<(), Rejection> {
    match part {
        Part::Method => named.method = value,
        Part::Host => named.host = Some(value),
        Part::Target => named.target = value,
        Part::Url => {
            let (host, target) = split_url(value).ok_or(Rejection::BadRequest(
                "X-Original-URL is not an http(s) URL",
            ))?;
            named.host = Some(host);
            named.target = target;
        }
        Part::Scheme => {}
    }
    Ok(())
}

/// `http://host:port/path?query` -> (`host:port`, `/path?query`); the target as sent (`/` for
/// none).
fn split_url(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return None;
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (host, target) = rest.split_at(end);
    match target {
        _ if host.is_empty() => None,
        "" => Some((host, "/")),
        t if t.starts_with('/') => Some((host, t)),
        _ => None,
    }
}

/// Two hosts compare without letter case and without the default port of `scheme` (of both
/// when it is unknown).
fn same_host(a: &str, b: &str, scheme: Option<&str>) -> bool {
    let defaults: &[&str] = match scheme.map(str::to_ascii_lowercase).as_deref() {
        Some("http") => &[":80"],
        Some("https") => &[":443"],
        _ => &[":80", ":443"],
    };
    let bare = |h: &'_ str| -> String {
        let h = h.to_ascii_lowercase();
        match defaults.iter().find(|p| h.ends_with(*p)) {
            Some(p) => h[..h.len() - p.len()].to_owned(),
            None => h,
        }
    };
    bare(a) == bare(b)
}

/// `target` without Envoy's `path_prefix` (whole segments): `/ext_authz/a?q` -> `/a?q`,
/// `/ext_authz` -> `/`; `None` outside it.
fn without_prefix<'a>(target: &'a str, prefix: Option<&str>) -> Option<&'a str> {
    let Some(prefix) = prefix else {
        return Some(target);
    };
    let rest = target.strip_prefix(prefix)?;
    match rest.as_bytes().first() {
        None => Some("/"),
        Some(b'/') => Some(rest),
        // `/ext_authz?q`: the original's path was empty; it cannot be given as `/` without a
        // copy, and no proxy sends it.
        _ => None,
    }
}

/// The refusal of a check whose path is not in normal form.
pub const NOT_NORMAL: &str =
    "path not in normal form (dot segments, '//', needless escapes): the proxy forwards it as sent";

/// True when checks from `client` are answered (`server.trusted_proxies`).
pub fn trusted(rt: &Runtime, client: &ClientInfo) -> bool {
    let trusted = &rt.config.server.trusted_proxies;
    trusted.iter().any(|n| n.contains(&client.ip))
}

/// The path of a request target (origin or absolute form), without the query.
fn path_of(target: &str) -> &str {
    let path = match target.split_once("://") {
        Some((_, rest)) if !target.starts_with('/') => {
            rest.find(['/', '?']).map_or("", |i| &rest[i..])
        }
        _ => target,
    };
    match path.split_once('?') {
        Some((p, _)) => p,
        None => path,
    }
}

/// Answers the check `check` (see the module docs) with `rt`'s rules, recording it in `end`.
pub async fn answer(
    rt: &Runtime,
    check: &RequestView<'_>,
    end: &mut RequestEnd<'_>,
) -> LocalResponse {
    let dialect = rt
        .config
        .forward_auth
        .as_ref()
        .map(|f| (f.proxy, f.path_prefix.as_deref()));
    match verdict(rt, check, dialect, end).await {
        Ok(ok) => allowed(rt.pipeline().header_policy(), &ok),
        Err(rejection) => rejection.response(),
    }
}

/// The verdict on the check `check`, asked in `dialect` with its path prefix (`None`: the
/// listener's `[forward_auth]` is gone): what an allowed request carries, or the refusal
/// (counted and recorded in `end`).
pub async fn verdict(
    rt: &Runtime,
    check: &RequestView<'_>,
    dialect: Option<(Dialect, Option<&str>)>,
    end: &mut RequestEnd<'_>,
) -> Result<Allowed, Rejection> {
    // The method is logged once it is known to be one.
    end.record.set_check("-");
    let decided = decide(rt, check, dialect, end).await;
    // A check is not a gRPC call, whatever the original was: its answer is never in gRPC
    // form, and the original's method is not a metrics label.
    end.record.grpc = false;
    end.record.grpc_passed = false;
    decided.inspect_err(|rejection| end.refuse(rejection))
}

async fn decide(
    rt: &Runtime,
    check: &RequestView<'_>,
    dialect: Option<(Dialect, Option<&str>)>,
    end: &mut RequestEnd<'_>,
) -> Result<Allowed, Rejection> {
    // `[forward_auth]` removed by a reload: the listener stays until a restart.
    let (dialect, prefix) = dialect.ok_or(Rejection::NoRoute)?;
    if !trusted(rt, check.client) {
        return Err(Rejection::UntrustedPeer);
    }
    let named = original(dialect, prefix, check, rt.pipeline().header_policy())?;
    end.record.set_check(named.method);
    let view = RequestView {
        method: named.method,
        target: named.target,
        authority: named.host,
        protocol: match dialect {
            Dialect::Envoy => check.protocol,
            _ => Protocol::Http11,
        },
        headers: check.headers,
        map: None,
        body: Framing::Empty,
        client: check.client,
    };
    match crate::http::decide(rt, &view, &mut end.record).await {
        // The proxy forwards the target as sent, and what is routed on must be that: a path
        // that normalization changed (dot segments, `//`, escapes of unreserved characters,
        // hex case) is refused, after inline mode's own refusals.
        Decision::Forward(forward) if forward.request.path != path_of(named.target) => {
            Err(Rejection::BadRequest(NOT_NORMAL))
        }
        Decision::Forward(forward) => Ok(Allowed {
            identity: forward.request.identity,
            assertion: forward.request.assertion,
        }),
        Decision::Reject(rejection) => Err(rejection),
        // A CORS preflight the route's rules allow: it needs no token, so it passes (the
        // proxy's upstream answers it).
        Decision::Respond(local) if local.status == 204 => Ok(Allowed::default()),
        // `OPTIONS *` names no resource to check.
        Decision::Respond(_) => Err(Rejection::BadRequest("asterisk-form request target")),
    }
}

/// What an allowed check lets through: the caller (none: anonymous) and its signed assertion.
#[derive(Debug, Default)]
pub struct Allowed {
    /// The verified caller.
    pub identity: Option<Arc<Identity>>,
    /// The assertion for the caller on the checked route, when configured.
    pub assertion: Option<http::HeaderValue>,
}

/// The answer that lets a request through: 200, no body, every identity header (`user_header`,
/// each `claim_headers` header, the issuer header, the assertion's) with its value or empty,
/// and `x-envoy-auth-headers-to-remove` naming the empty ones.
pub fn allowed(policy: &HeaderPolicy, ok: &Allowed) -> LocalResponse {
    let mut fields: Vec<(Cow<'static, str>, Cow<'static, str>)> =
        vec![("cache-control".into(), Cow::Borrowed("no-store"))];
    let mut empty = String::new();
    for (name, value) in policy.identity_values(ok.identity.as_deref(), ok.assertion.as_ref()) {
        let value = match value {
            Some(v) => String::from_utf8_lossy(v.as_bytes()).into_owned(),
            None => {
                if !empty.is_empty() {
                    empty.push_str(", ");
                }
                empty.push_str(name.as_str());
                String::new()
            }
        };
        fields.push((Cow::Owned(name.as_str().to_owned()), Cow::Owned(value)));
    }
    if !empty.is_empty() {
        fields.push(("x-envoy-auth-headers-to-remove".into(), Cow::Owned(empty)));
    }
    LocalResponse {
        status: 200,
        reported: 200,
        fields,
        body: Cow::Borrowed(b""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::ClientInfo;
    use crate::wire::Header;

    fn policy() -> HeaderPolicy {
        let config = crate::config::Config::from_toml(
            "[auth]\nclaim_headers = { role = \"X-Auth-Role\" }\n[[route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:1\"",
        )
        .unwrap();
        HeaderPolicy::new(&config.auth)
    }

    fn client() -> &'static ClientInfo {
        static CLIENT: std::sync::OnceLock<ClientInfo> = std::sync::OnceLock::new();
        CLIENT.get_or_init(|| {
            ClientInfo::new(std::net::Ipv4Addr::LOCALHOST.into(), "http").checking()
        })
    }

    fn named(
        dialect: Dialect,
        prefix: Option<&str>,
        method: &str,
        target: &str,
        fields: &[(&str, &str)],
    ) -> Result<(String, Option<String>, String), u16> {
        let headers: Vec<Header<'_>> = fields
            .iter()
            .map(|(n, v)| Header {
                name: n,
                value: v.as_bytes(),
            })
            .collect();
        let view = RequestView {
            method,
            target,
            authority: None,
            protocol: Protocol::Http11,
            headers: &headers,
            map: None,
            body: Framing::Empty,
            client: client(),
        };
        original(dialect, prefix, &view, &policy())
            .map(|o| {
                (
                    o.method.to_owned(),
                    o.host.map(str::to_owned),
                    o.target.to_owned(),
                )
            })
            .map_err(|r| r.status())
    }

    fn ok(method: &str, host: &str, target: &str) -> Result<(String, Option<String>, String), u16> {
        Ok((method.into(), Some(host.into()), target.into()))
    }

    #[test]
    fn each_dialect_names_the_original_with_its_own_headers() {
        let nginx = [
            ("Host", "jwtgate:8081"),
            ("X-Original-Method", "POST"),
            ("X-Original-URI", "/admin/x?a=1"),
            ("X-Forwarded-Host", "app.example"),
        ];
        assert_eq!(
            named(Dialect::Nginx, None, "GET", "/auth", &nginx),
            ok("POST", "app.example", "/admin/x?a=1")
        );
        let ingress = [
            ("X-Original-Method", "GET"),
            ("X-Original-URL", "https://app.example/a%2Fb?q"),
        ];
        assert_eq!(
            named(Dialect::IngressNginx, None, "GET", "/", &ingress),
            ok("GET", "app.example", "/a%2Fb?q")
        );
        let traefik = [
            ("X-Forwarded-Method", "DELETE"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "app.example"),
            ("X-Forwarded-Uri", "/x"),
        ];
        for d in [Dialect::Traefik, Dialect::Caddy] {
            assert_eq!(
                named(d, None, "GET", "/", &traefik),
                ok("DELETE", "app.example", "/x")
            );
        }
        let envoy = [("Host", "app.example")];
        assert_eq!(
            named(
                Dialect::Envoy,
                Some("/ext_authz"),
                "PUT",
                "/ext_authz/p?q",
                &envoy
            ),
            ok("PUT", "app.example", "/p?q")
        );
        assert_eq!(
            named(
                Dialect::Envoy,
                Some("/ext_authz"),
                "GET",
                "/ext_authz",
                &envoy
            ),
            ok("GET", "app.example", "/")
        );
        for outside in ["/other", "/ext_authzx/p", "/ext_authz?q"] {
            assert_eq!(
                named(Dialect::Envoy, Some("/ext_authz"), "GET", outside, &envoy),
                Err(404),
                "{outside}"
            );
        }
        assert_eq!(
            named(Dialect::Envoy, None, "GET", "/p", &envoy),
            ok("GET", "app.example", "/p")
        );
    }

    #[test]
    fn a_missing_own_header_and_disagreeing_copies_are_refused() {
        let base = [
            ("X-Original-Method", "GET"),
            ("X-Original-URI", "/admin"),
            ("X-Forwarded-Host", "app.example"),
        ];
        for skip in 0..3 {
            let fields: Vec<_> = base
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, f)| *f)
                .collect();
            assert_eq!(named(Dialect::Nginx, None, "GET", "/", &fields), Err(400));
        }
        // A client's own copies of other dialects' headers, naming something else.
        for extra in [
            ("X-Forwarded-Uri", "/public"),
            ("X-Original-URL", "http://app.example/public"),
            ("X-Original-URL", "http://other.example/admin"),
            ("X-Forwarded-Method", "POST"),
            ("X-Original-URI", "/admin"), // twice
        ] {
            let mut fields = base.to_vec();
            fields.push(extra);
            assert_eq!(
                named(Dialect::Nginx, None, "GET", "/", &fields),
                Err(400),
                "{extra:?}"
            );
        }
        // Copies that agree pass: hosts without case and default port, the scheme never counts.
        for extra in [
            ("X-Forwarded-Uri", "/admin"),
            ("X-Original-URL", "http://APP.example:80/admin"),
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Proto", "gopher"),
        ] {
            let mut fields = base.to_vec();
            fields.push(extra);
            assert_eq!(
                named(Dialect::Nginx, None, "GET", "/", &fields),
                ok("GET", "app.example", "/admin"),
                "{extra:?}"
            );
        }
        // Envoy: a client's X-Forwarded-Uri passed along must name the checked path.
        let envoy = [("Host", "app.example"), ("X-Forwarded-Uri", "/public")];
        assert_eq!(
            named(Dialect::Envoy, None, "GET", "/admin", &envoy),
            Err(400)
        );
        // A targets compares byte for byte: an encoded twin is another target.
        let traefik = [
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Host", "app.example"),
            ("X-Forwarded-Uri", "/admin"),
            ("X-Original-URI", "/%61dmin"),
        ];
        assert_eq!(
            named(Dialect::Traefik, None, "GET", "/", &traefik),
            Err(400)
        );
        // X-Forwarded-Prefix names nothing: it is not believed, and not a reason to refuse.
        let prefixed = [
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Host", "app.example"),
            ("X-Forwarded-Uri", "/admin"),
            ("X-Forwarded-Prefix", "/public"),
        ];
        assert_eq!(
            named(Dialect::Traefik, None, "GET", "/", &prefixed),
            ok("GET", "app.example", "/admin")
        );
    }

    #[test]
    fn identity_headers_spelled_with_underscores_are_refused() {
        for name in [
            "X_Auth_User",
            "x_auth_role",
            "X-Auth_User",
            "x_auth_user_bin",
        ] {
            let fields = [
                ("X-Forwarded-Method", "GET"),
                ("X-Forwarded-Host", "app.example"),
                ("X-Forwarded-Uri", "/"),
                (name, "admin"),
            ];
            assert_eq!(
                named(Dialect::Caddy, None, "GET", "/", &fields),
                Err(400),
                "{name}"
            );
        }
        // Other underscores are no concern of the check.
        let fields = [
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Host", "app.example"),
            ("X-Forwarded-Uri", "/"),
            ("X_Custom", "1"),
        ];
        assert!(named(Dialect::Caddy, None, "GET", "/", &fields).is_ok());
    }

    #[test]
    fn urls_split_into_host_and_target() {
        assert_eq!(split_url("http://a.example"), Some(("a.example", "/")));
        assert_eq!(split_url("HTTPS://a:8443/p?q"), Some(("a:8443", "/p?q")));
        for bad in ["a.example/p", "ftp://a/p", "http:///p", "http://a?q", "/p"] {
            assert_eq!(split_url(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_allowed_answer_carries_every_identity_header() {
        let p = policy();
        let none = allowed(&p, &Allowed::default());
        let field = |r: &LocalResponse, name: &str| {
            r.fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.to_string())
        };
        assert_eq!(none.status, 200);
        assert!(none.body.is_empty());
        assert_eq!(field(&none, "x-auth-user").as_deref(), Some(""));
        assert_eq!(field(&none, "x-auth-role").as_deref(), Some(""));
        // The issuer header is always named, so a client's copy is always replaced.
        assert_eq!(field(&none, "x-auth-issuer").as_deref(), Some(""));
        assert_eq!(
            field(&none, "x-envoy-auth-headers-to-remove").as_deref(),
            Some("x-auth-user, x-auth-role, x-auth-issuer")
        );
    }
}
