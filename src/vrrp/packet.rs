//! VRRPv3 advertisements over IPv4 (RFC 5798 section 5): parsing a received IP packet, encoding
//! the VRRP payload the kernel wraps in an IP header. Pure, fuzzed.

use std::net::Ipv4Addr;

/// IP protocol number of VRRP.
pub const PROTO: u8 = 112;
/// The VRRP IPv4 multicast group.
pub const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// Every advert is sent, and must arrive, with this TTL (it never crossed a router).
pub const TTL: u8 = 255;
const VERSION: u8 = 3;
const TYPE_ADVERT: u8 = 1;
const HEADER: usize = 8;
/// Most addresses one advert carries (the count field is a byte).
pub const MAX_ADDRS: usize = 255;

/// One advert as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// The sender's primary address (the IP source).
    pub src: Ipv4Addr,
    pub vrid: u8,
    /// 0: the master is leaving; 255: the address owner.
    pub priority: u8,
    /// Max Advertise Interval in centiseconds (12 bits).
    pub interval_cs: u16,
    pub addrs: Vec<Ipv4Addr>,
}

/// Why a received packet is not a valid advert; each is a label of the drop counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reject {
    /// Shorter than its headers or than its address count says; not IPv4; not VRRP.
    Malformed,
    /// IP TTL other than 255: it crossed a router (or was forged off-link).
    Ttl,
    /// VRRP version other than 3.
    Version,
    /// VRRP type other than ADVERTISEMENT.
    Type,
    /// Checksum over the pseudo-header and message does not add up.
    Checksum,
    /// A virtual router id no instance on this interface has.
    Vrid,
    /// A master's interval of 0 (the RFC's minimum is 1 cs).
    Interval,
}

impl Reject {
    pub const ALL: [Reject; 7] = [
        Reject::Malformed,
        Reject::Ttl,
        Reject::Version,
        Reject::Type,
        Reject::Checksum,
        Reject::Vrid,
        Reject::Interval,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reject::Malformed => "malformed",
            Reject::Ttl => "ttl",
            Reject::Version => "version",
            Reject::Type => "type",
            Reject::Checksum => "checksum",
            Reject::Vrid => "vrid",
            Reject::Interval => "interval",
        }
    }

    pub fn index(self) -> usize {
        Reject::ALL.iter().position(|d| *d == self).unwrap_or(0)
    }
}

/// Parses a whole IPv4 packet as a raw socket hands it over (IP header included).
/// Checks everything an advert carries by itself; the vrid and interval are
/// checked by the instance, which knows its own.
pub fn parse(ip: &[u8]) -> Result<Advert, Reject> {
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return Err(Reject::Malformed);
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    // The kernel may hand over trailing bytes (Ethernet padding): trust the IP length.
    if ihl < 20 || total < ihl + HEADER || total > ip.len() || ip[9] != PROTO {
        return Err(Reject::Malformed);
    }
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let v = &ip[ihl..total];
    if ip[8] != TTL {
        return Err(Reject::Ttl);
    }
    if v[0] >> 4 != VERSION {
        return Err(Reject::Version);
    }
    if v[0] & 0x0f != TYPE_ADVERT {
        return Err(Reject::Type);
    }
    let count = usize::from(v[3]);
    if v.len() < HEADER + 4 * count {
        return Err(Reject::Malformed);
    }
    if checksum(src, dst, v) != 0 {
        return Err(Reject::Checksum);
    }
    let interval_cs = u16::from_be_bytes([v[4], v[5]]) & 0x0fff;
    if interval_cs == 0 {
        return Err(Reject::Interval);
    }
    let addrs = v[HEADER..HEADER + 4 * count]
        .chunks_exact(4)
        .map(|a| Ipv4Addr::new(a[0], a[1], a[2], a[3]))
        .collect();
    Ok(Advert {
        src,
        vrid: v[1],
        priority: v[2],
        interval_cs,
        addrs,
    })
}

