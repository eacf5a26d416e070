//! Configuration: the raw TOML shapes (`Raw*`, serde, `deny_unknown_fields`) and their validation
//! into [`Config`], where every value already has its real type (`SocketAddr`, `Duration`,
//! `HeaderName`, a built route table). Validation collects *every* problem before failing, so an
//! operator fixes a config in one round trip (the way oauth2-proxy's `validation.Validate` does).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;
use http::Uri;
use serde::Deserialize;

use crate::auth::Algorithm;
use crate::policy::routes::{AuthMode, ClaimValue, Route, RouteTable};

/// One thing wrong with a configuration: where (a dotted key such as `route[2].upstream`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key the problem is about, e.g. `server.listen` or `route[1].path`.
    pub key: String,
    /// What is wrong and, where it helps, how to fix it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found in one configuration file (never empty).
#[derive(Debug, Clone)]
pub struct ConfigError {
    /// The file the problems are in, when the config came from a file.
    pub file: Option<PathBuf>,
    /// All problems, in the order of the file.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self
            .file
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "config".to_owned());
        let n = self.problems.len();
        write!(f, "{file}: {n} problem{}", if n == 1 { "" } else { "s" })?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

// ---------------------------------------------------------------------------------------------
// Raw shapes: exactly the TOML of CONTRACT.md. Unknown keys are errors.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    admin_listen: Option<String>,
    connect_timeout: Option<String>,
    upstream_timeout: Option<String>,
    drain_timeout: Option<String>,
    header_read_timeout: Option<String>,
    idle_timeout: Option<String>,
    max_body_bytes: Option<u64>,
    max_header_bytes: Option<usize>,
    max_headers: Option<usize>,
    max_connections: Option<usize>,
    workers: Option<usize>,
    tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: String,
    key: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    algorithms: Option<Vec<String>>,
    leeway: Option<String>,
    issuer: Option<String>,
    audience: Option<OneOrMany>,
    user_claim: Option<String>,
    user_header: Option<String>,
    claim_headers: Option<BTreeMap<String, String>>,
    forward_token: Option<bool>,
    max_token_bytes: Option<usize>,
    token_cache: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    path: String,
    upstream: String,
    host: Option<String>,
    auth: Option<String>,
    require: Option<BTreeMap<String, toml::Value>>,
    ca_file: Option<String>,
    max_body_bytes: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// Validated configuration.

/// A validated configuration: what the gateway runs on. Built once per load or reload.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[auth]`.
    pub auth: AuthConfig,
    /// `[[route]]`, as a table ready for matching.
    pub routes: RouteTable,
}

/// `[server]`: listeners, timeouts and limits.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Public listener. Default `0.0.0.0:8080`.
    pub listen: SocketAddr,
    /// Admin listener for `/healthz`, `/readyz`, `/metrics`. Default: none (disabled).
    pub admin_listen: Option<SocketAddr>,
    /// Time allowed to connect to an upstream before answering 502. Default 2s.
    pub connect_timeout: Duration,
    /// Time allowed until the upstream's response head before answering 504. Default 30s.
    pub upstream_timeout: Duration,
    /// Time in-flight requests get to finish on SIGTERM/SIGINT. Default 30s.
    pub drain_timeout: Duration,
    /// Time a client gets to send a complete request head: from the connection's start for its
    /// first request, from the head's first byte for later ones. Default 10s.
    pub header_read_timeout: Duration,
    /// A client connection with nothing read or written for this long, while the gateway waits
    /// on it, is closed (idle keep-alive connections, trickled bodies, silent tunnels).
    /// Default 60s.
    pub idle_timeout: Duration,
    /// Default largest request body, in bytes, for routes without their own; larger gets 413.
    /// 0 means no limit. Default 64 MiB.
    pub max_body_bytes: u64,
    /// Largest request head (request line + headers) accepted, in bytes; larger gets 431.
    /// Default 16 KiB.
    pub max_header_bytes: usize,
    /// Most request header fields accepted; more gets 431. Default 100.
    pub max_headers: usize,
    /// Most client connections served at once; further ones wait in the kernel's backlog.
    /// Default 10,000.
    pub max_connections: usize,
    /// Tokio worker threads. Default: the CPUs this process may use.
    pub workers: Option<usize>,
    /// `[server.tls]`: serve HTTPS with this PEM certificate chain and key. Default: plain HTTP.
    pub tls: Option<TlsSettings>,
}

