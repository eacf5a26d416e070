//! The listeners (the inline one and the forward-auth check listener): accept connections (at most `server.max_connections` at once), serves
//! HTTP/1.1 ([`crate::http::h1`]) and HTTP/2 ([`crate::http::h2`]: by prior knowledge, "h2c",
//! or by ALPN over TLS) on the same port, and drains on shutdown: stop accepting, close idle connections, let
//! in-flight requests finish within `server.drain_timeout`, then return.

pub mod admin;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error, info, warn};

use crate::http::h1::{self as http1, Ending};
use crate::http::h2 as http2;
use crate::net::Closing;
use crate::pipeline::ClientInfo;
use crate::runtime::Gateway;

/// The listeners one gateway serves: the inline listener (`server.listen`) and the
/// forward-auth check listener (`forward_auth.listen`), either or both.
#[derive(Debug, Default)]
pub struct Listeners {
    /// Requests forwarded to upstreams.
    pub inline: Option<TcpListener>,
    /// Checks answered for other proxies.
    pub checks: Option<TcpListener>,
}

/// Serves `listener` until `shutdown` completes, then drains. Returns when every connection has
/// finished or `drain_timeout` (read from the config current at shutdown) has passed.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let listeners = Listeners {
        inline: Some(listener),
        checks: None,
    };
    serve_all(listeners, gateway, shutdown).await
}

/// Serves every listener of `listeners` until `shutdown` completes, then drains them together
/// (see [`serve`]); they share `server.max_connections`.
pub async fn serve_all(
    listeners: Listeners,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let max = gateway.current().config.server.max_connections;
    let limit = Arc::new(Semaphore::new(max));
    let closing = Arc::new(Closing::default());
    let h2 = Arc::new(http2::settings(&gateway.current().config.server));
    let shared = Shared {
        gateway: &gateway,
        limit: &limit,
        closing: &closing,
        h2: &h2,
    };
    for (listener, mode) in [
        (&listeners.inline, "inline"),
        (&listeners.checks, "forward_auth"),
    ] {
        if let Some(l) = listener {
            info!(listen = %l.local_addr()?, mode, "listening");
        }
    }
    gateway.set_ready(true);
    let accepting = async {
        tokio::join!(
            accept(listeners.inline, false, shared),
            accept(listeners.checks, true, shared)
        )
    };
    tokio::select! {
        _ = shutdown => {}
        _ = accepting => {}
    }

    gateway.set_ready(false);
    closing.set();
    let drain = gateway.current().config.server.drain_timeout;
    info!(
        connections = max - limit.available_permits(),
        tunnels = gateway.open_tunnels(),
        drain_timeout = ?drain,
        "draining"
    );
    // Every connection holds a permit: all of them back means all connections are done.
    let all_done = limit.acquire_many(u32::try_from(max).unwrap_or(u32::MAX));
    match tokio::time::timeout(drain, all_done).await {
        Ok(_) => info!("drained"),
        Err(_) => {
            error!(
                connections = max - limit.available_permits(),
                tunnels = gateway.open_tunnels(),
                "drain_timeout passed with connections still open; closing them"
            );
            gateway.close_tunnels();
        }
    }
    Ok(())
}

/// What every listener's accept loop shares.
#[derive(Clone, Copy)]
struct Shared<'a> {
    gateway: &'a Arc<Gateway>,
    limit: &'a Arc<Semaphore>,
    closing: &'a Arc<Closing>,
    h2: &'a Arc<http2::Settings>,
}

