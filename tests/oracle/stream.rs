//! Test code: a whole connection's worth of bytes, read with the gateway's HTTP/1.1 syntax
//! (`jwtgate::wire`) but without I/O: requests as the HTTP/1 front-end reads them
//! ([`read_requests`]: empty lines before a head, `parse_head` with the connection's limits, the
//! body by its framing with `BodyDecoder`, and no further request after one that closes the
//! connection), and an upstream's answer as the upstream client reads it ([`read_response`]).
//! The fuzz targets and the property tests compare it with hyper, in memory; the corpus
//! (`tests/differential.rs`) goes through the gateway itself.

use jwtgate::wire::{
    header_slots, parse_head, parse_response, response_framing, skip_empty_lines, BodyDecoder,
    HeadError, HeadLimits, Header, Piece, Version, MAX_EMPTY_LINES, MAX_RESPONSE_FIELDS,
};

/// One request as read, everything owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The method.
    pub method: String,
    /// The request target.
    pub target: String,
    /// The version.
    pub version: Version,
    /// The header fields, names as sent.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The decoded body.
    pub body: Vec<u8>,
}

/// What reading the bytes gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// The requests read, in order.
    pub messages: Vec<Message>,
    /// How reading stopped.
    pub end: End,
}

/// How reading stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Every byte was used, and the last request left the connection open.
    Clean,
    /// The last request closes the connection (what follows it is never read).
    Closed,
    /// The bytes ended inside a request (a client that went away).
    Incomplete,
    /// The front-end refuses the next request: 400 or 431, and the connection closes.
    Refused(&'static str),
}

/// Reads every request in `input` (see the module docs).
pub fn read_requests(input: &[u8], limits: HeadLimits) -> Reading {
    let mut messages = Vec::new();
    let mut at = 0;
    let end = loop {
        let (skipped, lines) = skip_empty_lines(&input[at..]);
        if lines > MAX_EMPTY_LINES {
            break End::Refused("empty lines instead of a request");
        }
        at += skipped;
        if at == input.len() {
            break End::Clean;
        }
        let mut slots = header_slots();
        let head = match parse_head(&input[at..], &mut slots, limits) {
            Ok(Some(head)) => head,
            Ok(None) => break End::Incomplete,
            Err(HeadError::TooLarge) => break End::Refused("head too large"),
            Err(HeadError::Malformed(why)) => break End::Refused(why),
        };
        let mut message = Message {
            method: head.method.to_owned(),
            target: head.target.to_owned(),
            version: head.version,
            headers: owned(head.headers),
            body: Vec::new(),
        };
        let keep_alive = head.keep_alive;
        at += head.len;
        let mut body = BodyDecoder::new(head.framing);
        let complete = loop {
            match body.decode(&input[at..]) {
                Ok((used, Piece::Data(r))) => {
                    message.body.extend_from_slice(&input[at..][r]);
                    at += used;
                }
                Ok((used, Piece::End)) => {
                    at += used;
                    break Ok(true);
                }
                Ok((_, Piece::More)) => break Ok(false),
                Err(e) => break Err(e.0),
            }
        };
        match complete {
            Ok(true) => messages.push(message),
            Ok(false) => break End::Incomplete,
            Err(why) => break End::Refused(why),
        }
        if !keep_alive {
            break End::Closed;
        }
    };
    Reading { messages, end }
}

fn owned(headers: &[Header<'_>]) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|h| (h.name.to_owned(), h.value.to_vec()))
        .collect()
}

/// An upstream's response as read, everything owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status.
    pub status: u16,
    /// The version.
    pub version: Version,
    /// The header fields, names as sent.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The decoded body.
    pub body: Vec<u8>,
}

/// Reads the answer to one request (a `HEAD` request when `head_request`) from all the bytes an
/// upstream sent before closing, the way the upstream client reads it: interim responses
/// skipped, at most [`MAX_RESPONSE_FIELDS`] fields, the framing of [`response_framing`], the body
/// by [`BodyDecoder`] (a close-delimited one ends with the bytes). A `101` is refused: the
/// gateway relays one only as the answer to an upgrade it offered (`pipeline::upgrade`).
pub fn read_response(input: &[u8], head_request: bool) -> Result<Response, &'static str> {
    let mut at = 0;
    let mut slots = header_slots();
    loop {
        let head = parse_response(&input[at..], &mut slots[..MAX_RESPONSE_FIELDS])?
            .ok_or("response head cut short")?;
        if head.status < 200 && head.status != 101 {
            at += head.len;
            continue;
        }
        if head.status == 101 {
            return Err("101 to a request that offered no upgrade");
        }
        let framing = response_framing(&head, head_request)?;
        let mut response = Response {
            status: head.status,
            version: head.version,
            headers: owned(head.headers),
            body: Vec::new(),
        };
        at += head.len;
        let mut body = BodyDecoder::new(framing.framing);
        loop {
            match body.decode(&input[at..]).map_err(|e| e.0)? {
                (used, Piece::Data(r)) => {
                    response.body.extend_from_slice(&input[at..][r]);
                    at += used;
                }
                (_, Piece::End) => return Ok(response),
                (_, Piece::More) => {
                    body.eof().map_err(|_| "response body cut short")?;
                    return Ok(response);
                }
            }
        }
    }
}
