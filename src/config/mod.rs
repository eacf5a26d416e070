//! Configuration as plain data: the TOML is read into raw serde shapes ([`raw`],
//! `deny_unknown_fields`), then validated ([`validate`]) into [`Config`], where every value
//! already has its real type (`SocketAddr`, `Duration`, `HeaderName`, `Uri`, a normalized route
//! prefix). Validation collects *every* problem before failing, so an operator fixes a config
//! in one round trip (the way oauth2-proxy's `validation.Validate` does).
//!
//! Nothing here does I/O beyond reading the config file itself, and nothing here is built: the
//! files a config names (certificates, CA files) are read, and verifiers, TLS configs and
//! upstream pools are made, by the runtime's build step (`runtime::build`), which reports its
//! own problems in the same form.

mod claim;
mod raw;
mod validate;

pub use claim::ClaimPath;

pub(crate) use validate::is_loopback;
pub(crate) use validate::{otlp_endpoint_problem, otlp_protocol};

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::header::HeaderName;
use http::Uri;

/// One thing wrong with a configuration: where (a dotted key such as `route[2].upstream`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key the problem is about, e.g. `server.listen` or `route[1].path`.
    pub key: String,
    /// What is wrong and, where it helps, how to fix it.
    pub message: String,
}

impl Problem {
    /// A problem with `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            key: key.into(),
            message: message.into(),
        }
    }
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

/// A validated configuration: what the runtime is built from. Plain data, cheap to compare, so
/// that a reload can tell what changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[auth]`.
    pub auth: AuthConfig,
    /// `[[route]]`, in file order (the valid ones; a route's position is its id).
    pub routes: Vec<RouteConfig>,
    /// `[forward_auth]`: the check listener, when set.
    pub forward_auth: Option<ForwardAuthConfig>,
    /// `[telemetry]`: OpenTelemetry traces (the `OTEL_*` variables fill in what it leaves
    /// out: `ops::trace::Settings::resolve`).
    pub telemetry: TelemetryConfig,
}

/// `[telemetry]`, as written: every key optional (an `OTEL_*` variable, or the default, stands
/// in for a missing one). Read once at start: a change needs a restart.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TelemetryConfig {
    /// The collector's base URL (`http://` or `https://`); `/v1/traces` is appended for OTLP
    /// over HTTP. Set (here or in `OTEL_EXPORTER_OTLP_*ENDPOINT`): tracing is on.
    pub otlp_endpoint: Option<String>,
    /// `http` (OTLP/HTTP protobuf, the default) or `grpc`.
    pub protocol: Option<OtlpProtocol>,
    /// Share of new traces sampled, 0 to 1 (default 1); parent-based.
    pub sample_ratio: Option<f64>,
    /// `service.name` of the spans (default `jwtgate`).
    pub service_name: Option<String>,
    /// The user as `enduser.id` on spans. Default false.
    pub record_user: bool,
}

/// How spans go to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/HTTP, protobuf-encoded (`/v1/traces`, port 4318).
    Http,
    /// OTLP/gRPC (port 4317).
    Grpc,
}

/// `[forward_auth]`: a listener that answers other proxies' auth checks (nginx `auth_request`,
/// Traefik ForwardAuth, Caddy `forward_auth`, Envoy `ext_authz`) with the same routes and token
/// rules as the inline listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardAuthConfig {
    /// The check listener. Default `0.0.0.0:8081`.
    pub listen: SocketAddr,
    /// Who asks, and so which headers name the original request (required).
    pub proxy: Dialect,
    /// `envoy` only: Envoy's `path_prefix`, removed before the original path is routed
    /// (normalized like a route prefix; `None`: the whole path is the original's).
    pub path_prefix: Option<String>,
    /// Also answer Envoy's ext_authz gRPC API (`envoy.service.auth.v3.Authorization/Check`)
    /// on the same listener, over h2c. Default false.
    pub grpc: bool,
    /// `[forward_auth.tls]`: serve the checks over HTTPS. Default: plain HTTP.
    pub tls: Option<TlsFiles>,
}

