//! The dashboard and the alerting rules of `manifests/observability/` name only metrics the
//! gateway has: every `jwtgate_` metric that a rule expression (alerts.yml, and the same groups
//! in prometheusrule.yaml) or a dashboard expression (panel queries, variable queries) names is
//! in the binary's `/metrics`.
//!
//! prometheus-client (0.26) leaves a labelled family out of `/metrics`, `# HELP` and `# TYPE`
//! included, until it has a series (`Registry::encode` skips empty metrics), so the test first
//! makes every family appear: a forwarded request (requests, upstream latency), a request
//! without a token (auth failures), a request to a dead upstream (502), a gRPC call without a
//! token (gRPC calls), a provider with a `jwks_url` (key fetches, keys) and a token with a key
//! id it does not have (kid waits), and a SIGHUP (reloads).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::process::{self, jwtgate, listen_addr, Running};
use common::{JwksServer, Upstream, KEY, PATIENCE};

/// Where the files are.
const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/observability");

/// The issuer of the test's identity provider.
const ISSUER: &str = "https://idp.example";

fn is_identifier(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

/// The `jwtgate_` metric names in a PromQL expression: the identifiers (letters, digits, `_`,
/// `:`) that start with `jwtgate_`, outside string literals (label values, regexes) and
/// comments. Grafana's variables (`$job`, `$__rate_interval`) never start with it.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let b = expr.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'\'' | b'`') => {
                // A string: up to its closing quote (backslash escapes, except in raw strings).
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' && q != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            c if is_identifier(c) => {
                let start = i;
                while i < b.len() && is_identifier(b[i]) {
                    i += 1;
                }
                let word = &expr[start..i];
                if word.starts_with("jwtgate_") {
                    names.insert(word.to_owned());
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// The `expr:` values of a Prometheus rule file or a PrometheusRule: a block scalar
/// (`expr: |`, `expr: >-`, ...) is every following line indented deeper than the key (blank
/// lines included); any other value is the rest of the line, without its quotes.
fn rule_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut exprs = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let key = trimmed.strip_prefix("- ").unwrap_or(trimmed);
        let Some(value) = key.strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        if value.starts_with('|') || value.starts_with('>') {
            let mut block = String::new();
            while let Some(next) = lines.get(i) {
                let text = next.trim_start();
                if !text.is_empty() && next.len() - text.len() <= indent {
                    break;
                }
                block.push_str(text);
                block.push('\n');
                i += 1;
            }
            exprs.push(block);
        } else if let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            exprs.push(inner.replace("\\\"", "\"").replace("\\\\", "\\"));
        } else if let Some(inner) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
            exprs.push(inner.replace("''", "'"));
        } else {
            exprs.push(value.to_owned());
        }
    }
    exprs
}

/// How many rules (`alert:` or `record:` keys) a rule file has.
fn rule_count(yaml: &str) -> usize {
    yaml.lines()
        .map(|l| {
            let t = l.trim_start();
            t.strip_prefix("- ").unwrap_or(t)
        })
        .filter(|t| t.starts_with("alert:") || t.starts_with("record:"))
        .count()
}

/// Every string under an `expr`, `query` or `definition` key of the dashboard: the panels'
/// queries and the template variables' (`label_values(jwtgate_ready, job)`).
fn dashboard_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr" | "query" | "definition", serde_json::Value::String(s)) => {
                        out.push(s.clone())
                    }
                    _ => dashboard_exprs(value, out),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                dashboard_exprs(item, out);
            }
        }
        _ => {}
    }
}

/// Every metric name the rules and the dashboard use, with the files that name it.
fn wanted() -> BTreeMap<String, BTreeSet<&'static str>> {
    let mut wanted: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
    for file in ["alerts.yml", "prometheusrule.yaml"] {
        let text = std::fs::read_to_string(format!("{DIR}/{file}")).unwrap();
        let exprs = rule_exprs(&text);
        assert_eq!(
            exprs.len(),
            rule_count(&text),
            "{file}: not one expr found per rule: {exprs:#?}"
        );
        for expr in &exprs {
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{file}: no jwtgate_ metric in {expr:?}");
            for name in names {
                wanted.entry(name).or_default().insert(file);
            }
        }
    }
    let file = "grafana-dashboard.json";
    let text = std::fs::read_to_string(format!("{DIR}/{file}")).unwrap();
    let dashboard: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    for expr in &exprs {
        for name in metric_names(expr) {
            wanted.entry(name).or_default().insert(file);
        }
    }
    wanted
}

