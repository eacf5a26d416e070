//! The docs as a reader meets them: every relative link in the Markdown docs leads to a file or
//! directory of the repository (and its `#anchor` to a heading of that file, by GitHub's rules),
//! no doc names a file outside the repository (`../shared/...`, `CONTRACT.md`), and every key of
//! `config/jwtgate.toml` is in the configuration reference, `docs/configuration.md`.
//!
//! Standard library only: a small reader of Markdown's fences, code spans, links and headings,
//! and of the TOML lines the example config is written in (commented-out keys included).

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Component, Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Docs that must exist.
const DOCS: [&str; 5] = [
    "README.md",
    "SECURITY.md",
    "CHANGELOG.md",
    "CONTRIBUTING.md",
    "benches/README.md",
];

/// Docs checked when they exist.
const OPTIONAL_DOCS: [&str; 5] = [
    "tests/browser/README.md",
    "tests/providers/README.md",
    "tests/corpus/README.md",
    "config/forward-auth/README.md",
    "proto/README.md",
];

/// What no doc may mention: files that are not in the repository.
const FORBIDDEN: [&str; 2] = ["../shared", "CONTRACT.md"];

/// Every doc checked, as paths relative to the repository root; a required one that is missing
/// is reported in `problems`.
fn docs(problems: &mut Vec<String>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in DOCS {
        if root().join(d).is_file() {
            out.push(PathBuf::from(d));
        } else {
            problems.push(format!("{d}: missing"));
        }
    }
    for d in OPTIONAL_DOCS {
        if root().join(d).is_file() {
            out.push(PathBuf::from(d));
        }
    }
    match fs::read_dir(root().join("docs")) {
        Ok(entries) => {
            let mut pages: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "md"))
                .filter_map(|p| p.strip_prefix(root()).ok().map(Path::to_path_buf))
                .collect();
            pages.sort();
            out.extend(pages);
        }
        Err(e) => problems.push(format!("docs/: cannot be read ({e})")),
    }
    out
}

fn read(rel: &Path) -> String {
    fs::read_to_string(root().join(rel))
        .unwrap_or_else(|e| panic!("{} cannot be read: {e}", rel.display()))
}

/// One line of a Markdown file, as its reader sees it.
struct Line<'a> {
    /// 1-based.
    number: usize,
    text: &'a str,
    /// `None` outside fenced code blocks; inside one, the block's index in the file and its
    /// info string (`toml`, `sh`...).
    fence: Option<(usize, &'a str)>,
}

/// The lines of `text`, each marked with the fenced code block it is in (fence lines themselves
/// are left out). A fence is three or more backticks or tildes, closed by a run of the same
/// character at least as long with nothing after it.
fn lines(text: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let mut open: Option<(char, usize, &str)> = None;
    let mut blocks = 0;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        let run = |c: char| t.chars().take_while(|&x| x == c).count();
        let marker = t.chars().next().filter(|&c| c == '`' || c == '~');
        if let Some(c) = marker {
            let n = run(c);
            if n >= 3 {
                match open {
                    None => {
                        open = Some((c, n, t[n..].trim()));
                        blocks += 1;
                        continue;
                    }
                    Some((oc, on, _)) if oc == c && n >= on && t[n..].trim().is_empty() => {
                        open = None;
                        continue;
                    }
                    Some(_) => {}
                }
            }
        }
        out.push(Line {
            number: i + 1,
            text: line,
            fence: open.map(|(_, _, info)| (blocks, info)),
        });
    }
    out
}

/// The contents of a line's inline code spans, and the line with each span replaced by a space.
/// Spans are read within one line: keep a code span that names a key or hides a link on one line.
fn code_spans(line: &str) -> (Vec<&str>, String) {
    let b = line.as_bytes();
    let run_at = |i: usize| b[i..].iter().take_while(|&&c| c == b'`').count();
    let mut spans = Vec::new();
    let mut rest = String::new();
    let (mut i, mut kept) = (0, 0);
    while i < b.len() {
        if b[i] != b'`' {
            i += 1;
            continue;
        }
        let n = run_at(i);
        let mut j = i + n;
        let mut close = None;
        while j < b.len() {
            if b[j] == b'`' {
                let m = run_at(j);
                if m == n {
                    close = Some(j);
                    break;
                }
                j += m;
            } else {
                j += 1;
            }
        }
        match close {
            Some(j) => {
                spans.push(&line[i + n..j]);
                rest.push_str(&line[kept..i]);
                rest.push(' ');
                i = j + n;
                kept = i;
            }
            None => i += n,
        }
    }
    rest.push_str(&line[kept..]);
    (spans, rest)
}

