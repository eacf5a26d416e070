//! What can go wrong with one request, and the single place where that becomes a response:
//! status, `WWW-Authenticate` (RFC 6750 §3) and a small JSON body
//! `{"error": "...", "error_description": "..."}`. No description ever contains request data.

use bytes::Bytes;
use http::header::{
    HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE,
};
use http::{Response, StatusCode};

use crate::auth::TokenError;
use crate::http::body::Body;

/// Everything that stops a request before (or instead of) the upstream's response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayError {
    /// The request is malformed or ambiguous (bad path, Host confusion, framing, ...).
    BadRequest(&'static str),
    /// The request head is over `server.max_header_bytes` or `server.max_headers`.
    HeadersTooLarge,
    /// A method the gateway does not proxy (`CONNECT`).
    MethodNotAllowed,
    /// No route matches.
    NoRoute,
    /// The request body is over the route's `max_body_bytes`.
    PayloadTooLarge,
    /// A `required` route and no Bearer token.
    MissingToken,
    /// The token was refused.
    InvalidToken(TokenError),
    /// The token is valid but lacks a claim the route requires (the claim's name).
    Forbidden(String),
    /// The upstream could not be reached, reset the connection or sent garbage.
    UpstreamUnavailable,
    /// The upstream did not send a response head within `upstream_timeout`.
    UpstreamTimeout,
}

