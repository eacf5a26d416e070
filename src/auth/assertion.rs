//! The signed assertion (`[auth.assertion]`): a short-lived JWT the gateway signs for the
//! upstream, so that an upstream that can verify a signature need not trust a plain header.
//!
//! * The key is Ed25519 (`EdDSA`) or P-256 (`ES256`), PKCS#8 PEM; its `kid` is its RFC 7638
//!   thumbprint, so every replica with the same file names it alike.
//! * Claims: `iss` (the assertion issuer), `sub` (the user the gateway injects), `orig_iss` (the
//!   token's issuer), `aud` (the route's upstream origin), `iat`, `exp` (within `ttl`, never
//!   past the token's own `exp`), and the configured claims copied with their nesting.
//! * The current, next and previous public keys are published as a JWKS ([`Signer::jwks`],
//!   served by the admin listener at `/.well-known/jwks.json`).
//! * Signing is paid once per verified token, route and half `ttl`: each identity (shared by
//!   every request with the same token through the verified-token cache) keeps its assertions
//!   ([`Memo`]), tagged with the signer they came from, so a reload never reuses one.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::header::{HeaderName, HeaderValue};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivatePkcs8KeyDer;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::Identity;
use crate::config::{AssertionConfig, ClaimPath, Problem};

/// A signing key: its pair, its `alg`, its public JWK and `kid`.
struct Key {
    pair: Pair,
    alg: &'static str,
    kid: String,
    jwk: Value,
}

enum Pair {
    Ed25519(Ed25519KeyPair),
    P256(EcdsaKeyPair),
}

impl Key {
    /// Reads a PKCS#8 PEM private key from `path`.
    fn load(path: &Path) -> Result<Key, String> {
        let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let der = PrivatePkcs8KeyDer::from_pem_slice(&pem).map_err(|_| {
            format!(
                "{}: not a PKCS#8 PEM private key (BEGIN PRIVATE KEY)",
                path.display()
            )
        })?;
        let der = der.secret_pkcs8_der();
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        if let Ok(pair) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            let x = b64(pair.public_key().as_ref());
            // RFC 7638 §3.2: the required members, in lexicographic order, no spaces.
            let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
            let kid = b64(&Sha256::digest(canonical.as_bytes()));
            let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"});
            return Ok(Key {
                pair: Pair::Ed25519(pair),
                alg: "EdDSA",
                kid,
                jwk,
            });
        }
        let rng = SystemRandom::new();
        match EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng) {
            Ok(pair) => {
                // An uncompressed point: 04 || x || y.
                let point = pair.public_key().as_ref();
                let (x, y) = (b64(&point[1..33]), b64(&point[33..65]));
                let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
                let kid = b64(&Sha256::digest(canonical.as_bytes()));
                let jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "alg": "ES256", "use": "sig"});
                Ok(Key {
                    pair: Pair::P256(pair),
                    alg: "ES256",
                    kid,
                    jwk,
                })
            }
            Err(_) => Err(format!(
                "{}: neither an Ed25519 nor a P-256 private key",
                path.display()
            )),
        }
    }

    fn sign(&self, message: &[u8], rng: &SystemRandom) -> Option<Vec<u8>> {
        match &self.pair {
            Pair::Ed25519(p) => Some(p.sign(message).as_ref().to_vec()),
            Pair::P256(p) => p.sign(rng, message).ok().map(|s| s.as_ref().to_vec()),
        }
    }
}

