//! Forward-auth mode, each dialect asked exactly as its proxy asks (what nginx's
//! `auth_request`, ingress-nginx, Traefik's ForwardAuth, Caddy's `forward_auth` and Envoy's HTTP
//! `ext_authz` send, from their sources: see the README's forward-auth section), against the
//! same gateway's inline listener on the same original requests: the identity a check answers is
//! the one inline mode injects, and every refusal is inline mode's, byte for byte.
//! The real nginx and Caddy are in `tests/forward_auth_proxies.rs`, the gRPC API in
//! `tests/ext_authz_grpc.rs`.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The usual config (`/` required, `/public` public, `/opt` optional, `/admin` requires
/// role=admin) with a check listener for `{proxy}` and Envoy's `{prefix}`; `{trusted}` goes in
/// `[server]`.
fn config() -> String {
    CONFIG.replace(
        "[auth]",
        "{trusted}\n[forward_auth]\nlisten = \"127.0.0.1:0\"\nproxy = \"{proxy}\"\n{prefix}\n\n[auth]",
    )
}

/// A client's header lines.
type Fields<'a> = Vec<(&'a str, &'a str)>;

const DIALECTS: [&str; 5] = ["nginx", "ingress-nginx", "traefik", "caddy", "envoy"];

/// A response read off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    status: u16,
    headers: BTreeMap<String, Vec<String>>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    }
}

/// Sends `head` (a request head without its final empty line, `Connection: close` added) and
/// reads the whole answer.
async fn exchange(addr: SocketAddr, head: &str) -> Answer {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    within("the answer", s.read_to_end(&mut out)).await.unwrap();
    let mut fields = [httparse::EMPTY_HEADER; 64];
    let mut res = httparse::Response::new(&mut fields);
    let at = match res.parse(&out) {
        Ok(httparse::Status::Complete(at)) => at,
        other => panic!("no response ({other:?}): {}", String::from_utf8_lossy(&out)),
    };
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for h in res.headers.iter() {
        headers
            .entry(h.name.to_ascii_lowercase())
            .or_default()
            .push(String::from_utf8_lossy(h.value).into_owned());
    }
    Answer {
        status: res.code.unwrap(),
        headers,
        body: String::from_utf8_lossy(&out[at..]).into_owned(),
    }
}

/// The original request: method, host, target as sent, and the client's own header lines.
struct Original<'a> {
    method: &'a str,
    host: &'a str,
    target: &'a str,
    fields: &'a [(&'a str, &'a str)],
}

impl Original<'_> {
    fn lines(&self) -> String {
        self.fields
            .iter()
            .map(|(n, v)| format!("{n}: {v}\r\n"))
            .collect()
    }
}

/// The request `o` sent to the inline listener.
async fn inline(gw: &Gateway, o: &Original<'_>) -> Answer {
    let head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\n{}",
        o.method,
        o.target,
        o.host,
        o.lines()
    );
    exchange(gw.addr, &head).await
}