/// The proxy that sends checks: which of its headers name the original request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// nginx `auth_request`: `X-Original-Method`, `X-Original-URI`, `X-Forwarded-Host`.
    Nginx,
    /// ingress-nginx `auth-url`: `X-Original-Method`, `X-Original-URL` (a whole URL).
    IngressNginx,
    /// Traefik ForwardAuth: `X-Forwarded-Method`, `-Proto`, `-Host`, `-Uri`.
    Traefik,
    /// Caddy `forward_auth`: the same headers as Traefik.
    Caddy,
    /// Envoy `ext_authz` (HTTP): the check request itself, its path after `path_prefix`.
    Envoy,
}

impl Dialect {
    /// Every dialect, in the order the config names them.
    pub const ALL: [Dialect; 5] = [
        Dialect::Nginx,
        Dialect::IngressNginx,
        Dialect::Traefik,
        Dialect::Caddy,
        Dialect::Envoy,
    ];

    /// The name `forward_auth.proxy` gives it.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Nginx => "nginx",
            Dialect::IngressNginx => "ingress-nginx",
            Dialect::Traefik => "traefik",
            Dialect::Caddy => "caddy",
            Dialect::Envoy => "envoy",
        }
    }
}

/// `[server]`: listeners, timeouts and limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Public (inline) listener. Default `0.0.0.0:8080`; with `[forward_auth]` and no
    /// `listen`, none (a check-only deployment).
    pub listen: Option<SocketAddr>,
    /// Peers whose forwarded headers are believed: forward-auth checks are answered only for
    /// them. Default: loopback only (`127.0.0.0/8`, `::1`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Admin listener for `/healthz`, `/readyz`, `/metrics`. Default: none (disabled).
    pub admin_listen: Option<SocketAddr>,
    /// Time a request may spend getting an upstream connection (waiting for a connect slot,
    /// connecting, retrying a refused or timed-out connect) before answering 502. Default 2s.
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
    /// Most connects to one upstream in flight at once; other requests wait for a pooled
    /// connection or a slot. Default 8.
    pub max_connecting: usize,
    /// Most calls in flight at once on one HTTP/2 upstream connection; more open another
    /// connection. Default 100.
    pub upstream_max_streams: usize,
    /// Most bytes held, across the process, for peers that do not read: each call to an
    /// HTTP/2 upstream reserves its receive window, and request-body copies kept to send
    /// again come out of it too; a call that finds it spent waits `connect_timeout`, then
    /// 503. Default 1 GiB.
    pub max_buffered_bytes: usize,
    /// `[server.tls]`: serve HTTPS with this PEM certificate chain and key. Default: plain HTTP.
    pub tls: Option<TlsFiles>,
}

/// The listener's TLS files (read and checked by the runtime's build step).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The algorithms jwtgate verifies (JOSE names, RFC 7518 and RFC 8037).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// HMAC with SHA-256.
    HS256,
    /// HMAC with SHA-384.
    HS384,
    /// HMAC with SHA-512.
    HS512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA with P-256 and SHA-256.
    ES256,
    /// ECDSA with P-384 and SHA-384.
    ES384,
    /// Ed25519 (RFC 8037; the only EdDSA curve accepted).
    EdDSA,
}

/// The kind of key an algorithm verifies with: a key of another kind is never used for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// A shared secret (HS*).
    Secret,
    /// An RSA public key (RS*, PS*).
    Rsa,
    /// A P-256 public key (ES256).
    P256,
    /// A P-384 public key (ES384).
    P384,
    /// An Ed25519 public key (EdDSA).
    Ed25519,
}

impl Algorithm {
    /// Every algorithm, HMAC first.
    pub const ALL: [Algorithm; 12] = [
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    /// Parses the exact JOSE name (`HS256`, ...). Case matters, as in RFC 7518. `Ed25519`
    /// (RFC 9864's fully specified name) is `EdDSA`: the only EdDSA curve verified here.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        if name == "Ed25519" {
            return Some(Algorithm::EdDSA);
        }
        Algorithm::ALL.into_iter().find(|a| a.name() == name)
    }

    /// True when a token's or a JWK's `alg` names this algorithm (`Ed25519` names `EdDSA`).
    pub fn is_named(self, name: &str) -> bool {
        self.name() == name || (self == Algorithm::EdDSA && name == "Ed25519")
    }

    /// The JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// The only kind of key this algorithm verifies with.
    pub fn key_kind(self) -> KeyKind {
        match self {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => KeyKind::Secret,
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => KeyKind::Rsa,
            Algorithm::ES256 => KeyKind::P256,
            Algorithm::ES384 => KeyKind::P384,
            Algorithm::EdDSA => KeyKind::Ed25519,
        }
    }

    /// True for the shared-secret algorithms (HS*).
    pub fn is_hmac(self) -> bool {
        self.key_kind() == KeyKind::Secret
    }
}

