//! The client-facing front-ends: [`h1`] (jwtgate's own HTTP/1.1 engine) and [`h2`] (HTTP/2 on
//! the `h2` crate). Each turns its protocol's request
//! head into a [`RequestView`], and then every request takes the same steps, whatever the
//! protocols on either side:
//!
//! 1. [`RequestEnd::start`] ([`end`]): the request is counted, logged and traced when it ends,
//!    whatever happens;
//! 2. [`decide`]: the pipeline's decision (forward, answer, refuse);
//! 3. [`crate::upstream::Origin::prepare`]: the request head written for the protocol the
//!    upstream speaks; [`crate::upstream::Prepared::connect`]: a connection for it; then
//!    [`crate::upstream::Exchange::send`]: the head and the body up, the response head back
//!    through [`crate::pipeline::response::plan`];
//! 4. [`relay::relay`]: the rest of the response, piece by piece, into the front-end's one
//!    [`relay::Sink`].
//!
//! Only the rendering (of answers, response heads and pieces) is a front-end's own.

pub mod body;
pub mod end;
pub mod forward_auth;
pub mod h1;
pub mod h2;
pub mod relay;

use std::time::Instant;

use crate::auth::provider::KID_WAIT;
use crate::auth::TokenError;
use crate::ops::access::Record;
use crate::pipeline::{Decision, Rejection, RequestView};
use crate::runtime::Runtime;

pub use end::RequestEnd;

/// Lets `rt`'s pipeline decide `view`. A token for an unknown `kid`, refused while its
/// provider's keys are being fetched or a fetch is asked for, waits for the next fetch and is
/// decided once more on the keys it brought ([`crate::auth::Verifier::wait_for_keys`]), again
/// while the wait lasts (a fetch under way may have started before the key was published):
/// at most [`KID_WAIT`] in all, so that a token signed with a key the provider has just
/// published passes whatever fetched last.
pub async fn decide<'r, 'a>(
    rt: &'r Runtime,
    view: &RequestView<'a>,
    record: &mut Record,
) -> Decision<'r, 'a> {
    let mut decision = rt.pipeline().decide(view, record);
    let mut deadline = None;
    loop {
        let Decision::Reject(Rejection::InvalidToken(TokenError::UnknownKeyFetching {
            provider,
            seen,
        })) = decision
        else {
            return decision;
        };
        let deadline = *deadline.get_or_insert_with(|| Instant::now() + KID_WAIT);
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return decision;
        }
        // Boxed: the wait is rare, and would otherwise size every request's future.
        Box::pin(rt.pipeline().verifier().wait_for_keys(provider, seen, left)).await;
        decision = rt.pipeline().decide(view, record);
    }
}
