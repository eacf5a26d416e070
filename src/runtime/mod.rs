//! The runtime: everything built from one config and key set ([`Runtime::build`]: the
//! pipeline's verifier and route table, TLS configs from the files the config names, upstream
//! pools), the [`Gateway`] that holds the current one for new requests (an `ArcSwap`), and its
//! reload ([`reload`]), which runs off the request workers.
//!
//! A reload builds a new runtime from the previous one and keeps what did not change: the pool
//! (with its idle connections) of every upstream whose address and TLS setup are the same, the
//! verified-token cache when nothing that shapes an identity changed (an entry still never
//! outlives its key), and TLS configs whose files have the same contents.

pub mod reload;
pub mod tls;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::auth::assertion::Signer;
use crate::auth::keys::Keys;
use crate::auth::provider::ProviderKeys;
use crate::auth::{self, jwk, Verifier};
use crate::config::{Config, KeySource, Problem};
use crate::net::Budget;
use crate::ops::access::Record;
use crate::ops::metrics::{Metrics, ReasonLabels};
use crate::pipeline::{HeaderPolicy, Pipeline, Rejection};
use crate::policy::{Route, RouteTable};
use crate::upstream::{Origin, Timeouts, UpstreamTls, Upstreams};
use crate::wire::HeadLimits;

/// Everything built from one config + key set.
#[derive(Debug)]
pub struct Runtime {
    /// The validated configuration.
    pub config: Config,
    /// The key files the keys came from (watched for changes).
    pub key_files: Vec<PathBuf>,
    pipeline: Pipeline,
    upstreams: Upstreams,
    /// The listener's TLS config, and the digests of the files it was built from.
    listener_tls: Option<(Arc<rustls::ServerConfig>, [u8; 32])>,
    /// The same for the forward-auth listener (`forward_auth.tls`).
    check_tls: Option<(Arc<rustls::ServerConfig>, [u8; 32])>,
    /// The TLS setups of routes and providers with a CA file, by file, with the file's digest.
    ca_tls: HashMap<PathBuf, ([u8; 32], UpstreamTls)>,
    head_limits: HeadLimits,
    /// Each provider's keys, with what they were built from (a reload keeps a provider's
    /// fetched keys and its refresh task when that is unchanged).
    providers: Vec<(ProviderOrigin, Arc<ProviderKeys>)>,
    /// The process's budget of bytes held for slow peers (`server.max_buffered_bytes`), kept
    /// over reloads (what is reserved stays reserved; a reload changes the limit).
    budget: Arc<Budget>,
}

/// What a provider's keys are built from.
#[derive(Debug, Clone, PartialEq)]
struct ProviderOrigin {
    issuer: String,
    source: KeySource,
    refresh: std::time::Duration,
    algorithms: Vec<crate::config::Algorithm>,
    /// The digest of the CA file of a URL source.
    digest: Option<[u8; 32]>,
}

