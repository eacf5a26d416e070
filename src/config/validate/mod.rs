//! Validation: raw shapes into [`Config`], every problem collected (never the first only). One
//! file per section: [`server`], [`auth`] (and [`provider`] in it), [`route`].

mod auth;
mod forward_auth;
mod provider;
mod route;
mod server;
mod telemetry;

use std::time::Duration;

use http::header::HeaderName;

use std::collections::{BTreeMap, HashSet};

use super::raw::{
    OneOrMany, RawAuth, RawForwardAuth, RawRoute, RawServer, RawTelemetry, AUTH_KEYS,
    FORWARD_AUTH_KEYS, ROUTE_KEYS, SERVER_KEYS, TELEMETRY_KEYS, TLS_KEYS,
};
use super::{parse_duration, spoof_key, ClaimPath, Config, Problem};
use auth::validate_auth;
use forward_auth::validate_forward_auth;
pub(crate) use provider::is_loopback;
use route::validate_routes;
use server::validate_server;
pub(crate) use telemetry::{endpoint_problem as otlp_endpoint_problem, protocol as otlp_protocol};

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
    let mut forward_auth = None;
    let mut telemetry = RawTelemetry::default();
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
            "forward_auth" => {
                forward_auth = Some(
                    p.section::<RawForwardAuth>("forward_auth", value, FORWARD_AUTH_KEYS)
                        .unwrap_or_default(),
                );
            }
            "telemetry" => {
                if let Some(v) = p.section::<RawTelemetry>("telemetry", value, TELEMETRY_KEYS) {
                    telemetry = v;
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
                "unknown key (expected one of: server, auth, forward_auth, telemetry, route)"
                    .to_owned(),
            ),
        }
    }
    let checks = forward_auth.is_some();
    let server = validate_server(server, checks, &mut p);
    let forward_auth =
        forward_auth.and_then(|raw| validate_forward_auth(raw, server.as_ref(), &mut p));
    let auth = validate_auth(auth, &mut p);
    let telemetry = telemetry::validate_telemetry(telemetry, &mut p);
    let default_body = server.as_ref().map_or(0, |s| s.max_body_bytes);
    let issuers: Vec<String> = auth
        .as_ref()
        .map(|a| a.providers.iter().map(|pr| pr.issuer.clone()).collect())
        .unwrap_or_default();
    let routes = validate_routes(routes, default_body, checks, &issuers, &mut p);
    match (p.0.is_empty(), server, auth, routes) {
        (true, Some(server), Some(auth), Some(routes)) => Ok(Config {
            server,
            auth,
            routes,
            forward_auth,
            telemetry,
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
            let has_tls = key == "server" || key == "forward_auth";
            if let (Some(toml::Value::Table(tls)), true) = (table.get_mut("tls"), has_tls) {
                let unknown: Vec<String> = tls
                    .keys()
                    .filter(|k| !TLS_KEYS.contains(&k.as_str()))
                    .cloned()
                    .collect();
                for k in unknown {
                    self.add(
                        format!("{key}.tls.{k}"),
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

    /// A claim path ([`ClaimPath`]).
    fn claim_path(&mut self, key: &str, raw: &str) -> Option<ClaimPath> {
        match ClaimPath::parse(raw) {
            Ok(path) => Some(path),
            Err(e) => {
                self.add(key, e);
                None
            }
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
    // Written by the gateway on every request: its request ID and trace context.
    "x-request-id",
    "traceparent",
    "tracestate",
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
) -> Vec<(ClaimPath, HeaderName)> {
    let mut claim_headers = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    if let Some(h) = user_header {
        seen.insert(spoof_key(h.as_str()));
    }
    for (claim, header) in raw {
        let key = format!("{key}.{claim}");
        let path = p.claim_path(&key, &claim);
        if let Some(name) = p.header_name(&key, &header) {
            if !seen.insert(spoof_key(name.as_str())) {
                p.add(
                    &key,
                    format!("header {header:?} is already used for another identity value"),
                );
            } else if let Some(path) = path {
                claim_headers.push((path, name));
            }
        }
    }
    claim_headers
}

/// An RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
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
