//! The public listener: accepts connections (at most `server.max_connections` at once), serves
//! HTTP/1.1 and HTTP/2 (prior knowledge, "h2c") on the same port, and drains on shutdown: stop
//! accepting, let in-flight requests finish within `server.drain_timeout`, then return.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error, info, warn};

use crate::gateway::Gateway;
use crate::headers::ClientInfo;
use crate::idle::IdleIo;

/// Serves `listener` until `shutdown` completes, then drains. Returns when every connection has
/// finished or `drain_timeout` (read from the config current at shutdown) has passed.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let server = gateway.current().config.server.clone();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Both protocols on one port: HTTP/2 by prior knowledge (h2c) or by ALPN over TLS.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_read_timeout)
        .max_headers(server.max_headers)
        .max_buf_size(server.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        // No server-initiated keep-alive pings: they would count as activity and keep idle
        // HTTP/2 connections open past idle_timeout.
        .max_header_list_size(server.max_header_bytes as u32);
    // Shared, not cloned per connection: every connection borrows the one builder.
    let builder = Arc::new(builder);
    let limit = Arc::new(Semaphore::new(server.max_connections));
    let graceful = GracefulShutdown::new();
    let local = listener.local_addr()?;
    info!(listen = %local, "listening");
    gateway.set_ready(true);
    tokio::pin!(shutdown);

    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE/ENFILE and friends: back off instead of spinning; keep serving the
                    // connections already open.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        // The TLS settings current now: a reload with a renewed certificate applies to new
        // connections.
        let tls = gateway
            .current()
            .config
            .server
            .tls
            .as_ref()
            .map(|t| t.config.clone());
        let client = ClientInfo::new(peer.ip(), if tls.is_some() { "https" } else { "http" });
        let (gw, builder, watcher) = (gateway.clone(), builder.clone(), graceful.watcher());
        let open = gateway.metrics.open_connections.clone();
        let handshake_timeout = server.header_read_timeout;
        let stream = IdleIo::new(stream, server.idle_timeout);
        open.inc();
        tokio::spawn(async move {
            let served = match tls {
                None => serve_connection(&builder, watcher, stream, gw, client).await,
                Some(config) => {
                    let accept = TlsAcceptor::from(config).accept(stream);
                    match tokio::time::timeout(handshake_timeout, accept).await {
                        Ok(Ok(tls)) => serve_connection(&builder, watcher, tls, gw, client).await,
                        Ok(Err(e)) => Err(e.into()),
                        Err(_) => Err("TLS handshake timed out".into()),
                    }
                }
            };
            if let Err(e) = served {
                debug!(peer = %peer, error = %e, "connection ended with an error");
            }
            open.dec();
            drop(permit);
        });
    }

    gateway.set_ready(false);
    drop(listener);
    let drain = gateway.current().config.server.drain_timeout;
    info!(
        connections = graceful.count(),
        tunnels = gateway.open_tunnels(),
        drain_timeout = ?drain,
        "draining"
    );
    let tunnels_done = async {
        while gateway.open_tunnels() > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let all_done = async { tokio::join!(graceful.shutdown(), tunnels_done) };
    match tokio::time::timeout(drain, all_done).await {
        Ok(_) => info!("drained"),
        Err(_) => {
            error!(
                tunnels = gateway.open_tunnels(),
                "drain_timeout passed with connections still open; closing them"
            );
            gateway.close_tunnels();
        }
    }
    Ok(())
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn serve_connection<I>(
    builder: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
    io: I,
    gateway: Arc<Gateway>,
    client: ClientInfo,
) -> Result<(), BoxError>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let gw = gateway.clone();
        // Boxed: hyper keeps one slot per connection for the service future, sized for it, for
        // the connection's whole life; a box keeps idle connections small (README: memory).
        let client = client.clone();
        Box::pin(async move { Ok::<_, Infallible>(gw.handle(req, client).await) })
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    watcher.watch(conn).await
}