/// The public listener's TLS: the PEM files and the rustls config built from them.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// The server config (ALPN h2, http/1.1).
    pub config: Arc<rustls::ServerConfig>,
}

/// `[auth]`: how tokens are verified and how the identity is passed on.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Algorithms accepted, pinned here and never taken from the token. Default `["HS256"]`.
    pub algorithms: Vec<Algorithm>,
    /// Clock skew allowed on `exp` and `nbf`. Default 30s.
    pub leeway: Duration,
    /// Required `iss`, checked only when set.
    pub issuer: Option<String>,
    /// Accepted `aud` values (any one must match), checked only when non-empty.
    pub audience: Vec<String>,
    /// Claim that names the caller. Default `sub`.
    pub user_claim: String,
    /// Header the upstream reads the caller from. Default `X-Auth-User`.
    pub user_header: HeaderName,
    /// More claims passed on, as (claim, header). Default none.
    pub claim_headers: Vec<(String, HeaderName)>,
    /// Keep the `Authorization` header for the upstream. Default true.
    pub forward_token: bool,
    /// Longest token accepted, in bytes, checked before any decoding. Default 8 KiB.
    pub max_token_bytes: usize,
    /// Verified tokens remembered (see `cache.rs`); 0 turns the cache off. Default 10,000.
    pub token_cache: usize,
}

impl Config {
    /// Reads and validates the TOML file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: Some(path.to_owned()),
            problems: vec![Problem {
                key: "(file)".into(),
                message: format!("cannot read: {e}"),
            }],
        })?;
        Config::from_toml(&text).map_err(|mut e| {
            e.file = Some(path.to_owned());
            e
        })
    }

    /// Validates a TOML document. Every problem is collected before returning.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let mut p = Problems::default();
        let doc: toml::Table = match toml::from_str(text) {
            Ok(doc) => doc,
            Err(e) => {
                p.add(
                    "(syntax)",
                    e.message().to_owned() + &location(text, e.span()),
                );
                return Err(p.into_error());
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
            _ => Err(p.into_error()),
        }
    }
}

const SERVER_KEYS: &[&str] = &[
    "listen",
    "admin_listen",
    "connect_timeout",
    "upstream_timeout",
    "drain_timeout",
    "header_read_timeout",
    "idle_timeout",
    "max_body_bytes",
    "max_header_bytes",
    "max_headers",
    "max_connections",
    "workers",
    "tls",
];
const TLS_KEYS: &[&str] = &["cert", "key"];
const AUTH_KEYS: &[&str] = &[
    "algorithms",
    "leeway",
    "issuer",
    "audience",
    "user_claim",
    "user_header",
    "claim_headers",
    "forward_token",
    "max_token_bytes",
    "token_cache",
];
const ROUTE_KEYS: &[&str] = &[
    "path",
    "upstream",
    "host",
    "auth",
    "require",
    "ca_file",
    "max_body_bytes",
];

/// The collector every validation step writes into.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            message: message.into(),
        });
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
            Ok(name) if RESERVED_HEADERS.contains(&spoof_key(name.as_str()).as_str()) => {
                self.add(
                    key,
                    format!("{raw:?} is a header the gateway manages itself; choose another name"),
                );
                None
            }
            Ok(name) => Some(name),
        }
    }

    fn into_error(self) -> ConfigError {
        ConfigError {
            file: None,
            problems: self.0,
        }
    }
}

/// Headers an identity header may not be named after: hop-by-hop, framing, routing and the
/// `X-Forwarded-*` set the gateway writes.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "authorization",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
    "cookie",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "x-real-ip",
];

fn location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

