//! The contract's invariants: identity headers only from a verified token, exactly once; routing
//! on the path the upstream receives; hop-by-hop headers dropped; X-Forwarded-* set; malformed
//! or ambiguous HTTP refused. Raw sockets where a client library would tidy the request up.

mod common;

use common::*;

fn get_raw(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: app.example\r\n{extra}Connection: close\r\n\r\n")
        .into_bytes()
}

#[tokio::test]
async fn client_identity_headers_are_removed_in_every_spelling_and_replaced_once() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let t = token("alice");
    for (route, want) in [
        ("/x", Some("alice")),
        ("/public/x", None),
        ("/opt/x", Some("alice")),
    ] {
        up.clear();
        let extra = format!(
            "Authorization: Bearer {t}\r\nX-Auth-User: mallory\r\nx-auth-user: eve\r\nX-AUTH-USER: trudy\r\n\
             X_Auth_User: oscar\r\nx-auth_user: peggy\r\nX-Auth-Role: admin\r\nx_auth_role: admin\r\n"
        );
        let out = raw(gw.addr, &get_raw(route, &extra)).await;
        assert_eq!(statuses(&out), vec![200], "{route}: {out}");
        let seen = up.one();
        let users: Vec<String> = seen
            .folded("x-auth-user")
            .iter()
            .flat_map(|n| seen.all(n))
            .collect();
        match want {
            Some(u) => assert_eq!(users, vec![u.to_owned()], "{route}"),
            None => assert!(users.is_empty(), "{route}: {users:?}"),
        }
        let roles: Vec<String> = seen
            .folded("x-auth-role")
            .iter()
            .flat_map(|n| seen.all(n))
            .collect();
        assert!(
            roles.is_empty(),
            "{route}: forged role reached the upstream: {roles:?}"
        );
    }
}

#[tokio::test]
async fn connection_nominated_identity_header_cannot_make_the_gateway_drop_its_own() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let t = token("alice");
    let req = format!(
        "GET /x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\nConnection: X-Auth-User, close\r\nX-Auth-User: mallory\r\n\r\n"
    );
    let out = raw(gw.addr, req.as_bytes()).await;
    assert_eq!(statuses(&out), vec![200], "{out}");
    let seen = up.one();
    assert_eq!(seen.all("x-auth-user"), vec!["alice"]);
    assert!(seen
        .all("connection")
        .iter()
        .all(|v| !v.to_ascii_lowercase().contains("x-auth-user")));
}

#[tokio::test]
async fn hop_by_hop_headers_are_dropped_and_forwarded_headers_set() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let t = token("alice");
    let got = get(
        &gw,
        "/x",
        &[
            ("authorization", &bearer(&t)),
            ("connection", "keep-alive, x-secret-hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("te", "trailers"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("x-original-url", "/admin"),
            ("x-rewrite-url", "/admin"),
            ("forwarded", "for=1.2.3.4;proto=https;host=admin"),
            ("x-real-ip", "10.0.0.1"),
            ("x_real_ip", "10.0.0.2"),
            ("x-forwarded-port", "443"),
            ("x-forwarded-ssl", "on"),
            ("true-client-ip", "10.0.0.3"),
            ("host", "app.example"),
        ],
    )
    .await;
    assert_eq!(got.status, 200);
    let seen = up.one();
    for gone in [
        "keep-alive",
        "x-secret-hop",
        "proxy-authorization",
        "te",
        "x-original-url",
        "x-rewrite-url",
        "upgrade",
        "transfer-encoding",
    ] {
        assert!(seen.all(gone).is_empty(), "{gone} reached the upstream");
    }
    assert_eq!(seen.all("x-forwarded-for"), vec!["203.0.113.9, 127.0.0.1"]);
    assert_eq!(seen.all("x-forwarded-proto"), vec!["http"]);
    assert_eq!(seen.all("x-forwarded-host"), vec!["app.example"]);
    assert_eq!(seen.all("host"), vec!["app.example"]);
}

