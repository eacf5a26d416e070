//! The start of a request body, kept to send it again on another connection when an HTTP/2
//! upstream did not process the request ([`Replay`]): up to [`REPLAY_LIMIT`], counted in the
//! process-wide budget, freed once the response head came and the copy was sent again (or
//! never needed).

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;

use crate::net::{Budget, Reserved};

/// Most request-body bytes kept to send again when the upstream did not process a request
/// (payload, trailers, and [`FRAME_COST`] a piece); a larger body that meets a GOAWAY fails
/// with 502.
pub const REPLAY_LIMIT: usize = 64 * 1024;

/// What keeping a piece costs besides its payload (the entry and its share of the vector), so
/// that a body of many tiny pieces is bounded too.
pub(super) const FRAME_COST: usize = 128;

/// A piece of a request body kept to send again.
#[derive(Debug)]
pub(super) enum Kept {
    Data(Bytes),
    Trailers(HeaderMap),
}

/// The start of a request body, kept to send again on another connection (see the module
/// docs).
#[derive(Debug)]
pub(crate) struct Replay {
    pub(super) kept: Vec<Kept>,
    /// What `kept` costs: payload plus [`FRAME_COST`] a piece, reserved from the budget.
    pub(super) reserved: Reserved,
    /// More was sent than is kept: no replay.
    lost: bool,
    /// The response came: no more is kept.
    pub(super) keeping: bool,
}

impl Replay {
    pub(super) fn new(budget: &Arc<Budget>) -> Replay {
        Replay {
            kept: Vec::new(),
            reserved: Reserved::none(budget),
            lost: false,
            keeping: true,
        }
    }

    pub(super) fn replayable(&self) -> bool {
        !self.lost
    }

    pub(super) fn keep(&mut self, piece: Kept, len: usize) {
        if !self.keeping || self.lost {
            return;
        }
        let cost = len + FRAME_COST;
        if self.reserved.bytes() + cost <= REPLAY_LIMIT && self.reserved.grow(cost) {
            self.kept.push(piece);
        } else {
            self.lose();
        }
    }

    /// Gives up on sending the body again: what was kept is freed.
    pub(super) fn lose(&mut self) {
        self.lost = true;
        self.kept = Vec::new();
        self.reserved.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_keeps_at_most_its_limit_and_counts_in_the_budget() {
        let budget = Budget::new(1 << 20);
        let mut r = Replay::new(&budget);
        r.keep(Kept::Data(Bytes::from(vec![1u8; 1000])), 1000);
        assert!(r.replayable());
        assert_eq!(budget.used(), 1000 + FRAME_COST);
        r.keep(
            Kept::Data(Bytes::from(vec![2u8; REPLAY_LIMIT])),
            REPLAY_LIMIT,
        );
        assert!(!r.replayable(), "past the limit");
        assert_eq!(budget.used(), 0, "what was kept is freed");
        // Many tiny pieces cost their entries too.
        let mut r = Replay::new(&budget);
        for _ in 0..REPLAY_LIMIT / FRAME_COST {
            r.keep(Kept::Data(Bytes::from_static(b"x")), 1);
        }
        assert!(!r.replayable());
        // A spent budget: nothing kept, no replay.
        let tight = Budget::new(100);
        let mut r = Replay::new(&tight);
        r.keep(Kept::Data(Bytes::from_static(b"abc")), 3);
        assert!(!r.replayable());
        assert_eq!(tight.used(), 0);
    }
}
