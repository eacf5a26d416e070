//! `X-Request-Id`: a trusted peer's value (1 to 128 visible ASCII characters) is kept, any other
//! request gets a new UUID; the ID reaches the upstream exactly once, comes back on every answer
//! (the upstream's, the gateway's own refusals, HTTP/2, forward-auth checks) and is in JSON error
//! bodies.

mod common;

use common::*;
use http_body_util::BodyExt;
use serde_json::Value;

const ROUTES: &str =
    "[[route]]\npath = \"/api\"\nupstream = \"{upstream}\"\n[[route]]\npath = \"/dead\"\nupstream = \"http://127.0.0.1:1\"\n";

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
        && s.as_bytes()[14] == b'4'
}

fn answer_id(got: &Got) -> String {
    let ids: Vec<_> = got.headers.get_all("x-request-id").iter().collect();
    assert_eq!(ids.len(), 1, "{:?}", got.headers);
    ids[0].to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_peers_id_is_kept_and_passed_on() {
    let up = Upstream::start().await;
    // Loopback is trusted by default.
    let gw = Gateway::start(ROUTES, &up.url()).await;
    let t = token("alice");
    let got = get(
        &gw,
        "/api/a",
        &[
            ("authorization", &bearer(&t)),
            ("x-request-id", "edge-42/a.b"),
        ],
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(answer_id(&got), "edge-42/a.b");
    assert_eq!(up.one().all("x-request-id"), ["edge-42/a.b"]);
    up.clear();

    // None sent: one is made up, the same for the upstream and the client.
    let got = get(&gw, "/api/b", &[("authorization", &bearer(&t))]).await;
    let id = answer_id(&got);
    assert!(is_uuid(&id), "{id}");
    assert_eq!(up.one().all("x-request-id"), std::slice::from_ref(&id));
    up.clear();
    let again = answer_id(&get(&gw, "/api/b", &[("authorization", &bearer(&t))]).await);
    assert_ne!(again, id, "every request gets its own");
    up.clear();

    // Not worth keeping, even from a trusted peer: replaced, never passed on as sent.
    let long = "x".repeat(129);
    for bad in [long.as_str(), "two words", "caf\u{e9}"] {
        let mut req = http::Request::builder()
            .uri(gw.url("/api/c"))
            .header("authorization", bearer(&t));
        req = req.header(
            "x-request-id",
            http::HeaderValue::from_bytes(bad.as_bytes()).unwrap(),
        );
        let res = client()
            .request(
                req.body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let got = read(res).await;
        let id = answer_id(&got);
        assert!(is_uuid(&id), "{bad:?} -> {id}");
        assert_eq!(up.one().all("x-request-id"), [id]);
        up.clear();
    }
    // Two of them: neither is believed.
    let raw_answer = raw(
        gw.addr,
        format!(
            "GET /api/d HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\nX-Request-Id: one\r\nx-request-id: two\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert!(raw_answer.starts_with("HTTP/1.1 200"), "{raw_answer}");
    let seen = up.one().all("x-request-id");
    assert_eq!(seen.len(), 1);
    assert!(is_uuid(&seen[0]), "{seen:?}");
    up.clear();

    // An upstream's own X-Request-Id does not contradict the gateway's: the gateway's comes
    // back (the upstream got it).
    let got = get(
        &gw,
        "/api/e",
        &[("authorization", &bearer(&t)), ("x-request-id", "mine")],
    )
    .await;
    assert_eq!(answer_id(&got), "mine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_peers_id_is_replaced() {
    let up = Upstream::start().await;
    let config = format!("[server]\ntrusted_proxies = [\"10.0.0.0/8\"]\n{ROUTES}");
    let gw = Gateway::start(&config, &up.url()).await;
    let got = get(
        &gw,
        "/api/a",
        &[
            ("authorization", &bearer(&token("alice"))),
            ("x-request-id", "forged-by-client"),
        ],
    )
    .await;
    assert_eq!(got.status, 200);
    let id = answer_id(&got);
    assert!(is_uuid(&id), "{id}");
    assert_eq!(up.one().all("x-request-id"), [id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_the_id_in_the_field_and_the_body() {
    let up = Upstream::start().await;
    let gw = Gateway::start(ROUTES, &up.url()).await;
    // 401, 404, 502, each with the id in the field and in the JSON body.
    for (path, auth, status) in [
        ("/api/x", None, 401),
        ("/nowhere", None, 404),
        ("/dead/x", Some(bearer(&token("alice"))), 502),
    ] {
        let mut headers = vec![("x-request-id", "trace-me-1")];
        if let Some(a) = &auth {
            headers.push(("authorization", a));
        }
        let got = get(&gw, path, &headers).await;
        assert_eq!(got.status, status, "{path}: {}", got.body);
        assert_eq!(answer_id(&got), "trace-me-1", "{path}");
        let body: Value = serde_json::from_str(&got.body).unwrap();
        assert_eq!(body["request_id"], "trace-me-1", "{path}: {body}");
        assert!(body["error"].is_string(), "{body}");
        // The length the gateway announced is the body's.
        if let Some(len) = got.headers.get("content-length") {
            assert_eq!(len.to_str().unwrap(), got.body.len().to_string());
        }
    }
    // A malformed request gets one too (made up).
    let answer = raw(
        gw.addr,
        b"GET /api/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let id = answer
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .unwrap_or_else(|| panic!("{answer}"));
    assert!(
        answer.contains(&format!("\"request_id\":\"{id}\"")),
        "{answer}"
    );
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http2_and_in_forward_auth_answers() {
    let up = Upstream::start().await;
    let gw = Gateway::start_checking(
        &format!("[forward_auth]\nproxy = \"nginx\"\n{ROUTES}"),
        &up.url(),
    )
    .await;
    // HTTP/2 (h2c, prior knowledge).
    let h2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let res = h2
        .request(
            http::Request::builder()
                .uri(gw.url("/api/h2"))
                .header("authorization", bearer(&token("alice")))
                .header("x-request-id", "h2-id")
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-request-id"], "h2-id");
    let _ = res.into_body().collect().await;
    assert_eq!(up.one().all("x-request-id"), ["h2-id"]);
    // HTTP/2 refusal: the field and the body.
    let res = h2
        .request(
            http::Request::builder()
                .uri(gw.url("/api/h2"))
                .header("x-request-id", "h2-refused")
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["x-request-id"], "h2-refused");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["request_id"], "h2-refused");

    // A forward-auth check: the proxy's id is kept (the proxy is trusted) and returned.
    let checks = gw.checks.unwrap();
    for (auth, status) in [(Some(bearer(&token("alice"))), 200), (None, 401)] {
        let mut head = format!(
            "GET /auth HTTP/1.1\r\nHost: gw\r\nX-Original-URI: /api/x\r\nX-Original-Method: GET\r\nX-Forwarded-Host: shop\r\nX-Request-Id: nginx-{status}\r\nConnection: close\r\n"
        );
        if let Some(a) = auth {
            head.push_str(&format!("Authorization: {a}\r\n"));
        }
        head.push_str("\r\n");
        let answer = raw(checks, head.as_bytes()).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{answer}"
        );
        assert!(
            answer.contains(&format!("x-request-id: nginx-{status}\r\n")),
            "{answer}"
        );
    }
}
