//! Identity providers' public keys, from a JWKS (RFC 7517) or a PEM public key (SPKI), each
//! pinned to the one kind of key it is: an RSA key only ever verifies RS*/PS*, a P-256 key only
//! ES256, a P-384 key only ES384, an Ed25519 key only EdDSA, and a JWK's own `alg` narrows that
//! to one algorithm. Symmetric (`oct`) keys in a JWKS are never used: a provider's key is
//! public, and a public key used as an HMAC secret is the classic algorithm confusion.
//!
//! A JWKS is read leniently key by key and strictly as a whole: a key jwtgate cannot use (an
//! encryption key, another curve, a short RSA modulus, a malformed member) is skipped and
//! reported, and a document with no usable key at all is refused, so the last good keys stay.
//!
//! Signatures are checked with `ring` (the crypto crate rustls uses here, and `jsonwebtoken`'s
//! own until its version 10): an RS256 check costs a few microseconds with it, against about
//! 300 with `jsonwebtoken`'s RustCrypto backend (README, Identity providers). The tests check
//! both agree, on good and on tampered signatures, for every algorithm.

use std::fmt;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::DecodingKey;
use serde_json::{Map, Value};

use super::alg::to_jsonwebtoken;
use super::cache::KeyId;
use crate::config::{Algorithm, KeyKind};

/// Smallest RSA modulus accepted, in bits (NIST SP 800-131A; every provider uses ≥ 2048).
pub const MIN_RSA_BITS: usize = 2048;

/// Most keys taken from one JWKS.
pub const MAX_KEYS: usize = 64;

/// Most skipped keys named (with their reason) for one JWKS; the rest are counted.
const MAX_REASONS: usize = 20;

/// Largest RSA modulus accepted, in bits (ring's limit).
pub const MAX_RSA_BITS: usize = 8192;

/// A public key's bytes, as `ring` takes them.
enum Material {
    /// Big-endian modulus and exponent, without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// An uncompressed SEC1 point (P-256 or P-384, by the key's kind).
    Ec(Vec<u8>),
    /// The 32 bytes of an Ed25519 key.
    Ed25519(Vec<u8>),
}

/// One public key of one provider.
pub struct PublicKey {
    /// The JWK's `kid`; `None` for a PEM key and a JWK without one.
    pub kid: Option<Box<str>>,
    kind: KeyKind,
    /// The JWK's `alg`, when it names one: only that algorithm uses the key.
    alg: Option<Algorithm>,
    material: Material,
    /// Names the key for the verified-token cache: issuer, `kid`, `alg` and key material.
    pub id: KeyId,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("alg", &self.alg.map(Algorithm::name))
            .finish_non_exhaustive()
    }
}

impl PublicKey {
    fn new(
        issuer: &str,
        kid: Option<&str>,
        kind: KeyKind,
        alg: Option<Algorithm>,
        material: Material,
    ) -> PublicKey {
        let kind_name = format!("{kind:?}");
        let (a, b): (&[u8], &[u8]) = match &material {
            Material::Rsa { n, e } => (n, e),
            Material::Ec(point) => (point, b""),
            Material::Ed25519(x) => (x, b""),
        };
        let id = KeyId::of(&[
            b"public",
            issuer.as_bytes(),
            kid.map_or(b"\0".as_slice(), |k| k.as_bytes()),
            alg.map_or("", Algorithm::name).as_bytes(),
            kind_name.as_bytes(),
            a,
            b,
        ]);
        PublicKey {
            kid: kid.map(Box::from),
            kind,
            alg,
            material,
            id,
        }
    }

    /// True when `alg` may be verified with this key.
    pub fn fits(&self, alg: Algorithm) -> bool {
        alg.key_kind() == self.kind && self.alg.is_none_or(|a| a == alg)
    }

