//! Tokens: finding the Bearer token in a request ([`bearer`]) and verifying it ([`Verifier`]).
//!
//! Verification is deliberately strict, because upstreams trust what comes out of it:
//!
//! * the token is refused before any decoding when longer than `auth.max_token_bytes`;
//! * exactly three base64url segments, canonical encoding, no padding;
//! * the header's `alg` must be one of `auth.algorithms` (never taken from the token alone, so
//!   `none` and algorithm confusion are impossible); a `crit` header is refused, because the
//!   gateway understands no extension;
//! * the HMAC is checked in constant time against the current key, then the previous one;
//! * header and claims must be JSON objects without duplicate names (parsers disagree on which
//!   duplicate wins);
//! * `exp` is required and must be a number; `nbf` and `iat`, when present, must be numbers;
//!   `exp`/`nbf` are checked with `auth.leeway`; `iss`/`aud` when configured;
//! * the user claim must be a non-empty string that is a safe header value.
//!
//! The signature check uses the RustCrypto `hmac`/`sha2` crates directly (the same ones
//! `jsonwebtoken`'s `rust_crypto` backend uses) so that each key's HMAC state is computed once per
//! configuration instead of once per request; `jsonwebtoken` signs tokens (`jwtgate token`) and is
//! the cross-check in the tests.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use http::header::HeaderValue;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};
use sha2::{Sha256, Sha384, Sha512};

use crate::auth::cache::TokenCache;
use crate::auth::keys::Keys;
use crate::config::AuthConfig;
use crate::wire::Header;

/// The algorithms jwtgate verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC with SHA-256.
    HS256,
    /// HMAC with SHA-384.
    HS384,
    /// HMAC with SHA-512.
    HS512,
}

impl Algorithm {
    /// Parses the exact JOSE name (`HS256`, ...). Case matters, as in RFC 7518.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "HS256" => Some(Algorithm::HS256),
            "HS384" => Some(Algorithm::HS384),
            "HS512" => Some(Algorithm::HS512),
            _ => None,
        }
    }

    /// The JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
        }
    }

    /// The same algorithm as `jsonwebtoken` names it.
    pub fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            Algorithm::HS256 => jsonwebtoken::Algorithm::HS256,
            Algorithm::HS384 => jsonwebtoken::Algorithm::HS384,
            Algorithm::HS512 => jsonwebtoken::Algorithm::HS512,
        }
    }
}

/// Why a token was refused. Each has a stable `reason` (metrics, logs) and a `description` for
/// the client that never contains any part of the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// More than one `Authorization` header, or a Bearer credential that is not one token.
    BadCredentials,
    /// Longer than `auth.max_token_bytes`.
    TooLarge,
    /// Not three canonical base64url segments of JSON objects.
    Malformed,
    /// A duplicate name in the header or the claims.
    DuplicateMember,
    /// `alg` missing or not in `auth.algorithms`.
    AlgorithmNotAllowed,
    /// A `crit` header parameter.
    UnsupportedCritical,
    /// The signature does not match any configured key.
    BadSignature,
    /// No `exp` claim.
    MissingExp,
    /// `exp`, `nbf` or `iat` is not a number.
    BadTimeClaim,
    /// `exp` is past (beyond the leeway).
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// `iss` missing or not the configured issuer.
    WrongIssuer,
    /// `aud` missing or none of the configured audiences.
    WrongAudience,
    /// The user claim is missing.
    MissingUser,
    /// The user claim is not a non-empty string usable as a header value.
    BadUser,
}

