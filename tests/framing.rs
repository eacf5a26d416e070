//! HTTP/1 framing across the gateway: each side's message is framed by the gateway itself, so
//! what one side sends is re-framed, never passed through. Upstream close-delimited and chunked
//! bodies, interim responses, HEAD/204/304, chunked uploads, `Expect: 100-continue`, HTTP/1.0,
//! pipelining, early answers, the upstream pool's retry of a request its reused connection
//! lost, and the keep-alive, idle and drain behaviour of client connections.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a scripted upstream received: one entry per request, head and body as text.
type Log = Arc<Mutex<Vec<String>>>;

/// An upstream that plays `script` on every connection it accepts: for each step it reads one
/// request (its head, and a `Content-Length` or chunked body), then writes the step's bytes;
/// `None` closes the connection instead of answering. After the script, it closes.
async fn scripted(script: Vec<Option<&'static [u8]>>) -> (SocketAddr, Log) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let log: Log = Arc::default();
    let seen = log.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let (script, seen) = (script.clone(), seen.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                for step in script {
                    let Some(request) = read_request(&mut s, &mut buf).await else {
                        return;
                    };
                    seen.lock().unwrap().push(request);
                    match step {
                        Some(reply) => {
                            if s.write_all(reply).await.is_err() {
                                return;
                            }
                        }
                        None => return,
                    }
                }
            });
        }
    });
    (addr, log)
}

/// Reads one request (head plus body) from `s`, keeping what follows in `buf`.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    let mut chunk = [0u8; 65536];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await.ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
    let end = loop {
        if head.contains("transfer-encoding: chunked") {
            if let Some(i) = buf[head_end..].windows(5).position(|w| w == b"0\r\n\r\n") {
                break head_end + i + 5;
            }
        } else if buf.len() >= head_end + length {
            break head_end + length;
        }
        let n = s.read(&mut chunk).await.ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let request = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end);
    Some(request)
}

/// What a client gets for `GET /x` through the gateway from an upstream that answers `reply`.
async fn relayed(reply: &'static [u8]) -> String {
    let (addr, _) = scripted(vec![Some(reply)]).await;
    let gw = Gateway::start(CONFIG, &format!("http://{addr}")).await;
    raw(
        gw.addr,
        authorized("/x", "Connection: close\r\n").as_bytes(),
    )
    .await
}

fn authorized(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {}\r\n{extra}\r\n",
        token("alice")
    )
}

/// The body of the first response in `raw`, de-chunked when it is chunked.
fn body_of(raw: &str) -> String {
    let (head, rest) = raw.split_once("\r\n\r\n").expect("a response head");
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return rest.to_owned();
    }
    let mut body = String::new();
    let mut rest = rest;
    loop {
        let (size, after) = rest.split_once("\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(size, 16).expect("a hex chunk size");
        if size == 0 {
            assert_eq!(after, "\r\n", "the client got trailers or more");
            return body;
        }
        body.push_str(&after[..size]);
        rest = after[size..]
            .strip_prefix("\r\n")
            .expect("CRLF after chunk data");
    }
}

#[tokio::test]
async fn close_delimited_upstream_bodies_are_chunked_for_http11_and_closed_for_http10() {
    let (addr, _) = scripted(vec![Some(
        b"HTTP/1.1 200 OK\r\nX-App: 1\r\nConnection: close\r\n\r\nhello world",
    )])
    .await;
    let gw = Gateway::start(CONFIG, &format!("http://{addr}")).await;
    let (out, closed) = raw_until_closed(gw.addr, authorized("/x", "").as_bytes()).await;
    assert_eq!(statuses(&out), vec![200], "{out}");
    let lower = out.to_ascii_lowercase();
    assert!(
        lower.contains("\r\ntransfer-encoding: chunked\r\n"),
        "{out}"
    );
    assert!(lower.contains("\r\nx-app: 1\r\n"), "{out}");
    assert_eq!(body_of(&out), "hello world");
    // The client connection stays open: the chunked framing says where the body ends.
    assert!(
        !closed,
        "closed a keep-alive connection after a complete response"
    );

    let http10 = authorized("/x", "").replace("HTTP/1.1", "HTTP/1.0");
    let (out, closed) = raw_until_closed(gw.addr, http10.as_bytes()).await;
    assert_eq!(statuses(&out), vec![200], "{out}");
    assert!(
        !out.to_ascii_lowercase().contains("transfer-encoding"),
        "{out}"
    );
    assert!(out.ends_with("\r\n\r\nhello world"), "{out}");
    assert!(
        closed,
        "an HTTP/1.0 body without a length must end with the connection"
    );
}

