//! jwtgate: a reverse-proxy authentication gateway.
//!
//! It verifies every request's Bearer JWT (HS256/384/512, with a shared secret) at the edge,
//! tells the upstream who the caller is through one header, and forwards. Upstreams trust that
//! header, so the gateway guarantees that an identity header reaching an upstream is one it wrote
//! itself, from a verified token, exactly once.
//!
//! # Layout
//!
//! ```text
//! main.rs      CLI (clap), logging init, signals: nothing else
//! lib.rs       this page; `run` ties the pieces together
//! config.rs    raw serde types -> validated Config, every problem reported at once
//! keys.rs      JWT_SECRET_KEY / _FILE / _PREVIOUS, .env, strength rules
//! auth.rs      Bearer extraction, Verifier (built once per config), TokenError
//! path.rs      request-path normalization (what is routed on is what is forwarded)
//! route.rs     route table and matching
//! headers.rs   strip, inject, hop-by-hop, X-Forwarded-* (writes the upstream's request head)
//! gateway.rs   the request pipeline, top to bottom, the same for both protocols; access log
//! wire.rs      HTTP/1.1 message syntax: heads, framing, the chunked coding (pure, no I/O)
//! http1.rs     serving an HTTP/1 client connection: head, pipeline, forward, keep-alive
//! http2.rs     serving HTTP/2 (h2, h2c) with hyper, through the same pipeline and pools
//! proxy.rs     upstream HTTP/1.1 client: pools, forwarding, timeouts, upgrades
//! server.rs    listener, TLS, protocol choice, connection limit, graceful drain
//! reload.rs    SIGHUP and file-change reload of config and keys
//! admin.rs     /healthz /readyz /metrics on the admin listener
//! metrics.rs   the Prometheus metrics
//! logs.rs      log output: buffered standard output, written out every 100 ms and at exit
//! idle.rs      deadlines for waits on a peer; idle timeout for HTTP/2 connections
//! tls.rs       rustls server config (listener) and client config (https upstreams)
//! invariants.rs the contract's invariants as checks (property tests, fuzz targets)
//! cache.rs     the verified-token cache (bounded, sharded, per key set)
//! error.rs     the request-level error enum and its single mapping to responses
//! body.rs      the HTTP/2 body type (streamed from the upstream or gateway-written)
//! demo.rs      `jwtgate demo`: gateway + echo upstream on loopback
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
pub mod config;
pub mod demo;
pub mod http;
pub mod invariants;
pub mod net;
pub mod ops;
pub mod pipeline;
pub mod policy;
pub mod runtime;
pub mod server;
pub mod upstream;
pub mod wire;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use auth::keys::Keys;
pub use config::Config;
pub use runtime::{Gateway, Runtime};

/// Serves `runtime` on `listener` until `shutdown` completes, then drains in-flight requests
/// (at most `server.drain_timeout`).
pub async fn run(
    listener: TcpListener,
    runtime: Runtime,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let gateway = Arc::new(Gateway::new(runtime));
    server::serve(listener, gateway, shutdown).await
}
