//! Verifying a token ([`Verifier`]): deliberately strict, because upstreams trust what comes out
//! of it:
//!
//! * the token is refused before any decoding when longer than `auth.max_token_bytes`;
//! * exactly three base64url segments, canonical encoding, no padding ([`super::jwt`]);
//! * the header's `alg` must be one of `auth.algorithms` (never taken from the token alone, so
//!   `none` and algorithm confusion are impossible); a `crit` header is refused, because the
//!   gateway understands no extension;
//! * the HMAC is checked in constant time against the current key, then the previous one;
//! * header and claims must be JSON objects without duplicate names;
//! * `exp` is required and must be a number; `nbf` and `iat`, when present, must be numbers;
//!   `exp`/`nbf` are checked with `auth.leeway`; `iss`/`aud` when configured;
//! * the user claim must be a non-empty string that is a safe header value.
//!
//! The signature check uses the RustCrypto `hmac`/`sha2` crates directly (the same ones
//! `jsonwebtoken`'s `rust_crypto` backend uses) so that each key's HMAC state is computed once per
//! key set instead of once per request; `jsonwebtoken` signs tokens (`jwtgate token`) and is
//! the cross-check in the tests.
//!
//! Verified tokens are remembered ([`super::cache`]). The cache outlives a reload when nothing
//! that shapes an identity changed (leeway, issuer, audience, user and claim names, limits), and
//! each entry remembers the key that verified it: an entry is used only while that key (and its
//! algorithm) is still configured, so a key dropped from the set stops every token it verified.

mod claims;
mod error;
mod hmac;

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{HeaderName, HeaderValue};
use serde_json::{Map, Value};

pub use error::TokenError;

use super::cache::{KeyId, TokenCache};
use super::jwt;
use super::keys::Keys;
use super::provider::ProviderKeys;
use crate::config::{Algorithm, AuthConfig, ClaimPath};
use hmac::Key;

/// What a verified token says: the caller and the claims passed on.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The user claim, ready to be the `user_header` value.
    pub user: HeaderValue,
    /// One entry per `auth.claim_header_names()` header, in order: the header value, or `None`
    /// when the token does not carry that claim or carries it in a form that cannot be passed
    /// without ambiguity (then in `left_out`).
    pub claim_values: Vec<Option<HeaderValue>>,
    /// The issuer that vouched for the user, for `auth.issuer_header`: written whenever
    /// providers are configured (the shared secret's is `auth.issuer`, or empty).
    pub issuer: Option<HeaderValue>,
    /// Claims left out because their values are ambiguous, as (claim path, why): logged with
    /// each request.
    pub left_out: claims::LeftOut,
    /// All claims, for `require` and the assertion.
    pub claims: Map<String, Value>,
    /// The signed assertions made for this identity (see [`crate::auth::assertion`]).
    pub assertions: crate::auth::assertion::Memo,
    /// `exp` as Unix seconds.
    pub exp: f64,
}

/// How one issuer's tokens become identities: the checks besides the signature.
#[derive(Debug, Clone, PartialEq)]
struct Rules {
    /// Required `iss` (the provider's issuer; `auth.issuer` for the shared secret).
    issuer: Option<String>,
    audience: Vec<String>,
    user_claim: ClaimPath,
    /// `user_claim`'s text, for the refusals that name it.
    user_name: &'static str,
    /// The claim behind each of `auth.claim_header_names()`, in that order (`None`: this
    /// issuer writes nothing there).
    claim_names: Vec<Option<ClaimPath>>,
    /// The `auth.issuer_header` value of this issuer's identities (`None`: no providers, no
    /// header).
    issuer_value: Option<HeaderValue>,
}

impl Rules {
    fn new(
        issuer: Option<&str>,
        issuer_value: Option<&str>,
        audience: &[String],
        user_claim: &ClaimPath,
        claims: &[(ClaimPath, HeaderName)],
        headers: &[HeaderName],
    ) -> Rules {
        Rules {
            issuer: issuer.map(str::to_owned),
            audience: audience.to_vec(),
            user_claim: user_claim.clone(),
            user_name: error::intern(user_claim.as_str()),
            // Validation made sure every issuer is a header value.
            issuer_value: issuer_value.and_then(|v| HeaderValue::from_str(v).ok()),
            claim_names: headers
                .iter()
                .map(|h| claims.iter().find(|(_, n)| n == h).map(|(c, _)| c.clone()))
                .collect(),
        }
    }
}