impl TokenError {
    /// Short, stable reason for metrics and logs.
    pub fn reason(self) -> &'static str {
        match self {
            TokenError::BadCredentials => "bad_credentials",
            TokenError::TooLarge => "too_large",
            TokenError::Malformed => "malformed",
            TokenError::DuplicateMember => "duplicate_member",
            TokenError::AlgorithmNotAllowed => "algorithm_not_allowed",
            TokenError::UnsupportedCritical => "unsupported_crit",
            TokenError::BadSignature => "bad_signature",
            TokenError::MissingExp => "missing_exp",
            TokenError::BadTimeClaim => "bad_time_claim",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::WrongIssuer => "wrong_issuer",
            TokenError::WrongAudience => "wrong_audience",
            TokenError::MissingUser => "missing_user",
            TokenError::BadUser => "bad_user",
        }
    }

    /// Human-readable description for `error_description` (RFC 6750 §3).
    pub fn description(self) -> &'static str {
        match self {
            TokenError::BadCredentials => "malformed Authorization header",
            TokenError::TooLarge => "token too large",
            TokenError::Malformed => "malformed token",
            TokenError::DuplicateMember => "duplicate member in token",
            TokenError::AlgorithmNotAllowed => "token algorithm not allowed",
            TokenError::UnsupportedCritical => "unsupported critical header",
            TokenError::BadSignature => "invalid signature",
            TokenError::MissingExp => "token has no exp claim",
            TokenError::BadTimeClaim => "exp, nbf or iat claim is not a number",
            TokenError::Expired => "token expired",
            TokenError::NotYetValid => "token not yet valid",
            TokenError::WrongIssuer => "wrong issuer",
            TokenError::WrongAudience => "wrong audience",
            TokenError::MissingUser => "token has no user claim",
            TokenError::BadUser => "user claim is not a valid user name",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
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

/// What a verified token says: the caller and the claims passed on.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The user claim, ready to be the `user_header` value.
    pub user: HeaderValue,
    /// One entry per `auth.claim_headers` entry, in config order: the header value, or `None`
    /// when the token does not carry that claim as a string, number or boolean.
    pub claim_values: Vec<Option<HeaderValue>>,
    /// All claims, for `require`.
    pub claims: Map<String, Value>,
    /// `exp` as Unix seconds.
    pub exp: f64,
}

enum Key {
    HS256(Hmac<Sha256>),
    HS384(Hmac<Sha384>),
    HS512(Hmac<Sha512>),
}

impl Key {
    fn new(alg: Algorithm, secret: &[u8]) -> Key {
        // `new_from_slice` accepts keys of any length for HMAC, so these cannot fail; the
        // fallback to an empty-keyed MAC is unreachable, and is anyway never a usable key
        // because keys.rs refuses secrets shorter than 32 bytes.
        match alg {
            Algorithm::HS256 => Key::HS256(
                Hmac::new_from_slice(secret).unwrap_or_else(|_| Hmac::new(&Default::default())),
            ),
            Algorithm::HS384 => Key::HS384(
                Hmac::new_from_slice(secret).unwrap_or_else(|_| Hmac::new(&Default::default())),
            ),
            Algorithm::HS512 => Key::HS512(
                Hmac::new_from_slice(secret).unwrap_or_else(|_| Hmac::new(&Default::default())),
            ),
        }
    }

    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        fn check<M: Mac + Clone>(mac: &M, message: &[u8], signature: &[u8]) -> bool {
            let mut mac = mac.clone();
            mac.update(message);
            mac.verify_slice(signature).is_ok()
        }
        match self {
            Key::HS256(m) => check(m, message, signature),
            Key::HS384(m) => check(m, message, signature),
            Key::HS512(m) => check(m, message, signature),
        }
    }
}

/// Verifies tokens for one configuration and key set. Built once per (re)load.
pub struct Verifier {
    /// (algorithm, keys in order current then previous)
    keys: Vec<(Algorithm, Vec<Key>)>,
    leeway: f64,
    issuer: Option<String>,
    audience: Vec<String>,
    user_claim: String,
    claim_names: Vec<String>,
    max_token_bytes: usize,
    cache: Option<TokenCache>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("Verifier")
            .field(
                "algorithms",
                &self.keys.iter().map(|(a, _)| a.name()).collect::<Vec<_>>(),
            )
            .field("leeway", &self.leeway)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("user_claim", &self.user_claim)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Builds a verifier for `auth` with `keys`.
    pub fn new(auth: &AuthConfig, keys: &Keys) -> Verifier {
        let keys = auth
            .algorithms
            .iter()
            .map(|&alg| {
                let ks = keys.verifying().map(|k| Key::new(alg, k)).collect();
                (alg, ks)
            })
            .collect();
        Verifier {
            keys,
            leeway: auth.leeway.as_secs_f64(),
            issuer: auth.issuer.clone(),
            audience: auth.audience.clone(),
            user_claim: auth.user_claim.clone(),
            claim_names: auth.claim_headers.iter().map(|(c, _)| c.clone()).collect(),
            max_token_bytes: auth.max_token_bytes,
            cache: TokenCache::new(auth.token_cache),
        }
    }

