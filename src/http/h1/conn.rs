//! One HTTP/1.x client connection, request after request (see the module docs of `http::h1`):
//! the wait for a head, then for each request, in one boxed future: parse, decide, write the
//! upstream head ([`crate::upstream::Origin::prepare`]), let go of the read buffer, get the
//! upstream connection ([`crate::upstream::Prepared::connect`]), exchange, relay
//! ([`crate::http::relay`]), then keep the connection, close it, or linger.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use tracing::debug;

use super::client::{BodyFacts, Client, ClientFraming};
use super::sink;
use super::{answer, write_all, Connection, Facts, Next, Transport, PREFACE};
use crate::http::end::RequestEnd;
use crate::http::relay;
use crate::net::{buffers, Deadline};
use crate::pipeline::response::{self, Asked};
use crate::pipeline::upgrade::Offer;
use crate::pipeline::{Decision, Forward, Protocol, Rejection, RequestView};
use crate::policy::Route;
use crate::runtime::Runtime;
use crate::upstream::{Exchange, ProxyError, RequestKind};
use crate::wire::{self, HeadError, Version};

/// How the connection loop ended.
pub(super) enum Run {
    Closed,
    Http2,
}

/// Waiting on a connection with nothing read: a drain closes it, and so does `timeout`.
fn idle(
    cx: &mut Context<'_>,
    deadline: &mut Deadline,
    closing: Pin<&mut tokio::sync::futures::Notified<'_>>,
    timeout: Duration,
) -> Poll<Wait> {
    if closing.poll(cx).is_ready() {
        return Poll::Ready(Wait::Close);
    }
    deadline.arm_after(timeout);
    match deadline.poll_expired(cx) {
        Poll::Ready(()) => Poll::Ready(Wait::Close),
        Poll::Pending => Poll::Pending,
    }
}

/// The settings a wait for a request head needs (copied, so that the wait holds no config).
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_header_bytes: usize,
    idle_timeout: Duration,
    header_read_timeout: Duration,
}

impl Limits {
    fn of(server: &crate::config::ServerConfig) -> Limits {
        Limits {
            max_header_bytes: server.max_header_bytes,
            idle_timeout: server.idle_timeout,
            header_read_timeout: server.header_read_timeout,
        }
    }
}

/// What waiting for a head gave.
enum Wait {
    /// The buffer may hold a complete head.
    Head,
    /// Close quietly: EOF, timeout, drain, an I/O error.
    Close,
    /// The head is larger than `max_header_bytes`.
    TooLarge,
    /// The HTTP/2 preface.
    Http2,
    /// More empty lines before a request line than a client ever sends.
    Blank,
}

/// What handling a request left.
enum Step {
    /// The head is not complete yet.
    More,
    /// The request is done; the connection goes on as this says.
    Done(Next),
}

impl<T: Transport> Connection<T> {
    /// Request after request. Only the wait for a head runs inline: it is what an idle
    /// connection's task holds. A request, once its head is in, runs boxed (the box lives as
    /// long as the exchange), and so do the endings.
    pub(super) async fn run(&mut self) -> Run {
        let mut first = true;
        loop {
            // While waiting, only the limits of the config current now are needed; the request
            // itself runs on the config current when its head is in (a reload during a long
            // keep-alive wait applies to the next request).
            let limits = Limits::of(&self.gateway.current().config.server);
            let refusal = match self.wait_head(first, limits).await {
                Wait::Head => None,
                Wait::Close => return Run::Closed,
                Wait::Http2 => return Run::Http2,
                Wait::TooLarge => Some(Rejection::HeadersTooLarge),
                Wait::Blank => Some(Rejection::BadRequest("empty lines instead of a request")),
            };
            if let Some(e) = refusal {
                Box::pin(self.unreadable(e)).await;
                return Run::Closed;
            }
            let rt = self.gateway.current();
            let next = match Box::pin(self.request(&rt)).await {
                Step::More => {
                    self.input.scanned = self.input.len();
                    continue;
                }
                Step::Done(next) => next,
            };
            first = false;
            match next {
                Next::KeepAlive if !self.closing.is_set() => {
                    if self.input.is_empty() {
                        // Idle until the next request: hold no buffer.
                        self.input.release();
                    }
                }
                Next::KeepAlive | Next::Close => {
                    Box::pin(self.shutdown()).await;
                    return Run::Closed;
                }
                Next::Linger => {
                    Box::pin(self.linger()).await;
                    return Run::Closed;
                }
            }
        }
    }

