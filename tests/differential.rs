//! jwtgate's HTTP/1 reading against hyper's on the same bytes (the oracle is
//! `tests/oracle/`): for every input of the committed corpus (`tests/corpus/`, written by
//! `generate.py` there), jwtgate refuses, or reads exactly what hyper reads. Prints how often
//! each side refused, and every reason jwtgate refused what hyper read (the README lists them).

use std::collections::BTreeMap;

mod oracle;

use jwtgate::wire::stream::{read_requests, End, Reading};
use oracle::{compare_requests, compare_requests_with, compare_response, Verdict};

#[derive(serde::Deserialize)]
struct Entry {
    name: String,
    data: String,
    #[serde(default)]
    head: bool,
}

/// The committed corpus, and with `JWTGATE_EXTRA_CORPUS=DIR` the same files from `DIR` too (test
/// vectors taken from other projects for a local run, not committed; see tests/corpus/README.md).
fn corpus(file: &str) -> Vec<(String, Vec<u8>, bool)> {
    let committed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut entries = read_corpus(&committed.join(file));
    if let Ok(extra) = std::env::var("JWTGATE_EXTRA_CORPUS") {
        let extra = read_corpus(&std::path::Path::new(&extra).join(file));
        eprintln!(
            "{file}: {} more inputs from JWTGATE_EXTRA_CORPUS",
            extra.len()
        );
        entries.extend(extra);
    }
    entries
}

fn read_corpus(path: &std::path::Path) -> Vec<(String, Vec<u8>, bool)> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|line| {
            let e: Entry = serde_json::from_str(line).unwrap();
            // Each character is one byte (Latin-1).
            let bytes = e
                .data
                .chars()
                .map(|c| u8::try_from(u32::from(c)).expect("a Latin-1 character"))
                .collect();
            (e.name, bytes, e.head)
        })
        .collect()
}

#[derive(Default)]
struct Tally {
    inputs: usize,
    same: usize,
    both_refused: usize,
    stricter: BTreeMap<String, (usize, Vec<String>)>,
    failures: Vec<String>,
}

impl Tally {
    fn add(&mut self, name: &str, verdict: Result<Verdict, String>) {
        self.inputs += 1;
        match verdict {
            Ok(Verdict::Same(_)) => self.same += 1,
            Ok(Verdict::Stricter {
                hyper_accepted: false,
                ..
            }) => self.both_refused += 1,
            Ok(Verdict::Stricter { why, .. }) => {
                let (n, examples) = self.stricter.entry(why).or_default();
                *n += 1;
                if examples.len() < 3 {
                    examples.push(name.to_owned());
                }
            }
            Err(e) => self.failures.push(format!("{name}: {e}")),
        }
    }

    fn report(&self, what: &str) {
        eprintln!(
            "{what}: {} inputs; same reading {}; both refuse {}; only jwtgate refuses {}",
            self.inputs,
            self.same,
            self.both_refused,
            self.stricter.values().map(|(n, _)| n).sum::<usize>()
        );
        for (why, (n, examples)) in &self.stricter {
            eprintln!("  jwtgate refuses, hyper reads: {why} ({n}), e.g. {examples:?}");
        }
        assert!(
            self.failures.is_empty(),
            "{} {what} where jwtgate is less strict than hyper or reads something else:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

#[test]
fn requests_jwtgate_refuses_or_reads_as_hyper_does() {
    let entries = corpus("requests.jsonl");
    assert!(entries.len() >= 5000, "{} requests", entries.len());
    let mut tally = Tally::default();
    for (name, bytes, _) in &entries {
        tally.add(name, compare_requests(bytes));
    }
    tally.report("requests");
}

#[test]
fn responses_jwtgate_refuses_or_reads_as_hyper_does() {
    let entries = corpus("responses.jsonl");
    assert!(entries.len() >= 2000, "{} responses", entries.len());
    let mut tally = Tally::default();
    for (name, bytes, head) in &entries {
        tally.add(name, compare_response(bytes, *head));
    }
    tally.report("responses");
}

/// The oracle can fail: a reader that takes `Transfer-Encoding: chunked,` for chunked (as jwtgate
/// once did), or one that reads fewer requests from the same bytes, is caught.
#[test]
fn the_oracle_catches_a_lenient_reader() {
    let input = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n0\r\n\r\n";
    let lenient = |input: &[u8]| -> Reading {
        let fixed = String::from_utf8_lossy(input).replace("chunked,", "chunked");
        let mut r = read_requests(fixed.as_bytes(), oracle::LIMITS);
        r.end = End::Clean;
        r
    };
    assert!(compare_requests_with(input, lenient).is_err());
    assert!(compare_requests(input).is_ok());
    // A reader that takes a pipelined request for part of the one before (the smuggling
    // signature: all bytes used, fewer requests than hyper found).
    let input =
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /x HTTP/1.1\r\nHost: a\r\n\r\n";
    let swallowing = |input: &[u8]| -> Reading {
        let mut r = read_requests(input, oracle::LIMITS);
        r.messages.truncate(1);
        r.end = End::Clean;
        r
    };
    assert!(compare_requests_with(input, swallowing).is_err());
    assert!(compare_requests(input).is_ok());
}