/// What an identity depends on besides the key: when all of it is unchanged by a reload, the
/// verified-token cache is kept.
#[derive(Debug, Clone, PartialEq)]
struct Shape {
    leeway: f64,
    /// `auth.max_token_lifetime` in seconds.
    max_lifetime: Option<f64>,
    /// `auth.claim_separator`.
    separator: String,
    shared: Rules,
    /// Each provider's algorithms and rules, in config order.
    providers: Vec<(Vec<Algorithm>, Rules)>,
    max_token_bytes: usize,
    cache_entries: usize,
}

/// Verifies tokens for one configuration and key set. Built once per (re)load.
pub struct Verifier {
    /// (algorithm, keys in order current then previous); the lists are empty when the shared
    /// secret is off (providers configured and no `JWT_SECRET_KEY`).
    keys: Vec<(Algorithm, Vec<Key>)>,
    shared_on: bool,
    /// Each provider's keys, in the order of `shape.providers`.
    providers: Vec<Arc<ProviderKeys>>,
    shape: Shape,
    cache: Option<Arc<TokenCache>>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("Verifier")
            .field(
                "algorithms",
                &self.keys.iter().map(|(a, _)| a.name()).collect::<Vec<_>>(),
            )
            .field("shape", &self.shape)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Builds a verifier for `auth` with `keys`, with an empty cache (no providers' keys).
    pub fn new(auth: &AuthConfig, keys: &Keys) -> Verifier {
        Verifier::build(auth, keys, &[], None)
    }

    /// Builds a verifier for `auth` with `keys` and the keys of `auth.providers` (in order; a
    /// provider missing from `providers` has none), keeping `previous`'s verified-token cache
    /// when nothing that shapes an identity changed (see the module docs).
    pub fn build(
        auth: &AuthConfig,
        keys: &Keys,
        providers: &[Arc<ProviderKeys>],
        previous: Option<&Verifier>,
    ) -> Verifier {
        let shared_on = keys.verifying().next().is_some();
        let keys = auth
            .algorithms
            .iter()
            .map(|&alg| {
                let ks = keys
                    .verifying()
                    .map(|(kid, k)| Key::new(alg, kid, k))
                    .collect();
                (alg, ks)
            })
            .collect();
        let headers = auth.claim_header_names();
        // With providers, every identity names its issuer; the shared secret's is
        // `auth.issuer`, or empty.
        let named = !auth.providers.is_empty();
        let shape = Shape {
            leeway: auth.leeway.as_secs_f64(),
            max_lifetime: auth.max_token_lifetime.map(|d| d.as_secs_f64()),
            separator: auth.claim_separator.clone(),
            shared: Rules::new(
                auth.issuer.as_deref(),
                named.then(|| auth.issuer.as_deref().unwrap_or("")),
                &auth.audience,
                &auth.user_claim,
                &auth.claim_headers,
                &headers,
            ),
            providers: auth
                .providers
                .iter()
                .map(|p| {
                    let rules = Rules::new(
                        Some(&p.issuer),
                        Some(&p.issuer),
                        &p.audience,
                        &p.user_claim,
                        &p.claim_headers,
                        &headers,
                    );
                    (p.algorithms.clone(), rules)
                })
                .collect(),
            max_token_bytes: auth.max_token_bytes,
            cache_entries: auth.token_cache,
        };
        let providers = auth
            .providers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                providers
                    .get(i)
                    .filter(|k| k.issuer == p.issuer)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(ProviderKeys::unavailable(&p.issuer)))
            })
            .collect();
        let cache = match previous {
            Some(p) if p.shape == shape => p.cache.clone(),
            _ => TokenCache::new(auth.token_cache).map(Arc::new),
        };
        Verifier {
            keys,
            shared_on,
            providers,
            shape,
            cache,
        }
    }

    /// Waits until provider `provider` has fetched since `seen` (what
    /// [`TokenError::UnknownKeyFetching`] carries): the fetch under way, or the next one the
    /// rate limit allows; at most `limit`.
    pub async fn wait_for_keys(&self, provider: usize, seen: u64, limit: std::time::Duration) {
        if let Some(p) = self.providers.get(provider) {
            p.wait_fetch(seen, limit).await;
        }
    }

    /// Verifies `token` at the current time, through the verified-token cache.
    pub fn verify(&self, token: &str) -> Result<Arc<Identity>, TokenError> {
        let now = now();
        let Some(cache) = &self.cache else {
            return self.verify_at(token, now).map(Arc::new);
        };
        if token.len() > self.shape.max_token_bytes {
            return Err(TokenError::TooLarge);
        }
        if let Some((identity, key)) = cache.get(token, now) {
            if self.has_key(key) {
                return Ok(identity);
            }
            // Verified by a key that is gone: verify again (and fail, unless another key
            // that is still here signed the same bytes).
            cache.remove(token);
        }
        let (identity, key) = self.verify_token(token, now)?;
        let identity = Arc::new(identity);
        cache.insert(
            token,
            identity.clone(),
            identity.exp + self.shape.leeway,
            key,
        );
        Ok(identity)
    }

    /// The verified-token cache, if enabled.
    pub fn cache(&self) -> Option<&TokenCache> {
        self.cache.as_deref()
    }

    fn has_key(&self, id: KeyId) -> bool {
        self.keys
            .iter()
            .any(|(_, ks)| ks.iter().any(|k| k.id == id))
            || self.providers.iter().any(|p| p.has(id))
    }

    /// Verifies `token` as of `now` (Unix seconds), without the cache.
    pub fn verify_at(&self, token: &str, now: f64) -> Result<Identity, TokenError> {
        self.verify_token(token, now).map(|(identity, _)| identity)
    }

    /// The identity, and the key that verified it.
    fn verify_token(&self, token: &str, now: f64) -> Result<(Identity, KeyId), TokenError> {
        if token.len() > self.shape.max_token_bytes {
            return Err(TokenError::TooLarge);
        }
        let parts = jwt::segments(token)?;
        let header = jwt::decode_object(parts.header)?;
        let alg = match header.get("alg") {
            Some(Value::String(name)) => name.as_str(),
            _ => return Err(TokenError::AlgorithmNotAllowed),
        };
        if self.providers.is_empty() {
            let key = self.shared_key(&header, alg, &parts)?;
            // Only now, with the signature checked, are the claims worth reading.
            let claims = jwt::decode_object(parts.claims)?;
            return Ok((self.check_claims(&self.shape.shared, claims, now)?, key));
        }
        // With providers, the claims are read first: their `iss` picks the keys. A token that
        // names a provider's issuer is verified by that provider only; any other token is a
        // shared-secret token.
        let claims = jwt::decode_object(parts.claims)?;
        let provider = match claims.get("iss") {
            Some(Value::String(iss)) => self
                .shape
                .providers
                .iter()
                .position(|(_, rules)| rules.issuer.as_deref() == Some(iss.as_str())),
            _ => None,
        };
        let (key, rules) = match provider {
            Some(i) => (
                self.provider_key(i, &header, alg, &parts)?,
                &self.shape.providers[i].1,
            ),
            // No provider has this issuer and there is no shared secret.
            None if !self.shared_on => return Err(TokenError::WrongIssuer),
            None => (self.shared_key(&header, alg, &parts)?, &self.shape.shared),
        };
        Ok((self.check_claims(rules, claims, now)?, key))
    }

    /// The shared-secret key that signed the token.
    fn shared_key(
        &self,
        header: &Map<String, Value>,
        alg: &str,
        parts: &jwt::Segments<'_>,
    ) -> Result<KeyId, TokenError> {
        let Some((_, keys)) = self.keys.iter().find(|(a, _)| a.name() == alg) else {
            return Err(TokenError::AlgorithmNotAllowed);
        };
        if header.contains_key("crit") {
            return Err(TokenError::UnsupportedCritical);
        }
        let signature = jwt::decode_segment(parts.signature)?;
        // With a key ring, a token's `kid` selects its key, and only that one is tried; a
        // token without one is tried with every key. The single keys have no `kid`: a token's
        // is not looked at.
        let ring = keys.first().is_some_and(|k| k.kid.is_some());
        let kid = match header.get("kid") {
            _ if !ring => None,
            None => None,
            Some(Value::String(kid)) => Some(kid.as_str()),
            Some(_) => return Err(TokenError::Malformed),
        };
        if let Some(kid) = kid {
            if !keys.iter().any(|k| k.kid.as_deref() == Some(kid)) {
                return Err(TokenError::UnknownKey);
            }
        }
        keys.iter()
            .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
            .find(|k| k.verify(parts.signed, &signature))
            .map(|k| k.id)
            .ok_or(TokenError::BadSignature)
    }

    /// The key of provider `i` that signed the token: the algorithm must be one the provider
    /// lists, the key must fit it, and the token's `kid` selects the key (keys without a `kid`
    /// are tried for any token). An unknown `kid` asks for a refetch.
    fn provider_key(
        &self,
        i: usize,
        header: &Map<String, Value>,
        alg: &str,
        parts: &jwt::Segments<'_>,
    ) -> Result<KeyId, TokenError> {
        let Some(alg) = self.shape.providers[i]
            .0
            .iter()
            .copied()
            .find(|a| a.is_named(alg))
        else {
            return Err(TokenError::AlgorithmNotAllowed);
        };
        if header.contains_key("crit") {
            return Err(TokenError::UnsupportedCritical);
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.as_str()),
            Some(_) => return Err(TokenError::Malformed),
        };
        let signature = jwt::decode_segment(parts.signature)?;
        let provider = &self.providers[i];
        // The fetch count is read before the keys: a fetch that ends at any moment after this
        // is one the request sees (and waits for no longer).
        let seen = provider.fetches();
        let Some(keys) = provider.current() else {
            return Err(TokenError::KeysUnavailable);
        };
        let verified = keys
            .iter()
            .filter(|k| {
                k.fits(alg) && (kid.is_none() || k.kid.is_none() || k.kid.as_deref() == kid)
            })
            .find(|k| k.verify(alg, parts.signed, &signature));
        if let Some(k) = verified {
            return Ok(k.id);
        }
        match kid {
            // A `kid` no key has: the provider may have published it since the last fetch.
            Some(kid) if !keys.iter().any(|k| k.kid.as_deref() == Some(kid)) => {
                Err(if provider.refetch() || provider.fetches() > seen {
                    TokenError::UnknownKeyFetching { provider: i, seen }
                } else {
                    TokenError::UnknownKey
                })
            }
            _ => Err(TokenError::BadSignature),
        }
    }
}

