//! The gateway's own answers on an HTTP/1.x connection: a [`LocalResponse`] as HTTP/1.1 bytes
//! ([`write_local`]), written ([`respond`]), and what becomes of the connection after one
//! ([`answer_here`]: a request's unread body must never be parsed as the next request).

use http::StatusCode;

use super::sink::{content_length, status_line};
use super::Transport;
use super::{write_all, Connection, Facts, Next};
use crate::http::end::RequestEnd;
use crate::net::buffers;
use crate::ops::access::Decorations;
use crate::pipeline::{FieldSink, LocalResponse};
use crate::upstream::h1::Head;
use crate::wire::Framing;

/// Appends `local` as an HTTP/1.1 response to `out`; `close` announces that the connection
/// closes after it; `head_only` (the answer to `HEAD`) leaves out the body, not its length.
/// Returns the length of the body written.
pub fn write_local(
    out: &mut Vec<u8>,
    local: &LocalResponse,
    close: bool,
    head_only: bool,
    deco: &Decorations,
) -> usize {
    let reason = StatusCode::from_u16(local.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    status_line(out, local.status, reason);
    out.extend_from_slice(b"date: ");
    out.extend_from_slice(&crate::wire::http_date());
    out.extend_from_slice(b"\r\n");
    let mut head = Head(out);
    for (name, value) in &local.fields {
        head.field(
            name.as_bytes(),
            deco.value(local.status, name, value).as_bytes(),
        );
    }
    for (name, value) in &deco.fields {
        head.typed(name, value);
    }
    if let Some((name, value)) = deco.request_id_field() {
        head.field(name, value);
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    let body = deco.body(&local.body);
    content_length(out, body.len() as u64);
    out.extend_from_slice(b"\r\n");
    if head_only {
        return 0;
    }
    out.extend_from_slice(&body);
    body.len()
}

/// Writes the gateway's own answer (its head only, for a `HEAD` request), and ends the request.
pub(super) async fn respond<T: Transport>(
    conn: &mut Connection<T>,
    local: &LocalResponse,
    mut end: RequestEnd<'_>,
    close: bool,
    head: bool,
) {
    end.answered_here(local);
    let mut out = buffers::take_out();
    let body = write_local(&mut out, local, close, head, &end.record.decorations);
    let idle = conn.gateway.current().config.server.idle_timeout;
    let written = write_all(&mut conn.io, &out, &mut conn.client_deadline, idle).await;
    buffers::give_out(out);
    end.finish(body as u64, written.is_ok());
}

/// Answers a request the gateway does not forward, and says what becomes of the connection.
pub(super) async fn answer_here<T: Transport>(
    conn: &mut Connection<T>,
    local: &LocalResponse,
    end: RequestEnd<'_>,
    facts: Facts,
) -> Next {
    let close = facts.framing != Framing::Empty || !facts.keep_alive;
    respond(conn, local, end, close, facts.kind.head).await;
    match (facts.framing, close) {
        (Framing::Empty, false) => Next::KeepAlive,
        (Framing::Empty, true) => Next::Close,
        _ => Next::Linger,
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
        let n = write_local(&mut full, &local, true, false, &Decorations::default());
        assert_eq!(
            write_local(&mut head_only, &local, true, true, &Decorations::default()),
            0
        );
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