/// `[[auth.provider]]`: an identity provider that signs with its own keys, chosen by the
/// token's `iss`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    /// The `iss` of its tokens, exactly.
    pub issuer: String,
    /// The asymmetric algorithms its tokens may use.
    pub algorithms: Vec<Algorithm>,
    /// Where its public keys come from.
    pub source: KeySource,
    /// Accepted `aud` values (any one must match), checked only when non-empty.
    pub audience: Vec<String>,
    /// The claim that names the caller (default `auth.user_claim`).
    pub user_claim: ClaimPath,
    /// Claims passed on, as (claim, header) (default `auth.claim_headers`).
    pub claim_headers: Vec<(ClaimPath, HeaderName)>,
    /// How often a fetched JWKS is fetched again (a shorter `Cache-Control: max-age` wins, down
    /// to [`MIN_REFRESH`]). Default 5m.
    pub refresh: Duration,
    /// A CA (PEM) trusted for its `https` URLs besides the system's web roots.
    pub ca_file: Option<PathBuf>,
}

/// The shortest refresh interval, whatever `refresh` or `Cache-Control` say.
pub const MIN_REFRESH: Duration = Duration::from_secs(30);

/// Where a provider's public keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A JWKS fetched from this URL.
    JwksUrl(Uri),
    /// A JWKS in a file, reloaded when it changes.
    JwksFile(PathBuf),
    /// One PEM public key (SPKI), reloaded when it changes.
    PublicKeyFile(PathBuf),
    /// OpenID Connect discovery: the JWKS at the `jwks_uri` of this document
    /// (`{issuer}/.well-known/openid-configuration`).
    Discovery(Uri),
}

impl KeySource {
    /// The URL fetched first, for sources on the network.
    pub fn url(&self) -> Option<&Uri> {
        match self {
            KeySource::JwksUrl(u) | KeySource::Discovery(u) => Some(u),
            KeySource::JwksFile(_) | KeySource::PublicKeyFile(_) => None,
        }
    }
}

/// `[auth]`: how tokens are verified and how the identity is passed on.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    pub user_claim: ClaimPath,
    /// Header the upstream reads the caller from. Default `X-Auth-User`.
    pub user_header: HeaderName,
    /// More claims passed on, as (claim, header). Default none.
    pub claim_headers: Vec<(ClaimPath, HeaderName)>,
    /// What joins an array claim's elements in a claim header. Default `,`.
    pub claim_separator: String,
    /// The most bytes (names and values) all identity headers of one request may take
    /// together, the assertion included. Default 8 KiB.
    pub max_identity_bytes: usize,
    /// The header naming the issuer that vouched for the user, written whenever providers are
    /// configured (stripped from clients always). Default `X-Auth-Issuer`.
    pub issuer_header: HeaderName,
    /// A token whose `exp` lies further ahead than this is refused. Default none.
    pub max_token_lifetime: Option<Duration>,
    /// The cookie a token is taken from when there is no `Authorization` header.
    pub cookie: Option<String>,
    /// `[auth.assertion]`: a short-lived JWT the gateway signs for the upstream.
    pub assertion: Option<AssertionConfig>,
    /// Keep the `Authorization` header for the upstream. Default true.
    pub forward_token: bool,
    /// Longest token accepted, in bytes, checked before any decoding. Default 8 KiB.
    pub max_token_bytes: usize,
    /// Verified tokens remembered (see `auth::cache`); 0 turns the cache off. Default 10,000.
    pub token_cache: usize,
    /// `[[auth.provider]]`: identity providers, each chosen by its `issuer`.
    pub providers: Vec<ProviderConfig>,
}

