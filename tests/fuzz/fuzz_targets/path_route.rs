//! Path normalization and routing: any input, no panic; a normalized path is stable and is
//! routed by whole segments to the longest matching prefix.
#![no_main]

use std::sync::OnceLock;

#[path = "../../support/invariants.rs"]
mod invariants;
use jwtgate::Config;
use libfuzzer_sys::fuzz_target;

static CONFIG: OnceLock<Config> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let config = CONFIG.get_or_init(invariants::config);
    if let Ok(path) = std::str::from_utf8(data) {
        invariants::check_path(&config.routes, path);
    }
});
