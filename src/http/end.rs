//! The one end of every request: a [`RequestEnd`] is made when a request's head is in, and
//! when it is dropped (whatever happened: answered, refused, forwarded, the upstream failed, the
//! client went away, upgraded) it counts the request, writes its access line and closes its
//! `tracing` span, exactly once. No path can forget to; this is where tracing hooks in.

use tracing::field::Empty;

use std::time::SystemTime;

use tokio::time::Instant;

use crate::ops::access::Record;
use crate::ops::trace;
use crate::pipeline::{ClientInfo, LocalResponse, Rejection};
use crate::runtime::Gateway;

/// A request in flight (see the module docs). Its [`Record`] is filled in as the request goes;
/// [`RequestEnd::finish`] says how much of the response went out, and a request dropped
/// without it is one whose client went away (499 until a status was sent).
#[derive(Debug)]
pub struct RequestEnd<'g> {
    gateway: &'g Gateway,
    /// What the request did, for the access line and the metrics.
    pub record: Record,
    span: tracing::Span,
    bytes: u64,
    complete: bool,
    /// The upstream's status, when it answered.
    upstream_status: Option<u16>,
    /// The refusal, when the gateway refused the request: its reason, and whether it was by
    /// authentication or authorization.
    refused: Option<(&'static str, bool)>,
    /// The peer and how it came, for a trace that starts here (a request refused before it
    /// was decided).
    client: (std::net::IpAddr, &'static str),
}

impl<'g> RequestEnd<'g> {
    /// A request with `method` starts (its head is in), from `client` (on the forward-auth
    /// listener: a check, whatever becomes of it).
    pub fn start(gateway: &'g Gateway, method: &str, client: &ClientInfo) -> RequestEnd<'g> {
        let mut record = Record::new(method);
        if client.checks {
            record.mode = "forward_auth";
        }
        RequestEnd {
            gateway,
            record,
            span: tracing::debug_span!(
                target: "jwtgate::request",
                "request",
                method,
                route = Empty,
                status = Empty,
            ),
            bytes: 0,
            complete: false,
            upstream_status: None,
            refused: None,
            client: (client.ip, client.proto),
        }
    }

    /// The request is refused: an authentication or authorization refusal is counted by
    /// reason (and named in the access line).
    pub fn refuse(&mut self, rejection: &Rejection) {
        self.gateway.count_refusal(rejection, &mut self.record);
        self.refused = Some((rejection.outcome(), rejection.is_auth()));
    }

    /// The gateway answers the request itself with `local`: counted under its reported status
    /// (a refusal in gRPC form is a 200 on the wire) and, for a gRPC call, its `grpc-status`.
    pub fn answered_here(&mut self, local: &LocalResponse) {
        self.record.status = local.reported;
        if self.record.grpc {
            self.record.grpc_status = local
                .fields
                .iter()
                .find(|(n, _)| n == "grpc-status")
                .and_then(|(_, v)| v.parse().ok());
        }
    }

    /// The request is being forwarded (the upstream exchange's span starts).
    pub fn forwarding(&mut self) {
        if let Some(trace) = &mut self.record.trace {
            trace.upstream_start = Some(SystemTime::now());
        }
    }

    /// The upstream's response head came, with `status`, for a request forwarded at `sent`.
    pub fn upstream_answered(&mut self, sent: Instant, status: u16) {
        self.record.upstream = Some(sent.elapsed());
        self.record.status = status;
        self.upstream_status = Some(status);
        if let Some(trace) = &mut self.record.trace {
            trace.upstream_end = Some(SystemTime::now());
        }
    }

    /// The response went out: `bytes` of body, all of it when `complete` (the request ends
    /// when this is dropped).
    pub fn finish(&mut self, bytes: u64, complete: bool) {
        self.bytes = bytes;
        self.complete = complete;
    }
}

impl Drop for RequestEnd<'_> {
    fn drop(&mut self) {
        // A request refused before it was decided (unreadable, a check from an untrusted
        // peer) gets a trace of its own: never from its headers. Made first, so that its
        // access line names it.
        if let (None, Some(start)) = (&self.record.trace, self.record.traced) {
            let (ip, scheme) = self.client;
            self.record.trace =
                trace::RequestTrace::begin(&trace::Incoming::default(), start, scheme, ip, "");
        }
        let record = &self.record;
        // 499 (the client went away, as nginx calls it) when no status was sent.
        let status = match record.status {
            0 => 499,
            s => s,
        };
        self.gateway.count(record, status);
        self.gateway.count_grpc(record, status);
        record.log(self.bytes, self.complete);
        if !self.span.is_disabled() {
            self.span.record("route", &*record.route);
            self.span.record("status", status);
        }
        if let Some(trace) = self.record.trace.take() {
            let record = &self.record;
            // `refused` for every 401 and 403 the gateway answered and every refusal by
            // authentication (a 503 while keys are fetched), `ok` for a verified token, `none`
            // where no token was checked.
            let (auth_result, auth_reason) = match (record.auth, self.refused) {
                (_, Some((reason, auth))) if auth || matches!(status, 401 | 403) => {
                    ("refused", Some(reason))
                }
                ("ok", _) => ("ok", None),
                _ => ("none", None),
            };
            let user = record.user.as_ref().and_then(|u| u.to_str().ok());
            trace::finish(
                trace,
                &trace::Outcome {
                    method: record.method(),
                    path: record.path(),
                    route: &record.route,
                    status,
                    auth_result,
                    auth_reason,
                    mode: record.mode,
                    user,
                    request_id: record.request_id(),
                    upstream_status: self.upstream_status,
                    grpc_status: record.grpc_status,
                },
            );
        }
    }
}
