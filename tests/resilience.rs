//! No request is lost that never reached the upstream: refused and timed-out connects (an
//! upstream restarting, a full listen backlog dropping SYNs) are retried within
//! `connect_timeout`, and a burst of requests waits for pooled connections or connect slots
//! (`max_connecting`) instead of stampeding a small upstream. Loopback upstreams this test
//! controls: it stops them (closing every connection), starts them again on the same port,
//! fills their backlog and throttles their accepts.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
connect_timeout = "3s"
upstream_timeout = "5s"

[[route]]
path = "/"
upstream = "{upstream}"
auth = "public"
"#;

/// An upstream this test can stop (listener, then every connection), whose
/// accepts can be throttled. It answers every request `200 ok`, keep-alive.
struct Blinking {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    requests: Arc<AtomicUsize>,
}

impl Blinking {
    /// Serves on `listener`, waiting `accept_every` between accepts.
    fn serve(listener: TcpListener, accept_every: Duration) -> Blinking {
        let addr = listener.local_addr().unwrap();
        let (stop, mut on_stop) = watch::channel(false);
        let (close, stopped) = watch::channel(false);
        let requests = Arc::new(AtomicUsize::new(0));
        let reqs = requests.clone();
        tokio::spawn(async move {
            loop {
                let (s, _) = tokio::select! {
                    _ = on_stop.changed() => {
                        // The listener first: a connect from now on is refused, never
                        // accepted by the kernel into a backlog about to be reset.
                        drop(listener);
                        close.send_replace(true);
                        return;
                    }
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(_) => return,
                    },
                };
                tokio::spawn(answer(s, reqs.clone(), stopped.clone(), Duration::ZERO));
                if !accept_every.is_zero() {
                    tokio::time::sleep(accept_every).await;
                }
            }
        });
        Blinking {
            addr,
            stop,
            requests,
        }
    }

    async fn start_on(addr: SocketAddr) -> Blinking {
        Blinking::serve(TcpListener::bind(addr).await.unwrap(), Duration::ZERO)
    }

    /// Closes the listener and then every connection, as an upstream that stops does. (A
    /// connect that the kernel completes just before the listener closes, and whose request is
    /// then reset, is a request sent to an upstream that died: a 502 by design, which this
    /// order keeps out of the restart test.)
    fn kill(&self) {
        self.stop.send_replace(true);
    }
}

