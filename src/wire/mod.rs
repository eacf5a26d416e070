//! HTTP/1.1 message syntax (RFC 9112) for both sides of the gateway: request heads from clients
//! ([`request`]), response heads from upstreams ([`response`]), body framing ([`body`]) and the
//! chunked coding ([`chunked`]). Pure functions over bytes, no I/O: the HTTP/1 front-end
//! (`http::h1`) and the upstream client (`upstream`) share them, and the differential tests
//! against hyper, the property tests and the fuzz targets drive them directly.
//!
//! `httparse` (hyper's own parser) tokenizes; this module adds the checks that decide where a
//! message ends, strictly, because a proxy that reads framing differently from the server
//! behind it can be made to smuggle requests (RFC 9112 §6.3, §11.2). The rule everywhere: for
//! any bytes, jwtgate refuses, or reads the same messages as hyper does (`tests/differential.rs`
//! checks it on a corpus of several thousand inputs):
//!
//! * `Transfer-Encoding` is one field whose value is exactly `chunked`, never on HTTP/1.0, never
//!   together with `Content-Length` (400, where RFC 9112 allows "TE wins"; nginx and HAProxy
//!   refuse too);
//! * `Content-Length` is one field of 1 to 19 digits (no sign, list or duplicate);
//! * chunk sizes are 1 to 16 hex digits, lines end in CRLF exactly, extensions and trailers are
//!   bounded, trailers are well-formed fields, and both are dropped.
//!
//! The gateway never forwards a client's framing bytes: it decodes the body and frames it anew
//! for the upstream, so whatever the client hides after a body is never seen as a request.

pub mod body;
pub mod chunked;
pub mod request;
pub mod response;

pub mod uri;

use std::mem::MaybeUninit;

pub use body::{BodyDecoder, Piece};
pub use chunked::{chunk_header, push_chunk, Chunk, ChunkError, ChunkedDecoder, LAST_CHUNK};
pub use httparse::Header;
pub use request::{
    may_be_complete, parse_head, parse_request, skip_empty_lines, HeadError, HeadLimits,
    RequestHead, MAX_EMPTY_LINES,
};
pub use response::{
    parse_response, response_framing, ResponseFraming, ResponseHead, MAX_RESPONSE_FIELDS,
    MAX_RESPONSE_HEAD,
};

/// Most header fields a head may have (the ceiling of `server.max_headers`).
pub const MAX_HEADERS: usize = 1000;

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes (never 0: that is `Empty`).
    Length(u64),
    /// The chunked transfer coding.
    Chunked,
    /// Until the connection closes (responses only).
    UntilClose,
}

impl Framing {
    /// A body of `n` bytes.
    pub fn length(n: u64) -> Framing {
        if n == 0 {
            Framing::Empty
        } else {
            Framing::Length(n)
        }
    }
}

/// HTTP/1.0 or HTTP/1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0.
    Http10,
    /// HTTP/1.1.
    Http11,
}

/// Slots for the header fields of one head (on the stack of the parsing function).
pub type HeaderSlots<'b> = [MaybeUninit<Header<'b>>; MAX_HEADERS];

