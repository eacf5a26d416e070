//! What browsers and MCP clients need: CORS per route (preflights answered by the gateway, its
//! own refusals readable cross-origin, the upstream's CORS fields replaced, `"upstream"`
//! pass-through), RFC 9728 metadata and `resource_metadata` in the challenge (read by the MCP
//! Python SDK's own models), and a real browser (Debian's headless Chromium, driven by
//! tests/browser/browser.py): a page on one loopback origin calling the gateway on another,
//! with and without credentials, reading a 401's body, and a WebSocket with `query_token`.
//! Needs python3 with selenium and mcp, chromium and chromium-driver (`.ci/test` installs them).

mod common;

use std::net::TcpListener as StdListener;

use bytes::Bytes;
use common::*;
use serde_json::{json, Value};

const APP: &str = "https://app.example.com";

fn config(app: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[auth]
leeway = "0s"
claim_headers = {{ role = "X-Auth-Role" }}

[[route]]
path = "/"
upstream = "{{upstream}}"

[[route]]
path = "/api"
upstream = "{{upstream}}"
cors = {{ origins = ["{app}", "{APP}"], methods = ["GET", "POST", "PUT"], headers = ["Authorization", "Content-Type"], expose = ["X-Upstream-Saw-User"], max_age = "10m" }}
resource_metadata = {{ resource = "http://127.0.0.1/api", scopes = ["api:read"], authorization_servers = ["https://sso.example.com"] }}

[[route]]
path = "/cred"
upstream = "{{upstream}}"
cors = {{ origins = ["{app}"], credentials = true }}

[[route]]
path = "/any"
upstream = "{{upstream}}"
auth = "public"
cors = {{ origins = ["*"] }}

[[route]]
path = "/own"
upstream = "{{upstream}}"
cors = "upstream"

[[route]]
path = "/__ws"
upstream = "{{upstream}}"
query_token = "access_token"
cors = {{ origins = ["{app}"] }}
"#
    )
}

fn h(got: &Got, name: &str) -> Option<String> {
    let all: Vec<String> = got
        .headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(all.len() <= 1, "{name}: {all:?}");
    all.into_iter().next()
}