/// What kept a runtime from being built: every problem with the files the config names.
#[derive(Debug, Clone)]
pub struct BuildError {
    /// The problems, keyed like config problems (`server.tls.cert`, `route[1].ca_file`).
    pub problems: Vec<Problem>,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(f, "{n} problem{}", if n == 1 { "" } else { "s" })?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for BuildError {}

impl Runtime {
    /// Builds the runtime for `config` and `keys`, reusing from `previous` what did not change
    /// (see the module docs). Reads the files the config names; never the network.
    pub fn build(
        config: Config,
        keys: &Keys,
        previous: Option<&Runtime>,
    ) -> Result<Runtime, BuildError> {
        let mut problems = Vec::new();
        let listener_tls = config.server.tls.as_ref().and_then(|files| {
            let reuse = previous.and_then(|p| p.listener_tls.as_ref());
            listener_tls_of(files, "server.tls", reuse, &mut problems)
        });
        let check_tls = config
            .forward_auth
            .as_ref()
            .and_then(|f| f.tls.as_ref())
            .and_then(|files| {
                let reuse = previous.and_then(|p| p.check_tls.as_ref());
                listener_tls_of(files, "forward_auth.tls", reuse, &mut problems)
            });
        let mut ca_tls: HashMap<PathBuf, ([u8; 32], UpstreamTls)> = HashMap::new();
        let mut route_upstreams = Vec::with_capacity(config.routes.len());
        for (i, route) in config.routes.iter().enumerate() {
            let Some(upstream) = &route.upstream else {
                route_upstreams.push(None);
                continue;
            };
            let https = upstream.scheme_str() == Some("https");
            let tls = match (&route.ca_file, https) {
                (_, false) => None,
                (None, true) => Some(UpstreamTls {
                    config: tls::default_client_config(),
                    id: 0,
                }),
                (Some(path), true) => ca_client(
                    path,
                    &format!("route[{i}].ca_file"),
                    previous,
                    &mut ca_tls,
                    &mut problems,
                )
                .map(|(_, t)| t),
            };
            route_upstreams.push(Some((upstream.clone(), tls)));
        }
        let providers = build_providers(&config, previous, &mut ca_tls, &mut problems);
        let signer = config
            .auth
            .assertion
            .as_ref()
            .and_then(|a| Signer::load(a, &mut problems));
        if !problems.is_empty() {
            return Err(BuildError { problems });
        }
        let provider_keys: Vec<Arc<ProviderKeys>> =
            providers.iter().map(|(_, k)| k.clone()).collect();
        let pipeline = Pipeline::new(
            RouteTable::build(&config.routes),
            Verifier::build(
                &config.auth,
                keys,
                &provider_keys,
                previous.map(|p| p.pipeline.verifier()),
            ),
            HeaderPolicy::new(&config.auth),
            signer,
            &config,
        );
        let budget = match previous {
            Some(p) => {
                p.budget.set_limit(config.server.max_buffered_bytes);
                p.budget.clone()
            }
            None => Budget::new(config.server.max_buffered_bytes),
        };
        let upstreams = Upstreams::build(
            &route_upstreams,
            Timeouts {
                connect: config.server.connect_timeout,
                response: config.server.upstream_timeout,
                max_connecting: config.server.max_connecting,
                max_streams: config.server.upstream_max_streams,
            },
            &budget,
            previous.map(|p| &p.upstreams),
        );
        Ok(Runtime {
            head_limits: HeadLimits {
                max_bytes: config.server.max_header_bytes,
                max_fields: config.server.max_headers,
            },
            key_files: keys.files.clone(),
            config,
            pipeline,
            upstreams,
            listener_tls,
            check_tls,
            ca_tls,
            providers,
            budget,
        })
    }

    /// Starts the key refresh of every provider whose keys are on the network (once per
    /// provider: one kept over a reload keeps its task).
    pub fn start_providers(&self, handle: &tokio::runtime::Handle, metrics: &Metrics) {
        for (_, keys) in &self.providers {
            keys.start(handle, metrics.providers.clone());
        }
    }

    /// True when every provider has keys.
    pub fn providers_ready(&self) -> bool {
        self.providers.iter().all(|(_, k)| k.is_ready())
    }

    /// The providers' keys, in config order.
    pub fn providers(&self) -> impl Iterator<Item = &Arc<ProviderKeys>> {
        self.providers.iter().map(|(_, k)| k)
    }

    /// The process's budget of bytes held for peers (`server.max_buffered_bytes`).
    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    /// The pipeline requests are decided by.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// The upstream of `route` (`None` for a route only forward-auth checks reach, which the
    /// inline listener never routes to).
    pub fn origin(&self, route: &Route) -> Option<&Arc<Origin>> {
        self.upstreams.for_route(route.id)
    }

    /// The inline listener's TLS config (`server.tls`), for new connections.
    pub fn listener_tls(&self) -> Option<&Arc<rustls::ServerConfig>> {
        self.listener_tls.as_ref().map(|(c, _)| c)
    }

    /// The forward-auth listener's TLS config (`forward_auth.tls`), for new connections.
    pub fn check_tls(&self) -> Option<&Arc<rustls::ServerConfig>> {
        self.check_tls.as_ref().map(|(c, _)| c)
    }

    /// The limits request heads are read with.
    pub fn head_limits(&self) -> HeadLimits {
        self.head_limits
    }

    /// Files whose change should trigger a reload besides the config file: key files, the
    /// listener's certificate and key, and route CA files.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut files = self.key_files.clone();
        files.extend(self.config.files());
        files
    }
}

