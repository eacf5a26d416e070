//! The signed assertion (`[auth.assertion]`), end to end with the binary: the upstream gets
//! one assertion per request (a client's copy never), PyJWT verifies it against the admin
//! listener's `/.well-known/jwks.json` with the claims the contract names (nested ones kept),
//! it is reused rather than signed again, a rotation (Ed25519 to P-256, the old key kept as
//! previous) keeps old and new verifiable, and `jwtgate check` warns without `admin_listen`.
//! Needs python3 with PyJWT and cryptography (`.ci/test` installs them).

mod common;

use common::process::{exchange, jwtgate, listen_addr, Running};
use common::*;
use serde_json::{json, Value};

/// Private keys made by `cryptography` (tests/providers/idp.py): name -> PKCS#8 PEM.
fn keys() -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/providers/idp.py");
    serde_json::from_str(&python(
        &[script, "keys"],
        &[],
        "",
        "PyJWT with cryptography",
    ))
    .unwrap()
}

/// PyJWT's verdict on `token` with the JWKS `jwks`, for `audience`: the claims and the header,
/// or the error's class name.
fn pyjwt(token: &str, jwks: &str, audience: &str) -> Value {
    let script = r#"
import json, sys
import jwt
job = json.load(sys.stdin)
try:
    keys = jwt.PyJWKSet.from_dict(json.loads(job["jwks"]))
    header = jwt.get_unverified_header(job["token"])
    key = next(k for k in keys.keys if k.key_id == header["kid"])
    claims = jwt.decode(job["token"], key, algorithms=["EdDSA", "ES256"],
                        audience=job["audience"], issuer="https://gateway.example",
                        options={"require": ["exp", "iat", "iss", "sub", "aud"]})
    print(json.dumps({"claims": claims, "header": header}))
except Exception as e:
    print(json.dumps({"error": type(e).__name__ + ": " + str(e)}))
"#;
    let job = json!({"token": token, "jwks": jwks, "audience": audience}).to_string();
    serde_json::from_str(&python(
        &["-c", script],
        &[],
        &job,
        "PyJWT with cryptography",
    ))
    .unwrap()
}

fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

#[test]
fn the_upstream_gets_an_assertion_pyjwt_verifies_and_rotation_keeps_both() {
    let keys = keys();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let up = rt.block_on(Upstream::start());
    let dir = tempfile::tempdir().unwrap();
    let ed = dir.path().join("ed25519.pem");
    let p256 = dir.path().join("p256.pem");
    std::fs::write(&ed, keys["ed25519"]["private_pem"].as_str().unwrap()).unwrap();
    std::fs::write(&p256, keys["p256"]["private_pem"].as_str().unwrap()).unwrap();
    let config = |assertion: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[auth]\nissuer = \"https://auth.example\"\n\
             [auth.assertion]\nissuer = \"https://gateway.example\"\nttl = \"60s\"\nclaims = [\"email\", \"realm_access.roles\"]\n{assertion}\n\
             [[route]]\npath = \"/\"\nupstream = \"{}\"\n",
            up.url()
        )
    };
    let path = dir.path().join("jwtgate.toml");
    std::fs::write(&path, config(&format!("key_file = \"{}\"", ed.display()))).unwrap();
    let mut cmd = jwtgate(dir.path());
    cmd.args(["--config", path.to_str().unwrap()])
        .env("JWT_SECRET_KEY", KEY)
        .env("JWTGATE_LOG_FORMAT", "json");
    let mut run = Running::start(cmd);
    let admin = run.admin_addr();
    let inline = listen_addr(&run.wait_for("\"listening\""));
    let token = token_with(
        json!({"sub": "alice", "iss": "https://auth.example", "exp": now() + 600,
               "email": "alice@example.com", "realm_access": {"roles": ["admin", "ops"]}, "secret": "x"}),
        jsonwebtoken::Algorithm::HS256,
        KEY,
    );
    let call = || {
        let head = format!(
            "GET /orders HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\nX-Auth-Assertion: forged\r\nx_auth_assertion: forged\r\n"
        );
        let answer = exchange(&inline, &head);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let seen = up.seen().pop().unwrap();
        assert!(
            seen.folded("x-auth-assertion").len() == 1,
            "{:?}",
            seen.headers
        );
        let values = seen.all("x-auth-assertion");
        assert_eq!(values.len(), 1);
        assert_ne!(values[0], "forged");
        values[0].clone()
    };
    let first = call();
    // Reused, not signed again, for the same token and route.
    assert_eq!(call(), first);
    let jwks = body(&exchange(
        &admin,
        "GET /.well-known/jwks.json HTTP/1.1\r\nHost: a\r\n",
    ))
    .to_owned();
    let published: Value = serde_json::from_str(&jwks).unwrap();
    assert_eq!(published["keys"].as_array().unwrap().len(), 1);
    let verdict = pyjwt(&first, &jwks, &up.url());
    let claims = &verdict["claims"];
    assert_eq!(claims["sub"], "alice", "{verdict}");
    assert_eq!(claims["iss"], "https://gateway.example");
    assert_eq!(claims["orig_iss"], "https://auth.example");
    assert_eq!(claims["aud"], up.url());
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["realm_access"], json!({"roles": ["admin", "ops"]}));
    assert!(claims.get("secret").is_none());
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!((1..=60).contains(&lifetime), "{claims}");
    assert_eq!(verdict["header"]["alg"], "EdDSA");
    let old_kid = verdict["header"]["kid"].as_str().unwrap().to_owned();
    assert_eq!(published["keys"][0]["kid"], old_kid.as_str());
    // Another audience: refused by PyJWT.
    assert!(pyjwt(&first, &jwks, "http://other").get("error").is_some());

    // Rotation: P-256 current, the Ed25519 key kept as previous.
    std::fs::write(
        &path,
        config(&format!(
            "key_file = \"{}\"\nprevious_key_file = \"{}\"",
            p256.display(),
            ed.display()
        )),
    )
    .unwrap();
    run.wait_for("reloaded config and keys");
    let second = call();
    assert_ne!(second, first);
    let jwks = body(&exchange(
        &admin,
        "GET /.well-known/jwks.json HTTP/1.1\r\nHost: a\r\n",
    ))
    .to_owned();
    let published: Value = serde_json::from_str(&jwks).unwrap();
    assert_eq!(
        published["keys"].as_array().unwrap().len(),
        2,
        "{published}"
    );
    let verdict = pyjwt(&second, &jwks, &up.url());
    assert_eq!(verdict["header"]["alg"], "ES256", "{verdict}");
    assert_ne!(verdict["header"]["kid"], old_kid.as_str());
    assert_eq!(verdict["claims"]["sub"], "alice");
    // The assertion signed before the rotation still verifies.
    assert_eq!(pyjwt(&first, &jwks, &up.url())["claims"]["sub"], "alice");
    let (code, log) = run.terminate();
    assert_eq!(code, Some(0));
    for l in &log {
        assert!(!l.contains(&first), "an assertion in the log");
        assert!(!l.contains("PRIVATE"), "a key in the log");
    }
}

