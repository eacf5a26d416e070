//! `[auth]`: algorithms, claims, identity headers, and the providers in it.

use std::time::Duration;

use super::provider::validate_provider;
use super::{audience, claim_headers, Problems};
use crate::config::raw::{RawAuth, RawProvider, PROVIDER_KEYS};
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
    let user_claim = raw.user_claim.unwrap_or_else(|| "sub".into());
    if user_claim.is_empty() {
        p.add("auth.user_claim", "must not be empty");
    }
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
            &user_claim,
            &claim_headers,
            user_header.as_ref(),
            p,
        ) {
            providers.push(provider);
        }
    }
    // The same claim header for different claims of different issuers is fine: a token has
    // one issuer. Only the user header is off limits (checked per provider).
    Some(AuthConfig {
        algorithms,
        leeway,
        issuer,
        audience,
        user_claim,
        user_header: user_header?,
        claim_headers,
        forward_token: raw.forward_token.unwrap_or(true),
        max_token_bytes,
        token_cache: raw.token_cache.unwrap_or(10_000),
        providers,
    })
}
