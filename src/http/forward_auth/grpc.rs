//! Envoy's ext_authz gRPC API (`envoy.service.auth.v3.Authorization/Check`, what Istio's
//! CUSTOM authorization and Envoy Gateway's SecurityPolicy call), on the check listener over
//! h2c. `CheckRequest.attributes.request.http` is the original request (method, host, path
//! with its query, headers); it gets the same verdict as an HTTP check
//! ([`super::verdict`], Envoy's dialect: no other naming header may disagree, no identity
//! header spelled with `_`). The answer is a `CheckResponse`:
//!
//! - allowed: `OkHttpResponse` with each identity header that has a value, to overwrite
//!   (`append_action = OVERWRITE_IF_EXISTS_OR_ADD` and `append = false`, so that no Envoy
//!   version appends to a client's copy), and `headers_to_remove` naming those without one;
//! - refused: `DeniedHttpResponse` with the inline refusal's status, fields
//!   (`WWW-Authenticate`) and JSON body, and a `google.rpc.Status` code: 16 for 401, 7 for
//!   403, 5 for 404, 14 for 5xx, 3 for any other 4xx.
//!
//! A call that is not one `CheckRequest` (a compressed or malformed message, more than one, too
//! large) ends with its gRPC status (3, 8 or 12) and no `CheckResponse`: Envoy then applies its
//! `failure_mode_allow` (by default, deny).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use h2::server::SendResponse;
use h2::RecvStream;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use prost::Message;
use tracing::debug;

