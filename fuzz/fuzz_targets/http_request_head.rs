//! Invariant: never panics; an accepted request head obeys the byte rules, splits off exactly the head, re-serializes to bytes that parse to the same head, and its prefixes are incomplete, never errors.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| lb::http::fuzz_check::request_head(data));
