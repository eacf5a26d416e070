//! An identity provider's keys at run time ([`ProviderKeys`]): the last good key set, and for
//! a JWKS on the network the task that keeps it fresh ([`ProviderKeys::start`]).
//!
//! * Keys from a file (`jwks_file`, `public_key_file`) are read by the runtime's build step and
//!   never change here; a change of the file is a reload.
//! * Keys from a URL are fetched in the background, never on a request: at start (the gateway
//!   serves at once; a token for this provider gets 503 until the keys are in), then every
//!   `refresh` (a shorter `Cache-Control: max-age` wins, down to [`MIN_REFRESH`]).
//! * A token naming a `kid` the set does not have asks for a refetch ([`ProviderKeys::refetch`]).
//!   Fetches start at most one per [`REFETCH_INTERVAL`] (counted from the start of any fetch:
//!   a periodic refresh, a retry, another refetch), so made-up `kid`s cannot hammer the
//!   provider; a refetch asked for sooner is deferred to the end of that window, never dropped.
//!   The request waits for the next fetch (at most [`KID_WAIT`] in all) and is verified again:
//!   a token signed with a key just published passes, whatever fetched last. Waits are counted
//!   (`jwtgate_jwks_kid_waits_total`).
//! * A failed, slow or garbled fetch keeps the last good keys, is logged and counted, and is
//!   retried with backoff ([`FIRST_RETRY`] doubling to [`MAX_RETRY`], with jitter).
//! * A successful fetch replaces the set: a key that left the JWKS stops verifying, and the
//!   verified-token cache drops what it verified (entries are tied to their key).
//!
//! The task holds the state weakly: when a reload drops the provider, its task ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use http::Uri;
use rand::Rng;
use tokio::sync::{watch, Notify};
use tracing::{info, warn};

use super::fetch;
use super::jwk::{self, PublicKey};
use crate::config::{Algorithm, MIN_REFRESH};
use crate::ops::metrics::{FetchMetrics, ProviderLabels, ProviderResultLabels};

/// Least time between the start of a fetch and a refetch asked for by an unknown `kid`.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(5);
/// Longest a request with an unknown `kid` waits for the next fetch.
pub const KID_WAIT: Duration = Duration::from_secs(6);
/// First retry after a failed fetch.
pub const FIRST_RETRY: Duration = Duration::from_millis(250);
/// Longest wait between retries of a failing fetch.
pub const MAX_RETRY: Duration = Duration::from_secs(30);

/// Where a provider's keys come from at run time.
#[derive(Debug)]
struct Remote {
    url: Uri,
    discovery: bool,
    tls: Arc<rustls::ClientConfig>,
    refresh: Duration,
    /// The provider's algorithms: a JWKS with no key for any of them is a failed fetch.
    algorithms: Vec<Algorithm>,
}

/// One provider's keys: the last good set, and how to refresh it.
#[derive(Debug)]
pub struct ProviderKeys {
    /// The provider's issuer (its name in logs and metrics).
    pub issuer: String,
    keys: ArcSwapOption<Vec<PublicKey>>,
    remote: Option<Arc<Remote>>,
    started: AtomicBool,
    /// Replaced by a reload: its task stops, and stops writing metrics under the issuer's name.
    retired: AtomicBool,
    wake: Arc<Notify>,
    /// A fetch is asked for or under way.
    fetching: AtomicBool,
    /// When the last fetch started (any: first, periodic, retry, refetch).
    last_fetch: Mutex<Option<Instant>>,
    /// A refetch was asked for within [`REFETCH_INTERVAL`] of the last fetch: the refresh
    /// task starts it when the window ends.
    deferred: AtomicBool,
    /// Counts waits (set when the refresh task starts).
    metrics: std::sync::OnceLock<FetchMetrics>,
    /// Bumped after each fetch, for requests waiting on one.
    fetched: watch::Sender<u64>,
}

impl ProviderKeys {
    /// A provider whose keys are fixed (read from a file by the build step).
    pub fn fixed(issuer: &str, keys: Vec<PublicKey>) -> ProviderKeys {
        let p = ProviderKeys::new(issuer, None);
        p.keys.store(Some(Arc::new(keys)));
        p
    }

