//! The access log: one line per request (target `jwtgate::access`, level info): method, path,
//! route, status, user, auth outcome, upstream and total latency, body bytes. A [`Record`] is
//! filled in as the request goes, and written when its response is done (or the client went
//! away: 499). Never a token, a key, a query string or an absolute-form target's authority.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::HeaderValue;
use tracing::info;

/// What one request did, for the access log and the metrics. Filled in as the request goes.
#[derive(Debug)]
pub struct Record {
    /// When the request head was read; set only while the access log is on.
    start: Option<Instant>,
    method: String,
    path: String,
    /// The route's name, `-` until one matched.
    pub route: Arc<str>,
    /// The verified caller.
    pub user: Option<HeaderValue>,
    /// `ok`, `public`, `anonymous`, or why the token was refused.
    pub auth: &'static str,
    /// From forwarding to the upstream's response head.
    pub upstream: Option<Duration>,
    /// The status sent (0 until then).
    pub status: u16,
}

/// The route name of a request no route matched.
fn no_route() -> Arc<str> {
    static NAME: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
    NAME.get_or_init(|| Arc::from("-")).clone()
}

/// True while the access log is on (`RUST_LOG` lets `jwtgate::access` at info through).
pub fn access_log_enabled() -> bool {
    tracing::enabled!(target: "jwtgate::access", tracing::Level::INFO)
}

impl Record {
    /// A record for a request with `method`.
    pub fn new(method: &str) -> Record {
        let log = access_log_enabled();
        Record {
            start: log.then(Instant::now),
            method: if log {
                method.to_owned()
            } else {
                String::new()
            },
            path: String::new(),
            route: no_route(),
            user: None,
            auth: "-",
            upstream: None,
            status: 0,
        }
    }

    /// Sets the path logged (only while the access log is on).
    pub fn set_path(&mut self, path: &str) {
        if self.start.is_some() {
            path.clone_into(&mut self.path);
        }
    }

    /// Writes the access log line (when it is on): `bytes` of body sent, `complete` when the
    /// whole response went out. A request that never got an answer is logged as 499 (the
    /// client went away, as nginx calls it).
    pub fn log(&self, bytes: u64, complete: bool) {
        let Some(start) = self.start else {
            return;
        };
        const CLIENT_CLOSED: u16 = 499;
        info!(
            target: "jwtgate::access",
            method = %self.method,
            path = %self.path,
            route = %self.route,
            status = if self.status == 0 { CLIENT_CLOSED } else { self.status },
            user = self.user.as_ref().and_then(|u| u.to_str().ok()).unwrap_or("-"),
            auth = self.auth,
            upstream_ms = self.upstream.map(|d| d.as_secs_f64() * 1000.0),
            total_ms = start.elapsed().as_secs_f64() * 1000.0,
            bytes,
            complete,
        );
    }
}
