//! Invariant check for the `vrrp_advert` fuzz target and `tests/fuzz_seeds.rs`: arbitrary bytes through the advert parser.

use super::packet::{encode, parse, wrap, GROUP, TTL};

/// VRRP advert: never panics; an accepted advert re-encoded from its fields (same
/// source, TTL 255) parses back to the same advert, and any single flipped bit in
/// the VRRP message of that re-encoding is refused or changes what is parsed.
pub fn advert(data: &[u8]) {
    let Ok(a) = parse(data) else {
        return;
    };
    assert!(a.interval_cs > 0 && a.interval_cs <= 0x0fff);
    let msg = encode(a.src, GROUP, a.vrid, a.priority, a.interval_cs, &a.addrs);
    let again = wrap(a.src, TTL, &msg);
    assert_eq!(parse(&again).as_ref(), Ok(&a), "re-encoded advert differs");
    // The checksum catches any one-bit error in the message.
    for i in 20..again.len() {
        let mut bad = again.clone();
        bad[i] ^= 1 << (i % 8);
        if let Ok(b) = parse(&bad) {
            assert_ne!(b, a, "bit flip at byte {i} went unnoticed");
        }
    }
}
