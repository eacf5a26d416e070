//! Test harness: a recording upstream on loopback, the gateway in-process on `127.0.0.1:0`,
//! real tokens, and clients (hyper for HTTP/1 and h2c, raw sockets where a client library would
//! clean the request up). Every server here stops when its handle is dropped.

#![allow(dead_code)]

pub mod process;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const KEY: &str = "test-key-9f8e7d6c5b4a39281706f5e4d3c2b1a0";
pub const OLD_KEY: &str = "old-key-0a1b2c3d4e5f60718293a4b5c6d7e8f9";

/// How long a test waits for something it expects before it fails: only a guard against a
/// hang, far beyond what anything takes on a loaded machine. Tests wait for events, never for
/// a time, and assert no upper bound on one (timings belong in `benches/`); where a test must
/// tell "closed by this timeout" from "closed by that one", the other is configured well past
/// this (and the default idle_timeout, 60 s, is).
pub const PATIENCE: Duration = Duration::from_secs(30);

/// How often a condition is checked while waiting for it.
const POLL: Duration = Duration::from_millis(20);

/// Waits until `done` holds; fails the test, naming `what`, if it does not within
/// [`PATIENCE`].
pub async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let give_up = std::time::Instant::now() + PATIENCE;
    while !done() {
        assert!(std::time::Instant::now() < give_up, "never: {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// [`until`] for a condition that awaits (a request, metrics fetched over HTTP).
pub async fn until_async(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let give_up = std::time::Instant::now() + PATIENCE;
    while !done().await {
        assert!(std::time::Instant::now() < give_up, "never: {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// [`until`] on a plain thread.
pub fn until_blocking(what: &str, mut done: impl FnMut() -> bool) {
    let give_up = std::time::Instant::now() + PATIENCE;
    while !done() {
        assert!(std::time::Instant::now() < give_up, "never: {what}");
        std::thread::sleep(POLL);
    }
}

/// Bytes written on `s` that its peer's program has not read yet: those the peer's kernel has
/// not acknowledged, plus those waiting in the peer socket's receive queue (from
/// `/proc/net/tcp`, for IPv4 connections on this machine). `None` when a socket is not found.
pub fn unread_by_peer(s: &TcpStream) -> Option<u64> {
    fn hex(addr: SocketAddr) -> String {
        let std::net::IpAddr::V4(ip) = addr.ip() else {
            panic!("not IPv4: {addr}");
        };
        format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(ip.octets()),
            addr.port()
        )
    }
    // tx_queue (unacknowledged) or rx_queue (unread) of the socket from `local` to `remote`.
    let queue = |local: SocketAddr, remote: SocketAddr, rx: bool| -> Option<u64> {
        let (local, remote) = (hex(local), hex(remote));
        let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
        table.lines().skip(1).find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.get(1) != Some(&local.as_str()) || f.get(2) != Some(&remote.as_str()) {
                return None;
            }
            let (tx, rx_queue) = f.get(4)?.split_once(':')?;
            u64::from_str_radix(if rx { rx_queue } else { tx }, 16).ok()
        })
    };
    let (me, peer) = (s.local_addr().ok()?, s.peer_addr().ok()?);
    // First what has not reached the peer; only once all has is its receive queue telling.
    let unacked = queue(me, peer, false)?;
    if unacked > 0 {
        return Some(unacked);
    }
    queue(peer, me, true)
}

/// `f`'s output; fails the test, naming `what`, if it does not come within [`PATIENCE`].
pub async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(PATIENCE, f)
        .await
        .unwrap_or_else(|_| panic!("never: {what}"))
}

/// What the upstream received for one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body_len: u64,
    pub body_sha256: String,
    /// False when the body broke off or was malformed.
    pub body_ok: bool,
}

impl Seen {
    /// Every value of `name`, as strings.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }

    /// Header names, lower case, whose `-`/`_`-folded form equals `name`'s.
    pub fn folded(&self, name: &str) -> Vec<String> {
        let fold = |s: &str| s.to_ascii_lowercase().replace('_', "-");
        self.headers
            .keys()
            .filter(|k| fold(k.as_str()) == fold(name))
            .map(|k| k.as_str().to_owned())
            .collect()
    }
}

