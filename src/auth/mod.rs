//! Who is calling: where a token comes from ([`mod@bearer`]), its strict parse ([`jwt`]), the keys
//! ([`keys`]: `JWT_SECRET_KEY` and friends), its verification ([`verifier`]) and the
//! verified-token cache ([`cache`]). Identity providers: their public keys ([`jwk`]), fetched ([`fetch`]) and kept
//! fresh ([`provider`]); algorithm names as the `jsonwebtoken` crate has them ([`alg`]). The
//! signed assertion for upstreams ([`assertion`]).

pub mod alg;
pub mod assertion;
pub mod bearer;
pub mod cache;
pub mod fetch;
pub mod jwk;
pub mod jwt;
pub mod keys;
pub mod provider;
pub mod verifier;

pub use alg::to_jsonwebtoken;
pub use bearer::bearer;
pub use verifier::{now, Identity, TokenError, Verifier};