    /// The kind of key.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// Checks `signature` (decoded) over `signed` with `alg`; false for an algorithm the key
    /// does not fit.
    pub fn verify(&self, alg: Algorithm, signed: &[u8], signature: &[u8]) -> bool {
        use ring::signature as sig;
        if !self.fits(alg) {
            return false;
        }
        let ok = match (&self.material, alg) {
            (Material::Rsa { n, e }, _) => {
                let params = match alg {
                    Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
                    Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
                    Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
                    Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
                    Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
                    Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
                    _ => return false,
                };
                sig::RsaPublicKeyComponents { n, e }.verify(params, signed, signature)
            }
            (Material::Ec(point), Algorithm::ES256) => {
                sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point)
                    .verify(signed, signature)
            }
            (Material::Ec(point), Algorithm::ES384) => {
                sig::UnparsedPublicKey::new(&sig::ECDSA_P384_SHA384_FIXED, point)
                    .verify(signed, signature)
            }
            (Material::Ed25519(x), Algorithm::EdDSA) => {
                sig::UnparsedPublicKey::new(&sig::ED25519, x).verify(signed, signature)
            }
            _ => return false,
        };
        ok.is_ok()
    }
}

/// The usable keys of a JWKS document, and why each other key was skipped. An error when the
/// document is not a JWKS or has no usable key.
pub fn parse_jwks(issuer: &str, bytes: &[u8]) -> Result<(Vec<PublicKey>, Vec<String>), String> {
    let doc: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS: not JSON ({e})"))?;
    let Some(list) = doc.get("keys").and_then(Value::as_array) else {
        return Err("not a JWKS: no \"keys\" array".to_owned());
    };
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    let mut skipped_more = 0usize;
    for (i, jwk) in list.iter().enumerate() {
        if keys.len() == MAX_KEYS {
            skipped.push(format!("keys after the first {MAX_KEYS} usable ones"));
            break;
        }
        match jwk_key(issuer, jwk) {
            Ok(k) => keys.push(k),
            // A hostile document must not make one huge log line: the first reasons, with
            // names cut short, then a count.
            Err(_) if skipped.len() >= MAX_REASONS => skipped_more += 1,
            Err(why) => {
                let kid = jwk.get("kid").and_then(Value::as_str).map_or_else(
                    || format!("key {i}"),
                    |k| {
                        let short: String = k.chars().take(64).collect();
                        format!("key {i} (kid {short:?})")
                    },
                );
                skipped.push(format!("{kid}: {why}"));
            }
        }
    }
    if skipped_more > 0 {
        skipped.push(format!("{skipped_more} more keys"));
    }
    if keys.is_empty() {
        return Err(match skipped.is_empty() {
            true => "the JWKS has no keys".to_owned(),
            false => format!("the JWKS has no usable key: {}", skipped.join("; ")),
        });
    }
    Ok((keys, skipped))
}

/// Ok when some key fits one of `algorithms` (a key set that fits none verifies nothing).
pub fn fit_any(keys: &[PublicKey], algorithms: &[Algorithm]) -> Result<(), String> {
    if keys.iter().any(|k| algorithms.iter().any(|&a| k.fits(a))) {
        return Ok(());
    }
    let names: Vec<&str> = algorithms.iter().map(|a| a.name()).collect();
    Err(format!(
        "no key fits the provider's algorithms ({}): an RSA key verifies RS*/PS*, P-256 ES256, \
         P-384 ES384, Ed25519 EdDSA, and a JWK's alg narrows it to that one",
        names.join(", ")
    ))
}

fn string<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, String> {
    match jwk.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("\"{name}\" is not a string")),
    }
}

/// Base64url (RFC 7515 §2: no padding; padding tolerated, since some providers add it).
fn b64(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let s = string(jwk, name)?.ok_or_else(|| format!("no \"{name}\""))?;
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| format!("\"{name}\" is not base64url"))
}

