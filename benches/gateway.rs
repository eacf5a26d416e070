//! Micro-benchmarks of the per-request work: token verification (cache cold and warm; HS256 and
//! every identity-provider algorithm), route
//! selection over 1, 10 and 1,000 routes, path normalization, the request header rewrite, and
//! the whole pipeline from request bytes to the upstream's request head.
//!
//!   cargo bench --bench gateway
//!
//! The README's "Performance" section reports the figures; the load benchmark against HAProxy
//! and nginx is `benches/load.sh`.

use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::header::HeaderValue;
use jwtgate::auth::{Identity, Verifier};
use jwtgate::ops::access::Record;
use jwtgate::pipeline::{
    ClientInfo, Decision, HeaderPolicy, Protocol, RequestView, UpstreamRequest,
};
use jwtgate::policy::RouteTable;
use jwtgate::wire::{self, Framing, Header};
use jwtgate::{Config, Keys, Runtime};

const KEY: &str = "bench-key-0123456789abcdef0123456789abcdef";

fn config(extra_auth: &str, routes: usize) -> Config {
    let mut toml = format!("[auth]\n{extra_auth}\n");
    toml.push_str("[[route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:1\"\n");
    for i in 1..routes {
        let host = if i % 3 == 0 {
            format!("host = \"app{}.example.com\"\n", i % 7)
        } else {
            String::new()
        };
        toml.push_str(&format!(
            "[[route]]\npath = \"/svc{i}/api/v{}\"\n{host}upstream = \"http://127.0.0.1:1\"\n",
            i % 5
        ));
    }
    Config::from_toml(&toml).expect("bench config")
}

/// A typical token of the auth service, about 200 bytes.
fn token() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let t = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": "alice@example.com", "exp": now + 1800, "iat": now, "role": "user"}),
        &jsonwebtoken::EncodingKey::from_secret(KEY.as_bytes()),
    )
    .unwrap();
    assert!((180..=240).contains(&t.len()), "token is {} bytes", t.len());
    t
}

fn verification(c: &mut Criterion) {
    let t = token();
    let keys = Keys::from_secrets(KEY, None);
    let cold = Verifier::new(&config("token_cache = 0", 1).auth, &keys);
    let warm = Verifier::new(&config("", 1).auth, &keys);
    warm.verify(&t).unwrap();
    let mut g = c.benchmark_group("verify_hs256_200b");
    g.bench_function("cache_cold", |b| {
        b.iter(|| cold.verify(black_box(&t)).unwrap())
    });
    g.bench_function("cache_warm", |b| {
        b.iter(|| warm.verify(black_box(&t)).unwrap())
    });
    let bad = format!("{}x", &t[..t.len() - 1]);
    g.bench_function("bad_signature", |b| {
        b.iter(|| cold.verify(black_box(&bad)).unwrap_err())
    });
    g.finish();
}

