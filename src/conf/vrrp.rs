//! The `vrrp NAME` section: one VRRPv3 virtual router (RFC 5798) this node takes part in.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::parse::{self, did_you_mean, Directive};

#[derive(Debug, Clone, PartialEq)]
pub struct VrrpConf {
    pub name: String,
    pub line: usize,
    /// Where adverts go and the addresses are added.
    pub interface: String,
    /// Virtual router id, 1..=255, the same on every peer.
    pub vrid: u8,
    pub line_vrid: usize,
    /// 1..=254; 255 = this node owns the addresses.
    pub priority: u8,
    /// Advertisement interval, whole centiseconds, 10ms..40.95s.
    pub advert_int: Duration,
    /// Virtual addresses with their prefix length, in conf order.
    pub addresses: Vec<(Ipv4Addr, u8)>,
    /// `nopreempt` clears it: a returning higher priority waits for the master to fail.
    pub preempt: bool,
    pub tracks: Vec<Track>,
}

/// `track backend NAME weight -N`: priority drops by N while the backend has no server up.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    pub backend: String,
    pub weight: u8,
    pub line: usize,
}

pub const DEFAULT_ADVERT_INT: Duration = Duration::from_secs(1);
pub const DEFAULT_PRIORITY: u8 = 100;
/// An advert's address count is one byte.
pub const MAX_ADDRESSES: usize = 255;

const KEYWORDS: &[&str] = &[
    "interface",
    "vrid",
    "priority",
    "advert-int",
    "address",
    "nopreempt",
    "preempt",
    "track",
];

impl VrrpConf {
    pub fn new(name: String, line: usize) -> VrrpConf {
        VrrpConf {
            name,
            line,
            interface: String::new(),
            vrid: 0,
            line_vrid: 0,
            priority: DEFAULT_PRIORITY,
            advert_int: DEFAULT_ADVERT_INT,
            addresses: Vec::new(),
            preempt: true,
            tracks: Vec::new(),
        }
    }

    /// The advert interval in the packet's unit.
    pub fn interval_cs(&self) -> u16 {
        (self.advert_int.as_millis() / 10).clamp(1, 4095) as u16
    }
}

/// Applies one directive of a `vrrp` section.
pub fn directive(v: &mut VrrpConf, d: &Directive) -> Result<(), String> {
    let kw = d.keyword();
    let arg = || d.one_arg();
    let e = |m: String| format!("'{kw}': {m}");
    match kw {
        "interface" => {
            let name = arg()?;
            // IFNAMSIZ is 16 with the NUL.
            if name.len() > 15 || name.contains('/') {
                return Err(e(format!("invalid interface name '{name}'")));
            }
            v.interface = name.to_string();
        }
        "vrid" => {
            v.vrid = parse::number(arg()?, 1, 255).map_err(e)? as u8;
            v.line_vrid = d.line;
        }
        "priority" => v.priority = parse::number(arg()?, 1, 255).map_err(e)? as u8,
        "advert-int" => v.advert_int = advert_int(arg()?).map_err(e)?,
        "address" => {
            let a = address(arg()?).map_err(e)?;
            if v.addresses.iter().any(|(ip, _)| *ip == a.0) {
                return Err(e(format!("{} is listed twice", a.0)));
            }
            if v.addresses.len() == MAX_ADDRESSES {
                return Err(e("at most 255 addresses per virtual router".into()));
            }
            v.addresses.push(a);
        }
        "nopreempt" | "preempt" => {
            if d.args.len() > 1 {
                return Err(e(format!("unexpected argument '{}'", d.args[1])));
            }
            v.preempt = kw == "preempt";
        }
        "track" => v.tracks.push(track(d).map_err(e)?),
        _ => {
            return Err(format!(
                "unknown keyword '{kw}' in vrrp section{}",
                did_you_mean(kw, KEYWORDS)
            ))
        }
    }
    Ok(())
}

