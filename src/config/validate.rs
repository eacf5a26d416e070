//! Validation: raw shapes into [`Config`], every problem collected (never the first only).

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::header::HeaderName;
use http::Uri;

use super::raw::{
    OneOrMany, RawAuth, RawProvider, RawRoute, RawServer, AUTH_KEYS, PROVIDER_KEYS, ROUTE_KEYS,
    SERVER_KEYS, TLS_KEYS,
};
use super::{
    parse_duration, spoof_key, Algorithm, AuthConfig, AuthMode, ClaimValue, Config, KeySource,
    Problem, ProviderConfig, RouteConfig, ServerConfig, TlsFiles, MIN_REFRESH,
};
use crate::wire::uri;

/// Validates a TOML document into a [`Config`], or every problem in it.
pub(super) fn config(text: &str) -> Result<Config, Vec<Problem>> {
    let mut p = Problems::default();
    let doc: toml::Table = match toml::from_str(text) {
        Ok(doc) => doc,
        Err(e) => {
            p.add(
                "(syntax)",
                e.message().to_owned() + &location(text, e.span()),
            );
            return Err(p.0);
        }
    };
    // Deserialize each section on its own, so that a mistake in one does not hide the others.
    let mut server = RawServer::default();
    let mut auth = RawAuth::default();
    let mut routes = Vec::new();
    for (key, value) in doc {
        match key.as_str() {
            "server" => {
                if let Some(v) = p.section::<RawServer>("server", value, SERVER_KEYS) {
                    server = v;
                }
            }
            "auth" => {
                if let Some(v) = p.section::<RawAuth>("auth", value, AUTH_KEYS) {
                    auth = v;
                }
            }
            "route" => match value {
                toml::Value::Array(items) => {
                    for (i, item) in items.into_iter().enumerate() {
                        routes.push((
                            i,
                            p.section::<RawRoute>(&format!("route[{i}]"), item, ROUTE_KEYS),
                        ));
                    }
                }
                _ => p.add("route", "must be an array of tables: write [[route]]"),
            },
            other => p.add(
                other,
                "unknown key (expected one of: server, auth, route)".to_owned(),
            ),
        }
    }
    let server = validate_server(server, &mut p);
    let auth = validate_auth(auth, &mut p);
    let default_body = server.as_ref().map_or(0, |s| s.max_body_bytes);
    let routes = validate_routes(routes, default_body, &mut p);
    match (p.0.is_empty(), server, auth, routes) {
        (true, Some(server), Some(auth), Some(routes)) => Ok(Config {
            server,
            auth,
            routes,
        }),
        _ => Err(p.0),
    }
}

/// The collector every validation step writes into.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem::new(key, message));
    }

    /// Deserializes one table. Unknown keys are all reported (serde would stop at the first),
    /// then dropped so that the other fields are still checked.
    fn section<T: serde::de::DeserializeOwned>(
        &mut self,
        key: &str,
        mut value: toml::Value,
        known: &[&str],
    ) -> Option<T> {
        if let toml::Value::Table(table) = &mut value {
            let unknown: Vec<String> = table
                .keys()
                .filter(|k| !known.contains(&k.as_str()))
                .cloned()
                .collect();
            for k in unknown {
                self.add(
                    format!("{key}.{k}"),
                    format!("unknown key (expected one of: {})", known.join(", ")),
                );
                table.remove(&k);
            }
            if let (Some(toml::Value::Table(tls)), true) = (table.get_mut("tls"), key == "server") {
                let unknown: Vec<String> = tls
                    .keys()
                    .filter(|k| !TLS_KEYS.contains(&k.as_str()))
                    .cloned()
                    .collect();
                for k in unknown {
                    self.add(
                        format!("server.tls.{k}"),
                        format!("unknown key (expected one of: {})", TLS_KEYS.join(", ")),
                    );
                    tls.remove(&k);
                }
            }
        }
        match T::deserialize(value) {
            Ok(v) => Some(v),
            Err(e) => {
                self.add(key, e.message().to_owned());
                None
            }
        }
    }

    fn duration(&mut self, key: &str, raw: Option<&str>, default: Duration) -> Duration {
        match raw {
            None => default,
            Some(s) => match parse_duration(s) {
                Ok(d) => d,
                Err(m) => {
                    self.add(key, m);
                    default
                }
            },
        }
    }

    fn header_name(&mut self, key: &str, raw: &str) -> Option<HeaderName> {
        match HeaderName::from_bytes(raw.as_bytes()) {
            Err(_) => {
                self.add(key, format!("{raw:?} is not a valid HTTP header name"));
                None
            }
            Ok(name) if name.as_str().contains('_') => {
                self.add(
                    key,
                    format!("{raw:?} contains '_': nginx and others drop such headers by default; use '-'"),
                );
                None
            }
            Ok(name) if reserved(&spoof_key(name.as_str())) => {
                self.add(
                    key,
                    format!("{raw:?} is a header the gateway manages itself; choose another name"),
                );
                None
            }
            Ok(name) => Some(name),
        }
    }
}

