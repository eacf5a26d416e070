//! The `jwtgate` binary: command line, logging, signals. Everything else lives in the library.

#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use jwtgate::auth::keys::{self, Env, Keys};
use jwtgate::config::{parse_duration, Algorithm, ClaimPath, Config, KeyKind};
use jwtgate::runtime::reload::Watcher;
use jwtgate::runtime::reload::{EnvSource, Reloader};
use jwtgate::{Gateway, Runtime};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::{error, info, warn};

/// jemalloc: no header per allocation, size classes that fit a connection's task, and (with its
/// background thread, turned on when the gateway starts) freed memory goes back to the system
/// a few seconds after a burst rather than staying in the process.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A reverse-proxy authentication gateway: verifies Bearer JWTs at the edge and tells upstreams
/// who the caller is.
#[derive(Parser)]
#[command(name = "jwtgate", version, about, long_about = None)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(long, env = "JWTGATE_CONFIG", global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration and keys: exit 0, or print every problem and exit 2.
    Check {
        /// Also fetch every identity provider's keys (JWKS, discovery) and report what was
        /// found; a provider whose keys cannot be had is a problem.
        #[arg(long)]
        fetch: bool,
    },
    /// One-command tour: gateway + a built-in echo upstream on loopback with a generated key.
    Demo {
        /// Address for the demo gateway (a free port is used if it is taken).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Print a token signed with JWT_SECRET_KEY, or with a private key (development and tests).
    Token {
        /// The user (the `sub` claim, or the config's `user_claim`).
        #[arg(long)]
        sub: String,
        /// Lifetime, e.g. 30m, 1h, 90s.
        #[arg(long, default_value = "30m")]
        ttl: String,
        /// Extra claim NAME=VALUE (repeatable); VALUE is JSON if it parses as a number,
        /// boolean, array or object, else a string.
        #[arg(long = "claim", value_name = "NAME=VALUE")]
        claims: Vec<String>,
        /// The token's `kid`. With a key ring (JWT_SECRET_KEY_DIR): the key to sign with
        /// (needed when the ring holds more than one).
        #[arg(long)]
        kid: Option<String>,
        /// Sign with this PEM private key (PKCS#8; RSA also PKCS#1) instead of the shared
        /// secret, as an identity provider would.
        #[arg(long, value_name = "PATH")]
        key_file: Option<PathBuf>,
        /// The algorithm: default RS256 with --key-file, else the config's first (HS256).
        #[arg(long)]
        alg: Option<String>,
        /// The `iss` claim; with --config, a provider's issuer also picks that provider's
        /// user claim and audience.
        #[arg(long)]
        iss: Option<String>,
    },
    /// Print a new random secret (256 bits, URL-safe).
    Secret,
}

/// Exit code for configuration, key and argument problems.
const BAD_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let code = run(Cli::parse());
    // The log buffer (logs.rs) goes out before the process ends.
    jwtgate::ops::logs::flush();
    code
}

fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Some(Command::Secret) => {
            println!("{}", keys::generate());
            ExitCode::SUCCESS
        }
        Some(Command::Token {
            sub,
            ttl,
            claims,
            kid,
            key_file,
            alg,
            iss,
        }) => token(
            cli.config.as_deref(),
            &sub,
            &ttl,
            &claims,
            TokenKey {
                kid: kid.as_deref(),
                key_file: key_file.as_deref(),
                alg: alg.as_deref(),
                iss: iss.as_deref(),
            },
        ),
        Some(Command::Check { fetch }) => match cli.config {
            None => usage("check needs --config PATH (or JWTGATE_CONFIG)"),
            Some(path) => match load(&path).and_then(|rt| telemetry(&path, &rt).map(|_| rt)) {
                Ok(runtime) if fetch => {
                    print_warnings(&runtime);
                    check_fetch(&path, &runtime)
                }
                Ok(runtime) => {
                    print_warnings(&runtime);
                    println!(
                        "{}: OK ({} routes, {} providers, keys loaded)",
                        path.display(),
                        runtime.config.routes.len(),
                        runtime.config.auth.providers.len(),
                    );
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            },
        },
        Some(Command::Demo { listen }) => {
            init_logging();
            runtime(None).and_then(|rt| {
                rt.block_on(async {
                    let stop = Signals::register()
                        .map_err(|()| std::io::Error::other("cannot install signal handlers"))?
                        .stop;
                    jwtgate::demo::run(listen, stop.first()).await
                })
                    .map_err(|e| {
                        error!(error = %e, "demo failed");
                        ExitCode::FAILURE
                    })
            })
            .map_or_else(|c| c, |()| ExitCode::SUCCESS)
        }
        None => match cli.config {
            None => usage("--config PATH (or JWTGATE_CONFIG) is required to run the gateway; try `jwtgate demo` or `jwtgate --help`"),
            Some(path) => serve(&path),
        },
    }
}

