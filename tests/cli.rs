//! The `jwtgate` binary as operators use it: exit codes, messages, `check`, `token`, `secret`,
//! `demo`, `.env`, SIGTERM, and logs that never contain a token or a key.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::process::{jwtgate, listen_addr, Running};
use common::{Upstream, KEY, OLD_KEY};

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A config listening on a free port with one route `/` to `upstream`; `server` and `route`
/// add keys to those tables.
fn config_to(dir: &Path, upstream: &str, server: &str, route: &str) -> String {
    write_config(
        dir,
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{server}[[route]]\npath = \"/\"\nupstream = \"{upstream}\"\n{route}"
        ),
    )
}

fn write_config(dir: &Path, body: &str) -> String {
    let p = dir.join("jwtgate.toml");
    std::fs::write(&p, body).unwrap();
    p.to_str().unwrap().to_owned()
}

const GOOD: &str = "[server]\nlisten = \"127.0.0.1:0\"\n[[route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\n";

#[test]
fn check_accepts_a_good_config_and_lists_every_problem_of_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), GOOD);
    let o = jwtgate(dir.path())
        .args(["check", "--config", &cfg])
        .env("JWT_SECRET_KEY", KEY)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));

    // The same through JWTGATE_CONFIG.
    let o = jwtgate(dir.path())
        .arg("check")
        .env("JWTGATE_CONFIG", &cfg)
        .env("JWT_SECRET_KEY", KEY)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));

    let cfg = write_config(
        dir.path(),
        "[server]\nlisten = \"nope\"\ndrain_timeout = \"forever\"\n[auth]\nalgorithms = [\"RS256\"]\nuser_heder = \"X\"\n[[route]]\npath = \"/\"\nupstream = \"ftp://x\"\n",
    );
    let o = jwtgate(dir.path())
        .args(["check", "--config", &cfg])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let (_, err) = text(&o);
    for needle in [
        "server.listen",
        "server.drain_timeout",
        "auth.user_heder: unknown key",
        "route[0].upstream",
        "JWT_SECRET_KEY is not set",
        "jwtgate secret",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

/// A JWKS server on loopback for `check --fetch` (answers every request, then closes).
fn jwks_server(body: &'static str) -> String {
    use std::io::Write;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}/certs")
}

#[test]
fn check_validates_providers_without_fetching_and_check_fetch_fetches() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/providers");
    let jwks = jwks_server(
        r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"ed-1","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},{"kty":"oct","kid":"s","k":"AA"}]}"#,
    );
    let providers = format!(
        "[[auth.provider]]\nissuer = \"https://a.example\"\nalgorithms = [\"EdDSA\"]\njwks_url = \"{jwks}\"\n\
         [[auth.provider]]\nissuer = \"https://b.example\"\nalgorithms = [\"RS256\"]\npublic_key_file = \"{fixtures}/rsa2048.pub.pem\"\n"
    );
    let cfg = write_config(dir.path(), &format!("{providers}{GOOD}"));
    // No JWT_SECRET_KEY: with providers the shared secret is simply off. Nothing is fetched.
    let o = jwtgate(dir.path())
        .args(["check", "--config", &cfg])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains("2 providers"), "{out}");
    let o = jwtgate(dir.path())
        .args(["check", "--fetch", "--config", &cfg])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains("ed-1:Ed25519"), "{out}");
    assert!(out.contains("skipped key 1 (kid \"s\")"), "{out}");
    assert!(
        out.contains("\"https://b.example\": 1 key(s) from its file"),
        "{out}"
    );

    // A provider that cannot be reached: check passes (nothing fetched), check --fetch fails.
    let dead = write_config(
        dir.path(),
        &format!(
            "[[auth.provider]]\nissuer = \"https://dead.example\"\nalgorithms = [\"ES256\"]\njwks_url = \"http://127.0.0.1:9/certs\"\n{GOOD}"
        ),
    );
    let o = jwtgate(dir.path())
        .args(["check", "--config", &dead])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let o = jwtgate(dir.path())
        .args(["check", "--fetch", "--config", &dead])
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("https://dead.example") && err.contains("127.0.0.1:9"),
        "{err}"
    );

    // Files are read (not fetched) by check: a short RSA key and a key of the wrong kind are
    // problems, each named.
    let bad = write_config(
        dir.path(),
        &format!(
            "[[auth.provider]]\nissuer = \"https://c.example\"\nalgorithms = [\"RS256\"]\npublic_key_file = \"{fixtures}/rsa1024.pub.pem\"\n\
             [[auth.provider]]\nissuer = \"https://d.example\"\nalgorithms = [\"ES384\"]\npublic_key_file = \"{fixtures}/p256.pub.pem\"\n{GOOD}"
        ),
    );
    let o = jwtgate(dir.path())
        .args(["check", "--config", &bad])
        .env("JWT_SECRET_KEY", KEY)
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("auth.provider[0].public_key_file") && err.contains("1024 bits"),
        "{err}"
    );
    assert!(
        err.contains("auth.provider[1].public_key_file") && err.contains("no key fits"),
        "{err}"
    );
}