/// `100ms`, `1s`, or keepalived's seconds with a fraction (`0.1`).
fn advert_int(s: &str) -> Result<Duration, String> {
    let d = match s.split_once('.') {
        Some((whole, frac)) if frac.len() <= 2 && frac.bytes().all(|b| b.is_ascii_digit()) => {
            let w: u64 = whole
                .parse()
                .map_err(|_| format!("invalid interval '{s}'"))?;
            let f: u64 = format!("{frac:0<2}").parse().unwrap_or(0);
            Duration::from_millis(w * 1000 + f * 10)
        }
        Some(_) => return Err(format!("invalid interval '{s}' (centiseconds at most)")),
        None => parse::duration(s)?,
    };
    if d < Duration::from_millis(10) || d > Duration::from_millis(40_950) {
        return Err(format!("{s} is out of range (10ms..40950ms)"));
    }
    if d.as_micros() % 10_000 != 0 {
        return Err(format!("{s} is not a whole number of centiseconds"));
    }
    Ok(d)
}

/// `10.0.0.100/24` (a bare address is /32).
fn address(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let (ip, len) = match s.split_once('/') {
        Some((ip, len)) => (ip, parse::number(len, 0, 32)? as u8),
        None => (s, 32),
    };
    let ip: Ipv4Addr = ip
        .parse()
        .map_err(|_| format!("invalid IPv4 address '{ip}' (IPv6 is not supported yet)"))?;
    if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() || ip.is_loopback() {
        return Err(format!("{ip} cannot be a virtual address"));
    }
    Ok((ip, len))
}

/// `track backend NAME weight -N`.
fn track(d: &Directive) -> Result<Track, String> {
    let a = &d.args[1..];
    let usage = || "expected 'track backend NAME weight -N'".to_string();
    match a {
        [kind, name, w, n] if kind == "backend" && w == "weight" => {
            let n = n.strip_prefix('-').ok_or_else(|| {
                format!("weight '{n}' must be negative (the priority drops by it)")
            })?;
            Ok(Track {
                backend: name.clone(),
                weight: parse::number(n, 1, 254)? as u8,
                line: d.line,
            })
        }
        [kind, ..] if kind != "backend" => {
            Err(format!("only backends can be tracked, not '{kind}'"))
        }
        _ => Err(usage()),
    }
}

/// Checks a finished `vrrp` section.
pub fn finish(v: &VrrpConf) -> Result<(), String> {
    if v.interface.is_empty() {
        return Err(format!("vrrp '{}' has no 'interface' line", v.name));
    }
    if v.line_vrid == 0 {
        return Err(format!("vrrp '{}' has no 'vrid' line", v.name));
    }
    if v.addresses.is_empty() {
        return Err(format!("vrrp '{}' has no 'address' line", v.name));
    }
    Ok(())
}

