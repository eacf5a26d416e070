//! After the upstream answers: one path for every front-end. [`plan`] decides what the client
//! gets from the upstream's response head (whether a `101` opens a tunnel, which length to
//! announce, whether a body follows), and [`write_fields`] gives the fields that pass the
//! hygiene rules; each front-end only writes them in its syntax.

use super::headers::{response_fields, FieldSink};
use super::upgrade::Offer;
use crate::wire::{Framing, Header, ResponseFraming, ResponseHead};

/// What the request was, for reading its answer.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'o> {
    /// A `HEAD` request: its response has no body, whatever it declares.
    pub head: bool,
    /// The upgrade offered to the upstream, if any.
    pub upgrade: Option<&'o Offer>,
}

/// How the response body reaches the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// A body of unknown length (chunked or close-delimited upstream).
    Stream,
    /// `101`: the connection becomes a tunnel.
    Tunnel,
}

/// What the client gets for the upstream's response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The status.
    pub status: u16,
    /// The `Content-Length` to announce, if any (the body's length, or what a `HEAD` or `304`
    /// response declared).
    pub length: Option<u64>,
    /// The body.
    pub body: Body,
}

/// Decides what the client gets for `head` (framed as `framing`), the answer to `asked`. An
/// error is a 502: the upstream switched protocols the gateway did not offer, or with the
/// wrong handshake (see [`super::upgrade`]).
pub fn plan(
    head: &ResponseHead<'_, '_>,
    framing: &ResponseFraming,
    asked: Asked<'_>,
) -> Result<Plan, &'static str> {
    let status = head.status;
    if status == 101 {
        let offer = asked
            .upgrade
            .ok_or("101 to a request that asked for no upgrade the route tunnels")?;
        offer.accepts(head.headers)?;
        return Ok(Plan {
            status,
            length: None,
            body: Body::Tunnel,
        });
    }
    let (length, body) = match framing.framing {
        // HEAD and 304 say how long the body would be, when the upstream did.
        Framing::Empty if asked.head || status == 304 => (framing.declared, Body::None),
        Framing::Empty if status == 204 => (None, Body::None),
        Framing::Empty => (Some(0), Body::None),
        Framing::Length(n) => (Some(n), Body::Length(n)),
        Framing::Chunked | Framing::UntilClose => (None, Body::Stream),
    };
    Ok(Plan {
        status,
        length,
        body,
    })
}

/// Gives `sink` the upstream response's fields that reach the client: without hop-by-hop fields
/// and framing; a tunnel's `101` keeps its `Upgrade` (the front-end writes its own
/// `Connection`).
pub fn write_fields(headers: &[Header<'_>], plan: &Plan, sink: &mut impl FieldSink) {
    for f in response_fields(headers, plan.body == Body::Tunnel) {
        sink.field(f.name.as_bytes(), f.value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{header_slots, parse_response, response_framing};

    fn planned(raw: &str, asked: Asked<'_>) -> Result<Plan, &'static str> {
        let mut slots = header_slots();
        let head = parse_response(raw.as_bytes(), &mut slots[..64])
            .unwrap()
            .unwrap();
        let framing = response_framing(&head, asked.head).unwrap();
        plan(&head, &framing, asked)
    }

    const GET: Asked<'static> = Asked {
        head: false,
        upgrade: None,
    };

    #[test]
    fn lengths_and_bodies() {
        let p = planned("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", GET).unwrap();
        assert_eq!((p.length, p.body), (Some(5), Body::Length(5)));
        let p = planned("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", GET).unwrap();
        assert_eq!((p.length, p.body), (Some(0), Body::None));
        let p = planned("HTTP/1.1 204 No Content\r\n\r\n", GET).unwrap();
        assert_eq!((p.length, p.body), (None, Body::None));
        let p = planned(
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n",
            GET,
        )
        .unwrap();
        assert_eq!((p.length, p.body), (Some(7), Body::None));
        let head = Asked {
            head: true,
            upgrade: None,
        };
        let p = planned("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", head).unwrap();
        assert_eq!((p.length, p.body), (Some(9), Body::None));
        let p = planned("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", GET).unwrap();
        assert_eq!((p.length, p.body), (None, Body::Stream));
        let p = planned("HTTP/1.0 200 OK\r\n\r\n", GET).unwrap();
        assert_eq!((p.length, p.body), (None, Body::Stream));
    }

    #[test]
    fn a_101_nobody_offered_is_refused() {
        assert!(planned(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            GET
        )
        .is_err());
    }
}
