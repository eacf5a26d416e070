//! `[forward_auth]`: the check listener, its dialect, Envoy's path prefix and gRPC API.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::Problems;
use crate::config::raw::RawForwardAuth;
use crate::config::{Dialect, ForwardAuthConfig, ServerConfig, TlsFiles};
use crate::wire::uri;

pub(super) fn validate_forward_auth(
    raw: RawForwardAuth,
    server: Option<&ServerConfig>,
    p: &mut Problems,
) -> Option<ForwardAuthConfig> {
    let listen = raw.listen.as_deref().unwrap_or("0.0.0.0:8081");
    let listen = match listen.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            p.add(
                "forward_auth.listen",
                format!("{listen:?} is not an address; write IP:PORT, e.g. \"0.0.0.0:8081\""),
            );
            None
        }
    };
    if let (Some(l), Some(server)) = (listen, server) {
        let taken = [
            (server.listen, "server.listen"),
            (server.admin_listen, "server.admin_listen"),
        ];
        for (other, key) in taken {
            if other == Some(l) && l.port() != 0 {
                p.add(
                    "forward_auth.listen",
                    format!("must differ from {key}: checks have a listener of their own"),
                );
            }
        }
    }
    let names = || {
        Dialect::ALL
            .iter()
            .map(|d| d.name())
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let proxy = match raw.proxy.as_deref() {
        None => {
            p.add(
                "forward_auth.proxy",
                format!(
                    "missing: name the proxy that sends the checks ({}), which decides the headers that name the original request",
                    names()
                ),
            );
            None
        }
        Some(name) => match Dialect::ALL.into_iter().find(|d| d.name() == name) {
            Some(d) => Some(d),
            None => {
                p.add(
                    "forward_auth.proxy",
                    format!("{name:?} is not one of: {}", names()),
                );
                None
            }
        },
    };
    let envoy = proxy == Some(Dialect::Envoy);
    let path_prefix = match raw.path_prefix {
        None => None,
        Some(_) if proxy.is_some() && !envoy => {
            p.add(
                "forward_auth.path_prefix",
                "only for proxy = \"envoy\" (Envoy's path_prefix); the other proxies name the original path in headers",
            );
            None
        }
        Some(prefix) => match uri::normalize_route_prefix(&prefix) {
            Ok(n) if n == "/" => None,
            Ok(n) => Some(n),
            Err(m) => {
                p.add("forward_auth.path_prefix", m);
                None
            }
        },
    };
    let grpc = raw.grpc.unwrap_or(false);
    if grpc && proxy.is_some() && !envoy {
        p.add(
            "forward_auth.grpc",
            "only for proxy = \"envoy\": the gRPC API is Envoy's ext_authz (also what Istio and Envoy Gateway use)",
        );
    }
    let tls = raw.tls.map(|t| TlsFiles {
        cert: PathBuf::from(t.cert),
        key: PathBuf::from(t.key),
    });
    Some(ForwardAuthConfig {
        listen: listen?,
        proxy: proxy?,
        path_prefix,
        grpc,
        tls,
    })
}
