//! The contract's invariants as executable checks, shared by the property tests
//! (`tests/properties.rs`, run in CI) and the fuzz targets (`tests/fuzz/`). Each function panics
//! with a message when its invariant is broken, and otherwise returns quietly, whatever the input.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use http::header::{HeaderName, HeaderValue};
use sha2::Sha256;

use jwtgate::auth::keys::Keys;
use jwtgate::auth::Verifier;
use jwtgate::config::{spoof_key, Config};
use jwtgate::pipeline::{ClientInfo, HeaderPolicy, UpstreamRequest};
use jwtgate::policy::RouteTable;
use jwtgate::wire::{self, uri as path, Framing, Header};

/// The key the checks' verifier uses.
pub const KEY: &str = "invariants-key-0123456789abcdef0123456789";

/// A configuration with a few overlapping routes and one claim header, for the checks.
pub fn config() -> Config {
    // The text is fixed and valid; `every_shipped_config_validates`-style tests cover it.
    Config::from_toml(
        r#"
[auth]
leeway = "0s"
claim_headers = { role = "X-Auth-Role" }
[[route]]
path = "/"
upstream = "http://127.0.0.1:1"
auth = "public"
[[route]]
path = "/admin"
upstream = "http://127.0.0.1:1"
[[route]]
path = "/admin/public"
upstream = "http://127.0.0.1:1"
auth = "public"
[[route]]
path = "/api"
upstream = "http://127.0.0.1:1"
auth = "optional"
"#,
    )
    .expect("the invariants config is valid")
}

/// A verifier for [`config`] with [`KEY`].
pub fn verifier(config: &Config) -> Verifier {
    Verifier::new(&config.auth, &Keys::from_secrets(KEY, None))
}

/// Path normalization: what is routed on is a normal path, normalizing it again changes
/// nothing (so the upstream, which receives it, cannot read it differently), and the route
/// chosen for it is a whole-segment prefix of it.
pub fn check_path(routes: &RouteTable, input: &str) {
    let Ok(normal) = path::normalize(input) else {
        return;
    };
    let normal = normal.as_ref();
    assert!(
        normal.starts_with('/'),
        "{input:?} -> {normal:?}: not absolute"
    );
    assert_eq!(
        path::normalize(normal).as_deref(),
        Ok(normal),
        "{input:?} -> {normal:?}: not idempotent"
    );
    assert!(!normal.contains("//"), "{input:?} -> {normal:?}");
    for seg in normal.split('/') {
        assert!(
            seg != "." && seg != "..",
            "{input:?} -> {normal:?}: dot segment"
        );
    }
    let upper = normal.to_ascii_uppercase();
    for bad in ["%2F", "%5C", "%00", "\\", ";"] {
        assert!(
            !upper.contains(bad),
            "{input:?} -> {normal:?}: contains {bad}"
        );
    }
    if let Some(route) = routes.select(None, normal) {
        let p = route.path.as_str();
        assert!(
            p == "/"
                || normal == p
                || (normal.starts_with(p) && normal.as_bytes().get(p.len()) == Some(&b'/')),
            "{normal:?} routed to {p:?}"
        );
        // The longest matching prefix won.
        for other in routes.iter() {
            let q = other.path.as_str();
            let matches = q == "/"
                || normal == q
                || (normal.starts_with(q) && normal.as_bytes().get(q.len()) == Some(&b'/'));
            assert!(
                !matches || q.len() <= p.len(),
                "{normal:?}: {q:?} is longer than {p:?}"
            );
        }
    }
}

/// Token verification: an identity comes only from a token whose header says `HS256` (the
/// configured algorithm) without `crit`, whose HS256 signature over its first two segments is
/// valid under the key, whose numeric `exp` is after `now` (leeway 0 in [`config`]) and whose
/// numeric `nbf`, if any, is not after `now`; and the identity is that token's `sub`.
pub fn check_token(verifier: &Verifier, token: &str, now: f64) {
    let Ok(identity) = verifier.verify_at(token, now) else {
        return;
    };
    let (signed, signature) = token.rsplit_once('.').expect("verified tokens have dots");
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .expect("verified signatures decode");
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY.as_bytes()).expect("HMAC takes any key");
    mac.update(signed.as_bytes());
    assert!(
        mac.verify_slice(&signature).is_ok(),
        "accepted a token whose signature is not valid: {token:?}"
    );
    let mut segments = signed.split('.');
    let header = segments.next().expect("three segments");
    let payload = segments.next().expect("three segments");
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("header decodes"))
            .expect("header is JSON");
    assert_eq!(
        header["alg"], "HS256",
        "accepted another algorithm: {token:?}"
    );
    assert!(
        header.get("crit").is_none(),
        "accepted a crit header: {token:?}"
    );
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("payload decodes"))
            .expect("payload is JSON");
    let exp = claims["exp"]
        .as_f64()
        .expect("accepted a token without a numeric exp");
    assert!(now < exp, "accepted an expired token: exp {exp}, now {now}");
    if let Some(nbf) = claims.get("nbf") {
        let nbf = nbf.as_f64().expect("accepted a non-numeric nbf");
        assert!(nbf <= now, "accepted a token before its nbf");
    }
    assert_eq!(
        claims.get("sub").and_then(|s| s.as_str()),
        std::str::from_utf8(identity.user.as_bytes()).ok(),
        "identity is not the token's sub"
    );
}

