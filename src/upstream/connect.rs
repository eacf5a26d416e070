//! Getting a connection to an upstream without losing the request: an idle one from the pool,
//! else a new one, within one budget (`server.connect_timeout`).
//!
//! * Nothing has been sent while connecting, so a refused, reset or timed-out connect is retried
//!   (whatever the method) with a short backoff, a new SYN each time, until the budget is spent:
//!   an upstream that restarts, or a full listen backlog that drops SYNs, costs a request some
//!   milliseconds, not a 502.
//! * At most `server.max_connecting` connects to one upstream are in flight. A request that
//!   finds no idle connection and no free connect slot waits for whichever comes first: a
//!   connection another request gives back to the pool, or a slot; and one that is connecting
//!   takes a connection given back meanwhile. A burst of clients does not become a burst of
//!   SYNs at a small upstream.
//! * Errors that another attempt cannot fix (a certificate rustls refuses, a host that is not a
//!   TLS server name) are not retried.

use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::debug;

use super::h1::{Conn, Stream};
use super::{Origin, ProxyError};

/// How long one connect attempt may take before a new SYN is sent (the kernel itself would
/// retransmit only after a second).
const ATTEMPT: Duration = Duration::from_millis(250);

/// The first pause between attempts; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_millis(100);

impl Origin {
    /// An idle pooled connection, or a new one, before `deadline` (see the module docs).
    pub(super) async fn checkout(&self, deadline: Instant) -> Result<Conn, ProxyError> {
        let _slot = loop {
            // Listen for a release before looking, so that one landing in between is not
            // missed. The listener is dropped before connecting (an unpolled listener would
            // hold on to the next release instead of the connecting request's own).
            let mut released = pin!(self.pool.released());
            released.as_mut().enable();
            if let Some(conn) = self.pool.take(Instant::now()) {
                return Ok(conn);
            }
            // Biased: a request whose budget is spent does not take a slot that came free at
            // the same moment only to start a connect it has no time for.
            tokio::select! {
                biased;
                () = tokio::time::sleep_until(deadline) => return Err(slots_busy()),
                () = &mut released => continue,
                // The semaphore is never closed.
                permit = self.connecting.acquire() => break permit.map_err(|_| slots_busy())?,
            }
        };
        Box::pin(self.connect_or_take(deadline)).await
    }

    /// A new connection, or one given back to the pool while connecting (a small upstream's
    /// full backlog can drop SYN after SYN while other requests' connections come free).
    async fn connect_or_take(&self, deadline: Instant) -> Result<Conn, ProxyError> {
        let mut connecting = pin!(self.connect(deadline));
        loop {
            let mut released = pin!(self.pool.released());
            released.as_mut().enable();
            if let Some(conn) = self.pool.take(Instant::now()) {
                return Ok(conn);
            }
            tokio::select! {
                connected = &mut connecting => return connected,
                () = &mut released => {}
            }
        }
    }

    /// A new connection (never a pooled one), once a connect slot is free, before `deadline`.
    pub(super) async fn fresh(&self, deadline: Instant) -> Result<Conn, ProxyError> {
        let slot = tokio::time::timeout_at(deadline, self.connecting.acquire()).await;
        let Ok(Ok(_slot)) = slot else {
            return Err(slots_busy());
        };
        self.connect(deadline).await
    }

    /// A new HTTP/1.1 connection, retrying until `deadline`.
    pub(super) async fn connect(&self, deadline: Instant) -> Result<Conn, ProxyError> {
        self.connect_stream(deadline, false).await.map(Conn::new)
    }