#[tokio::test]
async fn chunked_upstream_bodies_lose_their_extensions_and_trailers() {
    let out = relayed(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Secret\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Secret: 1\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&out), vec![200], "{out}");
    assert_eq!(body_of(&out), "hello world");
    let lower = out.to_ascii_lowercase();
    assert!(
        !lower.contains("ext=1") && !lower.contains("x-secret"),
        "{out}"
    );
}

#[tokio::test]
async fn interim_responses_are_not_relayed_and_transfer_codings_are_refused() {
    let out = relayed(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    )
    .await;
    assert_eq!(statuses(&out), vec![200], "{out}");
    assert_eq!(body_of(&out), "ok");

    // gzip as a transfer coding would reach the client undecoded under the gateway's framing.
    let out =
        relayed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
            .await;
    assert_eq!(statuses(&out), vec![502], "{out}");
}

#[tokio::test]
async fn head_204_and_304_have_no_body_and_keep_the_connection_in_step() {
    let (addr, log) = scripted(vec![
        Some(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"),
        Some(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\nETag: \"v1\"\r\n\r\n"),
        Some(b"HTTP/1.1 204 No Content\r\n\r\n"),
        Some(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlast"),
    ])
    .await;
    let gw = Gateway::start(CONFIG, &format!("http://{addr}")).await;
    let t = token("alice");
    let auth = format!("Authorization: Bearer {t}\r\n");
    // Four pipelined requests: if the gateway waited for the HEAD's 1234 bytes, or for a 304
    // or 204 body, the later ones would never be answered.
    let req = format!(
        "HEAD /h HTTP/1.1\r\nHost: a\r\n{auth}\r\nGET /n HTTP/1.1\r\nHost: a\r\n{auth}If-None-Match: \"v1\"\r\n\r\nDELETE /d HTTP/1.1\r\nHost: a\r\n{auth}\r\nGET /l HTTP/1.1\r\nHost: a\r\n{auth}Connection: close\r\n\r\n"
    );
    let out = raw(gw.addr, req.as_bytes()).await;
    assert_eq!(statuses(&out), vec![200, 304, 204, 200], "{out}");
    let responses: Vec<&str> = out.split("HTTP/1.1 ").skip(1).collect();
    assert!(
        responses[0]
            .to_ascii_lowercase()
            .contains("content-length: 1234\r\n"),
        "{out}"
    );
    assert!(
        responses[1]
            .to_ascii_lowercase()
            .contains("content-length: 99\r\n"),
        "{out}"
    );
    assert!(
        !responses[2].to_ascii_lowercase().contains("content-length"),
        "{out}"
    );
    assert!(out.ends_with("\r\n\r\nlast"), "{out}");
    assert_eq!(log.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn chunked_request_bodies_are_decoded_and_framed_anew() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let req = "POST /public/upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-Auth-User\r\nConnection: close\r\n\r\n5;name=v\r\nhello\r\n6\r\n world\r\n0\r\nX-Auth-User: admin\r\n\r\n";
    let out = raw(gw.addr, req.as_bytes()).await;
    assert_eq!(statuses(&out), vec![200], "{out}");
    let seen = up.one();
    assert_eq!(seen.body_len, 11);
    assert_eq!(seen.body_sha256, hex(&Sha256::digest(b"hello world")));
    // Re-framed by the gateway; the client's trailer (a spoofed identity) never arrives.
    assert_eq!(seen.all("transfer-encoding"), vec!["chunked"]);
    assert!(seen.all("trailer").is_empty() && seen.all("x-auth-user").is_empty());
}

#[tokio::test]
async fn expect_100_continue_is_answered_by_the_gateway_once_the_request_is_accepted() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let head = authorized("/upload", "Expect: 100-continue\r\nContent-Length: 5\r\n")
        .replace("GET", "POST");
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .expect("no 100 Continue")
        .unwrap();
    assert_eq!(&buf[..n], b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"hello").await.unwrap();
    let n = s.read(&mut buf).await.unwrap();
    let out = String::from_utf8_lossy(&buf[..n]);
    assert_eq!(statuses(&out), vec![200], "{out}");
    let seen = up.one();
    assert_eq!(seen.body_len, 5);
    assert!(
        seen.all("expect").is_empty(),
        "the gateway answers Expect itself"
    );

    // Refused: the final status at once, no 100, and the body is never read as a request.
    let req =
        "POST /upload HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
    let (out, closed) = raw_until_closed(gw.addr, req.as_bytes()).await;
    assert_eq!(statuses(&out), vec![401], "{out}");
    assert!(!out.contains("100 Continue") && closed, "{out}");
}

#[tokio::test]
async fn a_reused_connection_lost_under_a_request_is_retried_only_when_safe() {
    // Every upstream connection answers its first request and then closes under the second:
    // the race an idle keep-alive timeout on the upstream side creates.
    let (addr, log) = scripted(vec![
        Some(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        None,
    ])
    .await;
    let gw = Gateway::start(CONFIG, &format!("http://{addr}")).await;
    for path in ["/a", "/b"] {
        let out = raw(
            gw.addr,
            authorized(path, "Connection: close\r\n").as_bytes(),
        )
        .await;
        assert_eq!(statuses(&out), vec![200], "{path}: {out}");
    }
    // A POST is not sent twice: the client learns it failed.
    let post = authorized("/c", "Content-Length: 4\r\nConnection: close\r\n")
        .replace("GET", "POST")
        + "data";
    let out = raw(gw.addr, post.as_bytes()).await;
    assert_eq!(statuses(&out), vec![502], "{out}");
    let seen: Vec<String> = log
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.split(' ').nth(1).unwrap().to_owned())
        .collect();
    assert_eq!(seen, vec!["/a", "/b", "/b", "/c"]);
}

#[tokio::test]
async fn pipelined_requests_with_bodies_stay_in_step() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let req = "POST /public/a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloPOST /public/b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /public/c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    let out = raw(gw.addr, req.as_bytes()).await;
    assert_eq!(statuses(&out), vec![200, 200, 200], "{out}");
    let seen = up.seen();
    let got: Vec<(&str, u64)> = seen.iter().map(|s| (s.uri.as_str(), s.body_len)).collect();
    assert_eq!(
        got,
        vec![("/public/a", 5), ("/public/b", 3), ("/public/c", 0)]
    );
}

#[tokio::test]
async fn http10_clients_keep_alive_only_when_they_ask() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let req =
        "GET /public/a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /public/b HTTP/1.0\r\n\r\n";
    let (out, closed) = raw_until_closed(gw.addr, req.as_bytes()).await;
    assert_eq!(statuses(&out), vec![200, 200], "{out}");
    let lower = out.to_ascii_lowercase();
    let (first, second) = lower.split_at(lower.rfind("http/1.1 ").unwrap());
    assert!(first.contains("\r\nconnection: keep-alive\r\n"), "{out}");
    assert!(
        second.contains("\r\nconnection: close\r\n") && closed,
        "{out}"
    );
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn an_early_answer_stops_the_upload_and_closes_the_client_connection() {
    // The upstream answers 413 as soon as it has the head, and closes.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    let gw = Gateway::start(CONFIG, &format!("http://{addr}")).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let head = authorized("/upload", "Content-Length: 10000000\r\n").replace("GET", "POST");
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&[b'x'; 1000]).await.unwrap();
    // The client keeps sending (slowly) while reading: it gets the 413, then the connection
    // ends, long before its 10 MB are through (at this pace, PATIENCE sees a few kB sent).
    let give_up = Instant::now() + PATIENCE;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let _ = tokio::time::timeout(Duration::from_millis(10), s.write_all(&[b'x'; 100])).await;
        match tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        assert!(Instant::now() < give_up, "no end: {out:?}");
    }
    let out = String::from_utf8_lossy(&out);
    assert_eq!(statuses(&out), vec![413], "{out}");
    assert!(
        out.to_ascii_lowercase().contains("connection: close"),
        "{out}"
    );
}

