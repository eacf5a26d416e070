//! Header hygiene, request and response side.
//!
//! On the way in, in this order (so that nothing a client sends can survive into what the
//! gateway writes):
//!
//! 1. read the `Connection` header's nominations, then drop every hop-by-hop header (RFC 9110
//!    §7.6.1) and every nominated one (except `Host` and `Content-Length`, which frame and route
//!    the request and are rewritten by the gateway anyway);
//! 2. drop every client copy of an identity header (`user_header`, each `claim_headers` value),
//!    of `X-Forwarded-*`, `Forwarded`, `X-Real-IP` and the like, and of routing-override headers
//!    (`X-Original-URL`, ...), in any letter case and with `_` in place of `-` (CGI-style servers
//!    fold `X_Auth_User` into `X-Auth-User`);
//! 3. write `X-Forwarded-For` (appended), `X-Forwarded-Proto`, `X-Forwarded-Host`, and the
//!    identity headers from the verified token, exactly once each.

use std::net::IpAddr;

use http::header::{
    HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONNECTION, CONTENT_LENGTH, COOKIE, HOST,
    TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use tracing::debug;

use crate::auth::Identity;
use crate::config::{spoof_key, AuthConfig};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the non-standard ones proxies still see).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

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
    "x-forwarded-port",
    "x-forwarded-ssl",
    "x-forwarded-scheme",
    "x-forwarded-server",
    "x-client-ip",
    "true-client-ip",
    "x-cluster-client-ip",
];

/// What the rewrite needs from the config, prepared once per (re)load.
#[derive(Debug, Clone)]
pub struct HeaderPolicy {
    user_header: HeaderName,
    claim_headers: Vec<HeaderName>,
    /// Spoof keys (see [`spoof_key`]) of every header a client may not send upstream.
    stripped: Vec<String>,
    forward_token: bool,
}

impl HeaderPolicy {
    /// Prepares the policy for `auth`.
    pub fn new(auth: &AuthConfig) -> HeaderPolicy {
        let claim_headers: Vec<HeaderName> =
            auth.claim_headers.iter().map(|(_, h)| h.clone()).collect();
        let stripped = std::iter::once(&auth.user_header)
            .chain(&claim_headers)
            .map(|h| h.as_str())
            .chain(["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"])
            .chain(ROUTING_OVERRIDES.iter().copied())
            .chain(CLIENT_FACTS.iter().copied())
            .map(spoof_key)
            .collect();
        HeaderPolicy {
            user_header: auth.user_header.clone(),
            claim_headers,
            stripped,
            forward_token: auth.forward_token,
        }
    }

    fn is_stripped(&self, name: &HeaderName) -> bool {
        let name = name.as_str().as_bytes();
        self.stripped.iter().any(|key| {
            key.len() == name.len()
                && key
                    .bytes()
                    .zip(name)
                    .all(|(k, &n)| k == if n == b'_' { b'-' } else { n })
        })
    }
}

/// Facts about the client connection for `X-Forwarded-*`, prepared once per connection.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The peer's address.
    pub ip: IpAddr,
    /// The same, as a header value (formatted once, not per request).
    ip_value: HeaderValue,
    /// `http` or `https`: how the client reached the gateway.
    pub proto: &'static str,
}

impl ClientInfo {
    /// Facts for a connection from `ip` over `proto` (`http` or `https`).
    pub fn new(ip: IpAddr, proto: &'static str) -> ClientInfo {
        let ip = ip.to_canonical();
        ClientInfo {
            ip,
            // An IP address always formats to a valid header value.
            ip_value: HeaderValue::from_str(&ip.to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            proto,
        }
    }
}

/// The `Upgrade` value of a request that asks for a protocol switch the gateway tunnels
/// (WebSocket and the like). `h2c` is never tunnelled (h2c smuggling): such a request is served
/// as a plain HTTP/1.1 request.
pub fn upgrade_request(headers: &HeaderMap) -> Option<HeaderValue> {
    let upgrade = headers.get(UPGRADE)?;
    let asked = headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(tokens)
        .any(|t| t.eq_ignore_ascii_case("upgrade"));
    let h2c = upgrade.to_str().map_or(true, |v| {
        v.split(',').any(|p| p.trim().eq_ignore_ascii_case("h2c"))
    });
    (asked && !h2c && headers.get_all(UPGRADE).iter().count() == 1).then(|| upgrade.clone())
}

fn tokens(v: &HeaderValue) -> impl Iterator<Item = &str> {
    v.to_str()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Removes hop-by-hop headers and those the `Connection` header nominates.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let nominated: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(tokens)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .filter(|n| n != HOST && n != CONTENT_LENGTH)
        .collect();
    for name in nominated {
        headers.remove(name);
    }
    // One pass over what is there (usually just `connection`), rather than a hashed lookup
    // of every hop-by-hop name in every request and response.
    let present: Vec<HeaderName> = headers
        .keys()
        .filter(|k| HOP_BY_HOP.contains(&k.as_str()))
        .cloned()
        .collect();
    for name in present {
        headers.remove(name);
    }
}

/// Rewrites a request's headers for the upstream (see the module docs for the order).
/// `host` is the request's authority as the client sent it, for `X-Forwarded-Host`.
pub fn rewrite_request(
    headers: &mut HeaderMap,
    policy: &HeaderPolicy,
    identity: Option<&Identity>,
    client: &ClientInfo,
    host: Option<&HeaderValue>,
    upgrade: Option<HeaderValue>,
) {
    let prior_xff = join_values(headers, &X_FORWARDED_FOR);
    strip_hop_by_hop(headers);
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|n| policy.is_stripped(n))
        .cloned()
        .collect();
    for name in spoofed {
        if name == policy.user_header || policy.claim_headers.contains(&name) {
            debug!(header = %name, "removed client-sent identity header");
        }
        headers.remove(&name);
    }
    if !policy.forward_token {
        headers.remove(AUTHORIZATION);
    }

