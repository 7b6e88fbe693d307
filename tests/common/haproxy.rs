//! HAProxy 2.6 run next to lb in a test, on the same conf text, to compare
//! what each does. A test skips its comparison (with a message) when
//! `haproxy` is not installed.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};

use super::TempDir;

pub struct Haproxy {
    child: Child,
    _dir: TempDir,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free right now (bound, then closed) for HAProxy to listen on.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The haproxy binary, if installed.
pub fn binary() -> Option<&'static str> {
    [
        "/usr/sbin/haproxy",
        "/usr/local/sbin/haproxy",
        "/usr/bin/haproxy",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
}

/// Starts HAProxy in the foreground on `conf`, and waits until `addr` accepts.
/// `None` (with a message) when HAProxy is not installed.
pub fn start(conf: &str, addr: SocketAddr) -> Option<Haproxy> {
    let Some(bin) = binary() else {
        eprintln!("haproxy not installed: skipping the comparison with HAProxy");
        return None;
    };
    let dir = TempDir::new("haproxy");
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, conf).expect("write haproxy conf");
    let child = Command::new(bin)
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn haproxy");
    let h = Haproxy { child, _dir: dir };
    super::eventually("haproxy listening", || {
        std::net::TcpStream::connect(addr).ok().map(|_| ())
    });
    Some(h)
}