/// Header rewriting: whatever the client sent, the upstream's request head is one well-formed
/// HTTP/1.1 head with the identity headers exactly once with the gateway's values (or not at
/// all when there is no identity), and no header that a CGI-style server would fold into one of
/// them.
pub fn check_rewrite(
    policy: &HeaderPolicy,
    sent: &[(HeaderName, HeaderValue)],
    user: Option<&str>,
) {
    let fields: Vec<Header<'_>> = sent
        .iter()
        .map(|(k, v)| Header {
            name: k.as_str(),
            value: v.as_bytes(),
        })
        .collect();
    let identity = user.map(|u| {
        std::sync::Arc::new(jwtgate::auth::Identity {
            user: HeaderValue::from_str(u).expect("test users are header values"),
            claim_values: vec![Some(HeaderValue::from_static("viewer"))],
            issuer: None,
            left_out: vec![],
            claims: Default::default(),
            assertions: Default::default(),
            exp: 0.0,
        })
    });
    let client = ClientInfo::new(std::net::Ipv4Addr::LOCALHOST.into(), "http");
    let mut out = Vec::new();
    jwtgate::upstream::h1::write_request(
        &UpstreamRequest {
            method: "GET",
            path: "/".into(),
            query: None,
            host: Some(b"app.example"),
            upstream_host: "127.0.0.1:1",
            headers: &fields,
            map: None,
            identity,
            assertion: None,
            upgrade: None,
            framing: Framing::Empty,
            join_cookies: false,
            policy,
            client: &client,
            request_id: None,
            trace: None,
        },
        &mut out,
    );
    // What the upstream reads: exactly one request, nothing after it.
    let mut slots = wire::header_slots();
    let head = wire::parse_request(&out, &mut slots)
        .unwrap_or_else(|e| panic!("the upstream head does not parse ({e:?}), sent {sent:?}"))
        .unwrap_or_else(|| panic!("the upstream head is incomplete, sent {sent:?}"));
    assert_eq!(head.len, out.len(), "bytes after the head, sent {sent:?}");
    let got = |name: &str| -> Vec<&[u8]> {
        head.headers
            .iter()
            .filter(|h| spoof_key(h.name) == name)
            .map(|h| h.value)
            .collect()
    };
    for (name, want) in [
        ("x-auth-user", user),
        ("x-auth-role", user.map(|_| "viewer")),
    ] {
        let got = got(name);
        match want {
            Some(w) => assert!(
                got.len() == 1 && got[0] == w.as_bytes(),
                "{name}: {got:?}, sent {sent:?}"
            ),
            None => assert!(
                got.is_empty(),
                "{name}: {got:?} with no identity, sent {sent:?}"
            ),
        }
    }
    for hop in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "expect",
    ] {
        assert!(got(hop).is_empty(), "{hop} forwarded, sent {sent:?}");
    }
    // The length is the gateway's (no body here: none, or 0 when the client declared one),
    // never the client's.
    let lengths = got("content-length");
    assert!(
        lengths.is_empty() || lengths == [b"0"],
        "content-length {lengths:?}, sent {sent:?}"
    );
    // Client-controlled facts and routing overrides never survive, in any spelling; the
    // X-Forwarded-* the gateway writes and Host are exactly one each.
    for banned in [
        "forwarded",
        "x-real-ip",
        "x-original-url",
        "x-rewrite-url",
        "x-forwarded-uri",
        "x-forwarded-port",
    ] {
        assert!(got(banned).is_empty(), "{banned} forwarded, sent {sent:?}");
    }
    assert_eq!(got("x-forwarded-proto"), vec![b"http"]);
    assert_eq!(got("x-forwarded-for").len(), 1);
    assert_eq!(got("x-forwarded-host"), vec![b"app.example"]);
    assert_eq!(got("host"), vec![b"app.example"]);
    // Whatever `Connection` nominated is gone too (except the headers the gateway writes
    // itself).
    let written = [
        "x-auth-user",
        "x-auth-role",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "host",
    ];
    for v in sent
        .iter()
        .filter(|(k, _)| k == "connection")
        .map(|(_, v)| v)
    {
        for token in wire::tokens(v.as_bytes()) {
            let Ok(name) = HeaderName::from_bytes(token) else {
                continue;
            };
            if !written.contains(&name.as_str()) {
                assert!(
                    head.headers
                        .iter()
                        .all(|h| !h.name.eq_ignore_ascii_case(name.as_str())),
                    "nominated {name} forwarded, sent {sent:?}"
                );
            }
        }
    }
}

