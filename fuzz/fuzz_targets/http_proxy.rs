//! Invariant: never panics; whatever bytes a client sends, the real proxy forwards to the (scripted) backend only complete, valid requests it was not told to deny; only the last body may be cut short, when the client's was.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| lb::http::fuzz_check::proxy(data));
