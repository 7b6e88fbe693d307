//! Invariant: never panics; decoding any split of the input yields the same payload, trailers, error and leftover as decoding it whole, and a decoded body re-framed decodes the same.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| lb::http::fuzz_check::chunked(data));