/// The check `dialect`'s proxy sends about `o` (from the proxies' sources; see the README).
fn check_head(dialect: &str, checks: SocketAddr, o: &Original<'_>) -> String {
    let client = o.lines();
    match dialect {
        // nginx: a GET subrequest to the auth location with the client's headers, and the
        // example config's proxy_set_header lines.
        "nginx" => format!(
            "GET / HTTP/1.1\r\nHost: jwtgate\r\n{client}X-Original-Method: {}\r\nX-Original-URI: {}\r\nX-Forwarded-Host: {}\r\n",
            o.method, o.target, o.host
        ),
        // ingress-nginx's template: X-Original-URL = $scheme://$http_host$request_uri.
        "ingress-nginx" => format!(
            "GET / HTTP/1.1\r\nHost: jwtgate.auth.svc\r\n{client}X-Original-URL: http://{}{}\r\nX-Original-Method: {}\r\nX-Sent-From: nginx-ingress-controller\r\nX-Real-IP: 10.0.0.9\r\nX-Forwarded-For: 10.0.0.9\r\nX-Auth-Request-Redirect: {}\r\n",
            o.host, o.target, o.method, o.target
        ),
        // Traefik: GET to `address`, every client header, X-Forwarded-* set by Traefik.
        "traefik" => format!(
            "GET / HTTP/1.1\r\nHost: {checks}\r\n{client}X-Forwarded-For: 10.0.0.9\r\nX-Forwarded-Method: {}\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Port: 80\r\nX-Forwarded-Host: {}\r\nX-Forwarded-Uri: {}\r\nAccept-Encoding: gzip\r\n",
            o.method, o.host, o.target
        ),
        // Caddy: GET to `uri` (the original query kept), Host and every header passed,
        // X-Forwarded-Method / -Uri from forward_auth, -For / -Proto / -Host from reverse_proxy.
        "caddy" => {
            let query = o.target.find('?').map_or("", |i| &o.target[i..]);
            format!(
                "GET /{query} HTTP/1.1\r\nHost: {}\r\n{client}X-Forwarded-For: 10.0.0.9\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: {}\r\nX-Forwarded-Method: {}\r\nX-Forwarded-Uri: {}\r\n",
                o.host, o.host, o.method, o.target
            )
        }
        // Envoy (HTTP service): the original method, path_prefix + path, Host, Authorization
        // (and allowed_headers), no body.
        "envoy" => {
            let auth = o
                .fields
                .iter()
                // `allowed_headers` here: content-type.
                .filter(|(n, _)| {
                    n.eq_ignore_ascii_case("authorization") || n.eq_ignore_ascii_case("content-type")
                })
                .map(|(n, v)| format!("{n}: {v}\r\n"))
                .collect::<String>();
            format!(
                "{} /ext_authz{} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Length: 0\r\n",
                o.method, o.target, o.host
            )
        }
        other => panic!("{other}"),
    }
}

async fn check(gw: &Gateway, dialect: &str, o: &Original<'_>) -> Answer {
    let checks = gw.checks.unwrap();
    exchange(checks, &check_head(dialect, checks, o)).await
}

async fn gateway(dialect: &str, upstream: &Upstream, trusted: &str) -> Gateway {
    let prefix = if dialect == "envoy" {
        "path_prefix = \"/ext_authz\""
    } else {
        ""
    };
    let toml = config()
        .replace("{proxy}", dialect)
        .replace("{prefix}", prefix)
        .replace("{trusted}", trusted);
    Gateway::start_checking(&toml, &upstream.url()).await
}

fn admin_token() -> String {
    token_with(
        json!({"sub": "alice", "role": "admin", "exp": now() + 600}),
        jsonwebtoken::Algorithm::HS256,
        KEY,
    )
}

/// The identity headers of an upstream request, or of a check's answer.
fn identity(headers: &BTreeMap<String, Vec<String>>) -> (Vec<String>, Vec<String>) {
    let get = |n: &str| headers.get(n).cloned().unwrap_or_default();
    (get("x-auth-user"), get("x-auth-role"))
}

