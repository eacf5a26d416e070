//! `h2c://` upstreams, seen from scripted HTTP/2 upstreams (hyper): request trailers reach it
//! without the fields the gateway manages, response trailers reach the client, a body over
//! `max_body_bytes` is refused, HTTP/1.x clients are carried (bodies re-framed, trailers
//! dropped), a dead upstream is a 502; the connection pool opens another connection at
//! `server.upstream_max_streams`, a GOAWAY loses no request, and a request that failed after it
//! was sent is sent again only when it is idempotent and has no body.

mod common;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use common::*;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// A body of one data frame, then trailers.
struct WithTrailers {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl http_body::Body for WithTrailers {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }
}

/// What the upstream saw of one request: its fields, body length and trailers.
#[derive(Debug, Default, Clone)]
struct SeenH2 {
    path: String,
    headers: HeaderMap,
    body: usize,
    trailers: Option<HeaderMap>,
}

/// An HTTP/2-only upstream that records each request and answers 200 with a body and
/// trailers (`grpc-status: 0`, `x-upstream-trailer: yes`).
async fn h2_upstream() -> (std::net::SocketAddr, Arc<Mutex<Vec<SeenH2>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<SeenH2>>> = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        async move {
                            let headers = req.headers().clone();
                            let path = req.uri().path().to_owned();
                            let collected = req.into_body().collect().await;
                            let (body, trailers) = match collected {
                                Ok(c) => {
                                    let trailers = c.trailers().cloned();
                                    (c.to_bytes().len(), trailers)
                                }
                                Err(_) => (usize::MAX, None),
                            };
                            log.lock().unwrap().push(SeenH2 {
                                path,
                                headers,
                                body,
                                trailers,
                            });
                            let mut t = HeaderMap::new();
                            t.insert("grpc-status", HeaderValue::from_static("0"));
                            t.insert("x-upstream-trailer", HeaderValue::from_static("yes"));
                            Ok::<_, Infallible>(Response::new(WithTrailers {
                                data: Some(Bytes::from_static(b"answer")),
                                trailers: Some(t),
                            }))
                        }
                    });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

fn config(addr: std::net::SocketAddr) -> String {
    format!(
        "[server]\nmax_body_bytes = 1000\n[auth]\nclaim_headers = {{ role = \"X-Auth-Role\" }}\n[[route]]\npath = \"/\"\nupstream = \"h2c://{addr}\"\n"
    )
}

#[tokio::test]
async fn trailers_pass_both_ways_without_the_gateways_fields() {
    let (addr, seen) = h2_upstream().await;
    let gw = Gateway::start(&config(addr), "").await;
    let client: Client<_, WithTrailers> = h2_client();
    let mut trailers = HeaderMap::new();
    trailers.insert("x-auth-user", HeaderValue::from_static("admin"));
    trailers.insert("x-auth-role-bin", HeaderValue::from_static("YWRtaW4"));
    trailers.insert("x-checksum", HeaderValue::from_static("abc"));
    let req = Request::post(gw.url("/svc/Call"))
        .header("authorization", bearer(&token("alice")))
        .header("x-auth-user", "mallory")
        .body(WithTrailers {
            data: Some(Bytes::from_static(b"hello")),
            trailers: Some(trailers),
        })
        .unwrap();
    let res = client.request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let collected = res.into_body().collect().await.unwrap();
    let got_trailers = collected.trailers().cloned().expect("response trailers");
    assert_eq!(got_trailers["grpc-status"], "0");
    assert_eq!(got_trailers["x-upstream-trailer"], "yes");
    assert_eq!(collected.to_bytes(), "answer");
    let s = seen.lock().unwrap()[0].clone();
    let users: Vec<_> = s.headers.get_all("x-auth-user").iter().collect();
    assert_eq!(users, ["alice"], "one identity, the gateway's");
    assert_eq!(s.headers["te"], "trailers");
    assert_eq!(s.body, 5);
    let t = s.trailers.expect("request trailers");
    assert_eq!(t.get("x-checksum").unwrap(), "abc");
    assert!(
        t.get("x-auth-user").is_none(),
        "an identity trailer passed: {t:?}"
    );
    assert!(
        t.get("x-auth-role-bin").is_none(),
        "an identity trailer passed: {t:?}"
    );
}

