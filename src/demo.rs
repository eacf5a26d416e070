//! `jwtgate demo`: the one-command tour. Starts a built-in echo upstream and the gateway in front
//! of it, both on loopback, with a freshly generated key, and prints ready `curl` lines.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::auth::keys::{self, Keys};
use crate::config::Config;
use crate::http::body::Body;

/// The demo's configuration; `{upstream}` and `{listen}` are filled in at start.
const DEMO_CONFIG: &str = r#"
[server]
listen = "{listen}"

[auth]
algorithms = ["HS256"]
user_claim = "sub"
user_header = "X-Auth-User"

[[route]]
path = "/"
upstream = "{upstream}"

[[route]]
path = "/public"
upstream = "{upstream}"
auth = "public"
"#;

/// Runs the demo until `shutdown`. `listen` is tried first; if it is taken, any free loopback
/// port is used instead.
pub async fn run(listen: SocketAddr, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
    let echo = TcpListener::bind("127.0.0.1:0").await?;
    let echo_addr = echo.local_addr()?;
    tokio::spawn(serve_echo(echo));

    let listener = match TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(_) => TcpListener::bind((listen.ip(), 0)).await?,
    };
    let addr = listener.local_addr()?;
    let toml = DEMO_CONFIG
        .replace("{listen}", &addr.to_string())
        .replace("{upstream}", &format!("http://{echo_addr}"));
    let config = Config::from_toml(&toml).map_err(std::io::Error::other)?;
    let secret = keys::generate();
    let keys = Keys::from_secrets(&secret, None);
    let token = mint(&secret, "demo", Duration::from_secs(30 * 60))?;

    println!("jwtgate demo: gateway http://{addr}  ->  echo upstream http://{echo_addr}");
    println!("A fresh random key signs and verifies; it lives only in this process.\n");
    println!("With a token for user \"demo\" (valid 30 minutes):");
    println!("  curl -s -H 'Authorization: Bearer {token}' http://{addr}/hello\n");
    println!("Without a token (401, never reaches the upstream):");
    println!("  curl -si http://{addr}/hello\n");
    println!("The upstream echoes what it received: with the token it saw X-Auth-User: demo,");
    println!("written by the gateway (a client-sent X-Auth-User is always removed). Ctrl-C stops.");

    let runtime = crate::Runtime::build(config, &keys, None).map_err(std::io::Error::other)?;
    crate::run(listener, runtime, shutdown).await
}

fn mint(secret: &str, sub: &str, ttl: Duration) -> std::io::Result<String> {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(std::io::Error::other)?
        + ttl;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({ "sub": sub, "exp": exp.as_secs() }),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(std::io::Error::other)
}

/// The echo upstream: answers every request with JSON describing what it received (the
/// `Authorization` value redacted).
async fn serve_echo(listener: TcpListener) {
    let builder = auto::Builder::new(TokioExecutor::new());
    while let Ok((stream, _)) = listener.accept().await {
        let conn = builder
            .serve_connection(TokioIo::new(stream), service_fn(echo))
            .into_owned();
        tokio::spawn(conn);
    }
}

async fn echo(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            let v = if k == AUTHORIZATION {
                "<redacted>".to_owned()
            } else {
                String::from_utf8_lossy(v.as_bytes()).into_owned()
            };
            (k.as_str().to_owned(), v.into())
        })
        .collect();
    let body = serde_json::json!({
        "upstream": "jwtgate demo echo",
        "method": req.method().as_str(),
        "path": req.uri().to_string(),
        "headers": headers,
    });
    let mut res = Response::new(Body::full(format!("{body:#}\n")));
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(res)
}