#[tokio::test]
async fn a_check_answers_the_identity_inline_mode_injects_in_every_dialect() {
    let upstream = Upstream::start().await;
    let admin = bearer(&admin_token());
    let user = bearer(&token("bob"));
    for dialect in DIALECTS {
        let gw = gateway(dialect, &upstream, "").await;
        for (target, auth) in [
            ("/admin/x?a=1", admin.as_str()),
            ("/orders", user.as_str()),
            ("/opt/y", user.as_str()),
        ] {
            let fields = [("Authorization", auth), ("X-Auth-User", "mallory")];
            let o = Original {
                method: "POST",
                host: "app.example",
                target,
                fields: &fields,
            };
            upstream.clear();
            let inline_answer = inline(&gw, &o).await;
            assert_eq!(inline_answer.status, 200, "{dialect} {target}");
            let seen = upstream.one();
            let mut injected = BTreeMap::new();
            for name in ["x-auth-user", "x-auth-role"] {
                injected.insert(name.to_owned(), seen.all(name));
            }
            let answer = check(&gw, dialect, &o).await;
            assert_eq!(answer.status, 200, "{dialect} {target}: {answer:?}");
            assert_eq!(answer.body, "");
            let (users, roles) = identity(&answer.headers);
            assert_eq!(users, injected["x-auth-user"], "{dialect} {target}");
            assert_ne!(users, ["mallory"]);
            // Every identity header is present; the empty ones are named for removal.
            match injected["x-auth-role"].as_slice() {
                [] => {
                    assert_eq!(roles, [""], "{dialect} {target}");
                    assert_eq!(
                        answer.header("x-envoy-auth-headers-to-remove"),
                        Some("x-auth-role, x-auth-issuer")
                    );
                }
                role => {
                    assert_eq!(roles, role, "{dialect} {target}");
                    // No providers: the issuer header is empty, and named for removal.
                    assert_eq!(
                        answer.header("x-envoy-auth-headers-to-remove"),
                        Some("x-auth-issuer")
                    );
                }
            }
        }
        // No identity (a public route, an optional one without a token): every identity
        // header present and empty, and named for removal, so that a proxy copying them drops
        // the client's forged copy.
        for target in ["/public/p", "/opt"] {
            let fields = [("X-Auth-User", "admin"), ("X-Auth-Role", "admin")];
            let o = Original {
                method: "GET",
                host: "app.example",
                target,
                fields: &fields,
            };
            let answer = check(&gw, dialect, &o).await;
            assert_eq!(answer.status, 200, "{dialect} {target}");
            assert_eq!(
                identity(&answer.headers),
                (vec![String::new()], vec![String::new()])
            );
            assert_eq!(
                answer.header("x-envoy-auth-headers-to-remove"),
                Some("x-auth-user, x-auth-role, x-auth-issuer")
            );
        }
        gw.stop().await;
    }
}

#[tokio::test]
async fn refusals_are_inline_refusals_never_2xx_whatever_the_content_type() {
    let upstream = Upstream::start().await;
    let user = bearer(&token("bob"));
    let expired = bearer(&token_with(
        json!({"sub": "bob", "exp": now() - 60}),
        jsonwebtoken::Algorithm::HS256,
        KEY,
    ));
    let forged = bearer(&token_with(
        json!({"sub": "bob", "exp": now() + 60}),
        jsonwebtoken::Algorithm::HS256,
        "another-key-0123456789abcdef0123456789abcdef",
    ));
    for dialect in DIALECTS {
        let gw = gateway(dialect, &upstream, "").await;
        let cases: [(&str, &str, Fields); 7] = [
            ("GET", "/orders", vec![]),
            ("GET", "/orders", vec![("Authorization", &expired)]),
            ("GET", "/orders", vec![("Authorization", &forged)]),
            ("GET", "/admin", vec![("Authorization", &user)]),
            ("GET", "/opt", vec![("Authorization", "Bearer not.a.token")]),
            ("TRACE", "/public", vec![]),
            // A gRPC call: refused in gRPC form inline (a 200), never as a check.
            (
                "POST",
                "/pkg.Svc/Call",
                vec![("Content-Type", "application/grpc"), ("TE", "trailers")],
            ),
        ];
        for (method, target, fields) in &cases {
            let o = Original {
                method,
                host: "app.example",
                target,
                fields,
            };
            upstream.clear();
            let answer = check(&gw, dialect, &o).await;
            assert!(
                !(200..300).contains(&answer.status),
                "{dialect} {method} {target}: {answer:?}"
            );
            assert_eq!(answer.header("content-type"), Some("application/json"));
            if target.starts_with("/pkg") {
                assert_eq!(answer.status, 401);
                continue;
            }
            let inline_answer = inline(&gw, &o).await;
            assert_eq!(upstream.count(), 0, "{dialect} {method} {target}");
            assert_eq!(
                (answer.status, without_request_id(&answer.body)),
                (
                    inline_answer.status,
                    without_request_id(&inline_answer.body)
                ),
                "{dialect} {method} {target}"
            );
            assert_eq!(
                answer.header("www-authenticate"),
                inline_answer.header("www-authenticate"),
                "{dialect} {method} {target}"
            );
        }
        gw.stop().await;
    }
}