    /// A provider whose keys are fetched from `url` (the JWKS, or with `discovery` the
    /// discovery document); none until [`ProviderKeys::start`]'s first fetch.
    pub fn remote(
        issuer: &str,
        url: Uri,
        discovery: bool,
        tls: Arc<rustls::ClientConfig>,
        refresh: Duration,
        algorithms: &[Algorithm],
    ) -> ProviderKeys {
        ProviderKeys::new(
            issuer,
            Some(Remote {
                url,
                discovery,
                tls,
                refresh,
                algorithms: algorithms.to_vec(),
            }),
        )
    }

    fn new(issuer: &str, remote: Option<Remote>) -> ProviderKeys {
        // Keys on the network: the first fetch is owed; keys from a file: none ever is.
        let fetching = AtomicBool::new(remote.is_some());
        ProviderKeys {
            issuer: issuer.to_owned(),
            keys: ArcSwapOption::empty(),
            remote: remote.map(Arc::new),
            started: AtomicBool::new(false),
            retired: AtomicBool::new(false),
            wake: Arc::new(Notify::new()),
            fetching,
            last_fetch: Mutex::new(None),
            deferred: AtomicBool::new(false),
            metrics: std::sync::OnceLock::new(),
            fetched: watch::channel(0).0,
        }
    }

    /// A provider with no keys and no way to get any (a verifier built without them).
    pub fn unavailable(issuer: &str) -> ProviderKeys {
        ProviderKeys::new(issuer, None)
    }

    /// True when a key with this id is in the current set.
    pub fn has(&self, id: super::cache::KeyId) -> bool {
        self.keys
            .load()
            .as_ref()
            .is_some_and(|keys| keys.iter().any(|k| k.id == id))
    }

    /// The current keys; `None` until the first good fetch.
    pub fn current(&self) -> Option<Arc<Vec<PublicKey>>> {
        self.keys.load_full()
    }

    /// True once keys are loaded.
    pub fn is_ready(&self) -> bool {
        self.keys.load().is_some()
    }

    /// True for keys fetched from a URL.
    pub fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// The URL fetched first, for keys on the network.
    pub fn url(&self) -> Option<&Uri> {
        self.remote.as_ref().map(|r| &r.url)
    }

    /// Asks for a refetch because a token named an unknown `kid`. True when a fetch is under
    /// way or now asked for (worth waiting for, [`ProviderKeys::wait_fetch`]): at once when the
    /// last fetch started [`REFETCH_INTERVAL`] ago or more, else when that window ends. False
    /// only when the keys come from a file.
    pub fn refetch(&self) -> bool {
        if self.remote.is_none() || !self.started.load(Ordering::Acquire) {
            return false;
        }
        // A fetch under way may have started before the key was published: ask for the next
        // one too (the request waits for a fetch that starts after it asked, see
        // `http::decide`).
        if !self.deferred.swap(true, Ordering::AcqRel) {
            self.wake.notify_one();
        }
        true
    }

    /// When the refresh task may start a refetch: [`REFETCH_INTERVAL`] after the last fetch
    /// started.
    fn refetch_at(&self) -> Option<Instant> {
        let last = self.last_fetch.lock().unwrap_or_else(|e| e.into_inner());
        last.map(|t| t + REFETCH_INTERVAL)
    }

    /// Starts from `keys` (the keys of the provider this one replaces in a reload, from the
    /// same URL) instead of none, so that a reload that changes only `refresh` or `algorithms`
    /// leaves no gap; the first fetch replaces them.
    pub fn seed(&self, keys: Option<Arc<Vec<PublicKey>>>) {
        if self.keys.load().is_none() {
            self.keys.store(keys);
        }
    }

    /// Marks the provider as replaced by a reload: its refresh task ends.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// How many fetches have ended (well or not).
    pub fn fetches(&self) -> u64 {
        *self.fetched.borrow()
    }