fn jwk_key(issuer: &str, jwk: &Value) -> Result<PublicKey, String> {
    let Value::Object(jwk) = jwk else {
        return Err("not a JSON object".to_owned());
    };
    if let Some(u) = string(jwk, "use")? {
        if u != "sig" {
            return Err(format!("\"use\" is {u:?}, not \"sig\""));
        }
    }
    if let Some(ops) = jwk.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|o| o == "verify"));
        if !verifies {
            return Err("\"key_ops\" does not include \"verify\"".to_owned());
        }
    }
    let alg = match string(jwk, "alg")? {
        None => None,
        Some(name) => match Algorithm::from_name(name) {
            Some(a) if !a.is_hmac() => Some(a),
            _ => {
                return Err(format!(
                    "\"alg\" {name:?} is not a signature algorithm jwtgate verifies"
                ))
            }
        },
    };
    let kid = string(jwk, "kid")?;
    let kty = string(jwk, "kty")?.ok_or("no \"kty\"")?;
    let crv = string(jwk, "crv")?;
    let (kind, material) = match (kty, crv) {
        ("RSA", _) => {
            let n = b64(jwk, "n")?;
            let e = b64(jwk, "e")?;
            rsa(&n, &e)?
        }
        ("EC", Some("P-256")) => ec(KeyKind::P256, &b64(jwk, "x")?, &b64(jwk, "y")?)?,
        ("EC", Some("P-384")) => ec(KeyKind::P384, &b64(jwk, "x")?, &b64(jwk, "y")?)?,
        ("OKP", Some("Ed25519")) => ed25519(&b64(jwk, "x")?)?,
        ("EC" | "OKP", crv) => return Err(format!("curve {crv:?} is not supported")),
        ("oct", _) => {
            return Err(
                "a symmetric key: a provider's keys are public keys, never HMAC secrets".into(),
            )
        }
        (kty, _) => return Err(format!("key type {kty:?} is not supported")),
    };
    if let Some(a) = alg {
        if a.key_kind() != kind {
            return Err(format!("\"alg\" {} does not fit a {kind:?} key", a.name()));
        }
    }
    Ok(PublicKey::new(issuer, kid, kind, alg, material))
}

type Parsed = (KeyKind, Material);

fn rsa(n: &[u8], e: &[u8]) -> Result<Parsed, String> {
    let n = strip_zeros(n);
    let e = strip_zeros(e);
    let Some(&top) = n.first() else {
        return Err("an RSA modulus of zero".to_owned());
    };
    let bits = n.len() * 8 - top.leading_zeros() as usize;
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "an RSA modulus of {bits} bits; at least {MIN_RSA_BITS} are required"
        ));
    }
    if bits > MAX_RSA_BITS {
        return Err(format!(
            "an RSA modulus of {bits} bits; at most {MAX_RSA_BITS} are supported"
        ));
    }
    if n[n.len() - 1] & 1 == 0 {
        return Err("an even RSA modulus".to_owned());
    }
    // Odd, at least 3, below 2^33 (what ring verifies with).
    let value = e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    if e.len() > 5 || value % 2 == 0 || !(3..1 << 33).contains(&value) {
        return Err("an unusable RSA exponent".to_owned());
    }
    Ok((
        KeyKind::Rsa,
        Material::Rsa {
            n: n.to_vec(),
            e: e.to_vec(),
        },
    ))
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[start..]
}

fn ec(kind: KeyKind, x: &[u8], y: &[u8]) -> Result<Parsed, String> {
    let mut point = vec![4u8];
    point.extend_from_slice(x);
    point.extend_from_slice(y);
    ec_point(kind, point)
}

/// A SEC1 point (what an SPKI's BIT STRING and a JWK's x, y make).
fn ec_point(kind: KeyKind, point: Vec<u8>) -> Result<Parsed, String> {
    let (size, alg) = match kind {
        KeyKind::P256 => (32, Algorithm::ES256),
        _ => (48, Algorithm::ES384),
    };
    if point.len() != 1 + 2 * size || point[0] != 4 {
        return Err(format!(
            "not an uncompressed {kind:?} point of {size}-byte coordinates"
        ));
    }
    on_curve(DecodingKey::from_ec_der(&point), alg)?;
    Ok((kind, Material::Ec(point)))
}