    /// One request whose head may be complete: parse it, let the pipeline decide, and carry
    /// the decision out.
    async fn request(&mut self, rt: &Runtime) -> Step {
        let limits = rt.head_limits();
        let mut slots = Vec::with_capacity(limits.max_fields);
        let head = match wire::parse_head(self.input.data(), slots.spare_capacity_mut(), limits) {
            Ok(Some(head)) => head,
            Ok(None) => return Step::More,
            Err(HeadError::TooLarge) => {
                self.unreadable(Rejection::HeadersTooLarge).await;
                return Step::Done(Next::Close);
            }
            Err(HeadError::Malformed(why)) => {
                self.unreadable(Rejection::BadRequest(why)).await;
                return Step::Done(Next::Close);
            }
        };
        let facts = Facts {
            head_len: head.len,
            framing: head.framing,
            version: head.version,
            keep_alive: head.keep_alive,
            expect_continue: head.expect_continue,
            kind: RequestKind::new(head.method, head.framing),
        };
        let gateway = self.gateway.clone();
        let mut end = RequestEnd::start(&gateway, head.method, &self.client);
        let view = RequestView {
            method: head.method,
            target: head.target,
            authority: None,
            protocol: match head.version {
                Version::Http10 => Protocol::Http10,
                Version::Http11 => Protocol::Http11,
            },
            headers: head.headers,
            map: None,
            body: head.framing,
            client: &self.client,
        };
        if self.client.checks {
            // A check for another proxy: answered here, never forwarded.
            let local = crate::http::forward_auth::answer(rt, &view, &mut end).await;
            drop(slots);
            self.consume_head(facts.head_len);
            return Step::Done(answer::answer_here(self, &local, end, facts).await);
        }
        let next = match crate::http::decide(rt, &view, &mut end.record).await {
            Decision::Respond(local) => {
                self.consume_head(facts.head_len);
                answer::answer_here(self, &local, end, facts).await
            }
            Decision::Reject(rejection) => {
                end.refuse(&rejection);
                let local = rejection.response_to(end.record.grpc);
                self.consume_head(facts.head_len);
                answer::answer_here(self, &local, end, facts).await
            }
            Decision::Forward(Forward {
                route,
                request,
                upgrade,
            }) => {
                let sent = Instant::now();
                end.forwarding();
                let prepared = match rt.origin(route) {
                    Some(origin) => origin.prepare(&request).await,
                    // `decide` forwards no inline request to a route without an upstream.
                    None => Err(ProxyError::NoUpstream),
                };
                drop(request);
                // Neither the read buffer nor the parsed fields are held while the connection
                // is awaited.
                drop(slots);
                self.consume_head(facts.head_len);
                let connected = match prepared {
                    Ok(prepared) => prepared.connect(sent).await,
                    Err(e) => Err(e),
                };
                match connected {
                    Ok(mut exchange) => {
                        let forwarding = Forwarding {
                            route,
                            upgrade,
                            facts,
                            sent,
                        };
                        match self.forward(rt, &mut exchange, forwarding, &mut end).await {
                            Forwarded::Done(next) => {
                                exchange.finish();
                                next
                            }
                            Forwarded::Tunnel => {
                                let idle = rt.config.server.idle_timeout;
                                drop(end);
                                if let Some(tunnel) = exchange.into_tunnel() {
                                    let tunnel =
                                        super::tunnel::tunnel(self, tunnel, idle, &route.name);
                                    Box::pin(tunnel).await;
                                }
                                Next::Close
                            }
                            Forwarded::Failed(e, reusable) => {
                                exchange.abandon();
                                Box::pin(self.failed(e, end, route, facts, reusable)).await
                            }
                        }
                    }
                    Err(e) => match e.into_rejection(&route.name) {
                        Some(rejection) => {
                            let local = rejection.response_to(end.record.grpc);
                            answer::answer_here(self, &local, end, facts).await
                        }
                        None => Next::Close,
                    },
                }
            }
        };
        Step::Done(next)
    }

