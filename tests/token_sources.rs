//! Where a token comes from: `Authorization: Bearer`, then `auth.cookie`, then a route's
//! `query_token`, the first found winning; the query token removed before forwarding and never
//! in a log line, a metric or an error body (inline and forward-auth alike); the token cookie
//! kept from the upstream with `forward_token = false`; and cookie tokens refused cross-site
//! (CSRF, cross-site WebSocket hijacking). Each asserts what the upstream received.

mod common;

use common::*;

fn config(extra_auth: &str, extra_server: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
{extra_server}
[auth]
leeway = "0s"
cookie = "access_token"
{extra_auth}

[[route]]
path = "/"
upstream = "{{upstream}}"

[[route]]
path = "/ws"
upstream = "{{upstream}}"
query_token = "access_token"

[[route]]
path = "/open"
upstream = "{{upstream}}"
auth = "optional"
query_token = "token"
"#
    )
}

async fn one_seen(up: &Upstream) -> Option<Seen> {
    let seen = up.seen();
    assert!(seen.len() <= 1, "{seen:?}");
    seen.into_iter().next()
}

#[tokio::test]
async fn a_cookie_token_passes_and_the_header_wins_over_it() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config("", ""), &up.url()).await;
    let alice = token("alice");
    let cookie = format!("theme=dark; access_token={alice}; lang=en");
    let got = get(&gw, "/x", &[("cookie", &cookie)]).await;
    assert_eq!(got.status, 200, "{}", got.body);
    let seen = one_seen(&up).await.unwrap();
    assert_eq!(seen.all("x-auth-user"), vec!["alice".to_owned()]);
    // No Authorization header is made up; forward_token (default true) keeps the cookie.
    assert!(seen.all("authorization").is_empty());
    assert_eq!(seen.all("cookie"), vec![cookie.clone()]);

    // The Authorization header is found first: a bad one is a 401 whatever the cookie holds.
    up.clear();
    let got = get(
        &gw,
        "/x",
        &[("cookie", &cookie), ("authorization", "Bearer nope")],
    )
    .await;
    assert_eq!(got.status, 401);
    assert!(one_seen(&up).await.is_none());
    // A cookie of another name is no token.
    let got = get(&gw, "/x", &[("cookie", &format!("other={alice}"))]).await;
    assert_eq!(got.status, 401);
    assert!(got.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer realm="));
    // The cookie beats the query; the query token is not read on a route without query_token.
    up.clear();
    let bob = token("bob");
    let got = get(
        &gw,
        &format!("/ws?access_token={bob}"),
        &[("cookie", &format!("access_token={alice}"))],
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(
        one_seen(&up).await.unwrap().all("x-auth-user"),
        vec!["alice".to_owned()]
    );
    up.clear();
    let got = get(&gw, &format!("/x?access_token={bob}"), &[]).await;
    assert_eq!(got.status, 401);
}

#[tokio::test]
async fn forward_token_false_keeps_the_token_cookie_from_the_upstream() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config("forward_token = false", ""), &up.url()).await;
    let alice = token("alice");
    let got = get(
        &gw,
        "/x",
        &[
            ("cookie", &format!("theme=dark; access_token={alice}")),
            ("cookie", "lang=en"),
        ],
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.body);
    let seen = one_seen(&up).await.unwrap();
    assert_eq!(seen.all("x-auth-user"), vec!["alice".to_owned()]);
    assert_eq!(seen.all("cookie"), vec!["theme=dark; lang=en".to_owned()]);
    // Only the token cookie: no Cookie at all.
    up.clear();
    let got = get(&gw, "/x", &[("cookie", &format!("access_token={alice}"))]).await;
    assert_eq!(got.status, 200);
    assert!(one_seen(&up).await.unwrap().all("cookie").is_empty());
}

