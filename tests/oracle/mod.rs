//! The differential oracle: the same bytes read by jwtgate ([`stream`], in memory, or the gateway
//! itself, see `tests/differential.rs`) and by
//! hyper (its HTTP/1 server for requests, its HTTP/1 client for responses), and the rule that
//! jwtgate is at least as strict as hyper about where a message ends: for every input, both
//! refuse, or jwtgate refuses, or both read the same messages (method, target, version, header
//! fields, body bytes; for responses status, fields, body). Run on a committed corpus by
//! `tests/differential.rs`, on generated messages by `tests/properties.rs`, on random bytes by the
//! `differential` fuzz target (which includes this file). Test code only: hyper's client is a
//! dev-dependency, and none of this is in the gateway's binary.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub mod stream;

use jwtgate::wire::{HeadLimits, Version};
use stream::{read_requests, read_response, End, Message, Reading, Response};

/// The limits both sides read requests with (jwtgate's defaults; hyper's are looser: 100
/// fields as here, but ~400 KB of head).
pub const LIMITS: HeadLimits = HeadLimits {
    max_bytes: 16 * 1024,
    max_fields: 100,
};

/// How one input compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Both read these many messages the same way and stopped at the same point.
    Same(usize),
    /// Both read the first `agreed` messages the same way; then jwtgate refused (`why`) a
    /// message that hyper read or did not reach.
    Stricter {
        /// Messages read the same way first.
        agreed: usize,
        /// jwtgate's reason.
        why: String,
        /// hyper read the message jwtgate refused.
        hyper_accepted: bool,
    },
}

/// A message as hyper's server read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// The method.
    pub method: String,
    /// The request target.
    pub target: String,
    /// The version.
    pub version: Version,
    /// The header fields.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Read {
    /// The request hyper's server read, its body read whole.
    pub async fn of(req: http::Request<Incoming>) -> Result<Read, hyper::Error> {
        let (parts, body) = req.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Read {
            method: parts.method.as_str().to_owned(),
            target: parts.uri.to_string(),
            version: version(parts.version),
            headers: map_headers(&parts.headers),
            body: body.to_vec(),
        })
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime for the differential oracle")
    })
}

/// Header fields compared the way both sides mean them: names in lower case, each name's
/// values in their order, names sorted (hyper's map groups a name's values together).
pub fn canonical(headers: &[(String, Vec<u8>)]) -> Vec<(String, Vec<Vec<u8>>)> {
    let mut out: Vec<(String, Vec<Vec<u8>>)> = Vec::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.push(value.clone()),
            None => out.push((name, vec![value.clone()])),
        }
    }
    out.sort();
    out
}

fn version(v: http::Version) -> Version {
    if v == http::Version::HTTP_10 {
        Version::Http10
    } else {
        Version::Http11
    }
}

pub fn map_headers(map: &http::HeaderMap) -> Vec<(String, Vec<u8>)> {
    map.iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect()
}

/// What hyper's HTTP/1 server reads from `input` (sent whole, then the write side closed):
/// the requests whose bodies it read completely, and whether it then failed.
pub fn hyper_requests(input: &[u8]) -> (Vec<Read>, Option<String>) {
    let input = input.to_vec();
    runtime().block_on(async move {
        let (mut client, server) = tokio::io::duplex(input.len() + 64 * 1024);
        let seen: Arc<Mutex<Vec<Read>>> = Arc::default();
        let record = seen.clone();
        let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let record = record.clone();
            async move {
                let read = Read::of(req).await?;
                record.lock().unwrap_or_else(|e| e.into_inner()).push(read);
                Ok::<_, hyper::Error>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .half_close(true)
            .serve_connection(hyper_util::rt::TokioIo::new(server), service);
        let feed = async move {
            let _ = client.write_all(&input).await;
            let _ = client.shutdown().await;
            // Drain the answers so that the server never waits on a full pipe.
            let mut sink = Vec::new();
            let _ = client.read_to_end(&mut sink).await;
        };
        let (result, ()) = tokio::join!(conn, feed);
        let seen = std::mem::take(&mut *seen.lock().unwrap_or_else(|e| e.into_inner()));
        (seen, result.err().map(|e| e.to_string()))
    })
}

/// Compares jwtgate's and hyper's reading of a connection's request bytes. `Err` describes a
/// place where jwtgate is less strict than hyper, or reads something else.
pub fn compare_requests(input: &[u8]) -> Result<Verdict, String> {
    compare_requests_with(input, |input| read_requests(input, LIMITS))
}

/// [`compare_requests`] with another reader in jwtgate's place (to show that the oracle catches
/// a reader that is too lenient).
pub fn compare_requests_with(
    input: &[u8],
    reader: impl FnOnce(&[u8]) -> Reading,
) -> Result<Verdict, String> {
    let ours = reader(input);
    let (theirs, failed) = hyper_requests(input);
    for (i, m) in ours.messages.iter().enumerate() {
        match theirs.get(i) {
            Some(t) => same_request(m, t).map_err(|e| format!("message {i}: {e}"))?,
            // hyper failed on this message (malformed, cut short, a body it refused).
            None if failed.is_some() => {
                return Err(format!(
                    "message {i}: jwtgate read {} {} ({} body bytes), hyper refused: {}",
                    m.method,
                    m.target,
                    m.body.len(),
                    failed.unwrap_or_default()
                ))
            }
            // hyper stopped reading without an error: after a CONNECT or an upgrade request it
            // hands the connection over and reads no more requests, whatever jwtgate reads after
            // that. Anywhere else the two split the bytes differently.
            None if i > 0 && hands_over(&theirs[i - 1]) => {
                return Ok(Verdict::Stricter {
                    agreed: i,
                    why: "hyper stopped reading after an upgrade request".into(),
                    hyper_accepted: false,
                })
            }
            None => {
                return Err(format!(
                    "message {i}: jwtgate read {} {}, hyper stopped reading before it",
                    m.method, m.target
                ))
            }
        }
    }
    let agreed = ours.messages.len();
    match ours.end {
        End::Refused(why) => Ok(Verdict::Stricter {
            agreed,
            why: why.to_owned(),
            hyper_accepted: theirs.len() > agreed,
        }),
        End::Incomplete => Ok(Verdict::Stricter {
            agreed,
            why: "incomplete".to_owned(),
            hyper_accepted: theirs.len() > agreed,
        }),
        // jwtgate closes the connection after this message (it read keep-alive otherwise).
        End::Closed if theirs.len() > agreed => Ok(Verdict::Stricter {
            agreed,
            why: "closes the connection".to_owned(),
            hyper_accepted: true,
        }),
        // jwtgate used every byte for these messages, and hyper found another request in them:
        // the two split the bytes differently (the request-smuggling signature).
        End::Clean if theirs.len() > agreed => Err(format!(
            "jwtgate read {agreed} messages from all the bytes, hyper read {}",
            theirs.len()
        )),
        End::Closed | End::Clean => Ok(Verdict::Same(agreed)),
    }
}

/// After this request hyper's server reads no more (it waits for the service to take the
/// connection over).
pub fn hands_over(read: &Read) -> bool {
    read.method == "CONNECT"
        || (read.version == Version::Http11
            && read
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("upgrade")))
}

