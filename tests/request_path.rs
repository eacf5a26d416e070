//! One test per row of CONTRACT.md's request table, asserting what the upstream received.

mod common;

use common::*;
use jsonwebtoken::Algorithm::{HS256, HS512};
use serde_json::json;

#[tokio::test]
async fn valid_token_is_forwarded_with_the_user_exactly_once() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let body = bytes::Bytes::from_static(b"{\"order\": 42}");
    let got = send(
        &gw,
        "POST",
        "/orders/7?x=1&y=%2F",
        &[("authorization", &bearer(&token("alice")))],
        body.clone(),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, "ok");
    let seen = up.one();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.uri, "/orders/7?x=1&y=%2F");
    assert_eq!(seen.all("x-auth-user"), vec!["alice"]);
    assert_eq!(seen.body_len, body.len() as u64);
    assert_eq!(
        seen.body_sha256,
        hex(&<sha2::Sha256 as sha2::Digest>::digest(&body))
    );
    // forward_token defaults to true
    assert_eq!(seen.all("authorization"), vec![bearer(&token("alice"))]);
}

#[tokio::test]
async fn no_token_on_a_required_route_is_401_with_a_bearer_challenge() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    for headers in [
        vec![],
        vec![("authorization", "Basic YWxpY2U6cHc=")],
        vec![("authorization", "Bearer ")],
    ] {
        let got = get(&gw, "/orders", &headers).await;
        assert_eq!(got.status, 401, "{headers:?}");
        assert_eq!(got.headers["www-authenticate"], r#"Bearer realm="jwtgate""#);
        assert_eq!(got.headers["content-type"], "application/json");
        assert!(got.json()["error"].is_string());
    }
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn every_kind_of_invalid_token_is_401_invalid_token_and_never_forwarded() {
    let up = Upstream::start().await;
    let cfg = CONFIG.replace(
        "[auth]\n",
        "[auth]\nissuer = \"https://auth.example\"\naudience = [\"orders\"]\n",
    );
    let gw = Gateway::start(&cfg, &up.url()).await;
    let n = now();
    let good =
        json!({"sub": "alice", "exp": n + 600, "iss": "https://auth.example", "aud": "orders"});
    let with = |patch: serde_json::Value| {
        let mut c = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let signed = |c: serde_json::Value| token_with(c, HS256, KEY);
    let valid = signed(good.clone());
    let (h, rest) = valid.split_once('.').unwrap();
    let sig = rest.split_once('.').unwrap().1;
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "bad signature",
            token_with(good.clone(), HS256, "some-other-key-some-other-key-123456"),
            "invalid signature",
        ),
        (
            "tampered payload",
            format!(
                "{h}.{}.{sig}",
                b64(&with(json!({"sub": "admin"})).to_string())
            ),
            "invalid signature",
        ),
        (
            "alg not allowed (HS512, right key)",
            token_with(good.clone(), HS512, KEY),
            "token algorithm not allowed",
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(r#"{"alg":"none","typ":"JWT"}"#),
                b64(&good.to_string())
            ),
            "token algorithm not allowed",
        ),
        ("malformed", "not.a.jwt".into(), "malformed token"),
        (
            "two segments",
            format!("{h}.{}", b64(&good.to_string())),
            "malformed token",
        ),
        (
            "expired",
            signed(with(json!({"exp": n - 10}))),
            "token expired",
        ),
        (
            "no exp",
            signed(with(json!({"exp": null}))),
            "token has no exp claim",
        ),
        (
            "string exp",
            signed(with(json!({"exp": (n + 600).to_string()}))),
            "exp, nbf or iat claim is not a number",
        ),
        (
            "not yet valid",
            signed(with(json!({"nbf": n + 300}))),
            "token not yet valid",
        ),
        (
            "wrong iss",
            signed(with(json!({"iss": "https://evil.example"}))),
            "wrong issuer",
        ),
        (
            "wrong aud",
            signed(with(json!({"aud": ["billing"]}))),
            "wrong audience",
        ),
        (
            "missing sub",
            signed(with(json!({"sub": null}))),
            "token has no user claim (sub)",
        ),
        (
            "numeric sub",
            signed(with(json!({"sub": 7}))),
            "user claim (sub) is not a valid user name",
        ),
        (
            "empty sub",
            signed(with(json!({"sub": ""}))),
            "user claim (sub) is not a valid user name",
        ),
        (
            "crit",
            raw_token(
                r#"{"alg":"HS256","crit":["b64"],"b64":false}"#,
                &good.to_string(),
                KEY,
            ),
            "unsupported critical header",
        ),
    ];
    for (name, tok, description) in cases {
        let got = get(&gw, "/orders", &[("authorization", &bearer(&tok))]).await;
        assert_eq!(got.status, 401, "{name}");
        assert_eq!(
            got.headers["www-authenticate"],
            format!(r#"Bearer error="invalid_token", error_description="{description}""#).as_str(),
            "{name}"
        );
        assert_eq!(
            got.error_json(),
            json!({"error": "invalid_token", "error_description": description}),
            "{name}"
        );
        let sig_part = tok.rsplit('.').next().unwrap();
        assert!(
            sig_part.is_empty() || !got.body.contains(sig_part),
            "{name}: body echoes the token"
        );
    }
    assert_eq!(up.count(), 0, "an invalid token reached the upstream");
    // And the good one passes, so the cases above fail for their own reason.
    assert_eq!(
        get(&gw, "/orders", &[("authorization", &bearer(&valid))])
            .await
            .status,
        200
    );
    assert_eq!(up.one().all("x-auth-user"), vec!["alice"]);
}

#[tokio::test]
async fn a_missing_required_claim_is_403_and_a_present_one_passes() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let user = token_with(
        json!({"sub": "bob", "exp": now() + 60, "role": "user"}),
        HS256,
        KEY,
    );
    let got = get(&gw, "/admin/panel", &[("authorization", &bearer(&user))]).await;
    assert_eq!(got.status, 403);
    assert!(got.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with(r#"Bearer error="insufficient_scope""#));
    assert_eq!(got.json()["error"], "insufficient_scope");
    assert_eq!(up.count(), 0);

    let admin = token_with(
        json!({"sub": "root", "exp": now() + 60, "role": ["user", "admin"]}),
        HS256,
        KEY,
    );
    let got = get(&gw, "/admin/panel", &[("authorization", &bearer(&admin))]).await;
    assert_eq!(got.status, 200);
    let seen = up.one();
    assert_eq!(seen.all("x-auth-user"), vec!["root"]);
    // An array claim is passed on joined with auth.claim_separator.
    assert_eq!(seen.all("x-auth-role"), vec!["user,admin"]);
}

#[tokio::test]
async fn claim_headers_are_passed_on() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let t = token_with(
        json!({"sub": "carol", "exp": now() + 60, "role": "admin"}),
        HS256,
        KEY,
    );
    let got = get(
        &gw,
        "/admin",
        &[("authorization", &bearer(&t)), ("x-auth-role", "superuser")],
    )
    .await;
    assert_eq!(got.status, 200);
    let seen = up.one();
    assert_eq!(seen.all("x-auth-user"), vec!["carol"]);
    assert_eq!(seen.all("x-auth-role"), vec!["admin"]);
}

#[tokio::test]
async fn optional_route_forwards_anonymous_requests_without_identity() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let got = get(
        &gw,
        "/opt/feed",
        &[("x-auth-user", "mallory"), ("X_Auth_Role", "admin")],
    )
    .await;
    assert_eq!(got.status, 200);
    let seen = up.one();
    assert!(seen.folded("x-auth-user").is_empty(), "{:?}", seen.headers);
    assert!(seen.folded("x-auth-role").is_empty(), "{:?}", seen.headers);

    up.clear();
    let got = get(
        &gw,
        "/opt/feed",
        &[("authorization", &bearer(&token("dave")))],
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(up.one().all("x-auth-user"), vec!["dave"]);
}

#[tokio::test]
async fn optional_route_with_an_invalid_token_is_401() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let expired = token_with(json!({"sub": "dave", "exp": now() - 100}), HS256, KEY);
    let got = get(&gw, "/opt/feed", &[("authorization", &bearer(&expired))]).await;
    assert_eq!(got.status, 401);
    assert_eq!(got.json()["error_description"], "token expired");
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn public_route_forwards_without_checking_and_without_identity() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let expired = token_with(json!({"sub": "eve", "exp": now() - 100}), HS256, KEY);
    for headers in [
        vec![],
        vec![("authorization", bearer(&expired))],
        vec![("authorization", bearer(&token("alice")))],
        vec![
            ("x-auth-user", "admin".to_owned()),
            ("X-AUTH-USER", "root".to_owned()),
            ("x_auth_user", "x".to_owned()),
        ],
    ] {
        up.clear();
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let got = get(&gw, "/public/status", &h).await;
        assert_eq!(got.status, 200, "{headers:?}");
        let seen = up.one();
        assert!(
            seen.folded("x-auth-user").is_empty(),
            "{headers:?}: {:?}",
            seen.headers
        );
        assert!(seen.folded("x-auth-role").is_empty());
    }
}

