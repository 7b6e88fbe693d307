//! Invariant: never panics; an accepted response head (first byte picks HEAD/CONNECT/GET) obeys the byte and framing rules and re-serializes to bytes that parse to the same head.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| lb::http::fuzz_check::response_head(data));