#[tokio::test]
async fn a_large_body_and_a_dead_upstream() {
    let (addr, seen) = h2_upstream().await;
    let gw = Gateway::start(&config(addr), "").await;
    let client: Client<_, WithTrailers> = h2_client();
    // A body over max_body_bytes (1000), without a declared length: 413, and the upstream
    // never sees a whole request.
    let req = Request::post(gw.url("/svc/Big"))
        .header("authorization", bearer(&token("alice")))
        .body(WithTrailers {
            data: Some(Bytes::from(vec![b'x'; 5000])),
            trailers: None,
        })
        .unwrap();
    let res = client.request(req).await.unwrap();
    assert_eq!(res.status(), 413);
    assert!(seen.lock().unwrap().iter().all(|s| s.body != 5000));
    // A dead upstream: 502, and for HEAD without a body (an HTTP/2 client fails on one).
    let dead = Gateway::start(&config("127.0.0.1:1".parse().unwrap()), "").await;
    for method in [http::Method::GET, http::Method::HEAD] {
        let req = Request::builder()
            .method(method.clone())
            .uri(dead.url("/svc/Call"))
            .header("authorization", bearer(&token("alice")))
            .body(WithTrailers {
                data: None,
                trailers: None,
            })
            .unwrap();
        let res = client.request(req).await.expect("an answer");
        assert_eq!(res.status(), 502, "{method}");
        let body = res.into_body().collect().await.expect("a well-formed body");
        assert_eq!(
            body.to_bytes().is_empty(),
            method == http::Method::HEAD,
            "{method}"
        );
    }
}

#[tokio::test]
async fn a_slow_upload_is_not_cut_by_upstream_timeout() {
    // A client stream the server answers at its end (gRPC client streaming): the upload takes
    // longer than upstream_timeout, each piece within it.
    let (addr, seen) = h2_upstream().await;
    let config = format!(
        "[server]\nupstream_timeout = \"1s\"\n[[route]]\npath = \"/\"\nupstream = \"h2c://{addr}\"\n"
    );
    let gw = Gateway::start(&config, "").await;
    let client: Client<_, ChannelBody> = h2_client();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let req = Request::post(gw.url("/svc/Upload"))
        .header("authorization", bearer(&token("alice")))
        .body(ChannelBody(rx))
        .unwrap();
    let feeder = tokio::spawn(async move {
        for _ in 0..5 {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            tx.send(Bytes::from_static(b"0123456789")).await.unwrap();
        }
    });
    let res = client.request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    feeder.await.unwrap();
    let s = seen
        .lock()
        .unwrap()
        .iter()
        .find(|s| s.path == "/svc/Upload")
        .cloned()
        .unwrap();
    assert_eq!(s.body, 50);
}

