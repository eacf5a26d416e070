//! Fetching a provider's keys: `GET`s over HTTP/1.1 (rustls for `https`), bounded in time
//! ([`TIMEOUT`] for the whole of it, discovery included) and size ([`MAX_BYTES`]); a `200`
//! only, no redirects followed. An `http` URL is connected to loopback addresses only, whatever
//! its name resolves to. OpenID Connect discovery (`{issuer}/.well-known/openid-configuration`) reads the
//! document's `jwks_uri`, after checking that its `issuer` is the configured one (OpenID
//! Connect Discovery §4.3), and holds that URL to the same rule as a configured one: `https`, or
//! `http` to a loopback address.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{ACCEPT, CACHE_CONTROL, HOST, USER_AGENT};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

/// The whole of one fetch of a provider's keys: the discovery document and the JWKS, each
/// connect, TLS handshake, request, response and body.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Largest JWKS or discovery document read.
pub const MAX_BYTES: usize = 1024 * 1024;

/// A document fetched, and how long the server says it stays fresh.
#[derive(Debug)]
pub struct Fetched {
    /// The body.
    pub body: Bytes,
    /// `Cache-Control: max-age`, when given.
    pub max_age: Option<Duration>,
}

/// The JWKS of a source: fetched from `url`, or, with `discovery`, from the `jwks_uri` of the
/// discovery document at `url` (whose `issuer` must be `issuer`).
pub async fn jwks(
    url: &Uri,
    discovery: bool,
    issuer: &str,
    tls: &Arc<ClientConfig>,
) -> Result<Fetched, String> {
    match tokio::time::timeout(TIMEOUT, jwks_unbounded(url, discovery, issuer, tls)).await {
        Ok(result) => result,
        Err(_) => Err(format!("{url}: no complete answer within {TIMEOUT:?}")),
    }
}

async fn jwks_unbounded(
    url: &Uri,
    discovery: bool,
    issuer: &str,
    tls: &Arc<ClientConfig>,
) -> Result<Fetched, String> {
    if !discovery {
        return get(url, tls).await;
    }
    let doc = get(url, tls).await?;
    let doc: serde_json::Value = serde_json::from_slice(&doc.body)
        .map_err(|e| format!("{url}: the discovery document is not JSON ({e})"))?;
    match doc.get("issuer").and_then(|v| v.as_str()) {
        Some(i) if i == issuer => {}
        Some(i) => {
            return Err(format!(
                "{url}: the discovery document is for issuer {i:?}, not {issuer:?}"
            ))
        }
        None => return Err(format!("{url}: the discovery document has no issuer")),
    }
    let Some(jwks_uri) = doc.get("jwks_uri").and_then(|v| v.as_str()) else {
        return Err(format!("{url}: the discovery document has no jwks_uri"));
    };
    let jwks_url: Uri = jwks_uri
        .parse()
        .map_err(|_| format!("{url}: jwks_uri {jwks_uri:?} is not a URL"))?;
    let host = jwks_url.host().unwrap_or("");
    let allowed = match jwks_url.scheme_str() {
        Some("https") => !host.is_empty(),
        Some("http") => crate::config::is_loopback(host),
        _ => false,
    };
    if !allowed
        || jwks_url
            .authority()
            .is_some_and(|a| a.as_str().contains('@'))
    {
        return Err(format!(
            "{url}: jwks_uri {jwks_uri:?} is neither https nor http to a loopback address"
        ));
    }
    get(&jwks_url, tls).await
}

/// `GET url`.
async fn get(url: &Uri, tls: &Arc<ClientConfig>) -> Result<Fetched, String> {
    get_unbounded(url, tls)
        .await
        .map_err(|e| format!("{url}: {e}"))
}

async fn get_unbounded(url: &Uri, tls: &Arc<ClientConfig>) -> Result<Fetched, String> {
    let https = url.scheme_str() == Some("https");
    let authority = url.authority().ok_or("no host")?;
    let host = authority.host();
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let mut addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| format!("cannot resolve {bare:?}: {e}"))?
        .collect();
    if !https {
        // In the clear, only to this machine: `localhost` must not resolve elsewhere.
        addrs.retain(|a| a.ip().is_loopback());
        if addrs.is_empty() {
            return Err(format!("{bare:?} resolves to no loopback address"));
        }
    }
    let tcp = TcpStream::connect(&addrs[..])
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let path = url.path_and_query().map_or("/", |p| p.as_str());
    let request = Request::get(path)
        .header(HOST, authority.as_str())
        .header(ACCEPT, "application/json")
        .header(USER_AGENT, concat!("jwtgate/", env!("CARGO_PKG_VERSION")))
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("cannot make the request: {e}"))?;
    if https {
        let name = ServerName::try_from(bare.to_owned())
            .map_err(|_| format!("{host:?} is not a TLS server name"))?;
        let stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        exchange(TokioIo::new(stream), request).await
    } else {
        exchange(TokioIo::new(tcp), request).await
    }
}

async fn exchange<T>(io: T, request: Request<Empty<Bytes>>) -> Result<Fetched, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let conn = tokio::spawn(conn);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("HTTP: {e}"));
    let result = async {
        let response = response?;
        if response.status() != StatusCode::OK {
            return Err(format!("answered {}", response.status()));
        }
        let max_age = response
            .headers()
            .get_all(CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(max_age);
        let mut body = response.into_body();
        let mut buf = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("reading the body: {e}"))?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > MAX_BYTES {
                    return Err(format!("the body is larger than {MAX_BYTES} bytes"));
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(Fetched {
            body: buf.freeze(),
            max_age,
        })
    }
    .await;
    conn.abort();
    result
}

/// `max-age=N` of a `Cache-Control` value (`no-store` and `no-cache` read as 0).
fn max_age(value: &str) -> Option<Duration> {
    value.split(',').map(str::trim).find_map(|d| {
        let d = d.to_ascii_lowercase();
        if d == "no-store" || d == "no-cache" {
            return Some(Duration::ZERO);
        }
        d.strip_prefix("max-age=")
            .and_then(|n| n.trim_matches('"').parse::<u64>().ok())
            .map(Duration::from_secs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_max_age() {
        assert_eq!(max_age("public, max-age=60"), Some(Duration::from_secs(60)));
        assert_eq!(max_age("MAX-AGE=\"120\""), Some(Duration::from_secs(120)));
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=x"), None);
    }
}
