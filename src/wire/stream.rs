//! A whole connection's worth of request bytes, read the way the HTTP/1 front-end reads them
//! (empty lines before a head, [`parse_head`] with the connection's limits, the body by its
//! framing with [`BodyDecoder`], and no further request after one that closes the connection),
//! but without I/O: what the differential tests against hyper, the fuzz targets and the
//! property tests compare.

use super::{
    header_slots, parse_head, skip_empty_lines, BodyDecoder, HeadError, HeadLimits, Piece, Version,
    MAX_EMPTY_LINES,
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
            headers: head
                .headers
                .iter()
                .map(|h| (h.name.to_owned(), h.value.to_vec()))
                .collect(),
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
