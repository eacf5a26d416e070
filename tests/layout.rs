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