/// A recording upstream. Paths:
/// * `/__slow`: answers after 3 s (counted in `slow_done` when the 3 s are over);
/// * `/__held`: answers once the test calls [`Upstream::release`];
/// * `/__echo`: streams the request body back;
/// * `/__big/N`: streams N MiB;
/// * `/__ws`: accepts an upgrade and echoes bytes;
/// * anything else: 200 `ok` with `x-upstream-saw-user` echoing `X-Auth-User` (and CORS
///   fields of its own when the request has `x-upstream-cors`).
pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// TCP connections accepted so far.
    pub accepted: Arc<std::sync::atomic::AtomicUsize>,
    /// `/__slow` requests whose 3 s wait is over (their answer goes out next): a test reads it
    /// to tell whether something came before the slow upstream had finished.
    pub slow_done: Arc<std::sync::atomic::AtomicUsize>,
    /// Turns true when `/__held` requests are to be answered.
    release: Arc<tokio::sync::watch::Sender<bool>>,
    task: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let acc = accepted.clone();
        let slow_done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let release = Arc::new(tokio::sync::watch::channel(false).0);
        let (done, rel) = (slow_done.clone(), release.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                acc.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (s, done, rel) = (s.clone(), done.clone(), rel.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        upstream_handle(req, s.clone(), done.clone(), rel.subscribe())
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            seen,
            accepted,
            slow_done,
            release,
            task,
        }
    }

    /// `/__slow` requests answered (or about to be) so far.
    pub fn slow_done(&self) -> usize {
        self.slow_done.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Lets every `/__held` request, now and later, be answered.
    pub fn release(&self) {
        self.release.send_replace(true);
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// The only request seen; panics unless exactly one arrived.
    pub fn one(&self) -> Seen {
        let seen = self.seen();
        assert_eq!(
            seen.len(),
            1,
            "upstream saw {} requests: {seen:#?}",
            seen.len()
        );
        seen.into_iter().next().unwrap()
    }

    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }
}

type UpBody = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

async fn upstream_handle(
    mut req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
    slow_done: Arc<std::sync::atomic::AtomicUsize>,
    mut released: tokio::sync::watch::Receiver<bool>,
) -> Result<Response<UpBody>, Infallible> {
    let path = req.uri().path().to_owned();
    let record = |body_len, body_sha256| Seen {
        method: req.method().to_string(),
        uri: req.uri().to_string(),
        version: req.version(),
        headers: req.headers().clone(),
        body_len,
        body_sha256,
        body_ok: true,
    };
    if path == "/__echo" {
        seen.lock().unwrap().push(record(0, String::new()));
        let body = req.into_body().boxed();
        return Ok(Response::new(body));
    }
    if path == "/__ws" {
        seen.lock().unwrap().push(record(0, String::new()));
        // A WebSocket server's answer (RFC 6455 §4.2.2): the accept value for the client's key.
        let accept = req
            .headers()
            .get("sec-websocket-key")
            .map(|k| websocket_accept(k.as_bytes()))
            .unwrap_or_default();
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let res = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", accept)
            .body(empty())
            .unwrap();
        return Ok(res);
    }
    let user = req.headers().get("x-auth-user").cloned();
    let cors = req.headers().contains_key("x-upstream-cors");
    let (parts, mut body) = req.into_parts();
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    let mut body_ok = true;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    len += d.len() as u64;
                    hasher.update(d);
                }
            }
            Err(_) => {
                body_ok = false;
                break;
            }
        }
    }
    seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        version: parts.version,
        headers: parts.headers.clone(),
        body_len: len,
        body_sha256: hex(&hasher.finalize()),
        body_ok,
    });
    if path == "/__slow" {
        tokio::time::sleep(Duration::from_secs(3)).await;
        slow_done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    if path == "/__held" {
        let _ = released.wait_for(|r| *r).await;
    }
    if let Some(mib) = path.strip_prefix("/__big/") {
        let n: usize = mib.parse().unwrap_or(1);
        return Ok(Response::new(
            Chunks::new(n * 16, 64 * 1024)
                .map_err(|e: Infallible| match e {})
                .boxed(),
        ));
    }
    let mut res = Response::new(
        Full::new(Bytes::from_static(b"ok"))
            .map_err(|e| match e {})
            .boxed(),
    );
    res.headers_mut().insert("x-upstream", "1".parse().unwrap());
    if cors {
        // An upstream with CORS of its own (a gateway that answers CORS must replace it).
        for (name, value) in [
            ("access-control-allow-origin", "*"),
            ("access-control-allow-credentials", "true"),
            ("access-control-allow-methods", "DELETE"),
        ] {
            res.headers_mut().insert(name, value.parse().unwrap());
        }
    }
    if let Some(u) = user {
        res.headers_mut().insert("x-upstream-saw-user", u);
    }
    Ok(res)
}