/// Parses `500ms`, `30s`, `5m`, `1h` (and combinations such as `1m 30s`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|_| format!("{s:?} is not a duration; write e.g. \"500ms\", \"30s\" or \"5m\""))
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
    let tls = raw.tls.and_then(|t| {
        let (cert, key) = (PathBuf::from(t.cert), PathBuf::from(t.key));
        match crate::runtime::tls::server_config(&cert, &key) {
            Ok(config) => Some(TlsSettings { cert, key, config }),
            Err(m) => {
                p.add("server.tls", m);
                None
            }
        }
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
                    Some(a) if !algorithms.contains(&a) => algorithms.push(a),
                    Some(_) => p.add("auth.algorithms", format!("{name:?} is listed twice")),
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
    let audience = match raw.audience {
        None => Vec::new(),
        Some(OneOrMany::One(a)) => vec![a],
        Some(OneOrMany::Many(list)) => {
            if list.is_empty() {
                p.add(
                    "auth.audience",
                    "must not be empty; remove the key to skip the audience check",
                );
            }
            list
        }
    };
    if audience.iter().any(String::is_empty) {
        p.add("auth.audience", "must not contain an empty string");
    }
    let user_claim = raw.user_claim.unwrap_or_else(|| "sub".into());
    if user_claim.is_empty() {
        p.add("auth.user_claim", "must not be empty");
    }
    let user_header = p.header_name(
        "auth.user_header",
        raw.user_header.as_deref().unwrap_or("X-Auth-User"),
    );
    let mut claim_headers = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    if let Some(h) = &user_header {
        seen.insert(spoof_key(h.as_str()));
    }
    for (claim, header) in raw.claim_headers.unwrap_or_default() {
        let key = format!("auth.claim_headers.{claim}");
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
    let max_token_bytes = raw.max_token_bytes.unwrap_or(8 * 1024);
    if !(256..=64 * 1024).contains(&max_token_bytes) {
        p.add("auth.max_token_bytes", "must be between 256 and 65536");
    }
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
    })
}

/// The form two header names are compared in for spoofing: lower case, `_` read as `-`
/// (CGI, PHP, nginx with underscores_in_headers and WSGI servers fold them together).
pub fn spoof_key(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'_' => '-',
            b => b.to_ascii_lowercase() as char,
        })
        .collect()
}

fn validate_routes(
    raw: Vec<(usize, Option<RawRoute>)>,
    default_body: u64,
    p: &mut Problems,
) -> Option<RouteTable> {
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
        let path = match crate::policy::path::normalize_route_prefix(&r.path) {
            Ok(path) => Some(path),
            Err(m) => {
                p.add(format!("{key}.path"), m);
                None
            }
        };
        let upstream = upstream_uri(&r.upstream).map_err(|m| p.add(format!("{key}.upstream"), m));
        let ca_file = r.ca_file.map(PathBuf::from);
        let tls = match (&upstream, &ca_file) {
            (Ok(u), Some(ca)) if u.scheme_str() == Some("https") => {
                match crate::runtime::tls::client_config_with_ca(ca) {
                    Ok(c) => Some(c),
                    Err(m) => {
                        p.add(format!("{key}.ca_file"), m);
                        None
                    }
                }
            }
            (Ok(_), Some(_)) => {
                p.add(
                    format!("{key}.ca_file"),
                    "only applies to an https:// upstream",
                );
                None
            }
            _ => None,
        };
        let host = match r.host.as_deref() {
            None => None,
            Some(h) => {
                let h = crate::policy::routes::normalize_host(h);
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
            routes.push(Route {
                id: routes.len(),
                name: format!("{}{}", host.as_deref().unwrap_or(""), path).into(),
                path,
                host,
                upstream,
                auth,
                require,
                ca_file,
                tls,
                max_body: Some(r.max_body_bytes.unwrap_or(default_body)).filter(|&n| n > 0),
            });
        }
    }
    Some(RouteTable::new(routes))
}

