//! Protocol upgrades: a route tunnels only the upgrade protocols it allows (`upgrades`, default
//! `["websocket"]`), a request asking for another one is forwarded plain without `Upgrade`,
//! and a `101` opens a tunnel only when it names the protocol offered and, for WebSocket,
//! carries the `Sec-WebSocket-Accept` the client's key calls for; any other `101` is a 502.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ROUTES: &str = r#"
[server]
listen = "127.0.0.1:0"
upstream_timeout = "2s"

[[route]]
path = "/"
upstream = "{upstream}"

[[route]]
path = "/none"
upstream = "{upstream}"
upgrades = []

[[route]]
path = "/foo"
upstream = "{upstream}"
upgrades = ["foo"]
"#;

/// How a scripted upstream answers a request head.
type Answer = fn(&str) -> String;

const KEY_HEADER: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

/// An upstream that answers each request head with what `answer` makes of it, records the head
/// (lower-cased), and after a `101` echoes whatever comes.
async fn upstream(answer: fn(&str) -> String) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match s.read(&mut chunk).await {
                            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                            _ => return,
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
                    buf.drain(..end + 4);
                    log.lock().unwrap().push(head.to_ascii_lowercase());
                    let reply = answer(&head);
                    if s.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                    if reply.starts_with("HTTP/1.1 101") {
                        let _ = s.write_all(&buf).await;
                        while let Ok(n) = s.read(&mut chunk).await {
                            if n == 0 || s.write_all(&chunk[..n]).await.is_err() {
                                return;
                            }
                        }
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// A well-behaved upstream: switches to the protocol offered (WebSocket with the right
/// accept value), otherwise answers 200.
fn switching(head: &str) -> String {
    let field = |name: &str| {
        head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    match field("upgrade").map(|u| u.to_ascii_lowercase()).as_deref() {
        Some("websocket") => {
            let key = field("sec-websocket-key").unwrap_or_default();
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                websocket_accept(key.as_bytes())
            )
        }
        Some(p) if p.starts_with("foo") => {
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n"
                .to_owned()
        }
        _ => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_owned(),
    }
}

async fn send(gw: &Gateway, path: &str, upgrade: &str, extra: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {}\r\nConnection: Upgrade\r\nUpgrade: {upgrade}\r\n{extra}\r\n",
        token("alice")
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let head = read_head(&mut s).await;
    (s, head)
}

async fn echoes(s: &mut TcpStream) -> bool {
    s.write_all(b"through the tunnel").await.unwrap();
    let mut buf = [0u8; 18];
    matches!(
        tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut buf)).await,
        Ok(Ok(_)) if &buf == b"through the tunnel"
    )
}

#[tokio::test]
async fn a_route_tunnels_only_the_upgrades_it_allows() {
    let (addr, seen) = upstream(switching).await;
    let gw = Gateway::start(ROUTES, &format!("http://{addr}")).await;
    let last = || seen.lock().unwrap().last().cloned().unwrap();

    // The default: WebSocket is tunnelled.
    let (mut s, head) = send(&gw, "/ws", "websocket", KEY_HEADER).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    assert!(last().contains("upgrade: websocket\r\n"), "{}", last());
    assert!(echoes(&mut s).await);

    // upgrades = []: forwarded plain, without Upgrade or Connection: upgrade.
    let (_, head) = send(&gw, "/none/ws", "websocket", KEY_HEADER).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!last().contains("upgrade"), "{}", last());

    // A protocol the route does not list: forwarded plain too.
    let (_, head) = send(&gw, "/ws", "foo", "").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!last().contains("upgrade"), "{}", last());

    // A route that lists it tunnels it; of several asked for, only the listed ones are offered.
    let (mut s, head) = send(&gw, "/foo/x", "foo", "").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(echoes(&mut s).await);
    let (_, head) = send(&gw, "/foo/x", "websocket, foo/2", KEY_HEADER).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(last().contains("upgrade: foo/2\r\n"), "{}", last());

    // A request with a body is never upgraded: a tunnel would open before the body was sent.
    let (_, head) = send(
        &gw,
        "/ws",
        "websocket",
        &format!("{KEY_HEADER}Content-Length: 5\r\n\r\nhello"),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!last().contains("upgrade"), "{}", last());

    // h2c is never offered, whatever the route.
    let (_, head) = send(
        &gw,
        "/ws",
        "h2c",
        "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!last().contains("upgrade"), "{}", last());
}

#[tokio::test]
async fn a_101_that_does_not_answer_the_offer_is_a_502_and_never_a_tunnel() {
    let cases: [(Answer, &str, &str); 5] = [
        (
            |_| {
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n".to_owned()
            },
            "websocket",
            "a wrong Sec-WebSocket-Accept",
        ),
        (
            |_| "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n".to_owned(),
            "websocket",
            "no Sec-WebSocket-Accept",
        ),
        (
            |_| {
                format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nSec-WebSocket-Accept: {}\r\n\r\n", websocket_accept(b"dGhlIHNhbXBsZSBub25jZQ=="))
            },
            "websocket",
            "another protocol",
        ),
        (
            |_| {
                format!(
                    "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                    websocket_accept(b"dGhlIHNhbXBsZSBub25jZQ==")
                )
            },
            "websocket",
            "no Upgrade",
        ),
        (
            |_| "HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\n\r\n".to_owned(),
            "foo",
            "a 101 to a request with no upgrade offered (foo is not allowed on /)",
        ),
    ];
    for (answer, asked, name) in cases {
        let (addr, _) = upstream(answer).await;
        let gw = Gateway::start(ROUTES, &format!("http://{addr}")).await;
        let (mut s, head) = send(&gw, "/ws", asked, KEY_HEADER).await;
        assert!(head.starts_with("HTTP/1.1 502"), "{name}: {head}");
        assert_eq!(gw.gateway.open_tunnels(), 0, "{name}");
        // Nothing the client sends now reaches the upstream as tunnel bytes.
        let _ = s.write_all(b"through the tunnel").await;
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_millis(500), s.read_to_end(&mut rest)).await;
        assert!(
            !String::from_utf8_lossy(&rest).contains("through the tunnel"),
            "{name}: the bytes were tunnelled"
        );
    }
}
