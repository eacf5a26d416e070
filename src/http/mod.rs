//! The client-facing front-ends: [`h1`] (jwtgate's own HTTP/1.1 engine) and [`h2`] (HTTP/2 on
//! hyper); forward-auth endpoints go beside them. Each turns its protocol's request head into a
//! [`RequestView`], lets the pipeline decide ([`decide`], the same for all), and writes the
//! decision in its own syntax; after the upstream answers, all take the same path
//! ([`crate::pipeline::response`]).

pub mod body;
pub mod h1;
pub mod h2;

use crate::auth::TokenError;
use crate::ops::access::Record;
use crate::pipeline::upgrade::Offer;
use crate::pipeline::{Decision, LocalResponse, Rejection, RequestView};
use crate::policy::Route;
use crate::runtime::Runtime;
use crate::upstream;
use crate::upstream::h2::H2Head;
use crate::upstream::Origin;
use crate::wire::Header;
use std::sync::Arc;

/// What the pipeline decided, without the request head's bytes (what a front-end keeps once
/// the upstream's request head is written).
#[derive(Debug)]
pub enum Outcome<'r> {
    /// The upstream's request head is in `out`.
    Forward {
        /// The route.
        route: &'r Route,
        /// The protocol switch offered, to check the upstream's `101` against.
        upgrade: Option<Offer>,
        /// For an HTTP/2 upstream, the request head (nothing is in `out`).
        h2: Option<Box<H2Head>>,
    },
    /// Answer this.
    Answer(LocalResponse),
    /// Refuse with this.
    Refuse(Rejection),
}

/// When the pipeline refused a token for an unknown `kid` while its provider's keys are being
/// fetched (a refetch the token asked for, or one under way): the provider and its fetch count
/// then. The front-end waits for that fetch ([`crate::auth::Verifier::wait_for_keys`]) and
/// decides once more, so that a token signed with a key the provider has just published passes.
pub fn waits_for_keys(outcome: &Outcome<'_>) -> Option<(usize, u64)> {
    match outcome {
        Outcome::Refuse(Rejection::InvalidToken(TokenError::UnknownKeyFetching {
            provider,
            seen,
        })) => Some((*provider, *seen)),
        _ => None,
    }
}

/// The upstream of a request decided for HTTP/1.1 to an `https://` upstream whose protocol is
/// not known yet: the front-end lets it [`learn`] (it may pick `h2`) and decides once more.
pub fn learns_protocol(rt: &Runtime, outcome: &Outcome<'_>) -> Option<Arc<Origin>> {
    match outcome {
        Outcome::Forward {
            route,
            upgrade: None,
            h2: None,
        } => {
            let origin = rt.origin(route);
            (!origin.knows_protocol()).then(|| origin.clone())
        }
        _ => None,
    }
}

/// Connects to `origin` to learn the protocol it picks; a failure is the request's answer
/// (`route` names it in the log), as a failed connect would be.
pub async fn learn(origin: Arc<Origin>, route: &str) -> Option<Rejection> {
    match origin.learn_protocol().await {
        Ok(()) => None,
        Err(e) => e.into_rejection(route),
    }
}

/// `map`'s fields as the wire's [`Header`]s (what the pipeline and the response plan read).
pub fn fields_of(map: &http::HeaderMap) -> Vec<Header<'_>> {
    map.iter()
        .map(|(name, value)| Header {
            name: name.as_str(),
            value: value.as_bytes(),
        })
        .collect()
}

/// Lets `rt`'s pipeline decide `view`; a request that goes upstream gets its head written for
/// the upstream into `out`.
pub fn decide<'r>(
    rt: &'r Runtime,
    view: &RequestView<'_>,
    record: &mut Record,
    out: &mut Vec<u8>,
) -> Outcome<'r> {
    match rt.pipeline().decide(view, record) {
        Decision::Forward(forward) => {
            let origin = rt.origin(forward.route);
            let h2 = match origin.h2_for(forward.upgrade.is_some()) {
                false => {
                    upstream::h1::write_request(&forward.request, out);
                    None
                }
                true => match H2Head::of(&forward.request, origin.h2_scheme()) {
                    Ok(head) => Some(Box::new(head)),
                    Err(why) => return Outcome::Refuse(Rejection::BadRequest(why)),
                },
            };
            Outcome::Forward {
                route: forward.route,
                upgrade: forward.upgrade,
                h2,
            }
        }
        Decision::Respond(local) => Outcome::Answer(local),
        Decision::Reject(rejection) => Outcome::Refuse(rejection),
    }
}