/// Empty slots.
pub fn header_slots<'b>() -> HeaderSlots<'b> {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

/// What the framing-related fields of a head say.
#[derive(Debug, Default)]
pub(crate) struct FramingFacts {
    /// `Content-Length`, when every field agrees.
    pub length: Option<u64>,
    /// How many `Content-Length` fields there were.
    pub lengths: usize,
    /// `Transfer-Encoding` present: `true` when it is one field whose value is exactly
    /// `chunked`.
    pub chunked: Option<bool>,
    pub close: bool,
    pub keep_alive: bool,
    pub expect_continue: bool,
}

pub(crate) fn framing_facts(headers: &[Header<'_>]) -> Result<FramingFacts, &'static str> {
    let mut f = FramingFacts::default();
    let mut codings = 0;
    for h in headers {
        let name = h.name.as_bytes();
        // By length first: most fields are none of these four.
        match name.len() {
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                let n = parse_length(h.value).ok_or("invalid Content-Length")?;
                if f.length.is_some_and(|m| m != n) {
                    return Err("conflicting Content-Length");
                }
                f.length = Some(n);
                f.lengths += 1;
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                // Each field on its own: `chunked` followed by an empty field, `chunked,` and
                // `, chunked` are all something else than exactly `chunked`.
                codings += 1;
                f.chunked =
                    Some(codings == 1 && h.value.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for t in tokens(h.value) {
                    f.close |= t.eq_ignore_ascii_case(b"close");
                    f.keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            6 if name.eq_ignore_ascii_case(b"expect") => {
                f.expect_continue = h.value.eq_ignore_ascii_case(b"100-continue");
            }
            _ => {}
        }
    }
    Ok(f)
}

/// The hop-by-hop fields (RFC 9110 §7.6.1, and the old ones proxies still see): they describe
/// one connection, so the gateway never passes them on, in either direction, whatever the
/// protocol on either side. The crate's one list; [`is_hop_by_hop`] is its fast form.
pub const HOP_BY_HOP: &[&str] = &[
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

/// True for a name in [`HOP_BY_HOP`] (any letter case), by length first.
pub fn is_hop_by_hop(name: &str) -> bool {
    let is = |n: &str| name.eq_ignore_ascii_case(n);
    match name.len() {
        2 => is("te"),
        7 => is("trailer") || is("upgrade"),
        10 => is("connection") || is("keep-alive"),
        16 => is("proxy-connection"),
        17 => is("transfer-encoding"),
        18 => is("proxy-authenticate"),
        19 => is("proxy-authorization"),
        _ => false,
    }
}

/// The current time as an HTTP date (RFC 9110 §5.6.7, `Sun, 06 Nov 1994 08:49:37 GMT`),
/// formatted once a second per thread.
pub fn http_date() -> [u8; 29] {
    thread_local! {
        static DATE: std::cell::Cell<(u64, [u8; 29])> = const { std::cell::Cell::new((u64::MAX, [0; 29])) };
    }
    let now = std::time::SystemTime::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|cell| {
        let (cached, text) = cell.get();
        if cached == secs {
            return text;
        }
        let mut text = [0u8; 29];
        let formatted = httpdate::fmt_http_date(now);
        text.copy_from_slice(&formatted.as_bytes()[..29]);
        cell.set((secs, text));
        text
    })
}

/// `map`'s fields as [`Header`]s, in the map's order (what the pipeline and the response plan
/// read, whatever protocol the head came in).
pub fn fields_of(map: &http::HeaderMap) -> Vec<Header<'_>> {
    map.iter()
        .map(|(name, value)| Header {
            name: name.as_str(),
            value: value.as_bytes(),
        })
        .collect()
}

/// `1*DIGIT`, at most 19 digits (fits a u64): no sign, no spaces, no list.
pub fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// The comma-separated elements of a list-valued field, trimmed, empty ones skipped.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

/// True when a list-valued field contains `token` (case-insensitive).
pub fn has_token(value: &[u8], token: &[u8]) -> bool {
    tokens(value).any(|t| t.eq_ignore_ascii_case(token))
}

/// The value of a hex digit.
pub fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Appends a decimal number to `out`.
pub fn push_decimal(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(decimal(n, &mut [0; 20]));
}

/// A decimal number, written into `digits`.
pub fn decimal(n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &digits[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hop_by_hop_list_and_its_fast_form_agree() {
        for name in HOP_BY_HOP {
            assert!(is_hop_by_hop(name), "{name}");
            assert!(is_hop_by_hop(&name.to_ascii_uppercase()), "{name}");
        }
        for name in [
            "host",
            "content-length",
            "tee",
            "upgrades",
            "x-connection",
            "",
        ] {
            assert!(!is_hop_by_hop(name), "{name}");
        }
    }

    #[test]
    fn numbers() {
        let mut out = Vec::new();
        push_decimal(&mut out, 0);
        out.push(b' ');
        push_decimal(&mut out, 18446744073709551615);
        assert_eq!(out, b"0 18446744073709551615");
        assert_eq!(parse_length(b"0042"), Some(42));
        for bad in [
            &b""[..],
            b"+1",
            b"-1",
            b"1 ",
            b"1,1",
            b"99999999999999999999",
        ] {
            assert_eq!(parse_length(bad), None, "{bad:?}");
        }
    }
}
