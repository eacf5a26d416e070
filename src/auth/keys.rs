//! The HMAC keys: `JWT_SECRET_KEY` (or `JWT_SECRET_KEY_FILE`) and the optional
//! `JWT_SECRET_KEY_PREVIOUS` (or `JWT_SECRET_KEY_PREVIOUS_FILE`) that still verifies during a
//! rotation; or, instead of them, a key ring: `JWT_SECRET_KEY_DIR`, a directory (a Kubernetes
//! Secret volume) in which each file is one key and its name the key's `kid` (at most
//! [`MAX_RING_KEYS`]; names beginning with `.`, such as the volume's `..data`, are not keys).
//! Values come from the real environment first, then from a `.env` file in the working
//! directory. A key's value is never printed, logged or formatted: [`Secret`]'s `Debug` redacts
//! it, and every message here names the variable, never the value.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;

/// The variable that holds the current key.
pub const CURRENT: &str = "JWT_SECRET_KEY";
/// The variable that holds the previous key during a rotation.
pub const PREVIOUS: &str = "JWT_SECRET_KEY_PREVIOUS";
/// The variable that names the key ring's directory.
pub const DIR: &str = "JWT_SECRET_KEY_DIR";
/// Most keys a ring holds.
pub const MAX_RING_KEYS: usize = 16;
/// Largest key file a ring reads.
pub const MAX_KEY_BYTES: u64 = 4096;

/// Shortest key accepted, in bytes (HS256's output size; RFC 7518 §3.2).
pub const MIN_KEY_BYTES: usize = 32;

/// Well-known placeholder keys from tutorials, templates and `.env.example` files, compared
/// case-insensitively. Most are also too short; the list catches the long ones.
const PLACEHOLDERS: &[&str] = &[
    "your-secret-key-change-this-in-production",
    "your-secret-key",
    "your_secret_key",
    "your-256-bit-secret",
    "secret",
    "secretkey",
    "secret-key",
    "secret_key",
    "mysecret",
    "supersecret",
    "changeme",
    "change-me",
    "changeit",
    "password",
    "jwt-secret",
    "jwt_secret",
    "jwtsecret",
    "default",
    "test",
];

/// Phrases that mark a key as a placeholder wherever they appear in it.
const PLACEHOLDER_PHRASES: &[&str] = &[
    "change-this",
    "change_this",
    "changethis",
    "changeme",
    "change-me",
    "your-secret",
    "your_secret",
    "placeholder",
    "replace-me",
    "replace_me",
];

/// Key bytes. `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// The raw bytes, exactly as PyJWT uses a `str` key (its UTF-8 encoding).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes redacted>)", self.0.len())
    }
}

/// The keys tokens are verified with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// Signs (`jwtgate token`) and verifies. With a key ring: its first key by name.
    pub current: Secret,
    /// Only verifies, during a rotation (never with a key ring).
    pub previous: Option<Secret>,
    /// The key ring, by `kid` in name order; empty without `JWT_SECRET_KEY_DIR`.
    pub ring: Vec<(String, Secret)>,
    /// The files (and the ring's directory) the keys were read from, to watch for changes.
    pub files: Vec<PathBuf>,
}