fn empty() -> UpBody {
    Full::new(Bytes::new()).map_err(|e| match e {}).boxed()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A generated body: `n` chunks of `size` bytes with a pattern; streams without buffering.
pub struct Chunks {
    left: usize,
    chunk: Bytes,
}

impl Chunks {
    pub fn new(n: usize, size: usize) -> Chunks {
        let chunk: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        Chunks {
            left: n,
            chunk: Bytes::from(chunk),
        }
    }

    /// SHA-256 of the whole body these parameters produce.
    pub fn sha256(n: usize, size: usize) -> String {
        let c = Chunks::new(n, size);
        let mut h = Sha256::new();
        for _ in 0..n {
            h.update(&c.chunk);
        }
        hex(&h.finalize())
    }
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        self.left -= 1;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.clone()))))
    }
}

/// The gateway running in-process.
pub struct Gateway {
    pub addr: SocketAddr,
    /// The forward-auth check listener, when started with one.
    pub checks: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    pub gateway: Arc<jwtgate::Gateway>,
}

impl Gateway {
    /// Starts the gateway with `toml`, where `{upstream}` stands for `upstream`'s URL.
    pub async fn start(toml: &str, upstream: &str) -> Gateway {
        Gateway::start_with_keys(
            toml,
            upstream,
            jwtgate::Keys::from_secrets(KEY, Some(OLD_KEY)),
        )
        .await
    }