#[test]
fn token_with_a_private_key_needs_an_asymmetric_alg_and_the_reverse() {
    let dir = tempfile::tempdir().unwrap();
    let key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/providers/rsa2048.key.pem"
    );
    for (args, want) in [
        (
            vec!["--key-file", key, "--alg", "HS256"],
            "--key-file signs with a private key",
        ),
        (vec!["--alg", "RS256"], "pass --key-file"),
        (vec!["--alg", "RS257"], "not an algorithm"),
        (
            vec!["--key-file", key, "--alg", "ES256"],
            "not a private key for ES256",
        ),
    ] {
        let o = jwtgate(dir.path())
            .args(["token", "--sub", "x"])
            .args(&args)
            .env("JWT_SECRET_KEY", KEY)
            .output()
            .unwrap();
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {out}{err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(out.is_empty());
    }
}

#[test]
fn weak_or_conflicting_keys_exit_2_naming_the_variable_never_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), GOOD);
    let placeholder = "your-secret-key-change-this-in-production";
    let keyfile = dir.path().join("key");
    std::fs::write(&keyfile, format!("{KEY}\n")).unwrap();
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (
            vec![("JWT_SECRET_KEY", placeholder)],
            "JWT_SECRET_KEY is too weak",
            Some(placeholder),
        ),
        (
            vec![("JWT_SECRET_KEY", "tooshort-but-secret")],
            "at least 32",
            Some("tooshort-but-secret"),
        ),
        (vec![("JWT_SECRET_KEY", "changeme")], "JWT_SECRET_KEY", None),
        (
            vec![
                ("JWT_SECRET_KEY", KEY),
                ("JWT_SECRET_KEY_FILE", keyfile.to_str().unwrap()),
            ],
            "both JWT_SECRET_KEY and JWT_SECRET_KEY_FILE",
            Some(KEY),
        ),
        (
            vec![
                ("JWT_SECRET_KEY", KEY),
                ("JWT_SECRET_KEY_PREVIOUS", "short-previous"),
            ],
            "JWT_SECRET_KEY_PREVIOUS is too weak",
            Some("short-previous"),
        ),
    ];
    for (env, want, secret) in cases {
        for args in [vec!["check", "--config", &cfg], vec!["--config", &cfg]] {
            let o = jwtgate(dir.path())
                .args(&args)
                .envs(env.iter().copied())
                .output()
                .unwrap();
            let (out, err) = text(&o);
            assert_eq!(o.status.code(), Some(2), "{env:?} {args:?}: {err}");
            assert!(err.contains(want), "{env:?}: {err}");
            if let Some(s) = secret {
                assert!(
                    !err.contains(s) && !out.contains(s),
                    "{env:?}: the key was printed"
                );
            }
        }
    }
    // The key file works on its own, one trailing newline trimmed.
    let o = jwtgate(dir.path())
        .args(["check", "--config", &cfg])
        .env("JWT_SECRET_KEY_FILE", keyfile.to_str().unwrap())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
}

