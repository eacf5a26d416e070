//! Forwarding: streaming bodies, HTTP/2 (h2c), WebSocket upgrades, upstream faults (502/504),
//! isolation of users over pooled upstream connections, and graceful drain.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test]
async fn large_bodies_stream_both_ways_without_being_buffered() {
    let up = Upstream::start().await;
    // The default body limit is 64 MiB; this route lifts it.
    let cfg = CONFIG.replace(
        "[[route]]\npath = \"/\"\n",
        "[[route]]\npath = \"/\"\nmax_body_bytes = 0\n",
    );
    assert_ne!(cfg, CONFIG);
    let gw = Gateway::start(&cfg, &up.url()).await;
    let hwm_before = peak_rss_kib();

    // Upload 1 GiB in 64 KiB chunks; the upstream hashes what it receives.
    let (n, size) = (16384, 64 * 1024);
    let req = Request::post(gw.url("/upload"))
        .header("authorization", bearer(&token("alice")))
        .body(Chunks::new(n, size))
        .unwrap();
    let client: Client<_, Chunks> = Client::builder(TokioExecutor::new()).build_http();
    let res = client.request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let seen = up.one();
    assert_eq!(seen.body_len, (n * size) as u64);
    assert_eq!(seen.body_sha256, Chunks::sha256(n, size));
    assert_eq!(seen.all("x-auth-user"), vec!["alice"]);

    // Download 256 MiB.
    let req = Request::get(gw.url("/__big/256"))
        .header("authorization", bearer(&token("alice")))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = client_full().request(req).await.unwrap();
    let mut body = res.into_body();
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        total += frame.unwrap().data_ref().map_or(0, |d| d.len() as u64);
    }
    assert_eq!(total, 256 * 1024 * 1024);

    // 1.25 GiB went through the process; a proxy that buffered whole bodies would have grown by
    // at least 256 MiB.
    let grown = peak_rss_kib().saturating_sub(hwm_before);
    assert!(
        grown < 96 * 1024,
        "peak RSS grew by {grown} KiB while streaming"
    );
}

fn client_full() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn echo_body_round_trips() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let body = Bytes::from(vec![7u8; 1_000_000]);
    let got = send(
        &gw,
        "PUT",
        "/__echo",
        &[("authorization", &bearer(&token("alice")))],
        body.clone(),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body.len(), body.len());
}

#[tokio::test]
async fn http2_prior_knowledge_works_and_reaches_the_upstream_as_http1() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let req = Request::get(gw.url("/h2?x=1"))
        .header("authorization", bearer(&token("alice")))
        .header("x-auth-user", "mallory")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = client.request(req).await.unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    let got = read(res).await;
    assert_eq!(got.status, 200);
    let seen = up.one();
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(seen.uri, "/h2?x=1");
    assert_eq!(seen.all("x-auth-user"), vec!["alice"]);
    assert_eq!(seen.all("host"), vec![gw.addr.to_string()]);

    // And refusals work over h2 as well.
    let req = Request::get(gw.url("/h2"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(client.request(req).await.unwrap().status(), 401);
    assert_eq!(up.count(), 1);
}

async fn ws_handshake(gw: &Gateway, extra: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let req = format!(
        "GET /__ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let head = read_head(&mut s).await;
    (s, head)
}

#[tokio::test]
async fn websocket_upgrades_are_tunnelled_only_after_auth() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;

    let (_s, head) = ws_handshake(&gw, "X-Auth-User: mallory\r\n").await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert_eq!(up.count(), 0);

    let t = token("alice");
    let (mut s, head) = ws_handshake(
        &gw,
        &format!("Authorization: Bearer {t}\r\nX-Auth-User: mallory\r\nx_auth_user: eve\r\n"),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let seen = up.one();
    assert_eq!(seen.all("x-auth-user"), vec!["alice"]);
    assert!(seen.all("x_auth_user").is_empty());
    assert_eq!(seen.all("upgrade"), vec!["websocket"]);
    s.write_all(b"ping through the tunnel").await.unwrap();
    let mut buf = [0u8; 23];
    tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"ping through the tunnel");
}

#[tokio::test]
async fn refused_upstream_is_502() {
    // Bind then drop, so nothing listens on the port.
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = Gateway::start(CONFIG, &format!("http://{dead}")).await;
    let got = get(&gw, "/x", &[("authorization", &bearer(&token("a")))]).await;
    assert_eq!(got.status, 502);
    assert_eq!(got.json()["error"], "bad_gateway");
}

/// A raw upstream that answers each connection with `reply` (then closes).
async fn raw_upstream(reply: &'static [u8]) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(reply).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn garbage_reset_or_truncated_upstreams_are_502_or_an_incomplete_body() {
    for reply in [
        &b"SSH-2.0-OpenSSH_9.0\r\n\r\n"[..],
        b"",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
    ] {
        let addr = raw_upstream(reply).await;
        let gw = Gateway::start(CONFIG, &format!("http://{addr}")).await;
        let got = get(&gw, "/x", &[("authorization", &bearer(&token("a")))]).await;
        assert_eq!(got.status, 502, "{:?}", String::from_utf8_lossy(reply));
    }
    // Truncated body: the head arrives, the body breaks off. The client must not see a
    // complete response.
    let addr = raw_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b").await;
    let gw = Gateway::start(CONFIG, &format!("http://{addr}")).await;
    let req = Request::get(gw.url("/x"))
        .header("authorization", bearer(&token("a")))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = client_full().request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.into_body().collect().await.is_err(),
        "truncated body presented as complete"
    );
}

