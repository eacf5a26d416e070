//! jwtgate's HTTP/1 reading against hyper's on the same bytes (`tests/oracle/`): jwtgate
//! refuses, or reads exactly what hyper reads. Input: the first byte picks what the rest is:
//! even, a client's requests; odd, an upstream's answer (to a `HEAD` request when the second
//! bit is set).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../oracle/mod.rs"]
mod differential;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let result = if mode & 1 == 0 {
        differential::compare_requests(rest)
    } else {
        differential::compare_response(rest, mode & 2 != 0)
    };
    if let Err(e) = result {
        panic!("{e}");
    }
});
