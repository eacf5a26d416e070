//! What a client that does not read can make the gateway hold, whatever the upstream protocol:
//! the attacks that once took it from 27 MB to 910 MB, repeated against the binary, with its
//! memory and its budget (`jwtgate_buffered_bytes`) watched.
//!
//! * HTTP/2 clients with a window of 0 on 100 streams each, pinging to stay alive, on a route
//!   to an `h2c://` upstream with large responses: the upstream can send each stream no more
//!   than the gateway's window (`STREAM_WINDOW`), the gateway's memory grows by about that, and
//!   after `idle_timeout` without progress every stream is reset, both ways, and the budget is
//!   whole again.
//! * HTTP/1.1 clients that stop reading, through the HTTP/1.1-to-HTTP/2 bridge: the same bound
//!   per client, and the same end.
//! * A spent budget (`server.max_buffered_bytes`): further calls wait, then get 503; what is
//!   reserved never passes the limit.

mod common;

use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use common::process::{jwtgate, listen_addr, Running};
use common::{token, until, KEY};
use jwtgate::upstream::h2::STREAM_WINDOW;

/// An `h2c` upstream that answers every request with an endless body, sending only what the
/// gateway's window allows, and counts what it sent and the streams the gateway reset.
struct Endless {
    addr: std::net::SocketAddr,
    sent: Arc<AtomicU64>,
    ended: Arc<AtomicUsize>,
}

impl Endless {
    async fn start() -> Endless {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (sent, ended) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicUsize::new(0)));
        let (s, e) = (sent.clone(), ended.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                let (s, e) = (s.clone(), e.clone());
                tokio::spawn(async move {
                    let Ok(mut conn) = h2::server::handshake(tcp).await else {
                        return;
                    };
                    while let Some(Ok((_req, mut respond))) = conn.accept().await {
                        let (s, e) = (s.clone(), e.clone());
                        tokio::spawn(async move {
                            let res = http::Response::new(());
                            let Ok(mut body) = respond.send_response(res, false) else {
                                return;
                            };
                            let zeros = Bytes::from(vec![0u8; 64 * 1024]);
                            loop {
                                body.reserve_capacity(zeros.len());
                                match poll_fn(|cx| body.poll_capacity(cx)).await {
                                    Some(Ok(0)) => {}
                                    Some(Ok(n)) => {
                                        let n = n.min(zeros.len());
                                        if body.send_data(zeros.slice(..n), false).is_err() {
                                            break;
                                        }
                                        s.fetch_add(n as u64, Ordering::SeqCst);
                                    }
                                    _ => break,
                                }
                            }
                            e.fetch_add(1, Ordering::SeqCst);
                        });
                    }
                });
            }
        });
        Endless { addr, sent, ended }
    }
}

/// The gateway binary on a route `/big` to `upstream` (h2c), with `server` keys added.
fn gateway(
    dir: &std::path::Path,
    upstream: std::net::SocketAddr,
    server: &str,
) -> (Running, String, String) {
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nidle_timeout = \"2s\"\n{server}\n[[route]]\npath = \"/big\"\nupstream = \"h2c://{upstream}\"\n"
    );
    let path = dir.join("jwtgate.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = jwtgate(dir);
    cmd.args(["--config", path.to_str().unwrap()])
        .env("JWT_SECRET_KEY", KEY)
        .env("JWTGATE_LOG_FORMAT", "json")
        .env("RUST_LOG", "warn,jwtgate::server=info");
    let mut gw = Running::start(cmd);
    let listen = listen_addr(&gw.wait_for("\"listening\""));
    let admin = serde_json::from_str::<serde_json::Value>(&gw.wait_for("admin listening")).unwrap()
        ["admin_listen"]
        .as_str()
        .unwrap()
        .to_owned();
    (gw, listen, admin)
}

/// `jwtgate_buffered_bytes` now.
async fn buffered(admin: &str) -> u64 {
    let mut s = TcpStream::connect(admin).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut s, &mut out)
        .await
        .unwrap();
    out.lines()
        .find_map(|l| l.strip_prefix("jwtgate_buffered_bytes "))
        .unwrap_or_else(|| panic!("no jwtgate_buffered_bytes in\n{out}"))
        .trim()
        .parse()
        .unwrap()
}

