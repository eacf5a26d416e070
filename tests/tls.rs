//! TLS: the listener (HTTP/1.1 and h2 by ALPN), certificate reload on file change, and
//! `https://` upstreams verified with a route's CA file. Certificates are made by rcgen.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpStream};

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Ca {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// (cert PEM, key PEM) for localhost and 127.0.0.1.
    fn leaf(&self) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

fn client_tls(ca_pem: &str) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

fn tls_config(cert: &str, key: &str) -> String {
    CONFIG.replace(
        "[server]\n",
        &format!("[server]\ntls = {{ cert = {cert:?}, key = {key:?} }}\n"),
    )
}

#[tokio::test]
async fn the_listener_serves_https_over_http1_and_h2() {
    let ca = Ca::new();
    let (cert, key) = ca.leaf();
    let dir = tempfile::tempdir().unwrap();
    let cfg = tls_config(
        &write(dir.path(), "cert.pem", &cert),
        &write(dir.path(), "key.pem", &key),
    );
    let up = Upstream::start().await;
    let gw = Gateway::start(&cfg, &up.url()).await;
    let t = token("alice");

    for h2 in [false, true] {
        up.clear();
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(client_tls(&ca.pem()))
            .https_only()
            .enable_http1();
        let connector = if h2 {
            builder.enable_http2().build()
        } else {
            builder.build()
        };
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
        let req = Request::get(format!("https://localhost:{}/secure", gw.addr.port()))
            .header("authorization", bearer(&t))
            .header("x-auth-user", "mallory")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let res = client.request(req).await.unwrap();
        let want = if h2 {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        };
        assert_eq!(res.version(), want);
        assert_eq!(read(res).await.status, 200);
        let seen = up.one();
        assert_eq!(seen.all("x-auth-user"), vec!["alice"]);
        assert_eq!(seen.all("x-forwarded-proto"), vec!["https"]);
    }

    // Plain HTTP on the TLS port gets nothing useful.
    let out = raw(gw.addr, b"GET /public/x HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(!out.starts_with("HTTP/1.1 200"), "{out}");
}

async fn presented_cert(addr: std::net::SocketAddr, ca_pem: &str) -> Vec<u8> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_tls(ca_pem)));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let ca = Ca::new();
    let (cert_a, key_a) = ca.leaf();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (
        write(dir.path(), "cert.pem", &cert_a),
        write(dir.path(), "key.pem", &key_a),
    );
    let cfg = tls_config(&cert_path, &key_path);
    let up = Upstream::start().await;
    let cfg_path = write(
        dir.path(),
        "jwtgate.toml",
        &cfg.replace("{upstream}", &up.url()),
    );
    let gw = Gateway::start(&cfg, &up.url()).await;
    let env: jwtgate::runtime::reload::EnvSource =
        Arc::new(|| jwtgate::auth::keys::Env::from_pairs([("JWT_SECRET_KEY", KEY)]));
    let reloader = Arc::new(jwtgate::runtime::reload::Reloader::new(
        gw.gateway.clone(),
        cfg_path.into(),
        env,
    ));
    let watcher = reloader.watch(Duration::from_millis(100));

    let der_a = CertificateDer::from_pem_slice(cert_a.as_bytes())
        .unwrap()
        .to_vec();
    assert_eq!(presented_cert(gw.addr, &ca.pem()).await, der_a);

    let (cert_b, key_b) = ca.leaf();
    write(dir.path(), "key.pem", &key_b);
    write(dir.path(), "cert.pem", &cert_b);
    let der_b = CertificateDer::from_pem_slice(cert_b.as_bytes())
        .unwrap()
        .to_vec();
    until_async("the renewed certificate picked up", async || {
        presented_cert(gw.addr, &ca.pem()).await == der_b
    })
    .await;
    drop(watcher);
}

/// An HTTPS upstream: the recording upstream behind a TLS terminator with `cert`/`key`.
async fn https_upstream(up: &Upstream, cert: &str, key: &str) -> std::net::SocketAddr {
    tls_front(up.addr, cert, key, Duration::ZERO).await
}