#[tokio::test]
async fn routing_and_forwarding_use_the_same_normalized_path() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    // Each would reach /admin (required, role=admin) through the public route if the gateway
    // routed on one path and forwarded another. A non-admin token gets 403 only on /admin, so
    // the 403 proves which route was chosen.
    let user = token_with(
        serde_json::json!({"sub": "u", "exp": now() + 60, "role": "user"}),
        jsonwebtoken::Algorithm::HS256,
        KEY,
    );
    let auth = format!("Authorization: Bearer {user}\r\n");
    for path in [
        "/public/../admin/users",
        "/public/%2e%2e/admin/users",
        "/public/%2E%2E/admin/users",
        "/public/.%2e/admin/users",
        "/public/./../admin/users",
        "//admin/users",
        "/public//../admin/users",
        "/%61dmin/users",
    ] {
        up.clear();
        let out = raw(gw.addr, &get_raw(path, &auth)).await;
        assert_eq!(statuses(&out), vec![403], "{path}: {out}");
        assert_eq!(up.count(), 0, "{path} reached the upstream");
    }
    // Normalized paths are forwarded normalized.
    for (path, forwarded) in [
        ("/public/a/../b?q=%2e%2e", "/public/b?q=%2e%2e"),
        ("/public/./a//b", "/public/a/b"),
        ("/public/%7Euser", "/public/~user"),
        ("/public/a%20b", "/public/a%20b"),
    ] {
        up.clear();
        let out = raw(gw.addr, &get_raw(path, "")).await;
        assert_eq!(statuses(&out), vec![200], "{path}: {out}");
        assert_eq!(up.one().uri, forwarded, "{path}");
    }
}

#[tokio::test]
async fn ambiguous_paths_are_refused_with_400() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    for path in [
        "/public/..%2fadmin",
        "/public/%2Fadmin",
        "/public/..%5cadmin",
        "/public/..\\admin",
        "/public;/../admin",
        "/admin;x=1/users",
        "/public/%00",
        "/public/%252e%252e/admin",
        "/public/%25%32%65%25%32%65/admin",
        "/public/%zz",
    ] {
        let out = raw(gw.addr, &get_raw(path, "")).await;
        assert_eq!(statuses(&out), vec![400], "{path}: {out}");
    }
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn malformed_http_is_400_and_nothing_is_forwarded() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let t = token("alice");
    let cases: Vec<(&str, String)> = vec![
        ("two Host headers", format!("GET /public/x HTTP/1.1\r\nHost: a\r\nHost: b\r\nAuthorization: Bearer {t}\r\n\r\n")),
        ("no Host on 1.1", "GET /public/x HTTP/1.1\r\n\r\n".to_owned()),
        ("absolute-form with an invalid Host", "GET http://a.example/public/x HTTP/1.1\r\nHost: b/x\r\n\r\n".to_owned()),
        ("duplicate Content-Length", "POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd".to_owned()),
        ("bad Content-Length", "POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: 3x\r\n\r\nabc".to_owned()),
        ("obfuscated TE", "POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n".to_owned()),
        ("obs-fold", "GET /public/x HTTP/1.1\r\nHost: a\r\nX-Long: a\r\n b\r\n\r\n".to_owned()),
        ("bad chunk size", "POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n".to_owned()),
        ("asterisk-form GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n".to_owned()),
    ];
    for (name, req) in cases {
        up.clear();
        let out = raw(gw.addr, req.as_bytes()).await;
        assert_eq!(statuses(&out), vec![400], "{name}: {out}");
        // A bad chunk arrives after the head was streamed on: the upstream may have seen the
        // start, but never a complete request.
        assert!(
            up.seen().iter().all(|s| !s.body_ok),
            "{name}: a complete request reached the upstream"
        );
        if name != "bad chunk size" {
            assert_eq!(up.count(), 0, "{name}: reached the upstream");
        }
    }
}

