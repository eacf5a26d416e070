//! Header rewriting: from any set of client headers, the upstream gets the identity headers
//! exactly once with the gateway's values, or not at all. Input: lines `name:value`; the first
//! byte picks whether there is an identity.
#![no_main]

use std::sync::OnceLock;

use http::header::{HeaderName, HeaderValue};
use jwtgate::pipeline::headers::HeaderPolicy;
#[path = "../../support/invariants.rs"]
mod invariants;
use libfuzzer_sys::fuzz_target;

static POLICY: OnceLock<HeaderPolicy> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let sent: Vec<(HeaderName, HeaderValue)> = rest
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let i = line.iter().position(|&b| b == b':')?;
            let name = HeaderName::from_bytes(&line[..i]).ok()?;
            let value = HeaderValue::from_bytes(&line[i + 1..]).ok()?;
            Some((name, value))
        })
        .collect();
    let policy = POLICY.get_or_init(|| HeaderPolicy::new(&invariants::config().auth));
    let user = (first & 1 == 1).then_some("alice");
    invariants::check_rewrite(policy, &sent, user);
});
