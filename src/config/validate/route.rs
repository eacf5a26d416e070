//! `[[route]]`: paths, hosts, upstreams, auth modes, requirements, upgrades.

use std::collections::HashSet;
use std::path::PathBuf;

use http::Uri;

use super::Problems;
use crate::config::raw::{
    RawCors, RawResourceMetadata, RawRoute, CORS_KEYS, RESOURCE_METADATA_KEYS,
};
use crate::config::{
    AuthMode, ClaimValue, CorsConfig, CorsRules, Requirement, ResourceMetadataConfig, RouteConfig,
};
use crate::wire::uri;

pub(super) fn validate_routes(
    raw: Vec<(usize, Option<RawRoute>)>,
    default_body: u64,
    checks: bool,
    issuers: &[String],
    p: &mut Problems,
) -> Option<Vec<RouteConfig>> {
    if raw.is_empty() {
        p.add(
            "route",
            "no routes: add at least one [[route]] with path and upstream",
        );
        return None;
    }
    let mut routes = Vec::new();
    let mut seen = HashSet::new();
    for (i, r) in raw {
        let Some(r) = r else { continue };
        let key = format!("route[{i}]");
        let path = match uri::normalize_route_prefix(&r.path) {
            Ok(path) => Some(path),
            Err(m) => {
                p.add(format!("{key}.path"), m);
                None
            }
        };
        // A route without an upstream is reachable only through forward-auth checks.
        let upstream = match r.upstream.as_deref() {
            Some(u) => upstream_uri(u)
                .map(Some)
                .map_err(|m| p.add(format!("{key}.upstream"), m)),
            None if checks => Ok(None),
            None => {
                p.add(
                    format!("{key}.upstream"),
                    "missing: a route needs an upstream unless [forward_auth] answers checks for it",
                );
                Err(())
            }
        };
        let ca_file = r.ca_file.map(PathBuf::from);
        if let (Ok(u), Some(_)) = (&upstream, &ca_file) {
            let u = u.as_ref();
            if u.and_then(|u| u.scheme_str()) != Some("https") {
                p.add(
                    format!("{key}.ca_file"),
                    "only applies to an https:// upstream",
                );
            }
        }
        let upgrades = upgrades(&key, r.upgrades, p);
        let host = match r.host.as_deref() {
            None => None,
            Some(h) => {
                let h = uri::normalize_host(h);
                if h.is_empty() || h.contains(['/', ' ', '@']) {
                    p.add(
                        format!("{key}.host"),
                        format!("{:?} is not a host name", r.host.as_deref().unwrap_or("")),
                    );
                }
                Some(h)
            }
        };
        let auth = match r.auth.as_deref().unwrap_or("required") {
            "required" => Some(AuthMode::Required),
            "optional" => Some(AuthMode::Optional),
            "public" => Some(AuthMode::Public),
            other => {
                p.add(
                    format!("{key}.auth"),
                    format!("{other:?} is not one of: required, optional, public"),
                );
                None
            }
        };
        let mut require = Vec::new();
        for (claim, value) in r.require.unwrap_or_default() {
            let at = format!("{key}.require.{claim}");
            let path = p.claim_path(&at, &claim);
            let one = |v: toml::Value| match v {
                toml::Value::String(s) => Some(ClaimValue::String(s)),
                toml::Value::Boolean(b) => Some(ClaimValue::Bool(b)),
                toml::Value::Integer(n) => Some(ClaimValue::Integer(n)),
                _ => None,
            };
            let values: Option<Vec<ClaimValue>> = match value {
                toml::Value::Array(list) if !list.is_empty() => list.into_iter().map(one).collect(),
                toml::Value::Array(_) => None,
                v => one(v).map(|v| vec![v]),
            };
            match (path, values) {
                (Some(claim), Some(values)) => require.push(Requirement { claim, values }),
                (_, None) => p.add(
                    at,
                    "must be a string, integer or boolean, or a non-empty list of them (any one satisfies it)",
                ),
                (None, Some(_)) => {}
            }
        }
        let cors = r.cors.and_then(|v| cors(&format!("{key}.cors"), v, p));
        let resource_metadata = r
            .resource_metadata
            .and_then(|v| resource_metadata(&format!("{key}.resource_metadata"), v, issuers, p));
        let query_token = r.query_token.filter(|name| {
            let ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
            if !ok {
                p.add(
                    format!("{key}.query_token"),
                    format!("{name:?} is not a query parameter name (letters, digits, '-', '.', '_', '~')"),
                );
            }
            ok
        });
        if auth == Some(AuthMode::Public) && !require.is_empty() {
            p.add(
                format!("{key}.require"),
                "a public route checks no token, so it cannot require claims; use auth = \"required\"",
            );
        }
        if let (Some(path), Ok(upstream), Some(auth)) = (path, upstream, auth) {
            if !seen.insert((host.clone(), path.clone())) {
                p.add(
                    format!("{key}.path"),
                    format!("another route already has path {path:?} for the same host"),
                );
                continue;
            }
            routes.push(RouteConfig {
                path,
                host,
                upstream,
                auth,
                require,
                query_token,
                cors,
                resource_metadata,
                ca_file,
                max_body: Some(r.max_body_bytes.unwrap_or(default_body)).filter(|&n| n > 0),
                upgrades,
            });
        }
    }
    // One document per metadata path: two routes may share one only if they say the same.
    for (i, a) in routes.iter().enumerate() {
        let Some(ma) = &a.resource_metadata else {
            continue;
        };
        let clash = routes[..i].iter().find(|b| {
            b.resource_metadata.as_ref().is_some_and(|mb| {
                mb.well_known_path() == ma.well_known_path()
                    && (mb != ma || b.query_token.is_some() != a.query_token.is_some())
            })
        });
        if let Some(b) = clash {
            p.add(
                format!("route[{}].resource_metadata", a.name()),
                format!(
                    "{} is also served for route {} with other contents: one path, one document",
                    ma.well_known_path(),
                    b.name()
                ),
            );
        }
    }
    Some(routes)
}