/// A listener's TLS config from `files` (problems under `key`), reusing `previous` when the
/// files' contents are the same.
fn listener_tls_of(
    files: &crate::config::TlsFiles,
    key: &str,
    previous: Option<&(Arc<rustls::ServerConfig>, [u8; 32])>,
    problems: &mut Vec<Problem>,
) -> Option<(Arc<rustls::ServerConfig>, [u8; 32])> {
    let cert = read(&files.cert, &format!("{key}.cert"), problems);
    let tls_key = read(&files.key, &format!("{key}.key"), problems);
    let (cert, tls_key) = (cert?, tls_key?);
    let digest = Sha256::new()
        .chain_update(&cert)
        .chain_update([0])
        .chain_update(&tls_key)
        .finalize()
        .into();
    if let Some((config, _)) = previous.filter(|(_, d)| *d == digest) {
        return Some((config.clone(), digest));
    }
    match tls::server_config(&cert, &tls_key) {
        Ok(c) => Some((c, digest)),
        Err((part, why)) => {
            let path = if part == "cert" {
                &files.cert
            } else {
                &files.key
            };
            problems.push(Problem::new(
                format!("{key}.{part}"),
                format!("{}: {why}", path.display()),
            ));
            None
        }
    }
}

/// Each provider's keys: read from its file, or (for a URL) made ready to be fetched, reusing
/// the previous runtime's when nothing they are built from changed. Never the network.
fn build_providers(
    config: &Config,
    previous: Option<&Runtime>,
    ca_tls: &mut HashMap<PathBuf, ([u8; 32], UpstreamTls)>,
    problems: &mut Vec<Problem>,
) -> Vec<(ProviderOrigin, Arc<ProviderKeys>)> {
    let mut built = Vec::new();
    for (i, p) in config.auth.providers.iter().enumerate() {
        let key = format!("auth.provider[{i}]");
        let origin = |digest| ProviderOrigin {
            issuer: p.issuer.clone(),
            source: p.source.clone(),
            refresh: p.refresh,
            algorithms: p.algorithms.clone(),
            digest,
        };
        let (digest, keys) = match &p.source {
            KeySource::JwksFile(path) | KeySource::PublicKeyFile(path) => {
                let jwks = matches!(p.source, KeySource::JwksFile(_));
                let file_key = format!(
                    "{key}.{}",
                    if jwks { "jwks_file" } else { "public_key_file" }
                );
                let Some(bytes) = read(path, &file_key, problems) else {
                    continue;
                };
                let parsed = if jwks {
                    jwk::parse_jwks(&p.issuer, &bytes).map(|(keys, _skipped)| keys)
                } else {
                    jwk::parse_pem(&p.issuer, &bytes).map(|k| vec![k])
                };
                let mut keys = match parsed {
                    Ok(keys) => keys,
                    Err(why) => {
                        problems.push(Problem::new(file_key, format!("{}: {why}", path.display())));
                        continue;
                    }
                };
                if let Err(why) = jwk::fit_any(&keys, &p.algorithms) {
                    problems.push(Problem::new(file_key, format!("{}: {why}", path.display())));
                    continue;
                }
                // Keys that verify none of the provider's algorithms are of no use (and not
                // counted in `jwtgate_jwks_keys`).
                keys.retain(|k| p.algorithms.iter().any(|&a| k.fits(a)));
                // Read again at every build: nothing of a file provider is kept over a reload
                // (a cached token stays valid while its key, by content, is still there).
                (None, Arc::new(ProviderKeys::fixed(&p.issuer, keys)))
            }
            KeySource::JwksUrl(url) | KeySource::Discovery(url) => {
                let (digest, tls) = match &p.ca_file {
                    None => (None, tls::default_client_config()),
                    Some(path) => {
                        match ca_client(path, &format!("{key}.ca_file"), previous, ca_tls, problems)
                        {
                            Some((digest, t)) => (Some(digest), t.config),
                            None => continue,
                        }
                    }
                };
                let origin = origin(digest);
                if let Some((_, keys)) =
                    previous.and_then(|prev| prev.providers.iter().find(|(o, _)| *o == origin))
                {
                    built.push((origin, keys.clone()));
                    continue;
                }
                let keys = ProviderKeys::remote(
                    &p.issuer,
                    url.clone(),
                    matches!(p.source, KeySource::Discovery(_)),
                    tls,
                    p.refresh,
                    &p.algorithms,
                );
                // Only `refresh` or `algorithms` changed: the keys from the same URL serve
                // until the first fetch (each token's algorithm is checked against them anyway).
                let same_url = previous.and_then(|prev| {
                    prev.providers.iter().find(|(o, _)| {
                        o.issuer == origin.issuer
                            && o.source == origin.source
                            && o.digest == origin.digest
                    })
                });
                keys.seed(same_url.and_then(|(_, k)| k.current()));
                (digest, Arc::new(keys))
            }
        };
        built.push((origin(digest), keys));
    }
    built
}

