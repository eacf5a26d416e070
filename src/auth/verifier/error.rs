//! Why a token was refused ([`TokenError`]): a stable reason for metrics and logs, and a
//! description for the client that never contains any part of the token.

use std::fmt;

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
    /// The token's `kid` names no key in the key ring or the provider's key set.
    UnknownKey,
    /// The same, for provider `provider` (its index in the config) while a fetch of its keys
    /// is asked for or under way: worth deciding again once keys newer than `seen` (the
    /// provider's fetch count when the token was looked at) are in
    /// ([`crate::auth::verifier::Verifier::wait_for_keys`]). Answered like [`TokenError::UnknownKey`] otherwise.
    UnknownKeyFetching {
        /// The provider's index.
        provider: usize,
        /// Its fetch count when the token was looked at.
        seen: u64,
    },
    /// The token's issuer is a provider whose keys are not loaded yet (503, not 401).
    KeysUnavailable,
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
            TokenError::UnknownKey | TokenError::UnknownKeyFetching { .. } => "unknown_kid",
            TokenError::KeysUnavailable => "keys_unavailable",
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
            TokenError::UnknownKey | TokenError::UnknownKeyFetching { .. } => "unknown key id",
            TokenError::KeysUnavailable => {
                "the token issuer's keys are not loaded yet; try again shortly"
            }
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