#[tokio::test]
async fn http1_clients_reach_an_h2c_upstream() {
    let (addr, seen) = h2_upstream().await;
    let gw = Gateway::start(&config(addr), "").await;
    let auth = format!("authorization: Bearer {}\r\n", token("alice"));
    // A chunked upload with trailers, then a GET, on one keep-alive connection.
    let request = format!(
        "POST /svc/Up HTTP/1.1\r\nhost: a.example\r\n{auth}x-auth-user: mallory\r\ntransfer-encoding: chunked\r\n\r\n\
         5\r\nhello\r\n5\r\nworld\r\n0\r\nx-auth-user: mallory\r\n\r\n\
         GET /svc/Down?q=1 HTTP/1.1\r\nhost: a.example\r\n{auth}\r\n"
    );
    let got = raw(gw.addr, request.as_bytes()).await;
    assert_eq!(statuses(&got), [200, 200], "{got}");
    let lower = got.to_ascii_lowercase();
    // The body was re-chunked (the upstream gave no length); its trailers are not passed to
    // an HTTP/1 client.
    assert_eq!(
        lower.matches("transfer-encoding: chunked").count(),
        2,
        "{got}"
    );
    assert_eq!(got.matches("6\r\nanswer\r\n0\r\n\r\n").count(), 2, "{got}");
    assert!(
        !lower.contains("grpc-status") && !lower.contains("x-upstream-trailer"),
        "{got}"
    );
    assert!(!lower.contains("connection: close"), "{got}");
    let first = seen.lock().unwrap().clone();
    assert_eq!(first.len(), 2);
    assert_eq!((first[0].path.as_str(), first[0].body), ("/svc/Up", 10));
    assert!(first[0].trailers.is_none(), "{:?}", first[0].trailers);
    assert_eq!(first[1].path, "/svc/Down");
    for s in &first {
        let users: Vec<_> = s.headers.get_all("x-auth-user").iter().collect();
        assert_eq!(users, ["alice"], "one identity, the gateway's");
        assert_eq!(s.headers["te"], "trailers");
        assert!(s.headers.get("transfer-encoding").is_none());
    }
    // HTTP/1.0: the body until the connection closes.
    let request = format!("GET /svc/Old HTTP/1.0\r\n{auth}\r\n");
    let (got, closed) = raw_until_closed(gw.addr, request.as_bytes()).await;
    assert!(closed && got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.ends_with("\r\n\r\nanswer"), "{got}");
    // Over max_body_bytes (1000): 413, the upstream never gets a whole body.
    let big = "x".repeat(3000);
    let request =
        format!("POST /svc/Big HTTP/1.1\r\nhost: a\r\n{auth}content-length: 3000\r\n\r\n{big}");
    let got = raw(gw.addr, request.as_bytes()).await;
    assert_eq!(statuses(&got), [413], "{got}");
    // A forged token: 401, nothing sent.
    let request = "GET /svc/Forged HTTP/1.1\r\nhost: a\r\nauthorization: Bearer a.b.c\r\n\r\n";
    assert_eq!(statuses(&raw(gw.addr, request.as_bytes()).await), [401]);
    let after = seen.lock().unwrap().clone();
    assert!(
        after
            .iter()
            .all(|s| s.path != "/svc/Forged" && s.body != 3000),
        "{after:?}"
    );
}

/// An HTTP/2 upstream that counts its connections and requests: each request waits until
/// `gather` requests have come (so that they are all in at once, however they are spaced),
/// then `hold` (its processing time), then gets 200 with the connection's number; a connection
/// sends GOAWAY (a graceful shutdown) after `goaway_after` requests; a request to a path ending
/// in `/fail-once` is reset the first time that path comes (a request lost after it was sent).
async fn counting_upstream(
    gather: usize,
    hold: std::time::Duration,
    goaway_after: Option<usize>,
) -> (
    std::net::SocketAddr,
    Arc<Mutex<Vec<String>>>,
    Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let requests: Arc<Mutex<Vec<String>>> = Arc::default();
    let conns = Arc::new(AtomicUsize::new(0));
    let (log, count) = (requests.clone(), conns.clone());
    let gathered = Arc::new(tokio::sync::watch::channel(gather == 0).0);
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            let (log, gathered) = (log.clone(), gathered.clone());
            let served = Arc::new(AtomicUsize::new(0));
            let enough = Arc::new(tokio::sync::Notify::new());
            let (served2, enough2) = (served.clone(), enough.clone());
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (log, served, enough) = (log.clone(), served2.clone(), enough2.clone());
                        let gathered = gathered.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            let first = {
                                let mut log = log.lock().unwrap();
                                let first = !log.contains(&path);
                                log.push(path.clone());
                                if log.len() >= gather {
                                    gathered.send_replace(true);
                                }
                                first
                            };
                            let _ = req.into_body().collect().await;
                            if path.ends_with("/fail-once") && first {
                                return Err("reset this stream");
                            }
                            let _ = gathered.subscribe().wait_for(|all| *all).await;
                            tokio::time::sleep(hold).await;
                            if goaway_after == Some(served.fetch_add(1, Ordering::SeqCst) + 1) {
                                enough.notify_one();
                            }
                            Ok::<_, &str>(Response::new(http_body_util::Full::new(Bytes::from(
                                format!("conn {n}"),
                            ))))
                        }
                    });
                let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), service);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => return,
                    () = enough.notified() => conn.as_mut().graceful_shutdown(),
                }
                let _ = conn.await;
            });
        }
    });
    (addr, requests, conns)
}