/// Checks across sections: tracked backends exist, no vrid twice on one
/// interface, no address in two virtual routers. `broken`: sections that had
/// errors already (not reported again as missing).
pub fn cross_check(
    conf: &super::Conf,
    broken: &std::collections::HashSet<String>,
) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, v) in conf.vrrps.iter().enumerate() {
        for t in &v.tracks {
            if !conf.backends.iter().any(|b| b.name == t.backend) && !broken.contains(&t.backend) {
                let names: Vec<&str> = conf.backends.iter().map(|b| b.name.as_str()).collect();
                out.push((
                    t.line,
                    format!(
                        "'track': backend '{}' does not exist{}",
                        t.backend,
                        did_you_mean(&t.backend, &names)
                    ),
                ));
            }
        }
        for w in &conf.vrrps[..i] {
            if w.vrid == v.vrid && w.interface == v.interface && v.line_vrid != 0 {
                out.push((
                    v.line_vrid,
                    format!(
                        "'vrid': {} is already used on {} by vrrp '{}'",
                        v.vrid, v.interface, w.name
                    ),
                ));
            }
            for (a, _) in &v.addresses {
                if w.addresses.iter().any(|(b, _)| a == b) {
                    out.push((v.line, format!("address {a} is also in vrrp '{}'", w.name)));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(line: &str) -> Directive {
        Directive {
            line: 1,
            args: line.split_whitespace().map(String::from).collect(),
        }
    }

    #[test]
    fn keywords_parse() {
        let mut v = VrrpConf::new("www".into(), 1);
        for l in [
            "interface eth0",
            "vrid 51",
            "priority 150",
            "advert-int 100ms",
            "address 10.77.0.100/24",
            "address 10.77.0.101",
            "nopreempt",
            "track backend web weight -60",
        ] {
            directive(&mut v, &dir(l)).unwrap();
        }
        assert_eq!(v.interface, "eth0");
        assert_eq!((v.vrid, v.priority, v.interval_cs()), (51, 150, 10));
        assert_eq!(
            v.addresses,
            [
                ("10.77.0.100".parse().unwrap(), 24),
                ("10.77.0.101".parse().unwrap(), 32)
            ]
        );
        assert!(!v.preempt);
        assert_eq!(v.tracks[0].backend, "web");
        assert_eq!(v.tracks[0].weight, 60);
        finish(&v).unwrap();
    }

    #[test]
    fn advert_int_forms() {
        assert_eq!(advert_int("0.1"), Ok(Duration::from_millis(100)));
        // A bare number is milliseconds, as everywhere in the conf.
        assert_eq!(advert_int("100"), Ok(Duration::from_millis(100)));
        assert!(advert_int("1").is_err());
        assert_eq!(advert_int("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(advert_int("1.5"), Ok(Duration::from_millis(1500)));
        assert!(advert_int("5ms").is_err());
        assert!(advert_int("15ms").is_err());
        assert!(advert_int("41s").is_err());
        assert!(advert_int("0.001").is_err());
    }

    #[test]
    fn bad_values_are_errors() {
        let mut v = VrrpConf::new("a".into(), 1);
        assert!(directive(&mut v, &dir("vrid 0")).is_err());
        assert!(directive(&mut v, &dir("vrid 256")).is_err());
        assert!(directive(&mut v, &dir("priority 0")).is_err());
        assert!(directive(&mut v, &dir("address 224.0.0.18")).is_err());
        assert!(directive(&mut v, &dir("address fe80::1")).is_err());
        assert!(directive(&mut v, &dir("address 10.0.0.1/33")).is_err());
        assert!(directive(&mut v, &dir("track backend web weight 10")).is_err());
        assert!(directive(&mut v, &dir("track server web weight -10")).is_err());
        let e = directive(&mut v, &dir("advert-itn 1s")).unwrap_err();
        assert!(e.contains("advert-int"), "{e}");
        assert!(finish(&v).unwrap_err().contains("interface"));
    }

    fn whole(text: &str) -> Result<crate::conf::Conf, String> {
        crate::conf::parse_conf("t.conf", text).map_err(|e| e.to_string())
    }

    const WWW: &str = "vrrp www\n    interface eth0\n    vrid 51\n    address 10.77.0.100/24\n";

    #[test]
    fn a_section_in_a_conf() {
        // A frontend may bind the virtual address although this host lacks it.
        let c = whole(&format!(
            "frontend f\n    bind 10.77.0.100:80\n    default_backend b\nbackend b\n    server s 127.0.0.1:1\n{WWW}    track backend b weight -50\n"
        ))
        .unwrap();
        assert_eq!(c.vrrps.len(), 1);
        assert_eq!(c.vrrps[0].priority, DEFAULT_PRIORITY);
        assert_eq!(c.vrrps[0].advert_int, DEFAULT_ADVERT_INT);
        // Without the vrrp section the same bind is refused.
        let e = whole("frontend f\n    bind 10.77.0.100:80\n    default_backend b\nbackend b\n    server s 127.0.0.1:1\n").unwrap_err();
        assert!(e.contains("not an address of this host"), "{e}");
    }

    #[test]
    fn errors_name_their_line() {
        assert_eq!(
            whole(&format!("{WWW}    track backend web weight -10\n")).unwrap_err(),
            "t.conf:5: 'track': backend 'web' does not exist"
        );
        assert_eq!(
            whole("vrrp www\n    interface eth0\n    vrid 51\n").unwrap_err(),
            "t.conf:1: vrrp 'www' has no 'address' line"
        );
        let two = format!("{WWW}{}", WWW.replace("www", "two"));
        let e = whole(&two).unwrap_err();
        assert!(
            e.contains("t.conf:7: 'vrid': 51 is already used on eth0 by vrrp 'www'"),
            "{e}"
        );
        assert!(
            e.contains("t.conf:5: address 10.77.0.100 is also in vrrp 'www'"),
            "{e}"
        );
        let e = whole(&format!("{WWW}{WWW}")).unwrap_err();
        assert!(e.contains("duplicate vrrp name 'www'"), "{e}");
        assert_eq!(
            whole("vrrp www\n    interface eth0\n    vrid 300\n    address 10.0.0.1\n")
                .unwrap_err(),
            "t.conf:3: 'vrid': invalid number '300' (expected 1..=255)"
        );
    }
}
