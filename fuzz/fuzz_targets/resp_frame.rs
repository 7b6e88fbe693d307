//! Invariant: never panics; an accepted RESP frame lies inside the input, does not depend on what follows, its prefixes are incomplete, and its arguments re-encode to the same arguments.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| lb::kv::fuzz_check::resp_frame(data));
