//! The interface as VRRP sees it: its index, primary IPv4 address and MAC; raw
//! sockets for adverts (protocol 112, TTL 255, group 224.0.0.18 joined on the
//! interface); gratuitous ARP through an AF_PACKET socket.

use std::ffi::CString;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};

use super::packet;

/// One interface's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
}

impl Iface {
    pub fn lookup(name: &str) -> io::Result<Iface> {
        let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a valid NUL-terminated string.
        let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
        if index == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Iface {
            name: name.to_string(),
            index,
            mac: mac(name)?,
        })
    }
}

/// The interface's hardware address (SIOCGIFHWADDR).
fn mac(name: &str) -> io::Result<[u8; 6]> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, None)?;
    // SAFETY: ifreq is plain data; the name fits (checked by the conf, and below).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= req.ifr_name.len() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    for (d, b) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *b as libc::c_char;
    }
    use std::os::fd::AsRawFd;
    // SAFETY: SIOCGIFHWADDR fills the ifreq we own.
    if unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel filled ifru_hwaddr.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut m = [0u8; 6];
    for (d, b) in m.iter_mut().zip(sa.sa_data.iter()) {
        *d = *b as u8;
    }
    Ok(m)
}

/// The first IPv4 address of `iface` that is not one of `virtuals`: the
/// source of adverts and the tie-breaker between equal priorities.
pub fn primary_address(iface: &str, virtuals: &[Ipv4Addr]) -> io::Result<Option<Ipv4Addr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut found = None;
    let mut p = head;
    while !p.is_null() {
        // SAFETY: p walks the list getifaddrs returned.
        let ifa = unsafe { &*p };
        p = ifa.ifa_next;
        if ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string of the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        // SAFETY: ifa_addr is non-null; its family says what it holds.
        let family = unsafe { (*ifa.ifa_addr).sa_family };
        if name.to_bytes() != iface.as_bytes() || i32::from(family) != libc::AF_INET {
            continue;
        }
        // SAFETY: an AF_INET address is a sockaddr_in.
        let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
        let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
        if !virtuals.contains(&ip) {
            found = Some(ip);
            break;
        }
    }
    // SAFETY: the list from getifaddrs, freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(found)
}

/// A raw socket receiving every VRRP packet that arrives on the interface.
pub fn receiver(iface: &Iface) -> io::Result<Socket> {
    let s = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(i32::from(packet::PROTO))),
    )?;
    s.bind_device(Some(iface.name.as_bytes()))?;
    s.join_multicast_v4_n(&packet::GROUP, &InterfaceIndexOrAddress::Index(iface.index))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// A raw socket sending adverts from `src` out of the interface.
pub fn sender(iface: &Iface, src: Ipv4Addr) -> io::Result<Socket> {
    let s = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(i32::from(packet::PROTO))),
    )?;
    s.bind_device(Some(iface.name.as_bytes()))?;
    // Binding sets the IP source (and the checksum covers it); a bound raw
    // socket would receive only packets to that address, hence two sockets.
    s.bind(&SocketAddrV4::new(src, 0).into())?;
    s.set_multicast_if_v4(&src)?;
    s.set_multicast_ttl_v4(u32::from(packet::TTL))?;
    s.set_ttl(u32::from(packet::TTL))?;
    s.set_multicast_loop_v4(false)?;
    // Adverts are network control traffic (DSCP CS6), as keepalived marks them.
    s.set_tos(0xc0)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Sends one VRRP message to the group.
pub fn send(s: &Socket, msg: &[u8]) -> io::Result<()> {
    s.send_to(msg, &SocketAddrV4::new(packet::GROUP, 0).into())
        .map(|_| ())
}

/// An AF_PACKET socket for gratuitous ARP on the interface.
pub fn arp_socket() -> io::Result<Socket> {
    let proto = (libc::ETH_P_ARP as u16).to_be();
    Socket::new(
        Domain::PACKET,
        Type::DGRAM,
        Some(Protocol::from(i32::from(proto))),
    )
}

/// One gratuitous ARP request for `ip` (sender and target both `ip`) to the
/// broadcast address: neighbours update their entry to our MAC.
pub fn garp(s: &Socket, iface: &Iface, ip: Ipv4Addr) -> io::Result<()> {
    let mut p = Vec::with_capacity(28);
    p.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]); // Ethernet, IPv4, request
    p.extend_from_slice(&iface.mac);
    p.extend_from_slice(&ip.octets());
    p.extend_from_slice(&[0xff; 6]);
    p.extend_from_slice(&ip.octets());
    // SAFETY: sockaddr_ll is plain data.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_ARP as u16).to_be();
    sll.sll_ifindex = iface.index as i32;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    use std::os::fd::AsRawFd;
    // SAFETY: sends our buffer to an address we built, with its length.
    let n = unsafe {
        libc::sendto(
            s.as_raw_fd(),
            p.as_ptr().cast(),
            p.len(),
            0,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
