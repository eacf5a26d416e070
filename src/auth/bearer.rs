//! Where a request's token comes from: the `Authorization: Bearer` credential (RFC 6750 §2.1).
//! Other token sources (cookies, the query) would sit beside it.

use super::TokenError;
use crate::wire::Header;

/// Finds the Bearer token. `Ok(None)` when there is none (no `Authorization` header, another
/// scheme such as `Basic`, or an empty credential). The scheme is case-insensitive (RFC 9110
/// §11.1). More than one `Authorization` field, or a value that is not visible ASCII, is
/// refused.
pub fn bearer<'a>(headers: &[Header<'a>]) -> Result<Option<&'a str>, TokenError> {
    let mut values = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("authorization"));
    let Some(value) = values.next().map(|h| h.value) else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(TokenError::BadCredentials);
    }
    let (scheme, rest) = match value.iter().position(|&b| b == b' ') {
        Some(i) => (&value[..i], &value[i + 1..]),
        None => (value, &[][..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        // Not a Bearer credential: no token, unless the value is not text at all.
        return match value
            .iter()
            .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        {
            true => Ok(None),
            false => Err(TokenError::BadCredentials),
        };
    }
    // Only spaces pad a credential.
    let token = trim_spaces(rest);
    if token.is_empty() {
        return Ok(None);
    }
    // A token is visible ASCII without spaces or tabs (checked without early exits, so that
    // the loop over a whole token is vectorized).
    if !token
        .iter()
        .fold(true, |ok, &b| ok & (b.wrapping_sub(0x21) < 0x5e))
    {
        return Err(TokenError::BadCredentials);
    }
    // Visible ASCII, so this cannot fail.
    std::str::from_utf8(token)
        .map(Some)
        .map_err(|_| TokenError::BadCredentials)
}

fn trim_spaces(mut b: &[u8]) -> &[u8] {
    while let [b' ', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b' '] = b {
        b = rest;
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_extraction() {
        let one = |v: &'static str| {
            bearer(&[Header {
                name: "Authorization",
                value: v.as_bytes(),
            }])
        };
        assert_eq!(bearer(&[]), Ok(None));
        assert_eq!(one("Basic YWxpY2U6cHc="), Ok(None));
        assert_eq!(one("Bearer "), Ok(None));
        assert_eq!(one("bearer abc.def.ghi"), Ok(Some("abc.def.ghi")));
        assert_eq!(one("Bearer a b"), Err(TokenError::BadCredentials));
        assert_eq!(one("Bearer a\tb"), Err(TokenError::BadCredentials));
        assert_eq!(one("Bearer \t"), Err(TokenError::BadCredentials));
        assert_eq!(one("Bearer   tok  "), Ok(Some("tok")));
        assert_eq!(one("Basic \u{e9}"), Err(TokenError::BadCredentials));
        assert_eq!(one("Bearer a\u{e9}"), Err(TokenError::BadCredentials));
        let two = [
            Header {
                name: "authorization",
                value: b"Bearer abc",
            },
            Header {
                name: "AUTHORIZATION",
                value: b"Bearer def",
            },
        ];
        assert_eq!(bearer(&two), Err(TokenError::BadCredentials));
    }
}
