//! The upstream request as HTTP/1.1 bytes: the request line, `Host`, then the fields the
//! pipeline decided ([`UpstreamRequest::write_fields`]), in one buffer the exchange sends.

use crate::pipeline::{FieldSink, UpstreamRequest};

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
    if let Some(q) = req.query {
        out.push(b'?');
        out.extend_from_slice(q.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut head = Head(out);
    head.field(b"host", req.authority());
    req.write_fields(&mut head);
    out.extend_from_slice(b"\r\n");
}