impl GatewayError {
    /// The status code this error answers with.
    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    /// Short outcome label for logs and metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            GatewayError::BadRequest(_) => "bad_request",
            GatewayError::HeadersTooLarge => "headers_too_large",
            GatewayError::MethodNotAllowed => "method_not_allowed",
            GatewayError::NoRoute => "no_route",
            GatewayError::PayloadTooLarge => "payload_too_large",
            GatewayError::MissingToken => "missing",
            GatewayError::InvalidToken(e) => e.reason(),
            GatewayError::Forbidden(_) => "forbidden",
            GatewayError::UpstreamUnavailable => "upstream_unavailable",
            GatewayError::UpstreamTimeout => "upstream_timeout",
        }
    }

    /// (status, error code, description, WWW-Authenticate).
    fn parts(&self) -> (StatusCode, &'static str, String, Option<String>) {
        match self {
            GatewayError::BadRequest(why) => (
                StatusCode::BAD_REQUEST,
                "bad_request",
                (*why).to_owned(),
                None,
            ),
            GatewayError::HeadersTooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                "request head too large".to_owned(),
                None,
            ),
            GatewayError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed".to_owned(),
                None,
            ),
            GatewayError::NoRoute => (
                StatusCode::NOT_FOUND,
                "not_found",
                "no route for this request".to_owned(),
                None,
            ),
            GatewayError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "request body too large".to_owned(),
                None,
            ),
            GatewayError::MissingToken => (
                StatusCode::UNAUTHORIZED,
                "invalid_request",
                "bearer token required".to_owned(),
                Some(r#"Bearer realm="jwtgate""#.to_owned()),
            ),
            GatewayError::InvalidToken(e) => (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                e.description().to_owned(),
                Some(format!(
                    r#"Bearer error="invalid_token", error_description="{}""#,
                    e.description()
                )),
            ),
            GatewayError::Forbidden(claim) => {
                let description = format!("token lacks a required {} claim", printable(claim));
                let challenge = format!(
                    r#"Bearer error="insufficient_scope", error_description="{description}""#
                );
                (
                    StatusCode::FORBIDDEN,
                    "insufficient_scope",
                    description,
                    Some(challenge),
                )
            }
            GatewayError::UpstreamUnavailable => (
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                "upstream unavailable".to_owned(),
                None,
            ),
            GatewayError::UpstreamTimeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "gateway_timeout",
                "upstream timed out".to_owned(),
                None,
            ),
        }
    }

    /// The response for this error (HTTP/2); `head_only` (the answer to `HEAD`) leaves out the
    /// body, not its length.
    pub fn into_response(self, head_only: bool) -> Response<Body> {
        let (status, code, description, challenge) = self.parts();
        let body = json(code, &description);
        let length = body.len();
        let mut res = Response::new(match head_only {
            true => Body::empty(),
            false => Body::full(Bytes::from(body)),
        });
        *res.status_mut() = status;
        let h = res.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(challenge) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            h.insert(WWW_AUTHENTICATE, challenge);
        }
        if status == StatusCode::METHOD_NOT_ALLOWED {
            h.insert(ALLOW, HeaderValue::from_static(ALLOWED));
        }
        h.insert(CONTENT_LENGTH, HeaderValue::from(length));
        res
    }

    /// The same response as HTTP/1.1 bytes, appended to `out`; `close` announces that the
    /// connection closes after it; `head_only` (the answer to `HEAD`) leaves out the body, not
    /// its length. Returns the length of the body written.
    pub fn write_http1(&self, out: &mut Vec<u8>, close: bool, head_only: bool) -> usize {
        let (status, code, description, challenge) = self.parts();
        let body = json(code, &description);
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\ndate: ");
        out.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
        out.extend_from_slice(b"\r\ncontent-type: application/json\r\ncache-control: no-store\r\n");
        if let Some(challenge) = challenge {
            out.extend_from_slice(b"www-authenticate: ");
            out.extend_from_slice(challenge.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if status == StatusCode::METHOD_NOT_ALLOWED {
            out.extend_from_slice(b"allow: ");
            out.extend_from_slice(ALLOWED.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"content-length: ");
        crate::wire::push_decimal(out, body.len() as u64);
        out.extend_from_slice(b"\r\n\r\n");
        if head_only {
            return 0;
        }
        out.extend_from_slice(body.as_bytes());
        body.len()
    }
}

/// The methods the gateway proxies (`Allow` of a 405).
const ALLOWED: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

fn json(code: &str, description: &str) -> String {
    serde_json::json!({ "error": code, "error_description": description }).to_string()
}

/// Claim names come from the config, but keep the header safe whatever they hold.
fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn render(e: GatewayError) -> (StatusCode, Option<String>, serde_json::Value) {
        let res = e.into_response(false);
        let status = res.status();
        let www = res
            .headers()
            .get(WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, www, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn the_mapping_table() {
        let table = [
            (
                GatewayError::BadRequest("encoded '/' in path"),
                400,
                None,
                "bad_request",
            ),
            (
                GatewayError::HeadersTooLarge,
                431,
                None,
                "headers_too_large",
            ),
            (
                GatewayError::MethodNotAllowed,
                405,
                None,
                "method_not_allowed",
            ),
            (GatewayError::NoRoute, 404, None, "not_found"),
            (
                GatewayError::PayloadTooLarge,
                413,
                None,
                "payload_too_large",
            ),
            (
                GatewayError::MissingToken,
                401,
                Some(r#"Bearer realm="jwtgate""#),
                "invalid_request",
            ),
            (
                GatewayError::InvalidToken(TokenError::Expired),
                401,
                Some(r#"Bearer error="invalid_token", error_description="token expired""#),
                "invalid_token",
            ),
            (
                GatewayError::Forbidden("role".into()),
                403,
                Some(
                    r#"Bearer error="insufficient_scope", error_description="token lacks a required role claim""#,
                ),
                "insufficient_scope",
            ),
            (GatewayError::UpstreamUnavailable, 502, None, "bad_gateway"),
            (GatewayError::UpstreamTimeout, 504, None, "gateway_timeout"),
        ];
        for (err, status, www, code) in table {
            let (s, w, body) = render(err.clone()).await;
            assert_eq!(s.as_u16(), status, "{err:?}");
            assert_eq!(w.as_deref(), www, "{err:?}");
            assert_eq!(body["error"], code, "{err:?}");
            assert!(body["error_description"].is_string());
            // The HTTP/1.1 rendering says the same.
            let mut raw = Vec::new();
            let mut head_only = Vec::new();
            err.write_http1(&mut head_only, true, true);
            err.write_http1(&mut raw, true, false);
            // The answer to HEAD is the same head (the date aside) without the body.
            let undated = |b: &[u8]| -> String {
                String::from_utf8_lossy(b)
                    .lines()
                    .filter(|l| !l.starts_with("date: "))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            let (raw_head, _) = String::from_utf8_lossy(&raw)
                .split_once("\r\n\r\n")
                .map(|(h, b)| (h.to_owned(), b.to_owned()))
                .unwrap();
            assert_eq!(
                undated(raw_head.as_bytes()),
                undated(&head_only[..head_only.len() - 4]),
                "{err:?}"
            );
            let mut fields = [httparse::EMPTY_HEADER; 16];
            let mut res = httparse::Response::new(&mut fields);
            let head = res.parse(&raw).unwrap().unwrap();
            assert_eq!(res.code, Some(status));
            let field = |name: &str| {
                res.headers
                    .iter()
                    .find(|h| h.name == name)
                    .map(|h| std::str::from_utf8(h.value).unwrap())
            };
            assert_eq!(field("www-authenticate"), www, "{err:?}");
            assert_eq!(field("connection"), Some("close"));
            let length: usize = field("content-length").unwrap().parse().unwrap();
            assert_eq!(length, raw.len() - head);
            let json: serde_json::Value = serde_json::from_slice(&raw[head..]).unwrap();
            assert_eq!(json, body, "{err:?}");
        }
    }
}