#[tokio::test]
async fn no_matching_route_is_404() {
    let up = Upstream::start().await;
    let gw = Gateway::start(
        "[[route]]\npath = \"/api\"\nupstream = \"{upstream}\"\n[[route]]\npath = \"/\"\nhost = \"app.example\"\nupstream = \"{upstream}\"\nauth = \"public\"\n",
        &up.url(),
    )
    .await;
    for path in ["/", "/apix", "/other/api"] {
        let got = get(&gw, path, &[("authorization", &bearer(&token("a")))]).await;
        assert_eq!(got.status, 404, "{path}");
        assert_eq!(got.json()["error"], "not_found");
    }
    assert_eq!(up.count(), 0);
    // Host routing: case-insensitive, port ignored.
    let got = get(&gw, "/anything", &[("host", "APP.example:8080")]).await;
    assert_eq!(got.status, 200);
    assert_eq!(up.one().all("host"), vec!["APP.example:8080"]);
}

#[tokio::test]
async fn tokens_signed_with_the_previous_key_pass_during_a_rotation() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let t = token_with(json!({"sub": "frank", "exp": now() + 60}), HS256, OLD_KEY);
    assert_eq!(
        get(&gw, "/x", &[("authorization", &bearer(&t))])
            .await
            .status,
        200
    );
    assert_eq!(up.one().all("x-auth-user"), vec!["frank"]);
}

