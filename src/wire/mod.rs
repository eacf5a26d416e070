//! HTTP/1.1 message syntax (RFC 9112) for both sides of the gateway: request heads from clients,
//! response heads from upstreams, body framing, and the chunked coding. Pure functions over
//! bytes, no I/O: the HTTP/1 server (`http1.rs`) and the upstream client (`proxy.rs`) share
//! them, and the property tests and fuzz targets drive them directly.
//!
//! `httparse` (hyper's own parser) tokenizes; this module adds the checks that decide where a
//! message ends, strictly, because a proxy that reads framing differently from the server
//! behind it can be made to smuggle requests (RFC 9112 §6.3, §11.2):
//!
//! * `Transfer-Encoding` must be exactly `chunked`, never on HTTP/1.0, never together with
//!   `Content-Length` (400, where RFC 9112 allows "TE wins"; nginx and HAProxy refuse too);
//! * `Content-Length` is one field of 1 to 19 digits (no sign, list or duplicate);
//! * chunk sizes are 1 to 16 hex digits, lines end in CRLF exactly, extensions and trailers are
//!   bounded and dropped.
//!
//! The gateway never forwards a client's framing bytes: it decodes the body and frames it anew
//! for the upstream, so whatever the client hides after a body is never seen as a request.

use std::mem::MaybeUninit;
use std::ops::Range;

pub use httparse::Header;

/// Most header fields a head may have (the ceiling of `server.max_headers`).
pub const MAX_HEADERS: usize = 1000;

/// Largest upstream response head the gateway reads (larger: 502).
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;

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
    /// The request target, as sent (visible ASCII only).
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

/// Slots for the header fields of one head (on the stack of the parsing function).
pub type HeaderSlots<'b> = [MaybeUninit<Header<'b>>; MAX_HEADERS];

/// Empty slots.
pub fn header_slots<'b>() -> HeaderSlots<'b> {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
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

/// Parses a request head at the start of `buf` with at most `slots.len()` fields. `Ok(None)`:
/// incomplete, read more.
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
    // httparse lets bytes >= 0x80 through; a request target is ASCII (RFC 9112 §3.2), and a
    // fragment is never sent.
    if !target
        .bytes()
        .all(|b| (0x21..0x7f).contains(&b) && b != b'#')
    {
        return Err(HeadError::Malformed("invalid character in request target"));
    }
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    let headers: &'h [Header<'b>] = req.headers;
    let facts = framing_facts(headers)?;
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

/// What the framing-related fields of a head say.
#[derive(Debug, Default)]
struct FramingFacts {
    /// `Content-Length`, when every field agrees.
    length: Option<u64>,
    /// How many `Content-Length` fields there were.
    lengths: usize,
    /// `Transfer-Encoding` present: `true` when it is exactly `chunked`.
    chunked: Option<bool>,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
}

fn framing_facts(headers: &[Header<'_>]) -> Result<FramingFacts, HeadError> {
    let mut f = FramingFacts::default();
    let mut codings = 0;
    for h in headers {
        let name = h.name.as_bytes();
        // By length first: most fields are none of these four.
        match name.len() {
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                let n =
                    parse_length(h.value).ok_or(HeadError::Malformed("invalid Content-Length"))?;
                if f.length.is_some_and(|m| m != n) {
                    return Err(HeadError::Malformed("conflicting Content-Length"));
                }
                f.length = Some(n);
                f.lengths += 1;
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                for t in tokens(h.value) {
                    codings += 1;
                    f.chunked = Some(codings == 1 && t.eq_ignore_ascii_case(b"chunked"));
                }
                if codings == 0 {
                    f.chunked = Some(false);
                }
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

/// A parsed upstream response head, borrowing the buffer it was read into.
#[derive(Debug)]
pub struct ResponseHead<'b, 'h> {
    /// The protocol version.
    pub version: Version,
    /// The status code.
    pub status: u16,
    /// The reason phrase, as sent (may be empty).
    pub reason: &'b str,
    /// The header fields, in order.
    pub headers: &'h [Header<'b>],
    /// Bytes of the head, final empty line included.
    pub len: usize,
}

/// Parses a response head at the start of `buf`. `Ok(None)`: incomplete.
pub fn parse_response<'b, 'h>(
    buf: &'b [u8],
    slots: &'h mut [MaybeUninit<Header<'b>>],
) -> Result<Option<ResponseHead<'b, 'h>>, &'static str> {
    let mut res = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut res, buf, slots)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_RESPONSE_HEAD => {
            return Err("response head too large")
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err("malformed response head"),
    };
    let (Some(minor), Some(status)) = (res.version, res.code) else {
        return Err("malformed response head");
    };
    if !(100..=599).contains(&status) {
        return Err("invalid response status");
    }
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    Ok(Some(ResponseHead {
        version,
        status,
        reason: res.reason.unwrap_or(""),
        headers: res.headers,
        len,
    }))
}