/// A TLS server config with `cert`/`key`, offering `alpn`.
fn server_tls(cert: &str, key: &str, alpn: &[&[u8]]) -> rustls::ServerConfig {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .map(Result::unwrap)
        .collect();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// A TLS terminator with `cert`/`key` in front of the plain server at `plain`, starting each
/// TLS handshake only `delay` after accepting the connection (a far or a busy upstream).
async fn tls_front(
    plain: std::net::SocketAddr,
    cert: &str,
    key: &str,
    delay: Duration,
) -> std::net::SocketAddr {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_tls(cert, key, &[])));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Ok(mut tls) = acceptor.accept(s).await {
                    let mut back = TcpStream::connect(plain).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut back).await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn https_upstreams_are_verified_with_the_route_ca_file() {
    let ca = Ca::new();
    let (cert, key) = ca.leaf();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = write(dir.path(), "ca.pem", &ca.pem());
    let up = Upstream::start().await;
    let tls_addr = https_upstream(&up, &cert, &key).await;
    let cfg = format!(
        "[[route]]\npath = \"/\"\nupstream = \"https://localhost:{port}\"\nca_file = {ca_path:?}\n\
         [[route]]\npath = \"/untrusted\"\nupstream = \"https://localhost:{port}\"\n",
        port = tls_addr.port()
    );
    let gw = Gateway::start(&cfg, "").await;
    let got = get(&gw, "/x", &[("authorization", &bearer(&token("alice")))]).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(up.one().all("x-auth-user"), vec!["alice"]);

    // Without the CA file the upstream's certificate is not trusted: 502, nothing sent.
    up.clear();
    let got = get(
        &gw,
        "/untrusted/x",
        &[("authorization", &bearer(&token("alice")))],
    )
    .await;
    assert_eq!(got.status, 502);
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn a_slow_tls_handshake_has_the_whole_connect_budget() {
    // A connect attempt that gets no SYN-ACK is abandoned for a new SYN after 250 ms; a TLS
    // handshake that takes longer than that (an upstream far away or busy) is not cut short.
    let ca = Ca::new();
    let (cert, key) = ca.leaf();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = write(dir.path(), "ca.pem", &ca.pem());
    let up = Upstream::start().await;
    let tls_addr = tls_front(up.addr, &cert, &key, Duration::from_millis(600)).await;
    let cfg = format!(
        "[server]\nconnect_timeout = \"2s\"\n[[route]]\npath = \"/\"\nupstream = \"https://localhost:{port}\"\nca_file = {ca_path:?}\n",
        port = tls_addr.port()
    );
    let gw = Gateway::start(&cfg, "").await;
    let got = get(&gw, "/slow", &[("authorization", &bearer(&token("alice")))]).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(up.one().all("x-auth-user"), vec!["alice"]);
}

#[test]
fn bad_tls_files_are_build_problems_and_misplaced_ca_files_config_problems() {
    let dir = tempfile::tempdir().unwrap();
    let junk = write(dir.path(), "junk.pem", "not a pem");
    // Validation reads no file: a CA file on an http upstream is its problem.
    let misplaced =
        format!("[[route]]\npath = \"/b\"\nupstream = \"http://a\"\nca_file = {junk:?}\n");
    let err = jwtgate::Config::from_toml(&misplaced)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("route[0].ca_file: only applies to an https:// upstream"),
        "{err}"
    );
    // The build step reads the files, and names every one that does not do.
    let cfg = format!(
        "[server]\ntls = {{ cert = {junk:?}, key = \"/nonexistent/key.pem\" }}\n[[route]]\npath = \"/\"\nupstream = \"https://a\"\nca_file = \"/nonexistent/ca.pem\"\n[[route]]\npath = \"/b\"\nupstream = \"https://b\"\nca_file = {junk:?}\n"
    );
    let config = jwtgate::Config::from_toml(&cfg).unwrap();
    let err = jwtgate::Runtime::build(config, &jwtgate::Keys::from_secrets(KEY, None), None)
        .unwrap_err()
        .to_string();
    for needle in [
        "server.tls.key: cannot read /nonexistent/key.pem",
        "route[0].ca_file: cannot read /nonexistent/ca.pem",
        "route[1].ca_file",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in {err}");
    }
}

#[tokio::test]
async fn a_jwks_over_https_is_verified_with_the_provider_ca_file() {
    let jwks = serde_json::json!({"keys": [p256_jwk("tls-key")]}).to_string();
    let token = signed(
        jsonwebtoken::Algorithm::ES256,
        "tls-key",
        serde_json::json!({"iss": "https://idp.example", "sub": "tina", "exp": now() + 600}),
    );
    let ca = Ca::new();
    let (cert, key) = ca.leaf();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = write(dir.path(), "ca.pem", &ca.pem());
    let idp = JwksServer::start(jwks).await;
    let front = tls_front(idp.addr, &cert, &key, Duration::ZERO).await;
    let up = Upstream::start().await;
    let provider = |ca: &str| {
        format!(
            "[[auth.provider]]\nissuer = \"https://idp.example\"\nalgorithms = [\"ES256\"]\njwks_url = \"https://localhost:{}/certs\"\n{ca}\n[[route]]\npath = \"/\"\nupstream = \"{{upstream}}\"\n",
            front.port()
        )
    };
    let trusted = Gateway::start(&provider(&format!("ca_file = {ca_path:?}")), &up.url()).await;
    until("the trusted gateway ready", || trusted.gateway.is_ready()).await;
    let got = get(&trusted, "/x", &[("authorization", &bearer(&token))]).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(up.one().all("x-auth-user"), vec!["tina"]);

    // Without the CA file the provider's certificate is not trusted: no keys, not ready, and
    // its tokens get 503, never 200.
    up.clear();
    let untrusted = Gateway::start(&provider(""), &up.url()).await;
    let failed = "jwtgate_jwks_fetches_total{provider=\"https://idp.example\",result=\"error\"}";
    until("a failed key fetch", || {
        untrusted.gateway.metrics.render().contains(failed)
    })
    .await;
    assert!(!untrusted.gateway.is_ready());
    let got = get(&untrusted, "/x", &[("authorization", &bearer(&token))]).await;
    assert_eq!(got.status, 503, "{}", got.body);
    assert_eq!(up.count(), 0);
    let metrics = untrusted.gateway.metrics.render();
    assert!(metrics.contains(failed), "{metrics}");
}

