//! Reload: SIGHUP (wired in `main.rs`) and any change of the config file or a key file re-read
//! config and keys, build a new [`Runtime`] from the current one (keeping what did not change)
//! and swap it in atomically. A bad new config or key is logged, counted
//! (`jwtgate_config_reloads_total{result="error"}`) and ignored: the old one keeps serving.
//! Requests in flight finish on the runtime they started with.
//!
//! All of it runs on one thread of its own ([`Reloader::watch`]), never on a request worker:
//! reading and hashing files, parsing, building TLS configs. Files are watched by polling their
//! contents (once a second by default). That is deliberately simple: it sees Kubernetes' atomic
//! `..data` symlink swaps of Secret and ConfigMap volumes, editors that replace files, and files
//! that appear after being missing, with no inotify edge cases.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tracing::{error, info, warn};

use super::{Gateway, Runtime};
use crate::auth::keys::{Env, Keys, RingEntry};
use crate::config::Config;
use crate::ops::metrics::ResultLabels;

/// Where the environment for keys comes from at each reload (the process environment and
/// `./.env` in production; a fixed set in tests).
pub type EnvSource = Arc<dyn Fn() -> Env + Send + Sync>;

/// Re-reads config and keys into a gateway.
pub struct Reloader {
    gateway: Arc<Gateway>,
    config_path: PathBuf,
    env: EnvSource,
    /// One reload at a time: a SIGHUP handled elsewhere and the watcher must not interleave a
    /// read of old files with a swap of new ones.
    lock: std::sync::Mutex<()>,
}

impl Reloader {
    /// A reloader for `gateway`, reading `config_path` and keys from `env`.
    pub fn new(gateway: Arc<Gateway>, config_path: PathBuf, env: EnvSource) -> Reloader {
        Reloader {
            gateway,
            config_path,
            env,
            lock: std::sync::Mutex::new(()),
        }
    }

    /// Loads config and keys, builds a runtime and swaps it in, on the calling thread; on any
    /// problem keeps the current one and returns every problem.
    pub fn reload(&self) -> Result<(), Vec<String>> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let result = self.build().map(|runtime| self.gateway.swap(runtime));
        let label = match &result {
            Ok(()) => {
                info!(config = %self.config_path.display(), "reloaded config and keys");
                "ok"
            }
            Err(problems) => {
                error!(problems = ?problems, "reload refused; still serving the previous config and keys");
                "error"
            }
        };
        self.gateway
            .metrics
            .reloads
            .get_or_create(&ResultLabels { result: label })
            .inc();
        result
    }

    fn build(&self) -> Result<Runtime, Vec<String>> {
        let file = |p: &dyn std::fmt::Display| format!("{}: {p}", self.config_path.display());
        let config = Config::load(&self.config_path);
        let providers = config.as_ref().is_ok_and(|c| !c.auth.providers.is_empty());
        let keys = Keys::load_for(&(self.env)(), providers);
        let (config, keys) = match (config, keys) {
            (Ok(config), Ok(keys)) => (config, keys),
            (config, keys) => {
                let mut problems: Vec<String> = Vec::new();
                if let Err(e) = config {
                    problems.extend(e.problems.iter().map(|p| file(p)));
                }
                if let Err(k) = keys {
                    problems.extend(k);
                }
                return Err(problems);
            }
        };
        let current = self.gateway.current();
        if config.server.tls.is_some() != current.config.server.tls.is_some() {
            return Err(vec![file(&"server.tls was added or removed: switching the listener between HTTP and HTTPS needs a restart")]);
        }
        // The listeners are bound at start: which ones there are, and whether each speaks
        // TLS, cannot change under them.
        let checks = |c: &crate::config::Config| c.forward_auth.as_ref().map(|f| f.tls.is_some());
        if checks(&config) != checks(&current.config)
            || config.server.listen.is_some() != current.config.server.listen.is_some()
        {
            return Err(vec![file(&"a listener was added or removed ([forward_auth], forward_auth.tls or server.listen): that needs a restart")]);
        }
        let check_listen = |c: &crate::config::Config| c.forward_auth.as_ref().map(|f| f.listen);
        if config.server.listen != current.config.server.listen
            || config.server.admin_listen != current.config.server.admin_listen
            || check_listen(&config) != check_listen(&current.config)
        {
            warn!("server.listen / server.admin_listen / forward_auth.listen changed: that takes effect on restart");
        }
        if config.telemetry != current.config.telemetry {
            warn!("[telemetry] changed: tracing keeps its settings until a restart");
        }
        Runtime::build(config, &keys, Some(&current))
            .map_err(|e| e.problems.iter().map(|p| file(p)).collect())
    }

    /// The files whose change triggers a reload: the config file, the key files in use, the
    /// listener's certificate and key, and route CA files.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.config_path.clone()];
        files.extend(self.gateway.current().watched_files());
        files
    }

    /// Starts the reload thread: it polls the watched files every `interval` and reloads when
    /// any of them changes, and reloads when asked ([`Watcher::reload`], for SIGHUP). While the
    /// last reload failed it is retried every [`RETRY_FAILED`] too, since a file the new config
    /// names (and so is not watched yet) may have appeared. The thread ends when the returned
    /// [`Watcher`] is dropped.
    pub fn watch(self: Arc<Self>, interval: Duration) -> Watcher {
        let (tx, rx) = mpsc::channel();
        // The files as they are now, before the thread starts: a change made once this returns
        // is seen however late the thread gets to run.
        let seen = fingerprint(&self.watched_files());
        let thread = std::thread::Builder::new()
            .name("jwtgate-reload".into())
            .spawn(move || self.run(&rx, interval, seen))
            .map_err(|e| error!(error = %e, "cannot start the reload thread; reloads are off"))
            .ok();
        Watcher { tx, thread }
    }

    fn run(
        &self,
        rx: &mpsc::Receiver<Command>,
        interval: Duration,
        mut seen: Vec<(PathBuf, Option<[u8; 32]>)>,
    ) {
        let mut failed_at: Option<Instant> = None;
        let mut next = Instant::now() + interval;
        loop {
            let asked = match rx.recv_timeout(next.saturating_duration_since(Instant::now())) {
                Ok(Command::Reload) => true,
                Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => false,
            };
            let now = fingerprint(&self.watched_files());
            let retry = failed_at.is_some_and(|t| t.elapsed() >= RETRY_FAILED);
            if asked || now != seen || retry {
                if !asked {
                    info!(retry, "a watched file changed; reloading");
                }
                // What was read is at least as new as `now`: a write landing during the reload
                // differs from `now` and triggers another one.
                seen = now;
                failed_at = match self.reload() {
                    Ok(()) => None,
                    Err(_) => Some(Instant::now()),
                };
            }
            if !asked {
                next = Instant::now() + interval;
            }
        }
    }
}