#[tokio::test]
async fn forward_token_false_drops_authorization() {
    let up = Upstream::start().await;
    let cfg = CONFIG.replace("[auth]\n", "[auth]\nforward_token = false\n");
    let gw = Gateway::start(&cfg, &up.url()).await;
    assert_eq!(
        get(&gw, "/x", &[("authorization", &bearer(&token("g")))])
            .await
            .status,
        200
    );
    let seen = up.one();
    assert!(seen.all("authorization").is_empty());
    assert_eq!(seen.all("x-auth-user"), vec!["g"]);
}

#[tokio::test]
async fn multiple_authorization_headers_are_refused() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let a = bearer(&token("alice"));
    let b = bearer(&token("bob"));
    let got = get(&gw, "/x", &[("authorization", &a), ("authorization", &b)]).await;
    assert_eq!(got.status, 401);
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let got = get(
        &gw,
        "/x",
        &[("authorization", &format!("bearer {}", token("hank")))],
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(up.one().all("x-auth-user"), vec!["hank"]);
}

#[tokio::test]
async fn an_optional_route_with_require_needs_a_token() {
    let up = Upstream::start().await;
    let cfg = "[[route]]\npath = \"/\"\nupstream = \"{upstream}\"\nauth = \"optional\"\nrequire = { role = \"admin\" }\n";
    let gw = Gateway::start(cfg, &up.url()).await;
    assert_eq!(get(&gw, "/x", &[]).await.status, 401);
    let user = token_with(
        json!({"sub": "u", "exp": now() + 60, "role": "user"}),
        HS256,
        KEY,
    );
    assert_eq!(
        get(&gw, "/x", &[("authorization", &bearer(&user))])
            .await
            .status,
        403
    );
    assert_eq!(up.count(), 0);
    let admin = token_with(
        json!({"sub": "root", "exp": now() + 60, "role": "admin"}),
        HS256,
        KEY,
    );
    assert_eq!(
        get(&gw, "/x", &[("authorization", &bearer(&admin))])
            .await
            .status,
        200
    );
    assert_eq!(up.one().all("x-auth-user"), vec!["root"]);
}

#[tokio::test]
async fn connect_gets_405_with_allow() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let out = raw(
        gw.addr,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&out), vec![405], "{out}");
    assert!(out.to_ascii_lowercase().contains("\r\nallow: "), "{out}");
    assert_eq!(up.count(), 0);
}
