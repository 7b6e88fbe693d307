//! Sets of IPv4/IPv6 networks (`src` acls): parsed from `A.B.C.D[/N]` and `X:Y::Z[/N]` words or a file, matched per address.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;

/// Largest `src -f` file read; a list of networks is never this big, a wrong path might be.
const MAX_LIST_FILE: u64 = 64 << 20;

/// Networks as IPv6 (IPv4 is mapped into `::ffff:0:0/96`, so a v4-mapped client address
/// matches IPv4 rules), grouped by prefix length: a lookup costs one hash probe per
/// distinct prefix length, whatever the number of networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrSet {
    /// (prefix length 0..=128, masked networks of that length), sorted by length.
    by_len: Vec<(u8, HashSet<u128>)>,
}

fn mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

/// An address as the set sees it: IPv4 becomes v4-mapped IPv6.
pub fn key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// Parses `ADDR` or `ADDR/LEN` into (mapped network, mapped length).
pub fn parse_cidr(s: &str) -> Result<(u128, u8), String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let ip: IpAddr = addr.parse().map_err(|_| {
        format!("invalid address '{addr}' in '{s}' (expected IPv4 or IPv6, optional /LEN)")
    })?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(l) => match l.parse::<u8>() {
            Ok(n) if n <= max && !l.starts_with('+') => n,
            _ => return Err(format!("invalid prefix length '/{l}' in '{s}' (0..{max})")),
        },
    };
    let len = if ip.is_ipv4() { len + 96 } else { len };
    Ok((key(ip) & mask(len), len))
}

impl CidrSet {
    pub fn insert(&mut self, net: u128, len: u8) {
        match self.by_len.binary_search_by_key(&len, |(l, _)| *l) {
            Ok(i) => {
                self.by_len[i].1.insert(net & mask(len));
            }
            Err(i) => self
                .by_len
                .insert(i, (len, HashSet::from([net & mask(len)]))),
        }
    }

    /// Adds one written network.
    pub fn add(&mut self, s: &str) -> Result<(), String> {
        let (net, len) = parse_cidr(s)?;
        self.insert(net, len);
        Ok(())
    }

    /// Adds every network of a list file: one per line, `#` starts a comment, blank lines
    /// are skipped. Errors name the file and line.
    pub fn add_file(&mut self, path: &Path) -> Result<(), String> {
        let shown = path.display();
        let meta = std::fs::metadata(path).map_err(|e| format!("cannot read '{shown}': {e}"))?;
        if !meta.is_file() {
            return Err(format!("'{shown}' is not a regular file"));
        }
        if meta.len() > MAX_LIST_FILE {
            return Err(format!("'{shown}' is larger than {MAX_LIST_FILE} bytes"));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read '{shown}': {e}"))?;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            self.add(line)
                .map_err(|m| format!("{shown}:{}: {m}", i + 1))?;
        }
        Ok(())
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let k = key(ip);
        self.by_len
            .iter()
            .any(|(len, nets)| nets.contains(&(k & mask(*len))))
    }

    /// Number of distinct networks.
    pub fn len(&self) -> usize {
        self.by_len.iter().map(|(_, s)| s.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v4_and_v6_networks() {
        let mut s = CidrSet::default();
        s.add("127.0.0.0/30").unwrap();
        s.add("10.1.2.3").unwrap();
        s.add("2001:db8::/32").unwrap();
        assert!(s.contains(ip("127.0.0.1")) && s.contains(ip("127.0.0.3")));
        assert!(!s.contains(ip("127.0.0.4")));
        assert!(s.contains(ip("10.1.2.3")) && !s.contains(ip("10.1.2.4")));
        assert!(s.contains(ip("2001:db8:ffff::1")) && !s.contains(ip("2001:db9::1")));
        // a v4-mapped client address matches the IPv4 rule, ::1 matches nothing here
        assert!(s.contains(ip("::ffff:127.0.0.2")));
        assert!(!s.contains(ip("::1")));
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn zero_length_prefixes_match_their_family_only() {
        let mut s = CidrSet::default();
        s.add("0.0.0.0/0").unwrap();
        assert!(s.contains(ip("8.8.8.8")) && !s.contains(ip("::1")));
        let mut s = CidrSet::default();
        s.add("::/0").unwrap();
        assert!(s.contains(ip("::1")) && s.contains(ip("1.2.3.4")));
    }

    #[test]
    fn bad_words() {
        for w in [
            "",
            "1.2.3",
            "1.2.3.4/33",
            "::1/129",
            "1.2.3.4/",
            "1.2.3.4/+8",
            "x/8",
            "1.2.3.4/a",
        ] {
            assert!(parse_cidr(w).is_err(), "{w}");
        }
        // host bits are masked off
        assert_eq!(
            parse_cidr("10.0.0.7/8").unwrap(),
            parse_cidr("10.0.0.0/8").unwrap()
        );
    }

    #[test]
    fn list_files() {
        let dir = crate::testutil::TempDir::new("cidr");
        let p = dir.join("list");
        std::fs::write(&p, "# blocked\n127.0.0.2\n\n  ::1/128  # loopback v6\n").unwrap();
        let mut s = CidrSet::default();
        s.add_file(&p).unwrap();
        assert!(s.contains(ip("127.0.0.2")) && s.contains(ip("::1")));
        std::fs::write(&p, "127.0.0.2\nbogus\n").unwrap();
        let e = CidrSet::default().add_file(&p).unwrap_err();
        assert!(
            e.ends_with(
                ":2: invalid address 'bogus' in 'bogus' (expected IPv4 or IPv6, optional /LEN)"
            ),
            "{e}"
        );
        assert!(CidrSet::default()
            .add_file(&dir)
            .unwrap_err()
            .contains("not a regular file"));
        assert!(CidrSet::default().add_file(&dir.join("none")).is_err());
    }
}
