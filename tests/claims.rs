//! What a token carries, end to end: tokens shaped like Keycloak's, Auth0's and Entra ID's,
//! minted by PyJWT (tests/providers/idp.py), through claim paths, `require` with lists, arrays
//! and scopes, the issuer header, the rendering rules (arrays joined, ambiguous values left
//! out), the identity size budget, `max_token_lifetime`, and RFC 9864's `Ed25519` name. Each
//! asserts what the upstream received. Needs python3 with PyJWT and cryptography (`.ci/test`
//! installs them).

mod common;

use common::*;
use serde_json::{json, Value};

const KEYCLOAK: &str = "https://sso.example.com/realms/main";
const AUTH0: &str = "https://tenant.eu.auth0.com/";
const ENTRA: &str = "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0";

fn idp(args: &[&str], stdin: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/providers/idp.py");
    let args: Vec<&str> = std::iter::once(script)
        .chain(args.iter().copied())
        .collect();
    python(&args, &[], stdin, "PyJWT with cryptography")
}

/// Tokens signed by PyJWT: (key name, alg, kid, claims) each.
fn mint(keys: &Value, jobs: &[(&str, &str, &str, Value)]) -> Vec<String> {
    let jobs: Vec<Value> = jobs
        .iter()
        .map(|(key, alg, kid, claims)| {
            json!({"key": keys[key]["private_pem"], "alg": alg, "kid": kid, "claims": claims})
        })
        .collect();
    idp(&["mint"], &Value::Array(jobs).to_string())
        .lines()
        .map(str::to_owned)
        .collect()
}

fn jwks_file(dir: &tempfile::TempDir, name: &str, keys: &Value, key: &str, kid: &str) -> String {
    let mut jwk = keys[key]["jwk"].clone();
    jwk["kid"] = json!(kid);
    let path = dir.path().join(name);
    std::fs::write(&path, json!({ "keys": [jwk] }).to_string()).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Three providers as platform teams configure them, and routes that require what their
/// tokens carry.
fn config(kc: &str, a0: &str, entra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[auth]
leeway = "0s"
claim_separator = ","
max_identity_bytes = 2048

[[auth.provider]]
issuer = "{KEYCLOAK}"
algorithms = ["RS256"]
jwks_file = "{kc}"
audience = "orders-api"
user_claim = "preferred_username"
claim_headers = {{ "realm_access.roles" = "X-Auth-Roles", email = "X-Auth-Email", 'resource_access."orders-api".roles' = "X-Auth-Client-Roles" }}

[[auth.provider]]
issuer = "{AUTH0}"
algorithms = ["ES256"]
jwks_file = "{a0}"
audience = "https://orders.example.com"
claim_headers = {{ '"https://app.example.com/roles"' = "X-Auth-Roles", scope = "X-Auth-Scope", '"https://app.example.com/org".id' = "X-Auth-Org" }}

[[auth.provider]]
issuer = "{ENTRA}"
algorithms = ["RS256"]
jwks_file = "{entra}"
audience = "api://orders"
user_claim = "oid"
claim_headers = {{ scp = "X-Auth-Scope", roles = "X-Auth-Roles", name = "X-Auth-Name" }}

[[route]]
path = "/"
upstream = "{{upstream}}"

[[route]]
path = "/admin"
upstream = "{{upstream}}"
require = {{ "realm_access.roles" = ["admin", "ops"] }}

[[route]]
path = "/orders"
upstream = "{{upstream}}"
require = {{ scope = "orders:write" }}

[[route]]
path = "/entra"
upstream = "{{upstream}}"
require = {{ scp = "Orders.Write", roles = "Orders.Admin" }}

[[route]]
path = "/org"
upstream = "{{upstream}}"
require = {{ '"https://app.example.com/org".id' = "org_42", '"https://app.example.com/org".paid' = true }}
"#
    )
}

fn keycloak(user: &str, roles: &[&str]) -> Value {
    json!({
        "iss": KEYCLOAK, "aud": ["orders-api", "account"], "sub": "f7c1-uuid", "azp": "web",
        "exp": now() + 300, "iat": now(), "typ": "Bearer",
        "preferred_username": user, "email": format!("{user}@example.com"),
        "realm_access": {"roles": roles},
        "resource_access": {"orders-api": {"roles": ["reader"]}, "account": {"roles": ["manage-account"]}},
        "scope": "openid profile email"
    })
}

