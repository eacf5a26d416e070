//! The adversarial suite: what attackers send to JWT gateways, drawn from real advisories of
//! oauth2-proxy, Envoy, Traefik, Istio, nginx, HAProxy, PyJWT and jsonwebtoken. Each case states
//! the expected status and what the upstream must and must not have seen. Raw sockets wherever
//! a client library would tidy the request up.

mod common;

use std::time::{Duration, Instant};

use common::*;
use jsonwebtoken::Algorithm::{HS256, HS384};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn req(method: &str, path: &str, headers: &str) -> Vec<u8> {
    format!("{method} {path} HTTP/1.1\r\nHost: app.example\r\n{headers}Connection: close\r\n\r\n")
        .into_bytes()
}

fn auth(t: &str) -> String {
    format!("Authorization: Bearer {t}\r\n")
}

/// Sends each token to a required route: every one must be 401 and none may reach the upstream.
async fn all_refused(cases: &[(&str, String)]) -> usize {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    for (name, token) in cases {
        let out = raw(gw.addr, &req("GET", "/api", &auth(token))).await;
        let codes = statuses(&out);
        assert!(
            codes == vec![401] || codes == vec![400] || codes == vec![431],
            "{name}: {out}"
        );
        assert_eq!(up.count(), 0, "{name}: reached the upstream");
    }
    cases.len()
}

fn good_claims() -> serde_json::Value {
    json!({"sub": "alice", "exp": now() + 600})
}

// ---------------------------------------------------------------------------------------------
// JWT

