//! The gateway's HTTP/1 reading against hyper's on the same bytes, through the code the gateway
//! runs: every request input of the committed corpus (`tests/corpus/`, written by `generate.py`
//! there) is sent on a connection to the gateway's real listener (its HTTP/1 connection loop),
//! and every response input is what an upstream answers the gateway (its real upstream reader).
//! What reaches the upstream, or the client, is compared with what hyper reads from the same
//! bytes (`tests/oracle/`): for every input the gateway refuses, or passes on exactly what
//! hyper reads (method, path, end-to-end fields and body; status, fields and body). A floor on
//! agreement keeps a gateway that refused everything from passing. Prints how often each side
//! refused, and every reason the gateway refused what hyper read (the README lists them).

mod oracle;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;

use oracle::{canonical, hands_over, hyper_requests, hyper_response, Read};

#[derive(serde::Deserialize)]
struct Entry {
    name: String,
    data: String,
    #[serde(default)]
    head: bool,
}

/// The committed corpus, and with `JWTGATE_EXTRA_CORPUS=DIR` the same files from `DIR` too (test
/// vectors taken from other projects for a local run, not committed; see tests/corpus/README.md).
fn corpus(file: &str) -> Vec<(String, Vec<u8>, bool)> {
    let committed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut entries = read_corpus(&committed.join(file));
    if let Ok(extra) = std::env::var("JWTGATE_EXTRA_CORPUS") {
        let extra = read_corpus(&std::path::Path::new(&extra).join(file));
        eprintln!(
            "{file}: {} more inputs from JWTGATE_EXTRA_CORPUS",
            extra.len()
        );
        entries.extend(extra);
    }
    entries
}

fn read_corpus(path: &std::path::Path) -> Vec<(String, Vec<u8>, bool)> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|line| {
            let e: Entry = serde_json::from_str(line).unwrap();
            // Each character is one byte (Latin-1).
            let bytes = e
                .data
                .chars()
                .map(|c| u8::try_from(u32::from(c)).expect("a Latin-1 character"))
                .collect();
            (e.name, bytes, e.head)
        })
        .collect()
}

/// How one input compared.
enum Verdict {
    /// The gateway passed on exactly what hyper read (requests: every one of them).
    Same,
    /// Both refused before any message.
    BothRefused,
    /// The gateway refused, or stopped, where hyper read on.
    Stricter(String),
}

#[derive(Default)]
struct Tally {
    inputs: usize,
    same: usize,
    both_refused: usize,
    stricter: BTreeMap<String, (usize, Vec<String>)>,
    failures: Vec<String>,
}

impl Tally {
    fn add(&mut self, name: &str, verdict: Result<Verdict, String>) {
        self.inputs += 1;
        match verdict {
            Ok(Verdict::Same) => self.same += 1,
            Ok(Verdict::BothRefused) => self.both_refused += 1,
            Ok(Verdict::Stricter(why)) => {
                let (n, examples) = self.stricter.entry(why).or_default();
                *n += 1;
                if examples.len() < 3 {
                    examples.push(name.to_owned());
                }
            }
            Err(e) => self.failures.push(format!("{name}: {e}")),
        }
    }

    /// Prints the tally and asserts no leniency, and at least `floor` inputs passed on whole.
    fn report(&self, what: &str, floor: usize) {
        eprintln!(
            "{what}: {} inputs; passed on as hyper reads them {}; both refuse {}; only the gateway refuses {}",
            self.inputs,
            self.same,
            self.both_refused,
            self.stricter.values().map(|(n, _)| n).sum::<usize>()
        );
        for (why, (n, examples)) in &self.stricter {
            eprintln!("  the gateway refuses, hyper reads: {why} ({n}), e.g. {examples:?}");
        }
        assert!(
            self.failures.is_empty(),
            "{} {what} where the gateway is less strict than hyper or passes on something else:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
        assert!(
            self.same >= floor,
            "only {} {what} passed on as hyper reads them (floor {floor}): a gateway that refuses everything is not strict, it is broken",
            self.same
        );
    }
}

/// A runtime for the gateway and the upstreams, beside the oracle's own.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
header_read_timeout = "1s"
idle_timeout = "1s"
[[route]]
path = "/"
upstream = "{upstream}"
auth = "public"
"#;

/// The gateway, in-process on loopback, in front of `upstream`.
fn gateway(rt: &tokio::runtime::Runtime, upstream: SocketAddr) -> SocketAddr {
    let toml = CONFIG.replace("{upstream}", &format!("http://{upstream}"));
    let config = jwtgate::Config::from_toml(&toml).unwrap();
    let keys = jwtgate::Keys::from_secrets("differential-key-0123456789abcdef0123", None);
    let runtime = jwtgate::Runtime::build(config, &keys, None).unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(jwtgate::run(listener, runtime, std::future::pending()));
        addr
    })
}