/// What a `/metrics` text has: the families by `# TYPE`, and the sample names.
struct Exposition {
    types: BTreeMap<String, String>,
    samples: BTreeSet<String>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let mut types = BTreeMap::new();
        let mut samples = BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut words = rest.split_whitespace();
                if let (Some(family), Some(kind)) = (words.next(), words.next()) {
                    types.insert(family.to_owned(), kind.to_owned());
                }
            } else if !line.starts_with('#') && !line.trim().is_empty() {
                let name = line.split(['{', ' ']).next().unwrap_or_default();
                samples.insert(name.to_owned());
            }
        }
        Exposition { types, samples }
    }

    /// True when a query for `name` finds something here: a sample of that name, or a family
    /// (`# TYPE`) whose samples are called that: a counter's `_total`, a histogram's `_bucket`,
    /// `_sum` and `_count`, a gauge's own name.
    fn has(&self, name: &str) -> bool {
        if self.samples.contains(name) {
            return true;
        }
        self.types.iter().any(|(family, kind)| {
            let suffixes: &[&str] = match kind.as_str() {
                "counter" => &["_total"],
                "histogram" | "gaugehistogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["", "_sum", "_count"],
                _ => &[""],
            };
            name.strip_prefix(family.as_str())
                .is_some_and(|suffix| suffixes.contains(&suffix))
        })
    }
}

/// One HTTP/1.1 exchange on a new connection (waiting up to `PATIENCE`: long enough for a
/// request that waits for the provider's next key fetch, 6 s at most): the status and the
/// whole answer.
fn exchange(addr: &str, head: &str) -> (u16, String) {
    let out = process::exchange(addr, head);
    (process::status(&out), out)
}