#[test]
fn dot_env_is_read_and_real_variables_win() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), GOOD);
    std::fs::write(dir.path().join(".env"), format!("JWT_SECRET_KEY={KEY}\n")).unwrap();
    let o = jwtgate(dir.path())
        .args(["check", "--config", &cfg])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let o = jwtgate(dir.path())
        .args(["check", "--config", &cfg])
        .env("JWT_SECRET_KEY", "short")
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "the real variable must win over .env"
    );
}

#[test]
fn running_without_a_config_or_with_bad_arguments_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec![],
        vec!["--bogus"],
        vec!["token"],
        vec!["token", "--sub", "a", "--ttl", "soon"],
    ] {
        let o = jwtgate(dir.path())
            .args(&args)
            .env("JWT_SECRET_KEY", KEY)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {:?}", text(&o));
    }
    let o = jwtgate(dir.path()).arg("--help").output().unwrap();
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn secret_prints_a_fresh_strong_url_safe_secret() {
    let dir = tempfile::tempdir().unwrap();
    let a = jwtgate(dir.path()).arg("secret").output().unwrap();
    let b = jwtgate(dir.path()).arg("secret").output().unwrap();
    assert_eq!(a.status.code(), Some(0));
    let (a, b) = (text(&a).0, text(&b).0);
    let a = a.trim_end_matches('\n');
    assert_ne!(a, b.trim_end());
    assert!(a.len() >= 43, "{a}");
    assert!(
        a.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
        "{a}"
    );
    assert!(jwtgate::auth::keys::strength(a.as_bytes()).is_ok());
}

fn verifier(toml: &str) -> jwtgate::auth::Verifier {
    let c = jwtgate::Config::from_toml(toml).unwrap();
    jwtgate::auth::Verifier::new(&c.auth, &jwtgate::Keys::from_secrets(KEY, None))
}

#[test]
fn a_key_ring_signs_by_kid_and_refuses_the_single_key_variables_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let ring = dir.path().join("keys");
    std::fs::create_dir(&ring).unwrap();
    std::fs::write(ring.join("2026-10"), OLD_KEY).unwrap();
    std::fs::write(ring.join("2026-11"), KEY).unwrap();
    let config = write_config(dir.path(), GOOD);
    let run = |args: &[&str], extra: Option<(&str, &str)>| {
        let mut c = jwtgate(dir.path());
        c.args(args).env("JWT_SECRET_KEY_DIR", &ring);
        if let Some((k, v)) = extra {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        (o.status.code(), text(&o))
    };
    // check accepts the ring; with JWT_SECRET_KEY beside it, exit 2 naming both.
    assert_eq!(run(&["check", "--config", &config], None).0, Some(0));
    let (code, (_, err)) = run(
        &["check", "--config", &config],
        Some(("JWT_SECRET_KEY", KEY)),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("JWT_SECRET_KEY_DIR and JWT_SECRET_KEY are both set"),
        "{err}"
    );
    assert!(!err.contains(KEY), "{err}");
    // Two keys: token needs --kid, and names it in the header.
    let (code, (_, err)) = run(&["token", "--sub", "alice"], None);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--kid") && err.contains("2026-10, 2026-11"),
        "{err}"
    );
    // 2026-11 (KEY), not the ring's first key: --kid picks it.
    let (code, (out, err)) = run(&["token", "--sub", "alice", "--kid", "2026-11"], None);
    assert_eq!(code, Some(0), "{err}");
    let token = out.trim_end();
    assert_eq!(
        jsonwebtoken::decode_header(token).unwrap().kid.as_deref(),
        Some("2026-11")
    );
    let keys = jwtgate::Keys::load(&jwtgate::auth::keys::Env::from_pairs([(
        "JWT_SECRET_KEY_DIR",
        ring.to_str().unwrap(),
    )]))
    .unwrap();
    let c = jwtgate::Config::from_toml(GOOD).unwrap();
    let v = jwtgate::auth::Verifier::new(&c.auth, &keys);
    assert_eq!(v.verify(token).unwrap().user, "alice");
    // Signed with KEY: it passes KEY alone, not OLD_KEY alone.
    let with = |k: &str| {
        jwtgate::auth::Verifier::new(&c.auth, &jwtgate::Keys::from_secrets(k, None))
            .verify(token)
            .is_ok()
    };
    assert!(with(KEY) && !with(OLD_KEY));
    let (code, (_, err)) = run(&["token", "--sub", "alice", "--kid", "nope"], None);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no such key"), "{err}");
}