    /// Waits until more than `seen` fetches have ended, at most `limit`; counted in
    /// `jwtgate_jwks_kid_waits_total` (`fetched` or `timeout`).
    pub async fn wait_fetch(&self, seen: u64, limit: Duration) {
        let mut rx = self.fetched.subscribe();
        let waited = tokio::time::timeout(limit, rx.wait_for(|n| *n > seen)).await;
        if let Some(m) = self.metrics.get() {
            let result = match waited {
                Ok(Ok(_)) => "fetched",
                _ => "timeout",
            };
            m.kid_waits
                .get_or_create(&ProviderResultLabels {
                    provider: self.issuer.clone(),
                    result,
                })
                .inc();
        }
    }

    /// Starts the refresh task on `handle` (once; a provider kept over a reload keeps its
    /// task). Keys from a file need none.
    pub fn start(self: &Arc<Self>, handle: &tokio::runtime::Handle, metrics: FetchMetrics) {
        if self.remote.is_none() {
            let n = self.current().map_or(0, |k| k.len());
            metrics.keys.get_or_create(&self.labels()).set(n as i64);
            return;
        }
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.metrics.set(metrics.clone());
        handle.spawn(refresh(Arc::downgrade(self), metrics));
    }

    fn labels(&self) -> ProviderLabels {
        ProviderLabels {
            provider: self.issuer.clone(),
        }
    }

    /// One fetch now, outside the refresh task (`jwtgate check --fetch`): the keys found and
    /// the keys skipped, or why none could be had.
    pub async fn fetch_once(&self) -> Result<(Vec<PublicKey>, Vec<String>), String> {
        match &self.remote {
            None => Ok((Vec::new(), Vec::new())),
            Some(remote) => fetch_keys(self.issuer.clone(), remote.clone())
                .await
                .map(|(k, _)| k),
        }
    }

    fn finish_fetch(&self) {
        self.fetching.store(false, Ordering::Release);
        self.fetched.send_modify(|n| *n += 1);
    }
}

impl Drop for ProviderKeys {
    fn drop(&mut self) {
        // Ends the refresh task now rather than at its next timer.
        self.wake.notify_one();
    }
}

/// Ends a fetch when dropped: even a panic in the fetch cannot leave requests waiting on it.
struct Fetching<'a>(&'a ProviderKeys);

impl Drop for Fetching<'_> {
    fn drop(&mut self) {
        self.0.finish_fetch();
    }
}

/// One fetch and parse: the usable keys, those skipped, and the `Cache-Control: max-age`. It
/// runs as a task of its own, so that even a panic in it is only a failed fetch.
async fn fetch_keys(
    issuer: String,
    remote: Arc<Remote>,
) -> Result<((Vec<PublicKey>, Vec<String>), Option<Duration>), String> {
    let task = tokio::spawn(async move {
        let fetched = fetch::jwks(&remote.url, remote.discovery, &issuer, &remote.tls).await?;
        let (keys, skipped) =
            jwk::parse_jwks(&issuer, &fetched.body).map_err(|e| format!("{}: {e}", remote.url))?;
        jwk::fit_any(&keys, &remote.algorithms).map_err(|e| format!("{}: {e}", remote.url))?;
        Ok(((keys, skipped), fetched.max_age))
    });
    task.await
        .unwrap_or_else(|e| Err(format!("the fetch failed: {e}")))
}

/// When to fetch again after a good fetch: `refresh`, or a shorter `max-age`, but never sooner
/// than [`MIN_REFRESH`].
fn next_refresh(refresh: Duration, max_age: Option<Duration>) -> Duration {
    max_age
        .map_or(refresh, |age| age.min(refresh))
        .max(MIN_REFRESH)
}