    /// A new connection, retrying until `deadline`; `h2`: over TLS, offer `h2` by ALPN.
    pub(super) async fn connect_stream(
        &self,
        deadline: Instant,
        h2: bool,
    ) -> Result<Stream, ProxyError> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempts = 0usize;
        // The upstream's addresses, looked up once per connect (again after a failed lookup).
        let mut addrs = Vec::new();
        let mut last = None;
        loop {
            let now = Instant::now();
            if now >= deadline {
                // Not even a first SYN once the budget is gone (a timeout future polls what it
                // wraps once even when its deadline has passed). The last attempt's error says
                // more than the budget running out.
                return Err(ProxyError::Connect(last.unwrap_or_else(|| {
                    io::Error::new(io::ErrorKind::TimedOut, "connect_timeout spent")
                })));
            }
            let error = match self
                .connect_once(&mut addrs, attempts, now + ATTEMPT, deadline, h2)
                .await
            {
                Ok(stream) => return Ok(stream),
                Err(Failed::Final(e)) => return Err(ProxyError::Connect(e)),
                Err(Failed::Retry(e)) => e,
            };
            attempts += 1;
            let pause = backoff.min(deadline.saturating_duration_since(Instant::now()));
            if pause.is_zero() {
                debug!(upstream = %self.addr, attempts, error = %error, "connect_timeout spent");
                return Err(ProxyError::Connect(error));
            }
            debug!(upstream = %self.addr, attempts, error = %error, "connect failed; retrying");
            last = Some(error);
            tokio::time::sleep(pause).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Attempt number `attempt` (from 0): the name is looked up unless `addrs` holds its
    /// addresses already, then TCP to one of them before `attempt_ends`, then TLS for
    /// `https://` before `deadline` (a handshake takes round trips of its own and is not cut
    /// short to send another SYN).
    async fn connect_once(
        &self,
        addrs: &mut Vec<SocketAddr>,
        attempt: usize,
        attempt_ends: Instant,
        deadline: Instant,
        h2: bool,
    ) -> Result<Stream, Failed> {
        let timed_out = |what| Failed::Retry(io::Error::new(io::ErrorKind::TimedOut, what));
        if addrs.is_empty() {
            // Apart from connecting, and within the whole budget: a slow resolver (a first
            // nameserver down, search domains tried in turn) is not an attempt that timed out,
            // and a failed lookup (a DNS server restarting, a Service not published yet) is
            // worth another, whatever error kind the resolver gave it. An IP address is
            // parsed, not looked up.
            let found = tokio::time::timeout_at(deadline, tokio::net::lookup_host(&*self.addr))
                .await
                .map_err(|_| timed_out("the upstream's name lookup timed out"))?
                .map_err(Failed::Retry)?;
            addrs.extend(found);
            if addrs.is_empty() {
                return Err(Failed::Retry(io::Error::new(
                    io::ErrorKind::NotFound,
                    "the upstream's name resolved to no address",
                )));
            }
        }
        // One address an attempt, in turn: one that drops SYNs (IPv6 on a dual-stack name
        // without a route) does not hide the others.
        let addr = addrs[attempt % addrs.len()];
        let tcp = tokio::time::timeout_at(attempt_ends.min(deadline), TcpStream::connect(addr))
            .await
            .map_err(|_| timed_out("connect attempt timed out"))?
            .map_err(Failed::classify)?;
        tcp.set_nodelay(true).map_err(Failed::classify)?;
        let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(60));
        socket2::SockRef::from(&tcp)
            .set_tcp_keepalive(&keepalive)
            .map_err(Failed::classify)?;
        match &self.tls {
            None => Ok(Stream::Tcp(tcp)),
            Some((Some(connector), Some(name))) => {
                let connector = match &self.tls_h2 {
                    Some(offers_h2) if h2 => offers_h2,
                    _ => connector,
                };
                let handshake = connector.connect(name.clone(), tcp);
                match tokio::time::timeout_at(deadline, handshake).await {
                    Ok(Ok(tls)) => Ok(Stream::Tls(Box::new(tls))),
                    Ok(Err(e)) => Err(Failed::classify(e)),
                    Err(_) => Err(timed_out("TLS handshake with the upstream timed out")),
                }
            }
            Some(_) => Err(Failed::Final(io::Error::new(
                io::ErrorKind::InvalidInput,
                "upstream host is not a valid TLS server name",
            ))),
        }
    }
}

/// Why an attempt failed: worth another, or not.
#[derive(Debug)]
enum Failed {
    Retry(io::Error),
    Final(io::Error),
}

impl Failed {
    fn classify(e: io::Error) -> Failed {
        if retryable(&e) {
            Failed::Retry(e)
        } else {
            Failed::Final(e)
        }
    }
}

fn slots_busy() -> ProxyError {
    ProxyError::Connect(io::Error::new(
        io::ErrorKind::TimedOut,
        "no connection within connect_timeout (every connect slot busy)",
    ))
}

/// A connect or handshake failure another attempt may not meet: the upstream was not there or
/// not taking connections yet, or the exchange broke off. A certificate rustls refuses (a TLS
/// alert is `InvalidData`), or anything else, is final. (Name lookups are retried where they
/// are made, in [`Origin::connect_once`].)
fn retryable(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused | ConnectionReset | ConnectionAborted | NotConnected | BrokenPipe
        | TimedOut | UnexpectedEof | Interrupted | WouldBlock | AddrNotAvailable => true,
        Other => e.get_ref().is_none_or(|inner| !inner.is::<rustls::Error>()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_retried() {
        for kind in [
            io::ErrorKind::ConnectionRefused,
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::TimedOut,
            io::ErrorKind::UnexpectedEof,
        ] {
            assert!(retryable(&kind.into()), "{kind:?}");
        }
        for kind in [
            io::ErrorKind::InvalidInput,
            io::ErrorKind::InvalidData,
            io::ErrorKind::PermissionDenied,
        ] {
            assert!(!retryable(&kind.into()), "{kind:?}");
        }
        let tls = io::Error::other(rustls::Error::General("bad certificate".into()));
        assert!(!retryable(&tls));
    }
}
