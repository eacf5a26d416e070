//! The real proxies asking jwtgate: Debian's nginx (`auth_request`) and Caddy (`forward_auth`),
//! each started by the test with the example config of `config/forward-auth/` (its addresses
//! replaced by loopback ports), in front of a recording upstream, asking a gateway that runs
//! `config/forward-auth/jwtgate.toml` (with the routes also given an upstream, so that the same
//! gateway answers the same requests inline for comparison). `.ci/test` installs nginx and
//! caddy; without them these tests fail, naming what is missing.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::*;
use http::HeaderMap;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config/forward-auth")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `config/forward-auth/jwtgate.toml` for `proxy`, each route also given `upstream`.
fn jwtgate_toml(proxy: &str) -> String {
    let toml = example("jwtgate.toml")
        .replace("proxy = \"nginx\"", &format!("proxy = \"{proxy}\""))
        .replace("listen = \"127.0.0.1:8081\"", "listen = \"127.0.0.1:0\"")
        .replace("admin_listen = \"127.0.0.1:9901\"", "");
    assert!(toml.contains(&format!("proxy = \"{proxy}\"")));
    let mut out = String::new();
    for line in toml.lines() {
        out.push_str(line);
        out.push('\n');
        if line.starts_with("path = ") {
            out.push_str("upstream = \"{upstream}\"\n");
        }
    }
    out
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The example `name` with its addresses replaced.
fn proxy_config(name: &str, proxy: SocketAddr, checks: SocketAddr, app: SocketAddr) -> String {
    let text = example(name)
        .replace("127.0.0.1:8080", &proxy.to_string())
        .replace("http://:8080", &format!("http://:{}", proxy.port()))
        .replace("127.0.0.1:8081", &checks.to_string())
        .replace("127.0.0.1:8000", &app.to_string());
    assert!(
        text.contains(&checks.to_string()),
        "{name} names no check address"
    );
    text
}

/// A proxy process, stopped when dropped.
struct Proxy {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary(name: &str, candidates: &[&str]) -> PathBuf {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} is not installed ({candidates:?}); .ci/test installs it"))
}

async fn started(mut child: Child, addr: SocketAddr, dir: tempfile::TempDir, name: &str) -> Proxy {
    for _ in 0..200 {
        if TcpStream::connect(addr).await.is_ok() {
            return Proxy {
                child,
                addr,
                _dir: dir,
            };
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("{name} exited ({status}): {err}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("{name} never listened on {addr}");
}

async fn nginx(checks: SocketAddr, app: SocketAddr) -> Proxy {
    let bin = binary("nginx", &["/usr/sbin/nginx", "/usr/bin/nginx"]);
    let dir = tempfile::tempdir().unwrap();
    // Started as root, nginx's workers run as `nobody`: they must reach the prefix.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let addr = free_port();
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, proxy_config("nginx.conf", addr, checks, app)).unwrap();
    let child = Command::new(bin)
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf)
        .args(["-e", "stderr", "-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    started(child, addr, dir, "nginx").await
}

async fn caddy(checks: SocketAddr, app: SocketAddr) -> Proxy {
    let bin = binary("caddy", &["/usr/bin/caddy", "/usr/local/bin/caddy"]);
    let dir = tempfile::tempdir().unwrap();
    let addr = free_port();
    let conf = dir.path().join("Caddyfile");
    std::fs::write(&conf, proxy_config("Caddyfile", addr, checks, app)).unwrap();
    let child = Command::new(bin)
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&conf)
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    started(child, addr, dir, "caddy").await
}

/// A raw HTTP/1.1 request (`target` byte for byte): status, fields, body.
async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    fields: &[(&str, &str)],
) -> (u16, HeaderMap, String) {
    let mut head =
        format!("{method} {target} HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n");
    for (n, v) in fields {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    within("the answer", s.read_to_end(&mut out)).await.unwrap();
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut res = httparse::Response::new(&mut slots);
    let at = match res.parse(&out) {
        Ok(httparse::Status::Complete(at)) => at,
        _ => panic!("no response: {}", String::from_utf8_lossy(&out)),
    };
    let mut map = HeaderMap::new();
    for h in res.headers.iter() {
        map.append(
            http::HeaderName::from_bytes(h.name.as_bytes()).unwrap(),
            http::HeaderValue::from_bytes(h.value).unwrap(),
        );
    }
    (
        res.code.unwrap(),
        map,
        String::from_utf8_lossy(&out[at..]).into_owned(),
    )
}

/// The identity headers an upstream request carried, in any spelling.
fn identity(seen: &Seen) -> Vec<(String, Vec<String>)> {
    ["x-auth-user", "x-auth-role"]
        .iter()
        .map(|n| {
            let mut values = seen.all(n);
            for folded in seen.folded(n) {
                if folded != *n {
                    values.push(format!("{folded}: {:?}", seen.all(&folded)));
                }
            }
            (n.to_string(), values)
        })
        .collect()
}

async fn the_proxy_gives_the_upstream_what_inline_mode_would(proxy_name: &str) {
    let upstream = Upstream::start().await;
    let gw = Gateway::start_checking(&jwtgate_toml(proxy_name), &upstream.url()).await;
    let proxy = match proxy_name {
        "nginx" => nginx(gw.checks.unwrap(), upstream.addr).await,
        _ => caddy(gw.checks.unwrap(), upstream.addr).await,
    };
    let admin = bearer(&token_with(
        json!({"sub": "alice", "role": "admin", "exp": now() + 600}),
        jsonwebtoken::Algorithm::HS256,
        KEY,
    ));
    let user = bearer(&token("bob"));
    let bad = bearer(&token_with(
        json!({"sub": "bob", "exp": now() + 600}),
        jsonwebtoken::Algorithm::HS256,
        "another-key-0123456789abcdef0123456789abcdef",
    ));

    // Allowed requests: the upstream sees exactly the identity inline mode injects, whatever
    // the client forged (any spelling).
    let forged = [
        ("X-Auth-User", "mallory"),
        ("X-Auth-Role", "admin"),
        ("X_Auth_User", "mallory"),
    ];
    for (target, auth) in [
        ("/admin/x?a=1", Some(admin.as_str())),
        ("/orders", Some(user.as_str())),
        ("/public/p", None),
        ("/public/p", Some(user.as_str())),
    ] {
        for forge in [false, true] {
            let mut fields: Vec<(&str, &str)> =
                auth.map(|a| ("Authorization", a)).into_iter().collect();
            if forge {
                // The `_` spelling would get the check refused (400), tested below.
                fields.extend(forged.iter().take(2));
            }
            upstream.clear();
            let (status, _, body) = request(gw.addr, "GET", target, &fields).await;
            assert_eq!(status, 200, "inline {target}: {body}");
            let inline_identity = identity(&upstream.one());
            upstream.clear();
            let (status, _, body) = request(proxy.addr, "GET", target, &fields).await;
            assert_eq!(status, 200, "{proxy_name} {target} forged={forge}: {body}");
            let seen = upstream.one();
            assert_eq!(
                identity(&seen),
                inline_identity,
                "{proxy_name} {target} forged={forge}"
            );
            assert_eq!(
                seen.uri, target,
                "{proxy_name}: the upstream gets the target checked"
            );
        }
    }

    // Refusals reach the client as 401 / 403 with the challenge; nothing reaches the upstream.
    upstream.clear();
    for (target, auth, status, challenge) in [
        ("/orders", None, 401, "Bearer realm=\"jwtgate\""),
        (
            "/orders",
            Some(bad.as_str()),
            401,
            "Bearer error=\"invalid_token\"",
        ),
        (
            "/admin",
            Some(user.as_str()),
            403,
            "Bearer error=\"insufficient_scope\"",
        ),
    ] {
        let fields: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        let (got, headers, body) = request(proxy.addr, "GET", target, &fields).await;
        assert_eq!(got, status, "{proxy_name} {target}: {body}");
        let www = headers
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        assert!(www.starts_with(challenge), "{proxy_name} {target}: {www:?}");
    }
    assert_eq!(upstream.count(), 0);

    // A client's own naming headers and `_` identity spellings never get a request through.
    for spoof in [
        ("X-Original-URL", "http://app.example/public"),
        ("X-Original-URI", "/public"),
        ("X-Forwarded-Uri", "/public"),
        ("X-Forwarded-Prefix", "/public"),
        ("X-Original-Method", "OPTIONS"),
    ] {
        let (status, _, _) = request(proxy.addr, "GET", "/admin", &[spoof]).await;
        assert!(
            !(200..300).contains(&status),
            "{proxy_name} {spoof:?}: {status}"
        );
    }
    assert_eq!(upstream.count(), 0, "{proxy_name}: a spoof got through");
    let (status, _, _) = request(proxy.addr, "GET", "/public", &[("X_Auth_User", "admin")]).await;
    if status == 200 {
        assert!(
            upstream.one().folded("x-auth-user").is_empty(),
            "{proxy_name}"
        );
    }
    upstream.clear();

    // Path tricks: what reaches the upstream through the proxy, inline mode lets through too
    // and on the same route (a token without the admin role: `/admin` is its 403).
    let fields = [("Authorization", user.as_str())];
    for target in [
        "/admin/../public",
        "/admin/%2e%2e/public",
        "/admin/.%2e/public/x",
        "/admin//../public",
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public%2f..%2fadmin",
        "/public/..%2fadmin",
        "/public;/../admin",
        "/PUBLIC/x",
        "//public/../admin",
        "/public/./../admin",
        "/%70ublic/x",
        "/public/%2E%2E/admin",
    ] {
        upstream.clear();
        let (proxied, _, _) = request(proxy.addr, "GET", target, &fields).await;
        let reached = upstream.seen();
        upstream.clear();
        let (inline_status, _, _) = request(gw.addr, "GET", target, &fields).await;
        if let Some(seen) = reached.first() {
            // Reached: inline mode forwards it too, and as the same path (the proxy forwards
            // the target as sent, which was checked as such: already in normal form).
            assert_eq!(inline_status, 200, "{proxy_name} {target}: let through");
            assert_eq!(upstream.one().uri, seen.uri, "{proxy_name} {target}");
        }
        if inline_status != 200 {
            assert!(
                reached.is_empty(),
                "{proxy_name} {target}: proxied {proxied}"
            );
        }
    }

    // A gRPC call without a token is refused with a non-2xx, never a gRPC-shaped 200.
    upstream.clear();
    let (status, _, _) = request(
        proxy.addr,
        "POST",
        "/pkg.Svc/Call",
        &[
            ("Content-Type", "application/grpc"),
            ("Content-Length", "0"),
        ],
    )
    .await;
    assert_eq!(status, 401, "{proxy_name}");
    assert_eq!(upstream.count(), 0);
    drop(proxy);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_with_the_example_config() {
    the_proxy_gives_the_upstream_what_inline_mode_would("nginx").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_forward_auth_with_the_example_config() {
    the_proxy_gives_the_upstream_what_inline_mode_would("caddy").await;
}