impl Keys {
    /// The keys to verify with, each with its `kid` when it has one: the ring's keys, or the
    /// current key, then the previous one.
    pub fn verifying(&self) -> Box<dyn Iterator<Item = (Option<&str>, &[u8])> + '_> {
        if self.is_off() {
            Box::new(std::iter::empty())
        } else if self.ring.is_empty() {
            Box::new(
                std::iter::once(self.current.as_bytes())
                    .chain(self.previous.as_ref().map(Secret::as_bytes))
                    .map(|k| (None, k)),
            )
        } else {
            Box::new(
                self.ring
                    .iter()
                    .map(|(kid, k)| (Some(kid.as_str()), k.as_bytes())),
            )
        }
    }

    /// No shared secret: identity providers are configured and no `JWT_SECRET_KEY` (nor a
    /// ring) is set.
    pub fn none() -> Keys {
        Keys {
            current: Secret(Vec::new()),
            previous: None,
            ring: Vec::new(),
            files: Vec::new(),
        }
    }

    /// True when there is no shared secret ([`Keys::none`]).
    pub fn is_off(&self) -> bool {
        self.current.0.is_empty() && self.ring.is_empty()
    }

    /// Loads the keys from `env` for a config: with identity providers configured
    /// (`providers`), a missing `JWT_SECRET_KEY` turns the shared secret off instead of being
    /// an error; a key that is set is held to every rule all the same.
    pub fn load_for(env: &Env, providers: bool) -> Result<Keys, Vec<String>> {
        let any = [CURRENT, PREVIOUS, DIR]
            .iter()
            .any(|v| env.get(v).is_some() || env.get(&format!("{v}_FILE")).is_some());
        if providers && !any {
            return Ok(Keys::none());
        }
        Keys::load(env)
    }

    /// The ring's key named `kid`.
    pub fn by_kid(&self, kid: &str) -> Option<&Secret> {
        self.ring.iter().find(|(k, _)| k == kid).map(|(_, s)| s)
    }

    /// Loads the keys from the process environment and `./.env`.
    pub fn from_env() -> Result<Keys, Vec<String>> {
        Keys::load(&Env::from_process())
    }

    /// Loads the keys from `env`. Every problem is reported, named by variable, never by value.
    pub fn load(env: &Env) -> Result<Keys, Vec<String>> {
        if let Some(dir) = env.get(DIR) {
            let single: Vec<String> = [CURRENT, PREVIOUS]
                .iter()
                .flat_map(|v| [v.to_string(), format!("{v}_FILE")])
                .filter(|v| env.get(v).is_some())
                .collect();
            if !single.is_empty() {
                return Err(vec![format!(
                    "{DIR} and {} are both set: the key ring replaces them, keep only one",
                    single.join(", ")
                )]);
            }
            return load_ring(Path::new(dir));
        }
        let mut problems = Vec::new();
        let mut files = Vec::new();
        let current = match read_key(env, CURRENT, &mut files) {
            Ok(Some(k)) => Some(k),
            Ok(None) => {
                problems.push(format!(
                    "{CURRENT} is not set: set {CURRENT} (or {CURRENT}_FILE, a path to a file that \
                     holds it) to the key your auth service signs with; `jwtgate secret` prints a new one"
                ));
                None
            }
            Err(e) => {
                problems.push(e);
                None
            }
        };
        let previous = match read_key(env, PREVIOUS, &mut files) {
            Ok(k) => k,
            Err(e) => {
                problems.push(e);
                None
            }
        };
        for (name, key) in [(CURRENT, &current), (PREVIOUS, &previous)] {
            if let Some(key) = key {
                if let Err(rule) = strength(key.as_bytes()) {
                    problems.push(format!(
                        "{name} is too weak: {rule}; generate one with `jwtgate secret`"
                    ));
                }
            }
        }
        match current {
            Some(current) if problems.is_empty() => Ok(Keys {
                current,
                previous,
                ring: Vec::new(),
                files,
            }),
            _ => Err(problems),
        }
    }

    /// Keys from secrets already in hand (the demo's generated key, tests), without the
    /// environment and without the strength rules.
    pub fn from_secrets(current: &str, previous: Option<&str>) -> Keys {
        Keys {
            current: Secret(current.as_bytes().to_vec()),
            previous: previous.map(|p| Secret(p.as_bytes().to_vec())),
            ring: Vec::new(),
            files: Vec::new(),
        }
    }
}