fn same_request(ours: &Message, theirs: &Read) -> Result<(), String> {
    if ours.method != theirs.method {
        return Err(format!(
            "method {:?} vs hyper's {:?}",
            ours.method, theirs.method
        ));
    }
    let same_target = ours.target == theirs.target
        || http::Uri::try_from(ours.target.as_str()).is_ok_and(|u| u.to_string() == theirs.target);
    if !same_target {
        return Err(format!(
            "target {:?} vs hyper's {:?}",
            ours.target, theirs.target
        ));
    }
    if ours.version != theirs.version {
        return Err(format!(
            "version {:?} vs hyper's {:?}",
            ours.version, theirs.version
        ));
    }
    same_fields_and_body((&ours.headers, &ours.body), (&theirs.headers, &theirs.body))
}

/// The header fields (as both sides mean them) and the body bytes are the same.
fn same_fields_and_body(
    (ours, our_body): (&[(String, Vec<u8>)], &[u8]),
    (theirs, their_body): (&[(String, Vec<u8>)], &[u8]),
) -> Result<(), String> {
    if canonical(ours) != canonical(theirs) {
        return Err(format!(
            "header fields {:?} vs hyper's {:?}",
            canonical(ours),
            canonical(theirs)
        ));
    }
    if our_body != their_body {
        return Err(format!(
            "body {:?} vs hyper's {:?}",
            String::from_utf8_lossy(our_body),
            String::from_utf8_lossy(their_body)
        ));
    }
    Ok(())
}

/// An upstream's side of one connection: once the request head is in (a client reads no answer
/// before it asks), `answer` is written whole and the write side closed; what the client still
/// sends is read and dropped.
pub async fn answer_after_head<S>(s: &mut S, answer: &[u8])
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut request = Vec::new();
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk).await {
            Ok(n) if n > 0 => request.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    }
    let _ = s.write_all(answer).await;
    let _ = s.shutdown().await;
    let _ = s.read_to_end(&mut request).await;
}

/// What hyper's HTTP/1 client reads from `input`, the upstream's whole answer to a `GET` (or a
/// `HEAD`) followed by the connection's close.
pub fn hyper_response(input: &[u8], head_request: bool) -> Result<Response, String> {
    let input = input.to_vec();
    runtime().block_on(async move {
        let (client, mut server) = tokio::io::duplex(input.len() + 64 * 1024);
        let upstream = answer_after_head(&mut server, &input);
        let client = hyper_get(client, head_request, "upstream");
        let (result, ()) = tokio::join!(client, upstream);
        result
    })
}

/// What hyper's HTTP/1 client reads in answer to a `GET /` (or a `HEAD /`) with `host` sent
/// on `io`: status, version, fields and the whole body.
pub async fn hyper_get<IO>(io: IO, head_request: bool, host: &str) -> Result<Response, String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = http::Request::builder()
        .method(if head_request { "HEAD" } else { "GET" })
        .uri("/")
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let result = async {
        let res = send.send_request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = res.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Response {
            status: parts.status.as_u16(),
            version: version(parts.version),
            headers: map_headers(&parts.headers),
            body: body.to_vec(),
        })
    }
    .await;
    driver.abort();
    result
}

/// Compares jwtgate's and hyper's reading of an upstream's answer. `Err` describes a place
/// where jwtgate is less strict than hyper, or reads something else.
pub fn compare_response(input: &[u8], head_request: bool) -> Result<Verdict, String> {
    let ours = read_response(input, head_request);
    let theirs = hyper_response(input, head_request);
    match (ours, theirs) {
        (Ok(ours), Ok(theirs)) => {
            if ours.status != theirs.status {
                return Err(format!(
                    "status {} vs hyper's {}",
                    ours.status, theirs.status
                ));
            }
            same_fields_and_body((&ours.headers, &ours.body), (&theirs.headers, &theirs.body))?;
            Ok(Verdict::Same(1))
        }
        (Ok(ours), Err(e)) => Err(format!(
            "jwtgate read status {} ({} body bytes), hyper refused: {e}",
            ours.status,
            ours.body.len()
        )),
        (Err(why), theirs) => Ok(Verdict::Stricter {
            agreed: 0,
            why: why.to_owned(),
            hyper_accepted: theirs.is_ok(),
        }),
    }
}