/// A client that speaks HTTP/2 by prior knowledge, with request bodies of type `B`.
fn h2_client<B>() -> Client<hyper_util::client::legacy::connect::HttpConnector, B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

type H2Client =
    Client<hyper_util::client::legacy::connect::HttpConnector, http_body_util::Full<Bytes>>;

/// One call through the gateway at `base`: the status and the body.
async fn call(
    client: H2Client,
    base: String,
    method: &str,
    path: &str,
    body: &'static [u8],
) -> (u16, String) {
    let req = Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .header("authorization", bearer(&token("alice")))
        .body(http_body_util::Full::new(Bytes::from_static(body)))
        .unwrap();
    let res = client.request(req).await.expect("an answer");
    let status = res.status().as_u16();
    let body = res
        .into_body()
        .collect()
        .await
        .expect("a whole body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_stream_limit_another_connection_opens() {
    // The six calls are answered once all are in: each holds its stream meanwhile.
    let (addr, requests, conns) = counting_upstream(6, std::time::Duration::ZERO, None).await;
    let config = format!(
        "[server]\nupstream_max_streams = 2\n[[route]]\npath = \"/\"\nupstream = \"h2c://{addr}\"\n"
    );
    let gw = Gateway::start(&config, "").await;
    let client = h2_client();
    let base = gw.url("");
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..6 {
        let (client, base) = (client.clone(), base.clone());
        calls
            .spawn(async move { call(client, base, "POST", &format!("/c/{i}"), b"payload").await });
    }
    let answers = calls.join_all().await;
    let mut per_conn = std::collections::HashMap::new();
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        *per_conn.entry(body.clone()).or_insert(0) += 1;
    }
    assert_eq!(requests.lock().unwrap().len(), 6);
    assert_eq!(
        conns.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "{per_conn:?}"
    );
    assert!(per_conn.values().all(|n| *n == 2), "{per_conn:?}");
    // Once they are done, the connections take calls again (no new one).
    let (status, _) = call(client, base, "POST", "/again", b"x").await;
    assert_eq!(status, 200);
    assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_loses_no_request_and_sent_ones_are_not_replayed_unless_safe() {
    let hold = std::time::Duration::from_millis(5);
    let (addr, requests, conns) = counting_upstream(0, hold, Some(3)).await;
    let config = format!("[[route]]\npath = \"/\"\nupstream = \"h2c://{addr}\"\n");
    let gw = Gateway::start(&config, "").await;
    let client = h2_client();
    // Eight clients, 25 POSTs each (not idempotent: never replayed after processing), against
    // an upstream that sends GOAWAY every 3 requests.
    let base = gw.url("");
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..8 {
        let (client, base) = (client.clone(), base.clone());
        workers.spawn(async move {
            let mut failures = Vec::new();
            for i in 0..25 {
                let path = format!("/w{w}/{i}");
                let (status, body) =
                    call(client.clone(), base.clone(), "POST", &path, b"data").await;
                if status != 200 {
                    failures.push(format!("{path}: {status} {body}"));
                }
            }
            failures
        });
    }
    let failures: Vec<String> = workers.join_all().await.into_iter().flatten().collect();
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(
        requests.lock().unwrap().len(),
        200,
        "each request reached the upstream once"
    );
    assert!(
        conns.load(std::sync::atomic::Ordering::SeqCst) >= 10,
        "GOAWAYs were sent"
    );
    // A request reset after it was sent: a GET without a body goes once more; a POST fails
    // with 502 and is not sent again.
    let (status, _) = call(client.clone(), base.clone(), "GET", "/get/fail-once", b"").await;
    assert_eq!(status, 200);
    let (status, _) = call(client, base, "POST", "/post/fail-once", b"data").await;
    assert_eq!(status, 502);
    let log = requests.lock().unwrap().clone();
    assert_eq!(log.iter().filter(|p| *p == "/get/fail-once").count(), 2);
    assert_eq!(log.iter().filter(|p| *p == "/post/fail-once").count(), 1);
}

#[tokio::test]
async fn a_long_response_stream_is_not_cut_by_upstream_timeout() {
    // A server stream (gRPC server streaming) that goes on for longer than upstream_timeout:
    // the timeout runs until the response head, not to the end of the stream.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(|_req: Request<hyper::body::Incoming>| async {
                        let (tx, rx) = tokio::sync::mpsc::channel(1);
                        tokio::spawn(async move {
                            for i in 0..5 {
                                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                                let _ = tx.send(Bytes::from(format!("part{i};"))).await;
                            }
                        });
                        Ok::<_, Infallible>(Response::new(ChannelBody(rx)))
                    });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), service)
                    .await;
            });
        }
    });
    let config = format!(
        "[server]\nupstream_timeout = \"1s\"\n[[route]]\npath = \"/\"\nupstream = \"h2c://{addr}\"\n"
    );
    let gw = Gateway::start(&config, "").await;
    let (status, body) = call(h2_client(), gw.url(""), "GET", "/stream", b"").await;
    assert_eq!(
        (status, body.as_str()),
        (200, "part0;part1;part2;part3;part4;")
    );
    // The same for an HTTP/1.1 client.
    let got = get(
        &gw,
        "/stream",
        &[("authorization", &bearer(&token("alice")))],
    )
    .await;
    assert_eq!(
        (got.status, got.body.as_str()),
        (200, "part0;part1;part2;part3;part4;")
    );
}

