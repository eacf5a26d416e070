//! Property tests of the contract's invariants (the same checks the fuzz targets run, see
//! `tests/support/invariants.rs`), over inputs shaped like attacks: paths full of dots, slashes
//! and escapes; tokens mutated byte by byte; header sets full of spellings of the identity
//! headers.

#[path = "support/invariants.rs"]
mod invariants;
mod oracle;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::header::{HeaderName, HeaderValue};
use invariants::KEY;
use proptest::prelude::*;

fn path_strategy() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_owned()),
        Just("//".to_owned()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("%2e".to_owned()),
        Just("%2E".to_owned()),
        Just("%2f".to_owned()),
        Just("%5c".to_owned()),
        Just("%25".to_owned()),
        Just("%32".to_owned()),
        Just("%65".to_owned()),
        Just("%61".to_owned()),
        Just(";".to_owned()),
        Just("\\".to_owned()),
        Just("admin".to_owned()),
        Just("api".to_owned()),
        Just("public".to_owned()),
        "[a-zA-Z0-9%._~-]{1,4}",
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|v| format!("/{}", v.concat()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn normalized_paths_are_stable_and_routed_by_whole_segments(p in path_strategy()) {
        let config = invariants::config();
        invariants::check_path(&jwtgate::policy::RouteTable::build(&config.routes), &p);
    }

    #[test]
    fn arbitrary_strings_never_break_normalization(p in "\\PC{0,40}") {
        let config = invariants::config();
        invariants::check_path(&jwtgate::policy::RouteTable::build(&config.routes), &p);
    }
}

fn sign(header: &str, claims: &str) -> String {
    use hmac::Mac;
    let msg = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(msg.as_bytes());
    format!(
        "{msg}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

const NOW: f64 = 1_700_000_000.0;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn mutated_tokens_never_yield_a_forged_identity(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let config = invariants::config();
        let verifier = invariants::verifier(&config);
        let token = sign(r#"{"alg":"HS256","typ":"JWT"}"#, r#"{"sub":"alice","exp":1700000600,"role":"user"}"#);
        invariants::check_token(&verifier, &token, NOW);
        assert!(verifier.verify_at(&token, NOW).is_ok(), "the seed must verify");
        let mut bytes = token.into_bytes();
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        if let Ok(t) = String::from_utf8(bytes) {
            invariants::check_token(&verifier, &t, NOW);
        }
    }

    #[test]
    fn signed_claims_of_any_shape_yield_the_sub_or_nothing(
        sub in prop_oneof![Just(serde_json::Value::Null), any::<i64>().prop_map(serde_json::Value::from), "\\PC{0,12}".prop_map(serde_json::Value::from)],
        exp in prop_oneof![Just(serde_json::Value::Null), (1_600_000_000i64..1_800_000_000).prop_map(serde_json::Value::from), "[0-9]{10}".prop_map(serde_json::Value::from)],
        alg in prop_oneof![Just("HS256"), Just("none"), Just("HS512"), Just("hs256")],
        dup in any::<bool>(),
    ) {
        let config = invariants::config();
        let verifier = invariants::verifier(&config);
        let mut claims = serde_json::json!({"sub": sub, "exp": exp}).to_string();
        if dup {
            claims = claims.replacen('{', r#"{"sub":"admin","#, 1);
        }
        let token = sign(&format!(r#"{{"alg":"{alg}"}}"#), &claims);
        invariants::check_token(&verifier, &token, NOW);
        if dup || alg != "HS256" {
            prop_assert!(verifier.verify_at(&token, NOW).is_err());
        }
    }
}

fn header_name() -> impl Strategy<Value = HeaderName> {
    let known = prop::sample::select(vec![
        "x-auth-user",
        "x_auth_user",
        "x-auth_user",
        "x_auth-user",
        "x-auth-role",
        "x_auth_role",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "transfer-encoding",
        "x-forwarded-for",
        "content-type",
        "content-length",
        "content_length",
        "host",
        "expect",
        "forwarded",
        "x-original-url",
        "cookie",
    ])
    .prop_map(str::to_owned);
    prop_oneof![known, "[a-z][a-z_-]{0,10}"]
        .prop_map(|n| HeaderName::from_bytes(n.as_bytes()).unwrap())
}

fn header_value() -> impl Strategy<Value = HeaderValue> {
    prop_oneof![
        Just("admin".to_owned()),
        Just("x-auth-user".to_owned()),
        Just("X_Auth_User, keep-alive".to_owned()),
        Just("x-auth-role, x-auth-user".to_owned()),
        "[ -~]{0,20}",
    ]
    .prop_map(|v| HeaderValue::from_str(&v).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn identity_headers_are_exactly_the_gateways(
        sent in proptest::collection::vec((header_name(), header_value()), 0..16),
        user in prop_oneof![Just(None), Just(Some("alice")), Just(Some("bob@example.com"))],
    ) {
        let config = invariants::config();
        let policy = jwtgate::pipeline::headers::HeaderPolicy::new(&config.auth);
        invariants::check_rewrite(&policy, &sent, user);
    }
}

fn head_strategy() -> impl Strategy<Value = Vec<u8>> {
    let field = prop_oneof![
        Just("Content-Length: 5".to_owned()),
        Just("Content-Length: 05".to_owned()),
        Just("Content-Length: 0".to_owned()),
        Just("content-length:3".to_owned()),
        Just("Content-Length: 3, 3".to_owned()),
        Just("Content-Length: +3".to_owned()),
        Just("Transfer-Encoding: chunked".to_owned()),
        Just("transfer-encoding: CHUNKED".to_owned()),
        Just("Transfer-Encoding: chunked, identity".to_owned()),
        Just("Transfer-Encoding: gzip, chunked".to_owned()),
        Just("Transfer-Encoding:".to_owned()),
        Just("Transfer-Encoding: chunked,".to_owned()),
        Just("Transfer-Encoding: , chunked".to_owned()),
        Just("Transfer-Encoding:  chunked\t".to_owned()),
        Just("Transfer-Encoding: chunked\r\nTransfer-Encoding: ".to_owned()),
        Just("Transfer_Encoding: chunked".to_owned()),
        Just("Connection: close".to_owned()),
        Just("Expect: 100-continue".to_owned()),
        Just("X-A: b\r\n c".to_owned()),
        Just("Host: a".to_owned()),
        "[A-Za-z-]{1,8}: [ -~]{0,8}",
    ];
    let version = prop_oneof![Just("HTTP/1.1"), Just("HTTP/1.0"), Just("HTTP/2.0")];
    let newline = prop_oneof![Just("\r\n"), Just("\n")];
    (
        version,
        proptest::collection::vec((field, newline), 0..6),
        "[ -~]{0,6}",
    )
        .prop_map(|(v, fields, tail)| {
            let mut s = format!("POST /x {v}\r\n");
            for (f, nl) in fields {
                s.push_str(&f);
                s.push_str(nl);
            }
            s.push_str("\r\n");
            s.push_str(&tail);
            s.into_bytes()
        })
}

fn chunked_strategy() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just("5\r\nhello\r\n".to_owned()),
        Just("0\r\n\r\n".to_owned()),
        Just("0\r\nX-T: 1\r\n\r\n".to_owned()),
        Just("3;ext=v\r\nabc\r\n".to_owned()),
        Just("A \r\n0123456789\r\n".to_owned()),
        Just("ffffffffffffffffff\r\n".to_owned()),
        Just("3\nabc\n".to_owned()),
        Just("\r\n".to_owned()),
        Just("GET / HTTP/1.1\r\n\r\n".to_owned()),
        "[0-9a-fA-F]{1,3}\r\n[ -~]{0,12}\r\n",
        "[ -~\r\n]{0,6}",
    ];
    proptest::collection::vec(piece, 0..8).prop_map(|v| v.concat().into_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn request_heads_have_one_unambiguous_framing(input in head_strategy()) {
        invariants::check_request_head(&input);
    }

    #[test]
    fn arbitrary_bytes_never_break_head_parsing(input in proptest::collection::vec(any::<u8>(), 0..200)) {
        invariants::check_request_head(&input);
    }

    #[test]
    fn chunked_decoding_does_not_depend_on_how_bytes_arrive(input in chunked_strategy(), split in 0usize..200) {
        invariants::check_chunked(&input, split);
    }
}

/// A request built from pieces that stress framing: a head from [`head_strategy`], a body that
/// may or may not fit it, and a second request after it.
fn message_strategy() -> impl Strategy<Value = Vec<u8>> {
    (head_strategy(), chunked_strategy(), any::<bool>()).prop_map(|(head, body, second)| {
        let mut m = head;
        m.extend_from_slice(&body);
        if second {
            m.extend_from_slice(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
        }
        m
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    /// The differential oracle (hyper's server on the same bytes) on generated messages: jwtgate
    /// refuses, or reads what hyper reads.
    #[test]
    fn generated_messages_are_read_as_hyper_reads_them_or_refused(input in message_strategy()) {
        if let Err(e) = oracle::compare_requests(&input) {
            panic!("{e}\ninput: {:?}", String::from_utf8_lossy(&input));
        }
    }

    #[test]
    fn arbitrary_bytes_are_read_as_hyper_reads_them_or_refused(input in proptest::collection::vec(any::<u8>(), 0..120)) {
        let mut m = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        m.extend_from_slice(&input);
        if let Err(e) = oracle::compare_requests(&m) {
            panic!("{e}\ninput: {:?}", String::from_utf8_lossy(&m));
        }
    }
}

/// A JWK-shaped JSON value: the members a key has, each of a random shape.
fn jwk_strategy() -> impl Strategy<Value = serde_json::Value> {
    let text = prop_oneof![
        Just(serde_json::json!("")),
        Just(serde_json::json!("AA")),
        Just(serde_json::json!("AQAB")),
        "[A-Za-z0-9_=-]{0,400}".prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        Just(serde_json::Value::Null),
    ];
    (
        prop_oneof![Just("RSA"), Just("EC"), Just("OKP"), Just("oct"), Just("x")],
        prop_oneof![Just("P-256"), Just("P-384"), Just("P-521"), Just("Ed25519"), Just("X25519")],
        prop_oneof![Just(None), Just(Some("sig")), Just(Some("enc"))],
        prop_oneof![Just(None), Just(Some("RS256")), Just(Some("ES256")), Just(Some("EdDSA")), Just(Some("HS256"))],
        text.clone(),
        text.clone(),
        text,
    )
        .prop_map(|(kty, crv, usage, alg, a, b, c)| {
            let mut k = serde_json::json!({"kty": kty, "crv": crv, "n": a, "e": b, "x": a, "y": c, "kid": "k"});
            if let Some(u) = usage {
                k["use"] = serde_json::json!(u);
            }
            if let Some(a) = alg {
                k["alg"] = serde_json::json!(a);
            }
            k
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// A provider's JWKS and PEM readers take any bytes and any key shape without panicking,
    /// and whatever key they accept fits only the algorithms of its kind.
    #[test]
    fn hostile_jwks_documents_and_pem_files_never_panic(
        keys in proptest::collection::vec(jwk_strategy(), 0..4),
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        use jwtgate::auth::jwk;
        use jwtgate::config::Algorithm;
        let doc = serde_json::json!({ "keys": keys }).to_string();
        if let Ok((found, _)) = jwk::parse_jwks("i", doc.as_bytes()) {
            for k in &found {
                let kinds: Vec<_> = Algorithm::ALL.iter().filter(|a| k.fits(**a)).map(|a| a.key_kind()).collect();
                prop_assert!(!kinds.is_empty());
                prop_assert!(kinds.iter().all(|kind| *kind == kinds[0] && *kind != jwtgate::config::KeyKind::Secret));
                prop_assert!(!k.verify(Algorithm::RS256, b"x.y", &[0u8; 256]));
            }
        }
        let _ = jwk::parse_jwks("i", &bytes);
        let _ = jwk::parse_pem("i", &bytes);
        let mut pem = b"-----BEGIN PUBLIC KEY-----\n".to_vec();
        pem.extend(URL_SAFE_NO_PAD.encode(&bytes).replace(['-', '_'], "+").bytes());
        pem.extend(b"\n-----END PUBLIC KEY-----\n");
        let _ = jwk::parse_pem("i", &pem);
    }
}
