//! The one end of every request: a [`RequestEnd`] is made when a request's head is in, and
//! when it is dropped (whatever happened: answered, refused, forwarded, the upstream failed, the
//! client went away, upgraded) it counts the request, writes its access line and closes its
//! `tracing` span, exactly once. No path can forget to; this is where tracing hooks in.

use tracing::field::Empty;

use crate::ops::access::Record;
use crate::pipeline::Rejection;
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
}

impl<'g> RequestEnd<'g> {
    /// A request with `method` starts (its head is in).
    pub fn start(gateway: &'g Gateway, method: &str) -> RequestEnd<'g> {
        RequestEnd {
            gateway,
            record: Record::new(method),
            span: tracing::debug_span!(
                target: "jwtgate::request",
                "request",
                method,
                route = Empty,
                status = Empty,
            ),
            bytes: 0,
            complete: false,
        }
    }

    /// The request's span (entered around the work done for it).
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// The request is refused: an authentication or authorization refusal is counted by
    /// reason (and named in the access line).
    pub fn refuse(&mut self, rejection: &Rejection) {
        self.gateway.count_refusal(rejection, &mut self.record);
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
    }
}
