//! After `101 Switching Protocols` (a WebSocket, say): the client's connection and the
//! upstream's joined until either side closes, nothing moves for `idle_timeout`, or the drain
//! deadline passes.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tracing::debug;

use super::Connection;
use super::Transport;
use crate::net::IdleIo;
use crate::upstream::Stream;

/// Joins the client and `upstream` (with what the upstream sent after its `101`, `early`).
pub(super) async fn tunnel<T: Transport>(
    conn: &mut Connection<T>,
    (upstream, early): (Stream, Vec<u8>),
    idle: Duration,
    route: &str,
) {
    let mut closing = conn.gateway.tunnel_handle();
    let pending = conn.input.take_all();
    let mut client = IdleIo::new(&mut conn.io, idle);
    let mut upstream = IdleIo::new(upstream, idle);
    let result = async {
        upstream.write_all(&pending).await?;
        upstream.flush().await?;
        client.write_all(&early).await?;
        client.flush().await?;
        tokio::io::copy_bidirectional(&mut client, &mut upstream).await
    };
    tokio::select! {
        r = result => debug!(route, result = ?r.map_err(|e| e.kind()), "tunnel closed"),
        _ = closing.wait_for(|closing| *closing) => debug!(route, "tunnel closed by the drain deadline"),
    }
}