/// How a response body is delimited (RFC 9112 §6.3; a transfer coding other than `chunked` is
/// refused), whether the connection can carry another
/// request afterwards, and the `Content-Length` it declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseFraming {
    /// How the body is delimited.
    pub framing: Framing,
    /// The connection may be reused once the body is read.
    pub reusable: bool,
    /// `Content-Length`, as declared (also for `HEAD` and `304`, which have no body).
    pub declared: Option<u64>,
}

/// The framing of `head`, the response to a request with method `HEAD` when `head_request`.
pub fn response_framing(
    head: &ResponseHead<'_, '_>,
    head_request: bool,
) -> Result<ResponseFraming, &'static str> {
    let f = framing_facts(head.headers).map_err(|_| "invalid Content-Length in response")?;
    let mut reusable = head.version == Version::Http11 && !f.close;
    let bodiless = head_request || head.status < 200 || head.status == 204 || head.status == 304;
    let framing = if bodiless {
        Framing::Empty
    } else {
        match (f.chunked, f.length) {
            // RFC 9112 §6.3: chunked wins, and the connection is not reused.
            (Some(true), length) => {
                reusable &= length.is_none();
                Framing::Chunked
            }
            // A transfer coding other than chunked alone (gzip, ...) would reach the client
            // undecoded, under a framing the gateway rewrites: refuse it.
            (Some(false), _) => return Err("unsupported transfer coding in response"),
            (None, None) => {
                reusable = false;
                Framing::UntilClose
            }
            (None, Some(n)) => Framing::length(n),
        }
    };
    Ok(ResponseFraming {
        framing,
        reusable,
        declared: f.length,
    })
}

/// Most bytes of chunk extensions on one line, and of trailer fields in all.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

/// Why a chunked body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkError(pub &'static str);

/// What [`ChunkedDecoder::decode`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// Body bytes at this range of the input.
    Data(Range<usize>),
    /// The input is used up; more is needed.
    More,
    /// The body ended (last chunk and trailers read).
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    SizeStart,
    Size,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

