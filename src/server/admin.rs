//! The admin listener (`server.admin_listen`), never the public one: `/healthz` (200 while the
//! process serves), `/readyz` (200 when config and keys are loaded and the public listener is
//! up; 503 before that and while draining), `/metrics` (Prometheus text format), and with a
//! signed assertion configured `/.well-known/jwks.json` (its current, next and previous public
//! keys, for upstreams to verify it).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::http::body::Body;
use crate::runtime::Gateway;

/// Serves the admin endpoints on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    info!(admin_listen = %listener.local_addr()?, "admin listening");
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let gw = gateway.clone();
        let service = service_fn(move |req| {
            let gw = gw.clone();
            async move { Ok::<_, Infallible>(respond(&gw, &req)) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(conn);
    }
}

fn respond(gateway: &Gateway, req: &Request<Incoming>) -> Response<Body> {
    let text = |status: StatusCode, body: String, content_type: &'static str| {
        let mut res = Response::new(Body::full(body));
        *res.status_mut() = status;
        res.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        res
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n".into(),
            "text/plain",
        );
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".into(), "text/plain"),
        "/readyz" if gateway.is_ready() => text(StatusCode::OK, "ready\n".into(), "text/plain"),
        "/readyz" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready\n".into(),
            "text/plain",
        ),
        "/metrics" => text(
            StatusCode::OK,
            gateway.render_metrics(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        "/.well-known/jwks.json" => match gateway.current().pipeline().signer() {
            Some(signer) => {
                let mut res =
                    Response::new(Body::full(bytes::Bytes::copy_from_slice(signer.jwks())));
                res.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/jwk-set+json"),
                );
                // Upstreams cache it; a rotation publishes the next key before it is used.
                res.headers_mut().insert(
                    http::header::CACHE_CONTROL,
                    HeaderValue::from_static("max-age=60"),
                );
                res
            }
            None => text(
                StatusCode::NOT_FOUND,
                "no [auth.assertion] configured\n".into(),
                "text/plain",
            ),
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n".into(), "text/plain"),
    }
}