/// The VRRP message (no IP header) from `src` to `dst`, checksum filled in.
/// `addrs` beyond [`MAX_ADDRS`] are left out (the conf refuses that many).
pub fn encode(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    vrid: u8,
    priority: u8,
    interval_cs: u16,
    addrs: &[Ipv4Addr],
) -> Vec<u8> {
    let addrs = &addrs[..addrs.len().min(MAX_ADDRS)];
    let mut v = Vec::with_capacity(HEADER + 4 * addrs.len());
    v.push(VERSION << 4 | TYPE_ADVERT);
    v.push(vrid);
    v.push(priority);
    v.push(addrs.len() as u8);
    v.extend_from_slice(&(interval_cs & 0x0fff).to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    for a in addrs {
        v.extend_from_slice(&a.octets());
    }
    let sum = checksum(src, dst, &v);
    v[6..8].copy_from_slice(&sum.to_be_bytes());
    v
}

/// The Internet checksum over the IPv4 pseudo-header (source, destination, zero,
/// protocol, VRRP length) and the message: 0 when the message's own checksum is right.
pub fn checksum(src: Ipv4Addr, dst: Ipv4Addr, msg: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            let w = match c {
                [a, b] => u16::from_be_bytes([*a, *b]),
                [a] => u16::from_be_bytes([*a, 0]),
                _ => 0,
            };
            sum += u32::from(w);
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&[0, PROTO]);
    add(&(msg.len() as u16).to_be_bytes());
    add(msg);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 header in front of `msg` as the kernel would write it (TTL 255, to
/// the VRRP group): what tests and the fuzz check feed to [`parse`].
pub fn wrap(src: Ipv4Addr, ttl: u8, msg: &[u8]) -> Vec<u8> {
    let total = (20 + msg.len()) as u16;
    let mut ip = vec![0x45, 0xc0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0, 0, ttl, PROTO, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&GROUP.octets());
    ip.extend_from_slice(msg);
    ip
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
    const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);

    fn advert(prio: u8) -> Vec<u8> {
        wrap(SRC, TTL, &encode(SRC, GROUP, 51, prio, 10, &[VIP]))
    }

    #[test]
    fn round_trip() {
        let a = parse(&advert(150)).unwrap();
        assert_eq!(
            a,
            Advert {
                src: SRC,
                vrid: 51,
                priority: 150,
                interval_cs: 10,
                addrs: vec![VIP],
            }
        );
    }

    /// The layout of RFC 5798 section 5.1: version 3 and type 1 in one byte,
    /// vrid, priority, count, 4 reserved bits and 12 bits of interval.
    #[test]
    fn layout() {
        let m = encode(SRC, GROUP, 51, 150, 10, &[VIP]);
        assert_eq!(&m[..6], &[0x31, 51, 150, 1, 0x00, 0x0a]);
        assert_eq!(&m[8..], &[10, 77, 0, 100]);
        assert_eq!(checksum(SRC, GROUP, &m), 0);
        // 12 bits only: 40.95 s is the longest interval.
        assert_eq!(&encode(SRC, GROUP, 1, 1, 0xffff, &[])[4..6], &[0x0f, 0xff]);
    }

    /// An advert keepalived 2.2.7 sent (`vrrp_version 3`, vrid 51, priority 150,
    /// `advert_int 0.1`, one address), captured whole with a raw socket in a
    /// namespace: IP header included.
    #[test]
    fn keepalived_capture() {
        let hex = "45c0002000020000ff70d04b0a4d0001e000001231339601000a43330a4d0064";
        let ip: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let a = parse(&ip).unwrap();
        assert_eq!(
            a,
            Advert {
                src: SRC,
                vrid: 51,
                priority: 150,
                interval_cs: 10,
                addrs: vec![VIP],
            }
        );
        // Ours, byte for byte the same message.
        assert_eq!(encode(SRC, GROUP, 51, 150, 10, &[VIP]), ip[20..]);
    }

    #[test]
    fn bad_adverts_have_reasons() {
        let good = advert(100);
        let mut p = good.clone();
        p[8] = 254;
        assert_eq!(parse(&p), Err(Reject::Ttl));
        let mut p = good.clone();
        p[20] = 0x21; // version 2
        assert_eq!(parse(&p), Err(Reject::Version));
        let mut p = good.clone();
        p[20] = 0x32; // type 2
        assert_eq!(parse(&p), Err(Reject::Type));
        let mut p = good.clone();
        p[22] ^= 1; // priority changed after the checksum
        assert_eq!(parse(&p), Err(Reject::Checksum));
        let mut p = good.clone();
        p[23] = 9; // more addresses than bytes
        assert_eq!(parse(&p), Err(Reject::Malformed));
        assert_eq!(parse(&good[..25]), Err(Reject::Malformed));
        let mut p = good.clone();
        p[9] = 6;
        assert_eq!(parse(&p), Err(Reject::Malformed));
        let zero = wrap(SRC, TTL, &encode(SRC, GROUP, 51, 100, 0, &[VIP]));
        assert_eq!(parse(&zero), Err(Reject::Interval));
        // The checksum binds the source: a copy claiming another sender fails.
        let spoofed = wrap(
            Ipv4Addr::new(10, 77, 0, 9),
            TTL,
            &encode(SRC, GROUP, 51, 100, 10, &[VIP]),
        );
        assert_eq!(parse(&spoofed), Err(Reject::Checksum));
    }

    #[test]
    fn padding_after_the_ip_length_is_ignored() {
        let mut p = advert(100);
        p.extend_from_slice(&[0; 18]);
        assert_eq!(parse(&p).unwrap().priority, 100);
    }
}