impl Config {
    /// What is allowed but probably a mistake: `jwtgate check` prints these, and the gateway
    /// logs them when it loads the config.
    pub fn warnings(&self) -> Vec<Problem> {
        let mut w = Vec::new();
        for (i, p) in self.auth.providers.iter().enumerate() {
            if p.audience.is_empty() {
                w.push(Problem::new(
                    format!("auth.provider[{i}].audience"),
                    format!(
                        "not set: any token {:?} issued, for any application, passes here; \
                         set the audience this gateway's tokens are issued for",
                        p.issuer
                    ),
                ));
            }
        }
        if self.auth.assertion.is_some() && self.server.admin_listen.is_none() {
            w.push(Problem::new(
                "auth.assertion",
                "no server.admin_listen: the assertion's public keys (/.well-known/jwks.json) are \
                 published nowhere, so upstreams cannot verify it",
            ));
        }
        w
    }
}

impl AuthConfig {
    /// Every claim header any issuer writes, each once: `claim_headers`, then the providers'
    /// headers not already there. Every one of them is stripped from every request.
    pub fn claim_header_names(&self) -> Vec<HeaderName> {
        let mut names: Vec<HeaderName> = Vec::new();
        let all = self
            .claim_headers
            .iter()
            .chain(self.providers.iter().flat_map(|p| &p.claim_headers));
        for (_, header) in all {
            if !names.contains(header) {
                names.push(header.clone());
            }
        }
        names
    }
}

/// How a route treats tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// A valid token is required (the default).
    Required,
    /// A token is verified if present (invalid: 401); without one the request goes on anonymously.
    Optional,
    /// No token is checked; identity headers are still stripped.
    Public,
}

/// What a route's `require` demands of one claim: one of `values` (a token's array claim meets
/// a value it contains; a string `scope` or `scp` claim is a space-separated list of words).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The claim.
    pub claim: ClaimPath,
    /// Any one of them satisfies it (never empty).
    pub values: Vec<ClaimValue>,
}

/// A value a route's `require` demands of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimValue {
    /// A JSON string.
    String(String),
    /// A JSON boolean.
    Bool(bool),
    /// A JSON integer.
    Integer(i64),
}

/// `[auth.assertion]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionConfig {
    /// The header it is sent in. Default `X-Auth-Assertion`.
    pub header: HeaderName,
    /// The signing key (Ed25519 or P-256, PKCS#8 PEM).
    pub key_file: PathBuf,
    /// A key still published after a rotation.
    pub previous_key_file: Option<PathBuf>,
    /// A key published before it is used.
    pub next_key_file: Option<PathBuf>,
    /// `iss`. Default `jwtgate`.
    pub issuer: String,
    /// Lifetime. Default 60s.
    pub ttl: Duration,
    /// Claims copied from the verified token, with their nesting.
    pub claims: Vec<ClaimPath>,
}

/// A route's `cors`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsConfig {
    /// The gateway answers preflights and writes the CORS fields.
    Gateway(CorsRules),
    /// `"upstream"`: preflights go to the upstream without a token; CORS is the upstream's.
    Upstream,
}

/// The gateway's CORS rules for a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsRules {
    /// Allowed origins (`scheme://host[:port]`, lower case), or `["*"]`.
    pub origins: Vec<String>,
    /// Methods a preflight may ask for. Default `GET, HEAD, POST`.
    pub methods: Vec<String>,
    /// Request headers a preflight may ask for (lower case). Default `authorization,
    /// content-type`.
    pub headers: Vec<HeaderName>,
    /// Response headers the page may read (`Access-Control-Expose-Headers`).
    pub expose: Vec<HeaderName>,
    /// How long a browser may cache a preflight answer.
    pub max_age: Option<Duration>,
    /// `Access-Control-Allow-Credentials: true`.
    pub credentials: bool,
}

