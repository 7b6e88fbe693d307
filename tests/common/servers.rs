//! Small backend servers for tests, each on 127.0.0.1:0 in its own thread.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;

/// A TCP server that greets each connection with `name\n`, then echoes bytes
/// until the client half-closes, then closes.
pub fn tagged_echo(name: &str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let name = name.to_string();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let name = name.clone();
            thread::spawn(move || {
                let _ = s.write_all(format!("{name}\n").as_bytes());
                echo(&mut s);
            });
        }
    });
    addr
}

/// A plain echo server.
pub fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            thread::spawn(move || echo(&mut s));
        }
    });
    addr
}

fn echo(s: &mut TcpStream) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
    let _ = s.shutdown(std::net::Shutdown::Write);
}

/// An address nothing listens on (bound then closed), so connects are refused.
pub fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}