/// An HTTP/2 client that never gives its streams any window (and pings to stay alive): it
/// opens `streams` calls to `/big` and keeps them, unread, until dropped.
async fn stalled_h2_client(addr: &str, streams: usize) -> (tokio::task::JoinHandle<()>, Vec<u16>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (send, mut conn) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    let mut pings = conn.ping_pong().unwrap();
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if pings.send_ping(h2::Ping::opaque()).is_err()
                || poll_fn(|cx| pings.poll_pong(cx)).await.is_err()
            {
                return;
            }
        }
    });
    let auth = format!("Bearer {}", token("mallory"));
    let mut heads = Vec::new();
    let mut send = send;
    for _ in 0..streams {
        send = send.ready().await.unwrap();
        let req = http::Request::get(format!("http://{addr}/big"))
            .header("authorization", &auth)
            .body(())
            .unwrap();
        let (response, _) = send.send_request(req, true).unwrap();
        heads.push(response);
    }
    let mut statuses = Vec::new();
    let mut bodies = Vec::new();
    for response in heads {
        let res = response.await.unwrap();
        statuses.push(res.status().as_u16());
        bodies.push(res.into_body());
    }
    let held = tokio::spawn(async move {
        // The bodies are held, never read, until the task is dropped.
        let _bodies = bodies;
        driver.await.ok();
    });
    (held, statuses)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_that_do_not_read_hold_one_window_per_stream_until_idle_timeout() {
    let up = Endless::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (gw, listen, admin) = gateway(dir.path(), up.addr, "");
    // A first call, read whole, so that the connection to the upstream is made before the
    // baseline is taken.
    let (first, statuses) = stalled_h2_client(&listen, 1).await;
    assert_eq!(statuses, [200]);
    until("the first call's window is sent", || {
        up.sent.load(Ordering::SeqCst) >= u64::from(STREAM_WINDOW)
    })
    .await;
    first.abort();
    until("the first call is reset", || {
        up.ended.load(Ordering::SeqCst) == 1
    })
    .await;
    let before = gw.peak_rss();
    let sent_before = up.sent.load(Ordering::SeqCst);

    let (a, sa) = stalled_h2_client(&listen, 100).await;
    let (b, sb) = stalled_h2_client(&listen, 100).await;
    assert!(sa.iter().chain(&sb).all(|s| *s == 200), "{sa:?} {sb:?}");
    let window = u64::from(STREAM_WINDOW);
    until("every stream's window is sent", || {
        up.sent.load(Ordering::SeqCst) - sent_before >= 200 * window
    })
    .await;
    assert!(buffered(&admin).await >= 200 * window);
    // Nothing moves for idle_timeout (2 s): every stream is reset, the upstream's too, and
    // the windows go back to the budget, though the clients keep their connections alive.
    until("the upstream's streams are reset", || {
        up.ended.load(Ordering::SeqCst) == 201
    })
    .await;
    let grew = gw.peak_rss().saturating_sub(before);
    eprintln!(
        "200 stalled HTTP/2 streams: the upstream sent {} bytes, the gateway's peak grew {} bytes",
        up.sent.load(Ordering::SeqCst) - sent_before,
        grew
    );
    // The gateway held each stream's window, what h2's receive buffers pin around it, and
    // little else (before: 2 MiB windows and 128 MiB connections, 880 MB held).
    assert!(grew < 4 * 200 * window, "grew {grew} bytes");
    // The upstream never got more window than the first: the client did not read.
    assert_eq!(up.sent.load(Ordering::SeqCst) - sent_before, 200 * window);
    let give_up = Instant::now() + Duration::from_secs(60);
    while buffered(&admin).await != 0 {
        assert!(Instant::now() < give_up, "windows never given back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.abort();
    b.abort();
    let (code, _) = gw.terminate();
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_clients_that_do_not_read_hold_one_window_each_through_the_bridge() {
    let up = Endless::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (gw, listen, admin) = gateway(dir.path(), up.addr, "");
    let request = format!(
        "GET /big HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {}\r\n\r\n",
        token("mallory")
    );
    // One first, so that the upstream connection exists before the baseline.
    let mut warm = TcpStream::connect(&listen).await.unwrap();
    warm.write_all(request.as_bytes()).await.unwrap();
    until("the first call is going", || {
        up.sent.load(Ordering::SeqCst) > 0
    })
    .await;
    let before = gw.peak_rss();
    let mut clients = Vec::new();
    for _ in 0..150 {
        let mut s = TcpStream::connect(&listen).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        clients.push(s);
    }
    // Every call is open: its window reserved.
    let window = u64::from(STREAM_WINDOW);
    let give_up = Instant::now() + Duration::from_secs(60);
    while buffered(&admin).await < 151 * window {
        assert!(Instant::now() < give_up, "the calls never opened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Each client's socket and the gateway's send buffer take what they take (the kernel's,
    // not the gateway's); then the upstream is held to the window, and after idle_timeout
    // without progress the clients are closed and the upstream's streams reset.
    until("the upstream's streams are reset", || {
        up.ended.load(Ordering::SeqCst) == 151
    })
    .await;
    let grew = gw.peak_rss().saturating_sub(before);
    eprintln!("150 HTTP/1.1 clients not reading: the gateway's peak grew {grew} bytes");
    // Before: 280 MB for the same attack.
    assert!(grew < 4 * 150 * window, "grew {grew} bytes");
    let give_up = Instant::now() + Duration::from_secs(60);
    while buffered(&admin).await != 0 {
        assert!(Instant::now() < give_up, "windows never given back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(clients);
    drop(warm);
    let (code, _) = gw.terminate();
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_sheds_calls_with_503_and_is_never_passed() {
    let up = Endless::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Room for 16 calls' windows.
    let limit = 16 * u64::from(STREAM_WINDOW);
    let (gw, listen, admin) = gateway(
        dir.path(),
        up.addr,
        &format!("max_buffered_bytes = {limit}\nconnect_timeout = \"300ms\""),
    );
    let (held, statuses) = stalled_h2_client(&listen, 40).await;
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let shed = statuses.iter().filter(|s| **s == 503).count();
    assert_eq!((ok, shed), (16, 24), "{statuses:?}");
    assert!(buffered(&admin).await <= limit);
    held.abort();
    let (code, _) = gw.terminate();
    assert_eq!(code, Some(0));
}