#[derive(Debug)]
enum Command {
    Reload,
    Stop,
}

/// The reload thread's handle: asks it to reload, and stops it when dropped.
#[derive(Debug)]
pub struct Watcher {
    tx: mpsc::Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Asks the reload thread to reload now (SIGHUP).
    pub fn reload(&self) {
        if self.tx.send(Command::Reload).is_err() {
            error!("the reload thread is gone: reloads are off until a restart");
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // Not joined: a reload stuck on a hung file read (a network mount) must not hold the
        // process's exit. The thread ends after the reload under way, if any.
        let _ = self.tx.send(Command::Stop);
        drop(self.thread.take());
    }
}

/// How often a failed reload is retried by the watcher.
pub const RETRY_FAILED: Duration = Duration::from_secs(10);

/// (path, SHA-256 of its contents, or None when unreadable) for each file.
fn fingerprint(files: &[PathBuf]) -> Vec<(PathBuf, Option<[u8; 32]>)> {
    files.iter().map(|p| (p.clone(), read_digest(p))).collect()
}

/// A file's SHA-256; for a directory (the key ring), one over the names and contents of the
/// files in it whose names do not begin with `.`, so that a key added, changed or removed
/// (or a Secret volume's `..data` swapped) changes it.
fn read_digest(path: &Path) -> Option<[u8; 32]> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return std::fs::read(path).ok().map(|b| Sha256::digest(&b).into());
    }
    // Only what could be a key is read: a FIFO would block the reload thread, a device or a
    // large stray file would be read every second.
    let mut all = Sha256::new();
    for (name, entry) in crate::auth::keys::ring_entries(path).ok()? {
        all.update(name.as_bytes());
        all.update([0]);
        match entry {
            RingEntry::Key(file) => match std::fs::read(file) {
                Ok(bytes) => all.update(Sha256::digest(&bytes)),
                Err(_) => all.update([1]),
            },
            RingEntry::TooLarge(len) => {
                all.update([2]);
                all.update(len.to_le_bytes());
            }
            _ => all.update([3]),
        }
    }
    Some(all.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_ring_directory_changes_its_digest_with_its_keys_and_never_opens_a_fifo() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "key-a").unwrap();
        let first = read_digest(dir.path()).unwrap();
        // Bookkeeping (a Secret volume's dot entries) and a FIFO: the digest is read at once
        // (opening the FIFO would block) and does not move for the dot entry.
        std::fs::write(dir.path().join("..data"), "x").unwrap();
        assert_eq!(read_digest(dir.path()).unwrap(), first);
        assert!(std::process::Command::new("mkfifo")
            .arg(dir.path().join("pipe"))
            .status()
            .unwrap()
            .success());
        let with_fifo = read_digest(dir.path()).unwrap();
        std::fs::write(dir.path().join("b"), "key-b").unwrap();
        let added = read_digest(dir.path()).unwrap();
        assert_ne!(added, with_fifo);
        std::fs::write(dir.path().join("b"), "key-b2").unwrap();
        assert_ne!(read_digest(dir.path()).unwrap(), added);
        std::fs::remove_file(dir.path().join("b")).unwrap();
        assert_eq!(read_digest(dir.path()).unwrap(), with_fifo);
    }
}