    /// The head's bytes are used: the exchange holds no read buffer while it waits for the
    /// upstream, unless more bytes are already there (a body takes one when it arrives).
    fn consume_head(&mut self, len: usize) {
        self.input.consume(len);
        self.input.scanned = 0;
        if self.input.is_empty() {
            self.input.release();
        }
        self.client_deadline.disarm();
    }

    /// Forwards a request whose connection and head are ready: the exchange, then the relay
    /// (or the `101` of a tunnel).
    async fn forward(
        &mut self,
        rt: &Runtime,
        exchange: &mut Exchange,
        forwarding: Forwarding<'_>,
        end: &mut RequestEnd<'_>,
    ) -> Forwarded {
        let Forwarding {
            route,
            upgrade,
            facts,
            sent,
        } = forwarding;
        let server = &rt.config.server;
        let body = BodyFacts {
            framing: facts.framing,
            version: facts.version,
            expect_continue: facts.expect_continue,
            limit: route.max_body,
        };
        let mut client = Client::new(
            &mut self.io,
            &mut self.input,
            &mut self.client_deadline,
            body,
            server,
            Vec::new(),
        );
        // The client's head is written into `reply` as soon as the upstream's is read.
        let mut reply = buffers::take_out();
        let asked = Asked {
            head: facts.kind.head,
            upgrade: upgrade.as_ref(),
        };
        let version = facts.version;
        let deco = &end.record.decorations;
        let answer = exchange
            .send(
                &mut self.upstream_deadline,
                &mut client,
                sent,
                |head, framing| {
                    let plan = response::plan(head, framing, asked)?;
                    Ok(sink::response_head(&mut reply, head, &plan, version, deco))
                },
            )
            .await;
        // No `100 Continue` after the final response; the rest of one begun goes out first.
        let continue_rest = client.end_continue();
        client.disarm();
        self.upstream_deadline.disarm();
        let framing = match answer {
            Ok(framing) => framing,
            Err(e) => {
                buffers::give_out(reply);
                let reusable = facts.keep_alive && client.is_done();
                drop(client);
                let idle = server.idle_timeout;
                if write_all(&mut self.io, continue_rest, &mut self.client_deadline, idle)
                    .await
                    .is_err()
                {
                    return Forwarded::Done(Next::Close);
                }
                return Forwarded::Failed(e, reusable);
            }
        };
        reply.splice(0..0, continue_rest.iter().copied());
        end.upstream_answered(sent, exchange.status);
        // The whole body read, not the upload ended: the upstream may stop taking it.
        let keep = finish_head(
            &mut reply,
            facts.keep_alive && client.is_done() && !self.closing.is_set(),
            framing,
            version,
        );
        client.out = reply;
        client.framing = framing;
        let idle = server.idle_timeout;
        if framing == ClientFraming::Tunnel {
            let written = poll_fn(|cx| relay::Sink::poll_flush(&mut client, cx)).await;
            buffers::give_out(std::mem::take(&mut client.out));
            end.finish(0, written.is_ok());
            return match written {
                Ok(()) => Forwarded::Tunnel,
                Err(_) => Forwarded::Done(Next::Close),
            };
        }
        let relayed = relay::relay(exchange, &mut client, &mut self.upstream_deadline, idle).await;
        if let Err(e) = &relayed {
            debug!(route = %route.name, error = %e, "response not completed");
            if let relay::Cut::Upstream(_) = e {
                // What was gathered (the head, the start of the body) goes out before the
                // close: the client sees a response cut short, not none.
                let flush = poll_fn(|cx| relay::Sink::poll_flush(&mut client, cx));
                let _ = Box::pin(tokio::time::timeout(idle, flush)).await;
            }
        }
        let body_read = client.is_done();
        buffers::give_out(std::mem::take(&mut client.out));
        end.finish(exchange.bytes, relayed.is_ok());
        Forwarded::Done(match () {
            // A response cut short can only be signalled by closing.
            _ if relayed.is_err() => Next::Close,
            // The upstream answered without taking the whole body: the rest is unread.
            _ if exchange.upload_unfinished() || !body_read => Next::Linger,
            _ if keep => Next::KeepAlive,
            _ => Next::Close,
        })
    }

