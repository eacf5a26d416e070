//! The request head for an HTTP/2 upstream ([`H2Head::of`]), written once the connection is in
//! hand: `:method`, `:scheme`, `:authority` and `:path`, the fields the pipeline decided, then
//! what belongs to HTTP/2: `te: trailers` (gRPC servers require it) and the body's length when
//! it is known. Nothing connection-specific (RFC 9113 §8.2.2): the pipeline's fields never
//! carry any.

use http::header::HeaderValue;
use http::{HeaderMap, Method, Request, Uri};

use crate::pipeline::{MapSink, UpstreamRequest};
use crate::wire::{self, Framing};

/// The request head for an HTTP/2 upstream, kept to send again on another connection.
#[derive(Debug)]
pub struct H2Head {
    /// The method.
    pub method: Method,
    /// `scheme://authority/path?query` (`:scheme`, `:authority`, `:path`).
    pub uri: Uri,
    /// The fields.
    pub headers: HeaderMap,
}

impl H2Head {
    /// The head of `req` for an HTTP/2 upstream reached with `scheme` (`http` or `https`); an
    /// error names what HTTP/2 cannot carry.
    pub fn of(req: &UpstreamRequest<'_, '_>, scheme: &str) -> Result<H2Head, &'static str> {
        // The client's fields, the gateway's (forwarding, identity) and the two below.
        let mut sink = MapSink::new(req.headers.len() + 8, req.map);
        req.write_fields(&mut sink);
        // Credentials come marked never to enter the connection's HPACK table (see MapSink).
        let mut headers = sink.map;
        // Appended: the pipeline never passes `TE` (hop-by-hop) nor `Content-Length` (framing).
        headers.append(http::header::TE, HeaderValue::from_static("trailers"));
        if let Framing::Length(n) = req.framing {
            headers.append(
                http::header::CONTENT_LENGTH,
                HeaderValue::from_bytes(wire::decimal(n, &mut [0; 20]))
                    .map_err(|_| "bad length")?,
            );
        }
        let authority = std::str::from_utf8(req.authority()).map_err(|_| "bad authority")?;
        let path = match &req.query {
            Some(q) => format!("{}?{q}", req.path),
            None => req.path.to_string(),
        };
        let uri = Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query(path)
            .build()
            .map_err(|_| "request target not valid for HTTP/2")?;
        let method = Method::from_bytes(req.method.as_bytes()).map_err(|_| "bad method")?;
        Ok(H2Head {
            method,
            uri,
            headers,
        })
    }

    /// The head as a request for `h2` (a copy: it may be sent again).
    pub fn request(&self) -> Request<()> {
        let mut req = Request::new(());
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}