/// An incremental decoder of the chunked coding (RFC 9112 §7.1).
#[derive(Debug, Default, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// Bytes of the current chunk still to come (in `Data`), or the size being read.
    size: u64,
    digits: u8,
    line: usize,
    trailers: usize,
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> ChunkedDecoder {
        ChunkedDecoder::default()
    }

    /// True once the last chunk and the trailers were read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from the start of `input`: returns how many bytes were used and what they held.
    /// Data is returned as soon as there is some, so a caller can pass it on before reading
    /// more.
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Chunk), ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::SizeStart | State::Size => match hex(b) {
                    Some(d) => {
                        self.digits += 1;
                        if self.digits > 16 {
                            return Err(ChunkError("chunk size too large"));
                        }
                        self.size = self.size << 4 | u64::from(d);
                        self.state = State::Size;
                    }
                    None if self.state == State::SizeStart => {
                        return Err(ChunkError("invalid chunk size"))
                    }
                    None => match b {
                        b'\r' => self.state = State::SizeLf,
                        b';' | b' ' | b'\t' => {
                            self.line = 0;
                            self.state = State::Extension;
                        }
                        _ => return Err(ChunkError("invalid chunk size")),
                    },
                },
                State::Extension => {
                    self.line += 1;
                    match b {
                        b'\r' => self.state = State::SizeLf,
                        _ if self.line > MAX_CHUNK_LINE => {
                            return Err(ChunkError("chunk extension too long"))
                        }
                        b'\t' | 0x20..=0x7e | 0x80..=0xff => {}
                        _ => return Err(ChunkError("invalid chunk extension")),
                    }
                }
                State::SizeLf => {
                    expect(b, b'\n', "chunk size line not ended by CRLF")?;
                    self.digits = 0;
                    self.state = if self.size == 0 {
                        State::TrailerStart
                    } else {
                        State::Data
                    };
                }
                State::Data => {
                    let n = (input.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                    self.size -= n as u64;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                    return Ok((i + n, Chunk::Data(i..i + n)));
                }
                State::DataCr => {
                    expect(b, b'\r', "chunk data not followed by CRLF")?;
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    expect(b, b'\n', "chunk data not followed by CRLF")?;
                    self.state = State::SizeStart;
                }
                State::TrailerStart => {
                    self.state = if b == b'\r' {
                        State::EndLf
                    } else {
                        self.trailer_byte(b)?;
                        State::Trailer
                    };
                }
                State::Trailer => {
                    if b == b'\r' {
                        self.state = State::TrailerLf;
                    } else {
                        self.trailer_byte(b)?;
                    }
                }
                State::TrailerLf => {
                    expect(b, b'\n', "trailer line not ended by CRLF")?;
                    self.state = State::TrailerStart;
                }
                State::EndLf => {
                    expect(b, b'\n', "chunked body not ended by CRLF")?;
                    self.state = State::Done;
                    return Ok((i + 1, Chunk::End));
                }
                State::Done => return Ok((i, Chunk::End)),
            }
            i += 1;
        }
        Ok((
            i,
            if self.state == State::Done {
                Chunk::End
            } else {
                Chunk::More
            },
        ))
    }

    fn trailer_byte(&mut self, b: u8) -> Result<(), ChunkError> {
        self.trailers += 1;
        if self.trailers > MAX_TRAILERS {
            return Err(ChunkError("trailers too large"));
        }
        match b {
            b'\t' | 0x20..=0x7e | 0x80..=0xff => Ok(()),
            _ => Err(ChunkError("invalid trailer field")),
        }
    }
}

/// `b` must be `want` (the CR or LF of a chunked body's line ends).
fn expect(b: u8, want: u8, why: &'static str) -> Result<(), ChunkError> {
    if b == want {
        Ok(())
    } else {
        Err(ChunkError(why))
    }
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

/// The line that starts a chunk of `len` bytes: `{len:x}\r\n`, written into `out`.
pub fn chunk_header(len: usize, out: &mut [u8; 18]) -> &[u8] {
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1) as usize;
    for (i, digit) in out[..digits].iter_mut().enumerate() {
        *digit = b"0123456789abcdef"[(len >> (4 * (digits - 1 - i))) & 0xf];
    }
    out[digits] = b'\r';
    out[digits + 1] = b'\n';
    &out[..digits + 2]
}

