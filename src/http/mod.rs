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

/// Why a request waits before it is decided once more ([`pause_for`], [`pause`]).
#[derive(Debug)]
pub enum Pause {
    /// The pipeline refused a token for an unknown `kid` while its provider's keys are being
    /// fetched (a refetch the token asked for, or one under way): wait for that fetch
    /// ([`crate::auth::Verifier::wait_for_keys`]), so that a token signed with a key the
    /// provider has just published passes.
    Keys {
        /// The provider.
        provider: usize,
        /// Its fetch count when the token was refused.
        seen: u64,
    },
    /// Decided for HTTP/1.1 to an `https://` upstream whose protocol is not known yet: connect
    /// to it first ([`crate::upstream::Origin::learn_protocol`]); it may pick `h2`.
    Learn {
        /// The upstream.
        origin: Arc<Origin>,
        /// The route, for the log.
        route: Arc<str>,
    },
}

/// What `outcome` has to wait for before it is decided once more, if anything; each kind of
/// wait happens once per request (`waited` and `learned` remember which did).
pub fn pause_for(
    rt: &Runtime,
    outcome: &Outcome<'_>,
    route: &Arc<str>,
    waited: &mut bool,
    learned: &mut bool,
) -> Option<Pause> {
    match outcome {
        Outcome::Refuse(Rejection::InvalidToken(TokenError::UnknownKeyFetching {
            provider,
            seen,
        })) if !*waited => {
            *waited = true;
            Some(Pause::Keys {
                provider: *provider,
                seen: *seen,
            })
        }
        Outcome::Forward {
            route: r,
            upgrade: None,
            h2: None,
        } if !*learned && !rt.origin(r).knows_protocol() => {
            *learned = true;
            Some(Pause::Learn {
                origin: rt.origin(r).clone(),
                route: route.clone(),
            })
        }
        _ => None,
    }
}

/// Waits as `pause` says. False when the request cannot go on: the upstream could not be
/// reached to learn its protocol (logged here); it is answered 502, as a failed connect.
pub async fn pause(rt: Arc<Runtime>, pause: Pause) -> bool {
    match pause {
        Pause::Keys { provider, seen } => {
            rt.pipeline().verifier().wait_for_keys(provider, seen).await;
            true
        }
        Pause::Learn { origin, route } => match origin.learn_protocol().await {
            Ok(()) => true,
            Err(e) => {
                // Only connect failures come from learning: all are 502s.
                let _ = e.into_rejection(&route);
                false
            }
        },
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