const TIMEOUTS: &str = r#"
[server]
header_read_timeout = "1s"
idle_timeout = "2s"
drain_timeout = "10s"

[[route]]
path = "/"
upstream = "{upstream}"
auth = "public"
"#;

/// Reads one response from `s` (head, and a `Content-Length` body).
async fn read_response(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before a response: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .to_ascii_lowercase()
                .lines()
                .find_map(|l| l.strip_prefix("content-length: ")?.parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
    }
}

/// Sends `request` on `s` and reads one response.
async fn exchange(s: &mut TcpStream, request: &[u8]) -> String {
    s.write_all(request).await.unwrap();
    read_response(s).await
}

async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(limit, s.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn idle_keep_alive_connections_get_idle_timeout_and_heads_header_read_timeout() {
    let up = Upstream::start().await;
    // idle_timeout 4 s: 3 s for the test to come back to the connection between the two
    // timeouts (the one stretch of wall-clock time this test needs).
    let gw = Gateway::start(
        &TIMEOUTS.replace("idle_timeout = \"2s\"", "idle_timeout = \"4s\""),
        &up.url(),
    )
    .await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    // With an old client's extra CRLF after the body, which must not start a head.
    let post = b"POST /one HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok\r\n";
    assert_eq!(statuses(&exchange(&mut s, post).await), vec![200]);
    // Idle longer than header_read_timeout, shorter than idle_timeout: still open. A head
    // begun on another connection from now on is cut at header_read_timeout: once it is, this
    // one has been idle that long. (Were header_read_timeout not 1 s but longer than
    // idle_timeout, this connection would be closed first.)
    let mut begun = TcpStream::connect(gw.addr).await.unwrap();
    begun.write_all(b"GET /begun HTTP/1.1\r\n").await.unwrap();
    assert!(
        closed_within(&mut begun, PATIENCE).await,
        "a begun head kept open"
    );
    // Before the request: the gateway's idle clock for the connection starts after it.
    let started = Instant::now();
    assert_eq!(
        statuses(&exchange(&mut s, b"GET /two HTTP/1.1\r\nHost: a\r\n\r\n").await),
        vec![200]
    );
    // Idle past idle_timeout: closed (and not before).
    assert!(
        closed_within(&mut s, PATIENCE).await,
        "idle connection kept open"
    );
    let idle = started.elapsed();
    assert!(idle >= Duration::from_secs(4), "closed after {idle:?}");
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn a_head_that_has_begun_gets_header_read_timeout_however_it_trickles() {
    let up = Upstream::start().await;
    // idle_timeout far past PATIENCE: only header_read_timeout can end the connection below.
    let gw = Gateway::start(
        &TIMEOUTS.replace("idle_timeout = \"2s\"", "idle_timeout = \"300s\""),
        &up.url(),
    )
    .await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /three HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    read_response(&mut s).await;
    s.write_all(b"GET /four HTTP/1.1\r\n").await.unwrap();
    // A header line every 100 ms, for as long as the connection takes them: it must be closed
    // while they still come (a timer that each byte put off would never fire).
    within("the trickling head cut off", async {
        while s.write_all(b"X: y\r\n").await.is_ok()
            && !closed_within(&mut s, Duration::from_millis(100)).await
        {}
    })
    .await;
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn a_drain_closes_idle_keep_alive_connections_at_once() {
    let up = Upstream::start().await;
    // Neither idle_timeout nor drain_timeout can close the connection within PATIENCE: if it
    // closes, the drain closed it.
    let gw = Gateway::start(
        &TIMEOUTS
            .replace("idle_timeout = \"2s\"", "idle_timeout = \"300s\"")
            .replace("drain_timeout = \"10s\"", "drain_timeout = \"300s\""),
        &up.url(),
    )
    .await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    assert_eq!(
        statuses(&exchange(&mut s, b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n").await),
        vec![200]
    );
    let stopping = tokio::spawn(gw.stop());
    assert!(
        closed_within(&mut s, PATIENCE).await,
        "the drain left an idle connection open"
    );
    within(
        "the end of the drain: it waited for an idle connection",
        stopping,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_head_split_anywhere_is_read_and_empty_lines_are_bounded() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    // Split between the last CR and LF (and a leading empty line, which is tolerated).
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"\r\nGET /public/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r")
        .await
        .unwrap();
    // The gateway has taken the first part before the rest is sent.
    until("the gateway to read the split head's first part", || {
        unread_by_peer(&s) == Some(0)
    })
    .await;
    // Meanwhile the gateway serves others (a connection spinning on its half head would
    // starve this single-threaded test runtime).
    let out = raw(
        gw.addr,
        b"GET /public/y HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&out), vec![200], "{out}");
    s.write_all(b"\n").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert_eq!(statuses(&out), vec![200], "{out}");
    // A flood of empty lines is not a request, whether it comes alone or after a request in
    // the same write (8 are tolerated).
    let out = raw(gw.addr, "\r\n".repeat(100).as_bytes()).await;
    assert_eq!(statuses(&out), vec![400], "{out}");
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n");
    let out = raw(
        gw.addr,
        format!(
            "{}{}{}",
            get("/public/z"),
            "\r\n".repeat(20),
            get("/public/flooded")
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(statuses(&out), vec![200, 400], "{out}");
    let out = raw(
        gw.addr,
        format!(
            "{}{}{}",
            get("/public/w"),
            "\r\n".repeat(8),
            get("/public/eight")
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(statuses(&out), vec![200, 200], "{out}");
    let uris: Vec<String> = up.seen().iter().map(|s| s.uri.clone()).collect();
    assert_eq!(
        uris,
        vec![
            "/public/y",
            "/public/x",
            "/public/z",
            "/public/w",
            "/public/eight"
        ]
    );
}

#[tokio::test]
async fn an_upstream_that_answered_before_reading_the_body_is_not_reused() {
    // Answers each request as soon as its head is in, keep-alive, and records what else
    // arrives on that connection: the body it never read must not be followed by a request.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let later: Log = Arc::default();
    let seen = later.clone();
    // Connections accepted, and those whose handling is over (recorded or not).
    let (accepted, over) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (acc, done) = (accepted.clone(), over.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            acc.fetch_add(1, Ordering::SeqCst);
            let (seen, done) = (seen.clone(), done.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                        _ => {
                            done.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
                // What else comes on the connection until it closes, or for 2 s.
                let mut rest = Vec::new();
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut rest)).await;
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&rest).into_owned());
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    let gw = Gateway::start(CONFIG, &format!("http://{addr}")).await;
    let smuggled = "GET /admin HTTP/1.1\r\nHost: a\r\nX-Auth-User: admin\r\n\r\n";
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let head = authorized(
        "/upload",
        &format!("Content-Length: {}\r\n", smuggled.len()),
    )
    .replace("GET", "POST");
    s.write_all(head.as_bytes()).await.unwrap();
    // The answer reaches the client while the body is still to come: the gateway has it, and
    // knows the upstream answered before the whole body was sent.
    let mut out = read_head(&mut s).await;
    // The gateway may have closed the connection by now.
    let _ = s.write_all(smuggled.as_bytes()).await;
    let mut rest = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_string(&mut rest)).await;
    out.push_str(&rest);
    assert_eq!(statuses(&out), vec![200], "{out}");
    // The next request must go over another connection.
    let out = raw(
        gw.addr,
        authorized("/next", "Connection: close\r\n").as_bytes(),
    )
    .await;
    assert_eq!(statuses(&out), vec![200], "{out}");
    // Every upstream connection has recorded what followed its answer.
    until("the upstream's records", || {
        over.load(Ordering::SeqCst) == accepted.load(Ordering::SeqCst)
    })
    .await;
    for after in later.lock().unwrap().iter() {
        assert!(
            !after.contains("GET /next"),
            "a request followed an unread body: {after:?}"
        );
    }
}

#[tokio::test]
async fn an_upload_the_upstream_reads_slowly_is_not_timed_out_while_it_moves() {
    // The upstream takes 8 MB/s with a small receive buffer: 16 MB keep the gateway's writes
    // blocked for well over upstream_timeout (1 s), but the upstream keeps taking bytes.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(16).unwrap();
    socket.set_nonblocking(true).unwrap();
    let l = TcpListener::from_std(socket.into()).unwrap();
    let addr = l.local_addr().unwrap();
    const SIZE: usize = 16 * 1024 * 1024;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let (mut total, started) = (0, Instant::now());
                // The head, then the body, at 8 MB/s.
                while total < SIZE {
                    match s.read(&mut buf).await {
                        Ok(n) if n > 0 => total += n,
                        _ => return,
                    }
                    let due = Duration::from_secs_f64(total as f64 / 8e6);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
            });
        }
    });
    let gw = Gateway::start(CONFIG, &format!("http://{addr}")).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let head = authorized(
        "/upload",
        &format!("Content-Length: {SIZE}\r\nConnection: close\r\n"),
    )
    .replace("GET", "POST");
    let writer = tokio::spawn(async move {
        s.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![b'x'; 1024 * 1024];
        for _ in 0..SIZE / chunk.len() {
            if s.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        out
    });
    let out = writer.await.unwrap();
    assert_eq!(statuses(&out), vec![200], "{}", &out[..out.len().min(300)]);
}

#[tokio::test]
async fn the_gateways_own_answers_to_head_have_no_body() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let out = raw(
        gw.addr,
        b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\nGET /public/y HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&out), vec![401, 200], "{out}");
    let (first, _) = out.split_once("HTTP/1.1 200").unwrap();
    assert!(
        first.ends_with("\r\n\r\n"),
        "a body after the head of a HEAD answer: {first}"
    );
    assert!(
        first.to_ascii_lowercase().contains("content-length: "),
        "{first}"
    );
}

#[tokio::test]
async fn empty_bodies_and_missing_hosts_still_reach_the_upstream_well_formed() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let out = raw(
        gw.addr,
        b"POST /public/a HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\nPUT /public/b HTTP/1.1\r\nHost: a\r\n\r\nGET /public/c HTTP/1.0\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&out), vec![200, 200, 200], "{out}");
    let seen = up.seen();
    assert_eq!(seen[0].all("content-length"), vec!["0"]);
    assert_eq!(seen[1].all("content-length"), vec!["0"]);
    // HTTP/1.0 without Host: the upstream (HTTP/1.1) gets its own authority, and no
    // X-Forwarded-Host, since the client named none.
    assert_eq!(seen[2].all("host"), vec![up.addr.to_string()]);
    assert!(seen[2].all("x-forwarded-host").is_empty());
}

#[tokio::test]
async fn a_reload_applies_to_the_next_request_of_an_idle_keep_alive_connection() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let t = token("alice");
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let get =
        |path: &str| format!("GET {path} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\n\r\n");
    s.write_all(get("/before").as_bytes()).await.unwrap();
    assert_eq!(statuses(&read_response(&mut s).await), vec![200]);
    // While the connection waits for its next request: a new key set without the key that
    // signed `t` (a leaked key rotated out), and a renamed identity header.
    let config = jwtgate::Config::from_toml(
        &CONFIG
            .replace("{upstream}", &up.url())
            .replace("[auth]", "[auth]\nuser_header = \"X-User\""),
    )
    .unwrap();
    let keys = jwtgate::Keys::from_secrets(OLD_KEY, None);
    gw.gateway
        .swap(jwtgate::Runtime::build(config, &keys, Some(&gw.gateway.current())).unwrap());
    s.write_all(get("/after").as_bytes()).await.unwrap();
    let out = read_response(&mut s).await;
    assert_eq!(statuses(&out), vec![401], "the old key still passed: {out}");
    // And a public request on the same connection is cleaned by the new header rules.
    let spoof = "GET /public/x HTTP/1.1\r\nHost: a\r\nX-User: admin\r\n\r\n";
    s.write_all(spoof.as_bytes()).await.unwrap();
    assert_eq!(statuses(&read_response(&mut s).await), vec![200]);
    let seen = up.seen();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert!(
        seen[1].all("x-user").is_empty(),
        "a spoofed X-User reached the upstream"
    );
}