impl Drop for Blinking {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Answers every request on `s` `200 ok`, keep-alive, counting them in `requests`, until the
/// client closes or `stopped` changes; requests for `/slow...` after `slow`.
async fn answer(
    mut s: TcpStream,
    requests: Arc<AtomicUsize>,
    mut stopped: watch::Receiver<bool>,
    slow: Duration,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // A head, then a Content-Length body.
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            tokio::select! {
                _ = stopped.changed() => return,
                n = s.read(&mut chunk) => match n {
                    Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                    _ => return,
                },
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |v| v.trim().parse().unwrap());
        while buf.len() < end + length {
            match s.read(&mut chunk).await {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        }
        buf.drain(..end + length);
        requests.fetch_add(1, Ordering::SeqCst);
        if head.starts_with("get /slow") {
            tokio::time::sleep(slow).await;
        }
        if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await
            .is_err()
        {
            return;
        }
    }
}

/// A loopback listener whose kernel queue holds `backlog` (+1) connections nobody accepted;
/// SYNs beyond that are dropped.
fn listener_with_backlog(backlog: i32) -> TcpListener {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(backlog).unwrap();
    socket.set_nonblocking(true).unwrap();
    TcpListener::from_std(std::net::TcpListener::from(socket)).unwrap()
}

/// A loopback port nothing listens on (for now).
async fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A request's status, waiting up to 4 s for the answer to begin (connects retried for a
/// while on a slow machine).
async fn get(gw: &Gateway, path: &str) -> u16 {
    statuses(
        &raw_quiet(
            gw.addr,
            format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").as_bytes(),
            Duration::from_secs(4),
        )
        .await,
    )
    .first()
    .copied()
    .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connect_is_retried_until_the_upstream_listens() {
    let addr = free_port().await;
    let gw = Gateway::start(CONFIG, &format!("http://{addr}")).await;
    let later = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Blinking::start_on(addr).await
    });
    // Both sent while nothing listens: a GET and a POST with a body (nothing was sent, so
    // the method does not matter).
    let post = tokio::spawn({
        let addr = gw.addr;
        async move {
            raw_quiet(
                addr,
                b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
                Duration::from_secs(4),
            )
            .await
        }
    });
    assert_eq!(get(&gw, "/g").await, 200);
    assert_eq!(statuses(&post.await.unwrap()), vec![200]);
    let up = later.await.unwrap();
    assert_eq!(up.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_restart_loses_no_request() {
    let addr = free_port().await;
    let up = Blinking::start_on(addr).await;
    let gw = Gateway::start(CONFIG, &format!("http://{addr}")).await;
    let (mut ok, mut failed) = (0, Vec::new());
    let mut up = Some(up);
    let mut coming_back = None;
    let mut restarted: Option<Blinking> = None;
    let give_up = std::time::Instant::now() + PATIENCE;
    // Requests back to back on one keep-alive client connection, while the upstream stops
    // (closing its pooled connections) once 10 went through, and comes back 400 ms later;
    // until the restarted upstream has answered 10.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    while restarted
        .as_ref()
        .is_none_or(|up| up.requests.load(Ordering::SeqCst) < 10)
    {
        assert!(
            std::time::Instant::now() < give_up,
            "never: 10 requests after the restart ({ok} answered, {} failed)",
            failed.len()
        );
        if ok > 10 {
            if let Some(up) = up.take() {
                up.kill();
                coming_back = Some(tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    Blinking::start_on(addr).await
                }));
            }
        }
        if let Some(back) = coming_back.take_if(|back| back.is_finished()) {
            restarted = Some(back.await.unwrap());
        }
        s.write_all(b"GET /r HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let head = read_head(&mut s).await;
        let mut body = [0u8; 2];
        if head.starts_with("HTTP/1.1 200") {
            s.read_exact(&mut body).await.unwrap();
            ok += 1;
        } else {
            failed.push(head);
            // The gateway's refusal carries a body; start over on a new connection.
            s = TcpStream::connect(gw.addr).await.unwrap();
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}",
        failed.len(),
        ok + failed.len(),
        failed.first()
    );
    assert!(ok > 20, "only {ok} requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_syns_are_retried() {
    // Backlog 1, nobody accepting, and two connections already queued: the kernel drops new
    // SYNs until the upstream starts accepting 1.2 s later. The kernel's own retransmissions
    // of a SYN come 1 s and then 2 s after it (Linux 6.5+ retransmits every second four times,
    // older kernels back off to 3 s), so only a new SYN (a new attempt) gets through within
    // connect_timeout (1.9 s).
    let listener = listener_with_backlog(1);
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    for _ in 0..2 {
        queued.push(TcpStream::connect(addr).await.unwrap());
    }
    let cfg = CONFIG.replace("connect_timeout = \"3s\"", "connect_timeout = \"1900ms\"");
    let gw = Gateway::start(&cfg, &format!("http://{addr}")).await;
    let later = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        Blinking::serve(listener, Duration::ZERO)
    });
    assert_eq!(get(&gw, "/s").await, 200);
    let up = later.await.unwrap();
    assert_eq!(up.requests.load(Ordering::SeqCst), 1);
    drop(queued);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_waits_for_connect_slots_instead_of_stampeding_a_small_upstream() {
    // The issue's small upstream: backlog 2, 50 accepts a second; connect_timeout 1s.
    let listener = listener_with_backlog(2);
    let up = Blinking::serve(listener, Duration::from_millis(20));
    let cfg = CONFIG.replace("connect_timeout = \"3s\"", "connect_timeout = \"1s\"");
    let gw = Gateway::start(&cfg, &format!("http://{}", up.addr)).await;
    let mut failed = 0;
    for round in 0..5 {
        // 32 clients at once, each request on a new client connection.
        let burst: Vec<_> = (0..32)
            .map(|i| {
                let addr = gw.addr;
                tokio::spawn(async move {
                    let req = format!(
                        "GET /b/{round}/{i} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                    );
                    statuses(&raw_quiet(addr, req.as_bytes(), Duration::from_secs(3)).await)
                })
            })
            .collect();
        for b in burst {
            if b.await.unwrap() != vec![200] {
                failed += 1;
            }
        }
    }
    assert_eq!(failed, 0, "requests failed");
    assert_eq!(up.requests.load(Ordering::SeqCst), 160);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_in_flight_are_bounded_by_max_connecting() {
    // An https upstream that accepts TCP and then never answers the TLS handshake: every
    // connect stays in flight until its attempt gives up. The upstream counts the handshakes
    // pending at once (threads, not tasks: counted the moment they happen).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (pending, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (p, m) = (pending.clone(), most.clone());
    std::thread::spawn(move || {
        while let Ok((mut s, _)) = listener.accept() {
            let now = p.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            let p = p.clone();
            std::thread::spawn(move || {
                let mut sink = [0u8; 4096];
                while matches!(std::io::Read::read(&mut s, &mut sink), Ok(n) if n > 0) {}
                p.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let ca = rcgen::generate_simple_self_signed(vec!["ca.test".to_owned()]).unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert.pem()).unwrap();
    let cfg = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nconnect_timeout = \"5s\"\nmax_connecting = 3\n[[route]]\npath = \"/\"\nupstream = \"https://{addr}\"\nca_file = {:?}\nauth = \"public\"\n",
        ca_file.to_str().unwrap()
    );
    let gw = Gateway::start(&cfg, "unused").await;
    let burst: Vec<_> = (0..24)
        .map(|i| {
            let addr = gw.addr;
            tokio::spawn(async move {
                let req = format!("GET /c/{i} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
                // The 502 comes once connect_timeout is spent.
                statuses(&raw_quiet(addr, req.as_bytes(), PATIENCE).await)
            })
        })
        .collect();
    // Once all 24 requests are at the gateway and connects are in flight, and before the first
    // connects give up (at connect_timeout, 5 s after they began: room for this), the
    // handshakes the upstream holds are the connects in flight: the 3 slots' worth.
    until("24 requests in, connects in flight", || {
        gw.gateway.metrics.open_connections.get() == 24 && most.load(Ordering::SeqCst) >= 2
    })
    .await;
    let in_flight = most.load(Ordering::SeqCst);
    assert!(
        in_flight <= 3,
        "{in_flight} connects in flight at once for 24 requests"
    );
    assert!(
        in_flight >= 2,
        "{in_flight}: the upstream saw no concurrent connects at all"
    );
    for b in burst {
        assert_eq!(b.await.unwrap(), vec![502]);
    }
}

#[tokio::test]
async fn an_upstream_that_never_comes_back_is_a_502_once_connect_timeout_is_spent() {
    let addr = free_port().await;
    let cfg = CONFIG.replace("connect_timeout = \"3s\"", "connect_timeout = \"300ms\"");
    let gw = Gateway::start(&cfg, &format!("http://{addr}")).await;
    assert_eq!(get(&gw, "/gone").await, 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connecting_request_takes_a_connection_given_back_meanwhile() {
    // One upstream connection, pooled; then the upstream's backlog fills and it accepts no
    // more: every new SYN is dropped. A request that finds the one connection busy starts
    // connecting; when the connection comes back to the pool, the request takes it.
    let listener = listener_with_backlog(1);
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let (accepted, on_accepted) = tokio::sync::oneshot::channel();
    let reqs = requests.clone();
    tokio::spawn(async move {
        // Exactly one connection is accepted; `/slow` is answered after 600 ms.
        let (s, _) = listener.accept().await.unwrap();
        let _ = accepted.send(());
        let (_running, never) = watch::channel(false);
        answer(s, reqs, never, Duration::from_millis(600)).await;
    });
    let cfg = CONFIG.replace("connect_timeout = \"3s\"", "connect_timeout = \"2s\"");
    let gw = Gateway::start(&cfg, &format!("http://{addr}")).await;
    assert_eq!(get(&gw, "/warm").await, 200);
    on_accepted.await.unwrap();
    // The backlog: two connections nobody accepts.
    let mut queued = Vec::new();
    for _ in 0..2 {
        queued.push(TcpStream::connect(addr).await.unwrap());
    }
    let slow = tokio::spawn({
        let addr = gw.addr;
        async move {
            statuses(
                &raw_quiet(
                    addr,
                    b"GET /slow HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                    Duration::from_secs(4),
                )
                .await,
            )
        }
    });
    until("/slow at the upstream", || {
        requests.load(Ordering::SeqCst) == 2
    })
    .await;
    // The pooled connection is busy with /slow: this one connects (SYNs dropped) until
    // /slow's connection is given back, well before connect_timeout.
    assert_eq!(get(&gw, "/next").await, 200);
    assert_eq!(slow.await.unwrap(), vec![200]);
    assert_eq!(requests.load(Ordering::SeqCst), 3);
    drop(queued);
}

#[tokio::test]
async fn a_failed_name_lookup_is_retried_until_connect_timeout() {
    // `.invalid` never resolves (RFC 6761). Nothing was sent, so the lookup is tried again
    // until the budget is spent: the 502 comes after connect_timeout, not at the first
    // answer from the resolver (a resolver that does not answer at all is an attempt timing
    // out, and retried as well).
    let cfg = CONFIG.replace("connect_timeout = \"3s\"", "connect_timeout = \"600ms\"");
    let gw = Gateway::start(&cfg, "http://upstream.invalid:80").await;
    let began = std::time::Instant::now();
    assert_eq!(get(&gw, "/dns").await, 502);
    let took = began.elapsed();
    assert!(
        took >= Duration::from_millis(550),
        "the lookup failure was final after {took:?}"
    );
}