/// Targets whose meaning a path trick could change: each gets the inline decision.
const TRICKS: &[&str] = &[
    "/admin",
    "/public/../admin",
    "/public/%2e%2e/admin",
    "/public/%2E%2E/admin",
    "/public%2f..%2fadmin",
    "/public/..%2fadmin",
    "/public/..%5cadmin",
    "/public/.%2e/admin",
    "/public;/../admin",
    "/public;x=1",
    "/PUBLIC",
    "/Public/x",
    "//public",
    "/./public",
    "/public/./x",
    "/%70ublic",
    "/public%00",
    "/public%2500",
    "/admin?x=/public",
    "/public?x=/../admin",
    "/public/%2e",
    "/public/x/..",
    "/public/x/../../admin",
    "/public/\u{00e9}",
    "/public//x",
    "/public/%",
    "/public/%zz",
    "/admin/../public",
    "/admin/%2e%2e/public",
    "/admin/.%2E/public/x",
    "/admin//../public",
    "/admin/./../public",
    "/%61dmin",
    "/admin/%7e",
    "/admin/%7E",
    "/public/%c3%a9",
    "*",
];

#[tokio::test]
async fn path_tricks_get_the_inline_decision_in_every_dialect() {
    let upstream = Upstream::start().await;
    // A token without the admin role: `/admin` (403) and the other routes (200) tell apart.
    let user = bearer(&token("bob"));
    let fields = [("Authorization", user.as_str())];
    for dialect in DIALECTS {
        let gw = gateway(dialect, &upstream, "").await;
        for target in TRICKS {
            if *target == "*" && matches!(dialect, "envoy" | "ingress-nginx") {
                // Neither can name it: Envoy's check path is `path_prefix` + the path,
                // ingress-nginx's URL is `$scheme://$http_host$request_uri`.
                continue;
            }
            let o = Original {
                method: "GET",
                host: "app.example",
                target,
                fields: &fields,
            };
            upstream.clear();
            let inline_answer = inline(&gw, &o).await;
            let answer = check(&gw, dialect, &o).await;
            let allowed = |status: u16| (200..300).contains(&status);
            if *target == "*" {
                // Inline answers `OPTIONS *`-style targets itself; a check names no resource.
                assert_eq!(answer.status, 400, "{dialect} {target}");
                continue;
            }
            match (allowed(answer.status), allowed(inline_answer.status)) {
                // The same route: the same identity, and the path the proxy forwards (the
                // target as sent) is the one inline mode forwards (normalized).
                (true, true) => {
                    let seen = upstream.one();
                    assert_eq!(
                        &seen.uri, target,
                        "{dialect}: checked a path not in normal form"
                    );
                    let injected = seen.all("x-auth-user").pop().unwrap_or_default();
                    assert_eq!(answer.header("x-auth-user"), Some(injected.as_str()));
                }
                (true, false) => panic!("{dialect} {target}: allowed, inline {inline_answer:?}"),
                // Inline mode forwards the normalized path; the proxy would forward the target
                // as sent, which is then refused.
                (false, true) => assert_eq!(
                    (answer.status, answer.json()["error_description"].as_str()),
                    (400, Some(jwtgate::http::forward_auth::NOT_NORMAL)),
                    "{dialect} {target}"
                ),
                (false, false) => assert_eq!(
                    (answer.status, without_request_id(&answer.body)),
                    (
                        inline_answer.status,
                        without_request_id(&inline_answer.body)
                    ),
                    "{dialect} {target}"
                ),
            }
        }
        gw.stop().await;
    }
}

