//! Algorithm names as the `jsonwebtoken` crate has them (it signs tokens for `jwtgate token`, and
//! is the tests' cross-check). A leaf: the key readers and the verifier both use it.

use crate::config::Algorithm;

/// The same algorithm as `jsonwebtoken` names it (to sign with, in `jwtgate token` and tests).
pub fn to_jsonwebtoken(alg: Algorithm) -> jsonwebtoken::Algorithm {
    use jsonwebtoken::Algorithm as J;
    match alg {
        Algorithm::HS256 => J::HS256,
        Algorithm::HS384 => J::HS384,
        Algorithm::HS512 => J::HS512,
        Algorithm::RS256 => J::RS256,
        Algorithm::RS384 => J::RS384,
        Algorithm::RS512 => J::RS512,
        Algorithm::PS256 => J::PS256,
        Algorithm::PS384 => J::PS384,
        Algorithm::PS512 => J::PS512,
        Algorithm::ES256 => J::ES256,
        Algorithm::ES384 => J::ES384,
        Algorithm::EdDSA => J::EdDSA,
    }
}
