//! Where a request's token comes from: the `Authorization: Bearer` credential (RFC 6750 §2.1),
//! then `auth.cookie` ([`cookie`]), then a route's `query_token` ([`query`], RFC 6750 §2.3), the
//! first found winning; and the query without that parameter ([`without_param`]), which is what
//! is forwarded.

use std::borrow::Cow;

use super::TokenError;
use crate::wire::Header;

/// Where a request's token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `Authorization: Bearer`.
    Header,
    /// The `auth.cookie` cookie.
    Cookie,
    /// The route's `query_token` parameter.
    Query,
}

/// A token is visible ASCII without spaces (checked without early exits, so that the loop over
/// a whole token is vectorized).
fn token_chars(token: &[u8]) -> bool {
    token
        .iter()
        .fold(true, |ok, &b| ok & (b.wrapping_sub(0x21) < 0x5e))
}

/// The value of the first cookie named `name` in the `Cookie` fields (RFC 6265 §4.2.1: pairs
/// separated by `;`, spaces around them ignored, a value possibly in double quotes). `Ok(None)`
/// when there is none or it is empty; a value that is not a token's characters is refused.
pub fn cookie<'a>(headers: &[Header<'a>], name: &str) -> Result<Option<&'a str>, TokenError> {
    let pairs = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
        .flat_map(|h| h.value.split(|&b| b == b';'));
    for pair in pairs {
        let pair = trim_spaces(pair);
        let Some(eq) = pair.iter().position(|&b| b == b'=') else {
            continue;
        };
        if trim_spaces(&pair[..eq]) != name.as_bytes() {
            continue;
        }
        let mut value = trim_spaces(&pair[eq + 1..]);
        if let [b'"', inner @ .., b'"'] = value {
            value = inner;
        }
        if value.is_empty() {
            return Ok(None);
        }
        if !token_chars(value) {
            return Err(TokenError::BadCredentials);
        }
        return std::str::from_utf8(value)
            .map(Some)
            .map_err(|_| TokenError::BadCredentials);
    }
    Ok(None)
}

/// The first parameter of `query` whose name, percent-decoded, is `name`, percent-decoded.
/// `Ok(None)` when there is none or it is empty.
pub fn query<'a>(query: &'a str, name: &str) -> Result<Option<Cow<'a, str>>, TokenError> {
    for param in query.split('&') {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        if decode(key).as_deref() != Some(name.as_bytes()) {
            continue;
        }
        let value = decode(value).ok_or(TokenError::BadCredentials)?;
        if value.is_empty() {
            return Ok(None);
        }
        if !token_chars(&value) {
            return Err(TokenError::BadCredentials);
        }
        return match value {
            Cow::Borrowed(b) => std::str::from_utf8(b).map(|s| Some(Cow::Borrowed(s))),
            Cow::Owned(v) => String::from_utf8(v)
                .map(|s| Some(Cow::Owned(s)))
                .map_err(|e| e.utf8_error()),
        }
        .map_err(|_| TokenError::BadCredentials);
    }
    Ok(None)
}

/// True when `param`'s name, percent-decoded, is `name` in any letter case (some frameworks,
/// ASP.NET among them, read query names case-insensitively).
fn named(param: &str, name: &str) -> bool {
    let key = param.split_once('=').map_or(param, |(k, _)| k);
    decode(key).is_some_and(|k| k.eq_ignore_ascii_case(name.as_bytes()))
}

/// True when `query` has a parameter named `name` (any spelling) after a `;` inside an
/// `&`-separated part: servers that split on `;` too (older Rack, Go before 1.17) would read it
/// where the gateway does not, so it could not be removed with certainty.
pub fn smuggled(query: &str, name: &str) -> bool {
    query
        .split('&')
        .filter(|part| part.contains(';'))
        .any(|part| part.split(';').skip(1).any(|p| named(p, name)))
}

/// `query` without any parameter whose name, percent-decoded, is `name` in any letter case
/// (`None` when nothing is left): a token in the query never reaches the upstream, however its
/// name is spelled.
pub fn without_param<'a>(query: &'a str, name: &str) -> Option<Cow<'a, str>> {
    let is_it = |param: &str| named(param, name);
    if !query.split('&').any(is_it) {
        return Some(Cow::Borrowed(query));
    }
    let kept: Vec<&str> = query.split('&').filter(|p| !is_it(p)).collect();
    match kept.is_empty() {
        true => None,
        false => Some(Cow::Owned(kept.join("&"))),
    }
}

/// Percent-decodes `s`; `None` for a malformed escape.
fn decode(s: &str) -> Option<Cow<'_, [u8]>> {
    if !s.contains('%') {
        return Some(Cow::Borrowed(s.as_bytes()));
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(Cow::Owned(out))
}

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
    if !token_chars(token) {
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

    #[test]
    fn cookie_extraction() {
        let h = |v: &'static str| Header {
            name: "Cookie",
            value: v.as_bytes(),
        };
        let get = |hs: &[Header<'static>]| cookie(hs, "access_token");
        assert_eq!(get(&[]), Ok(None));
        assert_eq!(get(&[h("a=1; access_token=x.y.z; b=2")]), Ok(Some("x.y.z")));
        assert_eq!(get(&[h("access_token=\"x.y.z\"")]), Ok(Some("x.y.z")));
        // The first of that name wins, across fields (HTTP/2 splits them).
        assert_eq!(
            get(&[h("a=1"), h("access_token=first"), h("access_token=second")]),
            Ok(Some("first"))
        );
        assert_eq!(get(&[h("xaccess_token=no; access_tokenx=no")]), Ok(None));
        assert_eq!(get(&[h("access_token=")]), Ok(None));
        assert_eq!(
            get(&[h("access_token=a b")]),
            Err(TokenError::BadCredentials)
        );
    }

    #[test]
    fn query_extraction_and_removal() {
        assert_eq!(
            query("a=1&access_token=x.y.z", "access_token"),
            Ok(Some("x.y.z".into()))
        );
        assert_eq!(
            query("access%5Ftoken=x%2Ey", "access_token"),
            Ok(Some("x.y".into()))
        );
        assert_eq!(query("access_token=&b", "access_token"), Ok(None));
        assert_eq!(query("a=access_token", "access_token"), Ok(None));
        assert_eq!(
            query("access_token=%zz", "access_token"),
            Err(TokenError::BadCredentials)
        );
        assert_eq!(
            query("access_token=a%20b", "access_token"),
            Err(TokenError::BadCredentials)
        );
        assert_eq!(
            without_param("a=1&access_token=t&b=2&access%5ftoken=u", "access_token").as_deref(),
            Some("a=1&b=2")
        );
        assert_eq!(without_param("access_token=t", "access_token"), None);
        assert!(matches!(
            without_param("a=1", "access_token"),
            Some(Cow::Borrowed("a=1"))
        ));
    }
}