/// Sends `input` on a new connection to `addr` and returns what came back: everything until
/// `answers` responses came (then the write side is closed, as hyper's reading of the input
/// ends at its end) and the gateway closed the connection.
fn exchange(addr: SocketAddr, input: &[u8], answers: usize, heads: &[bool]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    // A ceiling against a hang, not a measure.
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = s.write_all(input);
    let mut out = Vec::new();
    let mut closed_write = false;
    loop {
        if !closed_write && responses(&out, heads).len() >= answers {
            let _ = s.shutdown(std::net::Shutdown::Write);
            closed_write = true;
        }
        let mut chunk = [0u8; 16 * 1024];
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The heads of the responses in `raw` (a connection's worth, as the gateway writes them: each
/// with its length; the answer to a `HEAD` request, as `heads` says, without its body), as
/// (status, came from the upstream, the gateway's description of its own refusal).
fn responses(raw: &[u8], heads: &[bool]) -> Vec<(u16, bool, String)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < raw.len() {
        let mut fields = [httparse::EMPTY_HEADER; 64];
        let mut res = httparse::Response::new(&mut fields);
        let Ok(httparse::Status::Complete(n)) = res.parse(&raw[at..]) else {
            break;
        };
        let status = res.code.unwrap_or(0);
        if (100..200).contains(&status) {
            // `100 Continue`: an interim answer, no request of its own.
            at += n;
            continue;
        }
        let upstream = res
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("x-from-upstream"));
        let length = res
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
            .unwrap_or(0);
        let head_request = heads.get(out.len()).copied().unwrap_or(false);
        let body = &raw[(at + n).min(raw.len())..(at + n + length).min(raw.len())];
        let why = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["error_description"].as_str().map(str::to_owned))
            .unwrap_or_default();
        out.push((status, upstream, why));
        at += n + if head_request { 0 } else { length };
    }
    out
}

/// Fields the gateway writes or removes itself (hop-by-hop, framing, `Host`, `Expect`, where a
/// request came from and routing overrides, the request ID and trace context; folded the way
/// the gateway folds `_` into `-`):
/// everything else must pass unchanged.
fn managed(name: &str) -> bool {
    let name = name.to_ascii_lowercase().replace('_', "-");
    jwtgate::wire::HOP_BY_HOP.contains(&name.as_str())
        || matches!(
            name.as_str(),
            "host"
                | "content-length"
                | "expect"
                | "forwarded"
                | "x-real-ip"
                | "x-client-ip"
                | "true-client-ip"
                | "x-cluster-client-ip"
                | "x-original-url"
                | "x-rewrite-url"
                | "x-original-uri"
                | "x-request-id"
                | "traceparent"
                | "tracestate"
        )
        || name.starts_with("x-forwarded-")
        || name.starts_with("x-auth-user")
}

/// The end-to-end fields of `headers`: without the managed ones and those a `Connection` field
/// names.
fn end_to_end(headers: &[(String, Vec<u8>)]) -> Vec<(String, Vec<Vec<u8>>)> {
    let nominated: Vec<String> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| {
            String::from_utf8_lossy(v)
                .split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .collect();
    let kept: Vec<(String, Vec<u8>)> = headers
        .iter()
        .filter(|(n, _)| !managed(n) && !nominated.contains(&n.to_ascii_lowercase()))
        .cloned()
        .collect();
    canonical(&kept)
}

/// The path and query a request target names (origin form as it is; absolute form's path),
/// normalized as the gateway routes and forwards it; `None` when the gateway must refuse it.
fn expected_path(target: &str) -> Option<String> {
    let uri: http::Uri = target.parse().ok()?;
    let pq = uri.path_and_query()?;
    let path = jwtgate::wire::uri::normalize(pq.path()).ok()?;
    Some(match pq.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.into_owned(),
    })
}