fn upstream_uri(raw: &str) -> Result<Uri, String> {
    let uri: Uri = raw
        .parse()
        .map_err(|_| format!("{raw:?} is not a URL; write e.g. \"http://127.0.0.1:8000\""))?;
    match uri.scheme_str() {
        Some("http" | "https" | "h2c") => {}
        _ => {
            return Err(format!(
                "{raw:?} must start with http://, https:// or h2c://"
            ))
        }
    }
    let Some(authority) = uri.authority() else {
        return Err(format!("{raw:?} has no host"));
    };
    if authority.as_str().contains('@') {
        return Err(format!("{raw:?} must not carry credentials"));
    }
    if uri.scheme_str() == Some("https") && !valid_server_name(authority.host()) {
        return Err(format!(
            "{raw:?}: {:?} cannot be verified as a TLS server name",
            authority.host()
        ));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "{raw:?} must not have a path or query: the request path is forwarded as it is"
        ));
    }
    Ok(uri)
}

/// The upgrade protocols a route tunnels: lower-case tokens; `h2c` never (h2c smuggling).
fn upgrades(key: &str, raw: Option<Vec<String>>, p: &mut Problems) -> Vec<String> {
    let Some(raw) = raw else {
        return vec!["websocket".to_owned()];
    };
    let mut out: Vec<String> = Vec::new();
    for name in raw {
        let lower = name.to_ascii_lowercase();
        let token = !lower.is_empty()
            && lower
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            p.add(
                format!("{key}.upgrades"),
                format!("{name:?} is not a protocol name (a token such as \"websocket\")"),
            );
        } else if lower == "h2c" {
            p.add(
                format!("{key}.upgrades"),
                format!("{name:?}: HTTP/2 upgrades are never tunnelled (clients reach HTTP/2 by prior knowledge or ALPN h2)"),
            );
        } else if out.contains(&lower) {
            p.add(
                format!("{key}.upgrades"),
                format!("{name:?} is listed twice"),
            );
        } else {
            out.push(lower);
        }
    }
    out
}

/// True when rustls can verify a certificate for `host` (a DNS name or an IP literal; IPv6
/// without its brackets).
pub(super) fn valid_server_name(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    rustls_pki_types::ServerName::try_from(host).is_ok()
}

