//! Request heads: where a head ends ([`may_be_complete`]), what it says ([`parse_request`]) and
//! the limits a connection applies to it ([`parse_head`]).

use std::mem::MaybeUninit;

use super::{framing_facts, Framing, Header, Version};

/// Why a request head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Larger than `server.max_header_bytes` or more fields than `server.max_headers`: 431.
    TooLarge,
    /// Malformed or ambiguous: 400, with a description for the client.
    Malformed(&'static str),
}

/// A parsed request head, borrowing the buffer it was read into.
#[derive(Debug)]
pub struct RequestHead<'b, 'h> {
    /// The method, as sent (case matters).
    pub method: &'b str,
    /// The request target, as sent (checked: see [`parse_request`]).
    pub target: &'b str,
    /// The protocol version.
    pub version: Version,
    /// The header fields, in order, as sent.
    pub headers: &'h [Header<'b>],
    /// Bytes of the head, final empty line included.
    pub len: usize,
    /// How the body is delimited.
    pub framing: Framing,
    /// The client wants the connection kept open after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
}

/// Empty lines tolerated before a request line (RFC 9112 §2.2: at least one; old clients sent an
/// extra CRLF after a POST body). More is not a client, and is refused.
pub const MAX_EMPTY_LINES: usize = 8;

/// The empty lines (CRLF or LF) at the start of `buf`: (bytes, lines).
pub fn skip_empty_lines(buf: &[u8]) -> (usize, usize) {
    let (mut at, mut lines) = (0, 0);
    loop {
        match &buf[at..] {
            [b'\r', b'\n', ..] => at += 2,
            [b'\n', ..] => at += 1,
            _ => return (at, lines),
        }
        lines += 1;
    }
}

/// True when `buf` may hold a complete head: an empty line ends a line, and some of it is new
/// since `from` (the bytes already found incomplete). Cheap; lets a reader skip re-parsing a
/// head that trickles in a few bytes at a time, and never re-parse without new bytes.
pub fn may_be_complete(buf: &[u8], from: usize) -> bool {
    if buf.len() <= from {
        return false;
    }
    let empty_line_at =
        |i: usize| matches!(&buf[i..], [b'\n', b'\n', ..] | [b'\n', b'\r', b'\n', ..]);
    // Most heads arrive whole and alone: their end is the buffer's end.
    if buf.ends_with(b"\n\r\n") || buf.ends_with(b"\n\n") {
        return true;
    }
    // Otherwise look at each new line end (pipelined requests, a body after the head).
    let start = from.saturating_sub(2);
    let mut at = start;
    while let Some(i) = buf[at..].iter().position(|&b| b == b'\n') {
        if empty_line_at(at + i) {
            return true;
        }
        at += i + 1;
    }
    false
}

/// The limits a connection reads request heads with (`server.max_header_bytes`,
/// `server.max_headers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Most bytes of a head, request line to final empty line.
    pub max_bytes: usize,
    /// Most header fields.
    pub max_fields: usize,
}

/// Parses a request head at the start of `buf` within `limits`, as the HTTP/1 front-end does:
/// `Ok(None)` while incomplete and within the byte limit. (Empty lines before it are the
/// caller's, see [`skip_empty_lines`].)
pub fn parse_head<'b, 'h>(
    buf: &'b [u8],
    slots: &'h mut [MaybeUninit<Header<'b>>],
    limits: HeadLimits,
) -> Result<Option<RequestHead<'b, 'h>>, HeadError> {
    let fields = limits.max_fields.min(slots.len());
    match parse_request(buf, &mut slots[..fields])? {
        Some(head) if head.len > limits.max_bytes => Err(HeadError::TooLarge),
        None if buf.len() >= limits.max_bytes => Err(HeadError::TooLarge),
        parsed => Ok(parsed),
    }
}