#[tokio::test]
async fn slow_upstream_is_504_after_upstream_timeout() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let got = get(&gw, "/__slow", &[("authorization", &bearer(&token("a")))]).await;
    assert_eq!(got.status, 504);
    assert_eq!(got.json()["error"], "gateway_timeout");
    // The 504 came before the upstream's answer was ready (it takes 3 s).
    assert_eq!(up.slow_done(), 0, "waited for the upstream anyway");
}

#[tokio::test]
async fn upstream_timeout_starts_after_a_slow_upload_has_been_sent() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await; // upstream_timeout = 1s
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            tx.send(Bytes::from_static(b"0123456789")).await.unwrap();
        }
    });
    let req = Request::post(gw.url("/slow-upload"))
        .header("authorization", bearer(&token("alice")))
        .body(ChannelBody(rx))
        .unwrap();
    let client: Client<_, ChannelBody> = Client::builder(TokioExecutor::new()).build_http();
    let res = client.request(req).await.unwrap();
    assert_eq!(
        res.status(),
        200,
        "a 1.8 s upload hit the 1 s upstream_timeout"
    );
    assert_eq!(up.one().body_len, 60);
}

#[tokio::test]
async fn connect_timeout_is_502_and_a_silent_upstream_is_504() {
    // A listener that never accepts, with its accept queue filled: the kernel then drops new
    // SYNs, so the gateway's connect hangs until connect_timeout (500ms in CONFIG).
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let full = sock.listen(1).unwrap();
    let addr = full.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await
        {
            fillers.push(s);
        }
    }
    let gw = Gateway::start(CONFIG, &format!("http://{addr}")).await;
    let start = Instant::now();
    // Not left to the kernel, which gives up on a SYN that gets no answer after about two
    // minutes (net.ipv4.tcp_syn_retries = 6), far past PATIENCE.
    let got = within("the 502 for a connect that hangs", async {
        get(&gw, "/x", &[("authorization", &bearer(&token("a")))]).await
    })
    .await;
    assert_eq!(got.status, 502);
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "502 came before connect_timeout"
    );

    // Accepts (the kernel does) but never answers: upstream_timeout (1s) gives 504.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw = Gateway::start(CONFIG, &format!("http://{}", silent.local_addr().unwrap())).await;
    assert_eq!(
        get(&gw, "/x", &[("authorization", &bearer(&token("a")))])
            .await
            .status,
        504
    );
}