/// The targets of the links and images on a line (code spans already removed).
fn link_targets(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(p) = rest.find("](") {
        let after = &rest[p + 2..];
        let after = after.trim_start();
        let (target, end) = if let Some(inner) = after.strip_prefix('<') {
            let e = inner.find('>').unwrap_or(inner.len());
            (&inner[..e], (e + 2).min(after.len()))
        } else {
            let e = after
                .find(|c: char| c == ')' || c.is_whitespace())
                .unwrap_or(after.len());
            (&after[..e], e)
        };
        out.push(target);
        rest = &after[end..];
    }
    out
}

/// `[text](target)` becomes `text`, as GitHub renders a heading before it makes its anchor.
fn link_text(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(p) = rest.find("](") {
        let (before, after) = rest.split_at(p);
        out.push_str(before);
        let end = after.find(')').map_or(after.len(), |e| e + 1);
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// GitHub's anchor for a heading's text: lower case, spaces to `-`, every character that is not
/// a letter, a digit, `-` or `_` removed.
fn slug(heading: &str) -> String {
    link_text(heading)
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown file's headings (ATX headings outside fences); a repeated heading
/// gets `-1`, `-2`... as on GitHub.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = BTreeSet::new();
    for line in lines(text) {
        if line.fence.is_some() {
            continue;
        }
        let indent = line.text.len() - line.text.trim_start_matches(' ').len();
        let t = line.text.trim_start_matches(' ');
        let level = t.chars().take_while(|&c| c == '#').count();
        if indent > 3 || !(1..=6).contains(&level) {
            continue;
        }
        let rest = &t[level..];
        if !(rest.is_empty() || rest.starts_with(' ') || rest.starts_with('\t')) {
            continue;
        }
        let mut title = rest.trim();
        let closed = title.trim_end_matches('#');
        if closed.is_empty() || closed.ends_with(' ') {
            title = closed.trim_end();
        }
        let base = slug(title);
        let n = seen.entry(base.clone()).or_insert(0);
        out.insert(if *n == 0 { base } else { format!("{base}-{n}") });
        *n += 1;
    }
    out
}

/// `path` with `.` and `..` resolved lexically; `None` when it climbs above its start.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// What is wrong with one link of `doc` (relative to the root), if anything.
fn check_link(
    doc: &Path,
    target: &str,
    cache: &mut HashMap<PathBuf, BTreeSet<String>>,
) -> Option<String> {
    if ["http:", "https:", "mailto:"]
        .iter()
        .any(|s| target.starts_with(s))
    {
        return None;
    }
    if target.is_empty() {
        return Some("an empty link".into());
    }
    let (path, anchor) = match target.split_once('#') {
        Some((p, a)) => (p, Some(a)),
        None => (target, None),
    };
    let file = if path.is_empty() {
        doc.to_path_buf()
    } else if let Some(from_root) = path.strip_prefix('/') {
        match normalize(Path::new(from_root)) {
            Some(p) => p,
            None => return Some("leads outside the repository".into()),
        }
    } else {
        let dir = doc.parent().unwrap_or(Path::new(""));
        match normalize(&dir.join(path)) {
            Some(p) => p,
            None => return Some("leads outside the repository".into()),
        }
    };
    let full = root().join(&file);
    if !full.exists() {
        return Some(format!("{} does not exist", file.display()));
    }
    // Without an anchor, an existing file is all a link needs.
    let anchor = anchor?;
    if anchor.is_empty() {
        return None;
    }
    if !(full.is_file() && file.extension().is_some_and(|x| x == "md")) {
        return Some(format!(
            "#{anchor}: {} is not a Markdown file, so it has no headings to link to",
            file.display()
        ));
    }
    let known = cache
        .entry(file.clone())
        .or_insert_with(|| anchors(&read(&file)));
    if known.contains(anchor) {
        None
    } else {
        Some(format!(
            "{} has no heading with the anchor #{anchor}",
            file.display()
        ))
    }
}

#[test]
fn docs_link_only_to_what_the_repository_holds() {
    let mut problems = Vec::new();
    let docs = docs(&mut problems);
    let mut cache = HashMap::new();
    let mut links = 0;
    for doc in &docs {
        let text = read(doc);
        for (n, line) in text.lines().enumerate() {
            for f in FORBIDDEN {
                if line.contains(f) {
                    problems.push(format!(
                        "{}:{}: names {f}, which is not in the repository",
                        doc.display(),
                        n + 1
                    ));
                }
            }
        }
        for line in lines(&text) {
            if line.fence.is_some() {
                continue;
            }
            let (_, prose) = code_spans(line.text);
            for target in link_targets(&prose) {
                links += 1;
                if let Some(why) = check_link(doc, target, &mut cache) {
                    problems.push(format!(
                        "{}:{}: ({target}): {why}",
                        doc.display(),
                        line.number
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s) in the docs:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
    assert!(
        links > 50,
        "only {links} links found: is the reader broken?"
    );
}

/// Reads one TOML value, key or inline table at a time, from one line.
struct Toml<'a> {
    s: &'a [u8],
    i: usize,
}

/// Tables whose keys are data (claim names), not configuration keys.
const MAPS: [&str; 2] = ["claim_headers", "require"];

fn bare(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

impl Toml<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn string(&mut self) -> Result<String, String> {
        let quote = self.s[self.i];
        self.i += 1;
        let start = self.i;
        while let Some(c) = self.peek() {
            if c == b'\\' && quote == b'"' {
                self.i += 2;
                continue;
            }
            if c == quote {
                let s = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                self.i += 1;
                return Ok(s);
            }
            self.i += 1;
        }
        Err("a string is not closed".into())
    }

    /// A key, dotted or not: its segments.
    fn key(&mut self) -> Result<Vec<String>, String> {
        let mut segments = Vec::new();
        loop {
            self.space();
            match self.peek() {
                Some(b'"' | b'\'') => segments.push(self.string()?),
                Some(c) if bare(c) => {
                    let start = self.i;
                    while self.peek().is_some_and(bare) {
                        self.i += 1;
                    }
                    segments.push(String::from_utf8_lossy(&self.s[start..self.i]).into_owned());
                }
                _ => return Err("no key".into()),
            }
            self.space();
            if self.peek() == Some(b'.') {
                self.i += 1;
            } else {
                return Ok(segments);
            }
        }
    }

    /// `key = value`, recording the key's path (and those of an inline table's keys) in `out`.
    fn key_value(&mut self, table: &str, out: &mut Vec<String>) -> Result<(), String> {
        let segments = self.key()?;
        self.space();
        if self.peek() != Some(b'=') || self.s.get(self.i + 1) == Some(&b'=') {
            return Err("no `=` after the key".into());
        }
        self.i += 1;
        self.space();
        let path = join(table, &segments.join("."));
        let last = segments.last().map_or("", String::as_str);
        let record = !MAPS.contains(&last);
        out.push(path.clone());
        self.value(&path, record, out)
    }

    fn value(&mut self, path: &str, record: bool, out: &mut Vec<String>) -> Result<(), String> {
        match self.peek() {
            None => Err("no value".into()),
            Some(b'"' | b'\'') => self.string().map(drop),
            Some(b'[') => {
                self.i += 1;
                loop {
                    self.space();
                    match self.peek() {
                        Some(b']') => {
                            self.i += 1;
                            return Ok(());
                        }
                        Some(b',') => self.i += 1,
                        None => return Err("an array is not closed".into()),
                        Some(_) => self.value(path, record, out)?,
                    }
                }
            }
            Some(b'{') => {
                self.i += 1;
                loop {
                    self.space();
                    match self.peek() {
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(());
                        }
                        Some(b',') => self.i += 1,
                        None => return Err("an inline table is not closed".into()),
                        Some(_) => {
                            let mut inner = Vec::new();
                            self.key_value(path, &mut inner)?;
                            if record {
                                out.extend(inner);
                            }
                        }
                    }
                }
            }
            Some(_) => {
                let start = self.i;
                while self
                    .peek()
                    .is_some_and(|c| !matches!(c, b',' | b']' | b'}' | b'#' | b' ' | b'\t'))
                {
                    self.i += 1;
                }
                if self.i == start {
                    Err("no value".into())
                } else {
                    Ok(())
                }
            }
        }
    }
}

fn join(table: &str, key: &str) -> String {
    if table.is_empty() {
        key.to_owned()
    } else {
        format!("{table}.{key}")
    }
}

/// A table heading's name (`[server]`, `[[route]]`, `[auth.assertion]`), with nothing but a
/// comment after it.
fn heading(body: &str) -> Option<String> {
    let (inner, rest) = if let Some(b) = body.strip_prefix("[[") {
        b.split_once("]]")?
    } else {
        body.strip_prefix('[')?.split_once(']')?
    };
    let rest = rest.trim();
    if !(rest.is_empty() || rest.starts_with('#')) {
        return None;
    }
    let mut t = Toml {
        s: inner.as_bytes(),
        i: 0,
    };
    let segments = t.key().ok()?;
    t.space();
    (t.i == inner.len()).then(|| segments.join("."))
}

/// Every key path of a TOML text written one key a line (`server.listen`, `route.cors.origins`,
/// table names such as `forward_auth` and `auth.provider` too), with its line; commented-out
/// keys and headings (`# key = ...`, `# [section]`) count. A commented-out heading holds for
/// the commented-out keys after it, up to the next blank line or heading; a key that is not
/// commented out belongs to the last heading that is not. With `strict`, a line that is not a
/// comment and cannot be read is an error (so that a key this reader misses cannot go unseen).
fn toml_keys(text: &str, strict: bool) -> Result<Vec<(usize, String)>, String> {
    let mut out = Vec::new();
    // The table of keys that are not commented out, and of those that are.
    let mut real = String::new();
    let mut table = String::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            table.clone_from(&real);
            continue;
        }
        let (commented, body) = match line.strip_prefix('#') {
            Some(rest) => (true, rest.trim_start()),
            None => (false, line),
        };
        if body.is_empty() {
            continue;
        }
        if body.starts_with('[') {
            match heading(body) {
                Some(name) => {
                    out.push((n + 1, name.clone()));
                    if !commented {
                        real.clone_from(&name);
                    }
                    table = name;
                }
                None if strict && !commented => {
                    return Err(format!("line {}: cannot read the heading {line:?}", n + 1))
                }
                None => {}
            }
            continue;
        }
        let mut t = Toml {
            s: body.as_bytes(),
            i: 0,
        };
        let mut found = Vec::new();
        let scope = if commented { &table } else { &real };
        let read = t.key_value(scope, &mut found).and_then(|()| {
            t.space();
            match t.peek() {
                None | Some(b'#') => Ok(()),
                Some(_) => Err("more after the value".into()),
            }
        });
        match read {
            Ok(()) => out.extend(found.into_iter().map(|k| (n + 1, k))),
            Err(why) if strict && !commented => {
                return Err(format!("line {}: {why}: {line:?}", n + 1))
            }
            Err(_) => {}
        }
    }
    Ok(out)
}

#[test]
fn every_config_key_is_in_the_reference() {
    let config = read(Path::new("config/jwtgate.toml"));
    let keys = toml_keys(&config, true)
        .unwrap_or_else(|e| panic!("config/jwtgate.toml: this test cannot read {e}"));
    for expected in [
        "server.listen",
        "auth.claim_separator",
        "forward_auth.proxy",
        "route.cors.origins",
    ] {
        assert!(
            keys.iter().any(|(_, k)| k == expected),
            "the reader missed {expected} in config/jwtgate.toml: is it broken?"
        );
    }

    let reference_path = Path::new("docs/configuration.md");
    let reference = read(reference_path);
    let mut documented = BTreeSet::new();
    // The text of each TOML block, by block index.
    let mut blocks: HashMap<usize, String> = HashMap::new();
    for line in lines(&reference) {
        match line.fence {
            None => {
                for span in code_spans(line.text).0 {
                    let name = span.trim().trim_start_matches('[').trim_end_matches(']');
                    documented.insert(name.to_owned());
                }
            }
            Some((block, info)) if info.starts_with("toml") => {
                let text = blocks.entry(block).or_default();
                text.push_str(line.text);
                text.push('\n');
            }
            Some(_) => {}
        }
    }
    for block in blocks.values() {
        let found = toml_keys(block, false).expect("only a strict reading fails");
        documented.extend(found.into_iter().map(|(_, k)| k));
    }

    let missing: BTreeSet<String> = keys
        .iter()
        .filter(|(_, k)| !documented.contains(k))
        .map(|(n, k)| format!("{k} (config/jwtgate.toml:{n})"))
        .collect();
    assert!(
        missing.is_empty(),
        "{} config key(s) missing from {}: write each as `section.key` in a code span (a table \
         as `[section]`), or as `key = ...` in a TOML block under its [section]:\n  {}",
        missing.len(),
        reference_path.display(),
        missing.into_iter().collect::<Vec<_>>().join("\n  ")
    );
}