#[tokio::test]
async fn a_clients_own_naming_headers_and_underscore_identities_are_refused() {
    let upstream = Upstream::start().await;
    let user = bearer(&token("bob"));
    for dialect in DIALECTS {
        let gw = gateway(dialect, &upstream, "").await;
        // The client asks for /admin and adds headers naming /public (CVE-2026-40575, the
        // Traefik advisories): never a check of /public.
        for spoof in [
            ("X-Original-URL", "http://app.example/public"),
            ("X-Original-URI", "/public"),
            ("X-Forwarded-Uri", "/public"),
            ("X-Forwarded-Host", "other.example"),
            ("X-Original-Method", "OPTIONS"),
            ("X-Forwarded-Method", "OPTIONS"),
        ] {
            let fields = [("Authorization", user.as_str()), spoof];
            let o = Original {
                method: "GET",
                host: "app.example",
                target: "/admin",
                fields: &fields,
            };
            let mut head = check_head(dialect, gw.checks.unwrap(), &o);
            if dialect == "envoy" {
                // Envoy sends only allowed_headers; an operator may allow these.
                head.push_str(&format!("{}: {}\r\n", spoof.0, spoof.1));
            }
            // Where the proxy sets the header itself (nginx's proxy_set_header, Traefik's and
            // Caddy's X-Forwarded-*), its copy replaces the client's: the check then names
            // /admin and is refused there (403). Otherwise the disagreement is a 400.
            let prefix = format!("{}: ", spoof.0);
            let own = head
                .split("\r\n")
                .filter(|l| l.starts_with(&prefix))
                .count()
                > 1;
            if own {
                let at = head.find(&prefix).unwrap();
                let end = at + head[at..].find("\r\n").unwrap() + 2;
                head.replace_range(at..end, "");
            }
            let answer = exchange(gw.checks.unwrap(), &head).await;
            let expected = if own { 403 } else { 400 };
            assert_eq!(answer.status, expected, "{dialect} {spoof:?}: {answer:?}");
        }
        // X-Forwarded-Prefix names nothing, nor do `_` spellings of naming headers: spoofed,
        // they change nothing (GHSA-6384-m2mw-rf54).
        for spoof in [
            ("X-Forwarded-Prefix", "/public"),
            ("X_Forwarded_Uri", "/public"),
            ("X_Original_URL", "http://app.example/public"),
        ] {
            let fields = [("Authorization", user.as_str()), spoof];
            let o = Original {
                method: "GET",
                host: "app.example",
                target: "/admin",
                fields: &fields,
            };
            assert_eq!(
                check(&gw, dialect, &o).await.status,
                403,
                "{dialect} {spoof:?}"
            );
        }
        // An identity header spelled with `_` (GHSA-5m6w-wvh7-57vm, Caddy passes it on).
        for name in [
            "X_Auth_User",
            "x_auth_role",
            "X-Auth_User",
            "x-auth-user-bin",
            "X-Auth-Role-Bin",
        ] {
            let fields = [(name, "admin")];
            let o = Original {
                method: "GET",
                host: "app.example",
                target: "/public",
                fields: &fields,
            };
            let head = check_head(dialect, gw.checks.unwrap(), &o);
            let head = if dialect == "envoy" {
                // Envoy sends only allowed_headers; an operator may allow more.
                format!("{head}{name}: admin\r\n")
            } else {
                head
            };
            let answer = exchange(gw.checks.unwrap(), &head).await;
            assert_eq!(answer.status, 400, "{dialect} {name}: {answer:?}");
        }
        // The dialect's own naming header missing.
        if dialect != "envoy" {
            let o = Original {
                method: "GET",
                host: "app.example",
                target: "/public",
                fields: &[],
            };
            let head = check_head(dialect, gw.checks.unwrap(), &o);
            let head: String = head
                .split_inclusive("\r\n")
                .filter(|l| {
                    !l.starts_with("X-Original-Method") && !l.starts_with("X-Forwarded-Method")
                })
                .collect();
            let answer = exchange(gw.checks.unwrap(), &head).await;
            assert_eq!(answer.status, 400, "{dialect}: {answer:?}");
        }
        gw.stop().await;
    }
}

