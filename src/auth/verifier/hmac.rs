//! The shared secret's keys: one HMAC state per key and algorithm, computed once per key set
//! (not once per request), checked in constant time.

use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha384, Sha512};

use crate::auth::cache::KeyId;
use crate::config::Algorithm;

pub(super) enum HmacState {
    HS256(Hmac<Sha256>),
    HS384(Hmac<Sha384>),
    HS512(Hmac<Sha512>),
}

/// One key for one algorithm, its HMAC state computed once.
pub(super) struct Key {
    mac: HmacState,
    pub(super) id: KeyId,
    /// The key ring's name for it (`JWT_SECRET_KEY_DIR`); `None` for the single keys.
    pub(super) kid: Option<Box<str>>,
}

impl Key {
    pub(super) fn new(alg: Algorithm, kid: Option<&str>, secret: &[u8]) -> Key {
        // `new_from_slice` accepts keys of any length for HMAC, so these cannot fail; the
        // fallback to an empty-keyed MAC is unreachable, and is anyway never a usable key
        // because `keys` refuses secrets shorter than 32 bytes.
        let mac = match alg {
            Algorithm::HS256 => HmacState::HS256(
                Hmac::new_from_slice(secret).unwrap_or_else(|_| Hmac::new(&Default::default())),
            ),
            Algorithm::HS384 => HmacState::HS384(
                Hmac::new_from_slice(secret).unwrap_or_else(|_| Hmac::new(&Default::default())),
            ),
            Algorithm::HS512 => HmacState::HS512(
                Hmac::new_from_slice(secret).unwrap_or_else(|_| Hmac::new(&Default::default())),
            ),
            // Only HMAC algorithms reach here (`auth.algorithms` takes no others).
            _ => HmacState::HS512(
                Hmac::new_from_slice(secret).unwrap_or_else(|_| Hmac::new(&Default::default())),
            ),
        };
        Key {
            mac,
            id: key_id(alg, kid, secret),
            kid: kid.map(Box::from),
        }
    }

    pub(super) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        fn check<M: Mac + Clone>(mac: &M, message: &[u8], signature: &[u8]) -> bool {
            let mut mac = mac.clone();
            mac.update(message);
            mac.verify_slice(signature).is_ok()
        }
        match &self.mac {
            HmacState::HS256(m) => check(m, message, signature),
            HmacState::HS384(m) => check(m, message, signature),
            HmacState::HS512(m) => check(m, message, signature),
        }
    }
}

/// A key's identity for the cache ([`KeyId::of`]): the algorithm, the ring's name for it and
/// the secret. A ring key's name is part of it: a token verified as `kid` "a" is not served
/// from the cache once "a" is gone, even if another name holds the same secret.
fn key_id(alg: Algorithm, kid: Option<&str>, secret: &[u8]) -> KeyId {
    KeyId::of(&[
        b"hmac",
        alg.name().as_bytes(),
        if kid.is_some() { b"1" } else { b"0" },
        kid.unwrap_or("").as_bytes(),
        secret,
    ])
}