fn same_request(forwarded: &Read, theirs: &Read) -> Result<(), String> {
    if forwarded.method != theirs.method {
        return Err(format!(
            "method {:?} vs hyper's {:?}",
            forwarded.method, theirs.method
        ));
    }
    match expected_path(&theirs.target) {
        Some(path) if path == forwarded.target => {}
        expected => {
            return Err(format!(
                "forwarded {:?} for hyper's target {:?} (expected {expected:?})",
                forwarded.target, theirs.target
            ))
        }
    }
    if end_to_end(&forwarded.headers) != end_to_end(&theirs.headers) {
        return Err(format!(
            "fields {:?} vs hyper's {:?}",
            end_to_end(&forwarded.headers),
            end_to_end(&theirs.headers)
        ));
    }
    if forwarded.body != theirs.body {
        return Err(format!(
            "body {:?} vs hyper's {:?}",
            String::from_utf8_lossy(&forwarded.body),
            String::from_utf8_lossy(&theirs.body)
        ));
    }
    Ok(())
}

/// A recording upstream: each request it gets, whole, answered `200` with `x-from-upstream`.
fn recording_upstream(rt: &tokio::runtime::Runtime) -> (SocketAddr, Arc<Mutex<Vec<Read>>>) {
    let seen: Arc<Mutex<Vec<Read>>> = Arc::default();
    let record = seen.clone();
    let addr = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req: http::Request<Incoming>| {
                            let record = record.clone();
                            async move {
                                let read = Read::of(req).await?;
                                record.lock().unwrap().push(read);
                                let mut res =
                                    http::Response::new(Full::new(Bytes::from_static(b"ok")));
                                res.headers_mut()
                                    .insert("x-from-upstream", http::HeaderValue::from_static("1"));
                                Ok::<_, hyper::Error>(res)
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(s), service)
                        .await;
                });
            }
        });
        addr
    });
    (addr, seen)
}

/// Compares what reached the upstream (`forwarded`) and what came back (`raw`) for `input`
/// with hyper's reading of it. The gateway answers the requests it reads in order, each once:
/// an answer from the upstream stands for the next request it forwarded, one of its own for a
/// request it read and answered itself (refused, or `OPTIONS *`).
fn compare_requests(
    (theirs, failed): &(Vec<Read>, Option<String>),
    forwarded: &[Read],
    raw: &[u8],
) -> Result<Verdict, String> {
    let heads: Vec<bool> = theirs.iter().map(|t| t.method == "HEAD").collect();
    let answered = responses(raw, &heads);
    let mut forwarded = forwarded.iter();
    let mut passed_on = 0;
    for (i, (_, from_upstream, _)) in answered.iter().enumerate() {
        let ours = if *from_upstream {
            match forwarded.next() {
                Some(f) => Some(f),
                None => {
                    return Err(format!(
                        "message {i}: an upstream answer for nothing forwarded"
                    ))
                }
            }
        } else {
            None
        };
        let Some(t) = theirs.get(i) else {
            let Some(f) = ours else {
                // Refused where hyper read nothing more: both refuse.
                break;
            };
            if i > 0 && hands_over(&theirs[i - 1]) {
                return Ok(Verdict::Stricter(
                    "hyper stopped reading after an upgrade request".into(),
                ));
            }
            // The smuggling signature: the gateway passed on a request hyper never read.
            return Err(format!(
                "message {i}: the gateway forwarded {} {} ({} body bytes); hyper read {} ({})",
                f.method,
                f.target,
                f.body.len(),
                theirs.len(),
                failed.clone().unwrap_or_else(|| "no error".into())
            ));
        };
        // Answered by the gateway itself: it read a request where hyper did, and refused (or
        // answered) it rather than pass it on. Else compared.
        if let Some(f) = ours {
            same_request(f, t).map_err(|e| format!("message {i}: {e}"))?;
            passed_on += 1;
        }
    }
    if forwarded.next().is_some() {
        // After a CONNECT or an upgrade request hyper's server hands the connection over and
        // reads no more; the gateway refused or did not tunnel it, and read on.
        if theirs.last().is_some_and(hands_over) {
            return Ok(Verdict::Stricter(
                "hyper stopped reading after an upgrade request".into(),
            ));
        }
        return Err("forwarded a request it never answered".into());
    }
    if theirs.is_empty() {
        return Ok(Verdict::BothRefused);
    }
    if passed_on == theirs.len() {
        return Ok(Verdict::Same);
    }
    Ok(Verdict::Stricter(
        match answered.iter().find(|(_, from_upstream, _)| !from_upstream) {
            Some((status, _, why)) => format!("{status} {why}"),
            None => "closed the connection".into(),
        },
    ))
}

