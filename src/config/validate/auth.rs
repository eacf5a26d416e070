//! `[auth]`: algorithms, claims, identity headers, and the providers in it.

use std::time::Duration;

use super::provider::validate_provider;
use http::header::HeaderValue;

use super::{audience, claim_headers, is_tchar, Problems};
use crate::config::raw::{RawAuth, RawProvider, PROVIDER_KEYS};
use crate::config::{parse_duration, spoof_key};
use crate::config::{Algorithm, AuthConfig, ProviderConfig};

pub(super) fn validate_auth(raw: RawAuth, p: &mut Problems) -> Option<AuthConfig> {
    let mut algorithms = Vec::new();
    match raw.algorithms {
        Some(list) if list.is_empty() => {
            p.add("auth.algorithms", "must name at least one algorithm")
        }
        Some(list) => {
            for name in list {
                match Algorithm::from_name(&name) {
                    Some(a) if algorithms.contains(&a) => {
                        p.add("auth.algorithms", format!("{name:?} is listed twice"))
                    }
                    Some(a) if a.is_hmac() => algorithms.push(a),
                    Some(_) => p.add(
                        "auth.algorithms",
                        format!(
                            "{name:?} verifies with an identity provider's public keys: list it in \
                             the algorithms of an [[auth.provider]]; auth.algorithms takes HS256, HS384 or HS512"
                        ),
                    ),
                    None => p.add(
                        "auth.algorithms",
                        format!("{name:?} is not supported; use HS256, HS384 or HS512"),
                    ),
                }
            }
        }
        None => algorithms.push(Algorithm::HS256),
    }
    let leeway = p.duration(
        "auth.leeway",
        raw.leeway.as_deref(),
        Duration::from_secs(30),
    );
    if leeway > Duration::from_secs(600) {
        p.add(
            "auth.leeway",
            "must be at most 10m: a longer skew keeps expired tokens alive",
        );
    }
    let issuer = raw.issuer;
    if issuer.as_deref() == Some("") {
        p.add(
            "auth.issuer",
            "must not be empty; remove the key to skip the issuer check",
        );
    }
    let audience = audience("auth.audience", raw.audience, p);
    let user_claim = p.claim_path(
        "auth.user_claim",
        raw.user_claim.as_deref().unwrap_or("sub"),
    );
    let user_header = p.header_name(
        "auth.user_header",
        raw.user_header.as_deref().unwrap_or("X-Auth-User"),
    );
    let claim_headers = claim_headers(
        "auth.claim_headers",
        raw.claim_headers.unwrap_or_default(),
        user_header.as_ref(),
        p,
    );
    let max_token_bytes = raw.max_token_bytes.unwrap_or(8 * 1024);
    if !(256..=64 * 1024).contains(&max_token_bytes) {
        p.add("auth.max_token_bytes", "must be between 256 and 65536");
    }
    let mut providers: Vec<ProviderConfig> = Vec::new();
    let mut issuers: Vec<String> = Vec::new();
    for (i, value) in raw.provider.unwrap_or_default().into_iter().enumerate() {
        let key = format!("auth.provider[{i}]");
        let Some(rp) = p.section::<RawProvider>(&key, value, PROVIDER_KEYS) else {
            continue;
        };
        // Clashes are checked even when the provider has other problems.
        if let Some(this) = rp.issuer.clone().filter(|i| !i.is_empty()) {
            if let Some(j) = issuers.iter().position(|o| *o == this) {
                p.add(
                    format!("{key}.issuer"),
                    format!(
                        "{this:?} is also auth.provider[{j}]'s issuer: a token's iss picks one provider"
                    ),
                );
            }
            if issuer.as_deref() == Some(this.as_str()) {
                p.add(
                    format!("{key}.issuer"),
                    "is also auth.issuer: tokens with this iss are verified by the provider only, \
                     never with the shared secret; remove auth.issuer or use another issuer",
                );
            }
            issuers.push(this);
        } else {
            issuers.push(String::new());
        }
        if let Some(provider) = validate_provider(
            &key,
            rp,
            user_claim.as_ref(),
            &claim_headers,
            user_header.as_ref(),
            p,
        ) {
            providers.push(provider);
        }
    }
    // The same claim header for different claims of different issuers is fine: a token has
    // one issuer. Only the user header is off limits (checked per provider).
    let claim_separator = raw.claim_separator.unwrap_or_else(|| ",".into());
    if claim_separator.is_empty() || !claim_separator.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        p.add(
            "auth.claim_separator",
            "must be one or more visible ASCII characters (no space: header parsers trim it)",
        );
    }
    let max_identity_bytes = raw.max_identity_bytes.unwrap_or(8 * 1024);
    if !(256..=256 * 1024).contains(&max_identity_bytes) {
        p.add("auth.max_identity_bytes", "must be between 256 and 262144");
    }
    let issuer_header = p.header_name(
        "auth.issuer_header",
        raw.issuer_header.as_deref().unwrap_or("X-Auth-Issuer"),
    );
    if let Some(h) = &issuer_header {
        let key = spoof_key(h.as_str());
        let taken = user_header.iter().chain(
            claim_headers
                .iter()
                .chain(providers.iter().flat_map(|pr| &pr.claim_headers))
                .map(|(_, n)| n),
        );
        if taken.into_iter().any(|n| spoof_key(n.as_str()) == key) {
            p.add(
                "auth.issuer_header",
                format!(
                    "{:?} is already used for another identity value",
                    h.as_str()
                ),
            );
        }
    }
    // Issuers are written as the issuer header's value: each must be one.
    if let Some(iss) = issuer
        .as_deref()
        .filter(|i| HeaderValue::from_str(i).is_err())
    {
        p.add(
            "auth.issuer",
            format!("{iss:?} must be printable ASCII: it is sent in auth.issuer_header"),
        );
    }
    for (i, pr) in providers.iter().enumerate() {
        if HeaderValue::from_str(&pr.issuer).is_err() {
            p.add(
                format!("auth.provider[{i}].issuer"),
                "must be printable ASCII: it is sent in auth.issuer_header",
            );
        }
    }
    if raw.assertion.is_some() {
        p.add("auth.assertion", "is not supported by this build yet");
    }
    // RFC 6265 §4.1.1: a cookie name is an RFC 9110 token.
    let cookie = raw.cookie.filter(|name| {
        let ok = !name.is_empty() && name.bytes().all(is_tchar);
        if !ok {
            p.add("auth.cookie", format!("{name:?} is not a cookie name"));
        }
        ok
    });
    let max_token_lifetime = match raw.max_token_lifetime.as_deref().map(parse_duration) {
        None => None,
        Some(Ok(d)) if d > Duration::ZERO => Some(d),
        Some(Ok(_)) => {
            p.add("auth.max_token_lifetime", "must be more than 0s");
            None
        }
        Some(Err(m)) => {
            p.add("auth.max_token_lifetime", m);
            None
        }
    };
    Some(AuthConfig {
        algorithms,
        leeway,
        issuer,
        audience,
        user_claim: user_claim?,
        user_header: user_header?,
        claim_headers,
        claim_separator,
        max_identity_bytes,
        issuer_header: issuer_header?,
        max_token_lifetime,
        cookie,
        forward_token: raw.forward_token.unwrap_or(true),
        max_token_bytes,
        token_cache: raw.token_cache.unwrap_or(10_000),
        providers,
    })
}
