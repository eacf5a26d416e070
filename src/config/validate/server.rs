//! `[server]`: listeners, timeouts and limits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::Problems;
use crate::config::raw::RawServer;
use crate::config::{ServerConfig, TlsFiles};

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

/// A network (`10.0.0.0/8`, `fd00::/8`) or one address (`10.1.2.3`, `::1`).
fn network(raw: &str) -> Result<ipnet::IpNet, String> {
    let bad = || {
        format!("{raw:?} is not an address or network; write e.g. \"10.0.0.0/8\" or \"127.0.0.1\"")
    };
    let net = match raw.parse::<ipnet::IpNet>() {
        Ok(net) => net,
        Err(_) => raw.parse::<std::net::IpAddr>().map_err(|_| bad())?.into(),
    };
    if net.addr() != net.network() {
        return Err(format!(
            "{raw:?} has host bits set; write the network, {}",
            net.trunc()
        ));
    }
    Ok(net)
}

pub(super) fn validate_server(
    raw: RawServer,
    checks: bool,
    p: &mut Problems,
) -> Option<ServerConfig> {
    // With `[forward_auth]`, no `listen` is a check-only deployment.
    let listen = match (raw.listen.as_deref(), checks) {
        (Some(l), _) => Some(socket_addr(p, "server.listen", l)),
        (None, false) => Some(socket_addr(p, "server.listen", "0.0.0.0:8080")),
        (None, true) => None,
    };
    let admin_listen = raw
        .admin_listen
        .as_deref()
        .and_then(|a| socket_addr(p, "server.admin_listen", a));
    if let (Some(Some(l)), Some(a)) = (listen, admin_listen) {
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
    let trusted_proxies = match raw.trusted_proxies {
        None => ["127.0.0.0/8", "::1/128"]
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect(),
        Some(list) => list
            .iter()
            .filter_map(|raw| match network(raw) {
                Ok(net) => Some(net),
                Err(why) => {
                    p.add("server.trusted_proxies", why);
                    None
                }
            })
            .collect(),
    };
    Some(ServerConfig {
        listen: match listen {
            Some(l) => Some(l?),
            None => None,
        },
        trusted_proxies,
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
