//! jwtgate: a reverse-proxy authentication gateway.
//!
//! It verifies every request's Bearer JWT (HS256/384/512, with a shared secret) at the edge,
//! tells the upstream who the caller is through one header, and forwards. Upstreams trust that
//! header, so the gateway guarantees that an identity header reaching an upstream is one it wrote
//! itself, from a verified token, exactly once.
//!
//! # Layout
//!
//! Folders by concern. Each uses only the folders above it in this list (`tests/layout.rs`
//! checks it), so a request's path reads downwards: a front-end (`http/`) turns bytes into a
//! protocol-neutral view, the pipeline decides, the upstream client forwards.
//!
//! ```text
//! wire/      HTTP/1.1 syntax, no I/O: request and response heads, framing, the chunked coding,
//!            a connection's request stream (what the differential tests compare with hyper),
//!            URI path and host normalization
//! net/       I/O building blocks: deadlines, idle timeouts, pooled buffers, the drain signal
//! config/    TOML -> validated plain data (every problem at once); reads no other file
//! ops/       metrics, the access log record, log output (non-blocking, lossy, counted)
//! auth/      tokens: Bearer source, strict JWT parse, keys, verifier, verified-token cache
//!            (identity providers and JWKS go here)
//! policy/    route table and matching, claim requirements (CORS, rate limits, revocation)
//! pipeline/  decide(RequestView) -> Forward | Respond | Reject: target checks, routing,
//!            authentication, limits, upgrades, header hygiene; the one rejection mapping;
//!            the one after-the-upstream path (101 check, lengths, response fields)
//! upstream/  pools, connect, the HTTP/1.1 exchange, retries, tunnels (HTTP/2 goes here)
//! runtime/   Config + keys -> Runtime (reusing what a reload did not change), the Gateway
//!            that holds the current one, reload and file watching on their own thread
//! http/      front-ends: h1 (own engine), h2 (hyper); each renders decisions in its syntax
//!            (forward-auth endpoints go here)
//! server/    listeners, TLS accept, connection cap, drain; the admin listener
//! ```
//!
//! Besides: `main.rs` (CLI, logging, signals), `demo.rs` (`jwtgate demo`), `invariants.rs`
//! (the contract's invariants as checks for property tests and fuzz targets). The oracle that
//! compares `wire` with hyper on the same bytes is test code: `tests/oracle/`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
pub mod config;
pub mod demo;
pub mod http;

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