/// The TLS client config with the CA in `path` (besides the web roots), reused from this build
/// or the previous runtime when the file is unchanged.
fn ca_client(
    path: &Path,
    key: &str,
    previous: Option<&Runtime>,
    ca_tls: &mut HashMap<PathBuf, ([u8; 32], UpstreamTls)>,
    problems: &mut Vec<Problem>,
) -> Option<([u8; 32], UpstreamTls)> {
    if let Some(found) = ca_tls.get(path) {
        return Some(found.clone());
    }
    let pem = read(path, key, problems)?;
    let digest: [u8; 32] = Sha256::digest(&pem).into();
    let reused = previous
        .and_then(|p| p.ca_tls.get(path))
        .filter(|(d, _)| *d == digest)
        .map(|(_, t)| t.clone());
    let built = reused.or_else(|| match tls::client_config_with_ca(&pem) {
        Ok(config) => Some(UpstreamTls {
            config,
            // Never 0 (the default roots).
            id: u64::from_le_bytes(digest[..8].try_into().unwrap_or_default()) | 1,
        }),
        Err(why) => {
            problems.push(Problem::new(key, format!("{}: {why}", path.display())));
            None
        }
    })?;
    ca_tls.insert(path.to_owned(), (digest, built.clone()));
    Some((digest, built))
}

/// A file the runtime is built from; a problem under `key` when it cannot be read.
fn read(path: &Path, key: &str, problems: &mut Vec<Problem>) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            problems.push(Problem::new(
                key,
                format!("cannot read {}: {e}", path.display()),
            ));
            None
        }
    }
}

/// The gateway's shared state: the current runtime (swappable on reload), metrics, readiness,
/// and the tunnels (upgraded connections) that a drain must close at its deadline.
#[derive(Debug)]
pub struct Gateway {
    runtime: ArcSwap<Runtime>,
    /// Process-wide metrics.
    pub metrics: Metrics,
    ready: AtomicBool,
    tunnels: watch::Sender<bool>,
    /// Where providers' key refresh tasks run (the runtime the gateway was made on).
    handle: Option<tokio::runtime::Handle>,
}

impl Gateway {
    /// A gateway serving `runtime`. Not ready until a listener is up ([`Gateway::set_ready`]).
    pub fn new(runtime: Runtime) -> Gateway {
        let metrics = Metrics::new();
        metrics.keys_loaded.set(auth::now());
        metrics
            .max_connections
            .set(i64::try_from(runtime.config.server.max_connections).unwrap_or(i64::MAX));
        let handle = tokio::runtime::Handle::try_current().ok();
        if let Some(handle) = &handle {
            runtime.start_providers(handle, &metrics);
        }
        Gateway {
            runtime: ArcSwap::from_pointee(runtime),
            metrics,
            ready: AtomicBool::new(false),
            tunnels: watch::channel(false).0,
            handle,
        }
    }

    /// The runtime new requests get.
    pub fn current(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Makes `runtime` the one new requests get; in-flight requests keep theirs.
    pub fn swap(&self, runtime: Runtime) {
        if let Some(handle) = &self.handle {
            runtime.start_providers(handle, &self.metrics);
        }
        let old = self.runtime.swap(Arc::new(runtime));
        // Providers the new runtime does not keep stop fetching now, not when the last request
        // on the old runtime ends.
        let new = self.current();
        for gone in old
            .providers()
            .filter(|k| !new.providers().any(|n| Arc::ptr_eq(n, k)))
        {
            gone.retire();
        }
        self.metrics.keys_loaded.set(auth::now());
    }

    /// True while ready to serve (`/readyz`): the listener is up, not draining, and every
    /// identity provider has keys.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.current().providers_ready()
    }

    /// Marks the gateway ready (listener up) or not (draining).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// The metrics as Prometheus text, `jwtgate_ready` as [`Gateway::is_ready`] says now (the
    /// providers' keys arrive on their own, so the gauge is read, not kept), and the bytes
    /// reserved from the budget now.
    pub fn render_metrics(&self) -> String {
        self.metrics.ready.set(i64::from(self.is_ready()));
        let reserved = self.current().budget.used();
        self.metrics
            .buffered_bytes
            .set(i64::try_from(reserved).unwrap_or(i64::MAX));
        self.metrics.render()
    }

