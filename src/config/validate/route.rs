//! `[[route]]`: paths, hosts, upstreams, auth modes, requirements, upgrades.

use std::collections::HashSet;
use std::path::PathBuf;

use http::Uri;

use super::Problems;
use crate::config::raw::RawRoute;
use crate::config::{AuthMode, ClaimValue, Requirement, RouteConfig};
use crate::wire::uri;

pub(super) fn validate_routes(
    raw: Vec<(usize, Option<RawRoute>)>,
    default_body: u64,
    checks: bool,
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
        for (what, set) in [
            ("cors", r.cors.is_some()),
            ("resource_metadata", r.resource_metadata.is_some()),
        ] {
            if set {
                p.add(
                    format!("{key}.{what}"),
                    "is not supported by this build yet",
                );
            }
        }
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
                ca_file,
                max_body: Some(r.max_body_bytes.unwrap_or(default_body)).filter(|&n| n > 0),
                upgrades,
            });
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