/// A route's RFC 9728 protected resource metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceMetadataConfig {
    /// The protected resource's identifier (an absolute `https` URL, or `http` to loopback).
    pub resource: Uri,
    /// The same, exactly as configured (RFC 9728 §3.3: the document's `resource` must be
    /// identical to it).
    pub resource_text: String,
    /// `scopes_supported`.
    pub scopes: Vec<String>,
    /// `authorization_servers`: as given, else the providers' issuers in config order.
    pub authorization_servers: Vec<String>,
}

impl ResourceMetadataConfig {
    /// Where the document is served (RFC 9728 §3.1): `/.well-known/oauth-protected-resource`
    /// followed by the resource's path (without a trailing `/` alone).
    pub fn well_known_path(&self) -> String {
        let path = self.resource.path();
        let path = if path == "/" { "" } else { path };
        format!("/.well-known/oauth-protected-resource{path}")
    }

    /// The document's URL: the resource's origin and [`Self::well_known_path`].
    pub fn url(&self) -> String {
        format!(
            "{}://{}{}",
            self.resource.scheme_str().unwrap_or("https"),
            self.resource.authority().map_or("", |a| a.as_str()),
            self.well_known_path()
        )
    }
}

impl fmt::Display for ClaimValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClaimValue::String(s) => f.write_str(s),
            ClaimValue::Bool(b) => write!(f, "{b}"),
            ClaimValue::Integer(n) => write!(f, "{n}"),
        }
    }
}

/// One `[[route]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// Normalized path prefix, without a trailing `/` (except the root `/`).
    pub path: String,
    /// Lower-case host without port, if the route is host-specific.
    pub host: Option<String>,
    /// `scheme://authority` of the upstream; `None` for a route only forward-auth checks
    /// reach.
    pub upstream: Option<Uri>,
    /// Token policy. Default `required`.
    pub auth: AuthMode,
    /// Claims a token must carry on this route, all of them.
    pub require: Vec<Requirement>,
    /// The query parameter this route also takes a token from (after the header and the
    /// cookie); removed from the forwarded target whether or not it was used.
    pub query_token: Option<String>,
    /// CORS on this route.
    pub cors: Option<CorsConfig>,
    /// RFC 9728 metadata for this route.
    pub resource_metadata: Option<ResourceMetadataConfig>,
    /// Extra CA file for an `https://` upstream.
    pub ca_file: Option<PathBuf>,
    /// Largest request body in bytes (`None`: no limit). Default `server.max_body_bytes`.
    pub max_body: Option<u64>,
    /// Upgrade protocols tunnelled (lower case, e.g. `websocket`). Default `["websocket"]`;
    /// empty turns tunnelling off.
    pub upgrades: Vec<String>,
}

impl RouteConfig {
    /// A stable name for logs and metrics: host (if any) followed by the path prefix.
    pub fn name(&self) -> String {
        format!("{}{}", self.host.as_deref().unwrap_or(""), self.path)
    }
}

impl Config {
    /// Reads and validates the TOML file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: Some(path.to_owned()),
            problems: vec![Problem::new("(file)", format!("cannot read: {e}"))],
        })?;
        Config::from_toml(&text).map_err(|mut e| {
            e.file = Some(path.to_owned());
            e
        })
    }

    /// Validates a TOML document. Every problem is collected before returning.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        validate::config(text).map_err(|problems| ConfigError {
            file: None,
            problems,
        })
    }

    /// The files whose contents the runtime is built from besides the config file itself: the
    /// listener's certificate and key, and route CA files.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let check_tls = self.forward_auth.as_ref().and_then(|f| f.tls.as_ref());
        for tls in self.server.tls.iter().chain(check_tls) {
            files.push(tls.cert.clone());
            files.push(tls.key.clone());
        }
        files.extend(self.routes.iter().filter_map(|r| r.ca_file.clone()));
        if let Some(a) = &self.auth.assertion {
            files.push(a.key_file.clone());
            files.extend(a.previous_key_file.clone());
            files.extend(a.next_key_file.clone());
        }
        for p in &self.auth.providers {
            match &p.source {
                KeySource::JwksFile(f) | KeySource::PublicKeyFile(f) => files.push(f.clone()),
                KeySource::JwksUrl(_) | KeySource::Discovery(_) => {}
            }
            files.extend(p.ca_file.clone());
        }
        files
    }
}

