//! Protocol upgrades (RFC 9110 §7.8; WebSocket, RFC 6455 §4): which ones a route tunnels, and
//! whether the upstream's `101 Switching Protocols` is the answer to what was asked.
//!
//! * A request asks for an upgrade with `Connection: upgrade` and exactly one `Upgrade` field.
//!   The protocols it names that the route allows (`upgrades`, default `["websocket"]`) are
//!   offered to the upstream; the others are not. With none left the request is forwarded as a
//!   plain request, without `Upgrade` (a hop-by-hop field). `h2c` is never offered (h2c
//!   smuggling): a request naming it is forwarded plain. Neither is anything for a request with
//!   a body (the pipeline offers nothing then): a tunnel would open before the body was sent.
//! * A `101` opens a tunnel only when its `Upgrade` names one protocol that was offered and, for
//!   WebSocket, its `Sec-WebSocket-Accept` is the one the client's `Sec-WebSocket-Key` calls
//!   for. Any other `101` is a 502: a tunnel the gateway did not agree to would carry bytes it
//!   never checks.

use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha1::{Digest, Sha1};

use crate::wire::{self, Header};

/// RFC 6455 §1.3.
const WEBSOCKET_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// What was offered to the upstream, to check its `101` against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The protocol names offered, lower case, without versions.
    protocols: Vec<Box<str>>,
    /// The `Sec-WebSocket-Accept` a WebSocket `101` must carry (when the client sent one key).
    websocket_accept: Option<Box<str>>,
}

/// The upgrade `headers` ask for, among the protocols `allowed`: the `Upgrade` value to send
/// upstream and what it offers. `None`: no upgrade (or none the route tunnels).
pub fn negotiate<'a>(headers: &[Header<'a>], allowed: &[String]) -> Option<(Cow<'a, [u8]>, Offer)> {
    if allowed.is_empty() {
        return None;
    }
    let mut upgrades = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("upgrade"));
    let value = upgrades.next()?.value;
    if upgrades.next().is_some() {
        return None;
    }
    let asked = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .any(|h| wire::has_token(h.value, b"upgrade"));
    if !asked {
        return None;
    }
    let offered: Vec<&[u8]> = wire::tokens(value).collect();
    if offered
        .iter()
        .any(|p| protocol_name(p).eq_ignore_ascii_case(b"h2c"))
    {
        return None;
    }
    let kept: Vec<&[u8]> = offered
        .iter()
        .copied()
        .filter(|p| {
            allowed
                .iter()
                .any(|a| protocol_name(p).eq_ignore_ascii_case(a.as_bytes()))
        })
        .collect();
    if kept.is_empty() {
        return None;
    }
    let websocket = kept
        .iter()
        .any(|p| protocol_name(p).eq_ignore_ascii_case(b"websocket"));
    let offer = Offer {
        protocols: kept
            .iter()
            .map(|p| {
                String::from_utf8_lossy(protocol_name(p))
                    .to_ascii_lowercase()
                    .into()
            })
            .collect(),
        websocket_accept: websocket
            .then(|| websocket_key(headers))
            .flatten()
            .map(accept),
    };
    let send = if kept.len() == offered.len() {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(kept.join(&b", "[..]))
    };
    Some((send, offer))
}