/// Signs assertions for one configuration and key set. Built once per (re)load.
pub struct Signer {
    header: HeaderName,
    issuer: String,
    ttl: f64,
    claims: Vec<ClaimPath>,
    current: Key,
    /// The protected header, base64url, ready to prepend.
    protected: String,
    jwks: Arc<[u8]>,
    rng: SystemRandom,
    /// Tells this signer's assertions from any other's (a reload's).
    generation: u64,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key material.
        f.debug_struct("Signer")
            .field("header", &self.header)
            .field("kid", &self.current.kid)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Reads the keys `config` names; problems are added to `problems` (by key).
    pub fn load(config: &AssertionConfig, problems: &mut Vec<Problem>) -> Option<Signer> {
        let mut load = |key: &str, path: &Path| match Key::load(path) {
            Ok(k) => Some(k),
            Err(e) => {
                problems.push(Problem::new(format!("auth.assertion.{key}"), e));
                None
            }
        };
        let current = load("key_file", &config.key_file);
        let next = config
            .next_key_file
            .as_deref()
            .map(|p| load("next_key_file", p));
        let previous = config
            .previous_key_file
            .as_deref()
            .map(|p| load("previous_key_file", p));
        let current = current?;
        let mut keys = vec![current.jwk.clone()];
        for k in [next, previous].into_iter().flatten() {
            let k = k?;
            if !keys.iter().any(|j| j["kid"] == k.jwk["kid"]) {
                keys.push(k.jwk);
            }
        }
        static GENERATION: AtomicU64 = AtomicU64::new(1);
        let protected = URL_SAFE_NO_PAD
            .encode(json!({"alg": current.alg, "kid": current.kid, "typ": "JWT"}).to_string());
        Some(Signer {
            header: config.header.clone(),
            issuer: config.issuer.clone(),
            ttl: config.ttl.as_secs_f64(),
            claims: config.claims.clone(),
            current,
            protected,
            jwks: Arc::from(json!({ "keys": keys }).to_string().into_bytes()),
            rng: SystemRandom::new(),
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// The header the assertion goes in.
    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    /// The current signing key's `kid`.
    pub fn kid(&self) -> &str {
        &self.current.kid
    }

    /// The current, next and previous public keys, as a JWKS document.
    pub fn jwks(&self) -> &Arc<[u8]> {
        &self.jwks
    }

    /// The assertion for `id` on route `route` (its upstream's origin `aud`) at `now`: the one
    /// `id` already holds for them while it has at least half its lifetime left, else a new
    /// one. `None` only if signing failed (a P-256 signature needs randomness).
    pub fn assertion(
        &self,
        id: &Identity,
        route: usize,
        aud: &str,
        now: f64,
    ) -> Option<HeaderValue> {
        let mut memo = id.assertions.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = memo.iter().find(|e| {
            e.generation == self.generation && e.route == route && &*e.aud == aud && now < e.renew
        }) {
            return Some(e.value.clone());
        }
        let iat = now.floor();
        // Never past the token's own `exp`; a token accepted within the leeway still gets an
        // assertion valid for a second.
        let exp = (iat + self.ttl).min(id.exp.floor()).max(iat + 1.0);
        let mut claims = Map::new();
        for path in &self.claims {
            if let Some(v) = path.get(&id.claims) {
                path.insert_into(&mut claims, v.clone());
            }
        }
        claims.insert("iss".into(), self.issuer.clone().into());
        claims.insert(
            "sub".into(),
            String::from_utf8_lossy(id.user.as_bytes())
                .into_owned()
                .into(),
        );
        // The issuer that vouched (as the issuer header says, with providers), else the
        // shared-secret token's own `iss`.
        let orig = match &id.issuer {
            Some(v) => String::from_utf8_lossy(v.as_bytes()).into_owned(),
            None => id
                .claims
                .get("iss")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        };
        claims.insert("orig_iss".into(), orig.into());
        claims.insert("aud".into(), aud.into());
        claims.insert("iat".into(), (iat as i64).into());
        claims.insert("exp".into(), (exp as i64).into());
        let payload = URL_SAFE_NO_PAD.encode(Value::Object(claims).to_string());
        let signed = format!("{}.{payload}", self.protected);
        let sig = self.current.sign(signed.as_bytes(), &self.rng)?;
        let token = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig));
        let value = HeaderValue::try_from(token).ok()?;
        // Kept until half its life is gone: an upstream always gets at least ttl / 2.
        let renew = iat + (exp - iat) / 2.0;
        memo.retain(|e| !(e.route == route && &*e.aud == aud) && e.generation == self.generation);
        if memo.len() >= Memo::MAX {
            memo.remove(0);
        }
        memo.push(MemoEntry {
            generation: self.generation,
            route,
            aud: aud.into(),
            renew,
            value: value.clone(),
        });
        Some(value)
    }
}

/// The assertions one identity holds, at most [`Memo::MAX`] (routes it was used on).
#[derive(Default)]
pub struct Memo(Mutex<Vec<MemoEntry>>);

impl Memo {
    const MAX: usize = 8;
}

impl Clone for Memo {
    fn clone(&self) -> Memo {
        Memo::default()
    }
}

impl fmt::Debug for Memo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Memo")
    }
}

struct MemoEntry {
    generation: u64,
    route: usize,
    aud: Box<str>,
    renew: f64,
    value: HeaderValue,
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n";

    #[test]
    fn the_kid_is_the_rfc_7638_thumbprint() {
        // RFC 8037 §A.1's key; its thumbprint is RFC 8037 §A.3's.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(&path, ED25519).unwrap();
        let k = Key::load(&path).unwrap();
        assert_eq!(k.kid, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        assert_eq!(k.jwk["x"], "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
    }
}