fn ed25519(x: &[u8]) -> Result<Parsed, String> {
    let Ok(bytes) = <[u8; 32]>::try_from(x) else {
        return Err("an Ed25519 key is 32 bytes".to_owned());
    };
    // A point of small order verifies signatures anyone can make.
    if ed25519_dalek::VerifyingKey::from_bytes(&bytes).is_ok_and(|k| k.is_weak()) {
        return Err("an Ed25519 point of small order (a weak key)".to_owned());
    }
    on_curve(DecodingKey::from_ed_der(x), Algorithm::EdDSA)?;
    Ok((KeyKind::Ed25519, Material::Ed25519(x.to_vec())))
}

/// Parses the point now rather than at the first token, so that a point off its curve is
/// refused with the JWKS (`jsonwebtoken`'s key parsing tells a bad key from a bad signature;
/// ring's verification does not).
fn on_curve(key: DecodingKey, alg: Algorithm) -> Result<(), String> {
    jsonwebtoken::crypto::verify("AA", b"", &key, to_jsonwebtoken(alg))
        .map(drop)
        .map_err(|_| "not a valid point on its curve".to_owned())
}

/// The key in a PEM file holding one public key (`BEGIN PUBLIC KEY`, SPKI).
pub fn parse_pem(issuer: &str, pem: &[u8]) -> Result<PublicKey, String> {
    let text = std::str::from_utf8(pem).map_err(|_| "not a PEM file (not text)".to_owned())?;
    let begin = "-----BEGIN PUBLIC KEY-----";
    let Some(start) = text.find(begin) else {
        return Err(if text.contains("-----BEGIN CERTIFICATE-----") {
            "a certificate, not a public key: extract its key with \
             `openssl x509 -in cert.pem -pubkey -noout`"
                .to_owned()
        } else if text.contains("PRIVATE KEY-----") {
            "a private key: give the public key (`openssl pkey -in key.pem -pubout`)".to_owned()
        } else if text.contains("-----BEGIN RSA PUBLIC KEY-----") {
            "a PKCS#1 RSA key: convert it to SPKI with `openssl rsa -RSAPublicKey_in -pubout`"
                .to_owned()
        } else {
            format!("no {begin} block")
        });
    };
    let body = &text[start + begin.len()..];
    let end = body
        .find("-----END PUBLIC KEY-----")
        .ok_or("no END PUBLIC KEY line")?;
    let b64: String = body[..end]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let der = STANDARD
        .decode(b64)
        .map_err(|_| "the PEM body is not base64".to_owned())?;
    let (kind, material) = spki(&der)?;
    Ok(PublicKey::new(issuer, None, kind, None, material))
}

const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// SubjectPublicKeyInfo (RFC 5280 §4.1): SEQUENCE { SEQUENCE { OID, params }, BIT STRING }.
fn spki(der: &[u8]) -> Result<Parsed, String> {
    let bad = || "not a DER SubjectPublicKeyInfo".to_owned();
    let (info, rest) = tlv(der, 0x30).ok_or_else(bad)?;
    if !rest.is_empty() {
        return Err(bad());
    }
    let (algorithm, rest) = tlv(info, 0x30).ok_or_else(bad)?;
    let (bits, rest) = tlv(rest, 0x03).ok_or_else(bad)?;
    if !rest.is_empty() || bits.first() != Some(&0) {
        return Err(bad());
    }
    let key = &bits[1..];
    let (oid, params) = tlv(algorithm, 0x06).ok_or_else(bad)?;
    if oid == RSA_ENCRYPTION {
        // RSAPublicKey (RFC 8017 §A.1.1): SEQUENCE { INTEGER n, INTEGER e }.
        let (seq, rest) = tlv(key, 0x30).ok_or_else(bad)?;
        let (n, after) = tlv(seq, 0x02).ok_or_else(bad)?;
        let (e, end) = tlv(after, 0x02).ok_or_else(bad)?;
        if !rest.is_empty() || !end.is_empty() {
            return Err(bad());
        }
        rsa(n, e)
    } else if oid == EC_PUBLIC_KEY {
        let (curve, _) = tlv(params, 0x06).ok_or_else(bad)?;
        let kind = match curve {
            c if c == P256 => KeyKind::P256,
            c if c == P384 => KeyKind::P384,
            _ => return Err("an EC key on a curve other than P-256 or P-384".to_owned()),
        };
        ec_point(kind, key.to_vec())
    } else if oid == ED25519 {
        ed25519(key)
    } else {
        Err("a key type other than RSA, EC (P-256, P-384) or Ed25519".to_owned())
    }
}