#[test]
fn token_mints_what_the_gateway_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let o = jwtgate(dir.path())
        .args([
            "token",
            "--sub",
            "alice",
            "--ttl",
            "10m",
            "--claim",
            "role=admin",
            "--claim",
            "level=3",
        ])
        .env("JWT_SECRET_KEY", KEY)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let (out, err) = text(&o);
    assert!(err.is_empty(), "{err}");
    let token = out.trim_end();
    assert_eq!(token.lines().count(), 1, "prints only the token");
    let id = verifier(GOOD).verify(token).unwrap();
    assert_eq!(id.user, "alice");
    assert_eq!(id.claims["role"], "admin");
    assert_eq!(id.claims["level"], 3);
    let ttl = id.exp - jwtgate::auth::now();
    assert!((590.0..=601.0).contains(&ttl), "ttl {ttl}");

    // With --config: the first algorithm, issuer and audience, and the user claim.
    let cfg_text = format!(
        "[auth]\nalgorithms = [\"HS384\", \"HS256\"]\nissuer = \"https://auth.example\"\naudience = [\"orders\"]\nuser_claim = \"email\"\n{}",
        &GOOD[GOOD.find("[[route]]").unwrap()..]
    );
    let cfg = write_config(dir.path(), &cfg_text);
    let o = jwtgate(dir.path())
        .args(["token", "--sub", "a@example.com", "--config", &cfg])
        .env("JWT_SECRET_KEY", KEY)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let token = text(&o).0.trim_end().to_owned();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::HS384);
    assert_eq!(
        verifier(&cfg_text).verify(&token).unwrap().user,
        "a@example.com"
    );

    // No key: exit 2.
    let o = jwtgate(dir.path())
        .args(["token", "--sub", "a"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

fn http_get(addr: &str, path: &str, auth: Option<&str>) -> (u16, String) {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_logs_one_access_line_per_request_without_secrets_and_stops_on_sigterm() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_to(dir.path(), &up.url(), "", "");
    let mut cmd = jwtgate(dir.path());
    cmd.args(["--config", &cfg])
        .env("JWT_SECRET_KEY", KEY)
        .env("RUST_LOG", "trace")
        .env("JWTGATE_LOG_FORMAT", "json");
    let good = common::token("alice");
    let expired = common::token_with(
        serde_json::json!({"sub": "bob", "exp": common::now() - 3600}),
        jsonwebtoken::Algorithm::HS256,
        KEY,
    );
    let (code, log) = tokio::task::spawn_blocking(move || {
        let mut run = Running::start(cmd);
        let addr = listen_addr(&run.wait_for("\"listening\""));
        assert_eq!(
            http_get(
                &addr,
                "/a?access_token=should-not-be-logged",
                Some(&format!("Bearer {good}"))
            )
            .0,
            200
        );
        assert_eq!(
            http_get(&addr, "/b", Some(&format!("Bearer {expired}"))).0,
            401
        );
        let mut forged = good.clone().into_bytes();
        let i = forged.len() - 10;
        forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert_eq!(
            http_get(&addr, "/c", Some(&format!("Bearer {forged}"))).0,
            401
        );
        assert_eq!(http_get(&addr, "/d", None).0, 401);
        run.wait_for("\"path\":\"/d\"");
        let (code, log) = run.terminate();
        (code, log, good, expired)
    })
    .await
    .map(|(code, log, good, expired)| {
        let all = log.join("\n");
        for secret in [
            KEY,
            &good,
            &expired,
            good.rsplit('.').next().unwrap(),
            expired.rsplit('.').next().unwrap(),
            "should-not-be-logged",
        ] {
            assert!(
                !all.contains(secret),
                "the log contains a secret or token:\n{all}"
            );
        }
        (code, log)
    })
    .unwrap();
    assert_eq!(code, Some(0));
    let access: Vec<serde_json::Value> = log
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "jwtgate::access")
        .collect();
    assert_eq!(access.len(), 4, "{log:#?}");
    let a = &access[0];
    assert_eq!(
        (
            a["method"].as_str(),
            a["path"].as_str(),
            a["status"].as_u64()
        ),
        (Some("GET"), Some("/a"), Some(200))
    );
    assert_eq!(
        (a["user"].as_str(), a["auth"].as_str(), a["route"].as_str()),
        (Some("alice"), Some("ok"), Some("/"))
    );
    assert!(
        a["upstream_ms"].is_number() && a["total_ms"].is_number() && a["timestamp"].is_string()
    );
    assert_eq!(
        (
            access[1]["status"].as_u64(),
            access[1]["user"].as_str(),
            access[1]["auth"].as_str()
        ),
        (Some(401), Some("-"), Some("expired"))
    );
    assert_eq!(access[2]["auth"], "bad_signature");
    assert_eq!(access[3]["auth"], "missing");
}

#[test]
fn demo_prints_working_curl_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = jwtgate(dir.path());
    cmd.args(["demo", "--listen", "127.0.0.1:0"])
        .env("JWTGATE_LOG_FORMAT", "json");
    let mut run = Running::start(cmd);
    let with = run.wait_for("curl -s -H 'Authorization: Bearer ");
    let without = run.wait_for("curl -si http://");
    let token = with
        .split("Bearer ")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap()
        .to_owned();
    let url = with.rsplit(' ').next().unwrap().to_owned();
    let addr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let path = &url[url.find(&addr).unwrap() + addr.len()..];
    let (status, out) = http_get(&addr, path, Some(&format!("Bearer {token}")));
    assert_eq!(status, 200, "{out}");
    assert!(out.contains("\"x-auth-user\": \"demo\""), "{out}");
    assert!(!out.contains(&token), "the echo shows the token: {out}");
    let without_url = without.rsplit(' ').next().unwrap();
    assert_eq!(without_url, url);
    assert_eq!(http_get(&addr, path, None).0, 401);
    let (code, _) = run.terminate();
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_keys_from_dot_env_and_admin_probes_answer() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_to(
        dir.path(),
        &up.url(),
        "admin_listen = \"127.0.0.1:0\"\n",
        "",
    );
    std::fs::write(dir.path().join(".env"), format!("JWT_SECRET_KEY={KEY}\n")).unwrap();
    let key_b = "sighup-key-b-0f1e2d3c4b5a69788796a5b4c3d2e1f0";
    let token_a = common::token("alice");
    let token_b = common::token_with(
        serde_json::json!({"sub": "bob", "exp": common::now() + 600}),
        jsonwebtoken::Algorithm::HS256,
        key_b,
    );
    let mut cmd = jwtgate(dir.path());
    cmd.args(["--config", &cfg])
        .env("JWTGATE_LOG_FORMAT", "json");
    let env_file = dir.path().join(".env");
    let log = tokio::task::spawn_blocking(move || {
        let mut run = Running::start(cmd);
        let admin = run.admin_addr();
        let addr = listen_addr(&run.wait_for("\"listening\""));
        assert_eq!(http_get(&admin, "/healthz", None).0, 200);
        assert_eq!(http_get(&admin, "/readyz", None).0, 200);
        assert!(http_get(&admin, "/metrics", None)
            .1
            .contains("jwtgate_ready 1"));
        assert_eq!(
            http_get(&addr, "/x", Some(&format!("Bearer {token_a}"))).0,
            200
        );
        assert_eq!(
            http_get(&addr, "/x", Some(&format!("Bearer {token_b}"))).0,
            401
        );

        std::fs::write(&env_file, format!("JWT_SECRET_KEY={key_b}\n")).unwrap();
        let pid = run.child.id().to_string();
        Command::new("kill").args(["-HUP", &pid]).status().unwrap();
        run.wait_for("reloaded config and keys");
        assert_eq!(
            http_get(&addr, "/x", Some(&format!("Bearer {token_b}"))).0,
            200
        );
        assert_eq!(
            http_get(&addr, "/x", Some(&format!("Bearer {token_a}"))).0,
            401
        );

        // A weak key on reload is refused; the previous key keeps serving.
        std::fs::write(&env_file, "JWT_SECRET_KEY=changeme\n").unwrap();
        Command::new("kill").args(["-HUP", &pid]).status().unwrap();
        run.wait_for("reload refused");
        assert_eq!(
            http_get(&addr, "/x", Some(&format!("Bearer {token_b}"))).0,
            200
        );
        let (code, log) = run.terminate();
        assert_eq!(code, Some(0));
        log
    })
    .await
    .unwrap();
    let all = log.join("\n");
    assert!(
        !all.contains(KEY) && !all.contains(key_b) && !all.contains("changeme"),
        "{all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_format_follows_the_terminal_and_the_variable() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_to(dir.path(), &up.url(), "", "");
    for (format, json) in [(None, true), (Some("json"), true), (Some("text"), false)] {
        let mut cmd = jwtgate(dir.path());
        cmd.args(["--config", &cfg]).env("JWT_SECRET_KEY", KEY);
        match format {
            Some(f) => cmd.env("JWTGATE_LOG_FORMAT", f),
            None => cmd.env_remove("JWTGATE_LOG_FORMAT"),
        };
        let (code, log) = tokio::task::spawn_blocking(move || {
            let mut run = Running::start(cmd);
            run.wait_for("listening");
            run.terminate()
        })
        .await
        .unwrap();
        assert_eq!(code, Some(0));
        let line = log.iter().find(|l| l.contains("listening")).unwrap();
        // stdout is a pipe here, not a terminal: JSON unless text is asked for, and text
        // without colour codes.
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            json,
            "{format:?}: {line}"
        );
        assert!(!line.contains('\u{1b}'), "{format:?}: {line:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_a_second_one_stops_at_once() {
    let up = std::sync::Arc::new(Upstream::start().await);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_to(
        dir.path(),
        &up.url(),
        "drain_timeout = \"10s\"\n",
        "auth = \"public\"\n",
    );
    for twice in [false, true] {
        let mut cmd = jwtgate(dir.path());
        cmd.args(["--config", &cfg])
            .env("JWT_SECRET_KEY", KEY)
            .env("JWTGATE_LOG_FORMAT", "json");
        let up = up.clone();
        tokio::task::spawn_blocking(move || {
            let mut run = Running::start(cmd);
            let addr = listen_addr(&run.wait_for("\"listening\""));
            // /__slow answers after 3 s.
            let (seen, answered) = (up.count(), up.slow_done());
            let slow = std::thread::spawn(move || http_get(&addr, "/__slow", None));
            common::until_blocking("the slow request at the upstream", || up.count() > seen);
            let pid = run.child.id().to_string();
            Command::new("kill").args(["-TERM", &pid]).status().unwrap();
            run.wait_for("draining");
            if twice {
                Command::new("kill").args(["-TERM", &pid]).status().unwrap();
                let (code, _) = run.terminate_waiting();
                assert_eq!(code, Some(1), "a forced stop is not a clean one");
                // At once: gone before the upstream had its answer ready.
                assert_eq!(
                    up.slow_done(),
                    answered,
                    "the forced stop waited for the in-flight request"
                );
                assert_ne!(slow.join().unwrap().0, 200);
            } else {
                let (code, _) = run.terminate_waiting();
                assert_eq!(code, Some(0));
                assert_eq!(
                    slow.join().unwrap().0,
                    200,
                    "the in-flight request was cut off"
                );
            }
        })
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_whose_stdout_nobody_reads_keeps_serving_and_counts_the_lines_it_drops() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_to(
        dir.path(),
        &up.url(),
        "admin_listen = \"127.0.0.1:0\"\n",
        "",
    );
    let mut cmd = jwtgate(dir.path());
    cmd.args(["--config", &cfg])
        .env("JWT_SECRET_KEY", KEY)
        .env("RUST_LOG", "info")
        .env("JWTGATE_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let token = common::token("alice");
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = cmd.spawn().unwrap();
        // Read stdout only until both listeners are up, then never again (the pipe stays open:
        // a log shipper that stalled).
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let (mut listen, mut admin) = (None, None);
        while listen.is_none() || admin.is_none() {
            let mut line = String::new();
            assert!(out.read_line(&mut line).unwrap() > 0, "stdout closed");
            if line.contains("\"admin listening\"") {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                admin = Some(v["admin_listen"].as_str().unwrap().to_owned());
            } else if line.contains("\"listening\"") {
                listen = Some(listen_addr(&line));
            }
        }
        let (listen, admin) = (listen.unwrap(), admin.unwrap());
        // 20,000 requests, each an access-log line: far more than the pipe, the writer's
        // buffer and the queue hold together. Pipelined in batches, on one connection.
        let mut s = std::net::TcpStream::connect(&listen).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let one = format!("GET /x HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\r\n");
        let batch = one.repeat(200);
        let mut answered = 0;
        let mut pending = Vec::new();
        let mut buf = vec![0u8; 65536];
        for _ in 0..100 {
            s.write_all(batch.as_bytes()).unwrap();
            let mut got = 0;
            while got < 200 {
                let n = s.read(&mut buf).unwrap();
                assert!(
                    n > 0,
                    "the gateway closed the connection after {answered} answers"
                );
                pending.extend_from_slice(&buf[..n]);
                // Each answer is "HTTP/1.1 200 OK ... content-length: 2\r\n\r\nok".
                while let Some(end) = pending.windows(6).position(|w| w == b"\r\n\r\nok") {
                    assert!(
                        pending.starts_with(b"HTTP/1.1 200"),
                        "{}",
                        String::from_utf8_lossy(&pending)
                    );
                    pending.drain(..end + 6);
                    got += 1;
                }
            }
            answered += got;
        }
        assert_eq!(answered, 20_000);
        let (status, metrics) = http_get(&admin, "/metrics", None);
        assert_eq!(status, 200);
        let dropped: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("jwtgate_log_lines_dropped_total "))
            .unwrap_or_else(|| panic!("no drop counter in:\n{metrics}"))
            .trim()
            .parse()
            .unwrap();
        assert!(
            dropped > 0,
            "nothing was dropped: was stdout read after all?"
        );
        // A stop still works while stdout is blocked.
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let mut exited = None;
        common::until_blocking("an exit while stdout was blocked", || {
            exited = child.try_wait().unwrap();
            exited.is_some()
        });
        drop(out);
        assert_eq!(exited.unwrap().code(), Some(0));
    })
    .await
    .unwrap();
}