#[tokio::test]
async fn preflights_are_answered_here_and_every_answer_carries_the_routes_cors() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config(APP), &up.url()).await;
    let alice = bearer(&token("alice"));

    // An allowed preflight: 204 from the gateway, no token, nothing forwarded.
    let ok = [
        ("origin", APP),
        ("access-control-request-method", "PUT"),
        (
            "access-control-request-headers",
            "authorization,content-type",
        ),
    ];
    let got = send(&gw, "OPTIONS", "/api/orders", &ok, Bytes::new()).await;
    assert_eq!(got.status, 204, "{}", got.body);
    assert_eq!(h(&got, "access-control-allow-origin").as_deref(), Some(APP));
    assert_eq!(
        h(&got, "access-control-allow-methods").as_deref(),
        Some("GET, POST, PUT")
    );
    assert_eq!(
        h(&got, "access-control-allow-headers").as_deref(),
        Some("authorization, content-type")
    );
    assert_eq!(h(&got, "access-control-max-age").as_deref(), Some("600"));
    assert_eq!(h(&got, "vary").as_deref(), Some("Origin"));
    assert_eq!(h(&got, "access-control-allow-credentials"), None);
    assert_eq!(up.count(), 0);
    // Any other preflight: 403 without CORS fields, nothing forwarded.
    for bad in [
        [
            ("origin", "https://evil.example"),
            ("access-control-request-method", "GET"),
            ("x", ""),
        ],
        [
            ("origin", APP),
            ("access-control-request-method", "DELETE"),
            ("x", ""),
        ],
        [
            ("origin", APP),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "x-custom"),
        ],
    ] {
        let got = send(&gw, "OPTIONS", "/api/orders", &bad, Bytes::new()).await;
        assert_eq!(got.status, 403, "{bad:?}");
        assert_eq!(h(&got, "access-control-allow-origin"), None, "{bad:?}");
        assert_eq!(up.count(), 0);
    }
    // A route without CORS: a preflight is a request like any other (no token: 401).
    let got = send(&gw, "OPTIONS", "/other", &ok, Bytes::new()).await;
    assert_eq!(got.status, 401);
    assert_eq!(h(&got, "access-control-allow-origin"), None);

    // The gateway's own 401 to a listed origin is readable; the challenge names the metadata.
    let got = get(&gw, "/api/orders", &[("origin", APP)]).await;
    assert_eq!(got.status, 401);
    assert_eq!(h(&got, "access-control-allow-origin").as_deref(), Some(APP));
    assert_eq!(
        h(&got, "access-control-expose-headers").as_deref(),
        Some("x-upstream-saw-user")
    );
    assert_eq!(h(&got, "vary").as_deref(), Some("Origin"));
    assert_eq!(
        h(&got, "www-authenticate").as_deref(),
        Some(
            r#"Bearer realm="jwtgate", resource_metadata="http://127.0.0.1/.well-known/oauth-protected-resource/api""#
        )
    );
    assert_eq!(got.json()["error"], "invalid_request");
    // To an unlisted origin: Vary only.
    let got = get(&gw, "/api/orders", &[("origin", "https://evil.example")]).await;
    assert_eq!(got.status, 401);
    assert_eq!(h(&got, "access-control-allow-origin"), None);
    assert_eq!(h(&got, "vary").as_deref(), Some("Origin"));
    // Forwarded: the upstream's own Access-Control-* fields are replaced by the route's.
    let got = get(
        &gw,
        "/api/orders",
        &[
            ("origin", APP),
            ("authorization", &alice),
            ("x-upstream-cors", "1"),
        ],
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(h(&got, "access-control-allow-origin").as_deref(), Some(APP));
    assert_eq!(h(&got, "access-control-allow-credentials"), None);
    assert_eq!(h(&got, "access-control-allow-methods"), None);
    assert_eq!(
        h(&got, "access-control-expose-headers").as_deref(),
        Some("x-upstream-saw-user")
    );
    assert_eq!(up.one().all("x-auth-user"), vec!["alice".to_owned()]);
    // On a route whose CORS is the upstream's, its fields pass.
    up.clear();
    let got = get(
        &gw,
        "/own/x",
        &[
            ("origin", APP),
            ("authorization", &alice),
            ("x-upstream-cors", "1"),
        ],
    )
    .await;
    assert_eq!(h(&got, "access-control-allow-origin").as_deref(), Some("*"));
    assert_eq!(h(&got, "vary"), None);
    // Credentials where configured; `*` for any origin without them.
    up.clear();
    let got = get(
        &gw,
        "/cred/x",
        &[("origin", APP), ("authorization", &alice)],
    )
    .await;
    assert_eq!(
        h(&got, "access-control-allow-credentials").as_deref(),
        Some("true")
    );
    let got = get(&gw, "/any/x", &[("origin", "https://anyone.example")]).await;
    assert_eq!(got.status, 200);
    assert_eq!(h(&got, "access-control-allow-origin").as_deref(), Some("*"));
    assert_eq!(h(&got, "access-control-allow-credentials"), None);

    // cors = "upstream": the preflight goes there without a token (client identity copies
    // stripped); any other method still needs its token.
    up.clear();
    let forged = [
        ("origin", APP),
        ("access-control-request-method", "POST"),
        ("x-auth-user", "root"),
    ];
    let got = send(&gw, "OPTIONS", "/own/x", &forged, Bytes::new()).await;
    assert_eq!(got.status, 200);
    let seen = up.one();
    assert_eq!(seen.method, "OPTIONS");
    assert!(seen.all("x-auth-user").is_empty());
    assert_eq!(get(&gw, "/own/x", &[("origin", APP)]).await.status, 401);
    // A "preflight" that carries an upgrade or a body is no preflight: it needs its token.
    up.clear();
    let upgrade = [
        ("origin", APP),
        ("access-control-request-method", "GET"),
        ("upgrade", "websocket"),
        ("connection", "upgrade"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-version", "13"),
    ];
    let got = send(&gw, "OPTIONS", "/own/__ws", &upgrade, Bytes::new()).await;
    assert_eq!(got.status, 401);
    let got = send(
        &gw,
        "OPTIONS",
        "/own/x",
        &forged[..2],
        Bytes::from_static(b"payload"),
    )
    .await;
    assert_eq!(got.status, 401);
    let got = send(
        &gw,
        "OPTIONS",
        "/api/x",
        &ok[..2],
        Bytes::from_static(b"payload"),
    )
    .await;
    assert_eq!(got.status, 401);
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn http2_answers_carry_the_same_cors_fields() {
    use http_body_util::{BodyExt, Full};
    let up = Upstream::start().await;
    let gw = Gateway::start(&config(APP), &up.url()).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    for (auth, status) in [(None, 401), (Some(bearer(&token("alice"))), 200)] {
        let mut req = http::Request::get(gw.url("/api/x")).header("origin", APP);
        if let Some(a) = &auth {
            req = req.header("authorization", a);
        }
        let res = client
            .request(req.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        assert_eq!(res.version(), http::Version::HTTP_2);
        assert_eq!(res.status().as_u16(), status);
        assert_eq!(res.headers()["access-control-allow-origin"], APP);
        assert_eq!(res.headers()["vary"], "Origin");
        let _ = res.into_body().collect().await;
    }
}

#[tokio::test]
async fn rfc_9728_metadata_is_public_and_what_the_mcp_sdk_reads() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config(APP), &up.url()).await;
    let got = get(&gw, "/.well-known/oauth-protected-resource/api", &[]).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(h(&got, "content-type").as_deref(), Some("application/json"));
    assert_eq!(
        got.json(),
        json!({
            "resource": "http://127.0.0.1/api",
            "authorization_servers": ["https://sso.example.com"],
            "bearer_methods_supported": ["header"],
            "scopes_supported": ["api:read"],
        })
    );
    assert_eq!(up.count(), 0);
    assert_eq!(
        send(
            &gw,
            "POST",
            "/.well-known/oauth-protected-resource/api",
            &[],
            Bytes::new()
        )
        .await
        .status,
        405
    );
    // Read by the MCP Python SDK's own model (what its client parses).
    let script = r#"
import sys, json
from mcp.shared.auth import ProtectedResourceMetadata
m = ProtectedResourceMetadata.model_validate_json(sys.stdin.read())
print(json.dumps({"resource": str(m.resource), "servers": [str(s) for s in m.authorization_servers],
                  "methods": m.bearer_methods_supported, "scopes": m.scopes_supported}))
"#;
    let out = python(
        &["-c", script],
        &[],
        &got.body,
        "the MCP Python SDK (pip install mcp)",
    );
    let read: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(read["resource"], "http://127.0.0.1/api");
    // (pydantic may or may not add a trailing '/' to a bare origin)
    assert_eq!(
        read["servers"][0].as_str().unwrap().trim_end_matches('/'),
        "https://sso.example.com"
    );
    assert_eq!(read["methods"], json!(["header"]));
    assert_eq!(read["scopes"], json!(["api:read"]));
    // And the SDK's own parser of the challenge finds the URL in the 401.
    let challenge = get(&gw, "/api/x", &[]).await;
    let header = h(&challenge, "www-authenticate").unwrap();
    let script = r#"
import sys
try:
    import httpx2 as httpx  # what mcp 2.x uses
except ImportError:
    import httpx
from mcp.client.auth.utils import extract_resource_metadata_from_www_auth
print(extract_resource_metadata_from_www_auth(httpx.Response(401, headers={"WWW-Authenticate": sys.stdin.read()})))
"#;
    let out = python(
        &["-c", script],
        &[],
        &header,
        "the MCP Python SDK (pip install mcp)",
    );
    assert_eq!(
        out.trim(),
        "http://127.0.0.1/.well-known/oauth-protected-resource/api"
    );
}

#[test]
fn metadata_and_cors_config_mistakes_are_all_reported() {
    let bad = r#"
[server]
listen = "127.0.0.1:0"
[[route]]
path = "/a"
upstream = "http://127.0.0.1:1"
cors = { origins = ["*"], credentials = true }
resource_metadata = { resource = "http://api.example.com/mcp" }
[[route]]
path = "/b"
upstream = "http://127.0.0.1:1"
cors = { origins = ["https://app.example.com/", "*"], methods = ["G ET"] }
[[route]]
path = "/c"
upstream = "http://127.0.0.1:1"
cors = "downstream"
resource_metadata = { scopes = ["x"] }
"#;
    let err = jwtgate::Config::from_toml(bad).unwrap_err().to_string();
    for want in [
        "route[0].cors.credentials",
        "route[0].resource_metadata.resource",
        "route[0].resource_metadata.authorization_servers",
        "route[1].cors.origins: \"https://app.example.com/\" is not an origin",
        "\"*\" stands alone",
        "route[1].cors.methods",
        "route[2].cors: \"downstream\"",
        "route[2].resource_metadata.resource: required",
    ] {
        assert!(err.contains(want), "{want:?} not in:\n{err}");
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A page on http://127.0.0.1:<port> (listed) and one on http://localhost:<port> (not) call the
/// gateway on another origin, as a browser does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_browser_reads_what_cors_allows_and_nothing_else() {
    let up = Upstream::start().await;
    let page = free_port();
    let app = format!("http://127.0.0.1:{page}");
    let gw = Gateway::start(&config(&app), &up.url()).await;
    let base = format!("http://127.0.0.1:{}", gw.addr.port());
    let ws = format!("ws://127.0.0.1:{}", gw.addr.port());
    let alice = token("alice");
    let plan = json!({
        "pages": {"a": format!("127.0.0.1:{page}"), "b": format!("localhost:{}", free_port())},
        "deadline_s": 60,
        "steps": [
            // 0: a preflighted call with the token, reading an exposed header.
            {"page": "a", "kind": "fetch", "url": format!("{base}/api/orders"), "method": "GET",
             "headers": {"Authorization": format!("Bearer {alice}")}, "credentials": "omit",
             "read_headers": ["x-upstream-saw-user", "x-upstream"]},
            // 1: no token: the 401's body is readable.
            {"page": "a", "kind": "fetch", "url": format!("{base}/api/orders"), "method": "GET",
             "headers": {}, "credentials": "omit", "read_headers": ["www-authenticate"]},
            // 2: with credentials, on the route that allows them.
            {"page": "a", "kind": "fetch", "url": format!("{base}/cred/x"), "method": "POST",
             "headers": {"Authorization": format!("Bearer {alice}"), "Content-Type": "application/json"},
             "body": "{}", "credentials": "include", "read_headers": []},
            // 3: with credentials where they are not allowed: blocked by the browser.
            {"page": "a", "kind": "fetch", "url": format!("{base}/api/orders"), "method": "GET",
             "headers": {"Authorization": format!("Bearer {alice}")}, "credentials": "include", "read_headers": []},
            // 4: an unlisted origin: the preflight is refused.
            {"page": "b", "kind": "fetch", "url": format!("{base}/api/orders"), "method": "GET",
             "headers": {"Authorization": format!("Bearer {alice}")}, "credentials": "omit", "read_headers": []},
            // 5: an unlisted origin, a simple request: its 401 stays unreadable.
            {"page": "b", "kind": "fetch", "url": format!("{base}/api/orders"), "method": "GET",
             "headers": {}, "credentials": "omit", "read_headers": []},
            // 6: a WebSocket cannot send a header: the token rides in the query.
            {"page": "a", "kind": "websocket", "url": format!("{ws}/__ws?access_token={alice}&room=1"),
             "send": null, "timeout_ms": 5000},
            // 7: the same without the token.
            {"page": "a", "kind": "websocket", "url": format!("{ws}/__ws?room=1"), "send": null, "timeout_ms": 5000},
        ]
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/browser.py");
    let out = tokio::task::spawn_blocking(move || {
        python(
            &[script],
            &[],
            &plan.to_string(),
            "selenium with chromium and chromium-driver",
        )
    })
    .await
    .unwrap();
    let out: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("not JSON: {out}"));
    let r = &out["results"];
    let show = |i: usize| format!("step {i}: {}", r[i]);
    assert_eq!(r[0]["ok"], true, "{}", show(0));
    assert_eq!(r[0]["status"], 200, "{}", show(0));
    assert_eq!(
        r[0]["headers"]["x-upstream-saw-user"],
        "alice",
        "{}",
        show(0)
    );
    assert_eq!(
        r[0]["headers"]["x-upstream"],
        Value::Null,
        "not exposed: {}",
        show(0)
    );
    assert_eq!(r[1]["status"], 401, "{}", show(1));
    let body: Value = serde_json::from_str(r[1]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["error"], "invalid_request", "{}", show(1));
    assert_eq!(r[2]["status"], 200, "{}", show(2));
    for i in [3, 4, 5] {
        assert_eq!(r[i]["status"], 0, "{}", show(i));
        assert!(
            r[i]["error"]
                .as_str()
                .unwrap_or("")
                .contains("Failed to fetch"),
            "{}",
            show(i)
        );
    }
    assert_eq!(r[6]["opened"], true, "{}", show(6));
    assert_eq!(r[7]["opened"], false, "{}", show(7));
    // What the upstream saw: the two calls that passed and the WebSocket, with the identity
    // and never the token.
    let seen = up.seen();
    let users: Vec<Vec<String>> = seen.iter().map(|s| s.all("x-auth-user")).collect();
    assert!(
        users.iter().all(|u| u == &vec!["alice".to_owned()]),
        "{users:?}"
    );
    let ws_seen = seen
        .iter()
        .find(|s| s.uri.starts_with("/__ws"))
        .expect("the WebSocket upgrade");
    assert_eq!(ws_seen.uri, "/__ws?room=1");
    // Steps 3 and 4 never left the browser (their preflights were refused); 5 was refused
    // by the gateway.
    assert_eq!(seen.len(), 3, "{seen:?}");
}