/// Request framing: whatever the bytes, a head that `wire` parses is self-delimiting, and its
/// framing is the one the independent reading of RFC 9112's grammar ([`reference`]) gives it:
/// `wire` never accepts a head the reference refuses, nor frames it otherwise.
pub fn check_request_head(input: &[u8]) {
    let mut slots = wire::header_slots();
    let Ok(Some(head)) = wire::parse_request(input, &mut slots[..100]) else {
        return;
    };
    assert!(head.len <= input.len());
    let mut again = wire::header_slots();
    let reparsed = wire::parse_request(&input[..head.len], &mut again[..100])
        .expect("a head parses again on its own")
        .expect("a head is complete on its own");
    assert_eq!(reparsed.len, head.len, "{input:?}");
    let want = reference::request_framing(&input[..head.len])
        .unwrap_or_else(|| panic!("wire accepted a head the reference refuses: {input:?}"));
    let got = match head.framing {
        Framing::Empty => reference::Framing::Empty,
        Framing::Length(n) => reference::Framing::Length(n),
        Framing::Chunked => reference::Framing::Chunked,
        Framing::UntilClose => panic!("a request read until close: {input:?}"),
    };
    assert_eq!(got, want, "{input:?}");
}

/// The chunked decoder: fed the same bytes in two pieces split anywhere, it decodes the same
/// body, stops at the same byte and fails the same way; what it decodes, the independent
/// reference ([`reference::dechunk`]) decodes the same; a body it decoded, framed anew by the
/// gateway, decodes to the same bytes.
pub fn check_chunked(input: &[u8], split: usize) {
    let whole = dechunk(&[input]);
    let split = split.min(input.len());
    let pieces = dechunk(&[&input[..split], &input[split..]]);
    assert_eq!(whole, pieces, "{input:?} split at {split}");
    if let Ok((body, used)) = whole {
        assert!(used <= input.len());
        assert_eq!(
            reference::dechunk(input),
            Some((body.clone(), used)),
            "wire decoded what the reference reads otherwise: {input:?}"
        );
        let mut framed = Vec::new();
        for piece in body.chunks(7) {
            wire::push_chunk(&mut framed, piece);
        }
        framed.extend_from_slice(wire::LAST_CHUNK);
        assert_eq!(dechunk(&[&framed]), Ok((body, framed.len())));
    }
}

/// Decodes a chunked body arriving in `pieces`: the body and the bytes used, or the error
/// (`None` when the input ended first).
fn dechunk(pieces: &[&[u8]]) -> Result<(Vec<u8>, usize), Option<wire::ChunkError>> {
    let mut dec = wire::ChunkedDecoder::new();
    let mut body = Vec::new();
    let mut used = 0;
    for piece in pieces {
        let mut at = 0;
        while at < piece.len() {
            let (n, chunk) = dec.decode(&piece[at..]).map_err(Some)?;
            match chunk {
                wire::Chunk::Data(r) => body.extend_from_slice(&piece[at..][r]),
                wire::Chunk::End => return Ok((body, used + at + n)),
                wire::Chunk::More => {}
            }
            at += n;
        }
        used += piece.len();
    }
    Err(None)
}

