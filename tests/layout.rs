//! The layout holds: the folders of `src/` depend on each other in one direction only (each
//! uses only the folders listed before it in `lib.rs`'s "# Layout"), and every module file says
//! what it owns in a `//!` comment. Read from the source text, so a new dependency that points
//! the wrong way fails here, not in a review.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The folders, lowest first: each may use only those before it.
const ORDER: &[&str] = &[
    "wire", "net", "config", "ops", "auth", "policy", "pipeline", "upstream", "runtime", "http",
    "server",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a file names as `crate::<name>`.
fn crate_uses(text: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        used.insert(name);
    }
    used
}

#[test]
fn folders_depend_on_each_other_in_one_direction() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut problems = Vec::new();
    for (rank, folder) in ORDER.iter().enumerate() {
        let mut files = Vec::new();
        rust_files(&src.join(folder), &mut files);
        assert!(!files.is_empty(), "src/{folder} is empty");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for used in crate_uses(&text) {
                match ORDER.iter().position(|f| *f == used) {
                    Some(r) if r > rank => problems.push(format!(
                        "{}: uses crate::{used}, which comes after {folder}",
                        file.display()
                    )),
                    Some(_) => {}
                    None => problems.push(format!(
                        "{}: uses crate::{used}, which is not a folder of the layout",
                        file.display()
                    )),
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_module_says_what_it_owns_and_the_layout_is_documented() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let undocumented: Vec<String> = files
        .iter()
        .filter(|f| {
            !std::fs::read_to_string(f)
                .unwrap()
                .trim_start()
                .starts_with("//!")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(undocumented.is_empty(), "no //! comment: {undocumented:?}");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let layout = lib
        .split("# Layout")
        .nth(1)
        .expect("lib.rs has a # Layout section");
    for folder in ORDER {
        assert!(
            layout.contains(&format!("{folder}/")),
            "# Layout does not list {folder}/"
        );
    }
}

/// Every module path a file names: in `use` statements (braces expanded) and inline, made
/// absolute (`crate::a::b`), as segments. `module` is the file's own module path.
fn paths_used(text: &str, module: &[String]) -> Vec<Vec<String>> {
    let resolve = |path: &str| -> Option<Vec<String>> {
        let mut segs = path.split("::").map(str::trim).filter(|s| !s.is_empty());
        let first = segs.next()?;
        let mut out: Vec<String> = match first {
            "crate" => Vec::new(),
            "super" => module[..module.len().saturating_sub(1)].to_vec(),
            "self" => module.to_vec(),
            _ => return None,
        };
        for s in segs {
            if s == "super" {
                out.pop();
            } else {
                out.push(s.to_owned());
            }
        }
        Some(out)
    };
    // `a::{b, c::{d, e}}` into `a::b`, `a::c::d`, `a::c::e`.
    fn expand(tree: &str) -> Vec<String> {
        let tree = tree.trim();
        let Some(open) = tree.find('{') else {
            return vec![tree.split(" as ").next().unwrap_or("").trim().to_owned()];
        };
        let prefix = &tree[..open];
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let mut parts = Vec::new();
        let (mut depth, mut start) = (0, 0);
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&inner[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&inner[start..]);
        parts
            .into_iter()
            .filter(|p| !p.trim().is_empty())
            .flat_map(|p| expand(p).into_iter().map(move |e| format!("{prefix}{e}")))
            .collect()
    }
    let mut found = Vec::new();
    // Comments say things; code does them.
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    for stmt in code.split(';') {
        let stmt = stmt.trim();
        let body = stmt
            .strip_prefix("pub(crate) use ")
            .or_else(|| stmt.strip_prefix("pub(super) use "))
            .or_else(|| stmt.strip_prefix("pub use "))
            .or_else(|| stmt.strip_prefix("use "));
        if let Some(body) = body {
            found.extend(expand(body).iter().filter_map(|p| resolve(p)));
        }
    }
    // Inline paths: `crate::a::b`, `super::a`, `super::super::a`.
    let bytes = code.as_bytes();
    for start in ["crate::", "super::"] {
        let mut at = 0;
        while let Some(i) = code[at..].find(start) {
            let i = at + i;
            at = i + start.len();
            if i > 0
                && (bytes[i - 1].is_ascii_alphanumeric()
                    || bytes[i - 1] == b'_'
                    || bytes[i - 1] == b':')
            {
                continue;
            }
            let path: String = code[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            if let Some(p) = resolve(path.trim_end_matches(':')) {
                found.push(p);
            }
        }
    }
    found
}

/// The module path of `file` under `src` (`src/a/b/mod.rs` is `a::b`).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut segs: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if segs.last().is_some_and(|s| s == "mod") {
        segs.pop();
    }
    segs
}

/// Within every folder, its modules (files and subfolders) use each other without a cycle: a
/// folder's `mod.rs` may join them, but no module may depend on another that depends back on
/// it (`auth/jwk.rs` -> `verifier` -> `provider` -> `jwk` once did).
#[test]
fn modules_within_a_folder_have_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    rust_files(&src, &mut all);
    let modules: Vec<(Vec<String>, String)> = all
        .iter()
        .map(|f| (module_of(&src, f), std::fs::read_to_string(f).unwrap()))
        .collect();
    let folders: BTreeSet<Vec<String>> = modules
        .iter()
        .filter(|(m, _)| !m.is_empty())
        .map(|(m, _)| m[..m.len() - 1].to_vec())
        .collect();
    let mut problems = Vec::new();
    for folder in folders {
        // The folder's children, and who uses whom among them.
        let children: BTreeSet<String> = modules
            .iter()
            .filter(|(m, _)| m.len() > folder.len() && m.starts_with(&folder))
            .map(|(m, _)| m[folder.len()].clone())
            .collect();
        let mut edges: BTreeSet<(String, String)> = BTreeSet::new();
        for (m, text) in &modules {
            if m.len() <= folder.len() || !m.starts_with(&folder) {
                continue;
            }
            let from = &m[folder.len()];
            for used in paths_used(text, m) {
                if used.len() > folder.len() && used.starts_with(&folder) {
                    let to = &used[folder.len()];
                    if to != from && children.contains(to) {
                        edges.insert((from.clone(), to.clone()));
                    }
                }
            }
        }
        // Depth-first search for a cycle.
        fn visit(
            node: &str,
            edges: &BTreeSet<(String, String)>,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) -> Option<Vec<String>> {
            if let Some(at) = path.iter().position(|p| p == node) {
                let mut cycle = path[at..].to_vec();
                cycle.push(node.to_owned());
                return Some(cycle);
            }
            if done.contains(node) {
                return None;
            }
            path.push(node.to_owned());
            for (_, to) in edges.iter().filter(|(f, _)| f == node) {
                if let Some(c) = visit(to, edges, path, done) {
                    return Some(c);
                }
            }
            path.pop();
            done.insert(node.to_owned());
            None
        }
        let mut done = BTreeSet::new();
        for child in &children {
            if let Some(cycle) = visit(child, &edges, &mut Vec::new(), &mut done) {
                problems.push(format!("src/{}: {}", folder.join("/"), cycle.join(" -> ")));
                break;
            }
        }
    }
    assert!(
        problems.is_empty(),
        "module cycles:\n{}",
        problems.join("\n")
    );
}

/// The cycle check sees what it must: a use through braces, `super`, and an inline path.
#[test]
fn the_cycle_check_reads_paths() {
    let m = |s: &str| s.split("::").map(str::to_owned).collect::<Vec<_>>();
    let got = paths_used(
        "use super::{cache::KeyId, jwt};\nuse crate::config::{Algorithm, AuthConfig};\nfn f() { super::verifier::alg::to_jsonwebtoken(x); }",
        &m("auth::jwk"),
    );
    for want in [
        "auth::cache::KeyId",
        "auth::jwt",
        "config::Algorithm",
        "auth::verifier::alg::to_jsonwebtoken",
    ] {
        assert!(got.contains(&m(want)), "{want} not in {got:?}");
    }
}
