//! The contract's invariants as executable checks, shared by the property tests
//! (`tests/properties.rs`, run in CI) and the fuzz targets (`tests/fuzz/`). Each function panics
//! with a message when its invariant is broken, and otherwise returns quietly, whatever the input.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use http::header::{HeaderName, HeaderValue};
use sha2::Sha256;

use crate::auth::keys::Keys;
use crate::auth::Verifier;
use crate::config::{spoof_key, Config};
use crate::pipeline::{ClientInfo, HeaderPolicy, UpstreamRequest};
use crate::policy::RouteTable;
use crate::wire::{self, uri as path, Framing, Header};

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
        identity.user.to_str().ok(),
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
        std::sync::Arc::new(crate::auth::Identity {
            user: HeaderValue::from_str(u).expect("test users are header values"),
            claim_values: vec![Some(HeaderValue::from_static("viewer"))],
            claims: Default::default(),
            exp: 0.0,
        })
    });
    let client = ClientInfo::new(std::net::Ipv4Addr::LOCALHOST.into(), "http");
    let mut out = Vec::new();
    crate::upstream::h1::write_request(
        &UpstreamRequest {
            method: "GET",
            path: "/".into(),
            query: None,
            host: Some(b"app.example"),
            upstream_host: "127.0.0.1:1",
            headers: &fields,
            identity,
            upgrade: None,
            framing: Framing::Empty,
            join_cookies: false,
            policy,
            client: &client,
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

/// Request framing: whatever the bytes, a head that parses is self-delimiting and its framing
/// is the one unambiguous reading of its fields: `Transfer-Encoding: chunked` alone (HTTP/1.1,
/// no `Content-Length`), or at most one all-digit `Content-Length`, or no body.
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
    let named = |name: &str| {
        head.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .collect::<Vec<_>>()
    };
    let (te, cl) = (named("transfer-encoding"), named("content-length"));
    match head.framing {
        Framing::Chunked => {
            assert!(
                cl.is_empty() && head.version == wire::Version::Http11,
                "{input:?}"
            );
            let codings: Vec<&[u8]> = te.iter().flat_map(|h| wire::tokens(h.value)).collect();
            assert_eq!(codings.len(), 1, "{input:?}");
            assert!(codings[0].eq_ignore_ascii_case(b"chunked"), "{input:?}");
        }
        Framing::Length(n) => {
            assert!(te.is_empty() && cl.len() == 1, "{input:?}");
            assert_eq!(wire::parse_length(cl[0].value), Some(n), "{input:?}");
        }
        Framing::Empty => {
            assert!(te.is_empty() && cl.len() <= 1, "{input:?}");
            assert!(
                cl.iter().all(|h| wire::parse_length(h.value) == Some(0)),
                "{input:?}"
            );
        }
        Framing::UntilClose => panic!("a request read until close: {input:?}"),
    }
}

/// The chunked decoder: fed the same bytes in two pieces split anywhere, it decodes the same
/// body, stops at the same byte and fails the same way; a body it decoded, framed anew by the
/// gateway, decodes to the same bytes.
pub fn check_chunked(input: &[u8], split: usize) {
    let whole = dechunk(&[input]);
    let split = split.min(input.len());
    let pieces = dechunk(&[&input[..split], &input[split..]]);
    assert_eq!(whole, pieces, "{input:?} split at {split}");
    if let Ok((body, used)) = whole {
        assert!(used <= input.len());
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
