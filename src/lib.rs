//! jwtgate: a reverse-proxy authentication gateway.
//!
//! It verifies every request's Bearer JWT at the edge (HS256/384/512 with a shared secret or a
//! key ring; RS, PS, ES and EdDSA from identity providers' JWKS), tells the upstream who the
//! caller is through one header, and forwards, over HTTP/1.1 or HTTP/2 on either side (gRPC
//! included). Upstreams trust that header, so the gateway guarantees that an identity header
//! reaching an upstream is one it wrote itself, from a verified token, exactly once.
//!
//! # Layout
//!
//! Folders by concern. Each uses only the folders above it in this list, and within a folder
//! no module depends back on one that depends on it (`tests/layout.rs` checks both), so a
//! request's path reads downwards: a front-end (`http/`) turns bytes into a protocol-neutral
//! view, the pipeline decides, the upstream client forwards, one relay carries the response
//! back.
//!
//! ```text
//! wire/      HTTP/1.1 syntax, no I/O: request and response heads, framing, the chunked
//!            coding, the one hop-by-hop list, URI path and host normalization
//! net/       I/O building blocks: deadlines, idle timeouts, pooled buffers, the budget of
//!            bytes held for slow peers, the drain signal, listening sockets
//! config/    TOML -> validated plain data (every problem at once); reads no other file
//! ops/       metrics, the access log record, log output (non-blocking, lossy, counted)
//! auth/      tokens: Bearer source, strict JWT parse, keys and key ring, identity providers
//!            (JWKS, discovery, refresh), verifier, verified-token cache
//! policy/    route table and matching, claim requirements
//! pipeline/  decide(RequestView) -> Forward | Respond | Reject: target checks, routing,
//!            authentication, limits, upgrades, header hygiene and the identity fields; the
//!            one rejection table (status, challenge, JSON body, gRPC code); the one
//!            after-the-upstream plan (101 check, lengths, response fields)
//! upstream/  Origin::prepare (the head written for the protocol the upstream speaks),
//!            Prepared::connect (a connection for it), the Exchange (send, then the
//!            response as pieces), HTTP/1.1 (h1/) and HTTP/2 (h2/: pool, head,
//!            flow-controlled sends, replays), pools, connects
//! runtime/   Config + keys -> Runtime (reusing what a reload did not change), the Gateway
//!            that holds the current one, reload and file watching on their own thread
//! http/      front-ends: h1 (own engine) and h2 (the h2 crate, one task a connection); the
//!            one end of every request (end.rs) and the one relay (relay.rs); forward_auth/:
//!            other proxies' auth checks answered from the same decision (the dialects,
//!            Envoy's ext_authz gRPC API)
//! server/    listeners (inline and forward-auth), TLS accept, connection cap, drain; the
//!            admin listener
//! ```
//!
//! Besides: `main.rs` (CLI, logging, signals) and `demo.rs` (`jwtgate demo`). Test machinery
//! lives in `tests/`: the oracle that compares the gateway with hyper on the same bytes
//! (`tests/oracle/`), the contract's invariants as checks (`tests/support/invariants.rs`,
//! shared with the fuzz targets).

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
