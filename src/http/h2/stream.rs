//! One HTTP/2 stream: its request decided, answered, refused or forwarded, as on HTTP/1 (see
//! [`crate::http`]); run inside its connection's task.

use std::future::{poll_fn, Future};
use std::task::Poll;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;
use http::header::CONTENT_LENGTH;
use http::Request;
use tokio::time::Instant;
use tracing::debug;

use super::client::{local_response, response_head, H2Client};
use crate::http::end::RequestEnd;
use crate::http::forward_auth;
use crate::http::relay::{self, Cut};
use crate::net::Deadline;
use crate::pipeline::response::{self, Asked};
use crate::pipeline::RequestView;
use crate::pipeline::{ClientInfo, Decision, Forward, LocalResponse, Protocol, Rejection};
use crate::runtime::{Gateway, Runtime};
use crate::upstream::{Exchange, ProxyError};
use crate::wire::{self, Framing};

/// Serves the stream of `req`, answered on `respond`.
pub(super) async fn serve(
    gateway: &Gateway,
    client: &ClientInfo,
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let rt = gateway.current();
    let (parts, body) = req.into_parts();
    let method = parts.method.as_str();
    let mut end = RequestEnd::start(gateway, method, client);
    let framing = match declared_length(&parts.headers) {
        _ if parts.headers.len() > rt.config.server.max_headers => Err(Rejection::HeadersTooLarge),
        _ if body.is_end_stream() => Ok(Framing::Empty),
        Ok(Some(n)) => Ok(Framing::length(n)),
        Ok(None) => Ok(Framing::Chunked),
        Err(e) => Err(e),
    };
    let head_only = method == "HEAD";
    let fields = wire::fields_of(&parts.headers);
    let view = framing.map(|framing| RequestView {
        method,
        target: parts.uri.path_and_query().map_or("/", |pq| pq.as_str()),
        authority: parts.uri.authority().map(|a| a.as_str()),
        protocol: Protocol::Http2,
        headers: &fields,
        map: Some(&parts.headers),
        body: framing,
        client,
    });
    if client.checks {
        // A check for another proxy: answered here, never forwarded.
        let grpc = rt.config.forward_auth.as_ref().is_some_and(|f| f.grpc);
        if grpc && method == "POST" && parts.uri.path() == forward_auth::grpc::CHECK_PATH {
            forward_auth::grpc::serve(&rt, client, &parts.headers, body, respond, end).await;
            return;
        }
        let local = match view {
            Ok(view) => forward_auth::answer(&rt, &view, &mut end).await,
            Err(rejection) => {
                // An untrusted peer learns nothing more than that.
                let rejection = match forward_auth::trusted(&rt, client) {
                    true => rejection,
                    false => Rejection::UntrustedPeer,
                };
                end.record.set_check("-");
                end.refuse(&rejection);
                rejection.response()
            }
        };
        answer(&mut respond, &local, end, head_only);
        return;
    }
    let decision = match view {
        Ok(view) => crate::http::decide(&rt, &view, &mut end.record).await,
        Err(rejection) => Decision::Reject(rejection),
    };
    match decision {
        Decision::Respond(local) => answer(&mut respond, &local, end, head_only),
        Decision::Reject(rejection) => {
            end.refuse(&rejection);
            let local = rejection.response_to(end.record.grpc);
            answer(&mut respond, &local, end, head_only);
        }
        Decision::Forward(Forward { route, request, .. }) => {
            let sent = Instant::now();
            end.forwarding();
            let origin = rt.origin(route);
            let prepared = {
                let mut prepare = std::pin::pin!(async {
                    // `decide` forwards no inline request to a route without an upstream.
                    let origin = origin.ok_or(ProxyError::NoUpstream)?;
                    origin.prepare(&request).await?.connect(sent).await
                });
                // A client that resets its stream meanwhile is gone.
                poll_fn(|cx| match respond.poll_reset(cx) {
                    Poll::Ready(_) => Poll::Ready(Err(ProxyError::Abandoned)),
                    Poll::Pending => prepare.as_mut().poll(cx),
                })
                .await
            };
            drop(request);
            let mut exchange = match prepared {
                Ok(exchange) => exchange,
                Err(e) => {
                    if let Some(rejection) = e.into_rejection(&route.name) {
                        let local = rejection.response_to(end.record.grpc);
                        answer(&mut respond, &local, end, head_only);
                    }
                    return;
                }
            };
            let policy = rt.pipeline().header_policy();
            let mut h2 = H2Client::new(body, route.max_body, policy, respond);
            let forwarded = forward(
                &rt,
                &mut exchange,
                &mut h2,
                &mut end,
                route,
                head_only,
                sent,
            );
            match forwarded.await {
                Some(rejection) => {
                    exchange.abandon();
                    let local = rejection.response_to(end.record.grpc);
                    answer(&mut h2.respond, &local, end, head_only);
                }
                None => exchange.finish(),
            }
        }
    }
}

