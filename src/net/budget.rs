//! The process-wide budget of bytes the gateway may hold for peers that do not read
//! (`server.max_buffered_bytes`): what an HTTP/2 upstream may send into a call's receive window
//! before the client takes it, and the request-body copies kept to send again on another
//! connection. A reservation is taken before the bytes can arrive and given back when they can
//! no longer be held ([`Reserved`] frees on drop), so the sum of everything reserved bounds
//! what the process holds, whatever the peers do.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;
use tokio::time::Instant;

/// The budget (see the module docs). Shared by every runtime of the process: a reload changes
/// its limit, not what is reserved.
#[derive(Debug)]
pub struct Budget {
    limit: AtomicUsize,
    used: AtomicUsize,
    /// Told when bytes are given back (reservations waiting for room).
    freed: Notify,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            limit: AtomicUsize::new(limit),
            used: AtomicUsize::new(0),
            freed: Notify::new(),
        })
    }

    /// Changes the limit (a reload); what is reserved stays reserved.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Release);
        self.freed.notify_waiters();
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// `n` bytes, if they fit now.
    pub fn try_reserve(self: &Arc<Self>, n: usize) -> Option<Reserved> {
        self.take(n).then(|| Reserved {
            budget: self.clone(),
            n,
        })
    }

    /// `n` bytes, waiting for room until `deadline`; `None` if there was none by then.
    pub async fn reserve(self: &Arc<Self>, n: usize, deadline: Instant) -> Option<Reserved> {
        loop {
            // Listen before trying, so that bytes given back in between are not missed.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(r) = self.try_reserve(n) {
                return Some(r);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return None;
            }
        }
    }

    fn take(&self, n: usize) -> bool {
        let limit = self.limit.load(Ordering::Acquire);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= limit)
            })
            .is_ok()
    }

    fn give(&self, n: usize) {
        if n > 0 {
            self.used.fetch_sub(n, Ordering::AcqRel);
            self.freed.notify_waiters();
        }
    }
}

/// Bytes reserved from a [`Budget`], given back when dropped.
#[derive(Debug)]
pub struct Reserved {
    budget: Arc<Budget>,
    n: usize,
}

impl Reserved {
    /// Nothing yet, from `budget` (grown with [`Reserved::grow`]).
    pub fn none(budget: &Arc<Budget>) -> Reserved {
        Reserved {
            budget: budget.clone(),
            n: 0,
        }
    }

    /// Reserves `n` more bytes if they fit; false (and nothing changed) if not.
    pub fn grow(&mut self, n: usize) -> bool {
        let fits = self.budget.take(n);
        if fits {
            self.n += n;
        }
        fits
    }

    /// Gives back everything reserved so far.
    pub fn clear(&mut self) {
        self.budget.give(std::mem::take(&mut self.n));
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.n
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_fit_the_limit_and_come_back() {
        let b = Budget::new(100);
        let a = b.try_reserve(60).unwrap();
        assert!(b.try_reserve(41).is_none());
        let mut c = b.try_reserve(40).unwrap();
        assert_eq!(b.used(), 100);
        assert!(!c.grow(1));
        drop(a);
        assert!(c.grow(60));
        assert_eq!((b.used(), c.bytes()), (100, 100));
        c.clear();
        assert_eq!(b.used(), 0);
        b.set_limit(10);
        assert!(b.try_reserve(11).is_none());
        let mut grown = Reserved::none(&b);
        assert!(grown.grow(10));
        drop(grown);
        assert_eq!(b.used(), 0);
    }

    #[tokio::test]
    async fn a_waiting_reservation_gets_bytes_given_back() {
        let b = Budget::new(10);
        let held = b.try_reserve(10).unwrap();
        let waiting = {
            let b = b.clone();
            tokio::spawn(async move {
                b.reserve(5, Instant::now() + std::time::Duration::from_secs(30))
                    .await
                    .map(|r| r.bytes())
            })
        };
        tokio::task::yield_now().await;
        drop(held);
        assert_eq!(waiting.await.unwrap(), Some(5));
        // Nothing given back in time: none.
        let _all = b.try_reserve(10).unwrap();
        let none = b
            .reserve(1, Instant::now() + std::time::Duration::from_millis(20))
            .await;
        assert!(none.is_none());
    }
}
