//! Token parsing and verification: any input, no panic; an identity only from a token whose
//! signature is valid under the key, and it is that token's `sub`.
#![no_main]

use std::sync::OnceLock;

use jwtgate::auth::Verifier;
#[path = "../../support/invariants.rs"]
mod invariants;
use libfuzzer_sys::fuzz_target;

static VERIFIER: OnceLock<Verifier> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let verifier = VERIFIER.get_or_init(|| invariants::verifier(&invariants::config()));
    if let Ok(token) = std::str::from_utf8(data) {
        invariants::check_token(verifier, token, 1_700_000_000.0);
    }
});
