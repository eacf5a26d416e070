//! Envoy's ext_authz gRPC API (`envoy.service.auth.v3.Authorization/Check`) on the check
//! listener, called by grpcio with stubs compiled from the same vendored protos
//! (`tests/grpc/ext_authz.py`; needs python3 with grpcio and grpcio-tools, which `.ci/test`
//! installs). The answers are compared with what inline mode does with the same requests.

mod common;

use common::*;
use serde_json::{json, Value};

/// The usual config with Envoy's gRPC API on a check listener and a route only checks reach;
/// `{trusted}` goes in `[server]`.
fn config() -> String {
    CONFIG.replace(
        "[auth]",
        "{trusted}\n[forward_auth]\nlisten = \"127.0.0.1:0\"\nproxy = \"envoy\"\ngrpc = true\n\n[auth]",
    ) + "\n[[route]]\npath = \"/internal\"\nauth = \"public\"\n"
}

/// Runs the client off the runtime that serves the gateway.
async fn calls(addr: std::net::SocketAddr, calls: Value) -> Vec<Value> {
    tokio::task::spawn_blocking(move || run_client(addr, calls))
        .await
        .unwrap()
}

fn run_client(addr: std::net::SocketAddr, calls: Value) -> Vec<Value> {
    let path = format!("{}/tests/grpc/ext_authz.py", env!("CARGO_MANIFEST_DIR"));
    let out = python(
        &[&path, &addr.to_string()],
        &[],
        &calls.to_string(),
        "grpcio and grpcio-tools",
    );
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn by_case(results: &[Value], case: &str) -> Value {
    results
        .iter()
        .find(|r| r["case"] == case)
        .unwrap_or_else(|| panic!("no result for {case}: {results:?}"))
        .clone()
}

#[tokio::test]
async fn check_calls_get_the_inline_decision_as_ok_or_denied_responses() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start_checking(&config().replace("{trusted}", ""), &upstream.url()).await;
    let admin = token_with(
        json!({"sub": "alice", "role": "admin", "exp": now() + 600}),
        jsonwebtoken::Algorithm::HS256,
        KEY,
    );
    let user = token("bob");
    let expired = token_with(
        json!({"sub": "bob", "exp": now() - 60}),
        jsonwebtoken::Algorithm::HS256,
        KEY,
    );
    let auth = |t: &str| json!({"authorization": format!("Bearer {t}")});
    let results = calls(
        gw.checks.unwrap(),
        json!([
            {"case": "admin", "method": "GET", "host": "app.example", "path": "/admin/x?q=1", "headers": auth(&admin)},
            {"case": "admin-raw", "method": "GET", "host": "app.example", "path": "/admin/x", "headers": auth(&admin), "raw": true},
            {"case": "user", "method": "POST", "host": "app.example", "path": "/orders", "headers": auth(&user)},
            {"case": "public-forged", "method": "GET", "host": "app.example", "path": "/public", "headers": {"x-auth-user": "admin"}},
            {"case": "internal", "method": "GET", "host": "app.example", "path": "/internal/x", "headers": {}},
            {"case": "none", "method": "GET", "host": "app.example", "path": "/orders", "headers": {}},
            {"case": "expired", "method": "GET", "host": "app.example", "path": "/orders", "headers": auth(&expired)},
            {"case": "forbidden", "method": "GET", "host": "app.example", "path": "/admin", "headers": auth(&user)},
            {"case": "grpc-original", "method": "POST", "host": "app.example", "path": "/pkg.Svc/Call",
             "headers": {"content-type": "application/grpc", "te": "trailers"}},
            {"case": "dot-dot", "method": "GET", "host": "app.example", "path": "/public/%2e%2e/admin", "headers": auth(&user)},
            {"case": "bad-path", "method": "GET", "host": "app.example", "path": "/public/\u{00e9}", "headers": {}},
            {"case": "spoofed-uri", "method": "GET", "host": "app.example", "path": "/admin",
             "headers": {"authorization": format!("Bearer {user}"), "x-forwarded-uri": "/public"}},
            {"case": "underscore", "method": "GET", "host": "app.example", "path": "/public", "headers": {"x_auth_user": "admin"}},
        ]),
    )
    .await;
    // Allowed: the identity inline mode injects, to overwrite; the empty ones to remove.
    for case in ["admin", "admin-raw"] {
        let r = by_case(&results, case);
        assert_eq!(
            (r["code"].as_str(), r["kind"].as_str()),
            (Some("OK"), Some("ok")),
            "{r}"
        );
        assert_eq!(r["status"], 0);
        assert_eq!(
            r["headers"],
            json!({"x-auth-user": "alice", "x-auth-role": "admin"}),
            "{r}"
        );
        assert_eq!(r["append"], json!([false, false]));
        assert_eq!(
            r["append_action"],
            json!(["OVERWRITE_IF_EXISTS_OR_ADD", "OVERWRITE_IF_EXISTS_OR_ADD"])
        );
        // No providers: no issuer to name, and the header is removed.
        assert_eq!(r["remove"], json!(["x-auth-issuer"]));
    }
    let r = by_case(&results, "user");
    assert_eq!(r["headers"], json!({"x-auth-user": "bob"}));
    assert_eq!(r["remove"], json!(["x-auth-role", "x-auth-issuer"]));
    for case in ["public-forged", "internal"] {
        let r = by_case(&results, case);
        assert_eq!(r["kind"], "ok", "{r}");
        assert_eq!(r["headers"], json!({}));
        assert_eq!(
            r["remove"],
            json!(["x-auth-user", "x-auth-role", "x-auth-issuer"]),
            "{r}"
        );
    }
    // Refused: the inline refusal, with the contract's code.
    let inline = |path: &'static str, headers: Vec<(&'static str, String)>| {
        let gw = &gw;
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            get(gw, path, &headers).await
        }
    };
    for (case, status, code, got) in [
        ("none", 401, 16, inline("/orders", vec![]).await),
        (
            "expired",
            401,
            16,
            inline("/orders", vec![("authorization", bearer(&expired))]).await,
        ),
        (
            "forbidden",
            403,
            7,
            inline("/admin", vec![("authorization", bearer(&user))]).await,
        ),
        (
            "dot-dot",
            403,
            7,
            inline(
                "/public/%2e%2e/admin",
                vec![("authorization", bearer(&user))],
            )
            .await,
        ),
    ] {
        let r = by_case(&results, case);
        assert_eq!(
            (r["kind"].as_str(), r["code"].as_str()),
            (Some("denied"), Some("OK")),
            "{r}"
        );
        assert_eq!(r["status"], code, "{r}");
        assert_eq!(r["http_status"], status, "{r}");
        assert_eq!(got.status, status, "{case} inline");
        // The same body, each with the request ID of its own request.
        let without_id = |body: &str| {
            let mut v: Value = serde_json::from_str(body).unwrap();
            let id = v.as_object_mut().unwrap().remove("request_id");
            assert!(id.as_ref().is_some_and(Value::is_string), "{case}: {body}");
            v
        };
        assert_eq!(
            without_id(r["body"].as_str().unwrap()),
            without_id(&got.body),
            "{case}"
        );
        assert_eq!(
            r["headers"]["www-authenticate"].as_str(),
            got.headers
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap()),
            "{case}"
        );
        assert_eq!(r["headers"]["content-type"], "application/json");
    }
    // A gRPC original is denied with a 401, never an OK.
    let r = by_case(&results, "grpc-original");
    assert_eq!(
        (r["kind"].as_str(), r["http_status"].as_u64()),
        (Some("denied"), Some(401))
    );
    for (case, status, code) in [
        ("bad-path", 400, 3),
        ("spoofed-uri", 400, 3),
        ("underscore", 400, 3),
    ] {
        let r = by_case(&results, case);
        assert_eq!(
            (
                r["kind"].as_str(),
                r["http_status"].as_u64(),
                r["status"].as_i64()
            ),
            (Some("denied"), Some(status), Some(code)),
            "{r}"
        );
    }
    // Checks never reach the upstream (and the inline requests above were all refused).
    assert_eq!(upstream.count(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn a_check_call_from_outside_trusted_proxies_is_denied_403_code_7() {
    let upstream = Upstream::start().await;
    let toml = config().replace("{trusted}", "trusted_proxies = [\"10.0.0.0/8\"]");
    let gw = Gateway::start_checking(&toml, &upstream.url()).await;
    let results = calls(
        gw.checks.unwrap(),
        json!([{"case": "public", "method": "GET", "host": "app.example", "path": "/public", "headers": {}}]),
    )
    .await;
    let r = by_case(&results, "public");
    assert_eq!(
        (
            r["kind"].as_str(),
            r["http_status"].as_u64(),
            r["status"].as_i64()
        ),
        (Some("denied"), Some(403), Some(7)),
        "{r}"
    );
    gw.stop().await;
}

/// Calls that carry no usable `CheckRequest` end with their gRPC status and no answer that
/// Envoy could read as "allowed": compressed (12), over 1 MiB by its length prefix (8, refused
/// before it is read), two messages or a cut one (3), not gRPC at all (415).
#[tokio::test]
async fn calls_without_one_usable_check_request_end_with_their_grpc_status() {
    use bytes::{BufMut, Bytes, BytesMut};
    let upstream = Upstream::start().await;
    let gw = Gateway::start_checking(&config().replace("{trusted}", ""), &upstream.url()).await;
    let tcp = tokio::net::TcpStream::connect(gw.checks.unwrap())
        .await
        .unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let frame = |flag: u8, len: u32, body: &[u8]| {
        let mut b = BytesMut::new();
        b.put_u8(flag);
        b.put_u32(len);
        b.put_slice(body);
        b.freeze()
    };
    let cases: [(&str, &str, Bytes, Option<&str>, u16); 6] = [
        (
            "compressed",
            "application/grpc",
            frame(1, 0, b""),
            Some("12"),
            200,
        ),
        (
            "oversized",
            "application/grpc",
            frame(0, 2 << 20, b""),
            Some("8"),
            200,
        ),
        (
            "two",
            "application/grpc",
            [frame(0, 0, b""), frame(0, 0, b"")].concat().into(),
            Some("3"),
            200,
        ),
        (
            "cut",
            "application/grpc",
            frame(0, 10, b"abc"),
            Some("3"),
            200,
        ),
        (
            "garbage",
            "application/grpc",
            frame(0, 3, b"\xff\xff\xff"),
            Some("3"),
            200,
        ),
        (
            "json",
            "application/json",
            Bytes::from_static(b"{}"),
            None,
            415,
        ),
    ];
    for (case, content_type, body, grpc_status, status) in cases {
        let req = http::Request::post(format!(
            "http://{}/envoy.service.auth.v3.Authorization/Check",
            gw.checks.unwrap()
        ))
        .header("content-type", content_type)
        .header("te", "trailers")
        .body(())
        .unwrap();
        let mut client = client.clone().ready().await.unwrap();
        let (response, mut send) = client.send_request(req, false).unwrap();
        send.send_data(body, true).unwrap();
        let response = within(case, response).await.unwrap();
        assert_eq!(response.status(), status, "{case}");
        let (parts, mut body) = response.into_parts();
        let mut data = 0;
        while let Some(chunk) = body.data().await {
            data += chunk.unwrap().len();
        }
        let trailers = body.trailers().await.unwrap();
        let code = parts
            .headers
            .get("grpc-status")
            .or(trailers.as_ref().and_then(|t| t.get("grpc-status")))
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(code.as_deref(), grpc_status, "{case}");
        assert_eq!(data, 0, "{case}: no CheckResponse");
    }
    gw.stop().await;
}
