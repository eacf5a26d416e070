//! The strict parse every token gets before and after its signature is checked: exactly three
//! canonical base64url segments (no padding, no stray bits), header and claims JSON objects
//! without duplicate member names (parsers disagree on which duplicate wins).

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::TokenError;

/// A token split into its segments, not yet decoded.
#[derive(Debug, Clone, Copy)]
pub struct Segments<'t> {
    /// The protected header, base64url.
    pub header: &'t str,
    /// The claims, base64url.
    pub claims: &'t str,
    /// The signature, base64url.
    pub signature: &'t str,
    /// What the signature covers: `header.claims`.
    pub signed: &'t [u8],
}

/// Splits `token` into exactly three segments.
pub fn segments(token: &str) -> Result<Segments<'_>, TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    Ok(Segments {
        header,
        claims,
        signature,
        signed: &token.as_bytes()[..header.len() + 1 + claims.len()],
    })
}

/// Decodes a base64url segment strictly.
pub fn decode_segment(segment: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Malformed)
}

/// Decodes a segment holding a JSON object whose member names are unique.
pub fn decode_object(segment: &str) -> Result<Map<String, Value>, TokenError> {
    let bytes = decode_segment(segment)?;
    match serde_json::from_slice::<StrictObject>(&bytes) {
        Ok(StrictObject(Ok(map))) => Ok(map),
        Ok(StrictObject(Err(()))) => Err(TokenError::DuplicateMember),
        Err(_) => Err(TokenError::Malformed),
    }
}

/// A JSON object whose top-level member names are unique (`Err(())` when one repeats).
struct StrictObject(Result<Map<String, Value>, ()>);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrictObject;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<StrictObject, A::Error> {
                let mut map = Map::new();
                let mut duplicate = false;
                while let Some((k, v)) = access.next_entry::<String, Value>()? {
                    duplicate |= map.insert(k, v).is_some();
                }
                Ok(StrictObject(if duplicate { Err(()) } else { Ok(map) }))
            }
        }
        d.deserialize_map(V)
    }
}