    /// Verifies `token` at the current time, through the verified-token cache.
    pub fn verify(&self, token: &str) -> Result<Arc<Identity>, TokenError> {
        let now = now();
        let Some(cache) = &self.cache else {
            return self.verify_at(token, now).map(Arc::new);
        };
        if token.len() > self.max_token_bytes {
            return Err(TokenError::TooLarge);
        }
        if let Some(identity) = cache.get(token, now) {
            return Ok(identity);
        }
        let identity = Arc::new(self.verify_at(token, now)?);
        cache.insert(token, identity.clone(), identity.exp + self.leeway, now);
        Ok(identity)
    }

    /// The verified-token cache, if enabled.
    pub fn cache(&self) -> Option<&TokenCache> {
        self.cache.as_ref()
    }

    /// Verifies `token` as of `now` (Unix seconds).
    pub fn verify_at(&self, token: &str, now: f64) -> Result<Identity, TokenError> {
        if token.len() > self.max_token_bytes {
            return Err(TokenError::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(h64), Some(p64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header = decode_object(h64)?;
        let alg = match header.get("alg") {
            Some(Value::String(name)) => name.as_str(),
            _ => return Err(TokenError::AlgorithmNotAllowed),
        };
        let Some((_, keys)) = self.keys.iter().find(|(a, _)| a.name() == alg) else {
            return Err(TokenError::AlgorithmNotAllowed);
        };
        if header.contains_key("crit") {
            return Err(TokenError::UnsupportedCritical);
        }
        let signature = URL_SAFE_NO_PAD
            .decode(s64)
            .map_err(|_| TokenError::Malformed)?;
        let signed = &token.as_bytes()[..h64.len() + 1 + p64.len()];
        if !keys.iter().any(|k| k.verify(signed, &signature)) {
            return Err(TokenError::BadSignature);
        }
        // Only now, with the signature checked, are the claims worth reading.
        let claims = decode_object(p64)?;
        self.check_claims(claims, now)
    }

    fn check_claims(&self, claims: Map<String, Value>, now: f64) -> Result<Identity, TokenError> {
        let time = |name: &str| match claims.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_f64().map(Some).ok_or(TokenError::BadTimeClaim),
            Some(_) => Err(TokenError::BadTimeClaim),
        };
        let exp = time("exp")?.ok_or(TokenError::MissingExp)?;
        let nbf = time("nbf")?;
        time("iat")?;
        // RFC 7519 §4.1.4: the token must not be accepted "on or after" exp.
        if now >= exp + self.leeway {
            return Err(TokenError::Expired);
        }
        if nbf.is_some_and(|nbf| now + self.leeway < nbf) {
            return Err(TokenError::NotYetValid);
        }
        if let Some(want) = &self.issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(want.as_str()) {
                return Err(TokenError::WrongIssuer);
            }
        }
        if !self.audience.is_empty() {
            let ok = match claims.get("aud") {
                Some(Value::String(a)) => self.audience.iter().any(|w| w == a),
                Some(Value::Array(list)) => list.iter().any(|a| {
                    a.as_str()
                        .is_some_and(|a| self.audience.iter().any(|w| w == a))
                }),
                _ => false,
            };
            if !ok {
                return Err(TokenError::WrongAudience);
            }
        }
        let user = match claims.get(&self.user_claim) {
            None | Some(Value::Null) => return Err(TokenError::MissingUser),
            Some(Value::String(s)) => header_value(s).ok_or(TokenError::BadUser)?,
            Some(_) => return Err(TokenError::BadUser),
        };
        let claim_values = self
            .claim_names
            .iter()
            .map(|name| match claims.get(name) {
                Some(Value::String(s)) => header_value(s),
                Some(v @ (Value::Number(_) | Value::Bool(_))) => header_value(&v.to_string()),
                _ => None,
            })
            .collect();
        Ok(Identity {
            user,
            claim_values,
            claims,
            exp,
        })
    }
}

/// Current time as Unix seconds.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A value an upstream reads back exactly: printable ASCII, no leading or trailing space
/// (which header parsers would trim, turning `" admin"` into `"admin"`).
fn header_value(s: &str) -> Option<HeaderValue> {
    let ok = !s.is_empty()
        && s.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !s.starts_with(' ')
        && !s.ends_with(' ');
    if ok {
        HeaderValue::from_str(s).ok()
    } else {
        None
    }
}

fn decode_object(segment: &str) -> Result<Map<String, Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Malformed)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const KEY: &str = "0123456789abcdef0123456789abcdef-test-key";
    const OLD: &str = "fedcba9876543210fedcba9876543210-old-key";
    const NOW: f64 = 1_700_000_000.0;

    fn verifier(extra_auth: &str) -> Verifier {
        let cfg = Config::from_toml(&format!(
            "[auth]\n{extra_auth}\n[[route]]\npath=\"/\"\nupstream=\"http://127.0.0.1:1\""
        ))
        .unwrap();
        Verifier::new(&cfg.auth, &Keys::from_secrets(KEY, Some(OLD)))
    }

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    /// Signs raw header and claims JSON with HMAC (so tests can build what libraries refuse to).
    fn raw(header: &str, claims: &str, key: &str) -> String {
        let msg = format!("{}.{}", b64(header), b64(claims));
        let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(msg.as_bytes());
        format!(
            "{msg}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    fn jwt(claims: serde_json::Value, alg: jsonwebtoken::Algorithm, key: &str) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(alg),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
        )
        .unwrap()
    }

    fn hs256(claims: serde_json::Value) -> String {
        jwt(claims, jsonwebtoken::Algorithm::HS256, KEY)
    }

    const H: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

    #[test]
    fn accepts_a_token_like_the_auth_service_issues() {
        let id = verifier("")
            .verify_at(
                &hs256(serde_json::json!({"sub": "alice", "exp": NOW + 1800.0})),
                NOW,
            )
            .unwrap();
        assert_eq!(id.user, "alice");
    }

    #[test]
    fn previous_key_verifies_too() {
        let t = jwt(
            serde_json::json!({"sub": "bob", "exp": NOW + 60.0}),
            jsonwebtoken::Algorithm::HS256,
            OLD,
        );
        assert_eq!(verifier("").verify_at(&t, NOW).unwrap().user, "bob");
    }

    #[test]
    fn refusals_have_the_right_reason() {
        let v = verifier("");
        let exp = NOW + 60.0;
        let cases: Vec<(String, TokenError)> = vec![
            (
                jwt(
                    serde_json::json!({"sub":"a","exp":exp}),
                    jsonwebtoken::Algorithm::HS256,
                    "another-key-another-key-another-key!",
                ),
                TokenError::BadSignature,
            ),
            (
                jwt(
                    serde_json::json!({"sub":"a","exp":exp}),
                    jsonwebtoken::Algorithm::HS512,
                    KEY,
                ),
                TokenError::AlgorithmNotAllowed,
            ),
            (
                format!(
                    "{}.{}.",
                    b64(r#"{"alg":"none"}"#),
                    b64(r#"{"sub":"a","exp":1e12}"#)
                ),
                TokenError::AlgorithmNotAllowed,
            ),
            (
                format!(
                    "{}.{}.",
                    b64(r#"{"alg":"None"}"#),
                    b64(r#"{"sub":"a","exp":1e12}"#)
                ),
                TokenError::AlgorithmNotAllowed,
            ),
            (
                format!(
                    "{}.{}.",
                    b64(r#"{"alg":"hs256"}"#),
                    b64(r#"{"sub":"a","exp":1e12}"#)
                ),
                TokenError::AlgorithmNotAllowed,
            ),
            (
                raw(r#"{"typ":"JWT"}"#, r#"{"sub":"a","exp":1e12}"#, KEY),
                TokenError::AlgorithmNotAllowed,
            ),
            (
                raw(
                    r#"{"alg":"HS256","crit":["exp"]}"#,
                    r#"{"sub":"a","exp":1e12}"#,
                    KEY,
                ),
                TokenError::UnsupportedCritical,
            ),
            (raw(H, r#"{"sub":"a"}"#, KEY), TokenError::MissingExp),
            (
                raw(H, r#"{"sub":"a","exp":"99999999999"}"#, KEY),
                TokenError::BadTimeClaim,
            ),
            (
                raw(H, r#"{"sub":"a","exp":null}"#, KEY),
                TokenError::BadTimeClaim,
            ),
            (
                raw(H, &format!(r#"{{"sub":"a","exp":{exp},"nbf":"0"}}"#), KEY),
                TokenError::BadTimeClaim,
            ),
            (
                raw(H, &format!(r#"{{"sub":"a","exp":{exp},"iat":[1]}}"#), KEY),
                TokenError::BadTimeClaim,
            ),
            (
                raw(H, &format!(r#"{{"sub":"a","exp":{}}}"#, NOW - 31.0), KEY),
                TokenError::Expired,
            ),
            (
                raw(
                    H,
                    &format!(r#"{{"sub":"a","exp":{exp},"nbf":{}}}"#, NOW + 31.0),
                    KEY,
                ),
                TokenError::NotYetValid,
            ),
            (
                raw(H, &format!(r#"{{"exp":{exp}}}"#), KEY),
                TokenError::MissingUser,
            ),
            (
                raw(H, &format!(r#"{{"sub":null,"exp":{exp}}}"#), KEY),
                TokenError::MissingUser,
            ),
            (
                raw(H, &format!(r#"{{"sub":"","exp":{exp}}}"#), KEY),
                TokenError::BadUser,
            ),
            (
                raw(H, &format!(r#"{{"sub":42,"exp":{exp}}}"#), KEY),
                TokenError::BadUser,
            ),
            (
                raw(H, &format!(r#"{{"sub":["a"],"exp":{exp}}}"#), KEY),
                TokenError::BadUser,
            ),
            (
                raw(
                    H,
                    &format!(r#"{{"sub":"a\r\nX-Auth-User: root","exp":{exp}}}"#),
                    KEY,
                ),
                TokenError::BadUser,
            ),
            (
                raw(H, &format!(r#"{{"sub":" admin","exp":{exp}}}"#), KEY),
                TokenError::BadUser,
            ),
            (
                raw(
                    H,
                    &format!(r#"{{"sub":"alice","sub":"admin","exp":{exp}}}"#),
                    KEY,
                ),
                TokenError::DuplicateMember,
            ),
            (
                raw(
                    r#"{"alg":"HS256","alg":"none"}"#,
                    &format!(r#"{{"sub":"a","exp":{exp}}}"#),
                    KEY,
                ),
                TokenError::DuplicateMember,
            ),
            (raw(H, "[1,2]", KEY), TokenError::Malformed),
            ("not.a.jwt".into(), TokenError::Malformed),
            ("a.b".into(), TokenError::Malformed),
            ("a.b.c.d".into(), TokenError::Malformed),
            ("".into(), TokenError::Malformed),
            ("x".repeat(9000), TokenError::TooLarge),
        ];
        for (token, want) in cases {
            assert_eq!(v.verify_at(&token, NOW).err(), Some(want), "token {token}");
        }
    }

    #[test]
    fn tampered_payload_fails_the_signature() {
        let good = hs256(serde_json::json!({"sub": "alice", "exp": NOW + 60.0}));
        let (h, rest) = good.split_once('.').unwrap();
        let (_, s) = rest.split_once('.').unwrap();
        let forged = format!(
            "{h}.{}.{s}",
            b64(&format!(r#"{{"sub":"admin","exp":{}}}"#, NOW + 60.0))
        );
        assert_eq!(
            verifier("").verify_at(&forged, NOW).err(),
            Some(TokenError::BadSignature)
        );
    }

    #[test]
    fn padded_or_non_canonical_base64_is_malformed() {
        let good = hs256(serde_json::json!({"sub": "alice", "exp": NOW + 60.0}));
        let v = verifier("");
        assert!(v.verify_at(&good, NOW).is_ok());
        assert_eq!(
            v.verify_at(&format!("{good}="), NOW).err(),
            Some(TokenError::Malformed)
        );
        // A 32-byte signature is 43 characters; the last one carries 4 bits and 2 unused ones.
        // Setting an unused bit decodes to the same bytes, so only a strict decoder notices.
        let (head, last) = good.split_at(good.len() - 1);
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let i = alphabet
            .iter()
            .position(|&c| c == last.as_bytes()[0])
            .unwrap();
        let twin = format!("{head}{}", alphabet[i ^ 1] as char);
        assert_eq!(v.verify_at(&twin, NOW).err(), Some(TokenError::Malformed));
    }

    #[test]
    fn expiry_is_exclusive_with_leeway() {
        let v = verifier("leeway = \"0s\"");
        let t = hs256(serde_json::json!({"sub": "a", "exp": NOW}));
        assert_eq!(v.verify_at(&t, NOW).err(), Some(TokenError::Expired));
        assert!(v.verify_at(&t, NOW - 1.0).is_ok());
        let t = hs256(serde_json::json!({"sub": "a", "exp": NOW - 10.0}));
        assert!(verifier("leeway = \"30s\"").verify_at(&t, NOW).is_ok());
    }

    #[test]
    fn issuer_and_audience_when_configured() {
        let v = verifier("issuer = \"https://auth\"\naudience = [\"orders\", \"billing\"]");
        let ok = hs256(
            serde_json::json!({"sub":"a","exp":NOW+60.0,"iss":"https://auth","aud":["x","billing"]}),
        );
        assert!(v.verify_at(&ok, NOW).is_ok());
        let ok = hs256(
            serde_json::json!({"sub":"a","exp":NOW+60.0,"iss":"https://auth","aud":"orders"}),
        );
        assert!(v.verify_at(&ok, NOW).is_ok());
        let t = hs256(
            serde_json::json!({"sub":"a","exp":NOW+60.0,"iss":"https://evil","aud":"orders"}),
        );
        assert_eq!(v.verify_at(&t, NOW).err(), Some(TokenError::WrongIssuer));
        let t = hs256(serde_json::json!({"sub":"a","exp":NOW+60.0,"iss":"https://auth"}));
        assert_eq!(v.verify_at(&t, NOW).err(), Some(TokenError::WrongAudience));
        let t =
            hs256(serde_json::json!({"sub":"a","exp":NOW+60.0,"iss":"https://auth","aud":["x"]}));
        assert_eq!(v.verify_at(&t, NOW).err(), Some(TokenError::WrongAudience));
        // Not configured: not checked.
        let t = hs256(serde_json::json!({"sub":"a","exp":NOW+60.0,"iss":"whoever","aud":"x"}));
        assert!(verifier("").verify_at(&t, NOW).is_ok());
    }

    #[test]
    fn claim_headers_take_scalars() {
        let v = verifier(
            "claim_headers = { role = \"X-Role\", level = \"X-Level\", groups = \"X-Groups\" }",
        );
        let t = hs256(
            serde_json::json!({"sub":"a","exp":NOW+60.0,"role":"admin","level":3,"groups":["a"]}),
        );
        let id = v.verify_at(&t, NOW).unwrap();
        // BTreeMap order: groups, level, role
        assert_eq!(
            id.claim_values,
            vec![
                None,
                Some(HeaderValue::from_static("3")),
                Some(HeaderValue::from_static("admin"))
            ]
        );
    }

    #[test]
    fn the_cache_holds_only_verified_tokens_and_honours_expiry() {
        let v = verifier("leeway = \"0s\"");
        let cache = v.cache().expect("on by default");
        let now = super::now();
        for i in 0..500 {
            let bad = jwt(
                serde_json::json!({"sub": format!("u{i}"), "exp": now + 60.0}),
                jsonwebtoken::Algorithm::HS256,
                "a-wrong-key-a-wrong-key-a-wrong-key!",
            );
            assert!(v.verify(&bad).is_err());
        }
        assert_eq!(cache.len(), 0, "refused tokens were cached");
        let good = hs256(serde_json::json!({"sub": "alice", "exp": now + 2.0}));
        assert_eq!(v.verify(&good).unwrap().user, "alice");
        assert_eq!(cache.len(), 1);
        assert_eq!(v.verify(&good).unwrap().user, "alice");
        std::thread::sleep(std::time::Duration::from_millis(2100));
        assert_eq!(
            v.verify(&good).err(),
            Some(TokenError::Expired),
            "a cached token outlived its exp"
        );
        assert_eq!(cache.len(), 0);
    }

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
