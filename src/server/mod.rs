//! The public listener: accepts connections (at most `server.max_connections` at once), serves
//! HTTP/1.1 (`http1.rs`) and HTTP/2 (`http2.rs`: by prior knowledge, "h2c", or by ALPN over
//! TLS) on the same port, and drains on shutdown: stop accepting, close idle connections, let
//! in-flight requests finish within `server.drain_timeout`, then return.

pub mod admin;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error, info, warn};

use crate::http::h1::{self as http1, Ending};
use crate::http::h2 as http2;
use crate::net::Closing;
use crate::pipeline::ClientInfo;
use crate::runtime::Gateway;

/// Serves `listener` until `shutdown` completes, then drains. Returns when every connection has
/// finished or `drain_timeout` (read from the config current at shutdown) has passed.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let max = gateway.current().config.server.max_connections;
    let limit = Arc::new(Semaphore::new(max));
    let closing = Arc::new(Closing::default());
    let h2 = Arc::new(http2::builder(&gateway.current().config.server));
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
        let rt = gateway.current();
        // The TLS settings current now: a reload with a renewed certificate applies to new
        // connections.
        let tls = rt.listener_tls().cloned();
        let handshake_timeout = rt.config.server.header_read_timeout;
        drop(rt);
        let client = ClientInfo::new(peer.ip(), if tls.is_some() { "https" } else { "http" });
        let (gw, closing, h2) = (gateway.clone(), closing.clone(), h2.clone());
        gateway.metrics.open_connections.inc();
        tokio::spawn(async move {
            match tls {
                None => serve_plain(stream, gw.clone(), client, closing, &h2).await,
                Some(config) => {
                    let accept = TlsAcceptor::from(config).accept(stream);
                    match tokio::time::timeout(handshake_timeout, accept).await {
                        Ok(Ok(tls)) => {
                            let h2_alpn = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                            if h2_alpn {
                                http2::serve(tls, gw.clone(), client, closing, &h2).await;
                            } else if let Ending::Http2(..) =
                                http1::serve(tls, gw.clone(), client, closing).await
                            {
                                debug!(peer = %peer, "h2 preface over TLS without ALPN h2");
                            }
                        }
                        Ok(Err(e)) => debug!(peer = %peer, error = %e, "TLS handshake failed"),
                        Err(_) => debug!(peer = %peer, "TLS handshake timed out"),
                    }
                }
            }
            gw.metrics.open_connections.dec();
            drop(permit);
        });
    }

    gateway.set_ready(false);
    drop(listener);
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

async fn serve_plain(
    stream: TcpStream,
    gateway: Arc<Gateway>,
    client: ClientInfo,
    closing: Arc<Closing>,
    h2: &http2::Builder,
) {
    if let Ending::Http2(stream, read) =
        http1::serve(stream, gateway.clone(), client.clone(), closing.clone()).await
    {
        let io = http2::Rewind::new(read, stream);
        http2::serve(io, gateway, client, closing, h2).await;
    }
}