#[test]
fn check_warns_about_an_assertion_no_one_can_verify() {
    let keys = keys();
    let dir = tempfile::tempdir().unwrap();
    let ed = dir.path().join("ed25519.pem");
    std::fs::write(&ed, keys["ed25519"]["private_pem"].as_str().unwrap()).unwrap();
    let path = dir.path().join("jwtgate.toml");
    std::fs::write(
        &path,
        format!(
            "[auth.assertion]\nkey_file = \"{}\"\n[[route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:1\"\n",
            ed.display()
        ),
    )
    .unwrap();
    let out = jwtgate(dir.path())
        .args(["check", "--config", path.to_str().unwrap()])
        .env("JWT_SECRET_KEY", KEY)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: auth.assertion: no server.admin_listen"),
        "{stderr}"
    );
    // A key that is not one: exit 2, named.
    std::fs::write(
        &ed,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let out = jwtgate(dir.path())
        .args(["check", "--config", path.to_str().unwrap()])
        .env("JWT_SECRET_KEY", KEY)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("auth.assertion.key_file"), "{stderr}");
}

/// A forward-auth check answers the assertion like every identity header: the value for a
/// caller (its `aud` the route's upstream), empty and named for removal for none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_answers_the_assertion_too() {
    let keys = tokio::task::spawn_blocking(keys).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ed = dir.path().join("ed25519.pem");
    std::fs::write(&ed, keys["ed25519"]["private_pem"].as_str().unwrap()).unwrap();
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[forward_auth]\nlisten = \"127.0.0.1:0\"\nproxy = \"traefik\"\n\
         [auth.assertion]\nkey_file = \"{}\"\n[[route]]\npath = \"/\"\nupstream = \"{{upstream}}\"\n\
         [[route]]\npath = \"/public\"\nupstream = \"{{upstream}}\"\nauth = \"public\"\n",
        ed.display()
    );
    let up = Upstream::start().await;
    let gw = Gateway::start_checking(&toml, &up.url()).await;
    let checks = gw.checks.unwrap().to_string();
    let ask = |uri: &str, auth: Option<String>| {
        let mut head = format!(
            "GET / HTTP/1.1\r\nHost: c\r\nX-Forwarded-Method: GET\r\nX-Forwarded-Host: app\r\nX-Forwarded-Uri: {uri}\r\nX-Auth-Assertion: forged\r\n"
        );
        if let Some(t) = auth {
            head += &format!("Authorization: Bearer {t}\r\n");
        }
        exchange(&checks, &head)
    };
    let t = token("bob");
    let answer = ask("/x", Some(t));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let value = answer
        .lines()
        .find_map(|l| l.strip_prefix("x-auth-assertion: "))
        .unwrap_or_else(|| panic!("{answer}"));
    assert_eq!(value.split('.').count(), 3, "{value}");
    let answer = ask("/public/x", None);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("x-auth-assertion: \r\n"), "{answer}");
    let removed = answer
        .lines()
        .find_map(|l| l.strip_prefix("x-envoy-auth-headers-to-remove: "))
        .unwrap();
    assert!(removed.contains("x-auth-assertion"), "{removed}");
}