/// Appends `data` as one chunk to `out`.
pub fn push_chunk(out: &mut Vec<u8>, data: &[u8]) {
    let mut header = [0u8; 18];
    out.extend_from_slice(chunk_header(data.len(), &mut header));
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The end of a chunked body (last chunk, no trailers).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Appends a decimal number to `out`.
pub fn push_decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
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
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
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
        let bad = |raw: &str| matches!(req(raw), Err(HeadError::Malformed(_)));
        for raw in [
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
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
            "GET / HTTP/3.0\r\n\r\n",
            "GET /\r\n\r\n",
        ] {
            assert!(bad(raw), "{raw:?}: {:?}", req(raw));
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
    }

    fn response(raw: &str, head_request: bool) -> Result<ResponseFraming, &'static str> {
        let mut slots = header_slots();
        let head = parse_response(raw.as_bytes(), &mut slots[..100])?.unwrap();
        response_framing(&head, head_request)
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let f = |raw: &str| response(raw, false).unwrap();
        let r = f("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n");
        assert_eq!((r.framing, r.reusable), (Framing::Length(3), true));
        let r = f("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!((r.framing, r.reusable), (Framing::Chunked, true));
        let r = f("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n");
        assert_eq!((r.framing, r.reusable), (Framing::Chunked, false));
        let r = f("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!((r.framing, r.reusable), (Framing::UntilClose, false));
        assert!(response("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false).is_err());
        assert!(response(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            false
        )
        .is_err());
        let r = f("HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n");
        assert_eq!((r.framing, r.reusable), (Framing::Length(3), false));
        let r = f("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\n");
        assert!(!r.reusable);
        let r = f("HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!((r.framing, r.reusable), (Framing::Empty, true));
        let r = f("HTTP/1.1 304 Not Modified\r\nContent-Length: 30\r\n\r\n");
        assert_eq!((r.framing, r.declared), (Framing::Empty, Some(30)));
        let r = response("HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n", true).unwrap();
        assert_eq!((r.framing, r.declared), (Framing::Empty, Some(30)));
        assert!(response(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            false
        )
        .is_err());
        assert!(response("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false).is_err());
        assert!(response("HTTP/1.1 099 Odd\r\n\r\n", false).is_err());
        assert!(response("garbage\r\n\r\n", false).is_err());
    }

    /// Decodes `input` fed in pieces of `step` bytes; returns the body or the error.
    fn dechunk(input: &[u8], step: usize) -> Result<Vec<u8>, ChunkError> {
        let mut dec = ChunkedDecoder::new();
        let mut body = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        for piece in input.chunks(step) {
            pending.extend_from_slice(piece);
            let mut pos = 0;
            loop {
                let (n, chunk) = dec.decode(&pending[pos..])?;
                match chunk {
                    Chunk::Data(r) => body.extend_from_slice(&pending[pos..][r]),
                    Chunk::End => return Ok(body),
                    Chunk::More => {}
                }
                pos += n;
                if pos == pending.len() || n == 0 {
                    break;
                }
            }
            pending.drain(..pos);
        }
        Err(ChunkError("incomplete"))
    }

    #[test]
    fn chunked_decoding() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\nA \r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n";
        for step in [1, 2, 3, 7, body.len()] {
            assert_eq!(
                dechunk(body, step).unwrap(),
                b"hello world0123456789",
                "step {step}"
            );
        }
        assert_eq!(dechunk(b"0\r\n\r\n", 1).unwrap(), b"");
        for bad in [
            &b"zz\r\nabc\r\n0\r\n\r\n"[..],
            b"3x\r\nabc\r\n0\r\n\r\n",
            b"ffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
            b"3\nabc\r\n0\r\n\r\n",
            b"3\r\nabcd\r\n0\r\n\r\n",
            b"3\r\nabc\n0\r\n\r\n",
            b"\r\n",
            b"-1\r\n",
            b"0\r\n\r\r\n",
            b"3;\x00\r\nabc\r\n0\r\n\r\n",
        ] {
            assert!(
                dechunk(bad, 1).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut dec = ChunkedDecoder::new();
        // Bytes after the end are not consumed: they belong to the next message.
        assert_eq!(dec.decode(b"0\r\n\r\nGET"), Ok((5, Chunk::End)));
        assert!(dec.is_done());
    }

    #[test]
    fn chunk_headers_and_numbers() {
        let mut buf = [0u8; 18];
        assert_eq!(chunk_header(0, &mut buf), b"0\r\n");
        assert_eq!(chunk_header(10, &mut buf), b"a\r\n");
        assert_eq!(chunk_header(0x1234f, &mut buf), b"1234f\r\n");
        assert_eq!(chunk_header(usize::MAX, &mut buf), b"ffffffffffffffff\r\n");
        let mut out = Vec::new();
        push_decimal(&mut out, 0);
        out.push(b' ');
        push_decimal(&mut out, 18446744073709551615);
        assert_eq!(out, b"0 18446744073709551615");
    }
}