#[tokio::test]
async fn jwt_alg_none_in_every_spelling() {
    // CVE-2015-9235 (node-jsonwebtoken), CVE-2015-2951 (JWT.NET), PyJWT's early alg=none issues.
    let claims = b64(&good_claims().to_string());
    let sig = token("alice").rsplit('.').next().unwrap().to_owned();
    let mut cases = Vec::new();
    for alg in ["none", "None", "NONE", "nOnE", "none ", " none", "", "null"] {
        let h = b64(&format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
        cases.push((alg, format!("{h}.{claims}.")));
        cases.push((alg, format!("{h}.{claims}.{sig}")));
    }
    cases.push(("alg null", format!("{}.{claims}.", b64(r#"{"alg":null}"#))));
    cases.push((
        "alg missing",
        format!("{}.{claims}.", b64(r#"{"typ":"JWT"}"#)),
    ));
    cases.push((
        "alg array",
        format!("{}.{claims}.", b64(r#"{"alg":["HS256"]}"#)),
    ));
    cases.push(("alg number", format!("{}.{claims}.", b64(r#"{"alg":256}"#))));
    let cases: Vec<(&str, String)> = cases;
    assert_eq!(all_refused(&cases).await, 20);
}

#[tokio::test]
async fn jwt_algorithm_confusion_and_wrong_keys() {
    // CVE-2016-10555 / CVE-2022-29217 (PyJWT), CVE-2016-5431: asymmetric algorithm names with an
    // HMAC over the key, algorithms not configured, keys that are not the secret.
    let c = good_claims().to_string();
    let mut cases: Vec<(&str, String)> = vec![
        (
            "RS256 header, HMAC body",
            raw_token(r#"{"alg":"RS256"}"#, &c, KEY),
        ),
        ("ES256 header", raw_token(r#"{"alg":"ES256"}"#, &c, KEY)),
        ("PS256 header", raw_token(r#"{"alg":"PS256"}"#, &c, KEY)),
        ("EdDSA header", raw_token(r#"{"alg":"EdDSA"}"#, &c, KEY)),
        ("hs256 lower case", raw_token(r#"{"alg":"hs256"}"#, &c, KEY)),
        (
            "HS384 not configured",
            token_with(good_claims(), HS384, KEY),
        ),
        ("HS256 header over an HS384 MAC", {
            let t = token_with(good_claims(), HS384, KEY);
            let (_, rest) = t.split_once('.').unwrap();
            format!("{}.{rest}", b64(r#"{"alg":"HS256","typ":"JWT"}"#))
        }),
        ("empty key", raw_token(r#"{"alg":"HS256"}"#, &c, "")),
        (
            "key with a trailing newline",
            raw_token(r#"{"alg":"HS256"}"#, &c, &format!("{KEY}\n")),
        ),
        (
            "key prefix",
            raw_token(r#"{"alg":"HS256"}"#, &c, &KEY[..32]),
        ),
        (
            "placeholder key",
            raw_token(
                r#"{"alg":"HS256"}"#,
                &c,
                "your-secret-key-change-this-in-production",
            ),
        ),
        (
            "embedded jwk",
            raw_token(
                r#"{"alg":"HS256","jwk":{"kty":"oct","k":"YXR0YWNrZXI"}}"#,
                &c,
                "attacker",
            ),
        ),
        (
            "jku to attacker",
            raw_token(
                r#"{"alg":"HS256","jku":"https://evil.example/jwks"}"#,
                &c,
                "attacker",
            ),
        ),
        (
            "kid path traversal",
            raw_token(r#"{"alg":"HS256","kid":"../../../../dev/null"}"#, &c, ""),
        ),
        (
            "kid sql injection",
            raw_token(r#"{"alg":"HS256","kid":"x' UNION SELECT 'k"}"#, &c, "k"),
        ),
    ];
    // A kid is ignored: with the right key it still verifies, so it is the key that matters.
    let ok = raw_token(r#"{"alg":"HS256","kid":"../../dev/null"}"#, &c, KEY);
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    assert_eq!(
        get(&gw, "/x", &[("authorization", &bearer(&ok))])
            .await
            .status,
        200
    );
    cases.push(("signature of another token", {
        let other = token("bob");
        let (hp, _) = token("alice")
            .rsplit_once('.')
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .unwrap();
        format!("{hp}.{}", other.rsplit('.').next().unwrap())
    }));
    assert_eq!(all_refused(&cases).await, 16);
}

#[tokio::test]
async fn jwt_tampering_and_segment_games() {
    let t = token("alice");
    let parts: Vec<&str> = t.split('.').collect();
    let (h, p, s) = (parts[0], parts[1], parts[2]);
    let admin = b64(&json!({"sub": "admin", "exp": now() + 600}).to_string());
    let cases: Vec<(&str, String)> = vec![
        ("payload swapped", format!("{h}.{admin}.{s}")),
        (
            "header swapped",
            format!("{}.{p}.{s}", b64(r#"{"alg":"HS256","typ":"JWT","x":1}"#)),
        ),
        ("signature dropped", format!("{h}.{p}.")),
        ("signature truncated", format!("{h}.{p}.{}", &s[..20])),
        ("signature doubled", format!("{h}.{p}.{s}{s}")),
        ("extra segment", format!("{t}.{s}")),
        ("five segments (JWE shape)", format!("{h}.{p}.{s}.{s}.{s}")),
        ("two segments", format!("{h}.{p}")),
        ("one segment", h.to_owned()),
        ("empty segments", "..".to_owned()),
        ("leading dot", format!(".{t}")),
        ("trailing dot", format!("{t}.")),
        ("padding", format!("{h}=.{p}.{s}")),
        (
            "standard base64 alphabet",
            t.replace('-', "+").replace('_', "/") + "+/",
        ),
        ("whitespace inside", format!("{h}. {p}.{s}")),
        ("percent-encoded", t.replace('.', "%2E")),
        (
            "JSON instead of base64",
            format!("{{\"alg\":\"HS256\"}}.{p}.{s}"),
        ),
        ("unicode", format!("{h}.{p}.{s}é")),
        ("NUL byte", format!("{h}.{p}\u{0}.{s}")),
    ];
    assert_eq!(all_refused(&cases).await, 19);
}

#[tokio::test]
async fn jwt_claims_of_the_wrong_type_or_absurd_size() {
    let n = now();
    let signed = |c: String| raw_token(r#"{"alg":"HS256","typ":"JWT"}"#, &c, KEY);
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let cases: Vec<(&str, String)> = vec![
        (
            "exp string",
            signed(format!(r#"{{"sub":"a","exp":"{}"}}"#, n + 600)),
        ),
        ("exp bool", signed(r#"{"sub":"a","exp":true}"#.into())),
        (
            "exp array",
            signed(format!(r#"{{"sub":"a","exp":[{}]}}"#, n + 600)),
        ),
        (
            "exp object",
            signed(r#"{"sub":"a","exp":{"$gt":0}}"#.into()),
        ),
        ("exp null", signed(r#"{"sub":"a","exp":null}"#.into())),
        ("exp negative", signed(r#"{"sub":"a","exp":-1}"#.into())),
        ("exp zero", signed(r#"{"sub":"a","exp":0}"#.into())),
        (
            "exp 1e308 but nbf string",
            signed(r#"{"sub":"a","exp":1e308,"nbf":"0"}"#.into()),
        ),
        (
            "nbf far future",
            signed(format!(
                r#"{{"sub":"a","exp":{},"nbf":{}}}"#,
                n + 600,
                n + 500
            )),
        ),
        (
            "iat string",
            signed(format!(r#"{{"sub":"a","exp":{},"iat":"now"}}"#, n + 600)),
        ),
        (
            "sub number",
            signed(format!(r#"{{"sub":1,"exp":{}}}"#, n + 600)),
        ),
        (
            "sub bool",
            signed(format!(r#"{{"sub":true,"exp":{}}}"#, n + 600)),
        ),
        (
            "sub object",
            signed(format!(r#"{{"sub":{{"name":"admin"}},"exp":{}}}"#, n + 600)),
        ),
        (
            "sub array",
            signed(format!(r#"{{"sub":["admin"],"exp":{}}}"#, n + 600)),
        ),
        (
            "sub null",
            signed(format!(r#"{{"sub":null,"exp":{}}}"#, n + 600)),
        ),
        (
            "sub empty",
            signed(format!(r#"{{"sub":"","exp":{}}}"#, n + 600)),
        ),
        (
            "sub CRLF injection",
            signed(format!(
                r#"{{"sub":"a\r\nX-Auth-User: admin","exp":{}}}"#,
                n + 600
            )),
        ),
        (
            "sub NUL",
            signed(format!(r#"{{"sub":"adm\u0000in","exp":{}}}"#, n + 600)),
        ),
        (
            "sub leading space",
            signed(format!(r#"{{"sub":" admin","exp":{}}}"#, n + 600)),
        ),
        (
            "sub trailing tab",
            signed(format!(r#"{{"sub":"admin\t","exp":{}}}"#, n + 600)),
        ),
        (
            "sub non-ASCII",
            signed(format!(r#"{{"sub":"ädmin","exp":{}}}"#, n + 600)),
        ),
        (
            "duplicate sub",
            signed(format!(
                r#"{{"sub":"alice","sub":"admin","exp":{}}}"#,
                n + 600
            )),
        ),
        (
            "duplicate exp",
            signed(format!(r#"{{"sub":"a","exp":1,"exp":{}}}"#, n + 600)),
        ),
        ("claims not an object", signed(r#"["sub","admin"]"#.into())),
        ("claims a string", signed(r#""admin""#.into())),
        (
            "deeply nested",
            signed(format!(r#"{{"sub":"a","exp":{},"x":{deep}}}"#, n + 600)),
        ),
        (
            "trailing garbage after JSON",
            signed(format!(r#"{{"sub":"a","exp":{}}}xyz"#, n + 600)),
        ),
        (
            "crit unknown",
            raw_token(
                r#"{"alg":"HS256","crit":["exp"]}"#,
                &format!(r#"{{"sub":"a","exp":{}}}"#, n + 600),
                KEY,
            ),
        ),
        (
            "crit b64",
            raw_token(
                r#"{"alg":"HS256","b64":false,"crit":["b64"]}"#,
                &format!(r#"{{"sub":"a","exp":{}}}"#, n + 600),
                KEY,
            ),
        ),
        (
            "crit empty",
            raw_token(
                r#"{"alg":"HS256","crit":[]}"#,
                &format!(r#"{{"sub":"a","exp":{}}}"#, n + 600),
                KEY,
            ),
        ),
        (
            "duplicate alg in header",
            raw_token(
                r#"{"alg":"none","alg":"HS256"}"#,
                &format!(r#"{{"sub":"a","exp":{}}}"#, n + 600),
                KEY,
            ),
        ),
        (
            "huge token (9 KiB)",
            signed(format!(
                r#"{{"sub":"a","exp":{},"pad":"{}"}}"#,
                n + 600,
                "x".repeat(9000)
            )),
        ),
    ];
    assert_eq!(all_refused(&cases).await, 32);

    // And a token far larger than any header limit: refused at the HTTP layer.
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let huge = "a".repeat(100_000);
    let out = raw(gw.addr, &req("GET", "/api", &auth(&huge))).await;
    assert_eq!(statuses(&out), vec![431], "{}", &out[..out.len().min(100)]);
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn jwt_tokens_outside_the_authorization_header_are_ignored() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let t = token("alice");
    for (name, path, headers) in [
        (
            "query access_token",
            format!("/api?access_token={t}"),
            String::new(),
        ),
        (
            "cookie",
            "/api".to_owned(),
            format!("Cookie: token={t}\r\n"),
        ),
        (
            "X-Access-Token",
            "/api".to_owned(),
            format!("X-Access-Token: {t}\r\n"),
        ),
        (
            "Proxy-Authorization",
            "/api".to_owned(),
            format!("Proxy-Authorization: Bearer {t}\r\n"),
        ),
        (
            "Authorization: Token",
            "/api".to_owned(),
            format!("Authorization: Token {t}\r\n"),
        ),
        (
            "Authorization: JWT",
            "/api".to_owned(),
            format!("Authorization: JWT {t}\r\n"),
        ),
        (
            "Bearer without space",
            "/api".to_owned(),
            format!("Authorization: Bearer{t}\r\n"),
        ),
    ] {
        let out = raw(gw.addr, &req("GET", &path, &headers)).await;
        assert_eq!(statuses(&out), vec![401], "{name}: {out}");
    }
    assert_eq!(up.count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Identity spoofing

#[tokio::test]
async fn identity_spoofing_on_every_route_kind_and_protocol() {
    // oauth2-proxy GHSA-vjrc-mh2v-45x6 (header smuggling with '_'), Envoy
    // CVE-2023-27487 (client-forged x-envoy-original-path), Traefik hop-by-hop header removal
    // (CVE-2023-47106-style Connection abuse).
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let t = token("alice");
    let forged = [
        "X-Auth-User: admin",
        "x-auth-user: admin",
        "X-AUTH-USER: admin",
        "X_Auth_User: admin",
        "x-auth_user: admin",
        "X-Auth-User: admin\r\nX-Auth-User: root",
        "X-Auth-User:admin",
        "X-Auth-User: ",
        "X-Auth-Role: admin",
        "X_AUTH_ROLE: admin",
        "Connection: X-Auth-User\r\nX-Auth-User: admin",
        "Connection: x-auth-user, x-auth-role\r\nX-Auth-Role: admin",
    ];
    let mut n = 0;
    for route in ["/api", "/public/x", "/opt/x"] {
        for with_token in [true, false] {
            for f in forged {
                up.clear();
                let headers = if with_token {
                    format!("{}{f}\r\n", auth(&t))
                } else {
                    format!("{f}\r\n")
                };
                let out = raw(gw.addr, &req("GET", route, &headers)).await;
                let code = statuses(&out);
                n += 1;
                if route == "/api" && !with_token {
                    assert_eq!(code, vec![401], "{route} {f}: {out}");
                    assert_eq!(up.count(), 0);
                    continue;
                }
                assert_eq!(code, vec![200], "{route} {with_token} {f}: {out}");
                let seen = up.one();
                let users: Vec<String> = seen
                    .folded("x-auth-user")
                    .iter()
                    .flat_map(|h| seen.all(h))
                    .collect();
                let roles: Vec<String> = seen
                    .folded("x-auth-role")
                    .iter()
                    .flat_map(|h| seen.all(h))
                    .collect();
                let want: Vec<String> = if with_token && route != "/public/x" {
                    vec!["alice".into()]
                } else {
                    vec![]
                };
                assert_eq!(users, want, "{route} {with_token} {f}");
                assert!(roles.is_empty(), "{route} {f}: {roles:?}");
            }
        }
    }
    assert_eq!(n, 72);
}

#[tokio::test]
async fn identity_spoofing_on_websocket_upgrades_and_h2() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let t = token("alice");
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(format!("GET /__ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, X-Auth-User\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{}X-Auth-User: admin\r\nX_Auth_User: root\r\n\r\n", auth(&t)).as_bytes()).await.unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"));
    let seen = up.one();
    assert_eq!(seen.all("x-auth-user"), vec!["alice"]);
    assert!(seen.all("x_auth_user").is_empty());

    // HTTP/2: header names arrive lower case; the same rules apply.
    up.clear();
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let r = http::Request::get(gw.url("/public/h2"))
        .header("x-auth-user", "admin")
        .header("x_auth_user", "root")
        .header("x-forwarded-for", "1.2.3.4")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(client.request(r).await.unwrap().status(), 200);
    let seen = up.one();
    assert!(seen.folded("x-auth-user").is_empty(), "{:?}", seen.headers);
    assert_eq!(seen.all("x-forwarded-for"), vec!["1.2.3.4, 127.0.0.1"]);
}

#[tokio::test]
async fn routing_override_headers_do_not_change_routing() {
    // Symfony/Laravel X-Original-URL (CVE-2018-14773), nginx/IIS X-Rewrite-URL, Envoy
    // x-envoy-original-path, Traefik X-Forwarded-Prefix.
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let overrides = [
        "X-Original-URL: /admin",
        "X-Rewrite-URL: /admin",
        "X-Original-URI: /admin",
        "X-Forwarded-Uri: /admin",
        "X-Forwarded-Path: /admin",
        "X-Forwarded-Prefix: /admin",
        "X-Envoy-Original-Path: /admin",
        "X-HTTP-Method-Override: DELETE",
        "X-Forwarded-Host: admin.internal",
        "Forwarded: host=admin.internal;proto=https",
    ];
    for h in overrides {
        up.clear();
        let out = raw(gw.addr, &req("GET", "/public/page", &format!("{h}\r\n"))).await;
        assert_eq!(statuses(&out), vec![200], "{h}: {out}");
        let seen = up.one();
        assert_eq!(seen.uri, "/public/page", "{h}");
        let name = h.split(':').next().unwrap().to_ascii_lowercase();
        if !["x-envoy-original-path", "x-http-method-override"].contains(&name.as_str()) {
            let values = seen.all(&name);
            assert!(
                values.iter().all(|v| !v.contains("admin")),
                "{h}: forwarded {values:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Path confusion

#[tokio::test]
async fn path_confusion_never_routes_one_path_and_forwards_another() {
    // nginx alias traversal, Envoy CVE-2019-9901 (unnormalized paths), CVE-2021-29492 (escaped
    // slashes), Istio ISTIO-SECURITY-2021-002 (escaped slashes), Traefik path-normalization
    // advisories, Tomcat/Spring ';' path parameters (CVE-2020-1957-style).
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let user = token_with(
        json!({"sub": "u", "exp": now() + 60, "role": "user"}),
        HS256,
        KEY,
    );
    // (path, expected status with a non-admin token: 403 means routed to /admin, 400 refused)
    let cases: &[(&str, u16)] = &[
        ("/public/../admin", 403),
        ("/public/./../admin", 403),
        ("/public/%2e%2e/admin", 403),
        ("/public/%2E%2E/admin", 403),
        ("/public/.%2e/admin", 403),
        ("/public/%2e./admin", 403),
        ("/public//../admin", 403),
        ("//admin", 403),
        ("///admin//x", 403),
        ("/%61dmin", 403),
        ("/%61%64%6d%69%6e", 403),
        ("/public/../../../admin", 403),
        ("/./admin", 403),
        ("/public/..%2fadmin", 400),
        ("/public/..%2Fadmin", 400),
        ("/public%2f..%2fadmin", 400),
        ("/public/..%5cadmin", 400),
        ("/public/..\\admin", 400),
        ("/public/..;/admin", 400),
        ("/admin;jsessionid=x", 400),
        ("/public/%252e%252e/admin", 400),
        ("/public/%25%32%65%25%32%65/admin", 400),
        ("/public/%252f", 400),
        ("/public/%00/../admin", 400),
        ("/public/%0d%0aX-Auth-User:%20admin", 400),
        ("/public/%", 400),
        ("/public/%g0", 400),
    ];
    for (path, want) in cases {
        up.clear();
        let out = raw(gw.addr, &req("GET", path, &auth(&user))).await;
        assert_eq!(statuses(&out), vec![*want], "{path}: {out}");
        assert_eq!(up.count(), 0, "{path} reached the upstream");
    }
    // Not confusable: forwarded exactly as routed.
    for (path, forwarded) in [
        ("/public/%23frag", "/public/%23frag"),
        ("/public/a%3Bb", "/public/a%3Bb"),
        ("/public/%7e/x", "/public/~/x"),
        ("/PUBLIC/x", "/PUBLIC/x"),
    ] {
        up.clear();
        let out = raw(gw.addr, &req("GET", path, &auth(&user))).await;
        assert_eq!(statuses(&out), vec![200], "{path}: {out}");
        assert_eq!(up.one().uri, forwarded);
    }
}

#[tokio::test]
async fn request_target_forms() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let t = token("alice");
    // absolute-form: the path is routed as usual, and the target's authority is the host
    // (RFC 9112 §3.2.2: a Host field, checked, is otherwise ignored). It is passed on as Host
    // and X-Forwarded-Host; the upstream stays the route's: never an open proxy.
    for (target, host) in [
        ("http://app.example/public/x", "app.example"),
        ("http://a:80/public/x", "b"),
        ("HTTP://internal.example/public/./x", "app.example"),
    ] {
        let req = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let out = raw(gw.addr, req.as_bytes()).await;
        assert_eq!(statuses(&out), vec![200], "{target}: {out}");
        let seen = up.one();
        assert_eq!(seen.uri, "/public/x");
        let authority = target.split('/').nth(2).unwrap();
        assert_eq!(seen.all("host"), vec![authority]);
        assert_eq!(seen.all("x-forwarded-host"), vec![authority]);
        up.clear();
    }
    for (name, raw_req) in [
        (
            "absolute-form with userinfo",
            "GET http://user@app.example/public/x HTTP/1.1\r\nHost: app.example\r\n\r\n".to_owned(),
        ),
        (
            "asterisk form with GET",
            "GET * HTTP/1.1\r\nHost: a\r\n\r\n".to_owned(),
        ),
        (
            "CONNECT",
            format!(
                "CONNECT {} HTTP/1.1\r\nHost: {}\r\n{}\r\n",
                up.addr,
                up.addr,
                auth(&t)
            ),
        ),
        (
            "authority-form GET",
            format!("GET {} HTTP/1.1\r\nHost: a\r\n\r\n", up.addr),
        ),
        (
            "relative path",
            "GET public/x HTTP/1.1\r\nHost: a\r\n\r\n".to_owned(),
        ),
        ("HTTP/0.9 style", "GET /public/x\r\n\r\n".to_owned()),
        (
            "unknown version",
            "GET /public/x HTTP/3.0\r\nHost: a\r\n\r\n".to_owned(),
        ),
        (
            "space in path",
            "GET /public/a b HTTP/1.1\r\nHost: a\r\n\r\n".to_owned(),
        ),
        (
            "Host with path",
            "GET /public/x HTTP/1.1\r\nHost: a/admin\r\n\r\n".to_owned(),
        ),
        (
            "Host with userinfo",
            "GET /public/x HTTP/1.1\r\nHost: u@a\r\n\r\n".to_owned(),
        ),
    ] {
        let out = raw(gw.addr, raw_req.as_bytes()).await;
        let codes = statuses(&out);
        assert!(
            codes.len() <= 1 && codes.iter().all(|c| *c == 400 || *c == 405),
            "{name}: {out}"
        );
        assert_eq!(up.count(), 0, "{name}: reached the upstream");
    }
}

// ---------------------------------------------------------------------------------------------
// Request smuggling and framing

#[tokio::test]
async fn smuggling_and_framing() {
    // HAProxy CVE-2021-40346 (header size overflow smuggling), CVE-2023-25725 (empty header
    // names), nginx/Envoy CL.TE and TE.CL desyncs (PortSwigger research), obfuscated TE.
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let hidden = "GET /public/smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    let cases: Vec<(&str, String)> = vec![
        ("CL.TE", format!("POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}")),
        ("TE.CL", format!("POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n{hidden}")),
        ("TE chunked, identity", format!("POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{hidden}")),
        ("TE xchunked", format!("POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{hidden}")),
        ("TE with vertical tab", format!("POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\x0b\r\n\r\n0\r\n\r\n{hidden}")),
        ("space before colon", format!("POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n{hidden}")),
        ("duplicate CL, different", "POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc".into()),
        ("CL list", "POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 40\r\n\r\nabc".into()),
        ("negative CL", "POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n".into()),
        ("CL with plus", "POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc".into()),
        ("CL overflow", "POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\nabc".into()),
        ("chunk size overflow", format!("POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\nabc\r\n0\r\n\r\n{hidden}")),
        ("chunk size garbage", format!("POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3x\r\nabc\r\n0\r\n\r\n{hidden}")),
        ("obs-fold", "GET /public/x HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n".into()),
        ("empty header name", "GET /public/x HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n".into()),
        ("NUL in header", "GET /public/x HTTP/1.1\r\nHost: a\r\nX-A: b\u{0}c\r\n\r\n".into()),
        ("CR in header value", "GET /public/x HTTP/1.1\r\nHost: a\r\nX-A: b\rX-Auth-User: admin\r\n\r\n".into()),
        ("TE on HTTP/1.0", format!("POST /public/x HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}")),
    ];
    let n = cases.len();
    for (name, r) in cases {
        up.clear();
        let out = raw(gw.addr, r.as_bytes()).await;
        let codes = statuses(&out);
        assert!(codes.len() <= 1, "{name}: more than one response: {out}");
        let seen = up.seen();
        assert!(
            seen.iter().all(|s| !s.uri.contains("smuggled")),
            "{name}: smuggled request reached the upstream"
        );
        assert!(
            seen.iter().all(|s| !s.headers.contains_key("x-auth-user")),
            "{name}"
        );
        assert_eq!(codes, vec![400], "{name}: {out}");
        assert_eq!(up.count(), 0, "{name}: reached the upstream");
    }
    assert_eq!(n, 18);
}

#[tokio::test]
async fn bare_lf_and_pipelining_stay_in_step() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let t = token("alice");
    // Bare LF line endings: parsed the same as CRLF or refused; never a second, hidden request.
    let out = raw(gw.addr, b"GET /public/a HTTP/1.1\nHost: a\n\nGET /public/b HTTP/1.1\nHost: a\nConnection: close\n\n").await;
    let seen: Vec<String> = up.seen().iter().map(|s| s.uri.clone()).collect();
    assert!(
        statuses(&out) == vec![200, 200] && seen == ["/public/a", "/public/b"]
            || statuses(&out) == vec![400],
        "{out}"
    );
    // Ten pipelined requests, alternately authenticated and not.
    up.clear();
    let mut r = String::new();
    for i in 0..10 {
        let a = if i % 2 == 0 {
            auth(&t)
        } else {
            "X-Auth-User: alice\r\n".into()
        };
        r.push_str(&format!("GET /p/{i} HTTP/1.1\r\nHost: a\r\n{a}\r\n"));
    }
    r.push_str("GET /public/end HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    let out = raw(gw.addr, r.as_bytes()).await;
    assert_eq!(
        statuses(&out),
        vec![200, 401, 200, 401, 200, 401, 200, 401, 200, 401, 200]
    );
    let seen = up.seen();
    assert_eq!(seen.len(), 6);
    for s in &seen[..5] {
        assert_eq!(s.all("x-auth-user"), vec!["alice"]);
    }
}

// ---------------------------------------------------------------------------------------------
// Exhaustion and limits

const TIGHT: &str = r#"
[server]
header_read_timeout = "1s"
idle_timeout = "1s"
max_body_bytes = 1024
max_connections = 20

[[route]]
path = "/"
upstream = "{upstream}"
auth = "public"

[[route]]
path = "/big"
upstream = "{upstream}"
auth = "public"
max_body_bytes = 0
"#;

#[tokio::test]
async fn bodies_over_the_route_limit_are_413_and_never_complete_upstream() {
    let up = Upstream::start().await;
    let gw = Gateway::start(TIGHT, &up.url()).await;
    let body = "x".repeat(2000);
    // Declared length over the limit: refused before anything is sent.
    let out = raw(
        gw.addr,
        format!("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\n\r\n{body}")
            .as_bytes(),
    )
    .await;
    assert_eq!(statuses(&out), vec![413], "{out}");
    assert_eq!(up.count(), 0);
    // Chunked over the limit: counted while streaming; the upstream never gets it whole.
    let out = raw(gw.addr, format!("POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n{body}\r\n0\r\n\r\n").as_bytes()).await;
    assert_eq!(statuses(&out), vec![413], "{out}");
    assert!(
        up.seen().iter().all(|s| !s.body_ok),
        "a complete over-limit body reached the upstream"
    );
    // Within the limit, and on a route without one.
    up.clear();
    let out = raw(gw.addr, format!("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n{}", &body[..1000]).as_bytes()).await;
    assert_eq!(statuses(&out), vec![200]);
    let out = raw(gw.addr, format!("POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\nConnection: close\r\n\r\n{body}").as_bytes()).await;
    assert_eq!(statuses(&out), vec![200]);
    assert_eq!(
        up.seen().iter().map(|s| s.body_len).collect::<Vec<_>>(),
        vec![1000, 2000]
    );
}

/// Sends `partial` and expects the gateway to close the connection once `timeout` has passed
/// (not at once: it is the timeout that cuts it), and not to leave it open.
async fn closed_by_timeout(addr: std::net::SocketAddr, partial: &[u8], timeout: Duration) {
    // Before the connect: the gateway's clock for this connection starts later.
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(partial).await.unwrap();
    let mut buf = Vec::new();
    let _ = within(
        "the gateway closing the slow-loris connection",
        s.read_to_end(&mut buf),
    )
    .await;
    assert!(
        start.elapsed() >= timeout,
        "closed after {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn slowloris_heads_and_bodies_are_cut_off() {
    let up = Upstream::start().await;
    let gw = Gateway::start(TIGHT, &up.url()).await;
    // A head that never finishes: closed after header_read_timeout (1s).
    closed_by_timeout(
        gw.addr,
        b"GET /x HTTP/1.1\r\nHost: a\r\nX-Slow: ",
        Duration::from_secs(1),
    )
    .await;
    // A body that stops coming: closed after idle_timeout (1s); the upstream never sees it whole.
    closed_by_timeout(
        gw.addr,
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nonly-part",
        Duration::from_secs(1),
    )
    .await;
    assert!(up.seen().iter().all(|s| !s.body_ok));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_connections_do_not_stop_service() {
    let up = Upstream::start().await;
    // No idle connection times out while the test runs, however long it takes.
    let cfg = CONFIG.replace(
        "[server]\n",
        "[server]\nmax_connections = 5000\nheader_read_timeout = \"300s\"\n",
    );
    let gw = Gateway::start(&cfg, &up.url()).await;
    let mut idle = Vec::new();
    for _ in 0..3000 {
        idle.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    let got = within("an answer beside 3,000 idle connections", async {
        get(&gw, "/public/x", &[]).await
    })
    .await;
    assert_eq!(got.status, 200);
    // Served while every idle connection was still open: none was closed (or timed out) to
    // make way for it.
    let open = gw.gateway.metrics.open_connections.get();
    assert!(open >= 3000, "only {open} connections open");
    drop(idle);
}

#[tokio::test]
async fn max_connections_keeps_serving_those_inside_the_limit() {
    let up = Upstream::start().await;
    let gw = Gateway::start(
        TIGHT
            .replace("idle_timeout = \"1s\"", "idle_timeout = \"30s\"")
            .replace(
                "header_read_timeout = \"1s\"",
                "header_read_timeout = \"30s\"",
            )
            .as_str(),
        &up.url(),
    )
    .await;
    // Fill the limit (20) with keep-alive connections that each served one request.
    let mut conns = Vec::new();
    for i in 0..20 {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(format!("GET /k/{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        conns.push(s);
    }
    // The 21st waits (in the kernel backlog) ...
    let mut extra = TcpStream::connect(gw.addr).await.unwrap();
    extra
        .write_all(b"GET /k/extra HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), extra.read(&mut buf))
            .await
            .is_err(),
        "served past max_connections"
    );
    // ... while the connections inside the limit keep working ...
    conns[0]
        .write_all(b"GET /k/again HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let n = conns[0].read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // ... and it is served once one closes.
    conns.pop();
    let n = tokio::time::timeout(Duration::from_secs(3), extra.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
}

#[test]
fn file_descriptor_exhaustion_does_not_kill_the_accept_loop() {
    // Run the binary with a tiny descriptor limit, exhaust it, then check it still serves.
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let up = rt.block_on(Upstream::start());
    let cfg = dir.path().join("jwtgate.toml");
    std::fs::write(&cfg, format!("[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n[[route]]\npath = \"/\"\nupstream = \"{}\"\nauth = \"public\"\n", up.url())).unwrap();
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 64 && exec {} --config {}",
            env!("CARGO_BIN_EXE_jwtgate"),
            cfg.display()
        ))
        .env("JWT_SECRET_KEY", KEY)
        .env("JWTGATE_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let addr = loop {
        let line = lines.next().unwrap().unwrap();
        if line.contains("\"listening\"") {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            break v["listen"].as_str().unwrap().to_owned();
        }
    };
    let (log, logged) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = log.send(line);
        }
    });
    let mut held = Vec::new();
    for _ in 0..100 {
        if let Ok(s) = std::net::TcpStream::connect(&addr) {
            held.push(s);
        }
    }
    // The accept loop met the limit, backed off and met it again: it went on after an error.
    let give_up = Instant::now() + PATIENCE;
    let mut failures = 0;
    while failures < 2 {
        let line = logged
            .recv_timeout(give_up.saturating_duration_since(Instant::now()))
            .expect("never: the gateway running out of descriptors (\"accept failed\" twice)");
        if line.contains("accept failed") {
            failures += 1;
        }
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the gateway died under descriptor exhaustion"
    );
    drop(held);
    std::thread::spawn(move || for _ in logged {});
    // Served again once the gateway has seen the descriptors freed.
    until_blocking("serving after descriptors were freed", || {
        let Ok(mut s) = std::net::TcpStream::connect(&addr) else {
            return false;
        };
        use std::io::{Read, Write};
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let _ = s.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.starts_with("HTTP/1.1 200")
    });
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    drop(up);
    drop(rt);
}

// ---------------------------------------------------------------------------------------------
// Upstream faults

#[tokio::test]
async fn upstream_faults_map_to_502_or_504() {
    async fn fake(reply: Vec<u8>, delay: Duration) -> std::net::SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let reply = reply.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    tokio::time::sleep(delay).await;
                    let _ = s.write_all(&reply).await;
                });
            }
        });
        addr
    }
    let big_head = format!(
        "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 0\r\n\r\n",
        "a".repeat(1_000_000)
    );
    let cases: Vec<(&str, Vec<u8>, Duration, u16)> = vec![
        ("closes at once", vec![], Duration::ZERO, 502),
        (
            "garbage",
            b"\x16\x03\x01\x00\xa5\x01\x00".to_vec(),
            Duration::ZERO,
            502,
        ),
        (
            "HTTP/0.9-style body",
            b"hello\r\n".to_vec(),
            Duration::ZERO,
            502,
        ),
        (
            "bad status line",
            b"HTTP/1.1 2000 OK\r\n\r\n".to_vec(),
            Duration::ZERO,
            502,
        ),
        ("oversized head", big_head.into_bytes(), Duration::ZERO, 502),
        (
            "conflicting lengths",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec(),
            Duration::ZERO,
            502,
        ),
        (
            "too slow",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(),
            Duration::from_secs(3),
            504,
        ),
    ];
    for (name, reply, delay, want) in cases {
        let addr = fake(reply, delay).await;
        let gw = Gateway::start(CONFIG, &format!("http://{addr}")).await;
        let got = get(&gw, "/public/x", &[]).await;
        assert_eq!(got.status, want, "{name}: {}", got.body);
    }
}

#[tokio::test]
async fn idle_http2_connections_are_closed_after_idle_timeout() {
    let up = Upstream::start().await;
    let gw = Gateway::start(TIGHT, &up.url()).await; // idle_timeout = 1s
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::get("http://a/x")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(sender.send_request(req).await.unwrap().status(), 200);
    // Nothing more: the gateway must close the connection, not keep it alive with pings.
    let _ = within("the idle h2 connection closed", conn).await;
}
