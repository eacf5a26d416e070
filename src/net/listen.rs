//! Listening sockets with a backlog sized for an ingress: [`BACKLOG`] connections the kernel
//! has completed may wait for an accept (capped by `net.core.somaxconn`), where Tokio's own
//! `bind` asks for 128, which a reconnect storm after a load balancer or a deploy overflows
//! (nginx asks for 511, HAProxy for its `maxconn`).

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Socket, Type};
use tokio::net::TcpListener;

/// The listen backlog asked for.
pub const BACKLOG: i32 = 4096;

/// A listener on `addr` (`SO_REUSEADDR`, as Tokio's `bind` sets, so that a restart does not
/// wait for the previous process's connections to time out).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_backlog_holds_more_than_tokios_default() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        // The kernel caps the backlog at net.core.somaxconn (4096 since Linux 5.4).
        let cap: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(4096);
        // Nobody accepts: each connect completes only while the backlog has room (a full one
        // drops the SYN, and the connect would hang). Tokio's default holds 129.
        let mut queued = Vec::new();
        for i in 0..cap.min(300) {
            let connect = tokio::net::TcpStream::connect(addr);
            match tokio::time::timeout(std::time::Duration::from_millis(500), connect).await {
                Ok(Ok(s)) => queued.push(s),
                _ => panic!("connection {i} not queued: the backlog is full"),
            }
        }
        drop(listener);
    }
}