/// The admin listener's `/metrics` body.
fn metrics(admin: &str) -> String {
    let (status, answer) = exchange(admin, "GET /metrics HTTP/1.1\r\nHost: admin\r\n");
    assert_eq!(status, 200, "{answer}");
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// Kills the gateway when the test fails before it stops it.
struct Process(Option<Running>);

impl Process {
    fn run(&mut self) -> &mut Running {
        self.0.as_mut().unwrap()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(run) = &mut self.0 {
            let _ = run.child.kill();
            let _ = run.child.wait();
        }
    }
}

#[test]
fn the_names_are_read_from_expressions_and_checked_against_metrics() {
    let expr = r#"sum by (route) (rate(jwtgate_requests_total{route="/jwtgate_x", status=~'jwtgate_y'}[$__rate_interval]))
        / histogram_quantile(0.99, jwtgate_upstream_duration_seconds_bucket) # jwtgate_comment
        + job:jwtgate_recorded:rate5m + on (instance) jwtgate_ready"#;
    assert_eq!(
        metric_names(expr).into_iter().collect::<Vec<_>>(),
        [
            "jwtgate_ready",
            "jwtgate_requests_total",
            "jwtgate_upstream_duration_seconds_bucket"
        ]
    );
    let yaml = concat!(
        "groups:\n",
        "  - name: g\n",
        "    rules:\n",
        "      - alert: A\n",
        "        expr: |\n",
        "          sum(jwtgate_a_total)\n",
        "\n",
        "            / sum(jwtgate_b_total)\n",
        "        for: 1m\n",
        "      - alert: B\n",
        "        expr: \"jwtgate_c > 0\"\n",
        "      - record: r\n",
        "        expr: jwtgate_d\n",
    );
    assert_eq!(rule_count(yaml), 3);
    let exprs = rule_exprs(yaml);
    assert_eq!(exprs.len(), 3, "{exprs:?}");
    assert_eq!(
        metric_names(&exprs.join("\n"))
            .into_iter()
            .collect::<Vec<_>>(),
        [
            "jwtgate_a_total",
            "jwtgate_b_total",
            "jwtgate_c",
            "jwtgate_d"
        ]
    );

    let exposition = Exposition::parse(
        "# HELP jwtgate_requests Requests\n# TYPE jwtgate_requests counter\n\
         jwtgate_requests_total{route=\"/\",status=\"200\",mode=\"inline\"} 1\n\
         # HELP jwtgate_upstream_duration_seconds Time\n\
         # TYPE jwtgate_upstream_duration_seconds histogram\n\
         # TYPE jwtgate_ready gauge\njwtgate_ready 1\n# EOF\n",
    );
    for name in [
        "jwtgate_requests_total",
        "jwtgate_upstream_duration_seconds_bucket",
        "jwtgate_upstream_duration_seconds_count",
        "jwtgate_ready",
    ] {
        assert!(exposition.has(name), "{name}");
    }
    // A family's bare name where Prometheus has only its samples, or a name not there at all.
    for name in [
        "jwtgate_requests",
        "jwtgate_upstream_duration_seconds",
        "jwtgate_ready_total",
        "jwtgate_no_such_metric_total",
    ] {
        assert!(!exposition.has(name), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_the_alerts_name_is_in_metrics() {
    let wanted = wanted();
    for name in [
        "jwtgate_requests_total",
        "jwtgate_auth_failures_total",
        "jwtgate_jwks_fetches_total",
        "jwtgate_jwks_keys",
        "jwtgate_open_connections",
        "jwtgate_log_lines_dropped_total",
        "jwtgate_upstream_duration_seconds_bucket",
    ] {
        assert!(wanted.contains_key(name), "{name} not found in: {wanted:?}");
    }

    let up = Upstream::start().await;
    let idp =
        JwksServer::start(serde_json::json!({ "keys": [common::p256_jwk("current")] }).to_string())
            .await;
    // A port nothing listens on: the upstream of the 502.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("jwtgate.toml");
    std::fs::write(
        &config,
        format!(
            r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
connect_timeout = "1s"
upstream_timeout = "10s"

[[auth.provider]]
issuer = "{ISSUER}"
algorithms = ["ES256"]
jwks_url = "{jwks}"

[[route]]
path = "/dead"
upstream = "http://{dead}"

[[route]]
path = "/"
upstream = "{upstream}"
"#,
            jwks = idp.url(),
            upstream = up.url(),
        ),
    )
    .unwrap();
    let mut cmd = jwtgate(dir.path());
    cmd.args(["--config", config.to_str().unwrap()])
        .env("JWT_SECRET_KEY", KEY)
        .env("JWTGATE_LOG_FORMAT", "json");
    let token = common::token("alice");
    let unknown_kid = common::signed(
        jsonwebtoken::Algorithm::ES256,
        "not-published",
        serde_json::json!({"iss": ISSUER, "sub": "bob", "exp": common::now() + 600}),
    );

    let (missing, text) = tokio::task::spawn_blocking(move || {
        let mut gw = Process(Some(Running::start(cmd)));
        let admin = gw.run().admin_addr();
        let addr = listen_addr(&gw.run().wait_for("\"listening\""));
        // Ready once the provider's first key fetch is in.
        common::until_blocking("the gateway ready (the provider's keys fetched)", || {
            exchange(&admin, "GET /readyz HTTP/1.1\r\nHost: admin\r\n").0 == 200
        });
        let bearer = format!("Authorization: Bearer {token}\r\n");
        // Forwarded and answered: jwtgate_requests_total, jwtgate_upstream_duration_seconds.
        let (status, answer) = exchange(&addr, &format!("GET /a HTTP/1.1\r\nHost: t\r\n{bearer}"));
        assert_eq!(status, 200, "{answer}");
        // No token: jwtgate_auth_failures_total{reason="missing"}.
        let (status, answer) = exchange(&addr, "GET /a HTTP/1.1\r\nHost: t\r\n");
        assert_eq!(status, 401, "{answer}");
        // The upstream cannot be reached: a 502.
        let (status, answer) = exchange(
            &addr,
            &format!("GET /dead/x HTTP/1.1\r\nHost: t\r\n{bearer}"),
        );
        assert_eq!(status, 502, "{answer}");
        // A gRPC call without a token: jwtgate_grpc_requests_total.
        let (status, answer) = exchange(
            &addr,
            "POST /pkg.Svc/Call HTTP/1.1\r\nHost: t\r\ncontent-type: application/grpc-web+proto\r\ncontent-length: 0\r\n",
        );
        assert_eq!(status, 200, "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("grpc-status: 16"),
            "{answer}"
        );
        // A key id the provider has not published: the request waits for its next fetch
        // (jwtgate_jwks_kid_waits_total), then is refused.
        let (status, answer) = exchange(
            &addr,
            &format!("GET /a HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {unknown_kid}\r\n"),
        );
        assert_eq!(status, 401, "{answer}");
        // A reload: jwtgate_config_reloads_total.
        std::process::Command::new("kill")
            .args(["-HUP", &gw.run().pid().to_string()])
            .status()
            .unwrap();
        gw.run().wait_for("reloaded config and keys");

        // Requests are counted as they end, which may be just after their answer: wait for
        // every name, then report those still missing.
        let give_up = Instant::now() + PATIENCE;
        let (missing, text) = loop {
            let text = metrics(&admin);
            let exposition = Exposition::parse(&text);
            let missing: Vec<String> = wanted
                .iter()
                .filter(|(name, _)| !exposition.has(name))
                .map(|(name, files)| format!("{name} (named in {files:?})"))
                .collect();
            if missing.is_empty() || Instant::now() > give_up {
                break (missing, text);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let run = gw.0.take().unwrap();
        let (code, log) = run.terminate();
        assert_eq!(code, Some(0), "{log:?}");
        (missing, text)
    })
    .await
    .unwrap();
    assert!(
        missing.is_empty(),
        "metrics named by manifests/observability/ that /metrics does not have:\n  {}\n/metrics:\n{text}",
        missing.join("\n  ")
    );
}
