//! Invariant: never panics; an accepted VRRP advert re-encodes to the same advert, and its checksum catches any one-bit error.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| lb::vrrp::fuzz_check::advert(data));
