//! The drain signal: set once, when the gateway starts draining; every connection watches it
//! (an idle one closes at once, a busy one after its exchange).

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

/// The drain signal connections watch: set once, when the gateway starts draining.
#[derive(Debug, Default)]
pub struct Closing {
    set: AtomicBool,
    notify: Notify,
}

impl Closing {
    /// True once draining.
    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// Starts the drain: wakes every connection waiting for a request.
    pub fn set(&self) {
        self.set.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Completes when the drain starts (if created before it does; check [`Closing::is_set`]
    /// after creating it).
    pub fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }
}