#[test]
fn requests_the_gateway_refuses_or_passes_on_as_hyper_reads_them() {
    let entries = corpus("requests.jsonl");
    assert!(entries.len() >= 5000, "{} requests", entries.len());
    let rt = runtime();
    let (upstream, seen) = recording_upstream(&rt);
    let gw = gateway(&rt, upstream);
    let mut tally = Tally::default();
    for (name, bytes, _) in &entries {
        let hyper = hyper_requests(bytes);
        let show = std::env::var("DIFF_SHOW").is_ok_and(|n| &n == name);
        seen.lock().unwrap().clear();
        let heads: Vec<bool> = hyper.0.iter().map(|t| t.method == "HEAD").collect();
        let raw = exchange(gw, bytes, hyper.0.len(), &heads);
        let forwarded = std::mem::take(&mut *seen.lock().unwrap());
        if show {
            eprintln!(
                "hyper: {hyper:?}\nraw: {:?}\nforwarded: {forwarded:?}",
                String::from_utf8_lossy(&raw)
            );
        }
        tally.add(name, compare_requests(&hyper, &forwarded, &raw));
    }
    tally.report("requests", 1700);
}

/// An upstream that answers every connection's first request head with the bytes in `answer`,
/// then closes.
fn scripted_upstream(rt: &tokio::runtime::Runtime) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let answer: Arc<Mutex<Vec<u8>>> = Arc::default();
    let script = answer.clone();
    let addr = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let bytes = script.lock().unwrap().clone();
                tokio::spawn(async move { oracle::answer_after_head(&mut s, &bytes).await });
            }
        });
        addr
    });
    (addr, answer)
}

/// A response as a client reads it: status, fields, body.
type Answer = (u16, Vec<(String, Vec<u8>)>, Vec<u8>);

/// What a client reads through the gateway (hyper's client, on a connection of its own):
/// status, fields and body, or why it could not.
fn through_the_gateway(
    rt: &tokio::runtime::Runtime,
    gw: SocketAddr,
    head_request: bool,
) -> Result<Answer, String> {
    rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(gw)
            .await
            .map_err(|e| e.to_string())?;
        // A ceiling against a hang, not a measure.
        let answer = tokio::time::timeout(
            Duration::from_secs(30),
            oracle::hyper_get(tcp, head_request, "gateway"),
        )
        .await
        .map_err(|_| "no answer".to_owned())??;
        Ok((answer.status, answer.headers, answer.body))
    })
}