#[tokio::test]
async fn a_check_from_outside_trusted_proxies_is_refused_with_403_in_every_dialect() {
    let upstream = Upstream::start().await;
    let user = bearer(&token("bob"));
    for dialect in DIALECTS {
        let gw = gateway(dialect, &upstream, "trusted_proxies = [\"10.0.0.0/8\"]").await;
        let fields = [("Authorization", user.as_str())];
        for target in ["/orders", "/public"] {
            let o = Original {
                method: "GET",
                host: "app.example",
                target,
                fields: &fields,
            };
            let answer = check(&gw, dialect, &o).await;
            assert_eq!(answer.status, 403, "{dialect} {target}: {answer:?}");
            assert_eq!(answer.json_error(), "forbidden");
            // Before any naming rule: a spoofed naming header or an `_` identity is still 403.
            for extra in [("X-Forwarded-Uri", "/elsewhere"), ("X_Auth_User", "admin")] {
                let fields = [("Authorization", user.as_str()), extra];
                let o = Original {
                    fields: &fields,
                    ..o
                };
                let mut head = check_head(dialect, gw.checks.unwrap(), &o);
                head.push_str(&format!("{}: {}\r\n", extra.0, extra.1));
                let answer = exchange(gw.checks.unwrap(), &head).await;
                assert_eq!(answer.status, 403, "{dialect} {extra:?}: {answer:?}");
            }
            assert_eq!(answer.header("x-auth-user"), None);
            // The inline listener does not care who its peers are.
            assert_eq!(inline(&gw, &o).await.status, 200);
        }
        gw.stop().await;
    }
}

#[tokio::test]
async fn checks_are_counted_with_their_mode_and_envoy_checks_outside_the_prefix_are_404() {
    let upstream = Upstream::start().await;
    let gw = gateway("envoy", &upstream, "").await;
    let user = bearer(&token("bob"));
    let ok =
        format!("GET /ext_authz/orders HTTP/1.1\r\nHost: app.example\r\nAuthorization: {user}\r\n");
    assert_eq!(exchange(gw.checks.unwrap(), &ok).await.status, 200);
    let outside = format!("GET /orders HTTP/1.1\r\nHost: app.example\r\nAuthorization: {user}\r\n");
    assert_eq!(exchange(gw.checks.unwrap(), &outside).await.status, 404);
    let none = "GET /ext_authz/orders HTTP/1.1\r\nHost: app.example\r\n";
    assert_eq!(exchange(gw.checks.unwrap(), none).await.status, 401);
    // Over HTTP/2 (an h2c cluster) too.
    let h2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let req = http::Request::get(format!("http://{}/ext_authz/orders", gw.checks.unwrap()))
        .header("authorization", &user)
        .body(http_body_util::Full::default())
        .unwrap();
    let res = read(h2.request(req).await.unwrap()).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.headers["x-auth-user"], "bob");
    let metrics = gw.gateway.metrics.render();
    let line = |route: &str, status: u16, mode: &str| {
        metrics.lines().any(|l| {
            l.starts_with("jwtgate_requests_total{")
                && l.contains(&format!("route=\"{route}\""))
                && l.contains(&format!("status=\"{status}\""))
                && l.contains(&format!("mode=\"{mode}\""))
        })
    };
    assert!(line("/", 200, "forward_auth"), "{metrics}");
    assert!(line("-", 404, "forward_auth"), "{metrics}");
    assert!(line("/", 401, "forward_auth"), "{metrics}");
    assert!(!line("/", 200, "inline"), "{metrics}");
    gw.stop().await;
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }

    fn json_error(&self) -> String {
        self.json()["error"].as_str().unwrap().to_owned()
    }
}

/// A raw HTTP/1.1 exchange, blocking: the status and the whole answer.
fn blocking(addr: &str, head: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, out)
}