/// The key ring in `dir`: each key of [`ring_entries`], its name the `kid`. Every problem is
/// reported, by file name.
fn load_ring(dir: &Path) -> Result<Keys, Vec<String>> {
    let entries = ring_entries(dir).map_err(|e| {
        vec![format!(
            "{DIR}: cannot read the directory {}: {e}",
            dir.display()
        )]
    })?;
    let mut names = Vec::new();
    let mut problems = Vec::new();
    for (name, entry) in entries {
        match entry {
            RingEntry::Key(path) => names.push((name, path)),
            RingEntry::TooLarge(len) => problems.push(format!(
                "{DIR}: {name:?} is {len} bytes, too large to be a key (at most {MAX_KEY_BYTES})"
            )),
            RingEntry::NotAFile => {
                tracing::warn!(dir = %dir.display(), entry = %name, "not a file: not a key")
            }
            RingEntry::Gone => {}
            RingEntry::Unreadable(e) => {
                problems.push(format!("{DIR}: cannot read key {name:?}: {e}"))
            }
            RingEntry::NotUtf8 => problems.push(format!(
                "{DIR}: a file name that is not UTF-8 in {} cannot be a kid",
                dir.display()
            )),
        }
    }
    if names.is_empty() && problems.is_empty() {
        problems.push(format!(
            "{DIR}: {} holds no key files (one file a key, its name the kid)",
            dir.display()
        ));
    }
    if names.len() > MAX_RING_KEYS {
        problems.push(format!(
            "{DIR}: {} holds {} keys; at most {MAX_RING_KEYS}",
            dir.display(),
            names.len()
        ));
    }
    let mut ring = Vec::new();
    for (name, path) in names {
        match std::fs::read(&path) {
            Ok(mut bytes) => {
                trim_newline(&mut bytes);
                match strength(&bytes) {
                    Ok(()) => ring.push((name, Secret(bytes))),
                    Err(rule) => problems.push(format!(
                        "{DIR}: key {name:?} is too weak: {rule}; generate one with `jwtgate secret`"
                    )),
                }
            }
            Err(e) => problems.push(format!("{DIR}: cannot read key {name:?}: {e}")),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Keys {
        current: ring[0].1.clone(),
        previous: None,
        ring,
        // The directory: a key added, changed or removed changes its fingerprint.
        files: vec![dir.to_path_buf()],
    })
}

/// What an entry of a key ring's directory is (see [`ring_entries`]).
#[derive(Debug)]
pub enum RingEntry {
    /// A key: a regular file (or a link to one) of at most [`MAX_KEY_BYTES`].
    Key(PathBuf),
    /// A regular file too large to be a key.
    TooLarge(u64),
    /// A directory, a FIFO, a device: not a key, and never opened.
    NotAFile,
    /// A dangling link: a key being removed (the kubelet drops the link next).
    Gone,
    /// Its metadata cannot be read.
    Unreadable(std::io::Error),
    /// A name that is not UTF-8 (shown lossily), which cannot be a `kid`.
    NotUtf8,
}

/// The entries of the key ring in `dir` that could be keys, by name in order: every name but
/// those beginning with `.` (a Secret volume's `..data` link and its timestamped directory).
/// Links are followed: a Secret volume's files are links into `..data`. The one reading of a
/// ring's directory, for loading it and for watching it.
pub fn ring_entries(dir: &Path) -> std::io::Result<Vec<(String, RingEntry)>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let utf8 = name.to_str().is_some();
        let name = name.to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let kind = match std::fs::metadata(&path) {
            _ if !utf8 => RingEntry::NotUtf8,
            Ok(m) if m.is_file() && m.len() > MAX_KEY_BYTES => RingEntry::TooLarge(m.len()),
            Ok(m) if m.is_file() => RingEntry::Key(path),
            Ok(_) => RingEntry::NotAFile,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => RingEntry::Gone,
            Err(e) => RingEntry::Unreadable(e),
        };
        entries.push((name, kind));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
}

/// One trailing newline is what `echo` and most editors add; trims exactly that.
fn trim_newline(bytes: &mut Vec<u8>) {
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
}

/// Where key variables are looked up: the real environment, then a `.env` file.
#[derive(Debug, Default, Clone)]
pub struct Env {
    vars: HashMap<String, String>,
    dotenv: HashMap<String, String>,
}

impl Env {
    /// The process environment plus `./.env` (if present). Real variables win.
    pub fn from_process() -> Env {
        let vars = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let dotenv = dotenvy::from_path_iter(Path::new(".env"))
            .map(|iter| iter.filter_map(Result::ok).collect())
            .unwrap_or_default();
        Env { vars, dotenv }
    }

    /// An environment made of `pairs` only (tests, and callers that build their own).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Env {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            dotenv: HashMap::new(),
        }
    }

    /// A variable's value; empty counts as unset.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .or_else(|| self.dotenv.get(name))
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

fn read_key(env: &Env, name: &str, files: &mut Vec<PathBuf>) -> Result<Option<Secret>, String> {
    let file_var = format!("{name}_FILE");
    match (env.get(name), env.get(&file_var)) {
        (Some(_), Some(_)) => Err(format!(
            "both {name} and {file_var} are set: keep only one of them"
        )),
        (Some(value), None) => Ok(Some(Secret(value.as_bytes().to_vec()))),
        (None, Some(path)) => {
            let path = PathBuf::from(path);
            // The file is watched even when it is missing now: its arrival triggers a reload.
            files.push(path.clone());
            let bytes = match std::fs::read(&path) {
                Ok(bytes) => bytes,
                // A previous key that was removed from the Secret ends the rotation; it must
                // not block reloads (and keep the old key verifying) until someone notices.
                Err(e) if name == PREVIOUS && e.kind() == std::io::ErrorKind::NotFound => {
                    tracing::warn!(variable = %file_var, "previous key file is missing: no previous key");
                    return Ok(None);
                }
                Err(e) => return Err(format!("{file_var}: cannot read {}: {e}", path.display())),
            };
            let mut bytes = bytes;
            trim_newline(&mut bytes);
            if bytes.is_empty() && name == PREVIOUS {
                tracing::warn!(variable = %file_var, "previous key file is empty: no previous key");
                return Ok(None);
            }
            Ok(Some(Secret(bytes)))
        }
        (None, None) => Ok(None),
    }
}