/// Parses a request head at the start of `buf` with at most `slots.len()` fields. `Ok(None)`:
/// incomplete, read more.
///
/// The request target must be one that hyper's server (the `http` crate's URI parser) accepts
/// too, in ASCII: an origin-form path and query without the characters it refuses, `*`, or an
/// absolute or authority form that parses as a URI. Never a fragment.
pub fn parse_request<'b, 'h>(
    buf: &'b [u8],
    slots: &'h mut [MaybeUninit<Header<'b>>],
) -> Result<Option<RequestHead<'b, 'h>>, HeadError> {
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(httparse::Error::HeaderName) => {
            return Err(HeadError::Malformed("invalid header name"))
        }
        Err(httparse::Error::HeaderValue) => {
            return Err(HeadError::Malformed("invalid header value"))
        }
        Err(httparse::Error::Version) => {
            return Err(HeadError::Malformed("unsupported HTTP version"))
        }
        Err(_) => return Err(HeadError::Malformed("malformed request line")),
    };
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Malformed("malformed request line"));
    };
    if !valid_target(target) {
        return Err(HeadError::Malformed(INVALID_TARGET));
    }
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    let headers: &'h [Header<'b>] = req.headers;
    let facts = framing_facts(headers).map_err(HeadError::Malformed)?;
    let framing = match (facts.chunked, facts.length) {
        (Some(_), Some(_)) => {
            return Err(HeadError::Malformed(
                "both Content-Length and Transfer-Encoding",
            ))
        }
        (Some(_), None) if version == Version::Http10 => {
            return Err(HeadError::Malformed("Transfer-Encoding on HTTP/1.0"))
        }
        (Some(false), None) => {
            return Err(HeadError::Malformed("Transfer-Encoding other than chunked"))
        }
        (Some(true), None) => Framing::Chunked,
        (None, Some(n)) => Framing::length(n),
        (None, None) => Framing::Empty,
    };
    if facts.lengths > 1 {
        return Err(HeadError::Malformed("more than one Content-Length"));
    }
    let keep_alive = match version {
        Version::Http11 => !facts.close,
        Version::Http10 => facts.keep_alive && !facts.close,
    };
    Ok(Some(RequestHead {
        method,
        target,
        version,
        headers,
        len,
        framing,
        keep_alive,
        expect_continue: facts.expect_continue,
    }))
}

/// Why a request target is refused (see [`valid_target`]).
pub const INVALID_TARGET: &str = "invalid character in request target";

/// A method as the request line may carry it: a token (RFC 9110 §9.1).
pub fn valid_method(method: &str) -> bool {
    !method.is_empty()
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A request target the gateway reads (see [`parse_request`]).
pub fn valid_target(target: &str) -> bool {
    let bytes = target.as_bytes();
    match bytes.first() {
        Some(b'/') => {
            let (path, query) = match bytes.iter().position(|&b| b == b'?') {
                Some(q) => (&bytes[..q], &bytes[q + 1..]),
                None => (bytes, &[][..]),
            };
            path.iter().all(|&b| PATH[usize::from(b)])
                && query.iter().all(|&b| QUERY[usize::from(b)])
        }
        Some(b'*') => bytes.len() == 1,
        // Absolute and authority forms are rare: the URI parser hyper uses decides, on top of
        // the visible-ASCII rule.
        Some(_) => {
            bytes
                .iter()
                .all(|&b| (0x21..0x7f).contains(&b) && b != b'#')
                && http::Uri::try_from(target).is_ok()
        }
        None => false,
    }
}

/// Bytes a path may hold: the `http` crate's path set (WHATWG's), in ASCII, without `?` and
/// `#`.
const PATH: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = matches!(i as u8, 0x21 | 0x24..=0x3B | 0x3D | 0x40..=0x5F | 0x61..=0x7A | 0x7C | 0x7E | b'"' | b'{' | b'}');
        i += 1;
    }
    t
};