/// The binary, check-only (no `server.listen`, routes without upstreams): ready once the check
/// listener is up, a config change applied to the next check, SIGTERM drained and exit 0.
#[test]
fn a_check_only_deployment_reloads_and_drains() {
    use common::process::{jwtgate, listen_addr, Running};
    let dir = tempfile::tempdir().unwrap();
    let config = |require: &str| {
        format!(
            "[server]\nadmin_listen = \"127.0.0.1:0\"\n[auth]\nclaim_headers = {{ role = \"X-Auth-Role\" }}\n[forward_auth]\nlisten = \"127.0.0.1:0\"\nproxy = \"traefik\"\n[[route]]\npath = \"/\"\n{require}\n"
        )
    };
    let path = dir.path().join("jwtgate.toml");
    std::fs::write(&path, config("")).unwrap();
    let mut cmd = jwtgate(dir.path());
    cmd.args(["--config", path.to_str().unwrap()])
        .env("JWT_SECRET_KEY", KEY)
        .env("JWTGATE_LOG_FORMAT", "json");
    let mut run = Running::start(cmd);
    let admin = run.admin_addr();
    let line = run.wait_for("\"listening\"");
    assert!(line.contains("\"mode\":\"forward_auth\""), "{line}");
    let checks = listen_addr(&line);
    assert_eq!(
        blocking(&admin, "GET /readyz HTTP/1.1\r\nHost: a\r\n").0,
        200
    );
    let head = format!(
        "GET / HTTP/1.1\r\nHost: {checks}\r\nAuthorization: Bearer {}\r\nX-Forwarded-Method: GET\r\nX-Forwarded-Host: app.example\r\nX-Forwarded-Uri: /orders\r\n",
        token("bob")
    );
    let (status, answer) = blocking(&checks, &head);
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("x-auth-user: bob"),
        "{answer}"
    );
    // A route that now requires a role: the next check is refused.
    std::fs::write(&path, config("require = { role = \"admin\" }")).unwrap();
    run.wait_for("reloaded config and keys");
    assert_eq!(blocking(&checks, &head).0, 403);
    // Adding an inline listener needs a restart: refused, the old config keeps serving.
    std::fs::write(
        &path,
        config("require = { role = \"admin\" }")
            .replace("[server]\n", "[server]\nlisten = \"127.0.0.1:0\"\n"),
    )
    .unwrap();
    run.wait_for("needs a restart");
    assert_eq!(blocking(&checks, &head).0, 403);
    let metrics = blocking(&admin, "GET /metrics HTTP/1.1\r\nHost: a\r\n").1;
    assert!(
        metrics
            .contains("jwtgate_requests_total{route=\"/\",status=\"403\",mode=\"forward_auth\"} 2"),
        "{metrics}"
    );
    let (code, log) = run.terminate();
    assert_eq!(code, Some(0), "{log:?}");
    assert!(
        log.iter()
            .any(|l| l.contains("\"mode\":\"forward_auth\"") && l.contains("\"path\":\"/orders\"")),
        "no access line for the checks: {log:?}"
    );
    assert!(std::net::TcpStream::connect(&checks).is_err());
}

/// A route without an upstream is for checks only: inline, it is a 404, never a fall-through
/// to a shorter route (which may ask less, here nothing).
#[tokio::test]
async fn inline_requests_never_fall_through_a_route_only_checks_reach() {
    let upstream = Upstream::start().await;
    let toml = r#"
[server]
listen = "127.0.0.1:0"
[forward_auth]
listen = "127.0.0.1:0"
proxy = "traefik"
[[route]]
path = "/"
upstream = "{upstream}"
auth = "public"
[[route]]
path = "/admin"
require = { role = "admin" }
[[route]]
host = "app.example"
path = "/"
"#;
    let gw = Gateway::start_checking(toml, &upstream.url()).await;
    for (host, target) in [("other.example", "/admin/x"), ("app.example", "/x")] {
        let o = Original {
            method: "GET",
            host,
            target,
            fields: &[],
        };
        let answer = inline(&gw, &o).await;
        assert_eq!(answer.status, 404, "{host}{target}: {answer:?}");
        assert_eq!(upstream.count(), 0);
        // Checks reach it.
        assert_eq!(
            check(&gw, "traefik", &o).await.status,
            401,
            "{host}{target}"
        );
    }
    let o = Original {
        method: "GET",
        host: "other.example",
        target: "/x",
        fields: &[],
    };
    assert_eq!(inline(&gw, &o).await.status, 200);
    gw.stop().await;
}
