//! Interop with the original auth service: tokens minted by PyJWT exactly as it does
//! (`jwt.encode({"sub": user, "exp": now + 30min}, key, algorithm="HS256")`) pass through the
//! gateway, and tokens from `jwtgate token` decode in PyJWT. Needs python3 with PyJWT
//! (`.ci/run` installs it); the test fails, rather than skips, when it is missing.

mod common;

use std::process::Command;

use common::*;

const MINT: &str = r#"
import datetime, os, sys, jwt
key = os.environ["JWT_SECRET_KEY"]
now = datetime.datetime.now(tz=datetime.timezone.utc)
for user, minutes in [("alice", 30), ("bob.smith@example.com", 30), ("expired-eve", -5)]:
    print(jwt.encode({"sub": user, "exp": now + datetime.timedelta(minutes=minutes)}, key, algorithm="HS256"))
"#;

const DECODE: &str = r#"
import os, sys, jwt
claims = jwt.decode(sys.stdin.read().strip(), os.environ["JWT_SECRET_KEY"], algorithms=["HS256"])
print(claims["sub"])
"#;

/// `script` run by Python with `JWT_SECRET_KEY` set, `stdin` on its standard input.
fn python(script: &str, stdin: Option<&str>) -> String {
    common::python(
        &["-c", script],
        &[("JWT_SECRET_KEY", KEY)],
        stdin.unwrap_or(""),
        "PyJWT (`pip install PyJWT`)",
    )
}

#[tokio::test]
async fn pyjwt_tokens_pass_through_the_gateway() {
    let tokens = python(MINT, None);
    let tokens: Vec<&str> = tokens.lines().collect();
    assert_eq!(tokens.len(), 3);
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;

    for (token, user) in [(tokens[0], "alice"), (tokens[1], "bob.smith@example.com")] {
        up.clear();
        let got = get(&gw, "/api/me", &[("authorization", &bearer(token))]).await;
        assert_eq!(got.status, 200, "{user}: {}", got.body);
        assert_eq!(up.one().all("x-auth-user"), vec![user]);
    }
    up.clear();
    let got = get(&gw, "/api/me", &[("authorization", &bearer(tokens[2]))]).await;
    assert_eq!(got.status, 401);
    assert_eq!(got.json()["error_description"], "token expired");
    assert_eq!(up.count(), 0);
}

#[test]
fn jwtgate_tokens_decode_in_pyjwt() {
    let out = Command::new(env!("CARGO_BIN_EXE_jwtgate"))
        .args(["token", "--sub", "carol"])
        .env("JWT_SECRET_KEY", KEY)
        .env_remove("JWT_SECRET_KEY_FILE")
        .env_remove("JWTGATE_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap();
    assert_eq!(python(DECODE, Some(&token)).trim(), "carol");
}

#[tokio::test]
async fn pyjwt_tokens_with_a_kid_pass_a_key_ring() {
    // The auth service during a ring rotation: `jwt.encode(..., headers={"kid": ...})`.
    let ring = tempfile::tempdir().unwrap();
    std::fs::write(ring.path().join("2026-10"), OLD_KEY).unwrap();
    std::fs::write(ring.path().join("2026-11"), KEY).unwrap();
    let mint = r#"
import datetime, jwt
now = datetime.datetime.now(tz=datetime.timezone.utc)
claims = {"sub": "dave", "exp": now + datetime.timedelta(minutes=30)}
print(jwt.encode(claims, "KEY", algorithm="HS256", headers={"kid": "2026-11"}))
print(jwt.encode(claims, "OLD", algorithm="HS256", headers={"kid": "2026-10"}))
print(jwt.encode(claims, "OLD", algorithm="HS256", headers={"kid": "2026-11"}))
print(jwt.encode(claims, "OLD", algorithm="HS256"))
"#
    .replace("\"KEY\"", &format!("{KEY:?}"))
    .replace("\"OLD\"", &format!("{OLD_KEY:?}"));
    let tokens = python(&mint, None);
    let tokens: Vec<&str> = tokens.lines().collect();
    let keys = jwtgate::Keys::load(&jwtgate::auth::keys::Env::from_pairs([(
        "JWT_SECRET_KEY_DIR",
        ring.path().to_str().unwrap(),
    )]))
    .unwrap();
    let up = Upstream::start().await;
    let gw = Gateway::start_with_keys(CONFIG, &up.url(), keys).await;
    for (token, status) in [
        (tokens[0], 200),
        (tokens[1], 200),
        // The kid names the key: signed with another, refused.
        (tokens[2], 401),
        // No kid: every key of the ring.
        (tokens[3], 200),
    ] {
        up.clear();
        let got = get(&gw, "/api/me", &[("authorization", &bearer(token))]).await;
        assert_eq!(got.status, status, "{token}: {}", got.body);
        if status == 200 {
            assert_eq!(up.one().all("x-auth-user"), vec!["dave"]);
        } else {
            assert_eq!(up.count(), 0);
        }
    }
}

#[test]
fn jwtgate_tokens_signed_with_a_private_key_decode_in_pyjwt() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/providers");
    for (alg, key, public) in [
        ("RS256", "rsa2048.key.pem", "rsa2048.pub.pem"),
        ("PS384", "rsa2048.key.pem", "rsa2048.pub.pem"),
        ("ES256", "p256.key.pem", "p256.pub.pem"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_jwtgate"))
            .args(["token", "--sub", "erin", "--alg", alg, "--kid", "k-1"])
            .args(["--iss", "https://idp.example", "--key-file"])
            .arg(format!("{fixtures}/{key}"))
            .env_remove("JWT_SECRET_KEY")
            .env_remove("JWTGATE_CONFIG")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{alg}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8(out.stdout).unwrap();
        let decode = format!(
            r#"
import sys, jwt
public = open("{fixtures}/{public}").read()
token = sys.stdin.read().strip()
assert jwt.get_unverified_header(token)["kid"] == "k-1"
claims = jwt.decode(token, public, algorithms=["{alg}"], issuer="https://idp.example")
print(claims["sub"])
"#
        );
        assert_eq!(python(&decode, Some(&token)).trim(), "erin", "{alg}");
    }
}