/// RS/PS/ES/EdDSA tokens from an identity provider (keys in tests/providers/), cache cold
/// (`token_cache = 0`: every call parses the token and checks the signature) and warm.
fn provider_verification(c: &mut Criterion) {
    use jwtgate::auth::jwk;
    use jwtgate::auth::provider::ProviderKeys;
    use std::sync::Arc;
    const ISS: &str = "https://idp.bench";
    let fixture = |name: &str| {
        std::fs::read(format!(
            "{}/tests/providers/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("test keys")
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({"sub": "alice@example.com", "iss": ISS, "exp": now + 1800, "iat": now, "role": "user"});
    let mut g = c.benchmark_group("verify_provider");
    for (alg, key) in [
        (jsonwebtoken::Algorithm::RS256, "rsa2048"),
        (jsonwebtoken::Algorithm::PS256, "rsa2048"),
        (jsonwebtoken::Algorithm::ES256, "p256"),
        (jsonwebtoken::Algorithm::ES384, "p384"),
        (jsonwebtoken::Algorithm::EdDSA, "ed25519"),
    ] {
        let private = fixture(&format!("{key}.key.pem"));
        let signing = match alg {
            jsonwebtoken::Algorithm::ES256 | jsonwebtoken::Algorithm::ES384 => {
                jsonwebtoken::EncodingKey::from_ec_pem(&private)
            }
            jsonwebtoken::Algorithm::EdDSA => jsonwebtoken::EncodingKey::from_ed_pem(&private),
            _ => jsonwebtoken::EncodingKey::from_rsa_pem(&private),
        }
        .unwrap();
        let token =
            jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &claims, &signing).unwrap();
        let name = format!("{alg:?}");
        let provider = format!(
            "[[auth.provider]]\nissuer = \"{ISS}\"\nalgorithms = [\"{name}\"]\npublic_key_file = \"unused.pem\"\n"
        );
        let public = jwk::parse_pem(ISS, &fixture(&format!("{key}.pub.pem"))).unwrap();
        let keys = vec![Arc::new(ProviderKeys::fixed(ISS, vec![public]))];
        let none = Keys::none();
        let cold = Verifier::build(
            &config(&format!("token_cache = 0\n{provider}"), 1).auth,
            &none,
            &keys,
            None,
        );
        let warm = Verifier::build(&config(&provider, 1).auth, &none, &keys, None);
        warm.verify(&token).unwrap();
        g.bench_function(format!("{name}/cache_cold"), |b| {
            b.iter(|| cold.verify(black_box(&token)).unwrap())
        });
        g.bench_function(format!("{name}/cache_warm"), |b| {
            b.iter(|| warm.verify(black_box(&token)).unwrap())
        });
        // The signature check alone: ring (what the gateway uses) against jsonwebtoken's
        // RustCrypto backend (README, Identity providers, says why ring).
        let (signed, sig) = token.rsplit_once('.').unwrap();
        let sig_bytes = {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(sig)
                .unwrap()
        };
        let ours = jwk::parse_pem(ISS, &fixture(&format!("{key}.pub.pem"))).unwrap();
        let ours_alg = jwtgate::config::Algorithm::from_name(&name).unwrap();
        g.bench_function(format!("{name}/signature_ring"), |b| {
            b.iter(|| assert!(ours.verify(ours_alg, black_box(signed.as_bytes()), &sig_bytes)))
        });
        let public = fixture(&format!("{key}.pub.pem"));
        let decoding = match alg {
            jsonwebtoken::Algorithm::ES256 | jsonwebtoken::Algorithm::ES384 => {
                jsonwebtoken::DecodingKey::from_ec_pem(&public)
            }
            jsonwebtoken::Algorithm::EdDSA => jsonwebtoken::DecodingKey::from_ed_pem(&public),
            _ => jsonwebtoken::DecodingKey::from_rsa_pem(&public),
        }
        .unwrap();
        g.bench_function(format!("{name}/signature_jsonwebtoken_rustcrypto"), |b| {
            b.iter(|| {
                assert!(jsonwebtoken::crypto::verify(
                    sig,
                    black_box(signed.as_bytes()),
                    &decoding,
                    alg
                )
                .unwrap())
            })
        });
    }
    g.finish();
}

fn routing(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_select");
    for n in [1, 10, 1000] {
        let table = RouteTable::build(&config("", n).routes);
        g.bench_with_input(BenchmarkId::from_parameter(n), &table, |b, table| {
            b.iter(|| {
                table
                    .select(
                        black_box(Some("app3.example.com")),
                        black_box("/svc998/api/v3/orders/42"),
                    )
                    .unwrap()
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("path_normalize");
    g.bench_function("plain", |b| {
        b.iter(|| jwtgate::wire::uri::normalize(black_box("/api/v1/orders/42/items")).unwrap())
    });
    g.bench_function("dot_segments", |b| {
        b.iter(|| {
            jwtgate::wire::uri::normalize(black_box("/api/./v1//orders/%34%32/../42")).unwrap()
        })
    });
    g.finish();
}

/// A browser-like request: 12 header fields, a token, a spoofed identity and a client chain.
fn request_fields() -> Vec<(&'static str, &'static str)> {
    vec![
        ("host", "api.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)",
        ),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, deflate, br"),
        ("accept-language", "en-US,en;q=0.9"),
        (
            "authorization",
            "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl",
        ),
        ("connection", "keep-alive"),
        ("content-type", "application/json"),
        ("cookie", "session=abc; theme=dark"),
        ("x-request-id", "0f8fad5b-d9cb-469f-a165-70867728950e"),
        ("x-forwarded-for", "203.0.113.7"),
        ("x-auth-user", "mallory"),
    ]
}

fn rewrite(c: &mut Criterion) {
    let cfg = config("claim_headers = { role = \"X-Auth-Role\" }", 1);
    let policy = HeaderPolicy::new(&cfg.auth);
    let pairs = request_fields();
    let fields: Vec<Header> = pairs
        .iter()
        .map(|(n, v)| Header {
            name: n,
            value: v.as_bytes(),
        })
        .collect();
    let identity = std::sync::Arc::new(Identity {
        user: HeaderValue::from_static("alice@example.com"),
        claim_values: vec![Some(HeaderValue::from_static("user"))],
        issuer: None,
        left_out: vec![],
        claims: Default::default(),
        assertions: Default::default(),
        exp: 0.0,
    });
    let client = ClientInfo::new("10.1.2.3".parse().unwrap(), "http");
    let mut out = Vec::with_capacity(2048);
    c.bench_function("rewrite_request_12_headers", |b| {
        b.iter(|| {
            out.clear();
            let req = UpstreamRequest {
                method: "GET",
                path: "/api/v1/orders/42".into(),
                query: Some("page=2".into()),
                host: Some(b"api.example.com"),
                upstream_host: "127.0.0.1:8000",
                headers: black_box(&fields),
                map: None,
                identity: Some(identity.clone()),
                assertion: None,
                upgrade: None,
                framing: Framing::Empty,
                join_cookies: false,
                policy: &policy,
                client: &client,
                request_id: None,
                trace: None,
            };
            jwtgate::upstream::h1::write_request(&req, &mut out);
            out.len()
        })
    });
}

/// The whole per-request work of the HTTP/1 path before any I/O: parse the head, check it,
/// route, verify the token (cache warm), rewrite the headers, write the upstream's head.
fn pipeline(c: &mut Criterion) {
    let t = token();
    let cfg = config("", 1);
    let rt = Runtime::build(cfg, &Keys::from_secrets(KEY, None), None).unwrap();
    let client = ClientInfo::new("10.1.2.3".parse().unwrap(), "http");
    let mut raw = String::from("GET /api/v1/orders/42?page=2 HTTP/1.1\r\n");
    for (n, v) in request_fields() {
        let v = if n == "authorization" {
            format!("Bearer {t}")
        } else {
            v.to_owned()
        };
        raw.push_str(&format!("{n}: {v}\r\n"));
    }
    raw.push_str("\r\n");
    let bench_request =
        format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:9004\r\nAuthorization: Bearer {t}\r\n\r\n");
    let mut out = Vec::with_capacity(2048);
    let mut g = c.benchmark_group("pipeline");
    for (name, raw) in [
        ("wrk_request", &bench_request),
        ("browser_request_12_headers", &raw),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut slots = wire::header_slots();
                let head =
                    wire::parse_head(black_box(raw.as_bytes()), &mut slots, rt.head_limits())
                        .unwrap()
                        .unwrap();
                let view = RequestView {
                    method: head.method,
                    target: head.target,
                    authority: None,
                    protocol: Protocol::Http11,
                    headers: head.headers,
                    map: None,
                    body: head.framing,
                    client: &client,
                };
                let mut record = Record::new(head.method);
                out.clear();
                match rt.pipeline().decide(&view, &mut record) {
                    Decision::Forward(f) => {
                        jwtgate::upstream::h1::write_request(&f.request, &mut out)
                    }
                    other => panic!("{other:?}"),
                }
                out.len()
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    verification,
    provider_verification,
    routing,
    rewrite,
    pipeline
);
criterion_main!(benches);