/// Headers an identity header may not be named after besides the hop-by-hop ones
/// ([`crate::wire::HOP_BY_HOP`]): framing, routing, credentials and the `X-Forwarded-*` set the
/// gateway writes.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "authorization",
    "content-length",
    "cookie",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "x-real-ip",
];

/// True for a name (in its spoof-key form) the gateway manages itself.
fn reserved(key: &str) -> bool {
    RESERVED_HEADERS.contains(&key) || crate::wire::HOP_BY_HOP.contains(&key)
}

fn location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

fn socket_addr(p: &mut Problems, key: &str, raw: &str) -> Option<SocketAddr> {
    match raw.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            p.add(
                key,
                format!("{raw:?} is not an address; write IP:PORT, e.g. \"0.0.0.0:8080\""),
            );
            None
        }
    }
}

fn validate_server(raw: RawServer, p: &mut Problems) -> Option<ServerConfig> {
    let listen = socket_addr(
        p,
        "server.listen",
        raw.listen.as_deref().unwrap_or("0.0.0.0:8080"),
    );
    let admin_listen = raw
        .admin_listen
        .as_deref()
        .and_then(|a| socket_addr(p, "server.admin_listen", a));
    if let (Some(l), Some(a)) = (listen, admin_listen) {
        if l == a && l.port() != 0 {
            p.add(
                "server.admin_listen",
                "must differ from server.listen: admin endpoints are never served on the public listener",
            );
        }
    }
    let positive = |p: &mut Problems, key: &str, raw: Option<&str>, default| {
        let d = p.duration(key, raw, default);
        if d.is_zero() {
            p.add(key, "must be greater than zero");
        }
        d
    };
    let connect_timeout = positive(
        p,
        "server.connect_timeout",
        raw.connect_timeout.as_deref(),
        Duration::from_secs(2),
    );
    let upstream_timeout = positive(
        p,
        "server.upstream_timeout",
        raw.upstream_timeout.as_deref(),
        Duration::from_secs(30),
    );
    let header_read_timeout = positive(
        p,
        "server.header_read_timeout",
        raw.header_read_timeout.as_deref(),
        Duration::from_secs(10),
    );
    let idle_timeout = positive(
        p,
        "server.idle_timeout",
        raw.idle_timeout.as_deref(),
        Duration::from_secs(60),
    );
    let max_body_bytes = raw.max_body_bytes.unwrap_or(64 * 1024 * 1024);
    let drain_timeout = p.duration(
        "server.drain_timeout",
        raw.drain_timeout.as_deref(),
        Duration::from_secs(30),
    );
    let mut bounded = |key: &str, v: Option<usize>, default: usize, min: usize, max: usize| {
        let v = v.unwrap_or(default);
        if v < min || v > max {
            p.add(key, format!("must be between {min} and {max}"));
        }
        v
    };
    let max_header_bytes = bounded(
        "server.max_header_bytes",
        raw.max_header_bytes,
        16 * 1024,
        8 * 1024,
        1024 * 1024,
    );
    let max_headers = bounded("server.max_headers", raw.max_headers, 100, 8, 1000);
    let max_connections = bounded(
        "server.max_connections",
        raw.max_connections,
        10_000,
        1,
        1_000_000,
    );
    let workers = raw
        .workers
        .map(|n| bounded("server.workers", Some(n), n, 1, 1024));
    let max_connecting = bounded("server.max_connecting", raw.max_connecting, 8, 1, 1024);
    let upstream_max_streams = bounded(
        "server.upstream_max_streams",
        raw.upstream_max_streams,
        100,
        1,
        10_000,
    );
    let max_buffered_bytes = bounded(
        "server.max_buffered_bytes",
        raw.max_buffered_bytes,
        1 << 30,
        1 << 20,
        1 << 40,
    );
    let tls = raw.tls.map(|t| TlsFiles {
        cert: PathBuf::from(t.cert),
        key: PathBuf::from(t.key),
    });
    Some(ServerConfig {
        listen: listen?,
        admin_listen,
        connect_timeout,
        upstream_timeout,
        drain_timeout,
        header_read_timeout,
        idle_timeout,
        max_body_bytes,
        max_header_bytes,
        max_headers,
        max_connections,
        workers,
        max_connecting,
        upstream_max_streams,
        max_buffered_bytes,
        tls,
    })
}

