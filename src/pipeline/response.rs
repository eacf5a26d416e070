//! After the upstream answers: one path for every front-end. [`plan`] decides what the client
//! gets from the upstream's response head (whether a `101` opens a tunnel, which length to
//! announce, whether a body follows), and [`write_fields`] gives the fields that pass the
//! hygiene rules; each front-end only writes them in its syntax.

use super::headers::{response_fields, FieldSink};
use super::upgrade::Offer;
use crate::ops::access::Decorations;
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
/// `Connection`). A response without `Date` gets one (RFC 9110 §6.6.1: a recipient with a
/// clock that forwards a response without it must add it).
pub fn write_fields(
    headers: &[Header<'_>],
    plan: &Plan,
    deco: &Decorations,
    sink: &mut impl FieldSink,
) {
    let mut dated = false;
    for (i, f) in response_fields(headers, plan.body == Body::Tunnel) {
        dated |= f.name.len() == 4 && f.name.eq_ignore_ascii_case("date");
        // The route's CORS is the gateway's: the upstream's own fields would contradict it.
        if deco.hides(f.name) {
            continue;
        }
        sink.pass(i, f.name.as_bytes(), f.value);
    }
    if !dated {
        sink.field(b"date", &crate::wire::http_date());
    }
    for (name, value) in &deco.fields {
        sink.typed(name, value);
    }
    if let Some((name, value)) = deco.request_id_field() {
        sink.field(name, value);
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

    /// The fields `write_fields` gives, as (name, value) pairs.
    fn written(raw: &str) -> Vec<(String, String)> {
        struct Pairs(Vec<(String, String)>);
        impl FieldSink for Pairs {
            fn begin(&mut self, name: &[u8]) {
                self.0
                    .push((String::from_utf8_lossy(name).into_owned(), String::new()));
            }
            fn value(&mut self, part: &[u8]) {
                self.0.last_mut().unwrap().1 += &String::from_utf8_lossy(part);
            }
            fn end(&mut self) {}
        }
        let mut slots = header_slots();
        let head = parse_response(raw.as_bytes(), &mut slots[..64])
            .unwrap()
            .unwrap();
        let framing = response_framing(&head, false).unwrap();
        let plan = plan(&head, &framing, GET).unwrap();
        let mut pairs = Pairs(Vec::new());
        write_fields(head.headers, &plan, &Decorations::default(), &mut pairs);
        pairs.0
    }

    #[test]
    fn a_response_without_a_date_gets_one_and_one_with_keeps_it() {
        let kept = written(
            "HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 0\r\n\r\n",
        );
        let dates: Vec<_> = kept
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("date"))
            .collect();
        assert_eq!(dates.len(), 1, "{kept:?}");
        assert_eq!(dates[0].1, "Sun, 06 Nov 1994 08:49:37 GMT");
        let added = written("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        let dates: Vec<_> = added.iter().filter(|(n, _)| n == "date").collect();
        assert_eq!(dates.len(), 1, "{added:?}");
        let when = httpdate::parse_http_date(&dates[0].1).expect("an HTTP date");
        let skew = std::time::SystemTime::now()
            .duration_since(when)
            .unwrap_or_default();
        assert!(skew.as_secs() < 60, "{skew:?}");
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