/// Forwards a stream whose upstream connection and head are ready; a refusal to answer when
/// the exchange failed before the response head (none when the client is gone).
async fn forward(
    rt: &Runtime,
    exchange: &mut Exchange,
    client: &mut H2Client<'_>,
    end: &mut RequestEnd<'_>,
    route: &crate::policy::Route,
    head_only: bool,
    sent: Instant,
) -> Option<Rejection> {
    let mut deadline = Deadline::new();
    // HTTP/2 requests never switch protocols: a 101 is the upstream's error (502).
    let asked = Asked {
        head: head_only,
        upgrade: None,
    };
    let deco = &end.record.decorations;
    let exchanged = exchange
        .send(&mut deadline, client, sent, |head, framing| {
            let plan = response::plan(head, framing, asked)?;
            Ok(response_head(head, &plan, deco))
        })
        .await;
    let head = match exchanged {
        Ok(head) => head,
        Err(_) if client.exceeded => return Some(Rejection::PayloadTooLarge),
        // None: the client went away; the request's end counts it.
        Err(e) => return e.into_rejection(&route.name),
    };
    end.upstream_answered(sent, exchange.status);
    // A Trailers-Only answer has its grpc-status in the head.
    end.record.grpc_status = crate::ops::access::grpc_status_of(head.headers());
    let eos = exchange.is_done();
    match client.respond.send_response(head, eos) {
        Ok(send) => client.send = Some(send),
        Err(e) => {
            debug!(route = %route.name, error = %e, "client stream gone before the response head");
            return None;
        }
    }
    if eos {
        end.finish(0, true);
        return None;
    }
    let idle = rt.config.server.idle_timeout;
    let relayed = relay::relay(exchange, client, &mut deadline, idle).await;
    if let Some(code) = client.grpc_status {
        end.record.grpc_status = Some(code);
    }
    let complete = match relayed {
        Ok(()) => true,
        Err(cut) => {
            cut_short(client, end, exchange.status, cut, &route.name);
            false
        }
    };
    end.finish(exchange.bytes, complete);
    None
}

/// A response that could not be relayed whole. A gRPC call whose upstream was lost after the
/// head ends with `grpc-status: 14` (UNAVAILABLE) trailers, so the client sees a precise error;
/// anything else is reset.
fn cut_short(
    client: &mut H2Client<'_>,
    end: &mut RequestEnd<'_>,
    status: u16,
    cut: Cut,
    route: &str,
) {
    let Some(send) = &mut client.send else {
        return;
    };
    debug!(route, status, error = %cut, "response not completed");
    match cut {
        Cut::Upstream(_) if end.record.grpc => {
            tracing::warn!(
                route,
                "HTTP/2 upstream lost mid-call; ending it with grpc-status 14"
            );
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("14"));
            trailers.insert(
                "grpc-message",
                http::HeaderValue::from_static("upstream unavailable"),
            );
            end.record.grpc_status = Some(14);
            if send.send_trailers(trailers).is_err() {
                send.send_reset(h2::Reason::CANCEL);
            }
        }
        Cut::Idle | Cut::Gone => send.send_reset(h2::Reason::CANCEL),
        Cut::Upstream(_) | Cut::Client(_) => send.send_reset(h2::Reason::INTERNAL_ERROR),
    }
}

/// The gateway's own answer (without a body for `HEAD`), and the request's end.
fn answer(
    respond: &mut SendResponse<Bytes>,
    local: &LocalResponse,
    mut end: RequestEnd<'_>,
    head_only: bool,
) {
    end.answered_here(local);
    let (head, body) = local_response(local, head_only, &end.record.decorations);
    let sent = match respond.send_response(head, body.is_empty()) {
        Ok(mut send) if !body.is_empty() => {
            let n = body.len() as u64;
            send.send_data(body, true).map(|()| n)
        }
        Ok(_) => Ok(0),
        Err(e) => Err(e),
    };
    match sent {
        Ok(n) => end.finish(n, true),
        Err(e) => debug!(error = %e, "client stream gone before the answer"),
    }
}

/// `Content-Length`: `Ok(None)` when absent, an error when invalid or repeated.
fn declared_length(headers: &http::HeaderMap) -> Result<Option<u64>, Rejection> {
    let mut values = headers.get_all(CONTENT_LENGTH).iter();
    let Some(v) = values.next() else {
        return Ok(None);
    };
    match (wire::parse_length(v.as_bytes()), values.next()) {
        (Some(n), None) => Ok(Some(n)),
        _ => Err(Rejection::BadRequest("invalid Content-Length")),
    }
}