/// Accepts connections on `listener` (none: returns at once; else until cancelled), each
/// served as inline requests, or as checks when `checks`.
async fn accept(listener: Option<TcpListener>, checks: bool, shared: Shared<'_>) {
    let Some(listener) = listener else { return };
    let gateway = shared.gateway;
    loop {
        let Ok(permit) = shared.limit.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE/ENFILE and friends: back off instead of spinning; keep serving the
                // connections already open.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let rt = gateway.current();
        // The TLS settings current now: a reload with a renewed certificate applies to new
        // connections.
        let tls = match checks {
            false => rt.listener_tls(),
            true => rt.check_tls(),
        }
        .cloned();
        let handshake_timeout = rt.config.server.header_read_timeout;
        drop(rt);
        let client = ClientInfo::new(peer.ip(), if tls.is_some() { "https" } else { "http" });
        let client = if checks { client.checking() } else { client };
        gateway.metrics.open_connections.inc();
        let slot = Slot {
            gateway: gateway.clone(),
            _permit: permit,
        };
        let (closing, h2) = (shared.closing.clone(), shared.h2.clone());
        // Two kinds of task, each sized for itself: a plain connection's is what most idle
        // connections cost.
        match tls {
            None => {
                tokio::spawn(Plain {
                    http1: http1::serve(stream, gateway.clone(), client, closing),
                    h2,
                    slot: Some(slot),
                });
            }
            Some(config) => {
                tokio::spawn(secure(
                    stream,
                    config,
                    handshake_timeout,
                    client,
                    closing,
                    h2,
                    slot,
                ));
            }
        }
    }
}

/// A connection's place: counted in `jwtgate_open_connections` and under `max_connections`
/// until the connection ends.
struct Slot {
    gateway: Arc<Gateway>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gateway.metrics.open_connections.dec();
    }
}

pin_project_lite::pin_project! {
    /// A plain connection's task: HTTP/1 until the connection ends, and no more than that
    /// future (its wait for the next request is what an idle keep-alive connection costs,
    /// with its socket; a unit test bounds it). A connection that begins with the HTTP/2
    /// preface continues as a task of its own.
    struct Plain<F> {
        #[pin]
        http1: F,
        h2: Arc<http2::Settings>,
        slot: Option<Slot>,
    }
}

impl<F: Future<Output = Ending<TcpStream>>> Future for Plain<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if let Ending::Http2(h) = ready!(this.http1.poll(cx)) {
            let (h2, slot) = (this.h2.clone(), this.slot.take());
            tokio::spawn(async move {
                let io = http2::Rewind::new(h.read, h.io);
                http2::serve(io, h.gateway, h.client, h.closing, &h2).await;
                drop(slot);
            });
        }
        Poll::Ready(())
    }
}

/// A TLS connection's task: the handshake, then HTTP/2 (ALPN `h2`) or HTTP/1.
async fn secure(
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
    handshake_timeout: Duration,
    client: ClientInfo,
    closing: Arc<Closing>,
    h2: Arc<http2::Settings>,
    slot: Slot,
) {
    let peer = client.ip;
    let gateway = slot.gateway.clone();
    let accept = TlsAcceptor::from(config).accept(stream);
    match tokio::time::timeout(handshake_timeout, accept).await {
        Ok(Ok(tls)) => {
            if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                http2::serve(tls, gateway, client, closing, &h2).await;
            } else if let Ending::Http2(..) = http1::serve(tls, gateway, client, closing).await {
                debug!(peer = %peer, "h2 preface over TLS without ALPN h2");
            }
        }
        Ok(Err(e)) => debug!(peer = %peer, error = %e, "TLS handshake failed"),
        Err(_) => debug!(peer = %peer, "TLS handshake timed out"),
    }
    drop(slot);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Runtime;

    /// What an idle keep-alive connection costs besides its socket registration and its timer:
    /// its task's future (no buffer is held while idle). `benches/idle-memory.sh` and
    /// `../shared/bench/peers/idle.py` measure the whole process.
    #[test]
    fn an_idle_connection_task_is_small() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let stream = TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let config = crate::config::Config::from_toml(
                "[[route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:1\"",
            )
            .unwrap();
            let keys = crate::auth::keys::Keys::from_secrets(
                "a-test-key-that-is-long-enough-0123456789",
                None,
            );
            let gateway = Arc::new(Gateway::new(Runtime::build(config, &keys, None).unwrap()));
            let h2 = Arc::new(http2::settings(&gateway.current().config.server));
            let client = ClientInfo::new(std::net::Ipv4Addr::LOCALHOST.into(), "http");
            let slot = Slot {
                gateway: gateway.clone(),
                _permit: Arc::new(Semaphore::new(1)).acquire_owned().await.unwrap(),
            };
            let task = Plain {
                http1: http1::serve(stream, gateway, client, Arc::default()),
                h2,
                slot: Some(slot),
            };
            let size = std::mem::size_of_val(&task);
            eprintln!("idle connection future: {size} bytes");
            assert!(size <= 640, "the connection task's future is {size} bytes");
        });
    }
}