/// Current time as Unix seconds.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use ::hmac::{Hmac, Mac};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use sha2::Sha256;

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

    #[test]
    fn a_key_ring_picks_the_key_by_kid_and_tries_every_key_without_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), KEY).unwrap();
        std::fs::write(dir.path().join("b"), OLD).unwrap();
        let keys = Keys::load(&crate::auth::keys::Env::from_pairs([(
            crate::auth::keys::DIR,
            dir.path().to_str().unwrap(),
        )]))
        .unwrap();
        let cfg =
            Config::from_toml("[[route]]\npath=\"/\"\nupstream=\"http://127.0.0.1:1\"").unwrap();
        let v = Verifier::new(&cfg.auth, &keys);
        let claims = r#"{"sub":"alice","exp":1800000000}"#;
        let user = |t: &str| {
            v.verify_at(t, NOW)
                .map(|i| i.user.to_str().unwrap().to_owned())
        };
        // The kid names the key: only it is tried.
        assert_eq!(
            user(&raw(r#"{"alg":"HS256","kid":"a"}"#, claims, KEY)).unwrap(),
            "alice"
        );
        assert_eq!(
            user(&raw(r#"{"alg":"HS256","kid":"b"}"#, claims, OLD)).unwrap(),
            "alice"
        );
        assert_eq!(
            user(&raw(r#"{"alg":"HS256","kid":"b"}"#, claims, KEY)).unwrap_err(),
            TokenError::BadSignature
        );
        // A kid the ring does not have, or one that is not a string.
        assert_eq!(
            user(&raw(r#"{"alg":"HS256","kid":"c"}"#, claims, KEY)).unwrap_err(),
            TokenError::UnknownKey
        );
        assert_eq!(
            user(&raw(r#"{"alg":"HS256","kid":1}"#, claims, KEY)).unwrap_err(),
            TokenError::Malformed
        );
        // Without a kid, every key of the ring.
        assert_eq!(
            user(&raw(r#"{"alg":"HS256"}"#, claims, KEY)).unwrap(),
            "alice"
        );
        assert_eq!(
            user(&raw(r#"{"alg":"HS256"}"#, claims, OLD)).unwrap(),
            "alice"
        );
        assert_eq!(
            user(&raw(
                r#"{"alg":"HS256"}"#,
                claims,
                "another-key-0123456789-0123456789"
            ))
            .unwrap_err(),
            TokenError::BadSignature
        );
        // A cached token does not outlive its kid: the file renamed (same secret), the token
        // naming the old name is refused, cache or not.
        let cached = Verifier::build(&cfg.auth, &keys, &[], None);
        let later = r#"{"sub":"alice","exp":4000000000}"#;
        let token = raw(r#"{"alg":"HS256","kid":"a"}"#, later, KEY);
        assert!(cached.verify(&token).is_ok());
        std::fs::rename(dir.path().join("a"), dir.path().join("c")).unwrap();
        let renamed = Keys::load(&crate::auth::keys::Env::from_pairs([(
            crate::auth::keys::DIR,
            dir.path().to_str().unwrap(),
        )]))
        .unwrap();
        let after = Verifier::build(&cfg.auth, &renamed, &[], Some(&cached));
        assert!(
            after.cache().is_some_and(|c| c.len() == 1),
            "the cache is kept"
        );
        assert_eq!(after.verify(&token).unwrap_err(), TokenError::UnknownKey);
        // The single keys have no kid: a token's is not looked at.
        let single = verifier("");
        assert!(single
            .verify_at(
                &raw(r#"{"alg":"HS256","kid":"whatever"}"#, claims, KEY),
                NOW
            )
            .is_ok());
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
                TokenError::MissingUser("sub"),
            ),
            (
                raw(H, &format!(r#"{{"sub":null,"exp":{exp}}}"#), KEY),
                TokenError::MissingUser("sub"),
            ),
            (
                raw(H, &format!(r#"{{"sub":"","exp":{exp}}}"#), KEY),
                TokenError::BadUser("sub"),
            ),
            (
                raw(H, &format!(r#"{{"sub":42,"exp":{exp}}}"#), KEY),
                TokenError::BadUser("sub"),
            ),
            (
                raw(H, &format!(r#"{{"sub":["a"],"exp":{exp}}}"#), KEY),
                TokenError::BadUser("sub"),
            ),
            (
                raw(
                    H,
                    &format!(r#"{{"sub":"a\r\nX-Auth-User: root","exp":{exp}}}"#),
                    KEY,
                ),
                TokenError::BadUser("sub"),
            ),
            (
                raw(H, &format!(r#"{{"sub":" admin","exp":{exp}}}"#), KEY),
                TokenError::BadUser("sub"),
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
    fn claim_headers_take_scalars_and_arrays_of_them() {
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
                Some(HeaderValue::from_static("a")),
                Some(HeaderValue::from_static("3")),
                Some(HeaderValue::from_static("admin"))
            ]
        );
    }

    #[test]
    fn the_cache_survives_a_key_reload_but_never_its_key() {
        let auth = |extra: &str| {
            Config::from_toml(&format!(
                "[auth]\n{extra}\n[[route]]\npath=\"/\"\nupstream=\"http://127.0.0.1:1\""
            ))
            .unwrap()
            .auth
        };
        let exp = super::now() + 600.0;
        let alice = hs256(serde_json::json!({"sub": "alice", "exp": exp}));
        let bob = jwt(
            serde_json::json!({"sub": "bob", "exp": exp}),
            jsonwebtoken::Algorithm::HS256,
            OLD,
        );
        let v1 = Verifier::new(&auth(""), &Keys::from_secrets(KEY, Some(OLD)));
        assert_eq!(v1.verify(&alice).unwrap().user, "alice");
        assert_eq!(v1.verify(&bob).unwrap().user, "bob");
        assert_eq!(v1.cache().unwrap().len(), 2);
        // The rotation ends: the previous key is gone, and so is every token it verified,
        // although the cache itself is kept.
        let v2 = Verifier::build(&auth(""), &Keys::from_secrets(KEY, None), &[], Some(&v1));
        assert!(std::ptr::eq(v1.cache().unwrap(), v2.cache().unwrap()));
        assert_eq!(v2.verify(&alice).unwrap().user, "alice");
        assert_eq!(v2.verify(&bob).err(), Some(TokenError::BadSignature));
        // The same key for another algorithm is another key.
        let v3 = Verifier::build(
            &auth("algorithms = [\"HS512\"]"),
            &Keys::from_secrets(KEY, None),
            &[],
            Some(&v2),
        );
        assert!(std::ptr::eq(v2.cache().unwrap(), v3.cache().unwrap()));
        assert_eq!(
            v3.verify(&alice).err(),
            Some(TokenError::AlgorithmNotAllowed)
        );
        // What shapes an identity changed: a new cache.
        let v4 = Verifier::build(
            &auth("user_claim = \"name\""),
            &Keys::from_secrets(KEY, None),
            &[],
            Some(&v2),
        );
        assert!(!std::ptr::eq(v2.cache().unwrap(), v4.cache().unwrap()));
        assert_eq!(
            v4.verify(&alice).err(),
            Some(TokenError::MissingUser("name"))
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
}
