//! `option tcp-check` with the classic Redis sequence from haproxy.com
//! (PING/+PONG, `info replication`/`role:master`, QUIT/+OK): only the primary
//! takes connections. Real redis-server primary and replica; the same conf
//! run by HAProxy 2.6 routes the same way. `option redis-check` too.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{haproxy, Lb};

struct Redis(Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis(port: u16, replica_of: Option<u16>) -> Option<Redis> {
    let mut cmd = Command::new("redis-server");
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]);
    if let Some(p) = replica_of {
        cmd.args(["--replicaof", "127.0.0.1", &p.to_string()]);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let r = Redis(child);
    common::eventually("redis-server listening", || {
        TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
    });
    Some(r)
}

/// The role (`master` or `slave`) of the server a new connection through `addr` reaches.
fn role_via(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"ROLE\r\n").ok()?;
    let mut buf = vec![0u8; 256];
    let n = s.read(&mut buf).ok()?;
    let t = String::from_utf8_lossy(&buf[..n]).into_owned();
    ["master", "slave"]
        .into_iter()
        .find(|r| t.contains(r))
        .map(str::to_string)
}

fn conf(bind: &str, primary: u16, replica: u16, check: &str) -> String {
    format!(
        "defaults REDIS\n mode tcp\n timeout connect 4s\n timeout server 30s\n timeout client 30s\n timeout check 1s\n\n\
         frontend ft_redis\n bind {bind} name redis\n default_backend bk_redis\n\n\
         backend bk_redis\n{check}\n server R1 127.0.0.1:{replica} check inter 200ms rise 1 fall 1\n server R2 127.0.0.1:{primary} check inter 200ms rise 1 fall 1\n"
    )
}

const CLASSIC: &str = " option tcp-check
 tcp-check send PING\\r\\n
 tcp-check expect string +PONG
 tcp-check send info\\ replication\\r\\n
 tcp-check expect string role:master
 tcp-check send QUIT\\r\\n
 tcp-check expect string +OK";

/// Every one of 6 connections reaches the primary (once checks have run).
fn only_primary(addr: SocketAddr) {
    common::eventually("every connection on the primary", || {
        let roles: Vec<Option<String>> = (0..6).map(|_| role_via(addr)).collect();
        roles
            .iter()
            .all(|r| r.as_deref() == Some("master"))
            .then_some(())
    });
}

#[test]
fn tcp_check_role_master_routes_to_the_primary_only() {
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("redis-server not installed: skipping");
        return;
    }
    let (pp, rp) = (haproxy::free_port(), haproxy::free_port());
    let Some(_p) = redis(pp, None) else { return };
    let Some(_r) = redis(rp, Some(pp)) else {
        return;
    };
    let text = conf("127.0.0.1:0", pp, rp, CLASSIC);
    let lb = Lb::start(&text, 1);
    let addr = lb.addr("frontend", "ft_redis");
    only_primary(addr);
    // The replica is down for lb, with the failed step in the log.
    lb.wait_log("role:master");

    let port = haproxy::free_port();
    let haddr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let Some(_h) = haproxy::start(&conf(&haddr.to_string(), pp, rp, CLASSIC), haddr) else {
        return;
    };
    only_primary(haddr);
}

#[test]
fn redis_check_and_send_binary_mark_a_silent_server_down() {
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("redis-server not installed: skipping");
        return;
    }
    let (pp, rp) = (haproxy::free_port(), haproxy::free_port());
    let Some(_p) = redis(pp, None) else { return };
    // Not Redis: accepts and says nothing. redis-check fails on it.
    let silent = std::net::TcpListener::bind(("127.0.0.1", rp)).unwrap();
    std::thread::spawn(move || {
        let mut keep = Vec::new();
        for s in silent.incoming().flatten() {
            keep.push(s);
        }
    });
    let lb = Lb::start(&conf("127.0.0.1:0", pp, rp, " option redis-check"), 1);
    only_primary(lb.addr("frontend", "ft_redis"));
    // send-binary/expect binary: "PING\r\n" in hex, "+PONG" in hex.
    let bin = " option tcp-check\n tcp-check send-binary 50494e470d0a\n tcp-check expect binary 2b504f4e47";
    let lb = Lb::start(&conf("127.0.0.1:0", pp, rp, bin), 1);
    only_primary(lb.addr("frontend", "ft_redis"));
}
