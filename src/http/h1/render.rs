//! HTTP/1.1 bytes for the client: the gateway's own answers ([`write_local`]) and the upstream
//! response's head as the pipeline planned it ([`response_head`]).

use http::StatusCode;

use crate::pipeline::response::{self, Body, Plan};
use crate::pipeline::{FieldSink, LocalResponse};
use crate::upstream::h1::Head;
use crate::wire::{self, ResponseHead, Version};

fn status_line(out: &mut Vec<u8>, status: u16, reason: &str) {
    out.extend_from_slice(b"HTTP/1.1 ");
    wire::push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn content_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"content-length: ");
    wire::push_decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

/// Appends `local` as an HTTP/1.1 response to `out`; `close` announces that the connection
/// closes after it; `head_only` (the answer to `HEAD`) leaves out the body, not its length.
/// Returns the length of the body written.
pub fn write_local(
    out: &mut Vec<u8>,
    local: &LocalResponse,
    close: bool,
    head_only: bool,
) -> usize {
    let reason = StatusCode::from_u16(local.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    status_line(out, local.status, reason);
    out.extend_from_slice(b"date: ");
    out.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut head = Head(out);
    for (name, value) in &local.fields {
        head.field(name.as_bytes(), value.as_bytes());
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    content_length(out, local.body.len() as u64);
    out.extend_from_slice(b"\r\n");
    if head_only {
        return 0;
    }
    out.extend_from_slice(&local.body);
    local.body.len()
}

/// How the response body goes to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFraming {
    /// No body, or a body of known length: the bytes as they are.
    Plain,
    /// Re-chunked (length unknown, HTTP/1.1 client).
    Chunked,
    /// Until the gateway closes the connection (length unknown, HTTP/1.0 client).
    UntilClose,
    /// `101`: the connection becomes a tunnel.
    Tunnel,
}

/// Writes the client's response head for the upstream's `head` as `plan` says into `out`, all
/// but the `Connection` field and the final empty line (the connection loop knows those), and
/// says how the body goes to a client speaking `version`.
pub fn response_head(
    out: &mut Vec<u8>,
    head: &ResponseHead<'_, '_>,
    plan: &Plan,
    version: Version,
) -> ClientFraming {
    status_line(out, head.status, head.reason);
    response::write_fields(head.headers, plan, &mut Head(out));
    if let Some(n) = plan.length {
        content_length(out, n);
    }
    match plan.body {
        Body::Tunnel => {
            out.extend_from_slice(b"connection: upgrade\r\n");
            ClientFraming::Tunnel
        }
        Body::None | Body::Length(_) => ClientFraming::Plain,
        Body::Stream if version == Version::Http11 => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
            ClientFraming::Chunked
        }
        Body::Stream => ClientFraming::UntilClose,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Rejection;

    #[test]
    fn a_local_answer_as_http1() {
        let local = Rejection::InvalidToken(crate::auth::TokenError::Expired).response();
        let (mut full, mut head_only) = (Vec::new(), Vec::new());
        let n = write_local(&mut full, &local, true, false);
        assert_eq!(write_local(&mut head_only, &local, true, true), 0);
        let mut fields = [httparse::EMPTY_HEADER; 16];
        let mut res = httparse::Response::new(&mut fields);
        let at = res.parse(&full).unwrap().unwrap();
        assert_eq!(res.code, Some(401));
        assert_eq!(res.reason, Some("Unauthorized"));
        let field = |name: &str| {
            res.headers
                .iter()
                .find(|h| h.name == name)
                .map(|h| std::str::from_utf8(h.value).unwrap())
        };
        assert_eq!(
            field("www-authenticate"),
            Some(r#"Bearer error="invalid_token", error_description="token expired""#)
        );
        assert_eq!(field("connection"), Some("close"));
        assert_eq!(field("content-type"), Some("application/json"));
        let length: usize = field("content-length").unwrap().parse().unwrap();
        assert_eq!((length, n), (full.len() - at, local.body.len()));
        assert_eq!(&full[at..], &local.body[..]);
        // The answer to HEAD is the same head (the date aside) without the body.
        let undated = |b: &[u8]| -> Vec<String> {
            String::from_utf8_lossy(b)
                .lines()
                .filter(|l| !l.starts_with("date: "))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(undated(&full[..at]), undated(&head_only));
    }
}