/// An HTTP/2 upstream on the h2 crate, with a stream window of 4 KiB: GETs are answered once
/// two are in (two calls at once, however the test's calls are spaced); the first POST is read up to `refuse_after` body bytes and then refused with
/// `REFUSED_STREAM` (not processed: the gateway sends it again); later ones get their response
/// head at once, and only 100 ms later is their body read, its length and SHA-256 sent back.
async fn refusing_upstream(refuse_after: usize) -> std::net::SocketAddr {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let two_gets = Arc::new(tokio::sync::Barrier::new(2));
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let (seen, two_gets) = (seen.clone(), two_gets.clone());
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::Builder::new()
                    .initial_window_size(4096)
                    .handshake::<_, Bytes>(s)
                    .await
                else {
                    return;
                };
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    let get = req.method() == http::Method::GET;
                    let first = !get && seen.fetch_add(1, Ordering::SeqCst) == 0;
                    let two_gets = two_gets.clone();
                    tokio::spawn(async move {
                        let mut body = req.into_body();
                        if get {
                            two_gets.wait().await;
                            if let Ok(mut send) = respond.send_response(Response::new(()), false) {
                                let _ = send.send_data(Bytes::from_static(b"ok"), true);
                            }
                            return;
                        }
                        if first {
                            let mut got = 0;
                            while got < refuse_after {
                                let Some(Ok(data)) = body.data().await else {
                                    break;
                                };
                                got += data.len();
                                let _ = body.flow_control().release_capacity(data.len());
                            }
                            respond.send_reset(h2::Reason::REFUSED_STREAM);
                            return;
                        }
                        let Ok(mut send) = respond.send_response(Response::new(()), false) else {
                            return;
                        };
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        let mut all = Vec::new();
                        while let Some(Ok(data)) = body.data().await {
                            let _ = body.flow_control().release_capacity(data.len());
                            all.extend_from_slice(&data);
                        }
                        let answer = format!("{}:{}", all.len(), hex(&sha256(&all)));
                        let _ = send.send_data(Bytes::from(answer), true);
                    });
                }
            });
        }
    });
    addr
}

