//! Request IDs (`X-Request-Id`): a trusted peer's value is kept, any other request gets a new
//! one (a random UUID, version 4). The ID goes to the upstream, back to the client on every
//! answer (the upstream's and the gateway's own), into the access line and into JSON error
//! bodies, so that one string finds a request in every log it touched.

use http::header::{HeaderName, HeaderValue};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};

/// The field.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request ID kept from a trusted peer.
pub const MAX_LEN: usize = 128;

/// True for a request ID worth keeping: 1 to [`MAX_LEN`] visible ASCII characters (no space,
/// no control character, nothing a log line or a JSON body would need to escape but `"` and
/// `\`, which are escaped where they are written).
pub fn acceptable(value: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&value.len()) && value.iter().all(|b| (0x21..0x7f).contains(b))
}

/// A request's ID: one made up here (held inline: no allocation per request), or a trusted
/// peer's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestId {
    /// A random (version 4) UUID, as text.
    Generated([u8; 36]),
    /// A trusted peer's `X-Request-Id` (see [`acceptable`]).
    Kept(HeaderValue),
}

impl RequestId {
    /// A new random ID.
    pub fn generate() -> RequestId {
        RequestId::Generated(uuid())
    }

    /// The ID as bytes (visible ASCII).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            RequestId::Generated(text) => text,
            RequestId::Kept(value) => value.as_bytes(),
        }
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        // Both kinds are visible ASCII (hex and dashes, or checked by `acceptable`).
        std::str::from_utf8(self.as_bytes()).unwrap_or("-")
    }
}

/// A new request ID: a random (version 4) UUID in its 36-character text form.
pub fn generate() -> HeaderValue {
    // Hex digits and dashes: always a valid field value.
    HeaderValue::from_bytes(&uuid()).unwrap_or(HeaderValue::from_static("-"))
}

/// A random (version 4) UUID as text.
fn uuid() -> [u8; 36] {
    // 128 random bits from the tracing SDK's per-thread generator (a small, fast PRNG seeded
    // from the OS): an ID must be unique, not secret.
    let mut bytes = RandomIdGenerator::default().new_trace_id().to_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Where each byte's two digits go, around the dashes of 8-4-4-4-12.
    const AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    let mut text = *b"00000000-0000-4000-8000-000000000000";
    for (b, at) in bytes.iter().zip(AT) {
        text[at] = HEX[usize::from(b >> 4)];
        text[at + 1] = HEX[usize::from(b & 0xf)];
    }
    text
}

/// The request ID of a request with `value` (its one `X-Request-Id`, if it sent exactly one)
/// from a peer that is (`trusted`) or is not in `server.trusted_proxies`.
pub fn choose(value: Option<&[u8]>, trusted: bool) -> Option<RequestId> {
    match value {
        Some(v) if trusted && acceptable(v) => HeaderValue::from_bytes(v).ok().map(RequestId::Kept),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_version_4_uuids() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        let text = a.to_str().unwrap();
        assert_eq!(text.len(), 36);
        let parts: Vec<&str> = text.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'), "{text}");
        assert!("89ab".contains(&parts[3][..1]), "{text}");
        assert!(text.bytes().all(|c| c == b'-' || c.is_ascii_hexdigit()));
    }

    #[test]
    fn a_peers_id_is_kept_only_when_trusted_and_sane() {
        assert_eq!(
            choose(Some(b"abc-123"), true),
            Some(RequestId::Kept(HeaderValue::from_static("abc-123")))
        );
        assert_eq!(RequestId::generate().as_bytes().len(), 36);
        assert_eq!(choose(Some(b"abc-123"), false), None);
        assert_eq!(choose(Some(b""), true), None);
        assert_eq!(choose(Some(b"has space"), true), None);
        assert_eq!(choose(Some(b"tab\there"), true), None);
        assert_eq!(choose(Some("caf\u{e9}".as_bytes()), true), None);
        assert_eq!(choose(Some(&[b'x'; 129]), true), None);
        assert!(choose(Some(&[b'x'; 128]), true).is_some());
        assert_eq!(choose(None, true), None);
    }
}
