//! Who is calling: where a token comes from ([`bearer`]), its strict parse ([`jwt`]), the keys
//! ([`keys`]: `JWT_SECRET_KEY` and friends), its verification ([`verifier`]) and the
//! verified-token cache ([`cache`]). Identity providers (JWKS fetchers, asymmetric keys) and
//! cookie tokens go here too.

pub mod bearer;
pub mod cache;
pub mod jwt;
pub mod keys;
pub mod verifier;

pub use bearer::bearer;
pub use verifier::{now, to_jsonwebtoken, Identity, TokenError, Verifier};