fn sha256(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(data).to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_stream_is_sent_again_whole() {
    // Two connections open (one call each at most, two slow GETs at once). Then 48 KiB in
    // 1 KiB frames: the first connection takes 24 KiB and refuses the stream; the second, whose
    // 4 KiB window the gateway already knows, answers at once and reads the body only later, so
    // the replay is still giving the kept frames when the response head comes: it must give
    // them all.
    let addr = refusing_upstream(24 * 1024).await;
    let config = format!(
        "[server]\nupstream_max_streams = 1\n[[route]]\npath = \"/\"\nupstream = \"h2c://{addr}\"\n"
    );
    let gw = Gateway::start(&config, "").await;
    let base = gw.url("");
    let warm: Vec<_> = (0..2)
        .map(|_| tokio::spawn(call(h2_client(), base.clone(), "GET", "/slow", b"")))
        .collect();
    for w in warm {
        assert_eq!(w.await.unwrap().0, 200);
    }
    let client: Client<_, ChannelBody> = h2_client();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let body: Vec<u8> = (0..48 * 1024).map(|i| (i % 251) as u8).collect();
    let expected = format!("{}:{}", body.len(), hex(&sha256(&body)));
    let feeder = tokio::spawn(async move {
        for chunk in body.chunks(1024) {
            if tx.send(Bytes::copy_from_slice(chunk)).await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    });
    let req = Request::post(gw.url("/upload"))
        .header("authorization", bearer(&token("alice")))
        .body(ChannelBody(rx))
        .unwrap();
    let res = client.request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let got = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        String::from_utf8_lossy(&got),
        expected,
        "the body the upstream got"
    );
    feeder.await.unwrap();
}

#[tokio::test]
async fn an_http1_body_the_upstream_did_not_read_is_never_taken_for_a_request() {
    // The upstream answers (and ends its stream) without reading the body, which is larger
    // than its windows (hyper: 1 MiB); the rest of the client's body, shaped like requests, must
    // not be read as the next request: the connection closes after the answer.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let paths: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = paths.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        log.lock().unwrap().push(req.uri().path().to_owned());
                        async {
                            Ok::<_, Infallible>(Response::new(http_body_util::Full::new(
                                Bytes::from_static(b"early"),
                            )))
                        }
                    });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), service)
                    .await;
            });
        }
    });
    let gw = Gateway::start(
        &config(addr).replace("max_body_bytes = 1000", "max_body_bytes = 10000000"),
        "",
    )
    .await;
    let smuggled = "GET /smuggled HTTP/1.1\r\nhost: a\r\n\r\n".repeat(90_000);
    let request = format!(
        "POST /upload HTTP/1.1\r\nhost: a\r\nauthorization: Bearer {}\r\ncontent-length: {}\r\n\r\n{smuggled}",
        token("alice"),
        smuggled.len()
    );
    let (got, _) = raw_until_closed(gw.addr, request.as_bytes()).await;
    assert_eq!(statuses(&got), [200], "{}", &got[..got.len().min(300)]);
    assert!(
        got.to_ascii_lowercase().contains("connection: close"),
        "{got}"
    );
    // A request sent now, after the connection closed, reaches the upstream after anything
    // the gateway sent before (on the one pooled HTTP/2 connection, in order).
    let marker = format!(
        "GET /marker HTTP/1.1\r\nhost: a\r\nauthorization: Bearer {}\r\nconnection: close\r\n\r\n",
        token("alice")
    );
    assert_eq!(statuses(&raw(gw.addr, marker.as_bytes()).await), [200]);
    assert_eq!(*paths.lock().unwrap(), ["/upload", "/marker"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_keep_the_http2_connection_of_an_unchanged_upstream() {
    let (addr, requests, conns) = counting_upstream(0, std::time::Duration::ZERO, None).await;
    let config = format!("[[route]]\npath = \"/\"\nupstream = \"h2c://{addr}\"\n");
    let gw = Gateway::start(&config, "").await;
    let base = gw.url("");
    assert_eq!(
        call(h2_client(), base.clone(), "POST", "/one", b"x")
            .await
            .0,
        200
    );
    // A reload that adds a route and changes the stream limit: the same upstream keeps its
    // connection.
    let reloaded = format!(
        "[server]\nupstream_max_streams = 50\n[[route]]\npath = \"/other\"\nupstream = \"http://127.0.0.1:1\"\n{config}"
    );
    let keys = jwtgate::Keys::from_secrets(KEY, Some(OLD_KEY));
    let current = gw.gateway.current();
    let next = jwtgate::Runtime::build(
        jwtgate::Config::from_toml(&reloaded).unwrap(),
        &keys,
        Some(&current),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    gw.gateway.swap(next);
    assert_eq!(
        call(h2_client(), base.clone(), "POST", "/two", b"x")
            .await
            .0,
        200
    );
    assert_eq!(requests.lock().unwrap().len(), 2);
    assert_eq!(
        conns.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "a reload dropped the upstream's HTTP/2 connection"
    );
}
