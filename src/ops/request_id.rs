//! Request IDs (`X-Request-Id`): a trusted peer's value is kept, any other request gets a new
//! one (a random UUID, version 4). The ID goes to the upstream, back to the client on every
//! answer (the upstream's and the gateway's own), into the access line and into JSON error
//! bodies, so that one string finds a request in every log it touched.

use http::header::{HeaderName, HeaderValue};
use rand::RngCore;

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

/// A new request ID: a random (version 4) UUID in its 36-character text form.
pub fn generate() -> HeaderValue {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 36];
    let mut at = 0;
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            text[at] = b'-';
            at += 1;
        }
        text[at] = HEX[usize::from(b >> 4)];
        text[at + 1] = HEX[usize::from(b & 0xf)];
        at += 2;
    }
    // Hex digits and dashes: always a valid field value.
    HeaderValue::from_bytes(&text).unwrap_or(HeaderValue::from_static("-"))
}

/// The request ID of a request with `value` (its one `X-Request-Id`, if it sent exactly one)
/// from a peer that is (`trusted`) or is not in `server.trusted_proxies`.
pub fn choose(value: Option<&[u8]>, trusted: bool) -> Option<HeaderValue> {
    match value {
        Some(v) if trusted && acceptable(v) => HeaderValue::from_bytes(v).ok(),
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
            Some(HeaderValue::from_static("abc-123"))
        );
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