fn compare_response(
    rt: &tokio::runtime::Runtime,
    gw: SocketAddr,
    input: &[u8],
    head_request: bool,
) -> Result<Verdict, String> {
    let ours = through_the_gateway(rt, gw, head_request);
    let theirs = hyper_response(input, head_request);
    // The gateway's own answer: a JSON refusal (502 for an upstream it cannot read), without
    // its body to `HEAD`.
    let own = |fields: &[(String, Vec<u8>)], body: &[u8]| {
        let field = |name: &str, value: &[u8]| fields.iter().any(|(n, v)| n == name && v == value);
        field("content-type", b"application/json")
            && field("cache-control", b"no-store")
            && (body.is_empty() || body.starts_with(b"{\"error\""))
    };
    match (ours, theirs) {
        (Ok((status, fields, body)), Ok(theirs)) if own(&fields, &body) => {
            // Why, as the gateway's response reader (`wire`) says it, read in memory.
            let why = oracle::stream::read_response(input, head_request)
                .err()
                .unwrap_or("an upstream it could not use");
            Ok(Verdict::Stricter(format!(
                "{status}: {why} (hyper read {})",
                theirs.status
            )))
        }
        (Ok((status, fields, body)), Ok(theirs)) => {
            if status != theirs.status {
                return Err(format!("status {status} vs hyper's {}", theirs.status));
            }
            if end_to_end(&fields) != end_to_end(&theirs.headers) {
                // The gateway adds `Date` when the upstream sent none.
                let mut theirs_dated = theirs.headers.clone();
                if !theirs_dated
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case("date"))
                {
                    if let Some(d) = fields.iter().find(|(n, _)| n == "date") {
                        theirs_dated.push(d.clone());
                    }
                }
                if end_to_end(&fields) != end_to_end(&theirs_dated) {
                    return Err(format!(
                        "fields {:?} vs hyper's {:?}",
                        end_to_end(&fields),
                        end_to_end(&theirs.headers)
                    ));
                }
            }
            if body != theirs.body {
                return Err(format!(
                    "body {:?} vs hyper's {:?}",
                    String::from_utf8_lossy(&body),
                    String::from_utf8_lossy(&theirs.body)
                ));
            }
            Ok(Verdict::Same)
        }
        (Ok((status, fields, body)), Err(e)) if own(&fields, &body) => {
            let _ = (status, e);
            Ok(Verdict::BothRefused)
        }
        (Ok((status, _, body)), Err(e)) => Err(format!(
            "the gateway passed on status {status} ({} body bytes), hyper refused: {e}",
            body.len()
        )),
        // A response whose head went out and whose body the gateway then cut.
        (Err(_), Ok(_)) => Ok(Verdict::Stricter("cut the body short".into())),
        (Err(_), Err(_)) => Ok(Verdict::BothRefused),
    }
}

#[test]
fn responses_the_gateway_refuses_or_passes_on_as_hyper_reads_them() {
    let entries = corpus("responses.jsonl");
    assert!(entries.len() >= 2000, "{} responses", entries.len());
    let rt = runtime();
    let (upstream, answer) = scripted_upstream(&rt);
    let gw = gateway(&rt, upstream);
    let mut tally = Tally::default();
    for (name, bytes, head) in &entries {
        answer.lock().unwrap().clone_from(bytes);
        tally.add(name, compare_response(&rt, gw, bytes, *head));
    }
    tally.report("responses", 800);
}

/// The comparison can fail: a gateway that forwards a pipelined request as part of the body of
/// the one before (the smuggling signature), or that refuses everything, is caught.
#[test]
fn the_comparison_catches_a_lenient_or_a_useless_gateway() {
    let input =
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /x HTTP/1.1\r\nHost: a\r\n\r\n";
    let hyper = hyper_requests(input);
    let theirs = &hyper.0;
    assert_eq!(theirs.len(), 2);
    // Swallowing the second request into the first's body.
    let mut swallowed = theirs[0].clone();
    swallowed.target = "/".into();
    swallowed.body = b"abcGET /x HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
    let ok = b"HTTP/1.1 200 OK\r\nx-from-upstream: 1\r\ncontent-length: 2\r\n\r\nok";
    assert!(compare_requests(&hyper, &[swallowed], ok).is_err());
    // Forwarding a request hyper never read.
    let mut extra = theirs.clone();
    extra.push(theirs[1].clone());
    for r in &mut extra {
        r.target = expected_path(&r.target).unwrap();
    }
    let three = ok.repeat(3);
    assert!(compare_requests(&hyper, &extra, &three).is_err());
    // Both as hyper reads them: the same.
    let mut same = theirs.clone();
    for r in &mut same {
        r.target = expected_path(&r.target).unwrap();
    }
    assert!(matches!(
        compare_requests(&hyper, &same, &ok.repeat(2)),
        Ok(Verdict::Same)
    ));
    // Refusing everything: strict, and under the floor.
    let mut tally = Tally::default();
    let refused = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
    tally.add("refused", compare_requests(&hyper, &[], refused));
    assert_eq!(tally.same, 0);
    let caught = std::panic::catch_unwind(|| tally.report("requests", 1));
    assert!(
        caught.is_err(),
        "a gateway that refuses everything passed the floor"
    );
}
