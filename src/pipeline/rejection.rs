//! What can go wrong with one request ([`Rejection`]), and the single place where that becomes an
//! answer: status, `WWW-Authenticate` (RFC 6750 §3) and a small JSON body
//! `{"error": "...", "error_description": "..."}`, as a protocol-neutral [`LocalResponse`] that
//! each front-end writes in its own syntax. No description ever contains request data.

use std::borrow::Cow;
use std::sync::Arc;

use crate::auth::TokenError;

/// Everything that stops a request before (or instead of) the upstream's response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The request is malformed or ambiguous (bad path, Host confusion, framing, ...).
    BadRequest(&'static str),
    /// The request head is over `server.max_header_bytes` or `server.max_headers`.
    HeadersTooLarge,
    /// A method the gateway does not proxy (`CONNECT`, `TRACE`).
    MethodNotAllowed,
    /// No route matches.
    NoRoute,
    /// The request body is over the route's `max_body_bytes`.
    PayloadTooLarge,
    /// A `required` route and no Bearer token.
    MissingToken,
    /// The token was refused.
    InvalidToken(TokenError),
    /// The token is valid but does not meet one of the route's `require`s.
    Forbidden {
        /// The claim's path, as configured.
        claim: Arc<str>,
        /// For a `scope` or `scp` claim: the values the route lists, space-separated (the
        /// challenge's `scope`, RFC 6750 §3).
        scope: Option<Arc<str>>,
    },
    /// A token from the `auth.cookie` cookie on a request from another site (its `Origin`).
    CrossSite,
    /// A CORS preflight the route's rules do not allow (origin, method or headers).
    PreflightRefused,
    /// The identity headers of a valid token would be larger than `auth.max_identity_bytes`:
    /// 403, not 401, so that a client does not authenticate again in a loop.
    IdentityTooLarge,
    /// A forward-auth check from a peer outside `server.trusted_proxies`: its headers naming
    /// the original request cannot be believed.
    UntrustedPeer,
    /// The upstream could not be reached, reset the connection or sent garbage.
    UpstreamUnavailable,
    /// The upstream did not send a response head within `upstream_timeout`.
    UpstreamTimeout,
    /// The budget of bytes held for slow peers (`server.max_buffered_bytes`) stayed spent for
    /// `connect_timeout`: the gateway sheds the request rather than hold more.
    Overloaded,
}

/// An answer the gateway writes itself, in no protocol yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    /// The status code.
    pub status: u16,
    /// The status logs and metrics count it under: `status`, except for a refusal in gRPC form
    /// (HTTP 200 on the wire), which counts as the refusal's own (401, 403, ...).
    pub reported: u16,
    /// Fields besides framing (names lower case; a name may come from the config).
    pub fields: Vec<(Cow<'static, str>, Cow<'static, str>)>,
    /// The body (its length is the framing).
    pub body: Cow<'static, [u8]>,
}

/// The standard methods the gateway proxies (`Allow` of a 405, and of the answer to `OPTIONS *`;
/// extension methods such as WebDAV's pass too, `CONNECT` and `TRACE` never).
pub const ALLOWED: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

impl Rejection {
    /// The status code this answers with.
    pub fn status(&self) -> u16 {
        self.parts().status
    }