    pub async fn start_with_keys(toml: &str, upstream: &str, keys: jwtgate::Keys) -> Gateway {
        // JWTGATE_TEST_LOG=jwtgate=debug: the gateway's log lines on the test's output.
        if let Ok(filter) = std::env::var("JWTGATE_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
        let toml = toml.replace("{upstream}", upstream);
        let config = jwtgate::Config::from_toml(&toml).unwrap_or_else(|e| panic!("{e}"));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let gateway = Arc::new(jwtgate::Gateway::new(
            jwtgate::Runtime::build(config, &keys, None).unwrap_or_else(|e| panic!("{e}")),
        ));
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(jwtgate::server::serve(
            listener,
            gateway.clone(),
            async move {
                let _ = rx.await;
            },
        ));
        Gateway {
            addr,
            checks: None,
            stop: Some(tx),
            task: Some(task),
            gateway,
        }
    }

    /// Starts the gateway with `toml` (where `{upstream}` stands for `upstream`'s URL) on an
    /// inline listener and a forward-auth check listener (`checks`).
    pub async fn start_checking(toml: &str, upstream: &str) -> Gateway {
        let toml = toml.replace("{upstream}", upstream);
        let config = jwtgate::Config::from_toml(&toml).unwrap_or_else(|e| panic!("{e}"));
        let keys = jwtgate::Keys::from_secrets(KEY, Some(OLD_KEY));
        let inline = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let checks = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr, checks_addr) = (inline.local_addr().unwrap(), checks.local_addr().unwrap());
        let gateway = Arc::new(jwtgate::Gateway::new(
            jwtgate::Runtime::build(config, &keys, None).unwrap_or_else(|e| panic!("{e}")),
        ));
        let (tx, rx) = oneshot::channel();
        let listeners = jwtgate::server::Listeners {
            inline: Some(inline),
            checks: Some(checks),
        };
        let task = tokio::spawn(jwtgate::server::serve_all(
            listeners,
            gateway.clone(),
            async move {
                let _ = rx.await;
            },
        ));
        Gateway {
            addr,
            checks: Some(checks_addr),
            stop: Some(tx),
            task: Some(task),
            gateway,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Stops accepting and waits for the drain to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// The usual config: `/` required, `/public` public, `/opt` optional, `/admin` requires
/// role=admin.
pub const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
upstream_timeout = "1s"
connect_timeout = "500ms"
drain_timeout = "5s"

[auth]
leeway = "0s"
claim_headers = { role = "X-Auth-Role" }

[[route]]
path = "/"
upstream = "{upstream}"

[[route]]
path = "/public"
upstream = "{upstream}"
auth = "public"

[[route]]
path = "/opt"
upstream = "{upstream}"
auth = "optional"

[[route]]
path = "/admin"
upstream = "{upstream}"
require = { role = "admin" }
"#;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token signed with `key`.
pub fn token_with(claims: serde_json::Value, alg: jsonwebtoken::Algorithm, key: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

/// A valid HS256 token for `sub`, 30 minutes, like the auth service issues.
pub fn token(sub: &str) -> String {
    token_with(
        serde_json::json!({"sub": sub, "exp": now() + 1800}),
        jsonwebtoken::Algorithm::HS256,
        KEY,
    )
}

pub fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

/// Signs raw header/claims JSON text with HS256 (for what libraries refuse to build).
pub fn raw_token(header: &str, claims: &str, key: &str) -> String {
    use base64::Engine;
    use hmac::Mac;
    let msg = format!("{}.{}", b64(header), b64(claims));
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(msg.as_bytes());
    format!(
        "{msg}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

/// A response, fully read.
#[derive(Debug)]
pub struct Got {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Got {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }

    /// A JSON error body without its `request_id`, once checked to be the answer's
    /// `X-Request-Id`.
    pub fn error_json(&self) -> serde_json::Value {
        let mut v = self.json();
        let id = v.as_object_mut().and_then(|o| o.remove("request_id"));
        assert_eq!(
            id.as_ref().and_then(|i| i.as_str()),
            self.headers
                .get("x-request-id")
                .and_then(|h| h.to_str().ok()),
            "the body's request_id is the answer's X-Request-Id: {}",
            self.body
        );
        v
    }
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GET `path` with these headers over HTTP/1.1.
pub async fn get(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> Got {
    send(gw, "GET", path, headers, Bytes::new()).await
}

pub async fn send(
    gw: &Gateway,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Got {
    let mut req = Request::builder().method(method).uri(gw.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = client()
        .request(req.body(Full::new(body)).unwrap())
        .await
        .unwrap();
    read(res).await
}

pub async fn read(res: Response<Incoming>) -> Got {
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Got {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A JSON error body without its `request_id` (which differs from request to request), for
/// comparing two answers; any other body as it is.
pub fn without_request_id(body: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(mut fields)) => {
            fields.remove("request_id");
            serde_json::Value::Object(fields).to_string()
        }
        _ => body.to_owned(),
    }
}

pub fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// Sends raw bytes and returns everything the gateway sends back until it closes or goes
/// quiet for 1 s.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    raw_quiet(addr, request, Duration::from_secs(1)).await
}

/// Sends raw bytes; returns what came back and whether the gateway closed the connection
/// (within 3 s).
pub async fn raw_until_closed(addr: SocketAddr, request: &[u8]) -> (String, bool) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// [`raw`] with another quiet time.
pub async fn raw_quiet(addr: SocketAddr, request: &[u8], quiet: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(quiet, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The status codes of every response in a raw HTTP/1 byte stream, in order.
pub fn statuses(raw: &str) -> Vec<u16> {
    raw.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| raw.get(i + 9..i + 12)?.parse().ok())
        .collect()
}

/// A request body fed through a channel, for uploads paced by the test.
pub struct ChannelBody(pub tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2), computed here on its own.
pub fn websocket_accept(key: &[u8]) -> String {
    use base64::Engine;
    use sha1::Digest;
    let mut sha = sha1::Sha1::new();
    sha.update(key);
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Reads a response head from `s`, byte by byte (nothing after it is consumed), within 3 s.
pub async fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut b))
            .await
            .unwrap()
            .unwrap();
        if n == 0 {
            break;
        }
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A JWKS endpoint on loopback: answers every request with the current `body` (and
/// `Cache-Control: max-age=60`), closing the connection after each; counts the requests.
pub struct JwksServer {
    pub addr: SocketAddr,
    pub body: Arc<Mutex<String>>,
    pub requests: Arc<std::sync::atomic::AtomicUsize>,
}

impl JwksServer {
    pub async fn start(body: String) -> JwksServer {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = JwksServer {
            addr: l.local_addr().unwrap(),
            body: Arc::new(Mutex::new(body)),
            requests: Arc::default(),
        };
        let (body, requests) = (server.body.clone(), server.requests.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let (body, requests) = (body.clone(), requests.clone());
                tokio::spawn(async move {
                    if read_request_head(&mut s).await.is_none() {
                        return;
                    }
                    requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let body = body.lock().unwrap().clone();
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: max-age=60\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(response.as_bytes()).await;
                });
            }
        });
        server
    }

    pub fn url(&self) -> String {
        format!("http://{}/certs", self.addr)
    }

    pub fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The P-256 test key (tests/providers/p256.*.pem) as a JWK with `kid`.
pub fn p256_jwk(kid: &str) -> serde_json::Value {
    use base64::Engine;
    let pem = include_str!("../providers/p256.pub.pem");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let spki = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    // An uncompressed point ends the SPKI: 04 || x || y.
    let point = &spki[spki.len() - 65..];
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    serde_json::json!({"kty": "EC", "crv": "P-256", "kid": kid,
        "x": b64(&point[1..33]), "y": b64(&point[33..])})
}

/// The Ed25519 key of RFC 8037 §A.1 as a JWK with `kid`.
pub fn ed25519_jwk(kid: &str) -> serde_json::Value {
    serde_json::json!({"kty": "OKP", "crv": "Ed25519", "kid": kid,
        "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"})
}

/// A token for `claims` signed with a test key: `ES256` (the P-256 key) or `EdDSA` (the RFC
/// 8037 key), with `kid`.
pub fn signed(alg: jsonwebtoken::Algorithm, kid: &str, claims: serde_json::Value) -> String {
    use base64::Engine;
    let key = match alg {
        jsonwebtoken::Algorithm::ES256 => {
            jsonwebtoken::EncodingKey::from_ec_pem(include_bytes!("../providers/p256.key.pem"))
                .unwrap()
        }
        jsonwebtoken::Algorithm::EdDSA => {
            // PKCS#8 of the RFC 8037 §A.1 seed.
            let seed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
                .unwrap();
            let mut der = vec![
                0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
                0x04, 0x20,
            ];
            der.extend_from_slice(&seed);
            jsonwebtoken::EncodingKey::from_ed_der(&der)
        }
        other => panic!("no test key for {other:?}"),
    };
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

/// Runs `$PYTHON` (else `python3`) with `args` and `env`, `stdin` on its standard input, and
/// returns its standard output; fails the test with its standard error (`needs` names the
/// packages it wants) when it does not exit 0.
pub fn python(args: &[&str], env: &[(&str, &str)], stdin: &str, needs: &str) -> String {
    use std::io::Write;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = std::process::Command::new(&python)
        .args(args)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}; install python3"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{python} {args:?} failed (is {needs} installed?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Reads a request head (up to its blank line) from `s`; `None` when the peer closes first.
pub async fn read_request_head(s: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}
