//! Who is calling: tokens, keys and the verified-token cache.

pub mod cache;
pub mod keys;
pub mod verifier;

pub use verifier::*;