/// Parses `500ms`, `30s`, `5m`, `1h` (and combinations such as `1m 30s`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|_| format!("{s:?} is not a duration; write e.g. \"500ms\", \"30s\" or \"5m\""))
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
    fn identity_headers_cannot_take_the_names_the_gateway_writes() {
        for name in ["X-Request-Id", "traceparent", "TraceState"] {
            let toml = format!(
                "[auth]\nclaim_headers = {{ jti = \"{name}\" }}\n[[route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:1\"\n"
            );
            assert!(Config::from_toml(&toml).is_err(), "{name}");
            let toml = format!(
                "[auth]\nuser_header = \"{name}\"\n[[route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:1\"\n"
            );
            assert!(Config::from_toml(&toml).is_err(), "{name}");
        }
    }

    #[test]
    fn minimal_config_gets_the_documented_defaults() {
        let c =
            Config::from_toml("[[route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:8000\"\n")
                .unwrap();
        assert_eq!(c.server.listen, Some("0.0.0.0:8080".parse().unwrap()));
        assert_eq!(c.server.admin_listen, None);
        assert_eq!(c.server.connect_timeout, Duration::from_secs(2));
        assert_eq!(c.server.upstream_timeout, Duration::from_secs(30));
        assert_eq!(c.server.drain_timeout, Duration::from_secs(30));
        assert_eq!(c.auth.algorithms, vec![Algorithm::HS256]);
        assert_eq!(c.auth.leeway, Duration::from_secs(30));
        assert_eq!(c.auth.user_claim.as_str(), "sub");
        assert_eq!(c.auth.user_header.as_str(), "x-auth-user");
        assert!(c.auth.forward_token);
        assert_eq!(c.routes[0].upgrades, vec!["websocket".to_owned()]);
        assert_eq!(c.routes[0].auth, AuthMode::Required);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let got = problems(
            r#"
[server]
listen = "nowhere"
connect_timeout = "soon"
upstream_max_streams = 0
max_buffered_bytes = 1024
[auth]
algorithms = ["RS256", "none"]
user_header = "Content-Length"
[[route]]
path = "api"
upstream = "ftp://x"
auth = "maybe"
upgrades = ["h2c", "web socket"]
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
            "server.upstream_max_streams: must be between 1 and 10000",
            "server.max_buffered_bytes: must be between 1048576 and 1099511627776",
            "auth.algorithms: \"RS256\"",
            "auth.algorithms: \"none\"",
            "auth.user_header",
            "route[0].path",
            "route[0].upstream",
            "route[0].auth",
            "route[0].upgrades: \"h2c\"",
            "route[0].upgrades: \"web socket\"",
            "route[1].typo: unknown key",
        ] {
            assert!(joined.contains(needle), "missing {needle:?} in:\n{joined}");
        }
    }

    #[test]
    fn forward_auth_makes_the_inline_listener_and_upstreams_optional() {
        let c = Config::from_toml(
            r#"
[forward_auth]
proxy = "envoy"
path_prefix = "/ext_authz/"
grpc = true
[[route]]
path = "/"
[[route]]
path = "/api"
upstream = "http://127.0.0.1:1"
"#,
        )
        .unwrap();
        assert_eq!(c.server.listen, None);
        let fa = c.forward_auth.unwrap();
        assert_eq!(fa.listen, "0.0.0.0:8081".parse().unwrap());
        assert_eq!(
            (fa.proxy, fa.path_prefix.as_deref(), fa.grpc),
            (Dialect::Envoy, Some("/ext_authz"), true)
        );
        assert_eq!(c.routes[0].upstream, None);
        assert!(c.routes[1].upstream.is_some());
        // Loopback only, unless said otherwise.
        let trusted: Vec<String> = c
            .server
            .trusted_proxies
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(trusted, ["127.0.0.0/8", "::1/128"]);
        // With a listen, both listeners.
        let c = Config::from_toml(
            "[server]\nlisten = \"127.0.0.1:8080\"\ntrusted_proxies = [\"10.0.0.0/8\", \"192.168.1.7\"]\n[forward_auth]\nproxy = \"nginx\"\n[[route]]\npath = \"/\"",
        )
        .unwrap();
        assert_eq!(c.server.listen, Some("127.0.0.1:8080".parse().unwrap()));
        let trusted: Vec<String> = c
            .server
            .trusted_proxies
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(trusted, ["10.0.0.0/8", "192.168.1.7/32"]);
    }

    #[test]
    fn forward_auth_problems_are_all_reported() {
        let joined = problems(
            r#"
[server]
listen = "127.0.0.1:8081"
admin_listen = "127.0.0.1:9901"
trusted_proxies = ["10.0.0.1/8", "nowhere"]
[forward_auth]
listen = "127.0.0.1:8081"
proxy = "haproxy"
typo = 1
tls = { cert = "c", key = "k", extra = 1 }
[[route]]
path = "/"
"#,
        )
        .join("\n");
        for needle in [
            "server.trusted_proxies: \"10.0.0.1/8\" has host bits set; write the network, 10.0.0.0/8",
            "server.trusted_proxies: \"nowhere\"",
            "forward_auth.listen: must differ from server.listen",
            "forward_auth.proxy: \"haproxy\" is not one of: nginx | ingress-nginx | traefik | caddy | envoy",
            "forward_auth.typo: unknown key",
            "forward_auth.tls.extra: unknown key",
        ] {
            assert!(joined.contains(needle), "missing {needle:?} in:\n{joined}");
        }
        let joined = problems(
            "[forward_auth]\nproxy = \"nginx\"\npath_prefix = \"/x\"\ngrpc = true\n[[route]]\npath = \"/\"",
        )
        .join("\n");
        assert!(
            joined.contains("forward_auth.path_prefix: only for proxy = \"envoy\""),
            "{joined}"
        );
        assert!(
            joined.contains("forward_auth.grpc: only for proxy = \"envoy\""),
            "{joined}"
        );
        let joined =
            problems("[forward_auth]\nlisten = \"127.0.0.1:8081\"\n[[route]]\npath = \"/\"")
                .join("\n");
        assert!(joined.contains("forward_auth.proxy: missing"), "{joined}");
        // Without [forward_auth], a route needs an upstream.
        let joined = problems("[[route]]\npath = \"/\"").join("\n");
        assert!(joined.contains("route[0].upstream: missing"), "{joined}");
    }

    #[test]
    fn providers_parse_with_their_defaults_and_sources() {
        let c = Config::from_toml(
            r#"
[auth]
user_claim = "preferred_username"
claim_headers = { role = "X-Auth-Role" }
[[auth.provider]]
issuer = "https://sso.example.com/realms/main"
algorithms = ["RS256", "ES256"]
[[auth.provider]]
issuer = "https://auth0.example/"
algorithms = ["RS256"]
jwks_url = "https://auth0.example/.well-known/jwks.json"
audience = "orders"
user_claim = "email"
claim_headers = { email = "X-Auth-Email" }
refresh = "1h"
ca_file = "/etc/ca.pem"
[[auth.provider]]
issuer = "local"
algorithms = ["EdDSA"]
public_key_file = "/etc/k.pem"
[[auth.provider]]
issuer = "http://127.0.0.1:9000"
algorithms = ["PS256"]
[[route]]
path = "/"
upstream = "http://127.0.0.1:8000"
"#,
        )
        .unwrap();
        let p = &c.auth.providers;
        assert_eq!(p.len(), 4);
        assert_eq!(
            p[0].source,
            KeySource::Discovery(
                "https://sso.example.com/realms/main/.well-known/openid-configuration"
                    .parse()
                    .unwrap()
            )
        );
        assert_eq!(p[0].algorithms, vec![Algorithm::RS256, Algorithm::ES256]);
        assert_eq!(p[0].user_claim.as_str(), "preferred_username");
        assert_eq!(p[0].claim_headers, c.auth.claim_headers);
        assert_eq!(p[0].refresh, Duration::from_secs(300));
        // A trailing slash of the issuer is not doubled.
        assert!(matches!(&p[1].source, KeySource::JwksUrl(u) if u.host() == Some("auth0.example")));
        assert_eq!(p[1].audience, vec!["orders".to_owned()]);
        assert_eq!(p[1].user_claim.as_str(), "email");
        assert_eq!(p[1].refresh, Duration::from_secs(3600));
        assert_eq!(p[1].ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(
            p[2].source,
            KeySource::PublicKeyFile(PathBuf::from("/etc/k.pem"))
        );
        assert!(matches!(&p[3].source, KeySource::Discovery(u) if u.scheme_str() == Some("http")));
        // Every claim header any issuer writes is stripped.
        let names: Vec<String> = c
            .auth
            .claim_header_names()
            .iter()
            .map(|h| h.as_str().to_owned())
            .collect();
        assert_eq!(names, ["x-auth-role", "x-auth-email"]);
        // The files it names are watched.
        let files = c.files();
        assert!(files.contains(&PathBuf::from("/etc/k.pem")));
        assert!(files.contains(&PathBuf::from("/etc/ca.pem")));
    }

    #[test]
    fn every_provider_problem_is_reported_at_once() {
        let got = problems(
            r#"
[auth]
issuer = "https://shared"
algorithms = ["HS256", "RS256"]
[[auth.provider]]
algorithms = []
[[auth.provider]]
issuer = "https://a"
algorithms = ["HS256", "RS256", "RS256", "XX1"]
jwks_url = "http://sso.example.com/certs"
jwks_file = "/x.json"
[[auth.provider]]
issuer = "https://a"
algorithms = ["ES256"]
jwks_file = "/k.json"
ca_file = "/ca.pem"
refresh = "5s"
typo = true
[[auth.provider]]
issuer = "https://shared"
algorithms = ["EdDSA"]
jwks_url = "ftp://x/y"
claim_headers = { sub = "X-Auth-User" }
[[auth.provider]]
issuer = "not a url"
algorithms = ["RS256"]
[[route]]
path = "/"
upstream = "http://127.0.0.1:1"
"#,
        );
        let joined = got.join("\n");
        for needle in [
            "auth.algorithms: \"RS256\" verifies with an identity provider's public keys",
            "auth.provider[0].issuer: is required",
            "auth.provider[0].algorithms: must name at least one",
            "auth.provider[1].algorithms: \"HS256\" is not a provider algorithm",
            "auth.provider[1].algorithms: \"RS256\" is listed twice",
            "auth.provider[1].algorithms: \"XX1\" is not a provider algorithm",
            "auth.provider[1]: jwks_url and jwks_file are all set",
            "auth.provider[1].jwks_url: \"http://sso.example.com/certs\": keys are fetched over https",
            "auth.provider[2].typo: unknown key",
            "auth.provider[2].issuer: \"https://a\" is also auth.provider[1]'s issuer",
            "auth.provider[2].refresh: must be between 30s and 24h",
            "auth.provider[2].ca_file: applies to jwks_url and discovery only",
            "auth.provider[3].issuer: is also auth.issuer",
            "auth.provider[3].jwks_url: \"ftp://x/y\" must start with https://",
            "auth.provider[3].claim_headers.sub: header \"X-Auth-User\" is already used",
            "auth.provider[4].issuer: \"not a url/.well-known/openid-configuration\"",
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
            "[server.tls]\ncert = \"c\"\nkey = \"k\"\nchain = \"x\"\n[[route]]\npath=\"/\"\nupstream=\"http://a\"",
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
    fn validation_reads_no_files() {
        // The files are the build step's: a config naming missing ones validates.
        let c = Config::from_toml(
            "[server.tls]\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"\n[[route]]\npath=\"/\"\nupstream=\"https://a.example\"\nca_file=\"/nonexistent/ca.pem\"",
        )
        .unwrap();
        assert_eq!(c.files().len(), 3);
    }

    #[test]
    fn upgrades_are_lower_case_tokens() {
        let c = Config::from_toml(
            "[[route]]\npath=\"/\"\nupstream=\"http://a\"\nupgrades=[\"WebSocket\"]\n[[route]]\npath=\"/x\"\nupstream=\"http://a\"\nupgrades=[]",
        )
        .unwrap();
        assert_eq!(c.routes[0].upgrades, vec!["websocket".to_owned()]);
        assert!(c.routes[1].upgrades.is_empty());
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
