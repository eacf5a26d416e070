//! gRPC clients refused by the gateway get gRPC answers (CONTRACT.md, "HTTP/2 upstreams and
//! gRPC"): a real client (grpcio, tests/grpc/client.py) sees UNAUTHENTICATED, PERMISSION_DENIED,
//! UNIMPLEMENTED and UNAVAILABLE with the JSON body's description as the message. Needs python3
//! with grpcio (`.ci/test` installs it); fails, rather than skips, without it.

mod common;

use std::process::Command;

use common::*;
use serde_json::{json, Value};

/// Runs the gRPC client `script` (in tests/grpc/) against `addr` with `calls` on its stdin;
/// one JSON value per line of its output.
fn python_client(script: &str, addr: std::net::SocketAddr, calls: Value) -> Vec<Value> {
    let path = format!("{}/tests/grpc/{script}", env!("CARGO_MANIFEST_DIR"));
    let addr = addr.to_string();
    common::python(&[&path, &addr], &[], &calls.to_string(), "grpcio")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn grpc_calls(addr: std::net::SocketAddr, calls: Value) -> Vec<Value> {
    python_client("client.py", addr, calls)
}

#[tokio::test]
async fn refused_grpc_calls_get_grpc_status_codes_and_messages() {
    let up = Upstream::start().await;
    let config = r#"
[server]
listen = "127.0.0.1:0"
connect_timeout = "300ms"
[auth]
leeway = "0s"
[[route]]
path = "/pkg.Svc"
upstream = "{upstream}"
[[route]]
path = "/pkg.Admin"
upstream = "{upstream}"
require = { role = "admin" }
[[route]]
path = "/pkg.Down"
upstream = "http://127.0.0.1:1"
"#;
    let gw = Gateway::start(config, &up.url()).await;
    let expired = token_with(
        json!({"sub": "eve", "exp": now() - 60}),
        jsonwebtoken::Algorithm::HS256,
        KEY,
    );
    let calls = json!([
        {"case": "no token", "method": "/pkg.Svc/Call"},
        {"case": "expired", "method": "/pkg.Svc/Call", "token": expired},
        {"case": "no role", "method": "/pkg.Admin/Call", "token": token("alice")},
        {"case": "no route", "method": "/other.Svc/Call", "token": token("alice")},
        {"case": "upstream down", "method": "/pkg.Down/Call", "token": token("alice")},
    ]);
    // The client blocks; the gateway runs on this test's runtime meanwhile.
    let addr = gw.addr;
    let got = tokio::task::spawn_blocking(move || grpc_calls(addr, calls))
        .await
        .unwrap();
    let want = [
        ("no token", "UNAUTHENTICATED", "bearer token required"),
        ("expired", "UNAUTHENTICATED", "token expired"),
        (
            "no role",
            "PERMISSION_DENIED",
            "token lacks a required role claim",
        ),
        ("no route", "UNIMPLEMENTED", "no route for this request"),
        ("upstream down", "UNAVAILABLE", "upstream unavailable"),
    ];
    assert_eq!(got.len(), want.len(), "{got:?}");
    for (g, (case, code, details)) in got.iter().zip(want) {
        assert_eq!(g["case"], case);
        assert_eq!(g["code"], code, "{case}: {g}");
        assert_eq!(g["details"], details, "{case}: {g}");
    }
    // Refused calls reached nothing.
    assert_eq!(up.count(), 0);
    // The same refusal without a gRPC content type is the usual JSON answer.
    let got = get(&gw, "/pkg.Svc/Call", &[]).await;
    assert_eq!(got.status, 401);
    assert_eq!(got.json()["error_description"], "bearer token required");
    // gRPC-Web over HTTP/1.1 gets the gRPC form too.
    let raw = raw(
        gw.addr,
        b"POST /pkg.Svc/Call HTTP/1.1\r\nHost: x\r\ncontent-type: application/grpc-web+proto\r\ncontent-length: 0\r\n\r\n",
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    let lower = raw.to_ascii_lowercase();
    assert!(lower.contains("grpc-status: 16\r\n"), "{raw}");
    assert!(
        lower.contains("grpc-message: bearer token required\r\n"),
        "{raw}"
    );
    assert!(lower.contains("cache-control: no-store\r\n"), "{raw}");
    // Only a POST with a gRPC content type is a gRPC call: a GET for a script with a made-up
    // content type is not answered with a cacheable 200.
    for head in [
        "GET /pkg.Svc/main.js HTTP/1.1\r\nHost: x\r\ncontent-type: application/grpcXYZ\r\n\r\n",
        "GET /pkg.Svc/main.js HTTP/1.1\r\nHost: x\r\ncontent-type: application/grpc\r\n\r\n",
        "POST /pkg.Svc/main.js HTTP/1.1\r\nHost: x\r\ncontent-type: application/grpc; x=1\r\ncontent-length: 0\r\n\r\n",
    ] {
        let answer = common::raw(gw.addr, head.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{head}: {answer}");
        let lower = answer.to_ascii_lowercase();
        assert!(lower.contains("cache-control: no-store\r\n"), "{answer}");
        assert!(!lower.contains("grpc-status"), "{answer}");
    }
    // The gRPC-form refusals are counted under their own status, not the 200 on the wire.
    let metrics = gw.gateway.render_metrics();
    // ... and under their gRPC code, over HTTP/2 and HTTP/1.1 alike: the two calls without a
    // valid token and the gRPC-Web one.
    assert!(
        metrics.lines().any(|l| l
            == "jwtgate_grpc_requests_total{route=\"/pkg.Svc\",method=\"-\",status=\"401\",grpc_status=\"16\"} 3"),
        "{metrics}"
    );
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("jwtgate_grpc_requests_total{")
                && l.contains("grpc_status=\"-\"")),
        "{metrics}"
    );
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("jwtgate_requests_total{") && l.contains("status=\"200\"")),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("jwtgate_requests_total{") && l.contains("status=\"401\"")),
        "{metrics}"
    );
}

