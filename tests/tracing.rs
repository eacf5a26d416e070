//! OpenTelemetry traces, end to end with the binary and a real OTLP receiver
//! (tests/common/otlp.rs, on the official `opentelemetry-proto` definitions, over HTTP and
//! gRPC): a `SERVER` span per request and per forward-auth check with the HTTP semantic
//! conventions, a `CLIENT` child span for the upstream exchange whose id is the upstream's
//! `traceparent` parent, the client's `traceparent` followed (sampled or not) or, when
//! malformed, ignored; refusals and upstream failures traced; no token in any attribute; and a
//! collector that is down or slow changes nothing for traffic.

mod common;
#[path = "common/otlp.rs"]
mod otlp;

use std::time::{Duration, Instant};

use common::process::{exchange, jwtgate, listen_addr, Running};
use common::*;
use otlp::{Collector, Span};
use serde_json::Value;

const SERVER: i32 = 2;
const CLIENT: i32 = 3;

fn field<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let head = answer.split("\r\n\r\n").next().unwrap_or("");
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Starts the binary with `config` (JSON logs) and `env`; returns it and its inline address.
fn start(dir: &std::path::Path, config: &str, env: &[(&str, &str)]) -> (Running, String) {
    let path = dir.join("jwtgate.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = jwtgate(dir);
    cmd.args(["--config", path.to_str().unwrap()])
        .env("JWT_SECRET_KEY", KEY)
        .env("JWTGATE_LOG_FORMAT", "json");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut run = Running::start(cmd);
    let inline = listen_addr(&run.wait_for("\"listening\""));
    (run, inline)
}

fn server_span(spans: &[Span]) -> &Span {
    let servers: Vec<&Span> = spans.iter().filter(|s| s.kind == SERVER).collect();
    assert_eq!(servers.len(), 1, "{spans:#?}");
    servers[0]
}

fn random_hex(n: usize) -> String {
    (0..n)
        .map(|i| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos() as usize;
            b"0123456789abcdef"[(nanos / 7 + i * 13 + nanos % (i + 3)) % 16] as char
        })
        .collect()
}

