//! The raw TOML shapes, exactly the keys of CONTRACT.md and the README. Unknown keys are
//! errors: `deny_unknown_fields` on every table, and the key lists below so that validation can
//! name every unknown key of a table at once (serde stops at the first).

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub connect_timeout: Option<String>,
    pub upstream_timeout: Option<String>,
    pub drain_timeout: Option<String>,
    pub header_read_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub max_body_bytes: Option<u64>,
    pub max_header_bytes: Option<usize>,
    pub max_headers: Option<usize>,
    pub max_connections: Option<usize>,
    pub workers: Option<usize>,
    pub max_connecting: Option<usize>,
    pub upstream_max_streams: Option<usize>,
    pub max_buffered_bytes: Option<usize>,
    pub trusted_proxies: Option<Vec<String>>,
    pub tls: Option<RawTls>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTelemetry {
    pub otlp_endpoint: Option<String>,
    pub protocol: Option<String>,
    pub sample_ratio: Option<f64>,
    pub service_name: Option<String>,
    pub record_user: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawForwardAuth {
    pub listen: Option<String>,
    pub proxy: Option<String>,
    pub path_prefix: Option<String>,
    pub grpc: Option<bool>,
    pub tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    pub algorithms: Option<Vec<String>>,
    pub leeway: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<OneOrMany>,
    pub user_claim: Option<String>,
    pub user_header: Option<String>,
    pub claim_headers: Option<BTreeMap<String, String>>,
    pub forward_token: Option<bool>,
    pub max_token_bytes: Option<usize>,
    pub token_cache: Option<usize>,
    pub cookie: Option<String>,
    pub claim_separator: Option<String>,
    pub max_identity_bytes: Option<usize>,
    pub issuer_header: Option<String>,
    pub max_token_lifetime: Option<String>,
    /// `[auth.assertion]`, validated on its own.
    pub assertion: Option<toml::Value>,
    /// `[[auth.provider]]` tables, each validated on its own (so that every unknown key of
    /// every provider is named).
    pub provider: Option<Vec<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvider {
    pub issuer: Option<String>,
    pub algorithms: Option<Vec<String>>,
    pub jwks_url: Option<String>,
    pub jwks_file: Option<String>,
    pub public_key_file: Option<String>,
    pub audience: Option<OneOrMany>,
    pub user_claim: Option<String>,
    pub claim_headers: Option<BTreeMap<String, String>>,
    pub refresh: Option<String>,
    pub ca_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub path: String,
    pub upstream: Option<String>,
    pub host: Option<String>,
    pub auth: Option<String>,
    pub require: Option<BTreeMap<String, toml::Value>>,
    pub ca_file: Option<String>,
    pub max_body_bytes: Option<u64>,
    pub upgrades: Option<Vec<String>>,
    pub query_token: Option<String>,
    /// A table, or the string `"upstream"`.
    pub cors: Option<toml::Value>,
    pub resource_metadata: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCors {
    pub origins: Option<Vec<String>>,
    pub methods: Option<Vec<String>>,
    pub headers: Option<Vec<String>>,
    pub expose: Option<Vec<String>>,
    pub max_age: Option<String>,
    pub credentials: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResourceMetadata {
    pub resource: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub authorization_servers: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAssertion {
    pub header: Option<String>,
    pub key_file: Option<String>,
    pub previous_key_file: Option<String>,
    pub next_key_file: Option<String>,
    pub issuer: Option<String>,
    pub ttl: Option<String>,
    pub claims: Option<Vec<String>>,
}

pub(super) const SERVER_KEYS: &[&str] = &[
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
    "max_connecting",
    "upstream_max_streams",
    "max_buffered_bytes",
    "trusted_proxies",
    "tls",
];
pub(super) const TELEMETRY_KEYS: &[&str] = &[
    "otlp_endpoint",
    "protocol",
    "sample_ratio",
    "service_name",
    "record_user",
];
pub(super) const FORWARD_AUTH_KEYS: &[&str] = &["listen", "proxy", "path_prefix", "grpc", "tls"];
pub(super) const TLS_KEYS: &[&str] = &["cert", "key"];
pub(super) const AUTH_KEYS: &[&str] = &[
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
    "cookie",
    "claim_separator",
    "max_identity_bytes",
    "issuer_header",
    "max_token_lifetime",
    "assertion",
    "provider",
];
pub(super) const PROVIDER_KEYS: &[&str] = &[
    "issuer",
    "algorithms",
    "jwks_url",
    "jwks_file",
    "public_key_file",
    "audience",
    "user_claim",
    "claim_headers",
    "refresh",
    "ca_file",
];
pub(super) const ROUTE_KEYS: &[&str] = &[
    "path",
    "upstream",
    "host",
    "auth",
    "require",
    "ca_file",
    "max_body_bytes",
    "upgrades",
    "query_token",
    "cors",
    "resource_metadata",
];

pub(super) const CORS_KEYS: &[&str] = &[
    "origins",
    "methods",
    "headers",
    "expose",
    "max_age",
    "credentials",
];
pub(super) const RESOURCE_METADATA_KEYS: &[&str] = &["resource", "scopes", "authorization_servers"];

pub(super) const ASSERTION_KEYS: &[&str] = &[
    "header",
    "key_file",
    "previous_key_file",
    "next_key_file",
    "issuer",
    "ttl",
    "claims",
];