impl Offer {
    /// Checks the upstream's `101` fields against the offer: `Ok` opens the tunnel.
    pub fn accepts(&self, response: &[Header<'_>]) -> Result<(), &'static str> {
        let mut upgrades = response
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("upgrade"));
        let (Some(chosen), None) = (upgrades.next(), upgrades.next()) else {
            return Err("101 without exactly one Upgrade field");
        };
        let mut protocols = wire::tokens(chosen.value);
        let (Some(chosen), None) = (protocols.next(), protocols.next()) else {
            return Err("101 must name exactly one protocol");
        };
        let name = protocol_name(chosen);
        if !self
            .protocols
            .iter()
            .any(|p| name.eq_ignore_ascii_case(p.as_bytes()))
        {
            return Err("101 to a protocol that was not offered");
        }
        if name.eq_ignore_ascii_case(b"websocket") {
            let mut accepts = response
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"));
            let (Some(got), None) = (accepts.next(), accepts.next()) else {
                return Err("WebSocket 101 without exactly one Sec-WebSocket-Accept");
            };
            match &self.websocket_accept {
                Some(want) if got.value.trim_ascii() == want.as_bytes() => {}
                _ => return Err("WebSocket 101 with the wrong Sec-WebSocket-Accept"),
            }
        }
        Ok(())
    }
}

/// `websocket/13` -> `websocket`.
fn protocol_name(token: &[u8]) -> &[u8] {
    match token.iter().position(|&b| b == b'/') {
        Some(i) => &token[..i],
        None => token,
    }
}

/// The client's one `Sec-WebSocket-Key`.
fn websocket_key<'a>(headers: &[Header<'a>]) -> Option<&'a [u8]> {
    let mut keys = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-key"));
    match (keys.next(), keys.next()) {
        (Some(k), None) => Some(k.value.trim_ascii()),
        _ => None,
    }
}

/// `Sec-WebSocket-Accept` for a key (RFC 6455 §4.2.2 step 5.4).
fn accept(key: &[u8]) -> Box<str> {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WEBSOCKET_GUID);
    STANDARD.encode(sha.finalize()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&'static str, &'static str)]) -> Vec<Header<'static>> {
        pairs
            .iter()
            .map(|(n, v)| Header {
                name: n,
                value: v.as_bytes(),
            })
            .collect()
    }

    fn ws() -> Vec<String> {
        vec!["websocket".into()]
    }

    #[test]
    fn the_rfc_6455_example_key() {
        assert_eq!(
            &*accept(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn offers_only_what_the_route_allows() {
        let h = fields(&[
            ("Connection", "keep-alive, Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ]);
        let (send, offer) = negotiate(&h, &ws()).unwrap();
        assert_eq!(&*send, b"websocket");
        assert!(
            negotiate(&h, &[]).is_none(),
            "upgrades = [] tunnels nothing"
        );
        assert!(negotiate(&h, &["foo".into()]).is_none());
        let two = fields(&[("connection", "upgrade"), ("upgrade", "foo/2, WebSocket")]);
        let (send, _) = negotiate(&two, &ws()).unwrap();
        assert_eq!(&*send, b"WebSocket", "foo is not offered");
        let h2c = fields(&[("connection", "upgrade"), ("upgrade", "h2c, websocket")]);
        assert!(negotiate(&h2c, &ws()).is_none());
        assert!(negotiate(&fields(&[("upgrade", "websocket")]), &ws()).is_none());
        let twice = fields(&[
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
            ("upgrade", "websocket"),
        ]);
        assert!(negotiate(&twice, &ws()).is_none());

        let ok = fields(&[
            ("Upgrade", "WebSocket"),
            ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        ]);
        assert_eq!(offer.accepts(&ok), Ok(()));
        for bad in [
            fields(&[("Upgrade", "websocket")]),
            fields(&[("Upgrade", "websocket"), ("Sec-WebSocket-Accept", "AAAA")]),
            fields(&[
                ("Upgrade", "h2c"),
                ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            ]),
            fields(&[("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")]),
            fields(&[
                ("Upgrade", "websocket, foo"),
                ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            ]),
        ] {
            assert!(offer.accepts(&bad).is_err(), "{bad:?}");
        }
        // A client without a key gets no WebSocket tunnel, whatever the upstream says.
        let keyless = fields(&[("connection", "upgrade"), ("upgrade", "websocket")]);
        let (_, offer) = negotiate(&keyless, &ws()).unwrap();
        assert!(offer.accepts(&ok).is_err());
    }
}