/// What is allowed but probably a mistake, on standard error.
fn print_warnings(runtime: &Runtime) {
    for w in runtime.config.warnings() {
        eprintln!("warning: {w}");
    }
}

/// `jwtgate check --fetch`: fetches every provider's keys once and reports them; exit 2 when
/// any provider's keys cannot be had.
fn check_fetch(path: &Path, runtime: &Runtime) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("jwtgate: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut failed = 0;
    for keys in runtime.providers() {
        let (found, skipped) = if keys.is_remote() {
            match rt.block_on(keys.fetch_once()) {
                Ok(found) => found,
                Err(e) => {
                    eprintln!("provider {:?}: {e}", keys.issuer);
                    failed += 1;
                    continue;
                }
            }
        } else {
            let found = keys.current().map(|k| k.len()).unwrap_or(0);
            println!("provider {:?}: {found} key(s) from its file", keys.issuer);
            continue;
        };
        let kids: Vec<String> = found
            .iter()
            .map(|k| format!("{}:{:?}", k.kid.as_deref().unwrap_or("(no kid)"), k.kind()))
            .collect();
        println!(
            "provider {:?}: {} key(s) from {} [{}]",
            keys.issuer,
            found.len(),
            keys.url().map(|u| u.to_string()).unwrap_or_default(),
            kids.join(", ")
        );
        for s in skipped {
            println!("  skipped {s}");
        }
    }
    if failed > 0 {
        eprintln!("{}: {failed} provider(s) without keys", path.display());
        return ExitCode::from(BAD_CONFIG);
    }
    println!("{}: OK", path.display());
    ExitCode::SUCCESS
}

fn usage(message: &str) -> ExitCode {
    eprintln!("jwtgate: {message}");
    ExitCode::from(BAD_CONFIG)
}

/// Loads config and keys and builds the runtime from them (reading the files the config names,
/// never the network), printing every problem to stderr.
fn load(path: &Path) -> Result<Runtime, ExitCode> {
    let config = Config::load(path);
    let providers = config.as_ref().is_ok_and(|c| !c.auth.providers.is_empty());
    let keys = Keys::load_for(&Env::from_process(), providers);
    match (config, keys) {
        (Ok(c), Ok(k)) => Runtime::build(c, &k, None).map_err(|e| {
            eprintln!("{}: {e}", path.display());
            ExitCode::from(BAD_CONFIG)
        }),
        (config, keys) => {
            if let Err(e) = config {
                eprintln!("{e}");
            }
            if let Err(problems) = keys {
                eprintln!(
                    "keys: {} problem{}",
                    problems.len(),
                    if problems.len() == 1 { "" } else { "s" }
                );
                for p in problems {
                    eprintln!("  - {p}");
                }
            }
            Err(ExitCode::from(BAD_CONFIG))
        }
    }
}

