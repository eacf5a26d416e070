//! Operations: admin endpoints and metrics, readiness during drain, reload on file change (with
//! Kubernetes-style atomic symlink swaps), key rotation under load, WebSockets closed at the
//! drain deadline.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use jsonwebtoken::Algorithm::{EdDSA, ES256, HS256};
use jwtgate::auth::keys::Env;
use jwtgate::auth::provider::{FIRST_RETRY, MAX_RETRY};
use jwtgate::runtime::reload::Reloader;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn admin(gw: &Gateway) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(jwtgate::server::admin::serve(
        l,
        gw.gateway.clone(),
        std::future::pending(),
    ));
    addr
}

async fn admin_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let out = raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    let status = statuses(&out).first().copied().unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn metric(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn admin_endpoints_report_health_readiness_and_metrics() {
    let up = Upstream::start().await;
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let a = admin(&gw).await;
    assert_eq!(admin_get(a, "/healthz").await.0, 200);
    assert_eq!(admin_get(a, "/readyz").await.0, 200);

    let expired = token_with(json!({"sub": "x", "exp": now() - 100}), HS256, KEY);
    let user = token_with(
        json!({"sub": "u", "exp": now() + 100, "role": "user"}),
        HS256,
        KEY,
    );
    assert_eq!(
        get(&gw, "/a", &[("authorization", &bearer(&token("alice")))])
            .await
            .status,
        200
    );
    assert_eq!(
        get(&gw, "/a", &[("authorization", &bearer(&token("alice")))])
            .await
            .status,
        200
    );
    assert_eq!(get(&gw, "/a", &[]).await.status, 401);
    assert_eq!(
        get(&gw, "/a", &[("authorization", &bearer(&expired))])
            .await
            .status,
        401
    );
    assert_eq!(
        get(&gw, "/admin", &[("authorization", &bearer(&user))])
            .await
            .status,
        403
    );
    assert_eq!(get(&gw, "/public/x", &[]).await.status, 200);

    // One client connection open: this one, once the gateway has it and the clients above
    // have closed theirs.
    let _held = TcpStream::connect(gw.addr).await.unwrap();
    until("one open connection", || {
        gw.gateway.metrics.open_connections.get() == 1
    })
    .await;
    let (status, m) = admin_get(a, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        metric(
            &m,
            r#"jwtgate_requests_total{route="/",status="200",mode="inline"}"#
        ),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            r#"jwtgate_requests_total{route="/",status="401",mode="inline"}"#
        ),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            r#"jwtgate_requests_total{route="/admin",status="403",mode="inline"}"#
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, r#"jwtgate_auth_failures_total{reason="missing"}"#),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, r#"jwtgate_auth_failures_total{reason="expired"}"#),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, r#"jwtgate_auth_failures_total{reason="forbidden"}"#),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, r#"jwtgate_upstream_duration_seconds_count{route="/"}"#),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            r#"jwtgate_upstream_duration_seconds_count{route="/public"}"#
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(metric(&m, "jwtgate_open_connections"), Some(1.0), "{m}");
    assert_eq!(metric(&m, "jwtgate_ready"), Some(1.0), "{m}");
    assert!(
        metric(&m, "jwtgate_keys_loaded_timestamp_seconds").unwrap() > 1.7e9,
        "{m}"
    );
    assert_eq!(admin_get(a, "/nope").await.0, 404);

    // The admin endpoints are not on the public listener.
    let got = get(&gw, "/metrics", &[]).await;
    assert_eq!(got.status, 401);
    assert!(!got.body.contains("jwtgate_requests_total"));
}

#[tokio::test]
async fn readyz_is_503_until_the_listener_is_up() {
    let up = Upstream::start().await;
    let config = jwtgate::Config::from_toml(&CONFIG.replace("{upstream}", &up.url())).unwrap();
    let gateway = Arc::new(jwtgate::Gateway::new(
        jwtgate::Runtime::build(config, &jwtgate::Keys::from_secrets(KEY, None), None).unwrap(),
    ));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    tokio::spawn(jwtgate::server::admin::serve(
        l,
        gateway.clone(),
        std::future::pending(),
    ));
    assert_eq!(admin_get(a, "/healthz").await.0, 200);
    assert_eq!(admin_get(a, "/readyz").await.0, 503);
    let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
    tokio::spawn(jwtgate::server::serve(
        public,
        gateway.clone(),
        std::future::pending(),
    ));
    until_async("ready", async || admin_get(a, "/readyz").await.0 == 200).await;
}

#[tokio::test]
async fn a_request_abandoned_by_its_client_is_still_counted() {
    let up = Upstream::start().await;
    let cfg = CONFIG.replace("upstream_timeout = \"1s\"", "upstream_timeout = \"5s\"");
    let gw = Gateway::start(&cfg, &up.url()).await;
    let a = admin(&gw).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let t = token("alice");
    s.write_all(
        format!("GET /__slow HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    until("the request at the upstream", || up.count() == 1).await;
    drop(s);
    until_async("the 499 to be counted", async || {
        metric(
            &admin_get(a, "/metrics").await.1,
            r#"jwtgate_requests_total{route="/",status="499",mode="inline"}"#,
        ) == Some(1.0)
    })
    .await;
}

#[tokio::test]
async fn readyz_is_503_while_draining() {
    let up = Upstream::start().await;
    // The request is held at the upstream until the test lets it go: neither timeout may end
    // it first, however slowly the test runs.
    let cfg = CONFIG
        .replace("upstream_timeout = \"1s\"", "upstream_timeout = \"300s\"")
        .replace("drain_timeout = \"5s\"", "drain_timeout = \"300s\"");
    let gw = Gateway::start(&cfg, &up.url()).await;
    let a = admin(&gw).await;
    let (addr, gateway) = (gw.addr, gw.gateway.clone());
    let t = token("a");
    let held = tokio::spawn(async move {
        raw_quiet(addr, format!("GET /__held HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\nConnection: close\r\n\r\n").as_bytes(), PATIENCE).await
    });
    until("the request at the upstream", || up.count() == 1).await;
    let stopping = tokio::spawn(gw.stop());
    // The drain has begun (the gateway is no longer ready), and cannot end while the request
    // is held: what the admin endpoints say now, they say while draining.
    until("the drain to begin", || !gateway.is_ready()).await;
    assert_eq!(admin_get(a, "/readyz").await.0, 503);
    assert_eq!(admin_get(a, "/healthz").await.0, 200);
    let (_, m) = admin_get(a, "/metrics").await;
    assert_eq!(metric(&m, "jwtgate_ready"), Some(0.0));
    assert!(!stopping.is_finished(), "the drain did not wait");
    up.release();
    assert_eq!(statuses(&held.await.unwrap()), vec![200]);
    within("the end of the drain", stopping).await.unwrap();
}

/// A Kubernetes-style volume: `name -> ..data/name`, `..data -> ..<version>`, swapped atomically.
struct Volume {
    dir: tempfile::TempDir,
    version: usize,
}

impl Volume {
    fn new(files: &[(&str, &str)]) -> Volume {
        let mut v = Volume {
            dir: tempfile::tempdir().unwrap(),
            version: 0,
        };
        v.swap(files);
        for (name, _) in files {
            std::os::unix::fs::symlink(format!("..data/{name}"), v.dir.path().join(name)).unwrap();
        }
        v
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }

    /// Writes a new version and swaps `..data` to it in one rename.
    fn swap(&mut self, files: &[(&str, &str)]) {
        self.version += 1;
        let dir = self.dir.path().join(format!("..v{}", self.version));
        std::fs::create_dir(&dir).unwrap();
        for (name, content) in files {
            std::fs::write(dir.join(name), content).unwrap();
        }
        let tmp = self.dir.path().join("..data_tmp");
        // Names that the new version no longer has dangle, as in Kubernetes.
        std::os::unix::fs::symlink(dir.file_name().unwrap(), &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("..data")).unwrap();
    }
}

const KEY_B: &str = "new-key-b-7c2e9a4f1d8b3e6a0c5f2d9b4e7a1c3f";

fn reloader(gw: &Gateway, config: &Path, current: &str, previous: &str) -> Arc<Reloader> {
    let (current, previous) = (current.to_owned(), previous.to_owned());
    let env = Arc::new(move || {
        Env::from_pairs([
            ("JWT_SECRET_KEY_FILE", current.as_str()),
            ("JWT_SECRET_KEY_PREVIOUS_FILE", previous.as_str()),
        ])
    });
    Arc::new(Reloader::new(gw.gateway.clone(), config.to_owned(), env))
}

/// A gateway whose keys come from a Secret-style volume (current A, previous the old key) and
/// whose config is a file, with a reloader for both.
struct Reloadable {
    gw: Gateway,
    vol: Volume,
    _cfg_dir: tempfile::TempDir,
    cfg_path: std::path::PathBuf,
    reloader: Arc<Reloader>,
}

async fn reloadable(up: &Upstream) -> Reloadable {
    let vol = Volume::new(&[("key", KEY), ("previous", OLD_KEY)]);
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg_path = cfg_dir.path().join("jwtgate.toml");
    std::fs::write(&cfg_path, CONFIG.replace("{upstream}", &up.url())).unwrap();
    let gw = Gateway::start_with_keys(CONFIG, &up.url(), Keys_from(&vol)).await;
    let reloader = reloader(&gw, &cfg_path, &vol.path("key"), &vol.path("previous"));
    Reloadable {
        gw,
        vol,
        _cfg_dir: cfg_dir,
        cfg_path,
        reloader,
    }
}

#[tokio::test]
async fn reloads_keep_the_pooled_connections_of_an_unchanged_upstream() {
    let up = Upstream::start().await;
    let Reloadable {
        gw,
        mut vol,
        _cfg_dir,
        cfg_path,
        reloader: r,
    } = reloadable(&up).await;
    let t = token("alice");
    let ok = |got: Got| assert_eq!(got.status, 200, "{}", got.body);
    ok(get(&gw, "/a", &[("authorization", &bearer(&t))]).await);
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
    // Reloads that change nothing, then one that rotates the keys (A stays as the previous
    // key), then one that changes another route: the upstream's pool survives them all.
    for _ in 0..3 {
        r.reload().unwrap();
    }
    vol.swap(&[("key", KEY_B), ("previous", KEY)]);
    r.reload().unwrap();
    std::fs::write(
        &cfg_path,
        CONFIG
            .replace("{upstream}", &up.url())
            .replace("path = \"/admin\"", "path = \"/administration\""),
    )
    .unwrap();
    r.reload().unwrap();
    for path in ["/b", "/c"] {
        ok(get(&gw, path, &[("authorization", &bearer(&t))]).await);
    }
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        1,
        "a reload dropped the upstream's pooled connection"
    );
    // A change of the upstream itself starts a new pool.
    let other = Upstream::start().await;
    std::fs::write(&cfg_path, CONFIG.replace("{upstream}", &other.url())).unwrap();
    r.reload().unwrap();
    ok(get(&gw, "/d", &[("authorization", &bearer(&t))]).await);
    assert_eq!(other.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_by_file_swap_loses_no_request_under_load() {
    let up = Upstream::start().await;
    let Reloadable {
        gw,
        mut vol,
        _cfg_dir,
        cfg_path: _,
        reloader: r,
    } = reloadable(&up).await;
    let watcher = r.clone().watch(Duration::from_millis(100));
    let a = admin(&gw).await;

    let stop = Arc::new(AtomicBool::new(false));
    // Load that must never fail: `ok` and `failed` counters per token.
    let load = |t: String, ok: Arc<AtomicUsize>, failed: Arc<AtomicUsize>| {
        let (stop, addr) = (stop.clone(), gw.addr);
        tokio::spawn(async move {
            let client = client();
            while !stop.load(Ordering::Relaxed) {
                let req = http::Request::get(format!("http://{addr}/r"))
                    .header("authorization", bearer(&t))
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap();
                match client.request(req).await {
                    Ok(res) if res.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    let counters = || (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    // Tokens signed by the current key A run through the whole rotation.
    let token_a = token("alice");
    let (ok_a, failed_a) = counters();
    let mut tasks: Vec<_> = (0..3)
        .map(|_| load(token_a.clone(), ok_a.clone(), failed_a.clone()))
        .collect();
    // Traffic before the rotation (or a failure, which the checks below report).
    let going = |ok: &AtomicUsize, failed: &AtomicUsize, n: usize| {
        ok.load(Ordering::Relaxed) >= n || failed.load(Ordering::Relaxed) > 0
    };
    until("A traffic", || going(&ok_a, &failed_a, 30)).await;

    // Rotate: B becomes current, A previous, in one atomic swap (as Kubernetes does), while
    // SIGHUP-style reloads race the file watcher.
    vol.swap(&[("key", KEY_B), ("previous", KEY)]);
    let racing: Vec<_> = (0..4)
        .map(|_| {
            let r = r.clone();
            tokio::task::spawn_blocking(move || r.reload())
        })
        .collect();
    let token_b = token_with(json!({"sub": "bob", "exp": now() + 600}), HS256, KEY_B);
    let gw_ref = &gw;
    until_async("B tokens accepted", async || {
        get(gw_ref, "/r", &[("authorization", &bearer(&token_b))])
            .await
            .status
            == 200
    })
    .await;
    for r in racing {
        r.await.unwrap().unwrap();
    }
    // From now on B tokens must pass on every request too, alongside the A traffic.
    let (ok_b, failed_b) = counters();
    tasks.extend((0..2).map(|_| load(token_b.clone(), ok_b.clone(), failed_b.clone())));
    let a_before = ok_a.load(Ordering::Relaxed);
    until("B traffic beside more A traffic", || {
        going(&ok_b, &failed_b, 20) && going(&ok_a, &failed_a, (a_before + 20).max(50))
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let no_failures = |name: &str, ok: &AtomicUsize, failed: &AtomicUsize, at_least: usize| {
        let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
        assert!(
            ok >= at_least,
            "too little {name} traffic to prove anything: {ok}"
        );
        assert_eq!(
            failed,
            0,
            "{failed} of {} {name} requests failed",
            ok + failed
        );
    };
    no_failures("key A", &ok_a, &failed_a, 50);
    no_failures("key B", &ok_b, &failed_b, 20);

    // Retire A by removing the previous key from the volume: only B remains.
    vol.swap(&[("key", KEY_B)]);
    until_async("A tokens refused", async || {
        get(gw_ref, "/r", &[("authorization", &bearer(&token_a))])
            .await
            .status
            == 401
    })
    .await;
    assert_eq!(
        get(&gw, "/r", &[("authorization", &bearer(&token_b))])
            .await
            .status,
        200
    );

    // A weak key arriving in the volume is refused by the watcher; B keeps serving.
    vol.swap(&[("key", "short")]);
    until_async("the weak key to be refused", async || {
        metric(
            &admin_get(a, "/metrics").await.1,
            r#"jwtgate_config_reloads_total{result="error"}"#,
        )
        .unwrap_or(0.0)
            >= 1.0
    })
    .await;
    assert_eq!(
        get(&gw, "/r", &[("authorization", &bearer(&token_b))])
            .await
            .status,
        200
    );
    let (_, m) = admin_get(a, "/metrics").await;
    assert!(
        metric(&m, r#"jwtgate_config_reloads_total{result="ok"}"#).unwrap() >= 2.0,
        "{m}"
    );
    drop(watcher);
}

#[allow(non_snake_case)]
fn Keys_from(vol: &Volume) -> jwtgate::Keys {
    jwtgate::Keys::load(&Env::from_pairs([
        ("JWT_SECRET_KEY_FILE", vol.path("key").as_str()),
        (
            "JWT_SECRET_KEY_PREVIOUS_FILE",
            vol.path("previous").as_str(),
        ),
    ]))
    .unwrap()
}

#[tokio::test]
async fn config_changes_are_picked_up_and_bad_ones_ignored() {
    let up = Upstream::start().await;
    let vol = Volume::new(&[("key", KEY), ("previous", OLD_KEY)]);
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg_path = cfg_dir.path().join("jwtgate.toml");
    let base = format!("[[route]]\npath = \"/\"\nupstream = \"{}\"\n", up.url());
    std::fs::write(&cfg_path, &base).unwrap();
    let gw = Gateway::start_with_keys(&base, "", Keys_from(&vol)).await;
    let r = reloader(&gw, &cfg_path, &vol.path("key"), &vol.path("previous"));
    let watcher = r.clone().watch(Duration::from_millis(100));
    let a = admin(&gw).await;
    assert_eq!(get(&gw, "/open", &[]).await.status, 401);

    // Make /open public.
    std::fs::write(
        &cfg_path,
        format!(
            "{base}[[route]]\npath = \"/open\"\nupstream = \"{}\"\nauth = \"public\"\n",
            up.url()
        ),
    )
    .unwrap();
    let gw_ref = &gw;
    until_async("the new route", async || {
        get(gw_ref, "/open", &[]).await.status == 200
    })
    .await;

    // A broken config is refused; the last good one keeps serving.
    std::fs::write(
        &cfg_path,
        "[[route]]\npath = \"/\"\nupstream = \"http://x\"\ntypo = true\n",
    )
    .unwrap();
    until_async("the refusal to be counted", async || {
        metric(
            &admin_get(a, "/metrics").await.1,
            r#"jwtgate_config_reloads_total{result="error"}"#,
        ) == Some(1.0)
    })
    .await;
    assert_eq!(get(&gw, "/open", &[]).await.status, 200);
    assert_eq!(
        get(&gw, "/x", &[("authorization", &bearer(&token("a")))])
            .await
            .status,
        200
    );

    // An explicit reload (what SIGHUP calls) of a weak key is refused too.
    std::fs::write(&cfg_path, &base).unwrap();
    let weak = reloader(&gw, &cfg_path, "/nonexistent/key", &vol.path("previous"));
    let problems = weak.reload().unwrap_err();
    assert!(
        problems.iter().any(|p| p.contains("JWT_SECRET_KEY_FILE")),
        "{problems:?}"
    );
    assert_eq!(
        get(&gw, "/x", &[("authorization", &bearer(&token("a")))])
            .await
            .status,
        200
    );
    drop(watcher);
}

#[tokio::test]
async fn in_flight_requests_finish_on_the_config_they_started_with() {
    let up = Upstream::start().await;
    let vol = Volume::new(&[("key", KEY), ("previous", OLD_KEY)]);
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg_path = cfg_dir.path().join("jwtgate.toml");
    let with_timeout = |t: &str| {
        format!(
            "[server]\nupstream_timeout = \"{t}\"\n[[route]]\npath = \"/\"\nupstream = \"{}\"\n",
            up.url()
        )
    };
    std::fs::write(&cfg_path, with_timeout("5s")).unwrap();
    let gw = Gateway::start_with_keys(&with_timeout("5s"), "", Keys_from(&vol)).await;
    let addr = gw.addr;
    let t = token("a");
    let slow = tokio::spawn(async move {
        raw_quiet(addr, format!("GET /__slow HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\nConnection: close\r\n\r\n").as_bytes(), Duration::from_secs(5)).await
    });
    until("the slow request at the upstream", || up.count() == 1).await;
    // The new config would time the slow request out after 100ms; it must not.
    std::fs::write(&cfg_path, with_timeout("100ms")).unwrap();
    reloader(&gw, &cfg_path, &vol.path("key"), &vol.path("previous"))
        .reload()
        .unwrap();
    assert_eq!(statuses(&slow.await.unwrap()), vec![200]);
    // New requests get the new config.
    assert_eq!(
        get(&gw, "/__slow", &[("authorization", &bearer(&token("a")))])
            .await
            .status,
        504
    );
}

#[tokio::test]
async fn websockets_are_closed_at_the_drain_deadline() {
    let up = Upstream::start().await;
    // drain_timeout 3 s: room for the echo below between the drain's start and its deadline
    // (the one stretch of wall-clock time this test needs); idle_timeout past PATIENCE.
    let cfg = CONFIG
        .replace("drain_timeout = \"5s\"", "drain_timeout = \"3s\"")
        .replace("[server]\n", "[server]\nidle_timeout = \"300s\"\n");
    let gw = Gateway::start(&cfg, &up.url()).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let t = token("alice");
    s.write_all(format!("GET /__ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer {t}\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"));
    assert_eq!(gw.gateway.open_tunnels(), 1);

    let gateway = gw.gateway.clone();
    let start = Instant::now();
    let stopping = tokio::spawn(gw.stop());
    // Still open (and working) during the drain...
    until("the drain to begin", || !gateway.is_ready()).await;
    s.write_all(b"hello").await.unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"hello");
    // ...and closed at the deadline (nothing else closes it within PATIENCE).
    let n = within("the tunnel closed at the drain deadline", s.read(&mut buf))
        .await
        .unwrap_or(0);
    assert_eq!(n, 0, "tunnel still open after the drain deadline");
    within("the end of the drain", stopping).await.unwrap();
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(2900), "{took:?}");
}

/// An HS256 token for `sub` signed with `key`, naming `kid` in its header (or no kid).
fn kid_token(sub: &str, kid: Option<&str>, key: &str) -> String {
    let mut header = jsonwebtoken::Header::new(HS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(
        &header,
        &json!({"sub": sub, "exp": now() + 600}),
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn a_key_ring_rotates_by_kid_through_a_secret_volume() {
    // JWT_SECRET_KEY_DIR on a Secret-style volume: one file a key, named by its kid. A key
    // published later starts verifying without a restart; a key dropped from the volume stops,
    // cached tokens included.
    let up = Upstream::start().await;
    let mut vol = Volume::new(&[("2026-10", KEY)]);
    let dir = vol.dir.path().to_str().unwrap().to_owned();
    let ring_env = {
        let dir = dir.clone();
        move || Env::from_pairs([("JWT_SECRET_KEY_DIR", dir.as_str())])
    };
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg_path = cfg_dir.path().join("jwtgate.toml");
    let base = format!("[[route]]\npath = \"/\"\nupstream = \"{}\"\n", up.url());
    std::fs::write(&cfg_path, &base).unwrap();
    let gw = Gateway::start_with_keys(&base, "", jwtgate::Keys::load(&ring_env()).unwrap()).await;
    let env: jwtgate::runtime::reload::EnvSource = Arc::new(ring_env);
    let r = Arc::new(Reloader::new(gw.gateway.clone(), cfg_path.clone(), env));
    let watcher = r.clone().watch(Duration::from_millis(100));
    let status = async |t: &str| {
        get(&gw, "/r", &[("authorization", &bearer(t))])
            .await
            .status
    };

    let old = kid_token("alice", Some("2026-10"), KEY);
    let new = kid_token("bob", Some("2026-11"), KEY_B);
    assert_eq!(status(&old).await, 200);
    assert_eq!(up.seen().last().unwrap().all("x-auth-user"), vec!["alice"]);
    // Without a kid, every key is tried.
    assert_eq!(status(&kid_token("carol", None, KEY)).await, 200);
    // Not published yet: an unknown kid.
    assert_eq!(status(&new).await, 401);

    // Publish the next key (the kubelet adds the file's link and swaps `..data`).
    vol.swap(&[("2026-10", KEY), ("2026-11", KEY_B)]);
    std::os::unix::fs::symlink("..data/2026-11", vol.dir.path().join("2026-11")).unwrap();
    until_async("the new key to verify", async || status(&new).await == 200).await;
    assert_eq!(up.seen().last().unwrap().all("x-auth-user"), vec!["bob"]);
    assert_eq!(status(&old).await, 200);
    // A kid names one key: the old kid with the new key's signature is refused.
    assert_eq!(
        status(&kid_token("mallory", Some("2026-10"), KEY_B)).await,
        401
    );

    // Retire the old key: its link dangles, as in Kubernetes. Its tokens stop verifying,
    // though the verified-token cache holds them.
    vol.swap(&[("2026-11", KEY_B)]);
    until_async("the retired key to stop verifying", async || {
        status(&old).await == 401
    })
    .await;
    assert_eq!(status(&kid_token("carol", None, KEY)).await, 401);
    assert_eq!(status(&new).await, 200);
    drop(watcher);
}

#[tokio::test]
async fn a_jwks_file_rotates_on_change_and_a_fetched_provider_survives_reloads() {
    // A provider's JWKS file (a ConfigMap) is watched like key files: a key published later
    // verifies without a restart, a key removed stops (cached tokens included). A provider
    // fetched from a URL keeps its keys and its refresh over reloads: no refetch, no gap.
    let up = Upstream::start().await;
    let remote = JwksServer::start(json!({"keys": [ed25519_jwk("remote")]}).to_string()).await;
    let files = tempfile::tempdir().unwrap();
    let jwks_path = files.path().join("jwks.json");
    let write_jwks = |keys: &[serde_json::Value]| {
        std::fs::write(&jwks_path, json!({ "keys": keys }).to_string()).unwrap()
    };
    write_jwks(&[p256_jwk("a")]);
    let cfg_path = files.path().join("jwtgate.toml");
    let config = |extra: &str| {
        format!(
            "[[auth.provider]]\nissuer = \"https://file.example\"\nalgorithms = [\"ES256\", \"EdDSA\"]\njwks_file = {:?}\n\
             [[auth.provider]]\nissuer = \"https://remote.example\"\nalgorithms = [\"EdDSA\"]\njwks_url = \"{}\"\n\
             [[route]]\npath = \"/\"\nupstream = \"{}\"\n{extra}",
            jwks_path.to_str().unwrap(),
            remote.url(),
            up.url()
        )
    };
    std::fs::write(&cfg_path, config("")).unwrap();
    let gw = Gateway::start_with_keys(&config(""), "", jwtgate::Keys::none()).await;
    let env: jwtgate::runtime::reload::EnvSource = Arc::new(|| Env::from_pairs([]));
    let r = Arc::new(Reloader::new(gw.gateway.clone(), cfg_path.clone(), env));
    let watcher = r.clone().watch(Duration::from_millis(100));
    until_async("the remote provider's keys", async || gw.gateway.is_ready()).await;
    let fetched = remote.requests();
    let status = async |t: &str| {
        get(&gw, "/r", &[("authorization", &bearer(t))])
            .await
            .status
    };
    let claims = |iss: &str, sub: &str| json!({"iss": iss, "sub": sub, "exp": now() + 600});
    let file_a = signed(ES256, "a", claims("https://file.example", "alice"));
    let file_b = signed(EdDSA, "b", claims("https://file.example", "bob"));
    let from_remote = signed(EdDSA, "remote", claims("https://remote.example", "rita"));
    assert_eq!(status(&file_a).await, 200);
    assert_eq!(status(&from_remote).await, 200);
    // Not published: a file provider does not refetch, its kid is unknown.
    assert_eq!(status(&file_b).await, 401);

    write_jwks(&[p256_jwk("a"), ed25519_jwk("b")]);
    until_async("the published key to verify", async || {
        status(&file_b).await == 200
    })
    .await;
    assert_eq!(up.seen().last().unwrap().all("x-auth-user"), vec!["bob"]);
    write_jwks(&[ed25519_jwk("b")]);
    until_async("the removed key to stop verifying", async || {
        status(&file_a).await == 401
    })
    .await;
    // A broken JWKS file is a refused reload: the last good keys keep serving.
    std::fs::write(&jwks_path, "{\"keys\": [").unwrap();
    r.reload().unwrap_err();
    assert_eq!(status(&file_b).await, 200);

    // Another route: a reload; the fetched provider is the same one (no fetch, still ready).
    write_jwks(&[ed25519_jwk("b")]);
    std::fs::write(
        &cfg_path,
        config(&format!(
            "[[route]]\npath = \"/other\"\nupstream = \"{}\"\n",
            up.url()
        )),
    )
    .unwrap();
    r.reload().unwrap();
    assert!(gw.gateway.is_ready());
    assert_eq!(status(&from_remote).await, 200);
    assert_eq!(
        remote.requests(),
        fetched,
        "a reload refetched an unchanged provider"
    );
    drop(watcher);
}

#[tokio::test]
async fn a_reload_stops_a_dropped_providers_fetches_and_keeps_the_keys_of_one_whose_refresh_changed(
) {
    let up = Upstream::start().await;
    // `failing` publishes no usable key: its fetches fail and are retried with backoff.
    let failing = JwksServer::start(json!({"keys": []}).to_string()).await;
    let good = JwksServer::start(json!({"keys": [ed25519_jwk("k")]}).to_string()).await;
    let files = tempfile::tempdir().unwrap();
    let cfg_path = files.path().join("jwtgate.toml");
    let provider = |iss: &str, url: &str, refresh: &str| {
        format!(
            "[[auth.provider]]\nissuer = \"{iss}\"\nalgorithms = [\"EdDSA\"]\njwks_url = \"{url}\"\nrefresh = \"{refresh}\"\n"
        )
    };
    let route = format!("[[route]]\npath = \"/\"\nupstream = \"{}\"\n", up.url());
    let both = format!(
        "{}{}{route}",
        provider("https://failing.example", &failing.url(), "5m"),
        provider("https://good.example", &good.url(), "5m")
    );
    std::fs::write(&cfg_path, &both).unwrap();
    let gw = Gateway::start_with_keys(&both, "", jwtgate::Keys::none()).await;
    let env: jwtgate::runtime::reload::EnvSource = Arc::new(|| Env::from_pairs([]));
    let r = Reloader::new(gw.gateway.clone(), cfg_path.clone(), env);
    until_async("the failing provider to retry", async || {
        failing.requests() >= 3
    })
    .await;
    assert!(
        !gw.gateway.is_ready(),
        "ready without the failing provider's keys"
    );
    // Something still holds the old runtime (a long request would): its providers must stop
    // fetching all the same.
    let old = gw.gateway.current();
    let fetched = good.requests();
    std::fs::write(
        &cfg_path,
        format!(
            "{}{route}",
            provider("https://good.example", &good.url(), "1h")
        ),
    )
    .unwrap();
    r.reload().unwrap();
    // The good provider's keys carried over: ready, and its tokens pass, before any fetch.
    assert!(gw.gateway.is_ready());
    let token = signed(
        EdDSA,
        "k",
        json!({"iss": "https://good.example", "sub": "gail", "exp": now() + 600}),
    );
    let got = get(&gw, "/r", &[("authorization", &bearer(&token))]).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(up.one().all("x-auth-user"), vec!["gail"]);
    until_async("the changed provider's own fetch", async || {
        good.requests() > fetched
    })
    .await;
    // Let as much time pass as the dropped provider's next two retries would take (its
    // backoff doubles from FIRST_RETRY, with up to a fifth of jitter, and the fetches it made
    // tell how far it got): were it still fetching, it would have made both.
    let after = failing.requests();
    let retry = |k: usize| {
        (FIRST_RETRY * 2u32.pow(k as u32))
            .min(MAX_RETRY)
            .mul_f64(1.2)
    };
    tokio::time::sleep(retry(after - 1) + retry(after) + Duration::from_millis(500)).await;
    assert!(
        failing.requests() <= after + 1,
        "the dropped provider kept fetching: {} after {after}",
        failing.requests()
    );
    drop(old);
}
