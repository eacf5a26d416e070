//! `[auth]`: algorithms, claims, identity headers, and the providers in it.

use std::time::Duration;

use super::provider::validate_provider;
use http::header::HeaderValue;

use super::{audience, claim_headers, is_tchar, Problems};
use crate::config::raw::{RawAssertion, RawAuth, RawProvider, ASSERTION_KEYS, PROVIDER_KEYS};
use crate::config::{parse_duration, spoof_key};
use crate::config::{Algorithm, AssertionConfig, AuthConfig, ProviderConfig};

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
    // RFC 6265 §4.1.1: a cookie name is an RFC 9110 token.
    let cookie = raw.cookie.filter(|name| {
        let ok = !name.is_empty() && name.bytes().all(is_tchar);
        if !ok {
            p.add("auth.cookie", format!("{name:?} is not a cookie name"));
        }
        ok
    });
    let identity_taken: Vec<String> = user_header
        .iter()
        .chain(issuer_header.iter())
        .chain(
            claim_headers
                .iter()
                .chain(providers.iter().flat_map(|pr| &pr.claim_headers))
                .map(|(_, n)| n),
        )
        .map(|n| spoof_key(n.as_str()))
        .collect();
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
    let assertion = raw.assertion.and_then(|v| {
        let raw: RawAssertion = p.section("auth.assertion", v, ASSERTION_KEYS)?;
        assertion(raw, &identity_taken, p)
    });
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
        assertion,
        forward_token: raw.forward_token.unwrap_or(true),
        max_token_bytes,
        token_cache: raw.token_cache.unwrap_or(10_000),
        providers,
    })
}

/// `[auth.assertion]`; `taken` are the other identity headers (spoof keys).
fn assertion(raw: RawAssertion, taken: &[String], p: &mut Problems) -> Option<AssertionConfig> {
    let before = p.0.len();
    let header = p.header_name(
        "auth.assertion.header",
        raw.header.as_deref().unwrap_or("X-Auth-Assertion"),
    );
    if let Some(h) = &header {
        if taken.contains(&spoof_key(h.as_str())) {
            p.add(
                "auth.assertion.header",
                format!(
                    "{:?} is already used for another identity value",
                    h.as_str()
                ),
            );
        }
    }
    let file = |key: &str, v: Option<String>, p: &mut Problems| match v {
        Some(f) if f.is_empty() => {
            p.add(key, "must not be empty");
            None
        }
        v => v.map(std::path::PathBuf::from),
    };
    let key_file = file("auth.assertion.key_file", raw.key_file, p);
    if key_file.is_none() {
        p.add(
            "auth.assertion.key_file",
            "required: an Ed25519 or P-256 private key, PKCS#8 PEM (e.g. openssl genpkey -algorithm ed25519)",
        );
    }
    let previous_key_file = file("auth.assertion.previous_key_file", raw.previous_key_file, p);
    let next_key_file = file("auth.assertion.next_key_file", raw.next_key_file, p);
    let issuer = raw.issuer.unwrap_or_else(|| "jwtgate".into());
    if issuer.is_empty() {
        p.add("auth.assertion.issuer", "must not be empty");
    }
    let ttl = p.duration(
        "auth.assertion.ttl",
        raw.ttl.as_deref(),
        Duration::from_secs(60),
    );
    if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&ttl) {
        p.add("auth.assertion.ttl", "must be between 1s and 1h");
    }
    const RESERVED: [&str; 6] = ["iss", "sub", "aud", "iat", "exp", "orig_iss"];
    let mut claims = Vec::new();
    for c in raw.claims.unwrap_or_default() {
        let Some(path) = p.claim_path("auth.assertion.claims", &c) else {
            continue;
        };
        if RESERVED.iter().any(|r| path.segments()[0].as_ref() == *r) {
            p.add(
                "auth.assertion.claims",
                format!("{c:?}: the assertion writes {} itself", path.segments()[0]),
            );
            continue;
        }
        claims.push(path);
    }
    (p.0.len() == before).then(|| AssertionConfig {
        header: header.expect("checked"),
        key_file: key_file.expect("checked"),
        previous_key_file,
        next_key_file,
        issuer,
        ttl,
        claims,
    })
}
