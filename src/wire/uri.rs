//! URI syntax as the gateway routes on it: request-path normalization, the one place that
//! decides which path a request *is*, and host normalization.
//!
//! The contract's invariant is that the route is chosen on exactly the path the upstream receives.
//! [`normalize`] therefore produces the path that is both routed on and forwarded, and refuses
//! (400) what it cannot make unambiguous:
//!
//! * percent-encoded unreserved characters (`%41`, `%2E`, `%7E`, ...) are decoded (RFC 3986
//!   §6.2.2.2: they mean the same thing), other escapes get upper-case hex;
//! * `.` and `..` segments are removed (RFC 3986 §5.2.4); `..` never climbs above `/`;
//! * runs of `/` are merged into one (as nginx's `merge_slashes` does);
//! * refused: an encoded `/` (`%2F`) or `\` (`%5C`), a raw `\`, `;` (path parameters, which
//!   Tomcat and Spring strip before routing), encoded control bytes (`%00`-`%1F`, `%7F`), a
//!   double-encoded escape (`%25` followed by two hex digits), an invalid escape, and anything
//!   that does not start with `/`.

use std::borrow::Cow;

use super::hex;

/// Why a path was refused (the text goes into the 400's `error_description`).
pub type Refusal = &'static str;

/// Normalizes a request path (without the query). Returns the path to route on and forward.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, Refusal> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err("request target must be an absolute path");
    }
    // Fast path: nothing to decode, no dot segment, no doubled slash, nothing to refuse.
    if is_plain(bytes) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(bytes)?;
    // Decoding can assemble a double encoding from single ones (`%25%32%65` -> `%252e`).
    if has_double_encoding(decoded.as_bytes()) {
        return Err("double percent-encoding in path");
    }
    Ok(Cow::Owned(remove_dot_segments(&decoded)))
}

fn is_plain(bytes: &[u8]) -> bool {
    let mut prev = 0u8;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'%' | b'\\' | b';' => return false,
            b'/' if prev == b'/' => return false,
            b'.' if prev == b'/' => {
                // "/." starts a dot segment only if followed by end, '/', or ".".
                match bytes.get(i + 1) {
                    None | Some(b'/') | Some(b'.') => return false,
                    _ => {}
                }
            }
            0..=0x20 | 0x7f..=0xff => return false,
            _ => {}
        }
        prev = b;
    }
    true
}

fn has_double_encoding(bytes: &[u8]) -> bool {
    bytes.windows(5).any(|w| {
        w[0] == b'%' && w[1] == b'2' && w[2] == b'5' && hex(w[3]).is_some() && hex(w[4]).is_some()
    })
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn decode_unreserved(bytes: &[u8]) -> Result<String, Refusal> {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let (Some(h), Some(l)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err("invalid percent-encoding in path");
                };
                let v = h * 16 + l;
                match v {
                    b'/' => return Err("encoded '/' in path"),
                    b'\\' => return Err("encoded '\\' in path"),
                    0..=0x1f | 0x7f => return Err("encoded control character in path"),
                    b'%' if bytes.get(i + 3).copied().and_then(hex).is_some()
                        && bytes.get(i + 4).copied().and_then(hex).is_some() =>
                    {
                        return Err("double percent-encoding in path")
                    }
                    v if is_unreserved(v) => out.push(v as char),
                    v => {
                        out.push('%');
                        out.push(char::from(b"0123456789ABCDEF"[(v >> 4) as usize]));
                        out.push(char::from(b"0123456789ABCDEF"[(v & 15) as usize]));
                    }
                }
                i += 3;
                continue;
            }
            b'\\' => return Err("'\\' in path"),
            b';' => return Err("';' (path parameters) in path"),
            0..=0x20 | 0x7f..=0xff => return Err("invalid character in path"),
            _ => out.push(b as char),
        }
        i += 1;
    }
    Ok(out)
}

/// RFC 3986 §5.2.4 on segments, with empty segments (from `//`) dropped.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    // A trailing "/", "/." or "/.." keeps the result a directory, as RFC 3986 does.
    let trailing = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing {
        out.push('/');
    }
    out
}

/// Normalizes a configured route prefix: it must already be a normal path; a trailing `/` is
/// dropped (`/api/` and `/api` are the same prefix) except for the root.
pub fn normalize_route_prefix(prefix: &str) -> Result<String, String> {
    match normalize(prefix) {
        Ok(n) if n == prefix || n.trim_end_matches('/') == prefix.trim_end_matches('/') => {
            let trimmed = n.trim_end_matches('/');
            Ok(if trimmed.is_empty() {
                "/".to_owned()
            } else {
                trimmed.to_owned()
            })
        }
        Ok(n) => Err(format!("{prefix:?} is not a normalized path; write {n:?}")),
        Err(why) => Err(format!("{prefix:?}: {why}; a route path starts with '/'")),
    }
}

/// Lower-cases a host, drops a `:port` and a trailing dot: `API.example.com.:443` ->
/// `api.example.com`. IPv6 literals keep their brackets.
pub fn normalize_host(host: &str) -> String {
    let host = host.trim();
    let without_port = if host.starts_with('[') {
        match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        match host.rfind(':') {
            Some(i) if host[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &host[..i],
            _ => host,
        }
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_are_borrowed_unchanged() {
        for p in [
            "/",
            "/api",
            "/api/v1/x.json",
            "/a/.hidden",
            "/a/b..c",
            "/~u/-_",
        ] {
            assert!(
                matches!(normalize(p), Ok(Cow::Borrowed(q)) if q == p),
                "{p}"
            );
        }
    }

    #[test]
    fn normalizes_dots_slashes_and_unreserved_escapes() {
        let cases = [
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/a//b", "/a/b"),
            ("//admin", "/admin"),
            ("/public/..", "/"),
            ("/public/../admin", "/admin"),
            ("/a/%2e%2e/admin", "/admin"),
            ("/a/%2E./admin", "/admin"),
            ("/%61dmin", "/admin"),
            ("/a/b/", "/a/b/"),
            ("/a/.", "/a/"),
            ("/x%3fy", "/x%3Fy"),
            ("/x%20y", "/x%20y"),
            ("/%7euser", "/~user"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn refuses_what_could_mean_something_else_upstream() {
        for p in [
            "/a%2fb",
            "/a%2Fb",
            "/a%5cb",
            "/a\\b",
            "/admin;x=1/secret",
            "/a%00b",
            "/a%0ab",
            "/a%252e%252e/b",
            "/public/%25%32%65%25%32%65/admin",
            "/a/%25%32%46",
            "/a%2",
            "/a%zz",
            "*",
            "",
            "admin",
        ] {
            assert!(normalize(p).is_err(), "accepted {p:?}");
        }
    }

    #[test]
    fn normalizing_twice_changes_nothing() {
        for p in [
            "/a/../b//c/./%7e",
            "/x/%2e/",
            "/a/b/..",
            "/a%20b/%3B",
            "/%41%25",
        ] {
            let once = normalize(p).unwrap().into_owned();
            assert_eq!(normalize(&once).unwrap(), once.as_str());
        }
    }

    #[test]
    fn hosts_are_normalized() {
        assert_eq!(normalize_host("API.Example.com:8443"), "api.example.com");
        assert_eq!(normalize_host("api.example.com."), "api.example.com");
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
    }

    #[test]
    fn route_prefixes() {
        assert_eq!(normalize_route_prefix("/api/").unwrap(), "/api");
        assert_eq!(normalize_route_prefix("/").unwrap(), "/");
        assert!(normalize_route_prefix("api").is_err());
        assert!(normalize_route_prefix("/a/../b").is_err());
    }
}