use super::proto::envoy::config::core::v3::{
    header_value_option::HeaderAppendAction, HeaderValue as ProtoHeader, HeaderValueOption,
};
use super::proto::envoy::r#type::v3::HttpStatus;
use super::proto::envoy::service::auth::v3::{
    check_response::HttpResponse, CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use super::proto::google::rpc::Status;
use crate::config::Dialect;
use crate::http::end::RequestEnd;
use crate::net::budget::Reserved;
use crate::ops::access::Decorations;
use crate::pipeline::{ClientInfo, Protocol, Rejection, RequestView};
use crate::runtime::Runtime;
use crate::wire::{Framing, Header};

/// The method's path.
pub const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// The largest `CheckRequest` read: the original's headers (Envoy's own limit is 60 KiB by
/// default, 96 KiB at most) and, with `with_request_body`, some of its body.
pub const MAX_MESSAGE: usize = 1 << 20;

/// gRPC status codes used here.
mod code {
    pub const OK: i32 = 0;
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const NOT_FOUND: i32 = 5;
    pub const PERMISSION_DENIED: i32 = 7;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const UNIMPLEMENTED: i32 = 12;
    pub const UNAVAILABLE: i32 = 14;
    pub const UNAUTHENTICATED: i32 = 16;
}

/// Why a call carried no usable `CheckRequest`: its gRPC status and message.
type CallError = (i32, &'static str);

/// Serves one `Check` call: `headers` are the call's, its message comes on `body`.
pub async fn serve(
    rt: &Runtime,
    client: &ClientInfo,
    headers: &HeaderMap,
    body: RecvStream,
    mut respond: SendResponse<Bytes>,
    mut end: RequestEnd<'_>,
) {
    end.record.set_check("-");
    // An untrusted peer is answered first, before its message is read (and never held).
    if !super::trusted(rt, client) {
        let rejection = Rejection::UntrustedPeer;
        end.refuse(&rejection);
        end.record.status = rejection.status();
        let answer = denied(&rejection, &end.record.decorations);
        send(&mut respond, &answer, &mut end);
        return;
    }
    let grpc = headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/grpc"));
    if !grpc {
        // The gRPC protocol's answer to a request that is not gRPC.
        end.record.status = 415;
        let mut res = Response::new(());
        *res.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        if respond.send_response(res, true).is_ok() {
            end.finish(0, true);
        }
        return;
    }
    let mut held = Reserved::none(rt.budget());
    let read = tokio::time::timeout(
        rt.config.server.header_read_timeout,
        message(body, MAX_MESSAGE, &mut held),
    )
    .await
    .unwrap_or(Err((
        code::UNAVAILABLE,
        "the CheckRequest did not arrive in time",
    )))
    .and_then(|m| {
        CheckRequest::decode(m).map_err(|_| (code::INVALID_ARGUMENT, "not a CheckRequest"))
    });
    let request = match read {
        Ok(request) => request,
        Err((status, why)) => {
            end.record.status = 400;
            debug!(why, "ext_authz call without a usable CheckRequest");
            trailers_only(&mut respond, status, why, &mut end);
            return;
        }
    };
    let http = request
        .attributes
        .and_then(|a| a.request)
        .and_then(|r| r.http)
        .unwrap_or_default();
    // Envoy gives the headers as a map (lower-case names, repeated ones joined), or, with
    // `encode_raw_headers`, as a list of raw values.
    let mut fields: Vec<Header<'_>> = Vec::with_capacity(http.headers.len());
    for (name, value) in &http.headers {
        // Envoy joins repeated fields with ","; a credential never contains one, so the
        // parts of `authorization` are its fields (two credentials: inline mode's 401).
        let parts: Box<dyn Iterator<Item = &str>> = if name == "authorization" {
            Box::new(value.split(','))
        } else {
            Box::new(std::iter::once(value.as_str()))
        };
        fields.extend(parts.map(|v| Header {
            name,
            value: v.trim_matches(' ').as_bytes(),
        }));
    }
    if let Some(map) = &http.header_map {
        fields.extend(map.headers.iter().map(|h| Header {
            name: &h.key,
            value: if h.raw_value.is_empty() {
                h.value.as_bytes()
            } else {
                &h.raw_value
            },
        }));
    }
    // Pseudo-headers are the method, host and path given on their own.
    fields.retain(|h| !h.name.starts_with(':'));
    let check = RequestView {
        method: &http.method,
        target: &http.path,
        authority: Some(http.host.as_str()).filter(|h| !h.is_empty()),
        protocol: Protocol::Http2,
        headers: &fields,
        map: None,
        body: Framing::Empty,
        client,
    };
    let configured = rt
        .config
        .forward_auth
        .as_ref()
        .map(|_| (Dialect::Envoy, None));
    let verdict = super::verdict(rt, &check, configured, &mut end).await;
    let policy = rt.pipeline().header_policy();
    let (status, response) = match verdict {
        Ok(allowed) => {
            let mut ok = OkHttpResponse::default();
            let assertion = allowed.assertion.as_ref();
            for (name, value) in policy.identity_values(allowed.identity.as_deref(), assertion) {
                match value {
                    Some(v) => ok.headers.push(overwrite(name.as_str(), v.as_bytes())),
                    None => ok.headers_to_remove.push(name.as_str().to_owned()),
                }
            }
            let response = CheckResponse {
                status: Some(Status {
                    code: code::OK,
                    ..Status::default()
                }),
                http_response: Some(HttpResponse::OkResponse(ok)),
                ..CheckResponse::default()
            };
            (200, response)
        }
        Err(rejection) => (
            rejection.status(),
            denied(&rejection, &end.record.decorations),
        ),
    };
    drop(held);
    end.record.status = status;
    send(&mut respond, &response, &mut end);
}

/// Answers the call with `response`, then `grpc-status: 0`.
fn send(respond: &mut SendResponse<Bytes>, response: &CheckResponse, end: &mut RequestEnd<'_>) {
    let mut framed = BytesMut::with_capacity(5 + response.encoded_len());
    framed.put_u8(0);
    framed.put_u32(response.encoded_len() as u32);
    response.encode(&mut framed).ok();
    let n = framed.len() as u64;
    let mut head = Response::new(());
    head.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let sent = respond.send_response(head, false).and_then(|mut stream| {
        stream.send_data(framed.freeze(), false)?;
        stream.send_trailers(trailers)
    });
    match sent {
        Ok(()) => end.finish(n, true),
        Err(e) => debug!(error = %e, "ext_authz caller gone before the answer"),
    }
}

/// A header to set on the upstream request, replacing any copy. `append` is deprecated in
/// favour of `append_action`, but Envoy versions before 1.22 read only `append` (and take it as
/// true when absent outside ext_authz): both are set.
#[allow(deprecated)]
fn overwrite(name: &str, value: &[u8]) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(ProtoHeader {
            key: name.to_owned(),
            value: String::from_utf8_lossy(value).into_owned(),
            ..ProtoHeader::default()
        }),
        append: Some(false),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..HeaderValueOption::default()
    }
}

/// The denial for `rejection`: its inline answer as a `DeniedHttpResponse` (with the request's
/// `deco`rations: its request ID), and its code.
pub fn denied(rejection: &Rejection, deco: &Decorations) -> CheckResponse {
    let local = rejection.response();
    let denied = DeniedHttpResponse {
        status: Some(HttpStatus {
            code: i32::from(local.status),
        }),
        headers: local
            .fields
            .iter()
            .map(|(n, v)| overwrite(n, v.as_bytes()))
            .chain(
                deco.fields
                    .iter()
                    .map(|(n, v)| overwrite(n.as_str(), v.as_bytes())),
            )
            .chain(
                deco.request_id
                    .as_ref()
                    .map(|id| overwrite("x-request-id", id.as_bytes())),
            )
            .collect(),
        body: String::from_utf8_lossy(&deco.body(&local.body)).into_owned(),
    };
    CheckResponse {
        status: Some(Status {
            code: status_code(local.status),
            message: rejection.outcome().to_owned(),
            ..Status::default()
        }),
        http_response: Some(HttpResponse::DeniedResponse(denied)),
        ..CheckResponse::default()
    }
}