    /// Answers 502/503/504/400/413 for a failed exchange, or leaves a client that went away
    /// to the request's end (499).
    async fn failed(
        &mut self,
        e: ProxyError,
        end: RequestEnd<'_>,
        route: &Route,
        facts: Facts,
        reusable: bool,
    ) -> Next {
        let client_side = matches!(e, ProxyError::Client(_));
        let Some(rejection) = e.into_rejection(&route.name) else {
            return Next::Close;
        };
        // A request whose body was not all read cannot be followed by another one.
        let reusable = reusable && !client_side;
        let local = rejection.response_to(end.record.grpc);
        answer::respond(self, &local, end, !reusable, facts.kind.head).await;
        if reusable {
            Next::KeepAlive
        } else {
            Next::Linger
        }
    }

    /// Answers a request the gateway cannot read (400/431) and closes.
    async fn unreadable(&mut self, e: Rejection) {
        let gateway = self.gateway.clone();
        let mut end = RequestEnd::start(&gateway, "-", &self.client);
        end.refuse(&e);
        answer::respond(self, &e.response(), end, true, false).await;
        self.linger().await;
    }

    /// Waits until the buffer may hold a complete head.
    async fn wait_head(&mut self, first: bool, limits: Limits) -> Wait {
        let (idle_timeout, head_timeout) = (limits.idle_timeout, limits.header_read_timeout);
        let limit = limits.max_header_bytes;
        let mut closing = pin!(self.closing.notified());
        // Empty lines left after the last request (an old client's CRLF after a body) do not
        // start a head.
        let mut blank = self.input.skip_empty_lines();
        if blank > wire::MAX_EMPTY_LINES {
            return Wait::Blank;
        }
        if self.input.is_empty() {
            self.input.release();
        }
        let mut head_started = !self.input.is_empty();
        // Waiting with nothing read: header_read_timeout for a new connection, idle_timeout
        // between requests.
        let wait_idle = if first { head_timeout } else { idle_timeout };
        poll_fn(|cx| loop {
            if !self.input.is_empty() {
                if first
                    && PREFACE
                        .starts_with(&self.input.data()[..self.input.len().min(PREFACE.len())])
                {
                    if self.input.len() >= PREFACE.len() {
                        return Poll::Ready(Wait::Http2);
                    }
                } else if wire::may_be_complete(self.input.data(), self.input.scanned) {
                    return Poll::Ready(Wait::Head);
                } else {
                    // Searched: the next search starts here (it looks back two bytes).
                    self.input.scanned = self.input.len();
                }
                if self.input.len() >= limit {
                    return Poll::Ready(Wait::TooLarge);
                }
            } else {
                // Idle: a drain closes the connection; nothing is buffered while waiting.
                if self.closing.is_set() {
                    return Poll::Ready(Wait::Close);
                }
                match self.io.poll_read_ready(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(_)) => return Poll::Ready(Wait::Close),
                    Poll::Pending => {
                        return idle(cx, &mut self.client_deadline, closing.as_mut(), wait_idle)
                    }
                }
            }
            match self.input.poll_read(&mut self.io, cx, limit) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Wait::Close),
                Poll::Ready(Ok(_)) => {
                    blank += self.input.skip_empty_lines();
                    if blank > wire::MAX_EMPTY_LINES {
                        return Poll::Ready(Wait::Blank);
                    }
                    if !head_started && !first {
                        // A head began: from now on it has header_read_timeout to complete.
                        head_started = true;
                        self.client_deadline.disarm();
                    }
                }
                Poll::Pending if self.input.is_empty() => {
                    self.input.release();
                    return idle(cx, &mut self.client_deadline, closing.as_mut(), wait_idle);
                }
                Poll::Pending => {
                    self.client_deadline.arm_after(head_timeout);
                    return match self.client_deadline.poll_expired(cx) {
                        Poll::Ready(()) => Poll::Ready(Wait::Close),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        })
        .await
    }