/// The refresh task: fetch, then sleep until the next refresh, a retry, or a refetch asked for.
async fn refresh(provider: Weak<ProviderKeys>, metrics: FetchMetrics) {
    let mut retry = FIRST_RETRY;
    loop {
        let Some(p) = provider.upgrade() else { return };
        if p.retired.load(Ordering::Acquire) {
            p.finish_fetch();
            return;
        }
        let Some(remote) = p.remote.clone() else {
            return;
        };
        let labels = |result: &'static str| ProviderResultLabels {
            provider: p.issuer.clone(),
            result,
        };
        let fetching = Fetching(&p);
        *p.last_fetch.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        // This fetch serves a deferred refetch too.
        p.deferred.store(false, Ordering::Release);
        let outcome = fetch_keys(p.issuer.clone(), remote.clone()).await;
        if p.retired.load(Ordering::Acquire) {
            return;
        }
        let wait = match outcome {
            Ok(((keys, skipped), max_age)) => {
                let kids: Vec<&str> = keys.iter().filter_map(|k| k.kid.as_deref()).collect();
                let changed = p.current().is_none_or(|old| {
                    old.len() != keys.len() || old.iter().zip(&keys).any(|(a, b)| a.id != b.id)
                });
                if changed {
                    info!(provider = %p.issuer, keys = keys.len(), kids = ?kids, "provider keys loaded");
                }
                if !skipped.is_empty() && changed {
                    warn!(provider = %p.issuer, skipped = ?skipped, "some JWKS keys are not usable and were skipped");
                }
                // Only the keys that can verify one of the provider's algorithms count.
                let usable = keys
                    .iter()
                    .filter(|k| remote.algorithms.iter().any(|&a| k.fits(a)))
                    .count();
                metrics.keys.get_or_create(&p.labels()).set(usable as i64);
                p.keys.store(Some(Arc::new(keys)));
                metrics.fetches.get_or_create(&labels("ok")).inc();
                retry = FIRST_RETRY;
                next_refresh(remote.refresh, max_age)
            }
            Err(e) => {
                let kept = p.is_ready();
                warn!(provider = %p.issuer, error = %e, retry_in = ?retry, kept_last_good_keys = kept, "provider key fetch failed");
                metrics.fetches.get_or_create(&labels("error")).inc();
                let wait = retry;
                retry = (retry * 2).min(MAX_RETRY);
                wait
            }
        };
        drop(fetching);
        // Jitter of up to a fifth, so that many gateways do not fetch in step.
        let jitter = rand::rng().random_range(0.0..0.2);
        let wait = wait.mul_f64(1.0 + jitter);
        let wake = p.wake.clone();
        drop(p);
        if !idle(&provider, &wake, Instant::now() + wait).await {
            return;
        }
        if let Some(p) = provider.upgrade() {
            p.fetching.store(true, Ordering::Release);
        }
    }
}

/// Waits until `until` (the next periodic fetch or retry), or until a refetch is asked for and
/// the window after the last fetch's start has ended. A stray wake (a stored permit, a reload
/// that keeps the provider) goes back to waiting. False when the provider is gone or retired.
async fn idle(provider: &Weak<ProviderKeys>, wake: &Notify, until: Instant) -> bool {
    let mut until = until;
    let mut deferred = false;
    loop {
        let woke = tokio::select! {
            _ = tokio::time::sleep_until(until.into()) => false,
            _ = wake.notified() => true,
        };
        let Some(p) = provider.upgrade() else {
            return false;
        };
        if p.retired.load(Ordering::Acquire) {
            return false;
        }
        if !woke {
            return true;
        }
        // A refetch asked for: not before the window after the last fetch's start ends (the
        // requests asking for it wait).
        if !deferred && p.deferred.load(Ordering::Acquire) {
            deferred = true;
            match p.refetch_at() {
                Some(at) if at < until => until = at,
                Some(_) => {}
                None => return true,
            }
            if until <= Instant::now() {
                return true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_shortens_the_refresh_down_to_30s() {
        let five = Duration::from_secs(300);
        assert_eq!(next_refresh(five, None), five);
        assert_eq!(
            next_refresh(five, Some(Duration::from_secs(60))),
            Duration::from_secs(60)
        );
        assert_eq!(
            next_refresh(five, Some(Duration::from_secs(5))),
            MIN_REFRESH
        );
        assert_eq!(next_refresh(five, Some(Duration::ZERO)), MIN_REFRESH);
        assert_eq!(next_refresh(five, Some(Duration::from_secs(86_400))), five);
    }
}