/// Independent readings of HTTP/1.1 framing, written from RFC 9112's grammar and the limits
/// the README documents, sharing no code with `wire`: what the checks hold `wire` to.
pub mod reference {
    /// How a request body is delimited.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Framing {
        /// No body.
        Empty,
        /// This many bytes.
        Length(u64),
        /// Chunked.
        Chunked,
    }

    fn tchar(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
    }

    fn field_value_byte(b: u8) -> bool {
        b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80
    }

    fn trim(mut v: &[u8]) -> &[u8] {
        while let [b' ' | b'\t', rest @ ..] = v {
            v = rest;
        }
        while let [rest @ .., b' ' | b'\t'] = v {
            v = rest;
        }
        v
    }

    /// The framing of a whole request head (request line to empty line) by the rules the README
    /// states: one `Transfer-Encoding` field that is exactly `chunked` (HTTP/1.1 only, never
    /// with `Content-Length`), or one `Content-Length` of 1 to 19 digits, or no body. `None`:
    /// refused (including any field line that is not `token ":" value`).
    pub fn request_framing(head: &[u8]) -> Option<Framing> {
        let mut lines = Vec::new();
        let mut start = 0;
        for (i, &b) in head.iter().enumerate() {
            if b == b'\n' {
                let line = &head[start..i];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.contains(&b'\r') {
                    return None;
                }
                lines.push(line);
                start = i + 1;
            }
        }
        if start != head.len() {
            return None;
        }
        let (request_line, rest) = lines.split_first()?;
        let http10 = if request_line.ends_with(b" HTTP/1.0") {
            true
        } else if request_line.ends_with(b" HTTP/1.1") {
            false
        } else {
            return None;
        };
        let (empty, fields) = rest.split_last()?;
        if !empty.is_empty() {
            return None;
        }
        let (mut te, mut cl) = (Vec::new(), Vec::new());
        for line in fields {
            let colon = line.iter().position(|&b| b == b':')?;
            let (name, value) = (&line[..colon], &line[colon + 1..]);
            if name.is_empty() || !name.iter().all(|&b| tchar(b)) {
                return None;
            }
            if !value.iter().all(|&b| field_value_byte(b)) {
                return None;
            }
            let value = trim(value);
            if name.eq_ignore_ascii_case(b"transfer-encoding") {
                te.push(value);
            } else if name.eq_ignore_ascii_case(b"content-length") {
                cl.push(value);
            }
        }
        match (te.as_slice(), cl.as_slice()) {
            ([], []) => Some(Framing::Empty),
            ([te], []) if !http10 && te.eq_ignore_ascii_case(b"chunked") => Some(Framing::Chunked),
            ([], [cl]) if (1..=19).contains(&cl.len()) && cl.iter().all(u8::is_ascii_digit) => {
                let n = std::str::from_utf8(cl).ok()?.parse::<u64>().ok()?;
                Some(if n == 0 {
                    Framing::Empty
                } else {
                    Framing::Length(n)
                })
            }
            _ => None,
        }
    }

    /// A chunked body (RFC 9112 §7.1) at the start of `input`: the body and the bytes it takes,
    /// or `None` (malformed, over the documented limits, or incomplete). Sizes are 1 to 16 hex
    /// digits, then spaces or tabs; extensions are at most 4096 bytes in all and hold no control
    /// byte but tab; every line ends in CRLF; trailers are `token ":" value` lines, at most 64
    /// and 16 KiB.
    pub fn dechunk(input: &[u8]) -> Option<(Vec<u8>, usize)> {
        let mut at = 0;
        let mut body = Vec::new();
        let mut extensions = 0;
        let byte = |at: usize| input.get(at).copied();
        loop {
            let digits = input[at..]
                .iter()
                .take_while(|b| b.is_ascii_hexdigit())
                .count();
            if digits == 0 || digits > 16 {
                return None;
            }
            let size =
                u64::from_str_radix(std::str::from_utf8(&input[at..at + digits]).ok()?, 16).ok()?;
            at += digits;
            while matches!(byte(at), Some(b' ' | b'\t')) {
                at += 1;
            }
            if byte(at) == Some(b';') {
                at += 1;
                while byte(at)? != b'\r' {
                    let b = byte(at)?;
                    if !(b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80) {
                        return None;
                    }
                    extensions += 1;
                    at += 1;
                }
                if extensions > 4096 {
                    return None;
                }
            }
            if input.get(at..at + 2)? != b"\r\n" {
                return None;
            }
            at += 2;
            if size == 0 {
                break;
            }
            let end = at.checked_add(usize::try_from(size).ok()?)?;
            body.extend_from_slice(input.get(at..end)?);
            at = end;
            if input.get(at..at + 2)? != b"\r\n" {
                return None;
            }
            at += 2;
        }
        let (mut fields, mut bytes) = (0, 0);
        loop {
            if input.get(at..at + 2)? == b"\r\n" {
                return Some((body, at + 2));
            }
            let line_end = at + input[at..].iter().position(|&b| b == b'\r')?;
            let line = &input[at..line_end];
            let colon = line.iter().position(|&b| b == b':')?;
            if colon == 0
                || !line[..colon].iter().all(|&b| tchar(b))
                || !line[colon + 1..].iter().all(|&b| field_value_byte(b))
            {
                return None;
            }
            if byte(line_end + 1)? != b'\n' {
                return None;
            }
            fields += 1;
            bytes += line.len() + 2;
            if fields > 64 || bytes > 16 * 1024 {
                return None;
            }
            at = line_end + 2;
        }
    }
}
