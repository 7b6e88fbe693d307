//! Whether this process may open raw sockets and change addresses: the
//! effective capability set, as /proc/self/status shows it.

const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;

/// True when both CAP_NET_RAW and CAP_NET_ADMIN are effective.
pub fn has_net_caps() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    effective(&status).is_some_and(|c| c & (1 << CAP_NET_ADMIN) != 0 && c & (1 << CAP_NET_RAW) != 0)
}

/// The `CapEff:` mask of a /proc status text.
fn effective(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_effective_mask() {
        assert_eq!(
            effective("Name:\tlb\nCapEff:\t0000000000003000\n"),
            Some(0x3000)
        );
        assert_eq!(effective("Name:\tlb\n"), None);
    }
}
