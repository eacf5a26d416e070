//! HTTP/1 framing: request heads have one unambiguous framing, and the chunked decoder does not
//! depend on how its bytes arrive. Input: the first byte picks the split point for the chunked
//! check; the rest is both a request head and a chunked body.
#![no_main]

#[path = "../../support/invariants.rs"]
mod invariants;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    invariants::check_request_head(rest);
    invariants::check_chunked(rest, usize::from(split));
});
