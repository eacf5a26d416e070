//! HTTP/1.1 to upstreams: the request head written once the connection is in hand
//! ([`write_request`]: the request line, `Host`, the fields the pipeline decided, then what
//! belongs to HTTP/1.1 alone, `Connection: upgrade` and the body's framing), the exchange
//! ([`exchange`]: send the head and the body, read the response head) and the connection with
//! its reader ([`conn`]).

pub mod conn;
pub mod exchange;

pub use conn::{Conn, Stream};
pub use exchange::Upload;

use crate::pipeline::{FieldSink, UpstreamRequest};
use crate::wire::{self, Framing};

/// Writes fields as HTTP/1.1 `name: value` lines into a buffer (the upstream's request head
/// here, the client's response head in `http::h1`).
pub struct Head<'o>(pub &'o mut Vec<u8>);

impl FieldSink for Head<'_> {
    fn begin(&mut self, name: &[u8]) {
        self.0.extend_from_slice(name);
        self.0.extend_from_slice(b": ");
    }

    fn value(&mut self, part: &[u8]) {
        self.0.extend_from_slice(part);
    }

    fn end(&mut self) {
        self.0.extend_from_slice(b"\r\n");
    }
}

/// Appends the upstream's HTTP/1.1 request head for `req` to `out`.
pub fn write_request(req: &UpstreamRequest<'_, '_>, out: &mut Vec<u8>) {
    out.extend_from_slice(req.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.path.as_bytes());
    if let Some(q) = &req.query {
        out.push(b'?');
        out.extend_from_slice(q.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut head = Head(out);
    head.field(b"host", req.authority());
    let written = req.write_fields(&mut head);
    if let Some(upgrade) = &req.upgrade {
        head.field(b"connection", b"upgrade");
        head.field(b"upgrade", upgrade);
    }
    match req.framing {
        Framing::Length(n) => head.field(b"content-length", wire::decimal(n, &mut [0; 20])),
        Framing::Chunked | Framing::UntilClose => head.field(b"transfer-encoding", b"chunked"),
        Framing::Empty if written.says_empty => head.field(b"content-length", b"0"),
        Framing::Empty => {}
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{ClientInfo, HeaderPolicy};
    use crate::wire::Header;
    use std::borrow::Cow;

    fn written(
        method: &str,
        framing: Framing,
        upgrade: Option<&[u8]>,
        fields: &[Header],
    ) -> String {
        let config = crate::config::Config::from_toml(
            "[[route]]\npath=\"/\"\nupstream=\"http://127.0.0.1:1\"",
        )
        .unwrap();
        let policy = HeaderPolicy::new(&config.auth);
        let client = ClientInfo::new("10.1.2.3".parse().unwrap(), "http");
        let req = UpstreamRequest {
            method,
            path: "/p".into(),
            query: Some("q=1".into()),
            host: None,
            upstream_host: "10.0.0.1:8000",
            headers: fields,
            map: None,
            identity: None,
            assertion: None,
            upgrade: upgrade.map(Cow::Borrowed),
            framing,
            join_cookies: false,
            policy: &policy,
            client: &client,
            request_id: None,
            trace: None,
        };
        let mut out = Vec::new();
        write_request(&req, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_head_has_host_framing_and_upgrade_of_its_own() {
        let head = written("GET", Framing::Empty, None, &[]);
        assert!(head.starts_with("GET /p?q=1 HTTP/1.1\r\nhost: 10.0.0.1:8000\r\n"));
        assert!(head.ends_with("\r\n\r\n"));
        assert!(!head.contains("content-length") && !head.contains("transfer-encoding"));
        let post = written("POST", Framing::Empty, None, &[]);
        assert!(post.contains("\r\ncontent-length: 0\r\n"), "{post}");
        let sized = written("PUT", Framing::Length(42), None, &[]);
        assert!(sized.contains("\r\ncontent-length: 42\r\n"), "{sized}");
        let chunked = written("POST", Framing::Chunked, None, &[]);
        assert!(
            chunked.contains("\r\ntransfer-encoding: chunked\r\n"),
            "{chunked}"
        );
        let upgrade = written(
            "GET",
            Framing::Empty,
            Some(b"websocket"),
            &[
                Header {
                    name: "Connection",
                    value: b"keep-alive, Upgrade",
                },
                Header {
                    name: "Upgrade",
                    value: b"websocket",
                },
            ],
        );
        assert_eq!(upgrade.matches("onnection: ").count(), 1, "{upgrade}");
        assert!(upgrade.contains("\r\nconnection: upgrade\r\nupgrade: websocket\r\n"));
        assert!(!upgrade.contains("Upgrade: websocket"), "{upgrade}");
    }
}