/// The gRPC upstream (tests/grpc/server.py), stopped when dropped.
struct GrpcServer {
    child: std::process::Child,
    port: u16,
}

impl GrpcServer {
    fn start() -> GrpcServer {
        GrpcServer::start_with(&[])
    }

    /// The server, with `env` set.
    fn start_with(env: &[(&str, &str)]) -> GrpcServer {
        use std::io::BufRead;
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grpc/server.py");
        let mut child = Command::new(&python)
            .arg(script)
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = serde_json::from_str::<Value>(&line).expect("the server's port")["port"]
            .as_u64()
            .unwrap() as u16;
        GrpcServer { child, port }
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Calls through the gateway with tests/grpc/calls.py.
fn run_calls(addr: std::net::SocketAddr, calls: Value) -> Vec<Value> {
    python_client("calls.py", addr, calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_pass_to_an_h2c_upstream_with_identity_and_trailers() {
    let server = GrpcServer::start();
    let config = format!(
        "[auth]\nclaim_headers = {{ role = \"X-Auth-Role\" }}\n[[route]]\npath = \"/test.Echo\"\nupstream = \"h2c://127.0.0.1:{}\"\n",
        server.port
    );
    let gw = Gateway::start(&config, "").await;
    let alice = token_with(
        json!({"sub": "alice", "role": "user", "exp": now() + 600}),
        jsonwebtoken::Algorithm::HS256,
        KEY,
    );
    let calls = json!([
        {"case": "unary", "kind": "unary", "method": "/test.Echo/Unary", "token": alice,
         "metadata": [["x-auth-user", "mallory"], ["x-auth-user-bin", "bWFsbG9yeQ"]]},
        {"case": "large", "kind": "unary", "method": "/test.Echo/Unary", "token": alice, "size": 4194304},
        {"case": "stream", "kind": "stream", "method": "/test.Echo/ServerStream", "token": alice},
        {"case": "error", "kind": "unary", "method": "/test.Echo/Fail", "token": alice},
        {"case": "no token", "kind": "unary", "method": "/test.Echo/Unary"},
        {"case": "client stream", "kind": "client_stream", "method": "/test.Echo/ClientStream", "token": alice, "count": 20},
        {"case": "bidi", "kind": "bidi", "method": "/test.Echo/Bidi", "token": alice, "count": 5},
        {"case": "deadline", "kind": "deadline", "method": "/test.Echo/Slow", "token": alice, "timeout": 0.5},
        {"case": "300 at once", "kind": "concurrent", "method": "/test.Echo/Unary", "token": alice, "count": 300},
        {"case": "deadline seen", "kind": "deadline", "method": "/test.Echo/Slow", "token": alice, "timeout": 5},
        {"case": "cancel", "kind": "cancel", "method": "/test.Echo/Wait", "token": alice},
        {"case": "stats", "kind": "unary", "method": "/test.Echo/Stats", "token": alice},
    ]);
    let addr = gw.addr;
    let got = tokio::task::spawn_blocking(move || run_calls(addr, calls))
        .await
        .unwrap();
    assert_eq!(got.len(), 12, "{got:?}");
    assert_eq!(got[0]["code"], "OK", "{}", got[0]);
    let echo: Value = serde_json::from_str(got[0]["messages"][0].as_str().unwrap()).unwrap();
    // Every value the upstream got: the gateway's only, the client's copies gone.
    assert_eq!(
        echo["user"],
        json!(["alice"]),
        "the identity the upstream read"
    );
    assert_eq!(
        echo["user_bin"],
        json!([]),
        "a client's -bin copy reached the upstream"
    );
    assert_eq!(echo["role"], json!(["user"]));
    assert_eq!(got[0]["trailing"]["x-trail"], "t1", "trailing metadata");
    let echo: Value = serde_json::from_str(got[1]["messages"][0].as_str().unwrap()).unwrap();
    assert_eq!(
        (got[1]["code"].as_str(), echo["len"].as_u64()),
        (Some("OK"), Some(4194304))
    );
    assert_eq!(got[2]["code"], "OK", "{}", got[2]);
    assert_eq!(got[2]["messages"], json!(["part0", "part1", "part2"]));
    assert_eq!(got[3]["code"], "NOT_FOUND", "{}", got[3]);
    assert_eq!(got[3]["details"], "gone");
    assert_eq!(got[3]["trailing"]["x-why"], "testing");
    assert_eq!(got[4]["code"], "UNAUTHENTICATED");
    assert_eq!(got[5]["code"], "OK", "{}", got[5]);
    let counted: Value = serde_json::from_str(got[5]["messages"][0].as_str().unwrap()).unwrap();
    assert_eq!(counted, json!({"count": 20, "bytes": 20000}));
    assert_eq!(got[6]["code"], "OK", "{}", got[6]);
    assert_eq!(
        got[6]["messages"],
        json!(["echo:m0", "echo:m1", "echo:m2", "echo:m3", "echo:m4"])
    );
    // grpc-timeout reaches the server (its deadline), and the client's deadline ends the call.
    assert_eq!(got[7]["code"], "DEADLINE_EXCEEDED", "{}", got[7]);
    assert_eq!(got[8]["code"], "OK", "{}", got[8]);
    assert_eq!(got[8]["messages"], json!(["300"]));
    // The server saw the client's deadline (grpc-timeout passed on).
    assert_eq!(got[9]["code"], "OK", "{}", got[9]);
    let seen: Value = serde_json::from_str(got[9]["messages"][0].as_str().unwrap()).unwrap();
    let remaining = seen["remaining"]
        .as_f64()
        .expect("a deadline reached the server");
    assert!((3.0..=5.5).contains(&remaining), "{remaining}");
    // A client's cancellation reaches the server through the gateway.
    assert_eq!(got[10]["code"], "CANCELLED", "{}", got[10]);
    let stats: Value = serde_json::from_str(got[11]["messages"][0].as_str().unwrap()).unwrap();
    assert_eq!(
        stats["cancelled"], 1,
        "the server did not see the cancellation"
    );
    // Per-method metrics, with grpc-status next to the HTTP status (counted when each call
    // ended: the statuses come in trailers).
    let metrics = gw.gateway.render_metrics();
    let count = |labels: &str| -> u64 {
        let prefix = format!("jwtgate_grpc_requests_total{{{labels}}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
            .parse()
            .unwrap()
    };
    let route = "route=\"/test.Echo\"";
    // 1 + the 4 MiB call + 300 at once.
    assert_eq!(
        count(&format!(
            "{route},method=\"/test.Echo/Unary\",status=\"200\",grpc_status=\"0\""
        )),
        302
    );
    assert_eq!(
        count(&format!(
            "{route},method=\"/test.Echo/Fail\",status=\"200\",grpc_status=\"5\""
        )),
        1
    );
    assert_eq!(
        count(&format!(
            "{route},method=\"/test.Echo/ServerStream\",status=\"200\",grpc_status=\"0\""
        )),
        1
    );
    assert_eq!(
        count(&format!(
            "{route},method=\"/test.Echo/Bidi\",status=\"200\",grpc_status=\"0\""
        )),
        1
    );
    // Refused by the gateway: UNAUTHENTICATED, under method "-" (a refused client does not
    // name label values).
    assert_eq!(
        count(&format!(
            "{route},method=\"-\",status=\"401\",grpc_status=\"16\""
        )),
        1
    );
    assert!(
        !metrics.contains("method=\"/test.Echo/Unary\",status=\"200\",grpc_status=\"16\""),
        "{metrics}"
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_lost_mid_call_ends_it_unavailable() {
    let server = GrpcServer::start();
    let config = format!(
        "[[route]]\npath = \"/test.Echo\"\nupstream = \"h2c://127.0.0.1:{}\"\n",
        server.port
    );
    let gw = Gateway::start(&config, "").await;
    let calls = json!([
        // The server sends one message, then dies.
        {"case": "dies", "kind": "stream", "method": "/test.Echo/Die", "token": token("alice")},
        // Nobody listens any more: refused with 14 too.
        {"case": "after", "kind": "unary", "method": "/test.Echo/Unary", "token": token("alice")},
    ]);
    let addr = gw.addr;
    let got = tokio::task::spawn_blocking(move || run_calls(addr, calls))
        .await
        .unwrap();
    assert_eq!(got[0]["code"], "UNAVAILABLE", "{}", got[0]);
    assert_eq!(got[0]["details"], "upstream unavailable");
    assert_eq!(got[1]["code"], "UNAVAILABLE", "{}", got[1]);
    assert_eq!(got[1]["details"], "upstream unavailable");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_server_sending_goaway_loses_no_call() {
    // grpc-core sends GOAWAY on connections older than max_connection_age (here 200 ms):
    // calls keep coming through the gateway for about 2 s, over ten or so connections.
    let server = GrpcServer::start_with(&[("GRPC_MAX_CONNECTION_AGE_MS", "200")]);
    let config = format!(
        "[[route]]\npath = \"/test.Echo\"\nupstream = \"h2c://127.0.0.1:{}\"\n",
        server.port
    );
    let gw = Gateway::start(&config, "").await;
    let calls = json!([
        {"case": "through goaways", "kind": "sequence", "method": "/test.Echo/Unary",
         "token": token("alice"), "threads": 4, "count": 100, "pause": 0.02},
    ]);
    let addr = gw.addr;
    let got = tokio::task::spawn_blocking(move || run_calls(addr, calls))
        .await
        .unwrap();
    assert_eq!(got[0]["messages"], json!(["400"]), "{}", got[0]);
    let connections = got[0]["trailing"]["connections"].as_u64().unwrap();
    assert!(
        connections >= 4,
        "only {connections} connections: no GOAWAY was sent"
    );
    drop(server);
}

/// The `method` label cannot be blown up: 1,100 calls to made-up methods (some with paths of
/// 2 KB) count as `other` and leave the label set small, and real methods called afterwards
/// still get labels of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_never_fill_the_method_label() {
    let server = GrpcServer::start();
    let config = format!(
        "[[route]]\npath = \"/test.Echo\"\nupstream = \"h2c://127.0.0.1:{}\"\n",
        server.port
    );
    let gw = Gateway::start(&config, "").await;
    let alice = token("alice");
    let mut calls: Vec<Value> = (0..1100)
        .map(|i| {
            let name = if i % 10 == 0 {
                format!("Long{i}{}", "x".repeat(2048))
            } else {
                format!("Made{i}")
            };
            json!({"case": format!("junk {i}"), "kind": "unary",
                   "method": format!("/test.Echo/{name}"), "token": alice})
        })
        .collect();
    calls.push(
        json!({"case": "real", "kind": "unary", "method": "/test.Echo/Unary", "token": alice}),
    );
    calls.push(json!({"case": "real stream", "kind": "stream", "method": "/test.Echo/ServerStream", "token": alice}));
    let addr = gw.addr;
    let got = tokio::task::spawn_blocking(move || run_calls(addr, Value::Array(calls)))
        .await
        .unwrap();
    assert_eq!(got.len(), 1102);
    assert!(
        got[..1100].iter().all(|c| c["code"] == "UNIMPLEMENTED"),
        "{:?}",
        got.iter().find(|c| c["code"] != "UNIMPLEMENTED")
    );
    assert_eq!(got[1100]["code"], "OK", "{}", got[1100]);
    assert_eq!(got[1101]["code"], "OK", "{}", got[1101]);
    let metrics = gw.gateway.render_metrics();
    let grpc_lines: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("jwtgate_grpc_requests_total{"))
        .collect();
    assert!(
        grpc_lines.len() <= 4,
        "made-up methods got labels: {} series",
        grpc_lines.len()
    );
    assert!(
        metrics.len() < 64 * 1024,
        "/metrics is {} bytes",
        metrics.len()
    );
    let route = "route=\"/test.Echo\"";
    let count = |labels: &str| -> Option<u64> {
        let prefix = format!("jwtgate_grpc_requests_total{{{route},{labels}}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|v| v.parse().unwrap())
    };
    assert_eq!(
        count("method=\"other\",status=\"200\",grpc_status=\"12\""),
        Some(1100),
        "{metrics}"
    );
    assert_eq!(
        count("method=\"/test.Echo/Unary\",status=\"200\",grpc_status=\"0\""),
        Some(1)
    );
    assert_eq!(
        count("method=\"/test.Echo/ServerStream\",status=\"200\",grpc_status=\"0\""),
        Some(1)
    );
    drop(server);
}