    /// Short outcome label for logs and metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            Rejection::BadRequest(_) => "bad_request",
            Rejection::HeadersTooLarge => "headers_too_large",
            Rejection::MethodNotAllowed => "method_not_allowed",
            Rejection::NoRoute => "no_route",
            Rejection::PayloadTooLarge => "payload_too_large",
            Rejection::MissingToken => "missing",
            Rejection::InvalidToken(e) => e.reason(),
            Rejection::Forbidden { .. } => "forbidden",
            Rejection::IdentityTooLarge => "identity_too_large",
            Rejection::CrossSite => "cross_site",
            Rejection::PreflightRefused => "preflight_refused",
            Rejection::UntrustedPeer => "untrusted_peer",
            Rejection::UpstreamUnavailable => "upstream_unavailable",
            Rejection::UpstreamTimeout => "upstream_timeout",
            Rejection::Overloaded => "overloaded",
        }
    }

    /// True for refusals by authentication or authorization (counted by reason).
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            Rejection::MissingToken
                | Rejection::InvalidToken(_)
                | Rejection::Forbidden { .. }
                | Rejection::IdentityTooLarge
                | Rejection::CrossSite
                | Rejection::UntrustedPeer
        )
    }

    /// The one table: HTTP status, error code, description, `WWW-Authenticate`, and the gRPC
    /// status a gRPC caller gets instead (the gRPC project's HTTP-to-gRPC mapping; CONTRACT.md's
    /// "HTTP/2 upstreams and gRPC"). Exhaustive: a new refusal must say all five.
    fn parts(&self) -> Parts {
        use grpc_code::*;
        let (status, code, description, challenge, grpc): (_, _, Cow<'static, str>, _, _) =
            match self {
                Rejection::BadRequest(why) => {
                    (400, "bad_request", Cow::Borrowed(*why), None, INTERNAL)
                }
                Rejection::HeadersTooLarge => (
                    431,
                    "headers_too_large",
                    "request head too large".into(),
                    None,
                    RESOURCE_EXHAUSTED,
                ),
                Rejection::MethodNotAllowed => (
                    405,
                    "method_not_allowed",
                    "method not allowed".into(),
                    None,
                    UNIMPLEMENTED,
                ),
                Rejection::NoRoute => (
                    404,
                    "not_found",
                    "no route for this request".into(),
                    None,
                    UNIMPLEMENTED,
                ),
                Rejection::PayloadTooLarge => (
                    413,
                    "payload_too_large",
                    "request body too large".into(),
                    None,
                    RESOURCE_EXHAUSTED,
                ),
                Rejection::MissingToken => (
                    401,
                    "invalid_request",
                    "bearer token required".into(),
                    Some(r#"Bearer realm="jwtgate""#.to_owned()),
                    UNAUTHENTICATED,
                ),
                Rejection::InvalidToken(TokenError::KeysUnavailable) => (
                    503,
                    "temporarily_unavailable",
                    TokenError::KeysUnavailable.description(),
                    None,
                    UNAVAILABLE,
                ),
                Rejection::InvalidToken(e) => {
                    let description = e.description();
                    let challenge = format!(
                        r#"Bearer error="invalid_token", error_description="{}""#,
                        printable(&description)
                    );
                    (
                        401,
                        "invalid_token",
                        description,
                        Some(challenge),
                        UNAUTHENTICATED,
                    )
                }
                Rejection::Forbidden { claim, scope } => {
                    let description = format!("token lacks a required {} claim", printable(claim));
                    let mut challenge = format!(
                        r#"Bearer error="insufficient_scope", error_description="{description}""#
                    );
                    if let Some(scope) = scope {
                        challenge.push_str(&format!(r#", scope="{}""#, printable(scope)));
                    }
                    (
                        403,
                        "insufficient_scope",
                        description.into(),
                        Some(challenge),
                        PERMISSION_DENIED,
                    )
                }
                Rejection::PreflightRefused => (
                    403,
                    "forbidden",
                    "this origin, method or header is not allowed here (CORS)".into(),
                    None,
                    PERMISSION_DENIED,
                ),
                Rejection::CrossSite => (
                    403,
                    "forbidden",
                    "a token from a cookie is not accepted on a request from another site".into(),
                    None,
                    PERMISSION_DENIED,
                ),
                Rejection::IdentityTooLarge => (
                    403,
                    "identity_too_large",
                    "the identity this token carries is larger than the gateway passes on".into(),
                    None,
                    PERMISSION_DENIED,
                ),
                Rejection::UntrustedPeer => (
                    403,
                    "forbidden",
                    "checks are answered only for server.trusted_proxies".into(),
                    None,
                    PERMISSION_DENIED,
                ),
                Rejection::UpstreamUnavailable => (
                    502,
                    "bad_gateway",
                    "upstream unavailable".into(),
                    None,
                    UNAVAILABLE,
                ),
                Rejection::UpstreamTimeout => (
                    504,
                    "gateway_timeout",
                    "upstream timed out".into(),
                    None,
                    UNAVAILABLE,
                ),
                Rejection::Overloaded => (
                    503,
                    "temporarily_unavailable",
                    "the gateway is overloaded; try again shortly".into(),
                    None,
                    UNAVAILABLE,
                ),
            };
        Parts {
            status,
            code,
            description,
            challenge,
            grpc,
        }
    }

    /// The answer: the status, `Content-Type: application/json`, `Cache-Control: no-store`,
    /// the challenge of a 401/403, `Allow` of a 405, and the JSON body.
    pub fn response(&self) -> LocalResponse {
        let Parts {
            status,
            code,
            description,
            challenge,
            ..
        } = self.parts();
        let body = serde_json::json!({ "error": code, "error_description": description })
            .to_string()
            .into_bytes();
        let mut fields = vec![
            ("content-type".into(), Cow::Borrowed("application/json")),
            ("cache-control".into(), Cow::Borrowed("no-store")),
        ];
        if let Some(challenge) = challenge {
            fields.push(("www-authenticate".into(), Cow::Owned(challenge)));
        }
        if status == 405 {
            fields.push(("allow".into(), Cow::Borrowed(ALLOWED)));
        }
        if status == 503 {
            // A provider's keys are being fetched (retried with backoff from 250 ms), or the
            // gateway is shedding load.
            fields.push(("retry-after".into(), Cow::Borrowed("1")));
        }
        LocalResponse {
            status,
            reported: status,
            fields,
            body: Cow::Owned(body),
        }
    }
}

/// A row of the rejection table.
struct Parts {
    status: u16,
    code: &'static str,
    description: Cow<'static, str>,
    challenge: Option<String>,
    grpc: u8,
}

/// The gRPC status codes refusals map to (the gRPC project's HTTP-to-gRPC status mapping, and
/// CONTRACT.md's "HTTP/2 upstreams and gRPC").
pub mod grpc_code {
    /// The request could not be read as one (400).
    pub const INTERNAL: u8 = 13;
    /// No valid credentials (401).
    pub const UNAUTHENTICATED: u8 = 16;
    /// Not allowed (403).
    pub const PERMISSION_DENIED: u8 = 7;
    /// No such method (404, 405).
    pub const UNIMPLEMENTED: u8 = 12;
    /// Over a limit (413, 431; 429).
    pub const RESOURCE_EXHAUSTED: u8 = 8;
    /// Try again later (502, 503, 504).
    pub const UNAVAILABLE: u8 = 14;
    /// A status gRPC does not define, as clients take it.
    pub const UNKNOWN: u8 = 2;
}

/// True for a request that gets refusals in gRPC form: a `POST` whose one `content-type` is
/// exactly `application/grpc`, `application/grpc+<codec>`, `application/grpc-web[+<codec>]` or
/// `application/grpc-web-text[+<codec>]` (letter case aside, no parameters; gRPC over HTTP/2
/// and gRPC-Web say so). Anything else (a `GET` for a script with a made-up content type, say)
/// gets the JSON refusal, so that a refusal is never a cacheable `200`.
pub fn is_grpc(method: &str, headers: &[crate::wire::Header<'_>]) -> bool {
    if method != "POST" {
        return false;
    }
    let mut types = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-type"));
    let (Some(t), None) = (types.next(), types.next()) else {
        return false;
    };
    grpc_content_type(t.value)
}

/// `application/grpc` or `application/grpc-web` or `application/grpc-web-text`, each with an
/// optional `+<codec>` (letters, digits, `.`, `-`, `_`).
fn grpc_content_type(value: &[u8]) -> bool {
    const TYPES: [&[u8]; 3] = [
        b"application/grpc-web-text",
        b"application/grpc-web",
        b"application/grpc",
    ];
    TYPES.iter().any(|t| {
        value.len() >= t.len()
            && value[..t.len()].eq_ignore_ascii_case(t)
            && match &value[t.len()..] {
                [] => true,
                [b'+', codec @ ..] => {
                    !codec.is_empty()
                        && codec
                            .iter()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
                }
                _ => false,
            }
    })
}

impl Rejection {
    /// The gRPC status this refusal maps to.
    pub fn grpc_status(&self) -> u8 {
        self.parts().grpc
    }

    /// The answer for a request, in gRPC form for a gRPC call ([`Rejection::grpc_response`]),
    /// else [`Rejection::response`].
    pub fn response_to(&self, grpc: bool) -> LocalResponse {
        if grpc {
            self.grpc_response()
        } else {
            self.response()
        }
    }

    /// A gRPC client's answer ("Trailers-Only"): HTTP 200, `content-type: application/grpc`,
    /// `grpc-status` and `grpc-message` (the JSON body's description, percent-encoded as gRPC
    /// asks), `cache-control: no-store`, no body; the challenge and `Retry-After` as in
    /// [`Rejection::response`]. Logged and counted under the refusal's own status.
    pub fn grpc_response(&self) -> LocalResponse {
        let Parts {
            status,
            description,
            challenge,
            grpc,
            ..
        } = self.parts();
        let mut fields = vec![
            ("content-type".into(), Cow::Borrowed("application/grpc")),
            ("cache-control".into(), Cow::Borrowed("no-store")),
            ("grpc-status".into(), Cow::Owned(grpc.to_string())),
            (
                "grpc-message".into(),
                Cow::Owned(grpc_message(&description)),
            ),
        ];
        if let Some(challenge) = challenge {
            fields.push(("www-authenticate".into(), Cow::Owned(challenge)));
        }
        if status == 503 {
            fields.push(("retry-after".into(), Cow::Borrowed("1")));
        }
        LocalResponse {
            status: 200,
            reported: status,
            fields,
            body: Cow::Borrowed(b""),
        }
    }
}

/// `grpc-message`: percent-encoding of every byte outside printable ASCII, and of `%`.
fn grpc_message(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl LocalResponse {
    /// An allowed CORS preflight's answer: 204 with `fields`.
    pub fn preflight(fields: Vec<(Cow<'static, str>, Cow<'static, str>)>) -> LocalResponse {
        LocalResponse {
            status: 204,
            reported: 204,
            fields,
            body: Cow::Borrowed(b""),
        }
    }

    /// A public JSON document (RFC 9728 metadata): readable from any origin, cacheable.
    pub fn json(status: u16, body: &[u8]) -> LocalResponse {
        LocalResponse {
            status,
            reported: status,
            fields: vec![
                ("content-type".into(), Cow::Borrowed("application/json")),
                ("cache-control".into(), Cow::Borrowed("max-age=300")),
                ("access-control-allow-origin".into(), Cow::Borrowed("*")),
            ],
            body: Cow::Owned(body.to_vec()),
        }
    }

    /// The answer to `OPTIONS *`: the gateway's own methods (RFC 9110 §9.3.7).
    pub fn options() -> LocalResponse {
        LocalResponse {
            status: 200,
            reported: 200,
            fields: vec![("allow".into(), Cow::Borrowed(ALLOWED))],
            body: Cow::Borrowed(b""),
        }
    }
}

/// Claim names and scopes come from the config, but keep the header safe whatever they hold:
/// visible ASCII and spaces, no quote or backslash.
fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| (c.is_ascii_graphic() || *c == ' ') && *c != '"' && *c != '\\')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mapping_table() {
        let table = [
            (
                Rejection::BadRequest("encoded '/' in path"),
                400,
                None,
                "bad_request",
            ),
            (Rejection::HeadersTooLarge, 431, None, "headers_too_large"),
            (Rejection::MethodNotAllowed, 405, None, "method_not_allowed"),
            (Rejection::NoRoute, 404, None, "not_found"),
            (Rejection::PayloadTooLarge, 413, None, "payload_too_large"),
            (
                Rejection::MissingToken,
                401,
                Some(r#"Bearer realm="jwtgate""#),
                "invalid_request",
            ),
            (
                Rejection::InvalidToken(TokenError::Expired),
                401,
                Some(r#"Bearer error="invalid_token", error_description="token expired""#),
                "invalid_token",
            ),
            (
                Rejection::Forbidden {
                    claim: "role".into(),
                    scope: None,
                },
                403,
                Some(
                    r#"Bearer error="insufficient_scope", error_description="token lacks a required role claim""#,
                ),
                "insufficient_scope",
            ),
            (Rejection::UntrustedPeer, 403, None, "forbidden"),
            (Rejection::UpstreamUnavailable, 502, None, "bad_gateway"),
            (Rejection::UpstreamTimeout, 504, None, "gateway_timeout"),
            (Rejection::Overloaded, 503, None, "temporarily_unavailable"),
        ];
        for (rejection, status, www, code) in table {
            let r = rejection.response();
            assert_eq!(r.status, status, "{rejection:?}");
            assert_eq!(rejection.status(), status);
            let field = |name: &str| {
                r.fields
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.as_ref())
            };
            assert_eq!(field("www-authenticate"), www, "{rejection:?}");
            assert_eq!(field("content-type"), Some("application/json"));
            assert_eq!(field("cache-control"), Some("no-store"));
            assert_eq!(field("allow").is_some(), status == 405);
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(body["error"], code, "{rejection:?}");
            assert!(body["error_description"].is_string());
            assert_eq!(rejection.is_auth(), matches!(status, 401 | 403));
        }
    }

    #[test]
    fn grpc_calls_get_grpc_answers() {
        use crate::auth::TokenError;
        let cases = [
            (Rejection::MissingToken, "16", "bearer token required"),
            (
                Rejection::InvalidToken(TokenError::Expired),
                "16",
                "token expired",
            ),
            (
                Rejection::Forbidden {
                    claim: "role".into(),
                    scope: None,
                },
                "7",
                "token lacks a required role claim",
            ),
            (Rejection::NoRoute, "12", "no route for this request"),
            (Rejection::UpstreamUnavailable, "14", "upstream unavailable"),
            (Rejection::UpstreamTimeout, "14", "upstream timed out"),
            (
                Rejection::InvalidToken(TokenError::KeysUnavailable),
                "14",
                "the token issuer's keys are not loaded yet; try again shortly",
            ),
            (Rejection::PayloadTooLarge, "8", "request body too large"),
            (Rejection::BadRequest("bad path"), "13", "bad path"),
        ];
        for (rejection, code, message) in cases {
            let r = rejection.response_to(true);
            let field = |name: &str| {
                r.fields
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.to_string())
            };
            assert_eq!(r.status, 200, "{rejection:?}");
            assert!(r.body.is_empty());
            assert_eq!(field("content-type").as_deref(), Some("application/grpc"));
            assert_eq!(field("grpc-status").as_deref(), Some(code), "{rejection:?}");
            assert_eq!(
                field("grpc-message").as_deref(),
                Some(message),
                "{rejection:?}"
            );
            // The JSON answer is unchanged for everyone else.
            assert_eq!(rejection.response_to(false), rejection.response());
        }
        assert_eq!(grpc_message("50% off\n"), "50%25 off%0A");
    }

    #[test]
    fn grpc_answers_are_not_cacheable_and_count_as_the_refusal() {
        let r = Rejection::MissingToken.response_to(true);
        assert_eq!((r.status, r.reported), (200, 401));
        assert!(r
            .fields
            .iter()
            .any(|(n, v)| n == "cache-control" && v == "no-store"));
        let r = Rejection::MissingToken.response();
        assert_eq!((r.status, r.reported), (401, 401));
    }

    #[test]
    fn only_a_post_with_a_grpc_content_type_is_a_grpc_call() {
        let with = |method: &str, types: &[&'static str]| {
            let headers: Vec<crate::wire::Header> = types
                .iter()
                .map(|v| crate::wire::Header {
                    name: "Content-Type",
                    value: v.as_bytes(),
                })
                .collect();
            is_grpc(method, &headers)
        };
        for yes in [
            "application/grpc",
            "Application/GRPC+proto",
            "application/grpc+json",
            "application/grpc-web",
            "application/grpc-web+proto",
            "application/grpc-web-text",
            "application/grpc-web-text+proto",
        ] {
            assert!(with("POST", &[yes]), "{yes}");
            assert!(!with("GET", &[yes]), "GET {yes}");
        }
        for no in [
            "application/json",
            "application/grp",
            "application/grpcXYZ",
            "application/grpc+",
            "application/grpc; charset=utf-8",
            "application/grpc-webby",
            "application/grpc+pro to",
            "application/grpc-web-text+",
        ] {
            assert!(!with("POST", &[no]), "{no}");
        }
        assert!(!with("POST", &[]));
        assert!(!with("POST", &["application/grpc", "application/grpc"]));
    }

    #[test]
    fn every_refusal_has_its_grpc_code() {
        use crate::auth::TokenError;
        let table = [
            (Rejection::BadRequest("x"), grpc_code::INTERNAL),
            (Rejection::HeadersTooLarge, grpc_code::RESOURCE_EXHAUSTED),
            (Rejection::MethodNotAllowed, grpc_code::UNIMPLEMENTED),
            (Rejection::NoRoute, grpc_code::UNIMPLEMENTED),
            (Rejection::PayloadTooLarge, grpc_code::RESOURCE_EXHAUSTED),
            (Rejection::MissingToken, grpc_code::UNAUTHENTICATED),
            (
                Rejection::InvalidToken(TokenError::Expired),
                grpc_code::UNAUTHENTICATED,
            ),
            (
                Rejection::InvalidToken(TokenError::KeysUnavailable),
                grpc_code::UNAVAILABLE,
            ),
            (
                Rejection::Forbidden {
                    claim: "role".into(),
                    scope: None,
                },
                grpc_code::PERMISSION_DENIED,
            ),
            (Rejection::UpstreamUnavailable, grpc_code::UNAVAILABLE),
            (Rejection::UpstreamTimeout, grpc_code::UNAVAILABLE),
            (Rejection::Overloaded, grpc_code::UNAVAILABLE),
        ];
        for (rejection, code) in table {
            assert_eq!(rejection.grpc_status(), code, "{rejection:?}");
        }
    }

    #[test]
    fn descriptions_stay_header_safe() {
        let r = Rejection::Forbidden {
            claim: "ro\"le\r\n".into(),
            scope: None,
        }
        .response();
        let (_, v) = r
            .fields
            .iter()
            .find(|(n, _)| n == "www-authenticate")
            .unwrap();
        assert!(v.bytes().all(|b| b.is_ascii_graphic() || b == b' '), "{v}");
    }
}
