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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// A deterministic stand-in for the fuzzer in `cargo test`: random valid
    /// adverts (the accept path) and random mutations of them (every refusal).
    #[test]
    fn random_adverts_and_mutations() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let r = next();
            let src = Ipv4Addr::from(r as u32);
            let n = (r >> 32) as usize % 4;
            let addrs: Vec<Ipv4Addr> = (0..n).map(|_| Ipv4Addr::from(next() as u32)).collect();
            let msg = encode(
                src,
                GROUP,
                (r >> 40) as u8,
                (r >> 48) as u8,
                (r >> 52) as u16 & 0x0fff | 1,
                &addrs,
            );
            let ip = wrap(src, TTL, &msg);
            advert(&ip);
            let mut m = ip.clone();
            for _ in 0..1 + next() % 3 {
                let i = next() as usize % m.len();
                m[i] = next() as u8;
            }
            let cut = next() as usize % (m.len() + 1);
            advert(&m);
            advert(&m[..cut]);
        }
    }
}