/// An HTTPS upstream offering `alpn` that records each request's version, path and identity,
/// and answers with a body and `grpc-status: 0` trailers (HTTP/2 only carries them).
async fn alpn_upstream(
    cert: &str,
    key: &str,
    alpn: &[&[u8]],
) -> (
    std::net::SocketAddr,
    Arc<std::sync::Mutex<Vec<(http::Version, String, Vec<String>)>>>,
) {
    use http_body_util::BodyExt;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_tls(cert, key, alpn)));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen: Arc<std::sync::Mutex<Vec<_>>> = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let (acceptor, log) = (acceptor.clone(), log.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        async move {
                            let users = req
                                .headers()
                                .get_all("x-auth-user")
                                .iter()
                                .map(|v| v.to_str().unwrap().to_owned())
                                .collect();
                            log.lock().unwrap().push((
                                req.version(),
                                req.uri().path().to_owned(),
                                users,
                            ));
                            let mut trailers = http::HeaderMap::new();
                            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                            let body = Full::new(Bytes::from_static(b"over tls"))
                                .with_trailers(async move { Some(Ok(trailers)) });
                            Ok::<_, std::convert::Infallible>(http::Response::new(body))
                        }
                    });
                let io = hyper_util::rt::TokioIo::new(tls);
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn https_upstreams_that_pick_h2_by_alpn_get_http2() {
    use http_body_util::BodyExt;
    let ca = Ca::new();
    let (cert, key) = ca.leaf();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = write(dir.path(), "ca.pem", &ca.pem());
    let (h2_addr, h2_seen) = alpn_upstream(&cert, &key, &[b"h2", b"http/1.1"]).await;
    let (h1_addr, h1_seen) = alpn_upstream(&cert, &key, &[b"http/1.1"]).await;
    let cfg = format!(
        "[[route]]\npath = \"/h2\"\nupstream = \"https://localhost:{}\"\nca_file = {ca_path:?}\n\
         [[route]]\npath = \"/h1\"\nupstream = \"https://localhost:{}\"\nca_file = {ca_path:?}\n",
        h2_addr.port(),
        h1_addr.port()
    );
    let gw = Gateway::start(&cfg, "").await;
    let auth = bearer(&token("alice"));
    // An HTTP/2 client: HTTP/2 to the upstream that picked h2, its trailers passed back.
    let h2_client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    for path in ["/h2/a", "/h1/a"] {
        let req = Request::get(gw.url(path))
            .header("authorization", &auth)
            .header("x-auth-user", "mallory")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let res = h2_client.request(req).await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let body = res.into_body().collect().await.unwrap();
        let trailers = body.trailers().cloned();
        assert_eq!(body.to_bytes(), "over tls");
        match path {
            "/h2/a" => assert_eq!(trailers.expect("trailers")["grpc-status"], "0"),
            _ => assert!(trailers.is_none(), "HTTP/1.1 has no trailers here"),
        }
    }
    // An HTTP/1.1 client too.
    for path in ["/h2/b", "/h1/b"] {
        let got = get(&gw, path, &[("authorization", &auth)]).await;
        assert_eq!((got.status, got.body.as_str()), (200, "over tls"), "{path}");
    }
    let h2_seen = h2_seen.lock().unwrap().clone();
    let h1_seen = h1_seen.lock().unwrap().clone();
    assert_eq!(h2_seen.len(), 2);
    assert_eq!(h1_seen.len(), 2);
    for (version, path, users) in &h2_seen {
        assert_eq!(*version, http::Version::HTTP_2, "{path}");
        assert_eq!(users, &["alice"], "{path}");
    }
    for (version, path, users) in &h1_seen {
        assert_eq!(*version, http::Version::HTTP_11, "{path}");
        assert_eq!(users, &["alice"], "{path}");
    }
}