/// The tracing settings of `runtime`'s `[telemetry]` and the `OTEL_*` variables (`None`:
/// tracing is off); every problem reported, exit 2.
fn telemetry(
    path: &Path,
    runtime: &Runtime,
) -> Result<Option<jwtgate::ops::trace::Settings>, ExitCode> {
    let env = |name: &str| std::env::var(name).ok();
    jwtgate::ops::trace::Settings::resolve(&runtime.config.telemetry, &env).map_err(|problems| {
        eprintln!(
            "{}: {} problem{} with tracing",
            path.display(),
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
        for p in problems {
            eprintln!("  - {p}");
        }
        ExitCode::from(BAD_CONFIG)
    })
}

/// The shared secret `jwtgate token` signs with, and the `kid` to name: with a key ring, the
/// key named by `--kid` (or its only key).
fn shared_key(kid: Option<&str>) -> Result<(jsonwebtoken::EncodingKey, Option<String>), ExitCode> {
    let keys = match Keys::from_env() {
        Ok(k) => k,
        Err(problems) => {
            for p in problems {
                eprintln!("jwtgate: {p}");
            }
            return Err(ExitCode::from(BAD_CONFIG));
        }
    };
    let sign = |s: &keys::Secret| jsonwebtoken::EncodingKey::from_secret(s.as_bytes());
    match (kid, keys.ring.as_slice()) {
        (None, []) => Ok((sign(&keys.current), None)),
        (Some(_), []) => Err(usage("--kid needs a key ring (JWT_SECRET_KEY_DIR)")),
        (None, [(only, secret)]) => Ok((sign(secret), Some(only.clone()))),
        (None, ring) => {
            let names: Vec<&str> = ring.iter().map(|(k, _)| k.as_str()).collect();
            Err(usage(&format!(
                "the key ring holds {} keys: pass --kid (one of {})",
                ring.len(),
                names.join(", ")
            )))
        }
        (Some(kid), _) => match keys.by_kid(kid) {
            Some(secret) => Ok((sign(secret), Some(kid.to_owned()))),
            None => Err(usage(&format!(
                "--kid {kid:?}: the key ring has no such key"
            ))),
        },
    }
}

/// The Tokio runtime: `server.workers` threads, else `TOKIO_WORKER_THREADS`, else one per CPU
/// this process may use. With one worker the current-thread scheduler is used: same work, no
/// hand-offs between a driver thread and a worker.
fn runtime(workers: Option<usize>) -> Result<tokio::runtime::Runtime, ExitCode> {
    #[cfg(not(target_env = "msvc"))]
    tune_allocator();
    let workers = workers
        .or_else(|| std::env::var("TOKIO_WORKER_THREADS").ok()?.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut b = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    b.enable_all().build().map_err(|e| {
        eprintln!("jwtgate: cannot start the runtime: {e}");
        ExitCode::FAILURE
    })
}

/// Memory freed after a burst (the buffers and exchanges of thousands of requests at once)
/// goes back to the system after about a second, on jemalloc's background thread, instead of
/// staying in the process: what is left is what the open connections hold. jemalloc's default
/// is 10 s, and without the background thread purging waits for allocations to happen.
#[cfg(not(target_env = "msvc"))]
fn tune_allocator() {
    use tikv_jemalloc_ctl::{arenas, background_thread, Access, AsName};
    const DECAY_MS: isize = 1000;
    // Arenas created from now on (one per thread that allocates first), then the ones there are.
    let mut result = b"arenas.dirty_decay_ms\0".name().write(DECAY_MS);
    for i in 0..arenas::narenas::read().unwrap_or(0) {
        // An arena not created yet is an error here, and gets the default above when it is.
        let _ = format!("arena.{i}.dirty_decay_ms\0")
            .as_bytes()
            .name()
            .write(DECAY_MS);
    }
    result = result.and(background_thread::write(true));
    if let Err(e) = result {
        warn!(error = %e, "allocator not tuned: memory freed after a burst stays in the process longer");
    }
}

fn serve(path: &Path) -> ExitCode {
    let built = match load(path) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let tracing_settings = match telemetry(path, &built) {
        Ok(s) => s,
        Err(code) => return code,
    };
    init_logging();
    for w in built.config.warnings() {
        warn!(key = %w.key, "{}", w.message);
    }
    let rt = match runtime(built.config.server.workers) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let result = rt.block_on(async {
        // Signal handlers first, so that a signal during start-up is not fatal.
        let signals = Signals::register()?;
        let server = &built.config.server;
        let bind = |addr: Option<SocketAddr>, key: &'static str| match addr {
            None => Ok(None),
            Some(addr) => jwtgate::net::listen::bind(addr).map(Some).map_err(|e| {
                error!(listen = %addr, key, error = %e, "cannot listen");
            }),
        };
        let listeners = jwtgate::server::Listeners {
            inline: bind(server.listen, "server.listen")?,
            checks: bind(
                built.config.forward_auth.as_ref().map(|f| f.listen),
                "forward_auth.listen",
            )?,
        };
        let admin = match server.admin_listen {
            Some(addr) => Some(jwtgate::net::listen::bind(addr).map_err(|e| {
                error!(admin_listen = %addr, error = %e, "cannot listen");
            })?),
            None => None,
        };
        let exporting = match tracing_settings {
            None => None,
            Some(settings) => match jwtgate::ops::trace::install(settings) {
                Ok(exporting) => Some(exporting),
                Err(e) => {
                    error!(error = %e, "cannot start tracing");
                    return Err(());
                }
            },
        };
        let gateway = Arc::new(Gateway::new(built));
        if let Some(admin) = admin {
            // Runs until the process exits, so probes see /readyz = 503 during the drain.
            tokio::spawn(jwtgate::server::admin::serve(
                admin,
                gateway.clone(),
                std::future::pending(),
            ));
        }
        let env: EnvSource = Arc::new(Env::from_process);
        // Reloads run on a thread of their own, never on a request worker.
        let reloader = Arc::new(Reloader::new(gateway.clone(), path.to_owned(), env));
        let watcher = Arc::new(reloader.watch(Duration::from_secs(1)));
        let Signals { hup, stop } = signals;
        tokio::spawn(reload_on_sighup(hup, watcher));
        let served = jwtgate::server::serve_all(listeners, gateway, stop.first())
            .await
            .map_err(|e| error!(error = %e, "server failed"));
        // The last spans go out within a bound: a collector that is down must not hold the
        // exit (2 s here, 1 s for stray blocking work, 2 s for the log queue: drain_timeout
        // plus at most 5 s in all).
        if let Some(exporting) = exporting {
            exporting.shutdown(Duration::from_secs(2)).await;
        }
        served
    });
    // Do not wait for stray blocking work (DNS lookups) past the drain.
    rt.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(()) => ExitCode::FAILURE,
    }
}

