//! Why a token was refused ([`TokenError`]): a stable reason for metrics and logs, and a
//! description for the client that never contains any part of the token.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::sync::{LazyLock, Mutex};

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
    /// The user claim (its path as configured) is missing.
    MissingUser(&'static str),
    /// The user claim (its path as configured) is not a non-empty string without control
    /// characters or surrounding spaces.
    BadUser(&'static str),
    /// `exp` lies further ahead than `auth.max_token_lifetime`.
    LifetimeTooLong,
}

/// `name` with a `'static` lifetime, for [`TokenError::MissingUser`] and
/// [`TokenError::BadUser`] (which stay `Copy`): each distinct configured claim path is kept
/// once for the life of the process, a handful at most however often the config is reloaded.
pub(crate) fn intern(name: &str) -> &'static str {
    static NAMES: LazyLock<Mutex<HashSet<&'static str>>> = LazyLock::new(Default::default);
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(&n) = names.get(name) {
        return n;
    }
    let n: &'static str = Box::leak(Box::from(name));
    names.insert(n);
    n
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
            TokenError::MissingUser(_) => "missing_user",
            TokenError::BadUser(_) => "bad_user",
            TokenError::LifetimeTooLong => "lifetime_too_long",
        }
    }

    /// Human-readable description for `error_description` (RFC 6750 §3): never request data
    /// (a user claim's path is the config's).
    pub fn description(self) -> Cow<'static, str> {
        match self {
            TokenError::MissingUser(claim) => format!("token has no user claim ({claim})").into(),
            TokenError::BadUser(claim) => {
                format!("user claim ({claim}) is not a valid user name").into()
            }
            other => other.fixed_description().into(),
        }
    }

    fn fixed_description(self) -> &'static str {
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
            TokenError::MissingUser(_) => "token has no user claim",
            TokenError::BadUser(_) => "user claim is not a valid user name",
            TokenError::LifetimeTooLong => "token lifetime too long",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description())
    }
}