/// The `google.rpc.Status` code of a refusal with HTTP `status`.
pub fn status_code(status: u16) -> i32 {
    match status {
        401 => code::UNAUTHENTICATED,
        403 => code::PERMISSION_DENIED,
        404 => code::NOT_FOUND,
        500..=599 => code::UNAVAILABLE,
        _ => code::INVALID_ARGUMENT,
    }
}

/// The call's one message, unframed: uncompressed, exactly one, at most `limit` bytes (refused
/// from its length prefix, before it is read), and reserved in `held` (from
/// `server.max_buffered_bytes`) before it is read.
async fn message(
    mut body: RecvStream,
    limit: usize,
    held: &mut Reserved,
) -> Result<Bytes, CallError> {
    let mut buf = BytesMut::new();
    let mut expected = None;
    while let Some(data) = body.data().await {
        let data = data.map_err(|_| (code::UNAVAILABLE, "the call was reset"))?;
        let _ = body.flow_control().release_capacity(data.len());
        let room = expected.unwrap_or(5) - buf.len();
        if data.len() > room && expected.is_some() {
            return Err((code::INVALID_ARGUMENT, "not exactly one message"));
        }
        let (now, rest) = data.split_at(room.min(data.len()));
        buf.extend_from_slice(now);
        if expected.is_none() && buf.len() == 5 {
            if buf[0] != 0 {
                return Err((code::UNIMPLEMENTED, "compressed messages are not accepted"));
            }
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if len > limit {
                return Err((code::RESOURCE_EXHAUSTED, "CheckRequest too large"));
            }
            if !held.grow(5 + len) {
                return Err((code::RESOURCE_EXHAUSTED, "the gateway is overloaded"));
            }
            buf.reserve(len);
            expected = Some(5 + len);
            if rest.len() > len {
                return Err((code::INVALID_ARGUMENT, "not exactly one message"));
            }
            buf.extend_from_slice(rest);
        }
    }
    match expected {
        Some(n) if buf.len() == n => {
            buf.advance(5);
            Ok(buf.freeze())
        }
        _ => Err((code::INVALID_ARGUMENT, "no whole message")),
    }
}

/// Ends a call with `status` and no message ("Trailers-Only").
fn trailers_only(
    respond: &mut SendResponse<Bytes>,
    status: i32,
    message: &str,
    end: &mut RequestEnd<'_>,
) {
    let mut res = Response::new(());
    let fields = res.headers_mut();
    fields.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    fields.insert("grpc-status", HeaderValue::from(status));
    if let Ok(m) = HeaderValue::from_str(message) {
        fields.insert("grpc-message", m);
    }
    if respond.send_response(res, true).is_ok() {
        end.finish(0, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::TokenError;

    #[test]
    fn refusals_map_to_the_contracts_codes() {
        for (rejection, http, code) in [
            (Rejection::MissingToken, 401, 16),
            (Rejection::InvalidToken(TokenError::Expired), 401, 16),
            (
                Rejection::Forbidden {
                    claim: "role".into(),
                    scope: None,
                },
                403,
                7,
            ),
            (Rejection::UntrustedPeer, 403, 7),
            (Rejection::NoRoute, 404, 5),
            (
                Rejection::InvalidToken(TokenError::KeysUnavailable),
                503,
                14,
            ),
            (Rejection::BadRequest("bad path"), 400, 3),
            (Rejection::MethodNotAllowed, 405, 3),
        ] {
            let r = denied(&rejection, &Decorations::default());
            assert_eq!(r.status.as_ref().unwrap().code, code, "{rejection:?}");
            let Some(HttpResponse::DeniedResponse(d)) = r.http_response else {
                panic!("{rejection:?}: not denied");
            };
            assert_eq!(d.status.unwrap().code, http);
            let body: serde_json::Value = serde_json::from_str(&d.body).unwrap();
            assert!(body["error"].is_string());
            let challenge = d
                .headers
                .iter()
                .find(|h| h.header.as_ref().unwrap().key == "www-authenticate");
            assert_eq!(
                challenge.is_some(),
                matches!(http, 401) || matches!(rejection, Rejection::Forbidden { .. })
            );
            for h in &d.headers {
                #[allow(deprecated)]
                let append = h.append;
                assert_eq!(append, Some(false));
                assert_eq!(
                    h.append_action,
                    HeaderAppendAction::OverwriteIfExistsOrAdd as i32
                );
            }
        }
    }
}