fn upstream_uri(raw: &str) -> Result<Uri, String> {
    let uri: Uri = raw
        .parse()
        .map_err(|_| format!("{raw:?} is not a URL; write e.g. \"http://127.0.0.1:8000\""))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("{raw:?} must start with http:// or https://")),
    }
    let Some(authority) = uri.authority() else {
        return Err(format!("{raw:?} has no host"));
    };
    if authority.as_str().contains('@') {
        return Err(format!("{raw:?} must not carry credentials"));
    }
    if uri.scheme_str() == Some("https") && crate::upstream::server_name(authority.host()).is_none()
    {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(toml: &str) -> Vec<String> {
        match Config::from_toml(toml) {
            Ok(_) => vec![],
            Err(e) => e.problems.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn minimal_config_gets_the_documented_defaults() {
        let c =
            Config::from_toml("[[route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:8000\"\n")
                .unwrap();
        assert_eq!(c.server.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.server.admin_listen, None);
        assert_eq!(c.server.connect_timeout, Duration::from_secs(2));
        assert_eq!(c.server.upstream_timeout, Duration::from_secs(30));
        assert_eq!(c.server.drain_timeout, Duration::from_secs(30));
        assert_eq!(c.auth.algorithms, vec![Algorithm::HS256]);
        assert_eq!(c.auth.leeway, Duration::from_secs(30));
        assert_eq!(c.auth.user_claim, "sub");
        assert_eq!(c.auth.user_header.as_str(), "x-auth-user");
        assert!(c.auth.forward_token);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let got = problems(
            r#"
[server]
listen = "nowhere"
connect_timeout = "soon"
[auth]
algorithms = ["RS256", "none"]
user_header = "Content-Length"
[[route]]
path = "api"
upstream = "ftp://x"
auth = "maybe"
[[route]]
path = "/"
upstream = "http://127.0.0.1:1"
typo = 1
"#,
        );
        let joined = got.join("\n");
        for needle in [
            "server.listen",
            "server.connect_timeout",
            "auth.algorithms: \"RS256\"",
            "auth.algorithms: \"none\"",
            "auth.user_header",
            "route[0].path",
            "route[0].upstream",
            "route[0].auth",
            "route[1].typo: unknown key",
        ] {
            assert!(joined.contains(needle), "missing {needle:?} in:\n{joined}");
        }
    }

    #[test]
    fn every_unknown_key_of_a_table_is_reported_with_the_other_problems() {
        let got = problems(
            "[server]\nlisen = \"x\"\nconect_timeout = \"1s\"\nconnect_timeout = \"soon\"\n[[route]]\npath=\"/\"\nupstream=\"http://a\"\nhots = \"a\"\nauht = \"public\"",
        );
        let joined = got.join("\n");
        for needle in [
            "server.lisen",
            "server.conect_timeout",
            "server.connect_timeout",
            "route[0].hots",
            "route[0].auht",
        ] {
            assert!(joined.contains(needle), "missing {needle:?} in:\n{joined}");
        }
    }

    #[test]
    fn unknown_keys_are_errors_in_every_table() {
        for toml in [
            "[server]\nlisten_addr = \"0.0.0.0:1\"\n[[route]]\npath=\"/\"\nupstream=\"http://a\"",
            "[auth]\nalgorithm = [\"HS256\"]\n[[route]]\npath=\"/\"\nupstream=\"http://a\"",
            "[routes]\n",
        ] {
            assert!(!problems(toml).is_empty(), "accepted: {toml}");
        }
    }

    #[test]
    fn identity_headers_must_be_distinct_even_with_underscores() {
        let got = problems(
            "[auth]\nuser_header = \"X-User\"\nclaim_headers = { role = \"x-USER\", team = \"x_team\", ip = \"X_Real_IP\" }\n[[route]]\npath=\"/\"\nupstream=\"http://a\"",
        );
        assert!(
            got.iter()
                .any(|p| p.contains("role") && p.contains("already used")),
            "{got:?}"
        );
        assert!(
            got.iter()
                .any(|p| p.contains("team") && p.contains("contains '_'")),
            "{got:?}"
        );
        assert!(
            got.iter().any(|p| p.contains("auth.claim_headers.ip")),
            "{got:?}"
        );
    }

    #[test]
    fn duplicate_routes_and_public_require_are_refused() {
        let got = problems(
            "[[route]]\npath=\"/a\"\nupstream=\"http://a\"\n[[route]]\npath=\"/a/\"\nupstream=\"http://b\"\n[[route]]\npath=\"/p\"\nupstream=\"http://b\"\nauth=\"public\"\nrequire={role=\"x\"}",
        );
        assert_eq!(got.len(), 2, "{got:?}");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn every_shipped_config_validates() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n > 0, "no config files in {}", dir.display());
    }
}