/// A route's `cors`: a table of rules, or `"upstream"`.
fn cors(key: &str, value: toml::Value, p: &mut Problems) -> Option<CorsConfig> {
    if let toml::Value::String(s) = &value {
        if s == "upstream" {
            return Some(CorsConfig::Upstream);
        }
        p.add(
            key,
            format!("{s:?}: write \"upstream\" or a table of rules"),
        );
        return None;
    }
    let raw: RawCors = p.section(key, value, CORS_KEYS)?;
    let before = p.0.len();
    let origins: Vec<String> = raw.origins.unwrap_or_default();
    if origins.is_empty() {
        p.add(
            format!("{key}.origins"),
            "required: the origins allowed, e.g. [\"https://app.example.com\"], or [\"*\"]",
        );
    }
    let any = origins.iter().any(|o| o == "*");
    if any && origins.len() > 1 {
        p.add(
            format!("{key}.origins"),
            "\"*\" stands alone: it already allows every origin",
        );
    }
    let origins: Vec<String> = origins
        .into_iter()
        .filter(|o| o == "*" || {
            let ok = is_origin(o);
            if !ok {
                p.add(
                    format!("{key}.origins"),
                    format!("{o:?} is not an origin (scheme://host[:port], no path, no trailing '/')"),
                );
            }
            ok
        })
        .map(|o| o.to_ascii_lowercase())
        .collect();
    let credentials = raw.credentials.unwrap_or(false);
    if any && credentials {
        p.add(
            format!("{key}.credentials"),
            "cannot be true with origins = [\"*\"]: browsers refuse credentials for any origin; list the origins",
        );
    }
    let methods: Vec<String> = raw
        .methods
        .unwrap_or_else(|| vec!["GET".into(), "HEAD".into(), "POST".into()]);
    for m in &methods {
        if m.is_empty() || !m.bytes().all(super::is_tchar) {
            p.add(format!("{key}.methods"), format!("{m:?} is not a method"));
        }
    }
    let names = |what: &str, list: Option<Vec<String>>, default: &[&str], p: &mut Problems| {
        let list = list.unwrap_or_else(|| default.iter().map(|s| (*s).to_owned()).collect());
        list.iter()
            .filter_map(|h| match http::HeaderName::from_bytes(h.as_bytes()) {
                Ok(n) => Some(n),
                Err(_) => {
                    p.add(
                        format!("{key}.{what}"),
                        format!("{h:?} is not a header name"),
                    );
                    None
                }
            })
            .collect::<Vec<_>>()
    };
    let headers = names(
        "headers",
        raw.headers,
        &["authorization", "content-type"],
        p,
    );
    let expose = names("expose", raw.expose, &[], p);
    let max_age = raw.max_age.as_deref().map(|v| {
        p.duration(
            &format!("{key}.max_age"),
            Some(v),
            std::time::Duration::ZERO,
        )
    });
    (p.0.len() == before).then_some(CorsConfig::Gateway(CorsRules {
        origins,
        methods,
        headers,
        expose,
        max_age,
        credentials,
    }))
}

/// `scheme://host[:port]` with an http or https scheme, nothing after.
fn is_origin(o: &str) -> bool {
    let Some((scheme, rest)) = o.split_once("://") else {
        return false;
    };
    matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', '@', ' '])
        && rest.parse::<http::uri::Authority>().is_ok()
}

/// A route's RFC 9728 `resource_metadata`.
fn resource_metadata(
    key: &str,
    value: toml::Value,
    issuers: &[String],
    p: &mut Problems,
) -> Option<ResourceMetadataConfig> {
    let raw: RawResourceMetadata = p.section(key, value, RESOURCE_METADATA_KEYS)?;
    let before = p.0.len();
    let resource = match raw.resource.as_deref().map(str::parse::<Uri>) {
        None => {
            p.add(format!("{key}.resource"), "required: the protected resource's identifier, e.g. \"https://api.example.com/mcp\"");
            None
        }
        Some(Ok(u))
            if (u.scheme_str() == Some("https")
                || (u.scheme_str() == Some("http")
                    && u.host().is_some_and(super::is_loopback)))
                && u.authority().is_some()
                && u.query().is_none()
                && !raw.resource.as_deref().unwrap_or("").contains('#') =>
        {
            Some(u)
        }
        Some(_) => {
            p.add(
                format!("{key}.resource"),
                "must be an absolute https URL (http only to a loopback host), without query or fragment",
            );
            None
        }
    };
    let authorization_servers = match raw.authorization_servers {
        Some(list) => list,
        None => issuers.to_vec(),
    };
    if authorization_servers.is_empty() {
        p.add(
            format!("{key}.authorization_servers"),
            "empty: list the authorization servers, or configure [[auth.provider]] (their issuers are the default)",
        );
    }
    let scopes = raw.scopes.unwrap_or_default();
    (p.0.len() == before).then(|| ResourceMetadataConfig {
        resource: resource.expect("checked"),
        resource_text: raw.resource.clone().unwrap_or_default(),
        scopes,
        authorization_servers,
    })
}