fn validate_auth(raw: RawAuth, p: &mut Problems) -> Option<AuthConfig> {
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

/// `audience`: one string or a non-empty list of non-empty strings.
fn audience(key: &str, raw: Option<OneOrMany>, p: &mut Problems) -> Vec<String> {
    let audience = match raw {
        None => Vec::new(),
        Some(OneOrMany::One(a)) => vec![a],
        Some(OneOrMany::Many(list)) => {
            if list.is_empty() {
                p.add(
                    key,
                    "must not be empty; remove the key to skip the audience check",
                );
            }
            list
        }
    };
    if audience.iter().any(String::is_empty) {
        p.add(key, "must not contain an empty string");
    }
    audience
}

/// `claim_headers`: claim name to header name, each header once and never the user header.
fn claim_headers(
    key: &str,
    raw: BTreeMap<String, String>,
    user_header: Option<&HeaderName>,
    p: &mut Problems,
) -> Vec<(String, HeaderName)> {
    let mut claim_headers = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    if let Some(h) = user_header {
        seen.insert(spoof_key(h.as_str()));
    }
    for (claim, header) in raw {
        let key = format!("{key}.{claim}");
        if claim.is_empty() {
            p.add(&key, "the claim name must not be empty");
        }
        if let Some(name) = p.header_name(&key, &header) {
            if !seen.insert(spoof_key(name.as_str())) {
                p.add(
                    &key,
                    format!("header {header:?} is already used for another identity value"),
                );
            } else {
                claim_headers.push((claim, name));
            }
        }
    }
    claim_headers
}

/// One `[[auth.provider]]` under `key` (`auth.provider[i]`).
fn validate_provider(
    key: &str,
    raw: RawProvider,
    user_claim: &str,
    default_claims: &[(String, HeaderName)],
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
    let user_claim = raw.user_claim.unwrap_or_else(|| user_claim.to_owned());
    if user_claim.is_empty() {
        p.add(format!("{key}.user_claim"), "must not be empty");
    }
    let claim_headers = match raw.claim_headers {
        None => default_claims.to_vec(),
        Some(raw) => claim_headers(&format!("{key}.claim_headers"), raw, user_header, p),
    };
    Some(ProviderConfig {
        issuer: issuer?,
        algorithms,
        source: source?,
        audience,
        user_claim,
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

fn validate_routes(
    raw: Vec<(usize, Option<RawRoute>)>,
    default_body: u64,
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
        let upstream = upstream_uri(&r.upstream).map_err(|m| p.add(format!("{key}.upstream"), m));
        let ca_file = r.ca_file.map(PathBuf::from);
        if let (Ok(u), Some(_)) = (&upstream, &ca_file) {
            if u.scheme_str() != Some("https") {
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
            let v = match value {
                toml::Value::String(s) => ClaimValue::String(s),
                toml::Value::Boolean(b) => ClaimValue::Bool(b),
                toml::Value::Integer(n) => ClaimValue::Integer(n),
                _ => {
                    p.add(
                        format!("{key}.require.{claim}"),
                        "must be a string, integer or boolean",
                    );
                    continue;
                }
            };
            require.push((claim, v));
        }
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
fn valid_server_name(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    rustls_pki_types::ServerName::try_from(host).is_ok()
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn only_loopback_names_and_addresses_are_loopback() {
        for host in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.8.9.10",
            "[::1]",
            "::1",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "127.0.0.1.evil.com",
            "localhost.evil.com",
            "[::ffff:127.0.0.1]",
            "0.0.0.0",
            "10.0.0.1",
            "example.com",
            "",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
