//! Invariant: never panics; a conf error names the file and a line of the text; an accepted conf parses again the same, with unique names, binds, and existing backends of the same mode.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| lb::conf::fuzz_check::conf(data));
