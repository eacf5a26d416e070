//! `[[auth.provider]]`: an identity provider's issuer, algorithms and where its keys come from.

use std::path::PathBuf;
use std::time::Duration;

use http::header::HeaderName;
use http::Uri;

use super::route::valid_server_name;
use super::Problems;
use super::{audience, claim_headers};
use crate::config::raw::RawProvider;
use crate::config::{Algorithm, ClaimPath, KeySource, ProviderConfig, MIN_REFRESH};

/// One `[[auth.provider]]` under `key` (`auth.provider[i]`).
pub(super) fn validate_provider(
    key: &str,
    raw: RawProvider,
    user_claim: Option<&ClaimPath>,
    default_claims: &[(ClaimPath, HeaderName)],
    user_header: Option<&HeaderName>,
    p: &mut Problems,
) -> Option<ProviderConfig> {
    let issuer = match raw.issuer {
        None => {
            p.add(
                format!("{key}.issuer"),
                "is required: the iss of the provider's tokens, e.g. \"https://sso.example.com/realms/main\"",
            );
            None
        }
        Some(i) if i.is_empty() => {
            p.add(format!("{key}.issuer"), "must not be empty");
            None
        }
        Some(i) => Some(i),
    };
    let mut algorithms = Vec::new();
    match raw.algorithms {
        None => p.add(
            format!("{key}.algorithms"),
            "is required: the algorithms the provider signs with, e.g. [\"RS256\"]",
        ),
        Some(list) if list.is_empty() => p.add(
            format!("{key}.algorithms"),
            "must name at least one algorithm",
        ),
        Some(list) => {
            for name in list {
                match Algorithm::from_name(&name) {
                    Some(a) if algorithms.contains(&a) => p.add(
                        format!("{key}.algorithms"),
                        format!("{name:?} is listed twice"),
                    ),
                    Some(a) if !a.is_hmac() => algorithms.push(a),
                    _ => p.add(
                        format!("{key}.algorithms"),
                        format!(
                            "{name:?} is not a provider algorithm; use RS256, RS384, RS512, PS256, \
                             PS384, PS512, ES256, ES384 or EdDSA (shared secrets are auth.algorithms)"
                        ),
                    ),
                }
            }
        }
    }
    let named: Vec<&str> = [
        ("jwks_url", raw.jwks_url.is_some()),
        ("jwks_file", raw.jwks_file.is_some()),
        ("public_key_file", raw.public_key_file.is_some()),
    ]
    .iter()
    .filter(|(_, set)| *set)
    .map(|(n, _)| *n)
    .collect();
    if named.len() > 1 {
        p.add(
            key,
            format!(
                "{} are all set: name at most one key source (none: OpenID Connect discovery)",
                named.join(" and ")
            ),
        );
    }
    let source = if let Some(url) = raw.jwks_url {
        key_url(&format!("{key}.jwks_url"), &url, p).map(KeySource::JwksUrl)
    } else if let Some(f) = raw.jwks_file {
        file(&format!("{key}.jwks_file"), f, p).map(KeySource::JwksFile)
    } else if let Some(f) = raw.public_key_file {
        file(&format!("{key}.public_key_file"), f, p).map(KeySource::PublicKeyFile)
    } else {
        issuer.as_deref().and_then(|i| {
            let url = format!(
                "{}/.well-known/openid-configuration",
                i.trim_end_matches('/')
            );
            key_url(&format!("{key}.issuer"), &url, p).map(KeySource::Discovery)
        })
    };
    let refresh = p.duration(
        &format!("{key}.refresh"),
        raw.refresh.as_deref(),
        Duration::from_secs(300),
    );
    if !(MIN_REFRESH..=Duration::from_secs(86_400)).contains(&refresh) {
        p.add(format!("{key}.refresh"), "must be between 30s and 24h");
    }
    let ca_file = raw
        .ca_file
        .and_then(|f| file(&format!("{key}.ca_file"), f, p));
    if ca_file.is_some() && source.as_ref().is_some_and(|s| s.url().is_none()) {
        p.add(
            format!("{key}.ca_file"),
            "applies to jwks_url and discovery only: this provider's keys come from a file",
        );
    }
    let audience = audience(&format!("{key}.audience"), raw.audience, p);
    let user_claim = match raw.user_claim {
        None => user_claim.cloned(),
        Some(raw) => p.claim_path(&format!("{key}.user_claim"), &raw),
    };
    let claim_headers = match raw.claim_headers {
        None => default_claims.to_vec(),
        Some(raw) => claim_headers(&format!("{key}.claim_headers"), raw, user_header, p),
    };
    Some(ProviderConfig {
        issuer: issuer?,
        algorithms,
        source: source?,
        audience,
        user_claim: user_claim?,
        claim_headers,
        refresh,
        ca_file,
    })
}

/// A file path named by a key; must not be empty.
fn file(key: &str, raw: String, p: &mut Problems) -> Option<PathBuf> {
    if raw.is_empty() {
        p.add(key, "must not be empty");
        return None;
    }
    Some(PathBuf::from(raw))
}

/// A URL keys are fetched from: `https`, or `http` to a loopback address only (keys fetched in
/// the clear from elsewhere could be anyone's).
fn key_url(key: &str, raw: &str, p: &mut Problems) -> Option<Uri> {
    let uri: Uri = match raw.parse() {
        Ok(u) => u,
        Err(_) => {
            p.add(key, format!("{raw:?} is not a URL"));
            return None;
        }
    };
    let Some(authority) = uri.authority() else {
        p.add(key, format!("{raw:?} has no host"));
        return None;
    };
    if authority.as_str().contains('@') {
        p.add(key, format!("{raw:?} must not carry credentials"));
        return None;
    }
    match uri.scheme_str() {
        Some("https") if valid_server_name(authority.host()) => Some(uri),
        Some("https") => {
            p.add(
                key,
                format!(
                    "{raw:?}: {:?} cannot be verified as a TLS server name",
                    authority.host()
                ),
            );
            None
        }
        Some("http") if is_loopback(authority.host()) => Some(uri),
        Some("http") => {
            p.add(
                key,
                format!(
                    "{raw:?}: keys are fetched over https, or http to a loopback address only \
                     (keys fetched in the clear could be anyone's)"
                ),
            );
            None
        }
        _ => {
            p.add(key, format!("{raw:?} must start with https://"));
            None
        }
    }
}

/// `localhost`, 127.0.0.0/8 or ::1.
pub(crate) fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
