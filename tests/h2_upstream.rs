//! `h2c://` upstreams, seen from a scripted HTTP/2 upstream (hyper): request trailers reach it
//! without the fields the gateway manages, response trailers reach the client, a body over
//! `max_body_bytes` is refused, HTTP/1 clients are refused (not yet supported), a dead upstream
//! is a 502.

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
    let client: Client<_, WithTrailers> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
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
async fn limits_http1_clients_and_a_dead_upstream() {
    let (addr, seen) = h2_upstream().await;
    let gw = Gateway::start(&config(addr), "").await;
    let client: Client<_, WithTrailers> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
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
    // HTTP/1 clients to an h2c route: not yet (502), nothing sent.
    let got = get(
        &gw,
        "/svc/H1",
        &[("authorization", &bearer(&token("alice")))],
    )
    .await;
    assert_eq!(got.status, 502);
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
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(
        seen.lock().unwrap().iter().all(|s| s.path != "/svc/H1"),
        "an HTTP/1 request reached the upstream"
    );
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
    let client: Client<_, ChannelBody> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
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
