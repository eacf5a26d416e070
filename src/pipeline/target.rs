//! Where the request is going: the request target and `Host` checks, and the path that is both
//! routed on and forwarded.

use std::borrow::Cow;

use super::{Protocol, Rejection, RequestView};
use crate::wire::uri::{self, normalize_host};

/// The request's routing facts, after every check.
#[derive(Debug)]
pub struct Target<'a> {
    /// Normalized host for routing (only when some route has a host).
    pub host: Option<String>,
    /// The authority as the client sent it (for `Host` and `X-Forwarded-Host` upstream).
    pub host_header: Option<&'a [u8]>,
    /// The normalized path: routed on and forwarded.
    pub path: Cow<'a, str>,
    /// The query, as sent.
    pub query: Option<&'a str>,
}

/// Checks the target and `Host` of `req` (RFC 9112 §3.2, §3.3): the path to route on and
/// forward (normalized, see [`crate::wire::uri`]), its query, and the authority. `Ok(None)` for
/// the asterisk form (`OPTIONS *`).
pub fn target<'a>(
    req: &RequestView<'a>,
    has_host_routes: bool,
) -> Result<Option<Target<'a>>, Rejection> {
    // CONNECT asks for a tunnel to anywhere; TRACE echoes the request (and so the credentials
    // in it) back to the client (cross-site tracing). nginx refuses both too.
    if matches!(req.method, "CONNECT" | "TRACE") {
        return Err(Rejection::MethodNotAllowed);
    }
    let mut hosts = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"));
    let host_field = hosts.next().map(|h| h.value);
    if hosts.next().is_some() {
        return Err(Rejection::BadRequest("more than one Host header"));
    }
    if host_field.is_some_and(|h| !valid_host(h)) {
        return Err(Rejection::BadRequest("invalid Host header"));
    }
    if req.target == "*" {
        if host_field.is_none() && req.protocol == Protocol::Http11 {
            return Err(Rejection::BadRequest("missing Host header"));
        }
        return Ok(None);
    }
    let (authority, path_and_query) = split_target(req)?;
    if authority.is_some_and(|a| a.contains('@')) {
        return Err(Rejection::BadRequest("userinfo in request target"));
    }
    // RFC 9112 §3.2.2: with an absolute-form target (or HTTP/2's :authority), its authority is
    // the host, whatever a Host field says (its value is ignored, once checked).
    let host_header = match (authority, host_field) {
        (Some(a), _) => Some(a.as_bytes()),
        (None, Some(h)) => Some(h),
        (None, None) if req.protocol == Protocol::Http11 => {
            return Err(Rejection::BadRequest("missing Host header"))
        }
        (None, None) => None,
    };
    let host = match host_header {
        Some(h) => {
            if !valid_host(h) {
                return Err(Rejection::BadRequest("invalid Host header"));
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
    let path = uri::normalize(path).map_err(Rejection::BadRequest)?;
    Ok(Some(Target {
        host,
        host_header,
        path,
        query,
    }))
}

/// A host the gateway routes on and passes on: visible ASCII without `/`, `\\` or `@`.
fn valid_host(h: &[u8]) -> bool {
    !h.is_empty()
        && h.iter()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b'\\' | b'@'))
}

/// The authority (absolute-form or HTTP/2) and the path-and-query of a request target.
fn split_target<'a>(req: &RequestView<'a>) -> Result<(Option<&'a str>, &'a str), Rejection> {
    let t = req.target;
    if t.starts_with('/') {
        return Ok((req.authority, t));
    }
    // absolute-form (RFC 9112 §3.2.2): what a client talking to a proxy sends.
    let rest = ["http://", "https://"]
        .iter()
        .find_map(|scheme| {
            t.get(..scheme.len())
                .filter(|s| s.eq_ignore_ascii_case(scheme))
                .map(|s| &t[s.len()..])
        })
        .ok_or(Rejection::BadRequest(
            "request target must be an absolute path",
        ))?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() {
        return Err(Rejection::BadRequest("request target without a host"));
    }
    match path {
        "" => Ok((Some(authority), "/")),
        p if p.starts_with('?') => Err(Rejection::BadRequest(
            "request target must be an absolute path",
        )),
        p => Ok((Some(authority), p)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::ClientInfo;
    use crate::wire::{Framing, Header};

    fn inbound<'a>(target: &'a str, headers: &'a [Header<'a>]) -> RequestView<'a> {
        RequestView {
            method: "GET",
            target,
            authority: None,
            protocol: Protocol::Http11,
            headers,
            map: None,
            body: Framing::Empty,
            client: client(),
        }
    }

    fn client() -> &'static ClientInfo {
        static CLIENT: std::sync::OnceLock<ClientInfo> = std::sync::OnceLock::new();
        CLIENT.get_or_init(|| ClientInfo::new(std::net::Ipv4Addr::LOCALHOST.into(), "http"))
    }

    fn target<'a>(req: &RequestView<'a>, hosts: bool) -> Result<Target<'a>, Rejection> {
        super::target(req, hosts).map(|t| t.expect("not the asterisk form"))
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
        // RFC 9112 §3.2.2: the absolute form's authority wins over Host.
        let t = target(&inbound("http://app.example:80/x", &host), false).unwrap();
        assert_eq!(t.host_header, Some(&b"app.example:80"[..]));
        let t = target(&inbound("http://other.example/p", &host), true).unwrap();
        assert_eq!(t.host.as_deref(), Some("other.example"));
        assert!(super::target(&inbound("*", &host), false)
            .unwrap()
            .is_none());
        for bad in [
            "app.example:80",
            "p/x",
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