    let xff = match prior_xff {
        Some(mut chain) => {
            chain.push_str(", ");
            chain.push_str(client.ip_value.to_str().unwrap_or(""));
            HeaderValue::from_maybe_shared(bytes::Bytes::from(chain))
                .unwrap_or_else(|_| client.ip_value.clone())
        }
        None => client.ip_value.clone(),
    };
    headers.insert(X_FORWARDED_FOR.clone(), xff);
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(client.proto),
    );
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST.clone(), host.clone());
    }
    if let Some(upgrade) = upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, upgrade);
    }
    if let Some(id) = identity {
        headers.insert(policy.user_header.clone(), id.user.clone());
        for (name, value) in policy.claim_headers.iter().zip(&id.claim_values) {
            if let Some(v) = value {
                headers.insert(name.clone(), v.clone());
            }
        }
    }
}

/// Removes hop-by-hop headers from an upstream response; a `101 Switching Protocols` keeps its
/// `Connection: upgrade` and `Upgrade`.
pub fn rewrite_response(headers: &mut HeaderMap, switching: bool) {
    let upgrade = if switching {
        headers.get(UPGRADE).cloned()
    } else {
        None
    };
    strip_hop_by_hop(headers);
    if let Some(upgrade) = upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, upgrade);
    }
    // Never relayed by name: hyper frames the response itself.
    debug_assert!(!headers.contains_key(TRANSFER_ENCODING) && !headers.contains_key(TE));
    debug_assert!(!headers.contains_key(TRAILER));
}

/// HTTP/2 clients may split `Cookie` into several fields; an HTTP/1.1 upstream needs one,
/// joined with `"; "` (RFC 9113 §8.2.3).
pub fn join_cookies(headers: &mut HeaderMap) {
    if headers.get_all(COOKIE).iter().nth(1).is_none() {
        return;
    }
    let joined: Vec<&[u8]> = headers
        .get_all(COOKIE)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    if let Ok(v) = HeaderValue::from_bytes(&joined.join(&b"; "[..])) {
        headers.insert(COOKIE, v);
    }
}

fn join_values(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut values = headers.get_all(name).iter().filter_map(|v| v.to_str().ok());
    let first = values.next()?;
    Some(values.fold(first.to_owned(), |mut acc, v| {
        acc.push_str(", ");
        acc.push_str(v);
        acc
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

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
            claims: Default::default(),
            exp: 0.0,
        }
    }

    fn client() -> ClientInfo {
        ClientInfo::new("10.1.2.3".parse().unwrap(), "http")
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn spoofed_identity_is_replaced_exactly_once() {
        let p = policy("claim_headers = { role = \"X-Auth-Role\" }");
        let mut h = map(&[
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
            ("authorization", "Bearer t"),
        ]);
        rewrite_request(
            &mut h,
            &p,
            Some(&identity("alice", None)),
            &client(),
            Some(&HeaderValue::from_static("app.example")),
            None,
        );
        assert_eq!(
            h.get_all("x-auth-user").iter().collect::<Vec<_>>(),
            vec!["alice"]
        );
        assert!(!h.contains_key("x_auth_user"));
        assert!(!h.contains_key("x-auth-role") && !h.contains_key("x_auth_role"));
        assert!(!h.contains_key("connection") && !h.contains_key("keep-alive"));
        assert!(!h.contains_key("x-original-url") && !h.contains_key("x_forwarded_for"));
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 10.1.2.3");
        assert_eq!(h["x-forwarded-host"], "app.example");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["authorization"], "Bearer t");
    }

    #[test]
    fn anonymous_requests_carry_no_identity() {
        let p = policy("forward_token = false");
        let mut h = map(&[("x-auth-user", "mallory"), ("authorization", "Bearer t")]);
        rewrite_request(&mut h, &p, None, &client(), None, None);
        assert!(!h.contains_key("x-auth-user"));
        assert!(!h.contains_key("authorization"));
        assert!(!h.contains_key("x-forwarded-host"));
    }

    #[test]
    fn nominating_framing_headers_does_not_remove_them() {
        let p = policy("");
        let mut h = map(&[
            ("connection", "content-length, host"),
            ("content-length", "3"),
            ("host", "a"),
        ]);
        rewrite_request(&mut h, &p, None, &client(), None, None);
        assert_eq!(h["content-length"], "3");
        assert_eq!(h["host"], "a");
    }

    #[test]
    fn upgrades() {
        let ws = map(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert_eq!(upgrade_request(&ws).unwrap(), "websocket");
        let h2c = map(&[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
        ]);
        assert!(upgrade_request(&h2c).is_none());
        let not_asked = map(&[("upgrade", "websocket")]);
        assert!(upgrade_request(&not_asked).is_none());
        let mut h = ws.clone();
        rewrite_request(
            &mut h,
            &policy(""),
            None,
            &client(),
            None,
            upgrade_request(&ws),
        );
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
    }

    #[test]
    fn response_hop_by_hop_is_dropped() {
        let mut h = map(&[
            ("connection", "close, x-internal"),
            ("x-internal", "1"),
            ("keep-alive", "5"),
            ("x-app", "ok"),
        ]);
        rewrite_response(&mut h, false);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-app"], "ok");
    }
}