fn auth0(scope: &str, org: Value) -> Value {
    json!({
        "iss": AUTH0, "sub": "auth0|64ab", "aud": ["https://orders.example.com", "https://tenant.eu.auth0.com/userinfo"],
        "exp": now() + 300, "iat": now(), "azp": "client-id", "scope": scope,
        "https://app.example.com/roles": ["billing", "viewer"],
        "https://app.example.com/org": org
    })
}

fn entra(scp: &str, roles: &[&str]) -> Value {
    json!({
        "iss": ENTRA, "aud": "api://orders", "oid": "00000000-0000-0000-66f3-3332eca7ea81",
        "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ", "tid": "9188040d-6c67-4c5b-b112-36a304b66dad",
        "exp": now() + 300, "iat": now(), "nbf": now() - 5, "ver": "2.0",
        "scp": scp, "roles": roles, "name": "José Müller"
    })
}

struct Setup {
    _dir: tempfile::TempDir,
    keys: Value,
    up: Upstream,
    gw: Gateway,
}

async fn setup() -> Setup {
    let keys: Value = serde_json::from_str(&idp(&["keys"], "")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = jwks_file(&dir, "kc.json", &keys, "rsa", "kc-1");
    let a0 = jwks_file(&dir, "a0.json", &keys, "p256", "a0-1");
    let en = jwks_file(&dir, "entra.json", &keys, "rsa", "entra-1");
    let up = Upstream::start().await;
    let gw = Gateway::start(&config(&kc, &a0, &en), &up.url()).await;
    Setup {
        _dir: dir,
        keys,
        up,
        gw,
    }
}

/// GET `path` with `token`, and the request the upstream saw (if any).
async fn call(s: &Setup, path: &str, token: &str, extra: &[(&str, &str)]) -> (Got, Option<Seen>) {
    s.up.clear();
    let auth = bearer(token);
    let mut headers = vec![("authorization", auth.as_str())];
    headers.extend_from_slice(extra);
    let got = get(&s.gw, path, &headers).await;
    let seen = s.up.seen().pop();
    (got, seen)
}

fn one(seen: &Seen, name: &str) -> Option<String> {
    let all = seen.all(name);
    assert!(all.len() <= 1, "{name} sent {} times: {all:?}", all.len());
    all.into_iter().next()
}

#[tokio::test]
async fn keycloak_auth0_and_entra_tokens_pass_their_claims_and_meet_requires() {
    let s = setup().await;
    let t = mint(
        &s.keys,
        &[
            ("rsa", "RS256", "kc-1", keycloak("alice", &["user", "ops"])),
            ("rsa", "RS256", "kc-1", keycloak("bob", &["user"])),
            (
                "p256",
                "ES256",
                "a0-1",
                auth0(
                    "openid orders:read orders:write",
                    json!({"id": "org_42", "paid": true}),
                ),
            ),
            (
                "p256",
                "ES256",
                "a0-1",
                auth0("openid orders:read", json!({"id": "org_42", "paid": false})),
            ),
            (
                "rsa",
                "RS256",
                "entra-1",
                entra("Orders.Read Orders.Write", &["Orders.Admin"]),
            ),
            (
                "rsa",
                "RS256",
                "entra-1",
                entra("Orders.Read", &["Orders.Admin"]),
            ),
        ],
    );

    // Keycloak: the user from preferred_username, roles joined, a client's roles by a path
    // with a quoted segment, and the issuer named.
    let (got, seen) = call(&s, "/admin/x", &t[0], &[]).await;
    assert_eq!(got.status, 200, "{}", got.body);
    let seen = seen.unwrap();
    assert_eq!(one(&seen, "x-auth-user").as_deref(), Some("alice"));
    assert_eq!(one(&seen, "x-auth-roles").as_deref(), Some("user,ops"));
    assert_eq!(one(&seen, "x-auth-client-roles").as_deref(), Some("reader"));
    assert_eq!(
        one(&seen, "x-auth-email").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(one(&seen, "x-auth-issuer").as_deref(), Some(KEYCLOAK));
    // bob has neither admin nor ops: 403 insufficient_scope, nothing forwarded.
    let (got, seen) = call(&s, "/admin/x", &t[1], &[]).await;
    assert_eq!(got.status, 403);
    assert!(seen.is_none());
    let challenge = got.headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
    assert!(!challenge.contains("scope=\"admin"), "{challenge}");
    assert_eq!(got.json()["error"], "insufficient_scope");
    assert!(got.json()["error_description"]
        .as_str()
        .unwrap()
        .contains("realm_access.roles"));

    // Auth0: namespaced claims by quoted name; scope matched word by word.
    let (got, seen) = call(&s, "/orders", &t[2], &[]).await;
    assert_eq!(got.status, 200, "{}", got.body);
    let seen = seen.unwrap();
    assert_eq!(one(&seen, "x-auth-user").as_deref(), Some("auth0|64ab"));
    assert_eq!(
        one(&seen, "x-auth-roles").as_deref(),
        Some("billing,viewer")
    );
    assert_eq!(
        one(&seen, "x-auth-scope").as_deref(),
        Some("openid orders:read orders:write")
    );
    assert_eq!(one(&seen, "x-auth-org").as_deref(), Some("org_42"));
    assert_eq!(one(&seen, "x-auth-issuer").as_deref(), Some(AUTH0));
    let (got, seen) = call(&s, "/orders", &t[3], &[]).await;
    assert_eq!(got.status, 403);
    assert!(seen.is_none());
    let challenge = got.headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains(r#"error="insufficient_scope""#)
            && challenge.contains(r#"scope="orders:write""#),
        "{challenge}"
    );
    // Nested values under a quoted segment, strings and booleans by type.
    assert_eq!(call(&s, "/org", &t[2], &[]).await.0.status, 200);
    assert_eq!(call(&s, "/org", &t[3], &[]).await.0.status, 403);

    // Entra: scp words, roles array, the user from oid, non-ASCII passed as UTF-8.
    let (got, seen) = call(&s, "/entra", &t[4], &[]).await;
    assert_eq!(got.status, 200, "{}", got.body);
    let seen = seen.unwrap();
    assert_eq!(
        one(&seen, "x-auth-user").as_deref(),
        Some("00000000-0000-0000-66f3-3332eca7ea81")
    );
    assert_eq!(
        one(&seen, "x-auth-scope").as_deref(),
        Some("Orders.Read Orders.Write")
    );
    assert_eq!(one(&seen, "x-auth-roles").as_deref(), Some("Orders.Admin"));
    assert_eq!(
        seen.headers["x-auth-name"].as_bytes(),
        "José Müller".as_bytes()
    );
    assert_eq!(one(&seen, "x-auth-issuer").as_deref(), Some(ENTRA));
    let (got, seen) = call(&s, "/entra", &t[5], &[]).await;
    assert_eq!(got.status, 403);
    assert!(seen.is_none());
    assert!(got.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .contains(r#"scope="Orders.Write""#));
}

#[tokio::test]
async fn one_user_name_one_issuer_and_no_client_copy_of_any_identity_header() {
    let s = setup().await;
    // The same user name from two issuers reaches the upstream with two issuers.
    let t = mint(
        &s.keys,
        &[
            ("rsa", "RS256", "kc-1", keycloak("carol", &["user"])),
            ("rsa", "RS256", "entra-1", {
                let mut c = entra("x", &[]);
                c["oid"] = json!("carol");
                c
            }),
        ],
    );
    let forged = [
        ("x-auth-issuer", KEYCLOAK),
        ("X_Auth_Issuer", KEYCLOAK),
        ("grpc-metadata-x-auth-user", "root"),
        ("Grpc-Metadata-X-Auth-User-Bin", "cm9vdA=="),
        ("x-auth-assertion", "forged.assertion.value"),
        ("Grpc-Metadata-X-Auth-Issuer", KEYCLOAK),
        ("x-auth-roles", "admin"),
    ];
    let (got, seen) = call(&s, "/", &t[0], &forged).await;
    assert_eq!(got.status, 200, "{}", got.body);
    let seen = seen.unwrap();
    assert_eq!(seen.all("x-auth-issuer"), vec![KEYCLOAK.to_owned()]);
    assert_eq!(seen.all("x-auth-roles"), vec!["user".to_owned()]);
    assert!(seen.folded("grpc-metadata-x-auth-user").is_empty());
    assert!(seen.folded("grpc-metadata-x-auth-user-bin").is_empty());
    // No assertion configured: a client's copy is stripped all the same.
    assert!(seen.folded("x-auth-assertion").is_empty());
    assert!(seen.folded("grpc-metadata-x-auth-issuer").is_empty());
    let (got, seen) = call(&s, "/", &t[1], &forged).await;
    assert_eq!(got.status, 200, "{}", got.body);
    let seen = seen.unwrap();
    assert_eq!(seen.all("x-auth-user"), vec!["carol".to_owned()]);
    assert_eq!(seen.all("x-auth-issuer"), vec![ENTRA.to_owned()]);
    // The shared secret's tokens name its issuer too: auth.issuer, else empty.
    let (got, seen) = call(&s, "/", &token("carol"), &forged).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(seen.unwrap().all("x-auth-issuer"), vec![String::new()]);
}

#[tokio::test]
async fn ambiguous_values_are_left_out_and_oversized_identities_refused() {
    let s = setup().await;
    let mut odd = keycloak("dave", &["a,b", "c"]);
    odd["email"] = json!({"primary": "x"});
    let mut nulls = keycloak("erin", &[]);
    nulls["email"] = Value::Null;
    let mut control = keycloak("frank", &["ok", "bad\tvalue"]);
    control["email"] = json!("frank@example.com\r\nX-Auth-User: root");
    let mut huge = keycloak("gina", &[]);
    let roles: Vec<String> = (0..300).map(|i| format!("role-{i}")).collect();
    huge["realm_access"]["roles"] = json!(roles);
    let mut nested = keycloak("hank", &[]);
    nested["realm_access"]["roles"] = json!([["admin"]]);
    let t = mint(
        &s.keys,
        &[
            ("rsa", "RS256", "kc-1", odd),
            ("rsa", "RS256", "kc-1", nulls),
            ("rsa", "RS256", "kc-1", control),
            ("rsa", "RS256", "kc-1", huge),
            ("rsa", "RS256", "kc-1", nested),
        ],
    );
    // An element holding the separator, an object: left out (and never a forged split).
    let (got, seen) = call(&s, "/", &t[0], &[("x-auth-roles", "admin")]).await;
    assert_eq!(got.status, 200);
    let seen = seen.unwrap();
    assert!(seen.all("x-auth-roles").is_empty());
    assert!(seen.all("x-auth-email").is_empty());
    assert_eq!(one(&seen, "x-auth-user").as_deref(), Some("dave"));
    // An empty array is an empty value; null leaves the header out.
    let (_, seen) = call(&s, "/", &t[1], &[]).await;
    let seen = seen.unwrap();
    assert_eq!(seen.all("x-auth-roles"), vec![String::new()]);
    assert!(seen.all("x-auth-email").is_empty());
    // Control characters: left out, never split into a header.
    let (_, seen) = call(&s, "/", &t[2], &[]).await;
    let seen = seen.unwrap();
    assert!(seen.all("x-auth-roles").is_empty());
    assert!(seen.all("x-auth-email").is_empty());
    assert_eq!(seen.all("x-auth-user"), vec!["frank".to_owned()]);
    // Over max_identity_bytes (2 KiB here): 403, not 401, nothing forwarded.
    let (got, seen) = call(&s, "/", &t[3], &[]).await;
    assert_eq!(got.status, 403, "{}", got.body);
    assert!(seen.is_none());
    assert_eq!(got.json()["error"], "identity_too_large");
    assert!(got.headers.get("www-authenticate").is_none());
    // A nested array: ambiguous, left out, and cannot meet a require either.
    let (got, _) = call(&s, "/", &t[4], &[]).await;
    assert_eq!(got.status, 200);
    assert_eq!(call(&s, "/admin", &t[4], &[]).await.0.status, 403);
}

#[tokio::test]
async fn a_user_claim_path_must_name_a_usable_string() {
    let s = setup().await;
    let mut missing = keycloak("x", &[]);
    missing
        .as_object_mut()
        .unwrap()
        .remove("preferred_username");
    let mut number = keycloak("x", &[]);
    number["preferred_username"] = json!(7);
    let mut control = keycloak("x", &[]);
    control["preferred_username"] = json!("ivy\u{7f}");
    let t = mint(
        &s.keys,
        &[
            ("rsa", "RS256", "kc-1", missing),
            ("rsa", "RS256", "kc-1", number),
            ("rsa", "RS256", "kc-1", control),
        ],
    );
    for (token, what) in [
        (&t[0], "token has no user claim"),
        (&t[1], "is not a valid user name"),
        (&t[2], "is not a valid user name"),
    ] {
        let (got, seen) = call(&s, "/", token, &[]).await;
        assert_eq!(got.status, 401);
        assert!(seen.is_none());
        let description = got.json()["error_description"].as_str().unwrap().to_owned();
        assert!(description.contains(what), "{description}");
        assert!(description.contains("preferred_username"), "{description}");
    }
}

#[tokio::test]
async fn max_token_lifetime_refuses_tokens_valid_for_ever() {
    let up = Upstream::start().await;
    let far = json!({"sub": "jo", "exp": 1e300});
    let week = json!({"sub": "jo", "exp": now() + 7 * 86_400});
    let hour = json!({"sub": "jo", "exp": now() + 3600});
    let alg = jsonwebtoken::Algorithm::HS256;
    // Without the bound (the default), such a token passes, as before.
    let gw = Gateway::start(CONFIG, &up.url()).await;
    let t = token_with(far.clone(), alg, KEY);
    assert_eq!(
        get(&gw, "/", &[("authorization", &bearer(&t))])
            .await
            .status,
        200
    );
    let bounded = CONFIG.replace("[auth]\n", "[auth]\nmax_token_lifetime = \"24h\"\n");
    let gw = Gateway::start(&bounded, &up.url()).await;
    for claims in [far, week] {
        up.clear();
        let t = token_with(claims, alg, KEY);
        let got = get(&gw, "/", &[("authorization", &bearer(&t))]).await;
        assert_eq!(got.status, 401);
        assert_eq!(up.count(), 0);
        assert_eq!(got.json()["error_description"], "token lifetime too long");
    }
    let t = token_with(hour, alg, KEY);
    assert_eq!(
        get(&gw, "/", &[("authorization", &bearer(&t))])
            .await
            .status,
        200
    );
    // No providers: no issuer header.
    assert!(up.one().all("x-auth-issuer").is_empty());
}

/// A token whose header says `alg: "Ed25519"` (RFC 9864), signed with the RFC 8037 key.
fn ed25519_named(kid: &str, claims: &Value) -> String {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let seed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
        .unwrap();
    let key = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
    let signed = format!(
        "{}.{}",
        b64(json!({"alg": "Ed25519", "kid": kid, "typ": "JWT"})
            .to_string()
            .as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = key.sign(signed.as_bytes());
    format!("{signed}.{}", b64(sig.as_ref()))
}

#[tokio::test]
async fn ed25519_is_eddsa_in_algorithms_jwks_and_token_headers() {
    let dir = tempfile::tempdir().unwrap();
    let mut jwk = ed25519_jwk("ed-1");
    jwk["alg"] = json!("Ed25519");
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, json!({"keys": [jwk]}).to_string()).unwrap();
    let up = Upstream::start().await;
    let claims = json!({"iss": "https://op.example", "sub": "kim", "exp": now() + 300});
    for listed in ["Ed25519", "EdDSA"] {
        let toml = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[[auth.provider]]\nissuer = \"https://op.example\"\n\
             algorithms = [\"{listed}\"]\njwks_file = \"{}\"\n[[route]]\npath = \"/\"\nupstream = \"{{upstream}}\"\n",
            path.display()
        );
        let gw = Gateway::start(&toml, &up.url()).await;
        for token in [
            ed25519_named("ed-1", &claims),
            signed(jsonwebtoken::Algorithm::EdDSA, "ed-1", claims.clone()),
        ] {
            up.clear();
            let got = get(&gw, "/", &[("authorization", &bearer(&token))]).await;
            assert_eq!(got.status, 200, "{listed}: {}", got.body);
            assert_eq!(up.one().all("x-auth-user"), vec!["kim".to_owned()]);
        }
        // An Ed25519-named token is never checked with another kind of key.
        let mut wrong = ed25519_named("ed-1", &claims);
        wrong.push('A');
        assert_eq!(
            get(&gw, "/", &[("authorization", &bearer(&wrong))])
                .await
                .status,
            401
        );
    }
}

/// `jwtgate_jwks_keys` counts only the keys that can verify one of the provider's algorithms.
#[tokio::test]
async fn jwks_keys_counts_only_usable_keys() {
    let keys: Value = serde_json::from_str(&idp(&["keys"], "")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut rsa = keys["rsa"]["jwk"].clone();
    rsa["kid"] = json!("r1");
    let mut ec = keys["p256"]["jwk"].clone();
    ec["kid"] = json!("e1");
    let mut ed = ed25519_jwk("d1");
    ed["alg"] = json!("Ed25519");
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, json!({"keys": [rsa, ec, ed]}).to_string()).unwrap();
    let up = Upstream::start().await;
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[[auth.provider]]\nissuer = \"https://op.example\"\n\
         algorithms = [\"RS256\", \"Ed25519\"]\njwks_file = \"{}\"\n[[route]]\npath = \"/\"\nupstream = \"{{upstream}}\"\n",
        path.display()
    );
    let gw = Gateway::start(&toml, &up.url()).await;
    until("the keys gauge", || {
        gw.gateway
            .metrics
            .render()
            .contains("jwtgate_jwks_keys{provider=\"https://op.example\"} 2")
    })
    .await;
}