/// The process's signal streams, registered before anything else starts.
struct Signals {
    hup: Signal,
    stop: Stop,
}

/// SIGTERM and SIGINT.
struct Stop {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn register() -> Result<Signals, ()> {
        let register = |kind: SignalKind| {
            signal(kind).map_err(|e| error!(error = %e, "cannot install a signal handler"))
        };
        Ok(Signals {
            hup: register(SignalKind::hangup())?,
            stop: Stop {
                term: register(SignalKind::terminate())?,
                int: register(SignalKind::interrupt())?,
            },
        })
    }
}

impl Stop {
    /// Completes on the first SIGTERM or SIGINT; a second one during the drain exits at once
    /// (code 1: the stop was not clean).
    async fn first(mut self) {
        self.next().await;
        info!("shutdown signal received; draining (send it again to stop now)");
        tokio::spawn(async move {
            self.next().await;
            warn!("second shutdown signal: exiting without finishing the drain");
            jwtgate::ops::logs::flush();
            std::process::exit(1);
        });
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
        }
    }
}

/// SIGHUP re-reads the config file and keys (on the reload thread); a bad new config or key is
/// logged and ignored.
async fn reload_on_sighup(mut hup: Signal, watcher: Arc<Watcher>) {
    while hup.recv().await.is_some() {
        info!("SIGHUP: reloading");
        watcher.reload();
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match std::env::var("JWTGATE_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        _ => !std::io::stdout().is_terminal(),
    };
    // Colours only for a terminal: text logs redirected to a file or a pipe stay plain.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
        .with_writer(jwtgate::ops::logs::Stdout);
    jwtgate::ops::access::set_json_lines(json);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

/// What `jwtgate token` signs with and says about its issuer.
struct TokenKey<'a> {
    kid: Option<&'a str>,
    key_file: Option<&'a Path>,
    alg: Option<&'a str>,
    iss: Option<&'a str>,
}

fn token(
    config: Option<&Path>,
    sub: &str,
    ttl: &str,
    claims: &[String],
    key: TokenKey,
) -> ExitCode {
    let ttl = match parse_duration(ttl) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => return usage("--ttl must be greater than zero"),
        Err(e) => return usage(&format!("--ttl: {e}")),
    };
    let config = match config.map(Config::load) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => {
            eprintln!("{e}");
            return ExitCode::from(BAD_CONFIG);
        }
    };
    let alg = match key.alg {
        Some(name) => match Algorithm::from_name(name) {
            Some(a) => a,
            None => return usage(&format!("--alg {name:?} is not an algorithm jwtgate knows")),
        },
        None if key.key_file.is_some() => Algorithm::RS256,
        None => config
            .as_ref()
            .map_or(Algorithm::HS256, |c| c.auth.algorithms[0]),
    };
    // A provider's issuer (from --iss) picks its user claim and audience.
    let provider = config.as_ref().and_then(|c| {
        c.auth
            .providers
            .iter()
            .find(|p| Some(p.issuer.as_str()) == key.iss)
    });
    let (user_claim, issuer, audience) = match (&config, provider) {
        (_, Some(p)) => (
            p.user_claim.clone(),
            Some(p.issuer.clone()),
            p.audience.clone(),
        ),
        (Some(c), None) => (
            c.auth.user_claim.clone(),
            key.iss.map(str::to_owned).or(c.auth.issuer.clone()),
            c.auth.audience.clone(),
        ),
        (None, None) => (
            ClaimPath::parse("sub").expect("a valid path"),
            key.iss.map(str::to_owned),
            Vec::new(),
        ),
    };
    let (signing, kid) = match (key.key_file, alg.is_hmac()) {
        (Some(_), true) => {
            return usage(
                "--key-file signs with a private key: pass an RS*, PS*, ES* or EdDSA --alg",
            )
        }
        (None, false) => {
            return usage(&format!(
                "--alg {} signs with a private key: pass --key-file",
                alg.name()
            ))
        }
        (Some(path), false) => {
            let pem = match std::fs::read(path) {
                Ok(pem) => pem,
                Err(e) => return usage(&format!("--key-file {}: {e}", path.display())),
            };
            let signing = match alg.key_kind() {
                KeyKind::Rsa => jsonwebtoken::EncodingKey::from_rsa_pem(&pem),
                KeyKind::P256 | KeyKind::P384 => jsonwebtoken::EncodingKey::from_ec_pem(&pem),
                _ => jsonwebtoken::EncodingKey::from_ed_pem(&pem),
            };
            match signing {
                Ok(k) => (k, key.kid.map(str::to_owned)),
                Err(e) => {
                    return usage(&format!(
                        "--key-file {}: not a private key for {} ({e})",
                        path.display(),
                        alg.name()
                    ))
                }
            }
        }
        (None, true) => match shared_key(key.kid) {
            Ok(k) => k,
            Err(code) => return code,
        },
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let mut body = serde_json::Map::new();
    user_claim.insert_into(&mut body, sub.into());
    body.insert("iat".into(), now.as_secs().into());
    body.insert("exp".into(), (now + ttl).as_secs().into());
    if let Some(iss) = issuer {
        body.insert("iss".into(), iss.into());
    }
    match audience.len() {
        0 => {}
        1 => {
            body.insert("aud".into(), audience[0].clone().into());
        }
        _ => {
            body.insert("aud".into(), audience.into());
        }
    }
    for claim in claims {
        let Some((name, value)) = claim.split_once('=') else {
            return usage(&format!("--claim {claim:?}: write NAME=VALUE"));
        };
        let value = match serde_json::from_str::<serde_json::Value>(value) {
            Ok(v) if !v.is_string() => v,
            _ => serde_json::Value::String(value.to_owned()),
        };
        body.insert(name.to_owned(), value);
    }
    let mut header = jsonwebtoken::Header::new(jwtgate::auth::to_jsonwebtoken(alg));
    header.kid = kid;
    match jsonwebtoken::encode(&header, &body, &signing) {
        Ok(t) => {
            println!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("jwtgate: cannot sign: {e}");
            ExitCode::FAILURE
        }
    }
}