    /// Tunnels open now (upgraded connections, e.g. WebSockets).
    pub fn open_tunnels(&self) -> usize {
        self.tunnels.receiver_count()
    }

    /// A handle a tunnel holds while it is open; it turns true when the drain deadline passes.
    pub fn tunnel_handle(&self) -> watch::Receiver<bool> {
        self.tunnels.subscribe()
    }

    /// Tells every open tunnel to close (the drain deadline has passed).
    pub fn close_tunnels(&self) {
        self.tunnels.send_replace(true);
    }

    /// Counts a response about to be sent: requests by route and status, and the upstream's
    /// latency.
    pub fn count(&self, record: &Record, status: u16) {
        if let Some(upstream) = record.upstream {
            self.metrics
                .observe_upstream(&record.route, upstream.as_secs_f64());
        }
        self.metrics
            .count_request(&record.route, status, record.mode);
    }

    /// Counts a gRPC call that ended (its `grpc-status` in `record`, HTTP `status`).
    pub fn count_grpc(&self, record: &Record, status: u16) {
        if record.grpc {
            // A refused call's method is not taken from the client.
            let method = record.grpc_method().unwrap_or("-");
            self.metrics
                .count_grpc(&record.route, method, status, record.grpc_status);
        }
    }

    /// Counts a refusal by authentication or authorization, by reason.
    pub fn count_refusal(&self, rejection: &Rejection, record: &mut Record) {
        if rejection.is_auth() {
            record.auth = rejection.outcome();
            self.metrics
                .auth_failures
                .get_or_create(&ReasonLabels {
                    reason: record.auth,
                })
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "runtime-test-key-0123456789abcdef0123456789";

    fn config(toml: &str) -> Config {
        Config::from_toml(toml).unwrap()
    }

    fn runtime(toml: &str, previous: Option<&Runtime>) -> Runtime {
        Runtime::build(config(toml), &Keys::from_secrets(KEY, None), previous).unwrap()
    }

    const TWO: &str = "[[route]]\npath=\"/\"\nupstream=\"http://127.0.0.1:1\"\n[[route]]\npath=\"/b\"\nupstream=\"http://127.0.0.1:2\"";

    #[test]
    fn a_reload_keeps_the_pools_of_unchanged_upstreams() {
        let first = runtime(TWO, None);
        let route = |rt: &Runtime, i: usize| {
            rt.pipeline()
                .routes()
                .iter()
                .find(|r| r.id == i)
                .cloned()
                .unwrap()
        };
        let same = runtime(TWO, Some(&first));
        for i in 0..2 {
            assert!(Arc::ptr_eq(
                first.origin(&route(&first, i)).unwrap().pool(),
                same.origin(&route(&same, i)).unwrap().pool()
            ));
        }
        // Another route, another timeout: the unchanged upstream keeps its pool.
        let changed = runtime(
            "[server]\nconnect_timeout=\"1s\"\n[[route]]\npath=\"/\"\nupstream=\"http://127.0.0.1:1\"\n[[route]]\npath=\"/c\"\nupstream=\"http://127.0.0.1:3\"",
            Some(&same),
        );
        assert!(Arc::ptr_eq(
            same.origin(&route(&same, 0)).unwrap().pool(),
            changed.origin(&route(&changed, 0)).unwrap().pool()
        ));
        assert!(!Arc::ptr_eq(
            same.origin(&route(&same, 1)).unwrap().pool(),
            changed.origin(&route(&changed, 1)).unwrap().pool()
        ));
        // Without a previous runtime, nothing is shared.
        let fresh = runtime(TWO, None);
        assert!(!Arc::ptr_eq(
            first.origin(&route(&first, 0)).unwrap().pool(),
            fresh.origin(&route(&fresh, 0)).unwrap().pool()
        ));
    }

    #[test]
    fn missing_files_are_build_problems_named_by_key() {
        let c = config(
            "[server.tls]\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"\n[[route]]\npath=\"/\"\nupstream=\"https://a.example\"\nca_file=\"/nonexistent/ca.pem\"",
        );
        let e = Runtime::build(c, &Keys::from_secrets(KEY, None), None).unwrap_err();
        let keys: Vec<&str> = e.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            ["server.tls.cert", "server.tls.key", "route[0].ca_file"]
        );
    }
}