/// A fresh, valid trace id (never all zero).
fn trace_id() -> String {
    format!("1{}", random_hex(31))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_follow_requests_refusals_and_failures_over_otlp_http() {
    let collector = Collector::http(Duration::ZERO).await;
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         [telemetry]\notlp_endpoint = \"{}\"\nservice_name = \"edge-test\"\n\
         [[route]]\npath = \"/api\"\nupstream = \"{}\"\nquery_token = \"access_token\"\n\
         [[route]]\npath = \"/dead\"\nupstream = \"http://127.0.0.1:1\"\n",
        collector.url(),
        up.url()
    );
    let (mut run, inline) = start(dir.path(), &config, &[]);
    let token = token("alice");

    // 1. A request with a sampled parent: two spans, the upstream's parent is the CLIENT span.
    let t1 = trace_id();
    let p1 = random_hex(16);
    let answer = exchange(
        &inline,
        &format!(
            "GET /api/orders?x=1 HTTP/1.1\r\nHost: shop\r\nAuthorization: Bearer {token}\r\n\
             traceparent: 00-{t1}-{p1}-01\r\ntracestate: vendor=abc\r\nX-Request-Id: req-123\r\n"
        ),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(field(&answer, "x-request-id"), Some("req-123"));
    let seen = up.one();
    up.clear();
    let upstream_parent = seen.all("traceparent");
    assert_eq!(upstream_parent.len(), 1, "{:?}", seen.headers);
    let parts: Vec<&str> = upstream_parent[0].split('-').collect();
    assert_eq!((parts[0], parts[1], parts[3]), ("00", t1.as_str(), "01"));
    assert_ne!(parts[2], p1, "the upstream's parent is the gateway's span");
    assert_eq!(seen.all("tracestate"), ["vendor=abc"]);
    assert_eq!(seen.all("x-request-id"), ["req-123"]);
    let spans = collector.trace(&t1, 2).await;
    let server = server_span(&spans);
    let client = spans
        .iter()
        .find(|s| s.kind == CLIENT)
        .expect("a CLIENT span");
    assert_eq!(server.parent_span_id, p1);
    assert_eq!(client.parent_span_id, server.span_id);
    assert_eq!(
        client.span_id, parts[2],
        "the upstream's parent is the CLIENT span"
    );
    assert_eq!(server.service, "edge-test");
    assert_eq!(server.name, "GET /api");
    for (key, value) in [
        ("http.request.method", "GET"),
        ("url.path", "/api/orders"),
        ("url.scheme", "http"),
        ("http.route", "/api"),
        ("http.response.status_code", "200"),
        ("client.address", "127.0.0.1"),
        ("network.protocol.version", "1.1"),
        ("jwtgate.auth.result", "ok"),
    ] {
        assert_eq!(server.attr(key), Some(value), "{key}: {server:#?}");
    }
    assert_eq!(
        server.attr("enduser.id"),
        None,
        "the user only with record_user"
    );
    assert_eq!(server.status, 0);
    assert_eq!(client.attr("server.address"), Some("127.0.0.1"));
    assert_eq!(
        client.attr("server.port"),
        Some(up.addr.port().to_string().as_str())
    );
    assert_eq!(client.attr("http.response.status_code"), Some("200"));
    assert!(client.start_ns >= server.start_ns && client.end_ns <= server.end_ns);
    // The access line names the request and its trace.
    let line = run.wait_for("\"request_id\":\"req-123\"");
    let line: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(line["trace_id"], t1.as_str());

    // 2. A refusal: one SERVER span, refused, with the reason; nothing forwarded.
    let t2 = trace_id();
    let answer = exchange(
        &inline,
        &format!(
            "GET /api/x HTTP/1.1\r\nHost: shop\r\ntraceparent: 00-{t2}-{}-01\r\n",
            random_hex(16)
        ),
    );
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    let spans = collector.trace(&t2, 1).await;
    let server = server_span(&spans);
    assert_eq!(server.attr("jwtgate.auth.result"), Some("refused"));
    assert_eq!(server.attr("jwtgate.auth.reason"), Some("missing"));
    assert_eq!(server.attr("http.response.status_code"), Some("401"));

    // 3. An upstream that refuses connections: 502, the SERVER and CLIENT spans in error.
    let t3 = trace_id();
    let answer = exchange(
        &inline,
        &format!(
            "GET /dead/x HTTP/1.1\r\nHost: shop\r\nAuthorization: Bearer {token}\r\ntraceparent: 00-{t3}-{}-01\r\n",
            random_hex(16)
        ),
    );
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    let spans = collector.trace(&t3, 2).await;
    let server = server_span(&spans);
    assert_eq!(server.status, 2, "{server:#?}");
    assert_eq!(server.attr("http.response.status_code"), Some("502"));
    let client = spans.iter().find(|s| s.kind == CLIENT).unwrap();
    assert_eq!(client.status, 2, "{client:#?}");
    assert_eq!(client.attr("http.response.status_code"), None);

    // 4. An unsampled parent is followed: no spans, and the upstream hears "not sampled".
    let t4 = trace_id();
    let answer = exchange(
        &inline,
        &format!(
            "GET /api/u HTTP/1.1\r\nHost: shop\r\nAuthorization: Bearer {token}\r\ntraceparent: 00-{t4}-{}-00\r\n",
            random_hex(16)
        ),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let parent = up.one().all("traceparent").pop().unwrap();
    up.clear();
    assert!(
        parent.starts_with(&format!("00-{t4}-")) && parent.ends_with("-00"),
        "{parent}"
    );

    // 5. A malformed traceparent (upper-case hex) is ignored: a new trace, never passed on.
    let bad = format!("00-{}-{}-01", trace_id().to_uppercase(), random_hex(16));
    let answer = exchange(
        &inline,
        &format!("GET /api/m HTTP/1.1\r\nHost: shop\r\nAuthorization: Bearer {token}\r\ntraceparent: {bad}\r\n"),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let parent = up.one().all("traceparent").pop().unwrap();
    up.clear();
    assert_ne!(parent, bad);
    let new_trace = parent.split('-').nth(1).unwrap().to_owned();
    assert_ne!(new_trace, bad.split('-').nth(1).unwrap().to_lowercase());
    let spans = collector.trace(&new_trace, 2).await;
    assert_eq!(server_span(&spans).parent_span_id, "", "a root span");

    // 6. A query token: not in url.path, not anywhere in what the collector got.
    let t6 = trace_id();
    let answer = exchange(
        &inline,
        &format!(
            "GET /api/q?access_token={token}&a=1 HTTP/1.1\r\nHost: shop\r\ntraceparent: 00-{t6}-{}-01\r\n",
            random_hex(16)
        ),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let spans = collector.trace(&t6, 2).await;
    assert_eq!(server_span(&spans).attr("url.path"), Some("/api/q"));
    // Every span so far has arrived once t6's has (batches go in order): t4's never.
    assert!(
        collector.spans().iter().all(|s| s.trace_id != t4),
        "an unsampled parent's request was exported"
    );
    let raw = collector.raw.lock().unwrap().clone();
    let signature = token.rsplit('.').next().unwrap();
    for secret in [token.as_str(), signature, "Bearer", KEY] {
        assert!(
            !raw.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret:?} in an exported span"
        );
    }
    // 7. An unreadable request (no header can be believed): a root span of its own.
    let answer = exchange(
        &inline,
        "GET /api/x HTTP/1.1\r\nHost: shop\r\nno colon here\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let spans = collector.spans();
        if let Some(s) = spans
            .iter()
            .find(|s| s.attr("http.response.status_code") == Some("400"))
        {
            assert_eq!(s.parent_span_id, "");
            assert_eq!(s.kind, SERVER);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no span of the unreadable request"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, _) = run.terminate();
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_grpc_from_the_environment_traces_grpc_calls_and_forward_auth_checks() {
    let collector = Collector::grpc(Duration::ZERO).await;
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         [forward_auth]\nlisten = \"127.0.0.1:0\"\nproxy = \"nginx\"\n\
         [[route]]\npath = \"/api\"\nupstream = \"{}\"\n\
         [[route]]\npath = \"/test.Echo\"\nupstream = \"h2c://127.0.0.1:1\"\n",
        up.url()
    );
    let endpoint = collector.url();
    let (mut run, inline) = start(
        dir.path(),
        &config,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_SERVICE_NAME", "edge-grpc"),
            ("OTEL_TRACES_SAMPLER", "parentbased_always_on"),
        ],
    );
    let checks = listen_addr(&run.wait_for("\"forward_auth\""));
    let token = token("alice");

    // A forward-auth check: a SERVER span in mode forward_auth, no CLIENT span.
    let t1 = trace_id();
    let answer = exchange(
        &checks,
        &format!(
            "GET /auth HTTP/1.1\r\nHost: gw\r\nX-Original-URI: /api/x\r\nX-Original-Method: GET\r\nX-Forwarded-Host: shop\r\n\
             Authorization: Bearer {token}\r\ntraceparent: 00-{t1}-{}-01\r\n",
            random_hex(16)
        ),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let spans = collector.trace(&t1, 1).await;
    let check = server_span(&spans);
    assert_eq!(check.service, "edge-grpc");
    assert_eq!(check.attr("jwtgate.mode"), Some("forward_auth"));
    assert_eq!(check.attr("http.route"), Some("/api"));
    assert_eq!(check.attr("url.path"), Some("/api/x"));
    assert_eq!(check.attr("jwtgate.auth.result"), Some("ok"));
    assert!(spans.iter().all(|s| s.kind != CLIENT));

    // A gRPC call without a token (h2c): refused in gRPC form, its status on the span.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grpc/client.py");
    let out = python(
        &[script, &inline],
        &[],
        r#"[{"case": "no token", "method": "/test.Echo/Unary"}]"#,
        "grpcio",
    );
    assert!(out.contains("UNAUTHENTICATED"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let call = loop {
        let found = collector
            .spans()
            .into_iter()
            .find(|s| s.attr("rpc.grpc.status_code") == Some("16"));
        if let Some(span) = found {
            break span;
        }
        assert!(
            Instant::now() < deadline,
            "no span of the gRPC call: {:#?}",
            collector.spans()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(call.attr("network.protocol.version"), Some("2"));
    assert_eq!(call.attr("http.response.status_code"), Some("401"));
    assert_eq!(call.attr("jwtgate.auth.result"), Some("refused"));
    let (code, _) = run.terminate();
    assert_eq!(code, Some(0));
}

/// `n` requests over `conns` keep-alive connections; every one must be answered 200.
async fn load(inline: &str, token: &str, n: usize, conns: usize) {
    let client = client();
    let mut tasks = Vec::new();
    for c in 0..conns {
        let (client, url, token) = (
            client.clone(),
            format!("http://{inline}/api/load"),
            token.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            for _ in 0..n / conns {
                let res = client
                    .request(
                        http::Request::builder()
                            .uri(&url)
                            .header("authorization", bearer(&token))
                            .body(http_body_util::Full::new(bytes::Bytes::new()))
                            .unwrap(),
                    )
                    .await
                    .unwrap_or_else(|e| panic!("connection {c}: {e}"));
                assert_eq!(res.status(), 200);
                let _ = http_body_util::BodyExt::collect(res.into_body()).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

fn metric(admin: &str, name: &str) -> u64 {
    let text = exchange(admin, "GET /metrics HTTP/1.1\r\nHost: a\r\n");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}")) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_down_or_slow_loses_no_request() {
    let up = Upstream::start().await;
    let slow = Collector::http(Duration::from_secs(20)).await;
    for (case, endpoint, reason) in [
        // Nothing listens there: every export fails at once.
        ("down", "http://127.0.0.1:1".to_owned(), "export_failed"),
        // Takes every export and answers after 20 s: the queue fills and spans are dropped.
        ("slow", slow.url(), "queue_full"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ndrain_timeout = \"2s\"\n\
             [telemetry]\notlp_endpoint = \"{endpoint}\"\n\
             [[route]]\npath = \"/api\"\nupstream = \"{}\"\n",
            up.url()
        );
        let (mut run, inline) = start(dir.path(), &config, &[]);
        let admin = run.admin_addr();
        let before = up.count();
        let n = 3000;
        load(&inline, &token("alice"), n, 8).await;
        assert_eq!(up.count() - before, n, "{case}: requests lost");
        let name = format!("jwtgate_trace_spans_dropped_total{{reason=\"{reason}\"}}");
        let deadline = Instant::now() + Duration::from_secs(15);
        while metric(&admin, &name) == 0 {
            assert!(Instant::now() < deadline, "{case}: no {name}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // SIGTERM: out within drain_timeout + 5 s, the collector notwithstanding.
        let asked = Instant::now();
        let (code, log) = run.terminate();
        assert_eq!(code, Some(0), "{case}: {log:?}");
        assert!(
            asked.elapsed() < Duration::from_secs(7),
            "{case}: exit took {:?}",
            asked.elapsed()
        );
    }
}