    /// Closes the write side (a TLS close_notify), giving up on a peer that does not read.
    pub(super) async fn shutdown(&mut self) {
        let _ = tokio::time::timeout(LINGER_TIME, self.io.shutdown()).await;
    }

    /// After a refusal with a body still coming: stop writing, then read and drop what the
    /// client still sends for a moment, so that it sees the answer instead of a reset (as
    /// nginx's lingering close).
    pub(super) async fn linger(&mut self) {
        self.shutdown().await;
        // A pooled buffer: a 4 KiB array here would make every connection's task that big.
        let mut sink = buffers::take_in();
        let drained = async {
            let mut total = 0usize;
            while total < LINGER_BYTES {
                match tokio::io::AsyncReadExt::read(&mut self.io, &mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
        };
        let _ = tokio::time::timeout(LINGER_TIME, drained).await;
        buffers::give_in(sink);
    }
}

/// How forwarding a request ended.
enum Forwarded {
    /// The response went (or not); the connection goes on as this says.
    Done(Next),
    /// A `101` went out: the connection becomes a tunnel.
    Tunnel,
    /// The exchange failed before the response head (the client's body was all read when
    /// `reusable`).
    Failed(ProxyError, bool),
}

/// What forwarding needs besides the connection and the head.
struct Forwarding<'r> {
    route: &'r Route,
    upgrade: Option<Offer>,
    facts: Facts,
    sent: Instant,
}

/// Ends the client's head of a forwarded response and says whether the connection carries
/// another request: `may_keep` (the client asked for keep-alive, its whole body was read and
/// no drain is under way: an answer that came before the whole request body closes the
/// connection, RFC 9112 §9.6, since the rest of the body may never be read) and a response
/// whose end the client can tell. `connection: close` unless kept, `connection: keep-alive` for
/// an HTTP/1.0 client whose connection is kept; a tunnel's `101` has its own.
pub(super) fn finish_head(
    reply: &mut Vec<u8>,
    may_keep: bool,
    framing: ClientFraming,
    version: Version,
) -> bool {
    let keep = may_keep && framing != ClientFraming::UntilClose;
    match framing {
        ClientFraming::Tunnel => {}
        _ if !keep => reply.extend_from_slice(b"connection: close\r\n"),
        _ if version == Version::Http10 => reply.extend_from_slice(b"connection: keep-alive\r\n"),
        _ => {}
    }
    reply.extend_from_slice(b"\r\n");
    keep
}

const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_a_connection_is_kept_after_a_forwarded_response() {
        // (may keep, framing, version) -> (kept, the field written, if any)
        let table = [
            (true, ClientFraming::Plain, Version::Http11, true, None),
            (true, ClientFraming::Chunked, Version::Http11, true, None),
            (
                true,
                ClientFraming::Plain,
                Version::Http10,
                true,
                Some("connection: keep-alive"),
            ),
            // A body delimited by the close cannot be followed by another response.
            (
                true,
                ClientFraming::UntilClose,
                Version::Http10,
                false,
                Some("connection: close"),
            ),
            (
                false,
                ClientFraming::Plain,
                Version::Http11,
                false,
                Some("connection: close"),
            ),
            (false, ClientFraming::Tunnel, Version::Http11, false, None),
        ];
        for (may_keep, framing, version, kept, field) in table {
            let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
            let keep = finish_head(&mut head, may_keep, framing, version);
            let text = String::from_utf8(head).unwrap();
            assert_eq!(keep, kept, "{may_keep} {framing:?} {version:?}");
            assert!(text.ends_with("\r\n\r\n"), "{text:?}");
            match field {
                Some(f) => assert!(text.contains(&format!("{f}\r\n")), "{text:?}"),
                None => assert!(!text.contains("connection:"), "{text:?}"),
            }
        }
    }
}
