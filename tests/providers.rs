//! Identity providers end to end: tokens minted by PyJWT with `cryptography` keys for every
//! algorithm (tests/providers/idp.py), keys from a JWKS file, PEM files, a JWKS URL and OpenID
//! Connect discovery on a loopback provider run inside the test; rotation under load, the
//! provider down, slow, garbled and coming up late, made-up `kid`s, and algorithm confusion.
//! Needs python3 with PyJWT and cryptography (`.ci/test` installs them); fails, rather than
//! skips, without them.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use jwtgate::auth::provider::REFETCH_INTERVAL;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// tests/providers/idp.py with `args`, `stdin` on its standard input.
fn python(args: &[&str], stdin: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/providers/idp.py");
    let args: Vec<&str> = std::iter::once(script)
        .chain(args.iter().copied())
        .collect();
    common::python(&args, &[], stdin, "PyJWT with cryptography")
}

/// One key per family (rsa, p256, p384, ed25519), made by `cryptography`.
fn keys() -> Value {
    serde_json::from_str(&python(&["keys"], "")).unwrap()
}

/// Tokens signed by PyJWT: (key name, alg, kid, claims) each.
fn mint(keys: &Value, jobs: &[(&str, &str, Option<&str>, Value)]) -> Vec<String> {
    let jobs: Vec<Value> = jobs
        .iter()
        .map(|(key, alg, kid, claims)| {
            json!({"key": keys[key]["private_pem"], "alg": alg, "kid": kid, "claims": claims})
        })
        .collect();
    python(&["mint"], &Value::Array(jobs).to_string())
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A JWK of `keys[name]` with this `kid` (and `alg`, when given).
fn jwk(keys: &Value, name: &str, kid: &str, alg: Option<&str>) -> Value {
    let mut k = keys[name]["jwk"].clone();
    k["kid"] = json!(kid);
    k["use"] = json!("sig");
    if let Some(alg) = alg {
        k["alg"] = json!(alg);
    }
    k
}

fn jwks(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

fn claims(iss: &str, sub: &str) -> Value {
    json!({"iss": iss, "sub": sub, "exp": now() + 600, "email": format!("{sub}@example.com")})
}

/// How the loopback provider answers.
#[derive(Clone, Debug)]
enum Mode {
    Serve,
    Status(u16),
    Garbled,
    Slow(Duration),
}

/// An identity provider on loopback: `/.well-known/openid-configuration` and `/certs`.
struct Idp {
    addr: SocketAddr,
    jwks: Arc<Mutex<String>>,
    /// A discovery document to serve instead of the right one.
    discovery: Arc<Mutex<Option<String>>>,
    mode: Arc<Mutex<Mode>>,
    /// Requests for `/certs`.
    fetches: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Idp {
    async fn start(jwks: String) -> Idp {
        Idp::start_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), jwks)
    }

    fn start_on(listener: TcpListener, jwks: String) -> Idp {
        let addr = listener.local_addr().unwrap();
        let idp = Idp {
            addr,
            jwks: Arc::new(Mutex::new(jwks)),
            discovery: Arc::new(Mutex::new(None)),
            mode: Arc::new(Mutex::new(Mode::Serve)),
            fetches: Arc::new(AtomicUsize::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let discovery = idp.discovery.clone();
        let (jwks, mode, fetches, stop) = (
            idp.jwks.clone(),
            idp.mode.clone(),
            idp.fetches.clone(),
            idp.stop.clone(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let (jwks, mode, fetches) = (jwks.clone(), mode.clone(), fetches.clone());
                let discovery = discovery.lock().unwrap().clone();
                tokio::spawn(async move {
                    let Some(head) = read_request_head(&mut s).await else {
                        return;
                    };
                    let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                    let mode = mode.lock().unwrap().clone();
                    let issuer = format!("http://{addr}");
                    let (status, body) = match path.as_str() {
                        "/.well-known/openid-configuration" => (
                            200,
                            discovery.unwrap_or_else(|| {
                                json!({"issuer": issuer, "jwks_uri": format!("{issuer}/certs")})
                                    .to_string()
                            }),
                        ),
                        "/certs" => {
                            fetches.fetch_add(1, Ordering::SeqCst);
                            (200, jwks.lock().unwrap().clone())
                        }
                        _ => (404, "{}".to_owned()),
                    };
                    let (status, body) = match mode {
                        Mode::Serve => (status, body),
                        Mode::Status(code) => (code, "{}".to_owned()),
                        Mode::Garbled => {
                            (200, "{\"keys\": [{\"kty\": \"RSA\", \"n\": 12".to_owned())
                        }
                        Mode::Slow(d) => {
                            tokio::time::sleep(d).await;
                            (status, body)
                        }
                    };
                    let response = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(response.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        idp
    }

    fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set_jwks(&self, jwks: String) {
        *self.jwks.lock().unwrap() = jwks;
    }

    fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag and closes the listener.
        let addr = self.addr;
        std::thread::spawn(move || {
            let _ = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200));
        });
    }
}

/// A config with one required route and `providers` (TOML tables, `{issuer}` replaced).
fn config(providers: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
connect_timeout = "1s"
drain_timeout = "2s"

[auth]
claim_headers = {{ role = "X-Auth-Role" }}

{providers}

[[route]]
path = "/"
upstream = "{{upstream}}"
"#
    )
}

/// A provider whose keys are at `idp`'s `/certs`, for `algorithms` (TOML list items).
fn url_provider(idp: &Idp, algorithms: &str) -> String {
    let iss = idp.issuer();
    format!(
        "[[auth.provider]]\nissuer = \"{iss}\"\nalgorithms = [{algorithms}]\njwks_url = \"{iss}/certs\"\n"
    )
}

/// The recording upstream and a gateway with `providers` (and the shared secret), once every
/// provider has keys.
async fn ready_gateway(providers: &str) -> (Upstream, Gateway) {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config(providers), &up.url()).await;
    until_ready(&gw).await;
    (up, gw)
}

async fn until_ready(gw: &Gateway) {
    until("the gateway ready", || gw.gateway.is_ready()).await;
}

/// The failed key fetches the gateway counted for `provider`.
fn fetch_errors(gw: &Gateway, provider: &str) -> f64 {
    let line = format!("jwtgate_jwks_fetches_total{{provider=\"{provider}\",result=\"error\"}} ");
    gw.gateway
        .metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(line.as_str())?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Waits until the gateway has tried `provider`'s keys and failed.
async fn until_a_failed_fetch(gw: &Gateway, provider: &str) {
    until("a failed key fetch", || fetch_errors(gw, provider) >= 1.0).await;
}

async fn call(gw: &Gateway, token: &str) -> Got {
    get(
        gw,
        "/me",
        &[
            ("authorization", &bearer(token)),
            ("x-auth-email", "forged"),
        ],
    )
    .await
}

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[tokio::test]
async fn every_algorithm_signed_by_pyjwt_passes_from_a_jwks_file_and_from_pem_files() {
    let keys = keys();
    let d = dir();
    let iss = "https://sso.example.com/realms/main";
    let jwks_path = d.path().join("jwks.json");
    std::fs::write(
        &jwks_path,
        jwks(&[
            jwk(&keys, "rsa", "r1", None),
            jwk(&keys, "p256", "e1", None),
            jwk(&keys, "p384", "e2", None),
            jwk(&keys, "ed25519", "o1", None),
        ]),
    )
    .unwrap();
    let mut providers = format!(
        "[[auth.provider]]\nissuer = \"{iss}\"\nalgorithms = [\"RS256\", \"RS384\", \"RS512\", \"PS256\", \"PS384\", \"PS512\", \"ES256\", \"ES384\", \"EdDSA\"]\njwks_file = \"{}\"\nclaim_headers = {{ email = \"X-Auth-Email\" }}\n",
        jwks_path.display()
    );
    for name in ["rsa", "p256", "p384", "ed25519"] {
        let pem = d.path().join(format!("{name}.pem"));
        std::fs::write(&pem, keys[name]["public_pem"].as_str().unwrap()).unwrap();
        let alg = match name {
            "rsa" => "\"RS256\", \"PS512\"",
            "p256" => "\"ES256\"",
            "p384" => "\"ES384\"",
            _ => "\"EdDSA\"",
        };
        providers += &format!(
            "[[auth.provider]]\nissuer = \"https://{name}.example\"\nalgorithms = [{alg}]\npublic_key_file = \"{}\"\n",
            pem.display()
        );
    }
    let up = Upstream::start().await;
    let gw = Gateway::start_with_keys(&config(&providers), &up.url(), jwtgate::Keys::none()).await;
    let mut jobs = Vec::new();
    for (alg, key, kid) in [
        ("RS256", "rsa", "r1"),
        ("RS384", "rsa", "r1"),
        ("RS512", "rsa", "r1"),
        ("PS256", "rsa", "r1"),
        ("PS384", "rsa", "r1"),
        ("PS512", "rsa", "r1"),
        ("ES256", "p256", "e1"),
        ("ES384", "p384", "e2"),
        ("EdDSA", "ed25519", "o1"),
    ] {
        // With its kid, and without one (every fitting key is tried).
        jobs.push((key, alg, Some(kid), claims(iss, &format!("{alg}-kid"))));
        jobs.push((key, alg, None, claims(iss, &format!("{alg}-nokid"))));
    }
    for (name, alg) in [
        ("rsa", "RS256"),
        ("rsa", "PS512"),
        ("p256", "ES256"),
        ("p384", "ES384"),
        ("ed25519", "EdDSA"),
    ] {
        let iss = format!("https://{name}.example");
        jobs.push((
            name,
            alg,
            Some("ignored"),
            claims(&iss, &format!("pem-{alg}")),
        ));
    }
    let tokens = mint(&keys, &jobs);
    assert_eq!(tokens.len(), jobs.len());
    for (token, job) in tokens.iter().zip(&jobs) {
        up.clear();
        let sub = job.3["sub"].as_str().unwrap();
        let got = call(&gw, token).await;
        assert_eq!(got.status, 200, "{sub}: {}", got.body);
        let seen = up.one();
        assert_eq!(seen.all("x-auth-user"), vec![sub]);
        // The jwks_file provider passes `email` on; the PEM providers inherit auth's
        // claim_headers (role only), and the forged copy is gone either way.
        let email = if job.3["iss"] == iss {
            vec![format!("{sub}@example.com")]
        } else {
            vec![]
        };
        assert_eq!(seen.all("x-auth-email"), email, "{sub}");
    }
    // The same tokens with a signature byte changed fail.
    for token in &tokens[..4] {
        let (head, sig) = token.rsplit_once('.').unwrap();
        let mut sig = sig.as_bytes().to_vec();
        sig[5] = if sig[5] == b'A' { b'B' } else { b'A' };
        let forged = format!("{head}.{}", String::from_utf8(sig).unwrap());
        up.clear();
        let got = call(&gw, &forged).await;
        assert_eq!(got.status, 401, "{}", got.body);
        assert_eq!(up.count(), 0);
    }
}

#[tokio::test]
async fn keys_are_pinned_to_their_kind_and_hmac_never_passes_with_a_public_key() {
    let keys = keys();
    let d = dir();
    let iss = "https://sso.example";
    let path = d.path().join("jwks.json");
    std::fs::write(
        &path,
        jwks(&[
            jwk(&keys, "rsa", "r1", Some("RS256")),
            jwk(&keys, "p256", "e1", None),
        ]),
    )
    .unwrap();
    let providers = format!(
        "[[auth.provider]]\nissuer = \"{iss}\"\nalgorithms = [\"RS256\", \"PS256\", \"ES256\", \"ES384\"]\njwks_file = \"{}\"\n",
        path.display()
    );
    let up = Upstream::start().await;
    // The shared secret is on too: confusion must fail with it present.
    let gw = Gateway::start(&config(&providers), &up.url()).await;
    let exp = now() + 600;
    let rsa = &keys["rsa"];
    let der = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(rsa["public_der_b64"].as_str().unwrap())
            .unwrap()
    };
    let n_text = rsa["jwk"]["n"].as_str().unwrap().to_owned();
    let n_bytes = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&n_text)
            .unwrap()
    };
    // HS256 signed with the provider's public key: as PEM, as DER, as the JWK's n (text and
    // bytes); with the provider's iss, and without an iss (a shared-secret token).
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        (
            "pem",
            rsa["public_pem"].as_str().unwrap().as_bytes().to_vec(),
        ),
        ("der", der),
        ("n", n_text.into_bytes()),
        ("n-bytes", n_bytes),
    ];
    for (what, secret) in &secrets {
        for (claims, why) in [
            (
                json!({"iss": iss, "sub": "mallory", "exp": exp}),
                "token algorithm not allowed",
            ),
            (json!({"sub": "mallory", "exp": exp}), "invalid signature"),
        ] {
            for kid in [None, Some("r1")] {
                let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
                header.kid = kid.map(str::to_owned);
                let token = jsonwebtoken::encode(
                    &header,
                    &claims,
                    &jsonwebtoken::EncodingKey::from_secret(secret),
                )
                .unwrap();
                up.clear();
                let got = call(&gw, &token).await;
                assert_eq!(
                    got.status, 401,
                    "HS256 with the key as {what}: {}",
                    got.body
                );
                assert_eq!(up.count(), 0, "HS256 with the key as {what} was forwarded");
                assert_eq!(got.json()["error_description"], why, "{what}");
            }
        }
    }
    // The key type is pinned: the RSA key's JWK says RS256, so PS256 does not use it; the
    // P-256 key never verifies ES384; an RS256 token from another issuer is a shared-secret
    // token, and RS256 is not a shared-secret algorithm.
    let tokens = mint(
        &keys,
        &[
            ("rsa", "PS256", Some("r1"), claims(iss, "ps")),
            ("rsa", "RS256", Some("r1"), claims(iss, "rs")),
            (
                "rsa",
                "RS256",
                Some("r1"),
                claims("https://elsewhere", "other"),
            ),
            (
                "rsa",
                "RS256",
                Some("r1"),
                json!({"sub": "noiss", "exp": exp}),
            ),
        ],
    );
    let want = [
        (401, "invalid signature"),
        (200, ""),
        (401, "token algorithm not allowed"),
        (401, "token algorithm not allowed"),
    ];
    for (token, (status, why)) in tokens.iter().zip(want) {
        let got = call(&gw, token).await;
        assert_eq!(got.status, status, "{}", got.body);
        if status == 401 {
            assert_eq!(got.json()["error_description"], why);
        }
    }
    // A P-256 signature relabelled ES384 (the bytes would not fit anyway, but the key is not
    // even tried): refused.
    let es = mint(&keys, &[("p256", "ES256", Some("e1"), claims(iss, "es"))]).remove(0);
    let (h, rest) = es.split_once('.').unwrap();
    let mut header: Value = {
        use base64::Engine;
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(call(&gw, &es).await.status, 200);
    header["alg"] = json!("ES384");
    let relabelled = format!("{}.{rest}", b64(&header.to_string()));
    assert_eq!(call(&gw, &relabelled).await.status, 401);
}

#[tokio::test]
async fn discovery_and_a_jwks_url_on_a_loopback_provider() {
    let keys = keys();
    let idp = Idp::start(jwks(&[jwk(&keys, "ed25519", "k1", None)])).await;
    let iss = idp.issuer();
    // One by discovery (no source), one by its jwks_url.
    let providers = format!(
        "[[auth.provider]]\nissuer = \"{iss}\"\nalgorithms = [\"EdDSA\"]\naudience = \"orders\"\n\n[[auth.provider]]\nissuer = \"https://direct.example\"\nalgorithms = [\"EdDSA\"]\njwks_url = \"{iss}/certs\"\nuser_claim = \"email\"\n"
    );
    let up = Upstream::start().await;
    let gw = Gateway::start_with_keys(&config(&providers), &up.url(), jwtgate::Keys::none()).await;
    until_ready(&gw).await;
    let mut with_aud = claims(&iss, "dora");
    with_aud["aud"] = json!(["orders"]);
    let tokens = mint(
        &keys,
        &[
            ("ed25519", "EdDSA", Some("k1"), with_aud),
            ("ed25519", "EdDSA", Some("k1"), claims(&iss, "no-aud")),
            (
                "ed25519",
                "EdDSA",
                Some("k1"),
                claims("https://direct.example", "ursula"),
            ),
        ],
    );
    up.clear();
    let got = call(&gw, &tokens[0]).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(up.one().all("x-auth-user"), vec!["dora"]);
    let got = call(&gw, &tokens[1]).await;
    assert_eq!(got.status, 401);
    assert_eq!(got.json()["error_description"], "wrong audience");
    up.clear();
    let got = call(&gw, &tokens[2]).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(up.one().all("x-auth-user"), vec!["ursula@example.com"]);
    // Without a shared secret, a token with no provider's iss is refused.
    let hs = token("hs-user");
    assert_eq!(call(&gw, &hs).await.status, 401);
    let metrics = gw.gateway.metrics.render();
    for provider in [iss.as_str(), "https://direct.example"] {
        assert!(
            metrics.contains(&format!(
                "jwtgate_jwks_fetches_total{{provider=\"{provider}\",result=\"ok\"}}"
            )),
            "{metrics}"
        );
        assert!(
            metrics.contains(&format!("jwtgate_jwks_keys{{provider=\"{provider}\"}} 1")),
            "{metrics}"
        );
    }
}

#[tokio::test]
async fn a_provider_that_comes_up_after_the_gateway() {
    let keys = keys();
    // Take a port, let it go, and start the provider on it later.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let iss = format!("http://{port}");
    let providers = format!("[[auth.provider]]\nissuer = \"{iss}\"\nalgorithms = [\"ES256\"]\n");
    let up = Upstream::start().await;
    let gw = Gateway::start(&config(&providers), &up.url()).await;
    until_a_failed_fetch(&gw, &iss).await;
    assert!(!gw.gateway.is_ready(), "ready without the provider's keys");
    let token = mint(
        &keys,
        &[("p256", "ES256", Some("k1"), claims(&iss, "late"))],
    )
    .remove(0);
    let got = call(&gw, &token).await;
    assert_eq!(got.status, 503, "{}", got.body);
    assert!(got.headers.get("retry-after").is_some());
    assert_eq!(up.count(), 0);
    // The shared secret keeps working meanwhile.
    assert_eq!(call(&gw, &common::token("shared")).await.status, 200);
    let _idp = Idp::start_on(
        TcpListener::bind(port).await.unwrap(),
        jwks(&[jwk(&keys, "p256", "k1", None)]),
    );
    until_ready(&gw).await;
    up.clear();
    let got = call(&gw, &token).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(up.one().all("x-auth-user"), vec!["late"]);
}

#[tokio::test]
async fn a_failing_provider_keeps_the_last_good_keys() {
    let keys = keys();
    let idp = Idp::start(jwks(&[jwk(&keys, "rsa", "k1", None)])).await;
    let iss = idp.issuer();
    let (up, gw) = ready_gateway(&url_provider(&idp, r#""RS256""#)).await;
    let tokens = mint(
        &keys,
        &[
            ("rsa", "RS256", Some("k1"), claims(&iss, "kept")),
            ("rsa", "RS256", Some("nope-1"), claims(&iss, "x")),
            ("rsa", "RS256", Some("nope-2"), claims(&iss, "x")),
            ("rsa", "RS256", Some("nope-3"), claims(&iss, "x")),
        ],
    );
    assert_eq!(call(&gw, &tokens[0]).await.status, 200);
    // Down (500), garbled, slow (past the 5 s fetch timeout): each time an unknown kid asks
    // for a refetch, it fails, and the good token still passes.
    for (i, mode) in [
        Mode::Status(500),
        Mode::Garbled,
        Mode::Slow(Duration::from_secs(7)),
    ]
    .into_iter()
    .enumerate()
    {
        idp.set_mode(mode.clone());
        // Past the time between refetches: the wall-clock time this behaviour needs (the
        // fetches that follow are the provider's retries too, so no fetch tells that it has
        // passed).
        tokio::time::sleep(REFETCH_INTERVAL + Duration::from_millis(100)).await;
        let got = call(&gw, &tokens[1 + i]).await;
        assert_eq!(got.status, 401, "{mode:?}: {}", got.body);
        assert_eq!(got.json()["error_description"], "unknown key id");
        up.clear();
        let got = call(&gw, &tokens[0]).await;
        assert_eq!(got.status, 200, "{mode:?}: {}", got.body);
        assert_eq!(up.one().all("x-auth-user"), vec!["kept"]);
        assert!(gw.gateway.is_ready(), "{mode:?}: not ready with good keys");
    }
    let metrics = gw.gateway.metrics.render();
    let errors: f64 = metrics
        .lines()
        .find(|l| l.starts_with("jwtgate_jwks_fetches_total") && l.contains("result=\"error\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(errors >= 3.0, "fetch errors not counted: {metrics}");
}

#[tokio::test]
async fn made_up_kids_cannot_hammer_the_provider() {
    let keys = keys();
    let idp = Idp::start(jwks(&[jwk(&keys, "p384", "k1", None)])).await;
    let iss = idp.issuer();
    let (up, gw) = ready_gateway(&url_provider(&idp, r#""ES384""#)).await;
    let before = idp.fetches();
    let good = mint(
        &keys,
        &[("p384", "ES384", Some("k1"), claims(&iss, "real"))],
    )
    .remove(0);
    let (_, rest) = good.split_once('.').unwrap();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let header = json!({"alg": "ES384", "kid": format!("made-up-{i}")}).to_string();
        let token = format!("{}.{rest}", b64(&header));
        let url = gw.url("/me");
        tasks.push(tokio::spawn(async move {
            let req = hyper::Request::get(url)
                .header("authorization", bearer(&token))
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap();
            client().request(req).await.unwrap().status().as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 401);
    }
    let fetched = idp.fetches() - before;
    // One refetch per 5 s window at most.
    let windows = start.elapsed().as_secs() / 5 + 1;
    assert!(
        fetched as u64 <= windows,
        "{fetched} fetches for 200 made-up kids in {:?}",
        start.elapsed()
    );
    assert_eq!(up.count(), 0);
    assert_eq!(call(&gw, &good).await.status, 200);
}

#[tokio::test]
async fn jwks_rotation_under_load_loses_nothing_and_a_retired_key_stops_verifying() {
    let keys = keys();
    let idp = Idp::start(jwks(&[jwk(&keys, "rsa", "old", None)])).await;
    let iss = idp.issuer();
    let (up, gw) = ready_gateway(&url_provider(&idp, r#""RS256", "ES256""#)).await;
    let gw = Arc::new(gw);
    let tokens = mint(
        &keys,
        &[
            ("rsa", "RS256", Some("old"), claims(&iss, "alice")),
            ("p256", "ES256", Some("new"), claims(&iss, "alice")),
            ("rsa", "RS256", Some("old"), claims(&iss, "bob")),
        ],
    );
    let signing = Arc::new(Mutex::new(tokens[0].clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..8 {
        let (gw, signing, stop, failures, sent) = (
            gw.clone(),
            signing.clone(),
            stop.clone(),
            failures.clone(),
            sent.clone(),
        );
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let token = signing.lock().unwrap().clone();
                let got = call(&gw, &token).await;
                sent.fetch_add(1, Ordering::SeqCst);
                if got.status != 200 {
                    failures.fetch_add(1, Ordering::SeqCst);
                    eprintln!("failed: {} {}", got.status, got.body);
                }
            }
        }));
    }
    // Each step below gets 30 more requests through (or a failure, reported below).
    let more = || {
        let n = sent.load(Ordering::SeqCst) + 30;
        let (sent, failures) = (sent.clone(), failures.clone());
        move || sent.load(Ordering::SeqCst) >= n || failures.load(Ordering::SeqCst) > 0
    };
    until("load on the old key", more()).await;
    // 1. Publish the next key beside the old one.
    idp.set_jwks(jwks(&[
        jwk(&keys, "rsa", "old", None),
        jwk(&keys, "p256", "new", None),
    ]));
    until("load while the new key is published", more()).await;
    // 2. Sign with it: its kid is unknown to the gateway until a refetch, which the first
    // request asks for and waits on.
    let fetched = idp.fetches();
    *signing.lock().unwrap() = tokens[1].clone();
    let after_switch = more();
    until("the refetch, and load on the new key", || {
        (idp.fetches() > fetched && after_switch()) || failures.load(Ordering::SeqCst) > 0
    })
    .await;
    // 3. Retire the old key.
    idp.set_jwks(jwks(&[jwk(&keys, "p256", "new", None)]));
    until("load after the old key is retired", more()).await;
    stop.store(true, Ordering::SeqCst);
    for t in load {
        t.await.unwrap();
    }
    let sent = sent.load(Ordering::SeqCst);
    assert!(sent > 100, "only {sent} requests");
    assert_eq!(failures.load(Ordering::SeqCst), 0, "of {sent} requests");
    // The gateway learns of the retirement at its next fetch (an unknown kid asks for one,
    // at most every REFETCH_INTERVAL); then the old key's tokens fail, cached ones too.
    assert_eq!(
        call(&gw, &tokens[0]).await.status,
        200,
        "the old key is still in the gateway's set until its next fetch"
    );
    let unknown = mint(
        &keys,
        &[("p256", "ES256", Some("other"), claims(&iss, "x"))],
    )
    .remove(0);
    // Asked until the interval has passed and the gateway fetches.
    let fetched = idp.fetches();
    until_async("a refetch for an unknown kid", async || {
        assert_eq!(call(&gw, &unknown).await.status, 401);
        idp.fetches() > fetched
    })
    .await;
    for token in [&tokens[0], &tokens[2]] {
        let got = call(&gw, token).await;
        assert_eq!(got.status, 401, "{}", got.body);
        assert_eq!(got.json()["error_description"], "unknown key id");
    }
    up.clear();
    assert_eq!(call(&gw, &tokens[1]).await.status, 200);
    assert_eq!(up.one().all("x-auth-user"), vec!["alice"]);
}

#[tokio::test]
async fn a_discovery_document_for_another_issuer_or_pointing_elsewhere_gives_no_keys() {
    let keys = keys();
    let idp = Idp::start(jwks(&[jwk(&keys, "p256", "k1", None)])).await;
    let iss = idp.issuer();
    let token = mint(&keys, &[("p256", "ES256", Some("k1"), claims(&iss, "d"))]).remove(0);
    let up = Upstream::start().await;
    for (doc, why) in [
        (
            json!({"issuer": "https://other.example", "jwks_uri": format!("{iss}/certs")}),
            "another issuer",
        ),
        (
            json!({"issuer": iss, "jwks_uri": "http://example.com/certs"}),
            "http to a host that is not loopback",
        ),
        (
            json!({"issuer": iss, "jwks_uri": format!("http://user@{}/certs", idp.addr)}),
            "credentials",
        ),
        (json!({"issuer": iss}), "no jwks_uri"),
    ] {
        *idp.discovery.lock().unwrap() = Some(doc.to_string());
        let providers =
            format!("[[auth.provider]]\nissuer = \"{iss}\"\nalgorithms = [\"ES256\"]\n");
        let gw = Gateway::start(&config(&providers), &up.url()).await;
        until_a_failed_fetch(&gw, &iss).await;
        assert!(!gw.gateway.is_ready(), "{why}: ready");
        let got = call(&gw, &token).await;
        assert_eq!(got.status, 503, "{why}: {}", got.body);
        assert_eq!(up.count(), 0);
    }
    // The right document: keys, ready, 200.
    *idp.discovery.lock().unwrap() = None;
    let providers = format!("[[auth.provider]]\nissuer = \"{iss}\"\nalgorithms = [\"ES256\"]\n");
    let gw = Gateway::start(&config(&providers), &up.url()).await;
    until_ready(&gw).await;
    assert_eq!(call(&gw, &token).await.status, 200);
}

#[tokio::test]
async fn a_jwks_with_no_key_for_the_provider_algorithms_is_a_failed_fetch() {
    let keys = keys();
    // An EC key for an RS256 provider: nothing it could verify.
    let idp = Idp::start(jwks(&[jwk(&keys, "p256", "k1", None)])).await;
    let iss = idp.issuer();
    let up = Upstream::start().await;
    let gw = Gateway::start(&config(&url_provider(&idp, r#""RS256""#)), &up.url()).await;
    until_a_failed_fetch(&gw, &iss).await;
    assert!(!gw.gateway.is_ready());
    // Publishing a key that fits: ready.
    idp.set_jwks(jwks(&[
        jwk(&keys, "p256", "k1", None),
        jwk(&keys, "rsa", "r1", None),
    ]));
    until_ready(&gw).await;
    let token = mint(&keys, &[("rsa", "RS256", Some("r1"), claims(&iss, "fits"))]).remove(0);
    assert_eq!(call(&gw, &token).await.status, 200);
}

#[tokio::test]
async fn a_just_published_key_passes_over_http2_too() {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let keys = keys();
    let idp = Idp::start(jwks(&[jwk(&keys, "rsa", "old", None)])).await;
    let iss = idp.issuer();
    let (up, gw) = ready_gateway(&url_provider(&idp, r#""RS256""#)).await;
    idp.set_jwks(jwks(&[
        jwk(&keys, "rsa", "old", None),
        jwk(&keys, "rsa", "new", None),
    ]));
    let token = mint(
        &keys,
        &[("rsa", "RS256", Some("new"), claims(&iss, "h2-user"))],
    )
    .remove(0);
    let client: Client<_, http_body_util::Full<bytes::Bytes>> =
        Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let req = hyper::Request::get(gw.url("/h2"))
        .header("authorization", bearer(&token))
        .header("x-auth-user", "mallory")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let res = client.request(req).await.unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    let got = read(res).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(up.one().all("x-auth-user"), vec!["h2-user"]);
}

/// Side by side with PyJWT (the reference the auth service uses): tokens of every algorithm
/// and hundreds of mutations of them (signature bits, algorithm swaps including `none` and
/// HS256, payloads changed after signing, other keys, expired, wrong issuer, broken encodings)
/// go through the gateway and through `jwt.decode` with the same public key. jwtgate never
/// accepts what PyJWT refuses, and accepts every original.
#[tokio::test]
async fn jwtgate_never_accepts_a_token_pyjwt_refuses() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let keys = keys();
    let others = self::keys();
    let iss = "https://diff.example";
    let d = dir();
    let jwks_path = d.path().join("jwks.json");
    std::fs::write(
        &jwks_path,
        jwks(&[
            jwk(&keys, "rsa", "rsa", None),
            jwk(&keys, "p256", "p256", None),
            jwk(&keys, "p384", "p384", None),
            jwk(&keys, "ed25519", "ed", None),
        ]),
    )
    .unwrap();
    let all = r#""RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA""#;
    let providers = format!(
        "[[auth.provider]]\nissuer = \"{iss}\"\nalgorithms = [{all}]\njwks_file = \"{}\"\n",
        jwks_path.display()
    );
    let up = Upstream::start().await;
    let gw = Gateway::start(&config(&providers), &up.url()).await;
    let cases = [
        ("RS256", "rsa", "rsa"),
        ("PS384", "rsa", "rsa"),
        ("RS512", "rsa", "rsa"),
        ("ES256", "p256", "p256"),
        ("ES384", "p384", "p384"),
        ("EdDSA", "ed25519", "ed"),
    ];
    let now = now();
    let mut jobs = Vec::new();
    for (alg, key, kid) in cases {
        for (sub, claims) in [
            ("good", json!({"iss": iss, "sub": "good", "exp": now + 600})),
            (
                "expired",
                json!({"iss": iss, "sub": "x", "exp": now - 3600}),
            ),
            (
                "future",
                json!({"iss": iss, "sub": "x", "exp": now + 600, "nbf": now + 3600}),
            ),
            (
                "other-iss",
                json!({"iss": "https://evil.example", "sub": "x", "exp": now + 600}),
            ),
            ("no-exp", json!({"iss": iss, "sub": "x"})),
        ] {
            jobs.push((key, alg, Some(kid), claims, sub));
        }
    }
    let job_list: Vec<(&str, &str, Option<&str>, Value)> = jobs
        .iter()
        .map(|(k, a, kid, c, _)| (*k, *a, *kid, c.clone()))
        .collect();
    let mut tokens = mint(&keys, &job_list);
    // The same claims signed with another key of each kind.
    let foreign = mint(
        &others,
        &cases
            .iter()
            .map(|(alg, key, kid)| {
                (
                    *key,
                    *alg,
                    Some(*kid),
                    json!({"iss": iss, "sub": "x", "exp": now + 600}),
                )
            })
            .collect::<Vec<_>>(),
    );
    let originals: Vec<String> = tokens
        .iter()
        .zip(&jobs)
        .filter(|(_, j)| j.4 == "good")
        .map(|(t, _)| t.clone())
        .collect();
    tokens.extend(foreign);
    // Mutations of each valid original.
    for t in &originals {
        let parts: Vec<&str> = t.split('.').collect();
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        for bit in (0..sig.len() * 8).step_by(37) {
            let mut s = sig.clone();
            s[bit / 8] ^= 1 << (bit % 8);
            tokens.push(format!(
                "{}.{}.{}",
                parts[0],
                parts[1],
                URL_SAFE_NO_PAD.encode(&s)
            ));
        }
        for alg in [
            "none", "HS256", "RS256", "PS256", "ES256", "ES384", "EdDSA", "rs256",
        ] {
            let mut h = header.clone();
            h["alg"] = json!(alg);
            tokens.push(format!("{}.{}.{}", b64(&h.to_string()), parts[1], parts[2]));
            tokens.push(format!("{}.{}.", b64(&h.to_string()), parts[1]));
        }
        let mut h = header.clone();
        h["kid"] = json!("other");
        tokens.push(format!("{}.{}.{}", b64(&h.to_string()), parts[1], parts[2]));
        tokens.push(format!(
            "{}.{}.{}",
            parts[0],
            b64(&json!({"iss": iss, "sub": "admin", "exp": now + 600}).to_string()),
            parts[2]
        ));
        tokens.push(format!("{t}="));
        tokens.push(format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            &parts[2][..parts[2].len() - 2]
        ));
        tokens.push(format!("{t}.x"));
        // HS256 over the same input, keyed with the public key's PEM.
        let pem = keys["rsa"]["public_pem"].as_str().unwrap();
        let mut h = header.clone();
        h["alg"] = json!("HS256");
        let hs = jsonwebtoken::encode(
            &jsonwebtoken::Header {
                kid: h["kid"].as_str().map(str::to_owned),
                ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
            },
            &json!({"iss": iss, "sub": "mallory", "exp": now + 600}),
            &jsonwebtoken::EncodingKey::from_secret(pem.as_bytes()),
        )
        .unwrap();
        tokens.push(hs);
    }
    // PyJWT's verdict, with the public key of the kid the token names (the original's).
    let pem_of = |token: &str| -> String {
        let kid = token
            .split('.')
            .next()
            .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
            .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
            .and_then(|h| h["kid"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let name = match kid.as_str() {
            "rsa" => "rsa",
            "p256" => "p256",
            "p384" => "p384",
            _ => "ed25519",
        };
        keys[name]["public_pem"].as_str().unwrap().to_owned()
    };
    let verify_jobs: Vec<Value> = tokens
        .iter()
        .map(|t| {
            json!({"token": t, "key": pem_of(t), "issuer": iss,
                   "algorithms": ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"]})
        })
        .collect();
    let pyjwt: Vec<String> = python(&["verify"], &Value::Array(verify_jobs).to_string())
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(pyjwt.len(), tokens.len());
    let mut accepted = 0;
    for (token, verdict) in tokens.iter().zip(&pyjwt) {
        let got = call(&gw, token).await;
        if got.status == 200 {
            accepted += 1;
            assert_eq!(
                verdict, "ok",
                "jwtgate accepted what PyJWT refuses ({verdict}): {token}"
            );
            // Only originals pass (an `alg` "mutated" to its own value re-encodes to the same
            // bytes: the original token).
            assert!(originals.contains(token), "a mutation passed: {token}");
        } else {
            assert_ne!(got.status, 500, "{token}");
        }
    }
    for t in &originals {
        assert_eq!(call(&gw, t).await.status, 200);
    }
    let refused_by_pyjwt = pyjwt.iter().filter(|v| *v != "ok").count();
    assert_eq!(
        tokens.len() - accepted,
        refused_by_pyjwt,
        "jwtgate and PyJWT disagree on which tokens to refuse"
    );
    eprintln!(
        "{} tokens: {accepted} accepted and {refused_by_pyjwt} refused by both",
        tokens.len()
    );
}

/// A key published and used at once right after another fetch (here a refetch a made-up `kid`
/// asked for) loses nothing: the token waits for the next fetch the rate limit allows instead
/// of being refused until the window ends; the waits are counted.
#[tokio::test]
async fn a_key_used_right_after_another_fetch_waits_for_the_next_one() {
    let keys = keys();
    let idp = Idp::start(jwks(&[jwk(&keys, "rsa", "old", None)])).await;
    let iss = idp.issuer();
    let (up, gw) = ready_gateway(&url_provider(&idp, r#""RS256""#)).await;
    let tokens = mint(
        &keys,
        &[
            ("rsa", "RS256", Some("made-up"), claims(&iss, "x")),
            ("rsa", "RS256", Some("new"), claims(&iss, "rotated")),
        ],
    );
    // A made-up kid: it waits for a fetch, which brings nothing: 401 within 6 s.
    let start = Instant::now();
    let got = call(&gw, &tokens[0]).await;
    assert_eq!(got.status, 401);
    assert_eq!(got.json()["error_description"], "unknown key id");
    assert!(
        start.elapsed() < Duration::from_secs(7),
        "{:?}",
        start.elapsed()
    );
    let fetched = idp.fetches();
    // Right after that fetch, the provider publishes a key and signs with it.
    idp.set_jwks(jwks(&[
        jwk(&keys, "rsa", "old", None),
        jwk(&keys, "rsa", "new", None),
    ]));
    let start = Instant::now();
    let got = call(&gw, &tokens[1]).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(up.one().all("x-auth-user"), vec!["rotated"]);
    // It waited for the window after the last fetch, and one fetch served it.
    assert!(
        start.elapsed() < Duration::from_secs(7),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(idp.fetches(), fetched + 1);
    let metrics = gw.gateway.metrics.render();
    let waits = |result: &str| -> f64 {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("jwtgate_jwks_kid_waits_total")
                    && l.contains(&format!("result=\"{result}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(waits("fetched") >= 2.0, "{metrics}");
}