/// Bytes a query may hold: the `http` crate's query set, in ASCII, without `#`.
const QUERY: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = matches!(i as u8, 0x21 | 0x24..=0x3B | 0x3D | 0x3F..=0x7E);
        i += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::super::header_slots;
    use super::*;

    fn req(raw: &str) -> Result<Option<(Framing, bool, bool, usize)>, HeadError> {
        let mut slots = header_slots();
        parse_request(raw.as_bytes(), &mut slots[..100])
            .map(|h| h.map(|h| (h.framing, h.keep_alive, h.expect_continue, h.len)))
    }

    #[test]
    fn request_framing() {
        let ok = |raw: &str| req(raw).unwrap().unwrap();
        assert_eq!(ok("GET / HTTP/1.1\r\nHost: a\r\n\r\n").0, Framing::Empty);
        assert_eq!(
            ok("POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n").0,
            Framing::Length(12)
        );
        assert_eq!(
            ok("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").0,
            Framing::Empty
        );
        assert_eq!(
            ok("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n").0,
            Framing::Chunked
        );
        assert_eq!(
            ok("POST / HTTP/1.1\r\nTransfer-Encoding:  chunked \r\n\r\n").0,
            Framing::Chunked
        );
        let bad = |raw: &str| matches!(req(raw), Err(HeadError::Malformed(_)));
        for raw in [
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding:\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: \r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked,\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: , chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\x0b\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3x\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
            "GET / HTTP/1.1\r\nX-A: b\r\n c\r\n\r\n",
            "GET / HTTP/1.1\r\n: x\r\n\r\n",
            "GET / HTTP/1.1\r\nX-A: b\0c\r\n\r\n",
            "GET / HTTP/1.1\r\nX-A: b\rX-B: c\r\n\r\n",
            "GET / HTTP/1.1\r\nX-A : b\r\n\r\n",
            "GET /a b HTTP/1.1\r\n\r\n",
            "GET /\u{e9} HTTP/1.1\r\n\r\n",
            "GET /a#b HTTP/1.1\r\n\r\n",
            "GET /a<b HTTP/1.1\r\n\r\n",
            "GET /a`b HTTP/1.1\r\n\r\n",
            "GET /?a\"b HTTP/1.1\r\n\r\n",
            "GET ?a HTTP/1.1\r\n\r\n",
            "GET ** HTTP/1.1\r\n\r\n",
            "GET http://a b/ HTTP/1.1\r\n\r\n",
            "GET / HTTP/3.0\r\n\r\n",
            "GET /\r\n\r\n",
        ] {
            assert!(bad(raw), "{raw:?}: {:?}", req(raw));
        }
        for target in [
            "/a{b}|c",
            "/?q=`{|}",
            "*",
            "http://a:80/x?y",
            "a.example:443",
        ] {
            let raw = format!("GET {target} HTTP/1.1\r\n\r\n");
            assert!(req(&raw).unwrap().is_some(), "{target}");
        }
    }

    #[test]
    fn keep_alive_and_expect() {
        let ok = |raw: &str| req(raw).unwrap().unwrap();
        assert!(ok("GET / HTTP/1.1\r\n\r\n").1);
        assert!(!ok("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n").1);
        assert!(!ok("GET / HTTP/1.0\r\n\r\n").1);
        assert!(ok("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").1);
        assert!(ok("POST / HTTP/1.1\r\nExpect: 100-Continue\r\n\r\n").2);
    }

    #[test]
    fn partial_heads_and_limits() {
        assert_eq!(req("GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None));
        let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(
            req(&format!("GET / HTTP/1.1\r\n{many}\r\n")),
            Err(HeadError::TooLarge)
        );
        let raw = "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next";
        assert_eq!(req(raw).unwrap().unwrap().3, raw.find("GET /next").unwrap());
        let limits = HeadLimits {
            max_bytes: 32,
            max_fields: 100,
        };
        let mut slots = header_slots();
        let long = b"GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n\r\n";
        assert_eq!(
            parse_head(long, &mut slots, limits).map(|h| h.is_some()),
            Err(HeadError::TooLarge)
        );
        assert_eq!(
            parse_head(&long[..20], &mut slots, limits).map(|h| h.is_some()),
            Ok(false)
        );
        assert!(may_be_complete(b"GET / HTTP/1.1\r\n\r\n", 17));
        assert!(may_be_complete(b"GET / HTTP/1.1\r\n\r\n", 0));
        assert!(may_be_complete(b"GET / HTTP/1.1\n\n", 15));
        assert!(may_be_complete(b"GET / HTTP/1.1\n\r\n", 14));
        assert!(!may_be_complete(b"GET / HTTP/1.1\r\nHost: a\r\n", 10));
        // A head cut between its last CR and LF is not complete...
        assert!(!may_be_complete(b"GET / HTTP/1.1\r\nHost: a\r\n\r", 0));
        // ...and without new bytes nothing is worth parsing again.
        let blank = b"\r\n\r\n";
        assert!(may_be_complete(blank, 0) && !may_be_complete(blank, blank.len()));
        assert_eq!(skip_empty_lines(b"\r\n\n\r\nGET"), (5, 3));
        assert_eq!(skip_empty_lines(b"\rGET"), (0, 0));
    }
}