#[tokio::test]
async fn concurrent_users_over_pooled_connections_never_see_each_other() {
    let up = Upstream::start().await;
    let gw = std::sync::Arc::new(Gateway::start(CONFIG, &up.url()).await);
    let mut tasks = Vec::new();
    for i in 0..200usize {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            let user = format!("user-{i}");
            let (path, headers) = if i.is_multiple_of(3) {
                // Anonymous public traffic mixed in, with a forged header.
                (
                    format!("/public/{i}"),
                    vec![("x-auth-user".to_owned(), "mallory".to_owned())],
                )
            } else {
                (
                    format!("/u/{i}"),
                    vec![("authorization".to_owned(), bearer(&token(&user)))],
                )
            };
            let h: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let got = get(&gw, &path, &h).await;
            assert_eq!(got.status, 200);
            let saw = got
                .headers
                .get("x-upstream-saw-user")
                .map(|v| v.to_str().unwrap().to_owned());
            if i.is_multiple_of(3) {
                assert_eq!(saw, None, "anonymous request {i} carried an identity");
            } else {
                assert_eq!(saw.as_deref(), Some(user.as_str()), "request {i}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let seen = up.seen();
    assert_eq!(seen.len(), 200);
    for s in seen {
        let i: usize = s.uri.rsplit('/').next().unwrap().parse().unwrap();
        let users = s.all("x-auth-user");
        if i.is_multiple_of(3) {
            assert!(users.is_empty());
        } else {
            assert_eq!(users, vec![format!("user-{i}")]);
        }
    }
}

#[tokio::test]
async fn drain_lets_in_flight_requests_finish() {
    let up = Upstream::start().await;
    // The request is held at the upstream until the test lets it go: neither timeout may end
    // it first, however slowly the test runs.
    let cfg = CONFIG
        .replace("upstream_timeout = \"1s\"", "upstream_timeout = \"300s\"")
        .replace("drain_timeout = \"5s\"", "drain_timeout = \"300s\"");
    let gw = Gateway::start(&cfg, &up.url()).await;
    let (addr, gateway) = (gw.addr, gw.gateway.clone());
    let t = token("a");
    let in_flight = tokio::spawn(async move {
        let req = format!("GET /__held HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\nConnection: close\r\n\r\n");
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    });
    until("the request at the upstream", || up.count() == 1).await;
    let stopping = tokio::spawn(gw.stop());
    // The drain has begun once the gateway says it is not ready (the listener is closed in
    // the same step).
    until("the drain to begin", || !gateway.is_ready()).await;
    // New connections are refused while draining...
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting while draining"
    );
    // ...the drain waits for the in-flight request...
    assert!(!stopping.is_finished(), "the drain did not wait");
    // ...and it completes.
    up.release();
    let out = within("the in-flight answer", in_flight).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    within("the end of the drain", stopping).await.unwrap();
}

#[tokio::test]
async fn keep_alive_client_connection_is_reused() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let t = token("alice");
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    for i in 0..5 {
        let req = Request::get(format!("/k/{i}"))
            .header("host", "a")
            .header("authorization", bearer(&t))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let res = sender.send_request(req).await.unwrap();
        assert_eq!(res.status(), 200);
        res.into_body().collect().await.unwrap();
    }
    assert_eq!(up.count(), 5);
}

#[tokio::test]
async fn upstream_connections_are_pooled_and_kept_alive() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let t = token("alice");
    for i in 0..20 {
        // A new client connection each time: only the upstream side can be reused.
        let out = raw(gw.addr, format!("GET /p/{i} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\nConnection: close\r\n\r\n").as_bytes()).await;
        assert_eq!(statuses(&out), vec![200]);
    }
    assert_eq!(up.count(), 20);
    assert_eq!(
        up.accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "upstream connections were not reused"
    );
}

#[tokio::test]
async fn http2_answers_to_head_have_no_body() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    for (path, auth, status) in [
        ("/x", None, 401),
        ("/public/x", None, 200),
        ("/x", Some(bearer(&token("a"))), 200),
    ] {
        let mut req = Request::head(gw.url(path));
        if let Some(a) = &auth {
            req = req.header("authorization", a);
        }
        let res = client
            .request(req.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{path}");
        // A body (DATA frames) on a HEAD answer is a protocol error for h2 clients.
        let body = res
            .into_body()
            .collect()
            .await
            .expect("a clean HEAD answer")
            .to_bytes();
        assert!(body.is_empty(), "{path}: {body:?}");
    }
}

#[tokio::test]
async fn http2_cookies_are_joined_for_the_http1_upstream() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let req = Request::get(gw.url("/c"))
        .header("authorization", bearer(&token("alice")))
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(client.request(req).await.unwrap().status(), 200);
    assert_eq!(up.one().all("cookie"), vec!["a=1; b=2"]);
}

#[tokio::test]
async fn an_upstream_that_stops_reading_an_upload_gets_504() {
    // Accepts, reads nothing, never answers: the upload fills the socket buffers and stalls.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    // upstream_timeout = 1s; no other timeout may end the exchange within PATIENCE.
    let cfg = CONFIG.replace("[server]\n", "[server]\nidle_timeout = \"300s\"\n");
    let gw = Gateway::start(&cfg, &format!("http://{addr}")).await;
    let req = Request::post(gw.url("/upload"))
        .header("authorization", bearer(&token("alice")))
        .body(Chunks::new(4096, 64 * 1024))
        .unwrap();
    let client: Client<_, Chunks> = Client::builder(TokioExecutor::new()).build_http();
    let res = within("an answer: the stalled upload hangs", client.request(req)).await;
    // The gateway may also answer 504 and close while the client is still writing: an error
    // here (within PATIENCE, only its upstream_timeout ends the exchange).
    if let Ok(res) = res {
        assert_eq!(res.status(), 504);
    }
    hold.abort();
}