/// The strength rules: long enough, not a placeholder, not one repeated character.
pub fn strength(key: &[u8]) -> Result<(), String> {
    if key.len() < MIN_KEY_BYTES {
        return Err(format!(
            "it is {} bytes long and must be at least {MIN_KEY_BYTES}",
            key.len()
        ));
    }
    let lower = String::from_utf8_lossy(key).to_ascii_lowercase();
    if PLACEHOLDERS.contains(&lower.as_str())
        || PLACEHOLDER_PHRASES.iter().any(|p| lower.contains(p))
    {
        return Err("it is a well-known placeholder, not a secret".into());
    }
    if key.iter().all(|&b| b == key[0]) {
        return Err("it is one character repeated".into());
    }
    Ok(())
}

/// A new random secret: 256 bits from the OS generator, base64url without padding (43 chars).
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "k7Qm2V9xZp4Rt8Lw1Ns6Hy3Jd5Fb0Gc-AeXoUiEq";

    fn ring(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, key) in files {
            std::fs::write(dir.path().join(name), key).unwrap();
        }
        dir
    }

    fn load_dir(dir: &Path) -> Result<Keys, Vec<String>> {
        Keys::load(&Env::from_pairs([(DIR, dir.to_str().unwrap())]))
    }

    #[test]
    fn a_key_ring_is_one_key_a_file_named_by_its_kid() {
        let other = &GOOD[1..];
        let dir = ring(&[("2026-11", &format!("{GOOD}\n")), ("2026-10", other)]);
        // A Secret volume's bookkeeping is not a key, nor is a directory or a dangling link.
        std::fs::create_dir(dir.path().join("..2026_11_30")).unwrap();
        std::fs::write(dir.path().join("..data"), "x").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::os::unix::fs::symlink("gone", dir.path().join("removed")).unwrap();
        let keys = load_dir(dir.path()).unwrap();
        let kids: Vec<(Option<&str>, &[u8])> = keys.verifying().collect();
        assert_eq!(
            kids,
            [
                (Some("2026-10"), other.as_bytes()),
                (Some("2026-11"), GOOD.as_bytes())
            ]
        );
        assert_eq!(keys.by_kid("2026-11").unwrap().as_bytes(), GOOD.as_bytes());
        assert_eq!(keys.files, vec![dir.path().to_path_buf()]);
    }

    #[test]
    fn a_key_ring_skips_what_is_not_a_file_and_refuses_files_too_large_for_a_key() {
        let dir = ring(&[("good", GOOD)]);
        let fifo = dir.path().join("pipe");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        // A FIFO is skipped, never opened (opening it would block until a writer came).
        let keys = load_dir(dir.path()).unwrap();
        assert_eq!(keys.ring.len(), 1);
        std::fs::write(dir.path().join("huge"), vec![b'k'; 5000]).unwrap();
        let problems = load_dir(dir.path()).unwrap_err();
        assert!(
            problems[0].contains("\"huge\" is 5000 bytes, too large"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_key_ring_refuses_weak_keys_too_many_none_and_the_single_key_variables() {
        let dir = ring(&[
            ("good", GOOD),
            ("weak", "short"),
            ("placeholder", "your-secret-key"),
        ]);
        let problems = load_dir(dir.path()).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("\"weak\" is too weak")));
        assert!(problems
            .iter()
            .any(|p| p.contains("\"placeholder\" is too weak")));
        assert!(!problems
            .iter()
            .any(|p| p.contains("short") || p.contains(GOOD)));

        let names: Vec<String> = (0..=MAX_RING_KEYS).map(|i| format!("k{i:02}")).collect();
        let files: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), GOOD)).collect();
        let many = ring(&files);
        let problems = load_dir(many.path()).unwrap_err();
        assert!(problems[0].contains("at most 16"), "{problems:?}");

        let empty = ring(&[]);
        assert!(load_dir(empty.path()).unwrap_err()[0].contains("holds no key files"));
        assert!(load_dir(Path::new("/nonexistent/ring")).unwrap_err()[0].contains("cannot read"));

        for single in [
            CURRENT,
            "JWT_SECRET_KEY_FILE",
            PREVIOUS,
            "JWT_SECRET_KEY_PREVIOUS_FILE",
        ] {
            let dir = ring(&[("a", GOOD)]);
            let problems = Keys::load(&Env::from_pairs([
                (DIR, dir.path().to_str().unwrap()),
                (single, GOOD),
            ]))
            .unwrap_err();
            assert_eq!(problems.len(), 1);
            assert!(
                problems[0].contains(&format!("{DIR} and {single}"))
                    || problems[0].contains(&format!(", {single}")),
                "{problems:?}"
            );
            assert!(problems[0].contains("are both set"), "{problems:?}");
            assert!(!problems[0].contains(GOOD));
        }
    }

    #[test]
    fn loads_current_and_previous() {
        let keys = Keys::load(&Env::from_pairs([(CURRENT, GOOD), (PREVIOUS, &GOOD[1..])])).unwrap();
        assert_eq!(keys.current.as_bytes(), GOOD.as_bytes());
        assert_eq!(keys.verifying().count(), 2);
    }

    #[test]
    fn refuses_missing_short_placeholder_and_both_set() {
        let repeated = "a".repeat(40);
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![], "JWT_SECRET_KEY is not set"),
            (vec![(CURRENT, "short")], "must be at least 32"),
            (
                vec![(CURRENT, "your-secret-key-change-this-in-production")],
                "placeholder",
            ),
            (
                vec![(CURRENT, "CHANGEME-changeme-changeme-changeme-x")],
                "placeholder",
            ),
            (vec![(CURRENT, &repeated)], "repeated"),
            (
                vec![(CURRENT, GOOD), ("JWT_SECRET_KEY_FILE", "/x")],
                "both JWT_SECRET_KEY and JWT_SECRET_KEY_FILE",
            ),
            (
                vec![(CURRENT, GOOD), (PREVIOUS, "hunter2hunter2")],
                "JWT_SECRET_KEY_PREVIOUS is too weak",
            ),
            (
                vec![("JWT_SECRET_KEY_FILE", "/nonexistent/key")],
                "cannot read /nonexistent/key",
            ),
        ];
        for (env, want) in cases {
            let err = Keys::load(&Env::from_pairs(env.clone()))
                .unwrap_err()
                .join("\n");
            assert!(err.contains(want), "{env:?}: {err}");
            for (_, v) in env {
                if v.len() > 4 && !v.starts_with('/') {
                    assert!(!err.contains(v), "message echoes the value: {err}");
                }
            }
        }
    }

    #[test]
    fn file_trims_exactly_one_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, format!("{GOOD}\n")).unwrap();
        let p = path.to_str().unwrap();
        let keys = Keys::load(&Env::from_pairs([("JWT_SECRET_KEY_FILE", p)])).unwrap();
        assert_eq!(keys.current.as_bytes(), GOOD.as_bytes());
        assert_eq!(keys.files, vec![path.clone()]);
        std::fs::write(&path, format!("{GOOD}\n\n")).unwrap();
        let keys = Keys::load(&Env::from_pairs([("JWT_SECRET_KEY_FILE", p)])).unwrap();
        assert_eq!(keys.current.as_bytes(), format!("{GOOD}\n").as_bytes());
    }

    #[test]
    fn a_missing_or_empty_previous_key_file_means_no_previous_key() {
        let dir = tempfile::tempdir().unwrap();
        let prev = dir.path().join("previous");
        let p = prev.to_str().unwrap();
        let keys = Keys::load(&Env::from_pairs([
            (CURRENT, GOOD),
            ("JWT_SECRET_KEY_PREVIOUS_FILE", p),
        ]))
        .unwrap();
        assert_eq!(keys.previous, None);
        assert_eq!(
            keys.files,
            vec![prev.clone()],
            "a missing file is still watched"
        );
        std::fs::write(&prev, "\n").unwrap();
        let keys = Keys::load(&Env::from_pairs([
            (CURRENT, GOOD),
            ("JWT_SECRET_KEY_PREVIOUS_FILE", p),
        ]))
        .unwrap();
        assert_eq!(keys.previous, None);
        // The current key file must exist.
        let err = Keys::load(&Env::from_pairs([("JWT_SECRET_KEY_FILE", p)])).unwrap_err();
        assert!(err.join("").contains("too weak"), "{err:?}");
    }

    #[test]
    fn generated_secrets_are_strong_and_distinct() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(strength(a.as_bytes()).is_ok());
    }

    #[test]
    fn debug_never_shows_the_key() {
        let keys = Keys::from_secrets(GOOD, None);
        assert!(!format!("{keys:?}").contains(GOOD));
    }
}
