//! Reload: SIGHUP (wired in `main.rs`) and any change of the config file or a key file re-read
//! config and keys, build a new [`Runtime`] and swap it in atomically. A bad new config or key is
//! logged, counted (`jwtgate_config_reloads_total{result="error"}`) and ignored: the old one keeps
//! serving. Requests in flight finish on the runtime they started with.
//!
//! Files are watched by polling their contents (once a second by default). That is deliberately
//! simple: it sees Kubernetes' atomic `..data` symlink swaps of Secret and ConfigMap volumes, editors
//! that replace files, and files that appear after being missing, with no inotify edge cases.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tracing::{error, info, warn};

use crate::auth::keys::{Env, Keys};
use crate::config::Config;
use crate::ops::metrics::ResultLabels;
use crate::pipeline::{Gateway, Runtime};

/// Where the environment for keys comes from at each reload (the process environment and
/// `./.env` in production; a fixed set in tests).
pub type EnvSource = Arc<dyn Fn() -> Env + Send + Sync>;

/// Re-reads config and keys into a gateway.
pub struct Reloader {
    gateway: Arc<Gateway>,
    config_path: PathBuf,
    env: EnvSource,
    /// One reload at a time: SIGHUP and the file watcher must not interleave a read of old
    /// files with a swap of new ones.
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

    /// Loads config and keys and swaps them in; on any problem keeps the current ones and
    /// returns every problem.
    pub fn reload(&self) -> Result<(), Vec<String>> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let config = Config::load(&self.config_path);
        let keys = Keys::load(&(self.env)());
        let result = match (config, keys) {
            (Ok(config), Ok(_)) if config.server.tls.is_some() != self.gateway.current().config.server.tls.is_some() => {
                Err(vec![format!(
                    "{}: server.tls was added or removed: switching the listener between HTTP and HTTPS needs a restart",
                    self.config_path.display()
                )])
            }
            (Ok(config), Ok(keys)) => {
                let current = self.gateway.current();
                if config.server.listen != current.config.server.listen
                    || config.server.admin_listen != current.config.server.admin_listen
                {
                    warn!(
                        "server.listen / server.admin_listen changed: that takes effect on restart"
                    );
                }
                self.gateway.swap(Runtime::new(config, &keys));
                Ok(())
            }
            (config, keys) => {
                let mut problems = Vec::new();
                if let Err(e) = config {
                    problems.extend(
                        e.problems
                            .iter()
                            .map(|p| format!("{}: {p}", self.config_path.display())),
                    );
                }
                if let Err(k) = keys {
                    problems.extend(k);
                }
                Err(problems)
            }
        };
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

    /// The files whose change triggers a reload: the config file, the key files in use, the
    /// listener's certificate and key, and route CA files.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.config_path.clone()];
        files.extend(self.gateway.current().watched_files());
        files
    }

    /// Polls the watched files every `interval` and reloads when any of them changes. While
    /// the last reload failed it is retried every [`RETRY_FAILED`] too, since a file the new
    /// config names (and so is not watched yet) may have appeared. Runs until dropped.
    pub async fn watch(self: Arc<Self>, interval: Duration) {
        let mut seen = fingerprint(&self.watched_files());
        let mut failed_at: Option<tokio::time::Instant> = None;
        loop {
            tokio::time::sleep(interval).await;
            let now = fingerprint(&self.watched_files());
            let retry = failed_at.is_some_and(|t| t.elapsed() >= RETRY_FAILED);
            if now != seen || retry {
                info!(retry, "a watched file changed; reloading");
                // What was read is at least as new as `now`: a write landing during the reload
                // differs from `now` and triggers another one.
                seen = now;
                failed_at = match self.reload() {
                    Ok(()) => None,
                    Err(_) => Some(tokio::time::Instant::now()),
                };
            }
        }
    }
}

/// How often a failed reload is retried by the watcher.
pub const RETRY_FAILED: Duration = Duration::from_secs(10);

/// (path, SHA-256 of its contents, or None when unreadable) for each file.
fn fingerprint(files: &[PathBuf]) -> Vec<(PathBuf, Option<[u8; 32]>)> {
    files.iter().map(|p| (p.clone(), read_digest(p))).collect()
}

fn read_digest(path: &Path) -> Option<[u8; 32]> {
    std::fs::read(path).ok().map(|b| Sha256::digest(&b).into())
}