/// One DER element with `tag`: its contents and what follows it.
fn tlv(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = der.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA: &str = include_str!("../../tests/providers/rsa2048.pub.pem");
    const RSA_KEY: &str = include_str!("../../tests/providers/rsa2048.key.pem");
    const RSA_1024: &str = include_str!("../../tests/providers/rsa1024.pub.pem");
    const P256: &str = include_str!("../../tests/providers/p256.pub.pem");
    const P256_KEY: &str = include_str!("../../tests/providers/p256.key.pem");
    const K256: &str = include_str!("../../tests/providers/k256.pub.pem");

    fn sign(alg: jsonwebtoken::Algorithm, pem: &str) -> (String, Vec<u8>) {
        let key = match alg {
            jsonwebtoken::Algorithm::ES256 => {
                jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap()
            }
            _ => jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        };
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(alg),
            &serde_json::json!({"sub": "a"}),
            &key,
        )
        .unwrap();
        let (signed, sig) = token.rsplit_once('.').unwrap();
        (signed.to_owned(), URL_SAFE_NO_PAD.decode(sig).unwrap())
    }

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/providers/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    /// ring (what the gateway verifies with) and jsonwebtoken's RustCrypto backend agree on
    /// every algorithm, on good signatures and on every single-bit change of them, of the
    /// message, and across algorithms of one key.
    #[test]
    fn ring_and_jsonwebtoken_agree_on_every_algorithm() {
        use jsonwebtoken::Algorithm as J;
        let cases = [
            (Algorithm::RS256, J::RS256, "rsa2048"),
            (Algorithm::RS384, J::RS384, "rsa2048"),
            (Algorithm::RS512, J::RS512, "rsa2048"),
            (Algorithm::PS256, J::PS256, "rsa2048"),
            (Algorithm::PS384, J::PS384, "rsa2048"),
            (Algorithm::PS512, J::PS512, "rsa2048"),
            (Algorithm::ES256, J::ES256, "p256"),
            (Algorithm::ES384, J::ES384, "p384"),
            (Algorithm::EdDSA, J::EdDSA, "ed25519"),
        ];
        for (alg, j, key) in cases {
            let private = fixture(&format!("{key}.key.pem"));
            let public = fixture(&format!("{key}.pub.pem"));
            let signing = match key {
                "rsa2048" => jsonwebtoken::EncodingKey::from_rsa_pem(&private),
                "ed25519" => jsonwebtoken::EncodingKey::from_ed_pem(&private),
                _ => jsonwebtoken::EncodingKey::from_ec_pem(&private),
            }
            .unwrap();
            let decoding = match key {
                "rsa2048" => DecodingKey::from_rsa_pem(&public),
                "ed25519" => DecodingKey::from_ed_pem(&public),
                _ => DecodingKey::from_ec_pem(&public),
            }
            .unwrap();
            let ours = parse_pem("i", &public).unwrap();
            let signed = b"eyJhbGciOiJYIn0.eyJzdWIiOiJhIn0";
            let good = URL_SAFE_NO_PAD
                .decode(jsonwebtoken::crypto::sign(signed, &signing, j).unwrap())
                .unwrap();
            let theirs = |m: &[u8], s: &[u8]| {
                jsonwebtoken::crypto::verify(&URL_SAFE_NO_PAD.encode(s), m, &decoding, j)
                    .unwrap_or(false)
            };
            assert!(ours.verify(alg, signed, &good), "{}", alg.name());
            assert!(theirs(signed, &good), "{}", alg.name());
            for bit in (0..good.len() * 8).step_by(good.len().div_ceil(16).max(1)) {
                let mut bad = good.clone();
                bad[bit / 8] ^= 1 << (bit % 8);
                assert_eq!(ours.verify(alg, signed, &bad), theirs(signed, &bad));
                assert!(!ours.verify(alg, signed, &bad), "{} bit {bit}", alg.name());
            }
            let mut other = signed.to_vec();
            other[3] ^= 1;
            assert!(!ours.verify(alg, &other, &good) && !theirs(&other, &good));
            assert!(!ours.verify(alg, signed, &good[..good.len() - 1]));
            assert!(!ours.verify(alg, signed, b""));
            // The same signature under another algorithm of the same kind of key fails.
            for (other, _, _) in cases.iter().filter(|(a, _, k)| *a != alg && *k == key) {
                assert!(
                    !ours.verify(*other, signed, &good),
                    "{} as {}",
                    alg.name(),
                    other.name()
                );
            }
        }
    }

    #[test]
    fn pem_keys_are_pinned_to_their_kind() {
        let rsa = parse_pem("i", RSA.as_bytes()).unwrap();
        assert_eq!(rsa.kind(), KeyKind::Rsa);
        for a in Algorithm::ALL {
            assert_eq!(rsa.fits(a), a.key_kind() == KeyKind::Rsa, "{}", a.name());
        }
        let (signed, sig) = sign(jsonwebtoken::Algorithm::RS256, RSA_KEY);
        assert!(rsa.verify(Algorithm::RS256, signed.as_bytes(), &sig));
        assert!(!rsa.verify(Algorithm::RS384, signed.as_bytes(), &sig));
        assert!(!rsa.verify(Algorithm::HS256, signed.as_bytes(), &sig));
        let ec = parse_pem("i", P256.as_bytes()).unwrap();
        assert_eq!(ec.kind(), KeyKind::P256);
        assert!(ec.fits(Algorithm::ES256) && !ec.fits(Algorithm::ES384));
        let (signed, sig) = sign(jsonwebtoken::Algorithm::ES256, P256_KEY);
        assert!(ec.verify(Algorithm::ES256, signed.as_bytes(), &sig));
        assert!(!ec.verify(Algorithm::ES256, b"other", &sig));
    }

    #[test]
    fn unusable_pem_files_say_why() {
        let cases: [(&[u8], &str); 7] = [
            (RSA_1024.as_bytes(), "1024 bits"),
            (K256.as_bytes(), "curve other than P-256"),
            (RSA_KEY.as_bytes(), "a private key"),
            (
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "a certificate",
            ),
            (
                b"-----BEGIN RSA PUBLIC KEY-----\nAAAA\n-----END RSA PUBLIC KEY-----\n",
                "PKCS#1",
            ),
            (
                b"-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----\n",
                "not base64",
            ),
            (
                b"-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----\n",
                "not a DER",
            ),
        ];
        for (pem, want) in cases {
            let err = parse_pem("i", pem).unwrap_err();
            assert!(err.contains(want), "{err:?} lacks {want:?}");
        }
    }

    #[test]
    fn a_jwks_keeps_its_usable_keys_and_names_the_others() {
        // n and e of the 2048-bit key, from its SPKI.
        let der = {
            let b64: String = RSA.lines().filter(|l| !l.starts_with("-----")).collect();
            STANDARD.decode(b64).unwrap()
        };
        let (info, _) = tlv(&der, 0x30).unwrap();
        let (_, rest) = tlv(info, 0x30).unwrap();
        let (bits, _) = tlv(rest, 0x03).unwrap();
        let (seq, _) = tlv(&bits[1..], 0x30).unwrap();
        let (n, after) = tlv(seq, 0x02).unwrap();
        let (e, _) = tlv(after, 0x02).unwrap();
        let n = URL_SAFE_NO_PAD.encode(strip_zeros(n));
        let e = URL_SAFE_NO_PAD.encode(e);
        let doc = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "good", "use": "sig", "alg": "RS256", "n": n, "e": e},
            {"kty": "RSA", "kid": "padded", "n": format!("{n}=="), "e": e},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": n, "e": e},
            {"kty": "RSA", "kid": "ops", "key_ops": ["encrypt"], "n": n, "e": e},
            {"kty": "RSA", "kid": "wrong-alg", "alg": "ES256", "n": n, "e": e},
            {"kty": "RSA", "kid": "hs", "alg": "HS256", "n": n, "e": e},
            {"kty": "RSA", "kid": "short", "n": "AQAB", "e": e},
            {"kty": "RSA", "kid": "zero", "n": "AA", "e": e},
            {"kty": "RSA", "kid": "empty", "n": "", "e": e},
            {"kty": "RSA", "kid": "even-e", "n": n, "e": "AAI"},
            {"kty": "oct", "kid": "secret", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "off-curve", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode([1u8; 32]), "y": URL_SAFE_NO_PAD.encode([2u8; 32])},
            {"kty": "EC", "kid": "k1", "crv": "secp256k1", "x": "AA", "y": "AA"},
            {"kty": "OKP", "kid": "short-ed", "crv": "Ed25519", "x": "AAAA"},
            {"kty": "OKP", "kid": "weak-ed", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode({let mut b = [0u8; 32]; b[0] = 1; b})},
            {"kty": "OKP", "kid": "x25519", "crv": "X25519", "x": "AAAA"},
            {"kty": "RSA", "kid": 7, "n": n, "e": e},
            "not an object",
        ]});
        let (keys, skipped) = parse_jwks("i", doc.to_string().as_bytes()).unwrap();
        let kids: Vec<&str> = keys.iter().filter_map(|k| k.kid.as_deref()).collect();
        assert_eq!(kids, ["good", "padded"]);
        assert!(keys[0].fits(Algorithm::RS256) && !keys[0].fits(Algorithm::PS256));
        assert!(keys[1].fits(Algorithm::PS256));
        assert_eq!(skipped.len(), 16, "{skipped:#?}");
        for (kid, why) in [
            ("enc", "\"use\" is \"enc\""),
            ("ops", "key_ops"),
            ("wrong-alg", "does not fit"),
            ("hs", "not a signature algorithm"),
            ("short", "bits"),
            ("zero", "zero"),
            ("empty", "zero"),
            ("even-e", "exponent"),
            ("secret", "symmetric"),
            ("off-curve", "not a valid point"),
            ("k1", "curve"),
            ("short-ed", "32 bytes"),
            ("weak-ed", "small order"),
            ("x25519", "curve"),
        ] {
            assert!(
                skipped
                    .iter()
                    .any(|s| s.contains(&format!("{kid:?}")) && s.contains(why)),
                "{kid}: {why} not in {skipped:#?}"
            );
        }
        // Same key, same id; another kid or issuer, another id.
        let again = parse_jwks("i", doc.to_string().as_bytes()).unwrap().0;
        assert_eq!(again[0].id, keys[0].id);
        assert_ne!(keys[0].id, keys[1].id);
        let other = parse_jwks("j", doc.to_string().as_bytes()).unwrap().0;
        assert_ne!(other[0].id, keys[0].id);
    }

    #[test]
    fn a_hostile_jwks_makes_a_bounded_report() {
        let long = "k".repeat(10_000);
        let mut keys: Vec<serde_json::Value> = (0..500)
            .map(|_| serde_json::json!({"kty": "oct", "kid": long, "k": "AA"}))
            .collect();
        keys.push(
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "kid": "ok",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}),
        );
        let doc = serde_json::json!({ "keys": keys }).to_string();
        let (found, skipped) = parse_jwks("i", doc.as_bytes()).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(skipped.len(), MAX_REASONS + 1);
        assert_eq!(skipped.last().unwrap(), "480 more keys");
        assert!(skipped.iter().map(String::len).sum::<usize>() < 4 * 1024);
    }

    #[test]
    fn a_document_without_usable_keys_is_refused() {
        for (doc, want) in [
            ("", "not JSON"),
            ("[]", "no \"keys\""),
            ("{\"keys\": {}}", "no \"keys\""),
            ("{\"keys\": []}", "has no keys"),
            (
                "{\"keys\": [{\"kty\": \"oct\", \"k\": \"AA\"}]}",
                "no usable key",
            ),
        ] {
            let err = parse_jwks("i", doc.as_bytes()).unwrap_err();
            assert!(err.contains(want), "{doc}: {err}");
        }
    }
}