/// Content-Length with Transfer-Encoding is ambiguous framing (RFC 9112 §6.3, the classic CL.TE
/// and TE.CL desyncs): refused with 400 before anything reaches the upstream, in either order.
#[tokio::test]
async fn content_length_with_transfer_encoding_is_refused() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let hidden = "GET /public/smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    let body = format!("0\r\n\r\n{hidden}");
    for headers in [
        format!(
            "Content-Length: {}\r\nTransfer-Encoding: chunked\r\n",
            body.len()
        ),
        format!(
            "Transfer-Encoding: chunked\r\nContent-Length: {}\r\n",
            body.len()
        ),
    ] {
        up.clear();
        let req = format!("POST /public/x HTTP/1.1\r\nHost: a\r\n{headers}\r\n{body}");
        let (out, closed) = raw_until_closed(gw.addr, req.as_bytes()).await;
        assert_eq!(statuses(&out), vec![400], "{out}");
        assert!(
            closed,
            "the connection stayed open after unreadable framing"
        );
        assert_eq!(up.count(), 0, "{:?}", up.seen());
    }
}

#[tokio::test]
async fn connect_is_refused() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let out = raw(
        gw.addr,
        format!("CONNECT {} HTTP/1.1\r\nHost: {}\r\n\r\n", up.addr, up.addr).as_bytes(),
    )
    .await;
    assert_eq!(statuses(&out), vec![405], "{out}");
    // TRACE would echo the request, credentials included, back to the client.
    let t = token("alice");
    let out = raw(
        gw.addr,
        format!("TRACE / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(statuses(&out), vec![405], "{out}");
    assert!(
        out.to_ascii_lowercase().contains("allow: get, head"),
        "{out}"
    );
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn options_asterisk_is_answered_by_the_gateway() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let out = raw(
        gw.addr,
        b"OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&out), vec![200], "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("allow: get, head, post, put, patch, delete, options\r\n"),
        "{out}"
    );
    assert!(out.contains("content-length: 0\r\n"), "{out}");
    // An HTTP/1.1 request needs a Host, this one too.
    let out = raw(gw.addr, b"OPTIONS * HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert_eq!(statuses(&out), vec![400], "{out}");
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn a_refused_request_body_is_never_read_as_the_next_request() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    // The body of an unauthenticated POST is itself a valid-looking request to a public route.
    let smuggled = "GET /public/smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    let req = format!(
        "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{smuggled}",
        smuggled.len()
    );
    let (out, closed) = raw_until_closed(gw.addr, req.as_bytes()).await;
    assert_eq!(statuses(&out), vec![401], "{out}");
    assert_eq!(
        up.count(),
        0,
        "the body was parsed as a request: {:?}",
        up.seen()
    );
    // And the connection is closed rather than kept for a next request.
    assert!(
        out.to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{out}"
    );
    assert!(
        closed,
        "the connection stayed open after a refused request with a body"
    );
}

#[tokio::test]
async fn pipelined_requests_are_each_authenticated() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let t = token("alice");
    let req = format!(
        "GET /a HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {t}\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\nX-Auth-User: alice\r\n\r\nGET /public/c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    );
    let out = raw(gw.addr, req.as_bytes()).await;
    assert_eq!(statuses(&out), vec![200, 401, 200], "{out}");
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].uri, "/a");
    assert_eq!(seen[0].all("x-auth-user"), vec!["alice"]);
    assert_eq!(seen[1].uri, "/public/c");
    assert!(seen[1].all("x-auth-user").is_empty());
}

#[tokio::test]
async fn an_h2c_upgrade_is_not_tunnelled() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let req = "GET /public/x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";
    let out = raw(gw.addr, req.as_bytes()).await;
    assert_eq!(statuses(&out), vec![200], "{out}");
    let seen = up.one();
    assert!(seen.all("upgrade").is_empty());
    assert!(seen.all("http2-settings").is_empty());
}

#[tokio::test]
async fn oversized_heads_and_too_many_headers_are_431() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let big = format!(
        "GET /public/x HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let out = raw(gw.addr, big.as_bytes()).await;
    assert_eq!(statuses(&out), vec![431], "{}", &out[..out.len().min(200)]);
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let out = raw(
        gw.addr,
        format!("GET /public/x HTTP/1.1\r\nHost: a\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert_eq!(statuses(&out), vec![431], "{out}");
    assert_eq!(up.count(), 0);
    // Within the limits: served.
    let out = raw(
        gw.addr,
        b"GET /public/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&out), vec![200]);
}