#[tokio::test]
async fn cookie_tokens_are_refused_cross_site() {
    let up = Upstream::start().await;
    // 127.0.0.1 is not a trusted proxy here: its X-Forwarded-Proto is not believed.
    let gw = Gateway::start(&config("", "trusted_proxies = [\"10.0.0.0/8\"]"), &up.url()).await;
    let cookie = format!("access_token={}", token("alice"));
    let own = format!("http://{}", gw.addr);
    let upper = format!("HTTP://{}", gw.addr).to_ascii_uppercase();
    let tls = format!("https://{}", gw.addr);
    let cases: Vec<(Vec<(&str, &str)>, u16)> = vec![
        (vec![("origin", &own)], 200),
        (vec![("origin", &upper)], 200),
        (vec![("origin", "http://evil.example")], 403),
        (vec![("origin", "null")], 403),
        (vec![("origin", &tls)], 403),
        // A claimed https from an untrusted peer changes nothing.
        (vec![("origin", &tls), ("x-forwarded-proto", "https")], 403),
        (vec![("origin", &own), ("origin", &own)], 403),
        // No Origin: not a cross-site browser request.
        (vec![], 200),
    ];
    for (extra, want) in cases {
        up.clear();
        let mut headers = vec![("cookie", cookie.as_str())];
        headers.extend(extra.iter().copied());
        let got = get(&gw, "/x", &headers).await;
        assert_eq!(got.status, want, "{extra:?}: {}", got.body);
        assert_eq!(up.count(), usize::from(want == 200), "{extra:?}");
        if want == 403 {
            assert_eq!(got.json()["error"], "forbidden");
        }
    }
    // The same Origin with the token in the header is no CSRF: a page cannot set it.
    let got = get(
        &gw,
        "/x",
        &[
            ("origin", "http://evil.example"),
            ("authorization", &bearer(&token("alice"))),
        ],
    )
    .await;
    assert_eq!(got.status, 200);
    // A cross-site WebSocket handshake riding on the cookie: refused before the upstream.
    up.clear();
    let head = format!(
        "GET /ws/chat HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: http://evil.example\r\nCookie: {cookie}\r\n\r\n",
        gw.addr
    );
    let answer = raw(gw.addr, head.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert_eq!(up.count(), 0);

    // Behind a trusted proxy, its X-Forwarded-Proto says the scheme.
    let gw = Gateway::start(&config("", ""), &up.url()).await;
    let https = format!("https://{}", gw.addr);
    let got = get(
        &gw,
        "/x",
        &[
            ("cookie", &cookie),
            ("origin", &https),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.body);
    let got = get(
        &gw,
        "/x",
        &[
            ("cookie", &cookie),
            ("origin", &format!("http://{}", gw.addr)),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await;
    assert_eq!(got.status, 403);
}

#[tokio::test]
async fn a_query_token_is_used_and_never_forwarded() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config("", ""), &up.url()).await;
    let alice = token("alice");
    let got = get(&gw, &format!("/ws/feed?a=1&access_token={alice}&b=2"), &[]).await;
    assert_eq!(got.status, 200, "{}", got.body);
    let seen = one_seen(&up).await.unwrap();
    assert_eq!(seen.uri, "/ws/feed?a=1&b=2");
    assert_eq!(seen.all("x-auth-user"), vec!["alice".to_owned()]);
    assert!(seen.all("authorization").is_empty());
    // Removed whether or not it was used, in any spelling of its name; nothing left: no `?`.
    for (target, forwarded) in [
        (format!("/ws?access_token={alice}"), "/ws".to_owned()),
        (
            format!("/ws?access%5Ftoken={alice}&x=1"),
            "/ws?x=1".to_owned(),
        ),
        (
            format!("/ws?x=1&access_token=junk&access_token={alice}"),
            "/ws?x=1".to_owned(),
        ),
    ] {
        up.clear();
        let got = get(&gw, &target, &[("authorization", &bearer(&alice))]).await;
        assert_eq!(got.status, 200, "{target}");
        assert_eq!(one_seen(&up).await.unwrap().uri, forwarded, "{target}");
    }
    // Any letter case of the name is removed too (some frameworks read names so).
    up.clear();
    let got = get(
        &gw,
        &format!("/ws?ACCESS_TOKEN={alice}&x=1"),
        &[("authorization", &bearer(&alice))],
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(one_seen(&up).await.unwrap().uri, "/ws?x=1");
    // After a `;`, where some servers split parameters: refused, never forwarded.
    up.clear();
    let got = get(
        &gw,
        &format!("/ws?a=1;access_token={alice}"),
        &[("authorization", &bearer(&alice))],
    )
    .await;
    assert_eq!(got.status, 400);
    assert_eq!(up.count(), 0);
    // A bad query token: 401, and the body never echoes it.
    up.clear();
    let forged = raw_token(
        r#"{"alg":"HS256"}"#,
        r#"{"sub":"x","exp":1}"#,
        "not-the-key",
    );
    let got = get(&gw, &format!("/ws?access_token={forged}"), &[]).await;
    assert_eq!(got.status, 401);
    assert!(!got.body.contains(&forged[..20]), "{}", got.body);
    assert_eq!(up.count(), 0);
    // An optional route: a query token under its own name, removed when absent too.
    let got = get(&gw, &format!("/open?token={alice}&keep=access_token"), &[]).await;
    assert_eq!(got.status, 200);
    let seen = one_seen(&up).await.unwrap();
    assert_eq!(seen.uri, "/open?keep=access_token");
    assert_eq!(seen.all("x-auth-user"), vec!["alice".to_owned()]);
}

/// The binary's logs and metrics never hold a query token, valid or not, inline or checked.
#[test]
fn a_query_token_is_never_in_a_log_line_or_a_metric() {
    use common::process::{jwtgate, listen_addr, Running};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let up = rt.block_on(Upstream::start());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwtgate.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[forward_auth]\nlisten = \"127.0.0.1:0\"\nproxy = \"traefik\"\n\
             [[route]]\npath = \"/\"\nupstream = \"{}\"\nquery_token = \"access_token\"\n",
            up.url()
        ),
    )
    .unwrap();
    let mut cmd = jwtgate(dir.path());
    cmd.args(["--config", path.to_str().unwrap()])
        .env("JWT_SECRET_KEY", KEY)
        .env("RUST_LOG", "jwtgate=debug")
        .env("JWTGATE_LOG_FORMAT", "json");
    let mut run = Running::start(cmd);
    let admin = run.admin_addr();
    let mut inline = None;
    let mut checks = None;
    while inline.is_none() || checks.is_none() {
        let line = run.wait_for("\"listening\"");
        run.log.retain(|l| l != &line);
        if line.contains("forward_auth") {
            checks = Some(listen_addr(&line));
        } else {
            inline = Some(listen_addr(&line));
        }
    }
    let (inline, checks) = (inline.unwrap(), checks.unwrap());
    let exchange = common::process::exchange;
    let good = token("alice");
    let bad = raw_token(
        r#"{"alg":"HS256"}"#,
        r#"{"sub":"x","exp":1}"#,
        "not-the-key",
    );
    let expired = token_with(
        serde_json::json!({"sub": "x", "exp": 1000}),
        jsonwebtoken::Algorithm::HS256,
        KEY,
    );
    let mut answers = String::new();
    for t in [&good, &bad, &expired] {
        answers += &exchange(
            &inline,
            &format!("GET /p?access_token={t} HTTP/1.1\r\nHost: a\r\n"),
        );
        answers += &exchange(
            &inline,
            &format!("GET /p/%2e%2e/x?access_token={t} HTTP/1.1\r\nHost: a\r\n"),
        );
        answers += &exchange(
            &inline,
            &format!("GET http://a/p?access_token={t} HTTP/1.1\r\nHost: a\r\n"),
        );
        answers += &exchange(
            &checks,
            &format!("GET / HTTP/1.1\r\nHost: c\r\nX-Forwarded-Method: GET\r\nX-Forwarded-Host: a\r\nX-Forwarded-Uri: /p?access_token={t}\r\n"),
        );
    }
    assert!(answers.contains("HTTP/1.1 200"), "{answers}");
    assert!(answers.contains("x-auth-user: alice"), "{answers}");
    let metrics = exchange(&admin, "GET /metrics HTTP/1.1\r\nHost: a\r\n");
    let (code, log) = run.terminate();
    assert_eq!(code, Some(0));
    assert!(log.iter().any(|l| l.contains("\"path\":\"/p\"")), "{log:?}");
    for t in [&good, &bad, &expired] {
        // Any part of a token: its signature is unique to it.
        let sig = t.rsplit('.').next().unwrap();
        for l in &log {
            assert!(!l.contains(sig), "token in a log line: {l}");
        }
        assert!(!metrics.contains(sig), "token in the metrics");
        assert!(!answers.contains(sig), "token in an answer: {answers}");
    }
    for seen in up.seen() {
        assert!(!seen.uri.contains("access_token"), "{}", seen.uri);
    }
}
